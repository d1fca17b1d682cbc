//! `zdd unlock`: clear the owner a run that is gone left in the deploy lock. A lock whose holder is still running
//! is refused (exit 4): stop that run instead.

use zdd_engine::lock::{self, LockError};
use zdd_engine::state::StateDir;

use super::run::{Refusal, state_dir_of};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs) -> i32 {
    let dir = match state_dir_of(plan, state) {
        Ok(d) => d,
        Err(r) => return r.print(),
    };
    // Unlocking writes the lock: a state directory a newer zdd wrote is refused first, and left as it is.
    if dir.exists()
        && let Err(e) = StateDir::open(&dir)
    {
        return Refusal::from(e).print();
    }
    match lock::unlock(&dir) {
        Ok(Some(owner)) => {
            outln!("cleared the deploy lock left by {}", owner.describe());
            exit::OK
        }
        Ok(None) => {
            outln!("the deploy lock of {} was not held", dir.display());
            exit::OK
        }
        Err(e @ LockError::Held { .. }) => {
            eprintln!("zdd: {e}; that process is still running: stop it rather than unlocking");
            exit::LOCKED
        }
        Err(e) => {
            eprintln!("zdd: {e}");
            exit::INVALID
        }
    }
}
