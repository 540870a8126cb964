//! Configuration of each builder type, as users write it under `[source.NAME]`.

mod amazon_ebs;
mod qemu;

pub use amazon_ebs::{
    AUTO_PRICE, AmazonEbsConfig, AmiFilter, BlockDevice, DEFAULT_AMI_NAME, DEFAULT_EBS_KEY,
    PUBLIC_GROUP, PolicyDocument, SshInterface, SubnetFilter, VpcFilter, WaitTimeouts,
    ami_name_problem, default_region, is_ami_id, is_spot_price, root_short_form,
};
pub use qemu::{Accelerator, BootstrapConfig, Compression, QemuConfig};
