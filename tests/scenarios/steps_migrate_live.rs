//! The `migrate` kind on real Django, SQLite and PostgreSQL 15: for every scenario of
//! `tests/fixtures/steps/gate` (one migration on top of a Product table), an unsafe migration is refused before
//! anything is applied, and a safe one passes the gate and is applied. The rules found live must equal the
//! recorded ones that `tests/scenarios/steps_migrate_gate.rs` checks in detail. These run with a release live (`r0`, whose
//! directory does not exist, so every migration is new to it); the first deploy and a live release that ships the
//! same migration have their own tests.

use crate::driver;
use crate::steps_migrate_gate as recorded;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::env::{Requirement, TestDir, require};
use zdd_engine::kind::StepError;

fn gate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps/gate")
}

/// A plan with one migrate step, on a root whose release `r1` is the gate fixture project.
fn setup(dir: &TestDir, env: &[(&str, String)]) -> PathBuf {
    setup_with_live(dir, env, false)
}

/// `setup`, and with `live_copy` a live release `r0` that is the same project (it ships the same migrations).
fn setup_with_live(dir: &TestDir, env: &[(&str, String)], live_copy: bool) -> PathBuf {
    let root = dir.join("srv");
    std::fs::create_dir_all(root.join("releases")).unwrap();
    let release = root.join("releases/r1");
    if !release.exists() {
        std::os::unix::fs::symlink(gate_dir(), &release).unwrap();
    }
    let live = root.join("releases/r0");
    if live_copy && !live.exists() {
        std::os::unix::fs::symlink(gate_dir(), &live).unwrap();
    }
    let env_text = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<Vec<_>>().concat();
    std::fs::write(dir.join("gate.env"), env_text).unwrap();
    let python = support::venv::bin(&support::venv::shared(), "python");
    let plan = dir.join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"gate\"\nstep \"migrate\" kind=\"migrate\" {{\n    root \"{}\"\n    python \"{}\"\n    settings \"gateproj.settings\"\n    env-file \"{}\"\n}}\n",
            root.display(),
            python.display(),
            dir.join("gate.env").display()
        ),
    )
    .unwrap();
    plan
}

fn manage(env: &[(&str, String)], args: &[&str]) {
    let python = support::venv::bin(&support::venv::shared(), "python");
    let out = Command::new(python)
        .arg("manage.py")
        .args(args)
        .current_dir(gate_dir())
        .env("DJANGO_SETTINGS_MODULE", "gateproj.settings")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "manage.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs the migrate step with `r0` live; returns the rule codes it refused (empty: it passed and applied the
/// migration).
async fn gate(dir: &TestDir, env: &[(&str, String)]) -> Vec<String> {
    let plan_path = setup(dir, env);
    let target = driver::target("r1", "a", Some(("b", "r0")));
    let plan = driver::read_plan(&plan_path, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    match run.run(None).await {
        Ok(()) => Vec::new(),
        Err((_, StepError::Fatal { message, detail })) => {
            assert!(message.contains("nothing was applied"), "{message}");
            let detail = detail.unwrap_or_default();
            let mut codes: Vec<String> = detail
                .lines()
                .filter_map(|l| l.rsplit_once(" [").map(|(_, c)| c.trim_end_matches(']').to_owned()))
                .collect();
            codes.sort();
            codes
        }
        Err((step, e)) => panic!("{step}: {e:?}\n{}", run.log_text()),
    }
}

fn codes(rules: &[zdd_steps::migrate::gate::Rule]) -> Vec<String> {
    let mut v: Vec<String> = rules.iter().map(|r| r.code().to_owned()).collect();
    v.sort();
    v
}

fn scenario_migration(scenario: &str) -> String {
    let dir = gate_dir().join("scenarios").join(scenario);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("0002"))
        .collect();
    names.sort();
    names[0].trim_end_matches(".py").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sqlite_gate_matches_expectations() {
    if !require("live_sqlite_gate_matches_expectations", &[Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("steps-gate-sqlite");
    for (scenario, sqlite, _) in recorded::EXPECTED {
        let db = dir.join(&format!("{scenario}.sqlite3"));
        let env = [
            ("GATE_DB", "sqlite".to_owned()),
            ("GATE_SQLITE_PATH", db.display().to_string()),
            ("GATE_SCENARIO", scenario.to_string()),
        ];
        manage(&env, &["migrate", "catalog", "0001", "--noinput"]);
        let found = gate(&dir, &env).await;
        assert_eq!(found, codes(sqlite), "SQLite, scenario {scenario}");
        let applied =
            Command::new("sqlite3").arg(&db).arg("SELECT name FROM django_migrations WHERE app='catalog'").output();
        if let Ok(out) = applied {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.contains(&scenario_migration(scenario)),
                found.is_empty(),
                "scenario {scenario}: applied = {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_postgresql_gate_matches_expectations() {
    if !require(
        "live_postgresql_gate_matches_expectations",
        &[Requirement::Root, Requirement::Python, Requirement::Postgres],
    ) {
        return;
    }
    let dir = TestDir::new("steps-gate-pg");
    let pg = support::postgres::Postgres::start(dir.path());
    for (scenario, _, expected) in recorded::EXPECTED {
        let name = format!("gate_{scenario}");
        pg.psql("postgres", &format!("CREATE DATABASE {name}"));
        let env = [
            ("GATE_DB", "postgresql".to_owned()),
            ("GATE_PG_HOST", "127.0.0.1".to_owned()),
            ("GATE_PG_PORT", pg.port.to_string()),
            ("GATE_PG_NAME", name.clone()),
            ("GATE_SCENARIO", scenario.to_string()),
        ];
        manage(&env, &["migrate", "catalog", "0001", "--noinput"]);
        let found = gate(&dir, &env).await;
        assert_eq!(found, codes(expected), "PostgreSQL, scenario {scenario}");
        let applied = pg.psql(&name, "SELECT name FROM django_migrations WHERE app = 'catalog'");
        assert_eq!(
            applied.contains(&scenario_migration(scenario)),
            found.is_empty(),
            "scenario {scenario}: applied = {applied}"
        );
    }
}

/// Runs the migrate step for `target`; it must pass. Returns the step's messages.
async fn passes(
    dir: &TestDir,
    env: &[(&str, String)],
    target: zdd_engine::kind::DeployTarget,
    live_copy: bool,
) -> String {
    let plan_path = setup_with_live(dir, env, live_copy);
    let plan = driver::read_plan(&plan_path, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    let result = run.run(None).await;
    let log = run.log_text();
    assert!(result.is_ok(), "{result:?}\n{log}");
    log
}

fn sqlite_env(dir: &TestDir, scenario: &str) -> [(&'static str, String); 3] {
    [
        ("GATE_DB", "sqlite".to_owned()),
        ("GATE_SQLITE_PATH", dir.join(&format!("{scenario}.sqlite3")).display().to_string()),
        ("GATE_SCENARIO", scenario.to_owned()),
    ]
}

fn applied_sqlite(dir: &TestDir, scenario: &str) -> String {
    let db = dir.join(&format!("{scenario}.sqlite3"));
    let out = Command::new("sqlite3").arg(&db).arg("SELECT name FROM django_migrations WHERE app='catalog'").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Nothing is live: no old release can break, so an unsafe migration is reported and applied, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_first_deploy_the_gate_reports_and_refuses_nothing() {
    if !require("on_a_first_deploy_the_gate_reports_and_refuses_nothing", &[Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("steps-gate-first");
    let env = sqlite_env(&dir, "remove_field");
    manage(&env, &["migrate", "catalog", "0001", "--noinput"]);
    let log = passes(&dir, &env, driver::target("r1", "a", None), false).await;
    assert!(log.contains("would refuse if a release were live: catalog.0002_remove_sku"), "{log}");
    assert!(log.contains("[drop-column]"), "{log}");
    assert!(log.contains("nothing is live (first deploy)"), "{log}");
    let applied = applied_sqlite(&dir, "remove_field");
    if !applied.is_empty() {
        assert!(applied.contains("0002_remove_sku"), "{applied}");
    }
}

/// The live release ships the same migration (a third-party app at the same version, or a release deployed without
/// migrating): it is not new, so it is applied and the oddity is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_the_live_release_ships_is_not_new() {
    if !require("a_migration_the_live_release_ships_is_not_new", &[Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("steps-gate-known");
    let env = sqlite_env(&dir, "remove_field");
    manage(&env, &["migrate", "catalog", "0001", "--noinput"]);
    let log = passes(&dir, &env, driver::target("r1", "a", Some(("b", "r0"))), true).await;
    assert!(log.contains("not judged: 1 unapplied migration(s) the live release ships too"), "{log}");
    assert!(log.contains("catalog.0002_remove_sku"), "{log}");
}
