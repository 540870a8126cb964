//! The encryption of each copy of the image: `Encrypted` and `KmsKeyId` of
//! CopyImage, from `region_kms_key_ids` and how the image itself is encrypted.

use crate::template::sources::{AmazonEbsConfig, DEFAULT_EBS_KEY};

/// A copy would need a key of its own region; found at build time when the
/// build region was not known to validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the image is encrypted with a key of {build_region}; the copy in {region} needs a key of its own in `region_kms_key_ids`"
)]
pub struct CopyKeyMissing {
    pub region: String,
    pub build_region: String,
}

/// CopyImage's `Encrypted` and `KmsKeyId` for the copy in `region`: its key
/// in `region_kms_key_ids`; else, when the image is encrypted, the region's
/// default EBS key (a key of the build region cannot serve there).
pub fn copy_encryption(
    c: &AmazonEbsConfig,
    build_region: &str,
    region: &str,
) -> Result<(Option<bool>, Option<String>), CopyKeyMissing> {
    if let Some(key) = c.region_kms_key_ids.get(region) {
        return Ok((Some(true), Some(key.clone())));
    }
    if !c.encrypts_boot(build_region) {
        return Ok((None, None));
    }
    let custom = c
        .boot_key(build_region)
        .is_some_and(|k| k != DEFAULT_EBS_KEY);
    if custom {
        return Err(CopyKeyMissing {
            region: region.into(),
            build_region: build_region.into(),
        });
    }
    Ok((Some(true), None))
}

/// Every copy can be encrypted as asked: checked before the instance is
/// launched, for a build region only known at build time.
pub fn check_copies(
    c: &AmazonEbsConfig,
    build_region: &str,
    copy_regions: &[String],
) -> Result<(), CopyKeyMissing> {
    for region in copy_regions {
        copy_encryption(c, build_region, region)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn each_copy_is_encrypted_with_its_regions_key() {
        let eu = "arn:aws:kms:eu-west-1:123456789012:alias/images";
        let config = AmazonEbsConfig {
            encrypt_boot: Some(true),
            kms_key_id: Some(KEY.into()),
            region_kms_key_ids: [("eu-west-1".to_string(), eu.to_string())].into(),
            ..AmazonEbsConfig::default()
        };
        assert_eq!(
            copy_encryption(&config, "us-east-1", "eu-west-1").unwrap(),
            (Some(true), Some(eu.to_string()))
        );
        assert_eq!(
            copy_encryption(&config, "us-east-1", "eu-west-3")
                .unwrap_err()
                .to_string(),
            "the image is encrypted with a key of us-east-1; the copy in eu-west-3 needs a key of its own in `region_kms_key_ids`"
        );
        let default_key = AmazonEbsConfig {
            encrypt_boot: Some(true),
            ..AmazonEbsConfig::default()
        };
        assert_eq!(
            copy_encryption(&default_key, "us-east-1", "eu-west-3").unwrap(),
            (Some(true), None)
        );
        assert_eq!(
            copy_encryption(&AmazonEbsConfig::default(), "us-east-1", "eu-west-3").unwrap(),
            (None, None)
        );
        // A key for a copy's region encrypts that copy even of a plain image.
        let only_copy = AmazonEbsConfig {
            region_kms_key_ids: [("eu-west-1".to_string(), eu.to_string())].into(),
            ..AmazonEbsConfig::default()
        };
        assert_eq!(
            copy_encryption(&only_copy, "us-east-1", "eu-west-1").unwrap(),
            (Some(true), Some(eu.to_string()))
        );
        assert!(!only_copy.encrypts_boot("us-east-1"));
    }
}
