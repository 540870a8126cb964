//! Steps every builder shares: connect over SSH, run the provisioners.

use async_trait::async_trait;

use crate::communicator::Communicator;
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};
use crate::provisioner::{self, After, ProvisionError};

use super::HasBuild;

/// Waits for SSH on the target the builder set and opens the build's session.
pub struct Connect;

#[async_trait]
impl<C: HasBuild> Step<C> for Connect {
    fn name(&self) -> &'static str {
        "connect"
    }

    async fn run(&mut self, ctx: &mut C) -> Result<(), StepError> {
        let b = ctx.build();
        let target = b
            .ssh_target
            .clone()
            .ok_or_else(|| StepError::failed("no SSH target was set"))?;
        b.events
            .waiting(&format!("SSH on {}", target.endpoint), target.timeout);
        let comm = Communicator::connect(target, b.cancel.clone())
            .await
            .map_err(StepError::from_error)?;
        b.events.info("connected");
        b.comm = Some(comm);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut C, _: Ending) -> Vec<Leftover> {
        if let Some(comm) = ctx.build().comm.take() {
            comm.close().await;
        }
        Vec::new()
    }
}

/// Runs the template's provisioners that apply to this source, in order.
pub struct Provision;

#[async_trait]
impl<C: HasBuild> Step<C> for Provision {
    fn name(&self) -> &'static str {
        "provision"
    }

    async fn run(&mut self, ctx: &mut C) -> Result<(), StepError> {
        let b = ctx.build();
        let comm = b
            .comm
            .clone()
            .ok_or_else(|| StepError::failed("not connected"))?;
        let template = b.template.clone();
        let cx = provisioner::Context {
            comm: &comm,
            scope: &b.scope,
            template_dir: template.dir(),
            events: &b.events,
            build_id: &b.build_id,
            builder_type: b.source.config.type_name(),
        };
        let mut reconnect = false;
        for p in template.provisioners_for(&b.source.name) {
            if reconnect {
                match provisioner::ensure_connected(&cx).await {
                    Ok(()) => {}
                    Err(ProvisionError::Ssh(crate::communicator::SshError::Cancelled)) => {
                        return Err(StepError::Cancelled);
                    }
                    Err(e) => return Err(StepError::failed(format!("{}: {e}", p.label()))),
                }
            }
            cx.events.info(format!("running {}", p.label()));
            reconnect = provisioner::run(p, &cx)
                .await
                .map_err(StepError::from_error)?
                == After::Disconnected;
        }
        Ok(())
    }
}
