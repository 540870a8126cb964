//! Configuration of each builder type, as users write it under `[source.NAME]`.

mod amazon_ebs;
mod qemu;

pub use amazon_ebs::{AmazonEbsConfig, AmiFilter, SshInterface, WaitTimeouts};
pub use qemu::{Accelerator, BootstrapConfig, Compression, QemuConfig};
