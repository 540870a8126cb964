//! The processes of this machine as `/proc` shows them: which ones name a
//! file (a QEMU with an image open, one running on a build's work folder),
//! and stopping one. `images` and `gc` both look through these.

use std::time::{Duration, Instant};

/// A running process and its command line, one argument each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub args: Vec<String>,
}

impl Process {
    /// Whether any argument contains `text` (QEMU names files inside
    /// arguments such as `file=PATH,if=virtio`).
    pub fn names(&self, text: &str) -> bool {
        self.args.iter().any(|arg| arg.contains(text))
    }

    /// Its short name (`comm`), e.g. `qemu-system-x86`.
    pub fn name(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// Every process this one can see but itself, by pid.
pub fn running() -> Vec<Process> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Process> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = cmdline
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            Some(Process { pid, args })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// SIGTERM, then SIGKILL if it is still there after `grace`; each waits
/// at most `grace` for it to go.
pub fn stop(pid: i32, grace: Duration) -> Result<(), String> {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        // SAFETY: kill(2) only sends a signal; a pid that is gone gives ESRCH.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(()),
                _ => Err(e.to_string()),
            };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !alive(pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(format!("still running {}s after SIGKILL", grace.as_secs()))
}

/// Present and not a zombie waiting for its parent.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised name, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_live_process_from_a_missing_one() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }

    #[test]
    fn sees_other_processes_by_their_arguments_but_not_itself() {
        let me = std::process::id() as i32;
        let all = running();
        assert!(all.iter().all(|p| p.pid != me));
        let init = all.iter().find(|p| p.pid == 1).expect("pid 1");
        assert!(!init.args.is_empty());
        let p = Process {
            pid: 0,
            args: vec!["qemu".into(), "file=/w/overlay.qcow2,if=virtio".into()],
        };
        assert!(p.names("/w/overlay.qcow2"));
        assert!(!p.names("/w/other"));
    }
}
