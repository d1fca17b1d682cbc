//! One step's life in a run: attempts, the timeout of each, backoff between them, and cancellation.
//!
//! A step's future is never dropped to stop it: its token is cancelled (the host then signals and reaps its
//! processes) and the future is awaited until it returns. Only a kind that ignores its token for longer than
//! [`SETTLE_LIMIT`] is abandoned, with a warning.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, StepState, millis};
use crate::kind::{RecordedUndo, StepCtx, StepError, StepKind};
use crate::plan::{Retry, Step, StepPolicy};

use super::retry;

/// How long a cancelled step may take to return before it is abandoned.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// What became of a step (or of its undo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub state: StepState,
    pub attempts: u32,
    pub duration: Duration,
    /// Why it did not succeed (redacted).
    pub error: Option<String>,
}

impl StepRecord {
    pub fn skipped() -> Self {
        Self { state: StepState::Skipped, attempts: 0, duration: Duration::ZERO, error: None }
    }

    /// Succeeded in the staged part of the run (`zdd promote` does not run it again).
    pub fn succeeded_before() -> Self {
        Self { state: StepState::Succeeded, ..Self::skipped() }
    }

    /// Held for `zdd promote` by a staged run.
    pub fn held() -> Self {
        Self { state: StepState::Pending, ..Self::skipped() }
    }
}

/// How one attempt ended.
enum Attempt {
    Done(Result<(), StepError>),
    TimedOut,
    /// The step's token was cancelled from outside (the run is stopping).
    Cancelled,
}

/// Run `work` until it returns, `timeout` passes, or `cancel` fires; in the last two cases cancel `attempt`
/// (the token `work` watches) and wait for `work` to return.
async fn bounded<F>(
    work: F,
    attempt: &CancellationToken,
    cancel: &CancellationToken,
    timeout: Duration,
    events: &EventSink,
    step: &str,
) -> Attempt
where
    F: Future<Output = Result<(), StepError>>,
{
    tokio::pin!(work);
    let stopped_by = tokio::select! {
        result = &mut work => return Attempt::Done(result),
        () = tokio::time::sleep(timeout) => Attempt::TimedOut,
        () = cancel.cancelled() => Attempt::Cancelled,
    };
    attempt.cancel();
    if tokio::time::timeout(SETTLE_LIMIT, &mut work).await.is_err() {
        events.emit(Event::Warning {
            message: format!(
                "step `{step}` did not stop within {} of being cancelled; abandoning it",
                humantime::format_duration(SETTLE_LIMIT)
            ),
        });
    }
    stopped_by
}

/// Which operation of a kind an attempt loop drives: a step of the plan, or an undo from its recorded facts
/// (which sees no plan).
#[derive(Clone, Copy)]
pub enum Operation<'a> {
    Run(&'a Step),
    Undo(&'a RecordedUndo),
}

impl Operation<'_> {
    fn policy(&self) -> StepPolicy {
        match self {
            Operation::Run(step) => step.policy,
            Operation::Undo(undo) => undo.policy.into(),
        }
    }
}

/// Run a step's operation with its retry and timeout policy. `ctx.cancel` is the step's token: cancelling it
/// stops the current attempt and any further ones. Emits `StepStarted`/`StepRetrying` for runs (undo attempts
/// are reported by the rollback).
pub async fn attempts(kind: Arc<dyn StepKind>, ctx: &StepCtx, op: Operation<'_>) -> StepRecord {
    let started = Instant::now();
    let step_policy = op.policy();
    let policy: Retry = step_policy.retry;
    let name = ctx.step.clone();
    let max = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        if let Operation::Run(step) = op {
            ctx.events.emit(Event::StepStarted {
                step: step.name.clone(),
                kind: step.kind.clone(),
                attempt,
                attempts: max,
                host: step.host.clone(),
            });
        }
        let token = ctx.cancel.child_token();
        let mut attempt_ctx = ctx.clone();
        attempt_ctx.io.cancel = token.clone();
        let work = async {
            match op {
                Operation::Run(step) => kind.run(step, &attempt_ctx).await,
                Operation::Undo(undo) => kind.undo(&undo.facts, &attempt_ctx.undo_ctx()).await,
            }
        };
        let ended = bounded(work, &token, &ctx.cancel, step_policy.timeout, &ctx.events, &name).await;
        let (state, cause, retryable) = match ended {
            Attempt::Done(Ok(())) => {
                return StepRecord {
                    state: StepState::Succeeded,
                    attempts: attempt,
                    duration: started.elapsed(),
                    error: None,
                };
            }
            Attempt::Cancelled | Attempt::Done(Err(StepError::Cancelled)) if ctx.cancel.is_cancelled() => {
                return StepRecord {
                    state: StepState::Cancelled,
                    attempts: attempt,
                    duration: started.elapsed(),
                    error: Some("cancelled: the run is stopping".to_owned()),
                };
            }
            Attempt::TimedOut => (
                StepState::TimedOut,
                format!("timed out after {}", humantime::format_duration(step_policy.timeout)),
                true,
            ),
            Attempt::Done(Err(e)) => {
                let mut cause = e.to_string();
                if let StepError::Failed { detail: Some(d), .. } | StepError::Fatal { detail: Some(d), .. } = &e {
                    cause = format!("{cause}\n{d}");
                }
                (StepState::Failed, cause, e.retryable() || matches!(e, StepError::Cancelled))
            }
            Attempt::Cancelled => (StepState::Failed, "cancelled".to_owned(), false),
        };
        let cause = ctx.redactor.redact(&cause);
        if !retryable || attempt >= max {
            return StepRecord { state, attempts: attempt, duration: started.elapsed(), error: Some(cause) };
        }
        attempt += 1;
        let delay = retry::random_delay(&policy, attempt);
        match op {
            Operation::Run(_) => ctx.events.emit(Event::StepRetrying {
                step: name.clone(),
                attempt,
                cause: first_line(&cause),
                delay_ms: millis(delay),
            }),
            Operation::Undo(_) => ctx.events.emit(Event::Warning {
                message: format!(
                    "undo of `{}` failed ({}); trying again in {} (attempt {attempt} of {max})",
                    name,
                    first_line(&cause),
                    humantime::format_duration(delay)
                ),
            }),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.cancel.cancelled() => {
                return StepRecord {
                    state: StepState::Cancelled,
                    attempts: attempt - 1,
                    duration: started.elapsed(),
                    error: Some(format!("cancelled while waiting to retry after: {}", first_line(&cause))),
                };
            }
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
