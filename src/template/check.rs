//! Load-time checks of one table (a source, a provisioner): the errors they
//! find, located by key, and the checks most kinds share.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::document::{Diagnostic, Document, KeyPath};
use super::interpolate::Scope;
use super::value::{self, Value};

/// Collects diagnostics for one table, located by key.
pub struct Checker<'a> {
    pub doc: &'a Document,
    pub base: KeyPath,
    pub diagnostics: &'a mut Vec<Diagnostic>,
    /// Values known at load time (`var.*`, `local.*`, `image.*`), for checks on expanded text.
    pub known: &'a Scope,
    /// Where settings this table does not write come from
    /// (`source_defaults.TYPE`), so errors about them point there.
    pub defaults: Option<KeyPath>,
}

impl Checker<'_> {
    /// An error about the value of `key` in this table (`""`: the table itself).
    pub fn error(&mut self, key: &str, message: impl Into<String>) -> &mut Diagnostic {
        let path = if key.is_empty() {
            self.base.clone()
        } else {
            self.base.key(key)
        };
        self.error_at(&path, message)
    }

    /// An error about a value anywhere (a list item, a tag).
    pub fn error_at(&mut self, path: &KeyPath, message: impl Into<String>) -> &mut Diagnostic {
        let from_defaults = || {
            let defaults = self.defaults.as_ref()?;
            let rest = path.0.strip_prefix(self.base.0.as_slice())?;
            let first = defaults.clone();
            let first = KeyPath([first.0, rest.first().cloned().into_iter().collect()].concat());
            self.doc.value_at(&first)?;
            let mut there = defaults.clone();
            there.0.extend(rest.iter().cloned());
            self.doc.span_of(&there)
        };
        let span = match self.doc.value_at(path) {
            Some(v) => Some(v.span()),
            None => from_defaults().or_else(|| self.doc.span_of(path)),
        };
        self.diagnostics.push(self.doc.diagnostic(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn has(&self, key: &str) -> bool {
        self.doc.value_at(&self.base.key(key)).is_some()
    }

    /// Reads `value` as `T` (references resolved, strings converted, empty
    /// strings as unset); a mismatch is reported where it was written.
    pub fn deserialize<T: DeserializeOwned>(&mut self, value: Value) -> Option<T> {
        match value::deserialize::<T>(value, self.known) {
            Ok(v) => Some(v),
            Err(e) => {
                if !e.quiet {
                    self.diagnostics
                        .push(self.doc.diagnostic(e.span.clone(), e.message));
                }
                None
            }
        }
    }

    /// A path relative to the template must exist, unless it is only known at build time.
    pub fn local_file(&mut self, path: &KeyPath, file: &str) {
        if file.contains("${") {
            return;
        }
        let full = self.doc.path.parent().unwrap_or(Path::new(".")).join(file);
        if !full.exists() {
            self.error_at(
                path,
                format!("`{file}` does not exist (looked for {})", full.display()),
            );
        }
    }
}
