//! Timestamped lines for CI logs and pipes: no cursor movement, colour only
//! where the log viewer renders it, each step a collapsible section in
//! GitLab, and a heartbeat line while a long wait would otherwise be silent.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;

use super::{Verbosity, describe, short_duration, shown};
use crate::events::{Event, Render};

/// How lines look beyond their text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colour for headers, warnings and errors.
    pub color: bool,
    /// GitLab's `section_start`/`section_end` markers around each step.
    pub sections: bool,
    /// A "still waiting" line when a wait has been silent this long.
    pub heartbeat: Option<Duration>,
}

pub struct Plain {
    verbosity: Verbosity,
    style: Style,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Last progress line per (build, label): transfers are logged every few seconds, not continuously.
    last_progress: Vec<(String, Instant)>,
    builds: HashMap<String, BuildState>,
    sections_opened: usize,
}

struct BuildState {
    section: Option<String>,
    wait: Option<Wait>,
    last_line: Instant,
}

struct Wait {
    what: String,
    limit: Duration,
    since: Instant,
}

impl Plain {
    pub fn new(verbosity: Verbosity, style: Style) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        if let Some(every) = style.heartbeat {
            let weak = Arc::downgrade(&state);
            std::thread::Builder::new()
                .name("heartbeat".into())
                .spawn(move || heartbeat_loop(weak, every))
                .ok();
        }
        Plain {
            verbosity,
            style,
            state,
        }
    }
}

/// Wakes every second while the renderer exists and prints what is due.
fn heartbeat_loop(state: Weak<Mutex<State>>, every: Duration) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut state = state.lock().expect("render state");
        for (build, text) in state.heartbeats(Instant::now(), every) {
            write_lines(&build, &text, false, None);
        }
    }
}

impl State {
    fn progress_due(&mut self, key: &str, finished: bool) -> bool {
        match self.last_progress.iter_mut().find(|(k, _)| k == key) {
            Some((_, at)) if finished || at.elapsed() >= Duration::from_secs(5) => {
                *at = Instant::now();
                true
            }
            Some(_) => false,
            None => {
                self.last_progress.push((key.to_string(), Instant::now()));
                true
            }
        }
    }

    fn build(&mut self, build: &str) -> &mut BuildState {
        self.builds
            .entry(build.to_string())
            .or_insert_with(|| BuildState {
                section: None,
                wait: None,
                last_line: Instant::now(),
            })
    }

    /// The "still waiting" lines due at `now`: one per build whose wait has
    /// printed nothing for `every`.
    fn heartbeats(&mut self, now: Instant, every: Duration) -> Vec<(String, String)> {
        let mut due = Vec::new();
        for (build, b) in &mut self.builds {
            let Some(wait) = &b.wait else { continue };
            if now.duration_since(b.last_line) >= every {
                b.last_line = now;
                due.push((
                    build.clone(),
                    format!(
                        "    still waiting for {}: {} of {}",
                        wait.what,
                        short_duration(now.duration_since(wait.since).as_secs_f64().floor()),
                        humantime::format_duration(wait.limit)
                    ),
                ));
            }
        }
        due.sort();
        due
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
        let build = build_of(event);
        let mut state = self.state.lock().expect("render state");
        // Any event but progress ends a wait; a new wait starts its own.
        if !matches!(event, Event::Progress { .. }) {
            let b = state.build(build);
            b.wait = match event {
                Event::Waiting { what, limit, .. } => Some(Wait {
                    what: what.clone(),
                    limit: *limit,
                    since: Instant::now(),
                }),
                _ => None,
            };
        }
        if !shown(event, self.verbosity) {
            return;
        }
        let text = match event {
            Event::Progress {
                label, done, total, ..
            } => {
                if !state.progress_due(&format!("{build}/{label}"), done == total) {
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
        let sections = self.style.sections;
        let opened = state.sections_opened;
        let b = state.build(build);
        b.last_line = Instant::now();
        let mut marker = None;
        if sections {
            match event {
                Event::StepStarted { .. } => {
                    let id = section_id(build, opened);
                    marker = Some(section_start(&id));
                    b.section = Some(id);
                    state.sections_opened += 1;
                }
                Event::StepFinished { .. } => {
                    if let Some(id) = b.section.take() {
                        write_lines(build, &text, self.style.color, None);
                        write_raw(&section_end(&id));
                        return;
                    }
                }
                _ => {}
            }
        }
        write_lines(build, &text, self.style.color, marker.as_deref());
    }
}

/// Writes each line of `text` as `TIME [build] line`; `marker` goes in
/// front of the first (a GitLab section start).
fn write_lines(build: &str, text: &str, color: bool, marker: Option<&str>) {
    let stamp = timestamp();
    let mut out = std::io::stderr().lock();
    for (i, line) in text.lines().enumerate() {
        let prefix = if i == 0 { marker.unwrap_or("") } else { "" };
        let line = if color {
            colored(line)
        } else {
            line.to_string()
        };
        let _ = writeln!(out, "{prefix}{stamp} [{build}] {line}");
    }
}

fn write_raw(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Errors red, warnings yellow, step and build headers bold.
fn colored(line: &str) -> String {
    let code = if line.starts_with("error:") || line.starts_with("==> build failed") {
        "31"
    } else if line.starts_with("warning:") {
        "33"
    } else if line.starts_with("==> ") {
        "1"
    } else {
        return line.to_string();
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// A GitLab section name: letters, digits and `_`, unique within the job.
fn section_id(build: &str, n: usize) -> String {
    let build: String = build
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("imgbuild_{build}_{n}")
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn section_start(id: &str) -> String {
    format!("\x1b[0Ksection_start:{}:{id}\r\x1b[0K", unix_now())
}

fn section_end(id: &str) -> String {
    format!("\x1b[0Ksection_end:{}:{id}\r\x1b[0K", unix_now())
}

pub(super) fn build_of(event: &Event) -> &str {
    match event {
        Event::BuildStarted { build, .. }
        | Event::StepStarted { build, .. }
        | Event::StepFinished { build, .. }
        | Event::Output { build, .. }
        | Event::Message { build, .. }
        | Event::Progress { build, .. }
        | Event::Waiting { build, .. }
        | Event::Artifact { build, .. }
        | Event::CleanupStarted { build, .. }
        | Event::CleanupFailed { build, .. }
        | Event::Kept { build, .. }
        | Event::BuildFinished { build, .. } => build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_wait_gets_a_heartbeat_every_interval_and_only_then() {
        let mut state = State::default();
        let start = Instant::now();
        let b = state.build("aws");
        b.last_line = start;
        b.wait = Some(Wait {
            what: "SSH on ec2-user@203.0.113.7:22".into(),
            limit: Duration::from_secs(300),
            since: start,
        });
        state.build("local").last_line = start; // not waiting: never a heartbeat
        let every = Duration::from_secs(30);
        assert!(
            state
                .heartbeats(start + Duration::from_secs(29), every)
                .is_empty()
        );
        assert_eq!(
            state.heartbeats(start + Duration::from_secs(30), every),
            [(
                "aws".to_string(),
                "    still waiting for SSH on ec2-user@203.0.113.7:22: 30.0s of 5m".to_string()
            )]
        );
        assert!(
            state
                .heartbeats(start + Duration::from_secs(45), every)
                .is_empty()
        );
        assert_eq!(
            state.heartbeats(start + Duration::from_secs(90), every)[0].1,
            "    still waiting for SSH on ec2-user@203.0.113.7:22: 1m 30s of 5m"
        );
    }

    #[test]
    fn gitlab_sections_and_colours_have_the_documented_shape() {
        assert_eq!(section_id("aws-eu.1", 3), "imgbuild_aws_eu_1_3");
        let start = section_start("imgbuild_aws_0");
        assert!(start.starts_with("\x1b[0Ksection_start:"), "{start:?}");
        assert!(start.ends_with(":imgbuild_aws_0\r\x1b[0K"), "{start:?}");
        assert_eq!(colored("warning: x"), "\x1b[33mwarning: x\x1b[0m");
        assert_eq!(
            colored("==> build failed after 3s"),
            "\x1b[31m==> build failed after 3s\x1b[0m"
        );
        assert_eq!(
            colored("==> launch instance"),
            "\x1b[1m==> launch instance\x1b[0m"
        );
        assert_eq!(colored("    | output"), "    | output");
    }
}
