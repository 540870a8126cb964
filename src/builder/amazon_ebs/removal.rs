//! Deregistering an image, and deleting a snapshot or a security group,
//! which EC2 refuses for a while after what held it is gone (a
//! just-deregistered image, the network interface of a just-terminated
//! instance). A build's cleanup, `prune` and `gc` all wait for that the same
//! way, each within its own `params`.

use aws_sdk_ec2::Client;

use super::client::{Api, ApiError};
use crate::wait::{self, Poll, WaitError, WaitParams};

/// Deregisters image `id`: `true` when deregistered, `false` when already
/// gone (another prune, or by hand: its snapshots may not be).
pub async fn deregister_image(client: &Client, id: &str) -> Result<bool, ApiError> {
    match client
        .deregister_image()
        .image_id(id)
        .send()
        .await
        .api("DeregisterImage")
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.code_is("InvalidAMIID.Unavailable") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes snapshot `id`: `true` when deleted, `false` when already gone.
pub async fn delete_snapshot(
    client: &Client,
    id: &str,
    params: WaitParams,
) -> Result<bool, WaitError<ApiError>> {
    wait::until(params, &format!("snapshot {id}"), "deleted", || async {
        match client
            .delete_snapshot()
            .snapshot_id(id)
            .send()
            .await
            .api("DeleteSnapshot")
        {
            Ok(_) => Ok(Poll::Ready(true)),
            Err(e) if e.code_is("InvalidSnapshot.NotFound") => Ok(Poll::Ready(false)),
            Err(e) if e.code_is("InvalidSnapshot.InUse") => Ok(Poll::Pending(e.to_string())),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Deletes security group `id`: `true` when deleted, `false` when already gone.
pub async fn delete_security_group(
    client: &Client,
    id: &str,
    params: WaitParams,
) -> Result<bool, WaitError<ApiError>> {
    wait::until(
        params,
        &format!("security group {id}"),
        "deleted",
        || async {
            match client
                .delete_security_group()
                .group_id(id)
                .send()
                .await
                .api("DeleteSecurityGroup")
            {
                Ok(_) => Ok(Poll::Ready(true)),
                Err(e) if e.code_is("InvalidGroup.NotFound") => Ok(Poll::Ready(false)),
                Err(e) if e.code_is("DependencyViolation") => Ok(Poll::Pending(e.to_string())),
                Err(e) => Err(e),
            }
        },
    )
    .await
}
