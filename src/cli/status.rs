//! `zdd status`: the live release and slot, the previous one, what `zdd rollback` would put back, the releases
//! marked bad, the lock holder, a release staged for `zdd promote`, and any run waiting for `zdd recover`.
//!
//! Stable releases are judged here as a run would judge them (see `zdd_engine::state`), without writing: the
//! state directory is only read.

use std::time::SystemTime;

use zdd_engine::state::{Deployed, State, StateDir};
use zdd_engine::{journal, lock};

use super::run::{Refusal, header_of};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, json: bool) -> i32 {
    let header = match header_of(plan, state) {
        Ok(h) => h,
        Err(r) => return r.print(),
    };
    let dir = header.state_dir.clone();
    let (mut current, holder, unfinished, staged) = if dir.exists() {
        let current = match StateDir::open(&dir).and_then(|state| state.load()) {
            Ok(c) => c,
            Err(e) => return Refusal::from(e).print(),
        };
        let holder = lock::holder(&dir).ok().flatten();
        let unfinished = journal::unfinished(&dir).ok().flatten().map(|r| r.header);
        let staged = journal::staged(&dir).ok().flatten().map(|r| r.header);
        (current, holder, unfinished, staged)
    } else {
        Default::default()
    };
    current.judge(SystemTime::now(), header.stable_after);
    let rollback = current.rollback_target(&header.slots);
    if json {
        let value = serde_json::json!({
            "state_dir": dir,
            "live": with_mark(&current, current.live.as_ref()),
            "previous": with_mark(&current, current.previous.as_ref()),
            "stable_after_ms": u64::try_from(header.stable_after.as_millis()).unwrap_or(u64::MAX),
            "releases": current.releases,
            "rollback_target": rollback.as_ref().ok().map(|c| serde_json::json!({
                "release": c.target.release,
                "stable": c.stable,
                "skipped": c.skipped,
            })),
            "lock": holder,
            "staged": staged.as_ref().map(|h| serde_json::json!({
                "run_id": h.run_id,
                "release": h.target.release,
                "slot": h.target.slot,
                "user": h.user,
                "host": h.host,
            })),
            "unfinished_run": unfinished,
        });
        outln!("{value:#}");
        return exit::OK;
    }
    outln!("state dir: {}", dir.display());
    match &current.live {
        Some(l) => outln!("live:      release {} in slot {} (since {}), {}", l.release, l.slot, l.since, {
            live_mark(&current, l, header.stable_after)
        }),
        None => outln!("live:      nothing deployed yet"),
    }
    match &current.previous {
        Some(p) => {
            let mark = current.mark(&p.release).map(|m| format!(", {m}")).unwrap_or_default();
            outln!("previous:  release {} in slot {}{mark}", p.release, p.slot);
        }
        None => outln!("previous:  none"),
    }
    match &rollback {
        Ok(c) if c.stable => outln!("rollback:  `zdd rollback` puts back release {} (stable)", c.target.release),
        Ok(c) => outln!(
            "rollback:  `zdd rollback` puts back release {} (not stable: no earlier release is)",
            c.target.release
        ),
        Err(_) if current.live.is_none() => {}
        Err(e) => outln!("rollback:  {e}"),
    }
    for (release, marks) in &current.releases {
        if let Some(bad) = &marks.bad {
            outln!("bad:       release {release}: {} (`zdd rollback` passes over it)", bad.describe());
        }
    }
    match &holder {
        Some(h) => outln!("lock:      held by {}", h.describe()),
        None => outln!("lock:      free"),
    }
    if let Some(h) = &staged {
        let plan = plan.plan.display();
        outln!(
            "staged:    release {} in slot {} (run {}, by {} on {}), healthy beside the live release: `zdd promote \
             {plan}` moves the traffic to it, `zdd abort {plan}` rolls it back",
            h.target.release,
            h.target.slot,
            h.run_id,
            h.user,
            h.host,
        );
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

/// A live or previous release as JSON, with its `mark` (`bad`, `stable` or null).
fn with_mark(state: &State, deployed: Option<&Deployed>) -> serde_json::Value {
    let Some(deployed) = deployed else { return serde_json::Value::Null };
    let mut value = serde_json::json!(deployed);
    value["mark"] = serde_json::json!(state.mark(&deployed.release));
    value
}

/// "stable since T", "marked bad", or when it becomes stable if it goes on serving.
fn live_mark(state: &State, live: &Deployed, stable_after: std::time::Duration) -> String {
    if let Some(stable) = state.releases.get(&live.release).and_then(|m| m.stable.as_ref()) {
        return format!("stable since {}", stable.since);
    }
    if state.bad(&live.release).is_some() {
        return "marked bad".to_owned();
    }
    match state.live_stable_at(stable_after) {
        Some(at) => format!("not stable yet: stable at {at} if it goes on serving"),
        None => "not stable yet".to_owned(),
    }
}
