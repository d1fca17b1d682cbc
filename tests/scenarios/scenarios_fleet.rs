//! A plan naming several SSH hosts, run by the `zdd` binary against the network-namespace hosts of
//! `support::hosts` (each its own sshd, `/srv` and `/run`): steps act on the host their plan step names, a
//! failure on one host undoes what ran on every host (on the host each step ran on, from the journal), and a
//! host that cannot be reached stops the run before anything changed.
//!
//! The plan uses the `symlink` and `exec` kinds only (what a host's `Host` operations do, over SSH): the full
//! Django fleet (`plans/fleet.kdl`, with each host's Nginx and the load balancer) needs probes and the release
//! archive to go through the host's transport, which is other work (see book/src/fleets.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::env::TestDir;
use crate::support::hosts::{self, Hosts};
use crate::support::zdd::zdd_bin;

/// Every web host: a release directory per release, `current` pointing at the live one, and a check that
/// fails on a host holding `/srv/fleet/broken` (the test makes it there), and waits while it holds `/srv/fleet/hang`.
const PLAN: &str = r#"
plan "fleet-test"
var "hosts" ""
var "ssh_config" ""
hosts "web" "{{hosts}}"
ssh-config "{{ssh_config}}"

repeat "h" in="{{hosts}}" {
    step "release" kind="exec" host="{{h}}" {
        run "mkdir -p /srv/fleet/releases/{{release}} && hostname > /srv/fleet/releases/{{release}}/built-on"
        undo "rm -rf /srv/fleet/releases/{{release}}"
    }
}
step "migrate" kind="exec" role="web" {
    needs "release"
    run "echo {{release}} >> /srv/fleet/migrated"
}
repeat "h" in="{{hosts}}" serial=1 {
    step "current" kind="symlink" host="{{h}}" {
        needs "migrate"
        link "/srv/fleet/current"
        target "/srv/fleet/releases/{{release}}"
    }
    step "check" kind="exec" host="{{h}}" {
        needs "current"
        run "while [ -e /srv/fleet/hang ]; do sleep 0.1; done; test ! -e /srv/fleet/broken"
    }
}
"#;

struct Fleet {
    hosts: &'static Hosts,
    dir: TestDir,
    plan: PathBuf,
}

impl Fleet {
    fn new(test: &str) -> Option<Fleet> {
        let hosts = hosts::shared(test)?;
        let dir = TestDir::new(test);
        let plan = dir.join("fleet.kdl");
        std::fs::write(&plan, PLAN).unwrap();
        for host in &hosts.machines {
            let _ = std::fs::remove_dir_all(host.srv.join("fleet"));
        }
        Some(Fleet { hosts, dir, plan })
    }

    fn destinations(&self) -> String {
        (0..self.hosts.machines.len()).map(|i| self.hosts.destination(i)).collect::<Vec<_>>().join(" ")
    }

    fn command(&self, command: &str, hosts: &str, release: Option<&str>) -> Command {
        self.command_with(command, hosts, release, &self.hosts.ssh_config)
    }

    fn command_with(&self, command: &str, hosts: &str, release: Option<&str>, ssh_config: &Path) -> Command {
        let mut cmd = Command::new(zdd_bin());
        cmd.arg(command).arg(&self.plan).arg("--json").arg("--state-dir").arg(self.dir.join("state"));
        cmd.args(["--var", &format!("hosts={hosts}")]);
        cmd.args(["--var", &format!("ssh_config={}", ssh_config.display())]);
        if let Some(r) = release {
            cmd.args(["--release", r]);
        }
        cmd.env_remove("ZDD_STATE_DIR").env("NO_COLOR", "1");
        cmd
    }

    fn zdd(&self, command: &str, hosts: &str, release: Option<&str>) -> (i32, Vec<Value>, String) {
        let out = self.command(command, hosts, release).output().expect("zdd runs");
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        (out.status.code().unwrap_or(-1), events, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Where host `i`'s `/srv/fleet/current` points (read from outside the host: its `/srv` is our directory).
    fn current(&self, i: usize) -> Option<String> {
        let link = std::fs::read_link(self.hosts.machines[i].srv.join("fleet/current")).ok()?;
        link.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    fn srv(&self, i: usize) -> &Path {
        &self.hosts.machines[i].srv
    }
}

/// The host each started step ran on, by step.
fn hosts_of_started(events: &[Value]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter(|e| e["event"] == "step-started")
        .map(|e| (e["step"].as_str().unwrap_or("").to_owned(), e["host"].as_str().map(str::to_owned)))
        .collect()
}

#[test]
fn a_fleet_deploys_every_host_and_a_failure_on_one_puts_every_host_back() {
    let Some(f) = Fleet::new("fleet_deploy") else { return };
    let started = std::time::Instant::now();
    let all = f.destinations();

    // `zdd plan` reads every host and says where each step runs.
    let mut plan = Command::new(zdd_bin());
    plan.arg("plan").arg(&f.plan).arg("--state-dir").arg(f.dir.join("state"));
    plan.args(["--var", &format!("hosts={all}"), "--var", &format!("ssh_config={}", f.hosts.ssh_config.display())]);
    let out = plan.env("NO_COLOR", "1").output().expect("zdd plan runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("● migrate [exec] on {}", f.hosts.destination(0))), "{text}");

    // First deploy: every host built and switched; migrate ran once, on the first host.
    let (code, events, stderr) = f.zdd("run", &all, Some("20260101-000001"));
    assert_eq!(code, 0, "{stderr}");
    for i in 0..f.hosts.machines.len() {
        assert_eq!(f.current(i).as_deref(), Some("20260101-000001"), "host {i}");
        let built = std::fs::read_to_string(f.srv(i).join("fleet/releases/20260101-000001/built-on")).unwrap();
        assert_eq!(built.trim(), f.hosts.machines[i].name, "each release was built on its own host");
    }
    assert!(f.srv(0).join("fleet/migrated").exists());
    assert!(!f.srv(1).join("fleet/migrated").exists(), "migrate ran on the role's first host only");
    let started_on = hosts_of_started(&events);
    let migrate = started_on.iter().find(|(s, _)| s == "migrate").and_then(|(_, h)| h.clone());
    assert_eq!(migrate, Some(f.hosts.destination(0)), "JSON events carry the host");

    // v1 -> v2.
    let (code, _, stderr) = f.zdd("run", &all, Some("20260101-000002"));
    assert_eq!(code, 0, "{stderr}");
    assert!((0..f.hosts.machines.len()).all(|i| f.current(i).as_deref() == Some("20260101-000002")));

    // v3 fails its check on the last host only, after the hosts before it switched: every host back on v2.
    let last = f.hosts.machines.len() - 1;
    std::fs::write(f.srv(last).join("fleet/broken"), "").unwrap();
    let (code, events, stderr) = f.zdd("run", &all, Some("20260101-000003"));
    assert_ne!(code, 0, "{stderr}");
    assert_eq!(events.last().map(|e| e["outcome"].clone()), Some(Value::from("rolled-back")), "{stderr}");
    for i in 0..=last {
        assert_eq!(f.current(i).as_deref(), Some("20260101-000002"), "host {i} is back on v2");
        assert!(!f.srv(i).join("fleet/releases/20260101-000003").exists(), "host {i}'s v3 build was removed");
    }
    let undone_on: Vec<Option<&str>> = events
        .iter()
        .filter(|e| e["event"] == "undo-started" && e["step"].as_str().is_some_and(|s| s.starts_with("current.")))
        .map(|e| e["host"].as_str())
        .collect();
    assert!(!undone_on.is_empty() && undone_on.iter().all(Option::is_some), "undos name their host: {undone_on:?}");
    std::fs::remove_file(f.srv(last).join("fleet/broken")).unwrap();

    // `zdd rollback` of the fleet: v1 again everywhere.
    let (code, _, stderr) = f.zdd("rollback", &all, None);
    assert_eq!(code, 0, "{stderr}");
    assert!((0..=last).all(|i| f.current(i).as_deref() == Some("20260101-000001")));

    // zdd killed (-9) while the last host checks v4, the hosts before it switched: `zdd recover` undoes every
    // host from the journal (it names each step's host), and one release is live everywhere.
    std::fs::write(f.srv(last).join("fleet/hang"), "").unwrap();
    let mut run = f.command("run", &all, Some("20260101-000004"));
    let mut child = run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut waited = 0;
    while f.hosts.processes_matching(last, "/srv/fleet/hang").is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "zdd ended before the last host's check");
        waited += 1;
        assert!(waited < 3000, "the last host's check never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(f.current(0).as_deref(), Some("20260101-000004"), "the first host switched");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(f.srv(last).join("fleet/hang")).unwrap();
    let (code, _, stderr) = f.zdd("recover", &all, None);
    assert_eq!(code, 0, "{stderr}");
    for i in 0..=last {
        assert_eq!(f.current(i).as_deref(), Some("20260101-000001"), "host {i} is back on v1 after recover");
        assert!(!f.srv(i).join("fleet/releases/20260101-000004").exists(), "host {i}'s v4 build was removed");
    }
    eprintln!("fleet_deploy: {:?}", started.elapsed());
}

#[test]
fn an_unreachable_host_stops_the_run_before_anything_changes() {
    let Some(f) = Fleet::new("fleet_unreachable") else { return };
    // A host of the test's own range that no namespace answers on (the range's `unreachable` route refuses it).
    let hosts = format!("{} root@{}.250:22", f.hosts.destination(0), f.hosts.gateway.rsplit_once('.').unwrap().0);
    let (code, events, stderr) = f.zdd("run", &hosts, Some("20260101-000001"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach 1 host before the first step; nothing was changed"), "{stderr}");
    assert!(stderr.contains(".250:22"), "the host is named: {stderr}");
    assert!(hosts_of_started(&events).is_empty(), "a step started");
    assert!(!f.srv(0).join("fleet").exists(), "the reachable host was changed");
}

#[test]
fn a_host_whose_key_known_hosts_does_not_hold_stops_the_run_before_anything_changes() {
    let Some(f) = Fleet::new("fleet_host_key") else { return };
    // The hosts' ssh config, with a known_hosts that lists none of them.
    let config = std::fs::read_to_string(&f.hosts.ssh_config).unwrap();
    let known = f.hosts.dir.join("known_hosts").display().to_string();
    assert!(config.contains(&known), "the test config names its known_hosts");
    std::fs::write(f.dir.join("empty_known_hosts"), "").unwrap();
    let strict = f.dir.join("ssh_config");
    std::fs::write(&strict, config.replace(&known, &f.dir.join("empty_known_hosts").display().to_string())).unwrap();
    let out = f.command_with("run", &f.hosts.destination(1), Some("20260101-000001"), &strict).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing was changed") && stderr.contains(&f.hosts.destination(1)), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "ssh's own reason is shown: {stderr}");
    assert!(!f.srv(1).join("fleet").exists(), "the host was changed");
}
