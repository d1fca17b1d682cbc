//! Rolling replacement with containers (plans/containers.kdl): three replicas, each a container of the release's
//! image, behind a real Nginx, replaced one lane at a time, under load, with the real Docker engine. The images
//! are built offline (tests/support/docker.rs: a `docker import`ed Debian base, the shop's wheels copied into the
//! build context, `--network none`) from zdd's own Dockerfile template (the shop has no Dockerfile).
//!
//! One stack, one sequence (the images and the docker layer cache are shared): v1 over three lanes; v1 -> v2
//! under load with zero failed requests, every lane on v2 and only v2 containers running; a v3 whose health
//! check fails: rolled back, v2 serves, no v3 container left (running or stopped) and its image removed; a v3
//! healthy on lane 1 only (lane 1 switched, then lane 2's gate fails): every lane back on v2; `zdd rollback`
//! under load: every lane on v1 again, from v1's kept image.

use crate::support;

use std::time::Duration;

use support::docker::{Containers, base_image, containers, image_present, running_releases, shop_wheels};
use support::env::{Requirement, require};
use support::load::{Load, LoadConfig, Report};
use support::scenarios::{Outcome, check, check_no_failures, measured, serial, serving};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

const LANES: usize = 3;
const PLAN: &str = "containers";
/// The app's name in this module: it names the containers (`<app>-<lane>-<slot>`) and the images.
const APP: &str = "zddct";

/// The variables that point plans/containers.kdl at this machine: the offline base, the wheels, no network
/// for builds, and the test directory mounted in every replica (the SQLite file lives there).
fn docker_vars(stack: &Stack) -> Vec<String> {
    let dir = stack.dir.path().display().to_string();
    [
        ("app", APP.to_string()),
        ("wsgi", "shop.wsgi:application".to_string()),
        ("settings", "shop.settings".to_string()),
        ("base_image", base_image().to_string()),
        ("wheels", shop_wheels().display().to_string()),
        ("build_network", "none".to_string()),
        ("docker_args", format!("--volume {dir}:{dir}")),
        // A container's gunicorn boots slower than a process on a loaded machine, but a broken release must
        // still fail soon: between the other scenarios' 12 s and the plan's minute.
        ("health_within", "30s".to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| ["--var".to_string(), format!("{k}={v}")])
    .collect()
}

fn zdd(stack: &Stack, command: &str, version: &str) -> ZddRun {
    stack.zdd_with_args(command, PLAN, version, &docker_vars(stack))
}

/// zdd under the standard load: the old version answers first, then zdd runs, then a moment more.
fn under_load(stack: &Stack, command: &str, version: &str) -> (ZddRun, Report) {
    let mut config = LoadConfig::standard(stack.nginx.port);
    config.max_duration = Duration::from_mins(10);
    let load = Load::start(config);
    std::thread::sleep(Duration::from_millis(700));
    let run = zdd(stack, command, version);
    std::thread::sleep(Duration::from_millis(700));
    (run, load.finish())
}

fn expect_every_lane_serves(stack: &Stack, version: &str, run: &ZddRun) -> Result<(), String> {
    let seen: Vec<Option<String>> = (0..4 * LANES).map(|_| serving(stack)).collect();
    check(seen.iter().all(|v| v.as_deref() == Some(version)), || {
        format!("expected {version} on every lane, answers: {seen:?}\n{}\n{}", run.describe(), stack.nginx.error_log())
    })
}

/// Exactly one running container per lane, each of `release`.
fn expect_containers_of(release: &str, why: &str) -> Result<(), String> {
    let settled = support::proc::wait_until(Duration::from_secs(40), || {
        let now = running_releases(APP);
        now.len() == LANES && now.iter().all(|r| r == release)
    });
    check(settled, || format!("{why}: expected {LANES} containers of {release}, running: {:?}", running_releases(APP)))
}

fn newest_release(stack: &Stack) -> Result<String, String> {
    stack.releases().pop().ok_or_else(|| "no release directory".to_string())
}

fn first_deploy(stack: &Stack, _plan: &str) -> Outcome {
    let run = zdd(stack, "run", "v1");
    check(run.code == 0, || format!("first deploy failed\n{}", run.describe()))?;
    expect_every_lane_serves(stack, "v1", &run)?;
    let v1 = newest_release(stack)?;
    expect_containers_of(&v1, "after the first deploy")?;
    check(image_present(&format!("{APP}:{v1}")), || format!("no image {APP}:{v1}"))?;
    Ok(format!("zdd {:.1} s (with the image build)", run.duration.as_secs_f64()))
}

fn upgrade(stack: &Stack, _plan: &str) -> Outcome {
    let (run, report) = under_load(stack, "run", "v2");
    check(run.code == 0, || format!("v1 -> v2 failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    check(report.last_version().as_deref() == Some("v2"), || format!("last answer not v2: {}", report.summary()))?;
    expect_every_lane_serves(stack, "v2", &run)?;
    expect_containers_of(&newest_release(stack)?, "v1 containers not all replaced")?;
    Ok(measured(&report, races, &run))
}

/// A failed run of `version` under load: exit 1, zero failed requests, v2 on every lane, no container and no
/// image of the failed release left.
fn fails_back_to_v2(stack: &Stack, version: &str) -> Result<(ZddRun, String), String> {
    let before = stack.releases();
    let v2 = newest_release(stack)?;
    let (run, report) = under_load(stack, "run", version);
    check(run.code == 1, || format!("exit {} (expected 1, rolled back)\n{}", run.code, run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_every_lane_serves(stack, "v2", &run)?;
    expect_containers_of(&v2, "after the rollback")?;
    let after = stack.releases();
    check(after == before, || format!("releases before {before:?}, after {after:?}"))?;
    let failed: Vec<String> = running_releases(APP).into_iter().filter(|r| *r != v2).collect();
    check(failed.is_empty(), || format!("containers of the failed release still run: {failed:?}"))?;
    let leftover = containers(APP, None, true).len();
    check(leftover == LANES, || format!("{leftover} containers exist (stopped ones included), expected {LANES}"))?;
    let measured = measured(&report, races, &run);
    Ok((run, measured))
}

fn health_fails(stack: &Stack, _plan: &str) -> Outcome {
    let (run, measured) = fails_back_to_v2(stack, "v3-health-fails")?;
    check(run.step_state("health.1").as_deref() == Some("failed"), || {
        format!("lane 1's health gate did not fail\n{}", run.describe())
    })?;
    check(!run.started_steps().iter().any(|s| s == "switch.1"), || format!("lane 1 was switched\n{}", run.describe()))?;
    Ok(measured)
}

fn breaks_after_the_first_lane(stack: &Stack, _plan: &str) -> Outcome {
    let (run, measured) = fails_back_to_v2(stack, "v3-health-fails-lane-2")?;
    let state = |step: &str| run.step_state(step);
    check(
        state("switch.1").as_deref() == Some("rolled-back") && state("drain.1").as_deref() == Some("rolled-back"),
        || format!("lane 1 was not switched and switched back\n{}", run.describe()),
    )?;
    check(state("health.2").as_deref() == Some("failed"), || {
        format!("lane 2's gate did not fail\n{}", run.describe())
    })?;
    Ok(measured)
}

fn rollback_to_v1(stack: &Stack, _plan: &str) -> Outcome {
    let releases = stack.releases();
    let v1 = releases.iter().rev().nth(1).cloned().ok_or_else(|| format!("no previous release in {releases:?}"))?;
    let (run, report) = under_load(stack, "rollback", "v2");
    check(run.code == 0, || format!("zdd rollback failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_every_lane_serves(stack, "v1", &run)?;
    expect_containers_of(&v1, "after the rollback")?;
    Ok(measured(&report, races, &run))
}

const SEQUENCE: &[support::scenarios::Scenario] = &[
    ("1 first deploy over three containers", first_deploy),
    ("2 v1 -> v2 under load, lane by lane", upgrade),
    ("3 health fails: no v3 container left, v2 serves", health_fails),
    ("4 breaks after the first lane switched: every lane back on v2", breaks_after_the_first_lane),
    ("5 zdd rollback to v1 under load", rollback_to_v1),
];

#[test]
fn containers_rolling_docker() {
    let _serial = serial();
    let name = "containers-docker";
    if !require(name, &[Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Docker]) {
        return;
    }
    let _containers = Containers::new(APP);
    let stack = Stack::start(name, StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Socket });
    support::scenarios::run_all(&stack, PLAN, SEQUENCE);
}
