//! Scenario 11, the canary (`canary_weight` on the shipped plan): a good release is judged against the live one
//! for a window and promoted, and sticky visitors keep their side throughout; a release
//! that answers 500 on one page in five is aborted by the analysis, all traffic goes back to the live release,
//! and the errors visitors saw stay within the canary's share. The canary's two Nginx reloads close idle
//! kept-alive connections: those races are counted apart (as in reload mode), every other failure fails.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::load::{Load, LoadConfig};
use super::scenarios::{Outcome, check, serving};
use super::zdd::{Stack, ZddRun};

/// The canary's share of requests, in percent.
const WEIGHT: u32 = 20;

/// The plan variables of a canary: `WEIGHT`%, a window short enough for a test, sticky.
fn canary_vars() -> Vec<String> {
    [
        format!("canary_weight={WEIGHT}%"),
        "canary_window=6s".into(),
        "canary_min_requests=30".into(),
        "canary_sticky=true".into(),
        // A fresh instance with a fifth of the load against one with the rest: their p95s are close, but on a
        // 2-core machine shared with the load generator a short window is noisy.
        "canary_max_latency_ratio=2".into(),
    ]
    .iter()
    .flat_map(|v| ["--var".to_string(), v.clone()])
    .collect()
}

/// One answer through Nginx: the version, and the canary cookie the site set (while a canary runs).
fn visit(port: u16, cookie: Option<&str>) -> Option<(String, Option<String>)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let cookie = cookie.map(|c| format!("Cookie: zdd_canary={c}\r\n")).unwrap_or_default();
    let request = format!("GET /health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let header = |name: &str| {
        text.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    };
    let set = header("set-cookie").and_then(|c| {
        let value = c.strip_prefix("zdd_canary=")?;
        Some(value.split(';').next().unwrap_or_default().to_string())
    });
    Some((header("x-app-version")?, set))
}

/// What a sticky visitor saw: the cookie it kept and each version answered while the canary ran.
#[derive(Debug, Default)]
struct Visitor {
    cookie: String,
    versions: Vec<String>,
}

/// Two visitors, one the split sent to the canary and one it kept on the live release, each sending its cookie
/// until the canary ends (the site stops setting it).
fn sticky_visitors(port: u16, running: &AtomicBool) -> Vec<Visitor> {
    let mut visitors: Vec<Visitor> = Vec::new();
    // Fresh visitors until the split has given out both sides' cookies.
    while running.load(Ordering::Relaxed) && visitors.len() < 2 {
        if let Some((_, Some(cookie))) = visit(port, None)
            && !visitors.iter().any(|v| v.cookie.rsplit('-').next() == cookie.rsplit('-').next())
        {
            visitors.push(Visitor { cookie, versions: Vec::new() });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ended = vec![false; visitors.len()];
    while running.load(Ordering::Relaxed) && ended.iter().any(|e| !e) {
        for (visitor, ended) in visitors.iter_mut().zip(ended.iter_mut()) {
            match visit(port, Some(&visitor.cookie)) {
                Some((version, Some(_))) if !*ended => visitor.versions.push(version),
                Some((_, None)) => *ended = true,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    visitors
}

/// The canary step's messages.
fn verdicts(run: &ZddRun) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "step-message" && e["step"] == "canary")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// Runs a canary deploy of `version` under load, with sticky visitors; returns the run, the load's report and
/// the visitors.
fn canary_under_load(stack: &Stack, plan: &str, version: &str) -> (ZddRun, super::load::Report, Vec<Visitor>) {
    let mut config = LoadConfig::standard(stack.nginx.port);
    config.max_duration = Duration::from_mins(4);
    let load = Load::start(config);
    std::thread::sleep(Duration::from_millis(700));
    let running = Arc::new(AtomicBool::new(true));
    let port = stack.nginx.port;
    let visitors = {
        let running = running.clone();
        std::thread::spawn(move || sticky_visitors(port, &running))
    };
    let run = stack.zdd_with_args("run", plan, version, &canary_vars());
    running.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(700));
    let visitors = visitors.join().unwrap_or_default();
    (run, load.finish(), visitors)
}

pub(crate) fn s11_canary(stack: &Stack, plan: &str) -> Outcome {
    let live = serving(stack).unwrap_or_default();
    // A good release: promoted after its window, with zero failed requests.
    let (run, report, visitors) = canary_under_load(stack, plan, "v2");
    let messages = verdicts(&run);
    check(run.code == 0, || format!("the good canary failed\n{}", run.describe()))?;
    // The canary's two reloads close Nginx's idle kept-alive connections, as a port switch's reload does: a
    // request sent on one at that instant is closed unanswered (a browser resends it). Counted apart, as in
    // reload mode; every other failure fails the test.
    let races = report.keepalive_races();
    check(report.failed() == races, || {
        format!("failed requests: {}\n{}\n{}", report.summary(), report.failure_examples(10), run.describe())
    })?;
    check(serving(stack).as_deref() == Some("v2"), || format!("serving {:?} after promotion", serving(stack)))?;
    check(messages.iter().any(|m| m.starts_with("promoted: pass;")), || format!("no pass verdict: {messages:?}"))?;
    let seen = report.versions_seen();
    check(seen.iter().any(|(v, _)| *v == live) && seen.iter().any(|(v, _)| v == "v2"), || {
        format!("versions seen: {seen:?}")
    })?;
    // Each sticky visitor kept its side: the canary's saw only v2, the live side's only the live release.
    check(visitors.len() == 2, || format!("the split did not give out both cookies: {visitors:?}"))?;
    for visitor in &visitors {
        let expected = if visitor.cookie.ends_with("-canary") { "v2" } else { live.as_str() };
        check(!visitor.versions.is_empty() && visitor.versions.iter().all(|v| v == expected), || {
            format!("a sticky visitor changed version: {visitor:?} (expected {expected})")
        })?;
    }
    let good = format!(
        "good canary promoted in {:.1} s ({}; {races} keep-alive closes on reload counted apart)",
        run.duration.as_secs_f64(),
        report.summary()
    );

    // A release that fails one page in five: aborted, and v2 serves everything again.
    let (run, report, _) = canary_under_load(stack, plan, "v3-flaky-pages");
    let messages = verdicts(&run);
    check(run.code != 0, || format!("the flaky canary was not aborted\n{}", run.describe()))?;
    check(messages.iter().any(|m| m.contains("fail: the canary's 5xx rate")), || {
        format!("no failed verdict: {messages:?}\n{}", run.describe())
    })?;
    check(serving(stack).as_deref() == Some("v2"), || format!("serving {:?} after the abort", serving(stack)))?;
    check(report.last_version().as_deref() == Some("v2"), || format!("last answer: {}", report.summary()))?;
    // Only the canary's own answers failed, and no more than its share of the requests could: weight x error rate
    // x requests, plus 20 for the requests in flight when the split ends.
    let flaky = report.errors_from_version("v3-flaky-pages");
    let others = report.failed() - flaky - report.keepalive_races();
    check(others == 0, || {
        format!(
            "{others} failures not of the canary's: {}; races {}; canary errors {flaky}\n{}\n{messages:?}",
            report.summary(),
            report.keepalive_races(),
            report.failure_examples_excluding("v3-flaky-pages", 40)
        )
    })?;
    let bound = report.total() * usize::try_from(WEIGHT).unwrap_or(100) / 100 / 5 + 20;
    check(flaky > 0 && flaky <= bound, || {
        format!("{flaky} errors from the canary, expected 1..={bound}: {}", report.summary())
    })?;
    Ok(format!(
        "{good}; flaky canary aborted in {:.1} s, {flaky} of {} requests failed (bound {bound})",
        run.duration.as_secs_f64(),
        report.total()
    ))
}
