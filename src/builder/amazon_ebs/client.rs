//! EC2, SSM and IAM clients and their errors. Credentials, region and
//! endpoint come from the standard AWS chain (environment, profiles, SSO,
//! web identity), so `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_EC2` /
//! `AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL_IAM` work as with any AWS tool.
//! The build region is the template's `region` when it sets one.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::template::Scope;
use crate::template::sources::AmazonEbsConfig;
use crate::wait::Transient;

/// How many times the SDK tries one EC2 call. EC2 answers bursts of load
/// with 503 `Unavailable` or `RequestLimitExceeded`; with the SDK's default
/// of 3, three such answers in a row fail a build that has already run for
/// many minutes. Ten tries with the SDK's exponential backoff (jittered, up
/// to 20 s apart) ride out a burst of a minute or more.
pub const MAX_ATTEMPTS: u32 = 10;

/// Loads the shared AWS configuration; `region`, when given, wins over the
/// chain. Every EC2 call, cleanup calls included, runs with the same retry
/// policy: the SDK's standard mode with [`MAX_ATTEMPTS`] tries, unless
/// `AWS_MAX_ATTEMPTS` or `AWS_RETRY_MODE` (or the profile's `max_attempts` /
/// `retry_mode`) say otherwise, as for any AWS tool.
pub async fn load(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            // A single EC2 call never takes this long; a hung one must not stall a build.
            .operation_attempt_timeout(Duration::from_secs(60))
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    let shared = loader.load().await;
    if user_set_retries(&shared) {
        return shared;
    }
    let retry = RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
    shared.into_builder().retry_config(retry).build()
}

/// Whether the environment or the profile chose a retry policy. The SDK's
/// own default is standard mode with 3 attempts, so anything else was set.
fn user_set_retries(shared: &SdkConfig) -> bool {
    let set_in_env = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let default = RetryConfig::standard();
    set_in_env
        || shared.retry_config().is_some_and(|r| {
            r.max_attempts() != default.max_attempts() || r.mode() != default.mode()
        })
}

/// The AWS configuration and the build region: the template's `region`,
/// else the standard chain's.
pub(super) async fn region(
    config: &AmazonEbsConfig,
    scope: &Scope,
) -> Result<(SdkConfig, String), String> {
    let written = match config
        .region
        .as_deref()
        .map(|r| scope.expand(r))
        .transpose()
    {
        // Empty (e.g. an unset variable) means "the standard chain decides".
        Ok(r) => r.filter(|r| !r.is_empty()),
        Err(e) => return Err(format!("region: {e}")),
    };
    let shared = load(written.as_deref()).await;
    match written.or_else(|| shared.region().map(|r| r.to_string())) {
        Some(region) => Ok((shared, region)),
        None => Err(
            "no AWS region: set `region` in the source, AWS_REGION, or a region in the AWS profile"
                .into(),
        ),
    }
}

/// An EC2 client for `region`, sharing credentials and endpoint settings.
pub fn ec2(shared: &SdkConfig, region: &str) -> Client {
    let config = aws_sdk_ec2::config::Builder::from(shared)
        .region(Region::new(region.to_string()))
        .build();
    Client::from_conf(config)
}

/// An SSM client for `region`, with the same credentials, retries and
/// endpoint settings as the EC2 clients (`AWS_ENDPOINT_URL_SSM` works too).
pub fn ssm(shared: &SdkConfig, region: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::config::Builder::from(shared)
        .region(Region::new(region.to_string()))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// The IAM client, with the same credentials, endpoint settings and retry
/// policy. IAM is global: `region` only picks the partition (aws, aws-cn,
/// aws-us-gov) and signs the calls.
pub fn iam(shared: &SdkConfig, region: &str) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::config::Builder::from(shared)
        .region(Region::new(region.to_string()))
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// A failed EC2, SSM or IAM call: the operation, the service's error code and its message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of EC2's answer, when there was one.
    pub status: Option<u16>,
}

impl ApiError {
    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// `InvalidInstanceID.NotFound` and friends: often only eventual
    /// consistency right after the resource was made.
    pub fn is_not_found(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.ends_with(".NotFound") || c.ends_with("NotFound"))
    }

    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
            )
        )
    }

    /// EC2 has no room for this launch now (in this type, zone or price):
    /// another instance type, or on-demand, may still launch.
    pub fn is_capacity_shortage(&self) -> bool {
        self.code.as_deref().is_some_and(is_capacity_shortage)
    }

    /// EC2 does not know an instance profile IAM made a moment ago yet.
    pub fn is_instance_profile_unknown(&self) -> bool {
        self.code_is("InvalidParameterValue")
            && self
                .message
                .to_ascii_lowercase()
                .contains("invalid iam instance profile")
    }

    /// IAM's answer for a role, profile or policy that does not exist.
    pub fn is_no_such_entity(&self) -> bool {
        self.code_is("NoSuchEntity")
    }

    /// EC2 or the network between had a bad moment: a 5xx answer, or
    /// EC2's own codes for one.
    pub fn is_server_fault(&self) -> bool {
        self.status.is_some_and(|s| (500..600).contains(&s))
            || matches!(
                self.code.as_deref(),
                Some(
                    "Unavailable"
                        | "ServiceUnavailable"
                        | "InternalError"
                        | "InternalFailure"
                        | "RequestTimeout"
                )
            )
    }
}

/// EC2's codes for "no room for this launch now"; it answers some with HTTP 500.
pub fn is_capacity_shortage(code: &str) -> bool {
    matches!(
        code,
        "InsufficientInstanceCapacity"
            | "InsufficientCapacity"
            | "SpotMaxPriceTooLow"
            | "MaxSpotInstanceCountExceeded"
            | "InsufficientHostCapacity"
    )
}

/// In imgbuild's own waits and retries, a resource made a moment ago and not
/// yet visible, throttling, and server faults are all "not yet".
impl Transient for ApiError {
    fn is_transient(&self) -> bool {
        self.is_not_found() || self.is_throttling() || self.is_server_fault()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// Turns an SDK result into one whose error says which call failed and why.
pub trait Api<T> {
    fn api(self, operation: &'static str) -> Result<T, ApiError>;
}

impl<T, E> Api<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn api(self, operation: &'static str) -> Result<T, ApiError> {
        self.map_err(|e| {
            let code = e.code().map(str::to_string);
            let message = match e.message() {
                Some(m) if !m.is_empty() => m.to_string(),
                _ => causes(&e),
            };
            let status = e.raw_response().map(|r| r.status().as_u16());
            ApiError {
                operation,
                code,
                message,
                status,
            }
        })
    }
}

/// An error and its causes, "dispatch failure: io error: … Connection refused",
/// without the debug dump the SDK's own rendering appends.
fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A client for tests of the requests imgbuild builds: it is never sent one.
#[cfg(test)]
pub fn offline(region: &'static str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: Option<&str>, status: Option<u16>) -> ApiError {
        ApiError {
            operation: "DescribeImages",
            code: code.map(str::to_string),
            message: "m".into(),
            status,
        }
    }

    #[test]
    fn busy_throttled_and_not_yet_visible_are_transient() {
        for code in [
            "Unavailable",
            "InternalError",
            "RequestLimitExceeded",
            "Throttling",
            "InvalidAMIID.NotFound",
        ] {
            assert!(error(Some(code), Some(400)).is_transient(), "{code}");
        }
        assert!(error(None, Some(503)).is_transient());
        assert!(error(Some("Whatever"), Some(500)).is_transient());
    }

    #[test]
    fn capacity_shortages_let_another_type_try() {
        for code in [
            "InsufficientInstanceCapacity",
            "InsufficientCapacity",
            "SpotMaxPriceTooLow",
            "MaxSpotInstanceCountExceeded",
        ] {
            assert!(
                error(Some(code), Some(400)).is_capacity_shortage(),
                "{code}"
            );
        }
        for code in [
            "InvalidParameterValue",
            "Unsupported",
            "UnauthorizedOperation",
        ] {
            assert!(
                !error(Some(code), Some(400)).is_capacity_shortage(),
                "{code}"
            );
        }
    }

    #[test]
    fn a_profile_not_yet_known_to_ec2_is_told_apart() {
        let unknown = ApiError {
            message: "Value (imgbuild-0a1b) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name".into(),
            ..error(Some("InvalidParameterValue"), Some(400))
        };
        assert!(unknown.is_instance_profile_unknown());
        assert!(!error(Some("InvalidParameterValue"), Some(400)).is_instance_profile_unknown());
    }

    #[test]
    fn refusals_are_terminal() {
        for code in [
            "UnauthorizedOperation",
            "InvalidParameterValue",
            "AuthFailure",
        ] {
            assert!(!error(Some(code), Some(400)).is_transient(), "{code}");
        }
        assert!(!error(None, None).is_transient());
    }
}
