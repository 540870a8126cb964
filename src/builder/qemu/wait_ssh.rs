//! Waiting for the guest's SSH server. Connection attempts start at once;
//! when the serial console says sshd has started, they start afresh, so the
//! build connects within moments of sshd being ready instead of whenever the
//! current attempt (perhaps held by QEMU's forwarder while the guest was
//! still booting) gives up.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::console::ConsoleWatch;
use super::{QemuContext, failed, save_console_log};
use crate::communicator::{Communicator, SshError, SshTarget};
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};

/// How often the console and QEMU are looked at while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Waits for SSH, giving up early if QEMU exits; errors name the serial log.
pub struct WaitForSsh;

#[async_trait]
impl Step<QemuContext> for WaitForSsh {
    fn name(&self) -> &'static str {
        "wait for SSH"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let target = ctx
            .build
            .ssh_target
            .clone()
            .ok_or_else(|| failed("no SSH target"))?;
        ctx.build
            .events
            .waiting(&format!("SSH on {}", target.endpoint), target.timeout);
        let result = connect(ctx, target).await;
        save_console_log(ctx);
        match result {
            Ok(comm) => {
                ctx.build.events.info("connected");
                ctx.build.comm = Some(comm);
                Ok(())
            }
            Err(e) => Err(failed(format!(
                "{e}; the guest's serial console is in {}",
                ctx.console_log.display()
            ))),
        }
    }

    async fn cleanup(&mut self, ctx: &mut QemuContext, _: Ending) -> Vec<Leftover> {
        if let Some(comm) = ctx.build.comm.take() {
            comm.close().await;
        }
        save_console_log(ctx);
        Vec::new()
    }
}

type Connecting = std::pin::Pin<Box<dyn Future<Output = Result<Communicator, SshError>> + Send>>;

/// One run of the communicator's connect loop, stopped by its own token
/// (which the connection, once made, keeps for its commands).
fn start_connecting(
    target: &SshTarget,
    build_cancel: &CancellationToken,
) -> (Connecting, CancellationToken) {
    let stop = build_cancel.child_token();
    (
        Box::pin(Communicator::connect(target.clone(), stop.clone())),
        stop,
    )
}

/// Connects, starting afresh once when the console says sshd has started:
/// the attempt under way may be a connection QEMU has held since before sshd
/// listened, or a wait before the next try. The abandoned loop stops at its
/// next look at its token, before any handshake it has not begun.
async fn connect(ctx: &mut QemuContext, target: SshTarget) -> Result<Communicator, String> {
    let cancel = ctx.build.cancel.clone();
    let (mut connecting, mut stop) = start_connecting(&target, &cancel);
    let mut console = ctx
        .machine
        .as_ref()
        .map(|m| ConsoleWatch::new(m.spec.console_log()));
    let mut look = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            r = &mut connecting => return r.map_err(|e| e.to_string()),
            _ = look.tick() => {
                if let Some(m) = ctx.machine.as_mut()
                    && let Some(status) = m.exited()
                {
                    stop.cancel();
                    return Err(format!("QEMU exited while booting ({status}) {}", m.stderr_text()));
                }
                if console.as_mut().is_some_and(ConsoleWatch::sshd_started) {
                    tracing::debug!("the guest's console says sshd has started; connecting afresh");
                    console = None;
                    stop.cancel();
                    (connecting, stop) = start_connecting(&target, &cancel);
                }
            }
        }
    }
}
