//! The content and mode of the local files a provisioner uploads: a file,
//! or every file, folder and link under a folder, in name order.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Input;

/// One input per file (labelled with `label` and the path below it), plus
/// one per folder and link, so a renamed, added, removed or re-moded entry
/// changes the hash as a changed byte does.
pub fn inputs(path: &Path, label: &str) -> std::io::Result<Vec<Input>> {
    let mut out = Vec::new();
    walk(path, label, &mut out)?;
    Ok(out)
}

fn walk(path: &Path, label: &str, out: &mut Vec<Input>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        out.push(Input {
            label: label.to_string(),
            hash: super::sha256_hex(format!("link {}", target.display())),
        });
    } else if meta.is_dir() {
        out.push(Input {
            label: format!("{}/", label.trim_end_matches('/')),
            hash: super::sha256_hex(format!("dir {mode:o}")),
        });
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let child_label = format!("{}/{}", label.trim_end_matches('/'), name.to_string_lossy());
            walk(&path.join(&name), &child_label, out)?;
        }
    } else {
        out.push(Input {
            label: label.to_string(),
            hash: file_hash(path, mode)?,
        });
    }
    Ok(())
}

fn file_hash(path: &Path, mode: u32) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(format!("file {mode:o}\n").as_bytes());
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(path: &Path) -> Vec<(String, String)> {
        inputs(path, "site")
            .unwrap()
            .into_iter()
            .map(|i| (i.label, i.hash))
            .collect()
    }

    #[test]
    fn a_byte_a_mode_or_a_new_file_changes_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("css")).unwrap();
        std::fs::write(site.join("index.html"), "hello").unwrap();
        std::fs::write(site.join("css/a.css"), "body{}").unwrap();
        let first = hashes(&site);
        let labels: Vec<&str> = first.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            ["site/", "site/css/", "site/css/a.css", "site/index.html"]
        );
        assert_eq!(hashes(&site), first, "stable");

        std::fs::write(site.join("css/a.css"), "body{ }").unwrap();
        let second = hashes(&site);
        assert_ne!(second[2], first[2]);
        assert_eq!(second[3], first[3]);

        let mut perms = std::fs::metadata(site.join("index.html"))
            .unwrap()
            .permissions();
        perms.set_mode(0o755);
        std::fs::set_permissions(site.join("index.html"), perms).unwrap();
        assert_ne!(hashes(&site)[3], second[3]);

        std::fs::write(site.join("new.txt"), "").unwrap();
        assert_eq!(hashes(&site).len(), 5);
    }
}
