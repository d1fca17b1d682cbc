//! Faults survived, the cheap ones: a stale instance record whose pid now belongs to a live, foreign process
//! (the service kind must not signal it), and a step failing mid-deploy (a clean rollback naming the cause,
//! nothing of the failed release left behind).

use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;

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
