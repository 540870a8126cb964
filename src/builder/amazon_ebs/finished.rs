//! The last step of a build that succeeded: its images and their snapshots
//! lose `imgbuild:unfinished` and `imgbuild:expires-at`, which until now
//! told `gc` they belong to a build that may never finish.

use async_trait::async_trait;
use aws_sdk_ec2::types::Tag;

use super::EbsContext;
use super::client::Api;
use super::tags::{EXPIRES_AT, UNFINISHED};
use crate::pipeline::{Step, StepError};
use crate::wait;

pub struct MarkFinished;

#[async_trait]
impl Step<EbsContext> for MarkFinished {
    fn name(&self) -> &'static str {
        "mark images finished"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let images = ctx.images.lock().expect("image records").clone();
        let keys: Vec<Tag> = [UNFINISHED, EXPIRES_AT]
            .iter()
            .map(|k| Tag::builder().key(*k).build())
            .collect();
        for image in images {
            let client = ctx.client_in(&image.region);
            let resources: Vec<String> = std::iter::once(image.id.clone())
                .chain(image.snapshots.iter().cloned())
                .collect();
            // A failure fails the build: an image left marked unfinished
            // would be swept by `gc` once its build's time is up.
            wait::retrying(ctx.waits.api, "untag image", || {
                let request = client
                    .delete_tags()
                    .set_resources(Some(resources.clone()))
                    .set_tags(Some(keys.clone()));
                async move { request.send().await.api("DeleteTags") }
            })
            .await
            .map_err(|e| {
                StepError::failed(format!(
                    "marking {} in {} finished (removing tag {UNFINISHED}): {e}",
                    image.id, image.region
                ))
            })?;
        }
        Ok(())
    }
}
