//! The family's AMIs in one region, as `images` lists them and `prune`
//! retires them: deregister, then delete the snapshots no other image of
//! the account uses.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Image, ImageAttributeName, ImageState, SnapshotAttributeName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::{self, Api, ApiError};
use super::family::{NAME, VERSION, from_image};
use super::tags;
use super::usage;
use crate::family::listing::{ImageStore, Listed, Listing, State, StoreError, Stored};
use crate::template::Scope;
use crate::template::sources::AmazonEbsConfig;
use crate::wait::{WaitError, WaitParams};

const GIB: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum Ec2StoreError {
    #[error("listing images in {region}: {source}")]
    List {
        region: String,
        #[source]
        source: ApiError,
    },
    #[error("finding what uses images in {region}: {source}")]
    Usage {
        region: String,
        #[source]
        source: ApiError,
    },
    #[error("reading who may launch {image} in {region}: {source}")]
    Permissions {
        region: String,
        image: String,
        #[source]
        source: ApiError,
    },
    #[error("reading who may copy snapshot {snapshot} in {region}: {source}")]
    SnapshotPermissions {
        region: String,
        snapshot: String,
        #[source]
        source: ApiError,
    },
    #[error("deregistering {image} in {region}: {source}")]
    Deregister {
        region: String,
        image: String,
        #[source]
        source: ApiError,
    },
    #[error("deleting snapshot {snapshot} of {image} in {region}: {source}")]
    DeleteSnapshot {
        region: String,
        image: String,
        snapshot: String,
        #[source]
        source: WaitError<ApiError>,
    },
}

/// This account's images named `name` (and `version`, when given) in one region.
pub struct Ec2Store {
    pub client: Client,
    pub region: String,
    pub name: String,
    pub version: Option<String>,
    /// Retrying a snapshot a just-deregistered image still holds.
    pub waits: WaitParams,
}

impl Ec2Store {
    fn in_family(&self, image: &Image) -> bool {
        let tag = |key: &str| {
            image
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
        };
        tag(NAME) == Some(self.name.as_str())
            && tag(VERSION).is_some_and(|v| self.version.as_deref().is_none_or(|want| v == want))
    }

    async fn delete_snapshot(&self, image: &str, snapshot: &str) -> Result<(), Ec2StoreError> {
        super::removal::delete_snapshot(&self.client, snapshot, self.waits)
            .await
            .map(|_| ())
            .map_err(|source| Ec2StoreError::DeleteSnapshot {
                region: self.region.clone(),
                image: image.into(),
                snapshot: snapshot.into(),
                source,
            })
    }
}

#[async_trait]
impl ImageStore for Ec2Store {
    fn location(&self) -> &str {
        &self.region
    }

    async fn list(&self) -> Result<Listing, StoreError> {
        let region = &self.region;
        let list_error = |source| Ec2StoreError::List {
            region: region.clone(),
            source,
        };
        // Every own image, the family's and the rest: a snapshot another
        // image uses must survive the family's pruning.
        let mut all = Vec::new();
        let mut pages = self
            .client
            .describe_images()
            .owners("self")
            .include_deprecated(true)
            .include_disabled(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            all.extend(
                page.api("DescribeImages")
                    .map_err(list_error)?
                    .images()
                    .to_vec(),
            );
        }
        // Images of builds that never finished are `gc`'s; what they are
        // stored as stays with them.
        let (family, others): (Vec<&Image>, Vec<&Image>) = all
            .iter()
            .partition(|i| self.in_family(i) && !tags::marked(i.tags(), tags::UNFINISHED));
        let ids: Vec<String> = family
            .iter()
            .filter_map(|i| i.image_id())
            .map(str::to_string)
            .collect();
        let mut uses =
            usage::of(&self.client, &ids)
                .await
                .map_err(|source| Ec2StoreError::Usage {
                    region: region.clone(),
                    source,
                })?;
        let now = OffsetDateTime::now_utc();
        let images = family
            .iter()
            .filter_map(|image| {
                let mut listed = listed(region, image, now)?;
                listed.uses = uses.remove(&listed.image.id).unwrap_or_default();
                Some(listed)
            })
            .collect();
        let held: BTreeSet<String> = others
            .iter()
            .flat_map(|i| snapshots(i))
            .map(|s| s.id)
            .collect();
        Ok(Listing { images, held })
    }

    async fn shared(&self, image: &Listed) -> Result<bool, StoreError> {
        let id = &image.image.id;
        let out = self
            .client
            .describe_image_attribute()
            .image_id(id)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .api("DescribeImageAttribute")
            .map_err(|source| Ec2StoreError::Permissions {
                region: self.region.clone(),
                image: id.clone(),
                source,
            })?;
        if !out.launch_permissions().is_empty() {
            return Ok(true);
        }
        // Accounts given its snapshots (`snapshot_users`) depend on them as much.
        for snapshot in &image.stored {
            let out = self
                .client
                .describe_snapshot_attribute()
                .snapshot_id(&snapshot.id)
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .send()
                .await
                .api("DescribeSnapshotAttribute")
                .map_err(|source| Ec2StoreError::SnapshotPermissions {
                    region: self.region.clone(),
                    snapshot: snapshot.id.clone(),
                    source,
                })?;
            if !out.create_volume_permissions().is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn remove(&self, image: &Listed, stored: &[Stored]) -> Result<(), StoreError> {
        let id = &image.image.id;
        super::removal::deregister_image(&self.client, id)
            .await
            .map_err(|source| Ec2StoreError::Deregister {
                region: self.region.clone(),
                image: id.clone(),
                source,
            })?;
        for snapshot in stored {
            self.delete_snapshot(id, &snapshot.id).await?;
        }
        Ok(())
    }

    fn can_disable(&self) -> bool {
        true
    }

    async fn disable(&self, image: &Listed) -> Result<(), StoreError> {
        Ok(super::disable::disable(&self.client, &self.region, &image.image.id).await?)
    }

    fn disable_commands(&self, image: &Listed) -> Vec<String> {
        vec![super::disable::command(&image.image.id, &self.region)]
    }

    fn commands(&self, image: &Listed, stored: &[Stored]) -> Vec<String> {
        let region = &self.region;
        std::iter::once(format!(
            "aws ec2 deregister-image --image-id {} --region {region}",
            image.image.id
        ))
        .chain(stored.iter().map(|s| {
            format!(
                "aws ec2 delete-snapshot --snapshot-id {} --region {region}",
                s.id
            )
        }))
        .collect()
    }
}

/// Where `images` and `prune` look for the family `name` (`version`, when
/// given): `regions`, else the source's build region and `ami_regions`.
pub async fn stores(
    config: Option<&AmazonEbsConfig>,
    scope: &Scope,
    name: &str,
    version: Option<&str>,
    regions: &[String],
) -> Result<Vec<Arc<dyn ImageStore>>, String> {
    let (shared, mut places): (SdkConfig, Vec<String>) = match config {
        Some(config) => {
            let (shared, region) = super::client::region(config, scope).await?;
            let copies = scope
                .expand_all(&config.ami_regions)
                .map_err(|e| format!("ami_regions: {e}"))?;
            (shared, std::iter::once(region).chain(copies).collect())
        }
        None => {
            let shared = client::load(None).await;
            let region = shared.region().map(|r| r.to_string());
            (shared, region.into_iter().collect())
        }
    };
    if !regions.is_empty() {
        places = regions.to_vec();
    }
    if places.is_empty() {
        return Err(
            "no AWS region: give --region, or set AWS_REGION or a region in the AWS profile".into(),
        );
    }
    places.sort();
    places.dedup();
    Ok(places
        .into_iter()
        .map(|region| {
            Arc::new(Ec2Store {
                client: client::ec2(&shared, &region),
                region,
                name: name.to_string(),
                version: version.map(str::to_string),
                waits: WaitParams::with_timeout(Duration::from_secs(120)),
            }) as Arc<dyn ImageStore>
        })
        .collect())
}

/// One family image as listed; `None` without an id or version tag.
fn listed(region: &str, image: &Image, now: OffsetDateTime) -> Option<Listed> {
    let parse = |t: Option<&str>| t.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    Some(Listed {
        image: from_image(region, image)?,
        state: state(image, now),
        uses: Vec::new(),
        last_launched: parse(image.last_launched_time()),
        stored: snapshots(image),
    })
}

fn state(image: &Image, now: OffsetDateTime) -> State {
    let deprecated = image
        .deprecation_time()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|at| at <= now);
    match image.state() {
        None | Some(ImageState::Available) if deprecated => State::Deprecated,
        None | Some(ImageState::Available) => State::Available,
        Some(ImageState::Disabled) => State::Disabled,
        Some(other) => State::Other(other.as_str().to_string()),
    }
}

/// The image's EBS snapshots, each the size of the volume made from it.
fn snapshots(image: &Image) -> Vec<Stored> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs())
        .filter_map(|ebs| {
            Some(Stored {
                id: ebs.snapshot_id()?.to_string(),
                size_bytes: ebs.volume_size().unwrap_or(0).max(0) as u64 * GIB,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, Tag};

    fn image(state: ImageState, deprecation: Option<&str>) -> Image {
        Image::builder()
            .image_id("ami-1")
            .state(state)
            .set_deprecation_time(deprecation.map(str::to_string))
            .last_launched_time("2026-11-20T08:00:00Z")
            .tags(Tag::builder().key(NAME).value("web").build())
            .tags(Tag::builder().key(VERSION).value("1.2").build())
            .tags(Tag::builder().key("imgbuild:build").value("3").build())
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .ebs(
                        EbsBlockDevice::builder()
                            .snapshot_id("snap-1")
                            .volume_size(8)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-01T00:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn a_listed_image_has_its_state_last_launch_and_snapshots() {
        let listed = listed("us-east-1", &image(ImageState::Available, None), now()).unwrap();
        assert_eq!(listed.state, State::Available);
        assert_eq!(
            (listed.image.build, listed.image.version.as_str()),
            (3, "1.2")
        );
        assert_eq!(
            listed
                .last_launched
                .map(crate::family::FamilyImage::time_text),
            Some("2026-11-20T08:00:00Z".to_string())
        );
        assert_eq!(
            listed.stored,
            [Stored {
                id: "snap-1".into(),
                size_bytes: 8 * GIB
            }]
        );
    }

    #[test]
    fn past_its_deprecation_time_an_image_is_deprecated() {
        let past = image(ImageState::Available, Some("2026-11-01T00:00:00Z"));
        let future = image(ImageState::Available, Some("2027-01-01T00:00:00Z"));
        assert_eq!(state(&past, now()), State::Deprecated);
        assert_eq!(state(&future, now()), State::Available);
        assert_eq!(
            state(&image(ImageState::Disabled, None), now()),
            State::Disabled
        );
        assert_eq!(
            state(&image(ImageState::Pending, None), now()),
            State::Other("pending".into())
        );
    }
}
