//! A template file as text plus its spanned TOML tree, and the diagnostics
//! that point back into it (`file:line:col: message`, the line, a caret).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into the TOML tree: `source.aws.ami_name`, `provisioner[2].inline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed template file. The text is leaked on purpose: a template lives for
/// the whole process and the spanned tree borrows from it.
pub struct Document {
    pub path: PathBuf,
    pub text: &'static str,
    pub root: Spanned<DeTable<'static>>,
}

impl Document {
    /// Parses `text`; syntax errors are all returned, with their locations.
    pub fn parse(path: &Path, text: String) -> Result<Document, Vec<Diagnostic>> {
        let text: &'static str = Box::leak(text.into_boxed_str());
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            return Err(errors
                .into_iter()
                .map(|e| Diagnostic::new(path, text, e.span(), e.message().trim().to_string()))
                .collect());
        }
        Ok(Document {
            path: path.to_path_buf(),
            text,
            root,
        })
    }

    pub fn diagnostic(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.path, self.text, span, message.into())
    }

    /// The span of the value at `path`, or of the nearest ancestor that exists.
    pub fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        (1..=path.0.len())
            .rev()
            .find_map(|n| self.value_at(&KeyPath(path.0[..n].to_vec())))
            .map(|v| v.span())
    }

    /// The span of the key itself (for "unknown key" errors), else of its value.
    pub fn key_span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let (last, parent) = match path.0.split_last() {
            Some((Seg::Key(k), parent)) => (k, KeyPath(parent.to_vec())),
            _ => return self.span_of(path),
        };
        let table = if parent.0.is_empty() {
            Some(self.root.get_ref())
        } else {
            self.value_at(&parent).and_then(|v| match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            })
        };
        table
            .and_then(|t| t.get_key_value(last.as_str()))
            .map(|(k, _)| k.span())
            .or_else(|| self.span_of(path))
    }

    pub fn value_at(&self, path: &KeyPath) -> Option<&Spanned<DeValue<'static>>> {
        let mut current: Option<&Spanned<DeValue<'static>>> = None;
        for seg in &path.0 {
            current = match (seg, current) {
                (Seg::Key(k), None) => self.root.get_ref().get(k.as_str()),
                (Seg::Key(k), Some(v)) => match v.get_ref() {
                    DeValue::Table(t) => t.get(k.as_str()),
                    _ => None,
                },
                (Seg::Index(i), Some(v)) => match v.get_ref() {
                    DeValue::Array(a) => a.get(*i),
                    _ => None,
                },
                (Seg::Index(_), None) => None,
            };
            current?;
        }
        current
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }
}

/// A user-facing problem in a template, with its location when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line and the caret under it, pre-rendered.
    pub excerpt: Option<(String, usize, usize)>,
}

impl Diagnostic {
    pub fn new(file: &Path, text: &str, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let (line, column, excerpt) = match span {
            Some(span) => {
                let (line, column) = line_col(text, span.start);
                let line_text = text.lines().nth(line - 1).unwrap_or("").to_string();
                let available = line_text.chars().count().saturating_sub(column - 1).max(1);
                let width = text[span.start..span.end.min(text.len())]
                    .lines()
                    .next()
                    .map(|s| s.chars().count())
                    .unwrap_or(1)
                    .clamp(1, available);
                (line, column, Some((line_text, column, width)))
            }
            None => (1, 1, None),
        };
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message,
            help: None,
            excerpt,
        }
    }

    /// A diagnostic about the file as a whole (unreadable, missing).
    pub fn whole_file(file: &Path, message: String) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
            help: None,
            excerpt: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some((text, column, width)) = &self.excerpt {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            write!(f, "\n {number} | {text}")?;
            write!(
                f,
                "\n {pad} | {}{}",
                " ".repeat(column - 1),
                "^".repeat(*width)
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }

    #[test]
    fn renders_location_excerpt_and_caret() {
        let text = "name = \"x\"\nvesion = \"1\"\n";
        let d = Diagnostic::new(
            Path::new("t.toml"),
            text,
            Some(11..17),
            "unknown key `vesion`".into(),
        )
        .with_help("did you mean `version`?");
        assert_eq!(
            d.to_string(),
            "t.toml:2:1: unknown key `vesion`\n 2 | vesion = \"1\"\n   | ^^^^^^\n  help: did you mean `version`?"
        );
    }

    #[test]
    fn finds_spans_by_path() {
        let doc = Document::parse(
            Path::new("t.toml"),
            "[source.a]\ntype = \"ssh\"\n[[provisioner]]\ninline = [\"x\", \"yy\"]\n".into(),
        )
        .unwrap();
        let span = doc
            .span_of(
                &KeyPath::root()
                    .key("provisioner")
                    .index(0)
                    .key("inline")
                    .index(1),
            )
            .unwrap();
        assert_eq!(&doc.text[span], "\"yy\"");
        let span = doc
            .key_span_of(&KeyPath::root().key("source").key("a").key("type"))
            .unwrap();
        assert_eq!(&doc.text[span], "type");
    }
}
