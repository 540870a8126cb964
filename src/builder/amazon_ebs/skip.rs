//! `skip_create_ami = true`: a test of the build. The instance is launched
//! and provisioned, then everything is cleaned up: no stop, no image, no
//! build number taken (numbers come from the family's images, and none is
//! made), no fingerprint compared or stored.

use async_trait::async_trait;

use super::EbsContext;
use crate::builder::BuildContext;
use crate::events::Outcome;
use crate::pipeline::{self, RunOptions, RunReport, Step, StepError};

/// What the manifest says instead of `amis`.
pub const NO_IMAGE: &str = "no image made (skip_create_ami = true)";

/// A skipped build: `decided` (the family and the base AMI), then the
/// instance, the provisioners and the cleanups; no image steps.
pub async fn run(
    mut ctx: EbsContext,
    decided: RunReport,
    opts: &RunOptions,
) -> (RunReport, BuildContext) {
    let mut steps = super::up_to_provisioning(&ctx.config);
    steps.push(Box::new(NoImage));
    let report = decided.followed_by(pipeline::run(steps, &mut ctx, opts).await);
    let m = &mut ctx.build.manifest;
    m.insert("region".into(), ctx.region.clone().into());
    if let Some(source) = &ctx.source_ami {
        m.insert("source_ami".into(), source.id.clone().into());
        m.insert("source_ami_name".into(), source.name.clone().into());
    }
    if report.outcome == Outcome::Succeeded {
        record(m);
    }
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
        Ok(())
    }
}

/// The manifest of a skipped build: `skipped` instead of a build number
/// (the next real build takes the same number) and `amis`.
fn record(manifest: &mut serde_json::Map<String, serde_json::Value>) {
    manifest.remove("build");
    manifest.insert("skipped".into(), NO_IMAGE.into());
}
