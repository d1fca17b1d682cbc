//! The state directory through the binary: targets alternate slots, status and history, `zdd rollback`.

use crate::executor_support as support;

use support::{Scratch, history_rows, json, text};

#[test]
fn deploys_alternate_slots_and_rollback_redeploys_the_previous_release() {
    let s = Scratch::new("state");
    let refused = s.zdd("rollback", &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("no previous release"), "{}", text(&refused.stderr));

    assert_eq!(s.zdd("run", &["--release", "r1"]).status.code(), Some(0));
    assert_eq!(s.read("last"), "r1 blue live=@\nZDD_ROLLBACK=0\n");
    assert_eq!(s.zdd("run", &["--release", "r2"]).status.code(), Some(0));
    assert_eq!(s.read("last"), "r2 green live=r1@blue\nZDD_ROLLBACK=0\n");

    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["live"]["release"], "r2");
    assert_eq!(status["live"]["slot"], "green");
    assert_eq!(status["previous"]["release"], "r1");
    assert!(status["lock"].is_null());

    let out = s.zdd("rollback", &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(s.read("last"), "r1 blue live=r2@green\nZDD_ROLLBACK=1\n");
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["live"]["release"], "r1");
    assert_eq!(status["previous"]["release"], "r2");

    let history = json(&s.zdd("history", &["--json"]));
    let rows: Vec<(String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["release"].as_str().unwrap().into(),
                h["mode"].as_str().unwrap().into(),
                h["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("r1".into(), "deploy".into(), "deployed".into()),
            ("r2".into(), "deploy".into(), "deployed".into()),
            ("r1".into(), "rollback".into(), "deployed".into())
        ]
    );
    let table = text(&s.zdd("history", &[]).stdout);
    assert!(table.contains("rollback") && table.contains("r2"), "{table}");
}

#[test]
fn a_state_dir_writable_by_others_is_refused() {
    let s = Scratch::new("state");
    std::fs::create_dir(s.state()).unwrap();
    let mut perms = std::fs::metadata(s.state()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(s.state(), perms).unwrap();
    let out = s.zdd("run", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("writable by group or others"), "{}", text(&out.stderr));
}

#[test]
fn stop_with_nothing_running_says_so() {
    let s = Scratch::new("state");
    let out = s.zdd("stop", &["--plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing to stop"), "{}", text(&out.stdout));
}

#[test]
fn a_bad_lock_wait_is_a_usage_error() {
    let s = Scratch::new("state");
    let out = s.zdd("run", &["--lock-wait", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--lock-wait"), "{}", text(&out.stderr));
}

#[test]
fn a_release_id_that_is_not_a_plain_name_is_refused_before_anything_runs() {
    let s = Scratch::new("state");
    for bad in ["..", ".", "-x", "a/b"] {
        let out = s.zdd("run", &[&format!("--release={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--release: release id"), "{}", text(&out.stderr));
    }
    assert!(!s.state().exists(), "the state directory was touched");
}

#[test]
fn a_plan_without_steps_is_not_deployed() {
    let s = Scratch::new("no-steps");
    let out = s.zdd("run", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("has no steps"), "{}", text(&out.stderr));
    let status = s.zdd("status", &["--json"]);
    assert!(json(&status)["live"].is_null(), "nothing may become live");
}

/// The releases of the runs whose journals the state directory holds, sorted (runs in the same second do not
/// sort by time).
fn journal_runs(s: &Scratch) -> Vec<String> {
    let mut releases: Vec<String> = zdd_engine::journal::journals(&s.state())
        .unwrap()
        .iter()
        .map(|p| zdd_engine::journal::replay(p).unwrap().header.target.release)
        .collect();
    releases.sort();
    releases
}

#[test]
fn journals_are_pruned_to_the_plans_keep_and_history_still_shows_every_run() {
    let s = Scratch::new("journals");
    let run = |release: &str, fail: bool| {
        let fail = format!("fail={}", if fail { "yes" } else { "no" });
        let out = s.zdd("run", &["--release", release, "--var", &fail]);
        text(&out.stderr)
    };
    // The plan keeps 3 releases. Two deploys, then four failures: the last 3 runs' journals, and those of the
    // runs that deployed r1 and r2 (both still on disk) stay.
    for release in ["r01", "r02"] {
        assert_eq!(run(release, false), "");
    }
    for release in ["f03", "f04", "f05", "f06"] {
        run(release, true);
    }
    assert_eq!(journal_runs(&s), ["f04", "f05", "f06", "r01", "r02"]);
    for release in ["r07", "r08", "r09", "r10"] {
        assert_eq!(run(release, false), "");
    }
    assert_eq!(journal_runs(&s), ["r08", "r09", "r10"]);
    let out = s.zdd("rollback", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(journal_runs(&s), ["r08", "r09", "r09", "r10"], "r09's rollback, and the runs of the 3 releases kept");
    let releases = std::fs::read_dir(s.out().join("app/releases")).unwrap().count();
    assert_eq!(releases, 3);

    let rows = history_rows(&s);
    assert_eq!(rows.len(), 11, "{rows:?}");
    assert_eq!(rows[2], "f03 rolled-back");
    assert_eq!(rows[10], "r09 deployed");
    let table = s.zdd("history", &[]);
    assert_eq!(table.status.code(), Some(0));
    assert!(text(&table.stdout).contains("f03"), "{}", text(&table.stdout));
}
