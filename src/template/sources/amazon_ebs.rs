//! `type = "amazon-ebs"`: launch from an AMI, provision, snapshot into a new AMI.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::template::schema::{HumanDuration, SshConfig};
use crate::template::source::{Checker, SourceSchema};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonEbsConfig {
    /// Falls back to the standard region chain (AWS_REGION, profile).
    pub region: Option<String>,
    pub source_ami: Option<String>,
    pub source_ami_filter: Option<AmiFilter>,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub associate_public_ip: Option<bool>,
    pub iam_instance_profile: Option<String>,
    pub user_data: Option<String>,
    pub user_data_file: Option<String>,
    pub root_volume_size: Option<i32>,
    pub root_volume_type: Option<String>,
    pub root_volume_encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    /// Use an existing key pair (with `ssh_private_key_file`) instead of a temporary one.
    pub ssh_keypair_name: Option<String>,
    pub ssh_interface: Option<SshInterface>,
    pub temporary_sg_cidrs: Option<Vec<String>>,
    pub security_group_ids: Option<Vec<String>>,
    pub ami_name: Option<String>,
    pub ami_description: Option<String>,
    pub imds_support: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub snapshot_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub run_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub ami_users: Vec<String>,
    #[serde(default)]
    pub ami_regions: Vec<String>,
    #[serde(default)]
    pub force_deregister: bool,
    #[serde(default)]
    pub timeouts: WaitTimeouts,
}

/// `[source.NAME.source_ami_filter]`: pick the base AMI by name and owner.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiFilter {
    pub name: Option<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    pub architecture: Option<String>,
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    #[serde(default)]
    pub most_recent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshInterface {
    PublicIp,
    PrivateIp,
    PublicDns,
    PrivateDns,
}

/// `[source.NAME.timeouts]`: how long each wait may take in total.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitTimeouts {
    pub instance_running: Option<HumanDuration>,
    pub instance_stopped: Option<HumanDuration>,
    pub image_available: Option<HumanDuration>,
    pub instance_terminated: Option<HumanDuration>,
}

impl SourceSchema for AmazonEbsConfig {
    const TYPE: &'static str = "amazon-ebs";
    const PROVIDES: &'static [&'static str] = &["ami", "id", "region", "instance_id"];

    fn check(&self, _ssh: &SshConfig, checker: &mut Checker<'_>) {
        match (&self.source_ami, &self.source_ami_filter) {
            (None, None) => {
                checker.error(
                    "",
                    "an `amazon-ebs` source needs `source_ami` or `source_ami_filter`",
                );
            }
            (Some(_), Some(_)) => {
                checker.error(
                    "source_ami",
                    "set either `source_ami` or `source_ami_filter`, not both",
                );
            }
            _ => {}
        }
    }
}
