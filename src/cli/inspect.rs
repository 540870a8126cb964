//! `imgbuild inspect FILE`: what a template will do, in order, secrets masked.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{OutputArgs, OutputFormat, VarArgs};
use crate::error::Error;
use crate::template::interpolate::Typed;
use crate::template::{self, Template};

#[derive(Args)]
pub struct InspectArgs {
    /// The template file.
    #[arg(value_name = "FILE", env = "IMGBUILD_TEMPLATE")]
    file: PathBuf,

    #[command(flatten)]
    vars: VarArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: InspectArgs) -> Result<(), Error> {
    let t = template::load(&args.file, &args.vars.inputs()).map_err(Error::Invalid)?;
    match args.output.format {
        OutputFormat::Text => print!("{}", describe(&t)),
        OutputFormat::Json => println!("{}", as_json(&t)),
    }
    Ok(())
}

/// A variable's value as JSON of its own type.
fn typed_json(value: &Typed) -> serde_json::Value {
    match value {
        Typed::Str(s) => s.as_str().into(),
        Typed::Number(n) => (*n).into(),
        Typed::Bool(b) => (*b).into(),
        Typed::List(items) => items.clone().into(),
        Typed::Map(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// The one JSON object `inspect --output json` prints (sensitive values masked).
pub fn as_json(t: &Template) -> serde_json::Value {
    let variables: Vec<_> = t
        .variables
        .iter()
        .map(|v| {
            let value = match (&v.value, v.sensitive) {
                (_, true) => Some(serde_json::Value::from("<sensitive>")),
                (value, false) => value.as_ref().map(typed_json),
            };
            serde_json::json!({
                "name": v.name,
                "value": value,
                "sensitive": v.sensitive,
                "description": v.description,
            })
        })
        .collect();
    let sources: Vec<_> = t
        .sources
        .iter()
        .map(|s| serde_json::json!({ "name": s.name, "type": s.config.type_name() }))
        .collect();
    let provisioners: Vec<_> = t
        .provisioners
        .iter()
        .map(|p| {
            serde_json::json!({
                "number": p.number,
                "type": p.type_name(),
                "label": p.label(),
                "only": p.common.only,
                "except": p.common.except,
            })
        })
        .collect();
    serde_json::json!({
        "schema": crate::render::json::SCHEMA,
        "event": "template",
        "file": t.path.display().to_string(),
        "name": t.name,
        "version": t.version,
        "description": t.description,
        "variables": variables,
        "sources": sources,
        "provisioners": provisioners,
    })
}

/// The text `inspect` prints.
pub fn describe(t: &Template) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "template: {}", t.path.display());
    let _ = write!(out, "image: {} {}", t.name, t.version);
    if let Some(d) = &t.description {
        let _ = write!(out, " ({d})");
    }
    out.push_str("\n\nvariables:\n");
    if t.variables.is_empty() {
        out.push_str("  (none)\n");
    }
    for v in &t.variables {
        let value = match (&v.value, v.sensitive) {
            (_, true) => "<sensitive>".to_string(),
            (Some(value), false) => value.to_string(),
            (None, false) => "(unset)".to_string(),
        };
        let _ = write!(out, "  {}: {} = {value}", v.name, v.kind);
        if let Some(d) = &v.description {
            let _ = write!(out, "  # {d}");
        }
        out.push('\n');
    }
    if !t.locals.is_empty() {
        out.push_str("\nlocals:\n");
    }
    for l in &t.locals {
        let value = if l.sensitive {
            "<sensitive>".to_string()
        } else {
            l.value.to_string()
        };
        let _ = writeln!(out, "  {} = {value}", l.name);
    }
    out.push_str("\nsources:\n");
    for s in &t.sources {
        let _ = write!(out, "  {}  ({})", s.name, s.config.type_name());
        if !s.defaulted.is_empty() {
            let _ = write!(
                out,
                "  [from source_defaults.{}: {}]",
                s.config.type_name(),
                s.defaulted.join(", ")
            );
        }
        out.push('\n');
    }
    out.push_str("\nprovisioners:\n");
    if t.provisioners.is_empty() {
        out.push_str("  (none)\n");
    }
    for p in &t.provisioners {
        let what = p.kind.summary();
        let _ = write!(out, "  {}. {what}", p.number);
        if !p.common.only.is_empty() {
            let _ = write!(out, "  [only: {}]", p.common.only.join(", "));
        }
        if !p.common.except.is_empty() {
            let _ = write!(out, "  [except: {}]", p.common.except.join(", "));
        }
        out.push('\n');
    }
    out
}
