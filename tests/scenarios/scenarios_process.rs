//! The deploy scenarios with the process backend (gunicorn as a detached process with a pid file),
//! under load through a real Nginx. Every scenario with SQLite in socket mode (plans/prod.kdl); with PostgreSQL
//! (ignored by default, `-- --ignored` runs them) the scenarios that depend on the database (the other backend's
//! suite runs all of them with PostgreSQL); first
//! deploy, upgrade and rollback with the port switch and an Nginx reload (plans/port-switch.kdl). And projects zdd
//! never saw (tests/fixtures/projects: `startproject` settings, a JSON-only API), deployed and upgraded with
//! plans/prod.kdl and only plan variables set; a site made by `wagtail start`, deployed with the plan `zdd init`
//! wrote for it, upgraded and rolled back under load (tests/support/wagtail.rs). And the environment rolled back
//! with the release (`tests/support/env_snapshot.rs`).
//! See tests/support/scenarios.rs for what each scenario checks.

use crate::support;

use support::env::{Requirement, require};
use support::projects::{JSONONLY, Project, STARTPROJECT, deploy_and_upgrade};
use support::scenarios::{DATABASE_SEQUENCE, RELOAD_SEQUENCE, SEQUENCE, run_all, serial};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig};

fn stack(name: &str, db: Db, mode: ProxyMode) -> Option<Stack> {
    let mut needs = vec![Requirement::Root, Requirement::Nginx, Requirement::Python];
    if db == Db::Postgres {
        needs.push(Requirement::Postgres);
    }
    if !require(name, &needs) {
        return None;
    }
    Some(Stack::start(name, StackConfig { backend: Backend::Process, db, mode }))
}

#[test]
fn process_sqlite_socket_mode_every_scenario() {
    let _serial = serial();
    let Some(stack) = stack("process-sqlite", Db::Sqlite, ProxyMode::Socket) else {
        return;
    };
    run_all(&stack, "prod", SEQUENCE);
}

#[test]
#[ignore = "crossed backend/database pair, covered by the other suite; run with --ignored (full matrix)"]
fn process_postgres_socket_mode_migrations() {
    let _serial = serial();
    let Some(stack) = stack("process-postgres", Db::Postgres, ProxyMode::Socket) else {
        return;
    };
    run_all(&stack, "prod", DATABASE_SEQUENCE);
}

#[test]
fn process_sqlite_reload_mode() {
    let _serial = serial();
    let Some(stack) = stack("process-reload", Db::Sqlite, ProxyMode::Reload) else {
        return;
    };
    run_all(&stack, "port-switch", RELOAD_SEQUENCE);
}

fn deploy_project(name: &str, project: Project) {
    let _serial = serial();
    let Some(stack) = stack(name, Db::Sqlite, ProxyMode::Socket) else {
        return;
    };
    match deploy_and_upgrade(&stack, "prod", project) {
        Ok(measured) => eprintln!("PASS [{}] {name}: {measured}", stack.config),
        Err(error) => panic!("[{}] {name}: {error}", stack.config),
    }
}

/// v1 with `FOO=1`, the shared env file edited to `FOO=2` for v2, then `zdd rollback`: v1 serves with its own
/// environment again (`tests/support/env_snapshot.rs`), under load, with zero failed requests.
#[test]
fn process_rollback_restores_the_release_environment() {
    let _serial = serial();
    let name = "process-envsnap";
    let Some(stack) = stack(name, Db::Sqlite, ProxyMode::Socket) else {
        return;
    };
    match support::env_snapshot::rollback_restores_the_release_environment(&stack) {
        Ok(measured) => eprintln!("PASS [{}] {name}: {measured}", stack.config),
        Err(error) => panic!("[{}] {name}: {error}", stack.config),
    }
}

/// Settings hard-code `STATIC_URL`, `STATIC_ROOT` (inside the project) and the manifest storage; the home page links
/// its stylesheet with unquoted attributes.
#[test]
fn process_startproject_settings_deploy_unchanged() {
    deploy_project("process-startproject", STARTPROJECT);
}

/// `/` answers JSON: the smoke check finds no asset there, says so and skips the asset check.
#[test]
fn process_json_only_project_deploys() {
    deploy_project("process-jsononly", JSONONLY);
}

/// `wagtail start mysite` by the real Wagtail, its requirements pinned, `zdd init` on it; the plan init wrote
/// deploys v1, then v2 (a visible change, a new hashed stylesheet) and rolls back to v1, under load, with only
/// plan variables set and nothing in the project changed for zdd.
#[test]
fn process_wagtail_start_site_deploys_upgrades_and_rolls_back() {
    let _serial = serial();
    let name = "process-wagtail";
    if !require(name, &[Requirement::WagtailWheels]) {
        return;
    }
    let Some(stack) = stack(name, Db::Sqlite, ProxyMode::Socket) else {
        return;
    };
    match support::wagtail::deploy_upgrade_and_roll_back(&stack) {
        Ok(measured) => eprintln!("PASS [{}] {name}: {measured}", stack.config),
        Err(error) => panic!("[{}] {name}: {error}", stack.config),
    }
}
