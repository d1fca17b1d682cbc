//! `zdd doctor`: every check zdd knows for a plan, one line each, through the run's reporters (`--json`,
//! `--plain`). Reads the plan, the state directory and the hosts; changes nothing. Exit 0 when no check found a
//! problem (warnings allowed), 2 when one did.

use std::sync::Arc;

use zdd_engine::doctor::{self, DoctorInput};
use zdd_engine::events::EventSink;
use zdd_engine::kind::PreviewCtx;
use zdd_engine::state::State;

use super::check::{open_plan, report_diagnostics};
use super::plan::{preview_target, read_only_hosts};
use super::run::{Refusal, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(args: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    let kinds = zdd_steps::builtin();
    let opened = open_plan(args, state.state_dir.as_deref(), &kinds);
    let unbound = match &opened.result {
        Ok(unbound) => unbound,
        Err(diags) => return report_diagnostics(diags, &opened.sources),
    };
    // What a `zdd run` now would deploy: the doctor checks the run that would happen. A state directory that
    // cannot be read is one of the problems the doctor reports: its steps are then checked as for a first deploy.
    let header = unbound.header();
    let target = match preview_target(header, None) {
        Ok(target) => target,
        // A state directory of a newer zdd is refused as every other command refuses it: this zdd cannot judge it.
        Err(refusal) if refusal.is_diagnostic() => return refusal.print(),
        Err(_) => match State::default().deploy_target(&header.slots, None) {
            Ok(target) => target,
            Err(e) => {
                return Refusal::new(exit::INVALID, format!("cannot decide what a run would deploy: {e}")).print();
            }
        },
    };
    let plan = match unbound.bind(&target, &kinds) {
        Ok(plan) => Arc::new(plan),
        Err(diags) => return report_diagnostics(&diags, unbound.sources()),
    };
    let state_dir = unbound.header().state_dir.clone();
    with_reporter(output, |report| async move {
        let (hosts, failed) = read_only_hosts(&plan).await;
        let unreachable: Vec<(String, String)> = failed.into_iter().map(|(h, e)| (h, e.to_string())).collect();
        let ctx = PreviewCtx { plan: plan.clone(), target, host: hosts.get(None), state_dir };
        let events = EventSink::to(report);
        let tally = doctor::run(DoctorInput {
            plan: &plan,
            plan_file: &args.plan,
            kinds: &kinds,
            ctx: &ctx,
            hosts: &hosts,
            unreachable: &unreachable,
            events: &events,
        })
        .await;
        if tally.problems == 0 { exit::OK } else { exit::INVALID }
    })
}
