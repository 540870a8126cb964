//! `[[source.NAME.launch_block_device]]` (the build instance's volumes) and
//! `[[source.NAME.ami_block_device]]` (the mappings recorded in the AMI),
//! checked at validate time.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::rules::{is_device_name, is_kms_key, is_snapshot_id};
use super::{AmazonEbsConfig, VOLUME_TYPES};
use crate::template::check::Checker;
use crate::template::document::KeyPath;

/// One block device mapping: an EBS volume, an instance store volume
/// (`virtual_name`), or a device the AMI maps that is left out (`no_device`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDevice {
    pub device_name: Option<String>,
    pub volume_size: Option<i32>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub delete_on_termination: Option<bool>,
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub no_device: bool,
    /// `ephemeral0` … `ephemeral23`: an instance store volume.
    pub virtual_name: Option<String>,
}

impl BlockDevice {
    /// The EBS settings written, by name, for "does not apply" errors.
    fn ebs_settings(&self) -> Vec<&'static str> {
        [
            ("volume_size", self.volume_size.is_some()),
            ("volume_type", self.volume_type.is_some()),
            ("iops", self.iops.is_some()),
            ("throughput", self.throughput.is_some()),
            ("encrypted", self.encrypted.is_some()),
            ("kms_key_id", self.kms_key_id.is_some()),
            (
                "delete_on_termination",
                self.delete_on_termination.is_some(),
            ),
            ("snapshot_id", self.snapshot_id.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// Devices that are the root of nearly every Linux AMI (Amazon Linux, Ubuntu,
/// Debian, RHEL). The AMI's own root device is known only at build time; the
/// build checks again against it.
const USUAL_ROOT_DEVICES: &[&str] = &["/dev/xvda", "/dev/sda1"];

/// IOPS each provisioned volume type takes.
const IOPS_RANGES: &[(&str, i32, i32)] = &[
    ("gp3", 3000, 16000),
    ("io1", 100, 64000),
    ("io2", 100, 256000),
];

/// The `root_volume_*` settings the template writes: the short form of the root entry.
pub fn root_short_form(config: &AmazonEbsConfig) -> Option<&'static str> {
    [
        ("root_volume_size", config.root_volume_size.is_some()),
        ("root_volume_type", config.root_volume_type.is_some()),
        (
            "root_volume_encrypted",
            config.root_volume_encrypted.is_some(),
        ),
    ]
    .into_iter()
    .find_map(|(key, set)| set.then_some(key))
}

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    for (list, devices) in [
        ("launch_block_device", &config.launch_block_device),
        ("ami_block_device", &config.ami_block_device),
    ] {
        let mut seen = BTreeSet::new();
        for (i, device) in devices.iter().enumerate() {
            let at = checker.base.key(list).index(i);
            check_device(list, device, &at, checker);
            if let Some(name) = device.device_name.as_deref().filter(|n| !n.contains("${"))
                && !seen.insert(name)
            {
                checker.error_at(
                    &at.key("device_name"),
                    format!("`{name}` is mapped twice in `{list}`"),
                );
            }
        }
    }
    for (i, device) in config.ami_block_device.iter().enumerate() {
        let Some(name) = device.device_name.as_deref() else {
            continue;
        };
        // CreateImage takes the instance's own volumes as they are, but for
        // whether instances launched from the AMI delete them.
        let the_instances = USUAL_ROOT_DEVICES.contains(&name)
            || config
                .launch_block_device
                .iter()
                .any(|l| l.device_name.as_deref() == Some(name));
        if !the_instances {
            continue;
        }
        let at = checker.base.key("ami_block_device").index(i);
        for setting in device.ebs_settings() {
            if setting != "delete_on_termination" {
                checker
                    .error_at(
                        &at.key(setting),
                        format!("`{setting}` of {name} comes from the build instance's volume: of a volume the instance has, the AMI changes only `delete_on_termination`"),
                    )
                    .help = Some(format!("set it on the `launch_block_device` of {name} (for the root, `root_volume_*` does too)"));
            }
        }
    }
    for (i, device) in config.launch_block_device.iter().enumerate() {
        let at = checker.base.key("launch_block_device").index(i);
        if device.delete_on_termination == Some(false) {
            let d = checker.error_at(
                &at.key("delete_on_termination"),
                "the build instance's volumes are deleted with it; `delete_on_termination = false` would leave this one behind",
            );
            d.help = Some(
                "to keep the volume on instances launched from the image, set `delete_on_termination = false` on the `ami_block_device` of the same device"
                    .into(),
            );
        }
        if let (Some(name), Some(short)) = (device.device_name.as_deref(), root_short_form(config))
            && USUAL_ROOT_DEVICES.contains(&name)
        {
            checker.error_at(
                &at.key("device_name"),
                format!("`{name}` is the root device, which `{short}` already sets; describe the root volume in one place"),
            );
        }
    }
}

fn check_device(list: &str, device: &BlockDevice, at: &KeyPath, checker: &mut Checker<'_>) {
    let known = |value: &Option<String>| {
        value
            .as_deref()
            .map(|v| checker.known.expand_known(v))
            .filter(|v| !v.contains("${"))
    };
    let (name, kind, snapshot, key, virtual_name) = (
        known(&device.device_name),
        known(&device.volume_type),
        known(&device.snapshot_id),
        known(&device.kms_key_id),
        known(&device.virtual_name),
    );
    match (&device.device_name, &name) {
        (None, _) => {
            checker.error_at(at, format!("each `{list}` needs a `device_name`"));
        }
        (Some(_), Some(name)) if !is_device_name(name) => {
            checker
                .error_at(
                    &at.key("device_name"),
                    format!("`{name}` is not a device name like /dev/sdf or /dev/xvdf"),
                )
                .help = Some("EC2 names devices /dev/sd[a-z] or /dev/xvd[a-z], the root often /dev/xvda or /dev/sda1".into());
        }
        _ => {}
    }
    let ebs = device.ebs_settings();
    if device.no_device || device.virtual_name.is_some() {
        let why = if device.no_device {
            "with `no_device = true`".to_string()
        } else {
            "to an instance store volume (`virtual_name`)".to_string()
        };
        if device.no_device && device.virtual_name.is_some() {
            checker.error_at(
                &at.key("virtual_name"),
                format!("`virtual_name` does not apply {why}"),
            );
        }
        for setting in ebs {
            checker.error_at(
                &at.key(setting),
                format!("`{setting}` does not apply {why}"),
            );
        }
        if let Some(v) = &virtual_name
            && !is_instance_store_name(v)
        {
            checker.error_at(
                &at.key("virtual_name"),
                format!("`{v}` is not an instance store name like ephemeral0"),
            );
        }
        return;
    }
    if let Some(kind) = &kind
        && !VOLUME_TYPES.contains(&kind.as_str())
    {
        checker.error_at(
            &at.key("volume_type"),
            format!(
                "unknown volume type `{kind}`; use one of {}",
                VOLUME_TYPES.join(", ")
            ),
        );
    }
    if let Some(size) = device.volume_size
        && !(1..=65536).contains(&size)
    {
        checker.error_at(
            &at.key("volume_size"),
            "`volume_size` is in GiB, from 1 to 65536",
        );
    }
    let range = kind
        .as_deref()
        .and_then(|k| IOPS_RANGES.iter().find(|(t, _, _)| *t == k));
    match (device.iops, range) {
        (Some(_), None) if kind.is_some() || device.volume_type.is_none() => {
            checker.error_at(
                &at.key("iops"),
                "`iops` applies only to io1, io2 and gp3 volumes (`volume_type`)",
            );
        }
        (Some(iops), Some((kind, low, high))) if !(*low..=*high).contains(&iops) => {
            checker.error_at(
                &at.key("iops"),
                format!("`iops` of a {kind} volume is from {low} to {high}"),
            );
        }
        (None, Some((kind @ ("io1" | "io2"), _, _))) => {
            checker.error_at(
                &at.key("volume_type"),
                format!("an {kind} volume needs `iops`"),
            );
        }
        _ => {}
    }
    if let Some(throughput) = device.throughput {
        if kind.is_some() && kind.as_deref() != Some("gp3") || device.volume_type.is_none() {
            checker.error_at(
                &at.key("throughput"),
                "`throughput` applies only to gp3 volumes (`volume_type`)",
            );
        } else if !(125..=1000).contains(&throughput) {
            checker.error_at(
                &at.key("throughput"),
                "`throughput` is in MiB/s, from 125 to 1000",
            );
        }
    }
    if let Some(snapshot) = &snapshot
        && !is_snapshot_id(snapshot)
    {
        checker
            .error_at(
                &at.key("snapshot_id"),
                format!("`{snapshot}` is not a snapshot id"),
            )
            .help = Some("snapshot ids look like `snap-0123456789abcdef0`".into());
    }
    if let Some(key) = &key {
        if !is_kms_key(key) {
            checker.error_at(&at.key("kms_key_id"), not_a_kms_key(key));
        } else if device.encrypted == Some(false) {
            checker.error_at(
                &at.key("kms_key_id"),
                "`kms_key_id` encrypts the volume, which `encrypted = false` says not to",
            );
        }
    }
}

/// The error for a value that is no KMS key reference.
pub(super) fn not_a_kms_key(value: &str) -> String {
    format!("`{value}` is not a KMS key id, key ARN or `alias/NAME`")
}

fn is_instance_store_name(s: &str) -> bool {
    s.strip_prefix("ephemeral")
        .and_then(|n| n.parse::<u8>().ok())
        .is_some_and(|n| n <= 23)
}
