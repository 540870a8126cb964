//! Configuration of each builder type, as users write it under `[source.NAME]`.

mod amazon_ebs;
mod qemu;

pub use amazon_ebs::{
    AUTO_PRICE, AmazonEbsConfig, AmiFilter, DEFAULT_AMI_NAME, PolicyDocument, SshInterface,
    WaitTimeouts, ami_name_problem, default_region, is_spot_price,
};
pub use qemu::{Accelerator, BootstrapConfig, Compression, QemuConfig};
