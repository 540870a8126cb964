//! The base image a build starts from: a local file, a verified download, or
//! a Debian system bootstrapped from packages. Bases are never modified;
//! downloads and bootstraps are cached by checksum.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::events::EventSink;

#[derive(Debug, Clone)]
pub enum BaseKind {
    /// Made by imgbuild's bootstrap (or built from such a base): the SSH key
    /// is handed over as a systemd credential. `direct_boot` (kernel, initrd)
    /// when the kernel is known outside the disk, as for the cached base;
    /// otherwise the disk boots with its own GRUB and kernel.
    Bootstrapped {
        direct_boot: Option<(PathBuf, PathBuf)>,
    },
    /// Boots from its own boot loader; SSH key handed over by cloud-init.
    CloudImage,
}

#[derive(Debug, Clone)]
pub struct Base {
    pub disk: PathBuf,
    /// `qcow2` or `raw`, as qemu-img reports it.
    pub format: String,
    pub kind: BaseKind,
    /// A checksum naming the base: of the download, or of the bootstrap's inputs.
    pub id: String,
}

/// `$XDG_CACHE_HOME/imgbuild`, else `~/.cache/imgbuild`.
pub fn cache_dir() -> PathBuf {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    // IMGBUILD_CACHE_DIR lets a CI job keep the cache inside its project
    // folder, the only place a GitLab `cache:` can save between pipelines.
    if let Some(dir) = set("IMGBUILD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match set("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir).join("imgbuild"),
        None => PathBuf::from(set("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/imgbuild"),
    }
}

/// The image format qemu-img detects.
pub async fn detect_format(disk: &Path) -> Result<String, String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(disk)
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img cannot read {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("qemu-img info: {e}"))?;
    Ok(info["format"].as_str().unwrap_or("raw").to_string())
}

/// A local base image: a bootstrapped disk (or an image built from one) if it
/// carries the bootstrap's mark, otherwise a cloud image.
pub async fn local(path: &Path) -> Result<Base, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("base image {}: {e}", path.display()))?;
    let format = detect_format(path).await?;
    let kind = if super::bootstrap::has_mark(path, &format).await? {
        BaseKind::Bootstrapped { direct_boot: None }
    } else {
        BaseKind::CloudImage
    };
    // Hashing a multi-gigabyte file on every build is too slow; name it by path, size and time.
    let mut h = Sha256::new();
    h.update(path.display().to_string());
    h.update(meta.len().to_le_bytes());
    h.update(format!("{:?}", meta.modified().ok()));
    Ok(Base {
        disk: path.to_path_buf(),
        format,
        kind,
        id: hex::encode(h.finalize()),
    })
}

/// A downloaded base, verified against `sha256` before it enters the cache.
pub async fn download(url: &str, sha256: &str, events: &EventSink) -> Result<Base, String> {
    let expected = sha256.trim().to_ascii_lowercase();
    let dir = cache_dir().join("downloads");
    let target = dir.join(format!("{expected}.img"));
    if !target.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        events.info(format!("downloading {url}"));
        let (url_owned, dir2, events2, expected2, target2) = (
            url.to_string(),
            dir.clone(),
            events.clone(),
            expected.clone(),
            target.clone(),
        );
        tokio::task::spawn_blocking(move || {
            fetch_verified(&url_owned, &dir2, &expected2, &target2, &events2)
        })
        .await
        .map_err(|e| format!("download task failed: {e}"))??;
    }
    let format = detect_format(&target).await?;
    Ok(Base {
        disk: target,
        format,
        kind: BaseKind::CloudImage,
        id: expected,
    })
}

/// Streams `url` into a temporary file in `dir`, hashing as it goes; only a
/// file whose checksum matches is renamed into place.
fn fetch_verified(
    url: &str,
    dir: &Path,
    expected: &str,
    target: &Path,
    events: &EventSink,
) -> Result<(), String> {
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    let total: u64 = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut last = std::time::Instant::now();
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("download of {url} failed: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot write the download: {e}"))?;
        done += n as u64;
        if last.elapsed().as_millis() >= 100 {
            last = std::time::Instant::now();
            events.progress("download base image", done, total);
        }
    }
    events.progress("download base image", done, total.max(done));
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        // Dropping the temporary file deletes it: nothing unverified stays in the cache.
        return Err(format!(
            "checksum mismatch for {url}: expected sha256 {expected}, got {actual}"
        ));
    }
    file.persist(target)
        .map_err(|e| format!("cannot store the download: {}", e.error))?;
    Ok(())
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
