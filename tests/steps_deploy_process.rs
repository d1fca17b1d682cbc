//! The Django kinds end to end on real components: the shop from examples/shop, a venv from the wheel cache,
//! gunicorn as detached processes (the `process` manager), a private Nginx, the socket switch; the shared plan
//! fragment (plans/fragments/django.kdl) drives it. Proves: a first deploy, a second deploy under traffic with
//! zero failed requests, the undo of every step (traffic back on the old release), the migration gate refusing an
//! unsafe release before anything changes, and a release that cannot boot never getting traffic.

mod support;
#[path = "steps_support/driver.rs"]
mod driver;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::env::{Requirement, TestDir, require};
use zdd_engine::kind::StepError;

/// GET a path through Nginx: (status, X-App-Version), or None if the connection failed.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("X-App-Version: ").or_else(|| l.strip_prefix("x-app-version: ")))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Some((status, version))
}

/// Kills every gunicorn the test's plan started, even when the test panics.
struct Instances(PathBuf);

impl Drop for Instances {
    fn drop(&mut self) {
        for slot in ["a", "b"] {
            let Ok(text) = std::fs::read_to_string(self.0.join(format!("run/{slot}.json"))) else { continue };
            let Ok(rec) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(pid) = rec["pid"].as_i64() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

struct Setup {
    dir: TestDir,
    nginx: support::nginx::Nginx,
    root: PathBuf,
    plan: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = TestDir::new(name);
        let nginx = support::nginx::Nginx::start(dir.path());
        let root = dir.join("srv");
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(
            root.join("shared/app.env"),
            format!(
                "SECRET_KEY=steps-test-secret-key-0123456789\nALLOWED_HOSTS=127.0.0.1,localhost\nSQLITE_PATH={0}/shared/db.sqlite3\nSTATIC_ROOT={0}/shared/static\n",
                root.display()
            ),
        )
        .unwrap();
        let fragment = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/fragments/django.kdl");
        let plan = dir.join("plan.kdl");
        std::fs::write(
            &plan,
            format!(
                "plan \"steps-test\"\nslots \"a\" \"b\"\ninclude \"{}\"\nstep \"prepare\" kind=\"symlink\" {{\n    link \"{}/prepared\"\n    target \"{}\"\n}}\n",
                fragment.display(),
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        Setup { dir, nginx, root, plan }
    }

    fn source(&self, version: &str) -> PathBuf {
        let src = self.dir.join(&format!("src-{version}"));
        if !src.exists() {
            support::shop::materialise(version, &src).unwrap();
        }
        src
    }

    fn vars(&self, version: &str) -> Vec<String> {
        let p = self.nginx.prefix.display();
        [
            "app=shop".to_owned(),
            format!("source={}", self.source(version).display()),
            format!("root={}", self.root.display()),
            format!("env_file={}/shared/app.env", self.root.display()),
            "service_manager=process".to_owned(),
            "switch=socket".to_owned(),
            "workers=2".to_owned(),
            format!("listen=127.0.0.1:{}", self.nginx.port),
            format!("proxy_url=http://127.0.0.1:{}", self.nginx.port),
            format!("python={}", support::venv::PYTHON),
            format!("pip_args=--no-index --find-links {}", support::venv::wheel_dir()),
            format!("nginx={} -p {p}", support::nginx::NGINX),
            format!("nginx_conf={}", self.nginx.conf.display()),
            format!("nginx_pid_file={p}/nginx.pid"),
            format!("nginx_error_log={p}/error.log"),
            format!("site_conf={}/shop.conf", self.nginx.sites_dir.display()),
            "log_window=1s".to_owned(),
        ]
        .into()
    }

    fn run(&self, version: &str, release: &str, slot: &str, live: Option<(&str, &str)>) -> driver::Run {
        let target = driver::target(release, slot, live);
        let plan = driver::read_plan(&self.plan, &self.vars(version), &target, &self.dir.join("state"));
        driver::Run::new(plan, target, &self.dir.join("state"))
    }
}

async fn deploy(run: &mut driver::Run) {
    if let Err((step, e)) = run.run(None).await {
        panic!("step {step} failed: {e:?}\n{}", run.log_text());
    }
}

fn pid_of(root: &Path, slot: &str) -> Option<i32> {
    let text = std::fs::read_to_string(root.join(format!("run/{slot}.json"))).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["pid"].as_i64().map(|p| p as i32)
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_switch_deploys_rolls_back_and_refuses() {
    if !require("socket_switch_deploys_rolls_back_and_refuses", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
        return;
    }
    let s = Setup::new("steps-socket");
    let _instances = Instances(s.root.clone());
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
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut last) = (0usize, Vec::new(), String::new());
            while !stop.load(Ordering::Relaxed) {
                match get(port, "/") {
                    Some((200, v)) => {
                        ok += 1;
                        last = v;
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, last)
        })
    };
    let started = Instant::now();
    let mut second = s.run("v2", "r2", "b", Some(("a", "r1")));
    deploy(&mut second).await;
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, last) = traffic.join().unwrap();
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
    assert!(step == "web" || step == "health" || step == "collectstatic" || step == "migrate", "failed at {step}: {err:?}");
    broken.undo().await.unwrap();
    assert_eq!(get(port, "/"), Some((200, "v1".into())));

    // 6. zdd stop: the service kind stops every slot's instance.
    let kinds = zdd_steps::builtin();
    let web = first.plan.step_by_name("web").unwrap().clone();
    let stopped = kinds.get("service").unwrap().stop(&web, &first.ctx("web")).await.unwrap();
    assert!(stopped);
    assert!(!alive(pid_of(&s.root, "a").unwrap()));
}
