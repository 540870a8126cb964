//! `--output json`: every event as one JSON object per line on stdout, for
//! CI jobs and scripts. Human text keeps going to stderr beside it.
//!
//! Each line carries `schema` (bumped whenever a field changes meaning or
//! goes away; new fields may appear within a version), `time` (UTC, RFC
//! 3339) and `event` (`build_started`, `step_started`, `step_finished`,
//! `output`, `message`, `progress`, `artifact`, `cleanup_started`,
//! `cleanup_failed`, `kept`, `waiting`, `build_finished`; `validated` from
//! `validate`, `template` from `inspect`, `image` from `images`, `pruned`
//! from `prune`).

use std::io::Write;
use std::sync::Mutex;

use crate::events::{Event, Render};

pub const SCHEMA: &str = "imgbuild.events/1";

pub struct Json {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Json {
    pub fn stdout() -> Json {
        Json::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Json {
        Json {
            out: Mutex::new(out),
        }
    }
}

/// The JSON object for one event, with the schema and time in front.
pub fn line(event: &Event, time: &str) -> String {
    let fields = serde_json::to_string(event).expect("events serialise");
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    // `fields` is an object: splice the two leading fields into it.
    format!(
        "{{\"schema\":{},\"time\":{},{}",
        quoted(SCHEMA),
        quoted(time),
        &fields[1..]
    )
}

impl Render for Json {
    fn event(&self, event: &Event) {
        let text = line(event, &super::plain::timestamp());
        let mut out = self.out.lock().expect("json output lock");
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Shows every event through each of several renderers.
pub struct Tee(pub Vec<std::sync::Arc<dyn Render>>);

impl Render for Tee {
    fn event(&self, event: &Event) {
        for r in &self.0 {
            r.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_event_is_one_line_with_schema_time_and_kind_first() {
        let event = Event::StepFinished {
            build: "aws".into(),
            step: "launch instance".into(),
            duration: Duration::from_millis(1234),
            ok: true,
        };
        assert_eq!(
            line(&event, "2026-12-01T10:00:00Z"),
            r#"{"schema":"imgbuild.events/1","time":"2026-12-01T10:00:00Z","event":"step_finished","build":"aws","step":"launch instance","duration":1.234,"ok":true}"#
        );
    }
}
