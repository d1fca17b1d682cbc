//! `zdd maintenance on|off`: every step with a maintenance page (the `proxy-switch` kind's site) serves it
//! instead of the app, or the app again, on the host it runs on. Under the deploy lock, so it never races a run;
//! deploys nothing. Exit 0; 1 if a step could not switch; 2 if no step of the plan has a maintenance page.

use zdd_engine::run::StepCommand;

use super::run::{Intent, read_and_prepare, session, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(on: bool, plan: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    // The target is the live one: the page is served in front of what runs now.
    let (plan, prepared) = match read_and_prepare(plan, state, Intent::Maintenance, None) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    with_reporter(output, |report| async move {
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, []).await;
        if !failed.is_empty() {
            return super::hosts::refusal(&failed).print();
        }
        let (session, target, _) = session(plan, prepared, hosts, None, report);
        match session.command(target, StepCommand::Maintenance(on)).await {
            (_, failed) if !failed.is_empty() => exit::ROLLED_BACK,
            (0, _) => exit::INVALID,
            _ => exit::OK,
        }
    })
}
