//! `prune --disable`: DisableImage instead of deregistering. A disabled AMI
//! cannot be launched, no longer shows in DescribeImages by default and is
//! no longer shared, but it and its snapshots stay, so EnableImage undoes it.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::disable_image::builders::DisableImageFluentBuilder;

use super::client::{Api, ApiError};

/// EC2 refused to disable an image.
#[derive(Debug, thiserror::Error)]
#[error("disabling {image} in {region}: {source}")]
pub struct DisableError {
    pub region: String,
    pub image: String,
    #[source]
    pub source: ApiError,
}

/// The DisableImage call for one image.
pub fn request(client: &Client, image_id: &str) -> DisableImageFluentBuilder {
    client.disable_image().image_id(image_id)
}

/// The AWS CLI command that disables the image by hand.
pub fn command(image_id: &str, region: &str) -> String {
    format!("aws ec2 disable-image --image-id {image_id} --region {region}")
}

pub async fn disable(client: &Client, region: &str, image_id: &str) -> Result<(), DisableError> {
    request(client, image_id)
        .send()
        .await
        .api("DisableImage")
        .map(|_| ())
        .map_err(|source| DisableError {
            region: region.into(),
            image: image_id.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        super::super::client::offline("eu-west-3")
    }

    #[test]
    fn the_request_names_only_the_image() {
        let request = request(&client(), "ami-0c4b3a2918f7e6d50");
        let input = request.as_input();
        assert_eq!(
            input.get_image_id().as_deref(),
            Some("ami-0c4b3a2918f7e6d50")
        );
        assert_eq!(input.get_dry_run(), &None);
    }

    #[test]
    fn a_refusal_names_the_image_and_the_region() {
        let error = DisableError {
            region: "eu-west-3".into(),
            image: "ami-0c4b3a2918f7e6d50".into(),
            source: ApiError {
                operation: "DisableImage",
                code: Some("UnauthorizedOperation".into()),
                message: "denied".into(),
                status: Some(403),
            },
        };
        assert_eq!(
            error.to_string(),
            "disabling ami-0c4b3a2918f7e6d50 in eu-west-3: DisableImage failed: UnauthorizedOperation: denied"
        );
        assert_eq!(
            command("ami-0c4b3a2918f7e6d50", "eu-west-3"),
            "aws ec2 disable-image --image-id ami-0c4b3a2918f7e6d50 --region eu-west-3"
        );
    }
}
