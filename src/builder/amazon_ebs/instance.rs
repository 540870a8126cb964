//! The build instance: launch it (one instance per build even if the
//! launch call is retried), wait for it, stop it before imaging, and always
//! terminate it. What the launch asks for is in `launch_request`.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName};

use super::client::{Api, ApiError};
use super::launch_request::launch_request;
use super::{EbsContext, Made, spot, spot_requests, tags};
use crate::builder::ssh_target;
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};
use crate::template::sources::SshInterface;
use crate::wait::{self, Poll, WaitParams};

pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

#[derive(Default)]
pub struct Launch {
    /// RunInstances was sent; if its answer was lost (a cancel), cleanup
    /// finds the instance by the build-id tag it was created with.
    requested: bool,
    spot: spot_requests::SpotRequests,
}

#[async_trait]
impl Step<EbsContext> for Launch {
    fn name(&self) -> &'static str {
        "launch instance"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let source = ctx
            .source_ami
            .clone()
            .ok_or_else(|| StepError::failed("no source AMI was resolved"))?;
        let attempts = spot::planned(ctx).map_err(StepError::failed)?;
        let request = launch_request(ctx, &source)?;
        self.requested = true;
        let (out, launched) = spot::launch(ctx, request, &attempts, &mut self.spot)
            .await
            .map_err(StepError::failed)?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string);
        let id = id.ok_or_else(|| StepError::failed("RunInstances returned no instance"))?;
        ctx.instance_id = Some(id.clone());
        ctx.spot_instance = launched.spot.is_some();
        ctx.build.scope.set("source.instance_id", id.clone());
        ctx.build.scope.set("source.id", id.clone());
        ctx.build.events.info(format!(
            "launched {launched} instance {id} from {}; waiting for it to run",
            source.id
        ));
        ctx.build
            .events
            .waiting(&format!("instance {id} to run"), ctx.waits.running.timeout);

        let instance = wait_running(&ctx.client, &id, ctx.waits.running)
            .await
            .map_err(StepError::failed)?;
        let overridden = ctx
            .ssh_host_override()
            .map_err(StepError::failed)?
            .is_some();
        let address = match address(&instance, ctx.config.ssh_interface) {
            Ok(a) => a,
            // The override decides where to connect; the instance's own address is only informative.
            Err(_) if overridden => String::new(),
            Err(e) => return Err(StepError::failed(format!("instance {id}: {e}"))),
        };
        let credential = ctx
            .credential
            .clone()
            .ok_or_else(|| StepError::failed("no SSH key was prepared"))?;
        let b = &mut ctx.build;
        let target = ssh_target(
            &b.template,
            &b.source,
            &b.scope,
            &address,
            22,
            "ec2-user",
            credential,
        )
        .map_err(StepError::failed)?;
        b.events.info(format!(
            "instance {id} is running{}",
            if address.is_empty() {
                String::new()
            } else {
                format!(" at {address}")
            }
        ));
        b.ssh_target = Some(target);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, _: Ending) -> Vec<Leftover> {
        let ids: Vec<String> = match (&ctx.instance_id, self.requested) {
            (Some(id), _) => vec![id.clone()],
            (None, true) => find_by_build(&ctx.client, &ctx.build.build_id).await,
            (None, false) => Vec::new(),
        };
        // Cancelled first: an open request could still start an instance.
        let mut left = self.spot.cancel(ctx).await;
        for id in ids {
            match terminate(&ctx.client, &id, ctx.waits.terminated).await {
                Ok(()) => ctx.build.events.info(format!("terminated instance {id}")),
                Err(e) => left.push(Made::Instance.leftover(&id, &ctx.region, e)),
            }
        }
        left
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        ctx.instance_id
            .iter()
            .map(|id| Made::Instance.leftover(id, &ctx.region, ""))
            .chain(self.spot.made(ctx))
            .collect()
    }
}

/// Stops the instance so the image is taken from a quiet disk.
pub struct Stop;

#[async_trait]
impl Step<EbsContext> for Stop {
    fn name(&self) -> &'static str {
        "stop instance"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        // The session would only break when the instance goes down.
        ctx.build.comm = None;
        let id = ctx
            .instance_id
            .clone()
            .ok_or_else(|| StepError::failed("no instance to stop"))?;
        if ctx.spot_instance {
            // As Packer does: CreateImage then reboots it for a quiet disk.
            ctx.build.events.info(format!(
                "instance {id} is a one-time spot instance, which EC2 cannot stop; CreateImage reboots it instead"
            ));
            return Ok(());
        }
        ctx.client
            .stop_instances()
            .instance_ids(&id)
            .send()
            .await
            .api("StopInstances")
            .map_err(|e| StepError::failed(format!("instance {id}: {e}")))?;
        ctx.build.events.info(format!("stopping instance {id}"));
        ctx.build
            .events
            .waiting(&format!("instance {id} to stop"), ctx.waits.stopped.timeout);
        let client = ctx.client.clone();
        wait::until(
            ctx.waits.stopped,
            &format!("instance {id}"),
            "stopped",
            || {
                describe_state(&client, &id, |state, instance| match state {
                    InstanceStateName::Stopped => Poll::Ready(()),
                    InstanceStateName::ShuttingDown | InstanceStateName::Terminated => {
                        Poll::Failed(format!("it is {}{}", state.as_str(), reason(instance)))
                    }
                    other => Poll::Pending(other.as_str().to_string()),
                })
            },
        )
        .await
        .map_err(StepError::failed)?;
        ctx.build.events.info(format!("instance {id} is stopped"));
        Ok(())
    }
}

/// The address to connect to: `ssh_interface`, else the public IP if any, else the private IP.
fn address(instance: &Instance, interface: Option<SshInterface>) -> Result<String, String> {
    let pick = |value: Option<&str>, what: &str| {
        value
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("it has no {what} (ssh_interface)"))
    };
    match interface {
        Some(SshInterface::PublicIp) => pick(instance.public_ip_address(), "public IP"),
        Some(SshInterface::PrivateIp) => pick(instance.private_ip_address(), "private IP"),
        Some(SshInterface::PublicDns) => pick(instance.public_dns_name(), "public DNS name"),
        Some(SshInterface::PrivateDns) => pick(instance.private_dns_name(), "private DNS name"),
        None => pick(instance.public_ip_address(), "public IP")
            .or_else(|_| pick(instance.private_ip_address(), "public or private IP")),
    }
}

/// One DescribeInstances, judged by `judge(state, instance)`.
async fn describe_state<T>(
    client: &Client,
    id: &str,
    judge: impl Fn(&InstanceStateName, &Instance) -> Poll<T>,
) -> Result<Poll<T>, ApiError> {
    let out = client
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .api("DescribeInstances")?;
    let Some(instance) = out.reservations().iter().flat_map(|r| r.instances()).next() else {
        return Ok(Poll::Pending("not visible yet".into()));
    };
    let state = instance
        .state()
        .and_then(|s| s.name())
        .cloned()
        .unwrap_or(InstanceStateName::Pending);
    Ok(judge(&state, instance))
}

/// The instance's own account of its state, as " (code: message)".
fn reason(instance: &Instance) -> String {
    match (
        instance.state_reason(),
        instance.state_transition_reason().filter(|r| !r.is_empty()),
    ) {
        (Some(r), _) if r.message().is_some() => format!(
            " ({}: {})",
            r.code().unwrap_or("reason"),
            r.message().unwrap_or_default()
        ),
        (_, Some(t)) => format!(" ({t})"),
        _ => String::new(),
    }
}

async fn wait_running(client: &Client, id: &str, params: WaitParams) -> Result<Instance, String> {
    wait::until(params, &format!("instance {id}"), "running", || {
        describe_state(client, id, |state, instance| match state {
            InstanceStateName::Running => Poll::Ready(instance.clone()),
            InstanceStateName::Pending => Poll::Pending("pending".into()),
            other => Poll::Failed(format!("it is {}{}", other.as_str(), reason(instance))),
        })
    })
    .await
    .map_err(|e| e.to_string())
}

/// Terminates and waits until EC2 says so; an instance already gone counts as done.
async fn terminate(client: &Client, id: &str, params: WaitParams) -> Result<(), String> {
    match client
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .api("TerminateInstances")
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.to_string()),
    }
    let result = wait::until(params, &format!("instance {id}"), "terminated", || {
        describe_state(client, id, |state, _| match state {
            InstanceStateName::Terminated => Poll::Ready(()),
            other => Poll::Pending(other.as_str().to_string()),
        })
    })
    .await;
    match result {
        Err(wait::WaitError::Call { error, .. }) if error.is_not_found() => Ok(()),
        other => other.map_err(|e| e.to_string()),
    }
}

/// Instances this build launched that are not terminated yet.
async fn find_by_build(client: &Client, build_id: &str) -> Vec<String> {
    let out = client
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::BUILD_ID))
                .values(build_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        )
        .send()
        .await;
    match out {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect(),
        Err(e) => {
            tracing::warn!("looking for instances of build {build_id}: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_public_address_first() {
        let both = Instance::builder()
            .public_ip_address("54.1.2.3")
            .private_ip_address("10.0.0.4")
            .build();
        assert_eq!(address(&both, None).unwrap(), "54.1.2.3");
        assert_eq!(
            address(&both, Some(SshInterface::PrivateIp)).unwrap(),
            "10.0.0.4"
        );
        let private = Instance::builder().private_ip_address("10.0.0.4").build();
        assert_eq!(address(&private, None).unwrap(), "10.0.0.4");
        assert!(
            address(&private, Some(SshInterface::PublicIp))
                .unwrap_err()
                .contains("no public IP")
        );
    }
}
