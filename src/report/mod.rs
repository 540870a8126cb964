//! Report files for CI systems: what `validate` found (JUnit, GitLab Code
//! Quality) and what `build` made (a dotenv file for downstream jobs). Each
//! format has its own module; they all read the same plain results.

pub mod codequality;
pub mod dotenv;
pub mod junit;

use std::path::{Path, PathBuf};

use crate::template::Diagnostic;
use crate::template::document::{Document, KeyPath};

/// What `validate` found in one template file.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: PathBuf,
    /// Each source's name and type, in file order (empty when the file does not parse).
    pub sources: Vec<SourceSpan>,
    pub problems: Vec<Diagnostic>,
}

/// A source of a template and the lines its table covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpan {
    pub name: String,
    pub kind: String,
    pub lines: std::ops::RangeInclusive<usize>,
}

impl Checked {
    /// Reads the sources of `file` (without checking them) so that each
    /// problem can be reported under the source it is in.
    pub fn new(file: &Path, problems: Vec<Diagnostic>) -> Checked {
        let sources = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| Document::parse(file, text).ok())
            .map(|doc| sources_of(&doc))
            .unwrap_or_default();
        Checked {
            file: file.to_path_buf(),
            sources,
            problems,
        }
    }

    /// The source a problem at `line` belongs to, if any.
    pub fn source_at(&self, line: usize) -> Option<&SourceSpan> {
        self.sources.iter().find(|s| s.lines.contains(&line))
    }
}

fn sources_of(doc: &Document) -> Vec<SourceSpan> {
    use toml::de::DeValue;
    let Some(DeValue::Table(table)) = doc
        .value_at(&KeyPath::root().key("source"))
        .map(|v| v.get_ref())
    else {
        return Vec::new();
    };
    let mut sources: Vec<SourceSpan> = table
        .iter()
        .map(|(name, value)| {
            let kind = match value.get_ref() {
                DeValue::Table(t) => t.get("type").and_then(|v| match v.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                }),
                _ => None,
            };
            // A `[source.NAME]` table's own span is its header only: it
            // ends where the last value inside it ends.
            let start = doc.line_of(name.span().start);
            let end = doc.line_of(last_byte(value).saturating_sub(1)).max(start);
            SourceSpan {
                name: name.get_ref().to_string(),
                kind: kind.unwrap_or_default(),
                lines: start..=end,
            }
        })
        .collect();
    sources.sort_by_key(|s| *s.lines.start());
    sources
}

/// Where the last value in `value` (or inside its tables and arrays) ends.
fn last_byte(value: &toml::Spanned<toml::de::DeValue<'static>>) -> usize {
    use toml::de::DeValue;
    let inner = match value.get_ref() {
        DeValue::Table(t) => t.values().map(last_byte).max(),
        DeValue::Array(a) => a.iter().map(last_byte).max(),
        _ => None,
    };
    inner.unwrap_or(0).max(value.span().end)
}

/// Writes `contents` to `path` through a temporary file in the same folder,
/// so a reader never sees a half-written report or manifest.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, contents)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// "file:line:col: message", the way problems are printed.
pub fn located(d: &Diagnostic) -> String {
    format!(
        "{}:{}:{}: {}",
        d.file.display(),
        d.line,
        d.column,
        d.message
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn checked(text: &str, problems: Vec<(usize, &str)>) -> Checked {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, text).unwrap();
        let problems = problems
            .into_iter()
            .map(|(line, message)| Diagnostic {
                file: PathBuf::from("t.toml"),
                line,
                column: 1,
                message: message.to_string(),
                help: None,
                excerpt: None,
            })
            .collect();
        let mut c = Checked::new(&file, problems);
        c.file = PathBuf::from("t.toml");
        c
    }

    pub(crate) const TWO_SOURCES: &str = "name = \"x\"\nversion = \"1\"\n\n[source.local]\ntype = \"qemu\"\nmemory = 1\n\n[source.aws]\ntype = \"amazon-ebs\"\nregion = \"eu-west-3\"\n\n[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n";

    #[test]
    fn problems_are_placed_under_the_source_whose_lines_hold_them() {
        let c = checked(TWO_SOURCES, vec![]);
        let names: Vec<_> = c
            .sources
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(names, [("local", "qemu"), ("aws", "amazon-ebs")]);
        assert_eq!(c.source_at(6).map(|s| s.name.as_str()), Some("local"));
        assert_eq!(c.source_at(10).map(|s| s.name.as_str()), Some("aws"));
        assert_eq!(c.source_at(1), None);
        assert_eq!(c.source_at(14), None, "provisioners belong to no source");
    }
}
