//! Spot settings: `spot_price`, `spot_instance_types` and
//! `fallback_to_on_demand`, checked at validate time without calling EC2.

use super::AmazonEbsConfig;
use crate::template::check::Checker;

/// `spot_price` asking for EC2's own cap, the on-demand price.
pub const AUTO_PRICE: &str = "auto";

/// Whether `price` is "auto" or a positive decimal (US dollars per hour).
pub fn is_spot_price(price: &str) -> bool {
    if price == AUTO_PRICE {
        return true;
    }
    let (whole, fraction) = price.split_once('.').unwrap_or((price, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && price.chars().any(|c| ('1'..='9').contains(&c))
}

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    if let Some(price) = &config.spot_price
        && !price.contains("${")
        && !is_spot_price(price)
    {
        checker
            .error(
                "spot_price",
                format!("`{price}` is not a spot price: write \"auto\" or a positive decimal"),
            )
            .help = Some(
            "\"auto\" pays at most the on-demand price; \"0.05\" at most 0.05 USD an hour".into(),
        );
    }
    let spot = config.spot_price.is_some();
    // Both are set on the stopped instance, and a one-time spot instance cannot stop.
    for (key, set) in [
        ("ena_support", config.ena_support.is_some()),
        ("sriov_support", config.sriov_support.is_some()),
    ] {
        if spot && set {
            checker.error(
                key,
                format!("`{key}` is set on the stopped instance, and a spot instance cannot be stopped; leave out `{key}` or `spot_price`"),
            );
        }
    }
    if let Some(types) = &config.spot_instance_types {
        if !spot {
            checker.error(
                "spot_instance_types",
                "`spot_instance_types` applies to spot instances; set `spot_price` too",
            );
        }
        if types.is_empty() {
            checker.error(
                "spot_instance_types",
                "`spot_instance_types` needs at least one instance type",
            );
        }
        for (i, kind) in types.iter().enumerate() {
            if kind.trim().is_empty() {
                checker.error_at(
                    &checker.base.key("spot_instance_types").index(i),
                    "an instance type may not be empty",
                );
            }
        }
        if config.instance_type.is_some() {
            checker
                .error(
                    "instance_type",
                    "set either `instance_type` or `spot_instance_types`, not both",
                )
                .help = Some("list every acceptable type in `spot_instance_types`".into());
        }
    }
    if config.fallback_to_on_demand.is_some() && !spot {
        checker.error(
            "fallback_to_on_demand",
            "`fallback_to_on_demand` applies to spot instances; set `spot_price` too",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_prices_are_auto_or_positive_decimals() {
        for good in ["auto", "0.05", "1", "12.5", ".5", "0.0001"] {
            assert!(is_spot_price(good), "{good}");
        }
        for bad in [
            "", ".", "0", "0.00", "-1", "1e3", "0,05", "$0.05", "Auto", "1.2.3",
        ] {
            assert!(!is_spot_price(bad), "{bad}");
        }
    }
}
