//! The migration gate against real Django output: each scenario under tests/fixtures/steps/gate/scenarios is one
//! migration on top of a Product table. `recorded/` holds what the gate's inspection script printed for it on
//! SQLite and on PostgreSQL 15 (Django 5.2); `live_*` tests regenerate that output with real Django and databases.
//! `wagtail/` holds the inspection of a site made by `wagtail start mysite` (Wagtail 8.0.1, django-taggit 6.1.0,
//! Django 5.2.19) on an empty database, all 185 migrations of its first deploy.

use std::path::PathBuf;

use zdd_steps::migrate::gate::{Dialect, Gate, Rule};
use zdd_steps::migrate::inspect::Inspection;

/// (scenario, rules on SQLite, rules on PostgreSQL): unsafe operations refused, safe ones let through.
pub(crate) const EXPECTED: &[(&str, &[Rule], &[Rule])] = &[
    // Safe: nothing refused, on either database.
    ("safe", &[], &[]),
    ("db_default", &[], &[]),
    // SQLite rebuilds the table and re-creates its indexes, the `unique_together` one included.
    ("db_default_indexed", &[], &[]),
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
    let mut gate = Gate::new(dialect, &inspection.schema).existing_tables(inspection.tables.as_deref());
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

fn wagtail(db: &str) -> Inspection {
    let path = gate_dir().join("wagtail").join(format!("{db}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every statement of Wagtail's and django-taggit's 185 migrations is understood: the tables they create, the
/// SQLite rebuilds and the indexes re-created after them, FTS virtual tables and their triggers, deferred foreign
/// keys, `DROP INDEX IF EXISTS` of an index created earlier, and the SQL Django cannot write on an empty database
/// (it introspects tables an earlier migration of the same deploy creates).
#[test]
fn a_wagtail_first_deploy_is_understood_on_both_databases() {
    for db in ["sqlite", "postgresql"] {
        let inspection = wagtail(db);
        assert_eq!(inspection.migrations.len(), 185, "{db}");
        let dialect = Dialect::from_vendor(&inspection.vendor).unwrap();
        let mut gate = Gate::new(dialect, &inspection.schema).existing_tables(inspection.tables.as_deref());
        inspection.migrations.iter().for_each(|m| gate.migration(m));
        let findings: Vec<String> = gate.findings().iter().map(zdd_steps::migrate::gate::Finding::describe).collect();
        assert!(findings.is_empty(), "{db}:\n{}", findings.join("\n\n"));
    }
}

/// Without the tables the database has now, a SQL generation error stays unanalysable: the gate does not guess.
#[test]
fn sql_django_could_not_write_is_refused_on_a_table_that_exists() {
    let mut inspection = wagtail("sqlite");
    let failing: Vec<_> = inspection.migrations.iter().filter(|m| m.error.is_some()).cloned().collect();
    assert!(!failing.is_empty());
    inspection.migrations = failing;
    let tables: Vec<String> = inspection.migrations.iter().flat_map(|m| m.tables.clone().unwrap_or_default()).collect();
    let mut gate = Gate::new(Dialect::Sqlite, &[]).existing_tables(Some(&tables));
    inspection.migrations.iter().for_each(|m| gate.migration(m));
    let findings = gate.findings();
    assert_eq!(findings.len(), inspection.migrations.len());
    assert!(findings.iter().all(|f| f.rule == Rule::Unanalysable && f.statement.contains("Django could not write")));
}

/// A migration the live release ships byte for byte is followed but not judged.
#[test]
fn a_migration_the_live_release_ships_is_not_judged() {
    let mut inspection = recorded("sqlite", "remove_field");
    assert_eq!(rules_of(&inspection), vec![Rule::DropColumn]);
    inspection.migrations[0].in_live = Some(true);
    assert_eq!(rules_of(&inspection), Vec::<Rule>::new());
    inspection.migrations[0].in_live = Some(false);
    assert_eq!(rules_of(&inspection), vec![Rule::DropColumn]);
}

/// The same site deployed with Wagtail 7.0.10 and migrated, then upgraded to 8.0.1 while 7.0 serves: every
/// statement of the 7 new migrations is understood, and what is refused is what would break Wagtail 7.0: new NOT
/// NULL columns without a database default (its inserts omit them) and, on PostgreSQL, indexes built without
/// CONCURRENTLY on existing tables.
#[test]
fn a_wagtail_upgrade_is_judged_on_what_breaks_the_old_version() {
    let expected: &[(&str, &[Rule])] =
        &[("sqlite", &[Rule::AddNotNullColumn]), ("postgresql", &[Rule::AddNotNullColumn; 3])];
    for (db, not_null) in expected {
        let inspection = wagtail(&format!("upgrade-from-7.0-{db}"));
        assert_eq!(inspection.migrations.len(), 7, "{db}");
        let mut want = not_null.to_vec();
        if *db == "postgresql" {
            want.extend([Rule::IndexWithoutConcurrently; 4]);
        }
        assert_eq!(rules_of(&inspection), sorted(&want), "{db}");
    }
}

/// After a SQLite rebuild, a unique index the table had is restored; one it did not have is a new constraint.
#[test]
fn a_rebuild_restores_the_unique_indexes_the_table_had_and_no_others() {
    let rebuild = "CREATE TABLE \"new__shop_item\" (\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT, \"slug\" varchar(50) NOT NULL, \"weight\" integer DEFAULT 0 NOT NULL);\nINSERT INTO \"new__shop_item\" (\"id\", \"slug\") SELECT \"id\", \"slug\" FROM \"shop_item\";\nDROP TABLE \"shop_item\";\nALTER TABLE \"new__shop_item\" RENAME TO \"shop_item\";\nCREATE UNIQUE INDEX \"shop_item_slug_uniq\" ON \"shop_item\" (\"slug\");";
    let table =
        "CREATE TABLE \"shop_item\" (\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT, \"slug\" varchar(50) NOT NULL)";
    let index = "CREATE UNIQUE INDEX \"shop_item_slug_uniq\" ON \"shop_item\" (\"slug\")";
    let other_index = "CREATE UNIQUE INDEX \"shop_item_slug_uniq\" ON \"shop_item\" (\"slug\", \"id\")";
    let inspection = |schema: &[&str]| -> Inspection {
        serde_json::from_value(serde_json::json!({
            "vendor": "sqlite",
            "schema": schema,
            "tables": ["shop_item"],
            "migrations": [{"app": "shop", "name": "0002_item_weight", "sql": rebuild, "error": null, "irreversible": []}],
        }))
        .unwrap()
    };
    assert_eq!(rules_of(&inspection(&[table, index])), Vec::<Rule>::new());
    assert_eq!(rules_of(&inspection(&[table])), vec![Rule::AddUnique]);
    assert_eq!(rules_of(&inspection(&[table, other_index])), vec![Rule::AddUnique]);
}
