//! Provisioners: what a template does to the machine, through the
//! communicator only. Builders never see inside them.
//!
//! A provisioner type is one module that owns its settings (what a template
//! writes under `[[provisioner]]`), their load-time checks, its line in
//! `inspect`, and what it does during a build, plus one line in [`KINDS`].

mod ansible;
mod ansible_local;
mod file;
mod local;
mod shell;
mod shell_local;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::communicator::{Communicator, Progress, SshError};
use crate::events::EventSink;
use crate::template::check::Checker;
use crate::template::interpolate::InterpolationError;
use crate::template::value::Value;
use crate::template::{Provisioner, Scope};
use crate::wait::WaitParams;

pub use file::{Direction, FileConfig};
pub use shell::ShellConfig;

use crate::template::provisioners::{AnsibleConfig, AnsibleLocalConfig, ShellLocalConfig};

/// Every provisioner type, in the order error messages list them.
pub const KINDS: &[Kind] = &[
    Kind::of::<ShellConfig>(),
    Kind::of::<FileConfig>(),
    Kind::of::<AnsibleConfig>(),
    Kind::of::<AnsibleLocalConfig>(),
    Kind::of::<ShellLocalConfig>(),
];

/// A provisioner's settings once loaded: what the rest of imgbuild asks of them.
#[async_trait]
pub trait ProvisionerConfig: Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    /// Paths on this machine, as written, whose content goes into the image
    /// (scripts, uploads, playbooks): the build's fingerprint covers them.
    fn local_inputs(&self) -> Vec<&str> {
        Vec::new()
    }
    /// What it does, in a few words, for `inspect`.
    fn summary(&self) -> String;
    /// Does it once. Retries and `pause_before` are the caller's; `timeout`
    /// is the provisioner's, because only it knows what to stop.
    async fn run(&self, p: &Provisioner, cx: &Context<'_>) -> Result<After, ProvisionError>;
}

/// What each provisioner type declares about its settings.
pub trait ProvisionerSchema: DeserializeOwned + ProvisionerConfig + 'static {
    const TYPE: &'static str;
    /// Checks that need more than types: required combinations, files that must exist.
    fn check(&self, checker: &mut Checker<'_>);
}

/// One provisioner type: its name, its keys, and how to load it.
pub struct Kind {
    pub name: &'static str,
    pub fields: fn() -> &'static [&'static str],
    pub load: fn(Value, &mut Checker<'_>) -> Option<Arc<dyn ProvisionerConfig>>,
}

impl Kind {
    const fn of<T: ProvisionerSchema>() -> Kind {
        Kind {
            name: T::TYPE,
            fields: crate::template::fields_of::<T>,
            load: load::<T>,
        }
    }
}

fn load<T: ProvisionerSchema>(
    value: Value,
    checker: &mut Checker<'_>,
) -> Option<Arc<dyn ProvisionerConfig>> {
    let config: T = checker.deserialize(value)?;
    config.check(checker);
    Some(Arc::new(config))
}

pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

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

/// A provisioner that failed, named by its label (kind, file and line).
#[derive(Debug, thiserror::Error)]
#[error("{provisioner}: {error}")]
pub struct Failed {
    pub provisioner: String,
    #[source]
    pub error: ProvisionError,
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

/// Runs one provisioner with its pause, timeout and retries; its error
/// names it.
pub async fn run(p: &Provisioner, cx: &Context<'_>) -> Result<After, Failed> {
    run_unlabelled(p, cx).await.map_err(|error| Failed {
        provisioner: p.label(),
        error,
    })
}

async fn run_unlabelled(p: &Provisioner, cx: &Context<'_>) -> Result<After, ProvisionError> {
    if let Some(pause) = p.common.pause_before {
        cx.events
            .info(format!("pausing {pause} before {}", p.label()));
        tokio::time::sleep(pause.0).await;
    }
    let mut retries = WaitParams::fixed(Duration::from_secs(2), p.common.max_retries).start();
    loop {
        let result = p.kind.run(p, cx).await;
        match result {
            Err(ProvisionError::Ssh(SshError::Cancelled)) => return result,
            Err(e) => match retries.next_delay() {
                Some(delay) => {
                    cx.events.warn(format!(
                        "{} failed ({e}); retry {} of {}",
                        p.label(),
                        retries.tries() - 1,
                        p.common.max_retries
                    ));
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            Ok(after) => return Ok(after),
        }
    }
}

/// After an expected disconnect: keep the session if it still works, else
/// reconnect (waiting, as the first connect did, for the machine to be back).
pub async fn ensure_connected(cx: &Context<'_>) -> Result<(), ProvisionError> {
    let alive = cx
        .comm
        .exec("true", Some(Duration::from_secs(10)), |_, _| {})
        .await;
    if alive.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    cx.events
        .info(format!("reconnecting to {}", cx.comm.target().endpoint));
    match cx.comm.reconnect().await {
        Ok(()) => Ok(()),
        Err(SshError::Cancelled) => Err(ProvisionError::Ssh(SshError::Cancelled)),
        Err(e) => Err(ProvisionError::Failed(format!(
            "reconnecting after an expected disconnect: {e}"
        ))),
    }
}

/// Emits transfer progress as events, labelled by file.
fn progress(events: &EventSink, label: String) -> Progress {
    let events = events.clone();
    Arc::new(move |done, total| events.progress(&label, done, total))
}
