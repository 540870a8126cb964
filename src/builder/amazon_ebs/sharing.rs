//! Sharing the images once they are available: launch permissions on the
//! AMI and every copy (`ami_users`, `ami_groups`, `ami_org_arns`,
//! `ami_ou_arns`), create-volume permissions on each of their snapshots
//! (`snapshot_users`, `snapshot_groups`). Nothing is made, so there is
//! nothing to clean up: a failed build deregisters the images anyway.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::modify_image_attribute::builders::ModifyImageAttributeFluentBuilder;
use aws_sdk_ec2::operation::modify_snapshot_attribute::builders::ModifySnapshotAttributeFluentBuilder;
use aws_sdk_ec2::types::{
    LaunchPermission, LaunchPermissionModifications, OperationType, PermissionGroup,
    SnapshotAttributeName,
};

use super::EbsContext;
use super::client::{Api, ApiError};
use crate::pipeline::{Step, StepError};
use crate::template::Scope;
use crate::template::sources::AmazonEbsConfig;

/// Who may use the build's images and snapshots, references expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sharing {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub org_arns: Vec<String>,
    pub ou_arns: Vec<String>,
    pub snapshot_users: Vec<String>,
    pub snapshot_groups: Vec<String>,
}

impl Sharing {
    /// Whether the template shares anything (the step is left out otherwise).
    pub fn wanted(config: &AmazonEbsConfig) -> bool {
        [
            &config.ami_users,
            &config.ami_groups,
            &config.ami_org_arns,
            &config.ami_ou_arns,
            &config.snapshot_users,
            &config.snapshot_groups,
        ]
        .iter()
        .any(|list| !list.is_empty())
    }

    pub fn from_config(config: &AmazonEbsConfig, scope: &Scope) -> Result<Sharing, String> {
        let expand =
            |key: &str, list: &[String]| scope.expand_all(list).map_err(|e| format!("{key}: {e}"));
        Ok(Sharing {
            users: expand("ami_users", &config.ami_users)?,
            groups: expand("ami_groups", &config.ami_groups)?,
            org_arns: expand("ami_org_arns", &config.ami_org_arns)?,
            ou_arns: expand("ami_ou_arns", &config.ami_ou_arns)?,
            snapshot_users: expand("snapshot_users", &config.snapshot_users)?,
            snapshot_groups: expand("snapshot_groups", &config.snapshot_groups)?,
        })
    }

    fn launch_permissions(&self) -> Vec<LaunchPermission> {
        let users = self
            .users
            .iter()
            .map(|u| LaunchPermission::builder().user_id(u).build());
        let groups = self.groups.iter().map(|g| {
            LaunchPermission::builder()
                .group(PermissionGroup::from(g.as_str()))
                .build()
        });
        let orgs = self
            .org_arns
            .iter()
            .map(|a| LaunchPermission::builder().organization_arn(a).build());
        let ous = self.ou_arns.iter().map(|a| {
            LaunchPermission::builder()
                .organizational_unit_arn(a)
                .build()
        });
        users.chain(groups).chain(orgs).chain(ous).collect()
    }

    fn shares_images(&self) -> bool {
        !(self.users.is_empty()
            && self.groups.is_empty()
            && self.org_arns.is_empty()
            && self.ou_arns.is_empty())
    }

    fn shares_snapshots(&self) -> bool {
        !(self.snapshot_users.is_empty() && self.snapshot_groups.is_empty())
    }

    fn is_public(groups: &[String]) -> bool {
        groups
            .iter()
            .any(|g| g == crate::template::sources::PUBLIC_GROUP)
    }

    /// "accounts 210987654321; group all; organizations arn:…", for the log.
    fn images_summary(&self) -> String {
        summary(&[
            ("accounts", &self.users),
            ("groups", &self.groups),
            ("organizations", &self.org_arns),
            ("organizational units", &self.ou_arns),
        ])
    }

    fn snapshots_summary(&self) -> String {
        summary(&[
            ("accounts", &self.snapshot_users),
            ("groups", &self.snapshot_groups),
        ])
    }
}

fn summary(parts: &[(&str, &Vec<String>)]) -> String {
    parts
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(what, list)| format!("{what} {}", list.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The ModifyImageAttribute call that adds every launch permission.
pub fn image_request(
    client: &Client,
    image_id: &str,
    sharing: &Sharing,
) -> ModifyImageAttributeFluentBuilder {
    client
        .modify_image_attribute()
        .image_id(image_id)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .set_add(Some(sharing.launch_permissions()))
                .build(),
        )
}

/// The ModifySnapshotAttribute call that adds every create-volume permission.
pub fn snapshot_request(
    client: &Client,
    snapshot_id: &str,
    sharing: &Sharing,
) -> ModifySnapshotAttributeFluentBuilder {
    let nonempty = |list: &Vec<String>| Some(list.clone()).filter(|l| !l.is_empty());
    client
        .modify_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(OperationType::Add)
        .set_user_ids(nonempty(&sharing.snapshot_users))
        .set_group_names(nonempty(&sharing.snapshot_groups))
}

/// EC2 refused to share one image or snapshot.
#[derive(Debug, thiserror::Error)]
#[error("sharing {what} {id} in {region}: {source}")]
pub struct ShareError {
    pub what: &'static str,
    pub id: String,
    pub region: String,
    #[source]
    pub source: ApiError,
}

/// Shares every image the build made, and their snapshots, as the template asks.
pub struct ShareImages;

#[async_trait]
impl Step<EbsContext> for ShareImages {
    fn name(&self) -> &'static str {
        "share images"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let sharing =
            Sharing::from_config(&ctx.config, &ctx.build.scope).map_err(StepError::failed)?;
        let images = ctx.images.lock().expect("image records").clone();
        for image in images {
            let client = ctx.client_in(&image.region);
            let failed = |what, id: &str| {
                let region = image.region.clone();
                let id = id.to_string();
                move |source| {
                    StepError::from_error(ShareError {
                        what,
                        id,
                        region,
                        source,
                    })
                }
            };
            let events = &ctx.build.events;
            if sharing.shares_images() {
                image_request(&client, &image.id, &sharing)
                    .send()
                    .await
                    .api("ModifyImageAttribute")
                    .map_err(failed("image", &image.id))?;
                events.info(format!(
                    "shared {} in {} with {}",
                    image.id,
                    image.region,
                    sharing.images_summary()
                ));
                if Sharing::is_public(&sharing.groups) {
                    events.warn(format!(
                        "{} in {} is public: any AWS account can launch it (ami_groups = [\"all\"])",
                        image.id, image.region
                    ));
                }
            }
            if !sharing.shares_snapshots() {
                continue;
            }
            for snapshot in &image.snapshots {
                snapshot_request(&client, snapshot, &sharing)
                    .send()
                    .await
                    .api("ModifySnapshotAttribute")
                    .map_err(failed("snapshot", snapshot))?;
                events.info(format!(
                    "shared snapshot {snapshot} of {} in {} with {}",
                    image.id,
                    image.region,
                    sharing.snapshots_summary()
                ));
                if Sharing::is_public(&sharing.snapshot_groups) {
                    events.warn(format!(
                        "snapshot {snapshot} in {} is public: any AWS account can create a volume from it (snapshot_groups = [\"all\"])",
                        image.region
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        super::super::client::offline("eu-west-3")
    }

    fn everyone() -> Sharing {
        Sharing {
            users: vec!["210987654321".into()],
            groups: vec!["all".into()],
            org_arns: vec!["arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5".into()],
            ou_arns: vec![
                "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6".into(),
            ],
            snapshot_users: vec!["210987654321".into(), "109876543210".into()],
            snapshot_groups: vec!["all".into()],
        }
    }

    #[test]
    fn the_image_request_adds_every_launch_permission() {
        let request = image_request(&client(), "ami-0f3c2e0d9b8a71605", &everyone());
        let input = request.as_input();
        assert_eq!(
            input.get_image_id().as_deref(),
            Some("ami-0f3c2e0d9b8a71605")
        );
        let added = input
            .get_launch_permission()
            .as_ref()
            .map(|m| m.add().to_vec())
            .unwrap_or_default();
        assert_eq!(
            added,
            [
                LaunchPermission::builder().user_id("210987654321").build(),
                LaunchPermission::builder()
                    .group(PermissionGroup::All)
                    .build(),
                LaunchPermission::builder()
                    .organization_arn(
                        "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
                    )
                    .build(),
                LaunchPermission::builder()
                    .organizational_unit_arn(
                        "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6"
                    )
                    .build(),
            ]
        );
        assert_eq!(input.get_attribute(), &None, "the permissions say it all");
    }

    #[test]
    fn the_snapshot_request_adds_create_volume_permissions() {
        let request = snapshot_request(&client(), "snap-0123456789abcdef0", &everyone());
        let input = request.as_input();
        assert_eq!(
            input.get_snapshot_id().as_deref(),
            Some("snap-0123456789abcdef0")
        );
        assert_eq!(
            input.get_attribute(),
            &Some(SnapshotAttributeName::CreateVolumePermission)
        );
        assert_eq!(input.get_operation_type(), &Some(OperationType::Add));
        assert_eq!(
            input.get_user_ids().as_deref(),
            Some(&["210987654321".to_string(), "109876543210".to_string()][..])
        );
        assert_eq!(
            input.get_group_names().as_deref(),
            Some(&["all".to_string()][..])
        );
    }

    #[test]
    fn only_users_leaves_groups_out() {
        let only_users = Sharing {
            snapshot_users: vec!["210987654321".into()],
            ..Sharing::default()
        };
        let request = snapshot_request(&client(), "snap-0123456789abcdef0", &only_users);
        assert_eq!(request.as_input().get_group_names(), &None);
        assert!(!only_users.shares_images());
        assert!(only_users.shares_snapshots());
    }

    #[test]
    fn a_refusal_names_the_snapshot_and_region() {
        let error = ShareError {
            what: "snapshot",
            id: "snap-0123456789abcdef0".into(),
            region: "eu-west-3".into(),
            source: ApiError {
                operation: "ModifySnapshotAttribute",
                code: Some("UnauthorizedOperation".into()),
                message: "denied".into(),
                status: Some(403),
            },
        };
        assert_eq!(
            error.to_string(),
            "sharing snapshot snap-0123456789abcdef0 in eu-west-3: \
             ModifySnapshotAttribute failed: UnauthorizedOperation: denied"
        );
    }

    #[test]
    fn the_log_names_who_gets_what() {
        assert_eq!(
            everyone().snapshots_summary(),
            "accounts 210987654321, 109876543210; groups all"
        );
    }
}
