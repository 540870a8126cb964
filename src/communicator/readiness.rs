//! Whether a server is really there before a full SSH handshake: some
//! forwarders (QEMU's user-mode network, load balancers, tunnels) accept a
//! TCP connection at once and hold it silently until the server behind them
//! answers. An SSH server speaks first (its banner), so the first byte
//! arriving is a cheap, reliable sign that the handshake can start.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::connect::ConnectFailure;

/// How often a wait for the banner looks at its cancel token.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// How a wait for the banner ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Banner {
    Arrived,
    /// Stopped by its token: the connection is abandoned before the
    /// handshake, so the server does no work for it.
    Cancelled,
}

/// The first attempts wait briefly for the banner: a silent connection is
/// more likely a forwarder still waiting for the guest than a slow server,
/// and a fresh connection finds a server that has just started at once.
const FIRST_BANNER_WAIT: Duration = Duration::from_secs(2);
/// A loaded server may take long to answer; later attempts allow it more.
const LONGEST_BANNER_WAIT: Duration = Duration::from_secs(15);

/// How long attempt number `attempt` (from 1) waits for the server's first
/// byte: 2 s, growing by half each attempt, at most 15 s.
pub fn banner_wait(attempt: u32) -> Duration {
    let grown = FIRST_BANNER_WAIT.mul_f64(1.5f64.powi(attempt.saturating_sub(1).min(16) as i32));
    grown.min(LONGEST_BANNER_WAIT)
}

/// Waits up to `limit` for the server on `fd` to send something, without
/// consuming it (the handshake reads the banner itself), or until `cancel`.
pub fn wait_for_banner(
    fd: RawFd,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Banner, ConnectFailure> {
    let until = Instant::now() + limit;
    loop {
        if cancel.is_cancelled() {
            return Ok(Banner::Cancelled);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectFailure::NoBanner(limit));
        }
        if super::exec::wait_readable(&[fd], left.min(CANCEL_CHECK)) {
            break;
        }
    }
    let mut byte = [0u8; 1];
    // SAFETY: recv into a valid one-byte buffer on a socket we own; MSG_PEEK
    // leaves the byte for the handshake.
    let got = unsafe {
        libc::recv(
            fd,
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match got {
        n if n > 0 => Ok(Banner::Arrived),
        // Closed before a word: the forwarder found nothing listening behind it.
        0 => Err(ConnectFailure::ClosedBeforeBanner),
        _ => Err(ConnectFailure::Other(format!(
            "reading the SSH banner: {}",
            std::io::Error::last_os_error()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn the_banner_wait_starts_short_and_grows_to_a_limit() {
        let waits: Vec<u128> = (1..=8).map(|n| banner_wait(n).as_millis()).collect();
        assert_eq!(waits, [2000, 3000, 4500, 6750, 10125, 15000, 15000, 15000]);
        assert_eq!(banner_wait(0), FIRST_BANNER_WAIT);
        assert_eq!(banner_wait(u32::MAX), LONGEST_BANNER_WAIT);
    }

    #[test]
    fn a_banner_is_seen_but_left_for_the_handshake() {
        let (mut server, client) = UnixStream::pair().unwrap();
        server.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        let got = wait_for_banner(
            client.as_raw_fd(),
            Duration::from_secs(5),
            &CancellationToken::new(),
        );
        assert_eq!(got.unwrap(), Banner::Arrived);
        let mut first = [0u8; 4];
        std::io::Read::read_exact(&mut &client, &mut first).unwrap();
        assert_eq!(&first, b"SSH-");
    }

    #[test]
    fn silence_a_cancel_and_a_closed_connection_are_told_apart() {
        let (server, client) = UnixStream::pair().unwrap();
        let live = CancellationToken::new();
        let silent = wait_for_banner(client.as_raw_fd(), Duration::from_millis(120), &live);
        assert!(
            matches!(silent, Err(ConnectFailure::NoBanner(_))),
            "{silent:?}"
        );
        let stopped = CancellationToken::new();
        stopped.cancel();
        let cancelled = wait_for_banner(client.as_raw_fd(), Duration::from_secs(600), &stopped);
        assert_eq!(cancelled.unwrap(), Banner::Cancelled);
        drop(server);
        let closed = wait_for_banner(client.as_raw_fd(), Duration::from_secs(5), &live);
        assert!(
            matches!(closed, Err(ConnectFailure::ClosedBeforeBanner)),
            "{closed:?}"
        );
    }
}
