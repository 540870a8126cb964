//! The command line: parse arguments, run one subcommand, map its error to
//! an exit code. Every flag has an `IMGBUILD_*` environment twin.

mod build;
mod diff;
mod family;
mod fingerprint;
mod gc;
mod images;
mod inspect;
mod prune;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, exit};
use crate::render::{ColorChoice, Verbosity};
use crate::template::{Source, Template, VarInputs};

#[derive(Parser)]
#[command(
    name = "imgbuild",
    version,
    about = "Build machine images (AWS AMIs, local qcow2) from a TOML template",
    after_help = "Exit codes: 0 success, 1 build failed, 2 usage or validation error, 130 interrupted."
)]
pub struct Cli {
    /// Show only warnings, errors and results.
    #[arg(
        short,
        long,
        global = true,
        env = "IMGBUILD_QUIET",
        conflicts_with = "verbose"
    )]
    quiet: bool,

    /// Show debug logs too (or set IMGBUILD_LOG / RUST_LOG, e.g. `imgbuild=debug`).
    #[arg(short, long, global = true, env = "IMGBUILD_VERBOSE")]
    verbose: bool,

    /// Colour in the log: `auto` (a terminal, or GitLab CI, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto, env = "IMGBUILD_COLOR")]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check templates without building; reports every problem at once.
    Validate(validate::ValidateArgs),
    /// Show a template's variables, sources and provisioners, in order.
    Inspect(inspect::InspectArgs),
    /// Build images from a template.
    Build(build::BuildArgs),
    /// Print each source's build fingerprint and the inputs it covers (-v: their hashes).
    Fingerprint(fingerprint::FingerprintArgs),
    /// Show which packages changed: as recorded in a manifest, or between two images.
    Diff(diff::DiffArgs),
    /// List every image of the family, newest first, with what uses it.
    Images(images::ImagesArgs),
    /// Remove the family's older images and their snapshots, keeping the newest N and any in use.
    Prune(prune::PruneArgs),
    /// Remove what killed builds left in EC2: temporary instances, security groups, key pairs, unfinished images.
    Gc(gc::GcArgs),
}

/// Which of the template's sources a subcommand acts on.
#[derive(Args, Clone)]
pub struct SelectArgs {
    /// Only these sources (repeatable or comma-separated).
    #[arg(
        long,
        value_name = "NAME",
        env = "IMGBUILD_ONLY",
        value_delimiter = ','
    )]
    pub only: Vec<String>,

    /// Every source but these (repeatable or comma-separated).
    #[arg(
        long,
        value_name = "NAME",
        env = "IMGBUILD_EXCEPT",
        value_delimiter = ','
    )]
    pub except: Vec<String>,
}

impl SelectArgs {
    /// The sources selected, in template order; a name the template does not
    /// define is a usage error.
    pub fn sources<'a>(&self, template: &'a Template) -> Result<Vec<&'a Source>, Error> {
        crate::build::select(template, &self.only, &self.except).map_err(Error::Usage)
    }
}

/// Variable inputs, shared by every subcommand that reads a template.
#[derive(Args, Clone)]
pub struct VarArgs {
    /// Set a variable: --var name=value (repeatable; wins over files and environment).
    #[arg(long = "var", value_name = "NAME=VALUE", env = "IMGBUILD_VARS", value_delimiter = '\n', value_parser = VarInputs::parse_pair)]
    vars: Vec<(String, String)>,

    /// Read variables from a TOML file of `name = "value"` lines (repeatable).
    #[arg(
        long = "var-file",
        value_name = "FILE",
        env = "IMGBUILD_VAR_FILES",
        value_delimiter = ','
    )]
    var_files: Vec<PathBuf>,
}

/// `--output`, shared by every subcommand that reports results.
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// `text` for people; `json` prints one JSON object per line on stdout
    /// (a versioned schema, see README) and keeps human text on stderr.
    #[arg(long = "output", value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text, env = "IMGBUILD_OUTPUT")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

impl VarArgs {
    fn inputs(&self) -> VarInputs {
        VarInputs {
            cli: self.vars.clone(),
            files: self.var_files.clone(),
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    init_logging(cli.verbose);
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Build(args) => build::run(args, verbosity, cli.color),
        Command::Fingerprint(args) => fingerprint::run(args, cli.verbose),
        Command::Diff(args) => diff::run(args),
        Command::Images(args) => images::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Gc(args) => gc::run(args),
    };
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            let mask = crate::mask::current();
            match &e {
                Error::Invalid(_) => eprintln!("{}", mask.text(&e.to_string())),
                _ => eprintln!("error: {}", mask.text(&e.to_string())),
            }
            e.exit_code()
        }
    }
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("IMGBUILD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| {
            if verbose {
                "imgbuild=debug".into()
            } else {
                "warn".into()
            }
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(crate::mask::MaskedStderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::env::var_os("CI").is_none())
        .try_init();
}
