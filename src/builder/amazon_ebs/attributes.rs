//! What the new AMI says about the machines launched from it. CreateImage
//! takes none of it, so, as Packer does, ENA and SR-IOV are set on the
//! stopped instance, which the image inherits; the boot mode and NitroTPM
//! support are inherited from the source AMI, so a template that asks for
//! them is checked against it before anything is made.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::modify_instance_attribute::builders::ModifyInstanceAttributeFluentBuilder;
use aws_sdk_ec2::types::{AttributeBooleanValue, AttributeValue};

use super::EbsContext;
use super::client::{Api, ApiError};
use super::source_ami::SourceAmi;
use crate::pipeline::{Step, StepError};
use crate::template::sources::AmazonEbsConfig;

/// Why the source AMI cannot give the image the boot the template asks for.
pub fn source_problem(config: &AmazonEbsConfig, source: &SourceAmi) -> Option<String> {
    let wanted = [
        (
            "boot_mode",
            &config.boot_mode,
            &source.boot_mode,
            "boot mode",
        ),
        (
            "tpm_support",
            &config.tpm_support,
            &source.tpm_support,
            "NitroTPM support",
        ),
    ];
    let problems: Vec<String> = wanted
        .into_iter()
        .filter_map(|(key, want, has, what)| {
            let want = want.as_deref()?;
            (has.as_deref() != Some(want)).then(|| {
                let has = has
                    .as_deref()
                    .map_or("none".to_string(), |h| format!("`{h}`"));
                format!(
                    "`{key} = \"{want}\"` but source AMI {} has {what} {has}",
                    source.id
                )
            })
        })
        .collect();
    (!problems.is_empty()).then(|| {
        format!(
            "{}; CreateImage keeps the source AMI's, so pick a source AMI registered with it",
            problems.join(", and ")
        )
    })
}

/// The ModifyInstanceAttribute calls that set `ena_support` and
/// `sriov_support` (EC2 takes one attribute per call). SR-IOV can only be
/// switched on, as in Packer.
pub fn requests(
    client: &Client,
    instance_id: &str,
    config: &AmazonEbsConfig,
) -> Vec<(&'static str, ModifyInstanceAttributeFluentBuilder)> {
    let base = || client.modify_instance_attribute().instance_id(instance_id);
    let mut calls = Vec::new();
    if let Some(ena) = config.ena_support {
        let value = AttributeBooleanValue::builder().value(ena).build();
        calls.push(("ena_support", base().ena_support(value)));
    }
    if config.sriov_support == Some(true) {
        let simple = AttributeValue::builder().value("simple").build();
        calls.push(("sriov_support", base().sriov_net_support(simple)));
    }
    calls
}

/// EC2 refused to set an attribute on the stopped instance.
#[derive(Debug, thiserror::Error)]
#[error("setting {setting} on instance {instance_id} in {region}: {source}")]
pub struct AttributeError {
    pub setting: &'static str,
    pub instance_id: String,
    pub region: String,
    #[source]
    pub source: ApiError,
}

/// `ena_support`, `sriov_support` on the stopped instance, before CreateImage.
pub struct EnhancedNetworking;

impl EnhancedNetworking {
    pub fn wanted(config: &AmazonEbsConfig) -> bool {
        config.ena_support.is_some() || config.sriov_support == Some(true)
    }
}

#[async_trait]
impl Step<EbsContext> for EnhancedNetworking {
    fn name(&self) -> &'static str {
        "enhanced networking"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let id = ctx
            .instance_id
            .clone()
            .ok_or_else(|| StepError::failed("no instance to modify"))?;
        for (setting, request) in requests(&ctx.client, &id, &ctx.config) {
            request
                .send()
                .await
                .api("ModifyInstanceAttribute")
                .map_err(|source| {
                    StepError::from_error(AttributeError {
                        setting,
                        instance_id: id.clone(),
                        region: ctx.region.clone(),
                        source,
                    })
                })?;
            ctx.build
                .events
                .info(format!("instance {id}: {setting} set"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(boot_mode: Option<&str>, tpm: Option<&str>) -> SourceAmi {
        SourceAmi {
            id: "ami-0e1e769742d1cfb49".into(),
            name: "al2023".into(),
            owner: "137112412989".into(),
            creation_date: String::new(),
            root_device_name: None,
            boot_mode: boot_mode.map(str::to_string),
            tpm_support: tpm.map(str::to_string),
        }
    }

    #[test]
    fn the_source_must_boot_as_asked() {
        let config = AmazonEbsConfig {
            boot_mode: Some("uefi".into()),
            tpm_support: Some("v2.0".into()),
            ..AmazonEbsConfig::default()
        };
        assert_eq!(
            source_problem(&config, &source(Some("uefi"), Some("v2.0"))),
            None
        );
        assert_eq!(
            source_problem(&config, &source(Some("legacy-bios"), None)).as_deref(),
            Some(
                "`boot_mode = \"uefi\"` but source AMI ami-0e1e769742d1cfb49 has boot mode `legacy-bios`, \
                 and `tpm_support = \"v2.0\"` but source AMI ami-0e1e769742d1cfb49 has NitroTPM support none; \
                 CreateImage keeps the source AMI's, so pick a source AMI registered with it"
            )
        );
        assert_eq!(
            source_problem(&AmazonEbsConfig::default(), &source(None, None)),
            None
        );
    }

    #[test]
    fn ena_and_sriov_are_one_call_each() {
        let client = super::super::client::offline("eu-west-3");
        let config = AmazonEbsConfig {
            ena_support: Some(false),
            sriov_support: Some(true),
            ..AmazonEbsConfig::default()
        };
        let calls = requests(&client, "i-0123456789abcdef0", &config);
        let [(ena_key, ena), (sriov_key, sriov)] = &calls[..] else {
            panic!("two calls: {}", calls.len());
        };
        assert_eq!((*ena_key, *sriov_key), ("ena_support", "sriov_support"));
        let ena = ena.as_input();
        assert_eq!(
            ena.get_instance_id().as_deref(),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            ena.get_ena_support().as_ref().and_then(|v| v.value()),
            Some(false)
        );
        assert_eq!(ena.get_sriov_net_support(), &None);
        let sriov = sriov.as_input();
        assert_eq!(
            sriov
                .get_sriov_net_support()
                .as_ref()
                .and_then(|v| v.value()),
            Some("simple")
        );
        assert_eq!(sriov.get_ena_support(), &None);
        let off = AmazonEbsConfig {
            sriov_support: Some(false),
            ..AmazonEbsConfig::default()
        };
        assert!(requests(&client, "i-0123456789abcdef0", &off).is_empty());
        assert!(!EnhancedNetworking::wanted(&off));
    }
}
