//! Renderers turn build events into what a person (or a CI log) reads.
//! Everything goes to stderr: stdout carries only results.

pub mod json;
mod plain;
mod terminal;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

pub use plain::{Plain, Style};
pub use terminal::Terminal;

use crate::events::{Event, Render};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// `--color`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal and in GitLab CI (whose log viewer renders it), unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

/// How often a silent wait says it is still waiting, in CI logs.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The renderer that fits where stderr goes: live lines on a terminal,
/// plain timestamped lines in CI or a pipe (in GitLab, with a collapsible
/// section per step).
pub fn for_stderr(verbosity: Verbosity, color: ColorChoice) -> Arc<dyn Render> {
    let ci = env_set("CI");
    let gitlab = env_set("GITLAB_CI");
    let terminal = std::io::stderr().is_terminal();
    let color = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !env_set("NO_COLOR") && ((terminal && !ci) || gitlab),
    };
    if terminal && !ci {
        Arc::new(Terminal::new(verbosity, color))
    } else {
        Arc::new(Plain::new(
            verbosity,
            Style {
                color,
                sections: gitlab,
                heartbeat: Some(HEARTBEAT),
            },
        ))
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Whether an event is shown at this verbosity.
fn shown(event: &Event, verbosity: Verbosity) -> bool {
    match (verbosity, event) {
        (
            _,
            Event::Message {
                level: crate::events::Level::Warn,
                ..
            },
        ) => true,
        (
            _,
            Event::CleanupFailed { .. }
            | Event::Kept { .. }
            | Event::BuildFinished { .. }
            | Event::Artifact { .. },
        ) => true,
        (Verbosity::Quiet, _) => false,
        (Verbosity::Normal, Event::CleanupStarted { .. }) => false,
        _ => true,
    }
}

/// "1m 32s", "4.2s", "0.3s".
pub fn short_duration(secs: f64) -> String {
    if secs >= 60.0 {
        let whole = secs.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// The one-line text of an event, without the build prefix; None for events
/// a renderer shows another way (progress).
fn describe(event: &Event) -> Option<String> {
    use crate::events::Outcome;
    Some(match event {
        Event::BuildStarted {
            builder, build_id, ..
        } => format!("==> build started ({builder}, build id {build_id})"),
        Event::StepStarted { step, .. } => format!("==> {step}"),
        Event::StepFinished {
            step, duration, ok, ..
        } => {
            let verdict = if *ok { "done" } else { "failed" };
            format!(
                "    {step} {verdict} in {}",
                short_duration(duration.as_secs_f64())
            )
        }
        Event::Output { line, .. } => format!("    | {line}"),
        Event::Message {
            level: crate::events::Level::Warn,
            text,
            ..
        } => format!("warning: {text}"),
        Event::Message { text, .. } => format!("    {text}"),
        Event::Progress { .. } => return None,
        Event::Waiting { what, limit, .. } => {
            format!(
                "    waiting for {what} (up to {})",
                short_duration(limit.as_secs_f64())
            )
        }
        Event::Artifact { artifact, .. } => {
            format!("==> artifact: {}: {}", artifact.location, artifact.id)
        }
        Event::CleanupStarted { step, .. } => format!("    cleanup: {step}"),
        Event::CleanupFailed { leftover, .. } => format!(
            "error: could not remove {} {}: {}\n    remove it by hand: {}",
            leftover.resource, leftover.id, leftover.reason, leftover.remove_with
        ),
        Event::Kept { leftover, .. } => format!(
            "    kept {} {}\n    remove it with: {}",
            leftover.resource, leftover.id, leftover.remove_with
        ),
        Event::BuildFinished {
            outcome,
            duration,
            timings,
            leftovers,
            ..
        } => {
            let took = short_duration(duration.as_secs_f64());
            let steps = timings
                .iter()
                .map(|(step, secs)| format!("{step} {}", short_duration(*secs)))
                .collect::<Vec<_>>()
                .join(", ");
            // A failure's error is printed once, as the last line of the
            // run (`error: build …`), not here as well.
            match outcome {
                Outcome::Succeeded => format!("==> build finished in {took} ({steps})"),
                Outcome::Cancelled if *leftovers == 0 => {
                    format!("==> build cancelled after {took}; cleanup done")
                }
                Outcome::Cancelled => format!(
                    "==> build cancelled after {took}; {leftovers} thing(s) left in place (see above)"
                ),
                Outcome::Failed => format!("==> build failed after {took} ({steps})"),
            }
        }
    })
}
