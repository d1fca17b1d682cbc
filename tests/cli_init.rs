//! `zdd init` on Django projects laid out differently: the scaffolded plan names what was found and passes
//! `zdd check` where it was written (the shared fragment is written beside it, from the binary).

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

fn zdd() -> Command {
    Command::cargo_bin("zdd").expect("the zdd binary is built")
}

/// A copy of a fixture project in a temp dir, so the test never writes into the repository.
fn project(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/init").join(fixture);
    copy_tree(&src, dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("fixture exists") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn flat_layout_gets_a_plan_that_checks() {
    let dir = project("flat-layout");
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let plan = std::fs::read_to_string(dir.path().join("deploy/prod.kdl")).expect("plan written");
    assert!(plan.contains(r#"var "settings" "mysite.settings""#), "{plan}");
    assert!(plan.contains(r#"var "wsgi" "mysite.wsgi:application""#), "{plan}");
    assert!(plan.contains(r#"var "health_path" "/healthz/""#), "{plan}");
    assert!(plan.contains(r#"var "source" "..""#), "{plan}");
    assert!(dir.path().join("deploy/fragments/django.kdl").is_file());
    let check = zdd().arg("check").arg(dir.path().join("deploy/prod.kdl")).output().expect("runs");
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn config_package_layout_finds_nested_settings_and_requirements() {
    let dir = project("config-package-layout");
    let out_path = dir.path().join("ops/deploy.kdl");
    let out = zdd().arg("init").arg(dir.path()).arg("--output").arg(&out_path).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    // No health URL in the project: init says how to add one.
    assert!(text(&out).contains("JsonResponse"), "{}", text(&out));
    let plan = std::fs::read_to_string(&out_path).expect("plan written");
    assert!(plan.contains(r#"var "settings" "config.settings.production""#), "{plan}");
    assert!(plan.contains(r#"var "wsgi" "config.wsgi:application""#), "{plan}");
    assert!(plan.contains(r#"var "requirements" "requirements/production.txt""#), "{plan}");
    let check = zdd().arg("check").arg(&out_path).output().expect("runs");
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn an_existing_plan_is_not_overwritten() {
    let dir = project("flat-layout");
    std::fs::create_dir_all(dir.path().join("deploy")).expect("mkdir");
    std::fs::write(dir.path().join("deploy/prod.kdl"), "// mine\n").expect("write");
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("deploy/prod.kdl")).expect("read"), "// mine\n");
}

#[test]
fn a_directory_without_django_is_refused() {
    let dir = project("no-manage-py");
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no manage.py"), "{}", text(&out));
    assert!(!dir.path().join("deploy").exists());
}
