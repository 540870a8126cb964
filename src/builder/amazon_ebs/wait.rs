//! Waiting for EC2 resources to reach a state. How to wait is a value
//! ([`WaitParams`]); what to look at is a closure that reports one poll.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::client::ApiError;

/// How to poll: start at `initial`, grow by `factor` up to `cap`, give up after `timeout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitParams {
    pub initial: Duration,
    pub factor: f64,
    pub cap: Duration,
    pub timeout: Duration,
}

impl WaitParams {
    /// Retrying a call: about 1 s between the first tries, at most 5 s later on.
    pub fn with_timeout(timeout: Duration) -> WaitParams {
        WaitParams {
            initial: Duration::from_secs(1),
            factor: 1.5,
            cap: Duration::from_secs(5),
            timeout,
        }
    }

    /// Watching for a state change: a poll within a second of it, always.
    /// A build waits for four or five of these, and each second between the
    /// change and the poll that sees it is a second of every build. One
    /// DescribeInstances or DescribeImages a second per build stays far below
    /// EC2's request limits; throttling is retried anyway.
    pub fn state_change(timeout: Duration) -> WaitParams {
        WaitParams {
            initial: Duration::from_millis(250),
            factor: 1.5,
            cap: Duration::from_secs(1),
            timeout,
        }
    }

    /// The same pacing with another total time.
    pub fn for_at_most(self, timeout: Duration) -> WaitParams {
        WaitParams { timeout, ..self }
    }
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
pub enum WaitError {
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
    Api { what: String, error: ApiError },
}

/// Errors worth another try: the resource is not visible yet, or we were throttled.
fn transient(e: &ApiError) -> bool {
    e.is_not_found() || e.is_throttling()
}

/// Polls `check` until it reports `Ready`, a terminal state, a lasting error or the timeout.
pub async fn until<T, F, Fut>(
    params: WaitParams,
    what: &str,
    goal: &str,
    mut check: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ApiError>>,
{
    let deadline = Instant::now() + params.timeout;
    let mut delay = params.initial;
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
            Err(e) if transient(&e) => e.to_string(),
            Err(error) => {
                return Err(WaitError::Api {
                    what: what.into(),
                    error,
                });
            }
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut {
                what: what.into(),
                goal: goal.into(),
                timeout: params.timeout,
                last,
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = delay.mul_f64(params.factor).min(params.cap);
    }
}

/// Runs `call` until it succeeds, retrying transient errors (a resource made a
/// moment ago and not yet visible, throttling) within `params`.
pub async fn retrying<T, F, Fut>(params: WaitParams, what: &str, mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let deadline = Instant::now() + params.timeout;
    let mut delay = params.initial;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && Instant::now() + delay < deadline => {
                tracing::debug!(what, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(params.factor).min(params.cap);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(timeout_ms: u64) -> WaitParams {
        WaitParams {
            initial: Duration::from_millis(5),
            factor: 2.0,
            cap: Duration::from_millis(20),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn not_found() -> ApiError {
        ApiError {
            operation: "DescribeInstances",
            code: Some("InvalidInstanceID.NotFound".into()),
            message: "gone".into(),
        }
    }

    #[tokio::test]
    async fn polls_until_ready_retrying_not_found() {
        let polls = AtomicU32::new(0);
        let got = until(fast(2000), "instance i-1", "running", || async {
            match polls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(not_found()),
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
            Ok::<Poll<()>, ApiError>(Poll::Failed(
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
            Ok::<Poll<()>, ApiError>(Poll::Pending("pending".into()))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, WaitError::TimedOut { .. }));
        assert!(err.to_string().contains("last seen: pending"), "{err}");
    }

    #[tokio::test]
    async fn other_errors_end_the_wait() {
        let err = until(fast(60_000), "image ami-1", "available", || async {
            Err::<Poll<()>, ApiError>(ApiError {
                operation: "DescribeImages",
                code: Some("UnauthorizedOperation".into()),
                message: "no".into(),
            })
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("UnauthorizedOperation"), "{err}");
    }
}
