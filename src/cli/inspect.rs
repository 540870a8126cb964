//! `imgbuild inspect FILE`: what a template will do, in order, secrets masked.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::VarArgs;
use crate::error::Error;
use crate::template::{self, Template};

#[derive(Args)]
pub struct InspectArgs {
    /// The template file.
    #[arg(value_name = "FILE", env = "IMGBUILD_TEMPLATE")]
    file: PathBuf,

    #[command(flatten)]
    vars: VarArgs,
}

pub fn run(args: InspectArgs) -> Result<(), Error> {
    let t = template::load(&args.file, &args.vars.inputs()).map_err(Error::Invalid)?;
    print!("{}", describe(&t));
    Ok(())
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
