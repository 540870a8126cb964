//! What a build reports as it goes. Builds emit events; renderers (terminal,
//! plain lines) decide how they look. Nothing else in a build prints.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::mask::Mask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    /// `amazon-ebs`, `qemu`.
    pub builder: String,
    /// Where it lives: a region, or a folder.
    pub location: String,
    /// An AMI id, or an image file path.
    pub id: String,
}

/// A thing left behind that the user must remove by hand.
#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    pub resource: String,
    pub id: String,
    pub reason: String,
    /// The command that removes it.
    pub remove_with: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    BuildStarted {
        build: String,
        builder: String,
        build_id: String,
    },
    StepStarted {
        build: String,
        step: String,
    },
    StepFinished {
        build: String,
        step: String,
        #[serde(with = "secs")]
        duration: Duration,
        ok: bool,
    },
    Output {
        build: String,
        stream: Stream,
        line: String,
    },
    Message {
        build: String,
        level: Level,
        text: String,
    },
    Progress {
        build: String,
        label: String,
        done: u64,
        total: u64,
    },
    /// A wait began (SSH, an instance or image state, a copy); it lasts
    /// until the build's next event. CI logs show a heartbeat meanwhile.
    Waiting {
        build: String,
        what: String,
        #[serde(with = "secs")]
        limit: Duration,
    },
    Artifact {
        build: String,
        artifact: Artifact,
    },
    CleanupStarted {
        build: String,
        step: String,
    },
    CleanupFailed {
        build: String,
        leftover: Leftover,
    },
    /// Left in place on purpose (`--on-error=abort`).
    Kept {
        build: String,
        leftover: Leftover,
    },
    BuildFinished {
        build: String,
        outcome: Outcome,
        #[serde(with = "secs")]
        duration: Duration,
        error: Option<String>,
        /// Where the time went: each step and its seconds.
        timings: Vec<(String, f64)>,
        /// How many things were left in place (each reported before).
        leftovers: usize,
    },
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

/// Something that shows events to the user.
pub trait Render: Send + Sync {
    fn event(&self, event: &Event);
}

impl Event {
    /// Hides sensitive values in every piece of text the event carries.
    fn mask(&mut self, mask: &Mask) {
        let m = |s: &mut String| *s = mask.text(s);
        let leftover = |l: &mut Leftover| {
            for s in [
                &mut l.resource,
                &mut l.id,
                &mut l.reason,
                &mut l.remove_with,
            ] {
                m(s);
            }
        };
        match self {
            Event::BuildStarted { .. }
            | Event::StepStarted { .. }
            | Event::StepFinished { .. }
            | Event::CleanupStarted { .. } => {}
            Event::Output { line, .. } => m(line),
            Event::Message { text, .. } => m(text),
            Event::Progress { label, .. } => m(label),
            Event::Waiting { what, .. } => m(what),
            Event::Artifact { artifact, .. } => {
                m(&mut artifact.location);
                m(&mut artifact.id);
            }
            Event::CleanupFailed { leftover: l, .. } | Event::Kept { leftover: l, .. } => {
                leftover(l)
            }
            Event::BuildFinished { error, .. } => {
                if let Some(e) = error {
                    m(e);
                }
            }
        }
    }
}

/// A build's handle for emitting events: it names the build, and every
/// event passes through the template's [`Mask`] on its way to the renderer.
#[derive(Clone)]
pub struct EventSink {
    build: Arc<str>,
    renderer: Arc<dyn Render>,
    mask: Mask,
}

impl EventSink {
    pub fn new(build: &str, renderer: Arc<dyn Render>, mask: Mask) -> Self {
        EventSink {
            build: build.into(),
            renderer,
            mask,
        }
    }

    pub fn build(&self) -> &str {
        &self.build
    }

    /// The mask every event passes through, for text that leaves another way.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    pub fn emit(&self, mut event: Event) {
        if !self.mask.is_empty() {
            event.mask(&self.mask);
        }
        self.renderer.event(&event);
    }

    pub fn build_name(&self) -> String {
        self.build.to_string()
    }

    pub fn info(&self, text: impl AsRef<str>) {
        self.emit(Event::Message {
            build: self.build_name(),
            level: Level::Info,
            text: text.as_ref().to_string(),
        });
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        self.emit(Event::Message {
            build: self.build_name(),
            level: Level::Warn,
            text: text.as_ref().to_string(),
        });
    }

    pub fn output(&self, stream: Stream, line: &str) {
        self.emit(Event::Output {
            build: self.build_name(),
            stream,
            line: line.to_string(),
        });
    }

    /// Says a wait for `what` began, which gives up after `limit`.
    pub fn waiting(&self, what: &str, limit: Duration) {
        self.emit(Event::Waiting {
            build: self.build_name(),
            what: what.to_string(),
            limit,
        });
    }

    pub fn progress(&self, label: &str, done: u64, total: u64) {
        self.emit(Event::Progress {
            build: self.build_name(),
            label: label.to_string(),
            done,
            total,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);
    impl Render for Recorder {
        fn event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn output_lines_are_masked() {
        let recorder = Arc::new(Recorder::default());
        let sink = EventSink::new("aws", recorder.clone(), Mask::new(["hunter2".into()]));
        sink.output(Stream::Stdout, "password is hunter2!");
        let events = recorder.0.lock().unwrap();
        match &events[0] {
            Event::Output { line, build, .. } => {
                assert_eq!(line, "password is <sensitive>!");
                assert_eq!(build, "aws");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_event_text_is_masked_before_any_renderer_sees_it() {
        let recorder = Arc::new(Recorder::default());
        let sink = EventSink::new("aws", recorder.clone(), Mask::new(["hunter2".into()]));
        sink.emit(Event::BuildFinished {
            build: "aws".into(),
            outcome: Outcome::Failed,
            duration: Duration::from_secs(1),
            error: Some("login with hunter2 refused".into()),
            timings: Vec::new(),
            leftovers: 0,
        });
        sink.emit(Event::CleanupFailed {
            build: "aws".into(),
            leftover: Leftover {
                resource: "file".into(),
                id: "/tmp/hunter2".into(),
                reason: "gone".into(),
                remove_with: "rm /tmp/hunter2".into(),
            },
        });
        let json = serde_json::to_string(&*recorder.0.lock().unwrap()).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("login with <sensitive> refused"), "{json}");
    }
}
