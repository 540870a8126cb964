//! The `shell-local` provisioner end to end: the real binary running
//! commands on this machine during a build against a real sshd.

mod common;

use std::fs;
use std::time::Duration;

use common::test::Test;
use common::{Scratch, Sshd, build_in, ssh_box, ssh_template, text, wait_for_file};

const LIMIT: Duration = Duration::from_secs(120);

fn source(sshd: &Sshd) -> String {
    ssh_template(sshd, "")
}

fn build(scratch: &Scratch, template: &str) -> std::process::Output {
    build_in(scratch, template, LIMIT)
}

#[test]
fn inline_and_scripts_see_the_build_values_and_their_env() {
    let (scratch, sshd) = ssh_box();
    // No `#!` line: /bin/sh runs it.
    scratch.write(
        "local/report.sh",
        "echo \"script in $(basename \"$PWD\") for $IMGBUILD_SOURCE\" > out/script\necho from-the-script\n",
    );
    fs::create_dir_all(scratch.path("out")).unwrap();
    let template = source(&sshd)
        + r#"
[[provisioner]]
type = "shell-local"
inline = [
  "env | grep -E '^(IMGBUILD_|GREETING=)' | sort > out/env",
  "echo to-stderr >&2",
]
env = { GREETING = "hello-${build.name}" }

[[provisioner]]
type = "shell-local"
scripts = ["local/report.sh"]
"#;
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let build_id = stderr
        .split("build id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the build id is shown");
    assert_eq!(
        fs::read_to_string(scratch.path("out/env")).unwrap(),
        format!(
            "GREETING=hello-box\nIMGBUILD_BUILDER_TYPE=ssh\nIMGBUILD_BUILD_ID={build_id}\nIMGBUILD_BUILD_NAME=box\n\
             IMGBUILD_HOST=127.0.0.1\nIMGBUILD_PORT={}\nIMGBUILD_SOURCE=box\nIMGBUILD_USER=root\n",
            sshd.port
        )
    );
    let folder = scratch.dir.path().file_name().unwrap().to_string_lossy();
    assert_eq!(
        fs::read_to_string(scratch.path("out/script")).unwrap(),
        format!("script in {folder} for box\n")
    );
    assert!(stderr.contains("[box]     | to-stderr\n"), "{stderr}");
    assert!(stderr.contains("[box]     | from-the-script\n"), "{stderr}");
}

#[test]
fn scripts_run_in_the_template_folder_when_built_from_another() {
    let (scratch, sshd) = ssh_box();
    scratch.write("templates/local/where.sh", "#!/bin/sh\npwd > \"$OUT\"\n");
    let out = scratch.path("pwd");
    let template = ssh_template(&sshd, "").replace("\"id_ed25519\"", "\"../id_ed25519\"")
        + &format!(
            "\n[[provisioner]]\ntype = \"shell-local\"\nscript = \"local/where.sh\"\nenv = {{ OUT = \"{}\" }}\n",
            out.display()
        );
    scratch.write("templates/t.toml", &template);
    let (_, scratch) = Test::in_scratch(scratch)
        .args(["build", "templates/t.toml"])
        .stderr_contains("build finished")
        .limit(LIMIT)
        .run();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        format!("{}\n", scratch.path("templates").display())
    );
}

#[test]
fn a_non_zero_exit_fails_the_build_unless_it_is_a_valid_code() {
    let (scratch, sshd) = ssh_box();
    let template = source(&sshd)
        + "\n[[provisioner]]\ntype = \"shell-local\"\ninline = [\"exit 3\"]\nvalid_exit_codes = [0, 3]\n\n[[provisioner]]\ntype = \"shell-local\"\ninline = [\"echo before\", \"false\", \"echo after\"]\n";
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: build `box`: step \"provision\" failed: provisioner 2 (shell-local, t.toml:18): inline script exited with code 1\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("| before\n"), "{stderr}");
    assert!(!stderr.contains("| after\n"), "{stderr}");
}

#[test]
fn a_timeout_stops_the_whole_process_group() {
    let (scratch, sshd) = ssh_box();
    let sleeper = format!("sleep {}", 2000 + std::process::id() % 50_000);
    let template = source(&sshd)
        + &format!(
            "\n[[provisioner]]\ntype = \"shell-local\"\ntimeout = \"2s\"\ninline = [\"{sleeper} &\", \"{sleeper}\"]\n"
        );
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("provisioner 1 (shell-local, t.toml:13): inline script timed out after 2s\n"),
        "{stderr}"
    );
    assert_eq!(common::processes_matching(&sleeper), Vec::<String>::new());
}

#[test]
fn sigint_during_a_long_shell_local_leaves_no_process() {
    let (scratch, sshd) = ssh_box();
    let started = scratch.path("started");
    // A duration no other process on the machine is likely to use, to find it by.
    let sleeper = format!("sleep {}", 1000 + std::process::id() % 50_000);
    let template = source(&sshd)
        + &format!(
            "\n[[provisioner]]\ntype = \"shell-local\"\ninline = [\"{sleeper} &\", \"touch {}\", \"{sleeper}\"]\n",
            started.display()
        );
    scratch.write("t.toml", &template);
    let tmp = scratch.path("tmp");
    fs::create_dir(&tmp).unwrap();
    let child = common::start_build(&scratch, &[("TMPDIR", &tmp)]);
    assert!(
        wait_for_file(&started, Duration::from_secs(60)),
        "provisioner started"
    );
    assert_eq!(
        common::processes_matching(&sleeper).len(),
        2,
        "the local commands run"
    );
    common::send_signal(&child, libc::SIGINT);
    let out = common::wait_output(child, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGINT received: cancelling builds and cleaning up\n"),
        "{stderr}"
    );
    assert!(stderr.contains("build cancelled after "), "{stderr}");
    // imgbuild stops the group before it exits: nothing is left, at once.
    assert_eq!(common::processes_matching(&sleeper), Vec::<String>::new());
    // Its temporary scripts went too.
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

const HEADER: &str = "name = \"demo\"\nversion = \"1\"\n\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n";

#[test]
fn bad_shell_local_settings_are_reported_at_validate() {
    Test::new()
        .file("local.sh", "true\n")
        .file(
            "t.toml",
            &format!(
                r#"{HEADER}
[[provisioner]]
type = "shell-local"
env = {{ "NOT-A-NAME" = "x" }}

[[provisioner]]
type = "shell-local"
inline = ["true"]
script = "local.sh"

[[provisioner]]
type = "shell-local"
scripts = ["local.sh", "missing.sh"]
sudo = true
"#
            ),
        )
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:9:1: a shell-local provisioner needs one of `inline`, `script` or `scripts`
 9 | [[provisioner]]
   | ^^^^^^^^^^^^^^^

error: t.toml:11:24: `NOT-A-NAME` is not a valid environment variable name
 11 | env = { "NOT-A-NAME" = "x" }
    |                        ^^^

error: t.toml:13:1: a shell-local provisioner takes only one of `inline`, `script` or `scripts`
 13 | [[provisioner]]
    | ^^^^^^^^^^^^^^^

error: t.toml:21:1: unknown key `sudo` in provisioner 3 (type "shell-local")
 21 | sudo = true
    | ^^^^

4 errors found
"#,
        )
        .status(2)
        .run();
}
