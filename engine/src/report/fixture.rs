//! Events of a made-up run, at fixed times, for reporter snapshots.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::{Event, Outcome, Stamped, StepState, StepSummary};

/// A writer whose bytes a test can read after handing it to a reporter.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + ms)
}

fn row(step: &str, state: StepState, attempts: u32, duration_ms: u64) -> StepSummary {
    StepSummary { step: step.into(), state, attempts, duration_ms }
}

/// A run where `migrate` succeeds, `assets` succeeds on its second attempt, `smoke` fails, and the undo of
/// `assets` fails.
pub(crate) fn failed_run() -> Vec<Stamped> {
    let events = vec![
        (0, Event::RunStarted {
            plan: "shop".into(),
            release: "20261126-171500".into(),
            run_id: "20261126-171500-3f2a".into(),
            steps: vec!["migrate".into(), "assets".into(), "smoke".into(), "notify".into()],
        }),
        (5, Event::StepStarted { step: "migrate".into(), kind: "exec".into(), attempt: 1, attempts: 1, host: None }),
        (6, Event::StepStarted { step: "assets".into(), kind: "exec".into(), attempt: 1, attempts: 3, host: None }),
        (40, Event::StepOutput { step: "migrate".into(), line: "Applying shop.0002_price... OK".into() }),
        (90, Event::StepRetrying { step: "assets".into(), attempt: 2, cause: "`make assets` exited with status 2".into(), delay_ms: 500 }),
        (120, Event::StepFinished { step: "migrate".into(), state: StepState::Succeeded, attempts: 1, duration_ms: 115, error: None }),
        (590, Event::StepStarted { step: "assets".into(), kind: "exec".into(), attempt: 2, attempts: 3, host: None }),
        (900, Event::StepFinished { step: "assets".into(), state: StepState::Succeeded, attempts: 2, duration_ms: 894, error: None }),
        (901, Event::StepStarted { step: "smoke".into(), kind: "http".into(), attempt: 1, attempts: 1, host: None }),
        (950, Event::StepMessage { step: "smoke".into(), message: "GET http://127.0.0.1:8001/health".into() }),
        (1_400, Event::StepFinished {
            step: "smoke".into(),
            state: StepState::Failed,
            attempts: 1,
            duration_ms: 499,
            error: Some("expected status 200, got 500\n<h1>Server Error</h1>".into()),
        }),
        (1_401, Event::StepFinished { step: "notify".into(), state: StepState::Skipped, attempts: 0, duration_ms: 0, error: None }),
        (1_402, Event::RollbackStarted { cause: "step `smoke` failed: expected status 200, got 500".into() }),
        (1_403, Event::UndoStarted { step: "assets".into(), host: None }),
        (1_600, Event::Warning { message: "undo of `assets` failed (`make clean` exited with status 1); trying again in 500ms (attempt 2 of 3)".into() }),
        (2_500, Event::UndoFinished { step: "assets".into(), ok: false, error: Some("`make clean` exited with status 1".into()), duration_ms: 1_097 }),
        (2_501, Event::RunFinished {
            outcome: Outcome::RollbackIncomplete,
            duration_ms: 2_501,
            summary: vec![
                row("migrate", StepState::Succeeded, 1, 115),
                row("assets", StepState::RollbackFailed, 2, 894),
                row("smoke", StepState::Failed, 1, 499),
                row("notify", StepState::Skipped, 0, 0),
            ],
        }),
    ];
    events.into_iter().map(|(ms, event)| Stamped { at: at(ms), event }).collect()
}

/// A run that deploys.
pub(crate) fn deployed_run() -> Vec<Stamped> {
    let events = vec![
        (
            0,
            Event::RunStarted {
                plan: "shop".into(),
                release: "r7".into(),
                run_id: "r7-0001".into(),
                steps: vec!["build".into()],
            },
        ),
        (1, Event::StepStarted { step: "build".into(), kind: "exec".into(), attempt: 1, attempts: 1, host: None }),
        (
            70_000,
            Event::StepFinished {
                step: "build".into(),
                state: StepState::Succeeded,
                attempts: 1,
                duration_ms: 69_999,
                error: None,
            },
        ),
        (70_000, Event::Serving { step: "build".into(), url: "http://127.0.0.1:8080".into() }),
        (
            70_001,
            Event::RunFinished {
                outcome: Outcome::Deployed,
                duration_ms: 70_001,
                summary: vec![row("build", StepState::Succeeded, 1, 69_999)],
            },
        ),
    ];
    events.into_iter().map(|(ms, event)| Stamped { at: at(ms), event }).collect()
}

/// A `zdd doctor` that finds the state directory fine, a stale lock, and a step whose program is missing.
pub(crate) fn doctor_checks() -> Vec<Stamped> {
    use crate::diag::Code;
    use crate::doctor::CheckOutcome;
    let check = |check: &str, outcome, detail: &str, fix: Option<(&str, Code)>| Event::Check {
        check: check.into(),
        outcome,
        detail: detail.into(),
        fix: fix.map(|(f, _)| f.into()),
        code: fix.map(|(_, c)| c),
    };
    [
        check("state dir", CheckOutcome::Ok, "/var/lib/zdd/shop: release r1 live in slot blue", None),
        check(
            "lock",
            CheckOutcome::Problem,
            "the lock names pid 4242 (ci on web1), running `zdd run` since 2026-11-26T17:15:00Z, and that process is gone",
            Some(("`zdd unlock plans/prod.kdl` clears it", Code::DoctorStaleLock)),
        ),
        check(
            "step venv: tools",
            CheckOutcome::Warning,
            "`uv` is not installed",
            Some(("install uv, or write `installer \"pip\"`", Code::PreflightNoUv)),
        ),
        Event::DoctorFinished { ok: 1, warnings: 1, problems: 1 },
    ]
    .into_iter()
    .zip((0..).step_by(10))
    .map(|(event, ms)| Stamped { at: at(ms), event })
    .collect()
}
