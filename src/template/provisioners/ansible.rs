//! `type = "ansible"`: run `ansible-playbook` on this machine against the
//! build machine, over SSH with the build's own connection details.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_ansible_names, check_local_dir, on_path};
use crate::provisioner::ProvisionerSchema;
use crate::template::check::Checker;
use crate::template::is_identifier;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleConfig {
    pub playbook_file: String,
    /// Roles and collections installed first, into a temporary folder.
    pub galaxy_file: Option<String>,
    /// Passed to `ansible-playbook` as they are, before the playbook.
    #[serde(default)]
    pub extra_arguments: Vec<String>,
    /// Given to the play as extra variables (values may use references).
    #[serde(default)]
    pub extra_vars: BTreeMap<String, String>,
    /// Inventory groups the build machine is put in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Where the inventory is written, so that `group_vars`/`host_vars` there apply.
    pub inventory_directory: Option<String>,
    /// Login user; defaults to the build's SSH user.
    pub user: Option<String>,
    #[serde(default, rename = "become")]
    pub become_root: bool,
    /// `NAME=value` entries added to ansible-playbook's environment.
    #[serde(default)]
    pub ansible_env_vars: Vec<String>,
    #[serde(default)]
    pub keep_inventory_file: bool,
}

pub const PLAYBOOK_PROGRAM: &str = "ansible-playbook";
pub const GALAXY_PROGRAM: &str = "ansible-galaxy";
const INSTALL_HINT: &str = "install Ansible on this machine: `python3 -m pip install --user ansible-core` (or `pipx install ansible-core`, or your distribution's `ansible` package)";

impl ProvisionerSchema for AnsibleConfig {
    const TYPE: &'static str = "ansible";

    fn check(&self, checker: &mut Checker<'_>) {
        let base = checker.base.clone();
        checker.local_file(&base.key("playbook_file"), &self.playbook_file);
        if let Some(galaxy) = &self.galaxy_file {
            checker.local_file(&base.key("galaxy_file"), galaxy);
        }
        if let Some(dir) = &self.inventory_directory {
            check_local_dir(checker, &base.key("inventory_directory"), dir);
        }
        check_ansible_names(checker, &self.extra_vars, &self.groups);
        for (i, entry) in self.ansible_env_vars.iter().enumerate() {
            let name_ok = entry
                .split_once('=')
                .is_some_and(|(name, _)| is_identifier(name));
            if !name_ok {
                checker
                    .error_at(
                        &base.key("ansible_env_vars").index(i),
                        format!("`{entry}` is not a `NAME=value` environment entry"),
                    )
                    .help = Some("write e.g. `ansible_env_vars = [\"ANSIBLE_FORKS=1\"]`".into());
            }
        }
        let mut programs = vec![PLAYBOOK_PROGRAM];
        if self.galaxy_file.is_some() {
            programs.push(GALAXY_PROGRAM);
        }
        for program in programs {
            if on_path(program).is_none() {
                checker
                    .error(
                        "type",
                        format!("`{program}` is not installed on this machine (it is not in PATH)"),
                    )
                    .help = Some(INSTALL_HINT.into());
            }
        }
    }
}

impl AnsibleConfig {
    /// What it does, in one line, for `inspect`.
    pub fn summary(&self) -> String {
        let mut what = format!("ansible: playbook {}", self.playbook_file);
        if let Some(galaxy) = &self.galaxy_file {
            what.push_str(&format!(", galaxy {galaxy}"));
        }
        if self.become_root {
            what.push_str(" (become)");
        }
        if !self.extra_vars.is_empty() {
            let names: Vec<&str> = self.extra_vars.keys().map(String::as_str).collect();
            what.push_str(&format!("; extra_vars {}", names.join(", ")));
        }
        what
    }
}
