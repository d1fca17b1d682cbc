//! Executor tests with a scripted kind on plans built in code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Outcome, Stamped, StepState};
use crate::host::LocalHost;
use crate::journal::Journal;
use crate::kind::{
    DeployTarget, Kinds, Preview, PreviewCtx, RecordedUndo, StepCtx, StepError, StepKind, UndoCtx, UndoFacts,
};
use crate::plan::{FieldValue, Fields, Plan, Retry, Step, StepId, StepPolicy, Value};
use crate::redact::Redactor;
use crate::schema::{Effect, KindSpec};
use crate::source::{FileId, SourceMap, Span};

use super::Executor;

/// What a scripted step does, from its fields.
// One flag per scripted behaviour, set independently by the tests' plans.
#[allow(clippy::struct_excessive_bools)]
#[derive(Default)]
struct Script {
    sleep: Duration,
    /// Fail this many attempts before succeeding.
    fail_times: i64,
    fatal: bool,
    /// Record undo facts before running.
    undoable: bool,
    undo_fails: bool,
    panics: bool,
}

fn script(step: &Step) -> Script {
    Script {
        sleep: step.fields.duration("sleep").unwrap_or_default(),
        fail_times: step.fields.int("fail-times").unwrap_or(0),
        fatal: step.fields.bool("fatal").unwrap_or(false),
        undoable: step.fields.bool("undoable").unwrap_or(true),
        undo_fails: step.fields.bool("undo-fails").unwrap_or(false),
        panics: step.fields.bool("panics").unwrap_or(false),
    }
}

static SPEC: KindSpec =
    KindSpec { name: "scripted", summary: "test", fields: &[], effect: Effect::Reversible, undo: "test" };

/// A kind whose behaviour each step scripts; it logs what happens.
#[derive(Default)]
struct Scripted {
    log: Mutex<Vec<String>>,
    attempts: Mutex<BTreeMap<String, i64>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Scripted {
    fn log(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl StepKind for Scripted {
    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    async fn preview(&self, _step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview::default())
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        let s = script(step);
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(step.name.clone()).or_default();
            *n += 1;
            *n
        };
        if s.undoable {
            ctx.record_undo(serde_json::json!({ "step": step.name, "undo_fails": s.undo_fails })).await?;
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.log(format!("start {}", step.name));
        let result = tokio::select! {
            () = tokio::time::sleep(s.sleep) => Ok(()),
            () = ctx.cancel.cancelled() => Err(StepError::Cancelled),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result?;
        assert!(!s.panics, "scripted panic");
        if s.fatal {
            return Err(StepError::fatal("refused"));
        }
        if attempt <= s.fail_times {
            return Err(StepError::failed(format!("attempt {attempt} failed")));
        }
        self.log(format!("end {}", step.name));
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        assert_eq!(facts["step"], ctx.step.as_str());
        self.log(format!("undo {}", ctx.step));
        if facts["undo_fails"] == true { Err(StepError::failed("undo broke")) } else { Ok(()) }
    }
}

/// A step: name, needs (by index), fields.
fn step(id: usize, name: &str, needs: &[usize], fields: &[(&str, Value)]) -> Step {
    let span = Span::new(FileId(0), 0, 0);
    let mut map = BTreeMap::new();
    for (k, v) in fields {
        map.insert((*k).to_owned(), vec![FieldValue { value: Some(v.clone()), props: BTreeMap::new(), span }]);
    }
    Step {
        id: StepId(id),
        name: name.to_owned(),
        kind: "scripted".to_owned(),
        needs: needs.iter().copied().map(StepId).collect(),
        policy: StepPolicy {
            timeout: Duration::from_secs(5),
            retry: Retry { attempts: 1, backoff: Duration::from_millis(10), jitter: Duration::from_millis(5) },
        },
        fields: Fields { map },
        settings: crate::settings::StepSettings::default(),
        description: None,
        host: None,
        span,
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        name: "test".into(),
        base_dir: PathBuf::from("/"),
        sources: SourceMap::new(),
        vars: Vec::new(),
        slots: vec!["a".into(), "b".into()],
        state_dir: None,
        stable_after: crate::plan::DEFAULT_STABLE_AFTER,
        defaults: StepPolicy::default(),
        fleet: crate::plan::fleet::Fleet::default(),
        graph: crate::graph::StepGraph::build_from_steps(&steps),
        steps,
    }
}

fn ms(n: u64) -> Value {
    Value::Duration(Duration::from_millis(n))
}

struct Harness {
    kind: Arc<Scripted>,
    exec: Executor,
    events: tokio::sync::mpsc::UnboundedReceiver<Stamped>,
}

fn harness(steps: Vec<Step>, jobs: usize) -> Harness {
    let kind = Arc::new(Scripted::default());
    let mut kinds = Kinds::new();
    kinds.register(kind.clone());
    let (sink, events) = EventSink::channel();
    let exec = Executor {
        plan: Arc::new(plan(steps)),
        kinds,
        hosts: crate::host::HostSet::local(Arc::new(LocalHost::new())),
        events: sink,
        journal: Arc::new(Journal::in_memory()),
        redactor: Redactor::new(),
        state_dir: PathBuf::from("/nonexistent"),
        target: DeployTarget {
            release: "r1".into(),
            slot: "a".into(),
            live_slot: None,
            live_release: None,
            rollback: false,
        },
        jobs,
    };
    Harness { kind, exec, events }
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s.event);
    }
    out
}

/// Each step's final state, in declaration order (the summary itself lists them in the order they finished).
fn states(plan: &Plan, report: &super::RunReport) -> Vec<(String, StepState)> {
    let mut states: Vec<(String, StepState)> = report.summary.iter().map(|s| (s.step.clone(), s.state)).collect();
    states.sort_by_key(|(name, _)| plan.step_by_name(name).map_or(usize::MAX, |s| s.id.0));
    states
}

#[tokio::test]
async fn independent_steps_run_in_parallel_within_the_job_limit() {
    let steps = (0..6).map(|i| step(i, &format!("s{i}"), &[], &[("sleep", ms(100))])).collect();
    let h = harness(steps, 3);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::Deployed);
    assert_eq!(h.kind.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn needs_order_the_steps() {
    let steps = vec![step(0, "a", &[], &[("sleep", ms(30))]), step(1, "b", &[0], &[]), step(2, "c", &[1, 0], &[])];
    let h = harness(steps, 4);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::Deployed);
    assert_eq!(h.kind.lines(), ["start a", "end a", "start b", "end b", "start c", "end c"]);
}

#[tokio::test]
async fn a_flaky_step_succeeds_on_its_third_attempt() {
    let mut flaky = step(0, "flaky", &[], &[("fail-times", Value::Int(2))]);
    flaky.policy.retry.attempts = 3;
    let mut h = harness(vec![flaky], 2);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::Deployed);
    assert_eq!(report.summary[0].attempts, 3);
    let retries: Vec<(u32, String)> = drain(&mut h.events)
        .into_iter()
        .filter_map(|e| match e {
            Event::StepRetrying { attempt, cause, .. } => Some((attempt, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![(2, "attempt 1 failed".to_owned()), (3, "attempt 2 failed".to_owned())]);
}

#[tokio::test]
async fn a_fatal_error_is_not_retried() {
    let mut s = step(0, "migrate", &[], &[("fatal", Value::Bool(true))]);
    s.policy.retry.attempts = 5;
    let h = harness(vec![s], 2);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.summary[0].attempts, 1);
    assert_eq!(report.outcome, Outcome::RolledBack);
}

#[tokio::test]
async fn a_timeout_cancels_the_step_and_is_reported_as_timed_out() {
    let mut slow = step(0, "slow", &[], &[("sleep", ms(10_000))]);
    slow.policy.timeout = Duration::from_millis(100);
    let h = harness(vec![slow], 2);
    let started = std::time::Instant::now();
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let forward_state = h.kind.lines();
    assert_eq!(forward_state, ["start slow", "undo slow"]);
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(report.stopped.as_deref().unwrap().contains("timed out after 100ms"), "{:?}", report.stopped);
}

#[tokio::test]
async fn failure_stops_new_starts_cancels_the_rest_and_undoes_in_the_graphs_undo_order() {
    let steps = vec![
        step(0, "first", &[], &[]),
        step(1, "quick", &[0], &[("sleep", ms(10))]),
        step(2, "medium", &[0], &[("sleep", ms(60))]),
        step(3, "long", &[0], &[("sleep", ms(10_000))]),
        step(4, "broken", &[0], &[("sleep", ms(120)), ("fail-times", Value::Int(1))]),
        step(5, "after", &[1, 2, 3, 4], &[]),
        step(6, "readonly", &[0], &[("undoable", Value::Bool(false))]),
    ];
    let h = harness(steps, 8);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    let undo: Vec<String> = h.kind.lines().into_iter().filter(|l| l.starts_with("undo")).collect();
    // quick, medium, long (cancelled) and broken (failed) all need `first` and nothing else ran after them:
    // they are undone together, in any order, and `first` after all of them.
    let mut together = undo[..4].to_vec();
    together.sort();
    assert_eq!(together, ["undo broken", "undo long", "undo medium", "undo quick"]);
    assert_eq!(undo[4..], ["undo first"]);
    let states = states(&h.exec.plan, &report);
    assert_eq!(states[5], ("after".to_owned(), StepState::Skipped));
    assert_eq!(states[6], ("readonly".to_owned(), StepState::Succeeded));
    assert!(states[..5].iter().all(|(_, s)| *s == StepState::RolledBack), "{states:?}");
}

#[tokio::test]
async fn a_failing_undo_is_retried_then_reported_and_the_rest_still_undone() {
    let steps = vec![
        step(0, "a", &[], &[]),
        step(1, "b", &[0], &[("undo-fails", Value::Bool(true))]),
        step(2, "c", &[1], &[("fail-times", Value::Int(1))]),
    ];
    let mut steps = steps;
    steps[1].policy.retry.attempts = 2;
    let h = harness(steps, 2);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::RollbackIncomplete);
    let undo: Vec<String> = h.kind.lines().into_iter().filter(|l| l.starts_with("undo")).collect();
    assert_eq!(undo, ["undo c", "undo b", "undo b", "undo a"]);
    let rollback = report.rollback.clone().unwrap();
    assert_eq!(rollback.failed.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(states(&h.exec.plan, &report)[1].1, StepState::RollbackFailed);
}

#[tokio::test]
async fn an_interrupt_cancels_running_steps_and_rolls_back() {
    let steps = vec![step(0, "a", &[], &[]), step(1, "b", &[0], &[("sleep", ms(10_000))]), step(2, "c", &[1], &[])];
    let h = harness(steps, 2);
    let interrupt = CancellationToken::new();
    let fire = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fire.cancel();
    });
    let report = h.exec.run("run", &interrupt).await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(h.kind.lines(), ["start a", "end a", "start b", "undo b", "undo a"]);
    assert_eq!(states(&h.exec.plan, &report)[2].1, StepState::Skipped);
}

#[tokio::test]
async fn many_noop_steps_finish_quickly() {
    let steps = (0..300).map(|i| step(i, &format!("s{i}"), if i == 0 { &[] } else { &[0] }, &[])).collect();
    let h = harness(steps, 4);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::Deployed);
    assert_eq!(report.summary.len(), 300);
}

#[tokio::test]
async fn a_panicking_kind_fails_its_step_and_the_run_rolls_back() {
    let steps =
        vec![step(0, "a", &[], &[]), step(1, "boom", &[0], &[("panics", Value::Bool(true))]), step(2, "c", &[1], &[])];
    let h = harness(steps, 2);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(report.stopped.as_deref().unwrap().contains("panicked"), "{:?}", report.stopped);
    let undo: Vec<String> = h.kind.lines().into_iter().filter(|l| l.starts_with("undo")).collect();
    assert_eq!(undo, ["undo boom", "undo a"]);
    assert_eq!(states(&h.exec.plan, &report)[2].1, StepState::Skipped);
}

#[tokio::test]
async fn a_run_whose_result_cannot_be_recorded_stays_unfinished_for_recover() {
    use crate::journal::{self, RunMode};
    use crate::lock::{DeployLock, LockOwner};
    use crate::state::StateDir;

    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::prepare(dir.path()).unwrap();
    // `state.json` cannot be read (nor replaced) when it is a directory.
    std::fs::create_dir(dir.path().join("state.json")).unwrap();
    let lock = DeployLock::acquire(dir.path(), &LockOwner::current("run"), None).unwrap();
    let h = harness(vec![step(0, "a", &[], &[])], 1);
    let (report, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let session = super::Session {
        plan: h.exec.plan.clone(),
        kinds: h.exec.kinds.clone(),
        hosts: h.exec.hosts.clone(),
        state,
        lock,
        redactor: Redactor::new(),
        report,
        jobs: 1,
    };
    let err = session.run(RunMode::Deploy, h.exec.target.clone(), &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, super::SessionError::State(_)), "{err}");
    assert!(err.to_string().contains("zdd recover"), "{err}");

    let events = drain(&mut seen);
    assert!(!events.iter().any(|e| matches!(e, Event::RunFinished { .. })), "the run must not look finished");
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning { message } if message.contains("left unfinished"))),
        "{events:?}"
    );
    let replay = journal::unfinished(dir.path()).unwrap().expect("recover must find the run");
    assert_eq!(replay.to_undo.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["a"]);
}

#[tokio::test]
async fn a_step_that_left_the_plan_is_undone_from_its_recorded_facts() {
    // The plan (as edited after the run) has no step `gone`; the journal recorded its kind, policy and facts.
    let h = harness(vec![step(0, "a", &[], &[])], 1);
    let recorded = RecordedUndo {
        kind: "scripted".into(),
        host: None,
        policy: StepPolicy::default().into(),
        facts: serde_json::json!({ "step": "gone", "undo_fails": false }),
    };
    let undo = h.exec.rollback("test", &[vec![("gone".to_owned(), recorded)]]).await;
    assert!(undo.complete(), "{:?}", undo.failed);
    assert_eq!(h.kind.lines(), ["undo gone"]);
}

#[tokio::test]
async fn facts_without_a_kind_of_a_step_that_left_the_plan_say_how_to_get_out() {
    // A journal written before kinds were recorded with the facts, and the step since removed from the plan.
    let h = harness(vec![step(0, "a", &[], &[])], 1);
    let recorded = RecordedUndo {
        kind: String::new(),
        host: None,
        policy: StepPolicy::default().into(),
        facts: serde_json::json!({}),
    };
    let undo = h.exec.rollback("test", &[vec![("gone".to_owned(), recorded)]]).await;
    assert!(!undo.complete());
    let (step, why) = &undo.failed[0];
    assert_eq!(step, "gone");
    assert!(why.contains("the plan has no such step any more") && why.contains("zdd recover"), "{why}");
}

#[tokio::test]
async fn the_summary_lists_steps_in_the_order_they_finished_then_those_never_started() {
    let steps = vec![
        step(0, "slow", &[], &[("sleep", ms(80))]),
        step(1, "fast", &[], &[]),
        step(2, "broken", &[1], &[("fail-times", Value::Int(1))]),
        step(3, "never", &[0, 2], &[]),
    ];
    let h = harness(steps, 4);
    let report = h.exec.run("run", &CancellationToken::new()).await;
    let order: Vec<&str> = report.summary.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(order, ["fast", "broken", "slow", "never"]);
}
