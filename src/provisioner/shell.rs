//! `type = "shell"`: upload a script, run it with the given environment,
//! stream its output, judge its exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use serde::Deserialize;

use crate::communicator::{ExitStatus, SshError, shell_quote};
use crate::events::Stream;
use crate::template::Provisioner;
use crate::template::check::Checker;

use super::{After, Context, ProvisionError, ProvisionerConfig, ProvisionerSchema};

/// `type = "shell"`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    pub inline: Option<Vec<String>>,
    pub script: Option<String>,
    pub scripts: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub sudo: bool,
    /// How a script is run; `{path}` and `{vars}` are filled in.
    pub execute_command: Option<String>,
    pub inline_shebang: Option<String>,
    pub remote_folder: Option<String>,
    pub valid_exit_codes: Option<Vec<i32>>,
    #[serde(default)]
    pub expect_disconnect: bool,
}

#[async_trait]
impl ProvisionerConfig for ShellConfig {
    fn type_name(&self) -> &'static str {
        Self::TYPE
    }

    fn local_inputs(&self) -> Vec<&str> {
        self.script
            .iter()
            .chain(self.scripts.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    fn summary(&self) -> String {
        let mut what = match (&self.inline, &self.script, &self.scripts) {
            (Some(lines), _, _) => format!(
                "shell: inline, {} line{}",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" }
            ),
            (_, Some(s), _) => format!("shell: script {s}"),
            (_, _, Some(list)) => format!("shell: scripts {}", list.join(", ")),
            _ => "shell".to_string(),
        };
        if self.sudo {
            what.push_str(" (sudo)");
        }
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            let _ = write!(what, "; env {}", names.join(", "));
        }
        what
    }

    async fn run(&self, p: &Provisioner, cx: &Context<'_>) -> Result<After, ProvisionError> {
        run(p, self, cx).await
    }
}

impl ProvisionerSchema for ShellConfig {
    const TYPE: &'static str = "shell";

    fn check(&self, checker: &mut Checker<'_>) {
        let given = [
            self.inline.is_some(),
            self.script.is_some(),
            self.scripts.is_some(),
        ];
        let count = given.iter().filter(|g| **g).count();
        if count != 1 {
            let message = if count == 0 {
                "a shell provisioner needs one of `inline`, `script` or `scripts`"
            } else {
                "a shell provisioner takes only one of `inline`, `script` or `scripts`"
            };
            checker.error("", message);
        }
        if let Some(script) = &self.script {
            checker.local_file(&checker.base.key("script"), script);
        }
        for (i, script) in self.scripts.iter().flatten().enumerate() {
            checker.local_file(&checker.base.key("scripts").index(i), script);
        }
        for name in self.env.keys() {
            if !crate::template::is_identifier(name) {
                checker.error_at(
                    &checker.base.key("env").key(name),
                    format!("`{name}` is not a valid environment variable name"),
                );
            }
        }
        if let Some(cmd) = &self.execute_command
            && !cmd.contains("{path}")
        {
            checker.error(
                "execute_command",
                "`execute_command` must contain `{path}`, where the script goes",
            );
        }
        if self.sudo && self.execute_command.is_some() {
            checker.error(
                "sudo",
                "`sudo` and `execute_command` cannot be combined; put `sudo` in `execute_command`",
            );
        }
    }
}

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
                context: format!("cannot read script {}", path.display()),
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

async fn run(p: &Provisioner, c: &ShellConfig, cx: &Context<'_>) -> Result<After, ProvisionError> {
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

    let scripts = scripts(c.into(), cx)?;
    let last = scripts.len().saturating_sub(1);
    for (i, script) in scripts.into_iter().enumerate() {
        // A script before this one dropped the connection on purpose (a
        // reboot): the rest of the list runs once the machine is back.
        if i > 0 && c.expect_disconnect {
            super::ensure_connected(cx).await.map_err(|e| match e {
                ProvisionError::Failed(m) => {
                    ProvisionError::Failed(format!("before {}: {m}", script.origin))
                }
                other => other,
            })?;
        }
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
        // It is written under umask 077 and only then opened to everyone
        // (0755, as Packer does), so an `execute_command` that runs it as
        // another user (`sudo -u jenkins`, `su - jenkins -c`) can read it.
        let command = format!(
            "imgbuild_script={path}; trap 'rm -f \"$imgbuild_script\"' EXIT; \
             trap 'exit 143' HUP INT TERM; \
             umask 077 && cat > \"$imgbuild_script\" && chmod 0755 \"$imgbuild_script\" && \
             {{ {command}; }} </dev/null"
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
                cx.events.info(format!(
                    "{}: {} disconnected as expected ({reason})",
                    p.label(),
                    script.origin
                ));
                if i == last {
                    return Ok(After::Disconnected);
                }
                continue;
            }
            Err(SshError::TimedOut(limit)) => {
                return Err(ProvisionError::Failed(format!(
                    "{} timed out after {}",
                    script.origin,
                    humantime::format_duration(limit)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if c.expect_disconnect && status.code.is_none() {
            if i == last {
                return Ok(After::Disconnected);
            }
            continue;
        }
        judge(&script.origin, &status, &valid)?;
    }
    Ok(if c.expect_disconnect {
        After::Disconnected
    } else {
        After::Connected
    })
}

/// Fails unless the exit code is one of `valid`, naming the script.
pub(super) fn judge(
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
        "{origin} {status}{expected}"
    )))
}
