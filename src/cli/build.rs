//! `imgbuild build FILE`: run the builds, print artifacts on stdout, write
//! the manifest. SIGINT and SIGTERM cancel and clean up before exiting.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{OutputArgs, OutputFormat, SelectArgs, VarArgs};
use crate::build::{self, BuildOptions};
use crate::error::Error;
use crate::events::Outcome;
use crate::inventory::Inventory;
use crate::inventory::diff::Changes;
use crate::mask::{self, Mask};
use crate::pipeline::OnError;
use crate::render::{self, ColorChoice, Verbosity};
use crate::report;
use crate::template::{self, HumanDuration, RebuildPolicy};

#[derive(Args)]
pub struct BuildArgs {
    /// The template file.
    #[arg(value_name = "FILE", env = "IMGBUILD_TEMPLATE")]
    file: PathBuf,

    #[command(flatten)]
    select: SelectArgs,

    #[command(flatten)]
    vars: VarArgs,

    /// What to do with temporary resources when a build fails.
    #[arg(long, value_enum, default_value_t = OnError::Cleanup, env = "IMGBUILD_ON_ERROR")]
    on_error: OnError,

    /// Where to write the JSON manifest of what was built.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "imgbuild-manifest.json",
        env = "IMGBUILD_MANIFEST"
    )]
    manifest: PathBuf,

    /// Build only when the fingerprint differs from the newest image of the
    /// same name and version (or that image is older than --max-age);
    /// otherwise point the results at it. Same as `rebuild = "if-changed"`.
    #[arg(long, env = "IMGBUILD_IF_CHANGED")]
    if_changed: bool,

    /// With --if-changed: rebuild an unchanged image older than this, e.g. "14d" (wins over `max_age`).
    #[arg(long, value_name = "DURATION", env = "IMGBUILD_MAX_AGE", value_parser = parse_duration)]
    max_age: Option<HumanDuration>,

    /// Also write what was built as KEY=value lines (for GitLab's dotenv report).
    #[arg(long, value_name = "FILE", env = "IMGBUILD_DOTENV")]
    dotenv: Option<PathBuf>,

    #[command(flatten)]
    output: OutputArgs,

    /// Make nothing: resolve the source image, network and names, and send
    /// each call that would make a resource with DryRun, to check that IAM
    /// allows it. Fails naming the denied actions. (Its own variable: a
    /// pipeline-wide IMGBUILD_DRY_RUN for prune must not turn builds into checks.)
    #[arg(long, env = "IMGBUILD_BUILD_DRY_RUN")]
    dry_run: bool,

    /// Time allowed for cleanup after a build ends, e.g. "10m".
    #[arg(long, value_name = "DURATION", default_value = "15m", env = "IMGBUILD_CLEANUP_TIMEOUT", value_parser = parse_duration)]
    cleanup_timeout: HumanDuration,
}

pub(super) fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    humantime::parse_duration(s)
        .map(HumanDuration)
        .map_err(|e| e.to_string())
}

pub fn run(args: BuildArgs, verbosity: Verbosity, color: ColorChoice) -> Result<(), Error> {
    let template = template::load(&args.file, &args.vars.inputs()).map_err(Error::Invalid)?;
    let sources: Vec<_> = args
        .select
        .sources(&template)?
        .into_iter()
        .cloned()
        .collect();
    let mask = Mask::new(template.secrets());
    mask::install(mask.clone());
    let template = Arc::new(template);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::BuildFailed(format!("cannot start the runtime: {e}")))?;
    let human = render::for_stderr(verbosity, color);
    let json = args.output.format == OutputFormat::Json;
    let renderer: Arc<dyn crate::events::Render> = if json {
        Arc::new(render::json::Tee(vec![
            Arc::new(render::json::Json::stdout()),
            human,
        ]))
    } else {
        human
    };
    let cancel = CancellationToken::new();
    let opts = BuildOptions {
        only: args.select.only.clone(),
        except: args.select.except.clone(),
        on_error: args.on_error,
        cleanup_deadline: args.cleanup_timeout.0,
        previous_manifest: std::fs::read_to_string(&args.manifest)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok()),
        rebuild: RebuildPolicy {
            if_changed: args.if_changed || template.rebuild.if_changed,
            max_age: args.max_age.map(|d| d.0).or(template.rebuild.max_age),
        },
        dry_run: args.dry_run,
    };
    let mut results = runtime.block_on(async {
        tokio::spawn(watch_signals(cancel.clone()));
        build::run_all(template.clone(), sources, opts, renderer, cancel.clone()).await
    });
    // Background SSH threads may still be finishing a cancelled transfer; don't wait for them.
    runtime.shutdown_background();

    if args.dry_run {
        return dry_run_report(&results, &mask, json, &cancel);
    }
    // In JSON mode the artifacts were already events on stdout.
    if !json {
        for r in &results {
            for a in &r.artifacts {
                match reused_line(r, a) {
                    Some(line) => println!("{line}"),
                    None => println!("{}: {}", a.location, a.id),
                }
            }
        }
    }
    for r in results.iter_mut() {
        report_packages(r, &args.manifest);
    }
    if let Some(path) = &args.dotenv {
        let text = mask.text(&report::dotenv::render(
            &template.name,
            &template.version,
            &results,
        ));
        if let Err(e) = report::write_atomically(path, text.as_bytes()) {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
    if results.iter().any(|r| {
        !r.artifacts.is_empty()
            || r.outcome != Outcome::Succeeded
            || r.details.contains_key("skipped")
    }) && let Err(e) = build::write_manifest(&args.manifest, &template, &results, &mask)
    {
        eprintln!(
            "warning: cannot write manifest {}: {e}",
            args.manifest.display()
        );
    }
    outcome(&results, &cancel)
}

/// `--dry-run`: each source's checks on stdout (`aws: ec2:RunInstances:
/// allowed`); no manifest, no dotenv, as nothing was built.
fn dry_run_report(
    results: &[build::BuildResult],
    mask: &Mask,
    json: bool,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    if !json {
        for r in results {
            match r.details.get("dry_run").and_then(|c| c.as_array()) {
                Some(checks) => {
                    for check in checks.iter().filter_map(|c| c.as_str()) {
                        println!("{}: {}", r.name, mask.text(check));
                    }
                }
                None if r.outcome == Outcome::Succeeded => {
                    println!("{}: nothing to check ({})", r.name, r.builder_type);
                }
                None => {}
            }
        }
    }
    outcome(results, cancel)
}

/// Exit status: interrupted, else failed naming each failed build, else fine.
fn outcome(results: &[build::BuildResult], cancel: &CancellationToken) -> Result<(), Error> {
    if cancel.is_cancelled() || results.iter().any(|r| r.outcome == Outcome::Cancelled) {
        return Err(Error::Interrupted);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| {
            format!(
                "build `{}`: {}",
                r.name,
                r.error.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::BuildFailed(failed.join("\nerror: ")));
    }
    Ok(())
}

/// A build's last lines: the packages that changed since the previous build;
/// and its inventory as a CycloneDX SBOM beside the manifest.
fn report_packages(r: &mut build::BuildResult, manifest: &std::path::Path) {
    if r.outcome != Outcome::Succeeded {
        return;
    }
    if let Some(changes) = r.details.get("package_changes") {
        let since = changes["compared_with"]
            .as_str()
            .unwrap_or("the previous build");
        if let Ok(c) = serde_json::from_value::<Changes>(changes.clone()) {
            eprint!(
                "{}",
                c.report(&format!("{}: packages since {since}", r.name))
            );
        }
    }
    let entry = serde_json::Value::Object(r.details.clone());
    let Some(inventory) = Inventory::from_manifest(&entry) else {
        return;
    };
    let build = r.details.get("build").and_then(|b| b.as_u64()).unwrap_or(0);
    let version = format!("{}-{build}", r.version);
    let path = manifest.with_file_name(format!("{}-{version}.{}.cdx.json", r.image_name, r.name));
    let bom =
        crate::inventory::sbom::cyclonedx(&inventory, &r.image_name, &version, &r.finished_at);
    let written = serde_json::to_string_pretty(&bom)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&path, json + "\n"));
    match written {
        Ok(()) => {
            r.details
                .insert("sbom".into(), path.display().to_string().into());
        }
        Err(e) => eprintln!("warning: cannot write SBOM {}: {e}", path.display()),
    }
}

/// `unchanged: REGION: ami-… (built …, fingerprint …)` for an image
/// `--if-changed` reused rather than built.
fn reused_line(r: &build::BuildResult, a: &crate::events::Artifact) -> Option<String> {
    if r.details.get("unchanged") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let built = r.details.get("built_at")?.get(&a.id)?.as_str()?;
    let fingerprint = r.details.get("fingerprint")?.as_str()?;
    Some(format!(
        "unchanged: {}: {} (built {built}, fingerprint {})",
        a.location,
        a.id,
        crate::fingerprint::short(fingerprint)
    ))
}

/// First SIGINT/SIGTERM cancels the builds; later ones only say cleanup is under way.
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        if cancel.is_cancelled() {
            eprintln!(
                "{name} again: cleanup is still running and will finish; interrupting it would leave resources behind"
            );
        } else {
            eprintln!("{name} received: cancelling builds and cleaning up");
            cancel.cancel();
        }
    }
}
