//! A minimal runner for the step-kind tests: reads a plan with a fixed deploy target, runs its steps in `needs`
//! order on the local host (stopping at the first failure), and undoes them in reverse from the recorded facts.
//! The real executor (retries, timeouts, parallelism, journal) is tested elsewhere; this exercises the kinds.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use zdd_engine::events::{Event, EventSink, Stamped};
use zdd_engine::host::LocalHost;
use zdd_engine::kind::{DeployTarget, MemoryJournal, StepCtx, StepError, UndoCtx};
use zdd_engine::plan::{self, Plan, Runtime, TargetSource, VarInputs};
use zdd_engine::redact::Redactor;

pub(crate) fn target(release: &str, slot: &str, live: Option<(&str, &str)>) -> DeployTarget {
    DeployTarget {
        release: release.to_owned(),
        slot: slot.to_owned(),
        live_slot: live.map(|(s, _)| s.to_owned()),
        live_release: live.map(|(_, r)| r.to_owned()),
        rollback: false,
    }
}

/// Read and validate a plan for this target; panics with the rendered diagnostics if it is invalid.
pub(crate) fn read_plan(path: &Path, vars: &[String], target: &DeployTarget, state_dir: &Path) -> Arc<Plan> {
    let runtime = Runtime { state_dir: Some(state_dir), target: TargetSource::Fixed(target) };
    let read = plan::read(path, &VarInputs::cli(vars.iter().cloned()), &runtime, &zdd_steps::builtin());
    match read.result {
        Ok(plan) => Arc::new(plan),
        Err(d) => panic!("invalid plan {}:\n{}", path.display(), d.render(&read.sources, false)),
    }
}

/// One run of a plan's steps.
pub(crate) struct Run {
    pub plan: Arc<Plan>,
    pub target: DeployTarget,
    pub journal: Arc<MemoryJournal>,
    pub ran: Vec<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    receivers: Mutex<Vec<(String, UnboundedReceiver<Stamped>)>>,
    pub state_dir: PathBuf,
    pub redactor: Redactor,
}

impl Run {
    pub(crate) fn new(plan: Arc<Plan>, target: DeployTarget, state_dir: &Path) -> Self {
        let redactor = Redactor::new();
        plan.secrets().for_each(|s| redactor.add(s));
        Self {
            plan,
            target,
            journal: Arc::new(MemoryJournal::default()),
            ran: Vec::new(),
            log: Arc::new(Mutex::new(Vec::new())),
            receivers: Mutex::new(Vec::new()),
            state_dir: state_dir.to_path_buf(),
            redactor,
        }
    }

    pub(crate) fn ctx(&self, step: &str) -> StepCtx {
        let (events, rx) = EventSink::channel();
        self.receivers.lock().unwrap().push((step.to_owned(), rx));
        StepCtx {
            plan: self.plan.clone(),
            journal: self.journal.clone(),
            io: UndoCtx {
                step: step.to_owned(),
                target: self.target.clone(),
                host: Arc::new(LocalHost::new()),
                events,
                cancel: CancellationToken::new(),
                redactor: self.redactor.clone(),
                state_dir: self.state_dir.clone(),
            },
        }
    }

    /// Step names in an order that respects `needs`.
    pub(crate) fn order(&self) -> Vec<String> {
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.plan.steps.len() {
            let next = self
                .plan
                .steps
                .iter()
                .find(|s| !done.contains(&s.id.0) && s.needs.iter().all(|n| done.contains(&n.0)))
                .expect("acyclic plan");
            done.insert(next.id.0);
            order.push(next.name.clone());
        }
        order
    }

    /// Run every step (or up to and including `until`); the first failure is returned with the step's name.
    pub(crate) async fn run(&mut self, until: Option<&str>) -> Result<(), (String, StepError)> {
        let kinds = zdd_steps::builtin();
        for name in self.order() {
            let step = self.plan.step_by_name(&name).unwrap().clone();
            let kind = kinds.get(&step.kind).unwrap().clone();
            self.ran.push(name.clone());
            let ctx = self.ctx(&name);
            kind.run(&step, &ctx).await.map_err(|e| (name.clone(), e))?;
            if until == Some(name.as_str()) {
                break;
            }
        }
        Ok(())
    }

    /// Undo, in reverse order, every step that recorded facts (as the rollback does).
    pub(crate) async fn undo(&self) -> Result<(), (String, StepError)> {
        let kinds = zdd_steps::builtin();
        let facts = self.journal.facts.lock().unwrap().clone();
        for name in self.ran.iter().rev() {
            let Some(f) = facts.get(name) else { continue };
            let step = self.plan.step_by_name(name).unwrap().clone();
            let kind = kinds.get(&step.kind).unwrap().clone();
            // From the facts alone: the undo context has no plan.
            kind.undo(f, &self.ctx(name).undo_ctx()).await.map_err(|e| (name.clone(), e))?;
            // Undo is idempotent: a second pass (as `zdd recover` may do) changes nothing and succeeds.
            kind.undo(f, &self.ctx(name).undo_ctx()).await.map_err(|e| (format!("{name} (second undo)"), e))?;
        }
        Ok(())
    }

    /// Everything the steps reported so far (messages and output lines), in order per step.
    pub(crate) fn log_text(&self) -> String {
        let mut log = self.log.lock().unwrap();
        for (name, rx) in self.receivers.lock().unwrap().iter_mut() {
            while let Ok(stamped) = rx.try_recv() {
                log.push(match stamped.event {
                    Event::StepMessage { message, .. } => format!("[{name}] {message}"),
                    Event::StepOutput { line, .. } => format!("[{name}] | {line}"),
                    other => format!("[{name}] {other:?}"),
                });
            }
        }
        log.join("\n")
    }
}
