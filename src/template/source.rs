//! `[source.NAME]` tables: the table of source types, what each accepts, and
//! the checks each makes at load time (no network calls).
//!
//! A source type is a schema module under `sources/` (its settings, their
//! checks, and the builder that runs them) plus one line in [`KINDS`].

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use super::Template;
use super::check::Checker;
use super::fields::fields_of;
use super::schema::{SshConfig, SshHostConfig};
use super::sources::{AmazonEbsConfig, QemuConfig};
use super::value::Value;
use crate::builder::BuildContext;
use crate::family::listing::ImageStore;
use crate::fingerprint::Part;
use crate::pipeline::{RunOptions, RunReport};

/// A source's settings once loaded: what the rest of imgbuild asks of them.
#[async_trait]
pub trait SourceConfig: Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    /// Values the builder provides as `${source.NAME}` while it runs.
    fn provides(&self) -> &'static [&'static str];
    /// Runs the build with this type's builder.
    async fn build(&self, ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext);
    /// `build --dry-run`: checks what the build would need, making nothing.
    /// A type with nothing to check says so and succeeds.
    async fn dry_run(&self, mut ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
        ctx.events.info(format!(
            "--dry-run checks cloud permissions; a `{}` source has none to check",
            self.type_name()
        ));
        let nothing: Vec<Box<dyn crate::pipeline::Step<BuildContext>>> = Vec::new();
        let report = crate::pipeline::run(nothing, &mut ctx, opts).await;
        (report, ctx)
    }
    /// Settings that only shape the temporary machine's launch (network,
    /// market, timeouts), not what ends up in the image: the fingerprint
    /// leaves them out, as it does the SSH connection settings.
    fn launch_only_settings(&self) -> &'static [&'static str] {
        &[]
    }
    /// The fingerprint parts of the base this source would start from today
    /// (an AMI lookup, a checksum, the state of a package archive).
    async fn fingerprint_base(&self, _template: &Template) -> Result<Vec<Part>, String> {
        Ok(Vec::new())
    }
    /// What `validate` should point out though nothing is wrong (a public image).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Where this source keeps the family's images, for `images` and
    /// `prune` (none for a source that makes no image); `regions`, when
    /// given, replaces the regions the template names.
    async fn image_stores(
        &self,
        _template: &Template,
        _regions: &[String],
    ) -> Result<Vec<Arc<dyn ImageStore>>, String> {
        Ok(Vec::new())
    }
}

/// What each source type declares about its configuration.
pub trait SourceSchema: DeserializeOwned + SourceConfig + 'static {
    const TYPE: &'static str;
    /// Checks that need more than types: required combinations, formats.
    fn check(&self, ssh: &SshConfig, checker: &mut Checker<'_>);
}

/// One source type: its name, its keys, and how to load it.
pub struct Kind {
    pub name: &'static str,
    pub fields: fn() -> &'static [&'static str],
    pub load: fn(Value, &SshConfig, &mut Checker<'_>) -> Option<Arc<dyn SourceConfig>>,
}

impl Kind {
    const fn of<T: SourceSchema>() -> Kind {
        Kind {
            name: T::TYPE,
            fields: fields_of::<T>,
            load: load::<T>,
        }
    }
}

fn load<T: SourceSchema>(
    value: Value,
    ssh: &SshConfig,
    checker: &mut Checker<'_>,
) -> Option<Arc<dyn SourceConfig>> {
    let config: T = checker.deserialize(value)?;
    config.check(ssh, checker);
    Some(Arc::new(config))
}

/// Every source type, in the order error messages list them.
pub const KINDS: &[Kind] = &[
    Kind::of::<AmazonEbsConfig>(),
    Kind::of::<QemuConfig>(),
    Kind::of::<SshHostConfig>(),
];

pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// Values under `source.` that every builder provides.
pub const COMMON_PROVIDES: &[&str] = &["name", "type"];

#[async_trait]
impl SourceConfig for SshHostConfig {
    fn type_name(&self) -> &'static str {
        Self::TYPE
    }

    fn provides(&self) -> &'static [&'static str] {
        &["host"]
    }

    async fn build(&self, ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
        crate::builder::ssh_host::run(ctx, opts).await
    }
}

impl SourceSchema for SshHostConfig {
    const TYPE: &'static str = "ssh";

    fn check(&self, ssh: &SshConfig, checker: &mut Checker<'_>) {
        if ssh.ssh_host.is_none() {
            checker
                .error(
                    "",
                    "an `ssh` source needs `ssh_host`, the machine to provision",
                )
                .help = Some("add `ssh_host = \"203.0.113.10\"` to this source".into());
        }
        if ssh.ssh_username.is_none() {
            checker.error("", "an `ssh` source needs `ssh_username`");
        }
    }
}
