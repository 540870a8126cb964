//! How long a build can possibly run: its start plus every timeout it has
//! (each EC2 and IAM wait, SSH, each provisioner's tries, the cleanup
//! deadline).
//! Written on what the build makes as `imgbuild:expires-at`, so `gc` can
//! tell a build in progress from one that was killed.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Waits;
use super::tags::Lifetime;
use crate::builder::{BuildContext, DEFAULT_SSH_TIMEOUT};
use crate::template::sources::AmazonEbsConfig;

/// The longest the build's own steps may take, provisioners without a
/// `timeout` aside.
pub fn longest(
    b: &BuildContext,
    config: &AmazonEbsConfig,
    waits: &Waits,
    cleanup: Duration,
) -> Duration {
    let ec2 = [
        waits.running,
        waits.stopped,
        waits.image,
        waits.snapshots,
        waits.terminated,
    ]
    .iter()
    .map(|w| w.timeout)
    .fold(Duration::ZERO, Duration::saturating_add);
    // Waits for IAM and EC2 to agree on a temporary instance profile: its
    // visibility, then the launch retried until EC2 knows it.
    let ec2 = match config.temporary_iam_instance_profile_policy_document {
        Some(_) => ec2.saturating_add(waits.profile.timeout.saturating_mul(2)),
        None => ec2,
    };
    let ssh = b
        .source
        .ssh
        .ssh_timeout
        .map(|t| t.0)
        .unwrap_or(DEFAULT_SSH_TIMEOUT);
    let provisioners = b
        .template
        .provisioners_for(&b.source.name)
        .map(|p| {
            let pause = p.common.pause_before.map(|d| d.0).unwrap_or_default();
            let tries = p.common.max_retries.saturating_add(1);
            let each = p.common.timeout.map(|d| d.0).unwrap_or_default();
            pause.saturating_add(each.saturating_mul(tries))
        })
        .fold(Duration::ZERO, Duration::saturating_add);
    ec2.saturating_add(ssh)
        .saturating_add(provisioners)
        .saturating_add(cleanup)
}

/// The build's lifetime tags' values, to the second.
pub fn lifetime(started: SystemTime, longest: Duration) -> Lifetime {
    let text = |at: SystemTime| {
        let at = OffsetDateTime::from(at);
        let at = at.replace_nanosecond(0).unwrap_or(at);
        at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
    };
    Lifetime {
        started_at: text(started),
        expires_at: text(
            started
                .checked_add(longest)
                .unwrap_or(started + Duration::from_secs(10 * 365 * 86_400)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_every_timeout_to_the_second() {
        let started =
            SystemTime::from(OffsetDateTime::parse("2026-12-01T02:00:00.900Z", &Rfc3339).unwrap());
        let life = lifetime(started, Duration::from_secs(3 * 3600 + 30));
        assert_eq!(life.started_at, "2026-12-01T02:00:00Z");
        assert_eq!(life.expires_at, "2026-12-01T05:00:30Z");
    }
}
