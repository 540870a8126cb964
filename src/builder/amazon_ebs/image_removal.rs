//! Finding this account's images, by name (`force_deregister`, and whether
//! a name is taken) or by the build-id tag (a cleanup whose CreateImage or
//! CopyImage answer was lost), and removing one with its snapshots.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

use super::Made;
use super::client::{self, Api};
use super::image::ImageRecord;
use super::tags;
use crate::events::{EventSink, Leftover};
use crate::wait::WaitParams;

/// `force_deregister`: removes this account's images named `name` in `region`.
pub(super) async fn replace_same_name(
    client: &Client,
    region: &str,
    name: &str,
    events: &EventSink,
    api_waits: WaitParams,
) -> Result<(), String> {
    let found = same_name(client, name)
        .await
        .map_err(|e| format!("looking for AMIs named `{name}` in {region}: {e}"))?;
    for image in found {
        events.info(format!(
            "force_deregister: removing {} ({name}) in {region}",
            image.id
        ));
        let left = remove_image(
            client,
            &ImageRecord {
                region: region.into(),
                ..image
            },
            events,
            api_waits,
        )
        .await;
        if let Some(l) = left.first() {
            return Err(format!(
                "force_deregister could not remove {} {}: {}",
                l.resource, l.id, l.reason
            ));
        }
    }
    Ok(())
}

/// Images owned by this account with exactly `name`.
pub(super) async fn same_name(
    client: &Client,
    name: &str,
) -> Result<Vec<ImageRecord>, client::ApiError> {
    let out = client
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .api("DescribeImages")?;
    Ok(out
        .images()
        .iter()
        .filter(|i| i.name() == Some(name))
        .map(|i| to_record("", i))
        .collect())
}

fn to_record(region: &str, image: &aws_sdk_ec2::types::Image) -> ImageRecord {
    ImageRecord {
        region: region.into(),
        id: image.image_id().unwrap_or_default().into(),
        snapshots: image
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
            .map(str::to_string)
            .collect(),
    }
}

pub(super) async fn find_by_build(
    client: &Client,
    region: &str,
    build_id: &str,
) -> Vec<ImageRecord> {
    let out = client
        .describe_images()
        .owners("self")
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::BUILD_ID))
                .values(build_id)
                .build(),
        )
        .send()
        .await;
    match out {
        Ok(out) => out.images().iter().map(|i| to_record(region, i)).collect(),
        Err(e) => {
            tracing::warn!("looking for images of build {build_id}: {e}");
            Vec::new()
        }
    }
}

/// Deregisters the image first (a snapshot in use cannot be deleted), then deletes its snapshots.
pub(super) async fn remove_image(
    client: &Client,
    image: &ImageRecord,
    events: &EventSink,
    api_waits: WaitParams,
) -> Vec<Leftover> {
    let (id, region) = (&image.id, &image.region);
    let mut snapshots = image.snapshots.clone();
    if let Ok(out) = client.describe_images().image_ids(id).send().await {
        for found in out.images() {
            snapshots.extend(to_record(region, found).snapshots);
        }
    }
    snapshots.sort();
    snapshots.dedup();
    let mut left = Vec::new();
    match super::removal::deregister_image(client, id).await {
        Ok(true) => events.info(format!("deregistered image {id} in {region}")),
        Ok(false) => {}
        Err(e) => {
            left.push(Made::Image.leftover(id, region, e.to_string()));
            // Its snapshots stay in use; name them so they are not forgotten.
            for s in &snapshots {
                left.push(Made::Snapshot.leftover(s, region, format!("still used by image {id}")));
            }
            return left;
        }
    }
    for s in snapshots {
        let result = super::removal::delete_snapshot(client, &s, api_waits).await;
        match result {
            Ok(true) => events.info(format!("deleted snapshot {s} in {region}")),
            Ok(false) => {}
            Err(e) => left.push(Made::Snapshot.leftover(&s, region, e.to_string())),
        }
    }
    left
}
