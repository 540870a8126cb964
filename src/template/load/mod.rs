//! Reads a template file and checks it whole, reporting every problem at once.
//!
//! The top level and variables are read here; `sources`, `provisioners` and
//! `references` each check one part of the document.

mod provisioners;
mod references;
mod sources;
mod variables;

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Template;
use super::check::Checker;
use super::document::{Diagnostic, Document, KeyPath};
use super::hints;
use super::interpolate::Scope;
use super::value::Value;
use super::variables::VarInputs;
use crate::mask::Mask;

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "variables",
    "locals",
    "source_defaults",
    "source",
    "provisioner",
    "rebuild",
    "max_age",
    "retention",
];

/// Loads and checks `path`. Either every check passed, or every problem found
/// is returned, each with its location.
pub fn load(path: &Path, inputs: &VarInputs) -> Result<Template, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read template: {e}"),
        )]
    })?;
    let doc = Document::parse(path, text)?;
    let mut loader = Loader {
        doc: &doc,
        diags: Vec::new(),
        mask: Mask::default(),
    };
    let template = loader.template(inputs);
    match template {
        Some(t) if loader.diags.is_empty() => Ok(t),
        _ => {
            let mask = loader.mask;
            let mut diags = loader.diags;
            // A check may quote a resolved value (a path made from a
            // sensitive variable, say): no diagnostic shows one.
            if !mask.is_empty() {
                for d in &mut diags {
                    d.message = mask.text(&d.message);
                    d.help = d.help.as_deref().map(|h| mask.text(h));
                }
            }
            diags.sort_by_key(|d| (d.line, d.column));
            diags.dedup();
            Err(diags)
        }
    }
}

struct Loader<'a> {
    doc: &'a Document,
    diags: Vec<Diagnostic>,
    /// The values of sensitive variables and locals, once resolved.
    mask: Mask,
}

impl<'a> Loader<'a> {
    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(self.doc.diagnostic(span, message));
        self.diags.last_mut().expect("just pushed")
    }

    fn error_at(&mut self, path: &KeyPath, message: impl Into<String>) -> &mut Diagnostic {
        let span = self.doc.span_of(path);
        self.error(span, message)
    }

    fn template(&mut self, inputs: &VarInputs) -> Option<Template> {
        let root = self.doc.root.get_ref();
        self.unknown_keys(
            &KeyPath::root(),
            root,
            &[TOP_LEVEL_KEYS],
            "at the top level",
        );

        let name = self.required_string(
            &KeyPath::root().key("name"),
            "the image name, e.g. `name = \"httpd\"`",
        );
        let version = self.required_string(
            &KeyPath::root().key("version"),
            "the image version, e.g. `version = \"1.0\"`",
        );
        let description = self.optional_string(&KeyPath::root().key("description"));

        let mut scope = Scope::in_dir(self.doc.path.parent().unwrap_or(Path::new(".")));
        let variables = self.variables(inputs, &mut scope);
        let locals = self.locals(&mut scope, &variables);
        self.mask = Mask::new(super::secrets(&variables, &locals));
        let expanded_name = name.as_ref().and_then(|n| scope.expand(n).ok());
        let expanded_version = version.as_ref().and_then(|v| scope.expand(v).ok());
        if let Some(n) = &expanded_name {
            scope.set("image.name", n.clone());
        }
        if let Some(v) = &expanded_version {
            scope.set("image.version", v.clone());
        }

        let rebuild = super::rebuild::read(self.doc, &mut self.diags);
        let retention = super::retention::read(self.doc, &mut self.diags);
        let sources = self.sources(&scope);
        let provisioners = self.provisioners(&sources, &scope);
        self.references(&references::Declared {
            sources: &sources,
            provisioners: &provisioners,
            vars: &variables,
            locals: &locals,
        });
        // The name as it will be: functions and locals may build it.
        if let Some(name) = expanded_name.as_ref().or(name.as_ref()) {
            self.check_name(name);
        }

        let name = expanded_name?;
        let version = expanded_version?;
        Some(Template {
            path: self.doc.path.clone(),
            name,
            version,
            description: description.and_then(|d| scope.expand(&d).ok()),
            variables,
            locals,
            sources,
            provisioners: provisioners.into_iter().map(|(p, _)| p).collect(),
            scope,
            rebuild,
            retention,
        })
    }

    fn check_name(&mut self, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-${}".contains(c));
        if !ok {
            self.error_at(
                &KeyPath::root().key("name"),
                "`name` may contain only letters, digits, `.`, `_` and `-`",
            );
        }
    }

    /// Reports every key of `table` not in any of `allowed`.
    fn unknown_keys(
        &mut self,
        _path: &KeyPath,
        table: &DeTable<'static>,
        allowed: &[&[&str]],
        place: &str,
    ) -> bool {
        let mut clean = true;
        for (key, _) in table.iter() {
            let key_name = key.get_ref().as_ref();
            if allowed.iter().any(|set| set.contains(&key_name)) {
                continue;
            }
            clean = false;
            let help =
                hints::unknown_key_help(key_name, allowed.iter().flat_map(|s| s.iter().copied()));
            self.error(
                Some(key.span()),
                format!("unknown key `{key_name}` {place}"),
            )
            .help = help;
        }
        clean
    }

    fn required_string(&mut self, path: &KeyPath, what: &str) -> Option<String> {
        match self.doc.value_at(path) {
            None => {
                self.diags.push(
                    self.doc
                        .diagnostic(Some(0..0), format!("missing `{path}`"))
                        .with_help(format!("add {what}")),
                );
                None
            }
            Some(_) => self.optional_string(path),
        }
    }

    fn optional_string(&mut self, path: &KeyPath) -> Option<String> {
        let value = self.doc.value_at(path)?;
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.error(Some(value.span()), format!("`{path}` must be a string"));
                None
            }
        }
    }

    fn table_at(&mut self, path: &KeyPath, what: &str) -> Option<&'a DeTable<'static>> {
        let doc = self.doc;
        let value = doc.value_at(path)?;
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.error(
                    Some(value.span()),
                    format!("`{path}` must be a table ({what})"),
                );
                None
            }
        }
    }

    /// A checker for the table at `base`, reporting into this loader.
    fn checker<'s>(&'s mut self, base: &KeyPath, known: &'s Scope) -> Checker<'s> {
        Checker {
            doc: self.doc,
            base: base.clone(),
            diagnostics: &mut self.diags,
            known,
            defaults: None,
        }
    }
}

/// A copy of `table` with only `keys`, keeping spans so errors still point home.
pub(super) fn subtable(whole: &Value, table: &DeTable<'static>, keys: &[&str]) -> Value {
    let mut sub = DeTable::new();
    for (k, v) in table.iter() {
        if keys.contains(&k.get_ref().as_ref()) {
            sub.insert(k.clone(), v.clone());
        }
    }
    Spanned::new(whole.span(), DeValue::Table(sub))
}

pub(super) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
