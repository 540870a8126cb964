//! Finding the base AMI: by id, by a filter that must match exactly one
//! image unless `most_recent` picks among several, or by an SSM parameter;
//! the step that resolves it for the build, and the fingerprint part it
//! gives `--if-changed`.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ArchitectureValues, Filter, Image};

use super::client::{self, Api};
use super::{EbsContext, attributes, family, ssm};
use crate::fingerprint::Part;
use crate::pipeline::{Step, StepError};
use crate::template::Scope;
use crate::template::sources::{AmazonEbsConfig, AmiFilter};

/// The base image, as far as launching from it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAmi {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub creation_date: String,
    pub root_device_name: Option<String>,
    /// `legacy-bios`, `uefi`, `uefi-preferred`; an image made from it keeps this.
    pub boot_mode: Option<String>,
    /// `v2.0` if it has NitroTPM; an image made from it keeps this.
    pub tpm_support: Option<String>,
}

impl SourceAmi {
    fn from_sdk(image: &Image) -> SourceAmi {
        SourceAmi {
            id: image.image_id().unwrap_or_default().to_string(),
            name: image.name().unwrap_or_default().to_string(),
            owner: image.owner_id().unwrap_or_default().to_string(),
            creation_date: image.creation_date().unwrap_or_default().to_string(),
            root_device_name: image.root_device_name().map(str::to_string),
            // EC2 reports none for an image that boots its architecture's
            // default: UEFI on Arm, legacy BIOS on x86.
            boot_mode: Some(match (image.boot_mode(), image.architecture()) {
                (Some(mode), _) => mode.as_str().to_string(),
                (None, Some(ArchitectureValues::Arm64 | ArchitectureValues::Arm64Mac)) => {
                    "uefi".to_string()
                }
                (None, _) => "legacy-bios".to_string(),
            }),
            tpm_support: image.tpm_support().map(|t| t.as_str().to_string()),
        }
    }
}

/// Looks up `source_ami`; it must exist and be available.
pub async fn by_id(client: &Client, region: &str, id: &str) -> Result<SourceAmi, String> {
    let out = client
        .describe_images()
        .image_ids(id)
        .send()
        .await
        .api("DescribeImages")
        .map_err(|e| {
            if e.is_not_found() {
                format!("source AMI {id} does not exist in {region} ({e})")
            } else {
                e.to_string()
            }
        })?;
    let image = out
        .images()
        .first()
        .ok_or_else(|| format!("source AMI {id} does not exist in {region}"))?;
    let state = image
        .state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    if state != "available" {
        return Err(format!("source AMI {id} is {state}, not available"));
    }
    Ok(SourceAmi::from_sdk(image))
}

/// Resolves `source_ami_filter` to one image.
pub async fn by_filter(
    client: &Client,
    region: &str,
    filter: &AmiFilter,
    scope: &Scope,
) -> Result<SourceAmi, String> {
    let expand = |s: &str| {
        scope
            .expand(s)
            .map_err(|e| format!("source_ami_filter: {e}"))
    };
    let mut filters = vec![Filter::builder().name("state").values("available").build()];
    let mut described = Vec::new();
    if let Some(name) = &filter.name {
        let name = expand(name)?;
        described.push(format!("name={name}"));
        filters.push(Filter::builder().name("name").values(name).build());
    }
    if let Some(arch) = &filter.architecture {
        let arch = expand(arch)?;
        described.push(format!("architecture={arch}"));
        filters.push(Filter::builder().name("architecture").values(arch).build());
    }
    for (key, value) in &filter.filters {
        let value = expand(value)?;
        described.push(format!("{key}={value}"));
        filters.push(Filter::builder().name(key).values(value).build());
    }
    let owners = filter
        .owners
        .iter()
        .map(|o| expand(o))
        .collect::<Result<Vec<_>, _>>()?;
    described.push(format!("owners={}", owners.join(",")));
    let out = describe_request(client, owners, filters, filter.include_deprecated)
        .send()
        .await
        .api("DescribeImages")
        .map_err(|e| e.to_string())?;
    let found: Vec<SourceAmi> = out.images().iter().map(SourceAmi::from_sdk).collect();
    pick(found, filter.most_recent).map_err(|e| {
        format!(
            "source_ami_filter ({}) in {region}: {e}",
            described.join(" ")
        )
    })
}

/// DescribeImages for a filter; EC2 leaves deprecated images out unless asked.
fn describe_request(
    client: &Client,
    owners: Vec<String>,
    filters: Vec<Filter>,
    include_deprecated: bool,
) -> aws_sdk_ec2::operation::describe_images::builders::DescribeImagesFluentBuilder {
    client
        .describe_images()
        .set_owners(Some(owners))
        .set_filters(Some(filters))
        .set_include_deprecated(include_deprecated.then_some(true))
}

/// Chooses among matches. With `most_recent`, the latest CreationDate wins;
/// equal dates (images published together, and every default image in
/// emulators) are broken by the greater name, then the greater id, so the
/// choice never depends on the order EC2 returns them in.
pub fn pick(mut found: Vec<SourceAmi>, most_recent: bool) -> Result<SourceAmi, String> {
    match found.len() {
        0 => Err("no available AMI matches".into()),
        1 => Ok(found.remove(0)),
        n if !most_recent => {
            found.sort_by(|a, b| b.name.cmp(&a.name));
            let listed: Vec<String> = found
                .iter()
                .take(10)
                .map(|a| format!("  {} {} ({})", a.id, a.name, a.creation_date))
                .collect();
            let more = if n > 10 {
                format!("\n  … and {} more", n - 10)
            } else {
                String::new()
            };
            Err(format!(
                "{n} AMIs match; narrow the filter or set `most_recent = true`:\n{}{more}",
                listed.join("\n")
            ))
        }
        _ => Ok(found
            .into_iter()
            .max_by(|a, b| {
                (a.creation_date.as_str(), a.name.as_str(), a.id.as_str()).cmp(&(
                    b.creation_date.as_str(),
                    b.name.as_str(),
                    b.id.as_str(),
                ))
            })
            .expect("not empty")),
    }
}

/// The fingerprint part for the base AMI the source resolves to today.
pub async fn fingerprint_base(config: &AmazonEbsConfig, scope: &Scope) -> Result<Part, String> {
    let (shared, region) = client::region(config, scope).await?;
    let client = client::ec2(&shared, &region);
    let found = find_source_ami(&shared, &client, &region, config, scope).await?;
    Ok(family::base_part(&found))
}

async fn find_source_ami(
    shared: &SdkConfig,
    client: &aws_sdk_ec2::Client,
    region: &str,
    config: &AmazonEbsConfig,
    scope: &Scope,
) -> Result<SourceAmi, String> {
    let expand = |s: &str| scope.expand(s).map_err(|e| e.to_string());
    match (
        &config.source_ami,
        &config.source_ami_filter,
        &config.source_ami_ssm_parameter,
    ) {
        (Some(id), _, _) => by_id(client, region, &expand(id)?).await,
        (None, Some(filter), _) => by_filter(client, region, filter, scope).await,
        (None, None, Some(name)) => ssm::resolve(shared, client, region, &expand(name)?)
            .await
            .map_err(|e| e.to_string()),
        (None, None, None) => {
            Err("no `source_ami`, `source_ami_filter` or `source_ami_ssm_parameter`".into())
        }
    }
}

/// Resolves the base AMI.
pub(super) struct FindSourceAmi;

#[async_trait]
impl Step<EbsContext> for FindSourceAmi {
    fn name(&self) -> &'static str {
        "find source AMI"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let found = find_source_ami(
            &ctx.shared,
            &ctx.client,
            &ctx.region,
            &ctx.config,
            &ctx.build.scope,
        )
        .await
        .map_err(StepError::failed)?;
        if let Some(problem) = attributes::source_problem(&ctx.config, &found) {
            return Err(StepError::failed(problem));
        }
        ctx.build.events.info(format!(
            "source AMI: {} ({}, owner {})",
            found.id, found.name, found.owner
        ));
        let scope = &mut ctx.build.scope;
        scope.set("source.ami", found.id.clone());
        scope.set("source.ami_name", found.name.clone());
        scope.set("source.ami_owner", found.owner.clone());
        scope.set("source.ami_creation_date", found.creation_date.clone());
        ctx.source_ami = Some(found);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ami(id: &str, name: &str, date: &str) -> SourceAmi {
        SourceAmi {
            id: id.into(),
            name: name.into(),
            owner: "137112412989".into(),
            creation_date: date.into(),
            root_device_name: None,
            boot_mode: None,
            tpm_support: None,
        }
    }

    #[test]
    fn most_recent_breaks_ties_by_name_then_id() {
        let d = "2026-11-22T04:17:30.000Z";
        let found = vec![
            ami("ami-2", "al2023-6.1", d),
            ami("ami-3", "al2023-6.18", d),
            ami("ami-1", "al2023-6.18", d),
        ];
        assert_eq!(pick(found.clone(), true).unwrap().id, "ami-3");
        let mut reversed = found;
        reversed.reverse();
        assert_eq!(pick(reversed, true).unwrap().id, "ami-3");
        let newer = vec![
            ami("ami-1", "zzz", "2025-01-01T00:00:00.000Z"),
            ami("ami-2", "aaa", "2026-01-01T00:00:00.000Z"),
        ];
        assert_eq!(pick(newer, true).unwrap().id, "ami-2");
    }

    #[test]
    fn deprecated_images_are_asked_for_only_when_included() {
        let client = super::super::client::offline("us-east-1");
        let request =
            |include| describe_request(&client, vec!["amazon".into()], Vec::new(), include);
        assert_eq!(
            request(true).as_input().get_include_deprecated(),
            &Some(true)
        );
        assert_eq!(request(false).as_input().get_include_deprecated(), &None);
    }

    #[test]
    fn several_without_most_recent_lists_them() {
        let err = pick(vec![ami("ami-1", "a", "d"), ami("ami-2", "b", "d")], false).unwrap_err();
        assert!(err.contains("2 AMIs match"), "{err}");
        assert!(err.contains("ami-1 a") && err.contains("ami-2 b"), "{err}");
        assert_eq!(
            pick(Vec::new(), true).unwrap_err(),
            "no available AMI matches"
        );
    }
}
