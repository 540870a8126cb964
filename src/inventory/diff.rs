//! What changed between two inventories: packages added, removed, and
//! upgraded or downgraded (`openssl 3.0.11-1 → 3.0.13-1`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Inventory, Package};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub name: String,
    pub arch: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub changed: Vec<Changed>,
}

/// Compares by name and architecture.
pub fn diff(before: &Inventory, after: &Inventory) -> Changes {
    let key = |p: &Package| (p.name.clone(), p.arch.clone());
    let old: BTreeMap<_, _> = before.packages.iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<_, _> = after.packages.iter().map(|p| (key(p), p)).collect();
    let mut changes = Changes::default();
    for (k, p) in &new {
        match old.get(k) {
            None => changes.added.push((*p).clone()),
            Some(o) if o.version != p.version => changes.changed.push(Changed {
                name: p.name.clone(),
                arch: p.arch.clone(),
                from: o.version.clone(),
                to: p.version.clone(),
            }),
            Some(_) => {}
        }
    }
    for (k, p) in &old {
        if !new.contains_key(k) {
            changes.removed.push((*p).clone());
        }
    }
    changes
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line per change (`no package changes` when there are none).
    pub fn lines(&self) -> Vec<String> {
        if self.is_empty() {
            return vec!["no package changes".into()];
        }
        let mut out = Vec::new();
        for c in &self.changed {
            out.push(format!("{} {} → {}", c.name, c.from, c.to));
        }
        for p in &self.added {
            out.push(format!("+ {} {}", p.name, p.version));
        }
        for p in &self.removed {
            out.push(format!("- {} {}", p.name, p.version));
        }
        out
    }

    /// `HEADING: no package changes`, or `HEADING: 1 changed, …` and one
    /// indented line per change.
    pub fn report(&self, heading: &str) -> String {
        if self.is_empty() {
            return format!("{heading}: no package changes\n");
        }
        let mut out = format!("{heading}: {}\n", self.summary());
        for line in self.lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }

    /// `2 changed, 1 added, 0 removed`
    pub fn summary(&self) -> String {
        format!(
            "{} changed, {} added, {} removed",
            self.changed.len(),
            self.added.len(),
            self.removed.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(list: &[(&str, &str)]) -> Inventory {
        Inventory {
            manager: "dpkg".into(),
            os: "debian".into(),
            packages: list
                .iter()
                .map(|(n, v)| Package {
                    name: n.to_string(),
                    version: v.to_string(),
                    arch: "amd64".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn lists_changed_added_and_removed() {
        let before = inv(&[("bash", "5.2"), ("openssl", "3.0.11-1"), ("telnet", "0.17")]);
        let after = inv(&[
            ("bash", "5.2"),
            ("curl", "7.88.1-10"),
            ("openssl", "3.0.13-1"),
        ]);
        let changes = diff(&before, &after);
        assert_eq!(
            changes.lines(),
            [
                "openssl 3.0.11-1 → 3.0.13-1",
                "+ curl 7.88.1-10",
                "- telnet 0.17"
            ]
        );
        assert_eq!(changes.summary(), "1 changed, 1 added, 1 removed");
        assert_eq!(diff(&after, &after).lines(), ["no package changes"]);
    }
}
