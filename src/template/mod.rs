//! Templates: reading, checking and resolving what a user wrote.
//!
//! `load` turns a file plus variable inputs into a [`Template`] or into every
//! diagnostic at once. It never touches the network.

pub mod document;
mod fields;
pub mod interpolate;
mod load;
mod rebuild;
pub mod schema;
pub mod source;
pub mod sources;
mod variables;

use std::path::{Path, PathBuf};

pub use document::Diagnostic;
pub use interpolate::Scope;
pub use load::load;
pub use rebuild::RebuildPolicy;
pub use schema::{Direction, FileConfig, HumanDuration, ProvisionerCommon, ShellConfig, SshConfig};
pub use source::SourceConfig;
pub use variables::VarInputs;

/// A template that passed every check, with its variables resolved.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub variables: Vec<Variable>,
    pub sources: Vec<Source>,
    pub provisioners: Vec<Provisioner>,
    /// `var.*`, `image.*`: the values known before any build starts.
    pub scope: Scope,
    /// `rebuild` and `max_age`.
    pub rebuild: RebuildPolicy,
}

impl Template {
    /// The folder relative paths in the template are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Values of sensitive variables, to be masked wherever text is shown.
    pub fn secrets(&self) -> Vec<String> {
        self.variables
            .iter()
            .filter(|v| v.sensitive)
            .filter_map(|v| v.value.clone())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The provisioners that run for the source `name`, in order.
    pub fn provisioners_for<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Provisioner> + 'a {
        self.provisioners.iter().filter(move |p| p.applies_to(name))
    }
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub value: Option<String>,
    pub description: Option<String>,
    pub sensitive: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub ssh: SshConfig,
    pub config: SourceConfig,
}

#[derive(Debug, Clone)]
pub struct Provisioner {
    /// 1-based position in the template, as users count.
    pub number: usize,
    /// Where it is written, for messages: `templates/httpd.toml:14`.
    pub location: String,
    pub common: ProvisionerCommon,
    pub kind: ProvisionerKind,
}

#[derive(Debug, Clone)]
pub enum ProvisionerKind {
    Shell(ShellConfig),
    File(FileConfig),
}

impl Provisioner {
    pub fn applies_to(&self, source: &str) -> bool {
        let only = &self.common.only;
        (only.is_empty() || only.iter().any(|s| s == source))
            && !self.common.except.iter().any(|s| s == source)
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ProvisionerKind::Shell(_) => "shell",
            ProvisionerKind::File(_) => "file",
        }
    }

    /// `provisioner 2 (shell, templates/httpd.toml:14)`
    pub fn label(&self) -> String {
        format!(
            "provisioner {} ({}, {})",
            self.number,
            self.type_name(),
            self.location
        )
    }
}
