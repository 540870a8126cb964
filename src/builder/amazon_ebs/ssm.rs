//! `source_ami_ssm_parameter`: the base AMI's id read from an SSM parameter
//! (AWS publishes the latest Amazon Linux, Windows and Bottlerocket AMIs as
//! `/aws/service/...` parameters), then looked up like `source_ami`.

use aws_config::SdkConfig;

use super::client::{self, Api, ApiError};
use super::source_ami::{self, SourceAmi};
use crate::template::sources::is_ami_id;

#[derive(Debug, thiserror::Error)]
pub enum SsmError {
    #[error("source_ami_ssm_parameter {name} in {region}: {source}")]
    Call {
        name: String,
        region: String,
        #[source]
        source: ApiError,
    },
    #[error("source_ami_ssm_parameter {name} does not exist in {region}")]
    NotFound { name: String, region: String },
    /// The value is not shown: a parameter named by mistake may hold a secret.
    #[error(
        "source_ami_ssm_parameter {name} in {region} holds {chars} characters that are not an AMI id"
    )]
    NotAnAmi {
        name: String,
        region: String,
        chars: usize,
    },
    #[error("source_ami_ssm_parameter {name} names {id}, but {problem}")]
    NoSuchImage {
        name: String,
        id: String,
        problem: String,
    },
}

/// The AMI the parameter `name` names today, in `region`.
pub async fn resolve(
    shared: &SdkConfig,
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    name: &str,
) -> Result<SourceAmi, SsmError> {
    let id = ami_id(&client::ssm(shared, region), region, name).await?;
    source_ami::by_id(ec2, region, &id)
        .await
        .map_err(|problem| SsmError::NoSuchImage {
            name: name.to_string(),
            id,
            problem,
        })
}

async fn ami_id(ssm: &aws_sdk_ssm::Client, region: &str, name: &str) -> Result<String, SsmError> {
    let out = ssm
        .get_parameter()
        .name(name)
        .send()
        .await
        .api("GetParameter")
        .map_err(|source| {
            if source.code_is("ParameterNotFound") {
                SsmError::NotFound {
                    name: name.to_string(),
                    region: region.to_string(),
                }
            } else {
                SsmError::Call {
                    name: name.to_string(),
                    region: region.to_string(),
                    source,
                }
            }
        })?;
    let value = out
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .trim()
        .to_string();
    if is_ami_id(&value) {
        Ok(value)
    } else {
        Err(SsmError::NotAnAmi {
            name: name.to_string(),
            region: region.to_string(),
            chars: value.chars().count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_parameter_and_the_image() {
        let missing = SsmError::NoSuchImage {
            name: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".into(),
            id: "ami-0ed094fb1304fd857".into(),
            problem: "source AMI ami-0ed094fb1304fd857 does not exist in us-east-1".into(),
        };
        assert_eq!(
            missing.to_string(),
            "source_ami_ssm_parameter /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64 \
             names ami-0ed094fb1304fd857, but source AMI ami-0ed094fb1304fd857 does not exist in us-east-1"
        );
    }
}
