//! What may stand inside `${…}`: a reference (`var.region`, `env.HOME`,
//! `env.TEAM:-platform` with a fallback), a function call
//! (`lower(var.name)`, `timestamp("%Y-%m-%d")`), or a literal argument
//! (`"text"`, `42`).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `namespace.name`; `fallback` only for `env.NAME:-text`.
    Ref {
        path: String,
        fallback: Option<String>,
    },
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Text(String),
    Number(f64),
}

impl Expr {
    /// Every reference in the expression, calls' arguments included.
    pub fn references(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Ref { path, .. } = e {
                out.push(path.as_str());
            }
        });
        out
    }

    /// Every function call, with its argument count.
    pub fn calls(&self) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Call { name, args } = e {
                out.push((name.as_str(), args.len()));
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        if let Expr::Call { args, .. } = self {
            for a in args {
                a.walk(f);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`${{{text}}}`: {problem}")]
pub struct SyntaxError {
    pub text: String,
    pub problem: String,
}

/// Parses the text between `${` and `}`.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut p = Parser {
        text,
        chars: text.char_indices().collect(),
        at: 0,
    };
    let e = p.expr(true)?;
    p.space();
    if p.at < p.chars.len() {
        return Err(p.error(format!("unexpected `{}`", p.rest())));
    }
    Ok(e)
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, problem: impl Into<String>) -> SyntaxError {
        SyntaxError {
            text: self.text.to_string(),
            problem: problem.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn rest(&self) -> &str {
        match self.chars.get(self.at) {
            Some((i, _)) => &self.text[*i..],
            None => "",
        }
    }

    fn space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn expr(&mut self, top: bool) -> Result<Expr, SyntaxError> {
        self.space();
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if c.is_ascii_digit() || c == '-' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().map(|(_, c)| c).collect();
                self.space();
                if self.peek() == Some('(') && !name.contains('.') {
                    self.at += 1;
                    return Ok(Expr::Call {
                        name,
                        args: self.args()?,
                    });
                }
                if name.ends_with('.') || name.contains("..") {
                    return Err(self.error(format!("`{name}` is not a reference")));
                }
                let fallback = if top && name.starts_with("env.") && self.rest().starts_with(":-") {
                    let text = self.rest()[2..].to_string();
                    self.at = self.chars.len();
                    Some(text)
                } else {
                    None
                };
                Ok(Expr::Ref {
                    path: name,
                    fallback,
                })
            }
            Some(c) => Err(self.error(format!("unexpected `{c}`"))),
            None => Err(self.error("empty reference")),
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, SyntaxError> {
        let mut args = Vec::new();
        self.space();
        if self.peek() == Some(')') {
            self.at += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr(false)?);
            self.space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(')') => {
                    self.at += 1;
                    return Ok(args);
                }
                _ => return Err(self.error("expected `,` or `)` after an argument")),
            }
        }
    }

    fn string(&mut self) -> Result<Expr, SyntaxError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('"') => {
                    self.at += 1;
                    return Ok(Expr::Text(out));
                }
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => return Err(self.error("strings know only \\\" \\\\ \\n \\t")),
                    }
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Expr, SyntaxError> {
        let start = self.at;
        self.at += 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().map(|(_, c)| c).collect();
        text.parse()
            .map(Expr::Number)
            .map_err(|_| self.error(format!("`{text}` is not a number")))
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Ref { path, .. } => write!(f, "{path}"),
            Expr::Call { name, .. } => write!(f, "{name}(…)"),
            Expr::Text(t) => write!(f, "{t:?}"),
            Expr::Number(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> Expr {
        Expr::Ref {
            path: path.into(),
            fallback: None,
        }
    }

    #[test]
    fn references_calls_and_literals() {
        assert_eq!(parse(" var.region ").unwrap(), r("var.region"));
        assert_eq!(
            parse("replace(lower(var.name), \"_\", \"-\")").unwrap(),
            Expr::Call {
                name: "replace".into(),
                args: vec![
                    Expr::Call {
                        name: "lower".into(),
                        args: vec![r("var.name")]
                    },
                    Expr::Text("_".into()),
                    Expr::Text("-".into()),
                ]
            }
        );
        assert_eq!(
            parse("uuid()").unwrap(),
            Expr::Call {
                name: "uuid".into(),
                args: vec![]
            }
        );
    }

    #[test]
    fn env_fallback_takes_the_rest_literally() {
        assert_eq!(
            parse("env.TEAM:-platform team").unwrap(),
            Expr::Ref {
                path: "env.TEAM".into(),
                fallback: Some("platform team".into())
            }
        );
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        assert_eq!(
            parse("lower(var.x").unwrap_err().to_string(),
            "`${lower(var.x}`: expected `,` or `)` after an argument"
        );
        assert_eq!(
            parse("var.x y").unwrap_err().to_string(),
            "`${var.x y}`: unexpected `y`"
        );
        assert_eq!(parse("").unwrap_err().to_string(), "`${}`: empty reference");
    }
}
