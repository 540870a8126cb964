//! The SSH key pair: a temporary ed25519 key made here and imported (its
//! private half stays in memory), or the user's existing key pair.

use async_trait::async_trait;
use aws_sdk_ec2::operation::import_key_pair::builders::ImportKeyPairFluentBuilder;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::ResourceType;

use super::client::Api;
use super::{EbsContext, Made, tags};
use crate::builder::{key_file, temporary_key};
use crate::communicator::Credential;
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};

#[derive(Default)]
pub struct KeyPair {
    /// Name of the key pair this step imported (deleted on cleanup).
    imported: Option<String>,
}

#[async_trait]
impl Step<EbsContext> for KeyPair {
    fn name(&self) -> &'static str {
        "create key pair"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        if let Some(name) = ctx.config.ssh_keypair_name.clone() {
            let name = ctx.build.scope.expand(&name).map_err(StepError::failed)?;
            let file = ctx
                .build
                .source
                .ssh
                .ssh_private_key_file
                .clone()
                .unwrap_or_default();
            let credential = key_file(&ctx.build.template, &ctx.build.scope, &file)
                .map_err(StepError::failed)?;
            ctx.client
                .describe_key_pairs()
                .key_names(&name)
                .send()
                .await
                .api("DescribeKeyPairs")
                .map_err(|e| {
                    StepError::failed(format!(
                        "key pair `{name}` (ssh_keypair_name) in {}: {e}",
                        ctx.region
                    ))
                })?;
            ctx.build.events.info(format!("using key pair {name}"));
            ctx.key_name = Some(name);
            ctx.credential = Some(credential);
            return Ok(());
        }
        let name = format!("imgbuild-{}", ctx.build.build_id);
        let (private, public) = temporary_key(&name);
        // Recorded before the call: the name is ours alone, and deleting a key
        // pair that was never made is harmless.
        self.imported = Some(name.clone());
        let out = import_request(ctx, &name, public)
            .send()
            .await
            .api("ImportKeyPair")
            .map_err(|e| {
                StepError::failed(format!("temporary key pair {name} in {}: {e}", ctx.region))
            })?;
        ctx.build.events.info(format!(
            "imported temporary key pair {name} ({})",
            out.key_pair_id().unwrap_or("no id returned")
        ));
        ctx.key_name = Some(name.clone());
        ctx.credential = Some(Credential::Key {
            private_pem: private.into(),
            label: format!("temporary key pair {name}"),
        });
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, _: Ending) -> Vec<Leftover> {
        let Some(name) = self.imported.take() else {
            return Vec::new();
        };
        match ctx
            .client
            .delete_key_pair()
            .key_name(&name)
            .send()
            .await
            .api("DeleteKeyPair")
        {
            Ok(_) => {
                ctx.build.events.info(format!("deleted key pair {name}"));
                Vec::new()
            }
            Err(e) => vec![Made::KeyPair.leftover(&name, &ctx.region, e.to_string())],
        }
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        self.imported
            .iter()
            .map(|name| Made::KeyPair.leftover(name, &ctx.region, ""))
            .collect()
    }
}

/// The ImportKeyPair request for this build's key (sent as is, or with
/// `DryRun` by `build --dry-run`).
pub(super) fn import_request(
    ctx: &EbsContext,
    name: &str,
    public: String,
) -> ImportKeyPairFluentBuilder {
    ctx.client
        .import_key_pair()
        .key_name(name)
        .public_key_material(Blob::new(public.into_bytes()))
        .tag_specifications(tags::at_creation(ResourceType::KeyPair, &ctx.temp_tags))
}
