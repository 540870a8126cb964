//! A live view for people at a terminal: one line per build with its current
//! step, elapsed time and transfer progress; output scrolls above it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plain::build_of;
use super::{Verbosity, describe, shown};
use crate::events::{Event, Render};

pub struct Terminal {
    verbosity: Verbosity,
    colors: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Terminal {
    pub fn new(verbosity: Verbosity, colors: bool) -> Self {
        Terminal {
            verbosity,
            colors,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, build: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(build.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(build.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }

    fn prefix(&self, build: &str) -> String {
        if self.colors {
            format!("\x1b[1m[{build}]\x1b[0m")
        } else {
            format!("[{build}]")
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{prefix}] {msg} ({elapsed})").expect("valid template")
}

fn transfer_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} [{prefix}] {msg} {bytes}/{total_bytes} {binary_bytes_per_sec} ({elapsed})",
    )
    .expect("valid template")
}

impl Render for Terminal {
    fn event(&self, event: &Event) {
        let build = build_of(event);
        match event {
            Event::StepStarted { step, .. } => {
                let bar = self.bar(build);
                bar.reset();
                bar.set_style(spinner_style());
                bar.set_message(step.clone());
            }
            Event::Progress {
                label, done, total, ..
            } => {
                let bar = self.bar(build);
                if bar.message() != *label {
                    // A new transfer: its rate and elapsed time start now.
                    bar.reset();
                }
                if *total > 0 {
                    bar.set_style(transfer_style());
                    bar.set_length(*total);
                    bar.set_position(*done);
                }
                bar.set_message(label.clone());
                return;
            }
            Event::BuildFinished { .. } => {
                if let Some(bar) = self.bars.lock().expect("bars lock").remove(build) {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
        if !shown(event, self.verbosity) {
            return;
        }
        if let Some(text) = describe(event) {
            let prefix = self.prefix(build);
            for line in text.lines() {
                self.multi.suspend(|| eprintln!("{prefix} {line}"));
            }
        }
    }
}
