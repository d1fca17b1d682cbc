//! `zdd maintenance on|off`: every step with a maintenance page (the `proxy-switch` kind's site) serves it
//! instead of the app, or the app again, on the host it runs on. Under the deploy lock, so it never races a run;
//! deploys nothing. Exit 0; 1 if a step could not switch; 2 if no step of the plan has a maintenance page.

use zdd_engine::run::StepCommand;

use super::run::Intent;
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(on: bool, plan: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    // The page is served in front of what runs now.
    super::stop::on_every_step(
        plan,
        state,
        output,
        (Intent::Maintenance, StepCommand::Maintenance(on)),
        |done, failed| match (done, failed) {
            (_, true) => exit::ROLLED_BACK,
            (0, false) => exit::INVALID,
            _ => exit::OK,
        },
    )
}
