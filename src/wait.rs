//! How to wait and retry, as a value. Every loop that tries again — EC2
//! waits and call retries, the SSH connect loop, provisioner retries,
//! security-group deletion — takes a [`WaitParams`] and asks a [`Schedule`]
//! for the next delay, so pacing, limits and giving up work the same way
//! everywhere. Whether an error is worth another try is the error's own
//! business ([`Transient`]).

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How to try again: wait `initial` after the first try, grow each wait by
/// `factor` up to `cap`; stop after `attempts` tries (if set) or once the
/// next try would start after `timeout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitParams {
    pub initial: Duration,
    pub factor: f64,
    pub cap: Duration,
    /// Total time; `Duration::MAX` for no limit.
    pub timeout: Duration,
    /// Total tries, the first included; `None` for as many as `timeout` allows.
    pub attempts: Option<u32>,
}

impl Default for WaitParams {
    /// Retrying a call: about 1 s between the first tries, at most 5 s later
    /// on, for two minutes.
    fn default() -> WaitParams {
        WaitParams {
            initial: Duration::from_secs(1),
            factor: 1.5,
            cap: Duration::from_secs(5),
            timeout: Duration::from_secs(120),
            attempts: None,
        }
    }
}

impl WaitParams {
    /// Retrying a call for at most `timeout`, with the default pacing.
    pub fn with_timeout(timeout: Duration) -> WaitParams {
        WaitParams {
            timeout,
            ..WaitParams::default()
        }
    }

    /// Watching for a state change: a poll within a second of it, always.
    /// A build waits for four or five of these, and each second between the
    /// change and the poll that sees it is a second of every build. One
    /// describe call a second per build stays far below EC2's request
    /// limits; throttling is retried anyway.
    pub fn state_change(timeout: Duration) -> WaitParams {
        WaitParams {
            initial: Duration::from_millis(250),
            factor: 1.5,
            cap: Duration::from_secs(1),
            timeout,
            attempts: None,
        }
    }

    /// `retries` more tries after the first, `interval` apart, with no time limit.
    pub fn fixed(interval: Duration, retries: u32) -> WaitParams {
        WaitParams {
            initial: interval,
            factor: 1.0,
            cap: interval,
            timeout: Duration::MAX,
            attempts: Some(retries.saturating_add(1)),
        }
    }

    /// The same pacing with another total time.
    pub fn for_at_most(self, timeout: Duration) -> WaitParams {
        WaitParams { timeout, ..self }
    }

    /// Starts counting tries and time now.
    pub fn start(&self) -> Schedule {
        Schedule {
            params: *self,
            started: Instant::now(),
            delay: self.initial,
            tries: 1,
        }
    }
}

/// One wait in progress: how many tries were made, how long it has taken,
/// and how long to sleep before the next try, if there is to be one.
#[derive(Debug, Clone)]
pub struct Schedule {
    params: WaitParams,
    started: Instant,
    delay: Duration,
    tries: u32,
}

impl Schedule {
    /// The delay before the next try, counting it as made; `None` when the
    /// tries are used up or it would start after the time limit. The last
    /// delay is shortened to end at the limit, so a wait tries once more
    /// right at its end instead of giving up early.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.params.attempts.is_some_and(|n| self.tries >= n) {
            return None;
        }
        let remaining = self.remaining();
        if remaining.is_zero() {
            return None;
        }
        let delay = self.delay.min(remaining);
        self.delay = self.delay.mul_f64(self.params.factor).min(self.params.cap);
        self.tries += 1;
        Some(delay)
    }

    /// Tries made or started so far, the first included.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Time left before the limit.
    pub fn remaining(&self) -> Duration {
        self.params.timeout.saturating_sub(self.started.elapsed())
    }

    pub fn params(&self) -> &WaitParams {
        &self.params
    }
}

/// Whether an error is worth another try (the service was busy, throttled,
/// or has not caught up yet) rather than an answer that will not change.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// What one poll saw.
pub enum Poll<T> {
    /// The goal was reached.
    Ready(T),
    /// Not yet; the current state, for the timeout message.
    Pending(String),
    /// A state the goal can no longer be reached from, with the resource's own reason.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError<E: std::error::Error + 'static> {
    #[error("{what} did not become {goal} within {} (last seen: {last})", humantime::format_duration(*.timeout))]
    TimedOut {
        what: String,
        goal: String,
        timeout: Duration,
        last: String,
    },
    #[error("{what} will not become {goal}: {reason}")]
    Failed {
        what: String,
        goal: String,
        reason: String,
    },
    #[error("waiting for {what}: {error}")]
    Call {
        what: String,
        #[source]
        error: E,
    },
}

/// Polls `check` until it reports `Ready`, a terminal state, a lasting
/// error or the end of `params`. Transient errors count as "not yet".
pub async fn until<T, E, F, Fut>(
    params: WaitParams,
    what: &str,
    goal: &str,
    mut check: F,
) -> Result<T, WaitError<E>>
where
    E: Transient + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let mut schedule = params.start();
    loop {
        let last = match check().await {
            Ok(Poll::Ready(value)) => return Ok(value),
            Ok(Poll::Failed(reason)) => {
                return Err(WaitError::Failed {
                    what: what.into(),
                    goal: goal.into(),
                    reason,
                });
            }
            Ok(Poll::Pending(state)) => state,
            Err(e) if e.is_transient() => e.to_string(),
            Err(error) => {
                return Err(WaitError::Call {
                    what: what.into(),
                    error,
                });
            }
        };
        match schedule.next_delay() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                return Err(WaitError::TimedOut {
                    what: what.into(),
                    goal: goal.into(),
                    timeout: params.timeout,
                    last,
                });
            }
        }
    }
}

/// Runs `call` until it succeeds, retrying transient errors within
/// `params`; the last error when they run out.
pub async fn retrying<T, E, F, Fut>(params: WaitParams, what: &str, mut call: F) -> Result<T, E>
where
    E: Transient + fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut schedule = params.start();
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => match schedule.next_delay() {
                Some(delay) => {
                    tracing::debug!(what, error = %e, tries = schedule.tries(), "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct TestError(&'static str, bool);

    impl Transient for TestError {
        fn is_transient(&self) -> bool {
            self.1
        }
    }

    fn fast(timeout_ms: u64) -> WaitParams {
        WaitParams {
            initial: Duration::from_millis(5),
            factor: 2.0,
            cap: Duration::from_millis(20),
            timeout: Duration::from_millis(timeout_ms),
            attempts: None,
        }
    }

    #[test]
    fn delays_grow_to_the_cap() {
        let mut s = WaitParams {
            initial: Duration::from_millis(250),
            factor: 2.0,
            cap: Duration::from_secs(2),
            timeout: Duration::from_secs(3600),
            attempts: None,
        }
        .start();
        let delays: Vec<_> = (0..6)
            .map(|_| s.next_delay().unwrap().as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(s.tries(), 7);
    }

    #[test]
    fn attempts_bound_the_tries() {
        let mut s = WaitParams::fixed(Duration::from_secs(2), 2).start();
        assert_eq!(s.next_delay(), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(), None);
        assert_eq!(s.tries(), 3);
        assert_eq!(
            WaitParams::fixed(Duration::from_secs(2), 0)
                .start()
                .next_delay(),
            None
        );
    }

    #[test]
    fn the_last_delay_ends_at_the_limit() {
        let mut s = WaitParams {
            initial: Duration::from_secs(10),
            timeout: Duration::from_millis(30),
            ..WaitParams::default()
        }
        .start();
        let delay = s.next_delay().unwrap();
        assert!(delay <= Duration::from_millis(30), "{delay:?}");
        std::thread::sleep(delay);
        assert_eq!(s.next_delay(), None);
    }

    #[tokio::test]
    async fn polls_until_ready_retrying_transient_errors() {
        let polls = AtomicU32::new(0);
        let got = until(fast(2000), "instance i-1", "running", || async {
            match polls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(TestError("not yet visible", true)),
                1 => Ok(Poll::Pending("pending".into())),
                _ => Ok(Poll::Ready("running")),
            }
        })
        .await
        .unwrap();
        assert_eq!(got, "running");
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_terminal_state_ends_the_wait_at_once() {
        let polls = AtomicU32::new(0);
        let err = until(fast(60_000), "instance i-1", "running", || async {
            polls.fetch_add(1, Ordering::SeqCst);
            Ok::<Poll<()>, TestError>(Poll::Failed(
                "terminated (Server.InternalError: boom)".into(),
            ))
        })
        .await
        .unwrap_err();
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(
            err.to_string(),
            "instance i-1 will not become running: terminated (Server.InternalError: boom)"
        );
    }

    #[tokio::test]
    async fn times_out_with_the_last_state() {
        let err = until(fast(60), "image ami-1", "available", || async {
            Ok::<Poll<()>, TestError>(Poll::Pending("pending".into()))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, WaitError::TimedOut { .. }));
        assert!(err.to_string().contains("last seen: pending"), "{err}");
    }

    #[tokio::test]
    async fn lasting_errors_end_the_wait() {
        let polls = AtomicU32::new(0);
        let err = until(fast(60_000), "image ami-1", "available", || async {
            polls.fetch_add(1, Ordering::SeqCst);
            Err::<Poll<()>, _>(TestError("UnauthorizedOperation", false))
        })
        .await
        .unwrap_err();
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(
            err.to_string(),
            "waiting for image ami-1: UnauthorizedOperation"
        );
    }

    #[tokio::test]
    async fn retrying_gives_the_last_error_when_tries_run_out() {
        let calls = AtomicU32::new(0);
        let params = WaitParams {
            attempts: Some(3),
            ..fast(60_000)
        };
        let err = retrying(params, "call", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TestError("Unavailable", true))
        })
        .await
        .unwrap_err();
        assert_eq!(err.0, "Unavailable");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
