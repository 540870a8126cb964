//! Every `${...}` in the document, checked against what is known where it
//! stands: declared variables and locals, set environment variables, known
//! functions, and the values the sources that reach it provide. Leftover
//! Packer syntax (`{{timestamp}}`) is pointed out with what to write instead.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::{Loader, quoted_list};
use crate::template::document::{KeyPath, Seg};
use crate::template::expr::{self, Expr};
use crate::template::functions;
use crate::template::hints::did_you_mean;
use crate::template::interpolate::references;
use crate::template::source::COMMON_PROVIDES;
use crate::template::value::Value;
use crate::template::{Local, Provisioner, Source, Variable};

/// What is declared, for checking references against.
pub(super) struct Declared<'a> {
    pub sources: &'a [Source],
    pub provisioners: &'a [(Provisioner, KeyPath)],
    pub vars: &'a [Variable],
    pub locals: &'a [Local],
}

impl Loader<'_> {
    pub(super) fn references(&mut self, declared: &Declared<'_>) {
        let mut strings = Vec::new();
        collect_strings(&KeyPath::root(), self.doc.root.get_ref(), &mut strings);
        for (path, text, span) in strings {
            // Variables and locals are computed at load time; their own
            // pass reports what they cannot use.
            if matches!(path.0.first(), Some(Seg::Key(k)) if k == "variables" || k == "locals") {
                continue;
            }
            for (at, found, instead) in go_templates(&text) {
                let sub = self.sub_span_from(&span, &text, at, &found);
                self.error(
                    Some(sub),
                    format!("`{found}` is Packer template syntax, which imgbuild does not expand"),
                )
                .help = Some(instead);
            }
            let Ok(refs) = references(&text) else {
                self.error(Some(span), "unterminated `${`").help =
                    Some("write `$${` for a literal `${`".into());
                continue;
            };
            for r in refs {
                let sub = self.sub_span(&span, &text[r.range.clone()]);
                let e = match expr::parse(&r.expr) {
                    Ok(e) => e,
                    Err(e) => {
                        self.error(Some(sub), e.to_string());
                        continue;
                    }
                };
                if let Some((message, help)) = check_calls(&r.expr, &e) {
                    self.error(Some(sub), message).help = help;
                    continue;
                }
                for name in e.references() {
                    let fallback = matches!(
                        &e,
                        Expr::Ref {
                            fallback: Some(_),
                            ..
                        }
                    );
                    if fallback {
                        continue;
                    }
                    let shown = if matches!(e, Expr::Ref { .. }) {
                        r.expr.clone()
                    } else {
                        name.to_string()
                    };
                    if let Some((message, help)) =
                        self.check_reference(&path, name, &shown, declared)
                    {
                        self.error(Some(sub.clone()), message).help = help;
                    }
                }
            }
        }
    }

    /// The span of `needle`, found at byte `at` of the string's value, in
    /// the document (where escapes may make the text longer).
    fn sub_span_from(
        &self,
        span: &Range<usize>,
        value: &str,
        at: usize,
        needle: &str,
    ) -> Range<usize> {
        let before = value[..at].matches(needle).count();
        let written = &self.doc.text[span.clone()];
        match written.match_indices(needle).nth(before) {
            Some((i, _)) => span.start + i..span.start + i + needle.len(),
            None => span.clone(),
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
        reference: &str,
        expr: &str,
        declared: &Declared<'_>,
    ) -> Option<(String, Option<String>)> {
        let (sources, provisioners, vars) =
            (declared.sources, declared.provisioners, declared.vars);
        let section = match path.0.first() {
            Some(Seg::Key(k)) => k.as_str(),
            _ => "",
        };
        let (namespace, name) = reference.split_once('.').unwrap_or((reference, ""));
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
            "local" => {
                if declared.locals.iter().any(|l| l.name == name) {
                    return None;
                }
                let hint = did_you_mean(name, declared.locals.iter().map(|l| l.name.as_str()));
                Some((
                    format!("`${{{expr}}}` refers to local `{name}`, which is not defined"),
                    Some(hint.map_or_else(
                        || format!("define it under `[locals]`: `{name} = \"…\"`"),
                        |h| format!("did you mean `local.{h}`?"),
                    )),
                ))
            }
            "env" if std::env::var_os(name).is_some() => None,
            "env" => Some((
                format!("`${{{expr}}}`: environment variable `{name}` is not set"),
                Some(format!(
                    "give a fallback for when it is not: `${{env.{name}:-value}}`"
                )),
            )),
            "build" | "image" if at_top => Some((
                format!(
                    "`${{{expr}}}` is not known yet here; only `var.`, `local.` and `env.` are"
                ),
                None,
            )),
            "build" if ["id", "timestamp", "name"].contains(&name) => None,
            "image" if ["name", "version", "build"].contains(&name) => None,
            "source" if !at_top => {
                let applicable: Vec<&Source> = match section {
                    "source" => match path.0.get(1) {
                        Some(Seg::Key(n)) => sources.iter().filter(|s| &s.name == n).collect(),
                        _ => Vec::new(),
                    },
                    "source_defaults" => match path.0.get(1) {
                        Some(Seg::Key(t)) => sources
                            .iter()
                            .filter(|s| s.config.type_name() == t)
                            .collect(),
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
                let help = if reference
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    format!(
                        "for the shell variable, write `$${{{expr}}}`; for the environment, `${{env.{expr}}}`"
                    )
                } else {
                    "references are `${var.NAME}`, `${local.NAME}`, `${env.NAME}`, `${build.id|timestamp|name}`, `${image.name|version|build}`, `${source.…}`; write `$${` for a literal `${`".into()
                };
                Some((format!("unknown reference `${{{expr}}}`"), Some(help)))
            }
        }
    }
}

/// An unknown function, or one called with the wrong number of arguments.
fn check_calls(text: &str, e: &Expr) -> Option<(String, Option<String>)> {
    for (name, given) in e.calls() {
        match functions::find(name) {
            None => {
                let names: Vec<&str> = functions::FUNCTIONS.iter().map(|f| f.name).collect();
                let help = match did_you_mean(name, names.iter().copied()) {
                    Some(h) => format!("did you mean `{h}`?"),
                    None => format!("the functions are {}", names.join(", ")),
                };
                return Some((
                    format!("`${{{text}}}` calls `{name}`, which is not a function"),
                    Some(help),
                ));
            }
            Some(f) if f.params.len() != given => {
                return Some((
                    format!(
                        "`${{{text}}}`: `{name}` takes {} argument{}, not {given}",
                        f.params.len(),
                        if f.params.len() == 1 { "" } else { "s" }
                    ),
                    Some(format!("write `{}`", f.signature())),
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Every `{{ … }}` in `text`: where, what, and what to write instead.
fn go_templates(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("{{").map(|i| from + i) {
        let Some(end) = text[start..].find("}}").map(|i| start + i + 2) else {
            break;
        };
        let found = &text[start..end];
        out.push((start, found.to_string(), instead_of(found)));
        from = end;
    }
    out
}

/// The imgbuild way to write a Packer template action.
fn instead_of(found: &str) -> String {
    let inner = found[2..found.len() - 2].trim();
    let words: Vec<&str> = inner.split_whitespace().collect();
    let arg = |i: usize| {
        words
            .get(i)
            .map(|w| w.trim_matches(|c| c == '`' || c == '"'))
            .unwrap_or("NAME")
    };
    match words.first().copied().unwrap_or("") {
        "timestamp" => "write `${build.timestamp}`".to_string(),
        "isotime" => "write `${timestamp(\"%Y-%m-%dT%H:%M:%SZ\")}` (strftime-style formats)".into(),
        "uuid" => "write `${uuid()}`".into(),
        "user" => format!("write `${{var.{}}}`", arg(1)),
        "env" => format!("write `${{env.{}}}`", arg(1)),
        "build_name" | ".BuildName" => "write `${build.name}`".into(),
        "build_type" | ".BuilderType" => "write `${source.type}`".into(),
        ".Path" => "in `execute_command`, write `{path}`".into(),
        ".Vars" => "in `execute_command`, write `{vars}`".into(),
        ".SourceAMI" => "write `${source.ami}`".into(),
        ".SourceAMIName" => "write `${source.ami_name}`".into(),
        ".SourceAMIOwner" => "write `${source.ami_owner}`".into(),
        ".SourceAMICreationDate" => "write `${source.ami_creation_date}`".into(),
        "lower" | "upper" | "replace" | "split" | "join" | "trim" => {
            format!("functions are called inside `${{…}}`, e.g. `${{{}(var.NAME)}}`", words[0])
        }
        _ => "references are written `${var.NAME}`, `${env.NAME}`, `${build.…}`; see the README's template reference".into(),
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
