//! The image: create it from the stopped instance, tag it and its snapshots,
//! copy it to other regions. If the build does not succeed, every
//! image it made is deregistered and its snapshots deleted.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeValue, Filter, ImageState, ResourceType, SnapshotState};

use super::client::{self, Api};
use super::family::NUMBER_ATTEMPTS;
use super::tags::{self, Tags};
use super::{EbsContext, Made, Waits, block_devices, encryption};
use crate::events::{EventSink, Leftover};
use crate::pipeline::{Ending, Step, StepError};
use crate::wait::{self, Poll, WaitParams};

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

fn record(records: &Records, region: &str, id: &str) {
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
fn recorded(ctx: &EbsContext, pick: impl Fn(&str) -> bool) -> Vec<Leftover> {
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
async fn finish_image(
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

/// `force_deregister`: removes this account's images named `name` in `region`.
async fn replace_same_name(
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
pub async fn same_name(client: &Client, name: &str) -> Result<Vec<ImageRecord>, client::ApiError> {
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

async fn find_by_build(client: &Client, region: &str, build_id: &str) -> Vec<ImageRecord> {
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
async fn remove_image(
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
    match client
        .deregister_image()
        .image_id(id)
        .send()
        .await
        .api("DeregisterImage")
    {
        Ok(_) => events.info(format!("deregistered image {id} in {region}")),
        Err(e) if e.is_not_found() || e.code_is("InvalidAMIID.Unavailable") => {}
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

/// `ami_regions`: copies the image to every other region at once.
#[derive(Default)]
pub struct CopyImage {
    /// Copies were requested; a copy whose answer a cancel lost is found by
    /// the build-id tag it was created with.
    requested: bool,
}

#[async_trait]
impl Step<EbsContext> for CopyImage {
    fn name(&self) -> &'static str {
        "copy image"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let source = ctx
            .images
            .lock()
            .expect("image records")
            .first()
            .cloned()
            .ok_or_else(|| StepError::failed("no image to copy"))?;
        let settings = block_devices::expanded(ctx).map_err(StepError::failed)?;
        let mut tasks = tokio::task::JoinSet::new();
        self.requested = true;
        for region in ctx.copy_regions.clone() {
            let client = client::ec2(&ctx.shared, &region);
            let encryption = encryption::copy_encryption(&settings, &ctx.region, &region)
                .map_err(StepError::failed)?;
            let job = CopyJob {
                client,
                region: region.clone(),
                source_region: ctx.region.clone(),
                source_id: source.id.clone(),
                name: ctx.ami_name.clone(),
                description: format!("copy of {} from {}", source.id, ctx.region),
                image_tags: tags::unfinished(&ctx.image_tags, &ctx.lifetime),
                snapshot_tags: tags::unfinished(&ctx.snapshot_tags, &ctx.lifetime),
                waits: ctx.waits,
                records: ctx.images.clone(),
                force_deregister: ctx.config.force_deregister,
                events: ctx.build.events.clone(),
                encryption,
            };
            ctx.build
                .events
                .info(format!("copying {} to {region}", source.id));
            tasks.spawn(async move { (region, job.run().await) });
        }
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((region, Err(e))) => failures.push(format!("{region}: {e}")),
                Err(e) => failures.push(format!("a copy task stopped: {e}")),
            }
        }
        failures.sort();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StepError::failed(format!(
                "copying {} failed in {} region(s):\n  {}",
                source.id,
                failures.len(),
                failures.join("\n  ")
            )))
        }
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, ending: Ending) -> Vec<Leftover> {
        if ending.keep_outputs() {
            return Vec::new();
        }
        let mut copies: Vec<ImageRecord> = ctx
            .images
            .lock()
            .expect("image records")
            .iter()
            .filter(|r| r.region != ctx.region)
            .cloned()
            .collect();
        if self.requested {
            for region in &ctx.copy_regions {
                if !copies.iter().any(|c| &c.region == region) {
                    let client = client::ec2(&ctx.shared, region);
                    copies.extend(find_by_build(&client, region, &ctx.build.build_id).await);
                }
            }
        }
        let mut left = Vec::new();
        for copy in copies {
            let client = client::ec2(&ctx.shared, &copy.region);
            left.extend(remove_image(&client, &copy, &ctx.build.events, ctx.waits.api).await);
        }
        left
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        recorded(ctx, |region| region != ctx.region)
    }
}

struct CopyJob {
    client: Client,
    region: String,
    source_region: String,
    source_id: String,
    name: String,
    description: String,
    image_tags: Tags,
    snapshot_tags: Tags,
    waits: Waits,
    records: Records,
    force_deregister: bool,
    events: EventSink,
    /// `Encrypted` and `KmsKeyId` of the copy.
    encryption: (Option<bool>, Option<String>),
}

impl CopyJob {
    async fn run(self) -> Result<(), String> {
        if self.force_deregister {
            replace_same_name(
                &self.client,
                &self.region,
                &self.name,
                &self.events,
                self.waits.api,
            )
            .await?;
        }
        let out = self
            .client
            .copy_image()
            .source_region(&self.source_region)
            .source_image_id(&self.source_id)
            .name(&self.name)
            .description(&self.description)
            .set_encrypted(self.encryption.0)
            .set_kms_key_id(self.encryption.1.clone())
            .tag_specifications(tags::at_creation(ResourceType::Image, &self.image_tags))
            .send()
            .await
            .api("CopyImage")
            .map_err(|e| e.to_string())?;
        let id = out.image_id().unwrap_or_default().to_string();
        record(&self.records, &self.region, &id);
        self.events.info(format!(
            "copy {id} in {} started; waiting for it to become available",
            self.region
        ));
        self.events.waiting(
            &format!("copy {id} in {} to become available", self.region),
            self.waits.image.timeout,
        );
        // Tags on copies are applied here: CopyImage does not carry them everywhere.
        wait::retrying(self.waits.api, "tag image copy", || {
            let request = self
                .client
                .create_tags()
                .resources(&id)
                .set_tags(Some(tags::sdk(&self.image_tags)));
            async move { request.send().await.api("CreateTags") }
        })
        .await
        .map_err(|e| format!("tagging {id}: {e}"))?;
        let snapshots = finish_image(
            &self.client,
            &self.region,
            &id,
            &self.snapshot_tags,
            &self.waits,
            &self.records,
        )
        .await?;
        self.events.info(format!(
            "copy {id} is available in {} (snapshots {})",
            self.region,
            snapshots.join(", ")
        ));
        Ok(())
    }
}
