//! `build --dotenv FILE`: what the builds made, as `KEY=value` lines for
//! GitLab's `artifacts:reports:dotenv`, so later jobs (a Terraform plan, a
//! test job) get the new image's id as a plain variable.

use crate::build::BuildResult;

/// `IMGBUILD_<SOURCE>_<REGION>_AMI` for each AMI, `IMGBUILD_<SOURCE>_IMAGE`
/// for each local image, and each build's id and outcome; the image name and
/// version once.
pub fn render(image_name: &str, version: &str, results: &[BuildResult]) -> String {
    let mut lines = vec![
        format!("IMGBUILD_IMAGE_NAME={}", value(image_name)),
        format!("IMGBUILD_IMAGE_VERSION={}", value(version)),
    ];
    for r in results {
        let source = key_part(&r.name);
        lines.push(format!("IMGBUILD_{source}_BUILD_ID={}", value(&r.build_id)));
        lines.push(format!(
            "IMGBUILD_{source}_OUTCOME={}",
            serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
        for a in &r.artifacts {
            if a.builder == "amazon-ebs" {
                lines.push(format!(
                    "IMGBUILD_{source}_{}_AMI={}",
                    key_part(&a.location),
                    value(&a.id)
                ));
            } else {
                lines.push(format!("IMGBUILD_{source}_IMAGE={}", value(&a.id)));
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A name as part of a variable name: `eu-west-3` → `EU_WEST_3`.
fn key_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// GitLab's dotenv values are one line each.
fn value(v: &str) -> String {
    v.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Artifact, Outcome};

    fn result(name: &str, builder: &str, artifacts: &[(&str, &str)]) -> BuildResult {
        BuildResult {
            name: name.into(),
            builder_type: builder.into(),
            build_id: format!("{name}0001"),
            image_name: "httpd".into(),
            version: "1.2".into(),
            outcome: Outcome::Succeeded,
            error: None,
            artifacts: artifacts
                .iter()
                .map(|(location, id)| Artifact {
                    builder: builder.into(),
                    location: location.to_string(),
                    id: id.to_string(),
                })
                .collect(),
            leftovers: Vec::new(),
            started_at: String::new(),
            finished_at: String::new(),
            details: Default::default(),
        }
    }

    #[test]
    fn every_ami_and_image_gets_a_variable() {
        let text = render(
            "httpd",
            "1.2",
            &[
                result(
                    "aws",
                    "amazon-ebs",
                    &[("eu-west-3", "ami-0a1"), ("us-east-1", "ami-0b2")],
                ),
                result(
                    "local-vm",
                    "qemu",
                    &[("output/httpd-1.2", "output/httpd-1.2/httpd-1.2.qcow2")],
                ),
            ],
        );
        assert_eq!(
            text,
            "IMGBUILD_IMAGE_NAME=httpd\nIMGBUILD_IMAGE_VERSION=1.2\nIMGBUILD_AWS_BUILD_ID=aws0001\nIMGBUILD_AWS_OUTCOME=succeeded\nIMGBUILD_AWS_EU_WEST_3_AMI=ami-0a1\nIMGBUILD_AWS_US_EAST_1_AMI=ami-0b2\nIMGBUILD_LOCAL_VM_BUILD_ID=local-vm0001\nIMGBUILD_LOCAL_VM_OUTCOME=succeeded\nIMGBUILD_LOCAL_VM_IMAGE=output/httpd-1.2/httpd-1.2.qcow2\n"
        );
    }
}
