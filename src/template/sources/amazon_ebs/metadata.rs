//! The build instance's metadata service: `metadata_http_tokens`,
//! `metadata_http_put_response_hop_limit`, `metadata_tags`.
//!
//! These apply to the build instance only. `imds_support` is the AMI's:
//! with its default "v2.0", instances launched from the new AMI require
//! IMDSv2 whatever `metadata_http_tokens` says, so "optional" with it is
//! allowed (a provisioner may need IMDSv1) but warned about.

use super::AmazonEbsConfig;
use crate::template::check::Checker;

pub const HOP_LIMITS: std::ops::RangeInclusive<i32> = 1..=64;

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    if let Some(limit) = config.metadata_http_put_response_hop_limit
        && !HOP_LIMITS.contains(&limit)
    {
        checker
            .error(
                "metadata_http_put_response_hop_limit",
                format!(
                    "`metadata_http_put_response_hop_limit` is from {} to {}, not {limit}",
                    HOP_LIMITS.start(),
                    HOP_LIMITS.end()
                ),
            )
            .help =
            Some("2 lets containers on the build instance reach the metadata service".into());
    }
    if let Some(tokens) = &config.metadata_http_tokens
        && tokens != "required"
        && tokens != "optional"
    {
        checker.error(
            "metadata_http_tokens",
            format!(
                "`metadata_http_tokens` may be \"required\" (the default, IMDSv2 only) or \"optional\", not `{tokens}`"
            ),
        );
    }
    if let Some(tags) = &config.metadata_tags
        && tags != "enabled"
        && tags != "disabled"
    {
        checker.error(
            "metadata_tags",
            format!(
                "`metadata_tags` may be \"enabled\" or \"disabled\" (the default), not `{tags}`"
            ),
        );
    }
}

/// What `validate` and the build say about IMDSv1 on the build instance.
pub fn warnings(config: &AmazonEbsConfig) -> Vec<String> {
    let optional = config.metadata_http_tokens.as_deref() == Some("optional");
    let ami_requires_v2 = config.imds_support.as_deref() != Some("none");
    if optional && ami_requires_v2 {
        vec![
            "metadata_http_tokens = \"optional\" allows IMDSv1 on the build instance only: the AMI still requires IMDSv2 (imds_support = \"v2.0\"); set imds_support = \"none\" to leave that to the source AMI"
                .to_string(),
        ]
    } else {
        Vec::new()
    }
}
