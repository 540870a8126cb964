//! `type = "ansible"`: run `ansible-playbook` on this machine against the
//! build machine, over SSH with the build's own connection details. Every
//! file it writes (key, inventory, extra vars, roles from Galaxy) lives in a
//! private temporary folder removed on every path, cancel included.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokio::process::Command;

use crate::communicator::{ConnectionDetails, Endpoint, ExitStatus, shell_quote};
use crate::template::Provisioner;
use crate::template::provisioners::{AnsibleConfig, GALAXY_PROGRAM, PLAYBOOK_PROGRAM};

use super::local;
use super::{After, Context, ProvisionError};

/// The alias the pinned host key is recorded under in the private known_hosts.
const HOST_KEY_ALIAS: &str = "imgbuild-build-machine";

pub async fn run(
    p: &Provisioner,
    c: &AnsibleConfig,
    cx: &Context<'_>,
) -> Result<After, ProvisionError> {
    let details = cx.comm.connection_details().await?;
    let local = |context: String| move |source| ProvisionError::Local { context, source };
    let work = tempfile::Builder::new()
        .prefix("imgbuild-ansible-")
        .tempdir()
        .map_err(local(format!(
            "{}: cannot create a temporary folder",
            p.label()
        )))?;
    // Declared after `work`, so that it runs first: SSH masters Ansible
    // left running are told to exit before their folder goes.
    let _masters = ControlMasters(work.path().join("cp"));

    let files = PrivateFiles::write(work.path(), &details)
        .map_err(local(format!("{}: cannot write the SSH files", p.label())))?;
    let mut extra_vars = Map::new();
    for (name, value) in &c.extra_vars {
        extra_vars.insert(name.clone(), Value::String(cx.scope.expand(value)?));
    }
    let extra_vars_file = work.path().join("extra-vars.json");
    write_private(
        &extra_vars_file,
        Value::Object(extra_vars).to_string().as_bytes(),
    )
    .map_err(local(format!("{}: cannot write the extra vars", p.label())))?;

    let host = cx.events.build().to_string();
    let user = match &c.user {
        Some(user) => cx.scope.expand(user)?,
        None => details.endpoint.user.clone(),
    };
    let groups = cx.scope.expand_all(&c.groups)?;
    let inventory = Inventory::place(p, c, cx, work.path())?;
    let text = inventory_json(&host, &user, &details, &files, &groups);
    write_private(&inventory.path, text.as_bytes()).map_err(local(format!(
        "{}: cannot write the inventory {}",
        p.label(),
        inventory.path.display()
    )))?;
    if c.keep_inventory_file {
        cx.events
            .info(format!("inventory kept at {}", inventory.path.display()));
    }

    let mut env = vec![
        ("ANSIBLE_NOCOLOR".to_string(), "1".to_string()),
        ("ANSIBLE_RETRY_FILES_ENABLED".into(), "False".into()),
        (
            "ANSIBLE_HOST_KEY_CHECKING".into(),
            if details.pinned_host_key.is_some() {
                "True"
            } else {
                "False"
            }
            .into(),
        ),
        (
            "ANSIBLE_SSH_CONTROL_PATH_DIR".into(),
            work.path().join("cp").display().to_string(),
        ),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    let timeout = p.common.timeout.map(|t| t.0);
    if let Some(galaxy) = &c.galaxy_file {
        let galaxy = cx.template_dir.join(cx.scope.expand(galaxy)?);
        let installed = work.path().join("galaxy");
        install_from_galaxy(p, cx, &galaxy, &installed, timeout).await?;
        env.push((
            "ANSIBLE_ROLES_PATH".into(),
            format!(
                "{}:~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles",
                installed.join("roles").display()
            ),
        ));
        env.push((
            "ANSIBLE_COLLECTIONS_PATH".into(),
            format!(
                "{}:~/.ansible/collections:/usr/share/ansible/collections",
                installed.join("collections").display()
            ),
        ));
    }
    for entry in cx.scope.expand_all(&c.ansible_env_vars)? {
        if let Some((name, value)) = entry.split_once('=') {
            env.push((name.to_string(), value.to_string()));
        }
    }

    let playbook = cx.scope.expand(&c.playbook_file)?;
    let mut cmd = Command::new(PLAYBOOK_PROGRAM);
    cmd.arg("-i")
        .arg(&inventory.path)
        .arg("--extra-vars")
        .arg(format!("@{}", extra_vars_file.display()));
    if c.become_root {
        cmd.arg("--become");
    }
    cmd.args(cx.scope.expand_all(&c.extra_arguments)?)
        .arg(cx.template_dir.join(&playbook))
        .current_dir(local::working_dir(cx.template_dir))
        .envs(env);
    cx.events.info(format!(
        "running ansible-playbook {playbook} against {user}@{}:{}",
        details.endpoint.host, details.endpoint.port
    ));
    let mut play = PlayProgress::default();
    let events = cx.events;
    let status = local::run(cmd, timeout, |stream, line| {
        play.line(line);
        events.output(stream, line);
    })
    .await
    .map_err(|e| match e {
        local::LocalError::TimedOut(_) => {
            failed(p, cx, &format!("ansible-playbook {playbook} {e}"))
        }
        e => failed(p, cx, &e.to_string()),
    })?;
    play.judge(p, cx, &playbook, &status)?;
    Ok(After::Connected)
}

/// A failure, with anything sensitive masked (task names can carry values).
fn failed(p: &Provisioner, cx: &Context<'_>, what: &str) -> ProvisionError {
    ProvisionError::Failed(cx.events.mask(&format!("{}: {what}", p.label())))
}

async fn install_from_galaxy(
    p: &Provisioner,
    cx: &Context<'_>,
    requirements: &Path,
    into: &Path,
    timeout: Option<std::time::Duration>,
) -> Result<(), ProvisionError> {
    let text = std::fs::read_to_string(requirements).map_err(|source| ProvisionError::Local {
        context: format!("{}: cannot read {}", p.label(), requirements.display()),
        source,
    })?;
    let mut kinds = vec![("role", "roles")];
    // A requirements file lists collections under a top-level `collections:` key.
    if text.lines().any(|l| l.starts_with("collections:")) {
        kinds.push(("collection", "collections"));
    }
    for (kind, folder) in kinds {
        let mut cmd = Command::new(GALAXY_PROGRAM);
        cmd.args([kind, "install", "-r"])
            .arg(requirements)
            .arg("-p")
            .arg(into.join(folder))
            .current_dir(local::working_dir(cx.template_dir))
            .env("ANSIBLE_NOCOLOR", "1");
        let events = cx.events;
        let status = local::run(cmd, timeout, |stream, line| events.output(stream, line))
            .await
            .map_err(|e| match e {
                local::LocalError::TimedOut(_) => failed(p, cx, &format!("ansible-galaxy {e}")),
                e => failed(p, cx, &e.to_string()),
            })?;
        if !status.success() {
            return Err(failed(
                p,
                cx,
                &format!(
                    "ansible-galaxy could not install the {folder} of {} ({status})",
                    requirements.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The key files and known_hosts ssh is pointed at, all 0600.
struct PrivateFiles {
    key: Option<PathBuf>,
    bastion_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
}

impl PrivateFiles {
    fn write(dir: &Path, details: &ConnectionDetails) -> std::io::Result<PrivateFiles> {
        let key_file = |endpoint: &Endpoint, name: &str| -> std::io::Result<Option<PathBuf>> {
            match ConnectionDetails::private_key(endpoint) {
                Some(pem) => {
                    let path = dir.join(name);
                    write_private(&path, pem.as_bytes())?;
                    Ok(Some(path))
                }
                None => Ok(None),
            }
        };
        let key = key_file(&details.endpoint, "key")?;
        let bastion_key = match &details.bastion {
            Some(b) => key_file(b, "bastion-key")?,
            None => None,
        };
        let known_hosts = match &details.pinned_host_key {
            Some(line) => {
                let path = dir.join("known_hosts");
                write_private(&path, format!("{HOST_KEY_ALIAS} {line}\n").as_bytes())?;
                Some(path)
            }
            None => None,
        };
        Ok(PrivateFiles {
            key,
            bastion_key,
            known_hosts,
        })
    }
}

/// The options ssh needs to repeat the build's connection.
fn ssh_arguments(details: &ConnectionDetails, files: &PrivateFiles) -> String {
    let mut args: Vec<String> = Vec::new();
    if files.key.is_some() {
        args.push("-o IdentitiesOnly=yes".into());
    }
    match (&files.known_hosts, &details.pinned_host_key) {
        (Some(known_hosts), Some(line)) => {
            let algorithm = line.split_whitespace().next().unwrap_or("ssh-ed25519");
            let algorithms = if algorithm == "ssh-rsa" {
                "rsa-sha2-512,rsa-sha2-256,ssh-rsa"
            } else {
                algorithm
            };
            args.push("-o StrictHostKeyChecking=yes".into());
            args.push(format!(
                "-o UserKnownHostsFile={}",
                shell_quote(&known_hosts.display().to_string())
            ));
            args.push(format!("-o HostKeyAlias={HOST_KEY_ALIAS}"));
            args.push(format!("-o HostKeyAlgorithms={algorithms}"));
        }
        _ => {
            args.push("-o StrictHostKeyChecking=no".into());
            args.push("-o UserKnownHostsFile=/dev/null".into());
        }
    }
    if let Some(bastion) = &details.bastion {
        // The communicator accepts any bastion host key; so does this.
        let mut proxy = format!(
            "ssh -W %h:%p -p {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            bastion.port
        );
        if let Some(key) = files.bastion_key.as_ref().or(files.key.as_ref()) {
            proxy.push_str(&format!(
                " -o IdentitiesOnly=yes -i {}",
                shell_quote(&key.display().to_string())
            ));
        }
        proxy.push_str(&format!(
            " {}",
            shell_quote(&format!("{}@{}", bastion.user, bastion.host))
        ));
        args.push(format!("-o ProxyCommand=\"{proxy}\""));
    }
    args.join(" ")
}

/// The inventory, as JSON (which Ansible reads as YAML): one host, the
/// build machine, named after the build, in `groups`.
fn inventory_json(
    host: &str,
    user: &str,
    details: &ConnectionDetails,
    files: &PrivateFiles,
    groups: &[String],
) -> String {
    let mut vars = Map::new();
    vars.insert("ansible_host".into(), json!(details.endpoint.host));
    vars.insert("ansible_port".into(), json!(details.endpoint.port));
    vars.insert("ansible_user".into(), json!(user));
    if let Some(key) = &files.key {
        vars.insert(
            "ansible_ssh_private_key_file".into(),
            json!(key.display().to_string()),
        );
    }
    vars.insert(
        "ansible_ssh_common_args".into(),
        json!(ssh_arguments(details, files)),
    );
    let mut children = Map::new();
    for group in groups {
        children.insert(group.clone(), json!({ "hosts": { host: {} } }));
    }
    let inventory = json!({
        "all": {
            "hosts": { host: Value::Object(vars) },
            "children": Value::Object(children),
        }
    });
    serde_json::to_string_pretty(&inventory).expect("JSON of strings")
}

/// Where the inventory goes, and whether it is removed afterwards.
struct Inventory {
    path: PathBuf,
    keep: bool,
}

impl Inventory {
    fn place(
        p: &Provisioner,
        c: &AnsibleConfig,
        cx: &Context<'_>,
        work: &Path,
    ) -> Result<Inventory, ProvisionError> {
        let name = format!("imgbuild-inventory-{}-{}.json", cx.build_id, p.number);
        let path = match (&c.inventory_directory, c.keep_inventory_file) {
            (Some(dir), _) => cx.template_dir.join(cx.scope.expand(dir)?).join(name),
            (None, true) => std::env::temp_dir().join(name),
            (None, false) => work.join("inventory.json"),
        };
        Ok(Inventory {
            path,
            keep: c.keep_inventory_file,
        })
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Tells the SSH connection masters Ansible keeps (ControlPersist) to exit.
struct ControlMasters(PathBuf);

impl Drop for ControlMasters {
    fn drop(&mut self) {
        for socket in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = std::process::Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.path().display()))
                .args(["-O", "exit", HOST_KEY_ALIAS])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

/// What the play is doing, read from its output: the task under way and
/// the last one that failed.
#[derive(Debug, Default)]
pub(super) struct PlayProgress {
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
        p: &Provisioner,
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
        Err(failed(p, cx, &what))
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

    #[test]
    fn ssh_arguments_pin_the_host_key_and_go_through_the_bastion() {
        let endpoint = |host: &str| Endpoint {
            host: host.into(),
            port: 2222,
            user: "root".into(),
            credential: crate::communicator::Credential::Agent,
        };
        let details = ConnectionDetails {
            endpoint: endpoint("10.0.0.5"),
            bastion: Some(endpoint("bastion.example.com")),
            pinned_host_key: Some("ssh-ed25519 AAAAC3".into()),
        };
        let files = PrivateFiles {
            key: Some("/tmp/w/key".into()),
            bastion_key: None,
            known_hosts: Some("/tmp/w/known_hosts".into()),
        };
        assert_eq!(
            ssh_arguments(&details, &files),
            "-o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/tmp/w/known_hosts \
             -o HostKeyAlias=imgbuild-build-machine -o HostKeyAlgorithms=ssh-ed25519 \
             -o ProxyCommand=\"ssh -W %h:%p -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -i /tmp/w/key root@bastion.example.com\""
        );
    }
}
