//! A temporary security group that admits SSH only from where this build
//! connects, in the network `network::ResolveNetwork` chose.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::operation::create_security_group::builders::CreateSecurityGroupFluentBuilder;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, ResourceType};

use super::client::Api;
use super::{EbsContext, Made, tags};
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};
use crate::wait::{self, WaitParams};

/// Answers with the caller's public IPv4 address, as AWS sees it.
const CHECKIP_URL: &str = "https://checkip.amazonaws.com";

#[derive(Default)]
pub struct SecurityGroup {
    /// The group this step made (deleted on cleanup).
    created: Option<String>,
    /// Set once CreateSecurityGroup was sent: if its answer was lost (a
    /// cancel), cleanup looks the group up by its name.
    requested: Option<(String, String)>,
}

#[async_trait]
impl Step<EbsContext> for SecurityGroup {
    fn name(&self) -> &'static str {
        "create security group"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let vpc = ctx
            .vpc_id
            .clone()
            .ok_or_else(|| StepError::failed("no network was chosen"))?;
        if let Some(ids) = ctx.config.security_group_ids.clone() {
            ctx.security_group_ids = ctx
                .build
                .scope
                .expand_all(&ids)
                .map_err(StepError::failed)?;
            ctx.build.events.info(format!(
                "using security groups {}",
                ctx.security_group_ids.join(", ")
            ));
            return Ok(());
        }
        let (cidrs, why) = allowed_cidrs(ctx, &vpc).await.map_err(StepError::failed)?;
        let port = sg_port(ctx).map_err(StepError::failed)?;
        let name = format!("imgbuild-{}", ctx.build.build_id);
        self.requested = Some((name.clone(), vpc.clone()));
        let out = create_request(ctx, &name, &vpc)
            .send()
            .await
            .api("CreateSecurityGroup")
            .map_err(|e| {
                StepError::failed(format!(
                    "security group {name} in {vpc} ({}): {e}",
                    ctx.region
                ))
            })?;
        let id = out.group_id().unwrap_or_default().to_string();
        self.created = Some(id.clone());
        ctx.security_group_ids = vec![id.clone()];

        let mut permission = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port);
        for cidr in &cidrs {
            if cidr.contains(':') {
                permission = permission.ipv6_ranges(
                    Ipv6Range::builder()
                        .cidr_ipv6(cidr)
                        .description("imgbuild SSH")
                        .build(),
                );
            } else {
                permission = permission.ip_ranges(
                    IpRange::builder()
                        .cidr_ip(cidr)
                        .description("imgbuild SSH")
                        .build(),
                );
            }
        }
        let api_waits = ctx.waits.api;
        let client = ctx.client.clone();
        wait::retrying(api_waits, "authorize ingress", || {
            let request = client
                .authorize_security_group_ingress()
                .group_id(&id)
                .ip_permissions(permission.clone().build());
            async move { request.send().await.api("AuthorizeSecurityGroupIngress") }
        })
        .await
        .map_err(|e| StepError::failed(format!("security group {id}: {e}")))?;
        ctx.build.events.info(format!(
            "created security group {id} in {vpc}: SSH port {port} from {} ({why})",
            cidrs.join(", ")
        ));
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, _: Ending) -> Vec<Leftover> {
        let id = match (self.created.take(), self.requested.take()) {
            (Some(id), _) => id,
            (None, Some((name, vpc))) => match find_by_name(ctx, &name, &vpc).await {
                Some(id) => id,
                None => return Vec::new(),
            },
            (None, None) => return Vec::new(),
        };
        // The group stays in use until the instance's network interface is
        // gone, which lags behind termination: retry, within a bound.
        let params = WaitParams {
            initial: Duration::from_secs(2),
            factor: 1.5,
            cap: Duration::from_secs(10),
            timeout: Duration::from_secs(180),
            attempts: None,
        };
        let result = super::removal::delete_security_group(&ctx.client, &id, params).await;
        match result {
            Ok(_) => {
                ctx.build
                    .events
                    .info(format!("deleted security group {id}"));
                Vec::new()
            }
            Err(e) => vec![Made::SecurityGroup.leftover(&id, &ctx.region, e.to_string())],
        }
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        self.created
            .iter()
            .map(|id| Made::SecurityGroup.leftover(id, &ctx.region, ""))
            .collect()
    }
}

async fn find_by_name(ctx: &EbsContext, name: &str, vpc: &str) -> Option<String> {
    let out = ctx
        .client
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .ok()?;
    out.security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string)
}

/// The port the instance's sshd listens on. With an `ssh_host` override,
/// `ssh_port` is the override's port (a tunnel), so the instance's is 22.
fn sg_port(ctx: &EbsContext) -> Result<i32, String> {
    if ctx.ssh_host_override()?.is_some() {
        return Ok(22);
    }
    let port = ctx.setting(ctx.build.source.ssh.ssh_port.as_ref().map(|p| p.0.as_str()))?;
    match port {
        Some(p) => p
            .parse::<u16>()
            .map(i32::from)
            .map_err(|_| format!("ssh_port expands to `{p}`, which is not a port")),
        None => Ok(22),
    }
}

/// Where SSH may come from, and why (for the log):
/// - `temporary_sg_cidrs`, when written;
/// - with an `ssh_host` override or a bastion: the override's address /32 if
///   it is a public IP; otherwise the connection comes from inside the
///   network (tunnel, VPN, bastion), so the VPC's own CIDR blocks;
/// - else this machine's public address /32, asked of AWS's checkip service.
///
/// Never 0.0.0.0/0 unless the user writes it.
async fn allowed_cidrs(ctx: &EbsContext, vpc: &str) -> Result<(Vec<String>, String), String> {
    let scope = &ctx.build.scope;
    if let Some(cidrs) = &ctx.config.temporary_sg_cidrs {
        return Ok((
            scope.expand_all(cidrs).map_err(|e| e.to_string())?,
            "temporary_sg_cidrs".into(),
        ));
    }
    let bastion = ctx.setting(ctx.build.source.ssh.ssh_bastion_host.as_deref())?;
    if let Some(host) = ctx.ssh_host_override()?.or(bastion) {
        if let Ok(ip) = host.parse::<IpAddr>()
            && is_public(ip)
        {
            return Ok((vec![host_cidr(ip)], "the ssh_host override".into()));
        }
        let out = ctx
            .client
            .describe_vpcs()
            .vpc_ids(vpc)
            .send()
            .await
            .api("DescribeVpcs")
            .map_err(|e| e.to_string())?;
        let cidrs: Vec<String> = out
            .vpcs()
            .iter()
            .flat_map(|v| {
                v.cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.cidr_block())
                    .chain(v.cidr_block())
            })
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if cidrs.is_empty() {
            return Err(format!(
                "cannot read the CIDR block of {vpc}; set `temporary_sg_cidrs`"
            ));
        }
        return Ok((
            cidrs,
            format!("{vpc}'s own range, since SSH goes through `{host}`"),
        ));
    }
    let ip = public_address().await.map_err(|e| {
        format!("cannot find this machine's public address to allow SSH from ({e}); set `temporary_sg_cidrs`, e.g. [\"203.0.113.7/32\"]")
    })?;
    Ok((vec![host_cidr(ip)], "this machine's public address".into()))
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// Whether `ip` is reachable from the internet (not private, loopback, shared or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

async fn public_address() -> Result<IpAddr, String> {
    tokio::task::spawn_blocking(|| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let text = agent
            .get(CHECKIP_URL)
            .call()
            .map_err(|e| format!("{CHECKIP_URL}: {e}"))?
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{CHECKIP_URL}: {e}"))?;
        text.trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("{CHECKIP_URL} answered `{}`", text.trim()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The CreateSecurityGroup request for this build's group (sent as is, or
/// with `DryRun` by `build --dry-run`).
pub(super) fn create_request(
    ctx: &EbsContext,
    name: &str,
    vpc: &str,
) -> CreateSecurityGroupFluentBuilder {
    ctx.client
        .create_security_group()
        .group_name(name)
        .description(format!(
            "Temporary SSH access for imgbuild build {}",
            ctx.build.build_id
        ))
        .vpc_id(vpc)
        .tag_specifications(tags::at_creation(
            ResourceType::SecurityGroup,
            &ctx.temp_tags,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_internet_addresses_are_public() {
        for ip in ["54.214.31.156", "2a05:d012::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.5",
            "172.16.1.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
