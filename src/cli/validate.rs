//! `imgbuild validate FILE...`: every problem in every file, no network.

use std::path::PathBuf;

use clap::Args;

use super::{OutputArgs, OutputFormat, VarArgs};
use crate::error::Error;
use crate::report::{self, Checked};
use crate::template;

#[derive(Args)]
pub struct ValidateArgs {
    /// Template files to check.
    #[arg(
        required = true,
        value_name = "FILE",
        env = "IMGBUILD_TEMPLATES",
        value_delimiter = ','
    )]
    files: Vec<PathBuf>,

    #[command(flatten)]
    vars: VarArgs,

    /// Also write a JUnit XML report here: a test case per template and source.
    #[arg(long, value_name = "FILE", env = "IMGBUILD_JUNIT")]
    junit: Option<PathBuf>,

    /// Also write a GitLab Code Quality report (JSON) here: each problem at its line.
    #[arg(long, value_name = "FILE", env = "IMGBUILD_CODEQUALITY")]
    codequality: Option<PathBuf>,

    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: ValidateArgs) -> Result<(), Error> {
    let inputs = args.vars.inputs();
    let mut checked = Vec::new();
    for file in &args.files {
        let problems = match template::load(file, &inputs) {
            Ok(t) => {
                if args.output.format == OutputFormat::Text {
                    println!(
                        "{}: ok ({} source{}, {} provisioner{})",
                        file.display(),
                        t.sources.len(),
                        plural(t.sources.len()),
                        t.provisioners.len(),
                        plural(t.provisioners.len())
                    );
                }
                for source in &t.sources {
                    for warning in source.config.warnings() {
                        eprintln!(
                            "warning: {}: source `{}`: {warning}",
                            file.display(),
                            source.name
                        );
                    }
                }
                Vec::new()
            }
            Err(diags) => diags,
        };
        let result = Checked::new(file, problems);
        if args.output.format == OutputFormat::Json {
            println!("{}", json_line(&result));
        }
        checked.push(result);
    }
    for (path, contents) in [
        (&args.junit, report::junit::render(&checked)),
        (&args.codequality, report::codequality::render(&checked)),
    ] {
        if let Some(path) = path {
            report::write_atomically(path, contents.as_bytes())
                .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    let problems: Vec<_> = checked.into_iter().flat_map(|c| c.problems).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// One JSON object per template for `--output json`.
fn json_line(c: &Checked) -> String {
    let problems: Vec<_> = c
        .problems
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file.display().to_string(),
                "line": d.line,
                "column": d.column,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let sources: Vec<_> = c
        .sources
        .iter()
        .map(|s| serde_json::json!({ "name": s.name, "type": s.kind }))
        .collect();
    serde_json::json!({
        "schema": crate::render::json::SCHEMA,
        "event": "validated",
        "file": c.file.display().to_string(),
        "ok": c.problems.is_empty(),
        "sources": sources,
        "problems": problems,
    })
    .to_string()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
