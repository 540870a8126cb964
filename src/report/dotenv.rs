//! `build --dotenv FILE`: what the builds made, as `KEY=value` lines for
//! GitLab's `artifacts:reports:dotenv`, so later jobs (a Terraform plan, a
//! test job) get the new image's id as a plain variable.

use crate::build::BuildResult;
use crate::events::Outcome;

/// `IMGBUILD_<SOURCE>_<REGION>_AMI` for each AMI, `IMGBUILD_<SOURCE>_IMAGE`
/// for each local image; each build's id, outcome, build number,
/// fingerprint, whether it reused an unchanged image, and its SBOM; the image
/// name and version once.
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
        if let Some(build) = r.details.get("build").and_then(|b| b.as_u64()) {
            lines.push(format!("IMGBUILD_{source}_BUILD={build}"));
        }
        if let Some(fingerprint) = r.details.get("fingerprint").and_then(|f| f.as_str()) {
            lines.push(format!(
                "IMGBUILD_{source}_FINGERPRINT={}",
                value(fingerprint)
            ));
        }
        if r.outcome == Outcome::Succeeded && !r.artifacts.is_empty() {
            let unchanged = r.details.get("unchanged").and_then(|u| u.as_bool()) == Some(true);
            lines.push(format!("IMGBUILD_{source}_UNCHANGED={unchanged}"));
        }
        if let Some(sbom) = r.details.get("sbom").and_then(|f| f.as_str()) {
            lines.push(format!("IMGBUILD_{source}_SBOM={}", value(sbom)));
        }
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
    use crate::events::Artifact;

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
    fn build_number_fingerprint_reuse_and_sbom_are_variables_too() {
        let mut aws = result("aws", "amazon-ebs", &[("eu-west-3", "ami-0a1")]);
        aws.details.insert("build".into(), 3.into());
        aws.details
            .insert("fingerprint".into(), "5c787b25e906".into());
        aws.details.insert("unchanged".into(), true.into());
        let mut local = result(
            "local",
            "qemu",
            &[("output/httpd-1.2-4", "output/httpd-1.2-4/httpd-1.2-4.qcow2")],
        );
        local.details.insert("build".into(), 4.into());
        local
            .details
            .insert("sbom".into(), "httpd-1.2-4.local.cdx.json".into());
        let mut failed = result("other", "amazon-ebs", &[]);
        failed.outcome = Outcome::Failed;
        assert_eq!(
            render("httpd", "1.2", &[aws, local, failed]),
            "IMGBUILD_IMAGE_NAME=httpd\nIMGBUILD_IMAGE_VERSION=1.2\n\
             IMGBUILD_AWS_BUILD_ID=aws0001\nIMGBUILD_AWS_OUTCOME=succeeded\nIMGBUILD_AWS_BUILD=3\n\
             IMGBUILD_AWS_FINGERPRINT=5c787b25e906\nIMGBUILD_AWS_UNCHANGED=true\nIMGBUILD_AWS_EU_WEST_3_AMI=ami-0a1\n\
             IMGBUILD_LOCAL_BUILD_ID=local0001\nIMGBUILD_LOCAL_OUTCOME=succeeded\nIMGBUILD_LOCAL_BUILD=4\n\
             IMGBUILD_LOCAL_UNCHANGED=false\nIMGBUILD_LOCAL_SBOM=httpd-1.2-4.local.cdx.json\n\
             IMGBUILD_LOCAL_IMAGE=output/httpd-1.2-4/httpd-1.2-4.qcow2\n\
             IMGBUILD_OTHER_BUILD_ID=other0001\nIMGBUILD_OTHER_OUTCOME=failed\n"
        );
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
            "IMGBUILD_IMAGE_NAME=httpd\nIMGBUILD_IMAGE_VERSION=1.2\nIMGBUILD_AWS_BUILD_ID=aws0001\nIMGBUILD_AWS_OUTCOME=succeeded\nIMGBUILD_AWS_UNCHANGED=false\nIMGBUILD_AWS_EU_WEST_3_AMI=ami-0a1\nIMGBUILD_AWS_US_EAST_1_AMI=ami-0b2\nIMGBUILD_LOCAL_VM_BUILD_ID=local-vm0001\nIMGBUILD_LOCAL_VM_OUTCOME=succeeded\nIMGBUILD_LOCAL_VM_UNCHANGED=false\nIMGBUILD_LOCAL_VM_IMAGE=output/httpd-1.2/httpd-1.2.qcow2\n"
        );
    }
}
