//! `imgbuild inspect FILE`: what a template will do, in order, secrets masked.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::VarArgs;
use crate::error::Error;
use crate::template::provisioners::ProvisionerSchema;
use crate::template::{self, Direction, ProvisionerKind, Template};

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
            (Some(value), false) => format!("{value:?}"),
            (None, false) => "(unset)".to_string(),
        };
        let _ = write!(out, "  {} = {value}", v.name);
        if let Some(d) = &v.description {
            let _ = write!(out, "  # {d}");
        }
        out.push('\n');
    }
    out.push_str("\nsources:\n");
    for s in &t.sources {
        let _ = writeln!(out, "  {}  ({})", s.name, s.config.type_name());
    }
    out.push_str("\nprovisioners:\n");
    if t.provisioners.is_empty() {
        out.push_str("  (none)\n");
    }
    for p in &t.provisioners {
        let what = match &p.kind {
            ProvisionerKind::Shell(c) => {
                let mut what = match (&c.inline, &c.script, &c.scripts) {
                    (Some(lines), _, _) => format!(
                        "shell: inline, {} line{}",
                        lines.len(),
                        if lines.len() == 1 { "" } else { "s" }
                    ),
                    (_, Some(s), _) => format!("shell: script {s}"),
                    (_, _, Some(list)) => format!("shell: scripts {}", list.join(", ")),
                    _ => "shell".to_string(),
                };
                if c.sudo {
                    what.push_str(" (sudo)");
                }
                if !c.env.is_empty() {
                    let names: Vec<&str> = c.env.keys().map(String::as_str).collect();
                    let _ = write!(what, "; env {}", names.join(", "));
                }
                what
            }
            ProvisionerKind::File(c) => {
                let from = match (&c.source, &c.sources) {
                    (Some(s), _) => s.clone(),
                    (_, Some(list)) => list.join(", "),
                    _ => "inline content".to_string(),
                };
                let arrow = if c.direction == Direction::Download {
                    "<-"
                } else {
                    "->"
                };
                match c.direction {
                    Direction::Upload => format!("file: {from} {arrow} {}", c.destination),
                    Direction::Download => {
                        format!("file: {} {arrow} {from} (download)", c.destination)
                    }
                }
            }
            ProvisionerKind::Ansible(c) => c.summary(),
            ProvisionerKind::AnsibleLocal(c) => c.summary(),
            ProvisionerKind::ShellLocal(c) => c.summary(),
        };
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
