//! `imgbuild fingerprint FILE`: the fingerprint each source would build with
//! now, and the inputs it covers (`-v`: each input's hash, to see why it
//! changed). Resolving the base may call EC2 or the package mirror.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{SelectArgs, VarArgs};
use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::template;

#[derive(Args)]
pub struct FingerprintArgs {
    /// The template file.
    #[arg(value_name = "FILE", env = "IMGBUILD_TEMPLATE")]
    file: PathBuf,

    #[command(flatten)]
    select: SelectArgs,

    #[command(flatten)]
    vars: VarArgs,
}

pub fn run(args: FingerprintArgs, verbose: bool) -> Result<(), Error> {
    let template = template::load(&args.file, &args.vars.inputs()).map_err(Error::Invalid)?;
    let sources = args.select.sources(&template)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::BuildFailed(format!("cannot start the runtime: {e}")))?;
    let mut failures = Vec::new();
    for source in sources {
        match runtime.block_on(crate::builder::fingerprint(&template, source)) {
            Ok(fp) => print!("{}", describe(&source.name, &fp, verbose)),
            Err(e) => failures.push(format!("source `{}`: {e}", source.name)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::BuildFailed(failures.join("\nerror: ")))
    }
}

/// `NAME: DIGEST`, then one line per part (with `verbose`, each part's and
/// each input's hash).
pub fn describe(source: &str, fp: &Fingerprint, verbose: bool) -> String {
    let mut out = format!("{source}: {}\n", fp.digest);
    for part in &fp.parts {
        if verbose {
            let _ = writeln!(out, "  {}  {}", part.label, short(&part.hash));
            for input in &part.inputs {
                let _ = writeln!(out, "    {}  {}", input.label, short(&input.hash));
            }
        } else {
            let _ = writeln!(out, "  {}", part.label);
        }
    }
    out
}

fn short(hash: &str) -> &str {
    crate::fingerprint::short(hash)
}
