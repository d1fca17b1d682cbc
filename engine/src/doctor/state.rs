//! The doctor's checks of the state directory: that zdd may use it (its mode and owner, a readable
//! `state.json`), that no dead run still names itself in the lock, and that no interrupted run waits for
//! `zdd recover`. Reads only: the lock is read, never probed with `flock` (see [`crate::lock::holder`]).

use std::path::Path;

use super::Check;
use crate::diag::Code;
use crate::state::{StateDir, StateError};
use crate::{journal, lock};

/// The state directory's checks, in the order a run meets them.
pub fn checks(dir: &Path, plan_file: &Path) -> Vec<Check> {
    if !dir.exists() {
        return vec![Check::ok(
            "state dir",
            format!("{} does not exist yet: the first `zdd run` creates it", dir.display()),
        )];
    }
    let mut checks = vec![state_dir(dir)];
    checks.push(lock_check(dir, plan_file));
    checks.push(journal_check(dir, plan_file));
    if let Some(check) = staged_check(dir, plan_file) {
        checks.push(check);
    }
    checks
}

/// Safe to use (0700-ish, ours) and its `state.json` readable.
fn state_dir(dir: &Path) -> Check {
    let problem = |e: StateError, fix: &str| Check::problem(Code::DoctorStateDir, "state dir", e.to_string(), fix);
    let opened = match StateDir::open(dir) {
        Ok(opened) => opened,
        Err(StateError::Unsafe { mode, .. }) => {
            return Check::problem(
                Code::DoctorStateDir,
                "state dir",
                format!(
                    "{} is writable by group or others (mode {mode:o}): they could change the journal `zdd recover` \
                     acts on, and every run refuses it",
                    dir.display()
                ),
                format!("`chmod 700 {}`", dir.display()),
            );
        }
        Err(e @ StateError::Foreign { .. }) => {
            return problem(e, &format!("`chown` {} to the user that deploys", dir.display()));
        }
        Err(e) => return problem(e, "check the directory's mode and owner"),
    };
    match opened.load() {
        Ok(state) => Check::ok(
            "state dir",
            match &state.live {
                Some(live) => format!("{}: release {} live in slot {}", dir.display(), live.release, live.slot),
                None => format!("{}: nothing deployed yet", dir.display()),
            },
        ),
        Err(e) => problem(
            e,
            "restore state.json from a backup, or move it away to start over (zdd then believes nothing is live)",
        ),
    }
}

/// Nobody holds the lock, or a run that is alive does; a lock naming a dead process of this host is stale.
fn lock_check(dir: &Path, plan_file: &Path) -> Check {
    let Some(owner) = lock::read_owner(&lock::lock_path(dir)) else {
        return Check::ok("lock", "free");
    };
    let plan = plan_file.display();
    if owner.host == lock::hostname() && !crate::host::local::pid_alive(owner.pid) {
        return Check::problem(
            Code::DoctorStaleLock,
            "lock",
            format!("the lock names {}, and that process is gone", owner.describe()),
            format!("`zdd unlock {plan}` clears it (the next run would take it over with a warning)"),
        );
    }
    Check::warning(
        Code::DoctorLockHeld,
        "lock",
        format!("held by {}: a run is going on now", owner.describe()),
        "let it finish, then run `zdd doctor` again: what it changes may change these checks",
    )
}

/// Every run in the journal finished.
fn journal_check(dir: &Path, plan_file: &Path) -> Check {
    match journal::unfinished(dir) {
        Ok(None) => Check::ok("journal", "every run finished"),
        Ok(Some(replay)) => {
            let h = &replay.header;
            Check::problem(
                Code::DoctorInterrupted,
                "journal",
                format!(
                    "run {} (release {}, by {} on {}) did not finish: its changes may still be in place",
                    h.run_id, h.target.release, h.user, h.host
                ),
                format!(
                    "`zdd recover {}` undoes them from the journal (`zdd run` refuses until then)",
                    plan_file.display()
                ),
            )
        }
        Err(e) => Check::problem(
            Code::DoctorInterrupted,
            "journal",
            format!("the journal in {} cannot be read: {e}", dir.display()),
            "check the state directory's mode and owner: zdd's user must be able to read it",
        ),
    }
}

/// A release staged by `zdd run --stage`: every other run is refused until it is promoted or aborted.
fn staged_check(dir: &Path, plan_file: &Path) -> Option<Check> {
    let replay = journal::staged(dir).ok().flatten()?;
    let (h, plan) = (&replay.header, plan_file.display());
    Some(Check::warning(
        Code::DoctorStaged,
        "staged",
        format!(
            "release {} is staged in slot {} (run {}, by {} on {}): `zdd run` and `zdd rollback` refuse until it is \
             promoted or aborted",
            h.target.release, h.target.slot, h.run_id, h.user, h.host
        ),
        format!("`zdd promote {plan}` moves the traffic to it; `zdd abort {plan}` rolls it back"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::CheckOutcome;
    use crate::lock::LockOwner;

    fn lock_outcome(pid: u32, host: String) -> (CheckOutcome, Option<Code>) {
        let dir = tempfile::tempdir().unwrap();
        let owner = LockOwner { host, pid, ..LockOwner::current("run") };
        std::fs::write(lock::lock_path(dir.path()), serde_json::to_string(&owner).unwrap()).unwrap();
        let check = lock_check(dir.path(), Path::new("plan.kdl"));
        (check.outcome, check.code)
    }

    #[test]
    fn a_lock_is_stale_only_when_its_holder_is_a_dead_process_of_this_host() {
        // This test's own process holds it: a run going on.
        let alive = lock_outcome(std::process::id(), lock::hostname());
        assert_eq!(alive, (CheckOutcome::Warning, Some(Code::DoctorLockHeld)));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert_eq!(lock_outcome(dead, lock::hostname()), (CheckOutcome::Problem, Some(Code::DoctorStaleLock)));
        // Another host's process cannot be seen from here: taken at its word.
        assert_eq!(lock_outcome(dead, "elsewhere".into()), (CheckOutcome::Warning, Some(Code::DoctorLockHeld)));
    }

    #[test]
    fn a_lock_file_without_an_owner_is_free() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(lock::lock_path(dir.path()), "").unwrap();
        assert_eq!(lock_check(dir.path(), Path::new("plan.kdl")).outcome, CheckOutcome::Ok);
    }
}
