//! zdd's own numbers: deploys under load in socket and reload mode, wall time cold (the venv built from the
//! wheels) and warm (the live venv reused) against the seed's shell script, cutover latency (health gate passed
//! → the new version answering through Nginx), rollback latency after a cutover, and zdd's peak memory.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Options;
use crate::report::{LoadRow, Results};
use crate::support::env::free_port;
use crate::support::load::{Load, LoadConfig, Report};
use crate::support::shop;
use crate::support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

pub(crate) fn all(options: &Options, results: &mut Results) {
    let socket = StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Socket };
    let reload = StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Reload };
    for (config, plan, label) in [(socket, "prod", "zdd socket mode"), (reload, "port-switch", "zdd reload mode")] {
        if !options.wants("zdd") {
            continue;
        }
        if !crate::support::zdd::plan(plan).exists() {
            results.notes.push(format!("{label}: plans/{plan}.kdl not found, not measured"));
            continue;
        }
        deploys(options, results, config, plan, label);
    }
    if crate::support::zdd::plan("prod").exists() && options.wants("rollback") {
        rollback_latency(options, results, socket);
    }
    if options.wants("seed-script") {
        seed_script(options, results);
    }
    if crate::support::zdd::plan("prod").exists() && options.wants("installer") {
        cold_installers(options, results, socket);
    }
}

/// A first deploy (no live venv to copy) with pip and with uv, on the same requirements and wheels; each run on a
/// stack of its own. uv's own cache is filled by its first run and kept (as it is on a deploy host).
fn cold_installers(options: &Options, results: &mut Results, config: StackConfig) {
    if crate::support::venv::uv().is_none() {
        results.notes.push("cold deploy with uv: no uv wheel in the cache (scripts/test-deps.sh), not measured".into());
        return;
    }
    for run_index in 0..options.runs {
        for installer in ["pip", "uv"] {
            let stack = Stack::start(&format!("bench-{installer}"), config);
            let mut cmd = stack.command("run", "prod", "v1");
            cmd.arg("--var").arg(format!("installer={installer}"));
            let start = Instant::now();
            let out = cmd.output().expect("run zdd");
            let took = start.elapsed();
            if !out.status.success() {
                results.notes.push(format!(
                    "cold deploy with {installer} (run {run_index}) failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                return;
            }
            eprintln!("cold deploy with {installer}: {} ms", took.as_millis());
            results.timing(&format!("first deploy, cold venv, installer {installer} (wall)"), ms(took));
        }
    }
}

/// A copy of v2 whose version string is `name`, so every deploy's answers are told apart.
fn numbered_source(stack: &Stack, base: &str, name: &str) {
    let dir = stack.sources.join(name);
    if dir.exists() {
        return;
    }
    shop::materialise(base, &dir).expect("materialise");
    std::fs::write(dir.join("shop/version.py"), format!("VERSION = \"{name}\"\n")).expect("write version");
}

fn deploys(options: &Options, results: &mut Results, config: StackConfig, plan: &str, label: &str) {
    let stack = Stack::start("bench-zdd", config);
    let (first, memory) = timed_with_memory(&stack, plan, "v1");
    if first.code != 0 {
        results.notes.push(format!("{label}: first deploy failed:\n{}", first.describe()));
        return;
    }
    results.timing(&format!("{label}: first deploy, cold venv (wall)"), ms(first.duration));
    if let Some(kb) = memory {
        #[allow(clippy::cast_precision_loss)] // KiB of memory: far below 2^52
        results.timing("zdd peak RSS (KiB, first deploy)", kb as f64);
    }
    let mut reports = Vec::new();
    let mut previous = "v1".to_string();
    for run_index in 0..options.runs {
        let version = format!("v2-run{run_index}");
        numbered_source(&stack, "v2", &version);
        let load = Load::start(LoadConfig::standard(stack.nginx.port));
        std::thread::sleep(options.settle);
        let (run, memory) = timed_with_memory(&stack, plan, &version);
        std::thread::sleep(options.settle);
        let report = load.finish();
        eprintln!("{label} {previous} -> {version}: {}", report.summary());
        if run.code != 0 {
            results.notes.push(format!("{label}: deploy of {version} failed:\n{}", run.describe()));
            return;
        }
        results.timing(&format!("{label}: deploy, warm venv (wall)"), ms(run.duration));
        if let Some(kb) = memory {
            #[allow(clippy::cast_precision_loss)] // KiB of memory: far below 2^52
            results.timing("zdd peak RSS (KiB, warm deploy)", kb as f64);
        }
        if let Some(latency) = cutover_latency(&run, &report, &version) {
            results.timing(&format!("{label}: cutover latency (gate passed -> new version answers)"), latency);
        }
        reports.push(report);
        previous = version;
    }
    results.load.push(LoadRow::from_reports(&format!("{label}: deploy v(n) -> v(n+1)"), &reports));
}

/// Gate passed (the health-gate step finished) → the first answer from the new version through Nginx.
fn cutover_latency(run: &ZddRun, report: &Report, version: &str) -> Option<f64> {
    let gate = run
        .events
        .iter()
        .find(|e| e["event"] == "step-started" && e["kind"] == "health-gate")
        .and_then(|e| e["step"].as_str())?
        .to_string();
    let passed = run.step_finished_at(&gate)?;
    let answered = report.first_answer_from(version)?;
    Some(answered.duration_since(passed).map_or_else(|e| -ms(e.duration()), ms))
}

/// A release that breaks after the cutover: from the start of the rollback to the last request the broken
/// version answered.
fn rollback_latency(options: &Options, results: &mut Results, config: StackConfig) {
    let stack = Stack::start("bench-rollback", config);
    if stack.zdd("run", "prod", "v1").code != 0 {
        results.notes.push("rollback latency: first deploy failed".to_string());
        return;
    }
    let mut reports = Vec::new();
    for _ in 0..options.runs {
        let load = Load::start(LoadConfig::standard(stack.nginx.port));
        std::thread::sleep(options.settle);
        let run = stack.zdd("run", "prod", "v3-breaks-after-cutover");
        std::thread::sleep(options.settle);
        let report = load.finish();
        let at = |event: &str, step: Option<&str>| {
            run.events
                .iter()
                .find(|e| e["event"] == event && step.is_none_or(|s| e["step"] == s))
                .and_then(|e| e["at"].as_u64())
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        };
        let switched = run.step_finished_at("switch");
        let rollback_started = at("rollback-started", None);
        let switched_back = at("undo-finished", Some("switch"));
        if let (Some(start), Some(back)) = (rollback_started, switched_back) {
            let latency = back.duration_since(start).map_or(0.0, ms);
            results.timing("rollback latency: failure detected -> traffic switched back", latency);
        }
        if let (Some(switched), Some(back)) = (switched, switched_back) {
            let latency = back.duration_since(switched).map_or(0.0, ms);
            results.timing("cutover -> traffic back on the old release (failing release)", latency);
        }
        // From the load's side: the last answer the broken release gave, after the rollback started.
        let last_broken = report
            .samples
            .iter()
            .filter(|s| s.version.as_deref() == Some("v3-breaks-after-cutover"))
            .map(|s| report.started_at + s.at + s.latency)
            .max();
        if let (Some(start), Some(last)) = (rollback_started, last_broken) {
            let latency = last.duration_since(start).map_or(0.0, ms);
            results.timing("rollback started -> last answer from the broken release", latency);
        }
        results.timing("failing deploy (breaks after cutover), wall until rolled back", ms(run.duration));
        eprintln!("broken release: {}", report.summary());
        reports.push(report);
    }
    results.load.push(LoadRow::from_reports("zdd socket mode: release failing after cutover, rolled back", &reports));
}

/// The seed's sequential shell script for the same deploy (v1 -> v2 with a fresh venv), timed.
fn seed_script(options: &Options, results: &mut Results) {
    let script = shop::repo_root().join("scripts/bench/seed-deploy.sh");
    for run_index in 0..options.runs {
        let dir = crate::support::env::TestDir::new("bench-seed-script");
        let nginx = crate::support::nginx::Nginx::start(dir.path());
        let env_file = dir.join("shop.env");
        std::fs::write(
            &env_file,
            format!(
                "SECRET_KEY=bench\nALLOWED_HOSTS=127.0.0.1,localhost\nSQLITE_PATH={}\n",
                dir.join("db.sqlite3").display()
            ),
        )
        .expect("env file");
        let nginx_ctl =
            format!("{} -p {} -c {}", crate::support::nginx::NGINX, nginx.prefix.display(), nginx.conf.display());
        let mut times = Vec::new();
        for version in ["v1", "v2"] {
            let src = dir.join(&format!("src-{version}"));
            shop::materialise(version, &src).expect("materialise");
            let start = Instant::now();
            let status = Command::new("bash")
                .arg(&script)
                .env("SRC", &src)
                .env("ROOT", dir.join("app"))
                .env("RELEASE", format!("{version}-{run_index}"))
                .env("NEW_PORT", free_port().to_string())
                .env("SITE", nginx.sites_dir.join("shop.conf"))
                .env("NGINX_CTL", &nginx_ctl)
                .env("WHEELS", crate::support::venv::wheel_dir())
                .env("APP_ENV", &env_file)
                .env("LISTEN_PORT", nginx.port.to_string())
                .status()
                .expect("run seed script");
            times.push(ms(start.elapsed()));
            if !status.success() {
                results.notes.push(format!("seed script failed on {version}"));
                return;
            }
        }
        results.timing("seed shell script: v1 -> v2 deploy (wall)", times[1]);
        stop_seed_gunicorns(&dir.join("app/run"));
    }
}

fn stop_seed_gunicorns(run_dir: &Path) {
    for entry in std::fs::read_dir(run_dir).into_iter().flatten().flatten() {
        if let Ok(pid) = std::fs::read_to_string(entry.path()).map(|p| p.trim().parse::<i32>().unwrap_or(0))
            && pid > 0
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// Runs `zdd run` under `/usr/bin/time -v` and returns the run and its peak resident set size in KiB.
fn timed_with_memory(stack: &Stack, plan: &str, version: &str) -> (ZddRun, Option<u64>) {
    let cmd = stack.command("run", plan, version);
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-v").arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            timed.env(key, value);
        }
    }
    let started_at = SystemTime::now();
    let start = Instant::now();
    let out = timed.output().expect("run zdd under time");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok());
    let run = ZddRun::new(
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        started_at,
        start.elapsed(),
    );
    (run, rss)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
