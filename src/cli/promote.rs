//! `zdd promote` and `zdd abort`: take up the run `zdd run --stage` left staged (its journal says so).
//!
//! `promote` binds the plan to the staged target and runs what the stage held (the cutover and every step after
//! it), in the same journal: a failure rolls back the staged steps too. The plan must have the steps it had when
//! the release was staged. `abort` rolls the staged run back from its journal alone, as `recover` does. Exit
//! codes as for `run` and `recover`; 2 when nothing is staged.

use zdd_engine::journal::Replay;
use zdd_engine::plan::Plan;
use zdd_engine::run::{SessionError, interrupt_on_signals};

use super::run::{Intent, Refusal, read_and_prepare, session, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn promote(
    args: &PlanArgs,
    state: &StateArgs,
    output: &OutputArgs,
    jobs: Option<usize>,
    lock_wait: Option<&str>,
) -> i32 {
    let wait = match super::run::lock_wait(lock_wait) {
        Ok(w) => w,
        Err(r) => return r.print(),
    };
    let (plan, prepared) = match read_and_prepare(args, state, Intent::Promote, wait) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    if let Some(replay) = &prepared.replay
        && let Err(refusal) = same_steps(&plan, replay, &args.plan.display().to_string())
    {
        return refusal.print();
    }
    with_reporter(output, |report| async move {
        let interrupt = match interrupt_on_signals(&report) {
            Ok(token) => token,
            Err(e) => return Refusal::new(exit::INVALID, format!("cannot watch for signals: {e}")).print(),
        };
        let recorded = super::recover::recorded_hosts(prepared.replay.as_ref());
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, recorded.iter().map(String::as_str)).await;
        if !failed.is_empty() {
            return super::hosts::refusal(&failed).print();
        }
        let (session, _, replay) = session(plan, prepared, hosts, jobs, report);
        let Some(replay) = replay else { return exit::INVALID };
        match session.promote(replay, &interrupt).await {
            Ok(outcome) => outcome.exit_code(),
            Err(e @ SessionError::Journal(_)) => Refusal::new(exit::INVALID, e.to_string()).print(),
            Err(e) => Refusal::new(exit::ROLLBACK_INCOMPLETE, e.to_string()).print(),
        }
    })
}

pub(super) fn abort(args: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    match read_and_prepare(args, state, Intent::Abort, None) {
        Ok((plan, prepared)) => super::recover::undo_from_journal(plan, prepared, output, true),
        Err(r) => r.print(),
    }
}

/// The plan must have the steps, and the order, it had when the release was staged (promoting runs the steps the
/// stage held by name, after the ones it ran), each bound to the same values.
fn same_steps(plan: &Plan, replay: &Replay, plan_file: &str) -> Result<(), Refusal> {
    let now: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    let then: Vec<&str> = replay.header.steps.iter().map(String::as_str).collect();
    let needs_now: Vec<Vec<usize>> =
        plan.graph.needs_lists().iter().map(|n| n.iter().map(|id| id.0).collect()).collect();
    let needs_changed = !replay.header.needs.is_empty() && replay.header.needs != needs_now;
    if now == then && !needs_changed {
        if replay.staged_bound.as_ref().is_some_and(|b| *b != zdd_engine::saved::bound_fingerprint(plan)) {
            return Err(Refusal::new(
                exit::INVALID,
                format!(
                    "the plan binds differently from when release {} was staged: a plan file or a variable \
                     changed; nothing was changed.\nPromote with the plan and variables it was staged with, or \
                     `zdd abort {plan_file}` and stage it again.",
                    replay.header.target.release
                ),
            ));
        }
        return Ok(());
    }
    let added: Vec<&str> = now.iter().filter(|s| !then.contains(s)).copied().collect();
    let removed: Vec<&str> = then.iter().filter(|s| !now.contains(s)).copied().collect();
    let mut what = Vec::new();
    if !added.is_empty() {
        what.push(format!("added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        what.push(format!("removed: {}", removed.join(", ")));
    }
    if what.is_empty() {
        what.push("the steps' order or needs changed".to_owned());
    }
    Err(Refusal::new(
        exit::INVALID,
        format!(
            "the plan changed since release {} was staged ({}); nothing was changed.\n`zdd abort {plan_file}` rolls \
             the staged release back; then stage it again with this plan.",
            replay.header.target.release,
            what.join("; ")
        ),
    ))
}
