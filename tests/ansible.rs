//! The `ansible` and `ansible-local` provisioners end to end: the real
//! binary, a real sshd on 127.0.0.1 and real Ansible (ansible-core from
//! PyPI, installed by `scripts/setup --test`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::test::Test;
use common::{Scratch, Sshd, build_in, ssh_box, ssh_template, text};

const LIMIT: Duration = Duration::from_secs(240);
const SECRET: &str = "tok-93f1c0a7e2";

/// The machine under test is this one, whose `python3` on the sshd's PATH may
/// be a version manager's shim; Debian's interpreter is always there.
const PYTHON: &str = "/usr/bin/python3";

fn source(sshd: &Sshd, extra: &str) -> String {
    ssh_template(sshd, extra)
        + &format!("\n[variables.token]\ndefault = \"{SECRET}\"\nsensitive = true\n")
}

fn build(scratch: &Scratch, template: &str) -> std::process::Output {
    build_in(scratch, template, LIMIT)
}

/// A playbook with one role: a fact from `extra_vars`, a templated file, a
/// group variable from the inventory folder, and the sensitive value printed
/// (imgbuild must mask it).
fn write_playbook(scratch: &Scratch, out: &Path) {
    scratch.write(
        "ansible/site.yml",
        "- hosts: web\n  gather_facts: false\n  roles:\n    - site\n",
    );
    scratch.write(
        "ansible/roles/site/tasks/main.yml",
        &format!(
            r#"- name: remember the greeting
  set_fact:
    greeting: "hello {{{{ who }}}}"
- name: show the token
  debug:
    msg: "token is {{{{ token }}}}"
- name: write the page
  template:
    src: page.j2
    dest: {out}/page.txt
    mode: "0640"
- name: record the key file ansible logs in with
  shell: "stat -c '%a %n' {{{{ ansible_ssh_private_key_file }}}} > {out}/key"
"#,
            out = out.display()
        ),
    );
    scratch.write(
        "ansible/roles/site/templates/page.j2",
        "{{ greeting }} from {{ inventory_hostname }} in {{ tier }}\n",
    );
    scratch.write("inventory/group_vars/web.yml", "tier: frontend\n");
}

fn ansible_provisioner(extra: &str) -> String {
    format!(
        r#"
[[provisioner]]
type = "ansible"
playbook_file = "ansible/site.yml"
groups = ["web"]
inventory_directory = "inventory"
extra_vars = {{ ansible_python_interpreter = "{PYTHON}", who = "${{build.name}}", token = "${{var.token}}" }}
{extra}
"#
    )
}

#[test]
fn a_playbook_with_a_role_configures_the_machine_over_the_build_ssh() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    write_playbook(&scratch, &out);
    let template = source(&sshd, "") + &ansible_provisioner("");
    let result = build(&scratch, &template);
    let (stdout, stderr) = (text(&result.stdout), text(&result.stderr));
    assert!(result.status.success(), "{stderr}");

    assert_eq!(
        fs::read(out.join("page.txt")).unwrap(),
        b"hello box from box in frontend\n"
    );
    assert_eq!(mode(&out.join("page.txt")), 0o640);
    // Output streams line by line, the secret masked.
    assert!(
        stderr.contains("[box]     | TASK [site : write the page] "),
        "{stderr}"
    );
    assert!(stderr.contains("token is <sensitive>"), "{stderr}");
    for shown in [&stdout, &stderr] {
        assert!(
            !shown.contains(SECRET),
            "the sensitive value leaked:\n{shown}"
        );
    }
    // The temporary key was private while Ansible ran, and is gone now.
    let key = fs::read_to_string(out.join("key")).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    let (key_mode, key_path) = key.trim().split_once(' ').unwrap();
    assert_eq!(key_mode, "600");
    assert!(!Path::new(key_path).exists(), "{key_path} left behind");
    // The inventory went as well; the user's files stay.
    assert_eq!(entries(&scratch.path("inventory")), ["group_vars"]);
}

#[test]
fn a_failing_task_fails_the_build_naming_the_playbook_and_the_task() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    write_playbook(&scratch, &out);
    scratch.write(
        "ansible/roles/site/tasks/main.yml",
        &format!(
            "- name: record the key file\n  shell: \"echo {{{{ ansible_ssh_private_key_file }}}} > {}/key\"\n- name: fail on purpose with {{{{ token }}}}\n  command: /bin/false\n- name: never reached\n  command: /bin/true\n",
            out.display()
        ),
    );
    let template = source(&sshd, "") + &ansible_provisioner("keep_inventory_file = false");
    let result = build(&scratch, &template);
    let (stdout, stderr) = (text(&result.stdout), text(&result.stderr));
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    // The task's name carries the sensitive value: masked in the error too.
    let error = "step \"provision\" failed: provisioner 1 (ansible, t.toml:17): playbook ansible/site.yml \
                 failed at task \"site : fail on purpose with <sensitive>\" (ansible-playbook exited with code 2)";
    assert!(
        stderr.contains(&format!("error: build `box`: {error}\n")),
        "{stderr}"
    );
    assert!(!stderr.contains("never reached"), "{stderr}");
    let manifest = fs::read_to_string(scratch.path("imgbuild-manifest.json")).unwrap();
    assert!(
        manifest.contains(&format!("\"error\": {:?}", error)),
        "{manifest}"
    );
    for shown in [&stdout, &stderr, &manifest] {
        assert!(
            !shown.contains(SECRET),
            "the sensitive value leaked:\n{shown}"
        );
    }
    let key = fs::read_to_string(out.join("key")).unwrap();
    assert!(!Path::new(key.trim()).exists(), "{key} left behind");
    assert_eq!(entries(&scratch.path("inventory")), ["group_vars"]);
}

#[test]
fn ansible_goes_through_the_bastion_and_accepts_only_the_pinned_host_key() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    write_playbook(&scratch, &out);
    let fingerprint = host_key_fingerprint(&sshd);
    // The target address is as the bastion sees it: the same loopback sshd here.
    let extra = format!(
        "ssh_bastion_host = \"127.0.0.1\"\nssh_bastion_port = {}\nssh_bastion_username = \"root\"\nssh_bastion_private_key_file = \"id_ed25519\"\nssh_host_key_fingerprint = \"{fingerprint}\"\n",
        sshd.port
    );
    // imgbuild's own session runs a command too, so that each client's
    // logins show: one through the bastion that runs commands, one to the
    // bastion that runs none. Without the bastion, Ansible would log in once.
    let template = source(&sshd, &extra)
        + "\n[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n"
        + &ansible_provisioner("");
    let result = build(&scratch, &template);
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(
        fs::read(out.join("page.txt")).unwrap(),
        b"hello box from box in frontend\n"
    );
    let log = sshd.log();
    let logins: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("Accepted publickey for root from 127.0.0.1 port "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(logins.len(), 4, "{logins:?}\n{log}");
    let runs_commands = |port: &&str| {
        log.lines().any(|l| {
            l.starts_with("Starting session: ")
                && l.contains(&format!(" for root from 127.0.0.1 port {port} "))
        })
    };
    assert_eq!(
        logins.iter().filter(|p| runs_commands(p)).count(),
        2,
        "{log}"
    );
}

#[test]
fn paths_are_relative_to_a_template_in_another_folder() {
    // The layout of the shipped examples: templates/ beside provisioners/,
    // built from the folder above them.
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    scratch.write(
        "provisioners/site.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: write\n      copy:\n        dest: {}/written\n        content: \"from {{{{ tier }}}}\\n\"\n",
            out.display()
        ),
    );
    scratch.write(
        "provisioners/inventory/group_vars/all.yml",
        "tier: the inventory folder\n",
    );
    let template = ssh_template(&sshd, "").replace("\"id_ed25519\"", "\"../id_ed25519\"")
        + &format!(
            "\n[[provisioner]]\ntype = \"ansible\"\nplaybook_file = \"../provisioners/site.yml\"\ninventory_directory = \"../provisioners/inventory\"\nextra_vars = {{ ansible_python_interpreter = \"{PYTHON}\" }}\n"
        );
    scratch.write("templates/t.toml", &template);
    // The scratch folder comes back, and lives on for the checks below.
    let (_, _scratch) = Test::in_scratch(scratch)
        .args(["build", "templates/t.toml"])
        .stderr_contains("build finished")
        .limit(LIMIT)
        .run();
    assert_eq!(
        fs::read(out.join("written")).unwrap(),
        b"from the inventory folder\n"
    );
}

#[test]
fn ansible_local_runs_a_playbook_with_a_role_on_the_machine() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    let staging = scratch.path("staging");
    fs::create_dir_all(&out).unwrap();
    scratch.write(
        "local/play.yml",
        "- hosts: all\n  gather_facts: false\n  roles:\n    - motd\n",
    );
    scratch.write(
        "roles/motd/tasks/main.yml",
        &format!(
            "- name: write the motd\n  copy:\n    dest: {}/motd\n    content: \"welcome to {{{{ site }}}} ({{{{ group_names | join(',') }}}})\\n\"\n",
            out.display()
        ),
    );
    let template = source(&sshd, "")
        + &format!(
            r#"
[[provisioner]]
type = "ansible-local"
playbook_file = "local/play.yml"
role_paths = ["roles/motd"]
groups = ["base"]
command = "{}"
staging_directory = "{}"
extra_vars = {{ ansible_python_interpreter = "{PYTHON}", site = "${{image.name}}-${{image.version}}" }}
"#,
            program_path("ansible-playbook").display(),
            staging.display()
        );
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert_eq!(
        fs::read(out.join("motd")).unwrap(),
        b"welcome to test-1.0 (base)\n"
    );
    assert!(
        stderr.contains("[box]     | TASK [motd : write the motd] "),
        "{stderr}"
    );
    assert!(!staging.exists(), "the staging folder is removed");
}

#[test]
fn ansible_local_names_the_failed_task() {
    let (scratch, sshd) = ssh_box();
    scratch.write(
        "play.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: break\n      command: /bin/false\n",
    );
    let template = source(&sshd, "")
        + &format!(
            "\n[[provisioner]]\ntype = \"ansible-local\"\nplaybook_file = \"play.yml\"\ncommand = \"{}\"\nextra_vars = {{ ansible_python_interpreter = \"{PYTHON}\" }}\n",
            program_path("ansible-playbook").display()
        );
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "provisioner 1 (ansible-local, t.toml:17): playbook play.yml failed at task \"break\" (ansible-playbook exited with code 2)\n"
        ),
        "{stderr}"
    );
}

#[test]
fn the_example_playbook_runs_in_check_mode_against_the_machine() {
    // The machine under test is this one: in check mode Ansible runs every
    // task and shows what it would change, and changes nothing.
    let (scratch, sshd) = ssh_box();
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners/baseline/site.yml");
    let before = fs::read("/etc/issue.net").ok();
    let template = source(&sshd, "")
        + &format!(
            r#"
[[provisioner]]
type = "ansible"
playbook_file = "{}"
extra_arguments = ["--check", "--diff"]
extra_vars = {{ ansible_python_interpreter = "{PYTHON}", banner_owner = "Tests Inc", image_name = "${{image.name}}", image_version = "${{image.version}}" }}
"#,
            playbook.display()
        );
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    for line in [
        "| TASK [baseline : write the login banner] ",
        "| +Authorized use only. This system belongs to Tests Inc.\n",
        "| +Image test 1.0; activity may be monitored.\n",
        "| TASK [baseline : record which image this is] ",
        "| +test 1.0\n",
    ] {
        assert!(stderr.contains(line), "{line:?} missing:\n{stderr}");
    }
    assert_eq!(fs::read("/etc/issue.net").ok(), before);
}

#[test]
fn roles_from_the_galaxy_file_are_installed_into_a_temporary_folder_first() {
    let (scratch, sshd) = ssh_box();
    // A role archive on this machine: Galaxy's installer, no network.
    scratch.write(
        "src/greet/tasks/main.yml",
        "- name: greet\n  debug:\n    msg: \"hello from {{ role_name }}\"\n",
    );
    scratch.write(
        "src/greet/meta/main.yml",
        "galaxy_info:\n  role_name: greet\n  author: imgbuild\n  description: test role\n  license: MIT\n  min_ansible_version: \"2.9\"\n  platforms: []\ndependencies: []\n",
    );
    let archive = scratch.path("greet.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(scratch.path("src"))
        .arg("-czf")
        .arg(&archive)
        .arg("greet")
        .status()
        .unwrap();
    assert!(tar.success());
    scratch.write(
        "requirements.yml",
        &format!("- src: file://{}\n  name: greet\n", archive.display()),
    );
    scratch.write(
        "site.yml",
        "- hosts: all\n  gather_facts: false\n  roles:\n    - greet\n",
    );
    let template = source(&sshd, "")
        + &format!(
            "\n[[provisioner]]\ntype = \"ansible\"\nplaybook_file = \"site.yml\"\ngalaxy_file = \"requirements.yml\"\nextra_vars = {{ ansible_python_interpreter = \"{PYTHON}\" }}\n"
        );
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("| - greet was installed successfully\n"),
        "{stderr}"
    );
    assert!(stderr.contains("\"msg\": \"hello from greet\""), "{stderr}");
    // Installed into the provisioner's temporary folder, not the user's roles.
    let installed = stderr
        .split("- extracting greet to ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the install folder is shown");
    assert!(installed.contains("imgbuild-ansible-"), "{installed}");
    assert!(!Path::new(installed).exists(), "{installed} left behind");
}

#[test]
fn an_unreadable_galaxy_file_names_the_provisioner_once() {
    let (scratch, sshd) = ssh_box();
    // It exists, so validation passes; reading it fails during the build.
    fs::create_dir_all(scratch.path("requirements.yml")).unwrap();
    scratch.write("site.yml", "- hosts: all\n  gather_facts: false\n");
    let template = source(&sshd, "")
        + "\n[[provisioner]]\ntype = \"ansible\"\nplaybook_file = \"site.yml\"\ngalaxy_file = \"requirements.yml\"\n";
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "error: build `box`: step \"provision\" failed: provisioner 1 (ansible, t.toml:17): cannot read {}: Is a directory (os error 21)",
            scratch.path("requirements.yml").display()
        ),
        "{stderr}"
    );
}

#[test]
fn a_timeout_stops_ansible_and_removes_its_files() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    scratch.write(
        "slow.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: record the key file\n      shell: \"echo {{{{ ansible_ssh_private_key_file }}}} > {}/key\"\n    - name: take too long\n      command: sleep 45\n",
            out.display()
        ),
    );
    let playbook = scratch.path("slow.yml").display().to_string();
    let template = source(&sshd, "")
        + &format!(
            "\n[[provisioner]]\ntype = \"ansible\"\ntimeout = \"25s\"\nplaybook_file = \"{playbook}\"\nextra_vars = {{ ansible_python_interpreter = \"{PYTHON}\" }}\n"
        );
    let result = build(&scratch, &template);
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "provisioner 1 (ansible, t.toml:17): ansible-playbook {playbook} timed out after 25s\n"
        )),
        "{stderr}"
    );
    let key = fs::read_to_string(out.join("key")).unwrap();
    assert!(!Path::new(key.trim()).exists(), "{key} left behind");
    assert_eq!(common::processes_matching(&playbook), Vec::<String>::new());
}

#[test]
fn sigint_during_a_play_stops_ansible_and_removes_the_key() {
    let (scratch, sshd) = ssh_box();
    let out = scratch.path("out");
    fs::create_dir_all(&out).unwrap();
    let started = out.join("key");
    scratch.write(
        "long.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: record the key file\n      shell: \"echo {{{{ ansible_ssh_private_key_file }}}} > {}.tmp && mv {}.tmp {}\"\n    - name: run long\n      command: sleep 45\n",
            started.display(),
            started.display(),
            started.display()
        ),
    );
    let playbook = scratch.path("long.yml").display().to_string();
    let template = source(&sshd, "")
        + &format!(
            "\n[[provisioner]]\ntype = \"ansible\"\nplaybook_file = \"{playbook}\"\nextra_vars = {{ ansible_python_interpreter = \"{PYTHON}\" }}\n"
        );
    scratch.write("t.toml", &template);
    let child = common::start_build(&scratch, &[]);
    assert!(
        common::wait_for_file(&started, Duration::from_secs(120)),
        "the play started"
    );
    let key = fs::read_to_string(&started).unwrap();
    assert!(
        Path::new(key.trim()).exists(),
        "the key is there while the play runs"
    );
    common::send_signal(&child, libc::SIGINT);
    let result = common::wait_output(child, Duration::from_secs(60));
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(!Path::new(key.trim()).exists(), "{key} left behind");
    assert_eq!(common::processes_matching(&playbook), Vec::<String>::new());
}

const HEADER: &str = "name = \"demo\"\nversion = \"1\"\n\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n";

#[test]
fn bad_ansible_settings_are_reported_at_validate() {
    Test::new()
        .file("site.yml", "- hosts: all\n")
        .file(
            "t.toml",
            &format!(
                r#"{HEADER}
[[provisioner]]
type = "ansible"
playbook_file = "missing.yml"
galaxy_file = "requirements.yml"
inventory_directory = "site.yml"
extra_vars = {{ "bad-name" = "x" }}
groups = ["web servers"]
ansible_env_vars = ["NOEQUALS"]
"#
            ),
        )
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:11:17: `missing.yml` does not exist (looked for missing.yml)
 11 | playbook_file = "missing.yml"
    |                 ^^^^^^^^^^^^^

error: t.toml:12:15: `requirements.yml` does not exist (looked for requirements.yml)
 12 | galaxy_file = "requirements.yml"
    |               ^^^^^^^^^^^^^^^^^^

error: t.toml:13:23: `site.yml` is not a folder
 13 | inventory_directory = "site.yml"
    |                       ^^^^^^^^^^

error: t.toml:14:29: `bad-name` is not a valid Ansible variable name (letters, digits and `_`)
 14 | extra_vars = { "bad-name" = "x" }
    |                             ^^^

error: t.toml:15:11: `web servers` is not a valid Ansible group name (letters, digits and `_`)
 15 | groups = ["web servers"]
    |           ^^^^^^^^^^^^^

error: t.toml:16:21: `NOEQUALS` is not a `NAME=value` environment entry
 16 | ansible_env_vars = ["NOEQUALS"]
    |                     ^^^^^^^^^^
  help: write e.g. `ansible_env_vars = ["ANSIBLE_FORKS=1"]`

6 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn unknown_and_missing_ansible_keys_are_reported_at_validate() {
    Test::new()
        .file(
            "t.toml",
            &format!(
                "{HEADER}\n[[provisioner]]\ntype = \"ansible\"\nplaybok_file = \"site.yml\"\n\n[[provisioner]]\ntype = \"ansible\"\nbecome = true\n"
            ),
        )
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:11:1: unknown key `playbok_file` in provisioner 1 (type "ansible")
 11 | playbok_file = "site.yml"
    | ^^^^^^^^^^^^
  help: did you mean `playbook_file`?

error: t.toml:13:1: missing field `playbook_file`
 13 | [[provisioner]]
    | ^^^^^^^^^^^^^^^

2 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn a_missing_ansible_playbook_is_reported_at_validate_with_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    Test::new()
        .file("site.yml", "- hosts: all\n")
        .file(
            "t.toml",
            &format!("{HEADER}\n[[provisioner]]\ntype = \"ansible\"\nplaybook_file = \"site.yml\"\n"),
        )
        .env("PATH", empty.path())
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:10:8: `ansible-playbook` is not installed on this machine (it is not in PATH)
 10 | type = "ansible"
    |        ^^^^^^^^^
  help: install Ansible on this machine: `python3 -m pip install --user ansible-core` (or `pipx install ansible-core`, or your distribution's `ansible` package)

1 error found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn bad_ansible_local_settings_are_reported_at_validate() {
    Test::new()
        .file("play.yml", "- hosts: all\n")
        .file("roles.txt", "not a folder\n")
        .file(
            "t.toml",
            &format!(
                r#"{HEADER}
[[provisioner]]
type = "ansible-local"
playbook_file = "play.yml"
playbook_dir = "missing"
role_paths = ["roles.txt"]
staging_directory = "relative/dir"
command = " "
groups = ["1st"]

[[provisioner]]
type = "ansible-local"
playbook = "play.yml"
"#
            ),
        )
        .args(["validate", "t.toml"])
        .stderr(
            r#"error: t.toml:12:16: `missing` does not exist (looked for missing)
 12 | playbook_dir = "missing"
    |                ^^^^^^^^^

error: t.toml:13:15: `roles.txt` is not a folder
 13 | role_paths = ["roles.txt"]
    |               ^^^^^^^^^^^

error: t.toml:14:21: `staging_directory` must be an absolute path on the machine, not `relative/dir`
 14 | staging_directory = "relative/dir"
    |                     ^^^^^^^^^^^^^^

error: t.toml:15:11: `command` must not be empty
 15 | command = " "
    |           ^^^

error: t.toml:16:11: `1st` is not a valid Ansible group name (letters, digits and `_`)
 16 | groups = ["1st"]
    |           ^^^^^

error: t.toml:20:1: unknown key `playbook` in provisioner 2 (type "ansible-local")
 20 | playbook = "play.yml"
    | ^^^^^^^^

6 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn inspect_shows_the_ansible_and_local_provisioners_without_values() {
    Test::new()
        .file("site.yml", "- hosts: all\n")
        .file(
            "t.toml",
            &format!(
                r#"name = "demo"
version = "1"

[variables.token]
default = "{SECRET}"
sensitive = true

[source.box]
type = "ssh"
ssh_host = "h"
ssh_username = "u"

[[provisioner]]
type = "ansible"
playbook_file = "site.yml"
become = true
extra_vars = {{ token = "${{var.token}}", who = "me" }}

[[provisioner]]
type = "ansible-local"
playbook_file = "site.yml"

[[provisioner]]
type = "shell-local"
inline = ["echo one", "echo two"]
env = {{ TOKEN = "${{var.token}}" }}
"#
            ),
        )
        .args(["inspect", "t.toml"])
        .stdout(
            "template: t.toml\nimage: demo 1\n\nvariables:\n  token: string = <sensitive>\n\nsources:\n  box  (ssh)\n\nprovisioners:\n\
             \x20 1. ansible: playbook site.yml (become); extra_vars token, who\n\
             \x20 2. ansible-local: playbook site.yml\n\
             \x20 3. shell-local: inline, 2 lines; env TOKEN\n",
        )
        .stderr("")
        .run();
}

fn host_key_fingerprint(sshd: &Sshd) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// Where `program` is on PATH: the machine under test is this one, but the
/// sshd's sessions need not have the same PATH.
fn program_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH; run scripts/setup --test"))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
