//! Templates: reading, checking and resolving what a user wrote.
//!
//! `load` turns a file plus variable inputs into a [`Template`] or into every
//! diagnostic at once. It never touches the network.

pub mod check;
pub mod document;
pub mod expr;
mod fields;
mod functions;
mod hints;
pub mod interpolate;
mod load;
pub mod provisioners;
mod rebuild;
mod retention;
pub mod schema;
pub mod source;
pub mod sources;
pub mod value;
mod variables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use document::Diagnostic;
pub(crate) use fields::fields_of;
pub use interpolate::Scope;
pub use interpolate::Typed;
pub use load::load;
pub use rebuild::RebuildPolicy;
pub use retention::Retention;
pub use schema::{HumanDuration, ProvisionerCommon, SshConfig};
pub use source::SourceConfig;
pub use variables::{VarInputs, VarType};

use crate::provisioner::ProvisionerConfig;

/// A template that passed every check, with its variables resolved.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub variables: Vec<Variable>,
    pub locals: Vec<Local>,
    pub sources: Vec<Source>,
    pub provisioners: Vec<Provisioner>,
    /// `var.*`, `image.*`: the values known before any build starts.
    pub scope: Scope,
    /// `rebuild` and `max_age`.
    pub rebuild: RebuildPolicy,
    /// `[retention]`, for `prune`.
    pub retention: Retention,
}

impl Template {
    /// The folder relative paths in the template are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Values of sensitive variables, and of locals made from them, to be
    /// masked wherever text is shown.
    pub fn secrets(&self) -> Vec<String> {
        secrets(&self.variables, &self.locals)
    }

    /// The provisioners that run for the source `name`, in order.
    pub fn provisioners_for<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Provisioner> + 'a {
        self.provisioners.iter().filter(move |p| p.applies_to(name))
    }
}

/// The values of the sensitive ones among `variables` and `locals` (each
/// item of a list or map on its own), to be masked wherever text is shown.
/// The one collection both the loader (for its diagnostics) and a loaded
/// template use.
pub(crate) fn secrets(variables: &[Variable], locals: &[Local]) -> Vec<String> {
    let vars = variables
        .iter()
        .filter(|v| v.sensitive)
        .filter_map(|v| v.value.as_ref());
    let locals = locals.iter().filter(|l| l.sensitive).map(|l| &l.value);
    vars.chain(locals)
        .flat_map(|v| match v {
            Typed::List(items) => items.clone(),
            Typed::Map(map) => map.values().cloned().collect(),
            other => other.as_text().into_iter().collect(),
        })
        .filter(|v| !v.is_empty())
        .collect()
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub kind: VarType,
    pub value: Option<Typed>,
    pub description: Option<String>,
    pub sensitive: bool,
}

/// `[locals]`: a value computed once from variables, the environment,
/// other locals and functions.
#[derive(Debug, Clone)]
pub struct Local {
    pub name: String,
    pub value: Typed,
    /// Made from a sensitive variable (or local), so masked like one.
    pub sensitive: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub ssh: SshConfig,
    pub config: Arc<dyn SourceConfig>,
    /// Settings taken from `[source_defaults.TYPE]`, in the order written there.
    pub defaulted: Vec<String>,
    /// The type's settings as written (shared ones included, references
    /// unexpanded), for the build's fingerprint.
    pub written: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Provisioner {
    /// 1-based position in the template, as users count.
    pub number: usize,
    /// Where it is written, for messages: `templates/httpd.toml:14`.
    pub location: String,
    pub common: ProvisionerCommon,
    /// Its table as written (references unexpanded), for the build's fingerprint.
    pub written: serde_json::Value,
    /// The type's own settings, and what it does.
    pub kind: Arc<dyn ProvisionerConfig>,
}

impl Provisioner {
    pub fn applies_to(&self, source: &str) -> bool {
        let only = &self.common.only;
        (only.is_empty() || only.iter().any(|s| s == source))
            && !self.common.except.iter().any(|s| s == source)
    }

    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
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

/// A name made of letters, digits and `_`, not starting with a digit.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
