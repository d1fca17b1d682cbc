//! The commit point: a step that [`commits`](zdd_engine::kind::StepKind::commits) (a post-deploy migration that
//! drops what the old release uses) ends the rollback. A failure after it started leaves the new release live
//! (`committed`, exit 5); one before it rolls back as ever; `recover` of a run past it undoes nothing; and a plan
//! whose commit point does not come after the cutover is refused.

use crate::fake_kinds::{self, Log};

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::events::{Event, Outcome, Stamped};
use zdd_engine::host::{HostSet, LocalHost};
use zdd_engine::journal::{self, RunMode};
use zdd_engine::kind::{DeployTarget, Kinds};
use zdd_engine::lock::{DeployLock, LockOwner};
use zdd_engine::plan::load::MemoryReader;
use zdd_engine::plan::{self, Plan, PlanRead, Runtime, VarInputs};
use zdd_engine::redact::Redactor;
use zdd_engine::run::Session;
use zdd_engine::state::StateDir;

fn read(text: &str, kinds: &Kinds) -> PlanRead {
    plan::from_sources(
        Path::new("deploy/prod.kdl"),
        Path::new("/srv/deploy"),
        &MemoryReader::new().with("deploy/prod.kdl", text),
        &VarInputs::default(),
        &Runtime::sample(),
        kinds,
    )
}

/// A plan of the logged test kinds: `prepare`, the cutover `switch`, the commit point `contract` and `after`;
/// `fails` names the step that fails.
fn plan_text(fails: &str, contract_sleep: &str) -> String {
    let step = |name: &str, kind: &str, needs: &str, extra: &str| {
        let needs = if needs.is_empty() { String::new() } else { format!("    needs \"{needs}\"\n") };
        let fails = if name == fails { "    fails #true\n" } else { "" };
        format!("step \"{name}\" kind=\"{kind}\" {{\n{needs}{fails}{extra}}}\n")
    };
    [
        "plan \"shop\"\n".to_owned(),
        step("prepare", "work", "", ""),
        step("switch", "cutover", "prepare", ""),
        step("contract", "contract", "switch", &format!("    sleep \"{contract_sleep}\"\n")),
        step("after", "work", "contract", ""),
    ]
    .concat()
}

fn target() -> DeployTarget {
    DeployTarget {
        release: "r2".into(),
        slot: "b".into(),
        live_slot: Some("a".into()),
        live_release: Some("r1".into()),
        rollback: false,
    }
}

struct Run {
    log: Log,
    kinds: Kinds,
    plan: Arc<Plan>,
    dir: tempfile::TempDir,
}

impl Run {
    fn new(fails: &str, contract_sleep: &str) -> Self {
        let log = Log::default();
        let kinds = fake_kinds::kinds_with_commit(&log);
        let plan = read(&plan_text(fails, contract_sleep), &kinds).result.unwrap_or_else(|d| panic!("{d:?}"));
        Self { log, kinds, plan: Arc::new(plan), dir: tempfile::tempdir().unwrap() }
    }

    fn state(&self) -> StateDir {
        StateDir::prepare(self.dir.path()).unwrap()
    }

    /// A session on the state directory; its events come out of the receiver.
    fn session(&self) -> (Session, tokio::sync::mpsc::UnboundedReceiver<Stamped>) {
        self.session_on(self.state())
    }

    fn session_on(&self, state: StateDir) -> (Session, tokio::sync::mpsc::UnboundedReceiver<Stamped>) {
        let lock = DeployLock::acquire(state.path(), &LockOwner::current("run"), None).unwrap();
        let (report, events) = tokio::sync::mpsc::unbounded_channel();
        let session = Session {
            plan: self.plan.clone(),
            kinds: self.kinds.clone(),
            hosts: HostSet::local(Arc::new(LocalHost::new())),
            state,
            lock,
            redactor: Redactor::new(),
            report,
            jobs: 2,
        };
        (session, events)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|s| s.event).collect()
}

/// Each step's state in the run's `run-finished` summary, as `step state`.
fn summary(events: &[Event]) -> Vec<String> {
    let Some(Event::RunFinished { summary, .. }) = events.iter().find(|e| matches!(e, Event::RunFinished { .. }))
    else {
        panic!("no run-finished: {events:?}")
    };
    summary.iter().map(|s| format!("{} {}", s.step, serde_json::to_value(s.state).unwrap().as_str().unwrap())).collect()
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_failure_after_the_commit_point_undoes_nothing_and_leaves_the_new_release_live() {
    let run = Run::new("contract", "0s");
    let (session, mut events) = run.session();
    let outcome = session.run(RunMode::Deploy, target(), &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(outcome.exit_code(), 5);
    assert_eq!(serde_json::to_value(outcome).unwrap(), "committed", "as `--json` and `state.json` write it");
    assert_eq!(run.log(), ["run prepare", "run switch", "run contract"], "nothing is undone");
    let events = drain(&mut events);
    assert_eq!(summary(&events), ["prepare succeeded", "switch succeeded", "contract failed", "after skipped"]);
    assert!(!events.iter().any(|e| matches!(e, Event::RollbackStarted { .. })), "{events:?}");
    let warned = warnings(&events);
    assert!(
        warned.iter().any(|w| w.starts_with(
            "step `contract` failed: contract broke; this is after the commit point \
            (`contract` started, and what it does leaves the release before unfit to serve): nothing is rolled back; \
            release r2 stays live"
        )),
        "{warned:?}"
    );
    let state = run.state().load().unwrap();
    let live = state.live.as_ref().unwrap();
    assert_eq!((live.release.as_str(), live.slot.as_str()), ("r2", "b"));
    assert_eq!(state.mark("r2"), None, "a release that serves is not bad");
    let last = state.history.last().unwrap();
    assert_eq!((last.outcome, last.cut_over.as_deref()), (Outcome::Committed, Some("switch")));
    assert!(last.cause.as_deref().unwrap().contains("contract broke"), "{last:?}");
    // The journal says where the commit point was, and the run finished: nothing is left for `recover`.
    assert!(journal::unfinished(run.dir.path()).unwrap().is_none());
}

#[tokio::test]
async fn a_failure_before_the_commit_point_started_rolls_back() {
    let run = Run::new("switch", "0s");
    let (session, mut events) = run.session();
    let outcome = session.run(RunMode::Deploy, target(), &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, Outcome::RolledBack);
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(run.log(), ["run prepare", "run switch", "undo switch", "undo prepare"]);
    let events = drain(&mut events);
    assert_eq!(summary(&events), ["prepare rolled-back", "switch rolled-back", "contract skipped", "after skipped"]);
    let state = run.state().load().unwrap();
    assert!(state.live.is_none(), "nothing deployed: {state:?}");
}

#[tokio::test]
async fn an_interrupt_while_the_commit_point_runs_lets_it_finish_and_undoes_nothing() {
    let run = Run::new("", "1s");
    let (session, mut events) = run.session();
    let interrupt = CancellationToken::new();
    let (fire, log) = (interrupt.clone(), run.log.clone());
    tokio::spawn(async move {
        while !log.lock().unwrap().iter().any(|l| l == "run contract") {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        fire.cancel();
    });
    let outcome = session.run(RunMode::Deploy, target(), &interrupt).await.unwrap();
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(run.log(), ["run prepare", "run switch", "run contract"]);
    let events = drain(&mut events);
    // Stopping it half-way would gain nothing (nothing rolls back): it ran to its end; what follows did not start.
    assert_eq!(summary(&events), ["prepare succeeded", "switch succeeded", "contract succeeded", "after skipped"]);
    let warned = warnings(&events);
    assert!(
        warned.iter().any(|w| w.contains("the commit point `contract` has started, so it runs to its end")),
        "{warned:?}"
    );
    assert_eq!(run.state().load().unwrap().live.unwrap().release, "r2");
}

#[tokio::test]
async fn recover_of_a_run_past_its_commit_point_undoes_nothing_and_finishes_it_committed() {
    let run = Run::new("contract", "0s");
    let state = run.state();
    // `state.json` cannot be written while it is a directory: the run is left unfinished, as if zdd was killed.
    std::fs::create_dir(run.dir.path().join("state.json")).unwrap();
    let (session, _events) = run.session_on(state);
    session.run(RunMode::Deploy, target(), &CancellationToken::new()).await.unwrap_err();
    std::fs::remove_dir(run.dir.path().join("state.json")).unwrap();
    let replay = journal::unfinished(run.dir.path()).unwrap().expect("an unfinished run");
    assert_eq!(replay.committed.as_deref(), Some("contract"));
    assert!(!replay.to_undo.is_empty(), "its steps have undo facts, which recover must leave alone");

    let (session, mut events) = run.session();
    let outcome = session.recover(replay, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, Outcome::Committed);
    assert!(!run.log().iter().any(|l| l.starts_with("undo")), "{:?}", run.log());
    let events = drain(&mut events);
    assert!(!events.iter().any(|e| matches!(e, Event::UndoStarted { .. })), "{events:?}");
    assert!(warnings(&events).iter().any(|w| w.contains("nothing is rolled back; release r2 stays live")));
    let state = run.state().load().unwrap();
    assert_eq!(state.live.as_ref().unwrap().release, "r2");
    assert_eq!(state.history.last().unwrap().outcome, Outcome::Committed);
    assert!(journal::unfinished(run.dir.path()).unwrap().is_none(), "recover finished the run");
}

#[test]
fn a_commit_point_that_does_not_need_the_cutover_is_refused() {
    let kinds = fake_kinds::kinds_with_commit(&Log::default());
    let text = "plan \"shop\"\nstep \"switch\" kind=\"cutover\"\nstep \"contract\" kind=\"contract\"\n";
    let read = read(text, &kinds);
    let diags = read.result.expect_err("refused");
    assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), [Code::CommitBeforeCutover]);
    insta::assert_snapshot!(diags.render(&read.sources, false), @r#"
    zdd::commit-before-cutover

      × step `contract` is a commit point but does not come after the cutover step `switch`
       ╭─[deploy/prod.kdl:3:6]
     1 │ plan "shop"
     2 │ step "switch" kind="cutover"
       ·      ────┬───
       ·          ╰── this step moves the live traffic
     3 │ step "contract" kind="contract"
       ·      ─────┬────
       ·           ╰── a commit point: once it starts, the run no longer rolls back
       ╰────
      help: a commit point ends the rollback: it must come after the switch (and drain-stop) so that a failure before it can still roll back; add `needs "drain-stop"`

    1 error found (`zdd explain <code>` explains a code)
    "#);
}

#[test]
fn a_commit_point_that_needs_the_cutover_through_other_steps_is_valid() {
    let kinds = fake_kinds::kinds_with_commit(&Log::default());
    assert!(read(&plan_text("", "0s"), &kinds).result.is_ok());
    let text = "plan \"shop\"\nstep \"switch\" kind=\"cutover\"\nstep \"drain\" kind=\"work\" { needs \"switch\"; }\n\
                step \"contract\" kind=\"contract\" { needs \"drain\"; }\n";
    assert!(read(text, &kinds).result.is_ok());
}

#[tokio::test]
async fn a_staged_run_holds_the_commit_point_with_the_cutover() {
    let run = Run::new("", "0s");
    let (session, mut events) = run.session();
    assert_eq!(session.stage(RunMode::Deploy, target(), &CancellationToken::new()).await.unwrap(), Outcome::Deployed);
    assert_eq!(run.log(), ["run prepare"]);
    let held = drain(&mut events).into_iter().find_map(|e| match e {
        Event::Staged { held, .. } => Some(held),
        _ => None,
    });
    assert_eq!(held.unwrap(), ["switch", "contract", "after"]);
}
