//! `ami_regions`: copies of the image in every other region, made at once.
//! Each copy is recorded the moment EC2 returns its id, so that if the build
//! does not succeed the cleanup removes it with its snapshots.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::ResourceType;

use super::client::{self, Api};
use super::image::{ImageRecord, Records, finish_image, record, recorded};
use super::image_removal::{find_by_build, remove_image, replace_same_name};
use super::tags::{self, Tags};
use super::{EbsContext, Waits, block_devices, encryption};
use crate::events::{EventSink, Leftover};
use crate::pipeline::{Ending, Step, StepError};
use crate::wait;

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
