//! Template values as written (spanned TOML), and reading them into the
//! typed settings of a source or provisioner.
//!
//! Two rules hold for every setting of every kind, here and nowhere else:
//! - a setting may be a whole-value reference (`size = "${var.size}"`); when
//!   its value is known at load time it takes that value's type, and text is
//!   converted to the setting's type (`"20"` to a number, `"true"` to a
//!   boolean), or the error names the setting, the value and the type;
//! - a setting whose value is the empty string is as if it were not written
//!   (its default applies; a required one is missing). Entries of free-form
//!   tables (`env`, `tags`) keep their empty values.

use std::fmt;
use std::ops::Range;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use toml::Spanned;
use toml::de::DeValue;

use super::interpolate::{InterpolationError, Scope, Typed, escape, references};

/// A value as written, with the byte range it was written at.
pub type Value = Spanned<DeValue<'static>>;

/// `value` as data, exactly as written (references unexpanded), with the
/// keys of each table sorted, so that their order in the file does not count.
pub fn as_written(value: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(i) => Json::String(i.to_string()),
        DeValue::Float(f) => Json::String(f.to_string()),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(items) => {
            Json::Array(items.iter().map(|v| as_written(v.get_ref())).collect())
        }
        DeValue::Table(table) => {
            let sorted: std::collections::BTreeMap<String, Json> = table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), as_written(v.get_ref())))
                .collect();
            Json::Object(sorted.into_iter().collect())
        }
    }
}

/// Why a value could not be read as its setting's type, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub span: Option<Range<usize>>,
    pub message: String,
    /// A consequence of an error already reported: not shown again.
    pub quiet: bool,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError {
            span: None,
            message: msg.to_string(),
            quiet: false,
        }
    }
}

/// A value after load-time references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Range<usize>,
    pub kind: NodeKind,
    /// The `${…}` it came from, for messages.
    pub origin: Option<String>,
    /// It uses a value whose error is already reported.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Node>),
    Table(Vec<(String, Node)>),
}

impl Node {
    /// The value as written, nothing resolved.
    pub fn from_toml(value: &Value) -> Node {
        let kind = match value.get_ref() {
            DeValue::String(s) => NodeKind::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                let digits = digits.trim_start_matches('+');
                match i64::from_str_radix(
                    digits
                        .trim_start_matches("0x")
                        .trim_start_matches("0o")
                        .trim_start_matches("0b"),
                    i.radix(),
                ) {
                    Ok(n) => NodeKind::Int(n),
                    Err(_) => NodeKind::Str(digits.to_string()),
                }
            }
            DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
                Ok(n) => NodeKind::Float(n),
                Err(_) => NodeKind::Str(f.as_str().to_string()),
            },
            DeValue::Boolean(b) => NodeKind::Bool(*b),
            DeValue::Datetime(d) => NodeKind::Str(d.to_string()),
            DeValue::Array(items) => NodeKind::List(items.iter().map(Node::from_toml).collect()),
            DeValue::Table(t) => NodeKind::Table(
                t.iter()
                    .map(|(k, v)| (k.get_ref().to_string(), Node::from_toml(v)))
                    .collect(),
            ),
        };
        Node {
            span: value.span(),
            kind,
            origin: None,
            stale: false,
        }
    }

    /// A typed value standing where `span` is.
    pub fn from_typed(value: &Typed, span: Range<usize>, origin: Option<String>) -> Node {
        let leaf = |kind| Node {
            span: span.clone(),
            kind,
            origin: origin.clone(),
            stale: false,
        };
        leaf(match value {
            Typed::Str(s) => NodeKind::Str(escape(s)),
            Typed::Number(n) if n.fract() == 0.0 && n.abs() < 9e15 => NodeKind::Int(*n as i64),
            Typed::Number(n) => NodeKind::Float(*n),
            Typed::Bool(b) => NodeKind::Bool(*b),
            Typed::List(items) => NodeKind::List(
                items
                    .iter()
                    .map(|i| leaf(NodeKind::Str(escape(i))))
                    .collect(),
            ),
            Typed::Map(map) => NodeKind::Table(
                map.iter()
                    .map(|(k, v)| (k.clone(), leaf(NodeKind::Str(escape(v)))))
                    .collect(),
            ),
        })
    }

    /// Replaces every string whose references all have values in `scope`:
    /// a whole-value reference by its typed value, other strings by their
    /// expansion. Strings with values known only at build time stay as written.
    pub fn resolve(&mut self, scope: &Scope) -> Result<(), ValueError> {
        let fail = |span: &Range<usize>, e: InterpolationError| ValueError {
            span: Some(span.clone()),
            message: e.to_string(),
            quiet: false,
        };
        match &mut self.kind {
            NodeKind::Str(s) => {
                let uses_failed = references(s).is_ok_and(|refs| {
                    refs.iter()
                        .any(|r| super::expr::parse(&r.expr).is_ok_and(|e| scope.uses_failed(&e)))
                });
                if uses_failed {
                    self.stale = true;
                    return Ok(());
                }
                if let Some(e) = Scope::whole(s) {
                    if scope.knows(&e) {
                        let value = scope.eval(&e).map_err(|e| fail(&self.span, e))?;
                        *self = Node::from_typed(&value, self.span.clone(), Some(s.clone()));
                    }
                    return Ok(());
                }
                let Ok(refs) = references(s) else {
                    return Ok(());
                };
                let known = refs
                    .iter()
                    .all(|r| super::expr::parse(&r.expr).is_ok_and(|e| scope.knows(&e)));
                if known && !refs.is_empty() {
                    let expanded = scope.expand(s).map_err(|e| fail(&self.span, e))?;
                    *s = escape(&expanded);
                }
                Ok(())
            }
            NodeKind::List(items) => items.iter_mut().try_for_each(|i| i.resolve(scope)),
            NodeKind::Table(entries) => entries.iter_mut().try_for_each(|(_, v)| v.resolve(scope)),
            _ => Ok(()),
        }
    }

    fn shown(&self) -> String {
        let value = match &self.kind {
            NodeKind::Str(s) => format!("{s:?}"),
            NodeKind::Int(n) => n.to_string(),
            NodeKind::Float(n) => n.to_string(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::List(_) => "a list".into(),
            NodeKind::Table(_) => "a table".into(),
        };
        match &self.origin {
            Some(o) => format!("{value} (from `{o}`)"),
            None => value,
        }
    }
}

/// Gives an error from deeper down the span it lacks.
fn located(span: Range<usize>) -> impl FnOnce(ValueError) -> ValueError {
    move |mut e| {
        e.span.get_or_insert(span);
        e
    }
}

/// Reads `value` as `T`, resolving what `scope` knows first.
pub fn deserialize<T: DeserializeOwned>(value: Value, scope: &Scope) -> Result<T, ValueError> {
    let mut node = Node::from_toml(&value);
    node.resolve(scope)?;
    T::deserialize(NodeDe {
        node,
        path: String::new(),
    })
}

/// Reads one node as the type serde asks for; `path` names it in messages.
struct NodeDe {
    node: Node,
    path: String,
}

impl NodeDe {
    fn mismatch(&self, expected: &str) -> ValueError {
        let setting = if self.path.is_empty() {
            "this value".to_string()
        } else {
            format!("`{}`", self.path)
        };
        ValueError {
            span: Some(self.node.span.clone()),
            message: format!("{setting} expects {expected}, got {}", self.node.shown()),
            quiet: self.node.stale,
        }
    }

    fn integer(&self) -> Option<i64> {
        match &self.node.kind {
            NodeKind::Int(n) => Some(*n),
            NodeKind::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            NodeKind::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn child(&self, node: Node, key: impl fmt::Display, index: bool) -> NodeDe {
        let path = match (self.path.is_empty(), index) {
            (_, true) => format!("{}[{key}]", self.path),
            (true, false) => key.to_string(),
            (false, false) => format!("{}.{key}", self.path),
        };
        NodeDe { node, path }
    }
}

macro_rules! integers {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
            let range = format!("a whole number from {} to {}", <$t>::MIN, <$t>::MAX);
            match self.integer().map(<$t>::try_from) {
                Some(Ok(n)) => visitor.$visit(n).map_err(located(self.node.span.clone())),
                Some(Err(_)) => Err(self.mismatch(&range)),
                None => Err(self.mismatch("a whole number")),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let span = self.node.span.clone();
        let result = match self.node.kind {
            NodeKind::Str(s) => visitor.visit_string(s),
            NodeKind::Int(n) => visitor.visit_i64(n),
            NodeKind::Float(n) => visitor.visit_f64(n),
            NodeKind::Bool(b) => visitor.visit_bool(b),
            NodeKind::List(items) => {
                let path = self.path.clone();
                visitor.visit_seq(Items {
                    items: items.into_iter().enumerate(),
                    parent: NodeDe {
                        node: Node {
                            span: span.clone(),
                            kind: NodeKind::List(Vec::new()),
                            origin: None,
                            stale: false,
                        },
                        path,
                    },
                })
            }
            NodeKind::Table(entries) => visitor.visit_map(Entries {
                entries: entries.into_iter(),
                pending: None,
                parent_path: self.path.clone(),
                skip_empty: false,
            }),
        };
        result.map_err(located(span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let b = match &self.node.kind {
            NodeKind::Bool(b) => Some(*b),
            NodeKind::Str(s) if s == "true" => Some(true),
            NodeKind::Str(s) if s == "false" => Some(false),
            _ => None,
        };
        match b {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.mismatch("a boolean (true or false)")),
        }
    }

    integers!(
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64
    );

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let n = match &self.node.kind {
            NodeKind::Int(n) => Some(*n as f64),
            NodeKind::Float(n) => Some(*n),
            NodeKind::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) => visitor.visit_f64(n),
            None => Err(self.mismatch("a number")),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let text = match &self.node.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(n) => n.to_string(),
            NodeKind::Float(n) => n.to_string(),
            NodeKind::Bool(b) => b.to_string(),
            _ => return Err(self.mismatch("a string")),
        };
        visitor
            .visit_string(text)
            .map_err(located(self.node.span.clone()))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.node.kind {
            NodeKind::List(_) => self.deserialize_any(visitor),
            _ => Err(self.mismatch("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.node.kind {
            NodeKind::Table(_) => self.deserialize_any(visitor),
            _ => Err(self.mismatch("a table")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        let span = self.node.span.clone();
        match self.node.kind {
            NodeKind::Table(entries) => visitor
                .visit_map(Entries {
                    entries: entries.into_iter(),
                    pending: None,
                    parent_path: self.path,
                    skip_empty: true,
                })
                .map_err(located(span)),
            _ => Err(self.mismatch("a table")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match &self.node.kind {
            NodeKind::Str(s) => {
                let de: de::value::StringDeserializer<ValueError> = s.clone().into_deserializer();
                visitor
                    .visit_enum(de)
                    .map_err(located(self.node.span.clone()))
            }
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct Items {
    items: std::iter::Enumerate<std::vec::IntoIter<Node>>,
    parent: NodeDe,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = ValueError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueError> {
        match self.items.next() {
            Some((i, node)) => {
                let span = node.span.clone();
                seed.deserialize(self.parent.child(node, i, true))
                    .map(Some)
                    .map_err(located(span))
            }
            None => Ok(None),
        }
    }
}

struct Entries {
    entries: std::vec::IntoIter<(String, Node)>,
    pending: Option<(String, Node)>,
    parent_path: String,
    /// For settings (struct fields): an empty string is as if unwritten.
    skip_empty: bool,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = ValueError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ValueError> {
        for (key, node) in self.entries.by_ref() {
            // A setting made from a value already reported as wrong is left
            // unset too, so the rest of its table is still read and checked.
            if self.skip_empty
                && (node.stale || matches!(&node.kind, NodeKind::Str(s) if s.is_empty()))
            {
                continue;
            }
            let k = seed.deserialize(key.clone().into_deserializer())?;
            self.pending = Some((key, node));
            return Ok(Some(k));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ValueError> {
        let (key, node) = self.pending.take().expect("a key comes before its value");
        let span = node.span.clone();
        let parent = NodeDe {
            node: Node {
                span: span.clone(),
                kind: NodeKind::Bool(false),
                origin: None,
                stale: false,
            },
            path: self.parent_path.clone(),
        };
        seed.deserialize(parent.child(node, &key, false))
            .map_err(located(span))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        size: Option<i32>,
        port: Option<u16>,
        encrypted: Option<bool>,
        subnet: Option<String>,
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        tags: BTreeMap<String, String>,
    }

    fn read(text: &str, scope: &Scope) -> Result<Settings, ValueError> {
        let table = toml::de::DeTable::parse(Box::leak(text.to_string().into_boxed_str()))
            .expect("valid TOML");
        let value = Spanned::new(table.span(), DeValue::Table(table.into_inner()));
        deserialize(value, scope)
    }

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.set("var.size", Typed::Number(20.0));
        s.set("var.size_text", "20");
        s.set("var.big", "big");
        s.set("var.enc", "true");
        s.set("var.users", Typed::List(vec!["111122223333".into()]));
        s.set("var.empty", "");
        s
    }

    #[test]
    fn whole_value_references_take_the_setting_type() {
        let s = read(
            "size = \"${var.size}\"\nport = \"${var.size_text}\"\nencrypted = \"${var.enc}\"\nusers = \"${var.users}\"\n",
            &scope(),
        )
        .unwrap();
        assert_eq!(s.size, Some(20));
        assert_eq!(s.port, Some(20));
        assert_eq!(s.encrypted, Some(true));
        assert_eq!(s.users, vec!["111122223333".to_string()]);
    }

    #[test]
    fn conversion_errors_name_setting_value_and_type() {
        let e = read("size = \"${var.big}\"\n", &scope()).unwrap_err();
        assert_eq!(
            e.message,
            "`size` expects a whole number, got \"big\" (from `${var.big}`)"
        );
        assert_eq!(e.span, Some(7..19));
        assert_eq!(
            read("port = 70000\n", &scope()).unwrap_err().message,
            "`port` expects a whole number from 0 to 65535, got 70000"
        );
        assert_eq!(
            read("encrypted = \"yes\"\n", &scope()).unwrap_err().message,
            "`encrypted` expects a boolean (true or false), got \"yes\""
        );
        assert_eq!(
            read("users = \"${var.size}\"\n", &scope())
                .unwrap_err()
                .message,
            "`users` expects a list, got 20 (from `${var.size}`)"
        );
    }

    #[test]
    fn an_empty_setting_is_unset_but_an_empty_tag_is_kept() {
        let s = read(
            "subnet = \"${var.empty}\"\nforce = \"\"\nsize = \"\"\ntags = { Team = \"\" }\n",
            &scope(),
        )
        .unwrap();
        assert_eq!(s.subnet, None);
        assert_eq!(s.size, None);
        assert!(!s.force);
        assert_eq!(s.tags.get("Team").map(String::as_str), Some(""));
    }

    #[test]
    fn build_time_references_stay_as_written() {
        let s = read(
            "subnet = \"${build.id}-${var.size}\"\ntags = { Name = \"n-${var.size_text}\", Esc = \"$${x}\" }\n",
            &scope(),
        )
        .unwrap();
        assert_eq!(s.subnet.as_deref(), Some("${build.id}-${var.size}"));
        assert_eq!(s.tags["Name"], "n-20");
        assert_eq!(s.tags["Esc"], "$${x}");
    }
}
