//! Hiding sensitive values. A [`Mask`] knows the values of a template's
//! sensitive variables and replaces each of them, and each line of a
//! multi-line one, with `<sensitive>`. Every way text leaves imgbuild goes
//! through one: build events (so every renderer, and anything serialising
//! events), the manifest, the final error line, and the debug log.

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// What a hidden value is shown as.
pub const MASKED: &str = "<sensitive>";

/// Lines of a multi-line value shorter than this are not hidden on their
/// own: a line such as `}` or `--` would take every occurrence of it out of
/// every log. The value as a whole is always hidden, whatever its length.
pub const MIN_LINE: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Mask {
    /// Longest first, so a line inside a longer pattern never splits it.
    patterns: Arc<[String]>,
}

impl Mask {
    /// A mask for these values: each value, and each line of a multi-line
    /// value (without its line ending and surrounding blanks), as a PEM key
    /// shows when a provisioner prints it line by line.
    pub fn new(values: impl IntoIterator<Item = String>) -> Mask {
        let mut patterns: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.chars().count() >= MIN_LINE)
                        .map(str::to_string),
                );
            }
            patterns.push(value);
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Mask {
            patterns: patterns.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every sensitive value and line replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for pattern in self.patterns.iter() {
            if out.contains(pattern.as_str()) {
                out = out.replace(pattern.as_str(), MASKED);
            }
        }
        out
    }

    /// Masks every string in a JSON document, keys included.
    pub fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.json(&mut v);
                    map.insert(self.text(&key), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// The mask of the template being built, for output that has no build to
/// ask (the debug log, the final error line). Set once the template is
/// loaded; empty before.
static CURRENT: OnceLock<Mask> = OnceLock::new();

/// Makes `mask` the one [`current`] returns; only the first call counts.
pub fn install(mask: Mask) {
    let _ = CURRENT.set(mask);
}

pub fn current() -> Mask {
    CURRENT.get().cloned().unwrap_or_default()
}

/// stderr for the debug log, with the current mask applied to each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedWriter;
    fn make_writer(&'a self) -> MaskedWriter {
        MaskedWriter(Vec::new())
    }
}

/// Gathers one log record and writes it masked when dropped (tracing makes
/// one writer per record, so a value is never split across two writes).
pub struct MaskedWriter(Vec<u8>);

impl Write for MaskedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = io::stderr().write_all(current().text(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
        QyNTUxOQAAACCLd2nNCrQ6qGAjYvdGyX0ZhoG5bOqyCEFLhCIb5Bp1JwAAAJgkPzg0JD84\n\
        -----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn a_value_is_masked_wherever_it_appears() {
        let mask = Mask::new(["hunter2".to_string()]);
        assert_eq!(
            mask.text("pw=hunter2, again hunter2"),
            "pw=<sensitive>, again <sensitive>"
        );
        assert_eq!(mask.text("nothing here"), "nothing here");
    }

    #[test]
    fn each_line_of_a_multi_line_value_is_masked_on_its_own() {
        let mask = Mask::new([PEM.to_string()]);
        // As a provisioner prints it: one line at a time.
        for line in PEM.lines() {
            assert_eq!(
                mask.text(&format!("  | {line}")),
                "  | <sensitive>",
                "{line}"
            );
        }
        // Whole, it is one mask, not one per line.
        assert_eq!(mask.text(&format!("key: {PEM}!")), "key: <sensitive>!");
        // Indented or with CRLF line endings, as a remote shell may print it.
        let crlf = PEM.replace('\n', "\r\n");
        assert!(
            !mask.text(&crlf).contains("b3BlbnNz"),
            "{}",
            mask.text(&crlf)
        );
    }

    #[test]
    fn short_lines_are_only_masked_within_the_whole_value() {
        let mask = Mask::new(["ab\nsecret-line\n".to_string()]);
        assert_eq!(mask.text("ab cd"), "ab cd");
        assert_eq!(mask.text("x secret-line y"), "x <sensitive> y");
        assert_eq!(mask.text("ab\nsecret-line\n"), "<sensitive>");
    }

    #[test]
    fn empty_values_mask_nothing() {
        let mask = Mask::new([String::new()]);
        assert!(mask.is_empty());
        assert_eq!(mask.text("text"), "text");
    }

    #[test]
    fn json_strings_and_keys_are_masked() {
        let mask = Mask::new(["hunter2".to_string()]);
        let mut v = serde_json::json!({
            "error": "login hunter2 refused",
            "list": ["a", "hunter2"],
            "hunter2": 1,
            "n": 3
        });
        mask.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "error": "login <sensitive> refused",
                "list": ["a", "<sensitive>"],
                "<sensitive>": 1,
                "n": 3
            })
        );
    }
}
