//! `zdd doctor` on a made-up host in a temporary directory: a healthy one gives exit 0 and only ok lines; each
//! problem (a stale lock, a live slot whose process is gone, an interrupted run, a unit directory that cannot be
//! written, a missing program, an unsafe state directory, a taken port) gives a problem line with its fix and
//! exit 2. Every run is checked to change
//! nothing, as `zdd plan` is.

use std::path::{Path, PathBuf};
use std::process::Child;

use assert_cmd::Command;
use zdd_engine::journal::{Journal, RunHeader, RunMode};
use zdd_engine::kind::DeployTarget;
use zdd_engine::lock::{LockOwner, hostname, lock_path};
use zdd_engine::redact::Redactor;
use zdd_engine::state::{Deployed, State, StateDir};

use crate::support::tree::tree;

/// A release, its venv and a gunicorn run as a detached process (no systemd needed); `unit-dir` and `manager`
/// are variables so that a test can ask for systemd.
const PLAN: &str = r#"plan "doctored"
slots "blue" "green"
var "root" "/srv/shop"
var "manager" "process"
var "units" "/etc/systemd/system"
step "release" kind="release" {
    root "{{root}}"
    source "site"
}
step "venv" kind="python-env" {
    needs "release"
    root "{{root}}"
}
step "web" kind="service" {
    needs "venv"
    app "shop"
    root "{{root}}"
    wsgi "shop.wsgi:application"
    manager "{{manager}}"
    unit-dir "{{units}}"
}
"#;

/// The host: a plan, its Django source and the app's root, all under one temporary directory.
struct Host {
    dir: tempfile::TempDir,
    /// Processes started for the test (a live instance), killed when it ends.
    children: Vec<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("manage.py"), "").unwrap();
        std::fs::write(site.join("requirements.txt"), "Django>=5.2,<6\ngunicorn>=23  # the server\n").unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("plan.kdl"), PLAN).unwrap();
        Self { dir, children: Vec::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Release `r1` live in slot `blue`, its gunicorn recorded with `pid`.
    fn live(&self, pid: u32) {
        let state = StateDir::prepare(&self.state()).unwrap();
        let live = Deployed { release: "r1".into(), slot: "blue".into(), since: "2026-12-01T10:00:00Z".into() };
        state.save(&State { live: Some(live), previous: None, history: Vec::new(), ..State::default() }).unwrap();
        let run = self.path().join("root/run");
        std::fs::create_dir_all(&run).unwrap();
        let record = serde_json::json!({
            "release": "r1", "slot": "blue", "argv": ["gunicorn"], "cwd": self.path().join("root"), "pid": pid,
        });
        std::fs::write(run.join("blue.json"), record.to_string()).unwrap();
    }

    /// A process that looks like the live slot's gunicorn to zdd: it carries the slot and release zdd starts
    /// instances with.
    fn live_instance(&mut self) -> u32 {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .env("ZDD_SLOT", "blue")
            .env("ZDD_RELEASE", "r1")
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// `zdd doctor --plain` with these extra arguments and environment; asserts that it changed nothing.
    fn doctor(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let before = tree(self.path());
        let mut cmd = Command::cargo_bin("zdd").unwrap();
        cmd.env_remove("ZDD_STATE_DIR").env("NO_COLOR", "1").arg("doctor").arg(self.path().join("plan.kdl"));
        if !args.contains(&"--json") {
            cmd.arg("--plain");
        }
        cmd.arg("--state-dir").arg(self.state());
        cmd.args(["--var", &format!("root={}", self.path().join("root").display())]);
        for arg in args {
            cmd.arg(arg);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        assert_eq!(before, tree(self.path()), "zdd doctor must not change anything");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let text = if args.contains(&"--json") { text } else { self.clean(&text) };
        (out.status.code(), text)
    }

    /// Output without what differs from run to run: clocks, the directory, free space, versions, the host.
    fn clean(&self, text: &str) -> String {
        let clock = regex_lite(text);
        clock
            .replace(&self.path().display().to_string(), "[TMP]")
            .replace(&format!(" on {})", hostname()), " on [HOST])")
    }
}

/// Each line without its `HH:MM:SS.mmm ` clock, free space as `[N] MiB`, Python's version as `[VERSION]`.
fn regex_lite(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.split_once(' ') {
            Some((clock, rest)) if clock.len() == 12 && clock.as_bytes()[2] == b':' => rest,
            _ => line,
        };
        let line = match line.find(" MiB free at ") {
            Some(at) => {
                let start = line[..at].rfind(' ').map_or(0, |s| s + 1);
                format!("{}[N]{}", &line[..start], &line[at..])
            }
            None => line.to_owned(),
        };
        let line = match line.find("Python 3.") {
            Some(at) => format!("{}Python [VERSION]", &line[..at]),
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The lines of the output about `check`, each with the fix line that follows it (unindented).
fn lines_of(text: &str, check: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.contains(&format!(" {check}: ")) {
            out.push(line);
            if let Some(fix) = lines.next_if(|l| l.trim_start().starts_with("fix: ")) {
                out.push(fix.trim_start());
            }
        }
    }
    out.join("\n")
}

/// A pid no process has now: that of a child that exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_healthy_host_gives_only_ok_lines_and_exit_0() {
    let mut host = Host::new();
    // First deploy: no state directory yet, and doctor does not create it.
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!host.state().exists(), "the state directory is not created");
    insta::assert_snapshot!("doctor_first_deploy", text);

    let pid = host.live_instance();
    host.live(pid);
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.lines().all(|l| l.starts_with("ok ") || l.starts_with("doctor: ")), "{text}");
    insta::assert_snapshot!("doctor_healthy", text.replace(&pid.to_string(), "[PID]"));
}

#[test]
fn json_gives_one_event_per_check() {
    let host = Host::new();
    let (code, text) = host.doctor(&["--json"], &[]);
    assert_eq!(code, Some(0), "{text}");
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events[..events.len() - 1].iter().all(|e| e["event"] == "check" && e["outcome"] == "ok"), "{text}");
    let last = &events[events.len() - 1];
    assert_eq!((last["event"].as_str(), last["problems"].as_u64()), (Some("doctor-finished"), Some(0)), "{text}");
}

#[test]
fn a_stale_lock_is_a_problem_with_unlock_as_its_fix() {
    let mut host = Host::new();
    let pid = host.live_instance();
    host.live(pid);
    let dead = dead_pid();
    let owner = LockOwner {
        host: hostname(),
        pid: dead,
        user: "ci".into(),
        started_at: "2026-12-01T10:00:00Z".into(),
        ci_job: None,
        command: "run".into(),
    };
    std::fs::write(lock_path(&host.state()), serde_json::to_string(&owner).unwrap()).unwrap();
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "lock").replace(&dead.to_string(), "[PID]"), @r"
    problem lock: the lock names pid [PID] (ci on [HOST]), running `zdd run` since 2026-12-01T10:00:00Z, and that process is gone
    fix: `zdd unlock [TMP]/plan.kdl` clears it (the next run would take it over with a warning) [zdd::doctor-stale-lock]
    ");
}

#[test]
fn a_live_slot_whose_process_is_gone_is_a_problem() {
    let host = Host::new();
    let dead = dead_pid();
    host.live(dead);
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "live instance").replace(&dead.to_string(), "[PID]"), @r"
    problem step web: live instance: the live slot blue's gunicorn (release r1, pid [PID]) is not running: requests to it fail
    fix: deploy again (`zdd run`) or put the previous release back (`zdd rollback`): either starts an instance in the other slot and moves traffic to it [zdd::doctor-live-gone]
    ");
}

#[test]
fn an_interrupted_run_is_a_problem_with_recover_as_its_fix() {
    let mut host = Host::new();
    let pid = host.live_instance();
    host.live(pid);
    let header = RunHeader {
        run_id: "20261202-120000-abcd".into(),
        plan: "doctored".into(),
        mode: RunMode::Deploy,
        target: DeployTarget {
            release: "r2".into(),
            slot: "green".into(),
            live_slot: Some("blue".into()),
            live_release: Some("r1".into()),
            rollback: false,
        },
        user: "ci".into(),
        host: "web1".into(),
        pid: 1,
        started_at: 0,
        steps: vec!["release".into(), "venv".into(), "web".into()],
        needs: Vec::new(),
    };
    // Created and never finished: what a run killed in its middle leaves.
    drop(Journal::create(&host.state(), &header, Redactor::new()).unwrap());
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "journal"), @r"
    problem journal: run 20261202-120000-abcd (release r2, by ci on web1) did not finish: its changes may still be in place
    fix: `zdd recover [TMP]/plan.kdl` undoes them from the journal (`zdd run` refuses until then) [zdd::doctor-interrupted]
    ");
}

#[test]
fn a_unit_directory_that_cannot_be_created_is_a_problem() {
    let host = Host::new();
    // Root may write anywhere, but not under a file.
    std::fs::write(host.path().join("not-a-dir"), "").unwrap();
    let units = format!("units={}", host.path().join("not-a-dir/units").display());
    let (code, text) = host.doctor(&["--var", "manager=systemd", "--var", &units], &[]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "step web: permissions"), @r"
    problem step web: permissions: the unit directory [TMP]/not-a-dir/units cannot be created: [TMP]/not-a-dir is not a directory
    fix: run zdd as a user who may write there (root for /etc/systemd/system), or set `unit-dir` [zdd::doctor-unwritable]
    ");
}

#[test]
fn a_program_missing_from_the_path_is_a_problem_with_its_package() {
    let host = Host::new();
    // A PATH with a shell (the check asks `command -v`) and nothing else.
    let bin = host.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("sh")).unwrap();
    let (code, text) = host.doctor(&[], &[("PATH", bin.to_str().unwrap())]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "step venv: tools"), @r"
    problem step venv: tools: `python3` is not installed (not found on the PATH)
    fix: install it (`apt-get install python3`), or add a `packages` step that installs `python3` [zdd::preflight-program]
    ");
}

#[test]
fn a_state_directory_others_may_write_to_is_a_problem_and_the_steps_are_still_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let host = Host::new();
    std::fs::create_dir(host.state()).unwrap();
    std::fs::set_permissions(host.state(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ok      step release: disk space"), "{text}");
    insta::assert_snapshot!(lines_of(&text, "state dir"), @r"
    problem state dir: [TMP]/state is writable by group or others (mode 777): they could change the journal `zdd recover` acts on, and every run refuses it
    fix: `chmod 700 [TMP]/state` [zdd::doctor-state-dir]
    ");
}

#[test]
fn a_port_something_else_listens_on_is_a_problem() {
    let host = Host::new();
    // The first slot's port is taken by this test; the second is free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let plan = PLAN
        .replace(r#"slots "blue" "green""#, &format!(r#"slots "{port}" "{other}""#))
        .replace(r#"    manager "{{manager}}""#, "    manager \"{{manager}}\"\n    listen \"port\"");
    std::fs::write(host.path().join("plan.kdl"), plan).unwrap();
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    insta::assert_snapshot!(lines_of(&text, "step web: ports").replace(&port.to_string(), "[PORT]"), @r"
    problem step web: ports: something else listens on 127.0.0.1:[PORT], the port of slot [PORT], which the new instance takes
    fix: stop what listens there (`ss -ltnp 'sport = :[PORT]'` names it), or give the plan other `slots` ports [zdd::doctor-port-in-use]
    ");
    drop(taken);
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("ok      step web: ports: 127.0.0.1:{port} (slot {port}")), "{text}");
}

#[test]
fn a_host_that_cannot_be_reached_is_a_problem_and_its_steps_are_not_checked() {
    let host = Host::new();
    // Nothing listens on port 1: ssh is refused at once. The config keeps ssh from asking anything.
    std::fs::write(host.path().join("ssh.conf"), "Host *\n  BatchMode yes\n  ConnectTimeout 5\n").unwrap();
    let plan = r#"plan "far"
slots "blue" "green"
var "root" ""
hosts "web" "deploy@127.0.0.1:1"
ssh-config "ssh.conf"
step "remote" kind="exec" role="web" {
    run "true"
}
step "here" kind="exec" {
    run "true"
}
"#;
    std::fs::write(host.path().join("plan.kdl"), plan).unwrap();
    let (code, text) = host.doctor(&[], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ok      step here: preflight"), "{text}");
    assert!(!text.contains("step remote"), "{text}");
    let line = lines_of(&text, "host deploy@127.0.0.1:1");
    assert!(
        line.starts_with(
            "problem host deploy@127.0.0.1:1: cannot be reached, so its steps (remote) were not checked: "
        ),
        "{line}"
    );
    assert!(line.contains("Connection refused") && line.contains("[zdd::doctor-unreachable]"), "{line}");
}
