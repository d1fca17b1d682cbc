//! A run with its state directory: the journal (and the tap that writes every event into it before the
//! reporters see it), the run itself, and the state update; `recover`, which finishes an interrupted run from its
//! journal alone; the staged run (`stage`, then `promote` or `abort`, see [`Session::stage`]); and the commands
//! asked of every step's kind (`zdd stop`, `zdd maintenance`: [`StepCommand`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Outcome, Stamped, StepState, StepSummary, millis};
use crate::host::HostSet;
use crate::host::local::process_log;
use crate::host::ssh::recover::{Stopped, stop_remote_leftovers};
use crate::journal::{self, Journal, Replay, RunHeader, RunMode};
use crate::kind::{DeployTarget, Kinds};
use crate::lock::{self, DeployLock};
use crate::plan::{Plan, StepId};
use crate::redact::Redactor;
use crate::state::{HistoryEntry, StateDir, StateError};

use super::executor::{Executor, RunReport, Span};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The journal could not be opened: nothing ran.
    #[error("could not open the journal: {0}")]
    Journal(#[from] std::io::Error),
    /// The run happened but its result could not be recorded in `state.json`.
    #[error(
        "the run ended but its result could not be recorded: {0}; it is left unfinished: fix the state directory, \
         then `zdd recover` rolls it back"
    )]
    State(#[from] StateError),
}

/// What a run needs besides the plan.
pub struct Session {
    pub plan: Arc<Plan>,
    pub kinds: Kinds,
    /// This machine and the plan's SSH hosts, connected before the session is made.
    pub hosts: HostSet,
    pub state: StateDir,
    /// Held for the whole run.
    pub lock: DeployLock,
    pub redactor: Redactor,
    /// Where events go after the journal (the reporter).
    pub report: mpsc::UnboundedSender<Stamped>,
    pub jobs: usize,
}

/// The process log of a state directory (see [`crate::host::local::process_log`]).
pub fn process_log_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("processes.jsonl")
}

/// How many finished runs' journals a state directory keeps when no step of the plan keeps releases (see
/// [`Session::prune_journals`]).
const JOURNALS_KEPT: usize = 20;

/// How long process groups left by a killed run get between TERM and KILL when `recover` stops them.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A run id: the UTC start time and a random suffix (`20261126-171500-3f2a`), so journals sort by time.
pub fn new_run_id() -> String {
    format!("{}-{:04x}", crate::state::release_id_now(), rand::random::<u16>())
}

/// Write every event to the journal, then hand it to the reporter. Runs on a blocking thread (see [`spawn_tap`]):
/// some lines are fsync'd, and a runtime worker must not wait for the disk.
fn tap(journal: &Journal, mut events: mpsc::UnboundedReceiver<Stamped>, report: &mpsc::UnboundedSender<Stamped>) {
    let mut warned = false;
    while let Some(stamped) = events.blocking_recv() {
        if let Err(e) = journal.append(&stamped)
            && !warned
        {
            warned = true;
            let _ = report.send(Stamped {
                at: std::time::SystemTime::now(),
                event: Event::Warning { message: format!("could not write the journal: {e}") },
            });
        }
        let _ = report.send(stamped);
    }
}

/// Start the [`tap`]; it ends once every sender of `events` is dropped.
fn spawn_tap(
    journal: Arc<Journal>,
    events: mpsc::UnboundedReceiver<Stamped>,
    report: mpsc::UnboundedSender<Stamped>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || tap(&journal, events, &report))
}

impl Session {
    fn executor(&self, target: DeployTarget, journal: Arc<Journal>, events: EventSink) -> Executor {
        Executor {
            plan: self.plan.clone(),
            kinds: self.kinds.clone(),
            hosts: self.hosts.clone(),
            events,
            journal,
            redactor: self.redactor.clone(),
            state_dir: self.state.path().to_path_buf(),
            target,
            jobs: self.jobs,
        }
    }

    fn warn_takeover(&self, events: &EventSink) {
        if let Some(previous) = &self.lock.taken_over {
            events.emit(Event::Warning {
                message: format!("took over the deploy lock left by {}: that process is gone", previous.describe()),
            });
        }
    }

    /// Deploy (or, with `RunMode::Rollback`, re-deploy the previous release) to `target`.
    pub async fn run(
        self,
        mode: RunMode,
        target: DeployTarget,
        interrupt: &CancellationToken,
    ) -> Result<Outcome, SessionError> {
        self.run_from(Start::Fresh { mode, target, stage: false }, interrupt).await
    }

    /// `zdd run --stage`: deploy `target` up to the plan's cutover steps ([`Session::cutover_steps`]), which are
    /// held with everything after them. If every step before them succeeds, the run ends [`Event::Staged`], its
    /// journal left open for `zdd promote` or `zdd abort` and nothing recorded in `state.json`: the live release
    /// still serves. Returns `Deployed` then (exit 0); a failure rolls back as in any run.
    pub async fn stage(
        self,
        mode: RunMode,
        target: DeployTarget,
        interrupt: &CancellationToken,
    ) -> Result<Outcome, SessionError> {
        self.run_from(Start::Fresh { mode, target, stage: true }, interrupt).await
    }

    /// `zdd promote`: take up the staged run of `replay` in its own journal and run what it held; the steps it
    /// ran are not run again, and a rollback undoes them with the rest.
    pub async fn promote(self, replay: Replay, interrupt: &CancellationToken) -> Result<Outcome, SessionError> {
        self.run_from(Start::Promote(Box::new(replay)), interrupt).await
    }

    /// The steps whose success moves the live traffic (see [`StepKind::cuts_over`](crate::kind::StepKind::cuts_over)):
    /// where `zdd run --stage` stops.
    pub fn cutover_steps(&self) -> BTreeSet<StepId> {
        self.plan
            .steps
            .iter()
            .filter(|s| self.kinds.get(&s.kind).is_some_and(|k| k.cuts_over(s)))
            .map(|s| s.id)
            .collect()
    }

    /// Where `zdd run --stage` stops: the cutover steps ([`Session::cutover_steps`]) and the commit points
    /// ([`StepKind::commits`](crate::kind::StepKind::commits)). A valid plan has its commit points after the cutover,
    /// so they are held with it anyway; holding them too keeps a stage from ever passing its commit point.
    pub fn stage_holds(&self) -> BTreeSet<StepId> {
        let commits = self.plan.steps.iter().filter(|s| self.kinds.get(&s.kind).is_some_and(|k| k.commits(s)));
        self.cutover_steps().into_iter().chain(commits.map(|s| s.id)).collect()
    }

    /// The steps that stop `zdd run --stage`: they would move live work to the new release before the cutover
    /// ([`StepKind::moves_work_before_cutover`](crate::kind::StepKind::moves_work_before_cutover)) and the stage
    /// would not hold them (they do not come after a cutover step).
    pub fn stage_blockers(&self) -> Vec<String> {
        // What a stage holds, as the scheduler holds it: the cutover steps and every step after them.
        let mut schedule = super::schedule::Scheduler::new(&self.plan.graph.needs_lists(), 1);
        schedule.hold(&self.stage_holds());
        let held: BTreeSet<StepId> = schedule.held().into_iter().collect();
        self.plan
            .steps
            .iter()
            .filter(|s| !held.contains(&s.id))
            .filter(|s| self.kinds.get(&s.kind).is_some_and(|k| k.moves_work_before_cutover(s)))
            .map(|s| s.name.clone())
            .collect()
    }

    async fn run_from(self, start: Start, interrupt: &CancellationToken) -> Result<Outcome, SessionError> {
        let started_at = lock::now_rfc3339();
        let (header, journal, span, stage, resumed) = match start {
            Start::Fresh { mode, target, stage } => {
                let header = RunHeader {
                    run_id: new_run_id(),
                    plan: self.plan.name.clone(),
                    mode,
                    target,
                    user: lock::username(),
                    host: lock::hostname(),
                    pid: std::process::id(),
                    started_at: journal::now_millis(),
                    steps: self.plan.steps.iter().map(|s| s.name.clone()).collect(),
                    needs: self.plan.graph.needs_lists().iter().map(|n| n.iter().map(|id| id.0).collect()).collect(),
                };
                let journal = Journal::create(self.state.path(), &header, self.redactor.clone())?;
                // Whatever an earlier, finished run logged is over: start this run's process log afresh.
                let _ = std::fs::remove_file(process_log_path(self.state.path()));
                let hold = if stage { self.stage_holds() } else { BTreeSet::new() };
                (header, journal, Span { done: BTreeSet::new(), hold }, stage, false)
            }
            Start::Promote(replay) => {
                let journal = Journal::resume(&replay, self.redactor.clone())?;
                let done = replay.succeeded.iter().filter_map(|name| self.plan.step_by_name(name)).map(|s| s.id);
                let span = Span { done: done.collect(), hold: BTreeSet::new() };
                let header = RunHeader { user: lock::username(), host: lock::hostname(), ..replay.header };
                (header, journal, span, false, true)
            }
        };
        let (run_id, mode, target) = (header.run_id.clone(), header.mode, header.target.clone());
        let journal = Arc::new(journal);
        if resumed {
            take_up(&journal, &self.report, &run_id, "promote")?;
        }
        let (events, rx) = EventSink::channel();
        let tapped = spawn_tap(journal.clone(), rx, self.report.clone());
        self.warn_takeover(&events);
        let exec = self.executor(target.clone(), journal, events);
        let report: RunReport = exec.run_span(&run_id, interrupt, &span).await;
        if stage && !report.held.is_empty() {
            // Not finished, not recorded: the live release is still what state.json says.
            exec.events.emit(Event::Staged {
                release: target.release.clone(),
                slot: target.slot.clone(),
                held: report.held.clone(),
                bound: crate::saved::bound_fingerprint(&self.plan),
            });
            drop(exec);
            let _ = tapped.await;
            return Ok(Outcome::Deployed);
        }

        let recorded = self.record(HistoryEntry {
            run_id,
            mode,
            release: target.release.clone(),
            slot: target.slot.clone(),
            outcome: report.outcome,
            started: started_at,
            duration_ms: millis(report.duration),
            user: header.user,
            host: header.host,
            cut_over: report.cut_over.clone(),
            cause: report.stopped.clone(),
            verdicts: exec.journal.verdicts(),
        });
        match &recorded {
            Ok(()) => exec.finish(&report),
            // Finishing the journal now would leave `state.json` naming the old release live, and the next run
            // would deploy into the slot that now serves. Unfinished, the run is rolled back by `recover`, after
            // which the servers and `state.json` agree again.
            Err(e) => exec.events.emit(Event::Warning {
                message: format!("could not record the run's result, so it is left unfinished for `zdd recover`: {e}"),
            }),
        }
        drop(exec);
        let _ = tapped.await;
        recorded?;
        self.prune_journals();
        Ok(report.outcome)
    }

    /// How many finished runs' journals to keep: as many as the plan keeps releases (the most any of its steps
    /// keeps), else [`JOURNALS_KEPT`].
    fn journals_kept(&self) -> usize {
        self.plan.steps.iter().filter_map(|s| self.kinds.get(&s.kind)?.releases_kept(s)).max().unwrap_or(JOURNALS_KEPT)
    }

    /// Delete the journals of finished runs beyond the newest [`Session::journals_kept`], except those of the runs
    /// that deployed the releases still kept (see [`crate::state::State::deploying_runs`]); an unfinished run's
    /// journal is never deleted. A run's history is in `state.json`, not in its journal.
    ///
    /// Housekeeping only: a journal that cannot be deleted costs disk space, not correctness.
    fn prune_journals(&self) {
        let keep = self.journals_kept();
        if let Ok(state) = self.state.load() {
            let _ = journal::prune(self.state.path(), keep, &state.deploying_runs(keep));
        }
    }

    /// Add a finished run to `state.json` (a deployed run becomes live; one that failed after its cutover marks
    /// its release bad). The live release is judged first: the time it served ends with this run if it deployed.
    fn record(&self, entry: HistoryEntry) -> Result<(), StateError> {
        let mut state = self.state.load()?;
        state.judge(std::time::SystemTime::now(), self.plan.stable_after);
        state.record(entry);
        self.state.save(&state)
    }

    /// Stop the process groups an interrupted run left running, here and on its hosts, each with a warning.
    async fn stop_leftovers(&self, events: &EventSink) {
        let log = process_log_path(self.state.path());
        let local_log = log.clone();
        let stopped = tokio::task::spawn_blocking(move || process_log::stop_leftovers(&local_log, LEFTOVER_GRACE))
            .await
            .unwrap_or_default();
        for group in stopped {
            events.emit(Event::Warning {
                message: format!(
                    "stopped process group {} (`{}`) that the interrupted run left running",
                    group.pgid, group.program
                ),
            });
        }
        // Remote hosts are reached as this run's hosts were (the plan's ssh config, else the user's ~/.ssh/config).
        let remote = stop_remote_leftovers(&log, self.hosts.ssh_options(), LEFTOVER_GRACE).await;
        for host in &remote {
            match &host.groups {
                Ok(groups) => {
                    for group in groups {
                        events.emit(Event::Warning {
                            message: format!(
                                "stopped process group {} (`{}`) on {} that the interrupted run left running",
                                group.pgid, group.program, host.host
                            ),
                        });
                    }
                }
                Err(e) => events.emit(Event::Warning {
                    message: format!(
                        "could not stop what the interrupted run left running on {}: {e} (kept for the next \
                         `zdd recover`)",
                        host.host
                    ),
                }),
            }
        }
        if remote.iter().all(Stopped::done) {
            process_log::forget(&log);
        }
    }

    /// Undo, in the recorded graph's undo order, every step of an interrupted run whose facts are not undone yet, then mark the
    /// run finished (rolled back), or leave it unfinished if some undo failed (run `recover` again).
    /// `interrupt` does not stop it (undoing is what a stop would leave to do); it is answered with a warning.
    pub async fn recover(self, replay: Replay, interrupt: &CancellationToken) -> Result<Outcome, SessionError> {
        self.undo_run(replay, Recovery::Interrupted, interrupt).await
    }

    /// `zdd abort`: roll back the staged run of `replay` from its journal, as [`Session::recover`] does. The
    /// journal first says the run was taken up, so an abort whose undo fails leaves an ordinary unfinished run
    /// for `zdd recover`.
    pub async fn abort(self, replay: Replay, interrupt: &CancellationToken) -> Result<Outcome, SessionError> {
        self.undo_run(replay, Recovery::Abort, interrupt).await
    }

    async fn undo_run(
        self,
        replay: Replay,
        why: Recovery,
        interrupt: &CancellationToken,
    ) -> Result<Outcome, SessionError> {
        let started = Instant::now();
        let journal = Arc::new(Journal::reopen(&replay.path, self.redactor.clone())?);
        if why == Recovery::Abort {
            take_up(&journal, &self.report, &replay.header.run_id, "abort")?;
        }
        let (events, rx) = EventSink::channel();
        let tapped = spawn_tap(journal.clone(), rx, self.report.clone());
        self.warn_takeover(&events);
        self.stop_leftovers(&events).await;
        let exec = self.executor(replay.header.target.clone(), journal, events);
        let cause = format!(
            "{} run {} ({} of release {}, started by {} on {})",
            if why == Recovery::Abort { "aborting staged" } else { "recovering" },
            replay.header.run_id,
            match replay.header.mode {
                RunMode::Deploy => "deploy",
                RunMode::Rollback => "rollback",
            },
            replay.header.target.release,
            replay.header.user,
            replay.header.host
        );
        exec.events.emit(Event::RunStarted {
            plan: replay.header.plan.clone(),
            release: replay.header.target.release.clone(),
            run_id: replay.header.run_id.clone(),
            steps: replay.to_undo.iter().map(|(step, _)| step.clone()).collect(),
        });
        // Said again so the summary says the release is marked bad: the journal's `cut-over` line is why.
        if let Some(step) = &replay.cut_over {
            exec.events.emit(Event::CutOver { step: step.clone(), release: replay.header.target.release.clone() });
        }
        if let Some(commit) = &replay.committed {
            return self.finish_committed(&replay, commit, exec, tapped, started).await;
        }
        let rollback = exec.rollback_saying_why_signals_wait(&cause, &replay.undo_waves(), interrupt).await;
        let outcome = if rollback.complete() { Outcome::RolledBack } else { Outcome::RollbackIncomplete };
        let summary = replay
            .to_undo
            .iter()
            .map(|(step, _)| StepSummary {
                step: step.clone(),
                state: if rollback.undone.contains(step) { StepState::RolledBack } else { StepState::RollbackFailed },
                attempts: 0,
                duration_ms: 0,
            })
            .collect();
        let saved = self.record(HistoryEntry {
            run_id: replay.header.run_id.clone(),
            mode: replay.header.mode,
            release: replay.header.target.release.clone(),
            slot: replay.header.target.slot.clone(),
            outcome,
            started: lock::now_rfc3339(),
            duration_ms: millis(started.elapsed()),
            user: lock::username(),
            host: lock::hostname(),
            cut_over: replay.cut_over.clone(),
            cause: Some(match why {
                Recovery::Interrupted => format!("interrupted; undone by `zdd recover` ({cause})"),
                Recovery::Abort => format!("staged, then rolled back by `zdd abort` ({cause})"),
            }),
            verdicts: Vec::new(),
        });
        let report = RunReport {
            outcome,
            duration: started.elapsed(),
            summary,
            stopped: Some(cause),
            rollback: Some(rollback),
            cut_over: replay.cut_over.clone(),
            held: Vec::new(),
        };
        exec.finish(&report);
        drop(exec);
        let _ = tapped.await;
        saved?;
        self.prune_journals();
        Ok(outcome)
    }
}

impl Session {
    /// `zdd recover` of a run that had started its commit point: nothing is undone (the release before cannot
    /// serve any more); the run is recorded and finished as [`Outcome::Committed`], its release live.
    async fn finish_committed(
        &self,
        replay: &Replay,
        commit: &str,
        exec: Executor,
        tapped: tokio::task::JoinHandle<()>,
        started: Instant,
    ) -> Result<Outcome, SessionError> {
        let release = &replay.header.target.release;
        let cause = format!("run {} was interrupted", replay.header.run_id);
        let message = super::executor::committed_message(&cause, commit, release);
        exec.events.emit(Event::Warning { message });
        // The steps that finished, as they did, and the commit point, stopped with the run if it did not finish.
        let mut summary: Vec<StepSummary> = replay
            .succeeded
            .iter()
            .map(|step| StepSummary { step: step.clone(), state: StepState::Succeeded, attempts: 0, duration_ms: 0 })
            .collect();
        if !replay.succeeded.iter().any(|s| s == commit) {
            summary.push(StepSummary {
                step: commit.to_owned(),
                state: StepState::Cancelled,
                attempts: 0,
                duration_ms: 0,
            });
        }
        let saved = self.record(HistoryEntry {
            run_id: replay.header.run_id.clone(),
            mode: replay.header.mode,
            release: release.clone(),
            slot: replay.header.target.slot.clone(),
            outcome: Outcome::Committed,
            started: lock::now_rfc3339(),
            duration_ms: millis(started.elapsed()),
            user: lock::username(),
            host: lock::hostname(),
            cut_over: replay.cut_over.clone(),
            cause: Some(format!(
                "interrupted after the commit point `{commit}`; finished by `zdd recover` with nothing undone"
            )),
            verdicts: Vec::new(),
        });
        exec.finish(&RunReport {
            outcome: Outcome::Committed,
            duration: started.elapsed(),
            summary,
            stopped: Some(cause),
            rollback: None,
            cut_over: replay.cut_over.clone(),
            held: Vec::new(),
        });
        // The tap ends once the executor's sink is gone.
        drop(exec);
        let _ = tapped.await;
        saved?;
        self.prune_journals();
        Ok(Outcome::Committed)
    }
}

/// Write (fsync'd) that `by` takes up the staged run, before it changes anything: from this line the journal is an
/// ordinary run's, so a promote or abort killed midway is finished by `zdd recover`, never promoted again over
/// undos the journal does not show. Then the reporter sees it.
fn take_up(
    journal: &Journal,
    report: &mpsc::UnboundedSender<Stamped>,
    run_id: &str,
    by: &str,
) -> Result<(), SessionError> {
    let stamped = Stamped {
        at: std::time::SystemTime::now(),
        event: Event::Resumed { run_id: run_id.to_owned(), by: by.to_owned() },
    };
    journal.append(&stamped)?;
    let _ = report.send(stamped);
    Ok(())
}

/// Where a run begins.
enum Start {
    /// A new run: `zdd run` or `zdd rollback`, or `zdd run --stage` (`stage`).
    Fresh { mode: RunMode, target: DeployTarget, stage: bool },
    /// `zdd promote` of a staged run.
    Promote(Box<Replay>),
}

/// Why a run is undone from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// `zdd recover`: zdd was killed, or a rollback did not complete.
    Interrupted,
    /// `zdd abort` of a staged run.
    Abort,
}

/// What `zdd stop` or `zdd maintenance` asks of every step's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepCommand {
    /// Stop gracefully what the step keeps running ([`StepKind::stop`](crate::kind::StepKind::stop)).
    Stop,
    /// Turn the maintenance page on (`true`) or off ([`StepKind::maintenance`](crate::kind::StepKind::maintenance)).
    Maintenance(bool),
}

impl StepCommand {
    /// What a reporter says of a step that did it.
    fn done(self) -> &'static str {
        match self {
            StepCommand::Stop => "stopped",
            StepCommand::Maintenance(true) => "maintenance on",
            StepCommand::Maintenance(false) => "maintenance off",
        }
    }

    /// The warning when no step of the plan did it.
    fn none(self) -> &'static str {
        match self {
            StepCommand::Stop => "nothing to stop: no step of this plan keeps anything running",
            StepCommand::Maintenance(_) => {
                "no maintenance page: no step of this plan has one (the built-in `proxy-switch` site does)"
            }
        }
    }
}

impl Session {
    /// `zdd stop` and `zdd maintenance`: ask every step's kind, in the graph's undo order (a step after every step
    /// that needs it), to do `command`.
    /// Returns how many did something and the errors of those that failed.
    pub async fn command(self, target: DeployTarget, command: StepCommand) -> (usize, Vec<(String, String)>) {
        let (events, mut rx) = EventSink::channel();
        let report = self.report.clone();
        let relay = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let _ = report.send(e);
            }
        });
        let exec = self.executor(target, Arc::new(Journal::in_memory()), events.clone());
        let mut done = 0;
        let mut failed = Vec::new();
        for step in self.plan.graph.undo_waves.iter().flatten().map(|id| self.plan.step(*id)) {
            let Some(kind) = self.kinds.get(&step.kind) else { continue };
            let ctx = exec.ctx(&step.name, step.host.as_deref(), CancellationToken::new());
            let result = match command {
                StepCommand::Stop => kind.stop(step, &ctx).await,
                StepCommand::Maintenance(on) => kind.maintenance(step, &ctx, on).await,
            };
            match result {
                Ok(true) => {
                    done += 1;
                    events.emit(Event::StepMessage { step: step.name.clone(), message: command.done().into() });
                }
                Ok(false) => {}
                Err(e) => {
                    let what = if command == StepCommand::Stop { "stop" } else { "switch maintenance for" };
                    events.emit(Event::Warning { message: format!("could not {what} `{}`: {e}", step.name) });
                    failed.push((step.name.clone(), e.to_string()));
                }
            }
        }
        if done == 0 && failed.is_empty() {
            events.emit(Event::Warning { message: command.none().into() });
        }
        drop((exec, events));
        let _ = relay.await;
        (done, failed)
    }
}

/// A token cancelled by the first SIGINT or SIGTERM. Later ones do not stop zdd (the running steps are being
/// stopped and the rollback must finish); each is answered with a warning on `report`, so whoever presses Ctrl-C
/// again learns why nothing happens rather than reaching for `kill -9`.
///
/// The task holds `report` weakly: the reporter ends when the run drops its senders, not when the process does.
pub fn interrupt_on_signals(report: &mpsc::UnboundedSender<Stamped>) -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let fire = token.clone();
    let report = report.downgrade();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        fire.cancel();
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if let Some(report) = report.upgrade() {
                let _ = report.send(Stamped {
                    at: std::time::SystemTime::now(),
                    event: Event::Warning { message: super::executor::ALREADY_STOPPING.to_owned() },
                });
            }
        }
    });
    Ok(token)
}
