//! `type = "ssh"`: provision an existing machine in place. No image is made,
//! which makes it the quickest way to develop provisioners.

use crate::communicator::Credential;
use crate::pipeline::{self, RunOptions, RunReport, Step};

use super::steps::{Connect, Provision};
use super::{BuildContext, key_file, ssh_target};

pub async fn run(mut ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
    let credential = match &ctx.source.ssh.ssh_private_key_file {
        Some(file) => key_file(&ctx.template, &ctx.scope, file),
        None => Ok(Credential::Agent),
    };
    let host = ctx.source.ssh.ssh_host.clone().unwrap_or_default();
    let target = credential
        .and_then(|c| ssh_target(&ctx.template, &ctx.source, &ctx.scope, &host, 22, "root", c));
    match target {
        Ok(target) => {
            ctx.scope.set("source.host", target.endpoint.host.clone());
            ctx.ssh_target = Some(target);
        }
        Err(e) => return (pipeline::failed_before_start("prepare", e), ctx),
    }
    // No image, so no family to number from: provisioners shared with image
    // sources still expand `${image.build}`.
    ctx.scope.set("image.build", "0");
    let steps: Vec<Box<dyn Step<BuildContext>>> = vec![Box::new(Connect), Box::new(Provision)];
    let report = pipeline::run(steps, &mut ctx, opts).await;
    (report, ctx)
}
