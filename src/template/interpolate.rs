//! `${namespace.name}` references inside template strings.
//!
//! Strings keep their references until they are used, because some values
//! (`${source.ami}`, `${build.id}`) exist only once a build runs. Every
//! reference is checked when the template loads, so expansion at build time
//! only fails for a value that a builder has not provided yet.

use std::collections::BTreeMap;
use std::ops::Range;

/// One `${...}` in a string: its text inside the braces and its byte range
/// (including `${` and `}`) within the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub expr: String,
    pub range: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error("unterminated `${{` at byte {0}; write `$${{` for a literal `${{`")]
    Unterminated(usize),
    #[error("`${{{0}}}` has no value here")]
    Missing(String),
}

enum Piece<'a> {
    Text(&'a str),
    Ref(Reference),
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>, InterpolationError> {
    let mut out = Vec::new();
    let mut rest_start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') && bytes.get(i + 2) == Some(&b'{') {
            // `$${` is an escaped, literal `${`.
            out.push(Piece::Text(&s[rest_start..i]));
            rest_start = i + 1;
            i += 3;
        } else if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let close = s[i..]
                .find('}')
                .ok_or(InterpolationError::Unterminated(i))?;
            out.push(Piece::Text(&s[rest_start..i]));
            out.push(Piece::Ref(Reference {
                expr: s[i + 2..i + close].trim().to_string(),
                range: i..i + close + 1,
            }));
            i += close + 1;
            rest_start = i;
        } else {
            i += 1;
        }
    }
    out.push(Piece::Text(&s[rest_start..]));
    Ok(out)
}

/// All references in `s`, in order.
pub fn references(s: &str) -> Result<Vec<Reference>, InterpolationError> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// The values references expand to, keyed by their full name (`var.region`).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    values: BTreeMap<String, String>,
}

impl Scope {
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Expands every reference in `s`; `${env.X}` reads the environment.
    pub fn expand(&self, s: &str) -> Result<String, InterpolationError> {
        let mut out = String::with_capacity(s.len());
        for piece in pieces(s)? {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => match self.values.get(&r.expr) {
                    Some(v) => out.push_str(v),
                    None => match r.expr.strip_prefix("env.").map(std::env::var) {
                        Some(Ok(v)) => out.push_str(&v),
                        _ => return Err(InterpolationError::Missing(r.expr)),
                    },
                },
            }
        }
        Ok(out)
    }

    pub fn expand_all(&self, items: &[String]) -> Result<Vec<String>, InterpolationError> {
        items.iter().map(|s| self.expand(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.set("var.region", "eu-west-3");
        s.set("image.version", "1.2");
        s
    }

    #[test]
    fn expands_references() {
        assert_eq!(
            scope()
                .expand("httpd-${image.version}-${ var.region }")
                .unwrap(),
            "httpd-1.2-eu-west-3"
        );
    }

    #[test]
    fn double_dollar_is_a_literal() {
        assert_eq!(
            scope().expand("echo $${HOME} $HOME").unwrap(),
            "echo ${HOME} $HOME"
        );
        assert!(references("echo $${HOME}").unwrap().is_empty());
    }

    #[test]
    fn reports_missing_and_unterminated() {
        assert_eq!(
            scope().expand("${source.ami}"),
            Err(InterpolationError::Missing("source.ami".into()))
        );
        assert_eq!(
            references("a ${var.x"),
            Err(InterpolationError::Unterminated(2))
        );
    }

    #[test]
    fn reference_ranges_cover_the_braces() {
        let refs = references("ab${var.x}c").unwrap();
        assert_eq!(refs[0].range, 2..10);
        assert_eq!(refs[0].expr, "var.x");
    }
}
