//! `deprecate_after`: once the image and its copies are available, EC2 is
//! told when each becomes deprecated. The image is fine without it, so a
//! failure is a warning naming the AMI and the command that does it by hand.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::enable_image_deprecation::builders::EnableImageDeprecationFluentBuilder;
use aws_sdk_ec2::primitives::DateTime;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::EbsContext;
use super::client::{Api, ApiError};
use crate::pipeline::{Step, StepError};

/// When an image made now with `deprecate_after = after` becomes deprecated,
/// to the second.
pub fn deprecate_at(now: SystemTime, after: Duration) -> OffsetDateTime {
    let at = OffsetDateTime::from(now + after);
    at.replace_nanosecond(0).unwrap_or(at)
}

/// The EnableImageDeprecation call for one image.
pub fn request(
    client: &Client,
    image_id: &str,
    at: OffsetDateTime,
) -> EnableImageDeprecationFluentBuilder {
    client
        .enable_image_deprecation()
        .image_id(image_id)
        .deprecate_at(DateTime::from_secs(at.unix_timestamp()))
}

/// The AWS CLI command that deprecates the image by hand.
pub fn command(image_id: &str, region: &str, at: OffsetDateTime) -> String {
    format!(
        "aws ec2 enable-image-deprecation --image-id {image_id} --deprecate-at {} --region {region}",
        rfc3339(at)
    )
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// EC2 refused to set an image's deprecation time.
#[derive(Debug)]
pub struct DeprecationError {
    pub image_id: String,
    pub region: String,
    pub at: OffsetDateTime,
    pub source: ApiError,
}

impl fmt::Display for DeprecationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not deprecate {} in {} from {} ({}); the image itself is fine; to deprecate it by hand: {}",
            self.image_id,
            self.region,
            rfc3339(self.at),
            self.source,
            command(&self.image_id, &self.region, self.at)
        )
    }
}

impl std::error::Error for DeprecationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

async fn deprecate(
    client: &Client,
    region: &str,
    image_id: &str,
    at: OffsetDateTime,
) -> Result<(), DeprecationError> {
    request(client, image_id, at)
        .send()
        .await
        .api("EnableImageDeprecation")
        .map(|_| ())
        .map_err(|source| DeprecationError {
            image_id: image_id.into(),
            region: region.into(),
            at,
            source,
        })
}

/// Sets the deprecation time of every image the build made; never fails the build.
pub struct DeprecateImages {
    pub after: Duration,
}

#[async_trait]
impl Step<EbsContext> for DeprecateImages {
    fn name(&self) -> &'static str {
        "deprecate images"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let at = deprecate_at(SystemTime::now(), self.after);
        let images = ctx.images.lock().expect("image records").clone();
        // Each region at once; the answers are reported in the images' order.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, image) in images.into_iter().enumerate() {
            let client = ctx.client_in(&image.region);
            tasks.spawn(async move {
                let done = deprecate(&client, &image.region, &image.id, at).await;
                (i, image, done)
            });
        }
        let mut answers = tasks.join_all().await;
        answers.sort_by_key(|(i, _, _)| *i);
        for (_, image, done) in answers {
            match done {
                Ok(()) => ctx.build.events.info(format!(
                    "{} in {} is deprecated from {}",
                    image.id,
                    image.region,
                    rfc3339(at)
                )),
                Err(e) => ctx.build.events.warn(e.to_string()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        super::super::client::offline("eu-west-3")
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn ninety_days_from_the_build_to_the_second() {
        let now = SystemTime::from(at("2026-12-01T12:00:00.750Z"));
        let after = humantime::parse_duration("90d").unwrap();
        assert_eq!(deprecate_at(now, after), at("2027-03-01T12:00:00Z"));
    }

    #[test]
    fn the_request_names_the_image_and_the_time() {
        let when = at("2027-03-01T12:00:00Z");
        let request = request(&client(), "ami-0f3c2e0d9b8a71605", when);
        let input = request.as_input();
        assert_eq!(
            input.get_image_id().as_deref(),
            Some("ami-0f3c2e0d9b8a71605")
        );
        assert_eq!(
            input.get_deprecate_at().map(|d| d.secs()),
            Some(when.unix_timestamp())
        );
        assert_eq!(input.get_dry_run(), &None);
    }

    #[test]
    fn a_refusal_names_the_image_and_the_command() {
        let error = DeprecationError {
            image_id: "ami-0f3c2e0d9b8a71605".into(),
            region: "eu-west-3".into(),
            at: at("2027-03-01T12:00:00Z"),
            source: ApiError {
                operation: "EnableImageDeprecation",
                code: Some("UnauthorizedOperation".into()),
                message: "denied".into(),
                status: Some(403),
            },
        };
        assert_eq!(
            error.to_string(),
            "could not deprecate ami-0f3c2e0d9b8a71605 in eu-west-3 from 2027-03-01T12:00:00Z \
             (EnableImageDeprecation failed: UnauthorizedOperation: denied); the image itself is fine; \
             to deprecate it by hand: aws ec2 enable-image-deprecation --image-id ami-0f3c2e0d9b8a71605 \
             --deprecate-at 2027-03-01T12:00:00Z --region eu-west-3"
        );
    }
}
