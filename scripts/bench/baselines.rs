//! The ways of switching releases without zdd, measured under the same load: nothing at all (steady state), an
//! in-place gunicorn restart, and the seed's order (new port, health, rewrite the upstream, reload, stop the old
//! gunicorn as soon as the new version answers).

use std::process::Command;
use std::time::Duration;

use crate::Options;
use crate::report::{LoadRow, Results};
use crate::support::env::{TestDir, free_port};
use crate::support::gunicorn::{Bind, Gunicorn, app_env, prepare_release};
use crate::support::load::{Load, LoadConfig, Report};
use crate::support::nginx::Nginx;
use crate::support::proc::wait_until;

pub(crate) fn steady_state(options: &Options, results: &mut Results) {
    let mut reports = Vec::new();
    for _ in 0..options.runs {
        let dir = TestDir::new("bench-steady");
        let env = app_env(&dir.join("db.sqlite3"), None);
        let v1 = prepare_release("v1", &dir.join("v1"), &env);
        let socket = dir.join("v1.sock");
        let _app = Gunicorn::start(&v1, Bind::Unix(socket.clone()), &env);
        let nginx = Nginx::start(dir.path());
        nginx.write_site_and_reload(
            "shop",
            &nginx.proxy_site(&format!("unix:{}", socket.display()), &v1.join("staticfiles")),
        );
        let load = Load::start(LoadConfig::standard(nginx.port));
        std::thread::sleep(options.settle * 2);
        reports.push(finish("steady state", load));
    }
    results.load.push(LoadRow::from_reports("steady state (no deploy)", &reports));
}

/// Stop gunicorn, start the new release on the same socket.
pub(crate) fn in_place_restart(options: &Options, results: &mut Results) {
    let mut reports = Vec::new();
    for _ in 0..options.runs {
        let dir = TestDir::new("bench-inplace");
        let env = app_env(&dir.join("db.sqlite3"), None);
        let v1 = prepare_release("v1", &dir.join("v1"), &env);
        let v2 = prepare_release("v2", &dir.join("v2"), &env);
        let socket = dir.join("app.sock");
        let mut app = Gunicorn::start(&v1, Bind::Unix(socket.clone()), &env);
        let nginx = Nginx::start(dir.path());
        nginx.write_site_and_reload(
            "shop",
            &nginx.proxy_site(&format!("unix:{}", socket.display()), &v1.join("staticfiles")),
        );
        let load = Load::start(LoadConfig::standard(nginx.port));
        std::thread::sleep(options.settle);
        app.process.stop(Duration::from_secs(30));
        let _ = std::fs::remove_file(&socket);
        let _app2 = Gunicorn::start(&v2, Bind::Unix(socket.clone()), &env);
        load.wait_for_version("v2", 1, Duration::from_secs(30));
        std::thread::sleep(options.settle);
        reports.push(finish("in-place restart", load));
    }
    results.load.push(LoadRow::from_reports("in-place gunicorn restart", &reports));
}

/// The seed's order: TERM the old gunicorn as soon as the new version answers through Nginx.
pub(crate) fn seed_order(options: &Options, results: &mut Results) {
    let mut reports = Vec::new();
    for _ in 0..options.runs {
        let dir = TestDir::new("bench-seed");
        let env = app_env(&dir.join("db.sqlite3"), None);
        let v1 = prepare_release("v1", &dir.join("v1"), &env);
        let v2 = prepare_release("v2", &dir.join("v2"), &env);
        let (port1, port2) = (free_port(), free_port());
        let mut old = Gunicorn::start(&v1, Bind::Port(port1), &env);
        let nginx = Nginx::start(dir.path());
        nginx.write_site_and_reload("shop", &nginx.proxy_site(&format!("127.0.0.1:{port1}"), &v1.join("staticfiles")));
        let load = Load::start(LoadConfig::standard(nginx.port));
        std::thread::sleep(options.settle);
        let _new = Gunicorn::start(&v2, Bind::Port(port2), &env);
        std::fs::write(
            nginx.sites_dir.join("shop.conf"),
            nginx.proxy_site(&format!("127.0.0.1:{port2}"), &v2.join("staticfiles")),
        )
        .expect("write site");
        let argv = nginx.reload_argv();
        let _ = Command::new(&argv[0]).args(&argv[1..]).status();
        wait_until(Duration::from_secs(10), || answers_version(nginx.port, "v2"));
        old.process.stop(Duration::from_secs(30));
        std::thread::sleep(options.settle);
        reports.push(finish("seed order", load));
    }
    results.load.push(LoadRow::from_reports("seed order: reload, stop old once new answers", &reports));
}

fn finish(what: &str, load: Load) -> Report {
    let report = load.finish();
    eprintln!("{what}: {}", report.summary());
    report
}

/// True when a fresh request through Nginx is answered by `version`.
pub(crate) fn answers_version(port: u16, version: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-app-version:") && l.trim_end().ends_with(version))
}
