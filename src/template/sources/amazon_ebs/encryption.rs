//! `encrypt_boot` and `region_kms_key_ids`: which key encrypts the image in
//! the build region and each copy, checked at validate time.

use super::AmazonEbsConfig;
use super::block_devices::not_a_kms_key;
use super::default_region;
use super::rules::{is_kms_key, is_region};
use crate::template::check::Checker;

/// EBS's own key in every region: a copy may use its region's without naming it.
pub const DEFAULT_EBS_KEY: &str = "alias/aws/ebs";

impl AmazonEbsConfig {
    /// The key the image is encrypted with in `region` (the build region):
    /// its entry in `region_kms_key_ids`, else `kms_key_id`.
    pub fn boot_key(&self, region: &str) -> Option<&str> {
        self.region_kms_key_ids
            .get(region)
            .or(self.kms_key_id.as_ref())
            .map(String::as_str)
    }

    /// Whether the saved image is encrypted: asked by `encrypt_boot`,
    /// `root_volume_encrypted` or by naming a key for the build region.
    pub fn encrypts_boot(&self, region: &str) -> bool {
        self.encrypt_boot == Some(true)
            || self.root_volume_encrypted == Some(true)
            || self.boot_key(region).is_some()
    }
}

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    for (region, key) in &config.region_kms_key_ids {
        let at = checker.base.key("region_kms_key_ids").key(region);
        if !is_region(region) {
            checker.error_at(
                &at,
                format!("`{region}` is not an AWS region name like eu-west-3"),
            );
        }
        let key = checker.known.expand_known(key);
        if !key.contains("${") && !is_kms_key(&key) {
            checker.error_at(&at, not_a_kms_key(&key));
        }
    }
    let asked_by = [
        (
            "root_volume_encrypted",
            config.root_volume_encrypted == Some(true),
        ),
        ("kms_key_id", config.kms_key_id.is_some()),
    ]
    .into_iter()
    .find_map(|(key, set)| set.then_some(key));
    match (config.encrypt_boot, config.root_volume_encrypted) {
        (Some(true), Some(false)) => {
            checker.error(
                "root_volume_encrypted",
                "`root_volume_encrypted = false` contradicts `encrypt_boot = true`",
            );
        }
        (_, Some(false)) if config.kms_key_id.is_some() => {
            checker.error(
                "root_volume_encrypted",
                "`root_volume_encrypted = false` contradicts `kms_key_id`, which encrypts the root volume",
            );
        }
        (Some(false), _) if asked_by.is_some() => {
            checker.error(
                "encrypt_boot",
                format!(
                    "`encrypt_boot = false` contradicts `{}`",
                    asked_by.unwrap_or_default()
                ),
            );
        }
        _ => {}
    }
    // The rest needs the build region and the copy regions as written.
    let Some(build_region) = known_build_region(config, checker) else {
        return;
    };
    let copies: Vec<(usize, String)> = config
        .ami_regions
        .iter()
        .map(|r| checker.known.expand_known(r))
        .enumerate()
        .filter(|(_, r)| r != &build_region)
        .collect();
    if copies.iter().any(|(_, r)| r.contains("${")) {
        return;
    }
    for region in config.region_kms_key_ids.keys() {
        let at = checker.base.key("region_kms_key_ids").key(region);
        if region == &build_region {
            if config.encrypt_boot == Some(false) {
                checker.error_at(
                    &at,
                    format!(
                        "`encrypt_boot = false`, but this names a key for the build region {region}"
                    ),
                );
            }
            if config
                .kms_key_id
                .as_ref()
                .is_some_and(|k| Some(k) != config.region_kms_key_ids.get(region))
            {
                checker.error_at(
                    &at,
                    format!("`kms_key_id` already names the key of the build region {region}; name it once"),
                );
            }
        } else if is_region(region) && !copies.iter().any(|(_, r)| r == region) {
            checker.error_at(
                &at,
                format!("`{region}` is neither the build region {build_region} nor in `ami_regions`; its key would not be used"),
            );
        }
    }
    // KMS keys belong to one region: a copy encrypted with the build region's
    // own key would silently get its region's default key instead.
    let custom_key = config
        .boot_key(&build_region)
        .filter(|k| *k != DEFAULT_EBS_KEY);
    if custom_key.is_some() {
        for (i, region) in &copies {
            if !config.region_kms_key_ids.contains_key(region) {
                checker
                    .error_at(
                        &checker.base.key("ami_regions").index(*i),
                        format!("the image is encrypted with a key of {build_region}; the copy in `{region}` needs a key of its own in `region_kms_key_ids`"),
                    )
                    .help = Some(format!(
                    "add `region_kms_key_ids = {{ \"{region}\" = \"alias/…\" }}`, or \"{DEFAULT_EBS_KEY}\" for EBS's default key there"
                ));
            }
        }
    }
}

/// The build region, when validate can know it: written, or from the standard chain.
fn known_build_region(config: &AmazonEbsConfig, checker: &Checker<'_>) -> Option<String> {
    let written = config
        .region
        .as_deref()
        .map(|r| checker.known.expand_known(r))
        .filter(|r| !r.is_empty());
    match written {
        Some(r) if r.contains("${") => None,
        Some(r) => Some(r),
        None => default_region(),
    }
}
