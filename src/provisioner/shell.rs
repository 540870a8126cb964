//! `type = "shell"`: upload a script, run it with the given environment,
//! stream its output, judge its exit code.

use crate::communicator::{ExitStatus, SshError, shell_quote};
use crate::events::Stream;
use crate::template::{Provisioner, ShellConfig};

use super::{After, Context, ProvisionError};

const DEFAULT_SHEBANG: &str = "/bin/sh -e";
const DEFAULT_COMMAND: &str = "chmod +x {path} && {vars} {path}";
const SUDO_COMMAND: &str = "chmod +x {path} && sudo -n env {vars} {path}";

/// One script to run: where it came from (for messages) and its text.
pub(super) struct Script {
    pub origin: String,
    pub body: Vec<u8>,
}

/// What a shell-like provisioner runs: `inline` lines as one script, or the
/// script files, read relative to the template.
pub(super) struct ScriptSettings<'a> {
    pub inline: Option<&'a Vec<String>>,
    pub inline_shebang: Option<&'a str>,
    pub files: Vec<&'a String>,
}

impl<'a> From<&'a ShellConfig> for ScriptSettings<'a> {
    fn from(c: &'a ShellConfig) -> Self {
        ScriptSettings {
            inline: c.inline.as_ref(),
            inline_shebang: c.inline_shebang.as_deref(),
            files: c.script.iter().chain(c.scripts.iter().flatten()).collect(),
        }
    }
}

pub(super) fn scripts(
    p: &Provisioner,
    c: ScriptSettings<'_>,
    cx: &Context<'_>,
) -> Result<Vec<Script>, ProvisionError> {
    if let Some(lines) = c.inline {
        let shebang = c.inline_shebang.unwrap_or(DEFAULT_SHEBANG);
        let mut body = format!("#!{shebang}\n");
        for line in cx.scope.expand_all(lines)? {
            body.push_str(&line);
            body.push('\n');
        }
        return Ok(vec![Script {
            origin: "inline script".into(),
            body: body.into_bytes(),
        }]);
    }
    c.files
        .into_iter()
        .map(|f| {
            let path = cx.template_dir.join(cx.scope.expand(f)?);
            let body = std::fs::read(&path).map_err(|source| ProvisionError::Local {
                context: format!("{}: cannot read script {}", p.label(), path.display()),
                source,
            })?;
            Ok(Script {
                origin: format!("script {f}"),
                body,
            })
        })
        .collect()
}

fn env_assignments(c: &ShellConfig, cx: &Context<'_>) -> Result<String, ProvisionError> {
    let mut vars = vec![
        format!("IMGBUILD_BUILD_NAME={}", shell_quote(cx.events.build())),
        format!("IMGBUILD_BUILDER_TYPE={}", shell_quote(cx.builder_type)),
    ];
    for (name, value) in &c.env {
        vars.push(format!("{name}={}", shell_quote(&cx.scope.expand(value)?)));
    }
    Ok(vars.join(" "))
}

pub async fn run(
    p: &Provisioner,
    c: &ShellConfig,
    cx: &Context<'_>,
) -> Result<After, ProvisionError> {
    let vars = env_assignments(c, cx)?;
    let template = match &c.execute_command {
        Some(cmd) => cx.scope.expand(cmd)?,
        None if c.sudo => SUDO_COMMAND.to_string(),
        None => DEFAULT_COMMAND.to_string(),
    };
    let folder = cx
        .scope
        .expand(c.remote_folder.as_deref().unwrap_or("/tmp"))?;
    let valid = c.valid_exit_codes.clone().unwrap_or_else(|| vec![0]);
    let timeout = p.common.timeout.map(|t| t.0);

    for (i, script) in scripts(p, c.into(), cx)?.into_iter().enumerate() {
        let remote = format!(
            "{folder}/imgbuild-{}-{}-{}.sh",
            cx.build_id,
            p.number,
            i + 1
        );
        let path = shell_quote(&remote);
        let command = template.replace("{path}", &path).replace("{vars}", &vars);
        // One channel: the script arrives on stdin, is saved, run with no
        // stdin of its own, and removed whatever its outcome: also when a
        // cancel or timeout stops the process group, or the connection drops.
        let command = format!(
            "imgbuild_script={path}; trap 'rm -f \"$imgbuild_script\"' EXIT; \
             trap 'exit 143' HUP INT TERM; \
             umask 077 && cat > \"$imgbuild_script\" && {{ {command}; }} </dev/null"
        );
        let events = cx.events.clone();
        let result = cx
            .comm
            .exec_with_input(
                &command,
                script.body,
                timeout,
                move |stream: Stream, line: &str| events.output(stream, line),
            )
            .await;
        let status = match result {
            Ok(status) => status,
            Err(SshError::Disconnected(reason)) if c.expect_disconnect => {
                cx.events
                    .info(format!("{} disconnected as expected ({reason})", p.label()));
                return Ok(After::Disconnected);
            }
            Err(SshError::TimedOut(limit)) => {
                return Err(ProvisionError::Failed(format!(
                    "{}: {} timed out after {}",
                    p.label(),
                    script.origin,
                    humantime::format_duration(limit)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if c.expect_disconnect && status.code.is_none() {
            return Ok(After::Disconnected);
        }
        judge(p, &script.origin, &status, &valid)?;
    }
    Ok(if c.expect_disconnect {
        After::Disconnected
    } else {
        After::Connected
    })
}

/// Fails unless the exit code is one of `valid`, naming the provisioner and script.
pub(super) fn judge(
    p: &Provisioner,
    origin: &str,
    status: &ExitStatus,
    valid: &[i32],
) -> Result<(), ProvisionError> {
    if status.code.is_some_and(|code| valid.contains(&code)) {
        return Ok(());
    }
    let expected = if valid == [0] {
        String::new()
    } else {
        format!(" (valid exit codes: {valid:?})")
    };
    Err(ProvisionError::Failed(format!(
        "{}: {origin} {status}{expected}",
        p.label()
    )))
}
