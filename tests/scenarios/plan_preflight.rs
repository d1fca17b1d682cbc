//! The preflight: what a run needs that can be known before its first step, shown by `zdd plan` and checked by
//! `zdd run` before anything changes (exit 2, every problem at once). And the proxy switch against a real
//! Nginx whose workers cannot reach the sockets (refused before the swap, naming the directory), and a failed
//! confirmation that shows what Nginx wrote to its error log meanwhile.
//!
//! The shipped `prod.kdl` is pointed, with `--var`, at a test directory: a source without `manage.py`, an env
//! file that does not exist, and a `root` inside a mode-700 directory while Nginx's config says `user www-data;`.

use crate::driver;
use crate::support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use support::env::{Requirement, TestDir, require};
use zdd_engine::kind::StepError;

const ZDD: &str = env!("CARGO_BIN_EXE_zdd");

/// A test directory laid out as a user's mistakes: `home/` mode 700 holding `root`, a source that is not a
/// Django project, no env file, and an Nginx config with `user www-data;` (Debian's).
struct Mistakes {
    dir: TestDir,
}

impl Mistakes {
    fn new(name: &str) -> Self {
        let dir = TestDir::new(name);
        let home = dir.join("home");
        std::fs::create_dir_all(home.join("srv")).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(dir.join("notdjango")).unwrap();
        std::fs::write(dir.join("notdjango/README.md"), "not a project\n").unwrap();
        std::fs::write(dir.join("nginx.conf"), "user www-data;\nevents {}\nhttp {}\n").unwrap();
        Self { dir }
    }

    fn vars(&self) -> Vec<String> {
        let d = self.dir.path().display();
        [
            format!("root={d}/home/srv"),
            format!("source={d}/notdjango"),
            format!("env_file={d}/missing.env"),
            format!("nginx_conf={d}/nginx.conf"),
            format!("nginx_pid_file={d}/nginx.pid"),
            format!("site_conf={d}/sites/shop.conf"),
            format!("unit_dir={d}/units"),
            "service_manager=process".to_owned(),
            // Whether this machine has a uv on its PATH is not one of the mistakes shown.
            "installer=pip".to_owned(),
        ]
        .into()
    }

    fn zdd(&self, command: &str) -> std::process::Output {
        let mut cmd = std::process::Command::new(ZDD);
        cmd.arg(command).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/prod.kdl"));
        cmd.arg("--state-dir").arg(self.dir.join("state"));
        if command == "run" {
            cmd.arg("--plain");
        }
        for v in self.vars() {
            cmd.args(["--var", &v]);
        }
        cmd.env_remove("ZDD_STATE_DIR").env("NO_COLOR", "1").output().expect("zdd runs")
    }

    fn text(&self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).replace(&self.dir.path().display().to_string(), "[TMP]")
    }
}

#[test]
fn plan_shows_every_preflight_problem_with_its_evidence_and_fix() {
    // As root, Nginx's master switches its workers to `www-data`; as anyone else they would run as that user.
    if !require("plan_shows_every_preflight_problem", &[Requirement::Root]) {
        return;
    }
    let m = Mistakes::new("preflight-plan");
    let out = m.zdd("plan");
    let stdout = m.text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", m.text(&out.stderr));
    let section = stdout.split("\nPreflight").nth(1).expect("a preflight section").split("\nSteps (").next().unwrap();
    insta::assert_snapshot!(format!("Preflight{section}"));
}

#[test]
fn run_refuses_before_any_step_and_lists_every_problem() {
    if !require("run_refuses_before_any_step", &[Requirement::Root]) {
        return;
    }
    let m = Mistakes::new("preflight-run");
    // Before any step: no release directory, no step event (how fast is the benchmarks' business).
    let out = m.zdd("run");
    let stderr = m.text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "preflight: 4 problems before the first step; nothing was changed",
        "the env file [TMP]/missing.env does not exist (step `collectstatic`, `migrate`, `web`)",
        "the source [TMP]/notdjango is not a Django project: it has no manage.py",
        "Nginx's workers (user `www-data`) cannot reach the upstream's socket directory [TMP]/home/srv/run",
        "[TMP]/home is drwx------ (700), owner root:root",
        "help: `chmod o+x [TMP]/home`",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!m.dir.join("home/srv/releases").exists(), "a step ran");
    let stdout = m.text(&out.stdout);
    assert!(!stdout.contains("step-started") && !stdout.contains("release"), "a step started:\n{stdout}");
}

/// A proxy-switch step in socket mode against the harness's Nginx, with `root` under `base`.
fn switch_step(nginx: &support::nginx::Nginx, root: &Path) -> String {
    format!(
        "step \"switch\" kind=\"proxy-switch\" {{\n app \"shop\"\n root \"{root}\"\n site-conf \"{site}\"\n \
         nginx \"{bin} -p {prefix}\"\n nginx-conf \"{conf}\"\n pid-file \"{prefix}/nginx.pid\"\n \
         listen \"127.0.0.1:{port}\"\n confirm \"http://127.0.0.1:{port}/health/\"\n confirm-within \"1s\"\n \
         error-log \"{prefix}/error.log\"\n}}\n",
        root = root.display(),
        site = nginx.sites_dir.join("shop.conf").display(),
        bin = support::nginx::NGINX,
        prefix = nginx.prefix.display(),
        conf = nginx.conf.display(),
        port = nginx.port,
    )
}

async fn run_switch(dir: &TestDir, body: &str) -> (driver::Run, Result<(), (String, StepError)>) {
    let target = driver::target("r2", "b", Some(("a", "r1")));
    let plan_path = dir.join("plan.kdl");
    std::fs::write(&plan_path, format!("plan \"kinds\"\nslots \"a\" \"b\"\n{body}")).unwrap();
    let plan = driver::read_plan(&plan_path, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    let result = run.run(None).await;
    (run, result)
}

/// `<root>/run/b.sock` as a plain file anyone may write: Nginx's `connect()` to it fails (111: Connection refused).
fn fake_socket(root: &Path) -> PathBuf {
    let run = root.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let sock = run.join("b.sock");
    std::fs::write(&sock, "").unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock
}

#[tokio::test]
async fn the_switch_refuses_before_the_swap_when_the_workers_cannot_reach_the_sockets() {
    if !require("switch_refuses_unreachable_sockets", &[Requirement::Root, Requirement::Nginx]) {
        return;
    }
    let dir = TestDir::new("preflight-unreachable");
    let nginx = support::nginx::Nginx::start_as(dir.path(), "nobody nogroup");
    let private = dir.join("private");
    let root = private.join("srv");
    fake_socket(&root);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (run, result) = run_switch(&dir, &switch_step(&nginx, &root)).await;
    let Err((_, StepError::Fatal { message, detail })) = result else { panic!("expected a fatal error: {result:?}") };
    let detail = detail.unwrap_or_default();
    assert!(
        message.contains("Nginx's workers (user `nobody`) cannot connect to the new instance's socket"),
        "{message}"
    );
    assert!(message.contains(&format!("{} blocks them", private.display())), "{message}");
    assert!(detail.contains("drwx------ (700), owner root:root"), "{detail}");
    assert!(detail.contains("the running workers of Nginx"), "{detail}");
    assert!(detail.contains(&format!("chmod o+x {}", private.display())), "{detail}");
    assert!(!root.join("run/current.sock").exists(), "the link was swapped anyway");
    run.undo().await.expect("the switch's undo");
}

#[tokio::test]
async fn a_failed_confirmation_shows_what_nginx_wrote_to_its_error_log() {
    if !require("failed_confirmation_shows_the_error_log", &[Requirement::Root, Requirement::Nginx]) {
        return;
    }
    let dir = TestDir::new("preflight-error-log");
    let nginx = support::nginx::Nginx::start_as(dir.path(), "nobody nogroup");
    let root = dir.join("srv");
    let sock = fake_socket(&root);
    let (run, result) = run_switch(&dir, &switch_step(&nginx, &root)).await;
    let Err((_, StepError::Failed { message, detail })) = result else { panic!("expected a failure: {result:?}") };
    let detail = detail.unwrap_or_default();
    assert!(message.contains("does not answer through the proxy"), "{message}");
    assert!(detail.contains("status 502"), "{detail}");
    assert!(detail.contains("Nginx's error log"), "{detail}");
    assert!(detail.contains(&format!("connect() to unix:{}", root.join("run/current.sock").display())), "{detail}");
    assert!(detail.contains("(111: Connection refused)"), "{detail}");
    // A socket the workers may not write is refused before the swap, like an unreachable directory.
    run.undo().await.expect("the switch's undo");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (run, result) = run_switch(&dir, &switch_step(&nginx, &root)).await;
    let Err((_, StepError::Fatal { message, detail })) = result else { panic!("expected a fatal error: {result:?}") };
    assert!(message.contains("cannot connect to the new instance's socket"), "{message}");
    assert!(detail.unwrap_or_default().contains(&format!("chmod o+w {}", sock.display())), "{message}");
    run.undo().await.expect("the switch's undo");
}

#[test]
fn what_an_earlier_step_creates_or_installs_is_not_missing() {
    // The demo's `prepare` writes the env file and Nginx's config (`creates`), its `packages` installs nginx and
    // python3-venv: before the first run none exists, and the preflight only says it cannot tell the workers'
    // user yet (the switch checks the running workers before it swaps).
    let dir = TestDir::new("preflight-demo");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new(ZDD)
        .arg("plan")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/demo.kdl"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--var", &format!("root={}/demo", home.display())])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&dir.path().display().to_string(), "[TMP]");
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let section = stdout.split("\nPreflight").nth(1).unwrap().split("\nSteps (").next().unwrap();
    assert!(section.contains(": warnings only"), "{section}");
    assert!(!section.contains("error["), "{section}");
    assert!(section.contains("[TMP]/home/demo/nginx/nginx.conf is written by step `prepare`"), "{section}");
}
