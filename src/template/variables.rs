//! Where variable values come from, lowest precedence first: the template's
//! `default`, `IMGBUILD_VAR_name` in the environment, `--var-file` files in
//! order, then `--var name=value` flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::document::Diagnostic;

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
    pub value: String,
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
                    value,
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
                value: value.clone(),
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

/// A var file is TOML with one string (or number, or boolean) per variable.
fn read_var_file(path: &Path) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read variable file: {e}"),
        )]
    })?;
    let doc = super::document::Document::parse(path, text)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in doc.root.get_ref().iter() {
        use toml::de::DeValue;
        let text = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.as_str().to_string(),
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            _ => {
                errors.push(doc.diagnostic(
                    Some(value.span()),
                    format!(
                        "variable `{}` must be a string, number or boolean",
                        key.get_ref()
                    ),
                ));
                continue;
            }
        };
        out.push((key.get_ref().to_string(), text));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
