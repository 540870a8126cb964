//! Running one remote command: output streamed line by line from stdout and
//! stderr together, exit status or signal, timeout and cancel that also stop
//! the remote process.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::SshError;
use super::connect::Connection;
use crate::events::Stream;

/// First stderr line of every command: its process group, so that a cancel
/// or timeout can stop the whole remote process tree.
const PID_MARKER: &str = "\u{1e}imgbuild-pgid ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<String>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.signal, self.code) {
            (Some(sig), _) => write!(f, "was killed by signal SIG{sig}"),
            // A shell reports a child killed by signal N as 128 + N.
            (None, Some(code @ 129..=192)) => match signal_name(code - 128) {
                Some(name) => write!(f, "exited with code {code} (killed by SIG{name})"),
                None => write!(f, "exited with code {code}"),
            },
            (None, Some(code)) => write!(f, "exited with code {code}"),
            (None, None) => write!(f, "ended without an exit status"),
        }
    }
}

fn signal_name(number: i32) -> Option<&'static str> {
    Some(match number {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        6 => "ABRT",
        9 => "KILL",
        11 => "SEGV",
        13 => "PIPE",
        15 => "TERM",
        _ => return None,
    })
}

/// Splits a byte stream into lines, lossily decoded.
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8], mut emit: impl FnMut(&str)) {
        self.pending.extend_from_slice(data);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            emit(text.trim_end_matches('\r'));
        }
    }

    fn finish(&mut self, emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.push(&[], emit);
        }
    }
}

/// Waits up to `timeout` for any of `fds` to become readable; says whether one did.
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polls` is a valid, exclusively borrowed array of pollfd for the call's duration.
    let ready = unsafe {
        libc::poll(
            polls.as_mut_ptr(),
            polls.len() as libc::nfds_t,
            timeout.as_millis().min(i32::MAX as u128) as libc::c_int,
        )
    };
    ready > 0
}

pub fn run(
    conn: &Connection,
    command: &str,
    input: &[u8],
    timeout: Option<Duration>,
    keepalive: Duration,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(Stream, &str),
) -> Result<ExitStatus, SshError> {
    let session = &conn.session;
    session.set_blocking(true);
    let lost = |e: ssh2::Error| SshError::Disconnected(e.message().to_string());
    let mut channel = session.channel_session().map_err(lost)?;
    // `exec` keeps the process id, which is the group leader: sshd starts
    // every command in a new session.
    let wrapped = format!(
        "printf '{PID_MARKER}%s\\n' \"$$\" >&2; exec sh -c {}",
        super::shell_quote(command)
    );
    channel.exec(&wrapped).map_err(lost)?;
    if !input.is_empty() {
        std::io::Write::write_all(&mut channel, input)
            .map_err(|e| SshError::Disconnected(e.to_string()))?;
    }
    channel.send_eof().map_err(lost)?;

    session.set_blocking(false);
    let result = pump_output(conn, &mut channel, timeout, keepalive, cancel, &mut on_line);
    session.set_blocking(true);
    if let Err((e, pgid)) = result {
        if let (Some(pgid), SshError::Cancelled | SshError::TimedOut(_)) = (pgid, &e) {
            kill_group(conn, pgid);
        }
        let _ = channel.close();
        return Err(e);
    }
    channel.wait_close().map_err(lost)?;
    let code = channel.exit_status().ok();
    let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
    Ok(ExitStatus {
        code: if signal.is_some() { None } else { code },
        signal,
    })
}

type PumpError = (SshError, Option<i32>);

fn pump_output(
    conn: &Connection,
    channel: &mut ssh2::Channel,
    timeout: Option<Duration>,
    keepalive: Duration,
    cancel: &CancellationToken,
    on_line: &mut impl FnMut(Stream, &str),
) -> Result<(), PumpError> {
    let started = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Lines {
        pending: Vec::new(),
    };
    let mut err = Lines {
        pending: Vec::new(),
    };
    let mut pgid: Option<i32> = None;
    let mut first_err_line = true;
    loop {
        let mut got = false;
        for stream in [Stream::Stdout, Stream::Stderr] {
            let read = match stream {
                Stream::Stdout => channel.read(&mut buf),
                Stream::Stderr => channel.stderr().read(&mut buf),
            };
            match read {
                Ok(0) => {}
                Ok(n) => {
                    got = true;
                    match stream {
                        Stream::Stdout => out.push(&buf[..n], |l| on_line(Stream::Stdout, l)),
                        Stream::Stderr => err.push(&buf[..n], |l| {
                            if first_err_line && let Some(id) = l.strip_prefix(PID_MARKER) {
                                first_err_line = false;
                                pgid = id.trim().parse().ok();
                                return;
                            }
                            first_err_line = false;
                            on_line(Stream::Stderr, l)
                        }),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err((SshError::Disconnected(e.to_string()), pgid)),
            }
        }
        if !got && channel.eof() {
            out.finish(|l| on_line(Stream::Stdout, l));
            err.finish(|l| on_line(Stream::Stderr, l));
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Err((SshError::Cancelled, pgid));
        }
        if let Some(limit) = timeout
            && started.elapsed() > limit
        {
            return Err((SshError::TimedOut(limit), pgid));
        }
        if last_keepalive.elapsed() >= keepalive {
            last_keepalive = Instant::now();
            match conn.session.keepalive_send() {
                Ok(_) => {}
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                Err(e) => return Err((SshError::Disconnected(e.message().to_string()), pgid)),
            }
        }
        if !got {
            wait_readable(&[conn.fd], Duration::from_millis(200));
        }
    }
}

/// Stops a remote process group: TERM, then KILL if it is still there.
fn kill_group(conn: &Connection, pgid: i32) {
    let script = format!(
        "k() {{ kill -$1 -- -{pgid} 2>/dev/null || sudo -n kill -$1 -- -{pgid} 2>/dev/null; }}; \
         k TERM; for i in 1 2 3 4 5 6 7 8 9 10; do k 0 || exit 0; sleep 0.2; done; k KILL"
    );
    conn.session.set_timeout(10_000);
    if let Ok(mut ch) = conn.session.channel_session()
        && ch.exec(&script).is_ok()
    {
        let mut sink = String::new();
        let _ = ch.read_to_string(&mut sink);
        let _ = ch.wait_close();
    }
    conn.session.set_timeout(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut lines = Lines {
            pending: Vec::new(),
        };
        let mut seen = Vec::new();
        lines.push(b"one\ntw", |l| seen.push(l.to_string()));
        lines.push(b"o\r\nthree", |l| seen.push(l.to_string()));
        lines.finish(|l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three"]);
    }

    #[test]
    fn describes_exit() {
        assert_eq!(
            ExitStatus {
                code: Some(3),
                signal: None
            }
            .to_string(),
            "exited with code 3"
        );
        assert_eq!(
            ExitStatus {
                code: None,
                signal: Some("KILL".into())
            }
            .to_string(),
            "was killed by signal SIGKILL"
        );
        let killed = ExitStatus {
            code: Some(137),
            signal: None,
        };
        assert_eq!(
            killed.to_string(),
            "exited with code 137 (killed by SIGKILL)"
        );
    }
}
