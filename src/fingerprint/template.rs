//! The parts of a fingerprint that come from the template: the source's
//! settings, each provisioner with its local files, and the values of the
//! variables and environment variables those refer to.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Fingerprint, Input, Part, files, sha256_hex};
use crate::template::interpolate::references;
use crate::template::{Source, Template, Typed};

/// The fingerprint of building `source`, given the parts that describe its
/// resolved base (the builder finds those: an AMI id, a checksum, the state
/// of a package archive).
pub fn compute(
    template: &Template,
    source: &Source,
    base: Vec<Part>,
) -> Result<Fingerprint, String> {
    let mut parts = Vec::new();
    let mut used = BTreeSet::new();

    // SSH connection settings (host, port, keys, timeouts) only say how to
    // reach the machine, not what is on it; the user does count. So with
    // the settings that only say how to launch it.
    let mut config = source.written.clone();
    if let Value::Object(map) = &mut config {
        // `retain` keeps the sorted order the hash depends on.
        let launch_only = source.config.launch_only_settings();
        map.retain(|key, _| !launch_only.contains(&key.as_str()));
    }
    let settings = json!({
        "name": template.name,
        "version": template.version,
        "type": source.config.type_name(),
        "ssh_username": source.ssh.ssh_username,
        "config": config,
    });
    collect_references(&settings, &mut used);
    parts.push(Part::new(
        "source",
        format!("source `{}` settings", source.name),
        vec![settings_input(&settings)],
    ));

    for p in template.provisioners_for(&source.name) {
        let local = p.kind.local_inputs();
        let settings = json!({
            "type": p.type_name(),
            "config": p.written,
        });
        collect_references(&settings, &mut used);
        let mut inputs = vec![settings_input(&settings)];
        for written in local {
            inputs.extend(
                local_inputs(template, written).map_err(|e| format!("{}: {e}", p.label()))?,
            );
        }
        parts.push(Part::new(
            format!("provisioner.{}", p.number),
            p.label(),
            inputs,
        ));
    }

    let mut secrets = Vec::new();
    for name in &used {
        if let Some(var) = name.strip_prefix("var.") {
            let Some(v) = template.variables.iter().find(|v| v.name == var) else {
                continue;
            };
            let value = v.value.as_ref().map(canonical).unwrap_or_default();
            if v.sensitive {
                secrets.push(Input {
                    label: var.to_string(),
                    hash: sha256_hex(format!("{var}\0{value}")),
                });
            } else {
                parts.push(value_part(name, &format!("variable `{var}`"), &value));
            }
        } else if let Some(env) = name.strip_prefix("env.") {
            let value = std::env::var(env).unwrap_or_default();
            parts.push(value_part(
                name,
                &format!("environment variable `{env}`"),
                &value,
            ));
        }
    }
    if !secrets.is_empty() {
        parts.push(Part::new("sensitive", "sensitive variables", secrets));
    }
    parts.extend(base);
    Ok(Fingerprint::from_parts(parts))
}

/// A variable's value as text, lists and maps as JSON, so each type hashes
/// the same way every time.
fn canonical(value: &Typed) -> String {
    match value {
        Typed::List(items) => serde_json::to_string(items).unwrap_or_default(),
        Typed::Map(map) => serde_json::to_string(map).unwrap_or_default(),
        other => other.as_text().unwrap_or_default(),
    }
}

/// Settings as written (references unexpanded), keys in a fixed order, so
/// neither the order of keys in the file nor a per-run value matters.
fn settings_input(settings: &Value) -> Input {
    Input {
        label: "settings".into(),
        hash: sha256_hex(settings.to_string()),
    }
}

fn value_part(key: &str, label: &str, value: &str) -> Part {
    Part::new(
        key,
        label,
        vec![Input {
            label: "value".into(),
            hash: sha256_hex(value),
        }],
    )
}

/// `var.*` and `env.*` references anywhere in `value`.
fn collect_references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            for r in references(s).unwrap_or_default() {
                if r.expr.starts_with("var.") || r.expr.starts_with("env.") {
                    out.insert(r.expr);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// The files behind a path the template names, relative to the template.
fn local_inputs(template: &Template, written: &str) -> Result<Vec<Input>, String> {
    let Ok(path) = template.scope.expand(written) else {
        // Known only once the build runs (`${source.…}`): the text is all there is.
        return Ok(vec![Input {
            label: format!("{written} (named at build time)"),
            hash: sha256_hex(written),
        }]);
    };
    let full = template.dir().join(&path);
    files::inputs(&full, &path).map_err(|e| format!("{}: {e}", full.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{VarInputs, load};

    fn fingerprint_of(dir: &std::path::Path, text: &str, vars: &[(&str, &str)]) -> Fingerprint {
        let path = dir.join("t.toml");
        std::fs::write(&path, text).unwrap();
        let inputs = VarInputs {
            cli: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            files: Vec::new(),
        };
        let template = load(&path, &inputs).unwrap_or_else(|d| panic!("{d:?}"));
        let base = vec![Part::new(
            "base",
            "base AMI ami-0123456789abcdef0",
            vec![Input {
                label: "id".into(),
                hash: sha256_hex("ami-0123456789abcdef0"),
            }],
        )];
        compute(&template, &template.sources[0], base).unwrap()
    }

    const TEMPLATE: &str = r#"name = "web"
version = "1.2"

[variables.greeting]
default = "hello"

[variables.token]
default = "s3cret"
sensitive = true

[variables.port]
default = "22"

[source.aws]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
ami_name = "web-${image.version}-${build.timestamp}-${build.id}"
ssh_port = "${var.port}"
tags = { Team = "platform", Owner = "ops" }

[[provisioner]]
type = "shell"
script = "setup.sh"
env = { GREETING = "${var.greeting}", TOKEN = "${var.token}" }

[[provisioner]]
type = "file"
source = "site/"
destination = "/var/www"
"#;

    fn world() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("setup.sh"), "echo hi\n").unwrap();
        std::fs::create_dir_all(dir.path().join("site/css")).unwrap();
        std::fs::write(dir.path().join("site/css/a.css"), "body{}").unwrap();
        dir
    }

    #[test]
    fn stable_and_blind_to_key_order_and_connection_settings() {
        let dir = world();
        let first = fingerprint_of(dir.path(), TEMPLATE, &[]);
        assert_eq!(fingerprint_of(dir.path(), TEMPLATE, &[]), first);
        let reordered = TEMPLATE.replace(
            "tags = { Team = \"platform\", Owner = \"ops\" }",
            "tags = { Owner = \"ops\", Team = \"platform\" }",
        );
        assert_eq!(
            fingerprint_of(dir.path(), &reordered, &[]).digest,
            first.digest
        );
        // The port only says how to connect.
        assert_eq!(
            fingerprint_of(dir.path(), TEMPLATE, &[("port", "2222")]).digest,
            first.digest
        );
        // The network, the market and the timeouts only say how to launch.
        let launched_otherwise = TEMPLATE.replace(
            "ssh_port = ",
            "subnet_filter = { filters = { \"tag:Tier\" = \"build\" }, most_free = true }\nspot_price = \"auto\"\nmetadata_http_put_response_hop_limit = 2\ntimeouts = { instance_running = \"20m\" }\nssh_port = ",
        );
        assert_eq!(
            fingerprint_of(dir.path(), &launched_otherwise, &[])
                .changed_since(&first.stored_parts()),
            Vec::<String>::new()
        );
        let typed_otherwise =
            TEMPLATE.replace("ssh_port = ", "instance_type = \"m7i.large\"\nssh_port = ");
        assert_ne!(
            fingerprint_of(dir.path(), &typed_otherwise, &[]).digest,
            first.digest
        );
        let keys: Vec<&str> = first.parts.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source",
                "provisioner.1",
                "provisioner.2",
                "var.greeting",
                "sensitive",
                "base"
            ]
        );
    }

    #[test]
    fn every_input_counts() {
        let dir = world();
        let first = fingerprint_of(dir.path(), TEMPLATE, &[]);
        let changed = |fp: Fingerprint| fp.changed_since(&first.stored_parts());

        assert_eq!(
            changed(fingerprint_of(dir.path(), TEMPLATE, &[("greeting", "hi")])),
            ["variable `greeting`"]
        );
        assert_eq!(
            changed(fingerprint_of(dir.path(), TEMPLATE, &[("token", "other")])),
            ["sensitive variables"]
        );
        assert_eq!(
            changed(fingerprint_of(
                dir.path(),
                &TEMPLATE.replace("Team = \"platform\"", "Team = \"web\""),
                &[]
            )),
            ["source `aws` settings"]
        );

        std::fs::write(dir.path().join("setup.sh"), "echo hi!\n").unwrap();
        let fp = fingerprint_of(dir.path(), TEMPLATE, &[]);
        assert_eq!(changed(fp.clone()).len(), 1);
        assert!(changed(fp)[0].starts_with("provisioner 1 (shell, "));
        std::fs::write(dir.path().join("setup.sh"), "echo hi\n").unwrap();

        std::fs::write(dir.path().join("site/css/a.css"), "body{ }").unwrap();
        let fp = fingerprint_of(dir.path(), TEMPLATE, &[]);
        assert!(changed(fp)[0].starts_with("provisioner 2 (file, "));
    }

    #[test]
    fn a_script_run_on_this_machine_counts_too() {
        let dir = world();
        std::fs::write(dir.path().join("render.sh"), "echo one\n").unwrap();
        let text = format!(
            "{TEMPLATE}\n[[provisioner]]\ntype = \"shell-local\"\nscript = \"render.sh\"\n"
        );
        let first = fingerprint_of(dir.path(), &text, &[]);
        std::fs::write(dir.path().join("render.sh"), "echo two\n").unwrap();
        let changed = fingerprint_of(dir.path(), &text, &[]).changed_since(&first.stored_parts());
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(
            changed[0].starts_with("provisioner 3 (shell-local, "),
            "{changed:?}"
        );
    }

    #[test]
    fn secrets_never_appear_in_labels() {
        let dir = world();
        let fp = fingerprint_of(dir.path(), TEMPLATE, &[]);
        let shown = format!("{fp:?}");
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("token"));
    }
}
