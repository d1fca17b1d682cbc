//! Bad and stable releases through the binary (fixture `marks`: an `exec` step with `cutover #true` and checks
//! before and after it): a release that fails after its cutover is marked bad, shown by `status` and `history`,
//! passed over by `zdd rollback` and refused by `zdd run` without `--allow-bad`; a release live for
//! `stable-after` is stable and is what `zdd rollback` targets.

use crate::executor_support as support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{Scratch, json, signal, text};

/// `zdd run --release <release>` with `--var` settings; asserts the exit code.
fn deploy(s: &Scratch, release: &str, vars: &[&str], code: i32) -> String {
    let mut args = vec!["--plain", "--release", release];
    for v in vars {
        args.extend(["--var", v]);
    }
    let out = s.zdd("run", &args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{release}: {stdout}{}", text(&out.stderr));
    stdout
}

/// `zdd rollback` with `--var` settings; asserts the exit code, returns stdout and stderr.
fn rollback(s: &Scratch, vars: &[&str], code: i32) -> String {
    let mut args = vec!["--plain"];
    for v in vars {
        args.extend(["--var", v]);
    }
    let out = s.zdd("rollback", &args);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{all}");
    all
}

/// Output made stable for snapshots: the scratch directory, times, run ids, durations, who ran it.
fn filters(s: &Scratch) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let dir: String = s
        .dir
        .path()
        .display()
        .to_string()
        .chars()
        .flat_map(|c| if c.is_ascii_alphanumeric() || c == '/' { vec![c] } else { vec!['\\', c] })
        .collect();
    settings.add_filter(&dir, "[TMP]");
    settings.add_filter(&env!("CARGO_MANIFEST_DIR").replace('.', r"\."), "[REPO]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[TIME]");
    settings.add_filter(r"\d{8}-\d{6}-[0-9a-f]{4}", "[RUN]");
    settings.add_filter(r" +\d+(\.\d+)?m?s  ", "  [DURATION]  ");
    settings.add_filter(r"  \S+@\S+\n", "  [WHO]\n");
    settings
}

/// `history --json` as `release mode outcome cut_over mark` rows.
fn history(s: &Scratch, vars: &[&str]) -> Vec<String> {
    let mut args = vec!["--json"];
    for v in vars {
        args.extend(["--var", v]);
    }
    let rows = json(&s.zdd("history", &args));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let field = |name: &str| h[name].as_str().unwrap_or("-").to_owned();
            format!(
                "{} {} {} {} {}",
                field("release"),
                field("mode"),
                field("outcome"),
                field("cut_over"),
                field("mark")
            )
        })
        .collect()
}

#[test]
fn a_release_that_fails_after_its_cutover_is_bad_and_one_that_fails_before_is_not() {
    let s = Scratch::new("marks");
    deploy(&s, "r1", &[], 0);
    let before = deploy(&s, "r2", &["gate=fail"], 1);
    assert!(!before.contains("marked bad"), "{before}");
    let after = deploy(&s, "r3", &["smoke=fail"], 1);
    assert!(after.contains("switch: cut the live traffic over to release r3"), "{after}");
    assert!(
        after.contains(
            "Release r3 failed after its cutover (`switch`): it is marked bad, and `zdd rollback` will not choose it."
        ),
        "{after}"
    );
    assert_eq!(s.read("live"), "r1\n", "the switch was undone");

    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["live"]["release"], "r1");
    assert!(status["releases"].get("r2").is_none(), "failed before its cutover: {status:#}");
    let bad = &status["releases"]["r3"]["bad"];
    assert_eq!(bad["cut_over"], "switch");
    assert!(bad["cause"].as_str().unwrap().contains("step `smoke` failed"), "{bad}");
    assert_eq!(
        history(&s, &[]),
        ["r1 deploy deployed switch -", "r2 deploy rolled-back - -", "r3 deploy rolled-back switch bad"]
    );
    let filters = filters(&s);
    filters.bind(|| {
        insta::assert_snapshot!("bad_status", text(&s.zdd("status", &[]).stdout));
        insta::assert_snapshot!("bad_history", text(&s.zdd("history", &[]).stdout));
        insta::assert_json_snapshot!("bad_status_json", status["releases"]);
    });
}

#[test]
fn rollback_passes_over_a_bad_release_and_run_refuses_it_without_allow_bad() {
    let s = Scratch::new("marks");
    for release in ["r1", "r2", "r3"] {
        deploy(&s, release, &[], 0);
    }
    // A rollback to r2 that fails after its cutover: r2 is bad; r3 stays live.
    let failed = rollback(&s, &["smoke=fail"], 1);
    assert!(failed.contains("Release r2 failed after its cutover"), "{failed}");
    assert_eq!(s.read("live"), "r3\n");

    let said = rollback(&s, &[], 0);
    assert!(said.contains("warning: rollback: passed over release r2: marked bad: run "), "{said}");
    assert!(said.contains("rolling back to r1, the newest earlier release that is not marked bad"), "{said}");
    assert_eq!(s.read("live"), "r1\n");

    let refused = s.zdd("run", &["--release", "r2"]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("release r2 is marked bad: run "), "{stderr}");
    assert!(stderr.contains("--release r2 --allow-bad"), "{stderr}");
    assert_eq!(s.read("live"), "r1\n", "nothing ran");

    let forced = s.zdd("run", &["--plain", "--release", "r2", "--allow-bad"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    let forced = text(&forced.stdout);
    assert!(forced.contains("deploying release r2 although it is marked bad (--allow-bad)"), "{forced}");
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["live"]["release"], "r2");
    assert!(status["live"]["mark"].is_null(), "a deliberate deploy that passed clears the mark: {status:#}");
}

#[test]
fn a_release_live_for_stable_after_is_stable_and_rollback_targets_the_newest_stable_one() {
    let s = Scratch::new("marks");
    // With `stable-after "0s"` a live release is stable as soon as zdd looks: r1 is judged stable when r2's run
    // is recorded. r2 and r3 are then judged with an hour: neither is stable.
    deploy(&s, "r1", &["stable=0s"], 0);
    let status = json(&s.zdd("status", &["--json", "--var", "stable=0s"]));
    assert_eq!(status["live"]["mark"], "stable", "{status:#}");
    let plain = text(&s.zdd("status", &["--var", "stable=1h"]).stdout);
    assert!(plain.contains("not stable yet: stable at "), "status judges with the plan's stable-after: {plain}");
    deploy(&s, "r2", &["stable=0s"], 0);
    deploy(&s, "r3", &[], 0);
    deploy(&s, "r4", &[], 0);

    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!(status["stable_after_ms"], 3_600_000);
    assert_eq!(status["rollback_target"]["release"], "r1");
    assert_eq!(status["rollback_target"]["stable"], true);
    assert_eq!(history(&s, &[])[0], "r1 deploy deployed switch stable");

    let said = rollback(&s, &[], 0);
    assert!(said.contains("passed over release r3: not stable"), "{said}");
    assert!(said.contains("passed over release r2: not stable"), "{said}");
    assert!(!said.contains("no earlier release is stable"), "{said}");
    assert_eq!(s.read("live"), "r1\n");
    let filters = filters(&s);
    filters.bind(|| {
        insta::assert_snapshot!("stable_status", text(&s.zdd("status", &[]).stdout));
        insta::assert_snapshot!("stable_history", text(&s.zdd("history", &[]).stdout));
    });
}

#[test]
fn recover_of_a_run_killed_after_its_cutover_marks_the_release_bad() {
    let s = Scratch::new("marks");
    deploy(&s, "r1", &[], 0);
    let mut child = s.spawn("run", &["--plain", "--release", "r2", "--var", "hang=yes"]);
    let pgid = s.wait_for_pid("hang.pid", Duration::from_secs(10));
    s.wait_until_logged(pgid, Duration::from_secs(10));
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    assert_eq!(s.read("live"), "r2\n", "killed after the cutover");

    let recovered = s.zdd("recover", &["--plain"]);
    let stdout = text(&recovered.stdout);
    assert_eq!(recovered.status.code(), Some(0), "{stdout}{}", text(&recovered.stderr));
    assert!(stdout.contains("Release r2 failed after its cutover (`switch`): it is marked bad"), "{stdout}");
    assert_eq!(s.read("live"), "r1\n");
    let status = json(&s.zdd("status", &["--json"]));
    let bad = &status["releases"]["r2"]["bad"];
    assert!(bad["cause"].as_str().unwrap().starts_with("interrupted; undone by `zdd recover`"), "{bad}");
    assert_eq!(history(&s, &[]), ["r1 deploy deployed switch -", "r2 deploy rolled-back switch bad"]);
}

#[test]
fn json_output_has_the_cut_over_event_and_history_the_cutover_and_mark() {
    let s = Scratch::new("marks");
    let out = s.zdd("run", &["--json", "--release", "r1", "--var", "smoke=fail"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let events = support::events(&out);
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let cut = names.iter().position(|n| *n == "cut-over").unwrap_or_else(|| panic!("{names:?}"));
    assert!(cut < names.iter().position(|n| *n == "rollback-started").unwrap(), "{names:?}");
    assert_eq!((&events[cut]["step"], &events[cut]["release"]), (&"switch".into(), &"r1".into()));

    let rows = json(&s.zdd("history", &["--json"]));
    let row = &rows[0];
    assert_eq!(
        (&row["cut_over"], &row["mark"], &row["outcome"]),
        (&"switch".into(), &"bad".into(), &"rolled-back".into())
    );
    assert!(row["cause"].as_str().unwrap().starts_with("step `smoke` failed"), "{row}");
}

#[test]
fn the_preview_of_a_bad_release_says_run_refuses_it() {
    let s = Scratch::new("marks");
    deploy(&s, "r1", &["smoke=fail"], 1);
    let out = s.zdd("plan", &["--release", "r1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("release r1 is marked bad (run "), "{stderr}");
    assert!(stderr.contains("`zdd run` refuses it without `--allow-bad`"), "{stderr}");
    assert!(text(&s.zdd("plan", &["--release", "r2"]).stderr).is_empty());
}
