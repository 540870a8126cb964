//! The build instance's volumes and the AMI's mappings, as RunInstances and
//! CreateImage take them.
//!
//! The image is encrypted by encrypting the build instance's root volume at
//! launch: CreateImage then snapshots an encrypted volume, so no unencrypted
//! intermediate image or snapshot ever exists (Packer instead copies an
//! unencrypted AMI to an encrypted one and deregisters the first). Copies
//! are encrypted as `encryption` says.

use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, VolumeType};

use super::EbsContext;
use crate::template::sources::{AmazonEbsConfig, BlockDevice, root_short_form};

/// Where the root volume is when the source AMI does not say.
const DEFAULT_ROOT_DEVICE: &str = "/dev/xvda";

/// Why the settings cannot be sent as they are, found once the source AMI
/// and the build region are known (validate checks what it can before).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "launch_block_device {device} is the root device of {ami}, which `{short}` also sets; describe the root volume in one place"
    )]
    RootTwice {
        device: String,
        ami: String,
        short: &'static str,
    },
    #[error(
        "launch_block_device {device} is the root device of {ami} and says `encrypted = false`, but the image is to be encrypted"
    )]
    RootUnencrypted { device: String, ami: String },
    #[error("{0}")]
    Expand(String),
}

/// The settings with every reference expanded.
pub fn expanded(ctx: &EbsContext) -> Result<AmazonEbsConfig, DeviceError> {
    let mut c = ctx.config.clone();
    let expand = |value: &mut Option<String>| -> Result<(), DeviceError> {
        *value = ctx.setting(value.as_deref()).map_err(DeviceError::Expand)?;
        Ok(())
    };
    for d in c
        .launch_block_device
        .iter_mut()
        .chain(c.ami_block_device.iter_mut())
    {
        for value in [
            &mut d.device_name,
            &mut d.volume_type,
            &mut d.kms_key_id,
            &mut d.snapshot_id,
            &mut d.virtual_name,
        ] {
            expand(value)?;
        }
    }
    expand(&mut c.kms_key_id)?;
    for key in c.region_kms_key_ids.values_mut() {
        let mut value = Some(key.clone());
        expand(&mut value)?;
        *key = value.unwrap_or_default();
    }
    Ok(c)
}

/// RunInstances' mappings: the root volume (from `root_volume_*`, or the
/// `launch_block_device` of the root device; encrypted when the image is to
/// be), then every `launch_block_device`. Every launch volume is deleted with
/// the instance: nothing the build uses outlives it.
pub fn launch(
    c: &AmazonEbsConfig,
    region: &str,
    ami: &str,
    root: Option<&str>,
) -> Result<Vec<BlockDeviceMapping>, DeviceError> {
    let root = root.unwrap_or(DEFAULT_ROOT_DEVICE);
    let encrypt = c.encrypts_boot(region);
    let boot_key = c.boot_key(region).map(str::to_string);
    let mut mappings = Vec::new();
    let root_entry = c
        .launch_block_device
        .iter()
        .find(|d| d.device_name.as_deref() == Some(root));
    match root_entry {
        Some(d) => {
            if let Some(short) = root_short_form(c) {
                return Err(DeviceError::RootTwice {
                    device: root.into(),
                    ami: ami.into(),
                    short,
                });
            }
            if encrypt && d.encrypted == Some(false) {
                return Err(DeviceError::RootUnencrypted {
                    device: root.into(),
                    ami: ami.into(),
                });
            }
        }
        None if root_short_form(c).is_some() || encrypt => {
            mappings.push(mapping(&BlockDevice {
                device_name: Some(root.into()),
                volume_size: c.root_volume_size,
                volume_type: c.root_volume_type.clone(),
                encrypted: if encrypt {
                    Some(true)
                } else {
                    c.root_volume_encrypted
                },
                kms_key_id: boot_key.clone(),
                delete_on_termination: Some(true),
                ..BlockDevice::default()
            }));
        }
        None => {}
    }
    for d in &c.launch_block_device {
        let mut d = d.clone();
        if encrypt && d.device_name.as_deref() == Some(root) {
            d.encrypted = Some(true);
            d.kms_key_id = d.kms_key_id.or_else(|| boot_key.clone());
        }
        if !d.no_device && d.virtual_name.is_none() {
            d.delete_on_termination = Some(true);
        }
        mappings.push(mapping(&d));
    }
    Ok(mappings)
}

/// CreateImage's mappings: every `ami_block_device`, and a "no device" entry
/// for each other launch volume but the root, so the AMI records exactly
/// the root and what `ami_block_device` lists.
pub fn image(c: &AmazonEbsConfig, root: Option<&str>) -> Vec<BlockDeviceMapping> {
    let root = root.unwrap_or(DEFAULT_ROOT_DEVICE);
    let mut mappings: Vec<BlockDeviceMapping> = c.ami_block_device.iter().map(mapping).collect();
    for d in &c.launch_block_device {
        let Some(name) = d.device_name.as_deref() else {
            continue;
        };
        let in_image = name == root
            || c.ami_block_device
                .iter()
                .any(|a| a.device_name.as_deref() == Some(name));
        if !in_image && !d.no_device {
            mappings.push(
                BlockDeviceMapping::builder()
                    .device_name(name)
                    .no_device("")
                    .build(),
            );
        }
    }
    mappings
}

fn mapping(d: &BlockDevice) -> BlockDeviceMapping {
    let b = BlockDeviceMapping::builder().set_device_name(d.device_name.clone());
    if d.no_device {
        return b.no_device("").build();
    }
    if let Some(name) = &d.virtual_name {
        return b.virtual_name(name).build();
    }
    b.ebs(
        EbsBlockDevice::builder()
            .set_volume_size(d.volume_size)
            .set_volume_type(d.volume_type.as_deref().map(VolumeType::from))
            .set_iops(d.iops)
            .set_throughput(d.throughput)
            .set_encrypted(d.encrypted.or(d.kms_key_id.as_ref().map(|_| true)))
            .set_kms_key_id(d.kms_key_id.clone())
            .set_delete_on_termination(d.delete_on_termination)
            .set_snapshot_id(d.snapshot_id.clone())
            .build(),
    )
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMI: &str = "ami-0e1e769742d1cfb49";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn device(name: &str) -> BlockDevice {
        BlockDevice {
            device_name: Some(name.into()),
            ..BlockDevice::default()
        }
    }

    fn sized(name: &str, size: i32) -> BlockDevice {
        BlockDevice {
            volume_size: Some(size),
            volume_type: Some("gp3".into()),
            ..device(name)
        }
    }

    /// Each mapping as "device: what", in order.
    fn shown(mappings: &[BlockDeviceMapping]) -> Vec<String> {
        mappings
            .iter()
            .map(|m| {
                let what = match (m.no_device(), m.virtual_name(), m.ebs()) {
                    (Some(_), _, _) => "no device".to_string(),
                    (_, Some(v), _) => v.to_string(),
                    (_, _, Some(e)) => format!(
                        "size={:?} type={:?} iops={:?} throughput={:?} encrypted={:?} key={:?} delete={:?} snapshot={:?}",
                        e.volume_size(),
                        e.volume_type().map(|t| t.as_str()),
                        e.iops(),
                        e.throughput(),
                        e.encrypted(),
                        e.kms_key_id(),
                        e.delete_on_termination(),
                        e.snapshot_id()
                    ),
                    _ => "nothing".to_string(),
                };
                format!("{}: {what}", m.device_name().unwrap_or("?"))
            })
            .collect()
    }

    #[test]
    fn launch_volumes_all_go_with_the_instance() {
        let config = AmazonEbsConfig {
            launch_block_device: vec![
                BlockDevice {
                    iops: Some(4000),
                    throughput: Some(250),
                    ..sized("/dev/sdb", 10)
                },
                BlockDevice {
                    snapshot_id: Some("snap-0123456789abcdef0".into()),
                    ..device("/dev/sdc")
                },
                BlockDevice {
                    virtual_name: Some("ephemeral0".into()),
                    ..device("/dev/sdd")
                },
                BlockDevice {
                    no_device: true,
                    ..device("/dev/sde")
                },
            ],
            ..AmazonEbsConfig::default()
        };
        let mappings = launch(&config, "us-east-1", AMI, Some("/dev/xvda")).unwrap();
        assert_eq!(
            shown(&mappings),
            [
                "/dev/sdb: size=Some(10) type=Some(\"gp3\") iops=Some(4000) throughput=Some(250) encrypted=None key=None delete=Some(true) snapshot=None",
                "/dev/sdc: size=None type=None iops=None throughput=None encrypted=None key=None delete=Some(true) snapshot=Some(\"snap-0123456789abcdef0\")",
                "/dev/sdd: ephemeral0",
                "/dev/sde: no device",
            ]
        );
        // The request carries them as they are.
        let client = super::super::client::offline("us-east-1");
        let request = client
            .run_instances()
            .set_block_device_mappings(Some(mappings.clone()));
        assert_eq!(
            request.as_input().get_block_device_mappings().as_deref(),
            Some(mappings.as_slice())
        );
    }

    #[test]
    fn the_root_short_form_and_encrypt_boot_make_the_root_entry() {
        let config = AmazonEbsConfig {
            root_volume_size: Some(20),
            encrypt_boot: Some(true),
            kms_key_id: Some("alias/other".into()),
            region_kms_key_ids: [("us-east-1".to_string(), KEY.to_string())].into(),
            launch_block_device: vec![sized("/dev/sdb", 5)],
            ..AmazonEbsConfig::default()
        };
        let mappings = launch(&config, "us-east-1", AMI, None).unwrap();
        assert_eq!(
            shown(&mappings)[0],
            format!(
                "/dev/xvda: size=Some(20) type=None iops=None throughput=None encrypted=Some(true) key=Some(\"{KEY}\") delete=Some(true) snapshot=None"
            )
        );
        assert_eq!(mappings.len(), 2);

        // Nothing asked of the root: the AMI's own stays.
        let plain = AmazonEbsConfig {
            launch_block_device: vec![sized("/dev/sdb", 5)],
            ..AmazonEbsConfig::default()
        };
        let mappings = launch(&plain, "us-east-1", AMI, Some("/dev/sda1")).unwrap();
        assert_eq!(mappings.len(), 1);
        assert_eq!(mappings[0].device_name(), Some("/dev/sdb"));
    }

    #[test]
    fn a_root_launch_device_is_encrypted_with_the_boot_key_unless_told_otherwise() {
        let config = AmazonEbsConfig {
            encrypt_boot: Some(true),
            kms_key_id: Some(KEY.into()),
            launch_block_device: vec![sized("/dev/sda1", 30)],
            ..AmazonEbsConfig::default()
        };
        let mappings = launch(&config, "us-east-1", AMI, Some("/dev/sda1")).unwrap();
        assert_eq!(
            shown(&mappings),
            [format!(
                "/dev/sda1: size=Some(30) type=Some(\"gp3\") iops=None throughput=None encrypted=Some(true) key=Some(\"{KEY}\") delete=Some(true) snapshot=None"
            )]
        );
        let refused = AmazonEbsConfig {
            launch_block_device: vec![BlockDevice {
                encrypted: Some(false),
                ..sized("/dev/sda1", 30)
            }],
            ..config.clone()
        };
        assert_eq!(
            launch(&refused, "us-east-1", AMI, Some("/dev/sda1"))
                .unwrap_err()
                .to_string(),
            format!(
                "launch_block_device /dev/sda1 is the root device of {AMI} and says `encrypted = false`, but the image is to be encrypted"
            )
        );
        let twice = AmazonEbsConfig {
            root_volume_type: Some("gp3".into()),
            ..config
        };
        assert_eq!(
            launch(&twice, "us-east-1", AMI, Some("/dev/sda1"))
                .unwrap_err()
                .to_string(),
            format!(
                "launch_block_device /dev/sda1 is the root device of {AMI}, which `root_volume_type` also sets; describe the root volume in one place"
            )
        );
    }

    #[test]
    fn the_image_records_the_root_and_what_ami_block_device_lists() {
        let config = AmazonEbsConfig {
            launch_block_device: vec![
                sized("/dev/xvda", 20),
                sized("/dev/sdb", 10),
                sized("/dev/sdc", 5),
                BlockDevice {
                    no_device: true,
                    ..device("/dev/sdf")
                },
            ],
            ami_block_device: vec![
                BlockDevice {
                    delete_on_termination: Some(false),
                    ..device("/dev/sdb")
                },
                BlockDevice {
                    virtual_name: Some("ephemeral0".into()),
                    ..device("/dev/sdd")
                },
                BlockDevice {
                    no_device: true,
                    ..device("/dev/sde")
                },
            ],
            ..AmazonEbsConfig::default()
        };
        let mappings = image(&config, Some("/dev/xvda"));
        assert_eq!(
            shown(&mappings),
            [
                "/dev/sdb: size=None type=None iops=None throughput=None encrypted=None key=None delete=Some(false) snapshot=None",
                "/dev/sdd: ephemeral0",
                "/dev/sde: no device",
                "/dev/sdc: no device",
            ]
        );
        let client = super::super::client::offline("us-east-1");
        let request = client
            .create_image()
            .set_block_device_mappings(Some(mappings.clone()));
        assert_eq!(
            request.as_input().get_block_device_mappings().as_deref(),
            Some(mappings.as_slice())
        );
        assert!(image(&AmazonEbsConfig::default(), None).is_empty());
    }
}
