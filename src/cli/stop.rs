//! `zdd stop`: stop gracefully whatever the plan's steps keep running (the service kind's instances in both
//! slots), in the plan graph's undo order, under the deploy lock. Exit 0, or 1 if some step could not stop.

use zdd_engine::run::StepCommand;

use super::run::{Intent, read_and_prepare, session, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    // The target is the live one: `stop` acts on what runs now and deploys nothing.
    let (plan, prepared) = match read_and_prepare(plan, state, Intent::Stop, None) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    with_reporter(output, |report| async move {
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, []).await;
        if !failed.is_empty() {
            return super::hosts::refusal(&failed).print();
        }
        let (session, target, _) = session(plan, prepared, hosts, None, report);
        let (_, failed) = session.command(target, StepCommand::Stop).await;
        if failed.is_empty() { exit::OK } else { exit::ROLLED_BACK }
    })
}
