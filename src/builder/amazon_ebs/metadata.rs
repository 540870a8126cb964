//! The build instance's metadata service, as RunInstances is told:
//! IMDSv2 only unless `metadata_http_tokens = "optional"`, the hop limit
//! and instance tags in the metadata as the template asks.

use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceMetadataTagsState,
};

use crate::template::sources::AmazonEbsConfig;

pub fn options(config: &AmazonEbsConfig) -> InstanceMetadataOptionsRequest {
    let tokens = match config.metadata_http_tokens.as_deref() {
        Some("optional") => HttpTokensState::Optional,
        _ => HttpTokensState::Required,
    };
    InstanceMetadataOptionsRequest::builder()
        .http_tokens(tokens)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .set_http_put_response_hop_limit(config.metadata_http_put_response_hop_limit)
        .set_instance_metadata_tags(
            config
                .metadata_tags
                .as_deref()
                .map(InstanceMetadataTagsState::from),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imdsv2_only_by_default_and_nothing_else_set() {
        let options = options(&AmazonEbsConfig::default());
        assert_eq!(options.http_tokens(), Some(&HttpTokensState::Required));
        assert_eq!(
            options.http_endpoint(),
            Some(&InstanceMetadataEndpointState::Enabled)
        );
        assert_eq!(options.http_put_response_hop_limit(), None);
        assert_eq!(options.instance_metadata_tags(), None);
    }

    #[test]
    fn the_settings_reach_the_request() {
        let config = AmazonEbsConfig {
            metadata_http_tokens: Some("optional".into()),
            metadata_http_put_response_hop_limit: Some(2),
            metadata_tags: Some("enabled".into()),
            ..AmazonEbsConfig::default()
        };
        let options = options(&config);
        assert_eq!(options.http_tokens(), Some(&HttpTokensState::Optional));
        assert_eq!(options.http_put_response_hop_limit(), Some(2));
        assert_eq!(
            options.instance_metadata_tags(),
            Some(&InstanceMetadataTagsState::Enabled)
        );
    }
}
