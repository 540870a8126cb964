//! The image's name and tags: `ami_name` expanded with this build's number,
//! checked free in every target region (a name with `${image.build}` moves
//! on to the next number when taken), and the tags that go with it.

use async_trait::async_trait;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{EbsContext, family, image_removal, tags};
use crate::pipeline::{Step, StepError};
use crate::template::sources::{DEFAULT_AMI_NAME, ami_name_problem};

/// Names the image (checked free unless `force_deregister`; a name with
/// `${image.build}` moves on to the next number when taken) and tags it.
pub struct NameImage;

#[async_trait]
impl Step<EbsContext> for NameImage {
    fn name(&self) -> &'static str {
        "name image"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let found = ctx
            .source_ami
            .clone()
            .ok_or_else(|| StepError::failed("no source AMI"))?;
        let mut attempt = 1;
        let name = loop {
            let name = ctx.expand_ami_name().map_err(StepError::failed)?;
            if ctx.config.force_deregister {
                break name;
            }
            let Some((region, existing)) =
                ctx.name_taken(&name).await.map_err(StepError::failed)?
            else {
                break name;
            };
            if attempt < family::NUMBER_ATTEMPTS && ctx.renumber() {
                ctx.build.events.info(format!(
                    "an AMI named `{name}` already exists in {region} ({existing}); taking build {}",
                    ctx.build_number
                ));
                attempt += 1;
                continue;
            }
            return Err(StepError::failed(format!(
                "an AMI named `{name}` already exists in {region} ({existing}); change `ami_name` or set `force_deregister = true` to replace it"
            )));
        };
        ctx.name_image(name, &found.id).map_err(StepError::failed)
    }
}

impl EbsContext {
    pub(super) fn expand_ami_name(&self) -> Result<String, String> {
        let written = self.config.ami_name.as_deref().unwrap_or(DEFAULT_AMI_NAME);
        let name = self
            .build
            .scope
            .expand(written)
            .map_err(|e| format!("ami_name: {e}"))?;
        match ami_name_problem(&name) {
            Some(problem) => Err(format!("AMI name `{name}` {problem}")),
            None => Ok(name),
        }
    }

    /// The first target region with an AMI of this account named `name`.
    pub(super) async fn name_taken(&self, name: &str) -> Result<Option<(String, String)>, String> {
        for region in self.target_regions() {
            let client = self.client_in(&region);
            let taken = image_removal::same_name(&client, name)
                .await
                .map_err(|e| format!("{region}: {e}"))?;
            if let Some(existing) = taken.first() {
                return Ok(Some((region, existing.id.clone())));
            }
        }
        Ok(None)
    }

    /// Moves to the next build number when the AMI name carries it (so the
    /// name changes too); false when another number would not help.
    pub(super) fn renumber(&mut self) -> bool {
        let written = self.config.ami_name.as_deref().unwrap_or(DEFAULT_AMI_NAME);
        let numbered = crate::template::interpolate::references(written)
            .is_ok_and(|refs| refs.iter().any(|r| r.expr == "image.build"));
        if numbered {
            self.set_build_number(self.build_number + 1);
        }
        numbered
    }

    /// Sets the AMI name and the image's and snapshots' tags for it.
    pub(super) fn name_image(&mut self, name: String, source_ami: &str) -> Result<(), String> {
        let built_at = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc())
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut image_tags =
            tags::image(&self.build, &name, source_ami, &built_at, &self.config.tags)?;
        image_tags.extend(family::tags(self.build_number, self.fingerprint.as_ref()));
        self.snapshot_tags = tags::snapshot(&self.build, &image_tags, &self.config.snapshot_tags)?;
        self.image_tags = image_tags;
        self.ami_name = name;
        self.tag_packages();
        Ok(())
    }

    /// Once the inventory is known: its hash on the image and snapshots.
    pub(super) fn tag_packages(&mut self) {
        if let Some(inventory) = &self.build.packages {
            let hash = inventory.sha256();
            for tags in [&mut self.image_tags, &mut self.snapshot_tags] {
                tags.insert(family::PACKAGES.into(), hash.clone());
            }
        }
    }
}
