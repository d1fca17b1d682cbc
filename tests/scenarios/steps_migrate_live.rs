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
    setup_with_live(dir, env, false, "")
}

/// `setup`, and with `live_copy` a live release `r0` that is the same project (it ships the same migrations);
/// `fields` are more lines of the step.
fn setup_with_live(dir: &TestDir, env: &[(&str, String)], live_copy: bool, fields: &str) -> PathBuf {
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
            "plan \"gate\"\nstep \"migrate\" kind=\"migrate\" {{\n    root \"{}\"\n    python \"{}\"\n    settings \"gateproj.settings\"\n    env-file \"{}\"\n{fields}}}\n",
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
    let plan_path = setup_with_live(dir, env, live_copy, "");
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

/// A PostgreSQL database `name` of the cluster with the `safe` scenario's Product table (0001 applied).
fn pg_env(pg: &support::postgres::Postgres, name: &str) -> [(&'static str, String); 5] {
    pg.psql("postgres", &format!("CREATE DATABASE {name}"));
    let env = [
        ("GATE_DB", "postgresql".to_owned()),
        ("GATE_PG_HOST", "127.0.0.1".to_owned()),
        ("GATE_PG_PORT", pg.port.to_string()),
        ("GATE_PG_NAME", name.to_owned()),
        ("GATE_SCENARIO", "safe".to_owned()),
    ];
    manage(&env, &["migrate", "catalog", "0001", "--noinput"]);
    env
}

/// Runs the plan's migrate step with `r0` live; it must fail. Returns the error and the run's log.
async fn fails(dir: &TestDir, env: &[(&str, String)], fields: &str) -> (StepError, String) {
    let plan_path = setup_with_live(dir, env, false, fields);
    let target = driver::target("r1", "a", Some(("b", "r0")));
    let plan = driver::read_plan(&plan_path, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    let result = run.run(None).await;
    let log = run.log_text();
    match result {
        Err((_, e)) => (e, log),
        Ok(()) => panic!("the migrate step passed\n{log}"),
    }
}

fn advisory_locks(pg: &support::postgres::Postgres, database: &str) -> String {
    pg.psql(database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").trim().to_owned()
}

/// Another session holds the plan's advisory lock (another deploy migrating): the step waits
/// `advisory-lock-within`, then fails naming that session, and migrates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_advisory_lock_fails_naming_its_holder() {
    if !require(
        "a_busy_advisory_lock_fails_naming_its_holder",
        &[Requirement::Root, Requirement::Python, Requirement::Postgres],
    ) {
        return;
    }
    let dir = TestDir::new("steps-migrate-advisory");
    let pg = support::postgres::Postgres::start(dir.path());
    let env = pg_env(&pg, "advisory");
    let key = zdd_steps::migrate::locking::advisory_key("gate");
    let holder = pg.session("advisory", "other-deploy", &format!("SELECT pg_advisory_lock({key});"));
    let (error, log) = fails(&dir, &env, "    advisory-lock-within \"300ms\"\n").await;
    let StepError::Fatal { message, detail } = &error else { panic!("{error:?}\n{log}") };
    assert!(message.contains("[zdd::migrate-advisory-lock]"), "{message}");
    assert!(message.contains(&format!("pid {} (other-deploy, from 127.0.0.1", holder.pid)), "{message}");
    assert!(message.contains("nothing was migrated"), "{message}");
    assert!(detail.as_deref().unwrap_or_default().starts_with("help: "), "{detail:?}");
    assert!(!pg.psql("advisory", "SELECT name FROM django_migrations").contains("0002"), "{log}");
    drop(holder);
    assert_eq!(advisory_locks(&pg, "advisory"), "0", "the holder's session ended, and zdd's never took it");
}

/// A long transaction holds a SHARE lock on the table (reads go on, `ALTER TABLE` must wait): the migration waits
/// at most `lock-timeout`, is retried `lock-retries` times, and the step fails cleanly; a reader queries the
/// table all along, and every query answers (the table never freezes behind the queued `ALTER`); the advisory
/// lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_times_the_migration_out_retries_and_keeps_serving() {
    if !require(
        "a_locked_table_times_the_migration_out_retries_and_keeps_serving",
        &[Requirement::Root, Requirement::Python, Requirement::Postgres],
    ) {
        return;
    }
    let dir = TestDir::new("steps-migrate-lock-timeout");
    let pg = support::postgres::Postgres::start(dir.path());
    let env = pg_env(&pg, "locked");
    pg.psql("locked", "INSERT INTO catalog_product (name, price) VALUES ('chair', 40)");
    let long_transaction = pg.session("locked", "long-report", "BEGIN; LOCK TABLE catalog_product IN SHARE MODE;");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (done, port) = (done.clone(), pg.port);
        std::thread::spawn(move || {
            // Each read may wait for the queued ALTER at most its lock timeout; without one it would wait for the
            // long transaction, past this statement_timeout.
            let (mut answered, mut failed) = (0, Vec::new());
            loop {
                let out = Command::new(format!("{}/psql", support::postgres::BIN_DIR))
                    .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
                    .args(["-d", "locked", "-c", "SET statement_timeout = '10s'", "-c"])
                    .arg("SELECT name FROM catalog_product")
                    .output()
                    .unwrap();
                if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("chair") {
                    answered += 1;
                } else {
                    failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            (answered, failed)
        })
    };
    let (error, log) = fails(&dir, &env, "    lock-timeout \"300ms\"\n    lock-retries 2\n").await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = reader.join().unwrap();
    let StepError::Fatal { message, detail } = &error else { panic!("{error:?}\n{log}") };
    assert!(message.contains("[zdd::migrate-lock-retries]"), "{message}");
    assert!(message.contains("3 time(s), 300ms each"), "{message}");
    assert!(detail.as_deref().unwrap_or_default().starts_with("help: "), "{detail:?}");
    assert!(message.contains("catalog.0002_add_nullable_field"), "{message}");
    assert!(log.contains("attempt 1 of 3: catalog.0002_add_nullable_field waited 300ms for a lock"), "{log}");
    assert!(log.contains("attempt 2 of 3"), "{log}");
    assert!(log.contains("advisory lock released"), "{log}");
    assert!(failed.is_empty(), "{} read(s) failed while the migration retried: {failed:?}", failed.len());
    assert!(answered > 0);
    assert_eq!(advisory_locks(&pg, "locked"), "0", "the advisory lock was released");
    drop(long_transaction);
    let columns =
        pg.psql("locked", "SELECT column_name FROM information_schema.columns WHERE table_name = 'catalog_product'");
    assert!(!columns.contains("colour"), "the migration was rolled back: {columns}");
}

/// `zdd doctor` on the migrate step's plan, with `r0` (the same project) live: the state directory says so.
fn doctor(dir: &TestDir, plan: &Path) -> (Option<i32>, String) {
    use zdd_engine::state::{Deployed, State, StateDir};
    let state_dir = dir.join("doctor-state");
    let state = StateDir::prepare(&state_dir).unwrap();
    let live = Deployed { release: "r0".into(), slot: "b".into(), since: "2026-12-01T10:00:00Z".into() };
    state.save(&State { live: Some(live), previous: None, history: Vec::new(), ..State::default() }).unwrap();
    let out = Command::new(support::zdd::zdd_bin())
        .args(["doctor", "--plain"])
        .arg(plan)
        .arg("--state-dir")
        .arg(&state_dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Doctor asks the live release's Django for the database server's version; once the server is gone, that is a
/// problem with its code and fix (the next `migrate` would fail).
#[test]
fn doctor_reads_the_database_version_through_the_live_release() {
    if !require(
        "doctor_reads_the_database_version_through_the_live_release",
        &[Requirement::Root, Requirement::Python, Requirement::Postgres],
    ) {
        return;
    }
    let dir = TestDir::new("steps-migrate-doctor");
    let pg = support::postgres::Postgres::start(dir.path());
    let env = pg_env(&pg, "doctored");
    let plan = setup_with_live(&dir, &env, true, "");
    let (code, text) = doctor(&dir, &plan);
    assert_eq!(code, Some(0), "{text}");
    let line = text.lines().find(|l| l.contains("database `default`")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("ok") && line.contains("versions: Django 5."), "{line}");
    assert!(line.contains("PostgreSQL 15."), "{line}");
    assert!(line.contains("(asked through the live release r0)"), "{line}");

    drop(pg);
    let (code, text) = doctor(&dir, &plan);
    assert_eq!(code, Some(2), "{text}");
    let line = text.lines().find(|l| l.contains("cannot reach database `default`")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("problem") || line.contains("problem"), "{line}");
    assert!(text.contains("[zdd::doctor-database]"), "{text}");
}
