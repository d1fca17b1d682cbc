//! Events: what happens during a run, as data. Steps and the executor emit them; reporters (TTY, plain,
//! JSON) and the journal subscribe. Nothing else writes to the terminal.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::diag::Code;
use crate::doctor::CheckOutcome;

/// Final state of a step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Was running when the run stopped (another step failed, or zdd was interrupted): cancelled cleanly.
    Cancelled,
    /// Not started because the run failed (or a need failed) first.
    Skipped,
    /// Ran, then undone by the rollback.
    RolledBack,
    /// Ran, and its undo failed: left as it was.
    RollbackFailed,
}

/// How a run ended, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Exit 0.
    Deployed,
    /// Exit 1: something failed and every change was undone.
    RolledBack,
    /// Exit 3: something failed and the rollback did not complete.
    RollbackIncomplete,
    /// Exit 5 (4 is the deploy lock's): something failed after a commit point had started (see [`crate::kind::StepKind::commits`]):
    /// nothing was rolled back and the new release stays live (the one before it cannot serve any more).
    Committed,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Deployed => 0,
            Outcome::RolledBack => 1,
            Outcome::RollbackIncomplete => 3,
            Outcome::Committed => 5,
        }
    }

    /// Does a run with this outcome leave its release live? A deployed run does, and so does a committed one
    /// (the release before it cannot serve any more).
    pub fn leaves_live(self) -> bool {
        matches!(self, Outcome::Deployed | Outcome::Committed)
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[rustfmt::skip] // One event per line reads as the table of the event stream; rustfmt would spread each over lines.
pub enum Event {
    RunStarted { plan: String, release: String, run_id: String, steps: Vec<String> },
    StepStarted {
        step: String,
        kind: String,
        attempt: u32,
        attempts: u32,
        /// The SSH destination the step runs on; absent for this machine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A line of a step's output (already redacted).
    StepOutput { step: String, line: String },
    /// A step's own progress message ("waiting for 3 consecutive healthy answers").
    StepMessage { step: String, message: String },
    StepRetrying { step: String, attempt: u32, cause: String, delay_ms: u64 },
    StepFinished { step: String, state: StepState, attempts: u32, duration_ms: u64, error: Option<String> },
    RollbackStarted { cause: String },
    UndoStarted {
        step: String,
        /// The SSH destination the undo acts on (the host the step ran on); absent for this machine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    UndoFinished { step: String, ok: bool, error: Option<String>, duration_ms: u64 },
    Warning { message: String },
    /// The new release answered its smoke checks at this URL (the proxy's public address).
    Serving { step: String, url: String },
    /// A step that moves the live traffic (`proxy-switch`, an `exec` with `cutover #true`) succeeded: the new
    /// release serves. A run that fails after this marks the release bad.
    CutOver { step: String, release: String },
    RunFinished { outcome: Outcome, duration_ms: u64, summary: Vec<StepSummary> },
    /// `zdd run --stage` stopped before the first step that moves traffic: every step before it succeeded, the
    /// new instance runs beside the live one, and `held` (the cutover and all after it) wait for `zdd promote`
    /// (or `zdd abort`). The run stays open in its journal, not finished.
    /// `bound` fingerprints the bound steps ([`crate::saved::bound_fingerprint`]): `zdd promote` refuses a plan
    /// that binds differently.
    Staged { release: String, slot: String, held: Vec<String>, bound: String },
    /// `zdd promote` or `zdd abort` took up the staged run: from here its journal is an ordinary run's again.
    Resumed { run_id: String, by: String },
    /// One check of `zdd doctor`; warnings and problems come with a fix and a code.
    Check {
        check: String,
        outcome: CheckOutcome,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        fix: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<Code>,
    },
    /// `zdd doctor` ran every check.
    DoctorFinished { ok: usize, warnings: usize, problems: usize },
}

/// One row of the end-of-run table.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: String,
    pub state: StepState,
    pub attempts: u32,
    pub duration_ms: u64,
}

/// An event with the time it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
    #[serde(flatten)]
    pub event: Event,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub(super) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        s.serialize_u128(ms)
    }
}

/// Where events go. Cheap to clone; sending never blocks and never fails the step (a gone reporter is ignored).
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Stamped>,
}

impl EventSink {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Stamped>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// A sink that sends straight to `tx` (a reporter's channel).
    pub fn to(tx: mpsc::UnboundedSender<Stamped>) -> Self {
        Self { tx }
    }

    /// A sink whose events go nowhere (tests, previews).
    pub fn discard() -> Self {
        Self::channel().0
    }

    pub fn emit(&self, event: Event) {
        let _ = self.tx.send(Stamped { at: SystemTime::now(), event });
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
