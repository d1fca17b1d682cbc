//! The step graph: parallel waves, the derived rollback order, and `zdd graph`'s dot and Mermaid output.

#![allow(dead_code)]

use crate::fake_kinds;

use std::path::Path;

use zdd_engine::graph;
use zdd_engine::plan::load::MemoryReader;
use zdd_engine::plan::{self, Plan, Runtime, VarInputs};
use zdd_engine::schema::Effect;

/// build and schema first (in parallel), then start (needs both), then health (read-only), then switch.
const PLAN: &str = r#"plan "shop"
step "build" kind="fake" { path "/srv/build"; }
step "migrate" kind="schema" { sql "ALTER TABLE t ADD c int NULL"; }
step "start" kind="fake" { path "/srv/start"; needs "build" "migrate"; }
step "health" kind="probe" { url "http://127.0.0.1:8001/health/"; needs "start"; }
step "switch" kind="fake" { path "/srv/switch"; needs "health"; }
step "notes" kind="fake" { path "/srv/notes"; }
"#;

fn plan() -> Plan {
    let read = plan::from_sources(
        Path::new("prod.kdl"),
        Path::new("/srv/deploy"),
        &MemoryReader::new().with("prod.kdl", PLAN),
        &VarInputs::default(),
        &Runtime::sample(),
        &fake_kinds::kinds(),
    );
    read.result.unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)))
}

fn names(plan: &Plan, ids: &[zdd_engine::plan::StepId]) -> Vec<String> {
    ids.iter().map(|id| plan.step(*id).name.clone()).collect()
}

#[test]
fn waves_group_steps_that_can_run_together() {
    let plan = plan();
    let g = &plan.graph;
    let waves: Vec<Vec<String>> = g.waves.iter().map(|w| names(&plan, w)).collect();
    assert_eq!(waves, [vec!["build", "migrate", "notes"], vec!["start"], vec!["health"], vec!["switch"]]);
    assert_eq!(g.graph.edge_count(), 4);
}

#[test]
fn rollback_undoes_each_step_after_everything_that_needs_it() {
    let plan = plan();
    let kinds = fake_kinds::kinds();
    let rollback: Vec<(String, Effect, usize)> =
        plan.graph.rollback(&plan, &kinds).iter().map(|e| (plan.step(e.step).name.clone(), e.effect, e.wave)).collect();
    // switch and notes need nothing after them: undone first, together; build and migrate last.
    assert_eq!(
        rollback,
        [
            ("switch".to_owned(), Effect::Reversible, 0),
            ("notes".to_owned(), Effect::Reversible, 0),
            ("health".to_owned(), Effect::ReadOnly, 1),
            ("start".to_owned(), Effect::Reversible, 2),
            ("build".to_owned(), Effect::Reversible, 3),
            ("migrate".to_owned(), Effect::ForwardOnly, 3),
        ]
    );
}

#[test]
fn dot_output() {
    let plan = plan();
    insta::assert_snapshot!(graph::to_dot(&plan, &fake_kinds::kinds()));
}

#[test]
fn mermaid_output() {
    let plan = plan();
    insta::assert_snapshot!(graph::to_mermaid(&plan, &fake_kinds::kinds()));
}
