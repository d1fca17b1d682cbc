//! The README's first command, end to end: `zdd run plans/demo.kdl` on this machine (process backend, a
//! private Nginx the plan starts itself), a second run under load with zero failed requests, `zdd rollback`
//! under load, then `zdd stop`, after which nothing the demo started is left running.
//!
//! The demo's defaults (127.0.0.1:8080, `.zdd/demo` in the repository) are pointed at a free port and a test
//! directory with `--var`, so the test never collides with a demo a developer is running.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::env::{Requirement, TestDir, free_port, require};
use support::load::{Load, LoadConfig};

struct Demo {
    dir: TestDir,
    port: u16,
}

impl Demo {
    fn zdd(&self, command: &str) -> Output {
        let root = self.dir.join("demo");
        let listen = format!("127.0.0.1:{}", self.port);
        let wheels = support::venv::wheel_dir();
        let out = Command::new(support::zdd::zdd_bin())
            .arg(command)
            .arg(support::zdd::plan("demo"))
            .arg("--plain")
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--var", &format!("root={}", root.display())])
            .args(["--var", &format!("listen={listen}")])
            .args(["--var", &format!("proxy_url=http://{listen}")])
            .args(["--var", &format!("pip_args=--no-index --find-links {wheels}")])
            .args(["--var", "log_window=1s"])
            .output()
            .expect("zdd runs");
        eprintln!(
            "--- zdd {command}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn live_release(&self) -> String {
        let state = std::fs::read_to_string(self.dir.join("state/state.json")).expect("state.json");
        let state: serde_json::Value = serde_json::from_str(&state).expect("state is JSON");
        state["live"]["release"].as_str().expect("a live release").to_owned()
    }
}

/// Processes whose command line mentions `needle` (the demo's root is unique to this test).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle.as_ref()) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn the_demo_deploys_redeploys_and_rolls_back_without_a_failed_request_then_stops() {
    if !require("demo", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
        return;
    }
    let demo = Demo { dir: TestDir::new("demo"), port: free_port() };

    let first = demo.zdd("run");
    assert_eq!(first.status.code(), Some(0), "first demo deploy failed");
    let first_release = demo.live_release();

    let load = Load::start(LoadConfig::standard(demo.port));
    std::thread::sleep(Duration::from_millis(500));
    // Release ids are per second: make sure the second one differs.
    std::thread::sleep(Duration::from_millis(600));
    let second = demo.zdd("run");
    std::thread::sleep(Duration::from_millis(500));
    let report = load.finish();
    assert_eq!(second.status.code(), Some(0), "second demo deploy failed");
    assert_ne!(demo.live_release(), first_release, "the second run deployed a new release");
    assert_eq!(
        report.failed(),
        0,
        "failed requests during the second deploy: {}\n{}",
        report.summary(),
        report.failure_examples(10)
    );
    assert!(report.ok() > 0, "{}", report.summary());

    let load = Load::start(LoadConfig::standard(demo.port));
    std::thread::sleep(Duration::from_millis(500));
    let rollback = demo.zdd("rollback");
    std::thread::sleep(Duration::from_millis(500));
    let report = load.finish();
    assert_eq!(rollback.status.code(), Some(0), "zdd rollback failed");
    assert_eq!(demo.live_release(), first_release, "rollback put the first release back");
    assert_eq!(
        report.failed(),
        0,
        "failed requests during the rollback: {}\n{}",
        report.summary(),
        report.failure_examples(10)
    );

    let stop = demo.zdd("stop");
    assert_eq!(stop.status.code(), Some(0), "zdd stop failed");
    let root = demo.dir.join("demo");
    let mut left = processes_mentioning(&root);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = processes_mentioning(&root);
    }
    assert!(left.is_empty(), "still running after zdd stop: {left:#?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", demo.port)).is_err(), "the demo's Nginx still listens");
}
