//! `type = "qemu"`: boot a local base image in QEMU, provision, write a qcow2.

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

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    /// A local qcow2 or raw base image.
    pub base_image: Option<String>,
    /// An https:// URL of a base image; needs `sha256`.
    pub base_url: Option<String>,
    pub sha256: Option<String>,
    /// Build the base from distribution packages instead.
    pub bootstrap: Option<BootstrapConfig>,
    /// Grows the build disk, e.g. "4G".
    pub disk_size: Option<String>,
    #[serde(default)]
    pub accelerator: Accelerator,
    pub memory: Option<u32>,
    pub cpus: Option<u32>,
    pub output_directory: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    pub shutdown_timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    pub distribution: String,
    pub suite: String,
    pub mirror: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Zlib,
    None,
}

#[async_trait]
impl SourceConfig for QemuConfig {
    fn type_name(&self) -> &'static str {
        Self::TYPE
    }

    fn provides(&self) -> &'static [&'static str] {
        &["id", "image"]
    }

    async fn build(&self, ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
        crate::builder::qemu::run(ctx, self.clone(), opts).await
    }

    async fn fingerprint_base(&self, template: &Template) -> Result<Vec<Part>, String> {
        Ok(vec![
            crate::builder::qemu::fingerprint_base(self, template, &template.scope).await?,
        ])
    }

    async fn image_stores(
        &self,
        template: &Template,
        _regions: &[String],
    ) -> Result<Vec<Arc<dyn ImageStore>>, String> {
        Ok(vec![crate::builder::qemu::image_store(template, self)])
    }
}

impl SourceSchema for QemuConfig {
    const TYPE: &'static str = "qemu";

    fn check(&self, _ssh: &SshConfig, checker: &mut Checker<'_>) {
        let given = [
            self.base_image.is_some(),
            self.base_url.is_some(),
            self.bootstrap.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            checker.error(
                "",
                "a `qemu` source needs exactly one of `base_image`, `base_url` or `bootstrap`",
            );
        }
        if self.base_url.is_some() && self.sha256.is_none() {
            checker.error(
                "base_url",
                "`base_url` needs `sha256`, the image's checksum",
            );
        }
    }
}
