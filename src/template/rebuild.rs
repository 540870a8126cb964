//! `rebuild` and `max_age` at the top level: whether a scheduled build may
//! reuse the family's newest image when nothing that determines it changed.

use std::time::Duration;

use serde::Deserialize;
use toml::de::ValueDeserializer;

use super::document::{Diagnostic, Document, KeyPath};
use super::schema::HumanDuration;

/// When a build may skip making a new image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildPolicy {
    /// `rebuild = "if-changed"` (or `--if-changed`): skip when the newest
    /// image of the family has the same fingerprint.
    pub if_changed: bool,
    /// An image older than this is rebuilt even when nothing changed.
    pub max_age: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Rebuild {
    Always,
    IfChanged,
}

/// Reads both keys; problems go to `diags`, located at the key.
pub fn read(doc: &Document, diags: &mut Vec<Diagnostic>) -> RebuildPolicy {
    let mut policy = RebuildPolicy::default();
    if let Some(value) = doc.value_at(&KeyPath::root().key("rebuild")) {
        match Rebuild::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(r) => policy.if_changed = matches!(r, Rebuild::IfChanged),
            Err(_) => diags.push(
                doc.diagnostic(
                    Some(value.span()),
                    "`rebuild` must be \"always\" or \"if-changed\"",
                )
                .with_help(
                    "\"if-changed\" skips the build when the newest image has the same fingerprint",
                ),
            ),
        }
    }
    if let Some(value) = doc.value_at(&KeyPath::root().key("max_age")) {
        match HumanDuration::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(d) => policy.max_age = Some(d.0),
            Err(e) => diags.push(doc.diagnostic(
                Some(value.span()),
                format!(
                        "`max_age`: {}",
                        e.message()
                            .replace("\"30s\", \"5m\" or \"1h\"", "\"14d\" or \"36h\"")
                    ),
            )),
        }
    }
    policy
}
