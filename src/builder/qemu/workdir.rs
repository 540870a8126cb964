//! A local build's work folder: the overlay disk, the cloud-init seed and
//! the QMP socket, under the cache as `work/<build id>-XXXXXX`.
//!
//! The folder holds `build.lock`, which the build keeps locked (flock) for
//! its whole life and which names its pid. The kernel drops the lock when
//! the process ends however it ends, SIGKILL included, so `gc` tells a
//! folder whose build is gone from one in use by trying the lock, not by
//! guessing from ages or pids that may have been reused.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::base::cache_dir;

pub const LOCK_FILE: &str = "build.lock";

/// Where the work folders of local builds live.
pub fn root() -> PathBuf {
    cache_dir().join("work")
}

/// A work folder, locked by this process until it is closed.
pub struct WorkDir {
    dir: tempfile::TempDir,
    lock: File,
}

impl WorkDir {
    pub fn create(build_id: &str) -> io::Result<WorkDir> {
        WorkDir::create_in(&root(), build_id)
    }

    pub(super) fn create_in(root: &Path, build_id: &str) -> io::Result<WorkDir> {
        std::fs::create_dir_all(root)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{build_id}-"))
            .tempdir_in(root)?;
        let mut lock = File::create_new(dir.path().join(LOCK_FILE))?;
        // Blocking: a `gc` that looked at the folder in the instant since it
        // was made holds the lock only while it sees the file still empty.
        lock.lock()?;
        writeln!(lock, "{}", std::process::id())?;
        lock.sync_data()?;
        Ok(WorkDir { dir, lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves the folder for a person to look at; `gc` removes it once
    /// older than its `--older-than`.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    /// Removes the folder, then lets go of the lock.
    pub fn close(self) -> io::Result<()> {
        let removed = self.dir.close();
        drop(self.lock);
        removed
    }
}

/// The build id a work folder's name starts with.
pub fn build_id_of(folder: &Path) -> String {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('-') {
        Some((id, _)) => id.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_named_after_the_build_and_locked_while_open() {
        let cache = tempfile::tempdir().unwrap();
        let work = WorkDir::create_in(&cache.path().join("work"), "5c3b1a9e07d2").unwrap();
        let path = work.path().to_path_buf();
        assert_eq!(path.parent().unwrap(), cache.path().join("work"));
        assert_eq!(build_id_of(&path), "5c3b1a9e07d2");
        let lock = File::open(path.join(LOCK_FILE)).unwrap();
        assert!(lock.try_lock().is_err(), "held by the open work folder");
        assert_eq!(
            std::fs::read_to_string(path.join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
        work.close().unwrap();
        assert!(!path.exists());
    }
}
