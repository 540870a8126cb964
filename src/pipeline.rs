//! A build is an ordered list of steps; each step may leave something behind
//! that its `cleanup` removes. Cleanups run in reverse order once the run ends,
//! whether it succeeded, failed or was cancelled, under their own deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Leftover, Outcome};

/// Why a step stopped the build.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

impl StepError {
    pub fn failed(message: impl std::fmt::Display) -> Self {
        StepError::Failed(message.to_string())
    }
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
}

/// The result of a run: the first error (if any), and whatever could not be cleaned up.
pub struct RunReport {
    pub outcome: Outcome,
    pub error: Option<(String, StepError)>,
    pub leftovers: Vec<Leftover>,
    /// How long each step's run took, in order.
    pub timings: Vec<(&'static str, Duration)>,
}

impl RunReport {
    /// One report for a build run as two pipelines (a decision, then the build).
    pub fn followed_by(mut self, next: RunReport) -> RunReport {
        self.timings.extend(next.timings);
        self.leftovers.extend(next.leftovers);
        RunReport {
            outcome: next.outcome,
            error: next.error,
            leftovers: self.leftovers,
            timings: self.timings,
        }
    }
}

/// A report for a build that could not start (its preparation failed).
pub fn failed_before_start(step: &str, message: String) -> RunReport {
    RunReport {
        outcome: Outcome::Failed,
        error: Some((step.to_string(), StepError::Failed(message))),
        leftovers: Vec::new(),
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
            // A step that noticed the cancel itself reports it as a failure; name it right.
            let e = if opts.cancel.is_cancelled() {
                StepError::Cancelled
            } else {
                e
            };
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
        match tokio::time::timeout_at(deadline, step.cleanup(ctx, ending)).await {
            Ok(mut left) => leftovers.append(&mut left),
            Err(_) => {
                let reason = format!(
                    "the cleanup deadline of {} passed while \"{name}\" was removing it; it may remain",
                    humantime::format_duration(opts.cleanup_deadline)
                );
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
            events: EventSink::new("t", Arc::new(Null), Vec::new()),
            on_error: OnError::Cleanup,
            cleanup_deadline: Duration::from_secs(5),
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
                "cleanup a Succeeded"
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
            ["run a", "run b", "cleanup b Failed", "cleanup a Failed"]
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
                "cleanup a Cancelled"
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

    #[tokio::test]
    async fn a_cleanup_cut_short_by_the_deadline_lists_what_its_step_made() {
        let mut log = Log::default();
        let mut o = opts();
        o.cleanup_deadline = Duration::from_millis(100);
        let stuck = Box::new(Recording {
            name: "b",
            fail: false,
            hang: false,
            hang_in_cleanup: true,
        });
        let report = run(vec![step("a", false, false), stuck], &mut log, &o).await;
        assert_eq!(report.outcome, Outcome::Succeeded);
        assert_eq!(
            listed(&report),
            [(
                "b-1".to_string(),
                "the cleanup deadline of 100ms passed while \"b\" was removing it; it may remain"
                    .to_string()
            )]
        );
        // The other cleanups still get their turn.
        assert_eq!(
            log.0.last().map(String::as_str),
            Some("cleanup a Succeeded")
        );
    }
}
