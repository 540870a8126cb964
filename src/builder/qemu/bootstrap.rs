//! A Debian base built from packages with mmdebstrap, turned into a
//! self-booting disk without loop devices, and cached by the checksum of
//! everything that went into it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::base::{Base, BaseKind, cache_dir};
use crate::events::EventSink;
use crate::template::sources::BootstrapConfig;

const ESSENTIAL_HOOK: &str = include_str!("bootstrap/essential-hook.sh");
const CUSTOMIZE_HOOK: &str = include_str!("bootstrap/customize-hook.sh");

/// What every bootstrapped base has, besides the template's packages.
const BASE_PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "systemd-resolved",
    "grub-pc-bin",
    "fdisk",
];

/// Bumped whenever the way bases are made changes, so old caches are not reused.
const LAYOUT_VERSION: &str = "2";

/// Written into every bootstrapped disk, in the gap between GRUB's core
/// image and the root partition (which starts at 1 MiB) where nothing else
/// goes: copies of the disk, and images built from it, carry it too, so a
/// `base_image` of one is booted the way a bootstrapped base is.
const MARK: &[u8] = b"imgbuild bootstrapped disk: SSH keys arrive as systemd credentials\n";
const MARK_BLOCK: u64 = 4096;
/// The last 4 KiB before the partition.
const MARK_OFFSET: u64 = 1024 * 1024 - MARK_BLOCK;

/// The kernel command line of a build's boot. Only direct kernel boot uses
/// it, so nothing here reaches the image, which boots with GRUB's own line.
/// Under emulation a boot is CPU-bound, so every unit not started is time
/// saved; the build skips what it never uses:
/// - `fsck.mode=skip`: the overlay starts from a base that was shut down
///   cleanly (or just made by mkfs);
/// - the login prompts (the build logs in over SSH), waiting for the
///   network to be online, time sync, and the periodic timers (apt, fstrim,
///   man-db, e2scrub, dpkg backups) that would start work under the build;
/// - loading kernel modules that load by themselves when used (fuse, loop,
///   device-mapper, configfs) or have nothing to drive here (drm, EFI
///   pstore on a BIOS guest).
///
/// `systemd.show_status` makes the console say when sshd has started, which
/// is when the build connects.
pub const BUILD_BOOT_COMMAND_LINE: &str = "root=LABEL=rootfs rw console=ttyS0 quiet mitigations=off \
    fsck.mode=skip systemd.show_status=1 systemd.mask=serial-getty@ttyS0.service \
    systemd.mask=getty@tty1.service systemd.mask=systemd-networkd-wait-online.service \
    systemd.mask=systemd-timesyncd.service systemd.mask=apt-daily.timer \
    systemd.mask=apt-daily-upgrade.timer systemd.mask=fstrim.timer systemd.mask=man-db.timer \
    systemd.mask=e2scrub_all.timer systemd.mask=e2scrub_reap.service \
    systemd.mask=dpkg-db-backup.timer \
    systemd.mask=modprobe@drm.service systemd.mask=modprobe@efi_pstore.service \
    systemd.mask=modprobe@fuse.service systemd.mask=modprobe@loop.service \
    systemd.mask=modprobe@dm_mod.service systemd.mask=modprobe@configfs.service";

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The Debian mirror the host uses, so builds work where only it is reachable.
pub fn host_mirror() -> String {
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let classic = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    mirror_from_sources(&deb822, &classic).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

fn mirror_from_sources(deb822: &str, classic: &str) -> Option<String> {
    let not_security = |uri: &&str| !uri.contains("security");
    let from_deb822 = deb822
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(not_security);
    let from_classic = classic
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .find(not_security);
    from_deb822
        .or(from_classic)
        .map(|s| s.trim_end_matches('/').to_string())
}

/// The checksum of a bootstrap's inputs: same inputs, same base.
pub fn fingerprint(cfg: &BootstrapConfig, mirror: &str) -> String {
    let mut packages: Vec<&str> = BASE_PACKAGES
        .iter()
        .copied()
        .chain(cfg.packages.iter().map(String::as_str))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let mut h = Sha256::new();
    for part in [
        LAYOUT_VERSION,
        &cfg.distribution,
        &cfg.suite,
        mirror,
        &packages.join(","),
        ESSENTIAL_HOOK,
        CUSTOMIZE_HOOK,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Where the base for `cfg` is cached: its mirror, id and folder.
fn cache_entry(cfg: &BootstrapConfig) -> (String, String, PathBuf) {
    let mirror = cfg.mirror.clone().unwrap_or_else(host_mirror);
    let id = fingerprint(cfg, &mirror);
    let dir = cache_dir().join("bases").join(&id[..16]);
    (mirror, id, dir)
}

/// Whether the base for `cfg` is already cached (then no bootstrap tool runs).
pub fn is_cached(cfg: &BootstrapConfig) -> bool {
    cache_entry(cfg).2.join("disk.qcow2").exists()
}

/// Returns the cached base for `cfg`, bootstrapping it first if needed.
pub async fn base(cfg: &BootstrapConfig, events: &EventSink) -> Result<Base, String> {
    let (mirror, id, dir) = cache_entry(cfg);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Two builds wanting the same base: the second waits and then reuses it.
    let lock = dir.join("lock");
    let _guard = tokio::task::spawn_blocking(move || FileLock::acquire(&lock))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot lock the base cache: {e}"))?;
    let base = Base {
        disk: dir.join("disk.qcow2"),
        format: "qcow2".into(),
        kind: BaseKind::Bootstrapped {
            direct_boot: Some((dir.join("vmlinuz"), dir.join("initrd.img"))),
        },
        id: id.clone(),
    };
    if base.disk.exists() {
        events.info(format!(
            "using cached {} {} base {}",
            cfg.distribution,
            cfg.suite,
            &id[..16]
        ));
        return Ok(base);
    }
    let started = Instant::now();
    events.info(format!(
        "bootstrapping {} {} from {mirror} (cached afterwards as {})",
        cfg.distribution,
        cfg.suite,
        &id[..16]
    ));
    let work = tempfile::tempdir_in(&dir)
        .map_err(|e| format!("cannot create a work folder in {}: {e}", dir.display()))?;
    build(cfg, &mirror, work.path(), &dir, events).await?;
    events.info(format!(
        "base ready in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(base)
}

/// Runs a command as root (directly, or through `sudo -n`), failing with its stderr.
async fn run_as_root(program: &str, args: &[String], what: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new(program)
    } else {
        Command::new("sudo")
    };
    if !root {
        cmd.arg("-n").arg(program);
    }
    let out = cmd
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{what}: cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "{what} failed ({}):\n{}",
        out.status,
        tail.join("\n")
    ))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

async fn build(
    cfg: &BootstrapConfig,
    mirror: &str,
    work: &Path,
    dest: &Path,
    events: &EventSink,
) -> Result<(), String> {
    if cfg.distribution != "debian" {
        return Err(format!(
            "bootstrap supports distribution \"debian\", not \"{}\"",
            cfg.distribution
        ));
    }
    let rootfs = work.join("rootfs");
    let essential = work.join("essential-hook.sh");
    let customize = work.join("customize-hook.sh");
    std::fs::write(&essential, ESSENTIAL_HOOK).map_err(|e| e.to_string())?;
    std::fs::write(&customize, CUSTOMIZE_HOOK).map_err(|e| e.to_string())?;
    let mut include: Vec<&str> = BASE_PACKAGES.to_vec();
    include.extend(cfg.packages.iter().map(String::as_str));
    let args: Vec<String> = vec![
        "--mode=root".into(),
        "--variant=minbase".into(),
        "--format=directory".into(),
        format!("--include={}", include.join(",")),
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
        "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
        // mmdebstrap runs a hook string with the tree as "$1".
        format!("--essential-hook=sh {} \"$1\"", s(&essential)),
        format!("--customize-hook=sh {} \"$1\"", s(&customize)),
        cfg.suite.clone(),
        s(&rootfs),
        mirror.to_string(),
    ];
    events.info("running mmdebstrap (a few minutes)");
    run_as_root("mmdebstrap", &args, "mmdebstrap").await?;

    for (name, link) in [("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")] {
        let src = std::fs::canonicalize(rootfs.join(link))
            .map_err(|e| format!("the bootstrap has no /{link}: {e}"))?;
        std::fs::copy(&src, dest.join(name))
            .map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    }

    // A partitioned raw disk: the ext4 file system starts at 1 MiB, GRUB's
    // boot code goes into the MBR and the gap before the partition.
    let raw = work.join("disk.raw");
    let size_mib = disk_size_mib(&rootfs);
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(size_mib * 1024 * 1024))
        .map_err(|e| format!("cannot create {}: {e}", raw.display()))?;
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["-q", &s(&raw)])
        .stdin(std::process::Stdio::piped());
    let mut child = sfdisk
        .spawn()
        .map_err(|e| format!("cannot run sfdisk (package fdisk): {e}"))?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(b"label: dos\nstart=2048, type=83, bootable\n")
            .await
            .map_err(|e| e.to_string())?;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("sfdisk failed ({status})"));
    }
    run_as_root(
        "mkfs.ext4",
        &[
            "-q".into(),
            "-F".into(),
            "-L".into(),
            "rootfs".into(),
            "-d".into(),
            s(&rootfs),
            "-E".into(),
            "offset=1048576".into(),
            s(&raw),
            format!("{}k", (size_mib - 1) * 1024),
        ],
        "mkfs.ext4",
    )
    .await?;
    let boot_img = rootfs.join("usr/lib/grub/i386-pc/boot.img");
    let core_img = rootfs.join("boot/grub/i386-pc/core.img");
    write_at(
        &raw,
        &std::fs::read(&boot_img).map_err(|e| format!("{}: {e}", boot_img.display()))?[..440],
        0,
    )?;
    let core = std::fs::read(&core_img).map_err(|e| format!("{}: {e}", core_img.display()))?;
    if 512 + core.len() as u64 > MARK_OFFSET {
        return Err(format!(
            "GRUB's core image is {} bytes, too large for the gap before the partition",
            core.len()
        ));
    }
    write_at(&raw, &core, 512)?;
    write_at(&raw, MARK, MARK_OFFSET)?;

    let staged = dest.join("disk.qcow2.partial");
    super::run_tool(
        "qemu-img",
        &[
            "convert".into(),
            "-O".into(),
            "qcow2".into(),
            s(&raw),
            s(&staged),
        ],
    )
    .await?;
    std::fs::rename(&staged, dest.join("disk.qcow2")).map_err(|e| e.to_string())?;
    // The root-owned tree is large; remove it now rather than with the temp dir.
    run_as_root(
        "rm",
        &["-rf".into(), s(&rootfs)],
        "removing the bootstrap tree",
    )
    .await?;
    Ok(())
}

fn write_at(file: &Path, data: &[u8], offset: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| e.to_string())?;
    f.write_all_at(data, offset)
        .map_err(|e| format!("cannot write the boot loader: {e}"))
}

/// Room for the tree plus half again, at least 2 GiB (the disk is sparse).
fn disk_size_mib(rootfs: &Path) -> u64 {
    fn used(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| used(&e.path()))
                .sum::<u64>()
                + 4096
        } else {
            meta.len()
        }
    }
    let mib = used(rootfs) / (1024 * 1024);
    (mib * 3 / 2 + 512).max(2048)
}

/// An exclusive lock on a file, released when dropped.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor we locked.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Whether `disk` (in `format`) carries the bootstrap's mark.
pub async fn has_mark(disk: &Path, format: &str) -> Result<bool, String> {
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    let block = scratch.path().join("mark");
    let out = Command::new("qemu-img")
        .args(["dd", "-f", format, "-O", "raw"])
        .arg(format!("bs={MARK_BLOCK}"))
        .arg(format!("skip={}", MARK_OFFSET / MARK_BLOCK))
        // qemu-img dd counts the skipped blocks too: this reads one.
        .arg(format!("count={}", MARK_OFFSET / MARK_BLOCK + 1))
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", block.display()))
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !out.status.success() {
        // A disk smaller than 1 MiB has no room for the mark: not ours.
        return Ok(false);
    }
    let bytes = std::fs::read(&block).unwrap_or_default();
    Ok(bytes.starts_with(MARK))
}

/// The kernel of any cached bootstrapped base, for the KVM probe.
pub fn any_cached_kernel() -> Option<PathBuf> {
    std::fs::read_dir(cache_dir().join("bases"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("vmlinuz"))
        .find(|k| k.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_comes_from_the_host_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n";
        assert_eq!(
            mirror_from_sources(deb822, "").as_deref(),
            Some("http://mirror.example/debian")
        );
        let classic = "deb http://security.example/debian-security bookworm-security main\ndeb [arch=amd64] http://ftp.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_from_sources("", classic).as_deref(),
            Some("http://ftp.example/debian")
        );
        assert_eq!(mirror_from_sources("", ""), None);
    }

    #[test]
    fn fingerprint_changes_with_inputs_not_package_order() {
        let cfg = |packages: &[&str]| BootstrapConfig {
            distribution: "debian".into(),
            suite: "bookworm".into(),
            mirror: None,
            packages: packages.iter().map(|s| s.to_string()).collect(),
        };
        let a = fingerprint(&cfg(&["apache2", "curl"]), DEFAULT_MIRROR);
        assert_eq!(a, fingerprint(&cfg(&["curl", "apache2"]), DEFAULT_MIRROR));
        assert_ne!(a, fingerprint(&cfg(&["apache2"]), DEFAULT_MIRROR));
        assert_ne!(
            a,
            fingerprint(&cfg(&["apache2", "curl"]), "http://other/debian")
        );
    }
}
