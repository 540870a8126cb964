//! What builds made and never removed, in one region: temporary instances,
//! spot requests, key pairs and security groups (`imgbuild:temporary`), and images and
//! snapshots of builds that never finished (`imgbuild:unfinished`). Each
//! is judged on its own: it may go only once it is older than the age
//! asked for and its build's time (`imgbuild:expires-at`) is up.

use std::fmt;
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::{Api, ApiError};
use super::tags::{BUILD_ID, EXPIRES_AT, STARTED_AT, TEMPORARY, UNFINISHED, marked};
use super::{Made, spot_requests};

/// One thing a build left.
#[derive(Debug, Clone)]
pub struct Stray {
    pub(super) kind: Made,
    /// The id, or the name for a key pair.
    pub id: String,
    pub build_id: String,
    /// When its build began (or it was made), where known.
    pub made: Option<OffsetDateTime>,
    pub expires: Option<OffsetDateTime>,
    /// An image's snapshots, which go with it.
    pub snapshots: Vec<String>,
}

impl Stray {
    pub fn resource(&self) -> &'static str {
        self.kind.noun()
    }
}

/// Why a stray stays, or that it may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sweep,
    /// Its build may still be running, until then.
    Running(OffsetDateTime),
    /// Made then: not older than the age asked for.
    Young(OffsetDateTime),
    /// When it was made is unknown.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Sweep => f.write_str("left by a build that is over"),
            Verdict::Running(until) => {
                write!(f, "its build may still run until {}", text(*until))
            }
            Verdict::Young(made) => f.write_str(&crate::swept::not_old_enough(*made)),
            Verdict::Unknown => f.write_str("made at an unknown time"),
        }
    }
}

pub fn text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// A build in progress is never swept: its expiry must have passed, and
/// it must be older than `older_than`.
pub fn judge(stray: &Stray, now: OffsetDateTime, older_than: Duration) -> Verdict {
    if let Some(until) = stray.expires
        && until > now
    {
        return Verdict::Running(until);
    }
    match stray.made {
        None => Verdict::Unknown,
        Some(made) if now - made < older_than => Verdict::Young(made),
        Some(_) => Verdict::Sweep,
    }
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

pub(super) fn time(value: Option<&str>) -> Option<OffsetDateTime> {
    value.and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
}

fn smithy(at: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<OffsetDateTime> {
    at.and_then(|d| OffsetDateTime::from_unix_timestamp(d.secs()).ok())
}

fn stray(kind: Made, id: &str, tags: &[Tag], made: Option<OffsetDateTime>) -> Stray {
    Stray {
        kind,
        id: id.into(),
        build_id: tag(tags, BUILD_ID).unwrap_or("?").into(),
        made: time(tag(tags, STARTED_AT)).or(made),
        expires: time(tag(tags, EXPIRES_AT)),
        snapshots: Vec::new(),
    }
}

/// Everything in the region that builds left, in the order it can be
/// removed: instances, spot requests, security groups, key pairs, images,
/// snapshots.
pub async fn find(client: &Client) -> Result<Vec<Stray>, ApiError> {
    let mut found = Vec::new();
    let by_tag = |key: &str| {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values("true")
            .build()
    };
    let live = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        ))
        .build();
    let instances = client
        .describe_instances()
        .filters(by_tag(TEMPORARY))
        .filters(live)
        .send()
        .await
        .api("DescribeInstances")?;
    for i in instances.reservations().iter().flat_map(|r| r.instances()) {
        let id = i.instance_id().unwrap_or_default();
        found.push(stray(Made::Instance, id, i.tags(), smithy(i.launch_time())));
    }
    for r in spot_requests::find_open(client, TEMPORARY, "true").await? {
        let id = r.spot_instance_request_id().unwrap_or_default();
        found.push(stray(
            Made::SpotRequest,
            id,
            r.tags(),
            smithy(r.create_time()),
        ));
    }
    let groups = client
        .describe_security_groups()
        .send()
        .await
        .api("DescribeSecurityGroups")?;
    for g in groups.security_groups() {
        if marked(g.tags(), TEMPORARY) {
            let id = g.group_id().unwrap_or_default();
            found.push(stray(Made::SecurityGroup, id, g.tags(), None));
        }
    }
    let keys = client
        .describe_key_pairs()
        .send()
        .await
        .api("DescribeKeyPairs")?;
    for k in keys.key_pairs() {
        if marked(k.tags(), TEMPORARY) {
            let name = k.key_name().unwrap_or_default();
            found.push(stray(
                Made::KeyPair,
                name,
                k.tags(),
                smithy(k.create_time()),
            ));
        }
    }
    let images = client
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .filters(by_tag(UNFINISHED))
        .send()
        .await
        .api("DescribeImages")?;
    let mut of_images = Vec::new();
    for image in images.images() {
        let made = time(image.creation_date());
        let mut s = stray(
            Made::Image,
            image.image_id().unwrap_or_default(),
            image.tags(),
            made,
        );
        s.made = made.or(s.made);
        s.snapshots = image
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
            .map(str::to_string)
            .collect();
        of_images.extend(s.snapshots.iter().cloned());
        found.push(s);
    }
    let snapshots = client
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .api("DescribeSnapshots")?;
    for snap in snapshots.snapshots() {
        let id = snap.snapshot_id().unwrap_or_default();
        if marked(snap.tags(), UNFINISHED) && !of_images.iter().any(|s| s == id) {
            let made = smithy(snap.start_time());
            let mut s = stray(Made::Snapshot, id, snap.tags(), made);
            s.made = made.or(s.made);
            found.push(s);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn left(made: Option<&str>, expires: Option<&str>) -> Stray {
        Stray {
            kind: Made::Instance,
            id: "i-0abc".into(),
            build_id: "b1".into(),
            made: made.map(at),
            expires: expires.map(at),
            snapshots: Vec::new(),
        }
    }

    #[test]
    fn a_build_in_progress_is_never_swept() {
        let now = at("2026-12-01T12:00:00Z");
        let running = left(Some("2026-11-01T12:00:00Z"), Some("2026-12-01T12:00:01Z"));
        assert_eq!(
            judge(&running, now, Duration::ZERO),
            Verdict::Running(at("2026-12-01T12:00:01Z"))
        );
    }

    #[test]
    fn over_and_old_enough_goes() {
        let now = at("2026-12-01T12:00:00Z");
        let two_hours = Duration::from_secs(7200);
        let over = left(Some("2026-12-01T09:00:00Z"), Some("2026-12-01T11:00:00Z"));
        assert_eq!(judge(&over, now, two_hours), Verdict::Sweep);
        let young = left(Some("2026-12-01T10:30:00Z"), Some("2026-12-01T11:00:00Z"));
        assert_eq!(
            judge(&young, now, two_hours),
            Verdict::Young(at("2026-12-01T10:30:00Z"))
        );
        // From before expiry tags: age alone decides; without a time, it stays.
        assert_eq!(
            judge(&left(Some("2026-11-30T00:00:00Z"), None), now, two_hours),
            Verdict::Sweep
        );
        assert_eq!(
            judge(&left(None, None), now, Duration::ZERO),
            Verdict::Unknown
        );
    }
}
