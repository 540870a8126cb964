//! The command line as users see it: exact messages, exit codes, and every
//! shipped template passing `validate`.

mod common;

use std::path::{Path, PathBuf};

use common::test::Test;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_templates() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("templates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_template_validates() {
    let files = shipped_templates();
    assert!(files.len() >= 2, "templates/ holds the examples");
    let mut test = Test::new().arg("validate").args(&files).stderr("");
    for f in &files {
        test = test.stdout_contains(&format!("{}: ok (", f.display()));
    }
    test.run();
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
    Test::new()
        .file("t.toml", "name = \"x\"\nversion = \n")
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            "error: t.toml:2:11: string values must be quoted, expected literal string
 2 | version = 
   |           ^

1 error found
",
        )
        .status(2)
        .run();
}

#[test]
fn wrong_types_and_bad_values_are_located() {
    Test::new()
        .file(
            "t.toml",
            "name = \"demo\"\nversion = \"1\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\nssh_port = 70000\n[source.b2]\ntype = \"ssh\"\nssh_timeout = \"soon\"\n",
        )
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:7:12: invalid port `70000`; expected 1-65535
 7 | ssh_port = 70000
   |            ^^^^^

error: t.toml:10:15: invalid duration `soon` (expected number at 0); write e.g. "30s", "5m" or "1h"
 10 | ssh_timeout = "soon"
    |               ^^^^^^

2 errors found
"#,
        )
        .status(2)
        .run();
}

const VARS_TEMPLATE: &str = "name = \"demo\"\nversion = \"${var.who}\"\n[variables.who]\n[variables.token]\nsensitive = true\ndefault = \"abc\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n";

/// What `inspect` prints for VARS_TEMPLATE when `who` is `who`.
fn vars_inspected(who: &str) -> String {
    format!(
        "template: t.toml
image: demo {who}

variables:
  who: string = \"{who}\"
  token: string = <sensitive>

sources:
  box  (ssh)

provisioners:
  (none)
"
    )
}

#[test]
fn variables_come_from_flags_files_and_environment() {
    let vars = || {
        Test::new()
            .file("t.toml", VARS_TEMPLATE)
            .file("vars.toml", "who = \"file\"\n")
            .args(["inspect", "t.toml"])
            .env_remove("IMGBUILD_VAR_who")
    };
    vars()
        .stdout("")
        .stderr(
            "error: t.toml:3:12: variable `who` has no value
 3 | [variables.who]
   |            ^^^
  help: set it with `--var who=VALUE`, a `--var-file`, or IMGBUILD_VAR_who; or give it a `default`

1 error found
",
        )
        .status(2)
        .run();
    // Sensitive values are masked.
    vars()
        .env("IMGBUILD_VAR_who", "env")
        .stdout(&vars_inspected("env"))
        .run();
    // A var file wins over the environment, a flag over files.
    vars()
        .env("IMGBUILD_VAR_who", "env")
        .args(["--var-file", "vars.toml"])
        .stdout(&vars_inspected("file"))
        .run();
    vars()
        .args(["--var-file", "vars.toml", "--var", "who=flag"])
        .stdout(&vars_inspected("flag"))
        .run();
    vars()
        .args(["--var", "whom=x", "--var", "who=y"])
        .stdout("")
        .stderr(
            "error: t.toml:1:1: --var whom=… sets `whom`, which the template does not declare
 1 | name = \"demo\"
   | ^
  help: did you mean `who`?

1 error found
",
        )
        .status(2)
        .run();
}

#[test]
fn inspect_lists_sources_and_provisioners_in_order() {
    let httpd = repo().join("templates/httpd.toml");
    Test::new()
        .args(["inspect".as_ref(), httpd.as_os_str()])
        .env_remove("IMGBUILD_VAR_region")
        .stdout(&format!(
            r#"template: {}
image: httpd 1.2 (Apache httpd serving a static page)

variables:
  region: string = "eu-west-3"  # AWS region to build the AMI in
  server_name: string = "www.example.com"  # ServerName written into the httpd configuration
  ssh_host: string = ""  # Reach the build machine at this address instead (bastion tunnels, private networks, local emulators)
  ssh_port: string = ""  # SSH port to use with ssh_host (default 22)

sources:
  local  (qemu)
  aws  (amazon-ebs)

provisioners:
  1. shell: script ../provisioners/httpd/install.sh
  2. file: ../provisioners/httpd/site/ -> /tmp/imgbuild-site
  3. shell: script ../provisioners/httpd/configure.sh; env IMAGE_VERSION, SERVER_NAME, SITE_DIR
"#,
            httpd.display()
        ))
        .run();
}

#[test]
fn usage_errors_exit_2_and_help_names_environment_twins() {
    Test::new().arg("build").status(2).run();
    let mut help = Test::new().args(["build", "--help"]);
    for env in [
        "IMGBUILD_ONLY",
        "IMGBUILD_EXCEPT",
        "IMGBUILD_VARS",
        "IMGBUILD_VAR_FILES",
        "IMGBUILD_ON_ERROR",
        "IMGBUILD_MANIFEST",
    ] {
        help = help.stdout_contains(env);
    }
    help.run();
    let httpd = repo().join("templates/httpd.toml");
    Test::new()
        .args([
            "build".as_ref(),
            httpd.as_os_str(),
            "--only".as_ref(),
            "nope".as_ref(),
        ])
        .stdout("")
        .stderr(&format!(
            "error: no source named `nope` in {} (sources: local, aws)\n",
            httpd.display()
        ))
        .status(2)
        .run();
}

#[test]
fn a_missing_file_is_a_validation_error() {
    Test::new()
        .args(["validate", "/nonexistent/t.toml"])
        .stdout("")
        .stderr(
            "error: /nonexistent/t.toml: cannot read template: No such file or directory (os error 2)

1 error found
",
        )
        .status(2)
        .run();
}
