//! `zdd history`: past runs, oldest first: release, slot, result, when, how long, who.

use zdd_engine::events::Outcome;
use zdd_engine::journal::RunMode;
use zdd_engine::report::human_ms;
use zdd_engine::state::StateDir;

use super::run::{Refusal, state_dir_of};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, json: bool) -> i32 {
    let dir = match state_dir_of(plan, state) {
        Ok(d) => d,
        Err(r) => return r.print(),
    };
    let history = if dir.exists() {
        match StateDir::open(&dir).and_then(|s| s.load()) {
            Ok(s) => s.history,
            Err(e) => return Refusal::from(e).print(),
        }
    } else {
        Vec::new()
    };
    if json {
        match serde_json::to_string_pretty(&history) {
            Ok(text) => outln!("{text}"),
            Err(e) => return Refusal::new(exit::INVALID, e.to_string()).print(),
        }
        return exit::OK;
    }
    if history.is_empty() {
        outln!("no runs yet ({})", dir.display());
        return exit::OK;
    }
    outln!(
        "{:<20}  {:<8}  {:<20}  {:<6}  {:<19}  {:>8}  WHO",
        "STARTED",
        "MODE",
        "RELEASE",
        "SLOT",
        "RESULT",
        "DURATION"
    );
    for h in &history {
        let mode = match h.mode {
            RunMode::Deploy => "deploy",
            RunMode::Rollback => "rollback",
        };
        let result = match h.outcome {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack => "rolled back",
            Outcome::RollbackIncomplete => "ROLLBACK INCOMPLETE",
        };
        outln!(
            "{:<20}  {mode:<8}  {:<20}  {:<6}  {result:<19}  {:>8}  {}@{}",
            h.started,
            h.release,
            h.slot,
            human_ms(h.duration_ms),
            h.user,
            h.host
        );
    }
    exit::OK
}
