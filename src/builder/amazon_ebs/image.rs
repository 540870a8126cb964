//! The image: create it from the stopped instance, wait for it and tag its
//! snapshots, and keep the record of every image the build made (copies
//! included), which the cleanup removes if the build does not succeed.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeValue, ImageState, ResourceType, SnapshotState};

use super::client::{self, Api};
use super::family::NUMBER_ATTEMPTS;
use super::image_removal::{find_by_build, remove_image, replace_same_name};
use super::tags::{self, Tags};
use super::{EbsContext, Made, Waits, block_devices};
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};
use crate::wait::{self, Poll};

/// An image this build made, in one region.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub region: String,
    pub id: String,
    pub snapshots: Vec<String>,
}

/// Images made so far; shared with concurrent copy tasks, which record each
/// id the moment EC2 returns it.
pub type Records = Arc<Mutex<Vec<ImageRecord>>>;

pub(super) fn record(records: &Records, region: &str, id: &str) {
    records.lock().expect("image records").push(ImageRecord {
        region: region.into(),
        id: id.into(),
        snapshots: Vec::new(),
    });
}

fn note_snapshots(records: &Records, id: &str, snapshots: &[String]) {
    if let Some(r) = records
        .lock()
        .expect("image records")
        .iter_mut()
        .find(|r| r.id == id)
    {
        r.snapshots = snapshots.to_vec();
    }
}

#[derive(Default)]
pub struct CreateImage {
    /// CreateImage was sent; if its answer was lost (a cancel), cleanup finds
    /// the image by the build-id tag it was created with.
    requested: bool,
}

#[async_trait]
impl Step<EbsContext> for CreateImage {
    fn name(&self) -> &'static str {
        "create image"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let instance = ctx
            .instance_id
            .clone()
            .ok_or_else(|| StepError::failed("no instance to image"))?;
        ctx.tag_packages();
        let settings = block_devices::expanded(ctx).map_err(StepError::failed)?;
        let root = ctx
            .source_ami
            .as_ref()
            .and_then(|s| s.root_device_name.clone());
        let mappings = block_devices::image(&settings, root.as_deref());
        let mut attempt = 1;
        let (out, name) = loop {
            let name = ctx.ami_name.clone();
            if ctx.config.force_deregister {
                replace_same_name(
                    &ctx.client,
                    &ctx.region,
                    &name,
                    &ctx.build.events,
                    ctx.waits.api,
                )
                .await
                .map_err(StepError::failed)?;
            }
            let description = match &ctx.config.ami_description {
                Some(d) => ctx.build.scope.expand(d).map_err(StepError::failed)?,
                None => format!(
                    "{} {} built by imgbuild from {}",
                    ctx.build.template.name,
                    ctx.build.template.version,
                    ctx.source_ami_id()
                ),
            };
            self.requested = true;
            let result = ctx
                .client
                .create_image()
                .instance_id(&instance)
                .name(&name)
                .description(&description)
                .set_block_device_mappings(Some(mappings.clone()).filter(|m| !m.is_empty()))
                .tag_specifications(tags::at_creation(
                    ResourceType::Image,
                    &tags::unfinished(&ctx.image_tags, &ctx.lifetime),
                ))
                .send()
                .await
                .api("CreateImage");
            match result {
                // Another build of the family took this number a moment ago.
                Err(e) if is_name_clash(&e) && attempt < NUMBER_ATTEMPTS && ctx.renumber() => {
                    let next = ctx.expand_ami_name().map_err(StepError::failed)?;
                    ctx.build.events.info(format!(
                        "`{name}` was taken meanwhile; taking build {} (`{next}`)",
                        ctx.build_number
                    ));
                    let source = ctx.source_ami_id().to_string();
                    ctx.name_image(next, &source).map_err(StepError::failed)?;
                    attempt += 1;
                }
                other => {
                    let out = other.map_err(|e| {
                        StepError::failed(format!("image `{name}` from instance {instance}: {e}"))
                    })?;
                    break (out, name);
                }
            }
        };
        let id = out.image_id().unwrap_or_default().to_string();
        record(&ctx.images, &ctx.region, &id);
        ctx.build.events.info(format!(
            "created image {id} ({name}) in {}; waiting for it to become available",
            ctx.region
        ));
        ctx.build.events.waiting(
            &format!("image {id} in {} to become available", ctx.region),
            ctx.waits.image.timeout,
        );
        super::family::check_number_unique(ctx, &id).await;

        let snapshots = finish_image(
            &ctx.client,
            &ctx.region,
            &id,
            &tags::unfinished(&ctx.snapshot_tags, &ctx.lifetime),
            &ctx.waits,
            &ctx.images,
        )
        .await
        .map_err(StepError::failed)?;
        if ctx.imds_v2() {
            ctx.client
                .modify_image_attribute()
                .image_id(&id)
                .imds_support(AttributeValue::builder().value("v2.0").build())
                .send()
                .await
                .api("ModifyImageAttribute")
                .map_err(|e| StepError::failed(format!("image {id}: setting imds_support: {e}")))?;
        }
        ctx.build.events.info(format!(
            "image {id} is available (snapshots {})",
            snapshots.join(", ")
        ));
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, ending: Ending) -> Vec<Leftover> {
        if ending.keep_outputs() {
            return Vec::new();
        }
        let mut made: Vec<ImageRecord> = ctx
            .images
            .lock()
            .expect("image records")
            .iter()
            .filter(|r| r.region == ctx.region)
            .cloned()
            .collect();
        if self.requested && made.is_empty() {
            made = find_by_build(&ctx.client, &ctx.region, &ctx.build.build_id).await;
        }
        let mut left = Vec::new();
        for image in made {
            left.extend(remove_image(&ctx.client, &image, &ctx.build.events, ctx.waits.api).await);
        }
        left
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        recorded(ctx, |region| region == ctx.region)
    }
}

/// The images recorded so far in the regions `pick` selects, and their snapshots.
pub(super) fn recorded(ctx: &EbsContext, pick: impl Fn(&str) -> bool) -> Vec<Leftover> {
    let records = ctx.images.lock().expect("image records");
    let mut made = Vec::new();
    for image in records.iter().filter(|r| pick(&r.region)) {
        made.push(Made::Image.leftover(&image.id, &image.region, ""));
        for s in &image.snapshots {
            made.push(Made::Snapshot.leftover(s, &image.region, ""));
        }
    }
    made
}

/// EC2's answer when an AMI name is already taken in the region.
pub fn is_name_clash(e: &client::ApiError) -> bool {
    e.code_is("InvalidAMIName.Duplicate")
}

/// Waits for the image, tags its snapshots, waits for them; returns their ids.
pub(super) async fn finish_image(
    client: &Client,
    region: &str,
    id: &str,
    snapshot_tags: &Tags,
    waits: &Waits,
    records: &Records,
) -> Result<Vec<String>, String> {
    let snapshots = wait::until(
        waits.image,
        &format!("image {id} in {region}"),
        "available",
        || async {
            let out = client
                .describe_images()
                .image_ids(id)
                .send()
                .await
                .api("DescribeImages")?;
            let Some(image) = out.images().first() else {
                return Ok(Poll::Pending("not visible yet".into()));
            };
            let snapshots: Vec<String> = image
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                .map(str::to_string)
                .collect();
            Ok::<_, client::ApiError>(match image.state() {
                Some(ImageState::Available) => Poll::Ready(snapshots),
                Some(
                    state @ (ImageState::Failed
                    | ImageState::Error
                    | ImageState::Invalid
                    | ImageState::Deregistered),
                ) => {
                    let why = image.state_reason().map(|r| {
                        format!(
                            " ({}: {})",
                            r.code().unwrap_or("reason"),
                            r.message().unwrap_or_default()
                        )
                    });
                    Poll::Failed(format!(
                        "it is {}{}",
                        state.as_str(),
                        why.unwrap_or_default()
                    ))
                }
                other => Poll::Pending(
                    other
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "unknown".into()),
                ),
            })
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    note_snapshots(records, id, &snapshots);
    if snapshots.is_empty() {
        return Ok(snapshots);
    }
    // Snapshot tags go on with CreateTags once the image exists: not every
    // EC2 implementation accepts snapshot tags in CreateImage itself.
    wait::retrying(waits.api, "tag snapshots", || {
        let request = client
            .create_tags()
            .set_resources(Some(snapshots.clone()))
            .set_tags(Some(tags::sdk(snapshot_tags)));
        async move { request.send().await.api("CreateTags") }
    })
    .await
    .map_err(|e| format!("tagging snapshots {} of {id}: {e}", snapshots.join(", ")))?;
    wait::until(
        waits.snapshots,
        &format!("snapshots of {id} in {region}"),
        "completed",
        || async {
            let out = client
                .describe_snapshots()
                .set_snapshot_ids(Some(snapshots.clone()))
                .send()
                .await
                .api("DescribeSnapshots")?;
            let mut pending = Vec::new();
            for s in out.snapshots() {
                let sid = s.snapshot_id().unwrap_or_default();
                match s.state() {
                    Some(SnapshotState::Completed) => {}
                    Some(SnapshotState::Error) => {
                        return Ok(Poll::Failed(format!(
                            "snapshot {sid} failed: {}",
                            s.state_message().unwrap_or("no reason given")
                        )));
                    }
                    other => pending.push(format!(
                        "{sid} {} {}",
                        other.map(|s| s.as_str()).unwrap_or("unknown"),
                        s.progress().unwrap_or("")
                    )),
                }
            }
            if out.snapshots().len() < snapshots.len() {
                pending.push("some not visible yet".into());
            }
            Ok::<_, client::ApiError>(if pending.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(pending.join(", "))
            })
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(snapshots)
}
