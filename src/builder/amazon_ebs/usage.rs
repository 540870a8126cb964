//! What uses an AMI: a pending, running, stopping or stopped instance
//! launched from it, or the default or latest version of a launch template
//! that names it. `prune` never removes an image either holds.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder;
use aws_sdk_ec2::operation::describe_launch_template_versions::builders::DescribeLaunchTemplateVersionsFluentBuilder;
use aws_sdk_ec2::types::{Filter, Instance, LaunchTemplateVersion};

use super::client::{Api, ApiError};

/// Instance states that can still start or run from the image.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Each of `images` that something uses, with one phrase per use.
pub type Uses = BTreeMap<String, Vec<String>>;

/// Instances and launch templates in the client's region that use `images`.
pub async fn of(client: &Client, images: &[String]) -> Result<Uses, ApiError> {
    let mut uses = Uses::new();
    if images.is_empty() {
        return Ok(uses);
    }
    let mut pages = instances_request(client, images).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.api("DescribeInstances")?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            add_instance(&mut uses, instance);
        }
    }
    let mut versions = Vec::new();
    let mut pages = templates_request(client).into_paginator().send();
    while let Some(page) = pages.next().await {
        versions.extend(
            page.api("DescribeLaunchTemplateVersions")?
                .launch_template_versions()
                .iter()
                .cloned(),
        );
    }
    add_templates(&mut uses, &versions);
    uses.retain(|image, _| images.contains(image));
    Ok(uses)
}

/// DescribeInstances for live instances launched from `images`.
fn instances_request(client: &Client, images: &[String]) -> DescribeInstancesFluentBuilder {
    client
        .describe_instances()
        .filters(
            Filter::builder()
                .name("image-id")
                .set_values(Some(images.to_vec()))
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.map(str::to_string).to_vec()))
                .build(),
        )
}

/// The default and latest version of every launch template in the region
/// (one call: no template named, both versions asked for).
fn templates_request(client: &Client) -> DescribeLaunchTemplateVersionsFluentBuilder {
    client
        .describe_launch_template_versions()
        .versions("$Latest")
        .versions("$Default")
}

fn add_instance(uses: &mut Uses, instance: &Instance) {
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    // The filter says live; an emulator may not filter on state, so check.
    if !LIVE_STATES.contains(&state.as_str()) {
        return;
    }
    if let (Some(image), Some(id)) = (instance.image_id(), instance.instance_id()) {
        uses.entry(image.to_string())
            .or_default()
            .push(format!("instance {id} ({state})"));
    }
}

fn add_templates(uses: &mut Uses, versions: &[LaunchTemplateVersion]) {
    let mut seen = Vec::new();
    for v in versions {
        let Some(image) = v.launch_template_data().and_then(|d| d.image_id()) else {
            continue;
        };
        let id = v.launch_template_id().unwrap_or_default();
        let number = v.version_number().unwrap_or_default();
        // Asking for $Latest and $Default returns one version twice when it is both.
        if seen.contains(&(id, number)) {
            continue;
        }
        seen.push((id, number));
        let name = v
            .launch_template_name()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let which = if v.default_version() == Some(true) {
            "default"
        } else {
            "latest"
        };
        uses.entry(image.to_string()).or_default().push(format!(
            "launch template {id}{name} version {number} ({which})"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceState, InstanceStateName, ResponseLaunchTemplateData};

    fn client() -> Client {
        super::super::client::offline("us-east-1")
    }

    #[test]
    fn instances_are_asked_for_by_image_and_live_state() {
        let ids = vec!["ami-1".to_string(), "ami-2".to_string()];
        let request = instances_request(&client(), &ids);
        let filters = request.get_filters().clone().unwrap();
        let pairs: Vec<(Option<&str>, Vec<String>)> = filters
            .iter()
            .map(|f| (f.name(), f.values().to_vec()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Some("image-id"), ids.clone()),
                (
                    Some("instance-state-name"),
                    ["pending", "running", "stopping", "stopped"]
                        .map(String::from)
                        .to_vec()
                )
            ]
        );
    }

    #[test]
    fn every_template_is_read_at_its_default_and_latest_version() {
        let request = templates_request(&client());
        assert_eq!(
            request.get_versions().clone().unwrap(),
            ["$Latest", "$Default"]
        );
        assert!(request.get_launch_template_id().is_none());
        assert!(request.get_launch_template_name().is_none());
    }

    fn version(id: &str, number: i64, default: bool, image: &str) -> LaunchTemplateVersion {
        LaunchTemplateVersion::builder()
            .launch_template_id(id)
            .launch_template_name("web")
            .version_number(number)
            .default_version(default)
            .launch_template_data(
                ResponseLaunchTemplateData::builder()
                    .image_id(image)
                    .build(),
            )
            .build()
    }

    #[test]
    fn uses_name_the_instance_or_template_version() {
        let mut uses = Uses::new();
        for (id, state) in [
            ("i-1", InstanceStateName::Running),
            ("i-2", InstanceStateName::Terminated),
        ] {
            let instance = Instance::builder()
                .instance_id(id)
                .image_id("ami-1")
                .state(InstanceState::builder().name(state).build())
                .build();
            add_instance(&mut uses, &instance);
        }
        add_templates(
            &mut uses,
            &[
                version("lt-1", 3, true, "ami-2"),
                version("lt-1", 3, true, "ami-2"),
                version("lt-1", 4, false, "ami-1"),
            ],
        );
        assert_eq!(
            uses["ami-1"],
            [
                "instance i-1 (running)",
                "launch template lt-1 (web) version 4 (latest)"
            ]
        );
        assert_eq!(
            uses["ami-2"],
            ["launch template lt-1 (web) version 3 (default)"]
        );
    }
}
