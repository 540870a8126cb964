//! `temporary_iam_instance_profile_policy_document`: a role with that inline
//! policy, trusted by EC2, in an instance profile of its own, all named from
//! the build id under the IAM path `/imgbuild/` and tagged at creation. The
//! step runs before the launch, so its cleanup runs after the instance is
//! terminated: IAM would delete a profile an instance still uses, and the
//! instance lose its credentials mid-build.

use std::future::Future;

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;

use super::client::{self, Api, ApiError};
use super::{EbsContext, Made, tags};
use crate::events::Leftover;
use crate::pipeline::{Ending, Step, StepError};
use crate::template::sources::PolicyDocument;
use crate::wait::{self, Poll, Transient, WaitParams};

/// The IAM path of every role and profile a build makes: the IAM policy
/// can be narrowed to it, and `gc` can list what builds left.
pub const PATH: &str = "/imgbuild/";
/// The name of the role's one inline policy.
pub const POLICY_NAME: &str = "imgbuild";

/// Who may take the role: EC2, for the build's instance.
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// What this step asked IAM for; recorded before each call, as the names
/// are the build's alone and removing what was never made only answers
/// NoSuchEntity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Progress {
    #[default]
    Nothing,
    /// The role and its policy.
    Role,
    /// The profile too, with the role in it.
    Profile,
}

pub struct TemporaryInstanceProfile {
    /// The role's inline policy, as IAM takes it.
    policy: String,
    name: Option<String>,
    progress: Progress,
}

impl TemporaryInstanceProfile {
    pub fn new(policy: &PolicyDocument) -> TemporaryInstanceProfile {
        TemporaryInstanceProfile {
            policy: policy.to_json(),
            name: None,
            progress: Progress::Nothing,
        }
    }
}

#[async_trait]
impl Step<EbsContext> for TemporaryInstanceProfile {
    fn name(&self) -> &'static str {
        "create temporary instance profile"
    }

    async fn run(&mut self, ctx: &mut EbsContext) -> Result<(), StepError> {
        let iam = client::iam(&ctx.shared, &ctx.region);
        let name = format!("imgbuild-{}", ctx.build.build_id);
        let tags = iam_tags(&ctx.temp_tags);
        self.name = Some(name.clone());
        let failed = |what: &str, e: ApiError| StepError::failed(format!("{what} {name}: {e}"));

        self.progress = Progress::Role;
        iam.create_role()
            .role_name(&name)
            .path(PATH)
            .assume_role_policy_document(TRUST_POLICY)
            .description(format!("imgbuild build {}", ctx.build.build_id))
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .api("CreateRole")
            .map_err(|e| failed("IAM role", e))?;
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .policy_document(&self.policy)
            .send()
            .await
            .api("PutRolePolicy")
            .map_err(|e| failed("policy of IAM role", e))?;
        self.progress = Progress::Profile;
        iam.create_instance_profile()
            .instance_profile_name(&name)
            .path(PATH)
            .set_tags(Some(tags))
            .send()
            .await
            .api("CreateInstanceProfile")
            .map_err(|e| failed("instance profile", e))?;
        iam.add_role_to_instance_profile()
            .instance_profile_name(&name)
            .role_name(&name)
            .send()
            .await
            .api("AddRoleToInstanceProfile")
            .map_err(|e| failed("instance profile", e))?;
        ctx.build.events.waiting(
            &format!("instance profile {name} to be visible"),
            ctx.waits.profile.timeout,
        );
        wait::until(
            ctx.waits.profile,
            &format!("instance profile {name}"),
            "visible with its role",
            || async {
                match iam
                    .get_instance_profile()
                    .instance_profile_name(&name)
                    .send()
                    .await
                    .api("GetInstanceProfile")
                {
                    Ok(out)
                        if out
                            .instance_profile()
                            .is_some_and(|p| !p.roles().is_empty()) =>
                    {
                        Ok(Poll::Ready(()))
                    }
                    Ok(_) => Ok(Poll::Pending("no role in it yet".into())),
                    Err(e) if e.is_no_such_entity() => Ok(Poll::Pending(e.to_string())),
                    Err(e) => Err(e),
                }
            },
        )
        .await
        .map_err(StepError::failed)?;
        ctx.build.events.info(format!(
            "made IAM role and instance profile {name} (path {PATH})"
        ));
        ctx.instance_profile = Some(name);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut EbsContext, _: Ending) -> Vec<Leftover> {
        let Some(name) = self.name.take() else {
            return Vec::new();
        };
        let iam = client::iam(&ctx.shared, &ctx.region);
        if self.progress >= Progress::Profile
            && let Err(e) = remove_profile(&iam, &name).await
        {
            let kept = format!("kept: instance profile {name} is still there");
            return vec![
                Made::InstanceProfile.leftover(&name, &ctx.region, e.to_string()),
                Made::Role.leftover(&name, &ctx.region, kept),
            ];
        }
        match remove_role(&iam, &name).await {
            Ok(()) => {
                ctx.build
                    .events
                    .info(format!("deleted IAM role and instance profile {name}"));
                Vec::new()
            }
            Err(e) => vec![Made::Role.leftover(&name, &ctx.region, e.to_string())],
        }
    }

    fn made(&self, ctx: &EbsContext) -> Vec<Leftover> {
        let Some(name) = &self.name else {
            return Vec::new();
        };
        let mut made = vec![Made::Role.leftover(name, &ctx.region, "")];
        if self.progress >= Progress::Profile {
            made.push(Made::InstanceProfile.leftover(name, &ctx.region, ""));
        }
        made
    }
}

/// Takes the role of the same name out of instance profile `name`, then
/// deletes the profile; what is already gone counts as done.
pub async fn remove_profile(iam: &aws_sdk_iam::Client, name: &str) -> Result<(), ApiError> {
    gone(
        iam.remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .api("RemoveRoleFromInstanceProfile"),
    )?;
    gone(
        iam.delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .api("DeleteInstanceProfile"),
    )
}

/// Deletes role `name` and its inline policy; a role still in a profile
/// cannot go, so [`remove_profile`] comes first.
pub async fn remove_role(iam: &aws_sdk_iam::Client, name: &str) -> Result<(), ApiError> {
    gone(
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .api("DeleteRolePolicy"),
    )?;
    gone(
        iam.delete_role()
            .role_name(name)
            .send()
            .await
            .api("DeleteRole"),
    )
}

fn gone<T>(result: Result<T, ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if !e.is_no_such_entity() => Err(e),
        _ => Ok(()),
    }
}

/// EC2 learns of a new instance profile some seconds after IAM shows it, and
/// until then RunInstances calls it invalid. With a temporary profile, `call`
/// is retried on that answer for as long as `ctx.waits.profile` allows; any
/// other answer is final.
pub async fn while_unknown_to_ec2<T, E, F, Fut>(
    ctx: &EbsContext,
    mut call: F,
) -> Result<T, ApiError>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<
        Output = Result<
            T,
            aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
        >,
    >,
{
    let params = match ctx.instance_profile {
        Some(_) => ctx.waits.profile,
        None => WaitParams {
            attempts: Some(1),
            ..ctx.waits.profile
        },
    };
    wait::retrying(params, "RunInstances", || {
        let sent = call();
        async move { sent.await.api("RunInstances").map_err(UnknownProfile) }
    })
    .await
    .map_err(|e| e.0)
}

/// An error that is "not yet" only while EC2 does not know the profile.
struct UnknownProfile(ApiError);

impl Transient for UnknownProfile {
    fn is_transient(&self) -> bool {
        self.0.is_instance_profile_unknown()
    }
}

impl std::fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The build's temporary tags as IAM takes them. IAM allows fewer
/// characters in tags than EC2 (letters, digits, spaces and `_.:/=+-@`):
/// any other becomes `_`, so a `Name` like "imgbuild web 1.2 (aws)" is kept.
fn iam_tags(tags: &tags::Tags) -> Vec<Tag> {
    let allowed = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(allowed(k))
                .value(allowed(v))
                .build()
                .expect("key and value are set")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_to_the_characters_iam_allows() {
        let mut temp = tags::Tags::new();
        temp.insert("Name".into(), "imgbuild web 1.2 (aws)".into());
        temp.insert(tags::EXPIRES_AT.into(), "2026-12-01T15:00:00Z".into());
        let got: Vec<(String, String)> = iam_tags(&temp)
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("Name".to_string(), "imgbuild web 1.2 _aws_".to_string()),
                (
                    tags::EXPIRES_AT.to_string(),
                    "2026-12-01T15:00:00Z".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_trust_policy_lets_ec2_take_the_role() {
        let trust: serde_json::Value = serde_json::from_str(TRUST_POLICY).unwrap();
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "ec2.amazonaws.com"
        );
        assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    }
}
