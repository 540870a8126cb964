//! `type = "qemu"`.

use crate::pipeline::{self, RunOptions, RunReport};
use crate::template::sources::QemuConfig;

use super::BuildContext;

pub async fn run(
    ctx: BuildContext,
    _config: QemuConfig,
    _opts: &RunOptions,
) -> (RunReport, BuildContext) {
    (
        pipeline::failed_before_start("prepare", "the qemu builder is not available yet".into()),
        ctx,
    )
}
