//! The order of images in a family: by version, then by build number.
//!
//! A version that looks like a semantic version (`1`, `1.9`, `1.10.2`,
//! `2.0.0-rc.1`) is compared by semantic-version rules, so 1.10 comes after
//! 1.9 and a pre-release before its release; missing parts count as 0
//! (`1.2` is `1.2.0`). Any other version compares as plain text, and after
//! every semantic one, so a stray `latest` never hides a real release.
//! Retention and listing reuse this one function.

use std::cmp::Ordering;

/// Orders two (version, build number) pairs, oldest first.
pub fn compare(a: (&str, u32), b: (&str, u32)) -> Ordering {
    compare_versions(a.0, b.0).then(a.1.cmp(&b.1))
}

/// Orders two versions, oldest first.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (semantic(a), semantic(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `v1.2` or `1.2` as a full semantic version, if it is one once padded.
fn semantic(version: &str) -> Option<semver::Version> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let core_end = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(core_end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    semver::Version::parse(&format!("{padded}{rest}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut items: Vec<(&'static str, u32)>) -> Vec<(&'static str, u32)> {
        items.sort_by(|a, b| compare(*a, *b));
        items
    }

    #[test]
    fn ten_comes_after_nine() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.9", "1.10"), Ordering::Less);
        assert_eq!(compare_versions("2", "1.99.99"), Ordering::Greater);
    }

    #[test]
    fn missing_parts_count_as_zero_and_a_v_prefix_is_ignored() {
        // Equal as versions; the text decides, so the order stays total.
        assert_eq!(compare_versions("1.2", "1.2.0"), Ordering::Less);
        assert_eq!(compare_versions("1.2.1", "1.2"), Ordering::Greater);
        assert_eq!(compare_versions("v1.10", "1.9"), Ordering::Greater);
    }

    #[test]
    fn a_prerelease_comes_before_its_release() {
        assert_eq!(compare_versions("2.0.0-rc.1", "2.0.0"), Ordering::Less);
        assert_eq!(compare_versions("2.0-rc.2", "2.0-rc.10"), Ordering::Less);
        assert_eq!(compare_versions("1.9", "2.0-rc.1"), Ordering::Less);
    }

    #[test]
    fn other_versions_compare_as_text_after_semantic_ones() {
        assert_eq!(compare_versions("beta", "alpha"), Ordering::Greater);
        assert_eq!(compare_versions("2024.10a", "2024.9a"), Ordering::Less);
        assert_eq!(compare_versions("latest", "99.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.2.3.4", "1.2.3"), Ordering::Greater);
    }

    #[test]
    fn build_numbers_order_within_a_version() {
        assert_eq!(
            sorted(vec![
                ("1.10", 1),
                ("1.9", 2),
                ("1.9", 10),
                ("1.10", 0),
                ("1.9", 1)
            ]),
            vec![
                ("1.9", 1),
                ("1.9", 2),
                ("1.9", 10),
                ("1.10", 0),
                ("1.10", 1)
            ]
        );
    }
}
