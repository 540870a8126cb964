//! `skip_create_ami = true`: a test of the build. The instance is launched
//! and provisioned, then everything is cleaned up: no stop, no image, no
//! build number taken (numbers come from the family's images, and none is
//! made), no fingerprint compared or stored.

use async_trait::async_trait;

use super::EbsContext;
use crate::builder::BuildContext;
use crate::pipeline::{self, RunOptions, RunReport, Step, StepError};
use crate::template::sources::AmazonEbsConfig;

/// What the manifest says instead of `amis`.
pub const NO_IMAGE: &str = "no image made (skip_create_ami = true)";

/// A skipped build: `decided` (the family and the base AMI), then the
/// instance, the provisioners and the cleanups; no image steps.
pub async fn run(
    mut ctx: EbsContext,
    decided: RunReport,
    opts: &RunOptions,
) -> (RunReport, BuildContext) {
    // No image, so no copies: nothing to check or encrypt for them.
    ctx.copy_regions.clear();
    let mut steps = super::up_to_provisioning(&ctx.config);
    steps.push(Box::new(NoImage));
    let report = decided.followed_by(pipeline::run(steps, &mut ctx, opts).await);
    ctx.record_place();
    // Whatever the outcome: the number the family step found was never taken.
    record(&mut ctx.build.manifest);
    (report, ctx.build)
}

/// The last step of a skipped build: says so, before the cleanups run.
pub struct NoImage;

#[async_trait]
impl Step<EbsContext> for NoImage {
    fn name(&self) -> &'static str {
        "skip image"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        ctx.build
            .events
            .info(format!("provisioning succeeded; {NO_IMAGE}"));
        let unused = image_settings(&ctx.config);
        if !unused.is_empty() {
            // Not a warning: the same template builds images where it is false.
            ctx.build.events.info(format!(
                "without an image these settings do nothing: {}",
                unused.join(", ")
            ));
        }
        Ok(())
    }
}

/// The settings written for the image, which a skipped build leaves unused.
fn image_settings(c: &AmazonEbsConfig) -> Vec<&'static str> {
    [
        ("ami_name", c.ami_name.is_some()),
        ("ami_description", c.ami_description.is_some()),
        ("tags", !c.tags.is_empty()),
        ("snapshot_tags", !c.snapshot_tags.is_empty()),
        ("imds_support", c.imds_support.is_some()),
        ("ami_regions", !c.ami_regions.is_empty()),
        ("ami_users", !c.ami_users.is_empty()),
        ("ami_groups", !c.ami_groups.is_empty()),
        ("ami_org_arns", !c.ami_org_arns.is_empty()),
        ("ami_ou_arns", !c.ami_ou_arns.is_empty()),
        ("snapshot_users", !c.snapshot_users.is_empty()),
        ("snapshot_groups", !c.snapshot_groups.is_empty()),
        ("ami_block_device", !c.ami_block_device.is_empty()),
        ("deprecate_after", c.deprecate_after.is_some()),
        ("force_deregister", c.force_deregister),
        ("ena_support", c.ena_support.is_some()),
        ("sriov_support", c.sriov_support.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// The manifest of a skipped build: `skipped` instead of a build number
/// (the next real build takes the same number) and `amis`.
fn record(manifest: &mut serde_json::Map<String, serde_json::Value>) {
    manifest.remove("build");
    manifest.insert("skipped".into(), NO_IMAGE.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_image_settings_a_skipped_build_leaves_unused() {
        let config = AmazonEbsConfig {
            ami_regions: vec!["eu-west-1".into()],
            force_deregister: true,
            ..AmazonEbsConfig::default()
        };
        assert_eq!(image_settings(&config), ["ami_regions", "force_deregister"]);
        assert!(image_settings(&AmazonEbsConfig::default()).is_empty());
    }
}
