//! `type = "shell-local"`: run scripts on the machine running imgbuild, with
//! the build's values in their environment; the same exit-code, timeout and
//! streaming rules as `shell`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::process::Command;

use crate::template::Provisioner;
use crate::template::provisioners::ShellLocalConfig;

use super::local::{self, LocalError};
use super::shell::{ScriptSettings, judge, scripts};
use super::{After, Context, ProvisionError};

/// The build's values, as every shell-local script sees them.
async fn build_environment(cx: &Context<'_>) -> Result<Vec<(String, String)>, ProvisionError> {
    let details = cx.comm.connection_details().await?;
    let mut env = vec![
        ("IMGBUILD_BUILD_ID".to_string(), cx.build_id.to_string()),
        ("IMGBUILD_BUILD_NAME".into(), cx.events.build().to_string()),
        ("IMGBUILD_SOURCE".into(), cx.events.build().to_string()),
        ("IMGBUILD_BUILDER_TYPE".into(), cx.builder_type.to_string()),
        ("IMGBUILD_HOST".into(), details.endpoint.host.clone()),
        ("IMGBUILD_PORT".into(), details.endpoint.port.to_string()),
        ("IMGBUILD_USER".into(), details.endpoint.user.clone()),
    ];
    for (name, key) in [
        ("IMGBUILD_INSTANCE_ID", "source.instance_id"),
        ("IMGBUILD_REGION", "source.region"),
    ] {
        if let Some(value) = cx.scope.typed(key).and_then(|v| v.as_text()) {
            env.push((name.into(), value));
        }
    }
    Ok(env)
}

pub async fn run(
    p: &Provisioner,
    c: &ShellLocalConfig,
    cx: &Context<'_>,
) -> Result<After, ProvisionError> {
    let mut env = build_environment(cx).await?;
    for (name, value) in &c.env {
        env.push((name.clone(), cx.scope.expand(value)?));
    }
    let valid = c.valid_exit_codes.clone().unwrap_or_else(|| vec![0]);
    // Removed on every path, also when a cancel drops this future.
    let folder = tempfile::Builder::new()
        .prefix("imgbuild-shell-local-")
        .tempdir()
        .map_err(|source| ProvisionError::Local {
            context: "cannot create a temporary folder".to_string(),
            source,
        })?;
    for (i, script) in scripts(c.into(), cx)?.into_iter().enumerate() {
        let path = folder.path().join(format!("script-{}", i + 1));
        write_executable(&path, &script.body).map_err(|source| ProvisionError::Local {
            context: format!("cannot write {}", path.display()),
            source,
        })?;
        // Like `chmod +x script && script`: the script's own `#!` line picks
        // its interpreter; without one, /bin/sh runs it.
        let mut cmd = if script.body.starts_with(b"#!") {
            Command::new(&path)
        } else {
            let mut sh = Command::new("/bin/sh");
            sh.arg(&path);
            sh
        };
        cmd.current_dir(local::template_folder(cx.template_dir))
            .envs(env.iter().cloned());
        let events = cx.events;
        let status = local::run(cmd, p.common.timeout.map(|t| t.0), |stream, line| {
            events.output(stream, line)
        })
        .await
        .map_err(|e| match e {
            LocalError::TimedOut(_) => ProvisionError::Failed(format!("{} {e}", script.origin)),
            e => ProvisionError::Failed(e.to_string()),
        })?;
        judge(&script.origin, &status, &valid)?;
    }
    Ok(After::Connected)
}

fn write_executable(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(path)?;
    file.write_all(body)
}

impl<'a> From<&'a ShellLocalConfig> for ScriptSettings<'a> {
    fn from(c: &'a ShellLocalConfig) -> Self {
        ScriptSettings {
            inline: c.inline.as_ref(),
            inline_shebang: c.inline_shebang.as_deref(),
            files: c.script.iter().chain(c.scripts.iter().flatten()).collect(),
        }
    }
}

#[async_trait::async_trait]
impl crate::provisioner::ProvisionerConfig for ShellLocalConfig {
    fn type_name(&self) -> &'static str {
        <Self as crate::provisioner::ProvisionerSchema>::TYPE
    }

    fn summary(&self) -> String {
        ShellLocalConfig::summary(self)
    }

    fn local_inputs(&self) -> Vec<&str> {
        self.script
            .iter()
            .chain(self.scripts.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    async fn run(
        &self,
        p: &crate::template::Provisioner,
        cx: &crate::provisioner::Context<'_>,
    ) -> Result<crate::provisioner::After, crate::provisioner::ProvisionError> {
        run(p, self, cx).await
    }
}
