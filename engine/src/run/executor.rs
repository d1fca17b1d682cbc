//! The runner on tokio: starts what the scheduling core allows (a semaphore caps concurrency), collects
//! results over a channel, and on the first failure (or an interrupt) starts nothing new, cancels what runs,
//! drains it, and rolls back, unless a commit point had started ([`StepKind::commits`](crate::kind::StepKind::commits)):
//! then nothing is undone and the run ends [`Outcome::Committed`].
//!
//! One [`CancellationToken`] stops the run; each step gets a child of it. Nothing here `?`s out of the
//! scheduling loop: every started step is awaited to the end before the rollback begins.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Outcome, StepState, StepSummary, millis};
use crate::host::HostSet;
use crate::journal::Journal;
use crate::kind::{DeployTarget, Kinds, RecordedUndo, StepCtx, UndoCtx};
use crate::plan::{Plan, StepId};
use crate::redact::Redactor;

use super::schedule::Scheduler;
use super::step::{self, Operation, StepRecord};

/// Everything a run needs.
#[derive(Clone)]
pub struct Executor {
    pub plan: Arc<Plan>,
    pub kinds: Kinds,
    /// This machine and every SSH host of the plan: each step acts on its own.
    pub hosts: HostSet,
    pub events: EventSink,
    pub journal: Arc<Journal>,
    pub redactor: Redactor,
    pub state_dir: PathBuf,
    pub target: DeployTarget,
    /// Steps running at once (at least 1).
    pub jobs: usize,
}

/// Where a run starts and stops in its graph: all of it (the default), up to the cutover (`zdd run --stage`), or
/// from where a staged run stopped (`zdd promote`).
#[derive(Debug, Clone, Default)]
pub struct Span {
    /// Succeeded in the staged part of the run: not run again.
    pub done: BTreeSet<StepId>,
    /// Not run now, with every step after them: the cutover steps, when staging.
    pub hold: BTreeSet<StepId>,
}

/// What the forward part of a run did.
#[derive(Debug, Clone)]
pub struct Forward {
    /// By step id.
    pub records: Vec<StepRecord>,
    /// Steps in the order they finished (skipped steps excluded).
    pub completed: Vec<StepId>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// The first step that moved the live traffic to the new release, if one succeeded.
    pub cut_over: Option<String>,
    /// The steps the span held (staging), in declaration order; empty when the run stopped early.
    pub held: Vec<StepId>,
    /// The first commit point that started (see [`StepKind::commits`](crate::kind::StepKind::commits)), if one
    /// did: from then on the run does not roll back.
    pub committed: Option<String>,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: Outcome,
    pub duration: Duration,
    pub summary: Vec<StepSummary>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    pub rollback: Option<Rollback>,
    /// The step that cut the live traffic over to the new release, if one did (see [`Event::CutOver`]).
    pub cut_over: Option<String>,
    /// The steps a staged run holds for `zdd promote`: not empty only when every step before them succeeded.
    pub held: Vec<String>,
}

/// What the rollback did.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    pub undone: Vec<String>,
    /// Steps whose undo failed, with why.
    pub failed: Vec<(String, String)>,
}

impl Rollback {
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The default `--jobs`: the number of cores, at least 2.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2)
}

impl Executor {
    /// A context for one operation of one step on `host` (its SSH destination; `None`: this machine), stopped by
    /// `cancel`.
    pub fn ctx(&self, step: &str, host: Option<&str>, cancel: CancellationToken) -> StepCtx {
        StepCtx {
            plan: self.plan.clone(),
            journal: self.journal.clone(),
            io: UndoCtx {
                step: step.to_owned(),
                target: self.target.clone(),
                host: self.hosts.get(host),
                events: self.events.clone(),
                cancel,
                redactor: self.redactor.clone(),
                state_dir: self.state_dir.clone(),
            },
        }
    }

    /// The whole run: forward, then (if anything failed or `interrupt` fired) the rollback of what ran.
    /// Emits `RunStarted`; the caller records the state and then calls [`Executor::finish`].
    pub async fn run(&self, run_id: &str, interrupt: &CancellationToken) -> RunReport {
        self.run_span(run_id, interrupt, &Span::default()).await
    }

    /// [`Executor::run`] over `span` of the graph. A rollback undoes every step that ran, `span.done` included
    /// (their facts must be in the journal: [`Journal::resume`](crate::journal::Journal::resume)). A run that
    /// stopped after a commit point started is not rolled back: it ends [`Outcome::Committed`], with a warning.
    pub async fn run_span(&self, run_id: &str, interrupt: &CancellationToken, span: &Span) -> RunReport {
        let started = Instant::now();
        self.events.emit(Event::RunStarted {
            plan: self.plan.name.clone(),
            release: self.target.release.clone(),
            run_id: run_id.to_owned(),
            steps: self.plan.steps.iter().map(|s| s.name.clone()).collect(),
        });
        let forward = self.forward(interrupt, span).await;
        let mut states: Vec<StepState> = forward.records.iter().map(|r| r.state).collect();
        let mut rollback = None;
        let outcome = match (&forward.stopped, &forward.committed) {
            (None, _) => Outcome::Deployed,
            // Past the commit point the release before cannot serve: rolling back to it would end the run on a
            // release that cannot serve, so the new one stays, with the steps as they ended.
            (Some(cause), Some(commit)) => {
                let message = committed_message(cause, commit, &self.target.release);
                self.events.emit(Event::Warning { message });
                Outcome::Committed
            }
            (Some(cause), None) => {
                let (outcome, undo) = self.roll_back_forward(&forward, cause, interrupt, &mut states).await;
                rollback = Some(undo);
                outcome
            }
        };
        // In the order the steps finished (what a person reads back), then those that never started, in
        // declaration order.
        let never: Vec<StepId> =
            (0..self.plan.steps.len()).map(StepId).filter(|id| !forward.completed.contains(id)).collect();
        let summary = forward
            .completed
            .iter()
            .chain(&never)
            .map(|id| {
                let record = &forward.records[id.0];
                StepSummary {
                    step: self.plan.step(*id).name.clone(),
                    state: states[id.0],
                    attempts: record.attempts,
                    duration_ms: millis(record.duration),
                }
            })
            .collect();
        RunReport {
            outcome,
            duration: started.elapsed(),
            summary,
            stopped: forward.stopped,
            rollback,
            cut_over: forward.cut_over,
            held: forward.held.iter().map(|id| self.plan.step(*id).name.clone()).collect(),
        }
    }

    /// Undo what `forward` ran (`span.done` included), in the graph's undo order, marking in `states` what was
    /// undone and what could not be.
    async fn roll_back_forward(
        &self,
        forward: &Forward,
        cause: &str,
        interrupt: &CancellationToken,
        states: &mut [StepState],
    ) -> (Outcome, Rollback) {
        let facts = self.journal.facts();
        let ran: BTreeSet<StepId> = forward.completed.iter().copied().collect();
        let order: Vec<Vec<(String, RecordedUndo)>> = self
            .plan
            .graph
            .undo_order(|id| ran.contains(&id))
            .into_iter()
            .map(|wave| {
                wave.into_iter()
                    .filter_map(|id| {
                        let name = &self.plan.step(id).name;
                        facts.get(name).map(|f| (name.clone(), f.clone()))
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|wave| !wave.is_empty())
            .collect();
        let undo = self.rollback_saying_why_signals_wait(cause, &order, interrupt).await;
        for (name, _) in order.iter().flatten() {
            if let Some(step) = self.plan.step_by_name(name) {
                states[step.id.0] =
                    if undo.undone.contains(name) { StepState::RolledBack } else { StepState::RollbackFailed };
            }
        }
        let outcome = if undo.complete() { Outcome::RolledBack } else { Outcome::RollbackIncomplete };
        (outcome, undo)
    }

    /// Emit the run's last event (after the caller saved the state: a crash before this line leaves the run
    /// unfinished, for `recover`).
    pub fn finish(&self, report: &RunReport) {
        self.events.emit(Event::RunFinished {
            outcome: report.outcome,
            duration_ms: millis(report.duration),
            summary: report.summary.clone(),
        });
    }

    /// Run the steps in dependency order, at most `jobs` at once. Stops starting steps at the first failure or
    /// when `interrupt` fires, cancels the running ones and waits for all of them.
    pub async fn forward(&self, interrupt: &CancellationToken, span: &Span) -> Forward {
        let steps = &self.plan.steps;
        let jobs = self.jobs.max(1);
        let mut schedule = Scheduler::new(&self.plan.graph.needs_lists(), jobs);
        schedule.already_succeeded(&span.done);
        schedule.hold(&span.hold);
        let semaphore = Arc::new(Semaphore::new(jobs));
        let run_token = CancellationToken::new();
        let (results_tx, mut results) = mpsc::unbounded_channel::<(StepId, StepRecord)>();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut task_steps: HashMap<tokio::task::Id, StepId> = HashMap::new();
        let mut records: Vec<Option<StepRecord>> = vec![None; steps.len()];
        // What the staged part ran counts as run: a rollback undoes it with the rest.
        let mut completed: Vec<StepId> = span.done.iter().copied().collect();
        for id in &span.done {
            records[id.0] = Some(StepRecord::succeeded_before());
        }
        let mut stopped: Option<String> = None;
        let mut cut_over: Option<String> = None;

        loop {
            for id in schedule.start_next() {
                let handle =
                    tasks.spawn(self.step_task(id, run_token.child_token(), semaphore.clone(), results_tx.clone()));
                task_steps.insert(handle.id(), id);
            }
            if schedule.is_done() {
                break;
            }
            let finished = tokio::select! {
                Some((id, record)) = results.recv() => Some((id, record)),
                Some(joined) = tasks.join_next_with_id() => match joined {
                    // A task that panicked never sent its result: record it as failed.
                    Err(e) if e.is_panic() => {
                        task_steps.get(&e.id()).copied().filter(|id| records[id.0].is_none()).map(|id| (id, panicked()))
                    }
                    _ => None,
                },
                () = interrupt.cancelled(), if stopped.is_none() => {
                    let cause = "interrupted (SIGINT/SIGTERM)".to_owned();
                    let message = match self.journal.committed() {
                        None => format!("{cause}: stopping the running steps, then rolling back"),
                        Some(commit) => format!(
                            "{cause}: stopping the running steps; the commit point `{commit}` has started, so \
                             it runs to its end and nothing is rolled back"
                        ),
                    };
                    self.events.emit(Event::Warning { message });
                    stopped = Some(cause);
                    schedule.stop();
                    run_token.cancel();
                    None
                }
            };
            let Some((id, record)) = finished else { continue };
            if records[id.0].is_some() {
                continue;
            }
            let step = self.plan.step(id);
            let ok = record.state == StepState::Succeeded;
            self.events.emit(Event::StepFinished {
                step: step.name.clone(),
                state: record.state,
                attempts: record.attempts,
                duration_ms: millis(record.duration),
                error: record.error.clone(),
            });
            if ok && cut_over.is_none() && self.kinds.get(&step.kind).is_some_and(|k| k.cuts_over(step)) {
                cut_over = Some(step.name.clone());
                self.events.emit(Event::CutOver { step: step.name.clone(), release: self.target.release.clone() });
            }
            if !ok && stopped.is_none() {
                let why = record.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("failed");
                stopped = Some(format!("step `{}` {}: {why}", step.name, state_word(record.state)));
                run_token.cancel();
            }
            schedule.finish(id, ok);
            completed.push(id);
            records[id.0] = Some(record);
        }
        // Every task has sent its result; wait for them to end too (their permits and contexts go with them).
        while tasks.join_next().await.is_some() {}
        drop(results_tx);

        for id in schedule.not_started() {
            let step = self.plan.step(id);
            self.events.emit(Event::StepFinished {
                step: step.name.clone(),
                state: StepState::Skipped,
                attempts: 0,
                duration_ms: 0,
                error: None,
            });
        }
        let held = schedule.held();
        for id in &held {
            records[id.0] = Some(StepRecord::held());
        }
        let records = records.into_iter().map(|r| r.unwrap_or_else(StepRecord::skipped)).collect();
        Forward { records, completed, stopped, cut_over, held, committed: self.journal.committed() }
    }

    fn step_task(
        &self,
        id: StepId,
        cancel: CancellationToken,
        semaphore: Arc<Semaphore>,
        results: mpsc::UnboundedSender<(StepId, StepRecord)>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let plan = self.plan.clone();
        let kind = self.kinds.get(&plan.step(id).kind).cloned();
        let mut ctx = self.ctx(&plan.step(id).name, plan.step(id).host.as_deref(), cancel);
        let journal = self.journal.clone();
        async move {
            let Ok(_permit) = semaphore.acquire_owned().await else { return };
            let step = plan.step(id);
            // A commit point is on record before it starts: from then on nothing rolls back, `recover` included.
            // One whose run is already stopping does not start at all: the run can still roll back.
            let commits = kind.as_ref().is_some_and(|k| k.commits(step));
            if commits && ctx.cancel.is_cancelled() {
                let record = StepRecord {
                    state: StepState::Cancelled,
                    error: Some("not started: the run is stopping before its commit point".to_owned()),
                    ..StepRecord::skipped()
                };
                let _ = results.send((id, record));
                return;
            }
            let commit = if commits { journal.commit_point(&step.name).await.err() } else { None };
            if commits && commit.is_none() {
                // On record: nothing will roll back, so stopping it half-way (a `migrate` between two
                // migrations) gains nothing. It runs to its end, its own timeout still applying.
                ctx.cancel = CancellationToken::new();
            }
            let record = match (kind, commit) {
                (Some(_), Some(e)) => StepRecord {
                    state: StepState::Failed,
                    attempts: 0,
                    duration: Duration::ZERO,
                    error: Some(format!("could not record the commit point in the journal, so it did not start: {e}")),
                },
                (Some(kind), None) => step::attempts(kind, &ctx, Operation::Run(step)).await,
                (None, _) => StepRecord {
                    state: StepState::Failed,
                    attempts: 0,
                    duration: Duration::ZERO,
                    error: Some(format!("unknown step kind `{}`", step.kind)),
                },
            };
            let _ = results.send((id, record));
        }
    }

    /// [`Executor::rollback`], answering a first interrupt that arrives during it: the rollback goes on.
    pub(crate) async fn rollback_saying_why_signals_wait(
        &self,
        cause: &str,
        order: &[Vec<(String, RecordedUndo)>],
        interrupt: &CancellationToken,
    ) -> Rollback {
        // An interrupt that stopped the forward run was answered there.
        let mut answered = interrupt.is_cancelled();
        let rollback = self.rollback(cause, order);
        tokio::pin!(rollback);
        loop {
            tokio::select! {
                undo = &mut rollback => return undo,
                () = interrupt.cancelled(), if !answered => {
                    answered = true;
                    self.events.emit(Event::Warning { message: ALREADY_STOPPING.to_owned() });
                }
            }
        }
    }

    /// Undo `waves` (step names and their facts, in undo order: the graph's undo waves, or the recorded graph's
    /// for `recover`). The undos of one wave run at the same time (at most `jobs`); a wave starts when the one
    /// before it has ended. A failed undo is retried per its step's retry policy, reported, and the rollback goes
    /// on with the others.
    pub async fn rollback(&self, cause: &str, waves: &[Vec<(String, RecordedUndo)>]) -> Rollback {
        self.events.emit(Event::RollbackStarted { cause: cause.to_owned() });
        let mut result = Rollback::default();
        let semaphore = Arc::new(Semaphore::new(self.jobs.max(1)));
        for wave in waves {
            let mut undos: JoinSet<(String, Result<(), String>)> = JoinSet::new();
            for (name, facts) in wave {
                let exec = self.clone();
                let (name, facts) = (name.clone(), facts.clone());
                let semaphore = semaphore.clone();
                undos.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    let outcome = exec.undo_one(&name, &facts).await;
                    (name, outcome)
                });
            }
            // Every undo of the wave is awaited to its end, whatever the others did.
            while let Some(joined) = undos.join_next().await {
                match joined {
                    Ok((name, Ok(()))) => result.undone.push(name),
                    Ok((name, Err(e))) => result.failed.push((name, e)),
                    Err(e) => result.failed.push(("(an undo task)".to_owned(), format!("panicked: {e}"))),
                }
            }
        }
        result
    }

    /// One step's undo, with its events: the recorded kind undoes the recorded facts with the recorded policy.
    /// The plan is consulted only for a journal written before kinds were recorded with the facts.
    async fn undo_one(&self, name: &str, undo: &RecordedUndo) -> Result<(), String> {
        let started = Instant::now();
        let mut undo = undo.clone();
        if undo.kind.is_empty()
            && let Some(step) = self.plan.step_by_name(name)
        {
            undo.kind.clone_from(&step.kind);
            undo.host.clone_from(&step.host);
            undo.policy = step.policy.into();
        }
        self.events.emit(Event::UndoStarted { step: name.to_owned(), host: undo.host.clone() });
        let outcome = match self.kinds.get(&undo.kind) {
            None if undo.kind.is_empty() => Err(format!(
                "the journal does not say which kind recorded step `{name}`'s undo facts and the plan has no such \
                 step any more (its undo facts: {}); put the step back and run `zdd recover` again, or undo it by \
                 hand and delete {}",
                undo.facts,
                self.journal.path().map_or_else(|| "the run's journal".to_owned(), |p| p.display().to_string())
            )),
            None => Err(format!("unknown step kind `{}` (a zdd without it cannot undo step `{name}`)", undo.kind)),
            Some(kind) => {
                // A fresh token: the run's token is cancelled by now, and the rollback must not be.
                // On the host the step ran on, as recorded: whatever the plan says now.
                let ctx = self.ctx(name, undo.host.as_deref(), CancellationToken::new());
                let record = step::attempts(kind.clone(), &ctx, Operation::Undo(&undo)).await;
                match record.state {
                    StepState::Succeeded => Ok(()),
                    _ => Err(record.error.unwrap_or_else(|| "undo failed".to_owned())),
                }
            }
        };
        self.events.emit(Event::UndoFinished {
            step: name.to_owned(),
            ok: outcome.is_ok(),
            error: outcome.as_ref().err().cloned(),
            duration_ms: millis(started.elapsed()),
        });
        outcome
    }
}

/// The answer to an interrupt that cannot stop anything more (the run is already stopping or rolling back).
pub(crate) const ALREADY_STOPPING: &str = "already stopping: zdd exits once the running steps have stopped and the \
    rollback is done (kill -9 would leave the rollback to `zdd recover`)";

/// Why a run that stopped after its commit point `commit` started ends with nothing undone.
pub(crate) fn committed_message(cause: &str, commit: &str, release: &str) -> String {
    format!(
        "{cause}; this is after the commit point (`{commit}` started, and what it does leaves the release before \
         unfit to serve): nothing is rolled back; release {release} stays live"
    )
}

/// The record of a step whose task panicked.
fn panicked() -> StepRecord {
    StepRecord {
        state: StepState::Failed,
        attempts: 1,
        duration: Duration::ZERO,
        error: Some("the step panicked (a bug in its kind)".to_owned()),
    }
}

fn state_word(state: StepState) -> &'static str {
    match state {
        StepState::TimedOut => "timed out",
        StepState::Cancelled => "was cancelled",
        _ => "failed",
    }
}
