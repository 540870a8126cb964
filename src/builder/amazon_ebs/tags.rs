//! The tags a build puts on what it makes: temporary resources carry the
//! build id (so they can be found and removed), images carry their origin.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use crate::builder::BuildContext;
use crate::template::Scope;

pub type Tags = BTreeMap<String, String>;

pub const BUILD_ID: &str = "imgbuild:build-id";
/// On every temporary resource: `true`.
pub const TEMPORARY: &str = "imgbuild:temporary";
/// When the build began (RFC 3339), on temporary resources.
pub const STARTED_AT: &str = "imgbuild:started-at";
/// Until when the build may still be running (RFC 3339): its start plus
/// every timeout of the source. `gc` never sweeps before.
pub const EXPIRES_AT: &str = "imgbuild:expires-at";
/// On images and snapshots until the build that makes them succeeds.
pub const UNFINISHED: &str = "imgbuild:unfinished";

/// When a build that began at `started` and takes every timeout it has
/// in full is over.
#[derive(Debug, Clone)]
pub struct Lifetime {
    pub started_at: String,
    pub expires_at: String,
}

/// Expands `${...}` in the values of user-written tags.
pub fn expand(scope: &Scope, tags: &Tags, key: &str) -> Result<Tags, String> {
    tags.iter()
        .map(|(k, v)| {
            scope
                .expand(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("`{key}.{k}`: {e}"))
        })
        .collect()
}

/// Tags on the instance, its volumes, the key pair and the security group.
pub fn temporary(b: &BuildContext, run_tags: &Tags, life: &Lifetime) -> Result<Tags, String> {
    let mut tags = expand(&b.scope, run_tags, "run_tags")?;
    tags.entry("Name".into()).or_insert_with(|| {
        format!(
            "imgbuild {} {} ({})",
            b.template.name, b.template.version, b.source.name
        )
    });
    tags.insert(BUILD_ID.into(), b.build_id.clone());
    tags.insert(
        "imgbuild:template".into(),
        b.template.path.display().to_string(),
    );
    tags.insert(TEMPORARY.into(), "true".into());
    tags.insert(STARTED_AT.into(), life.started_at.clone());
    tags.insert(EXPIRES_AT.into(), life.expires_at.clone());
    Ok(tags)
}

/// An image's (or its snapshots') tags while the build is not done yet.
pub fn unfinished(tags: &Tags, life: &Lifetime) -> Tags {
    let mut tags = tags.clone();
    tags.insert(UNFINISHED.into(), "true".into());
    tags.insert(EXPIRES_AT.into(), life.expires_at.clone());
    tags
}

/// Tags on the AMI (and, with `snapshot_tags`, on its snapshots).
pub fn image(
    b: &BuildContext,
    ami_name: &str,
    source_ami: &str,
    built_at: &str,
    user: &Tags,
) -> Result<Tags, String> {
    let mut tags = Tags::new();
    tags.insert("Name".into(), ami_name.into());
    tags.extend(expand(&b.scope, user, "tags")?);
    tags.insert("imgbuild:name".into(), b.template.name.clone());
    tags.insert("imgbuild:version".into(), b.template.version.clone());
    tags.insert(BUILD_ID.into(), b.build_id.clone());
    tags.insert("imgbuild:source-ami".into(), source_ami.into());
    tags.insert("imgbuild:built-at".into(), built_at.into());
    for (key, var) in [
        ("imgbuild:git-commit", "CI_COMMIT_SHA"),
        ("imgbuild:pipeline-url", "CI_PIPELINE_URL"),
    ] {
        if let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            tags.insert(key.into(), value);
        }
    }
    Ok(tags)
}

/// Snapshot tags: the image's, with `snapshot_tags` added on top.
pub fn snapshot(b: &BuildContext, image_tags: &Tags, snapshot_tags: &Tags) -> Result<Tags, String> {
    let mut tags = image_tags.clone();
    tags.extend(expand(&b.scope, snapshot_tags, "snapshot_tags")?);
    Ok(tags)
}

/// Whether EC2's `tags` set `key` to `true`.
pub fn marked(tags: &[Tag], key: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(key) && t.value() == Some("true"))
}

pub fn sdk(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags applied atomically at creation.
pub fn at_creation(resource: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(sdk(tags)))
        .build()
}
