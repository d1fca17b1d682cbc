//! The Django kinds end to end on real components: the shop from examples/shop, a venv from the wheel cache,
//! gunicorn as detached processes (the `process` manager), a private Nginx, the socket switch; the shared plan
//! fragment (plans/fragments/django.kdl) drives it. Proves: a first deploy, a second deploy under traffic with
//! zero failed requests, the undo of every step (traffic back on the old release), the migration gate refusing an
//! unsafe release before anything changes, and a release that cannot boot never getting traffic.

use crate::driver;
use crate::support;

use crate::shop_deploy;

use std::time::Instant;

use shop_deploy::{Instances, Setup, Traffic, alive, deploy, get, pid_of};
use support::env::{Requirement, require};
use zdd_engine::kind::StepError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_switch_deploys_rolls_back_and_refuses() {
    if !require(
        "socket_switch_deploys_rolls_back_and_refuses",
        &[Requirement::Root, Requirement::Nginx, Requirement::Python],
    ) {
        return;
    }
    let s = Setup::new("steps-socket");
    let _instances = Instances(s.root.clone(), s.slots.clone());
    let port = s.nginx.port;

    // 1. First deploy: v1 in slot a.
    let t = Instant::now();
    let mut first = s.run("v1", "r1", "a", None);
    deploy(&mut first).await;
    eprintln!("first deploy: {} ms", t.elapsed().as_millis());
    assert_eq!(get(port, "/"), Some((200, "v1".into())), "{}", first.log_text());
    assert_eq!(std::fs::read_link(s.root.join("current")).unwrap(), s.root.join("releases/r1"));
    assert_eq!(std::fs::read_link(s.root.join("run/current.sock")).unwrap(), s.root.join("run/a.sock"));
    let pid_a = pid_of(&s.root, "a").expect("slot a's pid");

    // 2. Second deploy under continuous traffic: v2 in slot b; not one request may fail.
    let traffic = Traffic::start(port);
    let started = Instant::now();
    let mut second = s.run("v2", "r2", "b", Some(("a", "r1")));
    deploy(&mut second).await;
    let took = started.elapsed();
    let (ok, failed, last) = traffic.finish();
    eprintln!("second deploy: {} ms, {ok} requests ok, {} failed", took.as_millis(), failed.len());
    assert!(failed.is_empty(), "failed requests during the switch: {failed:?}\n{}", second.log_text());
    assert!(ok > 50, "too little traffic to mean anything: {ok}");
    assert_eq!(last, "v2");
    let log = second.log_text();
    assert!(log.contains("requirements unchanged: copied the venv"), "venv not reused:\n{log}");
    assert!(!alive(pid_a), "the old instance still runs after drain-stop");
    let shebang = std::fs::read_to_string(s.root.join("releases/r2/venv/bin/gunicorn")).unwrap();
    assert!(shebang.starts_with(&format!("#!{}/releases/r2/venv/bin/python", s.root.display())), "{shebang}");
    assert!(!log.contains("steps-test-secret-key"), "a secret from the env file was printed:\n{log}");

    // 3. Undo every step of the second deploy: traffic is back on v1 (restarted by drain-stop's undo).
    let t = Instant::now();
    if let Err((step, e)) = second.undo().await {
        panic!("undo of {step} failed: {e:?}\n{}", second.log_text());
    }
    eprintln!("undo of the second deploy: {} ms", t.elapsed().as_millis());
    assert_eq!(get(port, "/"), Some((200, "v1".into())), "{}", second.log_text());
    assert_eq!(std::fs::read_link(s.root.join("current")).unwrap(), s.root.join("releases/r1"));
    assert!(!s.root.join("releases/r2").exists(), "the undone release is still there");
    assert!(pid_of(&s.root, "b").is_none(), "slot b still has an instance record");

    // 4. An unsafe migration is refused before anything changes; v1 keeps serving.
    let t = Instant::now();
    let mut unsafe_run = s.run("v3-unsafe-migration", "r3", "b", Some(("a", "r1")));
    let (step, err) = unsafe_run.run(None).await.expect_err("the unsafe release must be refused");
    assert_eq!(step, "migrate");
    let text = format!("{err:?}");
    assert!(matches!(err, StepError::Fatal { .. }), "{text}");
    assert!(text.contains("catalog.0003") && text.contains("drop-column"), "{text}");
    eprintln!("unsafe release refused after {} ms", t.elapsed().as_millis());
    unsafe_run.undo().await.unwrap();
    assert_eq!(get(port, "/"), Some((200, "v1".into())));

    // 5. A release that cannot boot never gets traffic.
    let mut broken = s.run("v3-no-boot", "r4", "b", Some(("a", "r1")));
    let t = Instant::now();
    let (step, err) = broken.run(None).await.expect_err("a release that cannot boot must fail");
    eprintln!("broken release failed at {step} after {} ms", t.elapsed().as_millis());
    assert!(
        step == "web" || step == "health" || step == "collectstatic" || step == "migrate",
        "failed at {step}: {err:?}"
    );
    broken.undo().await.unwrap();
    assert_eq!(get(port, "/"), Some((200, "v1".into())));

    // 6. zdd stop: the service kind stops every slot's instance.
    let kinds = zdd_steps::builtin();
    let web = first.plan.step_by_name("web").unwrap().clone();
    let stopped = kinds.get("service").unwrap().stop(&web, &first.ctx("web")).await.unwrap();
    assert!(stopped);
    assert!(!alive(pid_of(&s.root, "a").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_switch_rewrites_tests_and_reloads_nginx() {
    if !require(
        "port_switch_rewrites_tests_and_reloads_nginx",
        &[Requirement::Root, Requirement::Nginx, Requirement::Python],
    ) {
        return;
    }
    let (p1, p2) = (support::env::free_port().to_string(), support::env::free_port().to_string());
    let s = Setup::with_slots("steps-port", [p1.clone(), p2.clone()], &["switch=port"]);
    let _instances = Instances(s.root.clone(), s.slots.clone());
    let port = s.nginx.port;
    let site = s.nginx.sites_dir.join("shop.conf");

    let mut first = s.run("v1", "r1", &p1, None);
    deploy(&mut first).await;
    assert_eq!(get(port, "/"), Some((200, "v1".into())));
    assert!(std::fs::read_to_string(&site).unwrap().contains(&format!("server 127.0.0.1:{p1};")));
    let old_pid = pid_of(&s.root, &p1).unwrap();

    let traffic = Traffic::start(port);
    let mut second = s.run("v2", "r2", &p2, Some((&p1, "r1")));
    deploy(&mut second).await;
    let (ok, failed, last) = traffic.finish();
    eprintln!("port switch: {ok} requests ok, {} failed", failed.len());
    assert!(failed.is_empty(), "failed requests: {failed:?}\n{}", second.log_text());
    assert_eq!(last, "v2");
    assert!(std::fs::read_to_string(&site).unwrap().contains(&format!("server 127.0.0.1:{p2};")));
    assert!(!alive(old_pid), "the old instance still runs");

    // Undo: the previous site file is back, tested and loaded; the old instance serves again.
    second.undo().await.unwrap_or_else(|(step, e)| panic!("undo {step}: {e:?}\n{}", second.log_text()));
    assert!(std::fs::read_to_string(&site).unwrap().contains(&format!("server 127.0.0.1:{p1};")));
    assert_eq!(get(port, "/"), Some((200, "v1".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_keeps_the_old_colour_and_rolls_back_without_restart() {
    if !require(
        "blue_green_keeps_the_old_colour_and_rolls_back_without_restart",
        &[Requirement::Root, Requirement::Nginx, Requirement::Python],
    ) {
        return;
    }
    let s = Setup::with_slots("steps-bluegreen", ["blue".into(), "green".into()], &["keep_old=true"]);
    let _instances = Instances(s.root.clone(), s.slots.clone());
    let port = s.nginx.port;

    deploy(&mut s.run("v1", "r1", "blue", None)).await;
    let blue = pid_of(&s.root, "blue").unwrap();
    let mut green = s.run("v2", "r2", "green", Some(("blue", "r1")));
    deploy(&mut green).await;
    assert_eq!(get(port, "/"), Some((200, "v2".into())));
    assert!(alive(blue), "blue must keep running after the switch to green:\n{}", green.log_text());

    // zdd rollback: release r1 into blue, which still runs it: reused, not restarted.
    let target =
        zdd_engine::kind::DeployTarget { rollback: true, ..driver::target("r1", "blue", Some(("green", "r2"))) };
    let plan = driver::read_plan(&s.plan, &s.vars("v1"), &target, &s.dir.join("state"));
    let mut back = driver::Run::new(plan, target, &s.dir.join("state"));
    let t = Instant::now();
    deploy(&mut back).await;
    eprintln!("blue-green rollback: {} ms", t.elapsed().as_millis());
    assert_eq!(pid_of(&s.root, "blue"), Some(blue), "blue was restarted");
    assert!(alive(blue));
    assert!(back.log_text().contains("reusing it without a restart"), "{}", back.log_text());
    assert_eq!(get(port, "/"), Some((200, "v1".into())));
    assert!(alive(pid_of(&s.root, "green").unwrap()), "green keeps running too (keep-old)");

    // The next deploy into green replaces green's old instance.
    let green_old = pid_of(&s.root, "green").unwrap();
    deploy(&mut s.run("v2", "r3", "green", Some(("blue", "r1")))).await;
    assert!(!alive(green_old));
    assert_eq!(get(port, "/"), Some((200, "v2".into())));
}
