//! Blue-green (plans/blue-green.kdl): both slots keep running, so `zdd rollback` switches traffic back to the
//! old instance without restarting it, under load, with zero failed requests. Process and systemd backends.

use crate::support;

use support::scenarios::{BLUE_GREEN_SEQUENCE, run_on_sqlite_socket_stack};
use support::zdd::Backend;

fn blue_green(name: &str, backend: Backend) {
    run_on_sqlite_socket_stack(name, backend, "blue-green", BLUE_GREEN_SEQUENCE);
}

#[test]
fn blue_green_process_backend() {
    blue_green("bluegreen-process", Backend::Process);
}

#[test]
fn blue_green_systemd_backend() {
    blue_green("bluegreen-systemd", Backend::Systemd);
}
