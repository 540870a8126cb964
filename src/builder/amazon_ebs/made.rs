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
}

impl Made {
    pub fn noun(self) -> &'static str {
        match self {
            Made::KeyPair => "key pair",
            Made::SecurityGroup => "security group",
            Made::Instance => "instance",
            Made::Image => "image",
            Made::Snapshot => "snapshot",
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
