//! `imgbuild gc`: removes what killed builds left, in every region at once,
//! in the order EC2 needs: spot requests cancelled, instances terminated and
//! waited for, then their security groups and key pairs, then unfinished images
//! with their snapshots, then snapshots of images never registered; then,
//! once for all regions, temporary IAM roles with their instance profiles.

use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::InstanceStateName;
use time::OffsetDateTime;

use super::Made;
use super::client::{self, Api, ApiError};
use super::iam_strays;
use super::removal;
use super::spot_requests;
use super::strays::{self, Stray, Verdict};
use crate::swept::{Swept, SweptAction};
use crate::wait::{self, Poll, WaitParams};

/// Sweeps `regions` (the standard chain's region when empty). Returns what
/// became of each stray, region by region, and why a region could not be
/// looked at, if any could not.
pub async fn sweep(
    regions: &[String],
    older_than: Duration,
    dry_run: bool,
) -> Result<(Vec<Swept>, Vec<String>), String> {
    let shared = client::load(None).await;
    let mut regions = regions.to_vec();
    if regions.is_empty() {
        match shared.region() {
            Some(r) => regions.push(r.to_string()),
            None => return Err(
                "no AWS region: pass --region, or set AWS_REGION (or --local to sweep only this machine)"
                    .into(),
            ),
        }
    }
    regions.sort();
    regions.dedup();
    let now = OffsetDateTime::now_utc();
    let mut work = tokio::task::JoinSet::new();
    for region in regions.clone() {
        let client = client::ec2(&shared, &region);
        work.spawn(async move {
            let found = strays::find(&client).await;
            let done = match found {
                Ok(found) => {
                    Ok(sweep_region(&client, &region, found, now, older_than, dry_run).await)
                }
                Err(e) => Err(format!("finding what builds left in {region}: {e}")),
            };
            (region, done)
        });
    }
    let mut swept = Vec::new();
    let mut failures = Vec::new();
    let mut joined = work.join_all().await;
    joined.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, done) in joined {
        match done {
            Ok(s) => swept.extend(s),
            Err(e) => failures.push(e),
        }
    }
    // After the instances, and never for a build with an instance left: IAM
    // would delete a profile in use, and the instance lose its credentials.
    let alive: Vec<(String, String)> = swept
        .iter()
        .filter(|s| s.resource == Made::Instance.noun())
        .filter(|s| !matches!(s.action, SweptAction::Removed | SweptAction::WouldRemove))
        .map(|s| (s.build_id.clone(), s.id.clone()))
        .collect();
    let iam = client::iam(&shared, &regions[0]);
    match iam_strays::find(&iam).await {
        Ok(found) => swept.extend(sweep_iam(&iam, found, &alive, now, older_than, dry_run).await),
        Err(e) => failures.push(format!("finding what builds left in IAM: {e}")),
    }
    Ok((swept, failures))
}

/// Where IAM's strays are said to be: IAM has no regions.
const IAM: &str = "global";

fn commands(stray: &Stray, region: &str) -> Vec<String> {
    // A role goes with the instance profile of its name.
    let profile =
        matches!(stray.kind, Made::Role).then(|| Made::InstanceProfile.command(&stray.id, region));
    profile
        .into_iter()
        .chain(std::iter::once(stray.kind.command(&stray.id, region)))
        .chain(
            stray
                .snapshots
                .iter()
                .map(|s| Made::Snapshot.command(s, region)),
        )
        .collect()
}

/// What becomes of each stray, and the index and kind of each to remove.
fn judged(
    region: &str,
    found: Vec<Stray>,
    now: OffsetDateTime,
    older_than: Duration,
    dry_run: bool,
) -> (Vec<Swept>, Vec<(usize, Made)>) {
    let mut out = Vec::new();
    let mut going = Vec::new();
    for stray in found {
        let verdict = strays::judge(&stray, now, older_than);
        let action = match verdict {
            Verdict::Sweep if dry_run => SweptAction::WouldRemove,
            Verdict::Sweep => {
                going.push((out.len(), stray.kind));
                SweptAction::Removed
            }
            kept => SweptAction::Kept(kept.to_string()),
        };
        out.push(Swept {
            place: region.into(),
            resource: stray.resource(),
            commands: commands(&stray, region),
            id: stray.id,
            build_id: stray.build_id,
            snapshots: stray.snapshots,
            action,
        });
    }
    (out, going)
}

/// `alive`: (build id, instance id) of instances that stay.
async fn sweep_iam(
    iam: &aws_sdk_iam::Client,
    found: Vec<Stray>,
    alive: &[(String, String)],
    now: OffsetDateTime,
    older_than: Duration,
    dry_run: bool,
) -> Vec<Swept> {
    let (mut out, going) = judged(IAM, found, now, older_than, dry_run);
    for s in out.iter_mut() {
        let going = matches!(s.action, SweptAction::Removed | SweptAction::WouldRemove);
        if let Some((_, instance)) = alive.iter().find(|(b, _)| *b == s.build_id)
            && going
        {
            s.action = SweptAction::Kept(format!("its build's instance {instance} is still there"));
        }
    }
    for (i, _) in going {
        if !matches!(out[i].action, SweptAction::Removed) {
            continue;
        }
        if let Err(e) = iam_strays::remove(iam, &out[i].id).await {
            out[i].action = SweptAction::Failed(format!("removing IAM role {}: {e}", out[i].id));
        }
    }
    out
}

async fn sweep_region(
    client: &Client,
    region: &str,
    found: Vec<Stray>,
    now: OffsetDateTime,
    older_than: Duration,
    dry_run: bool,
) -> Vec<Swept> {
    let (mut out, going) = judged(region, found, now, older_than, dry_run);
    // Spot requests first, as a build's own cleanup does: an open request
    // could start another instance.
    for &(i, kind) in &going {
        if matches!(kind, Made::SpotRequest)
            && let Err(e) = spot_requests::cancel(client, std::slice::from_ref(&out[i].id)).await
        {
            out[i].action = SweptAction::Failed(format!(
                "removing {} {} in {region}: {e}",
                out[i].resource, out[i].id
            ));
        }
    }
    // Then instances, all at once, and waited for: their network
    // interfaces hold the security groups.
    let instances: Vec<usize> = going
        .iter()
        .filter(|(_, kind)| matches!(kind, Made::Instance))
        .map(|&(i, _)| i)
        .collect();
    if !instances.is_empty() {
        let ids: Vec<String> = instances.iter().map(|&i| out[i].id.clone()).collect();
        if let Err(e) = terminate(client, region, &ids).await {
            for &i in &instances {
                out[i].action = SweptAction::Failed(e.clone());
            }
        }
    }
    for (i, kind) in going {
        let s = &out[i];
        let done = match kind {
            // Terminated above.
            Made::Instance => Ok(()),
            Made::SecurityGroup => delete_group(client, &s.id).await,
            Made::KeyPair => client
                .delete_key_pair()
                .key_name(&s.id)
                .send()
                .await
                .api("DeleteKeyPair")
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Made::Image => remove_image(client, &s.id, &s.snapshots).await,
            Made::Snapshot => delete_snapshot(client, &s.id).await,
            // Cancelled above.
            Made::SpotRequest => Ok(()),
            // In IAM, not in a region: sweep_iam's.
            Made::Role | Made::InstanceProfile => Ok(()),
        };
        if let Err(e) = done {
            out[i].action =
                SweptAction::Failed(format!("removing {} {} in {region}: {e}", s.resource, s.id));
        }
    }
    out
}

async fn terminate(client: &Client, region: &str, ids: &[String]) -> Result<(), String> {
    client
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .api("TerminateInstances")
        .map_err(|e| format!("terminating {} in {region}: {e}", ids.join(", ")))?;
    let what = format!("instances {} in {region}", ids.join(", "));
    wait::until(
        WaitParams::state_change(Duration::from_secs(600)),
        &what,
        "terminated",
        || async {
            let out = client
                .describe_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await
                .api("DescribeInstances")?;
            let left: Vec<String> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| {
                    i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated)
                })
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            Ok::<_, ApiError>(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{} not terminated yet", left.join(", ")))
            })
        },
    )
    .await
    .map_err(|e| e.to_string())
}

async fn delete_group(client: &Client, id: &str) -> Result<(), String> {
    // A network interface of a just-terminated instance may hold it a while.
    removal::delete_security_group(
        client,
        id,
        WaitParams::with_timeout(Duration::from_secs(300)),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn remove_image(client: &Client, id: &str, snapshots: &[String]) -> Result<(), String> {
    removal::deregister_image(client, id)
        .await
        .map_err(|e| e.to_string())?;
    for snapshot in snapshots {
        delete_snapshot(client, snapshot).await?;
    }
    Ok(())
}

async fn delete_snapshot(client: &Client, id: &str) -> Result<(), String> {
    removal::delete_snapshot(
        client,
        id,
        WaitParams::with_timeout(Duration::from_secs(120)),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}
