//! Faults survived: a stale instance record whose pid now belongs to a live, foreign process (the service kind
//! must not signal it), a step failing mid-deploy, `nginx -t` failing, Nginx not running, a full disk during the
//! release copy, the new gunicorn killed during the health gate, and the database unreachable during migrate (a
//! real stack: Nginx, PostgreSQL 15, gunicorn, under load). Each: a clean rollback naming the cause, nothing of
//! the failed release left behind, the live release still serving.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;
use support::env::{Requirement, require};
use support::load::{Load, LoadConfig};
use support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

fn zdd(args: &[&str], plan: &Path, state: &Path) -> std::process::Output {
    Command::cargo_bin("zdd")
        .unwrap()
        .args(args)
        .arg(plan)
        .arg("--state-dir")
        .arg(state)
        .arg("--plain")
        .env_remove("ZDD_STATE_DIR")
        .output()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by us) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn a_stale_pid_of_a_foreign_process_is_never_signalled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    std::fs::create_dir_all(root.join("run")).unwrap();
    let plan = tmp.path().join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"stale\"\nstep \"web\" kind=\"service\" {{\n    app \"shop\"\n    root \"{}\"\n    \
             wsgi \"shop.wsgi:application\"\n    manager \"process\"\n}}\n",
            root.display()
        ),
    )
    .unwrap();
    // A process zdd did not start, alive, whose pid a stale record of both slots names.
    let mut foreign = std::process::Command::new("sleep").arg("300").stdin(Stdio::null()).spawn().unwrap();
    let pid = foreign.id();
    for slot in ["a", "b"] {
        let record = serde_json::json!({
            "release": "20260101-000000",
            "slot": slot,
            "argv": [root.join("releases/20260101-000000/venv/bin/gunicorn"), "shop.wsgi:application"],
            "cwd": root.join("releases/20260101-000000"),
            "pid": pid,
        });
        std::fs::write(root.join(format!("run/{slot}.json")), record.to_string()).unwrap();
    }
    let out = zdd(&["stop"], &plan, &tmp.path().join("state"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let survived = alive(pid);
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert!(survived, "zdd signalled a process it did not start:\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("stopped slot"), "{text}");
}

#[test]
fn a_failing_step_rolls_back_everything_and_names_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    let plan = tmp.path().join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            r#"plan "fault"
step "release" kind="exec" {{
    command "mkdir" "-p" "{root}/releases/{{{{release}}}}"
    undo-command "rm" "-rf" "{root}/releases/{{{{release}}}}"
}}
step "server" kind="exec" {{
    needs "release"
    description "A background process of the release"
    run "sleep 300 >/dev/null 2>&1 & echo $! > {root}/releases/{{{{release}}}}/pid"
    undo "kill $(cat {root}/releases/{{{{release}}}}/pid)"
}}
step "migrate" kind="exec" {{
    needs "server"
    run "echo 'could not connect to server: Connection refused' >&2; exit 2"
}}
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let out = zdd(&["run", "--release", "r1"], &plan, &tmp.path().join("state"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Connection refused"), "the cause is not named:\n{text}");
    assert!(text.contains("every change was rolled back"), "{text}");
    // Nothing of the failed release is left: its directory is gone, its process killed.
    assert!(!root.join("releases/r1").exists(), "{text}");
    let leftover = std::process::Command::new("pgrep").args(["-f", "^sleep 300$"]).output().unwrap();
    let pids: Vec<u32> =
        String::from_utf8_lossy(&leftover.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    // Other tests may run `sleep 300` too: only a live one whose parent chain is ours would matter; here the
    // release's own pid file is gone with the release, so check that none of the live ones has its cwd in it.
    for pid in pids {
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            assert!(!cwd.starts_with(tmp.path()), "a process of the failed release survived: {pid}");
        }
    }
}

/// A proxy-switch plan (port mode) whose `nginx` is a script: `-t` fails while the site names `fail_t`, `-s
/// reload` fails when `fail_reload` exists (Nginx not running). Every call is logged.
fn nginx_fixture(tmp: &Path) -> std::path::PathBuf {
    let fake = tmp.join("fake-nginx");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> {dir}/calls\n\
             case \"$*\" in\n\
             *-t*) if grep -q 8001 {dir}/site.conf; then echo 'nginx: [emerg] unknown directive \"bogus\" in {dir}/site.conf:7' >&2; exit 1; fi ;;\n\
             *reload*) echo \"reload onto $(grep -o '127.0.0.1:[0-9]*' {dir}/site.conf)\" >> {dir}/calls\n\
                       if [ -e {dir}/fail_reload ]; then echo 'nginx: [error] open() \"{dir}/nginx.pid\" failed (2: No such file or directory)' >&2; exit 1; fi ;;\n\
             esac\nexit 0\n",
            dir = tmp.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plan = tmp.join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"nginx-fault\"\nslots \"8001\" \"8002\"\n\
             step \"switch\" kind=\"proxy-switch\" {{\n    app \"shop\"\n    root \"{dir}/app\"\n    mode \"port\"\n    \
             site-conf \"{dir}/site.conf\"\n    nginx \"{dir}/fake-nginx\"\n    pid-file \"{dir}/nginx.pid\"\n}}\n",
            dir = tmp.display()
        ),
    )
    .unwrap();
    std::fs::write(tmp.join("site.conf"), "# the live site, upstream 127.0.0.1:8002\n").unwrap();
    plan
}

#[test]
fn nginx_refusing_the_new_site_restores_the_old_one_without_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = nginx_fixture(tmp.path());
    let out = zdd(&["run"], &plan, &tmp.path().join("state"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nginx rejected the new site file (previous file restored)"), "{text}");
    assert!(text.contains("unknown directive"), "nginx's own message is not shown: {text}");
    let site = std::fs::read_to_string(tmp.path().join("site.conf")).unwrap();
    assert_eq!(site, "# the live site, upstream 127.0.0.1:8002\n");
    let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
    // The rollback may reload onto the restored site; never onto the refused one.
    assert!(!calls.contains("reload onto 127.0.0.1:8001"), "Nginx was reloaded onto a refused site: {calls}");
}

#[test]
fn nginx_not_running_fails_the_switch_and_puts_the_old_site_back() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = nginx_fixture(tmp.path());
    std::fs::write(tmp.path().join("fail_reload"), "").unwrap();
    // The new site is valid this time (the fake only refuses a site naming 8001): use the other slot.
    std::fs::write(tmp.path().join("site.conf"), "# the live site, upstream 127.0.0.1:8001\n").unwrap();
    let plan_text =
        std::fs::read_to_string(&plan).unwrap().replace("slots \"8001\" \"8002\"", "slots \"8002\" \"8001\"");
    std::fs::write(&plan, plan_text).unwrap();
    let out = zdd(&["run"], &plan, &tmp.path().join("state"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("nginx.pid") && text.contains("No such file"), "the cause is not named: {text}");
    let site = std::fs::read_to_string(tmp.path().join("site.conf")).unwrap();
    assert_eq!(site, "# the live site, upstream 127.0.0.1:8001\n", "{text}");
}

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_the_release_copy_fails_cleanly() {
    // Root mounts the small tmpfs that fills up.
    if !require("full-disk", &[Requirement::Root]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    let source = tmp.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(source.join("shop")).unwrap();
    std::fs::write(source.join("manage.py"), "print('hi')\n").unwrap();
    std::fs::write(source.join("shop/big.bin"), vec![7u8; 3 << 20]).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "zdd-full-disk"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount a tmpfs");
    let _mount = Mount(root.clone());
    let plan = tmp.path().join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"full\"\nstep \"release\" kind=\"release\" {{\n    root \"{}\"\n    source \"{}\"\n    copy \"all\"\n}}\n",
            root.display(),
            source.display()
        ),
    )
    .unwrap();
    let out = zdd(&["run", "--release", "r1"], &plan, &tmp.path().join("state"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("No space left on device"), "the cause is not named: {text}");
    assert!(!root.join("releases/r1").exists(), "the partial release is left: {text}");
}

#[test]
fn the_new_gunicorn_killed_during_the_health_gate_fails_at_once_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    // A "gunicorn" that never answers and is killed (-9) a moment after it starts.
    let fake = tmp.path().join("fake-gunicorn");
    std::fs::write(&fake, "#!/bin/sh\nsleep 1\nkill -9 $$\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plan = tmp.path().join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            r#"plan "gate"
step "release" kind="exec" {{
    command "sh" "-c" "mkdir -p \"$0/releases/$1/venv/bin\" && cp \"$2\" \"$0/releases/$1/venv/bin/gunicorn\"" "{root}" "{{{{release}}}}" "{fake}"
    undo-command "rm" "-rf" "{root}/releases/{{{{release}}}}"
}}
step "web" kind="service" {{
    needs "release"
    app "shop"
    root "{root}"
    wsgi "shop.wsgi:application"
    manager "process"
    control-socket #false
}}
step "health" kind="health-gate" {{
    needs "web"
    service "web"
    path "/health/"
    within "60s"
}}
"#,
            root = root.display(),
            fake = fake.display()
        ),
    )
    .unwrap();
    let start = std::time::Instant::now();
    let out = zdd(&["run", "--release", "r1"], &plan, &tmp.path().join("state"));
    let took = start.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is not running"), "the cause is not named: {text}");
    assert!(took < std::time::Duration::from_secs(30), "the gate waited {took:?} for a dead instance: {text}");
    assert!(text.contains("every change was rolled back"), "{text}");
    assert!(!root.join("releases/r1").exists(), "{text}");
    let record = std::fs::read_to_string(root.join("run/a.json")).unwrap_or_default();
    if let Some(pid) = serde_json::from_str::<serde_json::Value>(&record).ok().and_then(|r| r["pid"].as_u64()) {
        assert!(!alive(u32::try_from(pid).unwrap()), "the failed release's process survived");
    }
}

/// `zdd run` of `version` with the shipped socket-mode plan, with extra `--var`s (the last one of a name wins).
fn deploy(stack: &Stack, version: &str, extra_vars: &[String]) -> ZddRun {
    let args: Vec<String> = extra_vars.iter().flat_map(|var| ["--var".to_owned(), var.clone()]).collect();
    stack.zdd_with_args("run", "prod", version, &args)
}

/// The error of a step's last `step-finished` event.
fn step_error(run: &ZddRun, step: &str) -> String {
    run.events
        .iter()
        .rev()
        .find(|e| e["event"] == "step-finished" && e["step"] == step)
        .and_then(|e| e["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_database_unreachable_during_migrate_fails_the_deploy_and_the_live_release_keeps_serving() {
    let name = "db-unreachable";
    if !require(name, &[Requirement::Root, Requirement::Nginx, Requirement::Python, Requirement::Postgres]) {
        return;
    }
    let stack =
        Stack::start(name, StackConfig { backend: Backend::Process, db: Db::Postgres, mode: ProxyMode::Socket });
    let first = deploy(&stack, "v1", &[]);
    assert_eq!(first.code, 0, "the first deploy failed\n{}", first.describe());
    assert_eq!(support::scenarios::serving(&stack).as_deref(), Some("v1"));
    let masters = stack.gunicorn_masters();
    assert_eq!(masters.len(), 1, "after v1: {masters:?}");
    let releases = stack.releases();
    let columns = stack.columns("catalog_product");

    // The new release's steps read an env file whose DATABASE_URL names a port nothing listens on: from the
    // deploy's side the database is unreachable, while the live release keeps its own connection.
    let pg = stack.pg.as_ref().unwrap();
    let closed = support::env::free_port();
    let unreachable_url = pg.database_url().replace(&format!(":{}/", pg.port), &format!(":{closed}/"));
    let env = std::fs::read_to_string(&stack.env_file).unwrap().replace(&pg.database_url(), &unreachable_url);
    let unreachable_env = stack.dir.join("unreachable.env");
    std::fs::write(&unreachable_env, env).unwrap();

    let mut load_config = LoadConfig::standard(stack.nginx.port);
    load_config.max_duration = Duration::from_mins(4);
    let load = Load::start(load_config);
    std::thread::sleep(Duration::from_millis(700));
    let run = deploy(&stack, "v2", &[format!("env_file={}", unreachable_env.display())]);
    std::thread::sleep(Duration::from_millis(700));
    let report = load.finish();
    eprintln!("zdd {:.1} s under load: {}", run.duration.as_secs_f64(), report.summary());

    // A clean rollback (exit 1, not 3), the cause named in the migrate step's error.
    assert_eq!(run.code, 1, "{}", run.describe());
    assert_eq!(run.outcome().as_deref(), Some("rolled-back"), "{}", run.describe());
    assert_eq!(run.step_state("migrate").as_deref(), Some("failed"), "{}", run.describe());
    let error = step_error(&run, "migrate");
    eprintln!("the migrate step's error:\n{error}");
    assert!(error.contains("could not be reached"), "the cause is not named: {error}");
    assert!(error.contains("Connection refused") && error.contains(&format!("port {closed}")), "{error}");
    assert!(error.contains("Is the server running"), "psycopg's hint is not shown: {error}");
    assert!(!error.contains("import json"), "the error shows the inspection script: {error}");
    // Nothing of the failed release ran or is left; nothing changed in the schema.
    let services_started = run.events.iter().any(|e| e["event"] == "step-started" && e["kind"] == "service");
    assert!(!services_started, "a service started without migrations\n{}", run.describe());
    assert_eq!(stack.releases(), releases, "{}", run.describe());
    assert_eq!(stack.gunicorn_masters(), masters, "the live instance changed\n{}", run.describe());
    assert_eq!(stack.columns("catalog_product"), columns);
    // The live release kept serving, every request of the load answered.
    assert_eq!(support::scenarios::serving(&stack).as_deref(), Some("v1"), "{}", run.describe());
    assert_eq!(report.failed(), 0, "{}\n{}", report.summary(), report.failure_examples(10));
    assert_eq!(report.last_version().as_deref(), Some("v1"), "{}", report.summary());
}
