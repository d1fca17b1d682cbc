//! The `service` kind under a real systemd (booted in its own namespace by the test harness, /tmp isolated):
//! unit files rendered per slot, daemon-reload, start, `Type=notify`, the journal read by log-check, the
//! drain-stop through `systemctl stop`, the undo, and `zdd stop`. systemctl and journalctl reach the namespace
//! through the `systemd-prefix` (`nsenter -t <pid> -m -p`).

use crate::shop_deploy;
use crate::support;

use shop_deploy::{Setup, Traffic, deploy, get};
use support::env::{Requirement, require};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_units_per_slot_switch_with_zero_errors() {
    let needs = [Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Systemd];
    if !require("systemd_units_per_slot_switch_with_zero_errors", &needs) {
        return;
    }
    let s = Setup::with_slots("steps-systemd", ["a".into(), "b".into()], &[]);
    let systemd = support::systemd::Systemd::boot(s.dir.path());
    let prefix = systemd.nsenter_prefix().join(" ");
    let extra = [
        "service_manager=systemd".to_owned(),
        format!("unit_dir={}", systemd.unit_dir.display()),
        // The harness mounts that directory over /etc/systemd/system inside: `unit-link "auto"` (the default)
        // sees systemd find the unit by itself and does not link it.
        format!("systemd_prefix={prefix}"),
    ];
    let s = Setup { extra: extra.to_vec(), ..s };
    let port = s.nginx.port;

    let mut first = s.run("v1", "r1", "a", None);
    deploy(&mut first).await;
    assert_eq!(systemd.systemctl(&["is-active", "shop-a.service"]).trim(), "active");
    let unit = std::fs::read_to_string(systemd.unit_dir.join("shop-a.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains(&format!("WorkingDirectory={}/releases/r1", s.root.display())),
        "{unit}"
    );
    assert_eq!(get(port, "/"), Some((200, "v1".into())));

    let traffic = Traffic::start(port);
    let mut second = s.run("v2", "r2", "b", Some(("a", "r1")));
    deploy(&mut second).await;
    let (ok, failed, last) = traffic.finish();
    eprintln!("systemd socket switch: {ok} requests ok, {} failed", failed.len());
    assert!(failed.is_empty(), "failed: {failed:?}\n{}", second.log_text());
    assert_eq!(last, "v2");
    assert_eq!(systemd.systemctl(&["is-active", "shop-b.service"]).trim(), "active");
    assert_ne!(systemd.systemctl(&["is-active", "shop-a.service"]).trim(), "active", "drain-stop left slot a running");
    assert!(systemd.journal("shop-b.service").contains("Booting worker"), "gunicorn's log is in the journal");

    // Undo: slot a started again by drain-stop's undo, traffic back, slot b's unit removed.
    second.undo().await.unwrap_or_else(|(step, e)| panic!("undo {step}: {e:?}\n{}", second.log_text()));
    assert_eq!(systemd.systemctl(&["is-active", "shop-a.service"]).trim(), "active");
    assert_eq!(get(port, "/"), Some((200, "v1".into())));
    assert!(!systemd.unit_dir.join("shop-b.service").exists());

    // zdd stop.
    let web = first.plan.step_by_name("web").unwrap().clone();
    let stopped = zdd_steps::builtin().get("service").unwrap().stop(&web, &first.ctx("web")).await.unwrap();
    assert!(stopped);
    assert_ne!(systemd.systemctl(&["is-active", "shop-a.service"]).trim(), "active");
}
