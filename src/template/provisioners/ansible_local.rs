//! `type = "ansible-local"`: upload a playbook (and its roles) and run
//! `ansible-playbook` on the build machine itself, for images that carry Ansible.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_ansible_names, check_local_dir};
use crate::provisioner::ProvisionerSchema;
use crate::template::check::Checker;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleLocalConfig {
    pub playbook_file: String,
    /// A folder uploaded whole beside the playbook (roles, group_vars, files).
    pub playbook_dir: Option<String>,
    /// Role folders uploaded into the staging folder's `roles/`.
    #[serde(default)]
    pub role_paths: Vec<String>,
    #[serde(default)]
    pub extra_arguments: Vec<String>,
    #[serde(default)]
    pub extra_vars: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Where files go on the machine; default `/tmp/imgbuild-ansible-{build id}-{n}`.
    pub staging_directory: Option<String>,
    #[serde(default = "yes")]
    pub clean_staging_directory: bool,
    /// The program run on the machine; default `ansible-playbook`.
    pub command: Option<String>,
}

fn yes() -> bool {
    true
}

impl ProvisionerSchema for AnsibleLocalConfig {
    const TYPE: &'static str = "ansible-local";

    fn check(&self, checker: &mut Checker<'_>) {
        let base = checker.base.clone();
        checker.local_file(&base.key("playbook_file"), &self.playbook_file);
        if let Some(dir) = &self.playbook_dir {
            check_local_dir(checker, &base.key("playbook_dir"), dir);
        }
        for (i, dir) in self.role_paths.iter().enumerate() {
            check_local_dir(checker, &base.key("role_paths").index(i), dir);
        }
        check_ansible_names(checker, &self.extra_vars, &self.groups);
        if let Some(staging) = &self.staging_directory
            && !staging.starts_with('/')
            && !staging.starts_with("${")
        {
            checker.error(
                "staging_directory",
                format!(
                    "`staging_directory` must be an absolute path on the machine, not `{staging}`"
                ),
            );
        }
        if self.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            checker.error("command", "`command` must not be empty");
        }
    }
}

impl AnsibleLocalConfig {
    /// What it does, in one line, for `inspect`.
    pub fn summary(&self) -> String {
        let mut what = format!("ansible-local: playbook {}", self.playbook_file);
        if !self.role_paths.is_empty() {
            what.push_str(&format!(", roles {}", self.role_paths.join(", ")));
        }
        what
    }
}
