//! What the AMI says about the machines launched from it: `ena_support`,
//! `sriov_support`, `boot_mode`, `tpm_support`, `uefi_data`.
//!
//! amazon-ebs makes the AMI with CreateImage, which takes no such settings:
//! ENA and SR-IOV are set on the stopped instance (as Packer does), and the
//! image inherits them; the boot mode and NitroTPM support come from the
//! source AMI, so these two are checked against it before anything is
//! launched; UEFI variables can only be given to RegisterImage, so
//! `uefi_data` is refused.

use super::AmazonEbsConfig;
use crate::template::check::Checker;

pub const BOOT_MODES: &[&str] = &["legacy-bios", "uefi", "uefi-preferred"];

/// The only NitroTPM version EC2 offers.
pub const TPM_V2: &str = "v2.0";

pub(super) fn check(config: &AmazonEbsConfig, checker: &mut Checker<'_>) {
    let boot_mode = config.boot_mode.as_deref();
    if let Some(mode) = boot_mode
        && !BOOT_MODES.contains(&mode)
    {
        checker.error(
            "boot_mode",
            format!(
                "`{mode}` is not a boot mode; use one of {}",
                BOOT_MODES.join(", ")
            ),
        );
    }
    if let Some(tpm) = &config.tpm_support {
        if tpm != TPM_V2 {
            checker.error(
                "tpm_support",
                format!("`tpm_support` may only be \"{TPM_V2}\", not `{tpm}`"),
            );
        } else if boot_mode == Some("legacy-bios") {
            // Left out, the source AMI's boot mode is checked at build time.
            checker.error(
                "tpm_support",
                "`tpm_support` needs `boot_mode = \"uefi\"` (or \"uefi-preferred\"): NitroTPM works only with UEFI boot",
            );
        }
    }
    if config.uefi_data.is_some() {
        checker
            .error(
                "uefi_data",
                "amazon-ebs cannot set `uefi_data`: it makes the AMI with CreateImage, which keeps the build instance's UEFI variables",
            )
            .help = Some(
            "start from a source AMI registered with these UEFI variables; the build instance and the new AMI keep them"
                .into(),
        );
    }
}
