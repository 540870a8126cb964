//! `imgbuild gc` on this machine: a local build killed outright leaves its
//! work folder (overlay, seed) and possibly a QEMU on it; gc removes both
//! and never touches the folder of a build still running.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::local::{cache_home, one_guest_at_a_time, start_provisioning, work_root};
use common::test::Test;
use common::{Scratch, send_signal, wait_output, wait_until};

/// A child process stopped (and reaped) however the test ends.
struct Stopped(Option<Child>);

impl Stopped {
    fn child(&self) -> &Child {
        self.0.as_ref().expect("running")
    }

    fn take(&mut self) -> Child {
        self.0.take().expect("running")
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The work folder whose lock names `pid`.
fn folder_of(pid: u32) -> PathBuf {
    fs::read_dir(work_root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            fs::read_to_string(p.join("build.lock")).is_ok_and(|t| t.trim() == pid.to_string())
        })
        .unwrap_or_else(|| panic!("no work folder of pid {pid}"))
}

fn build_id_of(folder: &Path) -> String {
    let name = folder.file_name().unwrap().to_string_lossy().into_owned();
    name.rsplit_once('-').unwrap().0.to_string()
}

fn gc(args: &[&str]) -> Test {
    Test::new()
        .env("XDG_CACHE_HOME", cache_home().to_str().unwrap())
        .args(["gc", "--local", "--older-than", "0s"])
        .args(args)
}

#[test]
fn gc_removes_what_a_killed_local_build_left_and_spares_a_running_one() {
    let _one = one_guest_at_a_time();
    let (killed_scratch, running_scratch) = (Scratch::new(), Scratch::new());
    let mut killed = Stopped(Some(start_provisioning(&killed_scratch).0));
    let running = Stopped(Some(start_provisioning(&running_scratch).0));
    let killed_folder = folder_of(killed.child().id());
    let running_pid = running.child().id();
    let running_folder = folder_of(running_pid);

    send_signal(killed.child(), libc::SIGKILL);
    let out = wait_output(killed.take(), Duration::from_secs(30));
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert!(
        killed_folder.join("overlay.qcow2").exists(),
        "no cleanup ran"
    );
    // A QEMU that outlived its build, still naming a file in its folder.
    let orphan = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-S"])
        .args(["-monitor", "none", "-pidfile"])
        .arg(killed_folder.join("qemu.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut orphan = Stopped(Some(orphan));
    let orphan_pid = orphan.child().id();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || { killed_folder.join("qemu.pid").exists() }
    ));

    let (killed_id, running_id) = (build_id_of(&killed_folder), build_id_of(&running_folder));
    let process = format!("process {orphan_pid} (qemu-system-x86) (build {killed_id})");
    let gone = format!(
        "build work folder {} (build {killed_id})",
        killed_folder.display()
    );
    let kept = format!(
        "local: kept build work folder {} (build {running_id}): its build is running (pid {running_pid})\n",
        running_folder.display()
    );
    let in_order = |killed_lines: String| {
        if killed_folder < running_folder {
            format!("{killed_lines}{kept}")
        } else {
            format!("{kept}{killed_lines}")
        }
    };

    gc(&["--dry-run"])
        .stdout(&in_order(format!(
            "local: would remove {process}\n  kill {orphan_pid}\nlocal: would remove {gone}\n  rm -rf {}\n",
            killed_folder.display()
        )))
        .stderr("gc: would remove 2 and keep 1\n")
        .run();
    assert!(killed_folder.exists());
    assert_eq!(
        orphan.0.as_mut().unwrap().try_wait().unwrap(),
        None,
        "still running"
    );

    gc(&[])
        .stdout(&in_order(format!(
            "local: removed {process}\nlocal: removed {gone}\n"
        )))
        .stderr("gc: removed 2, kept 1\n")
        .run();
    assert!(!killed_folder.exists());
    assert!(
        orphan.0.as_mut().unwrap().try_wait().unwrap().is_some(),
        "stopped"
    );
    assert!(running_folder.join("overlay.qcow2").exists(), "untouched");

    // The running build is unharmed: it still stops and cleans up as usual.
    let mut running = running;
    send_signal(running.child(), libc::SIGINT);
    let out = wait_output(running.take(), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(130));
    assert!(!running_folder.exists());
    let qemu = common::processes_matching(&work_root().display().to_string());
    assert!(qemu.is_empty(), "QEMU left running: {qemu:?}");
}
