//! The command line as users see it: exact messages, exit codes, and every
//! shipped template passing `validate`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::test::Test;
use common::{Scratch, imgbuild, run, text};

const LIMIT: Duration = Duration::from_secs(60);

fn validate(scratch: &Scratch, template: &str) -> (Option<i32>, String, String) {
    scratch.write("t.toml", template);
    let out = run(
        imgbuild()
            .args(["validate", "t.toml"])
            .current_dir(scratch.dir.path()),
        LIMIT,
    );
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn every_shipped_template_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "templates/ holds the examples");
    let out = run(imgbuild().arg("validate").args(&files), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in &files {
        assert!(
            text(&out.stdout).contains(&format!("{}: ok", f.display())),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn reports_every_problem_at_once_with_locations() {
    Test::new()
        .file(
            "t.toml",
            r#"name = "demo"
vesion = "1.0"

[source.box]
type = "ssh"
ssh_host = "${var.hots}"
ssh_usernme = "root"

[[provisioner]]
type = "shell"
inline = ["echo ${HOME}"]
"#,
        )
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            r#"error: t.toml:1:1: missing `version`
 1 | name = "demo"
   | ^
  help: add the image version, e.g. `version = "1.0"`

error: t.toml:2:1: unknown key `vesion` at the top level
 2 | vesion = "1.0"
   | ^^^^^^
  help: did you mean `version`?

error: t.toml:6:13: `${var.hots}` refers to variable `hots`, which the template does not declare
 6 | ssh_host = "${var.hots}"
   |             ^^^^^^^^^^^
  help: declare it with a `[variables.hots]` table

error: t.toml:7:1: unknown key `ssh_usernme` in source `box` (type "ssh")
 7 | ssh_usernme = "root"
   | ^^^^^^^^^^^
  help: did you mean `ssh_username`?

error: t.toml:11:17: unknown reference `${HOME}`
 11 | inline = ["echo ${HOME}"]
    |                 ^^^^^^^
  help: for the shell variable, write `$${HOME}`; for the environment, `${env.HOME}`

5 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn syntax_errors_point_at_the_line() {
    let scratch = Scratch::new();
    let (code, _, stderr) = validate(&scratch, "name = \"x\"\nversion = \n");
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("error: t.toml:2:"), "{stderr}");
    assert!(stderr.contains(" 2 | version = "), "{stderr}");
}

#[test]
fn wrong_types_and_bad_values_are_located() {
    let scratch = Scratch::new();
    let (code, _, stderr) = validate(
        &scratch,
        "name = \"demo\"\nversion = \"1\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\nssh_port = 70000\n[source.b2]\ntype = \"ssh\"\nssh_timeout = \"soon\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("error: t.toml:7:12: invalid port `70000`; expected 1-65535"),
        "{stderr}"
    );
    assert!(
        stderr.contains("t.toml:10:15: invalid duration `soon`"),
        "{stderr}"
    );
}

#[test]
fn variables_come_from_flags_files_and_environment() {
    let scratch = Scratch::new();
    scratch.write("vars.toml", "who = \"file\"\n");
    scratch.write(
        "t.toml",
        "name = \"demo\"\nversion = \"${var.who}\"\n[variables.who]\n[variables.token]\nsensitive = true\ndefault = \"abc\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n",
    );
    let inspect = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = imgbuild();
        cmd.arg("inspect")
            .arg("t.toml")
            .args(args)
            .current_dir(scratch.dir.path());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd, LIMIT);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let (code, _, stderr) = inspect(&[], None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("t.toml:3:12: variable `who` has no value"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: set it with `--var who=VALUE`, a `--var-file`, or IMGBUILD_VAR_who"),
        "{stderr}"
    );

    let (code, stdout, _) = inspect(&[], Some(("IMGBUILD_VAR_who", "env")));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("image: demo env\n"), "{stdout}");
    assert!(
        stdout.contains("  token = <sensitive>\n"),
        "sensitive values are masked:\n{stdout}"
    );
    assert!(!stdout.contains("abc"), "{stdout}");

    let (_, stdout, _) = inspect(
        &["--var-file", "vars.toml"],
        Some(("IMGBUILD_VAR_who", "env")),
    );
    assert!(
        stdout.contains("image: demo file\n"),
        "a var file wins over the environment:\n{stdout}"
    );

    let (_, stdout, _) = inspect(&["--var-file", "vars.toml", "--var", "who=flag"], None);
    assert!(
        stdout.contains("image: demo flag\n"),
        "a flag wins over files:\n{stdout}"
    );

    let (code, _, stderr) = inspect(&["--var", "whom=x", "--var", "who=y"], None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--var whom=… sets `whom`, which the template does not declare"),
        "{stderr}"
    );
    assert!(stderr.contains("help: did you mean `who`?"), "{stderr}");
}

#[test]
fn inspect_lists_sources_and_provisioners_in_order() {
    let out = run(
        imgbuild()
            .args(["inspect", "templates/httpd.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("sources:\n  local  (qemu)\n  aws  (amazon-ebs)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "provisioners:\n  1. shell: script ../provisioners/httpd/install.sh\n  2. file: ../provisioners/httpd/site/ -> /tmp/imgbuild-site\n"
        ),
        "{stdout}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_names_environment_twins() {
    let out = run(imgbuild().args(["build"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));

    let out = run(imgbuild().args(["build", "--help"]), LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for env in [
        "IMGBUILD_ONLY",
        "IMGBUILD_EXCEPT",
        "IMGBUILD_VARS",
        "IMGBUILD_VAR_FILES",
        "IMGBUILD_ON_ERROR",
        "IMGBUILD_MANIFEST",
    ] {
        assert!(help.contains(env), "--help mentions {env}:\n{help}");
    }

    let out = run(
        imgbuild()
            .args(["build", "templates/httpd.toml", "--only", "nope"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: no source named `nope` in templates/httpd.toml (sources: local, aws)\n"
    );
}

#[test]
fn a_missing_file_is_a_validation_error() {
    let out = run(imgbuild().args(["validate", "/nonexistent/t.toml"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .starts_with("error: /nonexistent/t.toml: cannot read template: No such file"),
        "{}",
        text(&out.stderr)
    );
}
