//! `type = "amazon-ebs"`: launch from an AMI, provision, snapshot into a new AMI.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::builder::BuildContext;
use crate::family::listing::ImageStore;
use crate::fingerprint::Part;
use crate::pipeline::{RunOptions, RunReport};
use crate::template::Template;
use crate::template::check::Checker;
use crate::template::schema::{HumanDuration, SshConfig};
use crate::template::source::{SourceConfig, SourceSchema};

mod attributes;
mod base_image;
mod block_devices;
mod encryption;
mod instance_profile;
mod metadata;
mod network;
mod region;
mod rules;
mod sharing;
mod spot;

pub use block_devices::{BlockDevice, root_short_form};
pub use encryption::DEFAULT_EBS_KEY;
pub use instance_profile::PolicyDocument;
pub use network::{SubnetFilter, VpcFilter};
pub use region::default_region;
pub use rules::{ami_name_problem, is_ami_id};
use rules::{is_cidr, is_region};
pub use sharing::PUBLIC_GROUP;
pub use spot::{AUTO_PRICE, is_spot_price};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonEbsConfig {
    /// Falls back to the standard region chain (AWS_REGION, profile).
    pub region: Option<String>,
    pub source_ami: Option<String>,
    pub source_ami_filter: Option<AmiFilter>,
    /// An SSM parameter holding the base AMI's id (AWS publishes these).
    pub source_ami_ssm_parameter: Option<String>,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_filter: Option<SubnetFilter>,
    pub vpc_filter: Option<VpcFilter>,
    pub associate_public_ip: Option<bool>,
    pub iam_instance_profile: Option<String>,
    /// The inline policy of a role and instance profile made for the build alone.
    pub temporary_iam_instance_profile_policy_document: Option<PolicyDocument>,
    /// A spot instance at most this price ("auto": at most the on-demand price).
    pub spot_price: Option<String>,
    /// Tried in order when EC2 has no spot capacity (instead of `instance_type`).
    pub spot_instance_types: Option<Vec<String>>,
    pub fallback_to_on_demand: Option<bool>,
    pub user_data: Option<String>,
    pub user_data_file: Option<String>,
    pub root_volume_size: Option<i32>,
    pub root_volume_type: Option<String>,
    pub root_volume_encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub launch_block_device: Vec<BlockDevice>,
    #[serde(default)]
    pub ami_block_device: Vec<BlockDevice>,
    /// Encrypt the saved image (its root volume is encrypted at launch).
    pub encrypt_boot: Option<bool>,
    /// The key of each region's image: the build region's and each copy's.
    #[serde(default)]
    pub region_kms_key_ids: BTreeMap<String, String>,
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
    pub ami_groups: Vec<String>,
    #[serde(default)]
    pub ami_org_arns: Vec<String>,
    #[serde(default)]
    pub ami_ou_arns: Vec<String>,
    #[serde(default)]
    pub snapshot_users: Vec<String>,
    #[serde(default)]
    pub snapshot_groups: Vec<String>,
    pub ena_support: Option<bool>,
    pub sriov_support: Option<bool>,
    pub boot_mode: Option<String>,
    pub tpm_support: Option<String>,
    pub uefi_data: Option<String>,
    pub metadata_http_tokens: Option<String>,
    pub metadata_http_put_response_hop_limit: Option<i32>,
    pub metadata_tags: Option<String>,
    #[serde(default)]
    pub ami_regions: Vec<String>,
    #[serde(default)]
    pub force_deregister: bool,
    /// Provision and clean up without making an image (a test of the build).
    #[serde(default)]
    pub skip_create_ami: bool,
    /// The AMI and its copies become deprecated this long after the build.
    pub deprecate_after: Option<HumanDuration>,
    #[serde(default)]
    pub timeouts: WaitTimeouts,
}

/// `[source.NAME.source_ami_filter]`: pick the base AMI by name and owner.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// Deprecated images match too (DescribeImages leaves them out otherwise).
    #[serde(default)]
    pub include_deprecated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SshInterface {
    PublicIp,
    PrivateIp,
    PublicDns,
    PrivateDns,
}

/// `[source.NAME.timeouts]`: how long each wait may take in total.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitTimeouts {
    pub instance_running: Option<HumanDuration>,
    pub instance_stopped: Option<HumanDuration>,
    pub image_available: Option<HumanDuration>,
    pub snapshots_completed: Option<HumanDuration>,
    pub instance_terminated: Option<HumanDuration>,
    /// A temporary instance profile: until IAM shows it, then until EC2 takes it.
    pub instance_profile_ready: Option<HumanDuration>,
}

/// The AMI name used when the template sets none.
pub const DEFAULT_AMI_NAME: &str = "${image.name}-${image.version}-${image.build}";

/// Root volume types EC2 accepts.
const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

#[async_trait]
impl SourceConfig for AmazonEbsConfig {
    fn type_name(&self) -> &'static str {
        Self::TYPE
    }

    fn provides(&self) -> &'static [&'static str] {
        &[
            "ami",
            "ami_name",
            "ami_owner",
            "ami_creation_date",
            "id",
            "region",
            "instance_id",
        ]
    }

    async fn build(&self, ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
        crate::builder::amazon_ebs::run(ctx, self.clone(), opts).await
    }

    /// The same run: it checks `ctx.dry_run` once the reads are done.
    async fn dry_run(&self, ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
        crate::builder::amazon_ebs::run(ctx, self.clone(), opts).await
    }

    async fn fingerprint_base(&self, template: &Template) -> Result<Vec<Part>, String> {
        Ok(vec![
            crate::builder::amazon_ebs::fingerprint_base(self, &template.scope).await?,
        ])
    }

    fn launch_only_settings(&self) -> &'static [&'static str] {
        &[
            "subnet_id",
            "subnet_filter",
            "vpc_id",
            "vpc_filter",
            "associate_public_ip",
            "security_group_ids",
            "temporary_sg_cidrs",
            "ssh_keypair_name",
            "ssh_interface",
            "spot_price",
            "spot_instance_types",
            "fallback_to_on_demand",
            "metadata_http_tokens",
            "metadata_http_put_response_hop_limit",
            "metadata_tags",
            "timeouts",
            "skip_create_ami",
        ]
    }

    fn warnings(&self) -> Vec<String> {
        [sharing::public_warnings(self), metadata::warnings(self)].concat()
    }

    async fn image_stores(
        &self,
        template: &Template,
        regions: &[String],
    ) -> Result<Vec<Arc<dyn ImageStore>>, String> {
        crate::builder::amazon_ebs::stores(
            Some(self),
            &template.scope,
            &template.name,
            Some(&template.version),
            regions,
        )
        .await
    }
}

impl SourceSchema for AmazonEbsConfig {
    const TYPE: &'static str = "amazon-ebs";

    fn check(&self, ssh: &SshConfig, checker: &mut Checker<'_>) {
        base_image::check(self, checker);
        network::check(self, checker);
        self.check_region(checker);
        self.check_ami_name(checker);
        spot::check(self, checker);
        instance_profile::check(self, checker);
        if self.user_data.is_some() && self.user_data_file.is_some() {
            checker.error(
                "user_data_file",
                "set either `user_data` or `user_data_file`, not both",
            );
        }
        if let Some(file) = &self.user_data_file
            && !file.contains("${")
        {
            let full = checker
                .doc
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(file);
            if !full.exists() {
                checker.error(
                    "user_data_file",
                    format!("`{file}` does not exist (looked for {})", full.display()),
                );
            }
        }
        if self.ssh_keypair_name.is_some() && ssh.ssh_private_key_file.is_none() {
            checker.error(
                "ssh_keypair_name",
                "`ssh_keypair_name` needs `ssh_private_key_file`, the key pair's private key",
            );
        }
        if self.security_group_ids.is_some() && self.temporary_sg_cidrs.is_some() {
            checker.error(
                "temporary_sg_cidrs",
                "`temporary_sg_cidrs` applies to the temporary security group; with `security_group_ids` none is made",
            );
        }
        for (i, cidr) in self.temporary_sg_cidrs.iter().flatten().enumerate() {
            if !cidr.contains("${") && !is_cidr(cidr) {
                checker.error_at(
                    &checker.base.key("temporary_sg_cidrs").index(i),
                    format!("`{cidr}` is not a CIDR block like 203.0.113.7/32"),
                );
            }
        }
        if let Some(kind) = &self.root_volume_type
            && !VOLUME_TYPES.contains(&kind.as_str())
        {
            checker.error(
                "root_volume_type",
                format!(
                    "unknown volume type `{kind}`; use one of {}",
                    VOLUME_TYPES.join(", ")
                ),
            );
        }
        if let Some(size) = self.root_volume_size
            && !(1..=65536).contains(&size)
        {
            checker.error(
                "root_volume_size",
                "`root_volume_size` is in GiB, from 1 to 65536",
            );
        }
        block_devices::check(self, checker);
        encryption::check(self, checker);
        if let Some(imds) = &self.imds_support
            && imds != "v2.0"
            && imds != "none"
        {
            checker.error("imds_support", "`imds_support` may be \"v2.0\" (the default) or \"none\" to leave the AMI's setting alone");
        }
        if let Some(after) = self.deprecate_after {
            check_deprecate_after(after, checker);
        }
        for (key, tags) in [
            ("tags", &self.tags),
            ("snapshot_tags", &self.snapshot_tags),
            ("run_tags", &self.run_tags),
        ] {
            for name in tags.keys() {
                if name.starts_with("imgbuild:") || name.to_ascii_lowercase().starts_with("aws:") {
                    checker.error_at(
                        &checker.base.key(key).key(name),
                        format!(
                            "tag keys starting with `{}` are reserved",
                            &name[..name.find(':').unwrap_or(0) + 1]
                        ),
                    );
                }
            }
        }
        sharing::check(self, checker);
        attributes::check(self, checker);
        metadata::check(self, checker);
    }
}

/// EC2 takes a deprecation time up to ten years ahead.
const MAX_DEPRECATE_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

fn check_deprecate_after(after: HumanDuration, checker: &mut Checker<'_>) {
    if after.0.is_zero() {
        checker
            .error(
                "deprecate_after",
                "`deprecate_after` must be longer than 0s",
            )
            .help = Some("write e.g. \"90d\"; leave it out to never deprecate".into());
    } else if after.0 > MAX_DEPRECATE_AFTER {
        checker.error(
            "deprecate_after",
            "`deprecate_after` may be at most \"3650d\": EC2 takes a deprecation time up to ten years ahead",
        );
    }
}

impl AmazonEbsConfig {
    fn check_region(&self, checker: &mut Checker<'_>) {
        // An empty expansion (an unset variable) leaves the choice to the standard chain.
        let written = self
            .region
            .as_deref()
            .map(|r| checker.known.expand_known(r))
            .filter(|r| !r.is_empty());
        match written {
            Some(region) => {
                if !region.contains("${") && !is_region(&region) {
                    checker.error(
                        "region",
                        format!("`{region}` is not an AWS region name like eu-west-3"),
                    );
                }
            }
            None => {
                if default_region().is_none() {
                    let (key, what) = match self.region {
                        Some(_) => ("region", "`region` expands to nothing"),
                        None => ("", "this source sets no `region`"),
                    };
                    checker
                        .error(key, format!("no AWS region: {what}, and neither AWS_REGION, AWS_DEFAULT_REGION nor the AWS profile gives one"))
                        .help = Some("add `region = \"eu-west-3\"` to this source, or export AWS_REGION".into());
                }
            }
        }
        for (i, region) in self.ami_regions.iter().enumerate() {
            let region = checker.known.expand_known(region);
            if !region.contains("${") && !is_region(&region) {
                checker.error_at(
                    &checker.base.key("ami_regions").index(i),
                    format!("`{region}` is not an AWS region name like eu-west-3"),
                );
            }
        }
    }

    fn check_ami_name(&self, checker: &mut Checker<'_>) {
        let written = self.ami_name.as_deref().unwrap_or(DEFAULT_AMI_NAME);
        let expanded = checker.known.expand_known(written);
        if let Some(problem) = ami_name_problem(&expanded) {
            let d = checker.error("ami_name", format!("AMI name `{expanded}` {problem}"));
            d.help = Some(if self.ami_name.is_some() {
                "EC2 allows 3 to 128 letters, digits and ( ) [ ] space . / - ' @ _".into()
            } else {
                format!("this is the default name `{DEFAULT_AMI_NAME}`; set `ami_name`")
            });
        }
    }
}
