//! Running a program on this machine for a provisioner: in a process group
//! of its own, output streamed line by line, and the whole group stopped on
//! timeout or when the build is cancelled (the provisioner's future dropped).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::communicator::ExitStatus;
use crate::events::Stream;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// The template's folder as an absolute path: programs run in it, and paths
/// joined to it stay right there (a relative one would be resolved twice).
/// A template given by bare file name has an empty folder: the current one.
pub fn template_folder(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// How long a stopped group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Runs `cmd` (stdin closed) until it exits, calling `on_line` for each line
/// of its stdout and stderr as it arrives.
pub async fn run(
    mut cmd: Command,
    timeout: Option<Duration>,
    mut on_line: impl FnMut(Stream, &str),
) -> Result<ExitStatus, LocalError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| LocalError::Spawn {
        program: program.clone(),
        source,
    })?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, Stream::Stderr, tx));
    }
    let mut group = Group {
        child,
        finished: false,
    };
    let work = async {
        while let Some((stream, line)) = rx.recv().await {
            on_line(stream, &line);
        }
        group.child.wait().await
    };
    let waited = match timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(waited) => waited,
            Err(_) => {
                group.stop();
                return Err(LocalError::TimedOut(limit));
            }
        },
        None => work.await,
    };
    let status = waited.map_err(|source| LocalError::Wait { program, source })?;
    group.finished = true;
    // A shell reports a child killed by signal N as 128 + N; so does this.
    Ok(ExitStatus {
        code: status.code().or(status.signal().map(|n| 128 + n)),
        signal: None,
    })
}

async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    tx: mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches('\n').trim_end_matches('\r');
                if tx.send((stream, text.to_string())).is_err() {
                    return;
                }
            }
        }
    }
}

/// The program's process group; stopped when dropped before it finished.
struct Group {
    child: Child,
    finished: bool,
}

impl Group {
    /// SIGTERM to the whole group, then SIGKILL to whatever is left after
    /// the grace period. Synchronous and bounded, so that it also completes
    /// from `drop` while the build is being cancelled.
    fn stop(&mut self) {
        self.finished = true;
        let Some(pgid) = self.child.id().map(|id| id as i32) else {
            return;
        };
        signal_group(pgid, libc::SIGTERM);
        let until = std::time::Instant::now() + GRACE;
        while std::time::Instant::now() < until {
            // Reaps the leader, so that only live members keep the group.
            let _ = self.child.try_wait();
            if !signal_group(pgid, 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(pgid, libc::SIGKILL);
        let _ = self.child.try_wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.finished {
            self.stop();
        }
    }
}

/// Sends `signal` to every process of the group; false when none is left.
fn signal_group(pgid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid addresses the process group we created.
    unsafe { libc::kill(-pgid, signal) == 0 }
}
