//! The pure scheduling core: which steps may start now, given what has finished.
//!
//! No tokio and no clock: the runner feeds completions in and asks what to start, so every ordering rule
//! (needs first, at most `limit` at once, nothing new after the first failure, declaration order among ready
//! steps) is decided here and unit-tested without running anything.

use std::collections::BTreeSet;

use crate::plan::StepId;

/// Where a step is in the schedule. (Not `Slot`: a slot is where an instance of the app runs.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Some need has not succeeded yet.
    Waiting,
    /// Every need succeeded; may start when there is room.
    Ready,
    Running,
    Succeeded,
    Failed,
    /// Will not start: the run is stopping.
    Skipped,
    /// Will not start in this run: a staged run (`zdd run --stage`) holds the cutover and what follows it for
    /// `zdd promote`.
    Held,
}

/// The scheduling state of one run.
#[derive(Debug, Clone)]
pub struct Scheduler {
    phases: Vec<Phase>,
    /// Number of needs of each step that have not succeeded yet.
    unmet: Vec<usize>,
    /// The steps that need each step.
    dependents: Vec<Vec<StepId>>,
    /// Ready steps, lowest declaration index first (deterministic order).
    ready: BTreeSet<StepId>,
    running: usize,
    limit: usize,
    stopping: bool,
}

impl Scheduler {
    /// `needs[i]` are the steps step `i` needs; `limit` is how many may run at once (at least 1).
    pub fn new(needs: &[Vec<StepId>], limit: usize) -> Self {
        let n = needs.len();
        let mut dependents = vec![Vec::new(); n];
        let mut unmet = vec![0; n];
        for (i, step_needs) in needs.iter().enumerate() {
            let distinct: BTreeSet<StepId> = step_needs.iter().copied().filter(|need| need.0 < n).collect();
            unmet[i] = distinct.len();
            for need in distinct {
                dependents[need.0].push(StepId(i));
            }
        }
        let ready: BTreeSet<StepId> = (0..n).filter(|&i| unmet[i] == 0).map(StepId).collect();
        let phases = (0..n).map(|i| if unmet[i] == 0 { Phase::Ready } else { Phase::Waiting }).collect();
        Self { phases, unmet, dependents, ready, running: 0, limit: limit.max(1), stopping: false }
    }

    /// Steps that succeeded in the staged part of this run (`zdd promote`): they count as succeeded without
    /// starting. `done` must hold the needs of each of its steps, as a run that got that far leaves it.
    pub fn already_succeeded(&mut self, done: &BTreeSet<StepId>) {
        // In waves: a step is ready once the steps it needs are marked.
        loop {
            let marked: Vec<StepId> = self.ready.iter().copied().filter(|id| done.contains(id)).collect();
            if marked.is_empty() {
                break;
            }
            for id in marked {
                self.ready.remove(&id);
                self.phases[id.0] = Phase::Running;
                self.running += 1;
                self.finish(id, true);
            }
        }
    }

    /// Hold `held` and every step after them (`zdd run --stage`): they never start in this run, and the run is
    /// done when everything else is.
    pub fn hold(&mut self, held: &BTreeSet<StepId>) {
        let mut queue: Vec<StepId> = held.iter().copied().collect();
        while let Some(id) = queue.pop() {
            if self.phases.get(id.0).is_none_or(|p| *p == Phase::Held) {
                continue;
            }
            self.ready.remove(&id);
            self.phases[id.0] = Phase::Held;
            queue.extend(self.dependents[id.0].iter().copied());
        }
    }

    /// The steps held for `zdd promote`, in declaration order.
    pub fn held(&self) -> Vec<StepId> {
        (0..self.phases.len()).filter(|&i| self.phases[i] == Phase::Held).map(StepId).collect()
    }

    /// The steps to start now (marked running), in declaration order. Empty once the run is stopping.
    pub fn start_next(&mut self) -> Vec<StepId> {
        let mut started = Vec::new();
        while !self.stopping && self.running < self.limit {
            let Some(id) = self.ready.pop_first() else { break };
            self.phases[id.0] = Phase::Running;
            self.running += 1;
            started.push(id);
        }
        started
    }

    /// A running step finished. A failure stops the run: nothing new starts.
    pub fn finish(&mut self, id: StepId, succeeded: bool) {
        if self.phases.get(id.0) != Some(&Phase::Running) {
            return;
        }
        self.running -= 1;
        if !succeeded {
            self.phases[id.0] = Phase::Failed;
            self.stop();
            return;
        }
        self.phases[id.0] = Phase::Succeeded;
        for dependent in self.dependents[id.0].clone() {
            self.unmet[dependent.0] -= 1;
            if self.unmet[dependent.0] == 0 && self.phases[dependent.0] == Phase::Waiting {
                if self.stopping {
                    self.phases[dependent.0] = Phase::Skipped;
                } else {
                    self.phases[dependent.0] = Phase::Ready;
                    self.ready.insert(dependent);
                }
            }
        }
    }

    /// Start nothing new (a failure, or an interrupt): every step not started is skipped.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.ready.clear();
        for phase in &mut self.phases {
            // A held step is skipped too: the run failed before it could be promoted.
            if matches!(phase, Phase::Waiting | Phase::Ready | Phase::Held) {
                *phase = Phase::Skipped;
            }
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Number of steps running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Nothing is running and nothing more will start.
    pub fn is_done(&self) -> bool {
        self.running == 0 && (self.stopping || self.ready.is_empty())
    }

    pub fn phase(&self, id: StepId) -> Phase {
        self.phases[id.0]
    }

    /// Steps that never started, in declaration order (after a failure; or steps stuck behind a cycle).
    pub fn not_started(&self) -> Vec<StepId> {
        (0..self.phases.len())
            .filter(|&i| matches!(self.phases[i], Phase::Waiting | Phase::Ready | Phase::Skipped))
            .map(StepId)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ids(v: &[usize]) -> Vec<StepId> {
        v.iter().copied().map(StepId).collect()
    }

    fn needs(spec: &[&[usize]]) -> Vec<Vec<StepId>> {
        spec.iter().map(|n| ids(n)).collect()
    }

    /// Runs the schedule to its end, every step succeeding; returns the order the steps started in.
    fn drain(s: &mut Scheduler) -> Vec<StepId> {
        let mut order = Vec::new();
        while !s.is_done() {
            let started = s.start_next();
            for id in &started {
                s.finish(*id, true);
            }
            order.extend(started);
        }
        order
    }

    /// a -> b -> switch -> smoke, with d beside b: staging holds the switch and the smoke after it.
    #[test]
    fn a_staged_run_holds_the_cutover_and_everything_after_it() {
        let mut s = Scheduler::new(&needs(&[&[], &[0], &[1, 4], &[2], &[0]]), 2);
        s.hold(&[StepId(2)].into());
        assert_eq!(drain(&mut s), ids(&[0, 1, 4]));
        assert_eq!(s.held(), ids(&[2, 3]));
        assert!(s.not_started().is_empty(), "held steps are not skipped ones");
    }

    #[test]
    fn a_failure_in_a_staged_run_skips_the_held_steps() {
        let mut s = Scheduler::new(&needs(&[&[], &[0], &[1]]), 1);
        s.hold(&[StepId(2)].into());
        let started = s.start_next();
        s.finish(started[0], false);
        assert!(s.is_done());
        assert_eq!(s.not_started(), ids(&[1, 2]));
        assert!(s.held().is_empty());
    }

    /// Promoting: what the staged part ran counts as succeeded, and only the held steps start.
    #[test]
    fn a_promoted_run_starts_only_what_the_stage_held() {
        let mut s = Scheduler::new(&needs(&[&[], &[0], &[1, 4], &[2], &[0]]), 2);
        s.already_succeeded(&[StepId(0), StepId(1), StepId(4)].into());
        assert_eq!(s.phase(StepId(4)), Phase::Succeeded);
        assert_eq!(drain(&mut s), ids(&[2, 3]));
    }

    #[test]
    fn independent_steps_start_together_up_to_the_limit() {
        let mut s = Scheduler::new(&needs(&[&[], &[], &[], &[]]), 2);
        assert_eq!(s.start_next(), ids(&[0, 1]));
        assert_eq!(s.start_next(), ids(&[]));
        s.finish(StepId(1), true);
        assert_eq!(s.start_next(), ids(&[2]));
        s.finish(StepId(0), true);
        assert_eq!(s.start_next(), ids(&[3]));
        s.finish(StepId(2), true);
        assert!(!s.is_done());
        s.finish(StepId(3), true);
        assert!(s.is_done());
        assert!(s.not_started().is_empty());
    }

    #[test]
    fn a_step_waits_for_all_its_needs() {
        // 0 -> 2, 1 -> 2, 2 -> 3
        let mut s = Scheduler::new(&needs(&[&[], &[], &[0, 1], &[2]]), 8);
        assert_eq!(s.start_next(), ids(&[0, 1]));
        s.finish(StepId(0), true);
        assert_eq!(s.start_next(), ids(&[]));
        s.finish(StepId(1), true);
        assert_eq!(s.start_next(), ids(&[2]));
        s.finish(StepId(2), true);
        assert_eq!(s.start_next(), ids(&[3]));
        s.finish(StepId(3), true);
        assert!(s.is_done());
    }

    #[test]
    fn duplicate_needs_count_once() {
        let mut s = Scheduler::new(&needs(&[&[], &[0, 0]]), 2);
        assert_eq!(s.start_next(), ids(&[0]));
        s.finish(StepId(0), true);
        assert_eq!(s.start_next(), ids(&[1]));
    }

    #[test]
    fn nothing_new_starts_after_the_first_failure() {
        let mut s = Scheduler::new(&needs(&[&[], &[], &[], &[0]]), 2);
        assert_eq!(s.start_next(), ids(&[0, 1]));
        s.finish(StepId(1), false);
        assert!(s.is_stopping());
        assert_eq!(s.start_next(), ids(&[]));
        assert!(!s.is_done(), "step 0 still runs and must be drained");
        s.finish(StepId(0), true);
        assert_eq!(s.start_next(), ids(&[]));
        assert!(s.is_done());
        assert_eq!(s.not_started(), ids(&[2, 3]));
        assert_eq!(s.phase(StepId(3)), Phase::Skipped);
        assert_eq!(s.phase(StepId(1)), Phase::Failed);
    }

    #[test]
    fn stop_from_outside_skips_the_rest() {
        let mut s = Scheduler::new(&needs(&[&[], &[0]]), 2);
        assert_eq!(s.start_next(), ids(&[0]));
        s.stop();
        s.finish(StepId(0), true);
        assert_eq!(s.start_next(), ids(&[]));
        assert_eq!(s.phase(StepId(1)), Phase::Skipped);
        assert!(s.is_done());
    }

    #[test]
    fn completions_of_unknown_or_not_running_steps_are_ignored() {
        let mut s = Scheduler::new(&needs(&[&[]]), 1);
        s.finish(StepId(0), true);
        s.finish(StepId(7), false);
        assert!(!s.is_stopping());
        assert_eq!(s.start_next(), ids(&[0]));
    }

    #[test]
    fn empty_plan_is_done() {
        let mut s = Scheduler::new(&[], 4);
        assert!(s.start_next().is_empty());
        assert!(s.is_done());
    }

    #[test]
    fn a_cycle_never_starts_and_is_reported_as_not_started() {
        let mut s = Scheduler::new(&needs(&[&[1], &[0]]), 2);
        assert!(s.start_next().is_empty());
        assert!(s.is_done());
        assert_eq!(s.not_started(), ids(&[0, 1]));
    }

    /// Random DAGs (each step needs only earlier ones) and random completion orders.
    fn dag() -> impl Strategy<Value = (Vec<Vec<StepId>>, usize, Vec<u32>, Option<usize>)> {
        (1usize..30)
            .prop_flat_map(|n| {
                let needs = (0..n)
                    .map(|i| {
                        proptest::collection::vec(0..i.max(1), 0..3.min(i + 1))
                            .prop_map(move |v| if i == 0 { vec![] } else { v })
                    })
                    .collect::<Vec<_>>();
                (needs, 1usize..5, proptest::collection::vec(any::<u32>(), 64), proptest::option::of(0..n))
            })
            .prop_map(|(needs, limit, picks, fail)| {
                let needs = needs.into_iter().map(|v| v.into_iter().map(StepId).collect()).collect();
                (needs, limit, picks, fail)
            })
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_completion_order((needs, limit, picks, fail) in dag()) {
            let mut s = Scheduler::new(&needs, limit);
            let mut running: Vec<StepId> = Vec::new();
            let mut succeeded: BTreeSet<StepId> = BTreeSet::new();
            let mut started: BTreeSet<StepId> = BTreeSet::new();
            let mut failed_seen = false;
            let mut pick = picks.iter().cycle();
            loop {
                let new = s.start_next();
                prop_assert!(!failed_seen || new.is_empty(), "started after a failure");
                for id in &new {
                    prop_assert!(started.insert(*id), "started twice");
                    for need in &needs[id.0] {
                        prop_assert!(succeeded.contains(need), "started before its need");
                    }
                }
                running.extend(new);
                prop_assert!(running.len() <= limit);
                prop_assert_eq!(running.len(), s.running());
                if running.is_empty() {
                    prop_assert!(s.is_done());
                    break;
                }
                let index = *pick.next().unwrap() as usize % running.len();
                let id = running.swap_remove(index);
                let ok = fail != Some(id.0);
                failed_seen |= !ok;
                if ok {
                    succeeded.insert(id);
                }
                s.finish(id, ok);
            }
            if fail.is_none() {
                prop_assert_eq!(started.len(), needs.len());
            }
            prop_assert_eq!(started.len() + s.not_started().len(), needs.len());
        }
    }
}
