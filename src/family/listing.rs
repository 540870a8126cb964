//! What `images` shows and `prune` judges: each image of a family with its
//! state, what uses it and what it is stored as, and the places that keep
//! them (an EC2 region, the local output folders).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{FamilyImage, order};

/// An image's state as its store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Available,
    /// Past its deprecation time: still launchable by its owner.
    Deprecated,
    Disabled,
    /// Pending, failed, or anything else the store says.
    Other(String),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Available => f.write_str("available"),
            State::Deprecated => f.write_str("deprecated"),
            State::Disabled => f.write_str("disabled"),
            State::Other(s) => f.write_str(s),
        }
    }
}

/// One thing an image is stored as: an EBS snapshot, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub size_bytes: u64,
}

/// One image of the family, listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub image: FamilyImage,
    pub state: State,
    /// Why it is in use, one phrase each: `instance i-0abc (running)`.
    pub uses: Vec<String>,
    /// When an instance was last launched from it, where the store knows.
    pub last_launched: Option<OffsetDateTime>,
    /// Its snapshots or files.
    pub stored: Vec<Stored>,
}

impl Listed {
    pub fn in_use(&self) -> bool {
        !self.uses.is_empty()
    }

    pub fn size_bytes(&self) -> u64 {
        self.stored.iter().map(|s| s.size_bytes).sum()
    }
}

/// Newest first: the shared version ordering, then the latest time, then
/// place and id so the order is total.
pub fn newest_first(a: &Listed, b: &Listed) -> Ordering {
    let (x, y) = (&a.image, &b.image);
    order::compare((&y.version, y.build), (&x.version, x.build))
        .then(y.built_at.cmp(&x.built_at))
        .then(x.location.cmp(&y.location))
        .then(x.id.cmp(&y.id))
}

/// A byte count as people read it: `15 GiB`, `1.5 MiB`, `812 B`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A place's images of the family, and what its other images are stored
/// as (never removed with a family image).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub images: Vec<Listed>,
    pub held: BTreeSet<String>,
}

pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// A place that keeps a family's images. Each builder that makes images
/// provides one per place; `images` and `prune` work only through it.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// A region, or `local`.
    fn location(&self) -> &str;

    /// Every image of the family here, in any state.
    async fn list(&self) -> Result<Listing, StoreError>;

    /// Whether other accounts may launch it (asked only before removing it).
    async fn shared(&self, image: &Listed) -> Result<bool, StoreError>;

    /// Removes the image and then exactly `stored` of what it is stored as.
    async fn remove(&self, image: &Listed, stored: &[Stored]) -> Result<(), StoreError>;

    /// The commands that remove it by hand, as `remove` would.
    fn commands(&self, image: &Listed, stored: &[Stored]) -> Vec<String>;

    /// Whether an image here can be disabled (`prune --disable`): kept with
    /// everything it is stored as, but not launchable, until enabled again.
    fn can_disable(&self) -> bool {
        false
    }

    /// Disables the image; asked only where `can_disable`.
    async fn disable(&self, image: &Listed) -> Result<(), StoreError> {
        Err(format!(
            "{} in {} cannot be disabled",
            image.image.id,
            self.location()
        )
        .into())
    }

    /// The commands that disable it by hand, as `disable` would.
    fn disable_commands(&self, _image: &Listed) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(location: &str, version: &str, build: u32) -> Listed {
        Listed {
            image: FamilyImage {
                location: location.into(),
                id: format!("ami-{location}-{version}-{build}"),
                version: version.into(),
                build,
                built_at: None,
                fingerprint: None,
                parts: None,
            },
            state: State::Available,
            uses: Vec::new(),
            last_launched: None,
            stored: Vec::new(),
        }
    }

    #[test]
    fn newest_version_and_build_come_first_and_places_stay_together() {
        let mut rows = [
            listed("us-east-1", "1.9", 4),
            listed("eu-west-1", "1.10", 1),
            listed("us-east-1", "1.10", 1),
            listed("us-east-1", "1.10", 2),
        ];
        rows.sort_by(newest_first);
        let order: Vec<String> = rows.iter().map(|r| r.image.id.clone()).collect();
        assert_eq!(
            order,
            [
                "ami-us-east-1-1.10-2",
                "ami-eu-west-1-1.10-1",
                "ami-us-east-1-1.10-1",
                "ami-us-east-1-1.9-4"
            ]
        );
    }

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(size_text(812), "812 B");
        assert_eq!(size_text(15 * 1024 * 1024 * 1024), "15 GiB");
        assert_eq!(size_text(1536 * 1024), "1.5 MiB");
    }
}
