//! Shared by the deploy tests of the step kinds: a shop project served through a private Nginx by the plan
//! fragment plans/fragments/django.kdl, traffic that counts every failed request, and process helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::driver;
use crate::support;
use crate::support::env::TestDir;

/// GET a path through Nginx: (status, X-App-Version), or None if the connection failed.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
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
pub(crate) struct Instances(pub PathBuf, pub [String; 2]);

impl Drop for Instances {
    fn drop(&mut self) {
        for slot in &self.1 {
            let Ok(text) = std::fs::read_to_string(self.0.join(format!("run/{slot}.json"))) else { continue };
            let Ok(rec) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(pid) = rec["pid"].as_i64().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

pub(crate) struct Setup {
    pub dir: TestDir,
    pub nginx: support::nginx::Nginx,
    pub root: PathBuf,
    pub plan: PathBuf,
    pub slots: [String; 2],
    pub extra: Vec<String>,
}

impl Setup {
    pub(crate) fn new(name: &str) -> Setup {
        Self::with_slots(name, ["a".into(), "b".into()], &[])
    }

    pub(crate) fn with_slots(name: &str, slots: [String; 2], extra: &[&str]) -> Setup {
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
                "plan \"steps-test\"\nslots \"{}\" \"{}\"\ninclude \"{}\"\nstep \"prepare\" kind=\"symlink\" {{\n    link \"{}/prepared\"\n    target \"{}\"\n}}\n",
                slots[0],
                slots[1],
                fragment.display(),
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        Setup { dir, nginx, root, plan, slots, extra: extra.iter().map(|s| (*s).to_owned()).collect() }
    }

    pub(crate) fn source(&self, version: &str) -> PathBuf {
        let src = self.dir.join(&format!("src-{version}"));
        if !src.exists() {
            support::shop::materialise(version, &src).unwrap();
        }
        src
    }

    pub(crate) fn vars(&self, version: &str) -> Vec<String> {
        let p = self.nginx.prefix.display();
        let mut vars: Vec<String> = [
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
        .into();
        vars.extend(support::venv::uv().map(|uv| format!("uv={}", uv.display())));
        vars.extend(self.extra.iter().cloned());
        vars
    }

    pub(crate) fn run(&self, version: &str, release: &str, slot: &str, live: Option<(&str, &str)>) -> driver::Run {
        let target = driver::target(release, slot, live);
        let plan = driver::read_plan(&self.plan, &self.vars(version), &target, &self.dir.join("state"));
        driver::Run::new(plan, target, &self.dir.join("state"))
    }
}

/// Requests through Nginx, one after the other, until finished: (ok, failures, last version seen).
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>, String)>,
}

impl Traffic {
    pub(crate) fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed, mut last) = (0usize, Vec::new(), String::new());
            while !flag.load(Ordering::Relaxed) {
                match get(port, "/") {
                    Some((200, v)) => {
                        ok += 1;
                        last = v;
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, last)
        });
        Traffic { stop, thread }
    }

    pub(crate) fn finish(self) -> (usize, Vec<String>, String) {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

pub(crate) async fn deploy(run: &mut driver::Run) {
    if let Err((step, e)) = run.run(None).await {
        panic!("step {step} failed: {e:?}\n{}", run.log_text());
    }
}

pub(crate) fn pid_of(root: &Path, slot: &str) -> Option<i32> {
    let text = std::fs::read_to_string(root.join(format!("run/{slot}.json"))).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

pub(crate) fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}
