//! The environment moves with the release: v1 deployed with `FOO=1`, the shared env file edited to `FOO=2` and
//! v2 deployed under load, then `zdd rollback` under load while the shared file still says `FOO=2`. The served app
//! must be v1 with v1's environment: its gunicorn master has `FOO=1`, and Django's `ALLOWED_HOSTS` (read from the
//! environment by the shop's settings) is v1's, so a request for v1's host name answers and one for v2's is refused.

use std::io::{Read, Write};
use std::time::Duration;

use super::scenarios::{Outcome, check, check_no_failures, measured, serving, under_load};
use super::zdd::Stack;

/// The stack's env file with `FOO` and a host name only this environment allows.
fn write_env(stack: &Stack, foo_value: &str, host: &str) {
    let text = std::fs::read_to_string(&stack.env_file).expect("env file");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("FOO=") && !l.starts_with("ALLOWED_HOSTS="))
        .map(str::to_owned)
        .collect();
    lines.push(format!("ALLOWED_HOSTS=127.0.0.1,localhost,{host}"));
    lines.push(format!("FOO={foo_value}"));
    std::fs::write(&stack.env_file, lines.join("\n") + "\n").expect("write env file");
}

/// The status of `GET /health/` through Nginx with `Host: host`: Django answers 400 for a host not allowed.
fn status_for_host(stack: &Stack, host: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", stack.nginx.port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /health/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse().ok()
}

/// `FOO` in the environment of the only gunicorn master, once the old one has drained.
fn master_foo(stack: &Stack) -> Result<String, String> {
    let one = super::proc::wait_until(Duration::from_secs(40), || stack.gunicorn_masters().len() == 1);
    check(one, || format!("gunicorn masters running: {:?}", stack.gunicorn_masters()))?;
    let pid = stack.gunicorn_masters()[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).map_err(|e| format!("environ of {pid}: {e}"))?;
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"FOO="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .ok_or_else(|| format!("no FOO in the environment of gunicorn {pid}"))
}

/// Serving `version` with the environment that has `FOO=foo_value` and allows `host` (and not `other`).
fn expect_environment(stack: &Stack, version: &str, foo_value: &str, host: &str, other: &str) -> Result<(), String> {
    let now = serving(stack);
    check(now.as_deref() == Some(version), || format!("Nginx serves {now:?}, expected {version}"))?;
    let master = master_foo(stack)?;
    check(master == foo_value, || format!("{version}'s gunicorn runs with FOO={master}, expected FOO={foo_value}"))?;
    let (allowed, refused) = (status_for_host(stack, host), status_for_host(stack, other));
    check(allowed == Some(200) && refused == Some(400), || {
        format!(
            "{version}'s ALLOWED_HOSTS: Host {host} -> {allowed:?} (want 200), Host {other} -> {refused:?} (want 400)"
        )
    })
}

pub(crate) fn rollback_restores_the_release_environment(stack: &Stack) -> Outcome {
    write_env(stack, "1", "v1.example");
    let run = stack.zdd("run", "prod", "v1");
    check(run.code == 0, || format!("first deploy failed\n{}", run.describe()))?;
    expect_environment(stack, "v1", "1", "v1.example", "v2.example")?;

    write_env(stack, "2", "v2.example");
    let (run, report) = under_load(stack, "run", "prod", "v2");
    check(run.code == 0, || format!("v1 -> v2 failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_environment(stack, "v2", "2", "v2.example", "v1.example")?;
    let upgrade = measured(&report, races, &run);

    // The shared file still says FOO=2: the rollback must bring back the environment v1 ran with.
    let (run, report) = under_load(stack, "rollback", "prod", "v2");
    check(run.code == 0, || format!("zdd rollback failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    expect_environment(stack, "v1", "1", "v1.example", "v2.example")?;

    // Every release's snapshot is root's alone, and no value reached the state directory (journal, history).
    for release in stack.releases() {
        let snapshot = stack.root.join("releases").join(&release).join(".zdd-env");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&snapshot).map_err(|e| format!("{}: {e}", snapshot.display()))?.permissions(),
        );
        check(mode & 0o777 == 0o600, || format!("{} has mode {:o}", snapshot.display(), mode & 0o777))?;
    }
    let secret = "zdd-test-secret-key-not-for-production";
    for (file, content) in super::tree::tree(&stack.state_dir) {
        let text = String::from_utf8_lossy(&content);
        check(!text.contains(secret), || format!("{} holds the SECRET_KEY value", file.display()))?;
    }
    Ok(format!("v2: {upgrade}; rollback: {}", measured(&report, races, &run)))
}
