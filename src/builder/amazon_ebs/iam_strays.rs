//! What builds left in IAM: temporary roles under the path `/imgbuild/`,
//! each with the instance profile of its name. The role is made first and
//! deleted last, so it stands for both; IAM is global, so it is looked at
//! once, whatever the regions.

use aws_sdk_iam::types::Tag;

use super::Made;
use super::client::{Api, ApiError};
use super::instance_profile::{self, PATH};
use super::strays::{self, Stray};
use super::tags::{BUILD_ID, EXPIRES_AT, STARTED_AT, TEMPORARY};

/// Every temporary role under `/imgbuild/`, with the times its tags give.
pub async fn find(iam: &aws_sdk_iam::Client) -> Result<Vec<Stray>, ApiError> {
    let roles = iam
        .list_roles()
        .path_prefix(PATH)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .api("ListRoles")?;
    let mut found = Vec::new();
    for role in roles {
        let name = role.role_name();
        // ListRoles leaves tags out.
        let tags = iam
            .list_role_tags()
            .role_name(name)
            .send()
            .await
            .api("ListRoleTags")?;
        let tag = |key: &str| {
            tags.tags()
                .iter()
                .find(|t: &&Tag| t.key() == key)
                .map(|t| t.value())
        };
        if tag(TEMPORARY) != Some("true") {
            continue;
        }
        let created = time::OffsetDateTime::from_unix_timestamp(role.create_date().secs()).ok();
        found.push(Stray {
            kind: Made::Role,
            id: name.to_string(),
            build_id: tag(BUILD_ID).unwrap_or("?").to_string(),
            made: strays::time(tag(STARTED_AT)).or(created),
            expires: strays::time(tag(EXPIRES_AT)),
            snapshots: Vec::new(),
        });
    }
    Ok(found)
}

/// Removes a temporary role and the instance profile of its name.
pub async fn remove(iam: &aws_sdk_iam::Client, name: &str) -> Result<(), String> {
    instance_profile::remove_profile(iam, name)
        .await
        .map_err(|e| format!("instance profile {name}: {e}"))?;
    instance_profile::remove_role(iam, name)
        .await
        .map_err(|e| e.to_string())
}
