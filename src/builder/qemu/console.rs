//! Reading the guest's serial console while it boots: the moment it says
//! sshd has started is the moment to connect.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// What systemd prints (with `systemd.show_status`) once sshd is ready:
/// `Started ssh.service - OpenBSD Secure Shell server.` in its default
/// format, or only the name or the description in the others.
const SSHD_STARTED: &[&str] = &["Started ssh.service", "Started OpenBSD Secure Shell server"];

/// Follows a console log as QEMU writes it, reading only what is new.
pub struct ConsoleWatch {
    path: PathBuf,
    offset: u64,
    /// The end of what was read, so a marker split across reads is still found.
    tail: String,
    seen: bool,
}

impl ConsoleWatch {
    pub fn new(path: PathBuf) -> ConsoleWatch {
        ConsoleWatch {
            path,
            offset: 0,
            tail: String::new(),
            seen: false,
        }
    }

    /// Whether the console has said that sshd started (once said, always true).
    pub fn sshd_started(&mut self) -> bool {
        if !self.seen {
            let fresh = self.read_new();
            self.seen = contains_marker(&self.tail, &fresh);
            self.tail = last_chars(&format!("{}{fresh}", self.tail), 128);
        }
        self.seen
    }

    fn read_new(&mut self) -> String {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return String::new();
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return String::new();
        }
        self.offset += bytes.len() as u64;
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn contains_marker(tail: &str, fresh: &str) -> bool {
    let text = without_escapes(&format!("{tail}{fresh}"));
    SSHD_STARTED.iter().any(|m| text.contains(m))
}

/// The text without terminal escape sequences (systemd colours unit names).
fn without_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // ESC [ parameters, then one final letter.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

fn last_chars(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn sees_sshd_start_even_when_the_line_arrives_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut watch = ConsoleWatch::new(path.clone());
        assert!(!watch.sshd_started(), "no console yet");
        let mut log = std::fs::File::create(&path).unwrap();
        write!(
            log,
            "[  OK  ] Started systemd-networkd.service - Network Configuration.\r\n[  OK  ] Star"
        )
        .unwrap();
        assert!(!watch.sshd_started());
        write!(log, "ted \x1b[0;1;39mssh.").unwrap();
        assert!(!watch.sshd_started());
        write!(log, "service\x1b[0m - OpenBSD Secure Shell server.\r\n").unwrap();
        assert!(watch.sshd_started(), "colour codes around the name");
        let mut plain = ConsoleWatch::new(path.clone());
        assert!(plain.sshd_started());
        let mut other = ConsoleWatch::new(dir.path().join("other.log"));
        std::fs::write(
            dir.path().join("other.log"),
            "[  OK  ] Started sshd-keygen.service.\r\nStarted ssh-host-key.service\r\n",
        )
        .unwrap();
        assert!(!other.sshd_started(), "other units with ssh in their names");
    }
}
