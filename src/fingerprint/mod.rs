//! A build's fingerprint: one sha256 over everything that determines the
//! image, so a scheduled rebuild can tell "nothing changed" from "something
//! did" and say what.
//!
//! It is made of named parts (the source's settings, each variable the
//! template uses, each provisioner with the files it uploads, the resolved
//! base), each with its own hash, so two fingerprints can be compared part by
//! part. Per-run values never enter it: template strings are hashed as
//! written, so `${build.id}` is the same text on every run, and the values of
//! the variables they refer to are parts of their own.

mod archive;
mod files;
mod template;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use archive::archive_state;
pub use template::compute;

/// Bumped when what a fingerprint covers changes, so old images rebuild once.
const SCHEME: &str = "imgbuild fingerprint 1";

/// One thing that went into a part, as `imgbuild fingerprint -v` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub label: String,
    pub hash: String,
}

/// A named part of the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Short and space-free, as stored with the image: `provisioner.2`.
    pub key: String,
    /// For people: `provisioner 2 (shell, t.toml:14)`.
    pub label: String,
    pub hash: String,
    pub inputs: Vec<Input>,
}

impl Part {
    /// A part whose hash covers its inputs, in order.
    pub fn new(key: impl Into<String>, label: impl Into<String>, inputs: Vec<Input>) -> Part {
        let mut h = Sha256::new();
        for input in &inputs {
            h.update(input.label.as_bytes());
            h.update([0]);
            h.update(input.hash.as_bytes());
            h.update([0]);
        }
        Part {
            key: key.into(),
            label: label.into(),
            hash: hex::encode(h.finalize()),
            inputs,
        }
    }
}

pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub digest: String,
    pub parts: Vec<Part>,
}

/// How many hex digits of each part's hash are stored with an image: enough
/// to tell which part changed, too few to test a guessed secret against.
const STORED_PART_DIGITS: usize = 8;

impl Fingerprint {
    pub fn from_parts(parts: Vec<Part>) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(SCHEME.as_bytes());
        h.update(b"\n");
        for p in &parts {
            h.update(format!("{} {}\n", p.key, p.hash).as_bytes());
        }
        Fingerprint {
            digest: hex::encode(h.finalize()),
            parts,
        }
    }

    /// The first 12 digits, as messages show it.
    pub fn short(&self) -> &str {
        short(&self.digest)
    }

    /// `key=hash8 key=hash8 …`: what is stored with an image to name the
    /// parts that changed next time.
    pub fn stored_parts(&self) -> String {
        self.parts
            .iter()
            .map(|p| format!("{}={}", p.key, &p.hash[..STORED_PART_DIGITS]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What differs from an earlier build's `stored_parts`, for people:
    /// `provisioner 2 (file, t.toml:9)`, `variable greeting`; removed parts
    /// by their key.
    pub fn changed_since(&self, stored: &str) -> Vec<String> {
        let before: BTreeMap<&str, &str> = stored
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let mut changed = Vec::new();
        for p in &self.parts {
            match before.get(p.key.as_str()) {
                Some(h) if p.hash.starts_with(h) => {}
                Some(_) => changed.push(p.label.clone()),
                None => changed.push(format!("{} (new)", p.label)),
            }
        }
        for key in before.keys() {
            if !self.parts.iter().any(|p| p.key == *key) {
                changed.push(format!("{key} (removed)"));
            }
        }
        changed
    }
}

pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(key: &str, content: &str) -> Part {
        Part::new(
            key,
            format!("the {key}"),
            vec![Input {
                label: "x".into(),
                hash: sha256_hex(content),
            }],
        )
    }

    #[test]
    fn names_changed_new_and_removed_parts() {
        let before = Fingerprint::from_parts(vec![part("a", "1"), part("b", "2"), part("c", "3")]);
        let after = Fingerprint::from_parts(vec![part("a", "1"), part("b", "9"), part("d", "4")]);
        assert_ne!(before.digest, after.digest);
        assert_eq!(
            after.changed_since(&before.stored_parts()),
            ["the b", "the d (new)", "c (removed)"]
        );
        assert!(before.changed_since(&before.stored_parts()).is_empty());
    }

    #[test]
    fn stored_parts_are_short_and_space_separated() {
        let fp = Fingerprint::from_parts(vec![part("source", "1"), part("var.x", "2")]);
        let stored = fp.stored_parts();
        assert_eq!(stored.split(' ').count(), 2);
        assert!(stored.starts_with("source="));
        assert_eq!(stored.len(), "source=".len() + 8 + " var.x=".len() + 8);
    }
}
