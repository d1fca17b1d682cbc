//! Executor overhead: 1,000 no-op steps in a wide graph (all independent) and a deep one (a chain), run by
//! the executor alone (journal in memory) and by a whole session (journal file with fsync'd lines, state
//! file, lock). Prints a table; not a test. Run: `cargo bench -p zdd-engine --bench executor` (or
//! `cargo test -p zdd-engine --bench executor` for an unoptimised build).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use zdd_engine::events::{EventSink, Outcome};
use zdd_engine::host::LocalHost;
use zdd_engine::journal::{Journal, RunMode};
use zdd_engine::kind::{DeployTarget, Kinds, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoCtx, UndoFacts};
use zdd_engine::lock::{DeployLock, LockOwner};
use zdd_engine::plan::{Fields, Plan, Retry, Step, StepId, StepPolicy};
use zdd_engine::redact::Redactor;
use zdd_engine::run::{Executor, Session};
use zdd_engine::schema::{Effect, KindSpec};
use zdd_engine::source::{FileId, SourceMap, Span};
use zdd_engine::state::StateDir;

const STEPS: usize = 1_000;

static NOOP: KindSpec =
    KindSpec { name: "noop", summary: "does nothing", fields: &[], effect: Effect::ReadOnly, undo: "nothing" };

/// A kind that does nothing at all: what remains is the executor's own cost.
struct Noop;

#[async_trait]
impl StepKind for Noop {
    fn spec(&self) -> &'static KindSpec {
        &NOOP
    }

    async fn preview(&self, _step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview::default())
    }

    async fn run(&self, _step: &Step, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

fn plan(deep: bool) -> Plan {
    let span = Span::new(FileId(0), 0, 0);
    let steps: Vec<Step> = (0..STEPS)
        .map(|i| Step {
            id: StepId(i),
            name: format!("step-{i:04}"),
            kind: "noop".into(),
            needs: if deep && i > 0 { vec![StepId(i - 1)] } else { vec![] },
            policy: StepPolicy { timeout: Duration::from_mins(1), retry: Retry::default() },
            fields: Fields { map: BTreeMap::new() },
            settings: zdd_engine::settings::StepSettings::default(),
            description: None,
            host: None,
            span,
        })
        .collect();
    Plan {
        name: "bench".into(),
        base_dir: PathBuf::from("/"),
        sources: SourceMap::new(),
        vars: vec![],
        slots: vec!["a".into(), "b".into()],
        state_dir: None,
        stable_after: zdd_engine::plan::DEFAULT_STABLE_AFTER,
        defaults: StepPolicy::default(),
        fleet: zdd_engine::plan::fleet::Fleet::default(),
        graph: zdd_engine::graph::StepGraph::build_from_steps(&steps),
        steps,
    }
}

fn kinds() -> Kinds {
    let mut kinds = Kinds::new();
    kinds.register(Arc::new(Noop));
    kinds
}

fn target() -> DeployTarget {
    DeployTarget { release: "bench".into(), slot: "a".into(), live_slot: None, live_release: None, rollback: false }
}

/// The executor alone: events drained by a task, journal in memory.
async fn executor_only(deep: bool, jobs: usize) -> Duration {
    let (events, mut rx) = EventSink::channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let exec = Executor {
        plan: Arc::new(plan(deep)),
        kinds: kinds(),
        hosts: zdd_engine::host::HostSet::local(Arc::new(LocalHost::new())),
        events,
        journal: Arc::new(Journal::in_memory()),
        redactor: Redactor::new(),
        state_dir: PathBuf::from("/nonexistent"),
        target: target(),
        jobs,
    };
    let started = Instant::now();
    let report = exec.run("bench", &CancellationToken::new()).await;
    let elapsed = started.elapsed();
    assert_eq!(report.outcome, Outcome::Deployed);
    drop(exec);
    let _ = drain.await;
    elapsed
}

/// A whole session: journal file, state file, lock.
async fn session(deep: bool, jobs: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = StateDir::prepare(&dir.path().join("state")).expect("state dir");
    let lock = DeployLock::acquire(state.path(), &LockOwner::current("bench"), None).expect("lock");
    let (report, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let session = Session {
        plan: Arc::new(plan(deep)),
        kinds: kinds(),
        hosts: zdd_engine::host::HostSet::local(Arc::new(LocalHost::new())),
        state,
        lock,
        redactor: Redactor::new(),
        report,
        jobs,
    };
    let started = Instant::now();
    let outcome = session.run(RunMode::Deploy, target(), &CancellationToken::new()).await.expect("session");
    let elapsed = started.elapsed();
    assert_eq!(outcome, Outcome::Deployed);
    let _ = drain.await;
    elapsed
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("executor overhead, {STEPS} no-op steps (best of 3)");
    println!("{:<6} {:>4}  {:<26} {:>10}", "graph", "jobs", "what", "time");
    for jobs in [zdd_engine::run::default_jobs(), 16] {
        for (graph, deep) in [("wide", false), ("deep", true)] {
            let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap_or_default();
            let alone = best(&|| runtime.block_on(executor_only(deep, jobs)));
            let whole = best(&|| runtime.block_on(session(deep, jobs)));
            for (what, took) in [("executor (memory journal)", alone), ("session (journal, state)", whole)] {
                println!("{graph:<6} {jobs:>4}  {what:<26} {:>8.1}ms", took.as_secs_f64() * 1e3);
            }
        }
    }
}
