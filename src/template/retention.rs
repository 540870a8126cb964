//! `[retention]`: how many images of the family `prune` keeps, and how old
//! the others must be before they go, so a scheduled job needs no flags.

use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};

use super::document::{Diagnostic, Document, KeyPath};
use super::hints;
use super::schema::HumanDuration;

const KEYS: &[&str] = &["keep", "older_than"];

/// What `[retention]` says; the flags of `prune` win over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many images of each region (and locally) stay.
    pub keep: Option<usize>,
    /// Only images older than this are removed.
    pub older_than: Option<Duration>,
}

/// Reads the table; problems go to `diags`, located at the key.
pub fn read(doc: &Document, diags: &mut Vec<Diagnostic>) -> Retention {
    let mut retention = Retention::default();
    let path = KeyPath::root().key("retention");
    let Some(value) = doc.value_at(&path) else {
        return retention;
    };
    let DeValue::Table(table) = value.get_ref() else {
        diags.push(doc.diagnostic(
            Some(value.span()),
            "`retention` must be a table (`keep`, `older_than`)",
        ));
        return retention;
    };
    for (key, _) in table.iter() {
        let name = key.get_ref().as_ref();
        if !KEYS.contains(&name) {
            let mut d = doc.diagnostic(
                Some(key.span()),
                format!("unknown key `{name}` in `[retention]`"),
            );
            d.help = hints::unknown_key_help(name, KEYS.iter().copied());
            diags.push(d);
        }
    }
    if let Some(value) = doc.value_at(&path.key("keep")) {
        match usize::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(n) => retention.keep = Some(n),
            Err(_) => diags.push(
                doc.diagnostic(
                    Some(value.span()),
                    "`retention.keep` must be a whole number, 0 or more",
                )
                .with_help("the newest this many images of each region stay, e.g. `keep = 5`"),
            ),
        }
    }
    if let Some(value) = doc.value_at(&path.key("older_than")) {
        match HumanDuration::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(d) => retention.older_than = Some(d.0),
            Err(e) => diags.push(doc.diagnostic(
                Some(value.span()),
                format!(
                    "`retention.older_than`: {}",
                    e.message()
                        .replace("\"30s\", \"5m\" or \"1h\"", "\"30d\" or \"12h\"")
                ),
            )),
        }
    }
    retention
}
