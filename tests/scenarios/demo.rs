//! The demo, two ways.
//!
//! `the_readme_demo_works_from_a_fresh_clone_in_a_mode_700_home` runs the README's commands as written (their
//! arguments are read from README.md), with no `--var`, from a fresh `git clone` of this repository inside a
//! home directory of mode 700 (root's on Debian): first deploy, `curl` of `http://127.0.0.1:8080/`, a second
//! deploy under load with zero failed requests, rollback, stop. What runs is this build's `zdd` binary with the
//! argv the README gives after `cargo run --release --`; set `ZDD_README_CARGO=1` (CI does) to run the
//! README's `cargo run --release -- ...` literally in the clone, compiling it there once (5 minutes cold). With
//! `ZDD_README_TARGET_DIR` set, that cargo builds into that directory: `scripts/test.sh` warms it with the same
//! release build of this checkout in the background, so the clone compiles only its own crates (the workspace
//! and the patched kdl), not the registry's again. The clone has the committed tree plus the uncommitted
//! changes to tracked files (`git diff HEAD`); untracked files are not in it. It needs port 8080 free, and fails saying so when it is not.
//!
//! `the_demo_deploys_redeploys_and_rolls_back_without_a_failed_request_then_stops` points the demo at a free
//! port and a test directory with `--var`, so it never collides with a demo a developer is running: a second
//! run and `zdd rollback` under load with zero failed requests, then `zdd stop`, after which nothing the demo
//! started is left running.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use std::os::unix::fs::PermissionsExt as _;
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

/// The README's demo commands, as argv after `cargo run --release --`: the one in the `sh` block of "Try it: the
/// demo" and the ones its text names in backticks (rollback, stop).
fn readme_demo_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let section = readme.split("## Try it: the demo").nth(1).expect("a demo section").split("\n## ").next().unwrap();
    let prefix = "cargo run --release -- ";
    let mut commands = Vec::new();
    for piece in section.split(['`', '\n']) {
        if let Some(args) = piece.trim().strip_prefix(prefix) {
            let argv: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
            if !commands.contains(&argv) {
                commands.push(argv);
            }
        }
    }
    commands
}

/// A fresh clone of this repository in a mode-700 home; `zdd stop` as written when dropped.
struct ReadmeDemo {
    _home: TestDir,
    clone: std::path::PathBuf,
    stop: Vec<String>,
}

impl ReadmeDemo {
    fn zdd(&self, argv: &[String]) -> Output {
        let literal = std::env::var_os("ZDD_README_CARGO").is_some_and(|v| v == "1");
        let mut cmd = if literal {
            let mut c = Command::new("cargo");
            c.args(["run", "--release", "--"]);
            if let Some(dir) = std::env::var_os("ZDD_README_TARGET_DIR") {
                c.env("CARGO_TARGET_DIR", dir);
            }
            c
        } else {
            Command::new(support::zdd::zdd_bin())
        };
        let out = cmd
            .args(argv)
            .current_dir(&self.clone)
            .env_remove("ZDD_STATE_DIR")
            .output()
            .expect("the README's command runs");
        eprintln!(
            "--- {}{}: {}\n{}{}",
            if literal { "cargo run --release -- " } else { "zdd " },
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for ReadmeDemo {
    fn drop(&mut self) {
        let stop = self.stop.clone();
        let _ = self.zdd(&stop);
    }
}

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn the_readme_demo_works_from_a_fresh_clone_in_a_mode_700_home() {
    if !require("readme demo", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
        return;
    }
    let commands = readme_demo_commands();
    let find = |verb: &str| {
        commands
            .iter()
            .find(|c| c.first().is_some_and(|v| v == verb))
            .cloned()
            .unwrap_or_else(|| panic!("the README names no `cargo run --release -- {verb} ...`: {commands:?}"))
    };
    let (run, rollback, stop) = (find("run"), find("rollback"), find("stop"));
    assert_eq!(run, ["run", "plans/demo.kdl"], "the README's first command changed: update this test's doc");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", 8080)).is_ok(),
        "port 8080 is taken: the README's demo serves there; stop what listens on it (`ss -ltnp 'sport = 8080'`)"
    );

    let home = TestDir::new("home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let clone = home.join("zdd");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    git(repo, &["clone", "--quiet", "--no-hardlinks", &repo.display().to_string(), &clone.display().to_string()]);
    let diff = git(repo, &["diff", "HEAD", "--binary"]).stdout;
    if !diff.is_empty() {
        let patch = home.join("uncommitted.patch");
        std::fs::write(&patch, diff).unwrap();
        git(&clone, &["apply", &patch.display().to_string()]);
    }
    let demo = ReadmeDemo { _home: home, clone, stop };

    let first = demo.zdd(&run);
    assert_eq!(first.status.code(), Some(0), "the README's first command failed from a mode-700 home");
    assert_eq!(support::proc::http_get_status(8080, "/"), Some(200), "http://127.0.0.1:8080/ after the demo");
    // "... and prints the URL", as the README says.
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("Serving at http://127.0.0.1:8080"),
        "the demo does not print the URL it serves"
    );

    // Release ids are per second: make sure the second one differs.
    std::thread::sleep(Duration::from_millis(1100));
    let load = Load::start(LoadConfig::standard(8080));
    std::thread::sleep(Duration::from_millis(500));
    let second = demo.zdd(&run);
    std::thread::sleep(Duration::from_millis(500));
    let report = load.finish();
    assert_eq!(second.status.code(), Some(0), "the README's second run failed");
    assert_eq!(report.failed(), 0, "failed requests: {}\n{}", report.summary(), report.failure_examples(10));
    assert!(report.ok() > 0, "{}", report.summary());

    assert_eq!(demo.zdd(&rollback).status.code(), Some(0), "the README's rollback failed");
    assert_eq!(support::proc::http_get_status(8080, "/"), Some(200));
    let stop = demo.stop.clone();
    assert_eq!(demo.zdd(&stop).status.code(), Some(0), "the README's stop failed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err(), "the demo's Nginx still listens");
}
