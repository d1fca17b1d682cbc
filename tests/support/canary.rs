//! Scenario 11, the canary (`canary_weight` on the shipped plan): a good release is judged against the live one
//! for a window and promoted with zero failed requests, and sticky visitors (one user agent each) keep their
//! version throughout; a release that answers 500 on one page in five is aborted by the analysis, all traffic goes
//! back to the live release, and the errors visitors saw stay within the canary's share.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::load::Load;
use super::scenarios::{Outcome, check, check_no_failures, load_config, serving, step_messages};
use super::zdd::{Stack, ZddRun};

/// The canary's share of requests, in percent.
const WEIGHT: u32 = 20;

/// The plan variables of a canary: `WEIGHT`%, a window short enough for a test, `sticky` or not.
fn canary_vars(sticky: bool) -> Vec<String> {
    [
        format!("canary_weight={WEIGHT}%"),
        "canary_window=6s".into(),
        "canary_min_requests=30".into(),
        format!("canary_sticky={sticky}"),
        // A fresh instance with a fifth of the load against one with the rest: their p95s are close, but on a
        // 2-core machine shared with the load generator a short window is noisy.
        "canary_max_latency_ratio=2".into(),
    ]
    .iter()
    .flat_map(|v| ["--var".to_string(), v.clone()])
    .collect()
}

/// The version that answered a request through Nginx from a visitor with `agent` as its user agent.
fn visit(port: u16, agent: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("GET /health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        key.eq_ignore_ascii_case("x-app-version").then(|| value.trim().to_string())
    })
}

/// What a sticky visitor saw: each answer's version and when it came (ms since the epoch).
#[derive(Debug, Default)]
struct Visitor {
    agent: String,
    answers: Vec<(u64, String)>,
}

/// How many visitors: with a 20% canary, the chance that none of them lands on it is 0.8^30, about 0.1%.
const VISITORS: usize = 30;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// Visitors with a user agent each, visiting in turn until `running` ends.
fn sticky_visitors(port: u16, running: &AtomicBool) -> Vec<Visitor> {
    let mut visitors: Vec<Visitor> =
        (0..VISITORS).map(|i| Visitor { agent: format!("zdd-visitor-{i}"), answers: Vec::new() }).collect();
    while running.load(Ordering::Relaxed) {
        for visitor in &mut visitors {
            if let Some(version) = visit(port, &visitor.agent) {
                visitor.answers.push((now_ms(), version));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    visitors
}

/// When the canary step's message that starts with `prefix` came (ms since the epoch).
fn message_at(run: &ZddRun, prefix: &str) -> Option<u64> {
    run.events
        .iter()
        .find(|e| {
            e["event"] == "step-message"
                && e["step"] == "canary"
                && e["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
        .and_then(|e| e["at"].as_u64())
}

/// The canary step's messages.
fn verdicts(run: &ZddRun) -> Vec<String> {
    step_messages(run, "canary")
}

/// Runs a canary deploy of `version` under load, with sticky visitors; returns the run, the load's report and
/// the visitors.
fn canary_under_load(
    stack: &Stack,
    plan: &str,
    version: &str,
    sticky: bool,
) -> (ZddRun, super::load::Report, Vec<Visitor>) {
    let load = Load::start(load_config(stack));
    std::thread::sleep(Duration::from_millis(700));
    let running = Arc::new(AtomicBool::new(true));
    let port = stack.nginx.port;
    let visitors = {
        let running = running.clone();
        std::thread::spawn(move || sticky_visitors(port, &running))
    };
    let run = stack.zdd_with_args("run", plan, version, &canary_vars(sticky));
    running.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(700));
    let visitors = visitors.join().unwrap_or_default();
    (run, load.finish(), visitors)
}

pub(crate) fn s11_canary(stack: &Stack, plan: &str) -> Outcome {
    let live = serving(stack).unwrap_or_default();
    // A good release: promoted after its window, with zero failed requests.
    let (run, report, visitors) = canary_under_load(stack, plan, "v2", true);
    let messages = verdicts(&run);
    check(run.code == 0, || format!("the good canary failed\n{}", run.describe()))?;
    check_no_failures(stack, &report, &run)?;
    check(serving(stack).as_deref() == Some("v2"), || format!("serving {:?} after promotion", serving(stack)))?;
    check(messages.iter().any(|m| m.starts_with("promoted: pass;")), || format!("no pass verdict: {messages:?}"))?;
    let seen = report.versions_seen();
    check(seen.iter().any(|(v, _)| *v == live) && seen.iter().any(|(v, _)| v == "v2"), || {
        format!("versions seen: {seen:?}")
    })?;
    // Each sticky visitor kept one version from the canary's start to its verdict, and some were on each side.
    let (on, off) = (message_at(&run, &format!("{WEIGHT}% of requests")), message_at(&run, "verdict after"));
    let (Some(on), Some(off)) = (on, off) else {
        return Err(format!("no canary start or verdict in the events: {messages:?}"));
    };
    // The verdict is kept with the run: `zdd history` shows it under the run's line.
    let history = stack.zdd("history", plan, "v2");
    check(history.stdout.contains("    canary: verdict after 6s: pass; canary "), || {
        format!("no verdict in the history:\n{}", history.stdout)
    })?;
    let mut sides = std::collections::BTreeSet::new();
    for visitor in &visitors {
        let during: Vec<&String> =
            visitor.answers.iter().filter(|(at, _)| *at > on + 200 && *at + 200 < off).map(|(_, v)| v).collect();
        check(!during.is_empty() && during.iter().all(|v| *v == during[0]), || {
            format!("visitor {} changed version during the canary: {during:?}", visitor.agent)
        })?;
        sides.insert(during[0].clone());
    }
    check(sides.len() == 2, || format!("the visitors were all on one side: {sides:?}"))?;
    let good =
        format!("good canary promoted in {:.1} s ({}); {messages:?}", run.duration.as_secs_f64(), report.summary());

    // A release that fails one page in five: aborted, and v2 serves everything again.
    let (run, report, _) = canary_under_load(stack, plan, "v3-flaky-pages", false);
    let messages = verdicts(&run);
    check(run.code != 0, || format!("the flaky canary was not aborted\n{}", run.describe()))?;
    check(messages.iter().any(|m| m.contains("fail: the canary's 5xx rate")), || {
        format!("no failed verdict: {messages:?}\n{}", run.describe())
    })?;
    check(serving(stack).as_deref() == Some("v2"), || format!("serving {:?} after the abort", serving(stack)))?;
    let history = stack.zdd("history", plan, "v2");
    check(history.stdout.contains("    canary: verdict after 6s: fail: the canary's 5xx rate"), || {
        format!("no failed verdict in the history:\n{}", history.stdout)
    })?;
    check(report.last_version().as_deref() == Some("v2"), || format!("last answer: {}", report.summary()))?;
    // Only the canary's own answers failed, and no more than its share of the requests could: weight x error rate
    // x requests, plus 20 for the requests in flight when the split ends.
    let flaky = report.errors_from_version("v3-flaky-pages");
    let others = report.failed() - flaky;
    check(others == 0, || {
        format!(
            "{others} failures not of the canary's: {}\n{}\n{messages:?}",
            report.summary(),
            report.failure_examples_excluding("v3-flaky-pages", 20)
        )
    })?;
    let bound = report.total() * usize::try_from(WEIGHT).unwrap_or(100) / 100 / 5 + 20;
    check(flaky > 0 && flaky <= bound, || {
        format!("{flaky} errors from the canary, expected 1..={bound}: {}", report.summary())
    })?;
    Ok(format!(
        "{good}; flaky canary aborted in {:.1} s, {flaky} of {} requests failed (bound {bound}); {messages:?}",
        run.duration.as_secs_f64(),
        report.total()
    ))
}
