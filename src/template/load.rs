//! Reads a template file and checks it whole, reporting every problem at once.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::document::{Diagnostic, Document, KeyPath, Seg, did_you_mean};
use super::fields::fields_of;
use super::interpolate::{Scope, references};
use super::schema::{FileConfig, ProvisionerCommon, ShellConfig, SshConfig, VariableDef};
use super::source::{self, COMMON_PROVIDES, Checker, SOURCE_TYPES};
use super::variables::{self, VarInputs};
use super::{Direction, Provisioner, ProvisionerKind, Source, Template, Variable};

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "variables",
    "source",
    "provisioner",
    "rebuild",
    "max_age",
];
const PROVISIONER_TYPES: &[&str] = &["shell", "file"];

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

type Value = Spanned<DeValue<'static>>;

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

        let rebuild = super::rebuild::read(self.doc, &mut self.diags);
        let sources = self.sources(&scope);
        let provisioners = self.provisioners(&sources);
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
            rebuild,
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

    fn deserialize<T: for<'de> Deserialize<'de>>(&mut self, value: Value) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let message = e.message().to_string();
                self.error(e.span(), message);
                None
            }
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
            let Some(def) = self.deserialize::<VariableDef>(value.clone()) else {
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

    fn sources(&mut self, known: &Scope) -> Vec<Source> {
        let path = KeyPath::root().key("source");
        let mut out = Vec::new();
        let Some(table) = self.table_at(&path, "one `[source.NAME]` table per build") else {
            self.diags.push(
                self.doc
                    .diagnostic(Some(0..0), "the template has no source")
                    .with_help("add a `[source.NAME]` table with a `type`, e.g. `type = \"qemu\"`"),
            );
            return out;
        };
        let ssh_keys = fields_of::<SshConfig>();
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            let src_path = path.key(&name);
            if !is_identifier(&name.replace('-', "_")) {
                self.error(
                    Some(key.span()),
                    format!("source name `{name}` may contain only letters, digits, `_` and `-`"),
                );
            }
            let Some(src_table) = self.table_at(&src_path, "the source's settings") else {
                continue;
            };
            let Some(type_name) = self.source_type(&src_path, src_table) else {
                continue;
            };
            let builder_keys = source::fields_for(&type_name).unwrap_or(&[]);
            let place = format!("in source `{name}` (type \"{type_name}\")");
            if !self.unknown_keys(
                &src_path,
                src_table,
                &[&["type"], ssh_keys, builder_keys],
                &place,
            ) {
                continue;
            }
            let ssh = self.deserialize::<SshConfig>(subtable(value, src_table, ssh_keys));
            let Some(ssh) = ssh else { continue };
            let mut checker = Checker {
                doc: self.doc,
                base: src_path.clone(),
                diagnostics: &mut self.diags,
                known,
            };
            let config = source::parse_source(
                &type_name,
                subtable(value, src_table, builder_keys),
                &ssh,
                &mut checker,
            );
            if let Some(private_key) = &ssh.ssh_private_key_file {
                self.check_local_file(&src_path.key("ssh_private_key_file"), private_key);
            }
            if let Some(config) = config {
                out.push(Source { name, ssh, config });
            }
        }
        out
    }

    fn source_type(&mut self, path: &KeyPath, table: &DeTable<'static>) -> Option<String> {
        let type_path = path.key("type");
        match table.get("type").map(|v| v.get_ref()) {
            Some(DeValue::String(t)) if SOURCE_TYPES.contains(&t.as_ref()) => Some(t.to_string()),
            Some(DeValue::String(t)) => {
                let hint = did_you_mean(t, SOURCE_TYPES.iter().copied());
                let d = self.error_at(&type_path, format!("unknown source type \"{t}\""));
                d.help = Some(match hint {
                    Some(h) => format!("did you mean \"{h}\"?"),
                    None => format!("the source types are {}", quoted_list(SOURCE_TYPES)),
                });
                None
            }
            Some(_) => {
                self.error_at(&type_path, "`type` must be a string");
                None
            }
            None => {
                self.error_at(path, "this source has no `type`").help = Some(format!(
                    "add `type = ...`, one of {}",
                    quoted_list(SOURCE_TYPES)
                ));
                None
            }
        }
    }

    fn provisioners(&mut self, sources: &[Source]) -> Vec<(Provisioner, KeyPath)> {
        let path = KeyPath::root().key("provisioner");
        let mut out = Vec::new();
        let doc = self.doc;
        let Some(value) = doc.value_at(&path) else {
            return out;
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                Some(value.span()),
                "`provisioner` must be an array of tables: write `[[provisioner]]`",
            );
            return out;
        };
        let common_keys = fields_of::<ProvisionerCommon>();
        for (index, item) in items.iter().enumerate() {
            let p_path = path.index(index);
            let number = index + 1;
            let DeValue::Table(table) = item.get_ref() else {
                self.error(Some(item.span()), "each provisioner must be a table");
                continue;
            };
            let kind_name = match table.get("type").map(|v| v.get_ref()) {
                Some(DeValue::String(t)) if PROVISIONER_TYPES.contains(&t.as_ref()) => {
                    t.to_string()
                }
                Some(DeValue::String(t)) => {
                    let hint = did_you_mean(t, PROVISIONER_TYPES.iter().copied());
                    self.error_at(
                        &p_path.key("type"),
                        format!("unknown provisioner type \"{t}\""),
                    )
                    .help = Some(hint.map_or_else(
                        || "the provisioner types are \"shell\" and \"file\"".into(),
                        |h| format!("did you mean \"{h}\"?"),
                    ));
                    continue;
                }
                _ => {
                    let line = self.doc.line_of(item.span().start);
                    self.error(
                        Some(item.span()),
                        format!("provisioner {number} (line {line}) has no `type`"),
                    )
                    .help = Some("add `type = \"shell\"` or `type = \"file\"`".into());
                    continue;
                }
            };
            let specific = match kind_name.as_str() {
                "shell" => fields_of::<ShellConfig>(),
                _ => fields_of::<FileConfig>(),
            };
            let place = format!("in provisioner {number} (type \"{kind_name}\")");
            if !self.unknown_keys(&p_path, table, &[common_keys, specific], &place) {
                continue;
            }
            let Some(common) =
                self.deserialize::<ProvisionerCommon>(subtable(item, table, common_keys))
            else {
                continue;
            };
            for (list, key) in [(&common.only, "only"), (&common.except, "except")] {
                for (i, name) in list.iter().enumerate() {
                    if !sources.iter().any(|s| &s.name == name) {
                        let hint = did_you_mean(name, sources.iter().map(|s| s.name.as_str()));
                        self.error_at(
                            &p_path.key(key).index(i),
                            format!(
                                "`{key}` names source `{name}`, which the template does not define"
                            ),
                        )
                        .help = hint.map(|h| format!("did you mean `{h}`?"));
                    }
                }
            }
            let kind = match kind_name.as_str() {
                "shell" => {
                    let Some(c) = self.deserialize::<ShellConfig>(subtable(item, table, specific))
                    else {
                        continue;
                    };
                    self.check_shell(&p_path, &c);
                    ProvisionerKind::Shell(c)
                }
                _ => {
                    let Some(c) = self.deserialize::<FileConfig>(subtable(item, table, specific))
                    else {
                        continue;
                    };
                    self.check_file(&p_path, &c);
                    ProvisionerKind::File(c)
                }
            };
            let location = format!(
                "{}:{}",
                self.doc.path.display(),
                self.doc.line_of(item.span().start)
            );
            out.push((
                Provisioner {
                    number,
                    location,
                    common,
                    kind,
                },
                p_path,
            ));
        }
        out
    }

    fn check_shell(&mut self, path: &KeyPath, c: &ShellConfig) {
        let given = [
            ("inline", c.inline.is_some()),
            ("script", c.script.is_some()),
            ("scripts", c.scripts.is_some()),
        ];
        let count = given.iter().filter(|(_, g)| *g).count();
        if count != 1 {
            let message = if count == 0 {
                "a shell provisioner needs one of `inline`, `script` or `scripts`"
            } else {
                "a shell provisioner takes only one of `inline`, `script` or `scripts`"
            };
            self.error_at(path, message);
        }
        if let Some(script) = &c.script {
            self.check_local_file(&path.key("script"), script);
        }
        for (i, script) in c.scripts.iter().flatten().enumerate() {
            self.check_local_file(&path.key("scripts").index(i), script);
        }
        for name in c.env.keys() {
            if !is_identifier(name) {
                self.error_at(
                    &path.key("env").key(name),
                    format!("`{name}` is not a valid environment variable name"),
                );
            }
        }
        if let Some(cmd) = &c.execute_command
            && !cmd.contains("{path}")
        {
            self.error_at(
                &path.key("execute_command"),
                "`execute_command` must contain `{path}`, where the script goes",
            );
        }
        if c.sudo && c.execute_command.is_some() {
            self.error_at(
                &path.key("sudo"),
                "`sudo` and `execute_command` cannot be combined; put `sudo` in `execute_command`",
            );
        }
    }

    fn check_file(&mut self, path: &KeyPath, c: &FileConfig) {
        let given = [c.source.is_some(), c.sources.is_some(), c.content.is_some()];
        match given.iter().filter(|g| **g).count() {
            1 => {}
            0 => {
                self.error_at(
                    path,
                    "a file provisioner needs one of `source`, `sources` or `content`",
                );
            }
            _ => {
                self.error_at(
                    path,
                    "a file provisioner takes only one of `source`, `sources` or `content`",
                );
            }
        }
        if c.direction == Direction::Download {
            if c.content.is_some() {
                self.error_at(
                    &path.key("content"),
                    "`content` only makes sense with `direction = \"upload\"`",
                );
            }
            return;
        }
        if let Some(src) = &c.source {
            self.check_local_file(&path.key("source"), src);
        }
        for (i, src) in c.sources.iter().flatten().enumerate() {
            self.check_local_file(&path.key("sources").index(i), src);
        }
    }

    /// A path relative to the template must exist, unless it is only known at build time.
    fn check_local_file(&mut self, path: &KeyPath, file: &str) {
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

    /// Checks every `${...}` in the document against what is known where it stands.
    fn references(
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
            "image" if ["name", "version", "build"].contains(&name) => None,
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
                    "references are `${var.NAME}`, `${env.NAME}`, `${build.id|timestamp|name}`, `${image.name|version|build}`, `${source.…}`; write `$${` for a literal `${`".into()
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

/// A copy of `table` with only `keys`, keeping spans so errors still point home.
fn subtable(whole: &Value, table: &DeTable<'static>, keys: &[&str]) -> Value {
    let mut sub = DeTable::new();
    for (k, v) in table.iter() {
        if keys.contains(&k.get_ref().as_ref()) {
            sub.insert(k.clone(), v.clone());
        }
    }
    Spanned::new(whole.span(), DeValue::Table(sub))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
