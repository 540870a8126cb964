//! `build --dry-run`: everything that needs no resource made is resolved
//! (source AMI, network, image name), then each call that would make one
//! is sent with `DryRun=true`. EC2 answers `DryRunOperation` when the call
//! would have succeeded and `UnauthorizedOperation` when IAM denies it;
//! nothing is made either way.

use async_trait::async_trait;
use aws_sdk_ec2::types::ResourceType;

use super::client::{Api, ApiError};
use super::{
    EbsContext, attributes, key_pair, launch_request, naming, network, security_group, sharing,
    spot, tags,
};
use crate::builder::temporary_key;
use crate::pipeline::{self, RunOptions, RunReport, Step, StepError};

/// CreateImage needs an instance, and a dry run has none: this id stands in.
const NO_INSTANCE: &str = "i-00000000000000000";

/// The dry run's steps: the reads a build starts with, then the checks.
pub async fn run(ctx: &mut EbsContext, opts: &RunOptions) -> RunReport {
    let mut steps: Vec<Box<dyn Step<EbsContext>>> = Vec::new();
    if !ctx.config.skip_create_ami {
        steps.push(Box::new(naming::NameImage));
    }
    steps.push(Box::new(network::ResolveNetwork));
    steps.push(Box::new(CheckPermissions));
    pipeline::run(steps, ctx, opts).await
}

/// What EC2 said of one call sent with `DryRun=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied(String),
    /// Allowed or not, the call would fail (a bad parameter, a missing resource).
    WouldFail(String),
    /// EC2 could not judge it without a resource only a build makes.
    Unchecked(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The IAM action: `ec2:RunInstances`.
    pub action: String,
    pub verdict: Verdict,
}

impl Check {
    fn judge<T>(operation: &'static str, result: Result<T, ApiError>) -> Check {
        let verdict = match result {
            Err(e) if e.code_is("DryRunOperation") => Verdict::Allowed,
            // EC2 says UnauthorizedOperation; AccessDenied is IAM's word in
            // other services' answers.
            Err(e) if e.code_is("UnauthorizedOperation") || e.code_is("AccessDenied") => {
                Verdict::Denied(e.message.clone())
            }
            Err(e) if operation == "CreateImage" && e.is_not_found() => {
                Verdict::Unchecked("needs the build's instance".into())
            }
            Err(e) => Verdict::WouldFail(e.to_string()),
            Ok(_) => Verdict::WouldFail(
                "the endpoint ignored DryRun and answered as though it had done it".into(),
            ),
        };
        Check {
            action: format!("ec2:{operation}"),
            verdict,
        }
    }

    /// One line of the report: `ec2:RunInstances: allowed`.
    pub fn line(&self) -> String {
        match &self.verdict {
            Verdict::Allowed => format!("{}: allowed", self.action),
            Verdict::Denied(why) => format!("{}: denied ({why})", self.action),
            Verdict::WouldFail(why) => format!("{}: would fail ({why})", self.action),
            Verdict::Unchecked(why) => format!("{}: not checked ({why})", self.action),
        }
    }
}

/// Fails naming every denied action, then every call that would fail.
pub fn outcome(checks: &[Check]) -> Result<(), String> {
    let denied: Vec<&str> = checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Denied(_)))
        .map(|c| c.action.as_str())
        .collect();
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::WouldFail(_)))
        .map(|c| c.action.as_str())
        .collect();
    let mut problems = Vec::new();
    if !denied.is_empty() {
        problems.push(format!("denied: {}", denied.join(", ")));
    }
    if !failing.is_empty() {
        problems.push(format!("would fail: {}", failing.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Sends each call a build would make with `DryRun=true`.
struct CheckPermissions;

#[async_trait]
impl Step<EbsContext> for CheckPermissions {
    fn name(&self) -> &'static str {
        "check permissions"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let source = ctx
            .source_ami
            .clone()
            .ok_or_else(|| StepError::failed("no source AMI was resolved"))?;
        let vpc = ctx
            .vpc_id
            .clone()
            .ok_or_else(|| StepError::failed("no network was chosen"))?;
        let scope = &ctx.build.scope;
        let name = format!("imgbuild-{}", ctx.build.build_id);
        let mut checks = Vec::new();
        match &ctx.config.ssh_keypair_name {
            Some(key) => ctx.key_name = Some(scope.expand(key).map_err(StepError::failed)?),
            None => {
                let (_, public) = temporary_key(&name);
                let result = key_pair::import_request(ctx, &name, public)
                    .dry_run(true)
                    .send()
                    .await
                    .api("ImportKeyPair");
                checks.push(Check::judge("ImportKeyPair", result));
            }
        }
        match &ctx.config.security_group_ids {
            Some(ids) => {
                ctx.security_group_ids = scope.expand_all(ids).map_err(StepError::failed)?;
            }
            None => {
                let result = security_group::create_request(ctx, &name, &vpc)
                    .dry_run(true)
                    .send()
                    .await
                    .api("CreateSecurityGroup");
                checks.push(Check::judge("CreateSecurityGroup", result));
            }
        }
        // Without the temporary key pair and group, which a dry run does
        // not make, the launch names none of them.
        let attempts = spot::planned(ctx).map_err(StepError::failed)?;
        let first = attempts
            .first()
            .ok_or_else(|| StepError::failed("no launch to try"))?;
        let request =
            spot::with_attempt(ctx, launch_request::launch_request(ctx, &source)?, first, 0);
        let result = request.dry_run(true).send().await.api("RunInstances");
        checks.push(Check::judge("RunInstances", result));
        if !ctx.config.skip_create_ami {
            let result = ctx
                .client
                .create_image()
                .dry_run(true)
                .instance_id(NO_INSTANCE)
                .name(&ctx.ami_name)
                .tag_specifications(tags::at_creation(ResourceType::Image, &ctx.image_tags))
                .send()
                .await
                .api("CreateImage");
            checks.push(Check::judge("CreateImage", result));
        }
        checks.extend(unchecked(ctx));
        for check in &checks {
            ctx.build.events.info(format!("dry run: {}", check.line()));
        }
        let lines: Vec<serde_json::Value> = checks.iter().map(|c| c.line().into()).collect();
        ctx.build.manifest.insert("dry_run".into(), lines.into());
        outcome(&checks).map_err(StepError::failed)
    }
}

/// The calls the build would make that a dry run cannot send: they act on
/// the instance or the image only a build makes, or (IAM) have no dry run.
fn unchecked(ctx: &EbsContext) -> Vec<Check> {
    let c = &ctx.config;
    let image = !c.skip_create_ami;
    let snapshots_shared = !c.snapshot_users.is_empty() || !c.snapshot_groups.is_empty();
    let temporary_profile = c.temporary_iam_instance_profile_policy_document.is_some();
    let wanted: [(&str, bool, &str); 9] = [
        (
            "ec2:ModifyInstanceAttribute",
            image && attributes::EnhancedNetworking::wanted(c),
            "needs the build's instance",
        ),
        (
            "ec2:CopyImage",
            image && !ctx.copy_regions.is_empty(),
            "needs the build's image",
        ),
        (
            "ec2:ModifyImageAttribute",
            image && (sharing::Sharing::wanted(c) || ctx.imds_v2()),
            "needs the build's image",
        ),
        (
            "ec2:ModifySnapshotAttribute",
            image && snapshots_shared,
            "needs the build's snapshots",
        ),
        (
            "ec2:EnableImageDeprecation",
            image && c.deprecate_after.is_some(),
            "needs the build's image",
        ),
        ("iam:CreateRole", temporary_profile, "IAM has no dry run"),
        ("iam:PutRolePolicy", temporary_profile, "IAM has no dry run"),
        (
            "iam:CreateInstanceProfile",
            temporary_profile,
            "IAM has no dry run",
        ),
        (
            "iam:PassRole",
            temporary_profile,
            "the launch was checked without the temporary instance profile",
        ),
    ];
    wanted
        .into_iter()
        .filter(|(_, used, _)| *used)
        .map(|(action, _, why)| Check {
            action: action.into(),
            verdict: Verdict::Unchecked(why.into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(operation: &'static str, code: &str) -> Result<(), ApiError> {
        Err(ApiError {
            operation,
            code: Some(code.into()),
            message: "m".into(),
            status: Some(400),
        })
    }

    #[test]
    fn ec2_answers_become_verdicts() {
        let allowed = Check::judge("RunInstances", error("RunInstances", "DryRunOperation"));
        assert_eq!(allowed.line(), "ec2:RunInstances: allowed");
        let denied = Check::judge(
            "RunInstances",
            error("RunInstances", "UnauthorizedOperation"),
        );
        assert_eq!(denied.line(), "ec2:RunInstances: denied (m)");
        let placeholder = Check::judge(
            "CreateImage",
            error("CreateImage", "InvalidInstanceID.NotFound"),
        );
        assert_eq!(
            placeholder.line(),
            "ec2:CreateImage: not checked (needs the build's instance)"
        );
        let bad = Check::judge(
            "RunInstances",
            error("RunInstances", "InvalidSubnetID.NotFound"),
        );
        assert_eq!(
            bad.line(),
            "ec2:RunInstances: would fail (RunInstances failed: InvalidSubnetID.NotFound: m)"
        );
        assert_eq!(
            Check::judge("ImportKeyPair", Ok(())).verdict,
            Verdict::WouldFail(
                "the endpoint ignored DryRun and answered as though it had done it".into()
            )
        );
    }

    #[test]
    fn the_outcome_names_denied_and_failing_actions() {
        let check = |action: &str, verdict| Check {
            action: action.into(),
            verdict,
        };
        let checks = [
            check("ec2:ImportKeyPair", Verdict::Allowed),
            check("ec2:CreateSecurityGroup", Verdict::Denied("no".into())),
            check("ec2:RunInstances", Verdict::Denied("no".into())),
            check("ec2:CreateImage", Verdict::Unchecked("x".into())),
        ];
        assert_eq!(
            outcome(&checks).unwrap_err(),
            "denied: ec2:CreateSecurityGroup, ec2:RunInstances"
        );
        assert_eq!(outcome(&checks[..1]), Ok(()));
        let failing = [check("ec2:RunInstances", Verdict::WouldFail("x".into()))];
        assert_eq!(
            outcome(&failing).unwrap_err(),
            "would fail: ec2:RunInstances"
        );
    }
}
