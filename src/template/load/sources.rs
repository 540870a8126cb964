//! `[source.NAME]` tables: each one's type, its SSH settings and its
//! type's own settings, checked against that type's schema.

use toml::de::{DeTable, DeValue};

use super::{Loader, quoted_list, subtable};
use crate::template::document::{KeyPath, did_you_mean};
use crate::template::fields::fields_of;
use crate::template::interpolate::Scope;
use crate::template::schema::SshConfig;
use crate::template::source::{self, KINDS, Kind};
use crate::template::{Source, is_identifier};

impl Loader<'_> {
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
            let mut checker = self.checker(&src_path, known);
            let Some(ssh) = checker.deserialize::<SshConfig>(subtable(value, src_table, ssh_keys))
            else {
                continue;
            };
            let config = (kind.load)(subtable(value, src_table, builder_keys), &ssh, &mut checker);
            if let Some(private_key) = &ssh.ssh_private_key_file {
                checker.local_file(&src_path.key("ssh_private_key_file"), private_key);
            }
            if let Some(config) = config {
                out.push(Source { name, ssh, config });
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
