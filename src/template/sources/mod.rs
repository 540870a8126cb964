//! Configuration of each builder type, as users write it under `[source.NAME]`.

mod amazon_ebs;
mod qemu;

pub use amazon_ebs::{
    AmazonEbsConfig, AmiFilter, DEFAULT_AMI_NAME, SshInterface, SubnetFilter, VpcFilter,
    WaitTimeouts, ami_name_problem, default_region, is_ami_id,
};
pub use qemu::{Accelerator, BootstrapConfig, Compression, QemuConfig};
