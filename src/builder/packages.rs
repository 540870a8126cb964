//! The step that reads the machine's package inventory over the build's SSH
//! session, once the provisioners are done, and compares it with the
//! previous build of the family.

use async_trait::async_trait;

use super::HasBuild;
use crate::inventory::{Inventory, diff};
use crate::pipeline::{Step, StepError};

/// An earlier build's inventory, and how to name that build in messages.
#[derive(Debug, Clone)]
pub struct PreviousPackages {
    /// `build 3 (ami-0123…)`
    pub label: String,
    /// The image it describes (an AMI id or a qcow2 path).
    pub image: String,
    pub inventory: Inventory,
}

/// Reads the inventory; a machine without dpkg or rpm only gets a warning.
pub struct CollectPackages;

#[async_trait]
impl<C: HasBuild> Step<C> for CollectPackages {
    fn name(&self) -> &'static str {
        "list packages"
    }

    async fn run(&mut self, ctx: &mut C) -> Result<(), StepError> {
        let b = ctx.build();
        let comm = b
            .comm
            .clone()
            .ok_or_else(|| StepError::failed("not connected"))?;
        let listed = comm
            .output(crate::inventory::COMMAND)
            .await
            .map_err(|e| e.to_string())
            .and_then(|out| Inventory::parse(&out));
        let inventory = match listed {
            Ok(i) => i,
            Err(e) => {
                b.events
                    .warn(format!("no package inventory for this image: {e}"));
                return Ok(());
            }
        };
        b.events.info(format!(
            "{} packages installed ({}, {})",
            inventory.packages.len(),
            inventory.manager,
            inventory.os
        ));
        let m = &mut b.manifest;
        record(m, &inventory);
        if let Some(previous) = &b.previous_packages {
            let changes = diff::diff(&previous.inventory, &inventory);
            b.events.info(format!(
                "packages since {}: {}",
                previous.label,
                changes.summary()
            ));
            let mut recorded = serde_json::to_value(&changes).unwrap_or_default();
            recorded["compared_with"] = previous.label.clone().into();
            m.insert("package_changes".into(), recorded);
        }
        b.packages = Some(inventory);
        Ok(())
    }
}

/// Manifest facts of an inventory: the list, its hash, the system.
pub fn record(m: &mut serde_json::Map<String, serde_json::Value>, inventory: &Inventory) {
    m.insert("packages_sha256".into(), inventory.sha256().into());
    m.insert("package_manager".into(), inventory.manager.clone().into());
    m.insert("os".into(), inventory.os.clone().into());
    m.insert(
        "packages".into(),
        serde_json::to_value(&inventory.packages).unwrap_or_default(),
    );
}
