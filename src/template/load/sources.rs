//! `[source.NAME]` tables: each one's type, its SSH settings and its
//! type's own settings, checked against that type's schema, with the type's
//! `[source_defaults.TYPE]` merged under them.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Loader, quoted_list, subtable};
use crate::template::document::KeyPath;
use crate::template::fields::fields_of;
use crate::template::hints::did_you_mean;
use crate::template::interpolate::Scope;
use crate::template::schema::SshConfig;
use crate::template::source::{self, KINDS, Kind};
use crate::template::value::as_written;
use crate::template::{Source, is_identifier};

impl<'a> Loader<'a> {
    pub(super) fn sources(&mut self, known: &Scope) -> Vec<Source> {
        let path = KeyPath::root().key("source");
        let mut out = Vec::new();
        let Some(table) = self.table_at(&path, "one `[source.NAME]` table per build") else {
            self.diags.push(
                self.doc
                    .diagnostic(Some(0..0), "the template has no source")
                    .with_help("add a `[source.NAME]` table with a `type`, e.g. `type = \"qemu\"`"),
            );
            return out;
        };
        let ssh_keys = fields_of::<SshConfig>();
        let defaults = self.source_defaults();
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            let src_path = path.key(&name);
            if !is_identifier(&name.replace('-', "_")) {
                self.error(
                    Some(key.span()),
                    format!("source name `{name}` may contain only letters, digits, `_` and `-`"),
                );
            }
            let Some(src_table) = self.table_at(&src_path, "the source's settings") else {
                continue;
            };
            let Some(kind) = self.source_type(&src_path, src_table) else {
                continue;
            };
            let builder_keys = (kind.fields)();
            let place = format!("in source `{name}` (type \"{}\")", kind.name);
            if !self.unknown_keys(
                &src_path,
                src_table,
                &[&["type"], ssh_keys, builder_keys],
                &place,
            ) {
                continue;
            }
            let (merged, defaulted) = match defaults.get(kind.name) {
                Some(shared) => (merge(shared, src_table), defaulted_keys(shared, src_table)),
                None => (src_table.clone(), Vec::new()),
            };
            let value = &Spanned::new(value.span(), DeValue::Table(merged));
            let DeValue::Table(src_table) = value.get_ref() else {
                unreachable!("just built as a table")
            };
            let mut checker = self.checker(&src_path, known);
            checker.defaults = Some(KeyPath::root().key("source_defaults").key(kind.name));
            let Some(ssh) = checker.deserialize::<SshConfig>(subtable(value, src_table, ssh_keys))
            else {
                continue;
            };
            let settings = subtable(value, src_table, builder_keys);
            let written = as_written(settings.get_ref());
            let config = (kind.load)(settings, &ssh, &mut checker);
            if let Some(private_key) = &ssh.ssh_private_key_file {
                checker.local_file(&src_path.key("ssh_private_key_file"), private_key);
            }
            if let Some(config) = config {
                out.push(Source {
                    name,
                    ssh,
                    config,
                    defaulted,
                    written,
                });
            }
        }
        out
    }

    /// `[source_defaults.TYPE]` tables, each checked once against its type's keys.
    fn source_defaults(&mut self) -> BTreeMap<&'static str, &'a DeTable<'static>> {
        let path = KeyPath::root().key("source_defaults");
        let mut out = BTreeMap::new();
        let Some(table) =
            self.table_at(&path, "one `[source_defaults.TYPE]` table per source type")
        else {
            return out;
        };
        let types = type_names();
        for (key, _) in table.iter() {
            let type_name = key.get_ref().as_ref();
            let Some(kind) = source::kind(type_name) else {
                let hint = did_you_mean(type_name, types.iter().copied());
                self.error(
                    Some(key.span()),
                    format!("unknown source type \"{type_name}\""),
                )
                .help = Some(match hint {
                    Some(h) => format!("did you mean \"{h}\"?"),
                    None => format!("the source types are {}", quoted_list(&types)),
                });
                continue;
            };
            let Some(shared) = self.table_at(
                &path.key(type_name),
                "settings for every source of the type",
            ) else {
                continue;
            };
            let place = format!("in `[source_defaults.{type_name}]`");
            let keys = [fields_of::<SshConfig>(), (kind.fields)()];
            if self.unknown_keys(&path.key(type_name), shared, &keys, &place) {
                out.insert(kind.name, shared);
            }
        }
        out
    }

    fn source_type(&mut self, path: &KeyPath, table: &DeTable<'static>) -> Option<&'static Kind> {
        let type_path = path.key("type");
        let types = type_names();
        match table.get("type").map(|v| v.get_ref()) {
            Some(DeValue::String(t)) if source::kind(t).is_some() => source::kind(t),
            Some(DeValue::String(t)) => {
                let hint = did_you_mean(t, types.iter().copied());
                let d = self.error_at(&type_path, format!("unknown source type \"{t}\""));
                d.help = Some(match hint {
                    Some(h) => format!("did you mean \"{h}\"?"),
                    None => format!("the source types are {}", quoted_list(&types)),
                });
                None
            }
            Some(_) => {
                self.error_at(&type_path, "`type` must be a string");
                None
            }
            None => {
                self.error_at(path, "this source has no `type`").help =
                    Some(format!("add `type = ...`, one of {}", quoted_list(&types)));
                None
            }
        }
    }
}

fn type_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// `own` over `shared`: a key in both takes `own`'s value, except that two
/// tables (`tags`, `source_ami_filter`) merge key by key.
fn merge(shared: &DeTable<'static>, own: &DeTable<'static>) -> DeTable<'static> {
    let mut out = shared.clone();
    for (key, value) in own.iter() {
        let merged = match (
            out.get(key.get_ref().as_ref()).map(|v| v.get_ref()),
            value.get_ref(),
        ) {
            (Some(DeValue::Table(a)), DeValue::Table(b)) => {
                Spanned::new(value.span(), DeValue::Table(merge(a, b)))
            }
            _ => value.clone(),
        };
        out.remove(key.get_ref().as_ref());
        out.insert(key.clone(), merged);
    }
    out
}

/// The keys a source takes (in part) from its type's defaults.
fn defaulted_keys(shared: &DeTable<'static>, own: &DeTable<'static>) -> Vec<String> {
    shared
        .iter()
        .map(|(k, _)| k.get_ref().as_ref())
        .filter(|k| {
            !matches!(own.get(*k).map(|v| v.get_ref()), Some(v) if !matches!(v, DeValue::Table(_)))
        })
        .map(str::to_string)
        .collect()
}
