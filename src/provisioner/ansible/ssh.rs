//! How Ansible's `ssh` repeats the build's connection: the private files it
//! is pointed at, its options (key, pinned host key, bastion), the inventory
//! that carries them, and the connection masters it leaves behind.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::communicator::{ConnectionDetails, Endpoint, shell_quote};

/// The alias the pinned host key is recorded under in the private known_hosts.
const HOST_KEY_ALIAS: &str = "imgbuild-build-machine";

/// The key files and known_hosts ssh is pointed at, all 0600.
pub(super) struct PrivateFiles {
    key: Option<PathBuf>,
    bastion_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
}

impl PrivateFiles {
    pub(super) fn write(dir: &Path, details: &ConnectionDetails) -> std::io::Result<PrivateFiles> {
        let key_file = |endpoint: &Endpoint, name: &str| -> std::io::Result<Option<PathBuf>> {
            match endpoint.private_key() {
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
pub(super) fn inventory_json(
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

/// Tells the SSH connection masters Ansible keeps (ControlPersist) to exit:
/// they run in a session of their own, which stopping Ansible does not reach.
pub(super) struct ControlMasters(pub(super) PathBuf);

impl Drop for ControlMasters {
    fn drop(&mut self) {
        use std::process::{Command, Stdio};
        for socket in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let Ok(mut exit) = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.path().display()))
                .args(["-O", "exit", HOST_KEY_ALIAS])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            // A local socket answers at once; a master that does not is left
            // to its own ControlPersist timeout rather than hang the build.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while exit.try_wait().is_ok_and(|s| s.is_none()) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = exit.kill();
            let _ = exit.wait();
        }
    }
}

pub(super) fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

#[cfg(test)]
mod tests {
    use super::*;

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
