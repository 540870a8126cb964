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
        "IMGBUILD_BUILD_DRY_RUN",
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

#[test]
fn a_sensitive_value_never_shows_in_validate_errors() {
    // The key's path is the secret, and the check that the file exists
    // names it; the value comes from the command line, so only a message
    // could show it.
    Test::new()
        .file(
            "t.toml",
            r#"name = "demo"
version = "1"

[variables.deploy_key]
sensitive = true

[source.box]
type = "ssh"
ssh_host = "h"
ssh_username = "u"

[[provisioner]]
type = "file"
source = "${var.deploy_key}"
destination = "/home/u/.ssh/deploy"
"#,
        )
        .args([
            "validate",
            "--var",
            "deploy_key=keys/prod-7f3a9c.pem",
            "t.toml",
        ])
        .stdout("")
        .stderr(
            r#"error: t.toml:14:10: `<sensitive>` does not exist (looked for <sensitive>)
 14 | source = "${var.deploy_key}"
    |          ^^^^^^^^^^^^^^^^^^^

1 error found
"#,
        )
        .status(2)
        .run();
}

/// A template as a team writes it: variables of every type, locals made
/// with functions, settings shared by two AMIs, and a local image.
const FLEET: &str = r#"name = "${local.family}"
version = "${var.version}"
description = "ECS nodes for ${upper(var.team)}"

[variables.version]
type = "string"
default = "1.4"
allowed = ["1.4", "1.5"]

[variables.team]
default = "${env.IMGBUILD_TEST_TEAM:-platform}"
description = "Owning team"

[variables.root_size]
type = "number"
default = 30

[variables.encrypt]
type = "bool"
default = true

[variables.share_with]
type = "list(string)"
default = ["111122223333", "444455556666"]

[variables.extra_tags]
type = "map(string)"
default = { CostCenter = "cc-42" }

[variables.subnet]
default = ""
description = "empty: the default VPC"

[variables.registry_token]
sensitive = true
default = "s3cr3t"

[locals]
# Locals may come in any order: each is computed after what it uses.
ami_prefix = "${local.family}-${var.version}"
family = "ecs-${lower(var.team)}"
motd = '${trim(file("motd.txt"))}'
auth = "Bearer ${var.registry_token}"

[source_defaults.amazon-ebs]
region = "eu-west-3"
instance_type = "t3.small"
root_volume_size = "${var.root_size}"
root_volume_type = "gp3"
root_volume_encrypted = "${var.encrypt}"
subnet_id = "${var.subnet}"
ami_users = "${var.share_with}"
tags = { Team = "${var.team}", Family = "${local.family}" }

[source_defaults.amazon-ebs.source_ami_filter]
name = "al2023-ami-ecs-*"
owners = ["amazon"]
most_recent = true

[source.x86]
type = "amazon-ebs"
ami_name = "${local.ami_prefix}-x86-${build.timestamp}"

[source.arm]
type = "amazon-ebs"
instance_type = "t4g.small"
ami_name = '${local.ami_prefix}-arm-${timestamp("%Y%m%d")}'
tags = { Arch = "arm64" }

[source.arm.source_ami_filter]
architecture = "arm64"

[source.local]
type = "qemu"
base_image = "base.qcow2"

[[provisioner]]
type = "shell"
script = "setup.sh"
env = { TEAM = "${var.team}", MOTD = "${local.motd}", AUTH = "${local.auth}" }

[[provisioner]]
type = "file"
content = "${local.motd}"
destination = "/etc/motd"
except = ["local"]
"#;

fn fleet() -> Test {
    Test::new()
        .file("fleet.toml", FLEET)
        .file("motd.txt", "Welcome aboard\n")
        .file("setup.sh", "#!/bin/sh\necho setting up\n")
        .file("base.qcow2", "")
        .env_remove("IMGBUILD_TEST_TEAM")
        .env_remove("AWS_REGION")
}

#[test]
fn a_realistic_template_validates_and_inspects_line_by_line() {
    fleet()
        .args(["validate", "fleet.toml"])
        .stdout("fleet.toml: ok (3 sources, 2 provisioners)\n")
        .stderr("")
        .run();
    fleet()
        .args(["inspect", "fleet.toml", "--var", "share_with=[\"210987654321\"]"])
        .env("IMGBUILD_VAR_version", "1.5")
        .env("IMGBUILD_TEST_TEAM", "Search")
        .stdout(
            r#"template: fleet.toml
image: ecs-search 1.5 (ECS nodes for SEARCH)

variables:
  version: string = "1.5"
  team: string = "Search"  # Owning team
  root_size: number = 30
  encrypt: bool = true
  share_with: list(string) = ["210987654321"]
  extra_tags: map(string) = { CostCenter = "cc-42" }
  subnet: string = ""  # empty: the default VPC
  registry_token: string = <sensitive>

locals:
  ami_prefix = "ecs-search-1.5"
  family = "ecs-search"
  motd = "Welcome aboard"
  auth = <sensitive>

sources:
  x86  (amazon-ebs)  [from source_defaults.amazon-ebs: region, instance_type, root_volume_size, root_volume_type, root_volume_encrypted, subnet_id, ami_users, tags, source_ami_filter]
  arm  (amazon-ebs)  [from source_defaults.amazon-ebs: region, root_volume_size, root_volume_type, root_volume_encrypted, subnet_id, ami_users, tags, source_ami_filter]
  local  (qemu)

provisioners:
  1. shell: script setup.sh; env AUTH, MOTD, TEAM
  2. file: inline content -> /etc/motd  [except: local]
"#,
        )
        .stderr("")
        .run();
}

#[test]
fn values_that_do_not_fit_their_type_are_located_and_named() {
    fleet()
        .args(["validate", "fleet.toml"])
        .args(["--var", "root_size=big", "--var", "encrypt=yes"])
        .args(["--var", "version=2.0"])
        .env("IMGBUILD_VAR_extra_tags", "Team")
        .env("IMGBUILD_VAR_share_with", "111122223333, nope")
        .stdout("")
        .stderr(
            r#"error: fleet.toml:8:11: variable `version` is "2.0", which `allowed` does not list
 8 | allowed = ["1.4", "1.5"]
   |           ^^^^^^^^^^^^^^
  help: allowed: "1.4", "1.5"

error: fleet.toml:14:12: --var root_size=…: variable `root_size` (number) expects a number, got "big"
 14 | [variables.root_size]
    |            ^^^^^^^^^

error: fleet.toml:18:12: --var encrypt=…: variable `encrypt` (bool) expects a boolean (true or false), got "yes"
 18 | [variables.encrypt]
    |            ^^^^^^^

error: fleet.toml:26:12: environment variable IMGBUILD_VAR_extra_tags: variable `extra_tags` (map(string)) expects a map of strings, got "Team"
 26 | [variables.extra_tags]
    |            ^^^^^^^^^^

error: fleet.toml:52:13: `nope` is not a 12-digit AWS account id
 52 | ami_users = "${var.share_with}"
    |             ^^^^^^^^^^^^^^^^^^^

5 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn settings_locals_functions_and_packer_leftovers_are_located() {
    Test::new()
        .file(
            "t.toml",
            r#"name = "x"
version = "1"

[variables.size]
default = "big"

[variables.kind]
type = "int"

[locals]
a = "${local.b}"
b = "${local.a}"
c = "${build.id}"
d = "${env.IMGBUILD_TEST_UNSET}"

[source.aws]
type = "amazon-ebs"
region = "eu-west-3"
source_ami = "ami-12345678"
root_volume_size = "${var.size}"
ami_name = "x-{{timestamp}}"

[source.old]
type = "amazon-ebs"
region = "eu-west-3"
source_ami = "ami-12345678"
communicator = "ssh"
skip_clean = true

[[provisioner]]
type = "powershell"
inline = ["make"]

[[provisioner]]
type = "shell"
inline = ["echo ${lowr(var.size)}", "echo ${trim()}"]
environment_vars = ["A=b"]

[[provisioner]]
type = "shell"
inline = ["true"]
execute_command = "sudo {{ .Vars }} {{ .Path }}"
"#,
        )
        .args(["validate", "t.toml"])
        .env_remove("IMGBUILD_TEST_UNSET")
        .stdout("")
        .stderr(
            r#"error: t.toml:8:8: unknown variable type "int"
 8 | type = "int"
   |        ^^^^^
  help: use "string", "number", "bool", "list(string)" or "map(string)"

error: t.toml:11:1: local `a` depends on itself: a -> b -> a
 11 | a = "${local.b}"
    | ^

error: t.toml:13:5: local `c`: `${build.id}` has no value yet; this may use `var.` (declared above), `local.`, `env.` and functions
 13 | c = "${build.id}"
    |     ^^^^^^^^^^^^^

error: t.toml:14:5: local `d`: environment variable `IMGBUILD_TEST_UNSET` is not set; give a fallback: `${env.IMGBUILD_TEST_UNSET:-value}`
 14 | d = "${env.IMGBUILD_TEST_UNSET}"
    |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:20:20: `root_volume_size` expects a whole number, got "big" (from `${var.size}`)
 20 | root_volume_size = "${var.size}"
    |                    ^^^^^^^^^^^^^

error: t.toml:21:15: `{{timestamp}}` is Packer template syntax, which imgbuild does not expand
 21 | ami_name = "x-{{timestamp}}"
    |               ^^^^^^^^^^^^^
  help: write `${build.timestamp}`

error: t.toml:27:1: unknown key `communicator` in source `old` (type "amazon-ebs")
 27 | communicator = "ssh"
    | ^^^^^^^^^^^^
  help: imgbuild always connects with SSH; the `ssh_*` settings configure it

error: t.toml:28:1: unknown key `skip_clean` in source `old` (type "amazon-ebs")
 28 | skip_clean = true
    | ^^^^^^^^^^
  help: imgbuild never deletes files after a build; there is nothing to skip

error: t.toml:31:8: unknown provisioner type "powershell"
 31 | type = "powershell"
    |        ^^^^^^^^^^^^
  help: the provisioner types are "shell", "file", "ansible", "ansible-local", "shell-local"

error: t.toml:36:17: `${lowr(var.size)}` calls `lowr`, which is not a function
 36 | inline = ["echo ${lowr(var.size)}", "echo ${trim()}"]
    |                 ^^^^^^^^^^^^^^^^^
  help: did you mean `lower`?

error: t.toml:36:43: `${trim()}`: `trim` takes 1 argument, not 0
 36 | inline = ["echo ${lowr(var.size)}", "echo ${trim()}"]
    |                                           ^^^^^^^^^
  help: write `trim(text)`

error: t.toml:37:1: unknown key `environment_vars` in provisioner 2 (type "shell")
 37 | environment_vars = ["A=b"]
    | ^^^^^^^^^^^^^^^^
  help: imgbuild calls this `env`, a table: `env = { NAME = "value" }`

error: t.toml:42:19: `execute_command` must contain `{path}`, where the script goes
 42 | execute_command = "sudo {{ .Vars }} {{ .Path }}"
    |                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:42:25: `{{ .Vars }}` is Packer template syntax, which imgbuild does not expand
 42 | execute_command = "sudo {{ .Vars }} {{ .Path }}"
    |                         ^^^^^^^^^^^
  help: in `execute_command`, write `{vars}`

error: t.toml:42:37: `{{ .Path }}` is Packer template syntax, which imgbuild does not expand
 42 | execute_command = "sudo {{ .Vars }} {{ .Path }}"
    |                                     ^^^^^^^^^^^
  help: in `execute_command`, write `{path}`

15 errors found
"#,
        )
        .status(2)
        .run();
}
