//! Migrations in two phases on real Django, SQLite and PostgreSQL 15: a `phase "pre"` migrate step applies the
//! compatible migration and holds the contract one (and the one marked post-deploy the way django-syzygy marks
//! it); a `phase "post"` step applies them and records them in the release; deploying the older release again is
//! then refused, naming what was removed, unless allowed; and a pre-deploy migration that depends on a
//! post-deploy one, or one that adds a column beside its removal, is refused before anything is applied.
//! Fixture: `tests/fixtures/steps/gate`, scenarios `two_phase` (the new release), `two_phase_old` (the live one),
//! `phase_order` and `add_and_drop`.

use crate::driver;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::env::{Requirement, TestDir, require};
use zdd_engine::kind::StepError;

fn gate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps/gate")
}

/// A release directory of its own (the post phase writes its record there), linking the fixture's code.
fn release(root: &Path, id: &str) {
    let dir = root.join("releases").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    for part in ["catalog", "gateproj", "scenarios", "manage.py"] {
        let link = dir.join(part);
        if !link.exists() {
            std::os::unix::fs::symlink(gate_dir().join(part), link).unwrap();
        }
    }
}

/// The database's settings for the fixture, on SQLite (`pg` `None`) or PostgreSQL.
fn db_env(dir: &TestDir, pg: Option<(&support::postgres::Postgres, &str)>) -> Vec<(&'static str, String)> {
    match pg {
        None => vec![
            ("GATE_DB", "sqlite".to_owned()),
            ("GATE_SQLITE_PATH", dir.join("phases.sqlite3").display().to_string()),
        ],
        Some((pg, name)) => vec![
            ("GATE_DB", "postgresql".to_owned()),
            ("GATE_PG_HOST", "127.0.0.1".to_owned()),
            ("GATE_PG_PORT", pg.port.to_string()),
            ("GATE_PG_NAME", name.to_owned()),
        ],
    }
}

/// Writes the one-step plan; returns its path and the target.
fn write_plan(
    dir: &TestDir,
    db: &[(&str, String)],
    scenario: &str,
    (release, live): (&str, &str),
    fields: &str,
) -> (PathBuf, zdd_engine::kind::DeployTarget) {
    let root = dir.join("srv");
    let env_file = dir.join(&format!("{scenario}.env"));
    let mut env: Vec<String> = db.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    env.push(format!("GATE_SCENARIO={scenario}\n"));
    std::fs::write(&env_file, env.concat()).unwrap();
    let python = support::venv::bin(&support::venv::shared(), "python");
    let plan = dir.join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"phases\"\nstep \"migrate\" kind=\"migrate\" {{\n    root \"{}\"\n    python \"{}\"\n    settings \"gateproj.settings\"\n    env-file \"{}\"\n{fields}}}\n",
            root.display(),
            python.display(),
            env_file.display()
        ),
    )
    .unwrap();
    (plan, driver::target(release, "a", Some(("b", live))))
}

/// The migrate step's preview notes (what `zdd plan` shows).
async fn preview_notes(dir: &TestDir, db: &[(&str, String)], scenario: &str, fields: &str) -> Vec<String> {
    let (plan, target) = write_plan(dir, db, scenario, ("r2", "r1"), fields);
    let plan = driver::read_plan(&plan, &[], &target, &dir.join("state"));
    let ctx = zdd_engine::kind::PreviewCtx {
        plan: plan.clone(),
        target,
        host: std::sync::Arc::new(zdd_engine::host::LocalHost::new()),
        state_dir: dir.join("state"),
    };
    let step = plan.step_by_name("migrate").expect("the migrate step");
    let kinds = zdd_steps::builtin();
    let preview = kinds.get("migrate").expect("migrate kind").preview(step, &ctx).await.expect("a preview");
    preview
        .actions
        .iter()
        .filter_map(|a| match a {
            zdd_engine::kind::PlannedAction::Note { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Runs one migrate step (`fields` its extra lines) for `release` with `live` live, the catalog app's
/// migrations from `scenario`. Returns the result and the step's messages.
async fn step(
    dir: &TestDir,
    db: &[(&str, String)],
    scenario: &str,
    (release, live): (&str, &str),
    fields: &str,
) -> (Result<(), (String, StepError)>, String) {
    let (plan, target) = write_plan(dir, db, scenario, (release, live), fields);
    let plan = driver::read_plan(&plan, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    let result = run.run(None).await;
    (result, run.log_text())
}

fn manage(db: &[(&str, String)], args: &[&str]) {
    let python = support::venv::bin(&support::venv::shared(), "python");
    let out = Command::new(python)
        .arg("manage.py")
        .args(args)
        .current_dir(gate_dir())
        .env("DJANGO_SETTINGS_MODULE", "gateproj.settings")
        .env("GATE_SCENARIO", "two_phase")
        .envs(db.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "manage.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn fatal(result: Result<(), (String, StepError)>, log: &str) -> (String, String) {
    match result {
        Err((_, StepError::Fatal { message, detail })) => (message, detail.unwrap_or_default()),
        other => panic!("expected a refusal, got {other:?}\n{log}"),
    }
}

/// The whole cycle on one database; `applied` lists the catalog app's applied migrations.
async fn cycle(dir: &TestDir, db: &[(&str, String)], applied: impl Fn() -> String) {
    let root = dir.join("srv");
    release(&root, "r1");
    release(&root, "r2");
    manage(db, &["migrate", "catalog", "0001", "--noinput"]);

    // What `zdd plan` shows before r2 exists: its source's migrations, inspected with r1's Python; nothing applied.
    let source = format!("    source \"{}\"\n", root.join("releases/r2").display());
    let notes = preview_notes(dir, db, "two_phase", &format!("    phase \"pre\"\n{source}")).await.join("\n");
    for expected in [
        "migration catalog.0002_add_code: pre-deploy (compatible with the old release): applied",
        "migration catalog.0003_remove_sku: post-deploy (only contract operations: drop-column): held for the post step",
        "migration catalog.0004_note: post-deploy (marked post-deploy in the migration): held for the post step",
    ] {
        assert!(notes.contains(expected), "no `{expected}` in:\n{notes}");
    }
    let notes = preview_notes(dir, db, "two_phase", &source).await.join("\n");
    assert!(
        notes.contains("migration catalog.0003_remove_sku: post-deploy (only contract operations: drop-column): refused (drop-column): a `phase \"post\"` step after drain-stop could apply it"),
        "{notes}"
    );
    assert!(!applied().contains("0002"), "the preview applied something: {}", applied());

    // r2 over r1 (whose migrations stop at 0002_add_code): the pre phase applies 0002 and holds the rest.
    let (result, log) = step(dir, db, "two_phase", ("r2", "r1"), "    phase \"pre\"\n").await;
    assert!(result.is_ok(), "{result:?}\n{log}");
    assert!(log.contains("catalog.0002_add_code: pre-deploy (compatible with the old release)"), "{log}");
    assert!(log.contains("catalog.0003_remove_sku: post-deploy (only contract operations: drop-column)"), "{log}");
    assert!(log.contains("catalog.0004_note: post-deploy (marked post-deploy in the migration)"), "{log}");
    assert!(log.contains("held for the post-deploy phase: catalog.0003_remove_sku, catalog.0004_note"), "{log}");
    let now = applied();
    assert!(now.contains("0002_add_code") && !now.contains("0003_remove_sku") && !now.contains("0004"), "{now}");

    // After drain-stop: the post phase applies them and records them in r2.
    let (result, log) = step(dir, db, "two_phase", ("r2", "r1"), "    phase \"post\"\n").await;
    assert!(result.is_ok(), "{result:?}\n{log}");
    assert!(log.contains("post-deploy, no old code runs: catalog.0003_remove_sku"), "{log}");
    let now = applied();
    assert!(now.contains("0003_remove_sku") && now.contains("0004_note"), "{now}");
    let record = std::fs::read_to_string(root.join("releases/r2/.zdd-migrate-post-default.json")).unwrap();
    assert!(record.contains("catalog.0003_remove_sku") && record.contains("catalog_product.sku"), "{record}");

    // Rolling back to r1: its code may select sku, which is gone. Refused, nothing applied or undone.
    let (result, log) = step(dir, db, "two_phase_old", ("r1", "r2"), "    phase \"pre\"\n").await;
    let (message, detail) = fatal(result, &log);
    assert!(message.contains("release r1 is older than 2 post-deploy migration(s)"), "{message}");
    assert!(detail.contains("catalog.0003_remove_sku: applied by release r2"), "{detail}");
    assert!(detail.contains("removed catalog_product.sku"), "{detail}");
    // Allowed by name, it goes on (nothing is left to apply for r1).
    let allow = "    phase \"pre\"\n    allow \"catalog.0003_remove_sku\"\n    allow \"catalog.0004_note\"\n";
    let (result, log) = step(dir, db, "two_phase_old", ("r1", "r2"), allow).await;
    assert!(result.is_ok(), "{result:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phases_on_sqlite_hold_contract_migrations_until_post_and_refuse_rolling_back_past_them() {
    if !require("two_phases_on_sqlite", &[Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("steps-phases-sqlite");
    let db = db_env(&dir, None);
    let file = dir.join("phases.sqlite3");
    cycle(&dir, &db, || {
        let out = Command::new("sqlite3")
            .arg(&file)
            .arg("SELECT name FROM django_migrations WHERE app='catalog'")
            .output()
            .expect("sqlite3 runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await;

    // A pre-deploy migration that needs a post-deploy one first: refused before anything is applied.
    let dir = TestDir::new("steps-phases-order");
    let db = db_env(&dir, None);
    release(&dir.join("srv"), "r2");
    manage(&db, &["migrate", "catalog", "0001", "--noinput"]);
    let (result, log) = step(&dir, &db, "phase_order", ("r2", "r1"), "    phase \"pre\"\n").await;
    let (message, detail) = fatal(result, &log);
    assert!(message.contains("1 pre-deploy migration(s) depend on a post-deploy one"), "{message}");
    assert!(
        detail.contains("catalog.0003_add_code (pre-deploy) depends on catalog.0002_remove_sku (post-deploy"),
        "{detail}"
    );

    // A migration that adds a column and drops another is not held (the new code needs what it adds): refused.
    let dir = TestDir::new("steps-phases-mixed");
    let db = db_env(&dir, None);
    release(&dir.join("srv"), "r2");
    manage(&db, &["migrate", "catalog", "0001", "--noinput"]);
    let (result, log) = step(&dir, &db, "add_and_drop", ("r2", "r1"), "    phase \"pre\"\n").await;
    let (message, _) = fatal(result, &log);
    assert!(message.contains("catalog.0002_code_for_sku"), "{message}");
    assert!(log.contains("contract operations (drop-column) mixed with others: split the removal"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phases_on_postgresql() {
    if !require("two_phases_on_postgresql", &[Requirement::Root, Requirement::Python, Requirement::Postgres]) {
        return;
    }
    let dir = TestDir::new("steps-phases-pg");
    let pg = support::postgres::Postgres::start(dir.path());
    pg.psql("postgres", "CREATE DATABASE phases");
    let db = db_env(&dir, Some((&pg, "phases")));
    cycle(&dir, &db, || pg.psql("phases", "SELECT name FROM django_migrations WHERE app = 'catalog'")).await;
}
