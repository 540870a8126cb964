//! An image family: every image built from one template `name` and
//! `version`, in each place images are kept (an AWS region, a local output
//! folder). Builds number themselves from it, and `--if-changed` decides
//! from its newest image whether a new one is needed; `images` lists it and
//! `prune` retires its old images (`listing`, `retention`).

pub mod listing;
pub mod order;
pub mod retention;

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fingerprint::{self, Fingerprint};

/// One existing image of the family, as its tags or metadata describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyImage {
    /// Where it is: a region, or the folder holding a local image.
    pub location: String,
    /// `ami-…`, or the path of the qcow2.
    pub id: String,
    pub version: String,
    pub build: u32,
    pub built_at: Option<OffsetDateTime>,
    pub fingerprint: Option<String>,
    /// The per-part hashes stored with it (see `Fingerprint::stored_parts`).
    pub parts: Option<String>,
}

impl FamilyImage {
    pub fn built_at_text(&self) -> String {
        self.built_at
            .map(FamilyImage::time_text)
            .unwrap_or_else(|| "at an unknown time".into())
    }

    /// A time as RFC 3339, as tags and metadata store it.
    pub fn time_text(at: OffsetDateTime) -> String {
        at.format(&Rfc3339).unwrap_or_default()
    }
}

/// The number the next build gets: one more than any in the family, else 1.
pub fn next_build(images: &[FamilyImage]) -> u32 {
    images.iter().map(|i| i.build).max().unwrap_or(0) + 1
}

/// The newest image in `location`: the highest build number, then the latest time.
pub fn newest_in<'a>(images: &'a [FamilyImage], location: &str) -> Option<&'a FamilyImage> {
    images
        .iter()
        .filter(|i| i.location == location)
        .max_by(|a, b| {
            order::compare((&a.version, a.build), (&b.version, b.build))
                .then(a.built_at.cmp(&b.built_at))
                .then(a.id.cmp(&b.id))
        })
}

/// What `--if-changed` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every location has an up-to-date image with this fingerprint.
    Unchanged(Vec<FamilyImage>),
    /// Build, for these reasons (one line each).
    Build(Vec<String>),
}

/// Compares the fingerprint with the newest image in each location.
pub fn decide(
    fp: &Fingerprint,
    images: &[FamilyImage],
    locations: &[String],
    max_age: Option<Duration>,
    now: OffsetDateTime,
) -> Decision {
    let mut matching = Vec::new();
    let mut reasons = Vec::new();
    for location in locations {
        let Some(newest) = newest_in(images, location) else {
            reasons.push(format!("no earlier image in {location}"));
            continue;
        };
        let what = format!("build {} ({}) in {location}", newest.build, newest.id);
        match &newest.fingerprint {
            Some(f) if f == &fp.digest => {}
            Some(f) => {
                let changed = newest
                    .parts
                    .as_deref()
                    .map(|p| fp.changed_since(p))
                    .unwrap_or_default();
                reasons.push(if changed.is_empty() {
                    format!(
                        "changed since {what} (fingerprint {} → {})",
                        fingerprint::short(f),
                        fp.short()
                    )
                } else {
                    format!("changed since {what}: {}", changed.join(", "))
                });
                continue;
            }
            None => {
                reasons.push(format!("{what} has no fingerprint"));
                continue;
            }
        }
        if let (Some(limit), Some(at)) = (max_age, newest.built_at) {
            let age = now - at;
            if age > limit {
                reasons.push(format!(
                    "{what} is unchanged but too old: built {}, {} ago, past max_age {}",
                    newest.built_at_text(),
                    humantime::format_duration(Duration::from_secs(
                        age.whole_seconds().max(0) as u64
                    )),
                    humantime::format_duration(limit)
                ));
                continue;
            }
        }
        matching.push(newest.clone());
    }
    if reasons.is_empty() {
        Decision::Unchanged(matching)
    } else {
        if !matching.is_empty() {
            let places: Vec<&str> = matching.iter().map(|i| i.location.as_str()).collect();
            reasons.push(format!(
                "only {} has an up-to-date image with this fingerprint",
                places.join(", ")
            ));
        }
        Decision::Build(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{Input, Part};

    fn fp(value: &str) -> Fingerprint {
        Fingerprint::from_parts(vec![Part::new(
            "base",
            "base AMI",
            vec![Input {
                label: "id".into(),
                hash: fingerprint::sha256_hex(value),
            }],
        )])
    }

    fn image(location: &str, build: u32, fp: &Fingerprint, hours_ago: i64) -> FamilyImage {
        FamilyImage {
            location: location.into(),
            id: format!("ami-{location}-{build}"),
            version: "1.2".into(),
            build,
            built_at: Some(now() - time::Duration::hours(hours_ago)),
            fingerprint: Some(fp.digest.clone()),
            parts: Some(fp.stored_parts()),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn regions() -> Vec<String> {
        vec!["us-east-1".into(), "eu-west-1".into()]
    }

    #[test]
    fn numbers_follow_the_highest() {
        let f = fp("a");
        assert_eq!(next_build(&[]), 1);
        assert_eq!(
            next_build(&[image("us-east-1", 3, &f, 1), image("eu-west-1", 7, &f, 1)]),
            8
        );
    }

    #[test]
    fn unchanged_when_every_region_has_the_fingerprint() {
        let f = fp("a");
        let images = vec![
            image("us-east-1", 1, &fp("old"), 48),
            image("us-east-1", 2, &f, 2),
            image("eu-west-1", 2, &f, 2),
        ];
        let decision = decide(
            &f,
            &images,
            &regions(),
            Some(Duration::from_secs(86400)),
            now(),
        );
        assert_eq!(
            decision,
            Decision::Unchanged(vec![images[1].clone(), images[2].clone()])
        );
    }

    #[test]
    fn a_missing_region_a_change_or_age_builds() {
        let f = fp("a");
        let only_one = vec![image("us-east-1", 2, &f, 2)];
        assert_eq!(
            decide(&f, &only_one, &regions(), None, now()),
            Decision::Build(vec![
                "no earlier image in eu-west-1".into(),
                "only us-east-1 has an up-to-date image with this fingerprint".into()
            ])
        );
        let changed = vec![image("us-east-1", 2, &fp("b"), 2)];
        assert_eq!(
            decide(&f, &changed, &regions()[..1], None, now()),
            Decision::Build(vec![
                "changed since build 2 (ami-us-east-1-2) in us-east-1: base AMI".into()
            ])
        );
        let old = vec![image("us-east-1", 2, &f, 30 * 24)];
        let Decision::Build(reasons) = decide(
            &f,
            &old,
            &regions()[..1],
            Some(Duration::from_secs(14 * 86400)),
            now(),
        ) else {
            panic!("an old image must be rebuilt");
        };
        assert!(
            reasons[0].contains("too old")
                && reasons[0].contains("30days")
                && reasons[0].contains("max_age 14days"),
            "{reasons:?}"
        );
    }
}
