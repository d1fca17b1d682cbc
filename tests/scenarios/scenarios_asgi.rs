//! An ASGI project with WebSockets deployed across releases under HTTP load (plans/asgi.kdl, the socket switch,
//! real Nginx and uvicorn): `tests/fixtures/projects/chat`, a Channels project as
//! its tutorial writes it, whose `ws/echo/` answers `<version>:<message>`.
//!
//! With the process backend v1 runs on uvicorn alone, v2 and v3 on gunicorn with uvicorn's worker class; under
//! systemd (booted in a namespace) v1 and v2 on uvicorn alone. Before each upgrade, WebSocket
//! clients connect to the live release; one closes its connection itself during the deploy, the others stay.
//! Each upgrade must have: zero failed HTTP requests; every WebSocket ended by its client or closed by the
//! server with 1012 (Service Restart) once the 3 s budget ran out — none without a close frame; the drain-stop
//! step's count of those closed at the budget equal to the clients that got 1012; a new connection answered by
//! the new release.

use std::time::Duration;

use crate::support;

use support::env::{Requirement, require};
use support::load::{Load, LoadConfig};
use support::projects::{Project, messages};
use support::scenarios::{check, check_no_failures, measured, serial};
use support::websocket::{Client, Ending, echo_version};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

const CHAT: Project = Project { fixture: "chat", app: "mysite", version_file: "chat/version.py", stylesheet: None };

/// The drain-stop step's budget: short, for CI's time.
const BUDGET: &str = "3s";

/// The clients that stay open across an upgrade (one more closes itself).
const STAYING: usize = 3;

const ECHO: &str = "/ws/echo/";

/// `zdd run plans/asgi.kdl` for `version` with `server`.
fn deploy(stack: &Stack, version: &str, server: &str) -> ZddRun {
    let mut vars = stack.stack_vars();
    vars.extend(
        [
            ("source", CHAT.source(stack, version).display().to_string()),
            ("app", CHAT.app.to_string()),
            ("server", server.to_string()),
            ("websocket_budget", BUDGET.to_string()),
        ]
        .map(|(name, value)| (name.to_string(), value)),
    );
    ZddRun::of(&mut stack.command_for("run", &stack.plan_path("asgi"), &vars))
}

/// One upgrade to `version` on `server`, with WebSockets open on the live release and HTTP load.
fn upgrade(stack: &Stack, from: &str, version: &str, server: &str) -> Result<String, String> {
    let port = stack.nginx.port;
    let wait = Duration::from_mins(2);
    let mut staying = Vec::new();
    for _ in 0..STAYING {
        staying.push(Client::connect(port, ECHO, None, wait)?);
    }
    // Closes itself while the deploy runs: it ends normally, before or during the budget.
    let leaver = Client::connect(port, ECHO, Some(Duration::from_secs(2)), wait)?;

    let mut config = LoadConfig::standard(port);
    config.slow_clients = 0;
    config.clients = 8;
    config.paths = vec!["/".into(), "/health/".into()];
    config.max_duration = Duration::from_mins(4);
    let load = Load::start(config);
    std::thread::sleep(Duration::from_millis(500));
    let run = deploy(stack, version, server);
    std::thread::sleep(Duration::from_millis(500));
    let report = load.finish();
    check(run.code == 0, || format!("{from} -> {version} ({server}) failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;

    let left = leaver.finish()?;
    check(left.version == from && left.ending == Ending::ClosedByClient, || {
        format!("the client that closed itself: {left:?}")
    })?;
    let mut restarted = 0;
    for client in staying {
        let seen = client.finish()?;
        check(seen.version == from, || format!("a client's first echo came from {}, not {from}", seen.version))?;
        match seen.ending {
            Ending::ClosedByServer(1012) => restarted += 1,
            Ending::ClosedByClient => {}
            other => {
                return Err(format!("a WebSocket open across the deploy ended with {other:?}\n{}", run.describe()));
            }
        }
    }
    let drained = messages(&run, "drain-stop");
    let tally = drained.iter().find(|m| m.contains("open when the drain began")).cloned().unwrap_or_default();
    check(tally.contains(&format!("{restarted} still open at the {BUDGET} budget")), || {
        format!("{restarted} clients got 1012, but drain-stop said: {drained:?}")
    })?;
    check(restarted == STAYING, || format!("only {restarted} of {STAYING} clients stayed until the budget: {tally}"))?;

    let reconnected = echo_version(port, ECHO)?;
    check(reconnected == version, || format!("a client that reconnected got {reconnected}, not {version}"))?;
    Ok(format!("{from} -> {version} on {server}: {tally}; {}", measured(&report, races, &run)))
}

/// A first deploy of v1 on `first_server`, then each upgrade of `upgrades` (from, to, server).
fn deploy_and_upgrade(name: &str, backend: Backend, first_server: &str, upgrades: &[(&str, &str, &str)]) {
    let _serial = serial();
    let mut needs = vec![Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::AsgiWheels];
    if backend == Backend::Systemd {
        needs.push(Requirement::Systemd);
    }
    if !require(name, &needs) {
        return;
    }
    let stack = Stack::start(name, StackConfig { backend, db: Db::Sqlite, mode: ProxyMode::Socket });
    let first = deploy(&stack, "v1", first_server);
    assert!(first.code == 0, "first deploy of the ASGI project failed\n{}", first.describe());
    assert_eq!(echo_version(stack.nginx.port, ECHO).as_deref(), Ok("v1"));
    for (from, version, server) in upgrades {
        match upgrade(&stack, from, version, server) {
            Ok(measured) => eprintln!("PASS [{}] {name}: {measured}", stack.config),
            Err(error) => panic!("[{}] {name}: {error}", stack.config),
        }
    }
}

/// v1 on uvicorn alone, then v2 and v3 on gunicorn with uvicorn's worker class: each server's stop closes the
/// WebSockets left at the budget with 1012.
#[test]
fn process_asgi_websockets_drain_across_deploys_under_load() {
    deploy_and_upgrade(
        "process-asgi",
        Backend::Process,
        "uvicorn",
        &[("v1", "v2", "uvicorn-worker"), ("v2", "v3", "uvicorn-worker")],
    );
}

/// Under systemd: uvicorn alone in a `Type=exec` unit (it does not notify systemd), upgraded once; `systemctl
/// stop` closes its WebSockets with 1012.
#[test]
fn systemd_uvicorn_websockets_drain_under_load() {
    deploy_and_upgrade("systemd-asgi", Backend::Systemd, "uvicorn", &[("v1", "v2", "uvicorn")]);
}
