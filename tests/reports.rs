//! What imgbuild tells machines: `--output json` events of a real build (an
//! `ssh` source against a real sshd), its dotenv report, and the exact JSON
//! `validate` and `inspect` print.

mod common;

use std::time::Duration;

use common::test::Test;
use common::{Admit, Scratch, Sshd, text};

#[test]
fn a_build_with_json_output_prints_one_event_per_line_on_stdout() {
    let scratch = Scratch::new();
    let (_, authorized) = scratch.client_key();
    let sshd = Sshd::start(Admit::KeysFile(authorized));
    let template = format!(
        r#"name = "web"
version = "1.0"

[variables.token]
sensitive = true
default = "s3cr3t-value"

[source.box]
type = "ssh"
ssh_host = "127.0.0.1"
ssh_port = {}
ssh_username = "root"
ssh_private_key_file = "id_ed25519"
ssh_timeout = "20s"

[[provisioner]]
type = "shell"
inline = ["echo provisioned with ${{var.token}}"]
"#,
        sshd.port
    );
    let (out, scratch) = Test::in_scratch(scratch)
        .file("t.toml", &template)
        .args(["build", "t.toml", "--output", "json", "--dotenv", "out.env"])
        .limit(Duration::from_secs(120))
        .run();
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert_eq!(e["schema"], "imgbuild.events/1", "{e}");
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert_eq!(e["build"], "box", "{e}");
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"build_started"));
    assert_eq!(kinds.last(), Some(&"build_finished"));
    assert!(kinds.contains(&"waiting"), "{kinds:?}");
    let finished = events.last().unwrap();
    assert_eq!(finished["outcome"], "succeeded", "{finished}");
    let output: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "output")
        .map(|e| e["line"].as_str().unwrap())
        .collect();
    assert_eq!(output, ["provisioned with <sensitive>"]);
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["connect", "provision"]);

    let dotenv = std::fs::read_to_string(scratch.path("out.env")).unwrap();
    let build_id = events[0]["build_id"].as_str().unwrap();
    assert_eq!(
        dotenv,
        format!(
            "IMGBUILD_IMAGE_NAME=web\nIMGBUILD_IMAGE_VERSION=1.0\nIMGBUILD_BOX_BUILD_ID={build_id}\nIMGBUILD_BOX_OUTCOME=succeeded\n"
        )
    );
}

const TEMPLATE: &str = r#"name = "web"
version = "2.1"
description = "a web server"

[variables.token]
sensitive = true
default = "s3cr3t-value"

[source.box]
type = "ssh"
ssh_host = "192.0.2.10"
ssh_username = "admin"

[[provisioner]]
type = "shell"
inline = ["echo ${var.token}"]
only = ["box"]
"#;

#[test]
fn validate_prints_one_json_object_per_template() {
    Test::new()
        .file("t.toml", TEMPLATE)
        .file(
            "bad.toml",
            "name = \"x\"\nversion = \"1\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_usernme = \"u\"\n",
        )
        .args(["validate", "--output", "json", "t.toml", "bad.toml"])
        .stdout(concat!(
            r#"{"schema":"imgbuild.events/1","event":"validated","file":"t.toml","ok":true,"sources":[{"name":"box","type":"ssh"}],"problems":[]}"#,
            "\n",
            r#"{"schema":"imgbuild.events/1","event":"validated","file":"bad.toml","ok":false,"sources":[{"name":"box","type":"ssh"}],"problems":[{"file":"bad.toml","line":6,"column":1,"message":"unknown key `ssh_usernme` in source `box` (type \"ssh\")","help":"did you mean `ssh_username`?"}]}"#,
            "\n"
        ))
        .status(2)
        .run();
}

#[test]
fn inspect_prints_the_template_as_one_json_object_with_secrets_masked() {
    Test::new()
        .file("t.toml", TEMPLATE)
        .args(["inspect", "--output", "json", "t.toml"])
        .stdout(concat!(
            r#"{"schema":"imgbuild.events/1","event":"template","file":"t.toml","name":"web","version":"2.1","description":"a web server","variables":[{"name":"token","value":"<sensitive>","sensitive":true,"description":null}],"sources":[{"name":"box","type":"ssh"}],"provisioners":[{"number":1,"type":"shell","label":"provisioner 1 (shell, t.toml:14)","only":["box"],"except":[]}]}"#,
            "\n"
        ))
        .stderr("")
        .run();
}
