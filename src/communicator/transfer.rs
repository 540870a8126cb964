//! Moving files and folders over the session, streamed in large chunks so a
//! big file never sits in memory. Files go by SCP (which carries the mode);
//! folders go as one tar stream, which keeps modes and costs one channel.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::connect::Connection;
use super::{SshError, base_name, remote_parent, shell_quote};

/// Called with (bytes done, bytes in all; 0 when unknown).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

const CHUNK: usize = 1 << 20;

fn local_err(context: String) -> impl FnOnce(io::Error) -> SshError {
    move |source| SshError::Local { context, source }
}

fn remote_err(context: String) -> impl FnOnce(ssh2::Error) -> SshError {
    move |e| SshError::Remote {
        context,
        message: e.message().to_string(),
    }
}

/// How long one blocking read or write may make no progress before the
/// transfer fails (the peer is gone).
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// The session in blocking mode for a transfer. libssh2 fails a blocking call
/// with "Timed out waiting on socket" whenever the socket stays quiet until
/// the next keepalive is due, so a peer that pauses for a few seconds (a guest
/// under emulation on a busy host) would fail the transfer. A transfer's data
/// keeps the connection alive, so keepalives are off while it runs, and a
/// stall limit takes their place; both are restored afterwards.
struct BlockingTransfer<'a> {
    conn: &'a Connection,
}

impl<'a> BlockingTransfer<'a> {
    fn start(conn: &'a Connection) -> Self {
        conn.session.set_blocking(true);
        conn.session.set_keepalive(false, 0);
        conn.session
            .set_timeout(STALL_LIMIT.as_millis().min(u32::MAX as u128) as u32);
        BlockingTransfer { conn }
    }
}

impl Drop for BlockingTransfer<'_> {
    fn drop(&mut self) {
        self.conn.session.set_timeout(0);
        self.conn
            .session
            .set_keepalive(false, self.conn.keepalive_secs);
    }
}

/// Counts bytes, reports progress at most every 100 ms, and stops on cancel.
struct Meter<'a, T> {
    inner: T,
    done: u64,
    total: u64,
    last: Instant,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
}

/// The error a [`Meter`] stops a transfer with. Its kind is not
/// `Interrupted`: `write_all` and `read_exact` retry that one by contract,
/// which would send the same buffer again and again instead of stopping.
fn cancelled() -> io::Error {
    io::Error::other("cancelled")
}

impl<'a, T> Meter<'a, T> {
    fn new(inner: T, total: u64, progress: &'a Progress, cancel: &'a CancellationToken) -> Self {
        Meter {
            inner,
            done: 0,
            total,
            last: Instant::now(),
            progress,
            cancel,
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(cancelled());
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            (self.progress)(self.done, self.total);
        }
    }

    fn finish(&self) {
        (self.progress)(self.done, self.total.max(self.done));
    }
}

impl<T: Write> Write for Meter<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.write(buf)?;
        self.advance(n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Meter<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.advance(n);
        Ok(n)
    }
}

/// An I/O error while data streams: a cancel shows up as one, so report the
/// cancel if there was one, else the error in its context.
fn stream_err<'a>(
    cancel: &'a CancellationToken,
    context: &str,
) -> impl FnOnce(io::Error) -> SshError + 'a {
    let local = local_err(context.to_string());
    move |e| {
        if cancel.is_cancelled() {
            SshError::Cancelled
        } else {
            local(e)
        }
    }
}

/// The remote half of a file upload, run by the login shell: the bytes go to
/// a hidden name beside the destination and are renamed onto it only once
/// all `size` of them arrived. A cancelled or broken transfer (the stream
/// ends early, or the connection drops) fails the size check, and the exit
/// trap removes the partial file, so no half-file is ever left behind. The
/// shell's pid (`$$`) keeps two uploads to one destination apart.
fn receive_command(remote: &str, size: u64, mode: u32) -> String {
    let parent = remote_parent(remote);
    let hidden = shell_quote(&format!("{parent}/.{}.imgbuild", base_name(remote)));
    format!(
        "d={dest}; t={hidden}-$$; mkdir -p {dir} || exit 1; \
         if [ -d \"$d\" ]; then echo \"$d is a folder\" >&2; exit 1; fi; \
         trap 'rm -f \"$t\"' EXIT; trap 'rm -f \"$t\"; exit 1' HUP INT TERM PIPE; \
         cat > \"$t\" || exit 1; \
         n=$(wc -c < \"$t\"); \
         if [ \"$n\" -ne {size} ]; then echo \"transfer ended after $n of {size} bytes\" >&2; exit 1; fi; \
         chmod {mode:o} \"$t\" && mv -f \"$t\" \"$d\"",
        dest = shell_quote(remote),
        dir = shell_quote(parent),
    )
}

/// Streams `input` into the stdin of `command` through a meter.
fn send(
    channel: &mut ssh2::Channel,
    input: &mut impl Read,
    size: u64,
    context: &str,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), SshError> {
    let mut meter = Meter::new(channel, size, progress, cancel);
    let result = copy(input, &mut meter, cancel);
    meter.finish();
    result.map(|_| ()).map_err(stream_err(cancel, context))
}

pub fn upload_file(
    conn: &Connection,
    local: &Path,
    remote: &str,
    cancel: &CancellationToken,
    progress: Progress,
) -> Result<(), SshError> {
    let context = format!("upload {} to {remote}", local.display());
    let mut file = File::open(local).map_err(local_err(context.clone()))?;
    let meta = file.metadata().map_err(local_err(context.clone()))?;
    let (size, mode) = (meta.len(), meta.permissions().mode() & 0o7777);
    let command = receive_command(remote, size, mode);
    with_channel(conn, &command, &context, |channel| {
        send(channel, &mut file, size, &context, cancel, &progress)
    })
}

pub fn upload_bytes(
    conn: &Connection,
    content: &[u8],
    remote: &str,
    mode: u32,
    cancel: &CancellationToken,
) -> Result<(), SshError> {
    let context = format!("upload to {remote}");
    let quiet: Progress = Arc::new(|_, _| {});
    let size = content.len() as u64;
    let command = receive_command(remote, size, mode);
    with_channel(conn, &command, &context, |channel| {
        send(channel, &mut &content[..], size, &context, cancel, &quiet)
    })
}

/// Like `io::copy`, with a buffer large enough to keep the SSH window full,
/// and a look at the cancel token between chunks.
fn copy(from: &mut impl Read, to: &mut impl Write, cancel: &CancellationToken) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Runs `command` with its stdin or stdout given to `body`; fails on a
/// non-zero exit, with the command's stderr (`context` names the transfer,
/// as the command itself is plumbing).
fn with_channel(
    conn: &Connection,
    command: &str,
    context: &str,
    body: impl FnOnce(&mut ssh2::Channel) -> Result<(), SshError>,
) -> Result<(), SshError> {
    let _blocking = BlockingTransfer::start(conn);
    let mut channel = conn
        .session
        .channel_session()
        .map_err(remote_err(context.to_string()))?;
    channel
        .exec(command)
        .map_err(remote_err(context.to_string()))?;
    let result = body(&mut channel);
    let _ = channel.send_eof();
    let mut stderr = String::new();
    let _ = channel.stderr().read_to_string(&mut stderr);
    let mut rest = Vec::new();
    let _ = channel.read_to_end(&mut rest);
    let _ = channel.wait_close();
    result?;
    match channel.exit_status() {
        Ok(0) => Ok(()),
        Ok(code) => Err(SshError::Remote {
            context: context.to_string(),
            message: format!("exited with code {code}: {}", stderr.trim()),
        }),
        Err(e) => Err(SshError::Remote {
            context: context.to_string(),
            message: e.message().to_string(),
        }),
    }
}

pub fn upload_dir(
    conn: &Connection,
    local: &Path,
    remote: &str,
    cancel: &CancellationToken,
    progress: Progress,
) -> Result<(), SshError> {
    let context = format!("upload folder {} to {remote}", local.display());
    let total = dir_size(local);
    let q = shell_quote(remote);
    let command = format!("mkdir -p {q} && tar -xpf - -C {q}");
    with_channel(conn, &command, &context, |channel| {
        let mut meter = Meter::new(channel, total, &progress, cancel);
        let mut archive = tar::Builder::new(&mut meter);
        archive.follow_symlinks(false);
        let result = archive
            .append_dir_all(".", local)
            .and_then(|_| archive.finish());
        drop(archive);
        meter.finish();
        result.map_err(stream_err(cancel, &context))
    })
}

pub fn download_file(
    conn: &Connection,
    remote: &str,
    local: &Path,
    cancel: &CancellationToken,
    progress: Progress,
) -> Result<(), SshError> {
    let context = format!("download {remote} to {}", local.display());
    let _blocking = BlockingTransfer::start(conn);
    let (mut channel, stat) = conn
        .session
        .scp_recv(Path::new(remote))
        .map_err(remote_err(context.clone()))?;
    let mode = (stat.mode() & 0o7777) as u32;
    // The bytes go to a hidden file beside the destination, renamed onto it
    // once complete: a cancelled or broken download leaves the old file (or
    // nothing) in place, and the temporary file is removed when dropped.
    let folder = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = local.file_name().unwrap_or_default().to_string_lossy();
    let mut partial = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".imgbuild")
        .tempfile_in(folder)
        .map_err(local_err(context.clone()))?;
    let mut meter = Meter::new(
        (&mut channel).take(stat.size()),
        stat.size(),
        &progress,
        cancel,
    );
    let copied = copy(&mut meter, partial.as_file_mut(), cancel);
    meter.finish();
    let _ = channel.send_eof();
    let _ = channel.wait_eof();
    let _ = channel.close();
    let _ = channel.wait_close();
    let copied = copied.map_err(stream_err(cancel, &context))?;
    if copied != stat.size() {
        return Err(SshError::Remote {
            context,
            message: format!("the transfer ended after {copied} of {} bytes", stat.size()),
        });
    }
    partial
        .as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(local_err(context.clone()))?;
    partial
        .persist(local)
        .map_err(|e| local_err(context.clone())(e.error))?;
    Ok(())
}

pub fn download_dir(
    conn: &Connection,
    remote: &str,
    local: &Path,
    cancel: &CancellationToken,
    progress: Progress,
) -> Result<(), SshError> {
    let context = format!("download folder {remote} to {}", local.display());
    fs::create_dir_all(local).map_err(local_err(context.clone()))?;
    let command = format!("tar -cf - -C {} .", shell_quote(remote));
    with_channel(conn, &command, &context, |channel| {
        let mut meter = Meter::new(channel, 0, &progress, cancel);
        let result = {
            let mut archive = tar::Archive::new(&mut meter);
            archive.set_preserve_permissions(true);
            archive.set_overwrite(true);
            archive.unpack(local)
        };
        meter.finish();
        result.map_err(stream_err(cancel, &context))
    })
}
