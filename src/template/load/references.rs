//! Every `${...}` in the document, checked against what is known where it
//! stands: declared variables, set environment variables, and the values
//! the sources that reach it provide.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::{Loader, quoted_list};
use crate::template::document::{KeyPath, Seg, did_you_mean};
use crate::template::interpolate::references;
use crate::template::source::COMMON_PROVIDES;
use crate::template::value::Value;
use crate::template::{Provisioner, Source, Variable};

impl Loader<'_> {
    pub(super) fn references(
        &mut self,
        sources: &[Source],
        provisioners: &[(Provisioner, KeyPath)],
        vars: &[Variable],
    ) {
        let mut strings = Vec::new();
        collect_strings(&KeyPath::root(), self.doc.root.get_ref(), &mut strings);
        for (path, text, span) in strings {
            let Ok(refs) = references(&text) else {
                self.error(Some(span), "unterminated `${`").help =
                    Some("write `$${` for a literal `${`".into());
                continue;
            };
            for r in refs {
                let sub = self.sub_span(&span, &text[r.range.clone()]);
                if let Some((message, help)) =
                    self.check_reference(&path, &r.expr, sources, provisioners, vars)
                {
                    let d = self.error(Some(sub), message);
                    d.help = help;
                }
            }
        }
    }

    fn sub_span(&self, span: &Range<usize>, needle: &str) -> Range<usize> {
        match self.doc.text[span.clone()].find(needle) {
            Some(i) => span.start + i..span.start + i + needle.len(),
            None => span.clone(),
        }
    }

    fn check_reference(
        &self,
        path: &KeyPath,
        expr: &str,
        sources: &[Source],
        provisioners: &[(Provisioner, KeyPath)],
        vars: &[Variable],
    ) -> Option<(String, Option<String>)> {
        let section = match path.0.first() {
            Some(Seg::Key(k)) => k.as_str(),
            _ => "",
        };
        if section == "variables" {
            return Some((
                "variables cannot contain references".into(),
                Some("write `$${` for a literal `${`".into()),
            ));
        }
        let (namespace, name) = expr.split_once('.').unwrap_or((expr, ""));
        let at_top = matches!(section, "name" | "version" | "description");
        match namespace {
            "var" => {
                if vars.iter().any(|v| v.name == name) {
                    return None;
                }
                let hint = did_you_mean(name, vars.iter().map(|v| v.name.as_str()));
                Some((
                    format!(
                        "`${{{expr}}}` refers to variable `{name}`, which the template does not declare"
                    ),
                    Some(hint.map_or_else(
                        || format!("declare it with a `[variables.{name}]` table"),
                        |h| format!("did you mean `var.{h}`?"),
                    )),
                ))
            }
            "env" if std::env::var_os(name).is_some() => None,
            "env" => Some((
                format!("`${{{expr}}}`: environment variable `{name}` is not set"),
                None,
            )),
            "build" | "image" if at_top => Some((
                format!("`${{{expr}}}` is not known yet here; only `var.` and `env.` are"),
                None,
            )),
            "build" if ["id", "timestamp", "name"].contains(&name) => None,
            "image" if ["name", "version"].contains(&name) => None,
            "source" if !at_top => {
                let applicable: Vec<&Source> = match section {
                    "source" => match path.0.get(1) {
                        Some(Seg::Key(n)) => sources.iter().filter(|s| &s.name == n).collect(),
                        _ => Vec::new(),
                    },
                    _ => {
                        let p = provisioners
                            .iter()
                            .find(|(_, p)| path.0.starts_with(&p.0))
                            .map(|(p, _)| p);
                        sources
                            .iter()
                            .filter(|s| p.is_none_or(|p| p.applies_to(&s.name)))
                            .collect()
                    }
                };
                let missing: Vec<&str> = applicable
                    .iter()
                    .filter(|s| {
                        !COMMON_PROVIDES.contains(&name) && !s.config.provides().contains(&name)
                    })
                    .map(|s| s.name.as_str())
                    .collect();
                if missing.is_empty() {
                    return None;
                }
                Some((
                    format!(
                        "`${{{expr}}}` is not provided by source {}",
                        quoted_list(&missing)
                    ),
                    None,
                ))
            }
            _ => {
                let help = if expr
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    format!(
                        "for the shell variable, write `$${{{expr}}}`; for the environment, `${{env.{expr}}}`"
                    )
                } else {
                    "references are `${var.NAME}`, `${env.NAME}`, `${build.id|timestamp|name}`, `${image.name|version}`, `${source.…}`; write `$${` for a literal `${`".into()
                };
                Some((format!("unknown reference `${{{expr}}}`"), Some(help)))
            }
        }
    }
}

/// Every string value in the tree, with its path and span; `type` keys excluded.
fn collect_strings(
    path: &KeyPath,
    table: &DeTable<'static>,
    out: &mut Vec<(KeyPath, String, Range<usize>)>,
) {
    for (key, value) in table.iter() {
        if key.get_ref() == "type" {
            continue;
        }
        collect_value(&path.key(key.get_ref()), value, out);
    }
}

fn collect_value(path: &KeyPath, value: &Value, out: &mut Vec<(KeyPath, String, Range<usize>)>) {
    match value.get_ref() {
        DeValue::String(s) => out.push((path.clone(), s.to_string(), value.span())),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_value(&path.index(i), item, out);
            }
        }
        DeValue::Table(t) => collect_strings(path, t, out),
        _ => {}
    }
}
