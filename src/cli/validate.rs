//! `imgbuild validate FILE...`: every problem in every file, no network.

use std::path::PathBuf;

use clap::Args;

use super::VarArgs;
use crate::error::Error;
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
}

pub fn run(args: ValidateArgs) -> Result<(), Error> {
    let inputs = args.vars.inputs();
    let mut problems = Vec::new();
    for file in &args.files {
        match template::load(file, &inputs) {
            Ok(t) => println!(
                "{}: ok ({} source{}, {} provisioner{})",
                file.display(),
                t.sources.len(),
                plural(t.sources.len()),
                t.provisioners.len(),
                plural(t.provisioners.len())
            ),
            Err(mut diags) => problems.append(&mut diags),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
