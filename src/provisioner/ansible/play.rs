//! Reading a play's output as it streams: which task runs, which failed,
//! and the build error that names them.

use crate::communicator::ExitStatus;

use super::super::{Context, ProvisionError};

/// A failure, with anything sensitive masked (task names can carry values);
/// the caller's error names the provisioner.
pub(super) fn failed(cx: &Context<'_>, what: &str) -> ProvisionError {
    ProvisionError::Failed(cx.events.mask().text(what))
}

/// What the play is doing, read from its output: the task under way and
/// the last one that failed.
#[derive(Debug, Default)]
pub(in crate::provisioner) struct PlayProgress {
    task: Option<String>,
    failed: Option<(String, bool)>,
}

impl PlayProgress {
    pub fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("TASK [")
            && let Some(end) = rest.rfind(']')
        {
            self.task = Some(rest[..end].to_string());
        } else if line.starts_with("fatal: [") || line.starts_with("failed: [") {
            let unreachable = line.contains("UNREACHABLE!");
            self.failed = Some((self.task.clone().unwrap_or_default(), unreachable));
        }
    }

    /// Fails the provisioner unless the play succeeded, naming the playbook and task.
    pub fn judge(
        &self,
        cx: &Context<'_>,
        playbook: &str,
        status: &ExitStatus,
    ) -> Result<(), ProvisionError> {
        if status.success() {
            return Ok(());
        }
        let what = match &self.failed {
            Some((task, false)) if !task.is_empty() => {
                format!("playbook {playbook} failed at task \"{task}\" (ansible-playbook {status})")
            }
            Some((task, true)) => format!(
                "playbook {playbook}: the machine was unreachable at task \"{task}\" (ansible-playbook {status})"
            ),
            _ => format!("playbook {playbook} failed (ansible-playbook {status})"),
        };
        Err(failed(cx, &what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_task_is_the_one_under_way_when_a_host_failed() {
        let mut play = PlayProgress::default();
        for line in [
            "PLAY [all] *****",
            "TASK [Gathering Facts] *****",
            "ok: [box]",
            "TASK [web : write the page] *****",
            "fatal: [box]: FAILED! => {\"msg\": \"boom\"}",
            "PLAY RECAP *****",
        ] {
            play.line(line);
        }
        assert_eq!(play.failed, Some(("web : write the page".into(), false)));
    }
}
