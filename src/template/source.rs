//! `[source.NAME]` tables: which builder types exist, what each accepts, and
//! the checks each makes at load time (no network calls).

use std::path::Path;

use serde::Deserialize;

use super::document::{Diagnostic, Document, KeyPath};
use super::interpolate::Scope;
use super::schema::{SshConfig, SshHostConfig};
use super::sources::{AmazonEbsConfig, QemuConfig};

/// Collects diagnostics for one table, located by key.
pub struct Checker<'a> {
    pub doc: &'a Document,
    pub base: KeyPath,
    pub diagnostics: &'a mut Vec<Diagnostic>,
    /// Values known at load time (`var.*`, `image.*`), for checks on expanded text.
    pub known: &'a Scope,
}

impl Checker<'_> {
    /// An error about the value of `key` in this table.
    pub fn error(&mut self, key: &str, message: impl Into<String>) -> &mut Diagnostic {
        let path = if key.is_empty() {
            self.base.clone()
        } else {
            self.base.key(key)
        };
        let span = self.doc.span_of(&path);
        self.diagnostics.push(self.doc.diagnostic(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// An error about the value at `path`, anywhere in the document.
    pub fn error_at(&mut self, path: &KeyPath, message: impl Into<String>) -> &mut Diagnostic {
        let span = self.doc.span_of(path);
        self.diagnostics.push(self.doc.diagnostic(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn has(&self, key: &str) -> bool {
        self.doc.value_at(&self.base.key(key)).is_some()
    }

    /// A path relative to the template must exist, unless it is only known
    /// at build time; `path` locates the setting that names it.
    pub fn local_path(&mut self, path: &KeyPath, file: &str) {
        if file.contains("${") {
            return;
        }
        let full = self.doc.path.parent().unwrap_or(Path::new(".")).join(file);
        if !full.exists() {
            let span = self.doc.span_of(path);
            self.diagnostics.push(self.doc.diagnostic(
                span,
                format!("`{file}` does not exist (looked for {})", full.display()),
            ));
        }
    }
}

/// What each builder type declares about its configuration.
pub trait SourceSchema: for<'de> Deserialize<'de> {
    const TYPE: &'static str;
    /// Values the builder provides as `${source.NAME}` while it runs.
    const PROVIDES: &'static [&'static str];
    /// Checks that need more than types: required combinations, formats.
    fn check(&self, ssh: &SshConfig, checker: &mut Checker<'_>);
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    Ssh(SshHostConfig),
    AmazonEbs(Box<AmazonEbsConfig>),
    Qemu(Box<QemuConfig>),
}

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Ssh(_) => SshHostConfig::TYPE,
            SourceConfig::AmazonEbs(_) => AmazonEbsConfig::TYPE,
            SourceConfig::Qemu(_) => QemuConfig::TYPE,
        }
    }

    pub fn provides(&self) -> &'static [&'static str] {
        provides(self.type_name()).unwrap_or(&[])
    }
}

pub const SOURCE_TYPES: &[&str] = &[AmazonEbsConfig::TYPE, QemuConfig::TYPE, SshHostConfig::TYPE];

/// Values under `source.` that every builder provides.
pub const COMMON_PROVIDES: &[&str] = &["name", "type"];

pub fn provides(type_name: &str) -> Option<&'static [&'static str]> {
    match type_name {
        SshHostConfig::TYPE => Some(SshHostConfig::PROVIDES),
        AmazonEbsConfig::TYPE => Some(AmazonEbsConfig::PROVIDES),
        QemuConfig::TYPE => Some(QemuConfig::PROVIDES),
        _ => None,
    }
}

/// The builder-specific keys a source type accepts.
pub fn fields_for(type_name: &str) -> Option<&'static [&'static str]> {
    use super::fields::fields_of;
    match type_name {
        SshHostConfig::TYPE => Some(fields_of::<SshHostConfig>()),
        AmazonEbsConfig::TYPE => Some(fields_of::<AmazonEbsConfig>()),
        QemuConfig::TYPE => Some(fields_of::<QemuConfig>()),
        _ => None,
    }
}

/// Deserializes the builder-specific part of a source and runs its checks.
pub fn parse_source(
    type_name: &str,
    value: toml::Spanned<toml::de::DeValue<'static>>,
    ssh: &SshConfig,
    checker: &mut Checker<'_>,
) -> Option<SourceConfig> {
    fn typed<T: SourceSchema>(
        value: toml::Spanned<toml::de::DeValue<'static>>,
        ssh: &SshConfig,
        checker: &mut Checker<'_>,
    ) -> Option<T> {
        match T::deserialize(toml::de::ValueDeserializer::from(value)) {
            Ok(config) => {
                config.check(ssh, checker);
                Some(config)
            }
            Err(e) => {
                let d = checker.doc.diagnostic(e.span(), e.message().to_string());
                checker.diagnostics.push(d);
                None
            }
        }
    }
    match type_name {
        SshHostConfig::TYPE => typed::<SshHostConfig>(value, ssh, checker).map(SourceConfig::Ssh),
        AmazonEbsConfig::TYPE => typed::<AmazonEbsConfig>(value, ssh, checker)
            .map(|c| SourceConfig::AmazonEbs(Box::new(c))),
        QemuConfig::TYPE => {
            typed::<QemuConfig>(value, ssh, checker).map(|c| SourceConfig::Qemu(Box::new(c)))
        }
        _ => None,
    }
}

impl SourceSchema for SshHostConfig {
    const TYPE: &'static str = "ssh";
    const PROVIDES: &'static [&'static str] = &["host"];

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
