//! `${…}` inside template strings: references and function calls, one engine.
//!
//! Strings keep what cannot be known yet until they are used, because some
//! values (`${source.ami}`, `${build.id}`) exist only once a build runs.
//! Every reference is checked when the template loads, so expansion at build
//! time only fails for a value that a builder has not provided yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::expr::{self, Expr, SyntaxError};
use super::functions;

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
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("`${{{expr}}}`: {problem}")]
    Function { expr: String, problem: String },
    #[error("`${{{expr}}}` is {kind}, which cannot be part of a string{hint}")]
    NotText {
        expr: String,
        kind: &'static str,
        hint: &'static str,
    },
}

/// A value a reference or function gives: text, or the types a variable may have.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Str(String),
    Number(f64),
    Bool(bool),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl Typed {
    /// `a string`, `a number`… for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Typed::Str(_) => "a string",
            Typed::Number(_) => "a number",
            Typed::Bool(_) => "a boolean",
            Typed::List(_) => "a list",
            Typed::Map(_) => "a map",
        }
    }

    /// The value as text, if it has one (lists and maps do not).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Typed::Str(s) => Some(s.clone()),
            Typed::Number(n) => Some(n.to_string()),
            Typed::Bool(b) => Some(b.to_string()),
            Typed::List(_) | Typed::Map(_) => None,
        }
    }
}

impl From<String> for Typed {
    fn from(s: String) -> Typed {
        Typed::Str(s)
    }
}

impl From<&str> for Typed {
    fn from(s: &str) -> Typed {
        Typed::Str(s.to_string())
    }
}

impl fmt::Display for Typed {
    /// As `inspect` shows it: TOML-like, strings quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Typed::Str(s) => write!(f, "{s:?}"),
            Typed::Number(n) => write!(f, "{n}"),
            Typed::Bool(b) => write!(f, "{b}"),
            Typed::List(items) => {
                let items: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Typed::Map(map) => {
                let items: Vec<String> = map.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
                write!(f, "{{ {} }}", items.join(", "))
            }
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Ref(Reference),
}

/// Where the `}` closing a `${` at `start` is: the first one outside a quoted string.
fn closing_brace(s: &str, start: usize) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s[start..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '}' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
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
            let close = closing_brace(s, i).ok_or(InterpolationError::Unterminated(i))?;
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

/// `s` with every `${` written as `$${`, so expanding it again gives `s`.
pub fn escape(s: &str) -> String {
    s.replace("${", "$${")
}

/// The values references expand to, keyed by their full name (`var.region`),
/// plus what functions need: the template's folder and the build time.
#[derive(Debug, Clone)]
pub struct Scope {
    values: BTreeMap<String, Typed>,
    /// Names whose value is already reported as wrong (a variable that did
    /// not fit its type): what uses them is not reported again.
    failed: BTreeSet<String>,
    dir: PathBuf,
    time: OffsetDateTime,
}

impl Default for Scope {
    fn default() -> Scope {
        let now = OffsetDateTime::now_utc();
        Scope {
            values: BTreeMap::new(),
            failed: BTreeSet::new(),
            dir: PathBuf::from("."),
            time: now.replace_nanosecond(0).unwrap_or(now),
        }
    }
}

impl Scope {
    /// An empty scope whose `file()` reads relative to `dir`.
    pub fn in_dir(dir: &Path) -> Scope {
        Scope {
            dir: dir.to_path_buf(),
            ..Scope::default()
        }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Typed>) {
        self.values.insert(name.into(), value.into());
    }

    pub fn typed(&self, name: &str) -> Option<&Typed> {
        self.values.get(name)
    }

    /// The value of `name` as text, if it is set and has one.
    pub fn text(&self, name: &str) -> Option<String> {
        self.typed(name).and_then(Typed::as_text)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The build time `timestamp()` formats: when the template was loaded.
    pub fn time(&self) -> OffsetDateTime {
        self.time
    }

    /// Marks `name` as having no usable value, its error already reported.
    pub fn fail(&mut self, name: impl Into<String>) {
        self.failed.insert(name.into());
    }

    /// Whether `e` uses a name whose error is already reported.
    pub fn uses_failed(&self, e: &Expr) -> bool {
        let mut any = false;
        check_refs(e, &mut |path, _| any |= self.failed.contains(path));
        any
    }

    /// Whether every reference in `e` has a value now.
    pub fn knows(&self, e: &Expr) -> bool {
        let mut all = true;
        check_refs(e, &mut |path, fallback| {
            all &= self.values.contains_key(path)
                || fallback
                || path
                    .strip_prefix("env.")
                    .is_some_and(|n| std::env::var_os(n).is_some());
        });
        all
    }

    pub fn eval(&self, e: &Expr) -> Result<Typed, InterpolationError> {
        match e {
            Expr::Text(t) => Ok(Typed::Str(t.clone())),
            Expr::Number(n) => Ok(Typed::Number(*n)),
            Expr::Ref { path, fallback } => {
                if let Some(v) = self.values.get(path) {
                    return Ok(v.clone());
                }
                let env = path.strip_prefix("env.").map(std::env::var);
                match (env, fallback) {
                    (Some(Ok(v)), Some(f)) if v.is_empty() => Ok(Typed::Str(f.clone())),
                    (Some(Ok(v)), _) => Ok(Typed::Str(v)),
                    (Some(Err(_)), Some(f)) => Ok(Typed::Str(f.clone())),
                    _ => Err(InterpolationError::Missing(path.clone())),
                }
            }
            Expr::Call { name, args } => {
                let problem = |problem: String| InterpolationError::Function {
                    expr: format!("{name}(…)"),
                    problem,
                };
                let f = functions::find(name)
                    .ok_or_else(|| problem(format!("there is no function `{name}`")))?;
                let values = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                f.call(&values, self)
                    .map_err(|p| problem(format!("{} {p}", f.name)))
            }
        }
    }

    /// The value of `s` when it is exactly one `${…}` and nothing else.
    pub fn whole(s: &str) -> Option<Expr> {
        match pieces(s).ok()?.as_slice() {
            [Piece::Text(""), Piece::Ref(r), Piece::Text("")] => expr::parse(&r.expr).ok(),
            _ => None,
        }
    }

    /// Expands every reference and call in `s`.
    pub fn expand(&self, s: &str) -> Result<String, InterpolationError> {
        let mut out = String::with_capacity(s.len());
        for piece in pieces(s)? {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => {
                    let e = expr::parse(&r.expr)?;
                    let value = self.eval(&e)?;
                    match value.as_text() {
                        Some(t) => out.push_str(&t),
                        None => {
                            return Err(InterpolationError::NotText {
                                hint: match value {
                                    Typed::List(_) => "; write `${join(\",\", ...)}` to make one",
                                    _ => "",
                                },
                                expr: r.expr,
                                kind: value.kind(),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn expand_all(&self, items: &[String]) -> Result<Vec<String>, InterpolationError> {
        items.iter().map(|s| self.expand(s)).collect()
    }

    /// Expands what has a value now and leaves the rest as written: for
    /// checks at load time on text that is finished at build time.
    pub fn expand_known(&self, s: &str) -> String {
        let Ok(all) = pieces(s) else {
            return s.to_string();
        };
        let mut out = String::new();
        for piece in all {
            match piece {
                Piece::Text(t) => out.push_str(&escape(t)),
                Piece::Ref(r) => {
                    let text = expr::parse(&r.expr)
                        .ok()
                        .filter(|e| self.knows(e))
                        .and_then(|e| self.eval(&e).ok())
                        .and_then(|v| v.as_text());
                    match text {
                        Some(t) => out.push_str(&escape(&t)),
                        None => out.push_str(&s[r.range.clone()]),
                    }
                }
            }
        }
        out
    }
}

fn check_refs(e: &Expr, f: &mut impl FnMut(&str, bool)) {
    match e {
        Expr::Ref { path, fallback } => f(path, fallback.is_some()),
        Expr::Call { args, .. } => args.iter().for_each(|a| check_refs(a, f)),
        _ => {}
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
    fn functions_and_typed_values() {
        let mut s = scope();
        s.set("var.users", Typed::List(vec!["1".into(), "2".into()]));
        s.set("var.name", "My_Image");
        assert_eq!(
            s.expand("${replace(lower(var.name), \"_\", \"-\")}-${join(\",\", var.users)}")
                .unwrap(),
            "my-image-1,2"
        );
        assert_eq!(
            s.expand("a ${var.users}").unwrap_err().to_string(),
            "`${var.users}` is a list, which cannot be part of a string; write `${join(\",\", ...)}` to make one"
        );
        assert_eq!(
            s.expand("${upper(var.name, 1)}").unwrap_err().to_string(),
            "`${upper(…)}`: upper takes 1 argument, not 2: upper(text)"
        );
        assert_eq!(
            s.expand("${nope()}").unwrap_err().to_string(),
            "`${nope(…)}`: there is no function `nope`"
        );
        assert_eq!(
            s.expand("${split(\",\", \"a,b\")}")
                .unwrap_err()
                .to_string(),
            "`${split(\",\", \"a,b\")}` is a list, which cannot be part of a string; write `${join(\",\", ...)}` to make one"
        );
        assert_eq!(
            s.expand("${trim(\" } \")}x").unwrap(),
            "}x",
            "a brace inside a quoted argument does not end the reference"
        );
    }

    #[test]
    fn env_fallbacks_apply_when_unset_or_empty() {
        let s = scope();
        assert_eq!(
            s.expand("${env.IMGBUILD_TEST_SURELY_UNSET:-platform}")
                .unwrap(),
            "platform"
        );
        assert_eq!(
            s.expand("${env.IMGBUILD_TEST_SURELY_UNSET}"),
            Err(InterpolationError::Missing(
                "env.IMGBUILD_TEST_SURELY_UNSET".into()
            ))
        );
    }

    #[test]
    fn expand_known_keeps_what_is_not_known_yet() {
        assert_eq!(
            scope().expand_known("${var.region}-${build.id}-$${x}"),
            "eu-west-3-${build.id}-$${x}"
        );
    }

    #[test]
    fn reference_ranges_cover_the_braces() {
        let refs = references("ab${var.x}c").unwrap();
        assert_eq!(refs[0].range, 2..10);
        assert_eq!(refs[0].expr, "var.x");
    }
}
