//! Which images `prune` keeps and why: the newest `keep` of a place,
//! every image in use, younger than `older_than`, or launched within
//! `unused_for`; everything else may go, and with it only what no other
//! image is stored as.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use super::listing::{Listed, State, Stored, newest_first};

/// What to keep, from `--keep`/`[retention]` and the other flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The newest this many images of each place stay.
    pub keep: usize,
    /// Only images older than this may go.
    pub older_than: Option<Duration>,
    /// An image launched within this long is in use.
    pub unused_for: Option<Duration>,
    /// Images other accounts may launch may go too.
    pub include_shared: bool,
}

/// Why an image stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// One of the newest `keep` in its place (its rank, 1 for the newest).
    Newest(usize),
    InUse(Vec<String>),
    LaunchedRecently(OffsetDateTime),
    /// Not older than `older_than`: when it was built, and the limit.
    Young(OffsetDateTime, Duration),
    /// `older_than` is set and its age is unknown.
    Unknown,
    /// EC2 is still making it (a build in progress).
    Pending,
    /// Other accounts may launch it.
    Shared,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kept::Newest(rank) => write!(f, "newest {rank}"),
            Kept::InUse(uses) => write!(f, "in use: {}", uses.join(", ")),
            Kept::LaunchedRecently(at) => write!(
                f,
                "launched {}, within --unused-for",
                super::FamilyImage::time_text(*at)
            ),
            Kept::Young(at, limit) => write!(
                f,
                "built {}, not older than {}",
                super::FamilyImage::time_text(*at),
                duration_text(*limit)
            ),
            Kept::Unknown => f.write_str("built at an unknown time, so not known to be old"),
            Kept::Pending => f.write_str("still being made (pending)"),
            Kept::Shared => f.write_str(
                "shared with other accounts, or its snapshots are (--include-shared removes it)",
            ),
        }
    }
}

/// `30d` for whole days, as retention limits are written; else `36h`, `90s`.
fn duration_text(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86400 == 0 => format!("{}d", s / 86400),
        _ => humantime::format_duration(d).to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(Kept),
    /// Remove the image, then these of what it is stored as.
    Remove(Vec<Stored>),
}

/// One image and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub image: Listed,
    pub verdict: Verdict,
}

/// Decides for every image of one place, each version on its own (`--name`
/// alone lists several): what any other image there is stored as stays.
pub fn plan_place(
    images: &[Listed],
    held: &BTreeSet<String>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Vec<Decision> {
    let mut versions: BTreeMap<&str, Vec<Listed>> = BTreeMap::new();
    for image in images {
        versions
            .entry(image.image.version.as_str())
            .or_default()
            .push(image.clone());
    }
    let mut decisions = Vec::new();
    for (version, family) in &versions {
        let mut kept = held.clone();
        for (_, other) in versions.iter().filter(|(v, _)| *v != version) {
            kept.extend(
                other
                    .iter()
                    .flat_map(|i| i.stored.iter().map(|s| s.id.clone())),
            );
        }
        decisions.extend(plan(family, &kept, policy, now));
    }
    decisions
}

/// Decides for every image of one version in one place, newest first; `held` is what the
/// place's other images are stored as, which must survive. Sharing is asked
/// for later, of removals only.
pub fn plan(
    images: &[Listed],
    held: &BTreeSet<String>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Vec<Decision> {
    let mut sorted = images.to_vec();
    sorted.sort_by(newest_first);
    sorted
        .into_iter()
        .enumerate()
        .map(|(n, image)| {
            let verdict = judge(&image, n + 1, policy, now)
                .map(Verdict::Keep)
                .unwrap_or_else(|| Verdict::Remove(own_stored(&image, images, held)));
            Decision { image, verdict }
        })
        .collect()
}

/// Why `image`, the `rank`th newest, stays; `None` when it may go.
fn judge(image: &Listed, rank: usize, policy: &Policy, now: OffsetDateTime) -> Option<Kept> {
    let younger = |limit: Duration, at: OffsetDateTime| {
        (now - at).whole_seconds() < i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)
    };
    if rank <= policy.keep {
        return Some(Kept::Newest(rank));
    }
    if image.in_use() {
        return Some(Kept::InUse(image.uses.clone()));
    }
    if image.state == State::Other("pending".into()) {
        return Some(Kept::Pending);
    }
    if let (Some(limit), Some(at)) = (policy.unused_for, image.last_launched)
        && younger(limit, at)
    {
        return Some(Kept::LaunchedRecently(at));
    }
    if let Some(limit) = policy.older_than {
        match image.image.built_at {
            None => return Some(Kept::Unknown),
            Some(at) if younger(limit, at) => return Some(Kept::Young(at, limit)),
            Some(_) => {}
        }
    }
    None
}

/// What `image` is stored as that neither another image of the family nor
/// anything in `held` is.
pub fn own_stored(image: &Listed, family: &[Listed], held: &BTreeSet<String>) -> Vec<Stored> {
    let elsewhere: BTreeSet<&str> = family
        .iter()
        .filter(|o| o.image.id != image.image.id)
        .flat_map(|o| o.stored.iter().map(|s| s.id.as_str()))
        .chain(held.iter().map(String::as_str))
        .collect();
    image
        .stored
        .iter()
        .filter(|s| !elsewhere.contains(s.id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::FamilyImage;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn image(location: &str, build: u32, days_old: i64, snapshots: &[&str]) -> Listed {
        Listed {
            image: FamilyImage {
                location: location.into(),
                id: format!("ami-{location}-{build}"),
                version: "1.2".into(),
                build,
                built_at: Some(now() - time::Duration::days(days_old)),
                fingerprint: None,
                parts: None,
            },
            state: State::Available,
            uses: Vec::new(),
            last_launched: None,
            stored: snapshots
                .iter()
                .map(|s| Stored {
                    id: s.to_string(),
                    size_bytes: 1,
                })
                .collect(),
        }
    }

    fn policy(keep: usize) -> Policy {
        Policy {
            keep,
            older_than: None,
            unused_for: None,
            include_shared: false,
        }
    }

    fn verdicts(decisions: &[Decision]) -> Vec<(String, String)> {
        decisions
            .iter()
            .map(|d| {
                let v = match &d.verdict {
                    Verdict::Keep(k) => format!("keep: {k}"),
                    Verdict::Remove(s) => format!(
                        "remove: {}",
                        s.iter()
                            .map(|s| s.id.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
                (d.image.image.id.clone(), v)
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_and_what_is_in_use() {
        let mut used = image("us-east-1", 1, 9, &["snap-1"]);
        used.uses = vec!["instance i-1 (running)".into()];
        let mut pending = image("us-east-1", 0, 10, &[]);
        pending.state = State::Other("pending".into());
        let images = vec![
            pending,
            used,
            image("us-east-1", 2, 8, &["snap-2"]),
            image("us-east-1", 4, 6, &["snap-4"]),
            image("us-east-1", 3, 7, &["snap-3"]),
        ];
        assert_eq!(
            verdicts(&plan(&images, &BTreeSet::new(), &policy(2), now())),
            [
                ("ami-us-east-1-4".into(), "keep: newest 1".into()),
                ("ami-us-east-1-3".into(), "keep: newest 2".into()),
                ("ami-us-east-1-2".into(), "remove: snap-2".into()),
                (
                    "ami-us-east-1-1".into(),
                    "keep: in use: instance i-1 (running)".into()
                ),
                (
                    "ami-us-east-1-0".into(),
                    "keep: still being made (pending)".into()
                ),
            ]
        );
    }

    #[test]
    fn a_snapshot_another_image_uses_stays() {
        let images = vec![
            image("us-east-1", 2, 1, &["snap-shared"]),
            image("us-east-1", 1, 2, &["snap-1", "snap-shared", "snap-held"]),
        ];
        let held = BTreeSet::from(["snap-held".to_string()]);
        let decided = plan(&images, &held, &policy(1), now());
        assert_eq!(verdicts(&decided)[1].1, "remove: snap-1");
    }

    #[test]
    fn each_version_keeps_its_newest_and_shares_no_snapshot_away() {
        let old_version = |build, days, snapshots: &[&str]| {
            let mut i = image("us-east-1", build, days, snapshots);
            i.image.version = "1.1".into();
            i.image.id = format!("ami-old-{build}");
            i
        };
        let images = vec![
            old_version(0, 6, &["snap-c", "snap-a"]),
            image("us-east-1", 2, 1, &["snap-a"]),
            image("us-east-1", 1, 2, &["snap-d", "snap-b"]),
            old_version(1, 5, &["snap-b"]),
        ];
        assert_eq!(
            verdicts(&plan_place(&images, &BTreeSet::new(), &policy(1), now())),
            [
                ("ami-old-1".into(), "keep: newest 1".into()),
                ("ami-old-0".into(), "remove: snap-c".into()),
                ("ami-us-east-1-2".into(), "keep: newest 1".into()),
                ("ami-us-east-1-1".into(), "remove: snap-d".into()),
            ]
        );
    }

    #[test]
    fn older_than_and_unused_for_keep_young_and_recently_launched_images() {
        let mut launched = image("us-east-1", 1, 30, &[]);
        launched.last_launched = Some(now() - time::Duration::days(2));
        let images = vec![
            image("us-east-1", 3, 1, &[]),
            image("us-east-1", 2, 5, &[]),
            launched,
        ];
        let p = Policy {
            older_than: Some(Duration::from_secs(3 * 86400)),
            unused_for: Some(Duration::from_secs(7 * 86400)),
            ..policy(0)
        };
        let v = verdicts(&plan(&images, &BTreeSet::new(), &p, now()));
        assert_eq!(
            v[0].1,
            "keep: built 2027-01-14T08:00:00Z, not older than 3d"
        );
        assert_eq!(v[1].1, "remove: ");
        assert!(v[2].1.starts_with("keep: launched 2027-01-13"), "{v:?}");
        let v = verdicts(&plan(&images, &BTreeSet::new(), &policy(0), now()));
        assert_eq!(v[2].1, "remove: ");
    }
}
