//! Local QEMU builds for the suites that boot guests: one shared base
//! cache (a bootstrap is slow), one guest at a time, and where a build's
//! work folder lives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{Scratch, imgbuild, run, text};

static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Guests run one at a time: two at once on a small CI machine only slow each other down.
pub fn one_guest_at_a_time() -> MutexGuard<'static, ()> {
    ONE_GUEST_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Bootstraps are cached here for the whole test run (and later runs).
pub fn cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("imgbuild-cache")
}

pub const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

pub fn template(body: &str) -> String {
    format!(
        r#"name = "probe"
version = "0.1"

[source.local]
type = "qemu"
bootstrap = {{ distribution = "debian", suite = "bookworm" }}
memory = 1024
cpus = 2
disk_size = "3G"
ssh_timeout = "8m"
output_directory = "out"

{body}"#
    )
}

/// The build command with the shared cache and a private temporary folder.
pub fn build_command(scratch: &Scratch) -> Command {
    let tmp = scratch.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let mut cmd = imgbuild();
    cmd.args(["build", "t.toml"])
        .current_dir(scratch.dir.path())
        .env("XDG_CACHE_HOME", cache_home())
        .env("TMPDIR", &tmp);
    cmd
}

/// Runs the build in `scratch`; its output and stderr as text.
pub fn build(scratch: &Scratch) -> (std::process::Output, String) {
    let out = run(&mut build_command(scratch), BUILD_LIMIT);
    let stderr = text(&out.stderr);
    (out, stderr)
}

/// Where builds make their work folders (overlay, seed, QMP socket).
pub fn work_root() -> PathBuf {
    cache_home().join("imgbuild/work")
}

/// The port a build forwarded SSH from, as its log says.
pub fn forwarded_port(stderr: &str) -> Option<u16> {
    let rest = stderr.split("SSH forwarded from 127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Starts a build in `scratch` whose provisioner sleeps, and returns once
/// it is provisioning: the build and the file its stderr goes to.
pub fn start_provisioning(scratch: &Scratch) -> (Child, PathBuf) {
    scratch.write(
        "t.toml",
        &template(
            "[[provisioner]]\ntype = \"shell\"\ninline = [\"echo provisioning-started\", \"sleep 600\"]\n",
        ),
    );
    let log = scratch.path("stderr.log");
    let child = build_command(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = super::wait_until(BUILD_LIMIT, Duration::from_millis(200), || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("provisioning-started")
    });
    assert!(
        started,
        "provisioning never started:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (child, log)
}
