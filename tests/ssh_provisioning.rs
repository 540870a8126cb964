//! The communicator and provisioners against a real OpenSSH sshd, driven
//! through the real binary with `type = "ssh"` sources.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::test::Test;
use common::{Scratch, Sshd, build_in, ssh_box, ssh_template, start_build, text, wait_for_file};

const LIMIT: Duration = Duration::from_secs(120);

fn build(scratch: &Scratch, template: &str) -> std::process::Output {
    build_in(scratch, template, LIMIT)
}

#[test]
fn shell_inline_and_script_with_env_and_sudo() {
    let (scratch, sshd) = ssh_box();
    let work = scratch.path("work");
    let uploads = scratch.path("uploads");
    fs::create_dir_all(&uploads).unwrap();
    scratch.write("scripts/configure.sh", "#!/bin/sh\nset -e\necho \"configuring $SERVER_NAME as $(id -un)\" > \"$OUT/configured\"\necho script-ran\n");
    let template = format!(
        r#"{}
[[provisioner]]
type = "shell"
inline = ["mkdir -p {work}", "echo \"inline $GREETING $(basename {work})\" > {work}/inline", "echo to-stderr >&2"]
env = {{ GREETING = "hello-${{build.name}}" }}

[[provisioner]]
type = "shell"
script = "scripts/configure.sh"
env = {{ SERVER_NAME = "www.example.com", OUT = "{work}" }}
sudo = true
remote_folder = "{uploads}"
"#,
        ssh_template(&sshd, ""),
        work = work.display(),
        uploads = uploads.display()
    );
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "build failed:\n{stderr}");
    assert_eq!(
        fs::read_to_string(work.join("inline")).unwrap(),
        "inline hello-box work\n"
    );
    assert_eq!(
        fs::read_to_string(work.join("configured")).unwrap(),
        "configuring www.example.com as root\n"
    );
    assert!(
        stderr.contains("[box]     | to-stderr"),
        "stderr line streamed:\n{stderr}"
    );
    assert!(
        stderr.contains("[box]     | script-ran"),
        "stdout line streamed:\n{stderr}"
    );
    // Scripts remove themselves from the remote folder.
    let leftovers: Vec<_> = fs::read_dir(&uploads)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "remote scripts left behind: {leftovers:?}"
    );
}

#[test]
fn inline_stops_at_the_first_failing_line_and_names_the_provisioner() {
    let (scratch, sshd) = ssh_box();
    let marker = scratch.path("after-failure");
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\ninline = [\"echo ok\"]\n\n[[provisioner]]\ntype = \"shell\"\ninline = [\"sh -c 'exit 7'\", \"touch {}\"]\n",
        ssh_template(&sshd, ""),
        marker.display()
    );
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code 1 for a failed build:\n{stderr}"
    );
    // The error is the last line, and the only place it is printed.
    assert!(
        stderr.ends_with("error: build `box`: step \"provision\" failed: provisioner 2 (shell, t.toml:17): inline script exited with code 7\n"),
        "error names the provisioner and code, last:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("exited with code 7").count(),
        1,
        "the error is printed once:\n{stderr}"
    );
    assert!(!marker.exists(), "lines after the failing one must not run");
}

#[test]
fn valid_exit_codes_accept_listed_codes() {
    let (scratch, sshd) = ssh_box();
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\ninline = [\"exit 3\"]\nvalid_exit_codes = [0, 3]\n",
        ssh_template(&sshd, "")
    );
    let out = build(&scratch, &template);
    assert!(
        out.status.success(),
        "exit 3 is valid here:\n{}",
        text(&out.stderr)
    );

    let template = template.replace("[0, 3]", "[0, 4]");
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("exited with code 3 (valid exit codes: [0, 4])"),
        "{stderr}"
    );
}

fn write_big_file(path: &Path, mib: usize) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    // Varied content, so a transfer that drops or reorders chunks cannot pass.
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = ((i * 31 + j * 7) % 251) as u8;
        }
        f.write_all(&block).unwrap();
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_folders_and_a_large_file_round_trip_byte_for_byte() {
    let (scratch, sshd) = ssh_box();
    let remote = scratch.path("remote");
    let back = scratch.path("back");
    scratch.write("files/app.conf", "listen 80\n");
    fs::set_permissions(
        scratch.path("files/app.conf"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    scratch.write("site/index.html", "<h1>hi</h1>\n");
    scratch.write("site/bin/run.sh", "#!/bin/sh\necho run\n");
    fs::set_permissions(
        scratch.path("site/bin/run.sh"),
        fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    write_big_file(&scratch.path("big.bin"), 128);

    let template = format!(
        r#"{src}
[[provisioner]]
type = "file"
source = "files/app.conf"
destination = "{remote}/etc/app.conf"

[[provisioner]]
type = "file"
source = "site"
destination = "{remote}/www"

[[provisioner]]
type = "file"
source = "site/"
destination = "{remote}/flat"

[[provisioner]]
type = "file"
source = "big.bin"
destination = "{remote}/big.bin"

[[provisioner]]
type = "file"
content = "generated for ${{image.version}}"
destination = "{remote}/generated.txt"

[[provisioner]]
type = "file"
direction = "download"
sources = ["{remote}/big.bin", "{remote}/etc/app.conf"]
destination = "back/"

[[provisioner]]
type = "file"
direction = "download"
source = "{remote}/www"
destination = "back"
"#,
        src = ssh_template(&sshd, ""),
        remote = remote.display()
    );
    let out = build(&scratch, &template);
    assert!(out.status.success(), "build failed:\n{}", text(&out.stderr));

    assert_eq!(
        fs::read_to_string(remote.join("etc/app.conf")).unwrap(),
        "listen 80\n"
    );
    assert_eq!(mode(&remote.join("etc/app.conf")), 0o640);
    assert_eq!(
        fs::read_to_string(remote.join("www/site/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert_eq!(mode(&remote.join("www/site/bin/run.sh")), 0o751);
    assert_eq!(
        fs::read_to_string(remote.join("flat/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert!(
        !remote.join("flat/site").exists(),
        "a trailing slash copies the contents only"
    );
    assert_eq!(
        fs::read_to_string(remote.join("generated.txt")).unwrap(),
        "generated for 1.0"
    );
    assert!(
        same_bytes(&scratch.path("big.bin"), &remote.join("big.bin")),
        "upload differs"
    );

    assert!(
        same_bytes(&scratch.path("big.bin"), &back.join("big.bin")),
        "download differs"
    );
    assert_eq!(
        fs::read_to_string(back.join("app.conf")).unwrap(),
        "listen 80\n"
    );
    assert_eq!(mode(&back.join("app.conf")), 0o640);
    assert_eq!(
        fs::read_to_string(back.join("www/site/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert_eq!(mode(&back.join("www/site/bin/run.sh")), 0o751);
    drop(sshd);
}

/// A "reboot" for the expect_disconnect tests: the script kills this test's
/// sshd listener and the processes serving its own connection, and a
/// detached helper brings sshd back 2 s later. The listener is gone (its pid
/// file removed) before the connection drops, as on a machine going down:
/// otherwise a quick reconnect could still be accepted by the dying listener.
/// sshd runs detached from the
/// start, so the restarted one is like the original. Returns the script and
/// the pid of the first listener.
fn reboot_script(scratch: &Scratch, sshd: &mut Sshd) -> (String, String) {
    let restarted = scratch.path("restarted");
    let pidfile = sshd.dir.path().join("sshd.pid");
    let script = format!(
        "#!/bin/sh\n\
         setsid sh -c 'sleep 2; touch {restarted}; /usr/sbin/sshd -f {cfg}' </dev/null >/dev/null 2>&1 &\n\
         session=$(ps -o ppid= -p $PPID | tr -d ' ')\n\
         monitor=$(ps -o ppid= -p $session | tr -d ' ')\n\
         kill $(cat {pidfile})\n\
         for i in $(seq 100); do [ -e {pidfile} ] || break; sleep 0.05; done\n\
         kill $session $monitor\n\
         sleep 5\n",
        cfg = sshd.config.display(),
        restarted = restarted.display(),
        pidfile = pidfile.display()
    );
    sshd.stop();
    let _ = fs::remove_file(&pidfile);
    let status = Command::new("/usr/sbin/sshd")
        .arg("-f")
        .arg(&sshd.config)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(common::wait_for_port(sshd.port, Duration::from_secs(10)));
    (script, read_pid_file(&pidfile))
}

/// Stops the detached sshd a reboot test left running.
fn stop_detached_sshd(sshd: &Sshd) {
    let pidfile = sshd.dir.path().join("sshd.pid");
    if let Ok(pid) = fs::read_to_string(&pidfile) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
}

#[test]
fn expect_disconnect_survives_an_sshd_restart() {
    let (scratch, mut sshd) = ssh_box();
    let after = scratch.path("after");
    let (reboot, first) = reboot_script(&scratch, &mut sshd);
    scratch.write("reboot.sh", &reboot);
    let pidfile = sshd.dir.path().join("sshd.pid");
    // The next provisioner records which sshd served it: a listener writes
    // its pid file before it accepts any connection.
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\nscript = \"reboot.sh\"\nexpect_disconnect = true\n\n[[provisioner]]\ntype = \"shell\"\ninline = [\"cat {} > {}\"]\n",
        ssh_template(&sshd, ""),
        pidfile.display(),
        after.display()
    );
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    stop_detached_sshd(&sshd);
    assert!(out.status.success(), "build failed:\n{stderr}");
    assert!(stderr.contains("disconnected as expected"), "{stderr}");
    assert!(
        scratch.path("restarted").exists(),
        "sshd was restarted:\n{stderr}"
    );
    let served_by = fs::read_to_string(&after)
        .unwrap_or_else(|e| panic!("the next provisioner ran after reconnecting ({e}):\n{stderr}"));
    assert_ne!(
        served_by.trim(),
        first,
        "the next provisioner ran on the restarted sshd, not the first one:\n{stderr}"
    );
}

#[test]
fn a_reboot_in_the_first_of_two_scripts_still_runs_the_second() {
    let (scratch, mut sshd) = ssh_box();
    let after = scratch.path("after");
    let (reboot, first) = reboot_script(&scratch, &mut sshd);
    scratch.write("reboot.sh", &reboot);
    let pidfile = sshd.dir.path().join("sshd.pid");
    scratch.write(
        "after.sh",
        &format!(
            "#!/bin/sh\ncat {} > {}\n",
            pidfile.display(),
            after.display()
        ),
    );
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\nscripts = [\"reboot.sh\", \"after.sh\"]\nexpect_disconnect = true\n",
        ssh_template(&sshd, ""),
    );
    scratch.write("t.toml", &template);
    let (out, scratch) = Test::in_scratch(scratch)
        .args(["build", "t.toml"])
        .stderr_contains(
            "[box]     provisioner 1 (shell, t.toml:13): script reboot.sh disconnected as expected",
        )
        .stderr_contains("[box]     reconnecting to root@127.0.0.1:")
        .limit(LIMIT)
        .run();
    stop_detached_sshd(&sshd);
    let stderr = text(&out.stderr);
    let served_by = fs::read_to_string(&after).unwrap_or_else(|e| {
        panic!("the second script ran after the reboot in the first ({e}):\n{stderr}")
    });
    assert_ne!(
        served_by.trim(),
        first,
        "the second script ran on the restarted sshd:\n{stderr}"
    );
    assert!(scratch.path("restarted").exists());
}

#[test]
fn a_script_run_as_another_user_can_read_and_execute_it() {
    let (scratch, sshd) = ssh_box();
    // Both common ways: an interpreter reading the file as another user
    // (Packer's `su - jenkins -c "bash '{path}'"`), and executing it directly.
    scratch.write(
        "whoami.sh",
        "#!/bin/sh\necho \"ran as $(id -un), mode $(stat -c %a \"$0\")\"\n",
    );
    let template = format!(
        r#"{}
[[provisioner]]
type = "shell"
script = "whoami.sh"
execute_command = "su nobody -s /bin/sh -c \"sh {{path}}\""

[[provisioner]]
type = "shell"
script = "whoami.sh"
execute_command = "runuser -u nobody -- {{path}}"
"#,
        ssh_template(&sshd, ""),
    );
    let (out, _) = Test::in_scratch(scratch)
        .file("t.toml", &template)
        .args(["build", "t.toml"])
        .limit(LIMIT)
        .run();
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr
            .matches("[box]     | ran as nobody, mode 755\n")
            .count(),
        2,
        "both provisioners ran the script as nobody:\n{stderr}"
    );
    drop(sshd);
}

/// The pid a detached sshd wrote once it listened (bounded wait).
fn read_pid_file(path: &Path) -> String {
    let mut text = String::new();
    let written = common::wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
        text = fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    assert!(written, "sshd wrote no pid file");
    text.trim().to_string()
}

#[test]
fn a_key_the_server_rejects_is_reported_as_an_authentication_error() {
    let (scratch, sshd) = ssh_box();
    common::keygen(&scratch.path("other_key"));
    let template = ssh_template(&sshd, "")
        .replace("id_ed25519", "other_key")
        .replace("\"20s\"", "\"4s\"")
        + "\n[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n";
    let started = Instant::now();
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up within the ssh_timeout, took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("could not connect to root@127.0.0.1:")
            && stderr.contains(
                "within 4s: authentication rejected for user `root` with ssh-ed25519 key SHA256:"
            ),
        "{stderr}"
    );
}

#[test]
fn a_closed_port_is_reported_as_refused() {
    let scratch = Scratch::new();
    scratch.client_key();
    let port = common::free_port();
    let template = format!(
        "name = \"test\"\nversion = \"1.0\"\n[source.box]\ntype = \"ssh\"\nssh_host = \"127.0.0.1\"\nssh_port = {port}\nssh_username = \"root\"\nssh_private_key_file = \"id_ed25519\"\nssh_timeout = \"3s\"\n"
    );
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not connect to root@127.0.0.1:{port} within 3s: connection refused"
        )),
        "{stderr}"
    );
}

#[test]
fn sigint_during_a_long_provisioner_cleans_up_and_exits_130() {
    let (scratch, sshd) = ssh_box();
    let started = scratch.path("started");
    // A duration no other process on the machine is likely to use, to find it by.
    let sleeper = format!("sleep {}", 1000 + std::process::id() % 50_000);
    let remote_folder = scratch.path("remote");
    std::fs::create_dir(&remote_folder).unwrap();
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\nremote_folder = \"{}\"\ninline = [\"touch {}\", \"{sleeper}\"]\n",
        ssh_template(&sshd, ""),
        remote_folder.display(),
        started.display()
    );
    scratch.write("t.toml", &template);
    let child = start_build(&scratch, &[]);
    assert!(
        wait_for_file(&started, Duration::from_secs(60)),
        "provisioner started"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !common::processes_matching(&sleeper).is_empty(),
        "the remote command runs"
    );
    common::send_signal(&child, libc::SIGINT);
    let out = common::wait_output(child, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGINT received: cancelling builds and cleaning up"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cancelled during step \"provision\"")
            || stderr.contains("build cancelled"),
        "{stderr}"
    );
    // The remote process tree is gone (bounded wait: TERM is delivered asynchronously).
    common::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        common::processes_matching(&sleeper).is_empty()
    });
    assert!(
        common::processes_matching(&sleeper).is_empty(),
        "remote process left behind"
    );
    // The script file goes as its shell exits, a moment after its child.
    let scripts = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(&remote_folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    common::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        scripts().is_empty()
    });
    assert_eq!(
        scripts(),
        Vec::<std::ffi::OsString>::new(),
        "remote script left behind"
    );
}

#[test]
fn a_bastion_tunnels_the_session() {
    let (scratch, sshd) = ssh_box();
    let marker = scratch.path("via-bastion");
    let bastion = format!(
        "ssh_bastion_host = \"127.0.0.1\"\nssh_bastion_port = {}\nssh_bastion_username = \"root\"\nssh_bastion_private_key_file = \"id_ed25519\"\n",
        sshd.port
    );
    // The target address is as the bastion sees it: the same loopback sshd here.
    let template = format!(
        "{}\n[[provisioner]]\ntype = \"shell\"\ninline = [\"echo $SSH_CONNECTION > {}\"]\n",
        ssh_template(&sshd, &bastion),
        marker.display()
    );
    let out = build(&scratch, &template);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let connection = fs::read_to_string(&marker).unwrap();
    // Through a tunnel, the target sees the bastion's sshd as its client.
    assert!(connection.starts_with("127.0.0.1 "), "{connection}");
    // Two logins: the bastion's, and the target's through it, which alone runs commands.
    let log = sshd.log();
    let logins: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("Accepted publickey for root from 127.0.0.1 port "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(logins.len(), 2, "{log}");
    let sessions = |port: &str| {
        log.matches(&format!(
            "Starting session: command for root from 127.0.0.1 port {port} "
        ))
        .count()
    };
    assert_eq!(
        sessions(logins[0]),
        0,
        "the bastion connection runs no command:\n{log}"
    );
    assert!(
        sessions(logins[1]) > 0,
        "commands run on the tunnelled connection:\n{log}"
    );
}

#[test]
fn a_pinned_host_key_that_differs_is_refused() {
    let (scratch, sshd) = ssh_box();
    let pinned =
        "ssh_host_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n";
    let template =
        ssh_template(&sshd, pinned) + "\n[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n";
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let actual = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    let actual = text(&actual.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        stderr.contains(&format!(
            "host key of root@127.0.0.1:{} is {actual}, but SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA was expected",
            sshd.port
        )),
        "{stderr}"
    );
}

#[test]
fn a_command_killed_by_a_signal_says_so() {
    let (scratch, sshd) = ssh_box();
    let template = ssh_template(&sshd, "")
        + "\n[[provisioner]]\ntype = \"shell\"\ninline = [\"kill -KILL $$\"]\n";
    let out = build(&scratch, &template);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("inline script exited with code 137 (killed by SIGKILL)"),
        "{stderr}"
    );
}

/// An OpenSSH private key as it appears in a var file: many lines.
const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCLd2nNCrQ6qGAjYvdGyX0ZhoG5bOqyCEFLhCIb5Bp1JwAAAJgkPzg0JD84
NAAAAAtzc2gtZWQyNTUxOQAAACCLd2nNCrQ6qGAjYvdGyX0ZhoG5bOqyCEFLhCIb5Bp1Jw
-----END OPENSSH PRIVATE KEY-----
";

#[test]
fn a_multi_line_sensitive_value_never_shows_in_output_errors_or_the_manifest() {
    let (scratch, sshd) = ssh_box();
    scratch.write("secrets.toml", &format!("deploy_key = '''\n{PEM}'''\n"));
    // The second provisioner downloads a remote path made from the key: a
    // remote path is only looked at during the build, so the value reaches
    // the build's error, not validation's.
    let template = format!(
        r#"{}
[variables.deploy_key]
sensitive = true

[[provisioner]]
type = "shell"
inline = ["printf '%s\n' \"$KEY\"", "printf '%s\n' \"$KEY\" | sed 's/^/  /' >&2"]
env = {{ KEY = "${{var.deploy_key}}" }}

[[provisioner]]
type = "file"
direction = "download"
source = "/nonexistent/${{var.deploy_key}}"
destination = "never"
"#,
        ssh_template(&sshd, "")
    );
    scratch.write("t.toml", &template);
    let (out, scratch) = common::test::Test::in_scratch(scratch)
        .args(["build", "t.toml", "--var-file", "secrets.toml"])
        .stdout("")
        .stderr_contains("[box]     | <sensitive>\n")
        .stderr_contains("[box]     |   <sensitive>\n")
        .status(1)
        .limit(LIMIT)
        .run();
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "error: build `box`: step \"provision\" failed: provisioner 2 (file, t.toml:21): download /nonexistent/<sensitive> to never: Failed to recv file",
        "{stderr}"
    );
    let manifest = fs::read_to_string(scratch.path("imgbuild-manifest.json")).unwrap();
    assert!(manifest.contains("<sensitive>"), "{manifest}");
    for line in PEM.lines() {
        for (what, shown) in [
            ("stdout", text(&out.stdout)),
            ("stderr", stderr.clone()),
            ("manifest", manifest.clone()),
        ] {
            assert!(!shown.contains(line), "{what} shows {line:?}:\n{shown}");
        }
    }
}
