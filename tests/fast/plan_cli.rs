//! The `zdd` binary's plan commands on fixture plans (`tests/fixtures/plans/<scenario>/`) with the built-in
//! kinds: `check` exit codes and output, `plan` (text and JSON, changing nothing), `graph`, `kinds`, `explain`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use zdd_engine::diag::Code;

use crate::support::tree::tree;

fn fixture(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans").join(scenario).join("plan.kdl")
}

fn zdd() -> Command {
    let mut cmd = Command::cargo_bin("zdd").unwrap();
    cmd.env_remove("NO_COLOR").env_remove("ZDD_STATE_DIR");
    cmd
}

/// Output with the fixture directory replaced, so snapshots do not depend on where the repository is.
fn text(bytes: &[u8]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).display().to_string();
    String::from_utf8_lossy(bytes).replace(&root, "[ROOT]")
}

#[test]
fn check_accepts_a_valid_plan() {
    let out = zdd().arg("check").arg(fixture("valid")).args(["--var", "token=abcdef"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("plan `fixture` is valid (4 steps, 2 files)"));
}

#[test]
fn check_takes_secrets_from_the_environment() {
    let out = zdd().arg("check").arg(fixture("valid")).env("ZDD_VAR_TOKEN", "abcdef").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_reports_every_mistake_with_exit_2() {
    let out = zdd()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check")
        .arg("tests/fixtures/plans/five-mistakes/plan.kdl")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("╭─[tests/fixtures/plans/five-mistakes/plan.kdl:").count(), 5, "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn check_reports_include_cycles_and_bad_vars() {
    let out = zdd()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check")
        .arg("tests/fixtures/plans/include-cycle/plan.kdl")
        .args(["--var", "novalue"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stderr));
}

#[test]
fn check_of_a_missing_file_is_a_usage_error() {
    let out = zdd().arg("check").arg("/nonexistent/plan.kdl").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(Code::PlanNotFound.as_str()));
}

#[test]
fn plan_previews_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let before = tree(dir.path());
    let out = zdd()
        .arg("plan")
        .arg(fixture("valid"))
        .args(["--var", "token=s3cr3t-token", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("s3cr3t-token"), "{stdout}");
    assert!(stdout.contains("token") && stdout.contains("***"), "{stdout}");
    assert!(stdout.contains("── wave 1, 2 steps in parallel"), "{stdout}");
    assert!(stdout.contains("first deploy"), "{stdout}");
    assert_eq!(before, tree(dir.path()), "zdd plan must not write anything");
    assert!(!state.exists());
}

#[test]
fn plan_json_is_one_document() {
    let out = zdd()
        .arg("plan")
        .arg(fixture("valid"))
        .args(["--json", "--var", "token=s3cr3t-token", "--state-dir", "/nonexistent/zdd-state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plan"], "fixture");
    assert_eq!(v["target"]["slot"], "blue");
    let names: Vec<&str> = v["waves"][0].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build", "assets"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t-token"));
}

#[test]
fn graph_dot_and_mermaid() {
    for (format, name) in [("dot", "graph_dot"), ("mermaid", "graph_mermaid")] {
        let out =
            zdd().arg("graph").arg(fixture("valid")).args(["--format", format, "--var", "token=x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        insta::assert_snapshot!(name, text(&out.stdout));
    }
}

#[test]
fn kinds_lists_and_describes() {
    let out = zdd().arg("kinds").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let all = text(&out.stdout);
    for kind in ["exec", "symlink", "health-gate"] {
        assert!(all.contains(&format!("\n{kind}: ")) || all.starts_with(&format!("{kind}: ")), "{kind} in\n{all}");
    }
    let out = zdd().args(["kinds", "symlink"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let one = text(&out.stdout);
    assert!(one.contains("link <path, required>"), "{one}");
    assert!(one.contains("effect: reversible"), "{one}");
    let out = zdd().args(["kinds", "symlnk"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `symlink`"));
}

#[test]
fn explain_prints_the_books_entry_for_a_code() {
    let out = zdd().args(["explain", "unknown-step"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!("explain_unknown_step", text(&out.stdout));
    let prefixed = zdd().args(["explain", Code::UnknownStep.as_str()]).output().unwrap();
    assert_eq!(prefixed.stdout, out.stdout);

    let out = zdd().args(["explain", "zdd::unknown-stpe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("explain_unknown_code", text(&out.stderr));

    let out = zdd().args(["explain", "--list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert_eq!(list.lines().count(), Code::ALL.len(), "{list}");
    let head: Vec<&str> = list.lines().take(8).collect();
    insta::assert_snapshot!("explain_list_head", head.join("\n"));
}

#[test]
fn plan_deploys_into_the_slot_that_is_not_live() {
    use zdd_engine::state::{Deployed, State, StateDir};
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state");
    let state_dir = StateDir::prepare(&state_path).unwrap();
    let live =
        Deployed { release: "20260101-101010".into(), slot: "blue".into(), since: "2026-01-01T10:10:10Z".into() };
    state_dir.save(&State { live: Some(live), previous: None, history: Vec::new(), ..State::default() }).unwrap();
    let before = tree(dir.path());
    let out = zdd()
        .arg("plan")
        .arg(fixture("valid"))
        .args(["--json", "--var", "token=abcdef", "--state-dir"])
        .arg(&state_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"]["slot"], "green");
    assert_eq!(v["target"]["live_slot"], "blue");
    assert_eq!(v["target"]["live_release"], "20260101-101010");
    assert_eq!(before, tree(dir.path()), "zdd plan must not write to the state directory");
}

#[test]
fn plan_previews_the_release_given_with_release() {
    let out = zdd()
        .arg("plan")
        .arg(fixture("valid"))
        .args(["--json", "--release", "v1.2.3", "--var", "token=abcdef", "--state-dir", "/nonexistent/zdd-state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"]["release"], "v1.2.3");

    let out = zdd().arg("plan").arg(fixture("valid")).args(["--release", "..", "--var", "token=x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--release: release id `..`"), "{}", text(&out.stderr));
}

/// `listen "127.0.0.1:8080"` makes the fragments' default `proxy_url` `http://127.0.0.1:127.0.0.1:8080`: `check`
/// refuses it (it used to pass, and `run` retried "invalid port number" for 10 s after building everything), and
/// names the variables that made the value and where each was set.
#[test]
fn check_refuses_a_value_that_interpolates_into_a_bad_url_and_names_its_variables() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/prod.kdl");
    let out =
        zdd().arg("check").arg(&plan).args(["--var", "listen=127.0.0.1:8080"]).env("NO_COLOR", "1").output().unwrap();
    let stderr = text(&out.stderr);
    let all = format!("{}{stderr}", text(&out.stdout));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("`http://127.0.0.1:127.0.0.1:8080` is not a usable URL"), "{all}");
    assert!(all.contains("made from `proxy_url`, `listen`"), "{all}");
    assert!(all.contains("`listen` = `127.0.0.1:8080` (--var)"), "{all}");
    assert!(all.contains("`proxy_url` is `http://127.0.0.1:127.0.0.1:8080`: its default, set here"), "{all}");
    assert!(all.contains("fragments/django-release.kdl:"), "{all}");
}

/// `wagtail start` writes requirements without gunicorn: `zdd plan` says so before a deploy would fail in the
/// health gate, and changes nothing. The demo's own project names it, so it gets no such warning.
#[test]
fn plan_warns_when_the_requirements_do_not_name_gunicorn() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("site");
    std::fs::create_dir_all(&source).unwrap();
    for file in ["manage.py", "requirements.txt"] {
        std::fs::copy(root.join("examples/shop").join(file), source.join(file)).unwrap();
    }
    let shop_settings = root.join("examples/shop/shop");
    std::fs::create_dir_all(source.join("shop")).unwrap();
    std::fs::copy(shop_settings.join("settings.py"), source.join("shop/settings.py")).unwrap();
    let preview = |source: &Path| {
        let out = zdd()
            .arg("plan")
            .arg(root.join("plans/demo.kdl"))
            .args(["--var", &format!("source={}", source.display())])
            .arg("--state-dir")
            .arg(scratch.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(!preview(&source).contains("preflight-no-gunicorn"), "the shop's requirements name gunicorn");
    let requirements = std::fs::read_to_string(source.join("requirements.txt")).unwrap();
    let without = requirements.lines().filter(|l| !l.contains("gunicorn")).collect::<Vec<_>>().join("\n");
    std::fs::write(source.join("requirements.txt"), without).unwrap();
    let shown = preview(&source);
    assert!(
        shown.contains("warning[zdd::preflight-no-gunicorn]") && shown.contains("does not name gunicorn"),
        "{shown}"
    );
    assert!(!scratch.path().join("state").exists(), "zdd plan changed nothing");
}

#[test]
fn a_missing_docker_engine_is_a_preflight_error() {
    let scratch = tempfile::tempdir().unwrap();
    let plan = scratch.path().join("plan.kdl");
    std::fs::write(
        &plan,
        "plan \"no-engine\"\nslots \"a\" \"b\"\n\
         step \"image\" kind=\"image\" {\n app \"shop\"\n root \"/srv/shop\"\n docker \"/nonexistent/docker\"\n}\n\
         step \"web\" kind=\"service\" {\n needs \"image\"\n app \"shop\"\n root \"/srv/shop\"\n \
         wsgi \"shop.wsgi:application\"\n manager \"docker\"\n docker \"/nonexistent/docker\"\n}\n",
    )
    .unwrap();
    let out = zdd().arg("plan").arg(&plan).arg("--state-dir").arg(scratch.path().join("state")).output().unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("error[zdd::preflight-docker] the Docker engine does not answer `/nonexistent/docker version")
            && shown.contains("(step `image`, `web`)"),
        "{shown}{}",
        text(&out.stderr)
    );
}

#[test]
fn check_refuses_lock_settings_that_would_not_protect_the_table() {
    let dir = crate::support::env::TestDir::new("cli-lock-settings");
    let plan = dir.join("plan.kdl");
    for (field, code, says) in [
        ("lock-retries 50", Code::BadInt, "`lock-retries` must be from 0 to 20"),
        ("lock-timeout \"0s\"", Code::BadDuration, "`lock-timeout` must be more than 0s"),
    ] {
        let body =
            format!("plan \"shop\"\nstep \"migrate\" kind=\"migrate\" {{\n    root \"/srv/shop\"\n    {field}\n}}\n");
        std::fs::write(&plan, body).unwrap();
        let out = zdd().arg("check").arg(&plan).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(code.as_str()) && stderr.contains(says), "{stderr}");
        assert!(stderr.contains(":4:"), "the span is the field's line: {stderr}");
    }
}

/// The book's two-phase plan, on top of a shipped plan (its copy in a temporary `plans/`).
fn with_post_step(plan: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let copied = std::process::Command::new("cp").arg("-a").arg(&plans).arg(dir.path()).status().unwrap();
    assert!(copied.success());
    let path = dir.path().join("plans").join(plan);
    let text = std::fs::read_to_string(&path).unwrap()
        + "\nstep \"migrate-post\" kind=\"migrate\" {\n    needs \"drain-stop\"\n    phase \"post\"\n    root \"{{root}}\"\n    settings \"{{settings}}\"\n}\n";
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_post_phase_is_refused_where_the_old_release_keeps_running() {
    let (_dir, path) = with_post_step("blue-green.kdl");
    let out = zdd().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(Code::CommitWhileOldRuns.as_str()), "{stderr}");
    assert!(
        stderr.contains("step `migrate-post` is a commit point but step `drain-stop` keeps the old release running"),
        "{stderr}"
    );
    let (_dir, path) = with_post_step("prod.kdl");
    let out = zdd().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
