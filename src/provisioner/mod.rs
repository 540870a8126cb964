//! Provisioners: what a template does to the machine, through the
//! communicator only. Builders never see inside them.

mod ansible;
mod ansible_local;
mod file;
mod local;
mod shell;
mod shell_local;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::communicator::{Communicator, Progress, SshError};
use crate::events::EventSink;
use crate::template::interpolate::InterpolationError;
use crate::template::{Provisioner, ProvisionerKind, Scope};

/// What a provisioner needs from the build running it.
pub struct Context<'a> {
    pub comm: &'a Communicator,
    pub scope: &'a Scope,
    /// Relative local paths are resolved against the template's folder.
    pub template_dir: &'a Path,
    pub events: &'a EventSink,
    pub build_id: &'a str,
    pub builder_type: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Interpolation(#[from] InterpolationError),
    #[error("{context}: {source}")]
    Local {
        context: String,
        source: std::io::Error,
    },
}

/// What running one provisioner did to the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Connected,
    /// The machine went away as expected (a reboot): reconnect before going on.
    Disconnected,
}

/// Runs one provisioner with its pause, timeout and retries.
pub async fn run(p: &Provisioner, cx: &Context<'_>) -> Result<After, ProvisionError> {
    if let Some(pause) = p.common.pause_before {
        cx.events
            .info(format!("pausing {pause} before {}", p.label()));
        tokio::time::sleep(pause.0).await;
    }
    let mut attempt = 0;
    loop {
        let result = match &p.kind {
            ProvisionerKind::Shell(c) => shell::run(p, c, cx).await,
            ProvisionerKind::File(c) => match p.common.timeout {
                Some(limit) => tokio::time::timeout(limit.0, file::run(c, cx))
                    .await
                    .unwrap_or(Err(ProvisionError::Ssh(SshError::TimedOut(limit.0)))),
                None => file::run(c, cx).await,
            },
            // These apply `p.common.timeout` themselves, one module each.
            ProvisionerKind::Ansible(c) => ansible::run(p, c, cx).await,
            ProvisionerKind::AnsibleLocal(c) => ansible_local::run(p, c, cx).await,
            ProvisionerKind::ShellLocal(c) => shell_local::run(p, c, cx).await,
        };
        match result {
            Err(ProvisionError::Ssh(SshError::Cancelled)) => return result,
            Err(e) if attempt < p.common.max_retries => {
                attempt += 1;
                cx.events.warn(format!(
                    "{} failed ({e}); retry {attempt} of {}",
                    p.label(),
                    p.common.max_retries
                ));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

/// Emits transfer progress as events, labelled by file.
fn progress(events: &EventSink, label: String) -> Progress {
    let events = events.clone();
    Arc::new(move |done, total| events.progress(&label, done, total))
}
