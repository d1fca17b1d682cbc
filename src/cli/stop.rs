//! `zdd stop`: stop gracefully whatever the plan's steps keep running (the service kind's instances in both
//! slots), in the plan graph's undo order, under the deploy lock. Exit 0, or 1 if some step could not stop.

use zdd_engine::run::StepCommand;

use super::run::{Intent, read_and_prepare, session, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    on_every_step(plan, state, output, (Intent::Stop, StepCommand::Stop), |_, failed| {
        if failed { exit::ROLLED_BACK } else { exit::OK }
    })
}

/// `zdd stop` and `zdd maintenance`: ask every step's kind to do `command` on what is live now (the target is the
/// live one; nothing is deployed), under the deploy lock; `exit` makes the exit code of how many did it and
/// whether one failed.
pub(super) fn on_every_step(
    plan: &PlanArgs,
    state: &StateArgs,
    output: &OutputArgs,
    (intent, command): (Intent<'_>, StepCommand),
    exit: fn(usize, bool) -> i32,
) -> i32 {
    let (plan, prepared) = match read_and_prepare(plan, state, intent, None) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    with_reporter(output, |report| async move {
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, []).await;
        if !failed.is_empty() {
            return super::hosts::refusal(&failed).print();
        }
        let (session, target, _) = session(plan, prepared, hosts, None, report);
        let (done, failed) = session.command(target, command).await;
        exit(done, !failed.is_empty())
    })
}
