//! Blue-green (plans/blue-green.kdl): both slots keep running, so `zdd rollback` switches traffic back to the
//! old instance without restarting it, under load, with zero failed requests. Process and systemd backends.

mod support;

use support::env::{Requirement, require};
use support::scenarios::{BLUE_GREEN_SEQUENCE, run_all, serial};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig};

fn blue_green(name: &str, backend: Backend) {
    let _serial = serial();
    let mut needs = vec![Requirement::Root, Requirement::Nginx, Requirement::Python];
    if backend == Backend::Systemd {
        needs.push(Requirement::Systemd);
    }
    if !require(name, &needs) {
        return;
    }
    let stack = Stack::start(name, StackConfig { backend, db: Db::Sqlite, mode: ProxyMode::Socket });
    run_all(&stack, "blue-green", BLUE_GREEN_SEQUENCE);
}

#[test]
fn blue_green_process_backend() {
    blue_green("bluegreen-process", Backend::Process);
}

#[test]
fn blue_green_systemd_backend() {
    blue_green("bluegreen-systemd", Backend::Systemd);
}
