//! `type = "ansible"`: run `ansible-playbook` on this machine against the
//! build machine, over SSH with the build's own connection details. Every
//! file it writes (key, inventory, extra vars, roles from Galaxy) lives in a
//! private temporary folder removed on every path, cancel included.

mod play;
mod ssh;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokio::process::Command;

use crate::template::Provisioner;
use crate::template::provisioners::{AnsibleConfig, GALAXY_PROGRAM, PLAYBOOK_PROGRAM};

use super::local;
use super::{After, Context, ProvisionError};

pub(super) use play::PlayProgress;
use play::failed;
use ssh::{ControlMasters, PrivateFiles, inventory_json, write_private};

pub async fn run(
    p: &Provisioner,
    c: &AnsibleConfig,
    cx: &Context<'_>,
) -> Result<After, ProvisionError> {
    let details = cx.comm.connection_details().await?;
    let folder = local::template_folder(cx.template_dir);
    let local = |context: String| move |source| ProvisionError::Local { context, source };
    let work = tempfile::Builder::new()
        .prefix("imgbuild-ansible-")
        .tempdir()
        .map_err(local("cannot create a temporary folder".to_string()))?;
    // Declared after `work`, so that it runs first: SSH masters Ansible
    // left running are told to exit before their folder goes.
    let _masters = ControlMasters(work.path().join("cp"));

    let files = PrivateFiles::write(work.path(), &details)
        .map_err(local("cannot write the SSH files".to_string()))?;
    let mut extra_vars = Map::new();
    for (name, value) in &c.extra_vars {
        extra_vars.insert(name.clone(), Value::String(cx.scope.expand(value)?));
    }
    let extra_vars_file = work.path().join("extra-vars.json");
    write_private(
        &extra_vars_file,
        Value::Object(extra_vars).to_string().as_bytes(),
    )
    .map_err(local("cannot write the extra vars".to_string()))?;

    let host = cx.events.build().to_string();
    let user = match &c.user {
        Some(user) => cx.scope.expand(user)?,
        None => details.endpoint.user.clone(),
    };
    let groups = cx.scope.expand_all(&c.groups)?;
    let inventory = Inventory::place(p, c, cx, &folder, work.path())?;
    let text = inventory_json(&host, &user, &details, &files, &groups);
    write_private(&inventory.path, text.as_bytes()).map_err(local(format!(
        "cannot write the inventory {}",
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
        let galaxy = folder.join(cx.scope.expand(galaxy)?);
        let installed = work.path().join("galaxy");
        install_from_galaxy(cx, &folder, &galaxy, &installed, timeout).await?;
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
        .arg(folder.join(&playbook))
        .current_dir(&folder)
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
        local::LocalError::TimedOut(_) => failed(cx, &format!("ansible-playbook {playbook} {e}")),
        e => failed(cx, &e.to_string()),
    })?;
    play.judge(cx, &playbook, &status)?;
    Ok(After::Connected)
}

async fn install_from_galaxy(
    cx: &Context<'_>,
    folder: &Path,
    requirements: &Path,
    into: &Path,
    timeout: Option<std::time::Duration>,
) -> Result<(), ProvisionError> {
    let text = std::fs::read_to_string(requirements).map_err(|source| ProvisionError::Local {
        context: format!("cannot read {}", requirements.display()),
        source,
    })?;
    let mut kinds = vec![("role", "roles")];
    // A requirements file lists collections under a top-level `collections:` key.
    if text.lines().any(|l| l.starts_with("collections:")) {
        kinds.push(("collection", "collections"));
    }
    for (kind, installed) in kinds {
        let mut cmd = Command::new(GALAXY_PROGRAM);
        cmd.args([kind, "install", "-r"])
            .arg(requirements)
            .arg("-p")
            .arg(into.join(installed))
            .current_dir(folder)
            .env("ANSIBLE_NOCOLOR", "1");
        let events = cx.events;
        let status = local::run(cmd, timeout, |stream, line| events.output(stream, line))
            .await
            .map_err(|e| match e {
                local::LocalError::TimedOut(_) => failed(cx, &format!("ansible-galaxy {e}")),
                e => failed(cx, &e.to_string()),
            })?;
        if !status.success() {
            return Err(failed(
                cx,
                &format!(
                    "ansible-galaxy could not install the {installed} of {} ({status})",
                    requirements.display()
                ),
            ));
        }
    }
    Ok(())
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
        folder: &Path,
        work: &Path,
    ) -> Result<Inventory, ProvisionError> {
        let name = format!("imgbuild-inventory-{}-{}.json", cx.build_id, p.number);
        let path = match (&c.inventory_directory, c.keep_inventory_file) {
            (Some(dir), _) => folder.join(cx.scope.expand(dir)?).join(name),
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

#[async_trait::async_trait]
impl crate::provisioner::ProvisionerConfig for AnsibleConfig {
    fn type_name(&self) -> &'static str {
        <Self as crate::provisioner::ProvisionerSchema>::TYPE
    }

    fn summary(&self) -> String {
        AnsibleConfig::summary(self)
    }

    fn local_inputs(&self) -> Vec<&str> {
        std::iter::once(&self.playbook_file)
            .chain(&self.galaxy_file)
            .chain(&self.inventory_directory)
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
