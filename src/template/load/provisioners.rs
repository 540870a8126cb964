//! `[[provisioner]]` tables: each one's type, the keys every provisioner
//! takes, and its type's own settings, checked against that type's schema.

use toml::de::DeValue;

use super::{Loader, quoted_list, subtable};
use crate::provisioner::{self, KINDS};
use crate::template::document::KeyPath;
use crate::template::fields::fields_of;
use crate::template::hints::did_you_mean;
use crate::template::interpolate::Scope;
use crate::template::schema::ProvisionerCommon;
use crate::template::value::as_written;
use crate::template::{Provisioner, Source};

impl Loader<'_> {
    pub(super) fn provisioners(
        &mut self,
        sources: &[Source],
        known: &Scope,
    ) -> Vec<(Provisioner, KeyPath)> {
        let path = KeyPath::root().key("provisioner");
        let mut out = Vec::new();
        let doc = self.doc;
        let Some(value) = doc.value_at(&path) else {
            return out;
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                Some(value.span()),
                "`provisioner` must be an array of tables: write `[[provisioner]]`",
            );
            return out;
        };
        let common_keys = fields_of::<ProvisionerCommon>();
        for (index, item) in items.iter().enumerate() {
            let p_path = path.index(index);
            let number = index + 1;
            let DeValue::Table(table) = item.get_ref() else {
                self.error(Some(item.span()), "each provisioner must be a table");
                continue;
            };
            let types: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            let kind = match table.get("type").map(|v| v.get_ref()) {
                Some(DeValue::String(t)) if provisioner::kind(t).is_some() => {
                    provisioner::kind(t).expect("just found")
                }
                Some(DeValue::String(t)) => {
                    let hint = did_you_mean(t, types.iter().copied());
                    self.error_at(
                        &p_path.key("type"),
                        format!("unknown provisioner type \"{t}\""),
                    )
                    .help = Some(hint.map_or_else(
                        || format!("the provisioner types are {}", quoted_list(&types)),
                        |h| format!("did you mean \"{h}\"?"),
                    ));
                    continue;
                }
                _ => {
                    let line = self.doc.line_of(item.span().start);
                    self.error(
                        Some(item.span()),
                        format!("provisioner {number} (line {line}) has no `type`"),
                    )
                    .help = Some(format!("add `type = ...`, one of {}", quoted_list(&types)));
                    continue;
                }
            };
            let specific = (kind.fields)();
            let place = format!("in provisioner {number} (type \"{}\")", kind.name);
            if !self.unknown_keys(&p_path, table, &[common_keys, specific], &place) {
                continue;
            }
            let Some(common) = self
                .checker(&p_path, known)
                .deserialize::<ProvisionerCommon>(subtable(item, table, common_keys))
            else {
                continue;
            };
            for (list, key) in [(&common.only, "only"), (&common.except, "except")] {
                for (i, name) in list.iter().enumerate() {
                    if !sources.iter().any(|s| &s.name == name) {
                        let hint = did_you_mean(name, sources.iter().map(|s| s.name.as_str()));
                        self.error_at(
                            &p_path.key(key).index(i),
                            format!(
                                "`{key}` names source `{name}`, which the template does not define"
                            ),
                        )
                        .help = hint.map(|h| format!("did you mean `{h}`?"));
                    }
                }
            }
            let mut checker = self.checker(&p_path, known);
            let Some(kind) = (kind.load)(subtable(item, table, specific), &mut checker) else {
                continue;
            };
            let location = format!(
                "{}:{}",
                self.doc.path.display(),
                self.doc.line_of(item.span().start)
            );
            out.push((
                Provisioner {
                    number,
                    location,
                    common,
                    kind,
                    written: as_written(item.get_ref()),
                },
                p_path,
            ));
        }
        out
    }
}
