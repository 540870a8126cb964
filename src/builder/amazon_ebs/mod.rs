//! `type = "amazon-ebs"`: launch an instance from a base AMI, provision it
//! over SSH, stop it and save it as a new AMI (copied and shared as asked).
//!
//! Every step records the ids it gets the moment EC2 returns them, so its
//! cleanup removes exactly what was made, whether the build succeeded,
//! failed or was cancelled. Temporary resources carry the build id as a tag.

mod attributes;
mod block_devices;
mod client;
mod copy;
mod deprecation;
mod disable;
mod dry_run;
mod encryption;
mod family;
mod finished;
mod iam_strays;
mod image;
mod image_removal;
mod instance;
mod instance_profile;
mod key_pair;
mod launch_request;
mod lifetime;
mod made;
mod metadata;
mod naming;
mod network;
mod removal;
mod security_group;
mod sharing;
mod skip;
mod source_ami;
mod spot;
mod spot_requests;
mod ssm;
mod store;
mod strays;
mod sweep;
mod tags;
mod usage;

pub use source_ami::fingerprint_base;
pub use store::stores;
pub use sweep::sweep;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;

use crate::communicator::Credential;
use crate::events::{Artifact, Outcome};
use crate::family::FamilyImage;
use crate::fingerprint::Fingerprint;
use crate::pipeline::{self, RunOptions, RunReport, Step};
use crate::template::HumanDuration;
use crate::template::sources::AmazonEbsConfig;
use crate::wait::WaitParams;

use super::packages::CollectPackages;
use super::steps::{Connect, Provision};
use super::{BuildContext, HasBuild};
use image::Records;
use made::Made;
use source_ami::SourceAmi;
use tags::Tags;

/// How long each kind of wait may take, from `[source.NAME.timeouts]`.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub running: WaitParams,
    pub stopped: WaitParams,
    pub image: WaitParams,
    pub snapshots: WaitParams,
    pub terminated: WaitParams,
    /// Retrying a call on a resource made a moment ago (eventual consistency).
    pub api: WaitParams,
    /// Each of the two waits for a temporary instance profile: IAM shows it,
    /// then EC2 accepts it at launch.
    pub profile: WaitParams,
}

impl Waits {
    fn from_config(config: &AmazonEbsConfig) -> Waits {
        let t = &config.timeouts;
        let or = |value: Option<HumanDuration>, minutes: u64| {
            WaitParams::state_change(
                value
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(minutes * 60)),
            )
        };
        Waits {
            running: or(t.instance_running, 10),
            stopped: or(t.instance_stopped, 10),
            image: or(t.image_available, 60),
            snapshots: or(t.snapshots_completed, 60),
            terminated: or(t.instance_terminated, 10),
            api: WaitParams::with_timeout(Duration::from_secs(120)),
            profile: WaitParams::with_timeout(
                t.instance_profile_ready
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(120)),
            ),
        }
    }
}

/// A build's state: the shared part plus every id this builder learns.
pub struct EbsContext {
    pub build: BuildContext,
    pub config: AmazonEbsConfig,
    pub shared: SdkConfig,
    pub region: String,
    pub client: aws_sdk_ec2::Client,
    pub waits: Waits,
    /// Regions the image is copied to (`ami_regions` less the build region).
    pub copy_regions: Vec<String>,
    /// Tags on the instance, its volumes, the key pair, the security group,
    /// the spot request and the temporary IAM role and instance profile.
    pub temp_tags: Tags,
    /// When the build began and the latest it can end.
    pub lifetime: tags::Lifetime,
    pub source_ami: Option<SourceAmi>,
    pub ami_name: String,
    pub image_tags: Tags,
    pub snapshot_tags: Tags,
    pub key_name: Option<String>,
    pub credential: Option<Credential>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub instance_id: Option<String>,
    /// The temporary instance profile made for the instance, if any.
    pub instance_profile: Option<String>,
    /// Every image made: the build region's first, then copies as they start.
    pub images: Records,
    /// Earlier images of this name and version, in every target region.
    pub family: Vec<FamilyImage>,
    pub build_number: u32,
    pub fingerprint: Option<Fingerprint>,
    /// `--if-changed` found these up to date: no new image is made.
    pub reuse: Option<Vec<FamilyImage>>,
    /// The instance came from a one-time spot request, which EC2 never stops.
    pub spot_instance: bool,
}

impl HasBuild for EbsContext {
    fn build(&mut self) -> &mut BuildContext {
        &mut self.build
    }
}

impl EbsContext {
    fn source_ami_id(&self) -> &str {
        self.source_ami
            .as_ref()
            .map(|s| s.id.as_str())
            .unwrap_or("?")
    }

    /// A template setting expanded; empty means "not set" (e.g. `ssh_host = "${var.ssh_host}"`).
    fn setting(&self, value: Option<&str>) -> Result<Option<String>, String> {
        match value.map(|v| self.build.scope.expand(v)).transpose() {
            Ok(v) => Ok(v.filter(|v| !v.is_empty())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The template's `ssh_host` override, if it sets one.
    fn ssh_host_override(&self) -> Result<Option<String>, String> {
        self.setting(self.build.source.ssh.ssh_host.as_deref())
    }

    /// The build region, then the regions the image is copied to.
    fn target_regions(&self) -> Vec<String> {
        std::iter::once(self.region.clone())
            .chain(self.copy_regions.iter().cloned())
            .collect()
    }

    /// An EC2 client for one of the target regions.
    fn client_in(&self, region: &str) -> aws_sdk_ec2::Client {
        if region == self.region {
            self.client.clone()
        } else {
            client::ec2(&self.shared, region)
        }
    }

    /// Sets `${image.build}` and the manifest's `build`.
    fn set_build_number(&mut self, build: u32) {
        self.build_number = build;
        self.build.scope.set("image.build", build.to_string());
        self.build.manifest.insert("build".into(), build.into());
    }

    /// The manifest's `region`, `source_ami` and `source_ami_name`.
    fn record_place(&mut self) {
        let m = &mut self.build.manifest;
        m.insert("region".into(), self.region.clone().into());
        if let Some(source) = &self.source_ami {
            m.insert("source_ami".into(), source.id.clone().into());
            m.insert("source_ami_name".into(), source.name.clone().into());
        }
    }

    fn imds_v2(&self) -> bool {
        self.config.imds_support.as_deref() != Some("none")
    }
}

pub async fn run(
    mut ctx: BuildContext,
    config: AmazonEbsConfig,
    opts: &RunOptions,
) -> (RunReport, BuildContext) {
    let (shared, region) = match client::region(&config, &ctx.scope).await {
        Ok(found) => found,
        Err(e) => return (pipeline::failed_before_start("prepare", e), ctx),
    };
    ctx.scope.set("source.region", region.clone());
    let copy_regions = match ctx.scope.expand_all(&config.ami_regions) {
        Ok(mut regions) => {
            regions.retain(|r| r != &region);
            regions.sort();
            regions.dedup();
            regions
        }
        Err(e) => {
            return (
                pipeline::failed_before_start("prepare", format!("ami_regions: {e}")),
                ctx,
            );
        }
    };
    let waits = Waits::from_config(&config);
    let longest = lifetime::longest(&ctx, &config, &waits, opts.cleanup_deadline);
    let life = lifetime::lifetime(std::time::SystemTime::now(), longest);
    let mut ebs = EbsContext {
        client: client::ec2(&shared, &region),
        waits,
        lifetime: life,
        build: ctx,
        config,
        shared,
        region,
        copy_regions,
        // Once the source AMI is known: `run_tags` may name it.
        temp_tags: Tags::new(),
        source_ami: None,
        ami_name: String::new(),
        image_tags: Tags::new(),
        snapshot_tags: Tags::new(),
        key_name: None,
        credential: None,
        vpc_id: None,
        subnet_id: None,
        security_group_ids: Vec::new(),
        instance_id: None,
        instance_profile: None,
        images: Arc::new(Mutex::new(Vec::new())),
        family: Vec::new(),
        build_number: 0,
        fingerprint: None,
        reuse: None,
        spot_instance: false,
    };
    // Nothing is made until the fingerprint says a build is needed.
    let mut decide: Vec<Box<dyn Step<EbsContext>>> = vec![
        Box::new(family::FindFamily),
        Box::new(source_ami::FindSourceAmi),
    ];
    // Without an image there is no fingerprint to compare or to store.
    if !ebs.config.skip_create_ami {
        decide.push(Box::new(family::CheckChanged));
    }
    let decided = pipeline::run(decide, &mut ebs, opts).await;
    if decided.outcome != Outcome::Succeeded {
        return (decided, ebs.build);
    }
    match tags::temporary(&ebs.build, &ebs.config.run_tags, &ebs.lifetime) {
        Ok(t) => ebs.temp_tags = t,
        Err(e) => {
            let failed = pipeline::failed_before_start("prepare", e);
            return (decided.followed_by(failed), ebs.build);
        }
    }
    if ebs.build.dry_run {
        let report = decided.followed_by(dry_run::run(&mut ebs, opts).await);
        return (report, ebs.build);
    }
    if let Some(reused) = ebs.reuse.clone() {
        family::record_reuse(&mut ebs, &reused);
        return (decided, ebs.build);
    }
    if ebs.config.skip_create_ami {
        return skip::run(ebs, decided, opts).await;
    }
    let mut steps: Vec<Box<dyn Step<EbsContext>>> = vec![Box::new(naming::NameImage)];
    steps.extend(up_to_provisioning(&ebs.config));
    steps.push(Box::new(CollectPackages));
    steps.push(Box::new(instance::Stop));
    if attributes::EnhancedNetworking::wanted(&ebs.config) {
        steps.push(Box::new(attributes::EnhancedNetworking));
    }
    steps.push(Box::new(image::CreateImage::default()));
    if !ebs.copy_regions.is_empty() {
        steps.push(Box::new(copy::CopyImage::default()));
    }
    if sharing::Sharing::wanted(&ebs.config) {
        steps.push(Box::new(sharing::ShareImages));
    }
    if let Some(after) = ebs.config.deprecate_after {
        steps.push(Box::new(deprecation::DeprecateImages { after: after.0 }));
    }
    steps.push(Box::new(finished::MarkFinished));
    let report = decided.followed_by(pipeline::run(steps, &mut ebs, opts).await);
    let images = ebs.images.lock().expect("image records").clone();
    if report.outcome == Outcome::Succeeded {
        for image in &images {
            ebs.build.artifacts.push(Artifact {
                builder: "amazon-ebs".into(),
                location: image.region.clone(),
                id: image.id.clone(),
            });
        }
    }
    ebs.record_place();
    let m = &mut ebs.build.manifest;
    let json = |tags: &Tags| serde_json::to_value(tags).unwrap_or_default();
    if !ebs.ami_name.is_empty() {
        m.insert("ami_name".into(), ebs.ami_name.clone().into());
        m.insert("tags".into(), json(&ebs.image_tags));
        m.insert("snapshot_tags".into(), json(&ebs.snapshot_tags));
    }
    if report.outcome == Outcome::Succeeded {
        let amis: serde_json::Map<String, serde_json::Value> = images
            .iter()
            .map(|i| (i.region.clone(), i.id.clone().into()))
            .collect();
        m.insert("amis".into(), amis.into());
    }
    (report, ebs.build)
}

/// The steps from the network to the provisioners, which a build that
/// keeps no image (`skip_create_ami`) runs too.
fn up_to_provisioning(config: &AmazonEbsConfig) -> Vec<Box<dyn Step<EbsContext>>> {
    let mut steps: Vec<Box<dyn Step<EbsContext>>> = vec![
        Box::new(network::ResolveNetwork),
        Box::new(key_pair::KeyPair::default()),
        Box::new(security_group::SecurityGroup::default()),
    ];
    // Before the launch, so that its cleanup comes once the instance is gone.
    if let Some(policy) = &config.temporary_iam_instance_profile_policy_document {
        steps.push(Box::new(instance_profile::TemporaryInstanceProfile::new(
            policy,
        )));
    }
    steps.push(Box::new(instance::Launch::default()));
    steps.push(Box::new(Connect));
    steps.push(Box::new(Provision));
    steps
}
