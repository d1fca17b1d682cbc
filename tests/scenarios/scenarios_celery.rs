//! Web and Celery workers deployed together (plans/web-worker.kdl, the process backend, a private Redis as the
//! broker) with a Django project whose Celery app is laid out as Celery's "First steps with Django" writes it
//! (tests/fixtures/projects/celeryproj). One stack, one venv cache and one Redis for the module's scenarios,
//! which run in sequence:
//!
//! 1. v1 → v2 under web load, with a producer enqueueing a task through the web (`/enqueue/<n>/`) all along;
//!    v2's web also enqueues a task only v2 defines. Zero failed requests; every enqueued task ran exactly
//!    once; v2's new task ran only on v2's worker; no "unregistered task" anywhere; no v1 worker left. A
//!    12-second task (`/enqueue-slow/<n>/<seconds>/`), taken by v1's worker while v2's boots, is still running
//!    at the switch and ends there, once: the old worker is retired only after it.
//! 2. v3 drops the task v2's web still sends: the worker step refuses it before its worker starts, the web stays
//!    on v2 and v2's worker keeps consuming.
//! 3. v4's worker exits as it starts: the whole release is rolled back, web included; the same holds after it.
//! 4. v5's web never gets healthy, after its worker was confirmed and the old worker stopped consuming: the
//!    rollback makes v2's worker consume again, and the same holds.
//! 5. v7 fails in a step after its beat has ticked: the rollback stops v7's beat, then starts v2's again.
//!
//! Under systemd (`celery_workers_and_beat_under_systemd`, ignored by default): 1, then v6, whose beat exits as
//! it starts, after the switch (the rollback starts v2's beat again), then 5.
//!
//! Celery beat runs all along (`--var beat=true`) and sends a `tick` every second; the fixture records each tick
//! with the sending beat's version and pid. One beat at a time means the ticks come in runs of one pid each, no
//! pid coming back after another's: two beats at once would interleave. After 1, v1's ticks all come before
//! v2's and v2's beat is the one ticking; the failed releases 2-4 never touch v2's beat (same pid, still
//! ticking); after 5 (and v6), a new v2 beat ticks, after v7's ticks and never between them (v6's never ticked).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support;

use support::env::{Requirement, require};
use support::load::{Load, LoadConfig};
use support::projects::{copy_tree, get, get_at, messages};
use support::redis::Redis;
use support::scenarios::{check, check_no_failures, measured, serial};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

const FIXTURE: &str = "celeryproj";
/// The task v2 adds and v3 removes again.
const V2_TASK: &str = "only_in_v2";
/// The release deployed with a step after `beat` that fails once its beat ticks.
const FAILS_AFTER_BEAT: &str = "v7";

/// A task run: (task name, token).
type Task = (String, u64);
/// Each task's runs: the version and the node of each.
type Runs = BTreeMap<Task, Vec<(String, String)>>;
/// A line the slow task logged: `slow-started` or `slow`, the version and node of its worker, and when (unix
/// seconds).
#[derive(Debug)]
struct SlowLine {
    what: String,
    version: String,
    node: String,
    at: f64,
}
/// The slow task's token: one is enqueued in the upgrade, far from the producer's tokens.
const SLOW_TOKEN: u64 = 9_000_000;
/// How long the slow task runs. It starts as v2's worker boots, 6-7 s before the switch (measured here), so it
/// takes longer than the 5 s to be still running at the switch, with margin for a slower machine.
const SLOW_SECONDS: u64 = 12;
/// A tick beat sent: the beat's version and pid, in the order sent.
type Tick = (String, u64);
type Scenario = (&'static str, fn(&Celery) -> Result<String, String>);

struct Celery {
    stack: Stack,
    redis: Redis,
    env_file: PathBuf,
    task_log: PathBuf,
    beat_log: PathBuf,
}

impl Celery {
    fn start(name: &str, backend: Backend) -> Celery {
        let stack = Stack::start(name, StackConfig { backend, db: Db::Sqlite, mode: ProxyMode::Socket });
        let redis = Redis::start(&stack.dir);
        let task_log = stack.dir.join("tasks.log");
        let beat_log = stack.dir.join("beat.log");
        let env_file = stack.dir.join("proj.env");
        let env = format!(
            "SECRET_KEY=zdd-test-secret-key-not-for-production\nCELERY_BROKER_URL={}\nTASK_LOG={}\nBEAT_LOG={}\n",
            redis.url(),
            task_log.display(),
            beat_log.display()
        );
        std::fs::write(&env_file, env).expect("env file");
        Celery { stack, redis, env_file, task_log, beat_log }
    }

    /// The fixture at `version`: v2 adds [`V2_TASK`] and its web sends it too; v3 is v1's code (no such task).
    fn source(&self, version: &str) -> PathBuf {
        let dest = self.stack.sources.join(format!("{FIXTURE}-{version}"));
        if dest.exists() {
            return dest;
        }
        let fixture = support::shop::repo_root().join("tests/fixtures/projects").join(FIXTURE);
        copy_tree(&fixture, &dest).expect("copy the fixture project");
        for file in VERSIONED {
            edit(&dest.join(file), |t| t.replace("VERSION = \"v1\"", &format!("VERSION = \"{version}\"")));
        }
        if version == "v5" {
            // v2's code and workers, whose web never gets healthy: the rollback comes after the old worker stopped
            // consuming.
            let v2 = self.source("v2");
            std::fs::remove_dir_all(&dest).expect("reset v5");
            copy_tree(&v2, &dest).expect("copy v2");
            for file in VERSIONED {
                edit(&dest.join(file), |t| t.replace("VERSION = \"v2\"", "VERSION = \"v5\""));
            }
            edit(&dest.join("proj/views.py"), |t| {
                t.replace("JsonResponse({\"status\": \"ok\"})", "JsonResponse({\"status\": \"broken\"}, status=500)")
            });
            return dest;
        }
        // v4: v2's code whose worker cannot start (as a worker-only import error would): web and task listing
        // load. v6: the same for its beat, which starts after the switch. v7: v2's code as it is.
        for (name, fails) in [("v4", Some("worker")), ("v6", Some("beat")), (FAILS_AFTER_BEAT, None)] {
            if version != name {
                continue;
            }
            let v2 = self.source("v2");
            std::fs::remove_dir_all(&dest).expect("reset the copy");
            copy_tree(&v2, &dest).expect("copy v2");
            for file in VERSIONED {
                edit(&dest.join(file), |t| t.replace("VERSION = \"v2\"", &format!("VERSION = \"{name}\"")));
            }
            if let Some(program) = fails {
                edit(&dest.join("proj/celery.py"), |t| {
                    format!(
                        "{t}\n\nimport sys\n\nif '{program}' in sys.argv:\n    raise SystemExit(\"{name}'s {program} \
                         cannot start\")\n"
                    )
                });
            }
            return dest;
        }
        if version == "v2" {
            edit(&dest.join("demoapp/tasks.py"), |t| {
                format!(
                    "{t}\n\n@shared_task(bind=True, acks_late=True)\ndef {V2_TASK}(self, token):\n    \
                     _record(\"{V2_TASK}\", token, self.request.hostname)\n"
                )
            });
            edit(&dest.join("demoapp/views.py"), |t| {
                t.replace(
                    "tasks.record.delay(token)",
                    &format!("tasks.record.delay(token)\n    tasks.{V2_TASK}.delay(token)"),
                )
            });
        }
        dest
    }

    fn deploy(&self, version: &str) -> ZddRun {
        let mut vars = self.stack.stack_vars();
        vars.extend(
            [
                ("source", self.source(version).display().to_string()),
                ("app", "proj".to_string()),
                ("env_file", self.env_file.display().to_string()),
                ("workers", "3".to_string()),
                ("worker_shutdown_budget", "20s".to_string()),
                ("beat", "true".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let mut plan = self.stack.plan_path("web-worker");
        if version == FAILS_AFTER_BEAT {
            plan = self.fails_after_beat(&plan);
        }
        ZddRun::of(&mut self.stack.command_for("run", &plan, &vars))
    }

    /// plans/web-worker.kdl (the stack's copy) with a step after `beat` that fails once the new beat has sent a
    /// tick: the rollback then has a running new beat to stop before it starts the old one again.
    fn fails_after_beat(&self, plan: &Path) -> PathBuf {
        let text = std::fs::read_to_string(plan).expect("read the plan");
        let step = format!(
            "\nstep \"fails-after-beat\" kind=\"exec\" {{\n    needs \"beat\"\n    run #\"timeout 20 sh -c 'until grep -q \
             \"^tick {FAILS_AFTER_BEAT} \" {}; do sleep 0.2; done'; exit 1\"#\n}}\n",
            self.beat_log.display()
        );
        let variant = plan.with_file_name("web-worker-fails-after-beat.kdl");
        std::fs::write(&variant, text + &step).expect("write the plan variant");
        variant
    }

    /// Each task's runs so far: (task, token) → versions and nodes that ran it.
    fn runs(&self) -> Runs {
        let text = std::fs::read_to_string(&self.task_log).unwrap_or_default();
        let mut runs = Runs::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [task, token, version, node] = words[..]
                && let Ok(token) = token.parse()
            {
                runs.entry((task.to_string(), token)).or_default().push((version.to_string(), node.to_string()));
            }
        }
        runs
    }

    /// The slow task's start and end for `token`, in the order logged.
    fn slow_lines(&self, token: u64) -> Vec<SlowLine> {
        let text = std::fs::read_to_string(&self.task_log).unwrap_or_default();
        let line = |line: &str| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [what @ ("slow-started" | "slow"), logged, version, node, at] if logged.parse() == Ok(token) => {
                Some(SlowLine { what: what.into(), version: version.into(), node: node.into(), at: at.parse().ok()? })
            }
            _ => None,
        };
        text.lines().filter_map(line).collect()
    }

    /// Waits until every expected task has run (bounded: a lost task never shows up); the runs then.
    fn wait_for(&self, expected: &[Task]) -> Runs {
        support::proc::wait_until(Duration::from_mins(1), || {
            let runs = self.runs();
            expected.iter().all(|key| runs.contains_key(key))
        });
        self.runs()
    }

    /// A worker's log (`<root>/log/proj-worker-<slot>.log`, or its unit's journal).
    fn worker_log(&self, slot: &str) -> String {
        match &self.stack.systemd {
            Some(systemd) => systemd.journal(&format!("proj-worker-{slot}.service")),
            None => {
                std::fs::read_to_string(self.stack.root.join(format!("log/proj-worker-{slot}.log"))).unwrap_or_default()
            }
        }
    }

    /// Whether the worker recorded in `<root>/run/worker-<slot>.json` is alive.
    fn worker_alive(&self, slot: &str) -> bool {
        self.alive_pid(&format!("worker-{slot}")).is_some()
    }

    /// The pid recorded in `<root>/run/<instance>.json`, if that process is alive; under systemd, the main pid
    /// of its active unit (in systemd's pid namespace, as the processes in it see their own).
    fn alive_pid(&self, instance: &str) -> Option<u64> {
        if let Some(systemd) = &self.stack.systemd {
            let pid = systemd.systemctl(&["show", "-P", "MainPID", &format!("proj-{instance}.service")]);
            return pid.trim().parse().ok().filter(|pid| *pid != 0);
        }
        let record = std::fs::read(self.stack.root.join(format!("run/{instance}.json"))).unwrap_or_default();
        let pid = serde_json::from_slice::<serde_json::Value>(&record).ok().and_then(|r| r["pid"].as_u64());
        // A zombie (exited, not yet reaped by whoever adopted it) is not running.
        let stat = |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let state = |stat: String| stat.rsplit(')').next().and_then(|rest| rest.trim_start().chars().next());
        pid.filter(|pid| stat(*pid).and_then(state).is_some_and(|state| !matches!(state, 'Z' | 'X')))
    }

    /// The ticks beats sent so far (`beat.log`, appended one line per tick).
    fn ticks(&self) -> Vec<Tick> {
        let text = std::fs::read_to_string(&self.beat_log).unwrap_or_default();
        let tick = |line: &str| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["tick", version, pid, _time] => Some((version.to_string(), pid.parse().ok()?)),
            _ => None,
        };
        text.lines().filter_map(tick).collect()
    }

    /// Seconds from beat `old`'s last tick to beat `new`'s first: how long no beat ran, give or take a tick.
    fn gap(&self, old: u64, new: u64) -> Option<f64> {
        let text = std::fs::read_to_string(&self.beat_log).unwrap_or_default();
        let times = |wanted: u64| -> Vec<f64> {
            let tick = |line: &str| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["tick", _, pid, time] if pid.parse() == Ok(wanted) => time.parse().ok(),
                _ => None,
            };
            text.lines().filter_map(tick).collect()
        };
        Some(times(new).first()? - times(old).last()?)
    }

    /// Waits until beat `pid` has sent a tick after the first `seen` ticks (bounded); the ticks then.
    fn wait_tick_from(&self, pid: u64, seen: usize) -> Vec<Tick> {
        support::proc::wait_until(Duration::from_secs(20), || self.ticks().iter().skip(seen).any(|(_, p)| *p == pid));
        self.ticks()
    }
}

fn edit(file: &Path, change: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(file).expect("read fixture file");
    std::fs::write(file, change(text)).expect("write fixture file");
}

/// Enqueues through the web, `/enqueue/<n>/` with n = `from`, `from + 1`…, until stopped: the tasks each answer
/// says were enqueued (`record`, and [`V2_TASK`] when v2 answered), and the answers that were not a 200.
struct Producer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Task>, Vec<String>)>,
}

impl Producer {
    fn start(stack: &Stack, from: u64) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let port = stack.nginx.port;
        let thread = std::thread::spawn(move || {
            let (mut sent, mut failures) = (Vec::new(), Vec::new());
            let mut token = from;
            while !flag.load(Ordering::SeqCst) {
                match get_at(port, &format!("/enqueue/{token}/")) {
                    Some((200, body)) => {
                        sent.push(("record".to_string(), token));
                        if body.contains("\"v2\"") {
                            sent.push((V2_TASK.to_string(), token));
                        }
                    }
                    other => failures.push(format!("/enqueue/{token}/: {other:?}")),
                }
                token += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (sent, failures)
        });
        Producer { stop, thread }
    }

    fn finish(self) -> (Vec<Task>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("producer thread")
    }
}

/// The files whose `VERSION = "v1"` says which version the code is.
const VERSIONED: [&str; 3] = ["proj/views.py", "demoapp/tasks.py", "proj/celery.py"];

/// The beats that sent ticks, in order: one entry per run of consecutive ticks from one pid. Two beats running
/// at once would interleave their ticks, and a pid would then come back after another's: that is refused.
fn beat_runs(ticks: &[Tick]) -> Result<Vec<Tick>, String> {
    let mut runs: Vec<Tick> = Vec::new();
    for tick in ticks {
        if runs.last() != Some(tick) {
            runs.push(tick.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let back: Vec<&Tick> = runs.iter().filter(|(_, pid)| !seen.insert(*pid)).collect();
    check(back.is_empty(), || format!("two beats sent ticks at the same time: {back:?} came back in {runs:?}"))?;
    Ok(runs)
}

/// Slot b's beat (v2's) is alive, and it is the one ticking now; its pid.
fn v2_beat_ticks(celery: &Celery, seen: usize) -> Result<(u64, Vec<Tick>), String> {
    let pid = celery.alive_pid("beat-b").ok_or("no beat runs in slot b")?;
    check(celery.alive_pid("beat-a").is_none(), || "a beat still runs in slot a".to_string())?;
    let runs = beat_runs(&celery.wait_tick_from(pid, seen))?;
    check(runs.last() == Some(&("v2".to_string(), pid)), || {
        format!("v2's beat {pid} is not the one ticking: {runs:?}")
    })?;
    Ok((pid, runs))
}

/// After a failed release that never reached the beat step: v2's beat `before` still runs and ticks.
fn beat_untouched(celery: &Celery, before: Option<u64>) -> Result<String, String> {
    let (pid, _) = v2_beat_ticks(celery, celery.ticks().len())?;
    check(before == Some(pid), || format!("v2's beat was {before:?} before the release, {pid} after"))?;
    Ok(format!("v2's beat {pid} untouched"))
}

/// Every expected task ran exactly once, and [`V2_TASK`] only on v2.
fn exactly_once(runs: &Runs, sent: &[Task]) -> Result<(), String> {
    let lost: Vec<&Task> = sent.iter().filter(|key| !runs.contains_key(*key)).collect();
    check(lost.is_empty(), || format!("{} of {} enqueued tasks never ran: {lost:?}", lost.len(), sent.len()))?;
    let twice: Vec<_> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    check(twice.is_empty(), || format!("tasks that ran more than once: {twice:?}"))?;
    let misplaced: Vec<_> =
        runs.iter().filter(|((task, _), r)| task == V2_TASK && r.iter().any(|(v, _)| v != "v2")).collect();
    check(misplaced.is_empty(), || format!("{V2_TASK} ran outside v2: {misplaced:?}"))
}

fn upgrade_under_load(celery: &Celery) -> Result<String, String> {
    let stack = &celery.stack;
    let first = celery.deploy("v1");
    check(first.code == 0, || format!("first deploy of v1 failed\n{}", first.describe()))?;

    let mut config = LoadConfig::standard(stack.nginx.port);
    config.slow_clients = 0;
    config.clients = 8;
    config.paths = vec!["/".into(), "/health/".into()];
    let load = Load::start(config);
    let producer = Producer::start(stack, 0);
    std::thread::sleep(Duration::from_millis(500));
    let (run, slow_sent) = std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            // v2's worker is still booting when its process appears, so v1's, the only one consuming, takes the
            // slow task; the switch comes 6-7 s later, once v2's worker has been checked.
            support::proc::wait_until(Duration::from_mins(1), || celery.alive_pid("worker-b").is_some());
            get_at(stack.nginx.port, &format!("/enqueue-slow/{SLOW_TOKEN}/{SLOW_SECONDS}/"))
        });
        let run = celery.deploy("v2");
        (run, slow.join().expect("the slow task's producer"))
    });
    std::thread::sleep(Duration::from_millis(700));
    let (sent, failures) = producer.finish();
    let report = load.finish();
    check(run.code == 0, || format!("v1 -> v2 failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    check(failures.is_empty(), || format!("enqueue requests failed: {failures:?}"))?;
    check(sent.iter().any(|(t, _)| t == V2_TASK), || format!("v2's web never answered the producer: {sent:?}"))?;

    check(matches!(slow_sent, Some((200, _))), || format!("enqueueing the slow task answered {slow_sent:?}"))?;
    let slow = slow_task_spans_the_switch(celery, &run)?;
    let runs = celery.wait_for(&sent);
    exactly_once(&runs, &sent)?;
    for slot in ["a", "b"] {
        let log = celery.worker_log(slot);
        check(!log.contains("unregistered task"), || format!("worker {slot} received an unregistered task:\n{log}"))?;
    }
    check(!celery.worker_alive("a"), || {
        format!("v1's worker (slot a) still runs; worker-retire said {:?}", messages(&run, "worker-retire"))
    })?;
    check(celery.worker_alive("b"), || "v2's worker (slot b) is not running".to_string())?;
    let said = messages(&run, "worker");
    check(said.iter().any(|m| m.contains("stopped consuming")), || format!("worker step messages: {said:?}"))?;
    let v1_runs = runs.values().flatten().filter(|(v, _)| v == "v1").count();
    let (_, beats) = v2_beat_ticks(celery, 0)?;
    check(beats.len() == 2 && beats[0].0 == "v1", || format!("expected v1's beat, then v2's: {beats:?}"))?;
    let gap = celery.gap(beats[0].1, beats[1].1).unwrap_or_default();
    let said = messages(&run, "beat");
    check(said.iter().any(|m| m.contains("stopped in")), || format!("beat step messages: {said:?}"))?;
    let ticks = celery.ticks();
    let v1_ticks = ticks.iter().filter(|(v, _)| v == "v1").count();
    let took = |step: &str| {
        let finished = run.events.iter().find(|e| e["event"] == "step-finished" && e["step"] == step);
        finished.and_then(|e| e["duration_ms"].as_u64()).unwrap_or_default()
    };
    Ok(format!(
        "{} tasks enqueued, {v1_runs} ran on v1, each once; {slow}; {v1_ticks} ticks from v1's beat, then {} from \
         v2's ({gap:.1} s between them; the beat step took {} ms beside drain-stop's {} ms); {}",
        sent.len(),
        ticks.len() - v1_ticks,
        took("beat"),
        took("drain-stop"),
        measured(&report, races, &run)
    ))
}

/// The slow task v1's worker took before the switch ran once, there, and finished after the switch: its worker
/// was retired only once the task had ended.
fn slow_task_spans_the_switch(celery: &Celery, run: &ZddRun) -> Result<String, String> {
    let ended = |lines: &[SlowLine]| lines.iter().any(|line| line.what == "slow");
    support::proc::wait_until(Duration::from_mins(1), || ended(&celery.slow_lines(SLOW_TOKEN)));
    let lines = celery.slow_lines(SLOW_TOKEN);
    let [started, finished] = &lines[..] else {
        return Err(format!("the slow task should have started once and ended once: {lines:?}"));
    };
    check(started.what == "slow-started" && finished.what == "slow", || format!("out of order: {lines:?}"))?;
    check(started.version == "v1" && finished.version == "v1" && started.node == finished.node, || {
        format!("the slow task should have run on v1's worker alone: {lines:?}")
    })?;
    let switched = run.events.iter().find(|e| e["event"] == "step-finished" && e["step"] == "switch");
    let switched = switched.and_then(|e| e["at"].as_u64()).ok_or("no step-finished event for the switch")?;
    #[allow(clippy::cast_precision_loss)] // unix milliseconds fit an f64 exactly
    let switched = switched as f64 / 1000.0;
    check(started.at < switched && switched < finished.at, || {
        format!(
            "the slow task was not in flight at the switch: it ran from {:.2} s to {:.2} s after the switch",
            started.at - switched,
            finished.at - switched
        )
    })?;
    Ok(format!(
        "a {:.1} s task started on v1's worker {:.1} s before the switch and ended there, once",
        finished.at - started.at,
        switched - started.at
    ))
}

fn refuses_a_dropped_task(celery: &Celery) -> Result<String, String> {
    let beat = celery.alive_pid("beat-b");
    let run = celery.deploy("v3");
    check(run.code != 0, || format!("v3 (drops {V2_TASK}) was deployed\n{}", run.describe()))?;
    check(run.stdout.contains("no longer defines") && run.stdout.contains(V2_TASK), || {
        format!("the refusal does not name {V2_TASK}\n{}", run.describe())
    })?;
    let after = v2_still_serves_and_consumes(celery, "v3", 1_000_000)?;
    let beat = beat_untouched(celery, beat)?;
    Ok(format!("refused in {:.1} s; {after}; {beat}", run.duration.as_secs_f64()))
}

fn rolls_back_a_worker_that_does_not_start(celery: &Celery) -> Result<String, String> {
    let beat = celery.alive_pid("beat-b");
    let run = celery.deploy("v4");
    check(run.code != 0, || format!("v4 (its worker exits at start) was deployed\n{}", run.describe()))?;
    check(run.stdout.contains("exited right after starting"), || {
        format!("the failure does not say the worker exited\n{}", run.describe())
    })?;
    let after = v2_still_serves_and_consumes(celery, "v4", 2_000_000)?;
    let beat = beat_untouched(celery, beat)?;
    Ok(format!("rolled back in {:.1} s; {after}; {beat}", run.duration.as_secs_f64()))
}

fn rolls_back_after_the_old_worker_stopped_consuming(celery: &Celery) -> Result<String, String> {
    let beat = celery.alive_pid("beat-b");
    let run = celery.deploy("v5");
    check(run.code != 0, || format!("v5 (its web never healthy) was deployed\n{}", run.describe()))?;
    let said = messages(&run, "worker");
    check(
        said.iter().any(|m| m.contains("stopped consuming")) && said.iter().any(|m| m.contains("consumes again")),
        || format!("the worker step did not cancel and then resume the old worker's consumers: {said:?}"),
    )?;
    let after = v2_still_serves_and_consumes(celery, "v5", 3_000_000)?;
    let beat = beat_untouched(celery, beat)?;
    Ok(format!("rolled back in {:.1} s; {after}; {beat}", run.duration.as_secs_f64()))
}

fn rolls_back_after_the_new_beat_ran(celery: &Celery) -> Result<String, String> {
    let before = celery.alive_pid("beat-b");
    let run = celery.deploy(FAILS_AFTER_BEAT);
    check(run.code != 0, || format!("{FAILS_AFTER_BEAT} (a step after beat fails) was deployed\n{}", run.describe()))?;
    let said = messages(&run, "beat");
    let stopped_new = said.iter().any(|m| m == "beat beat-a stopped");
    check(stopped_new && said.iter().any(|m| m.contains("runs again")), || {
        format!("the beat undo did not stop the new beat and restart v2's: {said:?}")
    })?;
    let after = v2_still_serves_and_consumes(celery, FAILS_AFTER_BEAT, 5_000_000)?;
    let (pid, runs) = v2_beat_ticks(celery, celery.ticks().len())?;
    check(before.is_some_and(|b| b != pid), || format!("v2's beat was {before:?} before and is {pid} after"))?;
    let new_ran = runs.iter().any(|(v, _)| v == FAILS_AFTER_BEAT);
    check(new_ran, || format!("{FAILS_AFTER_BEAT}'s beat never ticked before the failure: {runs:?}"))?;
    Ok(format!(
        "rolled back in {:.1} s; {after}; {FAILS_AFTER_BEAT}'s beat ticked, then v2's again as {pid}, never both",
        run.duration.as_secs_f64()
    ))
}

fn rolls_back_a_beat_that_does_not_start(celery: &Celery) -> Result<String, String> {
    let before = celery.alive_pid("beat-b");
    let run = celery.deploy("v6");
    check(run.code != 0, || format!("v6 (its beat exits at start) was deployed\n{}", run.describe()))?;
    check(run.stdout.contains("exited right after starting"), || {
        format!("the failure does not say the beat exited\n{}", run.describe())
    })?;
    let said = messages(&run, "beat");
    check(said.iter().any(|m| m.contains("stopped in")) && said.iter().any(|m| m.contains("runs again")), || {
        format!("the beat step did not stop and then restart v2's beat: {said:?}")
    })?;
    let after = v2_still_serves_and_consumes(celery, "v6", 4_000_000)?;
    let (pid, runs) = v2_beat_ticks(celery, celery.ticks().len())?;
    check(before.is_some_and(|b| b != pid), || format!("v2's beat was {before:?} before v6 and is {pid} after"))?;
    check(runs.iter().all(|(v, _)| v != "v6"), || format!("v6's beat sent ticks: {runs:?}"))?;
    let gap = before.and_then(|before| celery.gap(before, pid)).unwrap_or_default();
    Ok(format!(
        "rolled back in {:.1} s; {after}; v2's beat ticks again as {pid}, {gap:.1} s after its last tick",
        run.duration.as_secs_f64()
    ))
}

/// After a failed `version`: the web serves v2, nothing runs in slot a, and v2's worker still consumes (tasks
/// enqueued now through v2's web, from token `from`, run on it).
fn v2_still_serves_and_consumes(celery: &Celery, version: &str, from: u64) -> Result<String, String> {
    let stack = &celery.stack;
    let home = get(stack, "/");
    check(home.as_ref().is_some_and(|(s, b)| *s == 200 && b.contains("v2")), || {
        format!("after {version}: GET / {home:?}")
    })?;
    check(!celery.worker_alive("a"), || format!("a {version} worker was left in slot a"))?;
    let producer = Producer::start(stack, from);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failures) = producer.finish();
    check(failures.is_empty() && !sent.is_empty(), || format!("enqueue after {version}: {failures:?}"))?;
    let runs = celery.wait_for(&sent);
    exactly_once(&runs, &sent)?;
    let on_b = sent.iter().all(|key| runs[key].iter().all(|(_, node)| node.starts_with("worker-b@")));
    check(on_b, || format!("tasks after the failed {version} did not all run on v2's worker"))?;
    Ok(format!("{} tasks ran on v2's worker afterwards", sent.len()))
}

#[test]
fn celery_workers_move_with_the_release() {
    let _serial = serial();
    let name = "celery";
    let needs = [Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Celery];
    if !require(name, &needs) {
        return;
    }
    let celery = Celery::start(name, Backend::Process);
    let scenarios: [Scenario; 5] = [
        ("v1 -> v2 with workers under load", upgrade_under_load),
        ("v3 drops a task: refused", refuses_a_dropped_task),
        ("v4's worker does not start: rolled back", rolls_back_a_worker_that_does_not_start),
        ("v5's web is unhealthy: the old worker consumes again", rolls_back_after_the_old_worker_stopped_consuming),
        ("v7 fails after its beat ran: the old beat runs again", rolls_back_after_the_new_beat_ran),
    ];
    run_scenarios(&celery, &scenarios);
}

/// The worker and beat units under systemd (their journals, `_SYSTEMD_INVOCATION_ID`, `systemctl stop`): the
/// upgrade and the beat rollbacks only. Not in the default run, whose time budget the process backend's run
/// above already fills; `-- --ignored` runs it.
#[test]
#[ignore = "the systemd variant of the celery scenario; run with --ignored"]
fn celery_workers_and_beat_under_systemd() {
    let _serial = serial();
    let name = "celery-systemd";
    let needs = [Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Celery, Requirement::Systemd];
    if !require(name, &needs) {
        return;
    }
    let celery = Celery::start(name, Backend::Systemd);
    let scenarios: [Scenario; 3] = [
        ("v1 -> v2 with workers under load", upgrade_under_load),
        ("v6's beat does not start: the old beat runs again", rolls_back_a_beat_that_does_not_start),
        ("v7 fails after its beat ran: the old beat runs again", rolls_back_after_the_new_beat_ran),
    ];
    run_scenarios(&celery, &scenarios);
}

/// Runs `scenarios` in order on one stack, stopping at the first failure.
fn run_scenarios(celery: &Celery, scenarios: &[Scenario]) {
    let _ = &celery.redis;
    let mut failures = Vec::new();
    for (scenario, run) in scenarios {
        let started = std::time::Instant::now();
        match run(celery) {
            Ok(measured) => eprintln!("PASS {scenario} ({:.1} s): {measured}", started.elapsed().as_secs_f64()),
            Err(error) => {
                eprintln!("FAIL {scenario}: {error}");
                failures.push(format!("{scenario}: {error}"));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
