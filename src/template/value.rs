//! Template values as written (spanned TOML), and reading them into the
//! typed settings of a source or provisioner.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::document::KeyPath;

/// A value as written, with the byte range it was written at.
pub type Value = Spanned<DeValue<'static>>;

/// Why a value could not be read as its setting's type, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Reads `value`, the table at `base`, as `T`.
pub fn deserialize<T: DeserializeOwned>(value: Value, _base: &KeyPath) -> Result<T, ValueError> {
    T::deserialize(ValueDeserializer::from(value)).map_err(|e| ValueError {
        span: e.span(),
        message: e.message().to_string(),
    })
}
