//! Rolling replacement (plans/rolling.kdl): three gunicorn instances ("lanes") behind a real Nginx, replaced one
//! after another, under load, with the process and the systemd backends. Proves: a first deploy over three lanes;
//! v1 -> v2 under load with zero failed requests, the lanes replaced in order, every lane serving v2 afterwards;
//! a v3 whose health fails on lane 2 is rolled back (exit 1) with zero failed requests: lane 1 is back on its v2
//! instance, every lane serves v2 and no v3 instance runs; `zdd rollback` under load returns every lane to v1
//! (three masters, all of the v1 release) with zero failed requests, and v2 deploys again over it.

use crate::support;

use std::time::Duration;

use support::scenarios::{
    Outcome, Scenario, check, check_no_failures, measured, run_on_sqlite_socket_stack, serving, under_load,
};
use support::zdd::{Backend, Stack, ZddRun};

const LANES: usize = 3;

/// A v3 whose `/health/` answers 503 on lane 2 only (tests/fixtures/django-versions).
const V3: &str = "v3-health-fails-lane-2";

/// Fresh requests through Nginx (a new connection each, so the upstream's round robin reaches every lane): the
/// versions they were answered by.
fn versions_served(stack: &Stack, requests: usize) -> Vec<Option<String>> {
    (0..requests).map(|_| serving(stack)).collect()
}

/// Every one of `4 * LANES` fresh requests is answered by `version`.
fn expect_every_lane_serves(stack: &Stack, version: &str, run: &ZddRun) -> Result<(), String> {
    let seen = versions_served(stack, 4 * LANES);
    check(seen.iter().all(|v| v.as_deref() == Some(version)), || {
        format!("expected {version} on every lane, answers: {seen:?}\n{}\n{}", run.describe(), stack.nginx.error_log())
    })
}

/// The gunicorn masters of the stack with their command lines (which name their release directory).
fn masters(stack: &Stack) -> Vec<(u32, String)> {
    stack
        .gunicorn_masters()
        .into_iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

/// Exactly one instance per lane runs (old instances drained and stopped), each of `release`.
fn expect_lanes_run(stack: &Stack, release: &str, why: &str) -> Result<(), String> {
    let settled = support::proc::wait_until(Duration::from_secs(40), || {
        let now = masters(stack);
        now.len() == LANES && now.iter().all(|(_, cmd)| cmd.contains(&format!("/releases/{release}/")))
    });
    check(settled, || format!("{why}: expected {LANES} masters of release {release}, running: {:#?}", masters(stack)))
}

/// The lanes were replaced one after another: lane N+1's instance started after lane N's old one was stopped.
fn expect_lanes_in_order(run: &ZddRun) -> Result<(), String> {
    let started = run.started_steps();
    let position = |name: &str| started.iter().position(|s| s == name);
    let order = ["web-1", "switch-1", "drain-1", "web-2", "switch-2", "drain-2", "web-3", "switch-3", "drain-3"];
    let positions: Vec<Option<usize>> = order.iter().map(|s| position(s)).collect();
    check(positions.iter().all(Option::is_some) && positions.is_sorted(), || {
        format!("steps started in this order: {started:?}")
    })
}

/// The newest release directory (release ids are UTC timestamps).
fn newest_release(stack: &Stack) -> Result<String, String> {
    stack.releases().pop().ok_or_else(|| "no release directory".to_string())
}

fn first_deploy(stack: &Stack, plan: &str) -> Outcome {
    let run = stack.zdd("run", plan, "v1");
    check(run.code == 0, || format!("first deploy failed\n{}", run.describe()))?;
    expect_lanes_in_order(&run)?;
    expect_every_lane_serves(stack, "v1", &run)?;
    expect_lanes_run(stack, &newest_release(stack)?, "after the first deploy")?;
    Ok(format!("zdd {:.1} s", run.duration.as_secs_f64()))
}

fn upgrade(stack: &Stack, plan: &str) -> Outcome {
    let (run, report) = under_load(stack, "run", plan, "v2");
    check(run.code == 0, || format!("v1 -> v2 failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_lanes_in_order(&run)?;
    check(report.last_version().as_deref() == Some("v2"), || format!("last answer not v2: {}", report.summary()))?;
    expect_every_lane_serves(stack, "v2", &run)?;
    expect_lanes_run(stack, &newest_release(stack)?, "v1 instances not all replaced")?;
    check(report.slow_ok() > 0, || "no slow request completed".to_string())?;
    Ok(measured(&report, races, &run))
}

fn health_fails_on_lane_two(stack: &Stack, plan: &str) -> Outcome {
    let before = stack.releases();
    let v2 = newest_release(stack)?;
    let (run, report) = under_load(stack, "run", plan, V3);
    check(run.code == 1, || format!("exit {} (expected 1, rolled back)\n{}", run.code, run.describe()))?;
    // Lane 1 was switched to v3 and its old instance stopped (the fixture is healthy there), lane 2's gate
    // failed, lane 3 never started.
    let state = |step: &str| run.step_state(step);
    check(
        state("switch-1").as_deref() == Some("rolled-back") && state("drain-1").as_deref() == Some("rolled-back"),
        || format!("lane 1 was not switched and switched back\n{}", run.describe()),
    )?;
    check(state("health-2").as_deref() == Some("failed") && !run.started_steps().iter().any(|s| s == "web-3"), || {
        format!("lane 2's health gate did not fail, or lane 3 started\n{}", run.describe())
    })?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_every_lane_serves(stack, "v2", &run)?;
    expect_lanes_run(stack, &v2, "after the rollback")?;
    let after = stack.releases();
    check(after == before, || format!("releases before {before:?}, after {after:?}"))?;
    Ok(format!(
        "{}; v3 answers under load: {}",
        measured(&report, races, &run),
        report.ok_from_version_between(V3, Duration::ZERO, report.duration)
    ))
}

/// `zdd rollback` from v2 (every lane) to v1 under load, then v2 again: zero failed requests both ways.
fn rollback_then_v2_again(stack: &Stack, plan: &str) -> Outcome {
    let releases = stack.releases();
    let v1 = releases.iter().rev().nth(1).cloned().ok_or_else(|| format!("no previous release in {releases:?}"))?;
    let (run, report) = under_load(stack, "rollback", plan, "v2");
    check(run.code == 0, || format!("zdd rollback failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_every_lane_serves(stack, "v1", &run)?;
    expect_lanes_run(stack, &v1, "after the rollback")?;
    let back = measured(&report, races, &run);
    let (run, report) = under_load(stack, "run", plan, "v2");
    check(run.code == 0, || format!("redeploy of v2 failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_every_lane_serves(stack, "v2", &run)?;
    expect_lanes_run(stack, &newest_release(stack)?, "after the redeploy of v2")?;
    Ok(format!("rollback: {back}; v2 again: {}", measured(&report, races, &run)))
}

const ROLLING_SEQUENCE: &[Scenario] = &[
    ("1 first deploy over three lanes", first_deploy),
    ("2 v1 -> v2 under load, lane by lane", upgrade),
    ("3 health fails on lane 2: rolled back", health_fails_on_lane_two),
    ("4 zdd rollback to v1 under load, then v2 again", rollback_then_v2_again),
];

fn rolling(name: &str, backend: Backend) {
    run_on_sqlite_socket_stack(name, backend, "rolling", ROLLING_SEQUENCE);
}

#[test]
fn rolling_process_backend() {
    rolling("rolling-process", Backend::Process);
}

#[test]
fn rolling_systemd_backend() {
    rolling("rolling-systemd", Backend::Systemd);
}
