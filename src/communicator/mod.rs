//! The SSH communicator: one connection per build, shared by every
//! provisioner. It knows nothing about clouds or images.
//!
//! ssh2 is blocking, so every operation runs on a blocking thread
//! (`spawn_blocking`) and the async runtime never waits on a socket.

mod connect;
mod details;
mod exec;
mod readiness;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use connect::ConnectFailure;
pub use details::ConnectionDetails;
pub use exec::ExitStatus;
pub use transfer::Progress;

use crate::events::Stream;

/// The private key a session authenticates with.
#[derive(Clone)]
pub enum Credential {
    /// An OpenSSH private key held in memory (temporary keys never touch disk).
    Key {
        private_pem: Arc<str>,
        label: String,
    },
    /// Keys offered by the running ssh-agent.
    Agent,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Key { label, .. } => write!(f, "Key({label})"),
            Credential::Agent => write!(f, "Agent"),
        }
    }
}

impl Credential {
    /// Reads a private key file; the label names it in errors.
    pub fn from_file(path: &Path) -> std::io::Result<Credential> {
        let pem = std::fs::read_to_string(path)?;
        Ok(Credential::Key {
            private_pem: pem.into(),
            label: path.display().to_string(),
        })
    }

    /// "ssh-ed25519 SHA256:…" for error messages, when the key can be parsed.
    pub fn describe(&self) -> String {
        match self {
            Credential::Agent => "keys from ssh-agent".to_string(),
            Credential::Key { private_pem, label } => {
                match ssh_key::PrivateKey::from_openssh(private_pem.as_bytes()) {
                    Ok(key) => format!(
                        "{} key {} ({label})",
                        key.algorithm(),
                        key.public_key().fingerprint(ssh_key::HashAlg::Sha256)
                    ),
                    Err(_) => format!("key {label}"),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub credential: Credential,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub endpoint: Endpoint,
    /// How long to keep trying before giving up.
    pub timeout: Duration,
    /// `SHA256:…`; when set, any other host key is refused.
    pub host_key_fingerprint: Option<String>,
    pub keepalive: Duration,
    pub bastion: Option<Endpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("could not connect to {endpoint} within {}: {last}", humantime::format_duration(*.timeout))]
    GaveUp {
        endpoint: String,
        timeout: Duration,
        last: ConnectFailure,
    },
    #[error("host key of {endpoint} is {actual}, but {expected} was expected")]
    HostKeyMismatch {
        endpoint: String,
        expected: String,
        actual: String,
    },
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// The server end went away while data was moving (sshd died, the host
    /// rebooted, the network dropped); the cause is libssh2's view of it.
    #[error("the SSH connection to {endpoint} was lost during {during}")]
    ConnectionLost {
        endpoint: String,
        during: String,
        #[source]
        cause: Box<SshError>,
    },
    #[error("command timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("{context}: {message}")]
    Remote { context: String, message: String },
    #[error("{context}: {source}")]
    Local {
        context: String,
        source: std::io::Error,
    },
}

/// A live SSH connection.
#[derive(Clone)]
pub struct Communicator {
    conn: Arc<Mutex<connect::Connection>>,
    target: Arc<SshTarget>,
    cancel: CancellationToken,
}

impl Communicator {
    /// Connects, retrying until `target.timeout`; the error says why the last attempt failed.
    pub async fn connect(
        target: SshTarget,
        cancel: CancellationToken,
    ) -> Result<Communicator, SshError> {
        let target = Arc::new(target);
        let conn = {
            let (target, cancel) = (target.clone(), cancel.clone());
            blocking(move || connect::connect(&target, &cancel)).await?
        };
        Ok(Communicator {
            conn: Arc::new(Mutex::new(conn)),
            target,
            cancel,
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Drops the connection and connects again (after a reboot).
    pub async fn reconnect(&self) -> Result<(), SshError> {
        let (target, cancel, conn) = (self.target.clone(), self.cancel.clone(), self.conn.clone());
        blocking(move || {
            let fresh = connect::connect(&target, &cancel)?;
            *conn.lock().expect("ssh connection lock") = fresh;
            Ok(())
        })
        .await
    }

    /// Waits for the operation under way to finish (a cancelled command
    /// first stops its remote processes), then says goodbye to the server.
    pub async fn close(&self) {
        let _ = self
            .on_connection(|c, _| {
                c.session.set_blocking(true);
                c.session.set_timeout(5_000);
                let _ = c.session.disconnect(None, "build finished", None);
                Ok(())
            })
            .await;
    }

    /// Runs `command`, calling `on_line` for each output line as it arrives.
    pub async fn exec(
        &self,
        command: &str,
        timeout: Option<Duration>,
        on_line: impl FnMut(Stream, &str) + Send + 'static,
    ) -> Result<ExitStatus, SshError> {
        self.exec_with_input(command, Vec::new(), timeout, on_line)
            .await
    }

    /// Like `exec`, with `input` as the command's stdin (then end of file).
    /// Sending a script this way costs one channel instead of an upload and a run.
    pub async fn exec_with_input(
        &self,
        command: &str,
        input: Vec<u8>,
        timeout: Option<Duration>,
        on_line: impl FnMut(Stream, &str) + Send + 'static,
    ) -> Result<ExitStatus, SshError> {
        let (command, keepalive) = (command.to_string(), self.target.keepalive);
        self.on_connection(move |c, cancel| {
            exec::run(c, &command, &input, timeout, keepalive, cancel, on_line)
        })
        .await
    }

    /// Runs `command` and returns its stdout; fails on a non-zero exit.
    pub async fn output(&self, command: &str) -> Result<String, SshError> {
        let out = Arc::new(Mutex::new((String::new(), String::new())));
        let sink = out.clone();
        let status = self
            .exec(
                command,
                Some(Duration::from_secs(120)),
                move |stream, line| {
                    let mut o = sink.lock().expect("output lock");
                    let buf = if stream == Stream::Stdout {
                        &mut o.0
                    } else {
                        &mut o.1
                    };
                    buf.push_str(line);
                    buf.push('\n');
                },
            )
            .await?;
        let (stdout, stderr) = std::mem::take(&mut *out.lock().expect("output lock"));
        if status.success() {
            Ok(stdout)
        } else {
            Err(SshError::Remote {
                context: format!("`{command}` {status}"),
                message: stderr.trim().to_string(),
            })
        }
    }

    /// Runs `work` on a blocking thread with the connection (waiting for any
    /// operation under way) and the build's cancel token.
    async fn on_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&connect::Connection, &CancellationToken) -> Result<T, SshError>
        + Send
        + 'static,
    ) -> Result<T, SshError> {
        let (conn, cancel) = (self.conn.clone(), self.cancel.clone());
        blocking(move || work(&conn.lock().expect("ssh connection lock"), &cancel)).await
    }

    /// Uploads the file `local` to `remote`, creating its folder; the
    /// destination appears only once complete.
    /// Runs a transfer; when it fails because the server end went away,
    /// says so (libssh2 alone reports "Failure while draining incoming
    /// flow" and the like).
    async fn transfer(
        &self,
        during: String,
        work: impl FnOnce(&connect::Connection, &CancellationToken) -> Result<(), SshError>
        + Send
        + 'static,
    ) -> Result<(), SshError> {
        let endpoint = format!(
            "{}:{}",
            self.target.endpoint.host, self.target.endpoint.port
        );
        self.on_connection(move |c, cancel| match work(c, cancel) {
            Err(
                e @ (SshError::Remote { .. } | SshError::Local { .. } | SshError::Disconnected(_)),
            ) if !cancel.is_cancelled() && socket_closed(c.fd) => Err(SshError::ConnectionLost {
                endpoint,
                during,
                cause: Box::new(e),
            }),
            other => other,
        })
        .await
    }

    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        progress: Progress,
    ) -> Result<(), SshError> {
        let during = format!("upload {} to {remote}", local.display());
        let (local, remote) = (local.to_path_buf(), remote.to_string());
        self.transfer(during, move |c, cancel| {
            transfer::upload_file(c, &local, &remote, cancel, progress)
        })
        .await
    }

    /// Writes `content` to the file `remote`, creating its folder.
    pub async fn upload_bytes(
        &self,
        content: Vec<u8>,
        remote: &str,
        mode: u32,
    ) -> Result<(), SshError> {
        let during = format!("upload to {remote}");
        let remote = remote.to_string();
        self.transfer(during, move |c, cancel| {
            transfer::upload_bytes(c, &content, &remote, mode, cancel)
        })
        .await
    }

    /// Uploads the contents of `local` into the remote folder `remote` (created if missing).
    pub async fn upload_dir(
        &self,
        local: &Path,
        remote: &str,
        progress: Progress,
    ) -> Result<(), SshError> {
        let during = format!("upload of folder {} to {remote}", local.display());
        let (local, remote) = (local.to_path_buf(), remote.to_string());
        self.transfer(during, move |c, cancel| {
            transfer::upload_dir(c, &local, &remote, cancel, progress)
        })
        .await
    }

    pub async fn download_file(
        &self,
        remote: &str,
        local: &Path,
        progress: Progress,
    ) -> Result<(), SshError> {
        let during = format!("download {remote} to {}", local.display());
        let (local, remote) = (local.to_path_buf(), remote.to_string());
        self.transfer(during, move |c, cancel| {
            transfer::download_file(c, &remote, &local, cancel, progress)
        })
        .await
    }

    /// Downloads the contents of the remote folder `remote` into `local` (created if missing).
    pub async fn download_dir(
        &self,
        remote: &str,
        local: &Path,
        progress: Progress,
    ) -> Result<(), SshError> {
        let during = format!("download of folder {remote} to {}", local.display());
        let (local, remote) = (local.to_path_buf(), remote.to_string());
        self.transfer(during, move |c, cancel| {
            transfer::download_dir(c, &remote, &local, cancel, progress)
        })
        .await
    }

    /// Whether the remote path is a directory.
    pub async fn is_remote_dir(&self, remote: &str) -> Result<bool, SshError> {
        let status = self
            .exec(
                &format!("test -d {}", shell_quote(remote)),
                Some(Duration::from_secs(60)),
                |_, _| {},
            )
            .await?;
        Ok(status.success())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SshError> + Send + 'static,
) -> Result<T, SshError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SshError::Disconnected(format!(
            "SSH worker thread failed: {e}"
        ))),
    }
}

/// Whether the peer has closed the socket under a session (or reset it):
/// a peek that reads end of file or fails for any reason but "no data yet".
fn socket_closed(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a socket the connection
    // owns; MSG_PEEK leaves any data for libssh2.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last part of a remote path, `site` for `/srv/site/`.
pub fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The folder a remote path is in, `.` for a bare name.
pub fn remote_parent(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/",
        Some((parent, _)) => parent,
        None => ".",
    }
}

/// A local path for messages.
pub fn display(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::{base_name, remote_parent, shell_quote};

    #[test]
    fn parents_and_names() {
        assert_eq!(remote_parent("/tmp/x/y.txt"), "/tmp/x");
        assert_eq!(remote_parent("/y.txt"), "/");
        assert_eq!(remote_parent("y.txt"), ".");
        assert_eq!(base_name("site/"), "site");
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/tmp/a-b_c.sh"), "/tmp/a-b_c.sh");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
    }
}
