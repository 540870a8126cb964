//! The spot requests of a build's launch: cancelled in its cleanup, found
//! by id or, if RunInstances' answer was lost, by the build-id tag they were
//! created with; `gc` finds those of killed builds the same way.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, SpotInstanceRequest};

use super::client::{Api, ApiError};
use super::{EbsContext, Made, tags};
use crate::events::Leftover;

/// Spot requests a build's launch may have made, for its cleanup.
#[derive(Debug, Default)]
pub struct SpotRequests {
    /// A spot launch was sent; if its answer was lost, cleanup finds the
    /// request by the build-id tag it was created with.
    requested: bool,
    ids: Vec<String>,
}

impl SpotRequests {
    /// A spot launch is about to be sent.
    pub fn sent(&mut self) {
        self.requested = true;
    }

    /// The requests RunInstances named.
    pub fn record<'a>(&mut self, ids: impl Iterator<Item = &'a str>) {
        self.ids.extend(ids.map(str::to_string));
    }

    /// Cancels the build's spot requests: those RunInstances named and any
    /// other still open or active with the build's tag.
    pub async fn cancel(&mut self, ctx: &EbsContext) -> Vec<Leftover> {
        if !self.requested {
            return Vec::new();
        }
        let mut ids = std::mem::take(&mut self.ids);
        match find_by_build(&ctx.client, &ctx.build.build_id).await {
            Ok(found) => ids.extend(found),
            Err(e) => ctx.build.events.warn(format!(
                "looking for the spot requests of build {}: {e}; see aws ec2 describe-spot-instance-requests --filters Name=tag:{},Values={} --region {}",
                ctx.build.build_id,
                tags::BUILD_ID,
                ctx.build.build_id,
                ctx.region
            )),
        }
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Vec::new();
        }
        match cancel(&ctx.client, &ids).await {
            Ok(()) => {
                ctx.build
                    .events
                    .info(format!("cancelled spot request {}", ids.join(", ")));
                Vec::new()
            }
            Err(e) => ids
                .iter()
                .map(|id| Made::SpotRequest.leftover(id, &ctx.region, e.to_string()))
                .collect(),
        }
    }

    pub fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        self.ids
            .iter()
            .map(|id| Made::SpotRequest.leftover(id, &ctx.region, ""))
            .collect()
    }
}

/// Cancels `ids`; one already gone counts as done.
pub async fn cancel(client: &Client, ids: &[String]) -> Result<(), ApiError> {
    match client
        .cancel_spot_instance_requests()
        .set_spot_instance_request_ids(Some(ids.to_vec()))
        .send()
        .await
        .api("CancelSpotInstanceRequests")
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Open or active spot requests with `key` = `value`.
pub async fn find_open(
    client: &Client,
    key: &str,
    value: &str,
) -> Result<Vec<SpotInstanceRequest>, ApiError> {
    let out = client
        .describe_spot_instance_requests()
        .filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("state")
                .values("open")
                .values("active")
                .build(),
        )
        .send()
        .await
        .api("DescribeSpotInstanceRequests")?;
    Ok(out.spot_instance_requests().to_vec())
}

async fn find_by_build(client: &Client, build_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(find_open(client, tags::BUILD_ID, build_id)
        .await?
        .iter()
        .filter_map(|r| r.spot_instance_request_id())
        .map(str::to_string)
        .collect())
}
