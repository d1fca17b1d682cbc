//! The end of a run for people: a table (step, result, attempts, duration) and what the outcome means,
//! naming every step left changed when the rollback did not complete.

use std::collections::BTreeMap;

use super::human_ms;
use crate::events::{Event, Outcome, StepState, StepSummary};

/// What the summary needs to remember from the events before `run-finished`.
#[derive(Debug, Default)]
pub struct Summary {
    release: Option<String>,
    /// Undo errors, by step.
    undo_errors: BTreeMap<String, String>,
    /// Why the run stopped.
    cause: Option<String>,
    /// Where the new release answered its smoke checks.
    serving: Option<String>,
    /// The step that cut the live traffic over to the new release.
    cut_over: Option<String>,
    /// The first step that did not succeed, as "step `x` failed: why".
    failure: Option<String>,
}

/// The word for a step's final state.
pub fn state_word(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "pending",
        StepState::Running => "running",
        StepState::Succeeded => "succeeded",
        StepState::Failed => "failed",
        StepState::TimedOut => "timed out",
        StepState::Cancelled => "cancelled",
        StepState::Skipped => "skipped",
        StepState::RolledBack => "rolled back",
        StepState::RollbackFailed => "UNDO FAILED",
    }
}

impl Summary {
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::RunStarted { release, .. } => self.release = Some(release.clone()),
            Event::RollbackStarted { cause } => self.cause = Some(cause.clone()),
            Event::Serving { url, .. } => self.serving = Some(url.clone()),
            Event::CutOver { step, .. } => self.cut_over = Some(step.clone()),
            Event::StepFinished { step, state, error, .. }
                if self.failure.is_none()
                    && matches!(state, StepState::Failed | StepState::TimedOut | StepState::Cancelled) =>
            {
                let why = error.as_deref().and_then(|e| e.lines().next()).unwrap_or("failed");
                self.failure = Some(format!("step `{step}` {}: {why}", state_word(*state)));
            }
            Event::UndoFinished { step, ok: false, error, .. } => {
                self.undo_errors.insert(step.clone(), error.clone().unwrap_or_default());
            }
            _ => {}
        }
    }

    /// The table and the outcome statement, as lines.
    pub fn render(&self, outcome: Outcome, duration_ms: u64, rows: &[StepSummary]) -> Vec<String> {
        let width = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(4);
        let mut lines = vec![format!("{:<width$}  {:<11}  {:>8}  {:>8}", "STEP", "RESULT", "ATTEMPTS", "DURATION")];
        for r in rows {
            let attempts = if r.attempts == 0 { "-".to_owned() } else { r.attempts.to_string() };
            let duration = if r.attempts == 0 { "-".to_owned() } else { human_ms(r.duration_ms) };
            lines.push(format!("{:<width$}  {:<11}  {attempts:>8}  {duration:>8}", r.step, state_word(r.state)));
        }
        lines.push(String::new());
        let release = self.release.as_deref().unwrap_or("?");
        match outcome {
            Outcome::Deployed => {
                lines.push(format!("Deployed release {release} in {}.", human_ms(duration_ms)));
                if let Some(url) = &self.serving {
                    lines.push(format!("Serving at {url}"));
                }
            }
            Outcome::RolledBack => {
                lines.push(format!(
                    "Release {release} was not deployed: {}; every change was rolled back ({}).",
                    self.cause.as_deref().unwrap_or("the run failed"),
                    human_ms(duration_ms)
                ));
                lines.extend(Self::not_undone(rows));
                lines.extend(self.marked_bad(release));
            }
            Outcome::Committed => {
                lines.push(format!(
                    "Release {release} is live, but the run failed after its commit point: {}. Nothing was rolled \
                     back: the release before it cannot serve any more ({}).",
                    self.failure.as_deref().unwrap_or("the run was interrupted"),
                    human_ms(duration_ms)
                ));
                lines.push("Fix the cause, then deploy again to finish what the failed step left undone.".to_owned());
            }
            Outcome::RollbackIncomplete => {
                lines.push(format!(
                    "ROLLBACK INCOMPLETE: release {release} failed ({}) and these steps were left as they were:",
                    self.cause.as_deref().unwrap_or("the run failed")
                ));
                for r in rows.iter().filter(|r| r.state == StepState::RollbackFailed) {
                    let why = self.undo_errors.get(&r.step).map_or("undo failed", String::as_str);
                    lines.push(format!("  - {}: its undo failed: {}", r.step, why.lines().next().unwrap_or_default()));
                }
                lines.extend(Self::not_undone(rows));
                lines.extend(self.marked_bad(release));
                lines.push(
                    "Fix the cause, then run `zdd recover PLAN` to retry the failed undos (zdd run refuses until then)."
                        .to_owned(),
                );
            }
        }
        lines
    }

    /// A release that failed after its cutover is marked bad in the state directory (see `zdd_engine::state`).
    fn marked_bad(&self, release: &str) -> Option<String> {
        self.cut_over.as_ref().map(|step| {
            format!(
                "Release {release} failed after its cutover (`{step}`): it is marked bad, and `zdd rollback` will not \
                 choose it."
            )
        })
    }

    /// Steps that ran and have no undo (read-only checks, forward-only changes such as migrations).
    fn not_undone(rows: &[StepSummary]) -> Option<String> {
        let ran: Vec<&str> = rows
            .iter()
            .filter(|r| {
                matches!(r.state, StepState::Succeeded | StepState::Failed | StepState::TimedOut | StepState::Cancelled)
            })
            .map(|r| r.step.as_str())
            .collect();
        (!ran.is_empty()).then(|| format!("Ran without an undo (read-only or forward-only): {}.", ran.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_failed_after_its_cutover_says_its_release_is_marked_bad() {
        let mut summary = Summary::default();
        summary.observe(&Event::RunStarted {
            plan: "p".into(),
            release: "r3".into(),
            run_id: "x".into(),
            steps: vec![],
        });
        let before = summary.render(Outcome::RolledBack, 10, &[]);
        assert!(!before.iter().any(|l| l.contains("marked bad")), "{before:?}");
        summary.observe(&Event::CutOver { step: "switch".into(), release: "r3".into() });
        let after = summary.render(Outcome::RolledBack, 10, &[]);
        assert_eq!(
            after.last().map(String::as_str),
            Some(
                "Release r3 failed after its cutover (`switch`): it is marked bad, and `zdd rollback` will not choose it."
            )
        );
    }

    #[test]
    fn a_committed_run_says_its_release_is_live_and_nothing_was_rolled_back() {
        let mut summary = Summary::default();
        summary.observe(&Event::RunStarted {
            plan: "p".into(),
            release: "r3".into(),
            run_id: "x".into(),
            steps: vec![],
        });
        summary.observe(&Event::CutOver { step: "switch".into(), release: "r3".into() });
        summary.observe(&Event::StepFinished {
            step: "migrate-post".into(),
            state: StepState::Failed,
            attempts: 1,
            duration_ms: 5,
            error: Some("`manage.py migrate` exited with status 1\nTraceback".into()),
        });
        let lines = summary.render(Outcome::Committed, 1500, &[]);
        let text = lines.join("\n");
        assert!(
            text.contains(
                "Release r3 is live, but the run failed after its commit point: step `migrate-post` failed: \
                 `manage.py migrate` exited with status 1. Nothing was rolled back"
            ),
            "{text}"
        );
        assert!(!text.contains("marked bad"), "a committed release serves: {text}");
    }
}
