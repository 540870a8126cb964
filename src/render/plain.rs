//! Timestamped lines with no escape codes, for CI logs and pipes.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;

use super::{Verbosity, describe, shown};
use crate::events::{Event, Render};

pub struct Plain {
    verbosity: Verbosity,
    /// Last progress line per (build, label): transfers are logged every few seconds, not continuously.
    last_progress: Mutex<Vec<(String, Instant)>>,
}

impl Plain {
    pub fn new(verbosity: Verbosity) -> Self {
        Plain {
            verbosity,
            last_progress: Mutex::new(Vec::new()),
        }
    }

    fn progress_due(&self, key: &str, finished: bool) -> bool {
        let mut seen = self.last_progress.lock().expect("progress lock");
        match seen.iter_mut().find(|(k, _)| k == key) {
            Some((_, at)) if finished || at.elapsed() >= Duration::from_secs(5) => {
                *at = Instant::now();
                true
            }
            Some(_) => false,
            None => {
                seen.push((key.to_string(), Instant::now()));
                true
            }
        }
    }
}

pub fn timestamp() -> String {
    let now = OffsetDateTime::now_utc();
    now.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

impl Render for Plain {
    fn event(&self, event: &Event) {
        if !shown(event, self.verbosity) {
            return;
        }
        let text = match event {
            Event::Progress {
                build,
                label,
                done,
                total,
            } => {
                if !self.progress_due(&format!("{build}/{label}"), done == total) {
                    return;
                }
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                if *total > 0 {
                    format!("    {label}: {:.1} of {:.1} MiB", mib(*done), mib(*total))
                } else {
                    format!("    {label}: {:.1} MiB", mib(*done))
                }
            }
            other => match describe(other) {
                Some(t) => t,
                None => return,
            },
        };
        let build = build_of(event);
        let stamp = timestamp();
        let mut out = std::io::stderr().lock();
        for line in text.lines() {
            let _ = writeln!(out, "{stamp} [{build}] {line}");
        }
    }
}

pub(super) fn build_of(event: &Event) -> &str {
    match event {
        Event::BuildStarted { build, .. }
        | Event::StepStarted { build, .. }
        | Event::StepFinished { build, .. }
        | Event::Output { build, .. }
        | Event::Message { build, .. }
        | Event::Progress { build, .. }
        | Event::Artifact { build, .. }
        | Event::CleanupStarted { build, .. }
        | Event::CleanupFailed { build, .. }
        | Event::Kept { build, .. }
        | Event::BuildFinished { build, .. } => build,
    }
}
