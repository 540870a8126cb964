//! What EC2 accepts as an AMI id, AMI name, region name, CIDR block or
//! account id, checked at validate time without calling EC2.

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
    s.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
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
}
