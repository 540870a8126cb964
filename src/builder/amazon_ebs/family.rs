//! The image family in EC2: this account's AMIs tagged with the template's
//! `imgbuild:name` and `imgbuild:version`, in the build region and every
//! `ami_regions` region. A build takes the next build number from them, and
//! `--if-changed` reuses the newest when its fingerprint matches.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Image};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::EbsContext;
use super::client::{Api, ApiError};
use super::source_ami::SourceAmi;
use super::tags::Tags;
use crate::builder::rebuild;
use crate::events::Artifact;
use crate::family::{self, FamilyImage};
use crate::fingerprint::{self, Fingerprint, Input, Part};
use crate::pipeline::{Step, StepError};

pub const NAME: &str = "imgbuild:name";
pub const VERSION: &str = "imgbuild:version";
pub const BUILD: &str = "imgbuild:build";
pub const FINGERPRINT: &str = "imgbuild:fingerprint";
/// The per-part hashes, split over `imgbuild:fingerprint-parts`, `…-parts-2`
/// and so on, as EC2 tag values hold at most 256 characters.
pub const PARTS: &str = "imgbuild:fingerprint-parts";
const TAG_VALUE_MAX: usize = 256;
/// sha256 of the package inventory (the list itself is in the manifest).
pub const PACKAGES: &str = "imgbuild:packages-sha256";
/// How many names in a row a build may find taken before it gives up.
pub const NUMBER_ATTEMPTS: u32 = 20;

/// The family's images in `region`.
pub async fn images(
    client: &Client,
    region: &str,
    name: &str,
    version: &str,
) -> Result<Vec<FamilyImage>, ApiError> {
    let tag = |key: &str, value: &str| {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    };
    let out = client
        .describe_images()
        .owners("self")
        .filters(tag(NAME, name))
        .filters(tag(VERSION, version))
        .send()
        .await
        .api("DescribeImages")?;
    Ok(out
        .images()
        .iter()
        .filter(|i| i.state().is_none_or(|s| s.as_str() == "available"))
        .filter_map(|i| from_image(region, i))
        .filter(|i| i.version == version)
        .collect())
}

pub(super) fn from_image(region: &str, image: &Image) -> Option<FamilyImage> {
    let tag = |key: &str| {
        image
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let parts: Vec<String> = std::iter::once(PARTS.to_string())
        .chain((2..10).map(|n| format!("{PARTS}-{n}")))
        .map_while(|key| tag(&key))
        .collect();
    // A build that never finished counts for numbering, but its image is
    // no up-to-date image for `--if-changed` to reuse.
    let finished = tag(super::tags::UNFINISHED).as_deref() != Some("true");
    let built_at = tag("imgbuild:built-at")
        .or_else(|| image.creation_date().map(str::to_string))
        .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
    Some(FamilyImage {
        location: region.to_string(),
        id: image.image_id()?.to_string(),
        version: tag(VERSION)?,
        // Images from before build numbers count as build 0.
        build: tag(BUILD).and_then(|b| b.parse().ok()).unwrap_or(0),
        built_at,
        fingerprint: tag(FINGERPRINT).filter(|_| finished),
        parts: (!parts.is_empty() && finished).then(|| parts.join(" ")),
    })
}

/// The tags that carry the build number and fingerprint.
pub fn tags(build: u32, fp: Option<&Fingerprint>) -> Tags {
    let mut tags = Tags::new();
    tags.insert(BUILD.into(), build.to_string());
    if let Some(fp) = fp {
        tags.insert(FINGERPRINT.into(), fp.digest.clone());
        for (n, chunk) in chunks(&fp.stored_parts(), TAG_VALUE_MAX)
            .into_iter()
            .enumerate()
        {
            let key = if n == 0 {
                PARTS.to_string()
            } else {
                format!("{PARTS}-{}", n + 1)
            };
            tags.insert(key, chunk);
        }
    }
    tags
}

/// Splits space-separated words into lines of at most `max` characters.
fn chunks(words: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words.split_whitespace() {
        match out.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= max => {
                line.push(' ');
                line.push_str(word);
            }
            _ => out.push(word.to_string()),
        }
    }
    out
}

/// The fingerprint part for a resolved base AMI.
pub fn base_part(ami: &SourceAmi) -> Part {
    Part::new(
        "base",
        format!("base AMI (now {} {})", ami.id, ami.name),
        vec![Input {
            label: format!("source AMI {}", ami.id),
            hash: fingerprint::sha256_hex(&ami.id),
        }],
    )
}

/// Looks up the family in every target region and takes the next build number.
pub struct FindFamily;

#[async_trait]
impl Step<EbsContext> for FindFamily {
    fn name(&self) -> &'static str {
        "find image family"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let (name, version) = (
            ctx.build.template.name.clone(),
            ctx.build.template.version.clone(),
        );
        let mut lookups = tokio::task::JoinSet::new();
        for region in ctx.target_regions() {
            let client = ctx.client_in(&region);
            let (name, version) = (name.clone(), version.clone());
            lookups.spawn(async move {
                let found = images(&client, &region, &name, &version).await;
                (region, found)
            });
        }
        let mut found = Vec::new();
        while let Some(joined) = lookups.join_next().await {
            let (region, result) = joined.map_err(StepError::failed)?;
            found.extend(result.map_err(|e| {
                StepError::failed(format!(
                    "looking up images of {name} {version} in {region}: {e}"
                ))
            })?);
        }
        let build = family::next_build(&found);
        ctx.build.events.info(format!(
            "{name} {version}: {} earlier image(s); this is build {build}",
            found.len()
        ));
        ctx.set_build_number(build);
        ctx.family = found;
        Ok(())
    }
}

/// After CreateImage: warns when another image of the family has this
/// build's number. A name with `${image.build}` rules that out (EC2 names are
/// unique per region); a name without it can let two concurrent builds of
/// the family take the same number, and that must not pass unnoticed.
pub async fn check_number_unique(ctx: &EbsContext, own: &str) {
    let b = &ctx.build;
    match images(
        &ctx.client,
        &ctx.region,
        &b.template.name,
        &b.template.version,
    )
    .await
    {
        Ok(found) => {
            let others = same_number(&found, ctx.build_number, own);
            if !others.is_empty() {
                b.events.warn(format!(
                    "build number {} of {} {} is also on {} in {} (a build at the same time); put `${{image.build}}` in `ami_name` to keep numbers unique",
                    ctx.build_number,
                    b.template.name,
                    b.template.version,
                    others.join(", "),
                    ctx.region
                ));
            }
        }
        Err(e) => tracing::warn!("checking build number {}: {e}", ctx.build_number),
    }
}

fn same_number(found: &[FamilyImage], build: u32, own: &str) -> Vec<String> {
    found
        .iter()
        .filter(|i| i.build == build && i.id != own)
        .map(|i| i.id.clone())
        .collect()
}

/// Computes the fingerprint and, with `--if-changed`, decides whether to build.
pub struct CheckChanged;

#[async_trait]
impl Step<EbsContext> for CheckChanged {
    fn name(&self) -> &'static str {
        "compare fingerprint"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let base = ctx
            .source_ami
            .as_ref()
            .ok_or_else(|| StepError::failed("no source AMI"))?;
        let fp = fingerprint::compute(
            &ctx.build.template,
            &ctx.build.source,
            vec![base_part(base)],
        )
        .map_err(StepError::failed)?;
        let regions = ctx.target_regions();
        ctx.reuse = rebuild::decide(&mut ctx.build, &fp, &ctx.family, &regions);
        ctx.fingerprint = Some(fp);
        Ok(())
    }
}

/// Points the build's results at the images `--if-changed` found up to date.
pub fn record_reuse(ebs: &mut EbsContext, reused: &[FamilyImage]) {
    for image in reused {
        ebs.build.artifacts.push(Artifact {
            builder: "amazon-ebs".into(),
            location: image.location.clone(),
            id: image.id.clone(),
        });
    }
    let m = &mut ebs.build.manifest;
    m.insert("region".into(), ebs.region.clone().into());
    if let Some(source) = &ebs.source_ami {
        m.insert("source_ami".into(), source.id.clone().into());
    }
    if let Some(newest) = reused.first() {
        m.insert("build".into(), newest.build.into());
    }
    m.insert("unchanged".into(), true.into());
    let amis: serde_json::Map<String, serde_json::Value> = reused
        .iter()
        .map(|i| (i.location.clone(), i.id.clone().into()))
        .collect();
    m.insert("amis".into(), amis.into());
    let built: serde_json::Map<String, serde_json::Value> = reused
        .iter()
        .map(|i| (i.id.clone(), i.built_at_text().into()))
        .collect();
    m.insert("built_at".into(), built.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, build: u32) -> FamilyImage {
        FamilyImage {
            location: "us-east-1".into(),
            id: id.into(),
            version: "1.2".into(),
            build,
            built_at: None,
            fingerprint: None,
            parts: None,
        }
    }

    #[test]
    fn an_unfinished_image_counts_for_its_number_and_is_never_up_to_date() {
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        let made = |unfinished: bool| {
            let mut b = Image::builder()
                .image_id("ami-1")
                .tags(tag(VERSION, "1.2"))
                .tags(tag(BUILD, "4"))
                .tags(tag(FINGERPRINT, "abc"));
            if unfinished {
                b = b.tags(tag(super::super::tags::UNFINISHED, "true"));
            }
            from_image("us-east-1", &b.build()).unwrap()
        };
        assert_eq!(made(false).fingerprint.as_deref(), Some("abc"));
        let unfinished = made(true);
        assert_eq!((unfinished.build, unfinished.fingerprint), (4, None));
    }

    #[test]
    fn another_image_with_the_same_number_is_found() {
        let found = [image("ami-1", 3), image("ami-2", 3), image("ami-3", 2)];
        assert_eq!(same_number(&found, 3, "ami-2"), ["ami-1"]);
        assert!(same_number(&found, 4, "ami-4").is_empty());
    }

    #[test]
    fn a_taken_name_is_recognised_from_the_create_image_error() {
        let clash = ApiError {
            operation: "CreateImage",
            code: Some("InvalidAMIName.Duplicate".into()),
            message: "AMI name web-1.2-3 is already in use by AMI ami-0123".into(),
            status: Some(400),
        };
        assert!(super::super::image::is_name_clash(&clash));
        let other = ApiError {
            code: Some("InvalidParameterValue".into()),
            ..clash
        };
        assert!(!super::super::image::is_name_clash(&other));
    }

    #[test]
    fn long_part_lists_spread_over_numbered_tags() {
        let parts: Vec<Part> = (1..=30)
            .map(|n| {
                Part::new(
                    format!("provisioner.{n}"),
                    "p",
                    vec![Input {
                        label: "x".into(),
                        hash: fingerprint::sha256_hex(n.to_string()),
                    }],
                )
            })
            .collect();
        let fp = Fingerprint::from_parts(parts);
        let tags = tags(3, Some(&fp));
        assert_eq!(tags[BUILD], "3");
        assert_eq!(tags[FINGERPRINT], fp.digest);
        let stored: Vec<&String> = [
            PARTS.to_string(),
            format!("{PARTS}-2"),
            format!("{PARTS}-3"),
        ]
        .iter()
        .filter_map(|k| tags.get(k))
        .collect();
        assert!(stored.len() >= 2 && stored.iter().all(|v| v.len() <= TAG_VALUE_MAX));
        let joined: Vec<&str> = stored.iter().map(|s| s.as_str()).collect();
        assert_eq!(joined.join(" "), fp.stored_parts());
    }
}
