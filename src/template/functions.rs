//! The functions a `${…}` may call, one table: name, how many arguments,
//! what it does.

use time::OffsetDateTime;

use super::interpolate::{Scope, Typed};

pub struct Function {
    pub name: &'static str,
    /// Argument names, for messages: `replace(text, from, to)`.
    pub params: &'static [&'static str],
    call: fn(&[Typed], &Scope) -> Result<Typed, String>,
}

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "lower",
        params: &["text"],
        call: |a, _| Ok(Typed::Str(text(&a[0])?.to_lowercase())),
    },
    Function {
        name: "upper",
        params: &["text"],
        call: |a, _| Ok(Typed::Str(text(&a[0])?.to_uppercase())),
    },
    Function {
        name: "trim",
        params: &["text"],
        call: |a, _| Ok(Typed::Str(text(&a[0])?.trim().to_string())),
    },
    Function {
        name: "replace",
        params: &["text", "from", "to"],
        call: |a, _| {
            Ok(Typed::Str(
                text(&a[0])?.replace(&text(&a[1])?, &text(&a[2])?),
            ))
        },
    },
    Function {
        name: "split",
        params: &["separator", "text"],
        call: |a, _| {
            let (sep, s) = (text(&a[0])?, text(&a[1])?);
            Ok(Typed::List(if s.is_empty() {
                Vec::new()
            } else {
                s.split(sep.as_str()).map(str::to_string).collect()
            }))
        },
    },
    Function {
        name: "join",
        params: &["separator", "list"],
        call: |a, _| match &a[1] {
            Typed::List(items) => Ok(Typed::Str(items.join(&text(&a[0])?))),
            other => Err(format!("expects a list, got {}", other.kind())),
        },
    },
    Function {
        name: "file",
        params: &["path"],
        call: |a, scope| {
            let path = scope.dir().join(text(&a[0])?);
            std::fs::read_to_string(&path)
                .map(Typed::Str)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        },
    },
    Function {
        name: "timestamp",
        params: &["format"],
        call: |a, scope| strftime(scope.time(), &text(&a[0])?).map(Typed::Str),
    },
    Function {
        name: "uuid",
        params: &[],
        call: |_, _| Ok(Typed::Str(uuid_v4())),
    },
];

pub fn find(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

impl Function {
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }

    pub fn call(&self, args: &[Typed], scope: &Scope) -> Result<Typed, String> {
        if args.len() != self.params.len() {
            return Err(format!(
                "takes {} argument{}, not {}: {}",
                self.params.len(),
                if self.params.len() == 1 { "" } else { "s" },
                args.len(),
                self.signature()
            ));
        }
        (self.call)(args, scope)
    }
}

fn text(v: &Typed) -> Result<String, String> {
    v.as_text()
        .ok_or_else(|| format!("expects text, got {}", v.kind()))
}

/// The build time in strftime style: `%Y %m %d %H %M %S %y %j %s %%`, UTC.
fn strftime(t: OffsetDateTime, format: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", t.year())),
            Some('y') => out.push_str(&format!("{:02}", t.year() % 100)),
            Some('m') => out.push_str(&format!("{:02}", t.month() as u8)),
            Some('d') => out.push_str(&format!("{:02}", t.day())),
            Some('H') => out.push_str(&format!("{:02}", t.hour())),
            Some('M') => out.push_str(&format!("{:02}", t.minute())),
            Some('S') => out.push_str(&format!("{:02}", t.second())),
            Some('j') => out.push_str(&format!("{:03}", t.ordinal())),
            Some('s') => out.push_str(&t.unix_timestamp().to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                return Err(format!(
                    "`%{other}` is not a known format; use %Y %m %d %H %M %S %y %j %s %%"
                ));
            }
            None => return Err("the format ends with a lone `%`".into()),
        }
    }
    Ok(out)
}

/// A random (version 4) UUID.
fn uuid_v4() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_the_build_time() {
        let t = datetime!(2026-03-04 05:06:07 UTC);
        assert_eq!(
            strftime(t, "%Y-%m-%d %H:%M:%S %y %j %%").unwrap(),
            "2026-03-04 05:06:07 26 063 %"
        );
        assert_eq!(
            strftime(t, "%Q").unwrap_err(),
            "`%Q` is not a known format; use %Y %m %d %H %M %S %y %j %s %%"
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }
}
