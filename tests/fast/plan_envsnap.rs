//! `zdd plan` on a release step with `env-file`: the keys the env file adds, removes and changes against the live
//! release's recorded environment, values never shown, and a dropped key refused unless the plan allows it.

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use zdd_engine::state::{Deployed, State, StateDir};
use zdd_steps::envsnap::{EnvRecord, RECORD};

const LIVE: &str = "20260101-101010";

/// A plan of one release step, a live release that recorded `FOO=1`, `OLD=gone-secret` and `SAME=s`, and an env
/// file with `FOO=2`, `NEW=new-secret` and `SAME=s`; `allow` is the step's `allow-removed-keys` line, if any.
fn stage(dir: &Path, allow: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (root, source, env) = (dir.join("srv"), dir.join("src"), dir.join("shop.env"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("manage.py"), "").unwrap();
    std::fs::write(&env, "FOO=2\nNEW=new-secret\nSAME=s\n").unwrap();
    let live = root.join("releases").join(LIVE);
    std::fs::create_dir_all(&live).unwrap();
    let vars: BTreeMap<String, String> =
        [("FOO", "1"), ("OLD", "gone-secret"), ("SAME", "s")].iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    std::fs::write(live.join(RECORD), serde_json::to_vec(&EnvRecord::of(&env, &vars)).unwrap()).unwrap();
    let plan = dir.join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"envsnap\"\nstep \"release\" kind=\"release\" {{\n    root \"{}\"\n    source \"{}\"\n    \
             copy \"all\"\n    env-file \"{}\"\n{allow}}}\n",
            root.display(),
            source.display(),
            env.display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let state_dir = StateDir::prepare(&state).unwrap();
    let deployed = Deployed { release: LIVE.into(), slot: "a".into(), since: "2026-01-01T10:10:10Z".into() };
    state_dir.save(&State { live: Some(deployed), previous: None, history: Vec::new(), ..State::default() }).unwrap();
    (plan, state)
}

fn plan(dir: &Path, allow: &str) -> (Option<i32>, String) {
    let (plan, state) = stage(dir, allow);
    let out = Command::cargo_bin("zdd")
        .unwrap()
        .arg("plan")
        .arg(&plan)
        .args(["--release", "20260102-000000", "--state-dir"])
        .arg(&state)
        .env("NO_COLOR", "1")
        .env_remove("ZDD_STATE_DIR")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text.replace(&dir.display().to_string(), "[DIR]"))
}

#[test]
fn plan_shows_the_keys_added_removed_and_changed_and_refuses_the_dropped_one() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = plan(dir.path(), "");
    for secret in ["gone-secret", "new-secret", "FOO=2", "FOO=1"] {
        assert!(!text.contains(secret), "a value in the preview: {secret}\n{text}");
    }
    insta::assert_snapshot!(format!("exit {code:?}\n{text}"));
}

#[test]
fn plan_lets_a_key_go_that_the_plan_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = plan(dir.path(), "    allow-removed-keys \"OLD\"\n");
    assert!(text.contains("against the live release 20260101-101010: added NEW; removed OLD; changed FOO"), "{text}");
    assert!(!text.contains("env-key-removed"), "{text}");
    assert_eq!(code, Some(0), "{text}");
}
