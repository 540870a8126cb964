//! `type = "shell-local"`: run commands on the machine running imgbuild, with
//! the build's values in their environment.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::provisioner::ProvisionerSchema;
use crate::template::check::Checker;
use crate::template::is_identifier;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellLocalConfig {
    pub inline: Option<Vec<String>>,
    pub script: Option<String>,
    pub scripts: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub inline_shebang: Option<String>,
    pub valid_exit_codes: Option<Vec<i32>>,
}

impl ProvisionerSchema for ShellLocalConfig {
    const TYPE: &'static str = "shell-local";

    fn check(&self, checker: &mut Checker<'_>) {
        let given = [
            self.inline.is_some(),
            self.script.is_some(),
            self.scripts.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            1 => {}
            0 => {
                checker.error(
                    "",
                    "a shell-local provisioner needs one of `inline`, `script` or `scripts`",
                );
            }
            _ => {
                checker.error(
                    "",
                    "a shell-local provisioner takes only one of `inline`, `script` or `scripts`",
                );
            }
        }
        let base = checker.base.clone();
        if let Some(script) = &self.script {
            checker.local_file(&base.key("script"), script);
        }
        for (i, script) in self.scripts.iter().flatten().enumerate() {
            checker.local_file(&base.key("scripts").index(i), script);
        }
        for name in self.env.keys() {
            if !is_identifier(name) {
                checker.error_at(
                    &base.key("env").key(name),
                    format!("`{name}` is not a valid environment variable name"),
                );
            }
        }
    }
}

impl ShellLocalConfig {
    /// What it does, in one line, for `inspect`.
    pub fn summary(&self) -> String {
        let mut what = match (&self.inline, &self.script, &self.scripts) {
            (Some(lines), _, _) => format!(
                "shell-local: inline, {} line{}",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" }
            ),
            (_, Some(s), _) => format!("shell-local: script {s}"),
            (_, _, Some(list)) => format!("shell-local: scripts {}", list.join(", ")),
            _ => "shell-local".to_string(),
        };
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            what.push_str(&format!("; env {}", names.join(", ")));
        }
        what
    }
}
