//! The QEMU builder for real: a Debian base bootstrapped from packages, a
//! build under QEMU (software emulation is fine), and the output booted
//! again to check what the provisioners left in it.
//!
//! The tests share one base cache and boot one guest at a time (see
//! `common::local`).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::local::{
    BUILD_LIMIT, build, build_command, forwarded_port, one_guest_at_a_time, start_provisioning,
    template, work_root,
};
use common::{Scratch, imgbuild, run, text};

/// Nothing temporary of a finished build may remain: no QEMU, no overlay, no port.
/// (Guests run one at a time, so no other build has a work folder meanwhile.)
fn assert_no_machine_left(scratch: &Scratch, stderr: &str) {
    let qemu = common::processes_matching(&work_root().display().to_string());
    assert!(qemu.is_empty(), "QEMU left running: {qemu:?}");
    let work: Vec<_> = fs::read_dir(work_root())
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "work folders left: {work:?}");
    let tmp: Vec<_> = fs::read_dir(scratch.path("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    if let Some(port) = forwarded_port(stderr) {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still listening"
        );
    }
}

/// After a failed or cancelled build: nothing temporary, and no output either.
fn assert_nothing_left(scratch: &Scratch, stderr: &str) {
    assert_no_machine_left(scratch, stderr);
    assert!(
        !scratch.path("out/probe-0.1-1.qcow2").exists(),
        "no image from a failed build"
    );
    assert!(
        !scratch.path("out").exists(),
        "the output folder it created is removed"
    );
}

#[test]
fn builds_a_bootable_image_with_provisioned_files_and_packages() {
    let _one = one_guest_at_a_time();
    let scratch = Scratch::new();
    scratch.write("files/motd", "provisioned by imgbuild\n");
    scratch.write(
        "t.toml",
        &template(
            r#"[[provisioner]]
type = "shell"
inline = ["apt-get update -q", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello", "hello --version | head -n 1"]

[[provisioner]]
type = "file"
source = "files/motd"
destination = "/etc/motd"
"#,
        ),
    );
    let (out, stderr) = build(&scratch);
    assert!(out.status.success(), "build failed:\n{stderr}");
    assert_eq!(text(&out.stdout), "out: out/probe-0.1-1.qcow2\n");
    assert!(stderr.contains("hello (GNU Hello)"), "{stderr}");
    assert!(
        stderr.contains("build finished in"),
        "a summary of where the time went:\n{stderr}"
    );

    let image = scratch.path("out/probe-0.1-1.qcow2");
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("probe-0.1-1.qcow2.sha256")
        .current_dir(scratch.path("out"))
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "the .sha256 file matches: {}",
        text(&sums.stdout)
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(scratch.path("out/probe-0.1-1.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["version"], "0.1");
    assert_eq!(metadata["build"], 1);
    assert_eq!(metadata["format"], "qcow2");
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(scratch.path("imgbuild-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["builds"][0]["builder_type"], "qemu");
    assert_eq!(
        manifest["builds"][0]["artifacts"][0]["id"],
        "out/probe-0.1-1.qcow2"
    );
    assert_no_machine_left(&scratch, &stderr);

    // The image boots by itself (its own boot loader), and has what was provisioned.
    let guest = BootedImage::start(&scratch, &image);
    assert_eq!(guest.ssh("cat /etc/motd"), "provisioned by imgbuild\n");
    assert!(
        guest
            .ssh("dpkg-query -W -f='${Status}' hello")
            .contains("install ok installed")
    );
    let root_mib: u64 = guest
        .ssh("df --output=size -B1M / | tail -n 1")
        .trim()
        .parse()
        .unwrap();
    assert!(
        root_mib > 2600,
        "the root file system grew to the 3G disk: {root_mib} MiB"
    );
    assert_eq!(
        guest
            .ssh("systemctl show -p ConditionResult --value ssh-host-key.service")
            .trim(),
        "yes",
        "the image carries no host key: each machine makes its own at first boot"
    );
    // What the build's boot masks (timers, time sync, login prompts) is
    // only masked on its kernel command line: the image keeps all of it.
    let states = guest.ssh(
        "for unit in getty@tty1.service systemd-timesyncd.service apt-daily-upgrade.timer \
         systemd-networkd-wait-online.service fstrim.timer; do \
         echo \"$unit $(systemctl is-enabled $unit)\"; done",
    );
    assert!(
        !states.contains("masked") && states.lines().count() == 5,
        "the image keeps the units only the build skips:\n{states}"
    );
    let build_id = manifest["builds"][0]["build_id"].as_str().unwrap();
    let authorized = guest.ssh("cat /root/.ssh/authorized_keys");
    assert!(
        !authorized.contains(&format!("imgbuild-{build_id}")),
        "the build's temporary key is gone:\n{authorized}"
    );
}

#[test]
fn a_copy_of_a_bootstrapped_image_works_as_a_base_image() {
    let _one = one_guest_at_a_time();
    let scratch = Scratch::new();
    scratch.write(
        "t.toml",
        &template(
            "[[provisioner]]\ntype = \"shell\"\ninline = [\"echo made-in-the-first-build > /etc/first-build\"]\n",
        ),
    );
    let (out, stderr) = build(&scratch);
    assert!(out.status.success(), "first build failed:\n{stderr}");

    // Shared with another machine: only the disk, under another name.
    fs::create_dir_all(scratch.path("shared")).unwrap();
    fs::copy(
        scratch.path("out/probe-0.1-1.qcow2"),
        scratch.path("shared/base.qcow2"),
    )
    .unwrap();
    fs::remove_dir_all(scratch.path("out")).unwrap();
    scratch.write(
        "t.toml",
        r#"name = "probe"
version = "0.2"

[source.local]
type = "qemu"
base_image = "shared/base.qcow2"
ssh_timeout = "8m"
output_directory = "out"

[[provisioner]]
type = "shell"
inline = ["cat /etc/first-build"]
"#,
    );
    let (out, stderr) = build(&scratch);
    assert!(
        out.status.success(),
        "build on the copied base failed:\n{stderr}"
    );
    assert!(stderr.contains("| made-in-the-first-build"), "{stderr}");
    assert_eq!(text(&out.stdout), "out: out/probe-0.2-1.qcow2\n");
    assert_no_machine_left(&scratch, &stderr);
}

/// An output image booted through its own boot loader, reachable by SSH.
struct BootedImage {
    child: std::process::Child,
    port: u16,
    key: PathBuf,
}

impl BootedImage {
    fn start(scratch: &Scratch, image: &Path) -> BootedImage {
        let key = scratch.path("verify_key");
        common::keygen(&key);
        let public = fs::read_to_string(key.with_extension("pub")).unwrap();
        let overlay = scratch.path("verify.qcow2");
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(fs::canonicalize(image).unwrap())
            .arg(&overlay)
            .status()
            .unwrap();
        assert!(status.success());
        let port = common::free_port();
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "q35",
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "qemu64",
                "-m",
                "1024",
                "-smp",
                "2",
            ])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-serial",
            ])
            .arg(format!(
                "file:{}",
                scratch.path("verify-console.log").display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                overlay.display()
            ))
            .args([
                "-netdev",
                &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .arg("-fw_cfg")
            .arg(format!(
                "name=opt/io.systemd.credentials/ssh.authorized_keys.root,string={}",
                public.trim()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu");
        let guest = BootedImage { child, port, key };
        let booted = common::wait_until(Duration::from_secs(300), Duration::from_secs(2), || {
            guest.try_ssh("true").is_some()
        });
        assert!(
            booted,
            "the output image did not boot to SSH; console:\n{}",
            fs::read_to_string(scratch.path("verify-console.log")).unwrap_or_default()
        );
        guest
    }

    fn try_ssh(&self, command: &str) -> Option<String> {
        let out = Command::new("ssh")
            .args([
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=5",
                "-i",
            ])
            .arg(&self.key)
            .args(["-p", &self.port.to_string(), "root@127.0.0.1", command])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| text(&out.stdout))
    }

    fn ssh(&self, command: &str) -> String {
        self.try_ssh(command)
            .unwrap_or_else(|| panic!("`{command}` failed in the booted image"))
    }
}

impl Drop for BootedImage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_failing_provisioner_leaves_nothing_behind() {
    let _one = one_guest_at_a_time();
    let scratch = Scratch::new();
    scratch.write(
        "t.toml",
        &template(
            "[[provisioner]]\ntype = \"shell\"\ninline = [\"echo about to fail\", \"exit 9\"]\n",
        ),
    );
    let (out, stderr) = build(&scratch);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step \"provision\" failed: provisioner 1 (shell, t.toml:13): inline script exited with code 9"), "{stderr}");
    assert_nothing_left(&scratch, &stderr);
}

#[test]
fn sigint_during_provisioning_leaves_nothing_behind() {
    let _one = one_guest_at_a_time();
    let scratch = Scratch::new();
    let (child, stderr_path) = start_provisioning(&scratch);
    common::send_signal(&child, libc::SIGINT);
    let out = common::wait_output(child, Duration::from_secs(120));
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("build cancelled"), "{stderr}");
    assert_nothing_left(&scratch, &stderr);
}

/// Serves one fixed body over HTTP on 127.0.0.1, for download tests.
fn serve_once(body: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    port
}

#[test]
fn a_base_image_with_the_wrong_checksum_is_rejected_and_not_cached() {
    let scratch = Scratch::new();
    let cache = scratch.path("cache");
    let port = serve_once(b"not really a disk image");
    scratch.write(
        "t.toml",
        &format!(
            "name = \"probe\"\nversion = \"0.1\"\n[source.local]\ntype = \"qemu\"\nbase_url = \"http://127.0.0.1:{port}/disk.qcow2\"\nsha256 = \"{}\"\noutput_directory = \"out\"\n",
            "0".repeat(64)
        ),
    );
    let out = run(
        imgbuild()
            .args(["build", "t.toml"])
            .current_dir(scratch.dir.path())
            .env("XDG_CACHE_HOME", &cache),
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(b"not really a disk image"));
    assert!(
        stderr.contains(&format!(
            "checksum mismatch for http://127.0.0.1:{port}/disk.qcow2: expected sha256 {}, got {actual}",
            "0".repeat(64)
        )),
        "{stderr}"
    );
    let cached: Vec<_> = fs::read_dir(cache.join("imgbuild/downloads"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        cached.is_empty(),
        "nothing unverified is cached: {cached:?}"
    );
    assert!(!scratch.path("out").exists());
}

/// An existing image is never overwritten: the build takes the next
/// number. Then `--if-changed` with nothing changed boots nothing and points
/// the results at that image.
#[test]
fn an_unchanged_rebuild_boots_nothing_and_no_image_is_overwritten() {
    let _one = one_guest_at_a_time();
    let scratch = Scratch::new();
    scratch.write("out/probe-0.1-1.qcow2", "precious");
    scratch.write("t.toml", &template(""));
    let out = run(build_command(&scratch).arg("--if-changed"), BUILD_LIMIT);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "build failed:\n{stderr}");
    assert_eq!(text(&out.stdout), "out: out/probe-0.1-2.qcow2\n");
    assert!(
        stderr.contains("out/probe-0.1-1.qcow2 already exists (imgbuild never overwrites an image); taking build 2"),
        "{stderr}"
    );
    assert!(stderr.contains("building: no earlier image"), "{stderr}");
    assert_eq!(
        fs::read_to_string(scratch.path("out/probe-0.1-1.qcow2")).unwrap(),
        "precious"
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(scratch.path("out/probe-0.1-2.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["build"], 2);
    let fingerprint = metadata["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let packages: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(scratch.path("out/probe-0.1-2.packages.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(packages["manager"], "dpkg");
    assert!(
        packages["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "openssh-server"),
        "{packages}"
    );
    assert!(scratch.path("probe-0.1-2.local.cdx.json").exists());

    let out = run(
        build_command(&scratch).arg("--if-changed"),
        Duration::from_secs(120),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "unchanged: out: out/probe-0.1-2.qcow2 (built {}, fingerprint {})\n",
            metadata["built_at"].as_str().unwrap(),
            &fingerprint[..12]
        )
    );
    assert!(
        !stderr.contains("QEMU started"),
        "no VM was booted:\n{stderr}"
    );
    assert!(!scratch.path("out/probe-0.1-3.qcow2").exists());
    assert!(stderr.contains("build finished in"), "{stderr}");
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(scratch.path("imgbuild-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["builds"][0]["unchanged"], true);
    assert_eq!(manifest["builds"][0]["build"], 2);
    assert_eq!(
        manifest["builds"][0]["artifacts"][0]["id"],
        "out/probe-0.1-2.qcow2"
    );
}

#[test]
fn missing_tools_fail_the_build_at_once_naming_each_one() {
    // A PATH with only some of the tools: qemu-img, mmdebstrap and
    // mkfs.ext4 are missing. The base is not cached (a new cache folder),
    // so a build that did not check first would start bootstrapping.
    let scratch = Scratch::new();
    let bin = scratch.path("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["qemu-system-x86_64", "sfdisk", "sudo"] {
        let path = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::os::unix::fs::symlink(path.trim(), bin.join(tool)).unwrap();
    }
    let (_, scratch) = common::test::Test::in_scratch(scratch)
        .file("t.toml", &template(""))
        .args(["build", "t.toml"])
        .env("PATH", &bin)
        .env("XDG_CACHE_HOME", Path::new("cache"))
        .stderr_contains(
            "tools this build needs are missing or broken:\n  qemu-img (package qemu-utils): not found\n  mmdebstrap (package mmdebstrap): not found\n  mkfs.ext4 (package e2fsprogs): not found\nrun scripts/setup, or install them: apt-get install qemu-utils mmdebstrap e2fsprogs",
        )
        .stderr_contains("check tools")
        .status(1)
        .run();
    assert!(
        !scratch.path("cache/imgbuild/bases").exists(),
        "nothing was bootstrapped"
    );
    assert!(!scratch.path("out").exists(), "no output folder was made");
}
