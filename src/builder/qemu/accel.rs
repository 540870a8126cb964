//! Choosing KVM or TCG. `/dev/kvm` existing is not enough: on some hosts
//! (nested virtualisation) a KVM guest makes no progress at all, so `auto`
//! boots a kernel under KVM for a few seconds and looks for its first words.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::template::sources::Accelerator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            // qemu64 boots faster under TCG than `max`, whose extra features
            // are all emulated.
            Accel::Tcg => vec![
                "-accel".into(),
                "tcg,thread=multi".into(),
                "-cpu".into(),
                "qemu64".into(),
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG (software emulation)",
        }
    }
}

const PROBE_LIMIT: Duration = Duration::from_secs(4);

static PROBED: OnceCell<Accel> = OnceCell::const_new();

/// The accelerator to use. `probe_kernel` is a kernel that can be booted for
/// the check; without one, `auto` chooses TCG unless told otherwise.
pub async fn choose(
    wanted: Accelerator,
    probe_kernel: Option<&Path>,
    scratch: &Path,
) -> Result<Accel, String> {
    match wanted {
        Accelerator::Tcg => Ok(Accel::Tcg),
        Accelerator::Kvm if kvm_device_usable() => Ok(Accel::Kvm),
        Accelerator::Kvm => Err("accelerator = \"kvm\" but /dev/kvm cannot be opened (is KVM enabled, and may this user use it?)".into()),
        Accelerator::Auto => {
            let Some(kernel) = probe_kernel.filter(|_| kvm_device_usable()) else {
                return Ok(Accel::Tcg);
            };
            Ok(*PROBED.get_or_init(|| probe_once_per_host_boot(kernel, scratch)).await)
        }
    }
}

fn kvm_device_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Where a failed probe is remembered: KVM that makes no progress (nested
/// virtualisation) stays that way until the host reboots, and each probe
/// costs its whole time limit.
fn failed_probe_record() -> std::path::PathBuf {
    super::base::cache_dir().join("kvm-makes-no-progress")
}

fn host_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

async fn probe_once_per_host_boot(kernel: &Path, scratch: &Path) -> Accel {
    let record = failed_probe_record();
    let boot_id = host_boot_id();
    if boot_id.is_some()
        && std::fs::read_to_string(&record)
            .ok()
            .map(|r| r.trim().to_string())
            == boot_id
    {
        tracing::debug!(record = %record.display(), "KVM probe failed earlier in this host boot");
        return Accel::Tcg;
    }
    let result = probe(kernel, scratch).await;
    if let (Accel::Tcg, Some(id)) = (result, boot_id) {
        let _ = std::fs::create_dir_all(super::base::cache_dir());
        let _ = std::fs::write(&record, id + "\n");
    }
    result
}

/// Boots `kernel` under KVM and waits (bounded) for it to print its banner.
async fn probe(kernel: &Path, scratch: &Path) -> Accel {
    let log = scratch.join("kvm-probe.log");
    let started = Instant::now();
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot", "-serial"])
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let mut result = Accel::Tcg;
    while started.elapsed() < PROBE_LIMIT {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Linux version")) {
            result = Accel::Kvm;
            break;
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_file(&log);
    tracing::debug!(?result, elapsed = ?started.elapsed(), "KVM probe");
    result
}
