//! What EC2 accepts as an AMI id, AMI name, region name, CIDR block,
//! account id, device name, snapshot id or KMS key, checked at validate
//! time without calling EC2.

/// Why `name` cannot be an AMI name, if it cannot. References still in it
/// (known only at build time) count as valid and as no characters.
pub fn ami_name_problem(name: &str) -> Option<String> {
    let mut literal = String::new();
    let mut unresolved = false;
    let mut rest = name;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                unresolved = true;
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    literal.push_str(rest);
    let bad: Vec<char> = literal
        .chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
        .collect();
    if !bad.is_empty() {
        let mut shown: Vec<String> = bad.iter().map(|c| format!("`{c}`")).collect();
        shown.dedup();
        return Some(format!(
            "contains {}, which EC2 does not allow in AMI names",
            shown.join(", ")
        ));
    }
    let len = literal.chars().count();
    if len > 128 {
        return Some(format!("is {len} characters long; EC2 allows at most 128"));
    }
    if len < 3 && !unresolved {
        return Some("is shorter than 3 characters, the least EC2 allows".into());
    }
    None
}

pub fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(is_short_or_long_hex_id)
}

/// `/dev/sdf`, `/dev/xvdba`, `/dev/sda1`: the names EC2 takes for a block device on Linux.
pub(super) fn is_device_name(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("/dev/xvd")
        .or_else(|| s.strip_prefix("/dev/sd"))
    else {
        return false;
    };
    let letters = rest.chars().take_while(char::is_ascii_lowercase).count();
    let digits = &rest[letters..];
    (1..=2).contains(&letters) && digits.len() <= 2 && digits.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn is_snapshot_id(s: &str) -> bool {
    s.strip_prefix("snap-").is_some_and(is_short_or_long_hex_id)
}

/// A key id (a UUID, or `mrk-…` for a multi-Region key), a key or alias ARN, or `alias/NAME`.
pub(super) fn is_kms_key(s: &str) -> bool {
    let uuid = |k: &str| {
        let parts: Vec<&str> = k.split('-').collect();
        parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let multi_region = |k: &str| {
        k.strip_prefix("mrk-")
            .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let alias = |k: &str| {
        k.strip_prefix("alias/").is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        })
    };
    let arn = |k: &str| {
        let parts: Vec<&str> = k.splitn(6, ':').collect();
        parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "kms"
            && is_region(parts[3])
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && (parts[5]
                .strip_prefix("key/")
                .is_some_and(|k| uuid(k) || multi_region(k))
                || alias(parts[5]))
    };
    uuid(s) || multi_region(s) || alias(s) || arn(s)
}

fn is_short_or_long_hex_id(hex: &str) -> bool {
    (hex.len() == 8 || hex.len() == 17)
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

pub(super) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// An AWS account id: exactly 12 digits.
pub(super) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, bits)) => match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_names_follow_ec2_rules() {
        assert_eq!(ami_name_problem("httpd-1.0-20261122041501"), None);
        assert_eq!(ami_name_problem("web (v2) [x] it's @home/a_b"), None);
        assert_eq!(ami_name_problem("${image.name}-${build.timestamp}"), None);
        assert!(ami_name_problem("httpd:1.0").unwrap().contains("`:`"));
        assert!(ami_name_problem("ab").unwrap().contains("shorter"));
        assert!(
            ami_name_problem(&"a".repeat(129))
                .unwrap()
                .contains("129 characters")
        );
    }

    #[test]
    fn ids_regions_and_cidrs() {
        assert!(is_ami_id("ami-0e1e769742d1cfb49"));
        assert!(is_ami_id("ami-12345678"));
        assert!(!is_ami_id("ami-xyz"));
        assert!(!is_ami_id("0e1e769742d1cfb49"));
        assert!(is_region("eu-west-3"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("Paris"));
        assert!(is_cidr("203.0.113.7/32"));
        assert!(!is_cidr("203.0.113.7"));
        assert!(is_account_id("210987654321"));
        assert!(!is_account_id("21098765432"));
        assert!(!is_account_id("21098765432x"));
    }

    #[test]
    fn device_names_snapshots_and_kms_keys() {
        for name in ["/dev/sdf", "/dev/xvda", "/dev/sda1", "/dev/xvdba"] {
            assert!(is_device_name(name), "{name}");
        }
        for name in ["sdf", "/dev/nvme1n1", "/dev/sd", "/dev/xvdabc", "/dev/sdF"] {
            assert!(!is_device_name(name), "{name}");
        }
        assert!(is_snapshot_id("snap-0123456789abcdef0"));
        assert!(!is_snapshot_id("snap-xyz"));
        for key in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "alias/ebs-images",
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:123456789012:alias/ebs-images",
        ] {
            assert!(is_kms_key(key), "{key}");
        }
        for key in [
            "ebs-images",
            "alias/",
            "arn:aws:kms:eu-west-1:1:key/x",
            "1234abcd",
        ] {
            assert!(!is_kms_key(key), "{key}");
        }
    }
}
