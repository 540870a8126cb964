//! `subnet_filter` and `vpc_filter`: the network chosen by DescribeSubnets /
//! DescribeVpcs filters instead of by id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AmazonEbsConfig;
use crate::template::check::Checker;

/// `[source.NAME.subnet_filter]`: the subnet with these tags or attributes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetFilter {
    /// DescribeSubnets filters: `"tag:Purpose" = "builds"`, `availability-zone = "…"`.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    /// Among several matches, the one with the most free addresses.
    #[serde(default)]
    pub most_free: bool,
    /// Among several matches, any one.
    #[serde(default)]
    pub random: bool,
}

/// `[source.NAME.vpc_filter]`: the one VPC with these tags or attributes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VpcFilter {
    /// DescribeVpcs filters: `"tag:Name" = "builds"`, `cidr = "10.0.0.0/16"`.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
}

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    if let Some(filter) = &config.subnet_filter {
        if config.subnet_id.is_some() {
            checker.error(
                "subnet_filter",
                "set either `subnet_id` or `subnet_filter`, not both",
            );
        }
        check_filters(
            "subnet_filter",
            &filter.filters,
            "\"tag:Purpose\" = \"builds\"",
            checker,
        );
        if filter.most_free && filter.random {
            checker.error(
                "subnet_filter",
                "`most_free` and `random` each choose among several subnets; set one",
            );
        }
    }
    if let Some(filter) = &config.vpc_filter {
        if config.vpc_id.is_some() {
            checker.error(
                "vpc_filter",
                "set either `vpc_id` or `vpc_filter`, not both",
            );
        }
        check_filters(
            "vpc_filter",
            &filter.filters,
            "\"tag:Name\" = \"builds\"",
            checker,
        );
    }
}

fn check_filters(
    key: &str,
    filters: &BTreeMap<String, String>,
    example: &str,
    checker: &mut Checker<'_>,
) {
    if filters.is_empty() {
        checker.error(key, format!("`{key}` needs `filters`")).help = Some(format!(
            "e.g. `filters = {{ {example} }}`; without filters every one in the region matches"
        ));
    }
    for (name, value) in filters {
        if value.is_empty() {
            checker.error_at(
                &checker.base.key(key).key("filters").key(name),
                format!("filter `{name}` has no value"),
            );
        }
    }
}
