//! `type = "ansible-local"`: upload the playbook (and its roles) into a
//! staging folder on the build machine and run `ansible-playbook` there,
//! through the communicator, against the machine itself.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::communicator::{SshError, shell_quote};
use crate::events::Stream;
use crate::template::Provisioner;
use crate::template::provisioners::AnsibleLocalConfig;

use super::ansible::PlayProgress;
use super::{After, Context, ProvisionError, progress};

pub async fn run(
    p: &Provisioner,
    c: &AnsibleLocalConfig,
    cx: &Context<'_>,
) -> Result<After, ProvisionError> {
    let staging = match &c.staging_directory {
        Some(dir) => cx.scope.expand(dir)?,
        None => format!("/tmp/imgbuild-ansible-{}-{}", cx.build_id, p.number),
    };
    let playbook = cx.scope.expand(&c.playbook_file)?;
    let playbook_name = Path::new(&playbook)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| playbook.clone());
    let quoted = shell_quote(&staging);
    cx.comm
        .output(&format!("mkdir -p -m 700 {quoted} {quoted}/roles"))
        .await?;

    if let Some(dir) = &c.playbook_dir {
        let dir = cx.template_dir.join(cx.scope.expand(dir)?);
        cx.events
            .info(format!("uploading {} to {staging}", dir.display()));
        cx.comm
            .upload_dir(
                &dir,
                &staging,
                progress(cx.events, format!("upload {}", dir.display())),
            )
            .await?;
    }
    cx.comm
        .upload_file(
            &cx.template_dir.join(&playbook),
            &format!("{staging}/{playbook_name}"),
            progress(cx.events, format!("upload {playbook}")),
        )
        .await?;
    for role in cx.scope.expand_all(&c.role_paths)? {
        let local = cx.template_dir.join(&role);
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| role.clone());
        cx.comm
            .upload_dir(
                &local,
                &format!("{staging}/roles/{name}"),
                progress(cx.events, format!("upload {role}")),
            )
            .await?;
    }

    let mut extra_vars = Map::new();
    for (name, value) in &c.extra_vars {
        extra_vars.insert(name.clone(), Value::String(cx.scope.expand(value)?));
    }
    cx.comm
        .upload_bytes(
            Value::Object(extra_vars).to_string().into_bytes(),
            &format!("{staging}/extra-vars.json"),
            0o600,
        )
        .await?;
    let host = cx.events.build().to_string();
    let mut inventory = format!("{host} ansible_connection=local\n");
    for group in cx.scope.expand_all(&c.groups)? {
        inventory.push_str(&format!("[{group}]\n{host}\n"));
    }
    cx.comm
        .upload_bytes(
            inventory.into_bytes(),
            &format!("{staging}/inventory"),
            0o600,
        )
        .await?;

    let program = match &c.command {
        Some(command) => cx.scope.expand(command)?,
        None => "ansible-playbook".to_string(),
    };
    let arguments: Vec<String> = cx
        .scope
        .expand_all(&c.extra_arguments)?
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    let play = format!(
        "cd {quoted} && ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False PYTHONUNBUFFERED=1 \
         ANSIBLE_ROLES_PATH={quoted}/roles {program} -i inventory --extra-vars @extra-vars.json {} {}",
        arguments.join(" "),
        shell_quote(&playbook_name)
    );
    // The staging folder goes when the command ends, also when a cancel or
    // timeout stops it: it holds the extra vars.
    let command = if c.clean_staging_directory {
        format!(
            "trap 'rm -rf {quoted}' EXIT; trap 'exit 143' HUP INT TERM; {{ {play}; }} </dev/null"
        )
    } else {
        play
    };
    cx.events
        .info(format!("running {program} {playbook_name} on the machine"));
    let tracker = Arc::new(Mutex::new(PlayProgress::default()));
    let (events, seen) = (cx.events.clone(), tracker.clone());
    let result = cx
        .comm
        .exec(
            &command,
            p.common.timeout.map(|t| t.0),
            move |stream: Stream, line: &str| {
                seen.lock().expect("play progress").line(line);
                events.output(stream, line);
            },
        )
        .await;
    let status = match result {
        Ok(status) => status,
        Err(SshError::TimedOut(limit)) => {
            return Err(ProvisionError::Failed(format!(
                "{program} {playbook_name} timed out after {}",
                humantime::format_duration(limit)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tracker
        .lock()
        .expect("play progress")
        .judge(cx, &playbook, &status)?;
    Ok(After::Connected)
}

#[async_trait::async_trait]
impl crate::provisioner::ProvisionerConfig for AnsibleLocalConfig {
    fn type_name(&self) -> &'static str {
        <Self as crate::provisioner::ProvisionerSchema>::TYPE
    }

    fn summary(&self) -> String {
        AnsibleLocalConfig::summary(self)
    }

    fn local_inputs(&self) -> Vec<&str> {
        std::iter::once(&self.playbook_file)
            .chain(&self.playbook_dir)
            .chain(&self.role_paths)
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
