//! `imgbuild gc` on this machine: the work folders (overlay, seed) of local
//! builds whose process is gone, and any process still running on one of
//! them (a QEMU that outlived its build), once older than `--older-than`.
//! A folder whose lock is held belongs to a build in progress and is never
//! touched, however old it is.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::processes;
use super::workdir::{self, LOCK_FILE};
use crate::swept::{Swept, SweptAction, not_old_enough};

const PLACE: &str = "local";
const FOLDER: &str = "build work folder";
const PROCESS: &str = "process";

/// A build that died between making its folder and writing its pid leaves
/// the lock file empty; until this old, it may be a build starting now.
const STARTING: Duration = Duration::from_secs(60);

/// How long a process gets to exit after SIGTERM, then after SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Sweeps the work folders under the cache.
pub fn sweep(older_than: Duration, dry_run: bool) -> Vec<Swept> {
    sweep_in(&workdir::root(), older_than, dry_run)
}

fn sweep_in(root: &Path, older_than: Duration, dry_run: bool) -> Vec<Swept> {
    let mut folders: Vec<PathBuf> = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(_) => return Vec::new(),
    };
    folders.sort();
    let mut out = Vec::new();
    for folder in folders {
        out.extend(sweep_folder(&folder, older_than, dry_run));
    }
    out
}

/// Whether the build that made a folder is still running.
enum Owner {
    Running(String),
    Starting,
    Gone,
}

fn sweep_folder(folder: &Path, older_than: Duration, dry_run: bool) -> Vec<Swept> {
    let build_id = workdir::build_id_of(folder);
    let made = made_at(folder);
    let age = SystemTime::now().duration_since(made).unwrap_or_default();
    let entry = |resource, id: String, action, commands| Swept {
        place: PLACE.into(),
        resource,
        id,
        build_id: build_id.clone(),
        snapshots: Vec::new(),
        action,
        commands,
    };
    let folder_commands = vec![format!("rm -rf {}", folder.display())];
    // Held from here to the removal, so a build cannot start on it meanwhile.
    let (owner, _lock) = owner(folder);
    let kept = match owner {
        Owner::Running(pid) => Some(format!("its build is running (pid {pid})")),
        Owner::Starting if age < STARTING => Some("its build is starting".into()),
        _ if age < older_than => Some(not_old_enough(OffsetDateTime::from(made))),
        _ => None,
    };
    if let Some(why) = kept {
        let id = folder.display().to_string();
        return vec![entry(FOLDER, id, SweptAction::Kept(why), folder_commands)];
    }
    let mut out = Vec::new();
    let mut stopped_all = true;
    // QEMU names its overlay, seed and QMP socket there.
    let needle = folder.display().to_string();
    let using = processes::running()
        .into_iter()
        .filter(|p| p.names(&needle));
    for (pid, name) in using.map(|p| (p.pid, p.name())) {
        let action = if dry_run {
            SweptAction::WouldRemove
        } else {
            match processes::stop(pid, STOP_GRACE) {
                Ok(()) => SweptAction::Removed,
                Err(e) => {
                    stopped_all = false;
                    SweptAction::Failed(format!("stopping {name} (pid {pid}): {e}"))
                }
            }
        };
        let commands = vec![format!("kill {pid}")];
        out.push(entry(PROCESS, format!("{pid} ({name})"), action, commands));
    }
    let action = if dry_run {
        SweptAction::WouldRemove
    } else if !stopped_all {
        SweptAction::Failed(format!(
            "left {}: a process still uses it",
            folder.display()
        ))
    } else {
        match std::fs::remove_dir_all(folder) {
            Ok(()) => SweptAction::Removed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SweptAction::Removed,
            Err(e) => SweptAction::Failed(format!("removing {}: {e}", folder.display())),
        }
    };
    let id = folder.display().to_string();
    out.push(entry(FOLDER, id, action, folder_commands));
    out
}

/// Tries the folder's lock; returns the lock file, held, when it was free.
fn owner(folder: &Path) -> (Owner, Option<File>) {
    let path = folder.join(LOCK_FILE);
    let Ok(file) = File::open(&path) else {
        // No lock file: made before locks existed, or killed at once; age decides.
        return (Owner::Gone, None);
    };
    let pid = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .trim()
        .to_string();
    match file.try_lock() {
        Ok(()) if pid.is_empty() => (Owner::Starting, Some(file)),
        Ok(()) => (Owner::Gone, Some(file)),
        Err(TryLockError::WouldBlock) => (Owner::Running(pid), None),
        // A file system without locks: nothing tells, so never sweep it.
        Err(TryLockError::Error(e)) => {
            (Owner::Running(format!("{pid}?, the lock says: {e}")), None)
        }
    }
}

/// When the build began: its lock file is written once, at the start.
fn made_at(folder: &Path) -> SystemTime {
    std::fs::metadata(folder.join(LOCK_FILE))
        .or_else(|_| std::fs::metadata(folder))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(swept: &[Swept]) -> Vec<String> {
        swept
            .iter()
            .map(|s| match &s.action {
                SweptAction::Kept(why) => format!("kept {}: {why}", s.resource),
                SweptAction::Removed => format!("removed {}", s.resource),
                SweptAction::WouldRemove => format!("would remove {}", s.resource),
                SweptAction::Failed(e) => format!("failed: {e}"),
            })
            .collect()
    }

    #[test]
    fn a_folder_whose_lock_is_held_is_kept_however_old() {
        let root = tempfile::tempdir().unwrap();
        let work = workdir::WorkDir::create_in(root.path(), "81f0e2c4d6a8").unwrap();
        let swept = sweep_in(root.path(), Duration::ZERO, false);
        let pid = std::process::id();
        assert_eq!(
            kept(&swept),
            [format!(
                "kept build work folder: its build is running (pid {pid})"
            )]
        );
        assert!(work.path().exists());
    }

    #[test]
    fn a_folder_whose_build_is_gone_is_removed_once_old_enough() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("5c3b1a9e07d2-AbC123");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join(LOCK_FILE), "4242\n").unwrap();
        std::fs::write(folder.join("overlay.qcow2"), "disk").unwrap();

        let young = sweep_in(root.path(), Duration::from_secs(3600), false);
        assert!(kept(&young)[0].starts_with("kept build work folder: made "));
        assert!(folder.exists());

        let planned = sweep_in(root.path(), Duration::ZERO, true);
        assert_eq!(kept(&planned), ["would remove build work folder"]);
        assert_eq!(
            planned[0].commands,
            [format!("rm -rf {}", folder.display())]
        );
        assert_eq!(planned[0].build_id, "5c3b1a9e07d2");
        assert!(folder.exists());

        let swept = sweep_in(root.path(), Duration::ZERO, false);
        assert_eq!(kept(&swept), ["removed build work folder"]);
        assert!(!folder.exists());
    }

    #[test]
    fn an_empty_lock_file_is_a_build_starting_for_a_minute() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("0a1b2c3d4e5f-XyZ789");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join(LOCK_FILE), "").unwrap();
        let swept = sweep_in(root.path(), Duration::ZERO, false);
        assert_eq!(
            kept(&swept),
            ["kept build work folder: its build is starting"]
        );
        assert!(folder.exists());
    }
}
