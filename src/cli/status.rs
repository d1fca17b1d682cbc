//! `zdd status`: the live release and slot, the previous one, the lock holder, and any run waiting for
//! `zdd recover`.

use zdd_engine::{journal, lock, state::StateDir};

use super::run::{Refusal, state_dir_of};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, json: bool) -> i32 {
    let dir = match state_dir_of(plan, state) {
        Ok(d) => d,
        Err(r) => return r.print(),
    };
    let (current, holder, unfinished) = if dir.exists() {
        let current = match StateDir::open(&dir).and_then(|state| state.load()) {
            Ok(c) => c,
            Err(e) => return Refusal::from(e).print(),
        };
        let holder = lock::holder(&dir).ok().flatten();
        let unfinished = journal::unfinished(&dir).ok().flatten().map(|r| r.header);
        (current, holder, unfinished)
    } else {
        Default::default()
    };
    if json {
        let value = serde_json::json!({
            "state_dir": dir,
            "live": current.live,
            "previous": current.previous,
            "lock": holder,
            "unfinished_run": unfinished,
        });
        outln!("{value:#}");
        return exit::OK;
    }
    outln!("state dir: {}", dir.display());
    match &current.live {
        Some(l) => outln!("live:      release {} in slot {} (since {})", l.release, l.slot, l.since),
        None => outln!("live:      nothing deployed yet"),
    }
    match &current.previous {
        Some(p) => outln!("previous:  release {} in slot {} (`zdd rollback` puts it back)", p.release, p.slot),
        None => outln!("previous:  none"),
    }
    match &holder {
        Some(h) => outln!("lock:      held by {}", h.describe()),
        None => outln!("lock:      free"),
    }
    if let Some(h) = &unfinished {
        outln!(
            "attention: run {} (release {}, by {} on {}) did not finish; run `zdd recover {}`",
            h.run_id,
            h.target.release,
            h.user,
            h.host,
            plan.plan.display()
        );
    }
    exit::OK
}
