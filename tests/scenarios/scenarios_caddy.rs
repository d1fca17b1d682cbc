//! Caddy as the proxy: plans/caddy.kdl (process backend, SQLite) behind the test's own Caddy, which listens
//! where the stack's Nginx site would (Nginx runs with no site). One stack through the zero-downtime sequence,
//! every step but the first under load: the first deploy (the configuration loaded through the admin API), v1 ->
//! v2 with a configuration change (Caddy's log moves: a second load through the admin API while requests flow),
//! a release whose health gate fails (refused before traffic moves), one that fails after the cutover (its smoke
//! fails; the link swapped back), and `zdd rollback` to v1 and forward to v2 again. Zero failed requests
//! (no 5xx, no connection error) other than the broken release's own answers, and the version served after each;
//! the one exception is the configuration load, whose closed idle kept-alive connections are counted apart (see
//! [`upgrade_with_reload`]): a deploy that leaves the configuration as it is (every other step) only swaps the link.

use std::time::Instant;

use crate::support;

use support::caddy::Caddy;
use support::env::{Requirement, require};
use support::scenarios::{self, Outcome, check, serial};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig};

const PLAN: &str = "caddy";

/// A step of the sequence: its name, and the scenario over the shared stack.
type Step<'a> = (&'static str, &'a dyn Fn(&Stack) -> Outcome);

/// The first deploy with Caddy logging to `first.log`: the v2 deploy then changes the configuration (the log
/// moves to `caddy.log`, the stack's variable), so Caddy loads a new one under load.
fn first_deploy(stack: &Stack, caddy: &Caddy) -> Outcome {
    let first_log = caddy.dir.join("first.log");
    let args = ["--var".to_owned(), format!("nginx_error_log={}", first_log.display())];
    let run = stack.zdd_with_args("run", PLAN, "v1", &args);
    check(run.code == 0, || format!("first deploy failed\n{}\n{}", run.describe(), caddy.output()))?;
    let loaded =
        scenarios::step_messages(&run, "switch").iter().any(|m| m.contains("loaded through Caddy's admin API"));
    check(loaded, || format!("the switch did not load the configuration\n{}", run.describe()))?;
    let now = scenarios::serving(stack);
    check(now.as_deref() == Some("v1"), || format!("Caddy serves {now:?}\n{}\n{}", run.describe(), caddy.output()))?;
    let css = support::proc::http_get_status(stack.nginx.port, "/static/catalog/shop.css");
    check(css == Some(200), || format!("static CSS through Caddy: {css:?}\n{}", caddy.output()))?;
    Ok(format!("zdd {:.1} s", run.duration.as_secs_f64()))
}

/// v1 -> v2 under load with a configuration change: the new config is loaded through the admin API while
/// requests flow, then the link is swapped. Caddy keeps its listeners (no connection is refused), but the old
/// server's shutdown closes its idle kept-alive client connections, so a request sent on one at that moment
/// gets no answer, as behind an Nginx reload: those are counted apart (and reported), and only those: each on
/// a reused connection, closed without an answer; every other failure fails the scenario.
fn upgrade_with_reload(stack: &Stack, caddy: &Caddy) -> Outcome {
    let (run, report) = scenarios::under_load(stack, "run", PLAN, "v2");
    check(run.code == 0, || format!("v1 -> v2 failed\n{}\n{}", run.describe(), caddy.output()))?;
    let races = report.samples.iter().filter(|s| s.failure.is_some() && s.reused).count();
    check(races == report.keepalive_races() && report.failed() == races, || {
        format!("failed requests: {}\n{}\n{}", report.summary(), report.failure_examples(10), run.describe())
    })?;
    let now = scenarios::serving(stack);
    check(now.as_deref() == Some("v2"), || format!("Caddy serves {now:?}\n{}", run.describe()))?;
    check(report.last_version().as_deref() == Some("v2"), || format!("last answer not v2: {}", report.summary()))?;
    let running = caddy.admin_get("/config/logging/logs/default/writer/filename");
    let expected = caddy.log.display().to_string();
    check(running.contains(&expected), || format!("Caddy runs a config logging to {running}, not {expected}"))?;
    Ok(format!(
        "config loaded through the admin API under load; {}; {races} kept-alive connections closed by the config \
         load counted apart",
        scenarios::measured(&report, 0, &run)
    ))
}

#[test]
fn caddy_deploys_fails_and_rolls_back_under_load() {
    let _serial = serial();
    let needs = [Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Caddy];
    if !require("caddy", &needs) {
        return;
    }
    let config = StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Socket };
    let mut stack = Stack::start("caddy", config);
    let caddy = Caddy::start(stack.dir.path());
    stack.extra_vars = caddy.vars();
    // The harness's scenarios reach the site at the stack's Nginx port: Caddy's listen there.
    let steps: [Step; 5] = [
        ("1 first deploy", &|s| first_deploy(s, &caddy)),
        ("2 v1 -> v2 under load, config reloaded", &|s| upgrade_with_reload(s, &caddy)),
        ("3 failing health check", &|s| scenarios::s3_health_fails(s, PLAN)),
        ("4 fails after cutover", &|s| scenarios::s4_breaks_after_cutover(s, PLAN)),
        ("7 rollback and forward again", &|s| scenarios::s7_rollback(s, PLAN)),
    ];
    let mut failures = Vec::new();
    for (name, scenario) in steps {
        let started = Instant::now();
        let result = scenario(&stack);
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(measured) => eprintln!("PASS [caddy] {name} ({took:.1} s): {measured}"),
            Err(error) => {
                eprintln!("FAIL [caddy] {name} ({took:.1} s): {error}");
                failures.push(format!("{name}: {error}"));
            }
        }
    }
    assert!(failures.is_empty(), "[caddy] failed scenarios:\n{}\n{}", failures.join("\n\n"), caddy.output());
}
