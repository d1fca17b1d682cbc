//! The scenarios, as one binary: real Nginx, gunicorn, Django, PostgreSQL and systemd (booted in its own
//! namespace), under load, as root. Each suite takes the harness's serial lock (`support::scenarios::serial`) or
//! is light enough to share the machine; `scripts/test.sh` runs this binary with one test thread so that load
//! measurements never compete. `cargo test --test scenarios scenarios_process` runs one suite.
//!
//! One binary instead of one per file: the crates link once, and the harness compiles once.

// Test-only helpers that not every module uses.
#![allow(dead_code)]

#[path = "../steps_support/driver.rs"]
mod driver;
#[path = "../steps_support/shop_deploy.rs"]
mod shop_deploy;
#[path = "../support/mod.rs"]
mod support;

mod demo;
mod harden_faults;
mod host_ssh;
mod packaging;
mod plan_preflight;
mod scenarios_asgi;
mod scenarios_blue_green;
mod scenarios_caddy;
mod scenarios_celery;
mod scenarios_containers;
mod scenarios_fleet;
mod scenarios_harness;
mod scenarios_process;
mod scenarios_rolling;
mod scenarios_systemd;
mod scenarios_tls;
mod steps_deploy_check;
mod steps_deploy_process;
mod steps_deploy_systemd;
mod steps_migrate_gate;
mod steps_migrate_live;
mod steps_migrate_phases;
mod steps_skip;
