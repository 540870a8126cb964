//! Builders: one per source type, each a list of steps around the shared
//! connect and provision steps. A builder knows its own platform only.

pub mod amazon_ebs;
pub mod packages;
pub mod qemu;
mod rebuild;
pub(crate) mod ssh_host;
pub mod steps;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::communicator::{Communicator, Credential, Endpoint, SshTarget};
use crate::events::{Artifact, EventSink};
use crate::pipeline::{RunOptions, RunReport};
use crate::template::{RebuildPolicy, Scope, Source, Template};

/// What every build has, whatever its builder.
pub struct BuildContext {
    pub template: Arc<Template>,
    pub source: Source,
    pub build_id: String,
    /// Template values plus `build.*` and, as the build learns them, `source.*`.
    pub scope: Scope,
    pub events: EventSink,
    pub cancel: CancellationToken,
    /// Set by the builder before the connect step.
    pub ssh_target: Option<SshTarget>,
    pub comm: Option<Communicator>,
    pub artifacts: Vec<Artifact>,
    /// Builder-specific facts for the manifest (AMI name, tags, source AMI…).
    pub manifest: serde_json::Map<String, serde_json::Value>,
    /// Whether an unchanged build may reuse the family's newest image.
    pub rebuild: RebuildPolicy,
    /// `build --dry-run`: check what the build would do, make nothing.
    pub dry_run: bool,
    /// The machine's packages, once the provisioners are done.
    pub packages: Option<crate::inventory::Inventory>,
    /// The previous build's, to say what changed.
    pub previous_packages: Option<packages::PreviousPackages>,
}

/// Gives the shared steps access to the shared part of a builder's context.
pub trait HasBuild: Send {
    fn build(&mut self) -> &mut BuildContext;
}

impl HasBuild for BuildContext {
    fn build(&mut self) -> &mut BuildContext {
        self
    }
}

/// Runs the build for `ctx.source` with its builder's steps.
pub async fn run(ctx: BuildContext, opts: &RunOptions) -> (RunReport, BuildContext) {
    let config = ctx.source.config.clone();
    if ctx.dry_run {
        return config.dry_run(ctx, opts).await;
    }
    config.build(ctx, opts).await
}

/// The fingerprint of building `source` now: its base resolved the way a
/// build would resolve it (an EC2 lookup, a checksum, the package archive).
pub async fn fingerprint(
    template: &Template,
    source: &Source,
) -> Result<crate::fingerprint::Fingerprint, String> {
    let base = source.config.fingerprint_base(template).await?;
    crate::fingerprint::compute(template, source, base)
}

pub const DEFAULT_SSH_TIMEOUT: Duration = Duration::from_secs(300);

/// The SSH target for a source: the builder's address and credential, with
/// the template's overrides (`ssh_host`, `ssh_port`, bastion) applied.
pub fn ssh_target(
    template: &Template,
    source: &Source,
    scope: &Scope,
    host: &str,
    port: u16,
    default_user: &str,
    credential: Credential,
) -> Result<SshTarget, String> {
    let ssh = &source.ssh;
    let expand = |s: &str| scope.expand(s).map_err(|e| e.to_string());
    let bastion = match &ssh.ssh_bastion_host {
        Some(host) => {
            let credential = match &ssh.ssh_bastion_private_key_file {
                Some(file) => key_file(template, scope, file)?,
                None => credential.clone(),
            };
            Some(Endpoint {
                host: expand(host)?,
                port: ssh.ssh_bastion_port.unwrap_or(22),
                user: expand(
                    ssh.ssh_bastion_username
                        .as_deref()
                        .or(ssh.ssh_username.as_deref())
                        .unwrap_or(default_user),
                )?,
                credential,
            })
        }
        None => None,
    };
    Ok(SshTarget {
        endpoint: Endpoint {
            host: match ssh.ssh_host.as_deref().map(expand).transpose()? {
                Some(h) if !h.is_empty() => h,
                _ => host.to_string(),
            },
            port: match ssh.ssh_port.as_ref().map(|p| expand(&p.0)).transpose()? {
                Some(p) if !p.is_empty() => p
                    .parse()
                    .map_err(|_| format!("ssh_port expands to `{p}`, which is not a port"))?,
                _ => port,
            },
            user: expand(ssh.ssh_username.as_deref().unwrap_or(default_user))?,
            credential,
        },
        timeout: ssh.ssh_timeout.map(|t| t.0).unwrap_or(DEFAULT_SSH_TIMEOUT),
        host_key_fingerprint: ssh.ssh_host_key_fingerprint.clone(),
        keepalive: ssh
            .ssh_keepalive_interval
            .map(|t| t.0)
            .unwrap_or(Duration::from_secs(15)),
        bastion,
    })
}

/// Reads a private key file named in the template (relative to the template).
pub fn key_file(template: &Template, scope: &Scope, file: &str) -> Result<Credential, String> {
    let path = scope.expand(file).map_err(|e| e.to_string())?;
    let path = template.dir().join(shellexpand_home(&path));
    Credential::from_file(&path)
        .map_err(|e| format!("cannot read private key {}: {e}", path.display()))
}

fn shellexpand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

/// A fresh ed25519 key pair: (OpenSSH private key, `ssh-ed25519 …` public key).
pub fn temporary_key(comment: &str) -> (String, String) {
    let mut key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .expect("ed25519 key generation cannot fail with the OS RNG");
    key.set_comment(comment);
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .expect("encode key")
        .to_string();
    let public = key.public_key().to_openssh().expect("encode public key");
    (private, public)
}

/// A short random id for a build: names temporary resources and remote files.
pub fn new_build_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 6];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
