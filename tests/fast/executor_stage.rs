//! Stage, then promote (fixture `stage`): `zdd run --stage` runs every step before the cutover and stops, the
//! live release still serving; `status` shows the staged release and every other run is refused until `zdd
//! promote` runs what was held (and nothing again) or `zdd abort` rolls the staged steps back. A promoted run
//! that fails rolls back the staged steps too.

use crate::executor_support as support;

use support::{Scratch, json, text};

/// `zdd <command> --plain --release <release>` with `--var` settings; asserts the exit code, returns stdout and
/// stderr.
fn zdd(s: &Scratch, command: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec!["--plain"];
    args.extend(extra);
    let out = s.zdd(command, &args);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "zdd {command} {extra:?}: {all}");
    all
}

/// What the steps ran, one `<step> <release>` per line.
fn ran(s: &Scratch) -> Vec<String> {
    s.read("ran").lines().map(str::to_owned).collect()
}

fn stage_r2_over_r1(s: &Scratch) -> String {
    zdd(s, "run", &["--release", "r1"], 0);
    std::fs::remove_file(s.out().join("ran")).unwrap();
    zdd(s, "run", &["--release", "r2", "--stage"], 0)
}

#[test]
fn a_staged_release_waits_beside_the_live_one_and_refuses_other_runs() {
    let s = Scratch::new("stage");
    let out = stage_r2_over_r1(&s);
    assert!(out.contains("staged: release r2 runs in slot green"), "{out}");
    assert!(out.contains("held for `zdd promote`: switch, smoke"), "{out}");
    assert_eq!(ran(&s), ["build r2", "start r2"]);
    assert_eq!(s.read("live").trim(), "r1", "the live release still serves");
    assert!(s.out().join("instance-r2").exists());

    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!((&status["staged"]["release"], &status["live"]["release"]), (&"r2".into(), &"r1".into()));
    let plain = text(&s.zdd("status", &[]).stdout);
    assert!(plain.contains("staged:    release r2 in slot green"), "{plain}");

    for (command, extra) in [("run", vec!["--release", "r3"]), ("rollback", vec![]), ("run", vec!["--stage"])] {
        let refused = zdd(&s, command, &extra, 2);
        assert!(refused.contains("release r2 is staged") && refused.contains("`zdd promote"), "{refused}");
    }
    assert_eq!(ran(&s), ["build r2", "start r2"], "a refused run changes nothing");
    let recover = zdd(&s, "recover", &[], 0);
    assert!(recover.contains("nothing to recover"), "a staged run is not an interrupted one: {recover}");
}

#[test]
fn promote_runs_only_what_the_stage_held() {
    let s = Scratch::new("stage");
    stage_r2_over_r1(&s);
    let out = zdd(&s, "promote", &[], 0);
    assert!(out.contains("promote: taking up staged run"), "{out}");
    assert_eq!(ran(&s), ["build r2", "start r2", "switch r2", "smoke r2"]);
    assert_eq!(s.read("live").trim(), "r2");
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!((&status["live"]["release"], &status["staged"]), (&"r2".into(), &serde_json::Value::Null));
    let history = json(&s.zdd("history", &["--json"]));
    let outcomes: Vec<String> =
        history.as_array().unwrap().iter().map(|h| format!("{} {}", h["release"], h["outcome"])).collect();
    assert_eq!(outcomes, [r#""r1" "deployed""#, r#""r2" "deployed""#], "one run from stage to promote");
    assert!(zdd(&s, "promote", &[], 2).contains("nothing is staged"));
    zdd(&s, "run", &["--release", "r3"], 0);
}

#[test]
fn abort_rolls_the_staged_steps_back_and_the_live_release_never_moved() {
    let s = Scratch::new("stage");
    stage_r2_over_r1(&s);
    let out = zdd(&s, "abort", &[], 0);
    assert!(out.contains("aborting staged run"), "{out}");
    assert!(!s.out().join("instance-r2").exists(), "the staged instance is undone");
    assert_eq!(s.read("live").trim(), "r1");
    assert_eq!(ran(&s), ["build r2", "start r2"], "nothing after the stage ran");
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!((&status["live"]["release"], &status["staged"]), (&"r1".into(), &serde_json::Value::Null));
    assert!(zdd(&s, "abort", &[], 2).contains("nothing is staged"));
    zdd(&s, "run", &["--release", "r3"], 0);
}

#[test]
fn a_promoted_run_that_fails_rolls_back_the_staged_steps_too() {
    let s = Scratch::new("stage");
    stage_r2_over_r1(&s);
    let out = zdd(&s, "promote", &["--var", "smoke=fail"], 1);
    assert!(out.contains("undo switch") && out.contains("undo start"), "{out}");
    assert_eq!(s.read("live").trim(), "r1");
    assert!(!s.out().join("instance-r2").exists());
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["staged"], serde_json::Value::Null);
    let marks = &status["releases"]["r2"]["bad"];
    assert!(marks.is_object(), "it failed after its cutover: marked bad ({status:#})");
}

#[test]
fn promote_refuses_a_plan_whose_steps_changed_since_the_stage() {
    let s = Scratch::new("stage");
    stage_r2_over_r1(&s);
    let changed = s.dir.path().join("changed.kdl");
    let plan = std::fs::read_to_string(&s.plan).unwrap();
    std::fs::write(&changed, plan.replace("step \"smoke\"", "step \"checks\"")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdd"))
        .arg("promote")
        .arg(&changed)
        .arg("--state-dir")
        .arg(s.state())
        .args(["--var", &format!("out={}", s.out().display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the plan changed since release r2 was staged (added: checks; removed: smoke)"),
        "{stderr}"
    );
    assert_eq!(ran(&s), ["build r2", "start r2"]);
    zdd(&s, "promote", &[], 0);
}

#[test]
fn a_plan_without_a_cutover_cannot_be_staged() {
    let s = Scratch::new("parallel");
    let out = s.zdd("run", &["--stage"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no step that moves the traffic"), "{}", text(&out.stderr));
}

#[test]
fn doctor_warns_of_a_staged_release() {
    let s = Scratch::new("stage");
    stage_r2_over_r1(&s);
    let out = s.zdd("doctor", &["--plain"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "a warning, not a problem: {stdout}");
    assert!(stdout.contains("staged: release r2 is staged in slot green"), "{stdout}");
    assert!(stdout.contains("[zdd::doctor-staged]"), "{stdout}");
}
