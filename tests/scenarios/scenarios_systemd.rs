//! The deploy scenarios with the systemd backend (gunicorn as systemd units, systemd booted in its own namespace),
//! under load through a real Nginx. Every scenario with PostgreSQL in socket mode (plans/prod.kdl); with SQLite
//! (ignored by default, `-- --ignored` runs them) the scenarios that depend on the database (the other backend's
//! suite runs all of them with SQLite); first
//! deploy, upgrade and rollback with the port switch and an Nginx reload (plans/port-switch.kdl).
//! See tests/support/scenarios.rs for what each scenario checks.

use crate::support;

use support::env::{Requirement, require};
use support::scenarios::{DATABASE_SEQUENCE, RELOAD_SEQUENCE, SEQUENCE, run_all, serial};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig};

fn stack(name: &str, db: Db, mode: ProxyMode) -> Option<Stack> {
    let mut needs = vec![Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Systemd];
    if db == Db::Postgres {
        needs.push(Requirement::Postgres);
    }
    if !require(name, &needs) {
        return None;
    }
    Some(Stack::start(name, StackConfig { backend: Backend::Systemd, db, mode }))
}

#[test]
fn systemd_postgres_socket_mode_every_scenario() {
    let _serial = serial();
    let Some(stack) = stack("systemd-postgres", Db::Postgres, ProxyMode::Socket) else {
        return;
    };
    run_all(&stack, "prod", SEQUENCE);
}

#[test]
#[ignore = "crossed backend/database pair, covered by the other suite; run with --ignored (full matrix)"]
fn systemd_sqlite_socket_mode_migrations() {
    let _serial = serial();
    let Some(stack) = stack("systemd-sqlite", Db::Sqlite, ProxyMode::Socket) else {
        return;
    };
    run_all(&stack, "prod", DATABASE_SEQUENCE);
}

#[test]
fn systemd_sqlite_reload_mode() {
    let _serial = serial();
    let Some(stack) = stack("systemd-reload", Db::Sqlite, ProxyMode::Reload) else {
        return;
    };
    run_all(&stack, "port-switch", RELOAD_SEQUENCE);
}
