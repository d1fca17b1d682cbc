//! The contract between the engine and a step kind.
//!
//! Each kind answers four questions: what are my fields ([`KindSpec`]); what would I do ([`StepKind::preview`]);
//! do it ([`StepKind::run`], through the host, recording undo facts *before* each effect); and how am I undone
//! ([`StepKind::undo`], from those facts alone, so `zdd recover` can undo after a crash). Before any step runs,
//! each kind's [`StepKind::preflight`] says what it needs that is missing (see [`crate::preflight`]), and
//! [`StepKind::doctor`] extends it for `zdd doctor` (see [`crate::doctor`]).
//! At validation, each kind parses its step's fields once into typed settings ([`StepKind::settings`]); kinds
//! written against [`crate::settings::TypedKind`] get those settings, not fields, in everything after.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostics;
use crate::doctor::Check;
use crate::events::{Event, EventSink};
use crate::host::{Command, Host, HostError, LineSink, Output};
use crate::plan::{Plan, Retry, Step, StepPolicy};
use crate::preflight::{Finding, PreflightCtx, Provision};
use crate::redact::Redactor;
use crate::schema::{Effect, KindSpec};
use crate::settings::{SettingsCtx, StepSettings};

/// The facts a kind's undo needs (the previous target of a link, the unit it started, ...), as JSON.
pub type UndoFacts = serde_json::Value;

/// Why a step did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    /// The step ran and its work failed; `detail` holds the evidence (last log lines, the HTTP answer).
    #[error("{message}")]
    Failed { message: String, detail: Option<String> },
    /// The step was cancelled (timeout or rollback) and stopped cleanly.
    #[error("cancelled")]
    Cancelled,
    /// A failure that retrying cannot fix (a refused migration, bad configuration): no further attempts.
    #[error("{message}")]
    Fatal { message: String, detail: Option<String> },
}

impl StepError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed { message: message.into(), detail: None }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal { message: message.into(), detail: None }
    }

    #[must_use]
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        match self {
            Self::Failed { message, .. } => Self::Failed { message, detail: Some(detail.into()) },
            Self::Fatal { message, .. } => Self::Fatal { message, detail: Some(detail.into()) },
            Self::Cancelled => Self::Cancelled,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

impl From<HostError> for StepError {
    /// A missing program or a refused permission does not go away by trying again: those are fatal at once
    /// (the run rolls back now instead of after every retry); other host errors may be passing.
    fn from(e: HostError) -> Self {
        use std::io::ErrorKind::{NotFound, PermissionDenied};
        match e {
            HostError::Cancelled { .. } => StepError::Cancelled,
            HostError::Spawn { ref source, .. } if matches!(source.kind(), NotFound | PermissionDenied) => {
                StepError::fatal(e.to_string())
            }
            HostError::Io { ref source, .. } if source.kind() == PermissionDenied => StepError::fatal(e.to_string()),
            other => StepError::failed(other.to_string()),
        }
    }
}

/// A step's undo facts as the journal keeps them: with the kind that undoes them and the step's policy, so
/// that undoing needs nothing but the journal (`zdd recover` after the plan file changed, or lost a step).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordedUndo {
    pub kind: String,
    /// The SSH destination the step ran on (its undo acts there); absent for this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub policy: RecordedPolicy,
    pub facts: UndoFacts,
}

/// A step's timeout and retry, as recorded with its undo facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedPolicy {
    pub timeout_ms: u64,
    pub attempts: u32,
    pub backoff_ms: u64,
    pub jitter_ms: u64,
}

impl From<StepPolicy> for RecordedPolicy {
    fn from(p: StepPolicy) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            timeout_ms: ms(p.timeout),
            attempts: p.retry.attempts,
            backoff_ms: ms(p.retry.backoff),
            jitter_ms: ms(p.retry.jitter),
        }
    }
}

impl From<RecordedPolicy> for StepPolicy {
    fn from(p: RecordedPolicy) -> Self {
        let d = std::time::Duration::from_millis;
        Self {
            timeout: d(p.timeout_ms),
            retry: Retry { attempts: p.attempts.max(1), backoff: d(p.backoff_ms), jitter: d(p.jitter_ms) },
        }
    }
}

/// Where journal entries go: the executor's journal, or nothing in tests.
#[async_trait]
pub trait UndoJournal: Send + Sync {
    /// Durably record the undo facts of a step (replacing earlier facts of the same step), before the effect.
    async fn record(&self, step: &str, undo: &RecordedUndo) -> std::io::Result<()>;

    /// Keep a step's verdict (a canary's analysis) for the run's history line. Nothing by default.
    fn verdict(&self, _step: &str, _verdict: &str) {}
}

/// An [`UndoJournal`] that only keeps facts in memory (previews, unit tests).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub facts: std::sync::Mutex<BTreeMap<String, UndoFacts>>,
}

#[async_trait]
impl UndoJournal for MemoryJournal {
    async fn record(&self, step: &str, undo: &RecordedUndo) -> std::io::Result<()> {
        if let Ok(mut m) = self.facts.lock() {
            m.insert(step.to_owned(), undo.facts.clone());
        }
        Ok(())
    }
}

/// The facts of this deploy that the engine decides before any step runs (from the state directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployTarget {
    /// The release id being deployed (`20261126-171500`, or the previous release for `zdd rollback`).
    pub release: String,
    /// The slot the new instance takes.
    pub slot: String,
    /// The slot serving now, if any.
    pub live_slot: Option<String>,
    /// The release serving now, if any.
    pub live_release: Option<String>,
    /// Is this a `zdd rollback` (re-deploying an existing release)?
    pub rollback: bool,
}

/// Everything a running step may use: what an undo may use ([`UndoCtx`], through `Deref`), plus the plan and
/// the journal its undo facts go to. Helpers that only act on the host take `&UndoCtx`, so run and undo share
/// them while an undo still cannot reach the plan.
#[derive(Clone)]
pub struct StepCtx {
    pub plan: Arc<Plan>,
    pub journal: Arc<dyn UndoJournal>,
    pub io: UndoCtx,
}

impl std::ops::Deref for StepCtx {
    type Target = UndoCtx;
    fn deref(&self) -> &UndoCtx {
        &self.io
    }
}

impl std::ops::DerefMut for StepCtx {
    fn deref_mut(&mut self) -> &mut UndoCtx {
        &mut self.io
    }
}

impl StepCtx {
    /// Record undo facts durably. Call this *before* the effect it describes. The facts must hold all the
    /// undo will need (absolute paths, the settings it acts with): the undo gets no plan and no settings.
    pub async fn record_undo(&self, facts: UndoFacts) -> Result<(), StepError> {
        let step = self.plan.step_by_name(&self.step);
        let undo = RecordedUndo {
            kind: step.map(|s| s.kind.clone()).unwrap_or_default(),
            host: step.and_then(|s| s.host.clone()),
            policy: step.map_or(self.plan.defaults, |s| s.policy).into(),
            facts,
        };
        self.journal
            .record(&self.step, &undo)
            .await
            .map_err(|e| StepError::fatal(format!("could not write the journal: {e}")))
    }

    /// A verdict the step reached (a canary's analysis, with its numbers): a message now, and a line of the run's
    /// history (`zdd history`).
    pub fn verdict(&self, verdict: impl Into<String>) {
        let verdict = self.redactor.redact(&verdict.into());
        self.journal.verdict(&self.step, &verdict);
        self.message(verdict);
    }

    /// The part of this context an undo may use: no plan in it.
    pub fn undo_ctx(&self) -> UndoCtx {
        self.io.clone()
    }
}

/// What an undo may use (and every step, through [`StepCtx`]): the host and the run's recorded target, but no plan, so an undo acts on the facts its
/// run recorded alone — whatever the plan file says by the time `zdd recover` runs.
#[derive(Clone)]
pub struct UndoCtx {
    pub step: String,
    pub target: DeployTarget,
    pub host: Arc<dyn Host>,
    pub events: EventSink,
    pub cancel: CancellationToken,
    pub redactor: Redactor,
    pub state_dir: PathBuf,
}

impl UndoCtx {
    /// A progress message for the reporters.
    pub fn message(&self, message: impl Into<String>) {
        self.events
            .emit(Event::StepMessage { step: self.step.clone(), message: self.redactor.redact(&message.into()) });
    }

    /// Say where the new release answers (a smoke check through the proxy passed there): the run's summary
    /// ends with it.
    pub fn serving(&self, url: impl Into<String>) {
        self.events.emit(Event::Serving { step: self.step.clone(), url: self.redactor.redact(&url.into()) });
    }

    /// Run a command on the host, streaming its (redacted) output as events; cancelled with the step.
    pub async fn exec(&self, cmd: &Command) -> Result<Output, StepError> {
        exec_on(self.host.as_ref(), &self.step, &self.events, &self.redactor, &self.cancel, cmd).await
    }

    /// Run a command and fail the step (with its last output lines) if it exits non-zero.
    pub async fn exec_ok(&self, cmd: &Command) -> Result<Output, StepError> {
        let out = self.exec(cmd).await?;
        checked(out, cmd, &self.redactor)
    }
}

/// Run `cmd` on `host` for `step`, its output lines (redacted) as events.
async fn exec_on(
    host: &dyn Host,
    step: &str,
    events: &EventSink,
    redactor: &Redactor,
    cancel: &CancellationToken,
    cmd: &Command,
) -> Result<Output, StepError> {
    tracing::debug!(step = %step, command = %redactor.redact(&cmd.display()), "run");
    let (events, step_name, lines_redactor) = (events.clone(), step.to_owned(), redactor.clone());
    let sink: LineSink = Box::new(move |line: &str| {
        events.emit(Event::StepOutput { step: step_name.clone(), line: lines_redactor.redact(line) });
    });
    Ok(host.run(cmd, cancel, Some(&sink)).await?)
}

/// `out` if the command succeeded, else a failure with its last output lines.
fn checked(out: Output, cmd: &Command, redactor: &Redactor) -> Result<Output, StepError> {
    if out.success() {
        return Ok(out);
    }
    let tail = tail_lines(&format!("{}{}", out.stdout_str(), out.stderr_str()), 20);
    Err(StepError::failed(format!(
        "`{}` exited with {}",
        redactor.redact(&cmd.display()),
        out.code.map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"))
    ))
    .with_detail(redactor.redact(&tail)))
}

/// The last `n` lines of a text.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One thing a step would do, for `zdd plan`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PlannedAction {
    /// Run a command (shown as typed).
    Run { command: String },
    /// Write a file; the preview diffs `content` against the file on disk now.
    Write { path: PathBuf, content: String, mode: u32 },
    /// Point a symlink at a target.
    Link { link: PathBuf, target: PathBuf },
    /// Remove a path.
    Remove { path: PathBuf },
    /// An HTTP request or check (`GET http://... expect 200 "ok"`).
    Http { description: String },
    /// Anything else, in words.
    Note { text: String },
}

/// What a step would do, what it would check, and how it would be undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    pub actions: Vec<PlannedAction>,
    pub checks: Vec<String>,
    /// The compensation, in order; empty for read-only and forward-only steps.
    pub undo: Vec<PlannedAction>,
}

/// What a preview may use: read-only access to the step's host and the deploy target it would run with.
#[derive(Clone)]
pub struct PreviewCtx {
    pub plan: Arc<Plan>,
    pub target: DeployTarget,
    pub host: Arc<dyn Host>,
    pub state_dir: PathBuf,
}

/// A step kind.
#[async_trait]
pub trait StepKind: Send + Sync {
    fn spec(&self) -> &'static KindSpec;

    /// The effect of this particular step (defaults to the kind's; `exec` with `undo` is reversible).
    fn effect(&self, _step: &Step) -> Effect {
        self.spec().effect
    }

    /// Checks across fields beyond what the spec's types express; spans come from the fields.
    fn check(&self, _step: &Step, _diags: &mut Diagnostics) {}

    /// The step's typed settings, built once at validation after its fields and [`StepKind::check`] passed,
    /// and kept on the step ([`Step::settings`]). Kinds without settings keep the default: none.
    fn settings(&self, _ctx: &SettingsCtx<'_>) -> Result<StepSettings, Diagnostics> {
        Ok(StepSettings::default())
    }

    /// What this step makes exist for later steps (a file it writes, a package it installs), so their preflight
    /// does not report it missing.
    fn provides(&self, _step: &Step, _ctx: &PreviewCtx) -> Vec<Provision> {
        Vec::new()
    }

    /// What this step needs that can be known before any step runs (a file, a program, a permission), checked
    /// for every step before the first starts. Reads only; reports every problem it finds.
    async fn preflight(&self, _step: &Step, _ctx: &PreflightCtx) -> Vec<Finding> {
        Vec::new()
    }

    /// `zdd doctor`'s checks of this step, ok ones included. Reads only. The default is the step's
    /// [`StepKind::preflight`] as checks; kinds add what is worth knowing before a run but does not refuse one
    /// (the live instance's process, the disk space, the unit directory).
    async fn doctor(&self, step: &Step, ctx: &PreflightCtx) -> Vec<Check> {
        crate::doctor::from_findings(self.preflight(step, ctx).await)
    }

    /// What the step would do. Reads only: never writes, starts or signals anything.
    async fn preview(&self, step: &Step, ctx: &PreviewCtx) -> Result<Preview, StepError>;

    /// Do it. Record undo facts (via [`StepCtx::record_undo`]) before each effect.
    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError>;

    /// Undo a run (complete or partial) from the facts it recorded, and nothing else: no plan is in reach, so
    /// `zdd recover` does what was recorded even after the plan changed. Must be idempotent.
    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError>;

    /// `zdd stop`: stop gracefully whatever this step keeps running (a service's instances in every slot).
    /// Returns whether it stopped anything. Most kinds keep nothing running.
    async fn stop(&self, _step: &Step, _ctx: &StepCtx) -> Result<bool, StepError> {
        Ok(false)
    }

    /// `zdd maintenance on|off`: turn on (or off) the maintenance page this step's proxy serves in place of the
    /// app. Returns whether the step has one. Most kinds have none.
    async fn maintenance(&self, _step: &Step, _ctx: &StepCtx, _on: bool) -> Result<bool, StepError> {
        Ok(false)
    }

    /// How many releases this step keeps (on disk, as images), for kinds that prune old ones: the state
    /// directory keeps as many runs' journals. `None` for kinds that keep no releases.
    fn releases_kept(&self, _step: &Step) -> Option<usize> {
        None
    }

    /// What this step does to the old release's instance: `Some(true)` it stops it (`drain-stop`),
    /// `Some(false)` it leaves it running on purpose (`drain-stop` with `keep-old`), `None` neither. A commit
    /// point must come after the old instance is stopped: what it does would break it.
    fn retires_old(&self, _step: &Step) -> Option<bool> {
        None
    }

    /// Does this step, once it succeeded, send the live traffic to the new release (the cutover)? A run that
    /// fails after such a step marks its release bad (see [`crate::state`]). Most kinds do not.
    fn cuts_over(&self, _step: &Step) -> bool {
        false
    }

    /// Does this step move live work (not web traffic) to the new release before any cutover step, such as a
    /// Celery worker taking over the queues? `zdd run --stage` refuses a plan where such a step would run: the
    /// staged release would already do the live release's work. Most kinds do not.
    fn moves_work_before_cutover(&self, _step: &Step) -> bool {
        false
    }

    /// Is this step a commit point? Once this step has started, the run no longer rolls back: what it does makes
    /// the release before it unfit to serve (post-deploy migrations that drop what the old code uses). A failure
    /// from here on leaves the new release live and is reported as such ([`crate::events::Outcome::Committed`]).
    /// A plan must have such a step need every cutover step ([`StepKind::cuts_over`]). Most kinds do not.
    fn commits(&self, _step: &Step) -> bool {
        false
    }
}

/// The kinds a plan may use, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: BTreeMap<&'static str, Arc<dyn StepKind>>,
}

impl Kinds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: Arc<dyn StepKind>) {
        self.kinds.insert(kind.spec().name, kind);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepKind>> {
        self.kinds.get(name)
    }

    pub fn spec(&self, name: &str) -> Option<&'static KindSpec> {
        self.kinds.get(name).map(|k| k.spec())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_or_a_refused_permission_is_not_retried() {
        let spawn = |kind| HostError::Spawn { program: "nginx".into(), source: std::io::Error::from(kind) };
        assert!(!StepError::from(spawn(std::io::ErrorKind::NotFound)).retryable());
        assert!(!StepError::from(spawn(std::io::ErrorKind::PermissionDenied)).retryable());
        assert!(StepError::from(spawn(std::io::ErrorKind::Interrupted)).retryable());
        let io = HostError::Io {
            op: "write",
            path: "/etc/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!StepError::from(io).retryable());
        // A lost SSH connection may come back: a retry may get past it.
        let lost = HostError::Connection { host: "root@web1".into(), message: "the connection was terminated".into() };
        assert!(StepError::from(lost).retryable());
    }
}
