//! The RunInstances request for the build instance: its base AMI, key,
//! user data, instance profile, block devices and network, tagged at
//! creation and IMDSv2 only unless the template says otherwise. Built once,
//! for the launch and for `--dry-run` alike.

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    IamInstanceProfileSpecification, InstanceNetworkInterfaceSpecification, ResourceType,
    ShutdownBehavior,
};

use super::source_ami::SourceAmi;
use super::{EbsContext, block_devices, encryption, tags};
use crate::pipeline::StepError;

/// The RunInstances request for this build, less what each launch of
/// `spot::planned` adds (instance type, market, client token): sent by the
/// launch, or with `DryRun` by `build --dry-run`.
pub(super) fn launch_request(
    ctx: &EbsContext,
    source: &SourceAmi,
) -> Result<RunInstancesFluentBuilder, StepError> {
    let scope = &ctx.build.scope;
    let expand = |s: &str| scope.expand(s).map_err(StepError::failed);
    let user_data = match (&ctx.config.user_data, &ctx.config.user_data_file) {
        (Some(text), _) => Some(expand(text)?),
        (None, Some(file)) => {
            let path = ctx.build.template.dir().join(expand(file)?);
            Some(std::fs::read_to_string(&path).map_err(|e| {
                StepError::failed(format!("user_data_file {}: {e}", path.display()))
            })?)
        }
        (None, None) => None,
    };
    let mut request = ctx
        .client
        .run_instances()
        .image_id(&source.id)
        .min_count(1)
        .max_count(1)
        .set_key_name(ctx.key_name.clone())
        .set_user_data(user_data.map(|u| base64(u.as_bytes())))
        .metadata_options(super::metadata::options(&ctx.config))
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .tag_specifications(tags::at_creation(ResourceType::Instance, &ctx.temp_tags))
        .tag_specifications(tags::at_creation(ResourceType::Volume, &ctx.temp_tags));
    let profile = match (&ctx.instance_profile, &ctx.config.iam_instance_profile) {
        (Some(temporary), _) => Some(temporary.clone()),
        (None, Some(written)) => Some(expand(written)?),
        (None, None) => None,
    };
    if let Some(profile) = profile {
        let spec = IamInstanceProfileSpecification::builder();
        let spec = if profile.starts_with("arn:") {
            spec.arn(profile)
        } else {
            spec.name(profile)
        };
        request = request.iam_instance_profile(spec.build());
    }
    let settings = block_devices::expanded(ctx).map_err(StepError::failed)?;
    encryption::check_copies(&settings, &ctx.region, &ctx.copy_regions)
        .map_err(StepError::failed)?;
    let root = source.root_device_name.as_deref();
    let mappings = block_devices::launch(&settings, &ctx.region, &source.id, root)
        .map_err(StepError::failed)?;
    request = request.set_block_device_mappings(Some(mappings).filter(|m| !m.is_empty()));
    request = match ctx.config.associate_public_ip {
        // A public address is chosen per network interface, which then carries the subnet and groups.
        Some(public) => request.network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .associate_public_ip_address(public)
                .delete_on_termination(true)
                .set_subnet_id(ctx.subnet_id.clone())
                .set_groups(Some(ctx.security_group_ids.clone()))
                .build(),
        ),
        None => request
            .set_subnet_id(ctx.subnet_id.clone())
            .set_security_group_ids(Some(ctx.security_group_ids.clone())),
    };
    Ok(request)
}

/// Standard base64 (EC2 wants user data encoded).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"#!/bin/sh\n"), "IyEvYmluL3NoCg==");
    }
}
