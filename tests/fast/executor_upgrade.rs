//! Upgrades: this zdd reads a state directory the previous release wrote (format 1, kept in
//! `tests/fixtures/state/format-1`, made by its `generate.sh`) and recovers its interrupted run; it refuses one
//! that a newer zdd wrote, and leaves it byte for byte as it was.

use crate::executor_support as support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use support::{Scratch, history_rows, json, text};

const FORMAT_1: &str = "tests/fixtures/state/format-1";

/// The run the fixture's zdd was killed in (`kill -9` during its `hang` step).
const INTERRUPTED: &str = "20261202-135847-92d6";

/// A scratch directory holding a copy of the format-1 state directory, its `@SCRATCH@` paths made this one's.
fn format_1() -> Scratch {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FORMAT_1);
    let mut s = Scratch::new("state");
    s.plan = root.join("plan.kdl");
    let scratch = s.dir.path().to_str().unwrap().to_owned();
    copy_dir(&root.join("state"), &s.state(), &scratch);
    s
}

/// Copy a state directory as zdd would have left it: directories 0700, files 0600 (git keeps no modes).
fn copy_dir(from: &Path, to: &Path, scratch: &str) {
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target, scratch);
        } else {
            std::fs::write(&target, std::fs::read_to_string(&path).unwrap().replace("@SCRATCH@", scratch)).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Every file under `dir` and its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(contents(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn status_and_history_read_a_state_dir_of_the_previous_format() {
    let s = format_1();
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!((&status["live"]["release"], &status["live"]["slot"]), (&"r2".into(), &"green".into()));
    assert_eq!((&status["previous"]["release"], &status["previous"]["slot"]), (&"r1".into(), &"blue".into()));
    assert_eq!(status["unfinished_run"]["run_id"], INTERRUPTED);
    assert_eq!(status["unfinished_run"]["target"]["release"], "r3");
    // Written before releases were marked: nothing is marked bad, r1 is not known stable (it was replaced before
    // marks existed), and `zdd rollback` falls back to it.
    assert!(status["releases"].get("r1").is_none(), "{status:#}");
    assert_eq!(status["previous"]["mark"], serde_json::Value::Null);
    assert_eq!(status["rollback_target"]["release"], "r1");
    assert_eq!(status["rollback_target"]["stable"], false);

    let rows = history_rows(&s);
    assert_eq!(rows, ["r1 deployed", "r2 deployed"]);
    let table = s.zdd("history", &[]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
}

#[test]
fn recover_undoes_the_interrupted_run_of_the_previous_format_then_deploys_in_this_format() {
    let s = format_1();
    let refused = s.zdd("run", &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains(&format!("run {INTERRUPTED} (by")), "{}", text(&refused.stderr));

    let recovered = s.zdd("recover", &["--plain"]);
    let stdout = text(&recovered.stdout);
    assert_eq!(recovered.status.code(), Some(0), "{stdout}{}", text(&recovered.stderr));
    assert!(stdout.contains(&format!("recovering run {INTERRUPTED}")), "{stdout}");
    assert_eq!(s.read("undo.log"), "hang r3\nfirst r3\n", "the recorded undos, in the recorded graph's order");

    // Written now, `state.json` is in this zdd's format; what it said is kept, and the recovered run added.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.state().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["format"], zdd_engine::format::CURRENT);
    assert_eq!(state["written_by"], zdd_engine::format::WRITTEN_BY);
    assert_eq!(state["live"]["release"], "r2");
    let outcomes: Vec<&str> =
        state["history"].as_array().unwrap().iter().map(|h| h["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["deployed", "deployed", "rolled-back"]);
    assert!(text(&s.zdd("recover", &[]).stdout).contains("nothing to recover"));

    let run = s.zdd("run", &["--release", "r4"]);
    assert_eq!(run.status.code(), Some(0), "{}{}", text(&run.stdout), text(&run.stderr));
    assert_eq!(std::fs::read_to_string(s.out().join("deployed")).unwrap(), "r4\n");
    let status = json(&s.zdd("status", &["--json"]));
    assert_eq!((&status["live"]["release"], &status["live"]["slot"]), (&"r4".into(), &"blue".into()));
    assert_eq!(status["previous"]["release"], "r2");
    let journals = zdd_engine::journal::journals(&s.state()).unwrap();
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(journals.last().unwrap()).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!((&header["format"], &header["target"]["release"]), (&zdd_engine::format::CURRENT.into(), &"r4".into()));
}

/// Make one file of the state directory look written by a newer zdd: `format` 99 among its fields.
fn make_newer(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    // A journal's format is in its header, the first line; `state.json` and the lock are one JSON object.
    let (object, rest) =
        if path.extension().is_some_and(|e| e == "jsonl") { text.split_once('\n').unwrap() } else { (&*text, "") };
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(object).unwrap();
    object.insert("format".into(), 99.into());
    object.insert("written_by".into(), "zdd 9.9.9".into());
    std::fs::write(path, format!("{}\n{rest}", serde_json::Value::Object(object))).unwrap();
}

#[test]
fn a_state_dir_from_a_newer_zdd_is_refused_and_left_as_it_is() {
    let newer_files = ["state.json".to_owned(), "lock".to_owned(), format!("journal/{INTERRUPTED}.jsonl")];
    for newer in &newer_files {
        let s = format_1();
        make_newer(&s.state().join(newer));
        let before = contents(&s.state());
        for (command, extra) in [
            ("status", &[][..]),
            ("history", &["--json"][..]),
            ("plan", &[][..]),
            ("run", &["--release", "r9"][..]),
            ("rollback", &[][..]),
            ("recover", &[][..]),
            ("stop", &[][..]),
            ("unlock", &[][..]),
            ("doctor", &[][..]),
        ] {
            let out = s.zdd(command, extra);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{newer}: zdd {command}: {}{stderr}", text(&out.stdout));
            assert!(stderr.contains("zdd::state-format-newer"), "{newer}: zdd {command}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "{} is in state format 99, written by zdd 9.9.9",
                    s.state().join(newer).display()
                )),
                "{newer}: zdd {command}: {stderr}"
            );
            assert!(stderr.contains("help: this state directory was written by zdd 9.9.9: upgrade zdd"), "{stderr}");
            assert_eq!(contents(&s.state()), before, "{newer}: zdd {command} changed the state directory");
        }
        assert_eq!(s.read("undo.log"), "", "nothing was undone");
    }
}
