//! `zdd history`: past runs, oldest first: release, slot, result, the release's mark (bad, stable), when, how
//! long, who, and under a run's line what its steps judged (a canary's verdicts). Marks are judged as `status`
//! judges them, without writing (see `zdd_engine::state`).

use std::time::SystemTime;

use zdd_engine::events::Outcome;
use zdd_engine::journal::RunMode;
use zdd_engine::report::human_ms;
use zdd_engine::state::{State, StateDir};

use super::run::{Refusal, header_of};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, json: bool) -> i32 {
    let header = match header_of(plan, state) {
        Ok(h) => h,
        Err(r) => return r.print(),
    };
    let dir = header.state_dir;
    let mut current = if dir.exists() {
        match StateDir::open(&dir).and_then(|s| s.load()) {
            Ok(s) => s,
            Err(e) => return Refusal::from(e).print(),
        }
    } else {
        State::default()
    };
    current.judge(SystemTime::now(), header.stable_after);
    if json {
        // Each run as `state.json` keeps it, with its release's mark now.
        let rows: Vec<serde_json::Value> = current
            .history
            .iter()
            .map(|h| {
                let mut row = serde_json::json!(h);
                row["mark"] = serde_json::json!(current.mark(&h.release));
                row
            })
            .collect();
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => outln!("{text}"),
            Err(e) => return Refusal::new(exit::INVALID, e.to_string()).print(),
        }
        return exit::OK;
    }
    if current.history.is_empty() {
        outln!("no runs yet ({})", dir.display());
        return exit::OK;
    }
    outln!(
        "{:<20}  {:<8}  {:<20}  {:<6}  {:<27}  {:<6}  {:>8}  WHO",
        "STARTED",
        "MODE",
        "RELEASE",
        "SLOT",
        "RESULT",
        "MARK",
        "DURATION"
    );
    for h in &current.history {
        let mode = match h.mode {
            RunMode::Deploy => "deploy",
            RunMode::Rollback => "rollback",
        };
        let result = match (h.outcome, &h.cut_over) {
            (Outcome::Deployed, _) => "deployed",
            (Outcome::RolledBack, None) => "rolled back",
            (Outcome::RolledBack, Some(_)) => "rolled back after cutover",
            (Outcome::RollbackIncomplete, _) => "ROLLBACK INCOMPLETE",
            (Outcome::Committed, _) => "committed, then failed",
        };
        let mark = current.mark(&h.release).unwrap_or("-");
        outln!(
            "{:<20}  {mode:<8}  {:<20}  {:<6}  {result:<27}  {mark:<6}  {:>8}  {}@{}",
            h.started,
            h.release,
            h.slot,
            human_ms(h.duration_ms),
            h.user,
            h.host
        );
        // A run that failed past its commit point left its release live: say what failed.
        if let (Outcome::Committed, Some(cause)) = (h.outcome, &h.cause) {
            outln!("    failed after the commit point: {cause}");
        }
        // What the run's steps judged (a canary's verdicts), under its line.
        for verdict in &h.verdicts {
            outln!("    {verdict}");
        }
    }
    exit::OK
}
