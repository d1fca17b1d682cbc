//! `zdd recover`: finish a run that was interrupted (zdd killed, CI runner lost) or whose rollback did not
//! complete: undo, from its journal alone and in the undo order of the graph it recorded, every step whose undo
//! facts are not undone yet.
//! Exit 0 when everything was undone (or there was nothing to do), 3 when some undo still fails.

use zdd_engine::events::Outcome;
use zdd_engine::run::interrupt_on_signals;

use zdd_engine::journal::Replay;
use zdd_engine::plan::Plan;

use super::run::{Intent, Prepared, Refusal, read_and_prepare, session, with_reporter};
use super::{OutputArgs, PlanArgs, StateArgs, exit};

pub(super) fn run(args: &PlanArgs, state: &StateArgs, output: &OutputArgs) -> i32 {
    let (plan, prepared) = match read_and_prepare(args, state, Intent::Recover, None) {
        Ok(p) => p,
        Err(r) => return r.print(),
    };
    if prepared.replay.is_none() {
        match zdd_engine::journal::staged(prepared.state.path()).ok().flatten() {
            Some(staged) => outln!(
                "nothing to recover; release {} is staged (run {}): `zdd promote {p}` moves the traffic to it, `zdd \
                 abort {p}` rolls it back",
                staged.header.target.release,
                staged.header.run_id,
                p = args.plan.display()
            ),
            None => outln!("nothing to recover: every run in the journal finished"),
        }
        return exit::OK;
    }
    undo_from_journal(plan, prepared, output, false)
}

/// `zdd recover`, and `zdd abort` (`abort`) of a staged run: undo the run `prepared` holds from its journal.
pub(super) fn undo_from_journal(plan: Plan, prepared: Prepared, output: &OutputArgs, abort: bool) -> i32 {
    with_reporter(output, |report| async move {
        // Installed so that Ctrl-C does not kill zdd in the middle of an undo: it is answered, and the undo goes on.
        let interrupt = match interrupt_on_signals(&report) {
            Ok(token) => token,
            Err(e) => return Refusal::new(exit::INVALID, format!("cannot watch for signals: {e}")).print(),
        };
        // The hosts the journal names too: the undo acts where each step ran, whatever the plan says now. A host
        // that cannot be reached fails its undos (exit 3, `zdd recover` again once it answers), not the others.
        let recorded = recorded_hosts(prepared.replay.as_ref());
        let (hosts, failed) = super::hosts::connect(&plan, &prepared.state, recorded.iter().map(String::as_str)).await;
        if !failed.is_empty() {
            eprintln!("zdd: cannot reach these hosts; their undos will fail:\n{}", super::hosts::describe(&failed));
        }
        let (session, _, replay) = session(plan, prepared, hosts, None, report);
        let Some(replay) = replay else { return exit::OK };
        let undone =
            if abort { session.abort(replay, &interrupt).await } else { session.recover(replay, &interrupt).await };
        match undone {
            Ok(Outcome::RollbackIncomplete) => exit::ROLLBACK_INCOMPLETE,
            Ok(Outcome::Committed) => exit::COMMITTED,
            Ok(_) => exit::OK,
            Err(e) => {
                eprintln!("zdd: {e}");
                exit::ROLLBACK_INCOMPLETE
            }
        }
    })
}

/// The hosts a journal's undo facts name: its undos act there, whatever the plan says now.
pub(super) fn recorded_hosts(replay: Option<&Replay>) -> Vec<String> {
    replay.iter().flat_map(|r| r.to_undo.iter().filter_map(|(_, undo)| undo.host.clone())).collect()
}
