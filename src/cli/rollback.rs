//! `zdd rollback`: put an earlier release back live, through the same steps as a deploy (kinds see
//! `target.rollback` and reuse what already exists), so it is zero-downtime too. The target is the newest stable
//! earlier release, never a bad one (`zdd_engine::state::State::rollback_target`); the releases passed over are
//! said as warnings before the run starts.

use super::run::{Intent, Launch, deploy};
use super::{OutputArgs, PlanArgs, StateArgs};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, output: &OutputArgs, lock_wait: Option<&str>) -> i32 {
    deploy(plan, state, Launch { output, jobs: None, stage: false }, Intent::Rollback, lock_wait)
}
