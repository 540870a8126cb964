//! `temporary_iam_instance_profile_policy_document`: the inline policy of the
//! role a build makes for its instance, written as a TOML table shaped like
//! IAM's JSON, and checked at validate time without calling IAM.

use serde::{Deserialize, Serialize};

use super::AmazonEbsConfig;
use crate::template::check::Checker;

/// An IAM policy document: `{ Version = "2012-10-17", Statement = [...] }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: String,
    pub statement: Vec<PolicyStatement>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PolicyStatement {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: String,
    pub action: Vec<String>,
    pub resource: Vec<String>,
}

impl PolicyDocument {
    /// The document as IAM takes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a policy document is plain data")
    }
}

/// The policy language versions IAM knows.
const VERSIONS: &[&str] = &["2012-10-17", "2008-10-17"];

const KEY: &str = "temporary_iam_instance_profile_policy_document";

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    let Some(doc) = &config.temporary_iam_instance_profile_policy_document else {
        return;
    };
    if config.iam_instance_profile.is_some() {
        checker.error(
            KEY,
            "set either `iam_instance_profile` or `temporary_iam_instance_profile_policy_document`, not both",
        );
    }
    let base = checker.base.key(KEY);
    if !VERSIONS.contains(&doc.version.as_str()) {
        checker.error_at(
            &base.key("Version"),
            format!(
                "`{}` is not an IAM policy version; use \"2012-10-17\"",
                doc.version
            ),
        );
    }
    if doc.statement.is_empty() {
        checker.error_at(
            &base.key("Statement"),
            "the policy needs at least one statement",
        );
    }
    for (i, statement) in doc.statement.iter().enumerate() {
        let at = base.key("Statement").index(i);
        if statement.effect != "Allow" && statement.effect != "Deny" {
            checker.error_at(
                &at.key("Effect"),
                format!(
                    "`Effect` is \"Allow\" or \"Deny\", not `{}`",
                    statement.effect
                ),
            );
        }
        for (field, values) in [
            ("Action", &statement.action),
            ("Resource", &statement.resource),
        ] {
            if values.is_empty() || values.iter().any(|v| v.trim().is_empty()) {
                checker.error_at(
                    &at.key(field),
                    format!("`{field}` needs one or more non-empty values"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_iam_json() {
        let doc: PolicyDocument = toml::from_str(
            r#"Version = "2012-10-17"
Statement = [{ Effect = "Allow", Action = ["ssm:*"], Resource = ["*"] }]
"#,
        )
        .unwrap();
        assert_eq!(
            doc.to_json(),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:*"],"Resource":["*"]}]}"#
        );
    }
}
