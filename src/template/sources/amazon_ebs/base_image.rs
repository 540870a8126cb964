//! Where the base AMI comes from: `source_ami`, `source_ami_filter` or
//! `source_ami_ssm_parameter`, exactly one of them.

use super::{AmazonEbsConfig, is_ami_id};
use crate::template::check::Checker;

const WAYS: &str = "`source_ami`, `source_ami_filter` or `source_ami_ssm_parameter`";

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    let set: Vec<&str> = [
        ("source_ami", config.source_ami.is_some()),
        ("source_ami_filter", config.source_ami_filter.is_some()),
        (
            "source_ami_ssm_parameter",
            config.source_ami_ssm_parameter.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    match set.as_slice() {
        [] => {
            checker.error("", format!("an `amazon-ebs` source needs {WAYS}"));
        }
        [_] => {}
        [first, rest @ ..] => {
            for key in rest {
                checker.error(
                    key,
                    format!("`{first}` already gives the base AMI; set only one of {WAYS}"),
                );
            }
        }
    }
    if let Some(ami) = &config.source_ami
        && !ami.contains("${")
        && !is_ami_id(ami)
    {
        checker
            .error("source_ami", format!("`{ami}` is not an AMI id"))
            .help = Some("AMI ids look like `ami-0123456789abcdef0`".into());
    }
    if let Some(filter) = &config.source_ami_filter {
        if filter.owners.is_empty() {
            checker.error("source_ami_filter", "`source_ami_filter` needs `owners`").help = Some(
                "name who publishes the image, e.g. `owners = [\"amazon\"]` or an account id; without it anyone's AMI could match"
                    .into(),
            );
        }
        if filter.name.is_none() && filter.filters.is_empty() {
            checker.error(
                "source_ami_filter",
                "`source_ami_filter` needs `name` or `filters`",
            );
        }
    }
    if let Some(name) = &config.source_ami_ssm_parameter
        && !name.contains("${")
        && !is_parameter_name(name)
    {
        checker
            .error(
                "source_ami_ssm_parameter",
                format!("`{name}` is not an SSM parameter name"),
            )
            .help = Some(
            "e.g. \"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64\"".into(),
        );
    }
}

/// SSM parameter names: letters, digits and `_ . - /`, up to 2048
/// characters, with no empty path segment.
pub fn is_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 2048
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !name.contains("//")
        && !name.ends_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names() {
        for good in [
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
            "golden-ami",
            "/team/base_image.v2",
        ] {
            assert!(is_parameter_name(good), "{good}");
        }
        for bad in ["", "/a b", "/aws//x", "/team/", "ami:latest"] {
            assert!(!is_parameter_name(bad), "{bad}");
        }
    }
}
