//! Opening an authenticated session, with retries and an honest reason when
//! it cannot be done. Runs on a blocking thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use ssh2::Session;
use tokio_util::sync::CancellationToken;

use super::readiness::{self, Banner};
use super::{Credential, Endpoint, SshError, SshTarget};
use crate::wait::WaitParams;

/// Why one connection attempt failed.
#[derive(Debug, Clone)]
pub enum ConnectFailure {
    Refused,
    TimedOut,
    NoRoute,
    Resolve(String),
    /// The connection was accepted but the server said nothing in time.
    NoBanner(Duration),
    /// The connection was accepted, then closed before the server said anything.
    ClosedBeforeBanner,
    Handshake(String),
    AuthRejected {
        user: String,
        key: String,
    },
    Bastion(String),
    Other(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => write!(
                f,
                "connection refused (is sshd running and the port right?)"
            ),
            ConnectFailure::TimedOut => write!(
                f,
                "connection timed out (check security groups, firewalls and routes)"
            ),
            ConnectFailure::NoRoute => write!(f, "no route to host"),
            ConnectFailure::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            ConnectFailure::NoBanner(wait) => write!(
                f,
                "no SSH banner within {} (the connection was accepted, but no SSH server answered)",
                humantime::format_duration(*wait)
            ),
            ConnectFailure::ClosedBeforeBanner => write!(
                f,
                "connection closed before the SSH banner (is sshd running behind the forwarded port?)"
            ),
            ConnectFailure::Handshake(e) => write!(f, "SSH handshake failed: {e}"),
            ConnectFailure::AuthRejected { user, key } => {
                write!(f, "authentication rejected for user `{user}` with {key}")
            }
            ConnectFailure::Bastion(e) => write!(f, "through the bastion: {e}"),
            ConnectFailure::Other(e) => write!(f, "{e}"),
        }
    }
}

/// An authenticated session and the socket under it (polled while waiting).
pub struct Connection {
    pub session: Session,
    pub fd: RawFd,
    /// The keepalive interval set on the session, in seconds.
    pub keepalive_secs: u32,
    _socket: Socket,
}

enum Socket {
    Tcp(TcpStream),
    /// The tunnel is held only so that it lives as long as the session.
    Tunnel {
        stream: UnixStream,
        _tunnel: Box<BastionTunnel>,
    },
}

/// Connects with retries until the target's timeout or a cancel.
pub fn connect(target: &SshTarget, cancel: &CancellationToken) -> Result<Connection, SshError> {
    let mut schedule = connect_retries(target.timeout).start();
    loop {
        match attempt_once(target, schedule.remaining(), schedule.tries(), cancel) {
            Ok(conn) => return Ok(conn),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(failure)) => {
                tracing::debug!(attempt = schedule.tries(), %failure, "SSH attempt failed");
                if cancel.is_cancelled() {
                    return Err(SshError::Cancelled);
                }
                match schedule.next_delay() {
                    Some(delay) => sleep_unless_cancelled(delay, cancel),
                    None => {
                        return Err(SshError::GaveUp {
                            endpoint: target.endpoint.to_string(),
                            timeout: target.timeout,
                            last: failure,
                        });
                    }
                }
            }
        }
    }
}

/// A quarter of a second after the first refusal (sshd is often just
/// starting), then doubling up to two seconds between tries.
fn connect_retries(timeout: Duration) -> WaitParams {
    WaitParams {
        initial: Duration::from_millis(250),
        factor: 2.0,
        cap: Duration::from_secs(2),
        timeout,
        attempts: None,
    }
}

fn sleep_unless_cancelled(total: Duration, cancel: &CancellationToken) {
    let until = Instant::now() + total;
    while Instant::now() < until && !cancel.is_cancelled() {
        thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

enum Attempt {
    Retry(ConnectFailure),
    Fatal(SshError),
}

fn attempt_once(
    target: &SshTarget,
    remaining: Duration,
    attempt: u32,
    cancel: &CancellationToken,
) -> Result<Connection, Attempt> {
    let per_try = remaining.clamp(Duration::from_secs(1), Duration::from_secs(15));
    let banner_wait = readiness::banner_wait(attempt).min(per_try);
    let socket = match &target.bastion {
        None => Socket::Tcp(tcp_connect(
            &target.endpoint.host,
            target.endpoint.port,
            per_try,
        )?),
        Some(bastion) => {
            let (near, far) = UnixStream::pair()
                .map_err(|e| Attempt::Retry(ConnectFailure::Other(e.to_string())))?;
            let tunnel = BastionTunnel::open(bastion, &target.endpoint, far, per_try)?;
            Socket::Tunnel {
                stream: near,
                _tunnel: Box::new(tunnel),
            }
        }
    };
    // Only a server that has spoken gets the full handshake time.
    let raw_fd = match &socket {
        Socket::Tcp(s) => s.as_raw_fd(),
        Socket::Tunnel { stream, .. } => stream.as_raw_fd(),
    };
    match readiness::wait_for_banner(raw_fd, banner_wait, cancel).map_err(Attempt::Retry)? {
        Banner::Arrived => {}
        Banner::Cancelled => return Err(Attempt::Fatal(SshError::Cancelled)),
    }
    let (session, fd) = match &socket {
        Socket::Tcp(s) => handshake(s.try_clone().map_err(io_retry)?, s.as_raw_fd(), per_try)?,
        Socket::Tunnel { stream: s, .. } => {
            handshake(s.try_clone().map_err(io_retry)?, s.as_raw_fd(), per_try)?
        }
    };
    check_host_key(&session, target)?;
    authenticate(&session, &target.endpoint)?;
    let keepalive_secs = target.keepalive.as_secs().max(1) as u32;
    session.set_keepalive(false, keepalive_secs);
    session.set_timeout(0);
    Ok(Connection {
        session,
        fd,
        keepalive_secs,
        _socket: socket,
    })
}

fn io_retry(e: io::Error) -> Attempt {
    Attempt::Retry(ConnectFailure::Other(e.to_string()))
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Attempt> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Attempt::Retry(ConnectFailure::Resolve(format!("{host}: {e}"))))?
        .collect();
    let mut last = ConnectFailure::Resolve(format!("{host}: no addresses"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = classify_io(&e),
        }
    }
    Err(Attempt::Retry(last))
}

fn classify_io(e: &io::Error) -> ConnectFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnectFailure::TimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectFailure::NoRoute
        }
        _ => ConnectFailure::Other(e.to_string()),
    }
}

fn handshake<S: AsRawFd + 'static>(
    stream: S,
    fd: RawFd,
    timeout: Duration,
) -> Result<(Session, RawFd), Attempt> {
    let mut session =
        Session::new().map_err(|e| Attempt::Retry(ConnectFailure::Other(e.to_string())))?;
    session.set_tcp_stream(stream);
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    session
        .handshake()
        .map_err(|e| Attempt::Retry(ConnectFailure::Handshake(e.message().to_string())))?;
    Ok((session, fd))
}

fn host_key_fingerprint(session: &Session) -> Option<String> {
    let (blob, _) = session.host_key()?;
    let key = ssh_key::PublicKey::from_bytes(blob).ok()?;
    Some(key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

fn check_host_key(session: &Session, target: &SshTarget) -> Result<(), Attempt> {
    let actual = host_key_fingerprint(session).unwrap_or_else(|| "unknown".into());
    tracing::debug!(host_key = %actual, "SSH host key");
    match &target.host_key_fingerprint {
        Some(expected) if expected != &actual => Err(Attempt::Fatal(SshError::HostKeyMismatch {
            endpoint: target.endpoint.to_string(),
            expected: expected.clone(),
            actual,
        })),
        _ => Ok(()),
    }
}

fn authenticate(session: &Session, endpoint: &Endpoint) -> Result<(), Attempt> {
    let result = match &endpoint.credential {
        Credential::Key { private_pem, .. } => {
            session.userauth_pubkey_memory(&endpoint.user, None, private_pem, None)
        }
        Credential::Agent => session.userauth_agent(&endpoint.user),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) | Err(_) => Err(Attempt::Retry(ConnectFailure::AuthRejected {
            user: endpoint.user.clone(),
            key: endpoint.credential.describe(),
        })),
    }
}

/// A session to the bastion and a thread pumping bytes between a local
/// socket and a direct-tcpip channel to the target.
pub struct BastionTunnel {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pump: Option<thread::JoinHandle<()>>,
}

impl BastionTunnel {
    fn open(
        bastion: &Endpoint,
        target: &Endpoint,
        local: UnixStream,
        timeout: Duration,
    ) -> Result<BastionTunnel, Attempt> {
        let wrap =
            |f: ConnectFailure| Attempt::Retry(ConnectFailure::Bastion(format!("{bastion}: {f}")));
        let tcp = tcp_connect(&bastion.host, bastion.port, timeout).map_err(|a| match a {
            Attempt::Retry(f) => wrap(f),
            fatal => fatal,
        })?;
        let fd = tcp.as_raw_fd();
        let (session, _) =
            handshake(tcp.try_clone().map_err(io_retry)?, fd, timeout).map_err(|a| match a {
                Attempt::Retry(f) => wrap(f),
                fatal => fatal,
            })?;
        authenticate(&session, bastion).map_err(|a| match a {
            Attempt::Retry(f) => wrap(f),
            fatal => fatal,
        })?;
        let channel = session
            .channel_direct_tcpip(&target.host, target.port, None)
            .map_err(|e| {
                wrap(ConnectFailure::Other(format!(
                    "cannot open a tunnel to {}:{}: {}",
                    target.host,
                    target.port,
                    e.message()
                )))
            })?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let pump = thread::spawn(move || pump(session, tcp, channel, local, &flag));
        Ok(BastionTunnel {
            stop,
            pump: Some(pump),
        })
    }
}

impl Drop for BastionTunnel {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
}

/// Copies bytes both ways until either side closes or `stop` is set.
fn pump(
    session: Session,
    tcp: TcpStream,
    mut channel: ssh2::Channel,
    mut local: UnixStream,
    stop: &std::sync::atomic::AtomicBool,
) {
    session.set_blocking(false);
    let _ = local.set_nonblocking(true);
    let mut up: Vec<u8> = Vec::new();
    let mut down: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut local_open = true;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut busy = false;
        if local_open && up.len() < 1 << 20 {
            match local.read(&mut buf) {
                Ok(0) => local_open = false,
                Ok(n) => {
                    up.extend_from_slice(&buf[..n]);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !up.is_empty() {
            match channel.write(&up) {
                Ok(n) => {
                    up.drain(..n);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if down.len() < 1 << 20 {
            match channel.read(&mut buf) {
                Ok(0) if channel.eof() => break,
                Ok(0) => {}
                Ok(n) => {
                    down.extend_from_slice(&buf[..n]);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !down.is_empty() {
            match local.write(&down) {
                Ok(n) => {
                    down.drain(..n);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !local_open && up.is_empty() {
            break;
        }
        if !busy {
            super::exec::wait_readable(
                &[tcp.as_raw_fd(), local.as_raw_fd()],
                Duration::from_millis(20),
            );
        }
    }
    let _ = channel.close();
}
