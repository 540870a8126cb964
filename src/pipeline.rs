//! A build is an ordered list of steps; each step may leave something behind
//! that its `cleanup` removes. Cleanups run in reverse order once the run ends,
//! whether it succeeded, failed or was cancelled, under their own deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Leftover, Outcome};

/// Why a step stopped the build. A failure keeps its typed cause, so the
/// ids and the chain of reasons reach the top unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cancelled")]
    Cancelled,
}

/// A failure that is only a message (no typed cause to keep).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

impl StepError {
    /// A failure described by `message` alone.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        StepError::Failed(Box::new(Message(message.to_string())))
    }

    /// A failure caused by `error`; a cancel anywhere in its chain (an SSH
    /// operation stopped by the build's cancel) makes it a cancel.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        if is_cancel(&error) {
            return StepError::Cancelled;
        }
        StepError::Failed(Box::new(error))
    }
}

/// Whether `error` or one of its causes is the SSH layer's cancel.
fn is_cancel(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if matches!(
            e.downcast_ref::<crate::communicator::SshError>(),
            Some(crate::communicator::SshError::Cancelled)
        ) {
            return true;
        }
        current = e.source();
    }
    false
}

/// What `--on-error` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Remove everything the build made (the default).
    #[default]
    Cleanup,
    /// Leave temporary resources in place for debugging and list them.
    Abort,
}

/// How a run ended, as the cleanups see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
}

impl Ending {
    /// Outputs (images) are kept only when the build succeeded.
    pub fn keep_outputs(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }
}

#[async_trait]
pub trait Step<C: Send>: Send {
    /// Shown to users: "launch instance".
    fn name(&self) -> &'static str;

    /// Does the work. Ids of anything created must be recorded (in `self` or
    /// the context) as soon as the API returns them, before any waiting.
    async fn run(&mut self, ctx: &mut C) -> Result<(), StepError>;

    /// Removes what `run` left behind; returns what could not be removed.
    async fn cleanup(&mut self, _ctx: &mut C, _ending: Ending) -> Vec<Leftover> {
        Vec::new()
    }

    /// What `run` made that `cleanup` would remove, each with the command
    /// that removes it by hand; the pipeline fills in the reason. Listed when
    /// `--on-error=abort` keeps them, or when the cleanup deadline passes.
    fn made(&self, _ctx: &C) -> Vec<Leftover> {
        Vec::new()
    }
}

/// Settings for one pipeline run.
pub struct RunOptions {
    pub cancel: CancellationToken,
    pub events: EventSink,
    pub on_error: OnError,
    /// Time allowed for all cleanups together.
    pub cleanup_deadline: Duration,
    /// Time each cleanup still gets once the deadline has passed, so that
    /// one slow removal does not cost the attempt at every later one.
    pub cleanup_grace: Duration,
}

/// The grace builds run with: enough for a few API calls or a file removal.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// The result of a run: the first error (if any), and whatever could not be cleaned up.
pub struct RunReport {
    pub outcome: Outcome,
    pub error: Option<(String, StepError)>,
    pub leftovers: Vec<Leftover>,
    /// Whether the leftovers' cleanups ran (and could not remove them) or
    /// were skipped (`--on-error=abort` kept them).
    pub cleanup: Cleanup,
    /// How long each step's run took, in order.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Whether a leftover's cleanup was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cleanup {
    Attempted,
    Skipped,
}

impl RunReport {
    /// One report for a build run as two pipelines (a decision, then the build).
    pub fn followed_by(mut self, next: RunReport) -> RunReport {
        self.timings.extend(next.timings);
        self.leftovers.extend(next.leftovers);
        let cleanup = if self.cleanup == Cleanup::Skipped {
            Cleanup::Skipped
        } else {
            next.cleanup
        };
        RunReport {
            outcome: next.outcome,
            error: next.error,
            leftovers: self.leftovers,
            cleanup,
            timings: self.timings,
        }
    }
}

/// A report for a build that could not start (its preparation failed).
pub fn failed_before_start(step: &str, message: String) -> RunReport {
    RunReport {
        outcome: Outcome::Failed,
        error: Some((step.to_string(), StepError::failed(message))),
        leftovers: Vec::new(),
        cleanup: Cleanup::Attempted,
        timings: Vec::new(),
    }
}

/// Runs `steps` in order, then the cleanups of every step that started, in reverse.
pub async fn run<C: Send>(
    steps: Vec<Box<dyn Step<C>>>,
    ctx: &mut C,
    opts: &RunOptions,
) -> RunReport {
    let mut started: Vec<Box<dyn Step<C>>> = Vec::new();
    let mut error = None;
    let mut timings = Vec::new();
    for mut step in steps {
        if opts.cancel.is_cancelled() {
            error = Some((step.name().to_string(), StepError::Cancelled));
            break;
        }
        let name = step.name();
        opts.events.emit(Event::StepStarted {
            build: opts.events.build_name(),
            step: name.into(),
        });
        let began = Instant::now();
        let result = tokio::select! {
            r = step.run(ctx) => r,
            _ = opts.cancel.cancelled() => Err(StepError::Cancelled),
        };
        let duration = began.elapsed();
        timings.push((name, duration));
        opts.events.emit(Event::StepFinished {
            build: opts.events.build_name(),
            step: name.into(),
            duration,
            ok: result.is_ok(),
        });
        started.push(step);
        if let Err(e) = result {
            // Taken as the step reported it: a step that noticed the cancel
            // says so (see `StepError::from_error`); a failure that happened
            // while a cancel arrived stays the failure it was.
            error = Some((name.to_string(), e));
            break;
        }
    }
    let outcome = match &error {
        None => Outcome::Succeeded,
        Some((_, StepError::Cancelled)) => Outcome::Cancelled,
        Some(_) => Outcome::Failed,
    };
    let ending = Ending { outcome };
    let mut leftovers = Vec::new();
    if outcome != Outcome::Succeeded && opts.on_error == OnError::Abort {
        opts.events.warn(
            "--on-error=abort: keeping the temporary resources for debugging; remove them when done",
        );
        for step in started.iter().rev() {
            for mut kept in step.made(ctx) {
                kept.reason = "kept by --on-error=abort".into();
                opts.events.emit(Event::Kept {
                    build: opts.events.build_name(),
                    leftover: kept.clone(),
                });
                leftovers.push(kept);
            }
        }
        return RunReport {
            outcome,
            error,
            leftovers,
            cleanup: Cleanup::Skipped,
            timings,
        };
    }
    let deadline = tokio::time::Instant::now() + opts.cleanup_deadline;
    for mut step in started.into_iter().rev() {
        let name = step.name();
        opts.events.emit(Event::CleanupStarted {
            build: opts.events.build_name(),
            step: name.into(),
        });
        // Taken before the cleanup, which may be cut short half-way.
        let made = step.made(ctx);
        let now = tokio::time::Instant::now();
        let late = now >= deadline;
        let until = deadline.max(now + opts.cleanup_grace);
        match tokio::time::timeout_at(until, step.cleanup(ctx, ending)).await {
            Ok(mut left) => leftovers.append(&mut left),
            Err(_) => {
                let limit = humantime::format_duration(opts.cleanup_deadline);
                let reason = if late {
                    format!(
                        "\"{name}\" was still removing it {} after the cleanup deadline of {limit} had passed; it may remain",
                        humantime::format_duration(opts.cleanup_grace)
                    )
                } else {
                    format!(
                        "the cleanup deadline of {limit} passed while \"{name}\" was removing it; it may remain"
                    )
                };
                leftovers.extend(made.into_iter().map(|mut m| {
                    m.reason = reason.clone();
                    m
                }));
            }
        }
    }
    for leftover in &leftovers {
        opts.events.emit(Event::CleanupFailed {
            build: opts.events.build_name(),
            leftover: leftover.clone(),
        });
    }
    RunReport {
        outcome,
        error,
        leftovers,
        cleanup: Cleanup::Attempted,
        timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Render;
    use std::sync::Arc;

    struct Null;
    impl Render for Null {
        fn event(&self, _: &Event) {}
    }

    #[derive(Default)]
    struct Log(Vec<String>);

    struct Recording {
        name: &'static str,
        fail: bool,
        hang: bool,
        hang_in_cleanup: bool,
    }

    #[async_trait]
    impl Step<Log> for Recording {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn run(&mut self, ctx: &mut Log) -> Result<(), StepError> {
            ctx.0.push(format!("run {}", self.name));
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail {
                Err(StepError::failed("boom"))
            } else {
                Ok(())
            }
        }
        async fn cleanup(&mut self, ctx: &mut Log, ending: Ending) -> Vec<Leftover> {
            ctx.0
                .push(format!("cleanup {} {:?}", self.name, ending.outcome));
            if self.hang_in_cleanup {
                std::future::pending::<()>().await;
            }
            // A real cleanup awaits its API calls: one cut off at its first
            // await would not get here.
            tokio::time::sleep(Duration::from_millis(20)).await;
            ctx.0.push(format!("cleaned {}", self.name));
            Vec::new()
        }
        fn made(&self, _: &Log) -> Vec<Leftover> {
            vec![Leftover {
                resource: "thing".into(),
                id: format!("{}-1", self.name),
                reason: String::new(),
                remove_with: format!("rm {}-1", self.name),
            }]
        }
    }

    fn step(name: &'static str, fail: bool, hang: bool) -> Box<dyn Step<Log>> {
        Box::new(Recording {
            name,
            fail,
            hang,
            hang_in_cleanup: false,
        })
    }

    fn listed(report: &RunReport) -> Vec<(String, String)> {
        report
            .leftovers
            .iter()
            .map(|l| (l.id.clone(), l.reason.clone()))
            .collect()
    }

    fn opts() -> RunOptions {
        RunOptions {
            cancel: CancellationToken::new(),
            events: EventSink::new("t", Arc::new(Null), Default::default()),
            on_error: OnError::Cleanup,
            cleanup_deadline: Duration::from_secs(5),
            cleanup_grace: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn cleans_up_in_reverse_after_success() {
        let mut log = Log::default();
        let report = run(
            vec![step("a", false, false), step("b", false, false)],
            &mut log,
            &opts(),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Succeeded);
        assert_eq!(
            log.0,
            [
                "run a",
                "run b",
                "cleanup b Succeeded",
                "cleaned b",
                "cleanup a Succeeded",
                "cleaned a"
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_step_is_cleaned_up_and_stops_the_rest() {
        let mut log = Log::default();
        let report = run(
            vec![
                step("a", false, false),
                step("b", true, false),
                step("c", false, false),
            ],
            &mut log,
            &opts(),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.error.unwrap().0, "b");
        assert_eq!(
            log.0,
            [
                "run a",
                "run b",
                "cleanup b Failed",
                "cleaned b",
                "cleanup a Failed",
                "cleaned a"
            ]
        );
    }

    #[tokio::test]
    async fn cancel_interrupts_a_waiting_step() {
        let mut log = Log::default();
        let o = opts();
        let cancel = o.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let report = run(
            vec![step("a", false, false), step("b", false, true)],
            &mut log,
            &o,
        )
        .await;
        assert_eq!(report.outcome, Outcome::Cancelled);
        assert_eq!(
            log.0,
            [
                "run a",
                "run b",
                "cleanup b Cancelled",
                "cleaned b",
                "cleanup a Cancelled",
                "cleaned a"
            ]
        );
    }

    #[tokio::test]
    async fn abort_leaves_resources() {
        let mut log = Log::default();
        let mut o = opts();
        o.on_error = OnError::Abort;
        let report = run(
            vec![step("a", false, false), step("b", true, false)],
            &mut log,
            &o,
        )
        .await;
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(log.0, ["run a", "run b"]);
        let kept = "kept by --on-error=abort".to_string();
        assert_eq!(
            listed(&report),
            [("b-1".to_string(), kept.clone()), ("a-1".to_string(), kept)]
        );
    }

    fn stuck(name: &'static str) -> Box<dyn Step<Log>> {
        Box::new(Recording {
            name,
            fail: false,
            hang: false,
            hang_in_cleanup: true,
        })
    }

    #[tokio::test]
    async fn a_cleanup_cut_short_by_the_deadline_lists_what_its_step_made() {
        let mut log = Log::default();
        let mut o = opts();
        o.cleanup_deadline = Duration::from_millis(100);
        let report = run(vec![step("a", false, false), stuck("b")], &mut log, &o).await;
        assert_eq!(report.outcome, Outcome::Succeeded);
        assert_eq!(
            listed(&report),
            [(
                "b-1".to_string(),
                "the cleanup deadline of 100ms passed while \"b\" was removing it; it may remain"
                    .to_string()
            )]
        );
        // The next cleanup still gets its own attempt, awaits and finishes.
        assert_eq!(
            log.0,
            [
                "run a",
                "run b",
                "cleanup b Succeeded",
                "cleanup a Succeeded",
                "cleaned a"
            ]
        );
    }

    #[tokio::test]
    async fn each_cleanup_after_the_deadline_gets_its_grace_and_no_more() {
        let mut log = Log::default();
        let mut o = opts();
        o.cleanup_deadline = Duration::from_millis(50);
        let began = std::time::Instant::now();
        let report = run(
            vec![step("a", false, false), stuck("b"), stuck("c")],
            &mut log,
            &o,
        )
        .await;
        // 50 ms for c, then b's 200 ms of grace, then a's cleanup.
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(
            listed(&report),
            [
                (
                    "c-1".to_string(),
                    "the cleanup deadline of 50ms passed while \"c\" was removing it; it may remain"
                        .to_string()
                ),
                (
                    "b-1".to_string(),
                    "\"b\" was still removing it 200ms after the cleanup deadline of 50ms had passed; it may remain"
                        .to_string()
                )
            ]
        );
        assert_eq!(log.0.last().map(String::as_str), Some("cleaned a"));
    }
}
