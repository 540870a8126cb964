//! `type = "amazon-ebs"`.

use crate::pipeline::{self, RunOptions, RunReport};
use crate::template::sources::AmazonEbsConfig;

use super::BuildContext;

pub async fn run(
    ctx: BuildContext,
    _config: AmazonEbsConfig,
    _opts: &RunOptions,
) -> (RunReport, BuildContext) {
    (
        pipeline::failed_before_start(
            "prepare",
            "the amazon-ebs builder is not available yet".into(),
        ),
        ctx,
    )
}
