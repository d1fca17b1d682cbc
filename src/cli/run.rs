//! `zdd run`: deploy. Also the glue `rollback` and `recover` share: reading the plan once, deciding the deploy
//! target from the state directory (under the lock) and binding the plan to it, the reporter, and exit codes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use zdd_engine::events::{Event, Stamped};
use zdd_engine::host::HostSet;
use zdd_engine::journal::{self, Replay, RunMode};
use zdd_engine::kind::DeployTarget;
use zdd_engine::lock::{DeployLock, LockError, LockOwner};
use zdd_engine::plan::types::parse_duration;
use zdd_engine::plan::{Plan, PlanHeader};
use zdd_engine::redact::Redactor;
use zdd_engine::report::{self, Format};
use zdd_engine::run::{self, Session, SessionError};
use zdd_engine::state::{State, StateDir, StateError};

use super::check::{open_plan, report_diagnostics, stderr_color};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

/// A command stopped before running anything: its exit code and why.
pub(super) struct Refusal {
    pub code: i32,
    reason: Reason,
}

/// What a [`Refusal`] prints.
enum Reason {
    /// A line after `zdd: `.
    Message(String),
    /// Rendered diagnostics, printed as they are.
    Diagnostics(String),
    /// Nothing: the reason was already printed (plan diagnostics).
    Printed,
}

impl Refusal {
    pub(super) fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, reason: Reason::Message(message.into()) }
    }

    /// Rendered diagnostics (and what follows them), printed as they are.
    pub(super) fn diagnostics(code: i32, text: String) -> Self {
        Self { code, reason: Reason::Diagnostics(text) }
    }

    /// The reason is already on stderr.
    pub(super) fn printed(code: i32) -> Self {
        Self { code, reason: Reason::Printed }
    }

    /// Whether the reason is a diagnostic (a state directory a newer zdd wrote): nothing to look past.
    pub(super) fn is_diagnostic(&self) -> bool {
        matches!(self.reason, Reason::Diagnostics(_))
    }

    /// Print the reason (if not printed yet) and give the exit code.
    pub(super) fn print(&self) -> i32 {
        match &self.reason {
            Reason::Message(message) => eprintln!("zdd: {message}"),
            Reason::Diagnostics(text) => eprint!("{text}"),
            Reason::Printed => {}
        }
        self.code
    }
}

impl From<StateError> for Refusal {
    fn from(e: StateError) -> Self {
        match e {
            // A diagnostic, pointing at the file's `format`: the code is what scripts and `zdd explain` know.
            StateError::Newer(newer) => {
                let (diags, sources) = newer.diagnostic();
                Self { code: exit::INVALID, reason: Reason::Diagnostics(diags.render(&sources, stderr_color())) }
            }
            e => Refusal::new(exit::INVALID, e.to_string()),
        }
    }
}

/// What to do once the state directory is open and locked.
#[derive(Clone, Copy)]
pub(super) enum Intent<'a> {
    Deploy {
        release: Option<&'a str>,
        /// `--allow-bad`: deploy `release` even if it is marked bad.
        allow_bad: bool,
    },
    Rollback,
    Recover,
    /// `zdd stop`: the target is what is live now.
    Stop,
    /// `zdd maintenance`: the target is what is live now.
    Maintenance,
    /// `zdd promote`: the target is the staged run's.
    Promote,
    /// `zdd abort`: the staged run is rolled back.
    Abort,
}

/// The state directory, locked, and what was decided from it.
pub(super) struct Prepared {
    pub state: StateDir,
    pub lock: DeployLock,
    pub target: DeployTarget,
    /// For `recover`: the interrupted run.
    pub replay: Option<Replay>,
    /// What the run says before it starts (the releases `rollback` passed over), as warnings.
    pub warnings: Vec<String>,
}

/// `--lock-wait 5m`.
pub(super) fn lock_wait(text: Option<&str>) -> Result<Option<Duration>, Refusal> {
    text.map(|t| parse_duration(t).map_err(|e| Refusal::new(exit::INVALID, format!("--lock-wait: {}", e.message))))
        .transpose()
}

/// Open and lock the state directory, refuse if an interrupted run needs `recover`, and decide the target.
pub(super) fn prepare(
    header: &PlanHeader,
    plan: &Path,
    intent: &Intent<'_>,
    wait: Option<Duration>,
) -> Result<Prepared, Refusal> {
    let plan = plan.display();
    let state = StateDir::prepare(&header.state_dir)?;
    let command = match intent {
        Intent::Deploy { .. } => "run",
        Intent::Rollback => "rollback",
        Intent::Recover => "recover",
        Intent::Stop => "stop",
        Intent::Maintenance => "maintenance",
        Intent::Promote => "promote",
        Intent::Abort => "abort",
    };
    let owner = LockOwner::current(command);
    let first_try = DeployLock::try_acquire(state.path(), &owner);
    let acquired = match (first_try, wait) {
        (Err(held @ LockError::Held { .. }), Some(wait)) => {
            eprintln!("zdd: {held}; waiting up to {} for it", humanize(wait));
            DeployLock::acquire(state.path(), &owner, Some(wait))
        }
        (other, _) => other,
    };
    let lock = acquired.map_err(|e| match e {
        LockError::Held { .. } => Refusal::new(
            exit::LOCKED,
            format!("{e}\nWait for it (`--lock-wait 5m`), or, if you know that run is gone, `zdd unlock {plan}`."),
        ),
        LockError::Io { .. } => Refusal::new(exit::INVALID, e.to_string()),
    })?;
    let unfinished = journal::unfinished(state.path())
        .map_err(|e| Refusal::new(exit::INVALID, format!("cannot read the journal: {e}")))?;
    let staged = journal::staged(state.path())
        .map_err(|e| Refusal::new(exit::INVALID, format!("cannot read the journal: {e}")))?;
    let mut current = state.load()?;
    current.judge(std::time::SystemTime::now(), header.stable_after);
    let prepared = |target, replay, warnings| Prepared { state, lock, target, replay, warnings };
    match intent {
        Intent::Recover => match unfinished {
            Some(replay) => Ok(prepared(replay.header.target.clone(), Some(replay), Vec::new())),
            None => Ok(prepared(live_target(&current, &header.slots), None, Vec::new())),
        },
        Intent::Stop | Intent::Maintenance => Ok(prepared(live_target(&current, &header.slots), None, Vec::new())),
        _ if unfinished.is_some() => Err(unfinished_refusal(unfinished.as_ref(), &plan)),
        Intent::Promote | Intent::Abort => match staged {
            Some(replay) => Ok(prepared(replay.header.target.clone(), Some(replay), Vec::new())),
            None => Err(Refusal::new(
                exit::INVALID,
                format!(
                    "nothing is staged: `zdd run --stage {plan}` deploys a release up to its cutover and stages it"
                ),
            )),
        },
        _ if staged.is_some() => Err(staged_refusal(staged.as_ref(), &plan)),
        Intent::Deploy { release, allow_bad } => {
            let target = current.deploy_target(&header.slots, *release)?;
            let warnings = match current.bad(&target.release) {
                None => Vec::new(),
                Some(bad) if *allow_bad => vec![format!(
                    "deploying release {} although it is marked bad (--allow-bad): {}",
                    target.release,
                    bad.describe()
                )],
                Some(bad) => {
                    return Err(Refusal::new(
                        exit::INVALID,
                        format!(
                            "release {} is marked bad: {}\nDeploy a new release, or this one again on purpose with \
                             `zdd run {plan} --release {} --allow-bad`.",
                            target.release,
                            bad.describe(),
                            target.release
                        ),
                    ));
                }
            };
            Ok(prepared(target, None, warnings))
        }
        Intent::Rollback => {
            let choice = current.rollback_target(&header.slots)?;
            let warnings = choice.warnings();
            Ok(prepared(choice.target, None, warnings))
        }
    }
}

/// A run is refused while an earlier one did not finish.
fn unfinished_refusal(unfinished: Option<&Replay>, plan: &impl std::fmt::Display) -> Refusal {
    let replay = unfinished.map(|r| &r.header);
    let (run_id, user, host) = replay.map_or(("?", "?", "?"), |h| (&*h.run_id, &*h.user, &*h.host));
    Refusal::new(
        exit::ROLLBACK_INCOMPLETE,
        format!(
            "run {run_id} (by {user} on {host}) did not finish: it was interrupted, or its rollback is \
             incomplete. Its changes may still be in place.\nRun `zdd recover {plan}` first: it undoes \
             them from the journal."
        ),
    )
}

/// A run is refused while a release is staged: only `promote` and `abort` take it up.
fn staged_refusal(staged: Option<&Replay>, plan: &impl std::fmt::Display) -> Refusal {
    let h = staged.map(|r| &r.header);
    let (release, run_id, user, host) =
        h.map_or(("?", "?", "?", "?"), |h| (&*h.target.release, &*h.run_id, &*h.user, &*h.host));
    Refusal::new(
        exit::INVALID,
        format!(
            "release {release} is staged (run {run_id}, by {user} on {host}): no other run starts until it is \
             promoted or aborted.\n`zdd promote {plan}` moves the traffic to it; `zdd abort {plan}` rolls it back."
        ),
    )
}

/// `5m`, `90s`, `250ms`.
fn humanize(d: Duration) -> String {
    zdd_engine::report::human_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The target of commands that deploy nothing (`stop`, `recover` with nothing to do): what is live now.
fn live_target(current: &State, slots: &[String]) -> DeployTarget {
    let live = current.live.as_ref();
    DeployTarget {
        release: live.map(|l| l.release.clone()).unwrap_or_default(),
        slot: live.map_or_else(|| slots.first().cloned().unwrap_or_default(), |l| l.slot.clone()),
        live_slot: live.map(|l| l.slot.clone()),
        live_release: live.map(|l| l.release.clone()),
        rollback: false,
    }
}

/// Read the plan once, then lock the state directory, decide the deploy target and bind the plan to it.
///
/// The plan is validated with sample values first: an invalid plan is refused before the state directory is
/// created or locked, so it leaves nothing behind.
pub(super) fn read_and_prepare(
    plan: &PlanArgs,
    state: &StateArgs,
    intent: Intent<'_>,
    wait: Option<Duration>,
) -> Result<(Plan, Prepared), Refusal> {
    let kinds = zdd_steps::builtin();
    let opened = open_plan(plan, state.state_dir.as_deref(), &kinds);
    let unbound = match &opened.result {
        Ok(unbound) => unbound,
        Err(diags) => return Err(Refusal::printed(report_diagnostics(diags, &opened.sources))),
    };
    let prepared = prepare(unbound.header(), &plan.plan, &intent, wait)?;
    match unbound.bind(&prepared.target, &kinds) {
        Ok(bound) => Ok((bound, prepared)),
        Err(diags) => Err(Refusal::printed(report_diagnostics(&diags, unbound.sources()))),
    }
}

/// Everything a session needs from the command line.
#[derive(Clone, Copy)]
pub(super) struct Launch<'a> {
    pub output: &'a OutputArgs,
    pub jobs: Option<usize>,
    /// `--stage`: stop before the cutover, for `zdd promote` or `zdd abort`.
    pub stage: bool,
}

/// Run `work` on a tokio runtime with the reporter attached; returns the exit code `work` gives.
pub(super) fn with_reporter<F, Fut>(output: &OutputArgs, work: F) -> i32
where
    F: FnOnce(mpsc::UnboundedSender<Stamped>) -> Fut,
    Fut: Future<Output = i32>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return Refusal::new(exit::INVALID, format!("cannot start the async runtime: {e}")).print(),
    };
    let format = Format::choose(output.json, output.plain);
    runtime.block_on(async {
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report::drive(format.reporter(), report_rx));
        let code = work(report_tx).await;
        let _ = reporter.await;
        code
    })
}

/// A session for `plan` in `prepared`'s state directory, acting on `hosts` (see [`super::hosts::connect`]).
pub(super) fn session(
    plan: Plan,
    prepared: Prepared,
    hosts: HostSet,
    jobs: Option<usize>,
    report: mpsc::UnboundedSender<Stamped>,
) -> (Session, DeployTarget, Option<Replay>) {
    let redactor = Redactor::new();
    for secret in plan.secrets() {
        redactor.add(secret);
    }
    let session = Session {
        plan: Arc::new(plan),
        kinds: zdd_steps::builtin(),
        hosts,
        state: prepared.state,
        lock: prepared.lock,
        redactor,
        report,
        jobs: jobs.unwrap_or_else(run::default_jobs).max(1),
    };
    (session, prepared.target, prepared.replay)
}

/// `zdd run` and `zdd rollback`.
pub(super) fn deploy(
    plan: &PlanArgs,
    state: &StateArgs,
    launch: Launch<'_>,
    intent: Intent<'_>,
    wait: Option<&str>,
) -> i32 {
    let mode = match intent {
        Intent::Rollback => RunMode::Rollback,
        _ => RunMode::Deploy,
    };
    let wait = match lock_wait(wait) {
        Ok(w) => w,
        Err(r) => return r.print(),
    };
    let (plan, prepared) = match read_and_prepare(plan, state, intent, wait) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    deploy_bound(plan, prepared, launch, mode)
}

/// Run `plan`, bound to `prepared`'s target, with its state directory locked: reach every host, run the
/// preflight, then the steps (rolling back on failure).
pub(super) fn deploy_bound(plan: Plan, prepared: Prepared, launch: Launch<'_>, mode: RunMode) -> i32 {
    if plan.steps.is_empty() {
        // Recording a release that changed nothing as live would make it the target of the next `zdd rollback`.
        return Refusal::new(exit::INVALID, format!("plan `{}` has no steps: there is nothing to deploy", plan.name))
            .print();
    }
    with_reporter(launch.output, |report| async move {
        let interrupt = match run::interrupt_on_signals(&report) {
            Ok(token) => token,
            Err(e) => return Refusal::new(exit::INVALID, format!("cannot watch for signals: {e}")).print(),
        };
        // Every host is reached (and its key checked) before anything changes.
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, []).await;
        if !failed.is_empty() {
            return super::hosts::refusal(&failed).print();
        }
        // Said through the reporter, before the run starts: what `rollback` passed over, a bad release deployed.
        for message in &prepared.warnings {
            let _ = report
                .send(Stamped { at: std::time::SystemTime::now(), event: Event::Warning { message: message.clone() } });
        }
        let (session, target, _) = session(plan, prepared, hosts, launch.jobs, report);
        if launch.stage && session.cutover_steps().is_empty() {
            return Refusal::new(
                exit::INVALID,
                format!(
                    "plan `{}` has no step that moves the traffic (a proxy-switch, or an exec with `cutover #true`): \
                     --stage stops before the first such step, so there is nothing to stage",
                    session.plan.name
                ),
            )
            .print();
        }
        if let Err(refusal) = preflight(&session, &target).await {
            return refusal.print();
        }
        let outcome = if launch.stage {
            session.stage(mode, target, &interrupt).await
        } else {
            session.run(mode, target, &interrupt).await
        };
        match outcome {
            Ok(outcome) => outcome.exit_code(),
            Err(e @ SessionError::Journal(_)) => Refusal::new(exit::INVALID, e.to_string()).print(),
            Err(e) => Refusal::new(exit::ROLLBACK_INCOMPLETE, e.to_string()).print(),
        }
    })
}

/// Every step's preflight, before the first step starts: errors refuse the run (nothing changed), warnings are
/// printed and the run goes on.
async fn preflight(session: &Session, target: &DeployTarget) -> Result<(), Refusal> {
    let ctx = zdd_engine::kind::PreviewCtx {
        plan: session.plan.clone(),
        target: target.clone(),
        host: session.hosts.get(None),
        state_dir: session.state.path().to_path_buf(),
    };
    let found = zdd_engine::preflight::run(&session.plan, &session.kinds, &ctx, &session.hosts).await;
    if found.findings.is_empty() {
        return Ok(());
    }
    let text = session.redactor.redact(&found.render("  "));
    if !found.has_errors() {
        eprint!("zdd: preflight warnings:\n{text}");
        return Ok(());
    }
    let errors = found.errors();
    Err(Refusal::new(
        exit::INVALID,
        format!(
            "preflight: {errors} problem{} before the first step; nothing was changed (`zdd explain <code>` explains \
             a code)\n{}",
            if errors == 1 { "" } else { "s" },
            text.trim_end()
        ),
    ))
}

/// `zdd run PLAN`, or `zdd run FILE` for a saved plan (told apart by the file's content).
pub(super) fn run(
    plan: &PlanArgs,
    state: &StateArgs,
    launch: Launch<'_>,
    release: Option<&str>,
    allow_bad: bool,
    lock_wait: Option<&str>,
) -> i32 {
    if let Some(Err(e)) = release.map(zdd_engine::state::check_release_id) {
        return Refusal::new(exit::INVALID, format!("--release: {e}")).print();
    }
    if let Some(text) = super::saved::saved_text(&plan.plan) {
        return super::saved::apply(&super::saved::Apply { plan, state, launch, release, allow_bad, lock_wait }, &text);
    }
    deploy(plan, state, launch, Intent::Deploy { release, allow_bad }, lock_wait)
}

/// The state directory a plan uses, from its header alone (for `status`, `history`, `unlock`): a plan whose
/// steps do not validate still tells where its state is.
pub(super) fn state_dir_of(plan: &PlanArgs, state: &StateArgs) -> Result<std::path::PathBuf, Refusal> {
    if let Some(dir) = &state.state_dir {
        return Ok(dir.clone());
    }
    header_of(plan, state).map(|h| h.state_dir)
}

/// The plan's header (for `status` and `history`, which judge stable releases by its `stable-after`). With
/// `--state-dir`, a plan whose header does not read still gives the state directory, with the default
/// `stable-after`.
pub(super) fn header_of(plan: &PlanArgs, state: &StateArgs) -> Result<PlanHeader, Refusal> {
    let vars = zdd_engine::plan::VarInputs::from_env(plan.vars.clone());
    match (zdd_engine::plan::read_header(&plan.plan, &vars, state.state_dir.as_deref()), &state.state_dir) {
        ((_, Ok(header)), _) => Ok(header),
        ((_, Err(_)), Some(dir)) => Ok(PlanHeader {
            name: String::new(),
            slots: Vec::new(),
            state_dir: dir.clone(),
            stable_after: zdd_engine::plan::DEFAULT_STABLE_AFTER,
        }),
        ((sources, Err(diags)), None) => Err(Refusal::printed(report_diagnostics(&diags, &sources))),
    }
}
