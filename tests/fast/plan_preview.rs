//! `zdd plan`'s preview, built with the test kinds and the real `LocalHost`: text and JSON snapshots, secrets
//! masked, diffs against files on disk, and proof that building it changes nothing on disk.

#![allow(dead_code)]

use crate::fake_kinds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zdd_engine::host::LocalHost;
use zdd_engine::plan::{self, Runtime, VarInputs};
use zdd_engine::preview::{self, PlanPreview, PreviewInput};

const PLAN: &str = r#"plan "shop"
slots "blue" "green"
var "app" "shop"
var "token" secret=#true
step "config" kind="fake" {
    description "Write the app's settings"
    path "etc/app.conf"
    content "name = {{app}}\nrelease = {{release}}\ntoken = {{token}}\n"
    cmd "systemctl" "reload" "{{app}}-{{slot}}"
}
step "fresh" kind="fake" {
    path "etc/new.conf"
}
step "migrate" kind="schema" {
    needs "config"
    sql "ALTER TABLE t ADD c int NULL"
}
step "health" kind="probe" {
    needs "migrate" "fresh"
    url "http://127.0.0.1:8001/health/"
    retry attempts=5 backoff="200ms"
    timeout "30s"
}
"#;

/// Every path under `root` with what it holds (content, link target or "dir") and its mode.
fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
            };
            let mtime = meta.modified().unwrap();
            out.insert(path, format!("{mode:o} {mtime:?} {what}"));
        }
    }
    out
}

fn build_preview(dir: &Path) -> PlanPreview {
    build_preview_of(dir, "prod.kdl", &["token=s3cr3t-token"])
}

fn build_preview_of(dir: &Path, plan_file: &str, vars: &[&str]) -> PlanPreview {
    let main = dir.join(plan_file);
    let kinds = fake_kinds::kinds();
    let state_dir = dir.join("state");
    let runtime = Runtime::sample().with_state_dir(Some(&state_dir));
    let read = plan::read(&main, &VarInputs::cli(vars.iter().copied()), &runtime, &kinds);
    let plan = Arc::new(read.result.unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(preview::build(PreviewInput {
        plan: &plan,
        kinds: &kinds,
        target: read.target.as_ref().unwrap(),
        state_dir: read.state_dir.as_deref().unwrap(),
        hosts: zdd_engine::host::HostSet::local(Arc::new(LocalHost::new())),
    }))
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/app.conf"), "name = shop\nrelease = 20251231-000000\ntoken = old\n").unwrap();
    std::os::unix::fs::symlink("etc/app.conf", dir.path().join("current")).unwrap();
    std::fs::write(dir.path().join("prod.kdl"), PLAN).unwrap();
    dir
}

fn filters(dir: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&dir.display().to_string()), "[TMP]");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '/' { vec![c] } else { vec!['\\', c] }).collect()
}

#[test]
fn preview_changes_nothing_on_disk() {
    let dir = setup();
    let before = snapshot_tree(dir.path());
    let p = build_preview(dir.path());
    assert_eq!(p.waves.len(), 3);
    assert_eq!(before, snapshot_tree(dir.path()), "the preview must not touch the file system");
    assert!(!dir.path().join("state").exists(), "the state directory is not created");
}

#[test]
fn preview_text() {
    let dir = setup();
    let p = build_preview(dir.path());
    let text = preview::render_text(&p, false);
    assert!(!text.contains("s3cr3t-token"), "{text}");
    filters(dir.path()).bind(|| insta::assert_snapshot!(text));
}

#[test]
fn preview_json() {
    let dir = setup();
    let p = build_preview(dir.path());
    let json = serde_json::to_string_pretty(&p).unwrap();
    assert!(!json.contains("s3cr3t-token"), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["waves"][0][0]["actions"][0]["file"], "changed");
    assert_eq!(v["waves"][0][1]["actions"][0]["file"], "new");
    filters(dir.path()).bind(|| insta::assert_snapshot!(json));
}

#[test]
fn a_file_that_cannot_be_read_is_not_called_new() {
    let dir = setup();
    // Something is where `fresh` writes, but it cannot be read as a file.
    std::fs::create_dir(dir.path().join("etc/new.conf")).unwrap();
    let p = build_preview(dir.path());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["waves"][0][1]["actions"][0]["file"], "unreadable", "{v:#}");
    let text = preview::render_text(&p, false);
    assert!(text.contains("new.conf (cannot read what is there now"), "{text}");
    assert!(text.contains("the whole new content follows"), "{text}");
}

/// Two lanes written once in a `repeat`, one after the other, then a check after both.
const REPEATED: &str = r#"plan "lanes"
var "lanes" "1 2"
repeat "lane" in="{{lanes}}" serial=1 {
    step "config" kind="fake" {
        description "Write lane {{lane}}'s settings"
        path "etc/lane-{{lane}}.conf"
        content "lane = {{lane}}\n"
    }
    step "health" kind="probe" {
        needs "config"
        url "http://127.0.0.1:8000/lane-{{lane}}/health/"
    }
}
step "smoke" kind="probe" {
    needs "health"
    url "http://127.0.0.1:8000/"
}
"#;

#[test]
fn repeated_steps_preview_like_written_ones() {
    let dir = setup();
    std::fs::write(dir.path().join("lanes.kdl"), REPEATED).unwrap();
    let p = build_preview_of(dir.path(), "lanes.kdl", &[]);
    // One lane after the other: config.1, health.1, config.2, health.2, then smoke.
    assert_eq!(p.waves.len(), 5);
    let text = preview::render_text(&p, false);
    filters(dir.path()).bind(|| insta::assert_snapshot!(text));
}
