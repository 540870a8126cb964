//! The family's local images, as `images` lists them and `prune` retires
//! them: each is its qcow2 and the checksum, metadata and package list
//! beside it, and the folder they are in once it is empty.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::family::Layout;
use super::processes::{self, Process};
use crate::communicator::shell_quote;
use crate::family::listing::{ImageStore, Listed, Listing, State, StoreError, Stored};
use crate::template::sources::QemuConfig;
use crate::template::{Scope, Template};

/// How local images are placed in listings.
pub const LOCATION: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum LocalStoreError {
    #[error("removing {path} of {image}: {source}")]
    Remove {
        image: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where `images` and `prune` find the family's local images.
pub fn image_store(template: &Template, config: &QemuConfig) -> Arc<dyn ImageStore> {
    Arc::new(LocalStore {
        layout: Layout::new(template, config),
        scope: template.scope.clone(),
    })
}

/// The family's images in a qemu source's output folders.
pub struct LocalStore {
    pub layout: Layout,
    pub scope: Scope,
}

#[async_trait]
impl ImageStore for LocalStore {
    fn location(&self) -> &str {
        LOCATION
    }

    async fn list(&self) -> Result<Listing, StoreError> {
        let mut scope = self.scope.clone();
        let first = self.layout.paths(&mut scope, 1)?;
        let running: Vec<Process> = processes::running()
            .into_iter()
            .filter(|p| p.names("qemu-system"))
            .collect();
        let images = self
            .layout
            .images(&first)
            .into_iter()
            .map(|mut image| {
                let qcow2 = PathBuf::from(&image.id);
                image.location = LOCATION.into();
                Listed {
                    uses: uses(&qcow2, &running),
                    stored: files(&qcow2),
                    image,
                    state: State::Available,
                    last_launched: None,
                }
            })
            .collect();
        Ok(Listing {
            images,
            held: Default::default(),
        })
    }

    async fn shared(&self, _image: &Listed) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn remove(&self, image: &Listed, stored: &[Stored]) -> Result<(), StoreError> {
        for file in stored {
            let path = PathBuf::from(&file.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(LocalStoreError::Remove {
                        image: image.image.id.clone(),
                        path,
                        source,
                    }
                    .into());
                }
            }
        }
        // The build's own folder goes once empty; a shared one stays.
        if let Some(dir) = folder(image) {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    fn commands(&self, image: &Listed, stored: &[Stored]) -> Vec<String> {
        let mut commands = Vec::new();
        if !stored.is_empty() {
            let files: Vec<String> = stored.iter().map(|s| shell_quote(&s.id)).collect();
            commands.push(format!("rm -f -- {}", files.join(" ")));
        }
        if let Some(dir) = folder(image) {
            commands.push(format!(
                "rmdir -- {}",
                shell_quote(&dir.display().to_string())
            ));
        }
        commands
    }
}

fn folder(image: &Listed) -> Option<&Path> {
    Path::new(&image.image.id)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
}

/// The image and the files written beside it that exist, with their sizes.
fn files(qcow2: &Path) -> Vec<Stored> {
    [
        qcow2.to_path_buf(),
        qcow2.with_extension("qcow2.sha256"),
        qcow2.with_extension("json"),
        qcow2.with_extension("packages.json"),
    ]
    .into_iter()
    .filter_map(|path| {
        let size_bytes = std::fs::metadata(&path).ok()?.len();
        Some(Stored {
            id: path.display().to_string(),
            size_bytes,
        })
    })
    .collect()
}

/// A QEMU process that has the image open is a use of it.
fn uses(qcow2: &Path, running: &[Process]) -> Vec<String> {
    let absolute = std::fs::canonicalize(qcow2).unwrap_or_else(|_| qcow2.to_path_buf());
    let names = [qcow2.display().to_string(), absolute.display().to_string()];
    running
        .iter()
        .filter(|p| names.iter().any(|n| p.names(n)))
        .map(|p| format!("QEMU process {}", p.pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_its_qcow2_and_the_files_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let qcow2 = dir.path().join("web-1.2-1.qcow2");
        std::fs::write(&qcow2, "disk").unwrap();
        std::fs::write(dir.path().join("web-1.2-1.json"), "{}").unwrap();
        std::fs::write(dir.path().join("web-1.2-2.json"), "{}").unwrap();
        let found: Vec<(String, u64)> = files(&qcow2)
            .into_iter()
            .map(|s| (s.id, s.size_bytes))
            .collect();
        assert_eq!(
            found,
            [
                (qcow2.display().to_string(), 4),
                (dir.path().join("web-1.2-1.json").display().to_string(), 2)
            ]
        );
    }

    #[test]
    fn a_qemu_process_with_the_image_open_uses_it() {
        let qemu = |pid, drive: &str| Process {
            pid,
            args: ["qemu-system-x86_64", "-drive", drive]
                .map(String::from)
                .to_vec(),
        };
        let running = vec![
            qemu(41, "file=output/web-1.2-1/web-1.2-1.qcow2,if=virtio"),
            qemu(42, "file=other.qcow2"),
        ];
        assert_eq!(
            uses(Path::new("output/web-1.2-1/web-1.2-1.qcow2"), &running),
            ["QEMU process 41"]
        );
    }
}
