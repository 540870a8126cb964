//! Runs the builds a template asks for, concurrently, and gathers results:
//! artifacts on stdout, the JSON manifest, and an outcome per build.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::builder::packages::PreviousPackages;
use crate::builder::{self, BuildContext};
use crate::events::{Artifact, Event, EventSink, Leftover, Outcome, Render};
use crate::inventory::Inventory;
use crate::mask::Mask;
use crate::pipeline::{self, Cleanup, OnError, RunOptions, StepError};
use crate::template::{RebuildPolicy, Source, Template};

pub struct BuildOptions {
    pub only: Vec<String>,
    pub except: Vec<String>,
    pub on_error: OnError,
    pub cleanup_deadline: Duration,
    /// `--if-changed` / `--max-age`, already merged with the template's.
    pub rebuild: RebuildPolicy,
    /// The manifest an earlier run left, for its package inventories.
    pub previous_manifest: Option<serde_json::Value>,
    /// `--dry-run`: each source checks what it would do and makes nothing.
    pub dry_run: bool,
}

/// One source's build, as the manifest records it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    pub name: String,
    pub builder_type: String,
    pub build_id: String,
    pub image_name: String,
    pub version: String,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub artifacts: Vec<Artifact>,
    pub leftovers: Vec<ReportedLeftover>,
    pub started_at: String,
    pub finished_at: String,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Something the build could not remove (or kept), and whether its cleanup
/// was attempted or skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedLeftover {
    #[serde(flatten)]
    pub leftover: Leftover,
    pub cleanup: Cleanup,
}

/// The sources `--only`/`--except` select, or an error naming the unknown ones.
pub fn select<'a>(
    template: &'a Template,
    only: &[String],
    except: &[String],
) -> Result<Vec<&'a Source>, String> {
    for name in only.iter().chain(except) {
        if !template.sources.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = template.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "no source named `{name}` in {} (sources: {})",
                template.path.display(),
                known.join(", ")
            ));
        }
    }
    let chosen: Vec<&Source> = template
        .sources
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .filter(|s| !except.contains(&s.name))
        .collect();
    if chosen.is_empty() {
        return Err("--only/--except leave no source to build".into());
    }
    Ok(chosen)
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `20261122041501`-style stamp that is safe in AMI names and file names.
fn compact_timestamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Builds every selected source at once; returns when all have finished and cleaned up.
pub async fn run_all(
    template: Arc<Template>,
    sources: Vec<Source>,
    opts: BuildOptions,
    renderer: Arc<dyn Render>,
    cancel: CancellationToken,
) -> Vec<BuildResult> {
    // The same moment `timestamp()` formats in the template.
    let timestamp = compact_timestamp(template.scope.time());
    let mask = Mask::new(template.secrets());
    let mut tasks = Vec::new();
    for source in sources {
        let build_id = builder::new_build_id();
        let events = EventSink::new(&source.name, renderer.clone(), mask.clone());
        let mut scope = template.scope.clone();
        scope.set("build.id", build_id.clone());
        scope.set("build.timestamp", timestamp.clone());
        scope.set("build.name", source.name.clone());
        scope.set("source.name", source.name.clone());
        scope.set("source.type", source.config.type_name());
        let ctx = BuildContext {
            template: template.clone(),
            source: source.clone(),
            build_id,
            scope,
            events: events.clone(),
            cancel: cancel.clone(),
            ssh_target: None,
            comm: None,
            artifacts: Vec::new(),
            manifest: serde_json::Map::new(),
            rebuild: opts.rebuild,
            dry_run: opts.dry_run,
            packages: None,
            previous_packages: previous_packages(
                opts.previous_manifest.as_ref(),
                &template,
                &source.name,
            ),
        };
        let run_opts = RunOptions {
            cancel: cancel.clone(),
            events,
            on_error: opts.on_error,
            cleanup_deadline: opts.cleanup_deadline,
            cleanup_grace: pipeline::CLEANUP_GRACE,
        };
        tasks.push(tokio::spawn(run_one(ctx, run_opts)));
    }
    let mut results = Vec::new();
    for task in tasks {
        match task.await {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!("a build task panicked: {e}"),
        }
    }
    results
}

/// The inventory of the same source's last successful build of this name
/// and version in an earlier manifest.
fn previous_packages(
    manifest: Option<&serde_json::Value>,
    template: &Template,
    source: &str,
) -> Option<PreviousPackages> {
    let build = manifest?["builds"].as_array()?.iter().rev().find(|b| {
        b["name"] == source
            && b["image_name"] == template.name.as_str()
            && b["version"] == template.version.as_str()
            && b["outcome"] == "succeeded"
            && b["packages"].is_array()
    })?;
    let id = build["artifacts"][0]["id"].as_str().unwrap_or("?");
    Some(PreviousPackages {
        label: format!("build {} ({id})", build["build"].as_u64().unwrap_or(0)),
        image: id.to_string(),
        inventory: Inventory::from_manifest(build)?,
    })
}

async fn run_one(ctx: BuildContext, opts: RunOptions) -> BuildResult {
    let started_at = now_rfc3339();
    let began = Instant::now();
    let name = ctx.source.name.clone();
    opts.events.emit(Event::BuildStarted {
        build: name.clone(),
        builder: ctx.source.config.type_name().into(),
        build_id: ctx.build_id.clone(),
    });
    let (report, ctx) = builder::run(ctx, &opts).await;
    let error = report.error.as_ref().map(|(step, e)| match e {
        StepError::Cancelled => format!("cancelled during step \"{step}\""),
        StepError::Failed(e) => format!("step \"{step}\" failed: {e}"),
    });
    // The manifest and the final error line show it too, not only the events.
    let error = error.map(|e| opts.events.mask().text(&e));
    let mut ctx = ctx;
    if ctx.manifest.get("unchanged") == Some(&serde_json::Value::Bool(true)) {
        // The reused image's inventory, so the manifest stays complete.
        let reused = ctx
            .previous_packages
            .as_ref()
            .filter(|p| ctx.artifacts.iter().any(|a| a.id == p.image));
        if let Some(previous) = reused {
            builder::packages::record(&mut ctx.manifest, &previous.inventory);
        }
    }
    let artifacts = if report.outcome == Outcome::Succeeded {
        ctx.artifacts.clone()
    } else {
        Vec::new()
    };
    for artifact in &artifacts {
        opts.events.emit(Event::Artifact {
            build: name.clone(),
            artifact: artifact.clone(),
        });
    }
    opts.events.emit(Event::BuildFinished {
        build: name.clone(),
        outcome: report.outcome,
        duration: began.elapsed(),
        error: error.clone(),
        timings: report
            .timings
            .iter()
            .map(|(s, d)| (s.to_string(), d.as_secs_f64()))
            .collect(),
        leftovers: report.leftovers.len(),
    });
    BuildResult {
        name,
        builder_type: ctx.source.config.type_name().into(),
        build_id: ctx.build_id.clone(),
        image_name: ctx.template.name.clone(),
        version: ctx.template.version.clone(),
        outcome: report.outcome,
        error,
        artifacts,
        leftovers: report
            .leftovers
            .into_iter()
            .map(|leftover| ReportedLeftover {
                leftover,
                cleanup: report.cleanup,
            })
            .collect(),
        started_at,
        finished_at: now_rfc3339(),
        details: ctx.manifest,
    }
}

#[derive(Serialize)]
struct Manifest<'a> {
    template: String,
    builds: &'a [BuildResult],
}

/// Writes the manifest atomically (a partial file is never left behind),
/// with every sensitive value masked.
pub fn write_manifest(
    path: &Path,
    template: &Template,
    results: &[BuildResult],
    mask: &Mask,
) -> std::io::Result<()> {
    let manifest = Manifest {
        template: template.path.display().to_string(),
        builds: results,
    };
    let mut value = serde_json::to_value(&manifest).map_err(std::io::Error::other)?;
    mask.json(&mut value);
    let mut json = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
    json.push('\n');
    crate::report::write_atomically(path, json.as_bytes())
}
