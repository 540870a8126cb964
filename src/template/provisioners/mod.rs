//! Settings of the provisioner types that run Ansible or local commands, one
//! file per type: the struct users write and the checks `validate` makes.

mod ansible;
mod ansible_local;
mod shell_local;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use ansible::{AnsibleConfig, GALAXY_PROGRAM, PLAYBOOK_PROGRAM};
pub use ansible_local::AnsibleLocalConfig;
pub use shell_local::ShellLocalConfig;

use super::check::Checker;
use super::document::KeyPath;
use super::is_identifier;

/// Where `program` is on this machine's PATH, if it is there.
pub fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The names Ansible accepts for variables and groups: letters, digits and
/// `_`, not starting with a digit.
fn check_ansible_names(
    checker: &mut Checker<'_>,
    extra_vars: &BTreeMap<String, String>,
    groups: &[String],
) {
    for name in extra_vars.keys() {
        if !is_identifier(name) {
            let path = checker.base.key("extra_vars").key(name);
            checker.error_at(
                &path,
                format!("`{name}` is not a valid Ansible variable name (letters, digits and `_`)"),
            );
        }
    }
    for (i, group) in groups.iter().enumerate() {
        if !is_identifier(group) {
            let path = checker.base.key("groups").index(i);
            checker.error_at(
                &path,
                format!("`{group}` is not a valid Ansible group name (letters, digits and `_`)"),
            );
        }
    }
}

/// A local folder named by `key` must exist and be a folder.
fn check_local_dir(checker: &mut Checker<'_>, path: &KeyPath, dir: &str) {
    if dir.contains("${") {
        return;
    }
    let full = checker
        .doc
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(dir);
    if full.exists() && !full.is_dir() {
        checker.error_at(path, format!("`{dir}` is not a folder"));
    } else {
        checker.local_file(path, dir);
    }
}
