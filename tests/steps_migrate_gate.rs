//! The migration gate against real Django output: each scenario under tests/fixtures/steps/gate/scenarios is one
//! migration on top of a Product table. `recorded/` holds what the gate's inspection script printed for it on
//! SQLite and on PostgreSQL 15 (Django 5.2); `live_*` tests regenerate that output with real Django and databases.

use std::path::PathBuf;

use zdd_steps::migrate::gate::{Dialect, Gate, Rule};
use zdd_steps::migrate::inspect::Inspection;

/// (scenario, rules on SQLite, rules on PostgreSQL): unsafe operations refused, safe ones let through.
pub(crate) const EXPECTED: &[(&str, &[Rule], &[Rule])] = &[
    // Safe: nothing refused, on either database.
    ("safe", &[], &[]),
    ("db_default", &[], &[]),
    ("runpython_reversible", &[], &[]),
    ("add_index_concurrently", &[Rule::Unanalysable], &[]),
    ("add_index", &[], &[Rule::IndexWithoutConcurrently]),
    // Unsafe.
    ("add_not_null_field", &[Rule::AddNotNullColumn], &[Rule::AddNotNullColumn]),
    ("add_unique", &[Rule::AddUnique], &[Rule::AddUnique, Rule::IndexWithoutConcurrently]),
    ("add_unique_constraint", &[Rule::AddUnique], &[Rule::AddUnique]),
    ("alter_type", &[Rule::AlterColumnType], &[Rule::AlterColumnType]),
    ("delete_model", &[Rule::DropTable], &[Rule::DropTable]),
    ("remove_field", &[Rule::DropColumn], &[Rule::DropColumn]),
    ("rename_field", &[Rule::RenameColumn], &[Rule::RenameColumn]),
    ("rename_model", &[Rule::RenameTable], &[Rule::RenameTable]),
    ("runpython_irreversible", &[Rule::Irreversible], &[Rule::Irreversible]),
    ("runsql_irreversible", &[Rule::Irreversible], &[Rule::Irreversible]),
    ("set_not_null", &[Rule::SetNotNull], &[Rule::SetNotNull]),
];

fn gate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps/gate")
}

pub(crate) fn rules_of(inspection: &Inspection) -> Vec<Rule> {
    let dialect = Dialect::from_vendor(&inspection.vendor).expect("known vendor");
    let mut gate = Gate::new(dialect, &inspection.schema);
    for m in &inspection.migrations {
        gate.migration(m);
    }
    let mut rules: Vec<Rule> = gate.findings().iter().map(|f| f.rule).collect();
    rules.sort();
    rules
}

fn recorded(db: &str, scenario: &str) -> Inspection {
    let path = gate_dir().join("recorded").join(db).join(format!("{scenario}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn sorted(rules: &[Rule]) -> Vec<Rule> {
    let mut v = rules.to_vec();
    v.sort();
    v
}

#[test]
fn recorded_sqlite_output() {
    for (scenario, sqlite, _) in EXPECTED {
        assert_eq!(rules_of(&recorded("sqlite", scenario)), sorted(sqlite), "SQLite, scenario {scenario}");
    }
}

#[test]
fn recorded_postgresql_output() {
    for (scenario, _, pg) in EXPECTED {
        assert_eq!(rules_of(&recorded("postgresql", scenario)), sorted(pg), "PostgreSQL, scenario {scenario}");
    }
}

#[test]
fn refusal_names_migration_operation_and_fix() {
    let inspection = recorded("postgresql", "remove_field");
    let mut gate = Gate::new(Dialect::Postgres, &inspection.schema);
    inspection.migrations.iter().for_each(|m| gate.migration(m));
    let findings = gate.findings();
    let err = zdd_steps::migrate::refusal(&findings, &[]).expect("refused");
    let text = format!("{err:?}");
    assert!(text.contains("catalog.0002_remove_sku"), "{text}");
    assert!(text.contains("Remove field sku from product"), "{text}");
    assert!(text.contains("contract later"), "{text}");
    assert!(text.contains("allow \\\"catalog.0002_remove_sku\\\""), "{text}");
    assert!(zdd_steps::migrate::refusal(&findings, &["catalog.0002_remove_sku".to_owned()]).is_none());
}
