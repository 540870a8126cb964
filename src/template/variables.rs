//! Variables: their types, and where their values come from, lowest
//! precedence first: the template's `default`, `IMGBUILD_VAR_name` in the
//! environment, `--var-file` files in order, then `--var name=value` flags.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::document::Diagnostic;
use super::interpolate::Typed;
use super::value::{Node, NodeKind};

/// `type = "…"` of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    String,
    Number,
    Bool,
    List,
    Map,
}

pub const TYPE_NAMES: &str =
    "\"string\", \"number\", \"bool\", \"list(string)\" or \"map(string)\"";

impl VarType {
    pub fn parse(s: &str) -> Option<VarType> {
        Some(match s.replace(' ', "").as_str() {
            "string" => VarType::String,
            "number" => VarType::Number,
            "bool" => VarType::Bool,
            "list(string)" | "list" => VarType::List,
            "map(string)" | "map" => VarType::Map,
            _ => return None,
        })
    }

    /// The type a default is written as.
    pub fn of(v: &Typed) -> VarType {
        match v {
            Typed::Str(_) => VarType::String,
            Typed::Number(_) => VarType::Number,
            Typed::Bool(_) => VarType::Bool,
            Typed::List(_) => VarType::List,
            Typed::Map(_) => VarType::Map,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            VarType::String => "a string",
            VarType::Number => "a number",
            VarType::Bool => "a boolean (true or false)",
            VarType::List => "a list of strings",
            VarType::Map => "a map of strings",
        }
    }

    /// `value` as this type: text is parsed (`"20"`, `"true"`, `a,b` or
    /// `["a", "b"]`, `{ k = "v" }`), anything else must already be it.
    pub fn convert(self, value: Typed) -> Result<Typed, String> {
        let fail = |v: &Typed| {
            let shown = match v {
                Typed::Str(s) => format!("{s:?}"),
                other => other.kind().to_string(),
            };
            Err(format!("expects {}, got {shown}", self.expected()))
        };
        match (self, value) {
            (VarType::String, v @ (Typed::Str(_) | Typed::Number(_) | Typed::Bool(_))) => {
                Ok(Typed::Str(v.as_text().unwrap_or_default()))
            }
            (VarType::Number, v @ Typed::Number(_)) => Ok(v),
            (VarType::Number, Typed::Str(s)) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Typed::Number(n)),
                _ => fail(&Typed::Str(s)),
            },
            (VarType::Bool, v @ Typed::Bool(_)) => Ok(v),
            (VarType::Bool, Typed::Str(s)) if s == "true" || s == "false" => {
                Ok(Typed::Bool(s == "true"))
            }
            (VarType::List, v @ Typed::List(_)) | (VarType::Map, v @ Typed::Map(_)) => Ok(v),
            (VarType::List, Typed::Str(s)) if s.trim_start().starts_with('[') => {
                match inline_toml(&s).map(|n| literal(&n)) {
                    Some(v @ Typed::List(_)) => Ok(v),
                    _ => fail(&Typed::Str(s)),
                }
            }
            (VarType::List, Typed::Str(s)) => Ok(Typed::List(
                s.split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            (VarType::Map, Typed::Str(s)) => match inline_toml(&s).map(|n| literal(&n)) {
                Some(v @ Typed::Map(_)) => Ok(v),
                _ => fail(&Typed::Str(s)),
            },
            (_, v) => fail(&v),
        }
    }
}

impl fmt::Display for VarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Bool => "bool",
            VarType::List => "list(string)",
            VarType::Map => "map(string)",
        })
    }
}

/// A TOML value written on its own (`["a", "b"]`, `{ k = "v" }`).
fn inline_toml(text: &str) -> Option<Node> {
    let source: &'static str = Box::leak(format!("v = {text}").into_boxed_str());
    let table = toml::de::DeTable::parse(source).ok()?;
    table.get_ref().get("v").map(Node::from_toml)
}

/// A value taken as written, with no references expanded (a var file's).
pub fn literal(node: &Node) -> Typed {
    let text = |n: &Node| match &n.kind {
        NodeKind::Str(s) => s.clone(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::List(_) | NodeKind::Table(_) => String::new(),
    };
    match &node.kind {
        NodeKind::Str(s) => Typed::Str(s.clone()),
        NodeKind::Int(i) => Typed::Number(*i as f64),
        NodeKind::Float(f) => Typed::Number(*f),
        NodeKind::Bool(b) => Typed::Bool(*b),
        NodeKind::List(items) => Typed::List(items.iter().map(text).collect()),
        NodeKind::Table(entries) => {
            Typed::Map(entries.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `--var name=value`, in order; later wins.
    pub cli: Vec<(String, String)>,
    pub files: Vec<PathBuf>,
}

impl VarInputs {
    /// Parses a `name=value` flag.
    pub fn parse_pair(s: &str) -> Result<(String, String), String> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_string(), value.to_string()))
            }
            _ => Err(format!("expected NAME=VALUE, got `{s}`")),
        }
    }
}

/// One value that was set from outside the template, and where.
pub struct Assignment {
    pub value: Typed,
    pub origin: String,
}

/// Collects values from every input; errors name the file or flag.
pub fn gather(inputs: &VarInputs) -> Result<BTreeMap<String, Assignment>, Vec<Diagnostic>> {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in std::env::vars() {
        if let Some(name) = key.strip_prefix("IMGBUILD_VAR_") {
            values.insert(
                name.to_string(),
                Assignment {
                    value: Typed::Str(value),
                    origin: format!("environment variable {key}"),
                },
            );
        }
    }
    for file in &inputs.files {
        match read_var_file(file) {
            Ok(pairs) => {
                for (name, value) in pairs {
                    values.insert(
                        name,
                        Assignment {
                            value,
                            origin: format!("--var-file {}", file.display()),
                        },
                    );
                }
            }
            Err(mut diags) => errors.append(&mut diags),
        }
    }
    for (name, value) in &inputs.cli {
        values.insert(
            name.clone(),
            Assignment {
                value: Typed::Str(value.clone()),
                origin: format!("--var {name}=…"),
            },
        );
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// A var file is TOML with one value per variable.
fn read_var_file(path: &Path) -> Result<Vec<(String, Typed)>, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read variable file: {e}"),
        )]
    })?;
    let doc = super::document::Document::parse(path, text)?;
    Ok(doc
        .root
        .get_ref()
        .iter()
        .map(|(key, value)| (key.get_ref().to_string(), literal(&Node::from_toml(value))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_converts_to_each_type() {
        let s = |t: &str| Typed::Str(t.into());
        assert_eq!(VarType::Number.convert(s(" 20 ")), Ok(Typed::Number(20.0)));
        assert_eq!(VarType::Bool.convert(s("false")), Ok(Typed::Bool(false)));
        assert_eq!(
            VarType::List.convert(s("a, b,")),
            Ok(Typed::List(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            VarType::List.convert(s("[\"a\", \"b,c\"]")),
            Ok(Typed::List(vec!["a".into(), "b,c".into()]))
        );
        assert_eq!(
            VarType::Map.convert(s("{ Team = \"x\" }")),
            Ok(Typed::Map([("Team".to_string(), "x".to_string())].into()))
        );
        assert_eq!(
            VarType::String.convert(Typed::Number(3.0)),
            Ok(Typed::Str("3".into()))
        );
    }

    #[test]
    fn mismatches_say_what_was_expected_and_what_came() {
        assert_eq!(
            VarType::Number.convert(Typed::Str("big".into())),
            Err("expects a number, got \"big\"".into())
        );
        assert_eq!(
            VarType::Bool.convert(Typed::Str("yes".into())),
            Err("expects a boolean (true or false), got \"yes\"".into())
        );
        assert_eq!(
            VarType::String.convert(Typed::List(vec![])),
            Err("expects a string, got a list".into())
        );
        assert_eq!(
            VarType::Map.convert(Typed::Str("a".into())),
            Err("expects a map of strings, got \"a\"".into())
        );
        assert_eq!(VarType::parse("list( string )"), Some(VarType::List));
        assert_eq!(VarType::parse("int"), None);
    }
}
