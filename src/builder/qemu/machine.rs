//! One QEMU process: its command line, its serial log, its QMP socket, and
//! stopping it — politely first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use super::accel::Accel;

/// How to start the guest's operating system.
#[derive(Debug, Clone)]
pub enum Boot {
    /// Kernel and initrd given to QEMU directly (bootstrapped bases).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// The disk's own boot loader, through the firmware (cloud images).
    Firmware,
}

#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub name: String,
    pub disk: PathBuf,
    pub boot: Boot,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Host port (on 127.0.0.1) forwarded to the guest's SSH port.
    pub ssh_port: u16,
    /// A cloud-init NoCloud seed image, when the base uses cloud-init.
    pub seed: Option<PathBuf>,
    /// Values handed to systemd as credentials through the firmware config.
    pub credentials: Vec<(String, String)>,
    /// Where the run's files (serial log, QMP socket) go.
    pub run_dir: PathBuf,
}

impl MachineSpec {
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }

    fn qmp_socket(&self) -> PathBuf {
        self.run_dir.join("qmp.sock")
    }

    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-name".into(),
            format!("imgbuild-{}", self.name),
            // No SATA controller, PS/2 or SMBus: the guest's disk and network
            // are virtio, and each device left out is one less to probe and
            // for udev to process at boot.
            "-machine".into(),
            "q35,sata=off,i8042=off,smbus=off".into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-serial".into(),
            format!("file:{}", self.console_log().display()),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", self.qmp_socket().display()),
            // The build overlay is throwaway until the clean shutdown, so the
            // guest's flushes need not reach the disk (a large speed-up under TCG).
            "-drive".into(),
            format!(
                "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                self.disk.display()
            ),
            "-netdev".into(),
            format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", self.ssh_port),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
        ];
        args.extend(self.accel.qemu_args());
        if let Boot::Kernel {
            kernel,
            initrd,
            append,
        } = &self.boot
        {
            args.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                append.clone(),
            ]);
        }
        if let Some(seed) = &self.seed {
            args.extend([
                "-drive".into(),
                format!("file={},if=virtio,format=raw,readonly=on", seed.display()),
            ]);
        }
        for (name, value) in &self.credentials {
            // QEMU option values escape a comma by doubling it.
            args.extend([
                "-fw_cfg".into(),
                format!(
                    "name=opt/io.systemd.credentials/{name},string={}",
                    value.replace(',', ",,")
                ),
            ]);
        }
        args
    }
}

pub struct Machine {
    pub spec: MachineSpec,
    child: Child,
}

impl Machine {
    pub fn start(spec: MachineSpec) -> std::io::Result<Machine> {
        let stderr = std::fs::File::create(spec.run_dir.join("qemu.stderr"))?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        // If imgbuild itself is killed, the guest must not outlive it.
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Machine { spec, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The exit status if QEMU has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What QEMU printed on stderr (why it refused to start, usually).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.spec.run_dir.join("qemu.stderr"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Waits up to `limit` for QEMU to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Asks the guest to power off, as the power button would (ACPI).
    pub async fn powerdown(&self) -> std::io::Result<()> {
        qmp(&self.spec.qmp_socket(), "system_powerdown").await
    }

    /// Stops QEMU at once; the disk may be incomplete afterwards.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Sends one QMP command and waits for its answer.
async fn qmp(socket: &Path, command: &str) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await?; // greeting
    for cmd in ["qmp_capabilities", command] {
        write
            .write_all(format!("{{\"execute\": \"{cmd}\"}}\n").as_bytes())
            .await?;
        // Events may arrive before the answer; the answer has "return" or "error".
        while let Some(line) = lines.next_line().await? {
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                return Err(std::io::Error::other(format!("QMP {cmd}: {line}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_escape_commas_and_kernel_boot_is_direct() {
        let spec = MachineSpec {
            name: "b1".into(),
            disk: "/d/overlay.qcow2".into(),
            boot: Boot::Kernel {
                kernel: "/c/vmlinuz".into(),
                initrd: "/c/initrd.img".into(),
                append: "root=LABEL=rootfs".into(),
            },
            accel: Accel::Tcg,
            memory_mib: 1024,
            cpus: 2,
            ssh_port: 2222,
            seed: None,
            credentials: vec![(
                "ssh.authorized_keys.root".into(),
                "ssh-ed25519 AAAA a,b".into(),
            )],
            run_dir: "/r".into(),
        };
        let args = spec.args().join(" ");
        assert!(args.contains("-fw_cfg name=opt/io.systemd.credentials/ssh.authorized_keys.root,string=ssh-ed25519 AAAA a,,b"), "{args}");
        assert!(
            args.contains("-kernel /c/vmlinuz -initrd /c/initrd.img -append root=LABEL=rootfs"),
            "{args}"
        );
        assert!(args.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{args}");
        assert!(args.contains("-accel tcg"), "{args}");
    }
}
