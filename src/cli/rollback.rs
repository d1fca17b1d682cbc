//! `zdd rollback`: put the previous release back live, through the same steps as a deploy (kinds see
//! `target.rollback` and reuse what already exists), so it is zero-downtime too.

use super::run::{Intent, Launch, deploy};
use super::{OutputArgs, PlanArgs, StateArgs};

pub(super) fn run(plan: &PlanArgs, state: &StateArgs, output: &OutputArgs, lock_wait: Option<&str>) -> i32 {
    deploy(plan, state, Launch { output, jobs: None }, Intent::Rollback, lock_wait)
}
