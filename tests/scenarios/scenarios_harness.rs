//! Self-tests of the harness: the shop fixtures, the components, and the load generator, without zdd.

use crate::support;

use support::shop;

#[test]
fn every_version_materialises_with_its_version_string() {
    for version in shop::VERSIONS {
        let dir = tempfile::tempdir().unwrap();
        shop::materialise(version, dir.path()).unwrap();
        assert!(dir.path().join("manage.py").is_file(), "{version}: manage.py");
        assert!(!dir.path().join("PARENT").exists(), "{version}: overlay metadata copied");
        assert_eq!(shop::version_of(dir.path()).unwrap(), *version);
    }
}

#[test]
fn v3_versions_build_on_v2() {
    let dir = tempfile::tempdir().unwrap();
    shop::materialise("v3-unsafe-migration", dir.path()).unwrap();
    let migrations = dir.path().join("catalog/migrations");
    assert!(migrations.join("0002_product_description.py").is_file());
    assert!(migrations.join("0003_remove_product_price_cents.py").is_file());
}

#[test]
fn an_unknown_version_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shop::materialise("v9", dir.path()).is_err());
}

#[test]
fn nginx_in_front_of_gunicorn_on_a_unix_socket_serves_with_zero_errors() {
    use std::time::Duration;
    use support::env::{Requirement, TestDir, require};
    use support::gunicorn::{Bind, Gunicorn, app_env, prepare_release};
    use support::load::{Load, LoadConfig};
    use support::nginx::Nginx;

    if !require("harness nginx+gunicorn", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("harness-nginx");
    let env = app_env(&dir.join("db.sqlite3"), None);
    let release = prepare_release("v1", &dir.join("v1"), &env);
    let socket = dir.join("v1.sock");
    let _app = Gunicorn::start(&release, Bind::Unix(socket.clone()), &env);
    let nginx = Nginx::start(dir.path());
    nginx.write_site_and_reload(
        "shop",
        &nginx.proxy_site(&format!("unix:{}", socket.display()), &release.join("staticfiles")),
    );

    let load = Load::start(LoadConfig::standard(nginx.port));
    std::thread::sleep(Duration::from_secs(3));
    let report = load.finish();
    eprintln!("{}", report.summary());
    assert_eq!(report.failed(), 0, "{}\n{}", report.summary(), report.failure_examples(10));
    assert!(report.ok() > 100, "{}", report.summary());
    assert_eq!(report.versions_seen().len(), 1);
    assert_eq!(report.last_version().as_deref(), Some("v1"));
    assert!(report.slow_ok() >= 4, "slow requests completed: {}", report.summary());
}

#[test]
fn the_load_generator_counts_refused_connections() {
    use std::time::Duration;
    use support::load::{FailKind, Load, LoadConfig};

    let port = support::env::free_port();
    let mut config = LoadConfig::standard(port);
    config.clients = 2;
    config.slow_clients = 0;
    config.max_requests = 20;
    config.pause = Duration::from_millis(1);
    let load = Load::start(config);
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish();
    assert_eq!(report.total(), 20);
    assert_eq!(report.failures_of(FailKind::ConnectionRefused), 20, "{}", report.summary());
}

#[test]
fn postgres_cluster_starts_and_answers() {
    use support::env::{Requirement, TestDir, require};
    if !require("harness postgres", &[Requirement::Root, Requirement::Postgres]) {
        return;
    }
    let dir = TestDir::new("harness-pg");
    let pg = support::postgres::Postgres::start(dir.path());
    assert_eq!(pg.psql("shop", "SELECT 40 + 2").trim(), "42");
}

#[test]
fn systemd_boots_in_a_namespace_without_touching_the_machines_tmp() {
    use support::env::{Requirement, TestDir, require};
    if !require("harness systemd", &[Requirement::Root, Requirement::Systemd]) {
        return;
    }
    let canary = tempfile::Builder::new().prefix("zdd-canary-").tempfile_in("/tmp").unwrap();
    let dir = TestDir::new("harness-systemd");
    std::fs::write(dir.join("inside"), "visible").unwrap();
    {
        let systemd = support::systemd::Systemd::boot(dir.path());
        let seen = std::process::Command::new("nsenter")
            .args(["-t", &systemd.pid.to_string(), "-m", "-p", "ls", "-A", "/tmp"])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&seen.stdout).to_string();
        let own = dir.path().file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(listing.trim(), own, "only the test's dir is visible in the namespace's /tmp");
        // A unit file written from outside (as zdd does) and linked is seen inside.
        let unit = "zdd-probe.service";
        std::fs::write(
            systemd.unit_dir.join(unit),
            format!(
                "[Service]\nType=exec\nExecStart=/bin/sh -c 'echo probe > {}/probe-out; exec sleep 60'\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let unit_path = systemd.unit_dir.join(unit).display().to_string();
        systemd.systemctl(&["link", &unit_path]);
        systemd.systemctl(&["start", unit]);
        assert!(support::proc::wait_until(std::time::Duration::from_secs(5), || dir.join("probe-out").exists()));
        assert_eq!(systemd.systemctl(&["is-active", unit]).trim(), "active");
    }
    assert!(canary.path().exists(), "the machine's /tmp was touched");
    assert!(dir.join("inside").exists());
}
