//! The kinds of thing a build makes in EC2, each with the command that
//! removes it by hand when imgbuild could not (or was told not to).

use crate::events::Leftover;

#[derive(Debug, Clone, Copy)]
pub enum Made {
    KeyPair,
    SecurityGroup,
    Instance,
    Image,
    Snapshot,
    SpotRequest,
    /// IAM: global, so its command names no region.
    Role,
    InstanceProfile,
}

impl Made {
    pub fn noun(self) -> &'static str {
        match self {
            Made::KeyPair => "key pair",
            Made::SecurityGroup => "security group",
            Made::Instance => "instance",
            Made::Image => "image",
            Made::Snapshot => "snapshot",
            Made::SpotRequest => "spot request",
            Made::Role => "IAM role",
            Made::InstanceProfile => "instance profile",
        }
    }

    /// The AWS CLI command that removes it by hand.
    pub fn command(self, id: &str, region: &str) -> String {
        let remove_with = match self {
            Made::KeyPair => format!("delete-key-pair --key-name {id}"),
            Made::SecurityGroup => format!("delete-security-group --group-id {id}"),
            Made::Instance => format!("terminate-instances --instance-ids {id}"),
            Made::Image => format!("deregister-image --image-id {id}"),
            Made::Snapshot => format!("delete-snapshot --snapshot-id {id}"),
            Made::SpotRequest => {
                format!("cancel-spot-instance-requests --spot-instance-request-ids {id}")
            }
            Made::Role => {
                let policy = super::instance_profile::POLICY_NAME;
                return format!(
                    "aws iam delete-role-policy --role-name {id} --policy-name {policy}; aws iam delete-role --role-name {id}"
                );
            }
            Made::InstanceProfile => {
                return format!(
                    "aws iam remove-role-from-instance-profile --instance-profile-name {id} --role-name {id}; aws iam delete-instance-profile --instance-profile-name {id}"
                );
            }
        };
        format!("aws ec2 {remove_with} --region {region}")
    }

    pub fn leftover(self, id: &str, region: &str, reason: impl Into<String>) -> Leftover {
        Leftover {
            resource: self.noun().into(),
            id: id.into(),
            reason: reason.into(),
            remove_with: self.command(id, region),
        }
    }
}
