//! `zdd run` with exec steps: parallelism, retries, timeouts and the rollback order, through the built binary.

use crate::executor_support as support;

use std::time::{Duration, Instant};

use support::{Scratch, events, text};

#[test]
fn independent_steps_overlap_in_time() {
    let s = Scratch::new("parallel");
    let out = s.zdd("run", &["--jobs", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let stamp = |name: &str| -> u128 { s.read(name).trim().parse().unwrap() };
    let steps = ["one", "two", "three"];
    let last_start = steps.iter().map(|n| stamp(&format!("{n}.start"))).max().unwrap();
    let first_end = steps.iter().map(|n| stamp(&format!("{n}.end"))).min().unwrap();
    assert!(last_start < first_end, "the steps ran one after the other: {last_start} >= {first_end}");
}

#[test]
fn one_job_runs_steps_one_at_a_time() {
    let s = Scratch::new("parallel");
    let out = s.zdd("run", &["--jobs", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let mut spans: Vec<(u128, u128)> = ["one", "two", "three"]
        .iter()
        .map(|n| {
            (s.read(&format!("{n}.start")).trim().parse().unwrap(), s.read(&format!("{n}.end")).trim().parse().unwrap())
        })
        .collect();
    spans.sort_unstable();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlap with --jobs 1: {spans:?}");
}

#[test]
fn a_flaky_step_succeeds_on_the_third_attempt() {
    let s = Scratch::new("flaky");
    let out = s.zdd("run", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(s.read("count").trim(), "3");
    let evs = events(&out);
    let retries: Vec<u64> =
        evs.iter().filter(|e| e["event"] == "step-retrying").map(|e| e["attempt"].as_u64().unwrap()).collect();
    assert_eq!(retries, [2, 3]);
    let cause = evs.iter().find(|e| e["event"] == "step-retrying").unwrap()["cause"].as_str().unwrap().to_owned();
    assert!(cause.contains("exited with status 1"), "{cause}");
    let finished = evs.iter().find(|e| e["event"] == "run-finished").unwrap();
    assert_eq!(finished["outcome"], "deployed");
    assert_eq!(finished["summary"][0]["attempts"], 3);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let s = Scratch::new("timeout");
    let started = Instant::now();
    let out = s.zdd("run", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let evs = events(&out);
    let finished = evs.iter().find(|e| e["event"] == "step-finished").unwrap();
    assert_eq!(finished["state"], "timed-out");
    assert!(finished["error"].as_str().unwrap().contains("timed out after 300ms"));
    // The undo was recorded before the command ran, so the timed-out step is undone.
    assert!(s.out().join("undone").exists());
    // The background child would write `late` one second in: it must have died with its group.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(!s.out().join("late").exists(), "a process of the timed-out step survived");
}

#[test]
fn rollback_undoes_dependents_first_and_only_steps_that_ran() {
    let s = Scratch::new("rollback-order");
    let out = s.zdd("run", &["--plain", "--jobs", "8"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // quick, medium and broken need only base: their undos run together (in any order), base's after them.
    let log = s.read("undo.log");
    let mut lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.pop(), Some("base"), "{log}");
    lines.sort_unstable();
    assert_eq!(lines, ["broken", "medium", "quick"], "{log}");
    assert!(stdout.contains("never: skipped"), "{stdout}");
    assert!(stdout.contains("broken | broken on purpose"), "{stdout}");
    assert!(stdout.contains("every change was rolled back"), "{stdout}");
    assert!(stdout.contains("Ran without an undo (read-only or forward-only): check."), "{stdout}");
}

#[test]
fn a_missing_plan_exits_2() {
    let s = Scratch::new("flaky");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdd"))
        .args(["run", "/nonexistent/plan.kdl", "--state-dir"])
        .arg(s.state())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn secrets_are_masked_in_output_and_journal_events() {
    let s = Scratch::new("secrets");
    let secret = "hunter2-very-secret";
    let out = s.zdd("run", &["--plain", "--var", &format!("token={secret}")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(stdout.contains("the token is ***"), "{stdout}");
    let json = s.zdd("run", &["--json", "--var", &format!("token={secret}")]);
    assert!(!text(&json.stdout).contains(secret));
    // The undo ran with the real value: facts are kept as recorded, for recover.
    assert_eq!(s.read("undo-saw").trim(), secret);
    for journal in std::fs::read_dir(s.state().join("journal")).unwrap() {
        let journal = std::fs::read_to_string(journal.unwrap().path()).unwrap();
        for line in journal.lines().filter(|l| !l.contains("\"event\":\"undo-facts\"")) {
            assert!(!line.contains(secret), "{line}");
        }
    }
}
