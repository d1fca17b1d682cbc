//! TLS at the edge: plans/prod.kdl with `tls_cert`/`tls_key` set to a self-signed certificate made at test time.
//! Nginx serves HTTPS on a second port and its plain listen answers 301 to it; the switch's confirmation and
//! the smoke checks go through HTTPS, trusting the served certificate. A first deploy, then v1 -> v2 and a
//! rollback to v1 under HTTPS load: zero failed requests, no redirect among the load's answers, and the version
//! served afterwards checked over HTTPS.

use std::time::Duration;

use crate::support;

use support::env::{Requirement, free_port, require};
use support::load::{Load, LoadConfig, Report};
use support::scenarios::{check, check_no_failures, serial};
use support::tls::{self, SelfSigned};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

/// The stack, the certificate and the HTTPS port the plan's variables point the site at.
struct Edge {
    stack: Stack,
    cert: SelfSigned,
    https_port: u16,
}

impl Edge {
    /// The variables that turn TLS on, after the harness's own (a later `--var` wins): the site's certificate,
    /// key and HTTPS listen, and the checks' URL on HTTPS.
    fn tls_vars(&self) -> Vec<String> {
        let https = self.https_port;
        [
            format!("tls_cert={}", self.cert.cert.display()),
            format!("tls_key={}", self.cert.key.display()),
            format!("tls_listen=127.0.0.1:{https}"),
            format!("proxy_url=https://127.0.0.1:{https}"),
        ]
        .into_iter()
        .flat_map(|v| ["--var".to_owned(), v])
        .collect()
    }

    fn zdd(&self, command: &str, version: &str) -> ZddRun {
        self.stack.zdd_with_args(command, "prod", version, &self.tls_vars())
    }

    /// zdd under HTTPS load: a moment of load first (the old version answers), then zdd, then a moment more.
    fn under_load(&self, command: &str, version: &str) -> (ZddRun, Report) {
        let mut config = LoadConfig::standard_tls(self.https_port, self.cert.client.clone());
        config.max_duration = Duration::from_mins(3);
        let load = Load::start(config);
        std::thread::sleep(Duration::from_millis(700));
        let run = self.zdd(command, version);
        std::thread::sleep(Duration::from_millis(700));
        (run, load.finish())
    }

    /// The version a fresh HTTPS request gets.
    fn serving(&self) -> Option<String> {
        let response = tls::get(self.https_port, "/", Some(&self.cert.client))?;
        (tls::status(&response) == Some(200)).then(|| tls::header(&response, "x-app-version").map(str::to_owned))?
    }

    fn expect_serving(&self, version: &str, run: &ZddRun) -> Result<(), String> {
        let now = self.serving();
        check(now.as_deref() == Some(version), || {
            format!("HTTPS serves {now:?}, expected {version}\n{}\n{}", run.describe(), self.stack.nginx.error_log())
        })
    }

    /// Zero failed requests, every answer the app's own (no redirect), and answers over the whole run.
    fn expect_clean_load(&self, report: &Report, run: &ZddRun) -> Result<String, String> {
        check(run.code == 0, || format!("zdd failed\n{}", run.describe()))?;
        check_no_failures(&self.stack, report, run)?;
        check(report.redirects() == 0, || format!("redirects among the HTTPS answers: {}", report.summary()))?;
        check(report.total() > 100, || format!("too little load to tell: {}", report.summary()))?;
        Ok(format!("zdd {:.1} s; {}", run.duration.as_secs_f64(), report.summary()))
    }
}

#[test]
fn tls_edge_deploy_and_rollback_under_https_load() {
    let _serial = serial();
    let needs = [Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Openssl];
    if !require("tls-edge", &needs) {
        return;
    }
    let stack =
        Stack::start("tls-edge", StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Socket });
    let cert = SelfSigned::generate(&stack.dir.join("tls"));
    let edge = Edge { stack, cert, https_port: free_port() };

    let first = edge.zdd("run", "v1");
    assert_eq!(first.code, 0, "first deploy over TLS failed\n{}", first.describe());
    edge.expect_serving("v1", &first).unwrap();
    let confirmed =
        first.stdout.contains(&format!("https://127.0.0.1:{}/health/ answers through the proxy", edge.https_port));
    assert!(confirmed, "the switch did not confirm over HTTPS\n{}", first.describe());

    // Plain HTTP: a 301 to the same host and URI on the HTTPS port, nothing proxied.
    let plain = tls::get(edge.stack.nginx.port, "/health/?from=plain", None).expect("plain HTTP answers");
    assert_eq!(tls::status(&plain), Some(301), "{plain}");
    let location = tls::header(&plain, "location");
    let expected = format!("https://127.0.0.1:{}/health/?from=plain", edge.https_port);
    assert_eq!(location, Some(expected.as_str()), "{plain}");
    assert_eq!(tls::header(&plain, "x-app-version"), None, "the redirect is Nginx's own: {plain}");

    let (run, report) = edge.under_load("run", "v2");
    let upgrade = edge.expect_clean_load(&report, &run).unwrap_or_else(|e| panic!("v1 -> v2 over HTTPS: {e}"));
    edge.expect_serving("v2", &run).unwrap();
    assert_eq!(report.last_version().as_deref(), Some("v2"), "{}", report.summary());

    let (run, report) = edge.under_load("rollback", "v2");
    let rollback = edge.expect_clean_load(&report, &run).unwrap_or_else(|e| panic!("rollback over HTTPS: {e}"));
    edge.expect_serving("v1", &run).unwrap();
    assert_eq!(report.last_version().as_deref(), Some("v1"), "{}", report.summary());
    eprintln!("PASS tls-edge: v1 -> v2: {upgrade}; rollback to v1: {rollback}");
}
