//! Spot instances, and the order of launches to try: each type of
//! `spot_instance_types` (or `instance_type`) as spot, then on-demand with
//! `fallback_to_on_demand`, moving on only when EC2 has no capacity.
//!
//! A spot launch is RunInstances with InstanceMarketOptions (a one-time
//! request, terminated on interruption), not Packer's CreateFleet: CreateFleet
//! needs a temporary launch template, one more resource to make, tag and
//! remove, and answers a shortage per type inside a successful reply. With
//! RunInstances the only extra resource is the spot request, tagged at
//! creation, and each type's shortage is its own typed error.

use std::fmt;

use aws_sdk_ec2::config::interceptors::InterceptorContext;
use aws_sdk_ec2::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::operation::run_instances::{RunInstancesError, RunInstancesOutput};
use aws_sdk_ec2::types::{
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceType, MarketType,
    ResourceType, SpotInstanceType, SpotMarketOptions,
};

use super::client::{self, ApiError};
use super::instance::DEFAULT_INSTANCE_TYPE;
use super::spot_requests::SpotRequests;
use super::{EbsContext, instance_profile, tags};
use crate::template::sources::{AUTO_PRICE, is_spot_price};

/// One launch to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub instance_type: String,
    /// `None` for on-demand; `Some(None)` for spot capped at the on-demand
    /// price ("auto"), `Some(Some(price))` for spot at most `price`.
    pub spot: Option<Option<String>>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spot {
            None => write!(f, "on-demand {}", self.instance_type),
            Some(_) => write!(f, "spot {}", self.instance_type),
        }
    }
}

/// The launches the source's settings ask for, in order.
pub fn planned(ctx: &EbsContext) -> Result<Vec<Attempt>, String> {
    let c = &ctx.config;
    let types = ctx
        .build
        .scope
        .expand_all(c.spot_instance_types.as_deref().unwrap_or_default())
        .map_err(|e| format!("spot_instance_types: {e}"))?;
    attempts(
        ctx.setting(c.instance_type.as_deref())?.as_deref(),
        ctx.setting(c.spot_price.as_deref())?.as_deref(),
        &types,
        c.fallback_to_on_demand.unwrap_or(false),
    )
}

/// The launches to try, in order, from settings already expanded.
pub fn attempts(
    instance_type: Option<&str>,
    spot_price: Option<&str>,
    spot_instance_types: &[String],
    fallback_to_on_demand: bool,
) -> Result<Vec<Attempt>, String> {
    let single = instance_type.unwrap_or(DEFAULT_INSTANCE_TYPE);
    let Some(price) = spot_price else {
        return Ok(vec![Attempt {
            instance_type: single.to_string(),
            spot: None,
        }]);
    };
    if !is_spot_price(price) {
        return Err(format!(
            "spot_price: `{price}` is not a spot price: write \"auto\" or a positive decimal"
        ));
    }
    // EC2 caps a spot price left out at the on-demand price.
    let max_price = (price != AUTO_PRICE).then(|| price.to_string());
    let types: Vec<String> = if spot_instance_types.is_empty() {
        vec![single.to_string()]
    } else {
        spot_instance_types.to_vec()
    };
    let mut tries: Vec<Attempt> = types
        .iter()
        .map(|t| Attempt {
            instance_type: t.clone(),
            spot: Some(max_price.clone()),
        })
        .collect();
    if fallback_to_on_demand {
        tries.push(Attempt {
            instance_type: types[0].clone(),
            spot: None,
        });
    }
    Ok(tries)
}

/// Every launch EC2 had no room for, and the last one's other refusal if any.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("launching from {source_ami} in {region}: {}", tried(.short))]
    NoCapacity {
        source_ami: String,
        region: String,
        short: Vec<(Attempt, ApiError)>,
    },
    #[error("launching {attempt} from {source_ami} in {region}: {error}{}", after(.short))]
    Refused {
        attempt: Attempt,
        source_ami: String,
        region: String,
        error: ApiError,
        short: Vec<(Attempt, ApiError)>,
    },
}

fn tried(short: &[(Attempt, ApiError)]) -> String {
    let each: Vec<String> = short
        .iter()
        .map(|(a, e)| format!("{a}: {}", e.code.as_deref().unwrap_or("no capacity")))
        .collect();
    format!("no capacity for {}", each.join(", "))
}

fn after(short: &[(Attempt, ApiError)]) -> String {
    if short.is_empty() {
        String::new()
    } else {
        format!(" (after {})", tried(short))
    }
}

/// Sends `request` for each attempt in turn until one launches. Each
/// attempt has its own client token: EC2 refuses a token reused with other
/// parameters, and a retry of one attempt must still start one instance.
pub async fn launch(
    ctx: &EbsContext,
    request: RunInstancesFluentBuilder,
    attempts: &[Attempt],
    spot: &mut SpotRequests,
) -> Result<(RunInstancesOutput, Attempt), LaunchError> {
    let mut short = Vec::new();
    for (i, attempt) in attempts.iter().enumerate() {
        let one = with_attempt(ctx, request.clone(), attempt, i);
        if attempt.spot.is_some() {
            spot.sent();
        }
        let next_in_line = i + 1 < attempts.len();
        let send = || {
            let call = one.clone().customize();
            if next_in_line {
                call.config_override(
                    aws_sdk_ec2::config::Builder::default().retry_classifier(NextLaunchInstead),
                )
                .send()
            } else {
                call.send()
            }
        };
        match instance_profile::while_unknown_to_ec2(ctx, send).await {
            Ok(out) => {
                spot.record(
                    out.instances()
                        .iter()
                        .filter_map(|i| i.spot_instance_request_id()),
                );
                return Ok((out, attempt.clone()));
            }
            Err(e) if e.is_capacity_shortage() => {
                if let Some(next) = attempts.get(i + 1) {
                    ctx.build
                        .events
                        .warn(format!("{attempt}: {e}; trying {next}"));
                }
                short.push((attempt.clone(), e));
            }
            Err(error) => {
                return Err(LaunchError::Refused {
                    attempt: attempt.clone(),
                    source_ami: ctx.source_ami_id().to_string(),
                    region: ctx.region.clone(),
                    error,
                    short,
                });
            }
        }
    }
    Err(LaunchError::NoCapacity {
        source_ami: ctx.source_ami_id().to_string(),
        region: ctx.region.clone(),
        short,
    })
}

/// The launch request for the `n`th attempt: its instance type, market and
/// client token.
pub fn with_attempt(
    ctx: &EbsContext,
    request: RunInstancesFluentBuilder,
    attempt: &Attempt,
    n: usize,
) -> RunInstancesFluentBuilder {
    let token = match n {
        0 => format!("imgbuild-{}", ctx.build.build_id),
        n => format!("imgbuild-{}-{n}", ctx.build.build_id),
    };
    let request = request
        .instance_type(InstanceType::from(attempt.instance_type.as_str()))
        .client_token(token);
    match &attempt.spot {
        Some(max_price) => request
            .instance_market_options(market_options(max_price.clone()))
            .tag_specifications(tags::at_creation(
                ResourceType::SpotInstancesRequest,
                &ctx.temp_tags,
            )),
        None => request,
    }
}

/// Keeps the SDK from retrying a capacity shortage (EC2 answers some with
/// HTTP 500, which the SDK retries for minutes) while another launch is
/// next in line: the next type or on-demand is the better retry.
#[derive(Debug)]
struct NextLaunchInstead;

impl ClassifyRetry for NextLaunchInstead {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let code = ctx
            .output_or_error()
            .and_then(|answer| answer.err())
            .and_then(|e| e.as_operation_error())
            .and_then(|e| e.downcast_ref::<RunInstancesError>())
            .and_then(|e| e.code());
        match code {
            Some(code) if client::is_capacity_shortage(code) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "capacity shortage with another launch to try"
    }
}

/// A one-time request (nothing relaunches the instance) whose instance is
/// terminated, not stopped or hibernated, if EC2 takes the capacity back.
fn market_options(max_price: Option<String>) -> InstanceMarketOptionsRequest {
    InstanceMarketOptionsRequest::builder()
        .market_type(MarketType::Spot)
        .spot_options(
            SpotMarketOptions::builder()
                .set_max_price(max_price)
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::amazon_ebs::client::offline;

    fn spot(kind: &str, price: Option<&str>) -> Attempt {
        Attempt {
            instance_type: kind.into(),
            spot: Some(price.map(str::to_string)),
        }
    }

    fn on_demand(kind: &str) -> Attempt {
        Attempt {
            instance_type: kind.into(),
            spot: None,
        }
    }

    #[test]
    fn tries_each_spot_type_in_order_then_on_demand() {
        let types = ["m5.large".to_string(), "m5a.large".to_string()];
        assert_eq!(
            attempts(None, Some("auto"), &types, true).unwrap(),
            [
                spot("m5.large", None),
                spot("m5a.large", None),
                on_demand("m5.large")
            ]
        );
        assert_eq!(
            attempts(None, Some("0.05"), &types, false).unwrap(),
            [
                spot("m5.large", Some("0.05")),
                spot("m5a.large", Some("0.05"))
            ]
        );
        assert_eq!(
            attempts(Some("c5.large"), Some("auto"), &[], false).unwrap(),
            [spot("c5.large", None)]
        );
        assert_eq!(
            attempts(None, None, &[], false).unwrap(),
            [on_demand(DEFAULT_INSTANCE_TYPE)]
        );
        assert!(attempts(None, Some("cheap"), &[], false).is_err());
    }

    #[test]
    fn names_every_type_tried_and_why() {
        let short = |code: &str| ApiError {
            operation: "RunInstances",
            code: Some(code.into()),
            message: "m".into(),
            status: Some(400),
        };
        let err = LaunchError::NoCapacity {
            source_ami: "ami-1".into(),
            region: "eu-west-3".into(),
            short: vec![
                (
                    spot("m5.large", None),
                    short("InsufficientInstanceCapacity"),
                ),
                (spot("m5a.large", None), short("SpotMaxPriceTooLow")),
            ],
        };
        assert_eq!(
            err.to_string(),
            "launching from ami-1 in eu-west-3: no capacity for spot m5.large: InsufficientInstanceCapacity, spot m5a.large: SpotMaxPriceTooLow"
        );
    }

    #[test]
    fn asks_for_a_one_time_spot_request_terminated_on_interruption() {
        let request = offline("eu-west-3")
            .run_instances()
            .instance_market_options(market_options(Some("0.05".into())));
        let market = request.get_instance_market_options().clone().unwrap();
        assert_eq!(market.market_type(), Some(&MarketType::Spot));
        let options = market.spot_options().unwrap();
        assert_eq!(options.max_price(), Some("0.05"));
        assert_eq!(
            options.spot_instance_type(),
            Some(&SpotInstanceType::OneTime)
        );
        assert_eq!(
            options.instance_interruption_behavior(),
            Some(&InstanceInterruptionBehavior::Terminate)
        );
        let auto = market_options(None);
        assert_eq!(auto.spot_options().unwrap().max_price(), None);
    }
}
