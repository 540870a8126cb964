//! Reads a template file and checks it whole, reporting every problem at once.
//!
//! The top level and variables are read here; `sources`, `provisioners` and
//! `references` each check one part of the document.

mod provisioners;
mod references;
mod sources;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::check::Checker;
use super::document::{Diagnostic, Document, KeyPath, did_you_mean};
use super::fields::fields_of;
use super::interpolate::Scope;
use super::schema::VariableDef;
use super::value::Value;
use super::variables::{self, VarInputs};
use super::{Template, Variable, is_identifier};

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "variables",
    "source",
    "provisioner",
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
    };
    let template = loader.template(inputs);
    match template {
        Some(t) if loader.diags.is_empty() => Ok(t),
        _ => {
            let mut diags = loader.diags;
            diags.sort_by_key(|d| (d.line, d.column));
            diags.dedup();
            Err(diags)
        }
    }
}

struct Loader<'a> {
    doc: &'a Document,
    diags: Vec<Diagnostic>,
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

        let variables = self.variables(inputs);
        let mut scope = Scope::default();
        for v in &variables {
            if let Some(value) = &v.value {
                scope.set(format!("var.{}", v.name), value.clone());
            }
        }
        let expanded_name = name.as_ref().and_then(|n| scope.expand(n).ok());
        let expanded_version = version.as_ref().and_then(|v| scope.expand(v).ok());
        if let Some(n) = &expanded_name {
            scope.set("image.name", n.clone());
        }
        if let Some(v) = &expanded_version {
            scope.set("image.version", v.clone());
        }

        let sources = self.sources(&scope);
        let provisioners = self.provisioners(&sources, &scope);
        self.references(&sources, &provisioners, &variables);
        if let Some(name) = &name {
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
            sources,
            provisioners: provisioners.into_iter().map(|(p, _)| p).collect(),
            scope,
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
        path: &KeyPath,
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
            let hint = did_you_mean(key_name, allowed.iter().flat_map(|s| s.iter().copied()));
            let d = self.error(
                Some(key.span()),
                format!("unknown key `{key_name}` {place}"),
            );
            if let Some(hint) = hint {
                d.help = Some(format!("did you mean `{hint}`?"));
            }
            let _ = path;
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
        }
    }

    fn variables(&mut self, inputs: &VarInputs) -> Vec<Variable> {
        let path = KeyPath::root().key("variables");
        let mut out = Vec::new();
        let Some(table) = self.table_at(&path, "one `[variables.NAME]` table per variable") else {
            return out;
        };
        let assigned = match variables::gather(inputs) {
            Ok(a) => a,
            Err(mut d) => {
                self.diags.append(&mut d);
                BTreeMap::new()
            }
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            let var_path = path.key(&name);
            if !is_identifier(&name) {
                self.error(
                    Some(key.span()),
                    format!("variable name `{name}` may contain only letters, digits and `_`"),
                );
            }
            let Some(def_table) =
                self.table_at(&var_path, "with `default`, `description`, `sensitive`")
            else {
                continue;
            };
            if !self.unknown_keys(
                &var_path,
                def_table,
                &[fields_of::<VariableDef>()],
                &format!("in variable `{name}`"),
            ) {
                continue;
            }
            let Some(def) = self
                .checker(&var_path, &Scope::default())
                .deserialize::<VariableDef>(value.clone())
            else {
                continue;
            };
            let set = assigned.get(&name).map(|a| a.value.clone());
            let value_now = set.or(def.default.clone());
            if value_now.is_none() {
                self.error(Some(key.span()), format!("variable `{name}` has no value"))
                    .help = Some(format!(
                    "set it with `--var {name}=VALUE`, a `--var-file`, or IMGBUILD_VAR_{name}; or give it a `default`"
                ));
            }
            out.push(Variable {
                name,
                value: value_now,
                description: def.description,
                sensitive: def.sensitive,
            });
        }
        for (name, a) in &assigned {
            if !table.contains_key(name.as_str()) && !a.origin.starts_with("environment") {
                let hint = did_you_mean(name, table.iter().map(|(k, _)| k.get_ref().as_ref()));
                let d = self.doc.diagnostic(
                    Some(0..0),
                    format!(
                        "{} sets `{name}`, which the template does not declare",
                        a.origin
                    ),
                );
                self.diags.push(match hint {
                    Some(h) => d.with_help(format!("did you mean `{h}`?")),
                    None => d.with_help(format!("declare it with a `[variables.{name}]` table")),
                });
            }
        }
        out
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
