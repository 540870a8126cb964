//! The network the instance goes in: `subnet_id` or a subnet chosen by
//! `subnet_filter`; `vpc_id` or the one VPC `vpc_filter` matches (then its
//! subnet with the most free addresses, unless a subnet is given); else the
//! region's default VPC. Reads only: nothing is made here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

use super::EbsContext;
use super::client::{Api, ApiError};
use crate::pipeline::{Step, StepError};
use crate::template::Scope;
use crate::template::sources::SubnetFilter;

/// Why the network could not be chosen; each names the filters or ids.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{what} in {region}: {source}")]
    Call {
        what: String,
        region: String,
        #[source]
        source: ApiError,
    },
    #[error("{0}")]
    Expand(String),
    #[error("subnet {subnet} does not exist in {region}")]
    NoSuchSubnet { subnet: String, region: String },
    #[error("subnet {subnet} is in {found}, not in {vpc}")]
    OtherVpc {
        subnet: String,
        found: String,
        vpc: String,
    },
    #[error("{setting} ({filters}) in {region}: nothing matches")]
    NoMatch {
        setting: &'static str,
        filters: String,
        region: String,
    },
    #[error(
        "{setting} ({filters}) in {region}: {} match ({}); {hint}",
        ids.len(),
        ids.join(", ")
    )]
    Several {
        setting: &'static str,
        filters: String,
        region: String,
        ids: Vec<String>,
        hint: &'static str,
    },
    #[error("{vpc} in {region} has no subnet; set `subnet_id` or `subnet_filter`")]
    NoSubnet { vpc: String, region: String },
    #[error(
        "{region} has no default VPC; set `subnet_id`, `subnet_filter`, `vpc_id` or `vpc_filter`"
    )]
    NoDefaultVpc { region: String },
}

/// A subnet as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub free: i32,
}

/// Resolves `ctx.vpc_id` and `ctx.subnet_id` before anything is made.
pub struct ResolveNetwork;

#[async_trait]
impl Step<EbsContext> for ResolveNetwork {
    fn name(&self) -> &'static str {
        "choose network"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let (vpc, subnet) = resolve(ctx).await.map_err(StepError::from_error)?;
        match &subnet {
            Some(subnet) => ctx.build.events.info(format!(
                "network: subnet {} in {vpc} ({} free addresses)",
                subnet.id, subnet.free
            )),
            None => ctx.build.events.info(format!("network: {vpc}")),
        }
        ctx.subnet_id = subnet.map(|s| s.id);
        ctx.vpc_id = Some(vpc);
        Ok(())
    }
}

async fn resolve(ctx: &EbsContext) -> Result<(String, Option<Subnet>), NetworkError> {
    let (client, region, scope) = (&ctx.client, ctx.region.as_str(), &ctx.build.scope);
    let config = &ctx.config;
    let vpc = match (&config.vpc_id, &config.vpc_filter) {
        (Some(id), _) => Some(expand(scope, id)?),
        (None, Some(filter)) => Some(vpc_by_filter(client, region, scope, &filter.filters).await?),
        (None, None) => None,
    };
    let subnet = match (&config.subnet_id, &config.subnet_filter, &vpc) {
        (Some(id), _, _) => Some(subnet_by_id(client, region, &expand(scope, id)?).await?),
        (None, Some(filter), _) => {
            Some(subnet_by_filter(client, region, scope, filter, vpc.as_deref()).await?)
        }
        // Without a subnet EC2 would launch into the default VPC, away from
        // the security group made in this one: take its freest subnet.
        (None, None, Some(vpc)) => {
            let freest = SubnetFilter {
                most_free: true,
                ..SubnetFilter::default()
            };
            match subnet_by_filter(client, region, scope, &freest, Some(vpc)).await {
                Err(NetworkError::NoMatch { .. }) => {
                    return Err(NetworkError::NoSubnet {
                        vpc: vpc.clone(),
                        region: region.to_string(),
                    });
                }
                found => Some(found?),
            }
        }
        (None, None, None) => None,
    };
    if let (Some(subnet), Some(vpc)) = (&subnet, &vpc)
        && &subnet.vpc != vpc
    {
        return Err(NetworkError::OtherVpc {
            subnet: subnet.id.clone(),
            found: subnet.vpc.clone(),
            vpc: vpc.clone(),
        });
    }
    let vpc = match (&subnet, vpc) {
        (Some(subnet), _) => subnet.vpc.clone(),
        (None, Some(vpc)) => vpc,
        (None, None) => default_vpc(client, region).await?,
    };
    Ok((vpc, subnet))
}

fn expand(scope: &Scope, value: &str) -> Result<String, NetworkError> {
    scope
        .expand(value)
        .map_err(|e| NetworkError::Expand(e.to_string()))
}

/// The filters as EC2 takes them, and as "k=v k=v" for messages.
fn filters(
    scope: &Scope,
    written: &BTreeMap<String, String>,
) -> Result<(Vec<Filter>, String), NetworkError> {
    let mut out = Vec::new();
    let mut shown = Vec::new();
    for (name, value) in written {
        let value = expand(scope, value)?;
        shown.push(format!("{name}={value}"));
        out.push(Filter::builder().name(name).values(value).build());
    }
    Ok((out, shown.join(" ")))
}

fn subnet_of(s: &aws_sdk_ec2::types::Subnet) -> Subnet {
    Subnet {
        id: s.subnet_id().unwrap_or_default().to_string(),
        vpc: s.vpc_id().unwrap_or_default().to_string(),
        free: s.available_ip_address_count().unwrap_or(0),
    }
}

async fn subnet_by_id(client: &Client, region: &str, id: &str) -> Result<Subnet, NetworkError> {
    let out = client
        .describe_subnets()
        .subnet_ids(id)
        .send()
        .await
        .api("DescribeSubnets");
    let not_found = || NetworkError::NoSuchSubnet {
        subnet: id.to_string(),
        region: region.to_string(),
    };
    match out {
        Ok(out) => out.subnets().first().map(subnet_of).ok_or_else(not_found),
        Err(e) if e.is_not_found() => Err(not_found()),
        Err(source) => Err(NetworkError::Call {
            what: format!("subnet {id}"),
            region: region.to_string(),
            source,
        }),
    }
}

/// The DescribeSubnets request for `subnet_filter`, kept to `vpc` when one is given.
fn subnets_request(
    client: &Client,
    filters: Vec<Filter>,
    vpc: Option<&str>,
) -> aws_sdk_ec2::operation::describe_subnets::builders::DescribeSubnetsFluentBuilder {
    let vpc = vpc.map(|v| Filter::builder().name("vpc-id").values(v).build());
    client
        .describe_subnets()
        .set_filters(Some(filters.into_iter().chain(vpc).collect()))
}

async fn subnet_by_filter(
    client: &Client,
    region: &str,
    scope: &Scope,
    filter: &SubnetFilter,
    vpc: Option<&str>,
) -> Result<Subnet, NetworkError> {
    let (built, mut shown) = filters(scope, &filter.filters)?;
    if let Some(vpc) = vpc {
        shown.push_str(&format!(" vpc-id={vpc}"));
    }
    let mut found = Vec::new();
    let mut pages = subnets_request(client, built, vpc).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page
            .api("DescribeSubnets")
            .map_err(|source| NetworkError::Call {
                what: format!("subnet_filter ({shown})"),
                region: region.to_string(),
                source,
            })?;
        found.extend(page.subnets().iter().map(subnet_of));
    }
    let choice = if filter.random {
        Choice::Random
    } else if filter.most_free {
        Choice::MostFree
    } else {
        Choice::One
    };
    choose(found, choice).map_err(|ids| {
        if ids.is_empty() {
            NetworkError::NoMatch {
                setting: "subnet_filter",
                filters: shown.clone(),
                region: region.to_string(),
            }
        } else {
            NetworkError::Several {
                setting: "subnet_filter",
                filters: shown.clone(),
                region: region.to_string(),
                ids,
                hint: "narrow the filters, or set `most_free = true` or `random = true`",
            }
        }
    })
}

/// How to choose among the subnets a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Exactly one must match.
    One,
    /// The most free addresses; equal counts go to the smallest id, so the
    /// choice never depends on the order EC2 lists them in.
    MostFree,
    Random,
}

/// The chosen subnet, or the ids that matched when not exactly one could be chosen.
pub fn choose(mut found: Vec<Subnet>, how: Choice) -> Result<Subnet, Vec<String>> {
    found.sort_by(|a, b| a.id.cmp(&b.id));
    match (found.len(), how) {
        (0, _) => Err(Vec::new()),
        (1, _) => Ok(found.remove(0)),
        (_, Choice::One) => Err(found.into_iter().map(|s| s.id).collect()),
        (_, Choice::MostFree) => Ok(found
            .into_iter()
            .rev()
            .max_by_key(|s| s.free)
            .expect("not empty")),
        (n, Choice::Random) => {
            use rand_core::RngCore;
            let index = rand_core::OsRng.next_u32() as usize % n;
            Ok(found.swap_remove(index))
        }
    }
}

async fn vpc_by_filter(
    client: &Client,
    region: &str,
    scope: &Scope,
    written: &BTreeMap<String, String>,
) -> Result<String, NetworkError> {
    let (built, shown) = filters(scope, written)?;
    let out = client
        .describe_vpcs()
        .set_filters(Some(built))
        .send()
        .await
        .api("DescribeVpcs")
        .map_err(|source| NetworkError::Call {
            what: format!("vpc_filter ({shown})"),
            region: region.to_string(),
            source,
        })?;
    let mut ids: Vec<String> = out
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id())
        .map(str::to_string)
        .collect();
    ids.sort();
    match ids.len() {
        1 => Ok(ids.remove(0)),
        0 => Err(NetworkError::NoMatch {
            setting: "vpc_filter",
            filters: shown,
            region: region.to_string(),
        }),
        _ => Err(NetworkError::Several {
            setting: "vpc_filter",
            filters: shown,
            region: region.to_string(),
            ids,
            hint: "`vpc_filter` must match exactly one VPC; narrow the filters",
        }),
    }
}

async fn default_vpc(client: &Client, region: &str) -> Result<String, NetworkError> {
    let out = client
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .api("DescribeVpcs")
        .map_err(|source| NetworkError::Call {
            what: "the default VPC".into(),
            region: region.to_string(),
            source,
        })?;
    out.vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| NetworkError::NoDefaultVpc {
            region: region.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, free: i32) -> Subnet {
        Subnet {
            id: id.into(),
            vpc: "vpc-1".into(),
            free,
        }
    }

    #[test]
    fn most_free_takes_the_most_addresses_and_the_smallest_id_on_a_tie() {
        let found = vec![
            subnet("subnet-b", 10),
            subnet("subnet-c", 250),
            subnet("subnet-a", 250),
        ];
        assert_eq!(
            choose(found.clone(), Choice::MostFree).unwrap().id,
            "subnet-a"
        );
        let mut reversed = found;
        reversed.reverse();
        assert_eq!(choose(reversed, Choice::MostFree).unwrap().id, "subnet-a");
    }

    #[test]
    fn one_must_match_unless_told_how_to_choose() {
        let found = vec![subnet("subnet-b", 1), subnet("subnet-a", 2)];
        assert_eq!(
            choose(found.clone(), Choice::One).unwrap_err(),
            ["subnet-a", "subnet-b"]
        );
        assert_eq!(
            choose(Vec::new(), Choice::MostFree).unwrap_err(),
            Vec::<String>::new()
        );
        let picked = choose(found, Choice::Random).unwrap();
        assert!(["subnet-a", "subnet-b"].contains(&picked.id.as_str()));
        assert_eq!(
            choose(vec![subnet("subnet-z", 0)], Choice::One).unwrap().id,
            "subnet-z"
        );
    }

    #[test]
    fn a_subnet_filter_is_kept_to_the_chosen_vpc() {
        let client = super::super::client::offline("us-east-1");
        let written = Filter::builder()
            .name("tag:Purpose")
            .values("builds")
            .build();
        let request = subnets_request(&client, vec![written.clone()], Some("vpc-0a1"));
        let sent = request.as_input().get_filters().clone().unwrap_or_default();
        assert_eq!(
            sent,
            [
                written,
                Filter::builder().name("vpc-id").values("vpc-0a1").build()
            ]
        );
    }

    #[test]
    fn errors_name_the_filters_and_the_matches() {
        let several = NetworkError::Several {
            setting: "vpc_filter",
            filters: "tag:Name=builds".into(),
            region: "us-east-1".into(),
            ids: vec!["vpc-1".into(), "vpc-2".into()],
            hint: "`vpc_filter` must match exactly one VPC; narrow the filters",
        };
        assert_eq!(
            several.to_string(),
            "vpc_filter (tag:Name=builds) in us-east-1: 2 match (vpc-1, vpc-2); `vpc_filter` must match exactly one VPC; narrow the filters"
        );
    }
}
