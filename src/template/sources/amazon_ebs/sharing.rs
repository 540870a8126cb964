//! Who may launch the AMI (`ami_users`, `ami_groups`, `ami_org_arns`,
//! `ami_ou_arns`) and create volumes from its snapshots (`snapshot_users`,
//! `snapshot_groups`): checked at validate time without calling EC2.

use super::AmazonEbsConfig;
use super::encryption::DEFAULT_EBS_KEY;
use super::rules::is_account_id;
use crate::template::check::Checker;

/// The only group EC2 knows: everyone.
pub const PUBLIC_GROUP: &str = "all";

/// Every sharing setting is checked where it is written.
pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    let lists = [
        ("ami_users", &config.ami_users),
        ("snapshot_users", &config.snapshot_users),
    ];
    for (key, list) in lists {
        each_unless(checker, key, list, is_account_id, |v| {
            format!("`{v}` is not a 12-digit AWS account id")
        });
    }
    for (key, list) in [
        ("ami_groups", &config.ami_groups),
        ("snapshot_groups", &config.snapshot_groups),
    ] {
        each_unless(
            checker,
            key,
            list,
            |g| g == PUBLIC_GROUP,
            |v| format!("`{v}` is not a group; the only group is \"all\" (public)"),
        );
    }
    each_unless(
        checker,
        "ami_org_arns",
        &config.ami_org_arns,
        is_organization_arn,
        |v| {
            format!(
                "`{v}` is not an organization ARN like arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
            )
        },
    );
    check_encrypted(config, checker);
    each_unless(
        checker,
        "ami_ou_arns",
        &config.ami_ou_arns,
        is_organizational_unit_arn,
        |v| {
            format!(
                "`{v}` is not an organizational unit ARN like arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6"
            )
        },
    );
}

/// EC2's limits on sharing an encrypted image: never public, and with other
/// accounts only under a key they may use (not the AWS managed EBS key).
fn check_encrypted(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    let keys: Vec<&str> = config
        .kms_key_id
        .iter()
        .chain(config.region_kms_key_ids.values())
        .map(String::as_str)
        .collect();
    let encrypted = config.encrypt_boot == Some(true)
        || config.root_volume_encrypted == Some(true)
        || !keys.is_empty();
    if !encrypted {
        return;
    }
    for (key, list) in [
        ("ami_groups", &config.ami_groups),
        ("snapshot_groups", &config.snapshot_groups),
    ] {
        if list.iter().any(|g| g == PUBLIC_GROUP) {
            checker.error(
                key,
                format!("EC2 cannot make an encrypted image or snapshot public; leave out `{key} = [\"all\"]` or the encryption"),
            );
        }
    }
    // Named only: without a key EBS takes the account's default, which may
    // well be a customer managed key.
    let default_key = keys.contains(&DEFAULT_EBS_KEY);
    let shared = [
        ("ami_users", config.ami_users.is_empty()),
        ("snapshot_users", config.snapshot_users.is_empty()),
        ("ami_org_arns", config.ami_org_arns.is_empty()),
        ("ami_ou_arns", config.ami_ou_arns.is_empty()),
    ];
    if default_key && let Some((key, _)) = shared.iter().find(|(_, empty)| !empty) {
        checker
            .error(
                key,
                format!("an image encrypted with EBS's default key (`{DEFAULT_EBS_KEY}`) cannot be shared with other accounts"),
            )
            .help = Some(
            "give `kms_key_id` (and `region_kms_key_ids`) a customer managed key whose policy lets those accounts use it"
                .into(),
        );
    }
}

/// An error at each item of `key` that is not `valid`; items known only at
/// build time pass.
fn each_unless(
    checker: &mut Checker<'_>,
    key: &str,
    items: &[String],
    valid: impl Fn(&str) -> bool,
    problem: impl Fn(&str) -> String,
) {
    for (i, item) in items.iter().enumerate() {
        if !item.contains("${") && !valid(item) {
            checker.error_at(&checker.base.key(key).index(i), problem(item));
        }
    }
}

/// What `validate` and the build say about a public AMI or snapshot.
pub fn public_warnings(config: &AmazonEbsConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.ami_groups.iter().any(|g| g == PUBLIC_GROUP) {
        warnings.push(
            "ami_groups = [\"all\"] makes the AMI and every copy public: any AWS account can launch it"
                .to_string(),
        );
    }
    if config.snapshot_groups.iter().any(|g| g == PUBLIC_GROUP) {
        warnings.push(
            "snapshot_groups = [\"all\"] makes the AMI's snapshots public: any AWS account can read the disk"
                .to_string(),
        );
    }
    warnings
}

/// `arn:PARTITION:organizations::ACCOUNT:organization/o-ID`.
fn is_organization_arn(arn: &str) -> bool {
    organizations_resource(arn)
        .and_then(|r| r.strip_prefix("organization/"))
        .is_some_and(is_organization_id)
}

/// `arn:PARTITION:organizations::ACCOUNT:ou/o-ID/ou-ROOT-ID`.
fn is_organizational_unit_arn(arn: &str) -> bool {
    let Some((org, ou)) = organizations_resource(arn)
        .and_then(|r| r.strip_prefix("ou/"))
        .and_then(|r| r.split_once('/'))
    else {
        return false;
    };
    let ou_parts = ou.strip_prefix("ou-").and_then(|rest| rest.split_once('-'));
    is_organization_id(org)
        && ou_parts.is_some_and(|(root, id)| {
            lower_alphanumeric(root, 4..=32) && lower_alphanumeric(id, 8..=32)
        })
}

/// The resource part of an AWS Organizations ARN owned by an account.
fn organizations_resource(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let fields: Vec<&str> = parts.by_ref().take(5).collect();
    let resource = parts.next()?;
    match fields[..] {
        ["arn", partition, "organizations", "", account]
            if partition.starts_with("aws") && is_account_id(account) =>
        {
            Some(resource)
        }
        _ => None,
    }
}

/// `o-` and 10 to 32 lowercase letters or digits.
fn is_organization_id(id: &str) -> bool {
    id.strip_prefix("o-")
        .is_some_and(|rest| lower_alphanumeric(rest, 10..=32))
}

fn lower_alphanumeric(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_arns() {
        assert!(is_organization_arn(
            "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
        ));
        assert!(is_organization_arn(
            "arn:aws-us-gov:organizations::123456789012:organization/o-a1b2c3d4e5"
        ));
        for bad in [
            "o-a1b2c3d4e5",
            "arn:aws:organizations::123456789012:organization/o-short",
            "arn:aws:organizations::1234:organization/o-a1b2c3d4e5",
            "arn:aws:organizations:us-east-1:123456789012:organization/o-a1b2c3d4e5",
            "arn:aws:iam::123456789012:organization/o-a1b2c3d4e5",
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6",
        ] {
            assert!(!is_organization_arn(bad), "{bad}");
        }
    }

    #[test]
    fn organizational_unit_arns() {
        assert!(is_organizational_unit_arn(
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6"
        ));
        for bad in [
            "ou-a1b2-c3d4e5f6",
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2",
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-A1B2-c3d4e5f6",
            "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5",
            "arn:aws:organizations::123456789012:ou/o-x/ou-a1b2-c3d4e5f6",
        ] {
            assert!(!is_organizational_unit_arn(bad), "{bad}");
        }
    }
}
