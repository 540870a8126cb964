//! `imgbuild gc`: removes what killed builds left in EC2 (temporary
//! instances, security groups, key pairs; images and snapshots of builds
//! that never finished) and on this machine (work folders of local builds,
//! with any QEMU still running on them), never anything of a build that may
//! still run.

use std::time::Duration;

use clap::Args;

use super::build::parse_duration;
use super::family;
use crate::builder::amazon_ebs::sweep;
use crate::builder::qemu;
use crate::error::Error;
use crate::swept::{Swept, SweptAction};
use crate::template::HumanDuration;

#[derive(Args)]
pub struct GcArgs {
    /// Remove only what is older than this, e.g. "2h", "0s".
    #[arg(long, value_name = "DURATION", env = "IMGBUILD_OLDER_THAN", default_value = "2h", value_parser = parse_duration)]
    older_than: HumanDuration,

    /// Look in these AWS regions (repeatable or comma-separated); default: AWS_REGION or the profile's.
    #[arg(
        long = "region",
        value_name = "REGION",
        env = "IMGBUILD_REGIONS",
        value_delimiter = ','
    )]
    regions: Vec<String>,

    /// Print what would be removed and the commands that would do it; remove nothing.
    #[arg(long, env = "IMGBUILD_DRY_RUN")]
    dry_run: bool,

    /// Sweep only this machine's local builds, not EC2.
    #[arg(long, env = "IMGBUILD_LOCAL", conflicts_with = "regions")]
    local: bool,
}

pub fn run(args: GcArgs) -> Result<(), Error> {
    let runtime = family::runtime()?;
    let older_than: Duration = args.older_than.0;
    let (mut swept, mut failures) = if args.local {
        (Vec::new(), Vec::new())
    } else {
        runtime
            .block_on(sweep(&args.regions, older_than, args.dry_run))
            .map_err(Error::Usage)?
    };
    swept.extend(qemu::sweep(older_than, args.dry_run));
    for s in &swept {
        print!("{}", text(s));
        if let SweptAction::Failed(e) = &s.action {
            failures.push(format!("{e}; to finish by hand: {}", s.commands.join("; ")));
        }
    }
    eprintln!("{}", summary(&swept, args.dry_run));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::BuildFailed(failures.join("\nerror: ")))
    }
}

fn described(s: &Swept) -> String {
    let with = if s.snapshots.is_empty() {
        String::new()
    } else {
        format!(" and {}", s.snapshots.join(", "))
    };
    format!("{} {} (build {}){with}", s.resource, s.id, s.build_id)
}

fn text(s: &Swept) -> String {
    let what = described(s);
    let region = &s.place;
    match &s.action {
        SweptAction::Kept(why) => format!("{region}: kept {what}: {why}\n"),
        SweptAction::Removed => format!("{region}: removed {what}\n"),
        SweptAction::WouldRemove => {
            let mut out = format!("{region}: would remove {what}\n");
            for c in &s.commands {
                out.push_str(&format!("  {c}\n"));
            }
            out
        }
        SweptAction::Failed(_) => String::new(),
    }
}

/// `gc: removed 3, kept 2`, on stderr.
fn summary(swept: &[Swept], dry_run: bool) -> String {
    let (mut gone, mut kept, mut failed) = (0, 0, 0);
    for s in swept {
        match s.action {
            SweptAction::Removed | SweptAction::WouldRemove => gone += 1,
            SweptAction::Kept(_) => kept += 1,
            SweptAction::Failed(_) => failed += 1,
        }
    }
    let mut line = if dry_run {
        format!("gc: would remove {gone} and keep {kept}")
    } else {
        format!("gc: removed {gone}, kept {kept}")
    };
    if failed > 0 {
        line.push_str(&format!(", {failed} failed (below)"));
    }
    line
}
