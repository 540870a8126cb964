//! The finished image: a flattened, compressed qcow2 named by version, its
//! checksum file, and a small metadata file beside it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::template::sources::Compression;

#[derive(Debug, Clone)]
pub struct OutputPaths {
    pub dir: PathBuf,
    pub image: PathBuf,
    pub checksum: PathBuf,
    pub metadata: PathBuf,
    /// The package inventory, `{stem}.packages.json`.
    pub packages: PathBuf,
}

impl OutputPaths {
    /// `DIR/{name}-{version}-{build}.qcow2` and its companions.
    pub fn new(dir: PathBuf, name: &str, version: &str, build: u32) -> OutputPaths {
        let stem = format!("{name}-{version}-{build}");
        OutputPaths {
            image: dir.join(format!("{stem}.qcow2")),
            checksum: dir.join(format!("{stem}.qcow2.sha256")),
            metadata: dir.join(format!("{stem}.json")),
            packages: dir.join(format!("{stem}.packages.json")),
            dir,
        }
    }

    pub fn files(&self) -> [&Path; 4] {
        [&self.image, &self.checksum, &self.metadata, &self.packages]
    }

    /// The image while it is written; created first to reserve the name.
    pub fn partial(&self) -> PathBuf {
        self.image.with_extension("qcow2.partial")
    }
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub build: u32,
    pub build_id: String,
    pub built_at: String,
    pub format: &'static str,
    pub compression: &'static str,
    pub sha256: String,
    pub size_bytes: u64,
    pub base_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Per-part hashes, to name what changed next time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_parts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_url: Option<String>,
}

pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "zstd",
        Compression::Zlib => "zlib",
        Compression::None => "none",
    }
}

/// `qemu-img convert` arguments that flatten `overlay` (and its base) into `target`.
pub fn convert_args(overlay: &Path, target: &Path, compression: Compression) -> Vec<String> {
    let mut args = vec!["convert".to_string(), "-O".into(), "qcow2".into()];
    match compression {
        Compression::None => {}
        c => args.extend([
            "-c".into(),
            "-o".into(),
            format!("compression_type={}", compression_name(c)),
        ]),
    }
    args.extend([overlay.display().to_string(), target.display().to_string()]);
    args
}

/// `sha256sum` format, so `sha256sum -c` verifies the image.
pub fn checksum_line(sha256: &str, image: &Path) -> String {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{sha256}  {name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_name_and_version() {
        let p = OutputPaths::new("output/httpd-1.2-3".into(), "httpd", "1.2", 3);
        assert_eq!(p.image, Path::new("output/httpd-1.2-3/httpd-1.2-3.qcow2"));
        assert_eq!(
            p.checksum,
            Path::new("output/httpd-1.2-3/httpd-1.2-3.qcow2.sha256")
        );
        assert_eq!(
            p.partial(),
            Path::new("output/httpd-1.2-3/httpd-1.2-3.qcow2.partial")
        );
        assert_eq!(checksum_line("abc", &p.image), "abc  httpd-1.2-3.qcow2\n");
    }

    #[test]
    fn zstd_is_the_compressed_default() {
        let args = convert_args(
            Path::new("o.qcow2"),
            Path::new("t.qcow2"),
            Compression::Zstd,
        )
        .join(" ");
        assert_eq!(
            args,
            "convert -O qcow2 -c -o compression_type=zstd o.qcow2 t.qcow2"
        );
        let args = convert_args(
            Path::new("o.qcow2"),
            Path::new("t.qcow2"),
            Compression::None,
        )
        .join(" ");
        assert_eq!(args, "convert -O qcow2 o.qcow2 t.qcow2");
    }
}
