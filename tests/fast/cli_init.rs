//! `zdd init` on Django projects laid out differently: the scaffolded plan names what was found and passes
//! `zdd check` where it was written (the shared fragment is written beside it, from the binary); the plan's
//! `source` leads to the project wherever the plan is written; init reports what the settings say and warns.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use support::env::{Requirement, require};
use zdd_engine::diag::Code;

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

/// The value of `var "NAME" "..."` in a plan's text.
fn var(plan: &str, name: &str) -> String {
    let prefix = format!("var \"{name}\" \"");
    let line =
        plan.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {name}: {plan}"));
    line.split('"').next().unwrap_or_default().to_owned()
}

/// `zdd init ARGS` run in `cwd` (relative paths, as a person types them); the plan's `source`, checked to
/// lead from the plan's directory to `manage_py_dir`, and the plan checked with `zdd check`.
fn init_in(cwd: &Path, args: &[&str], plan: &Path, manage_py_dir: &Path) -> String {
    let out = zdd().current_dir(cwd).arg("init").args(args).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(plan).expect("plan written");
    let source = var(&written, "source");
    let plan_dir = plan.parent().expect("plan dir");
    let resolved = std::fs::canonicalize(plan_dir.join(&source))
        .unwrap_or_else(|e| panic!("source {source:?} from {}: {e}", plan_dir.display()));
    assert_eq!(resolved, std::fs::canonicalize(manage_py_dir).expect("project"), "source {source:?}");
    assert!(resolved.join("manage.py").is_file());
    let check = zdd().arg("check").arg(plan).output().expect("runs");
    assert!(check.status.success(), "{}", text(&check));
    source
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

#[test]
fn a_wagtail_site_gets_its_production_settings_and_is_told_so() {
    let dir = project("wagtail-start");
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let plan = std::fs::read_to_string(dir.path().join("deploy/prod.kdl")).expect("plan written");
    assert_eq!(var(&plan, "settings"), "mysite.settings.production", "{plan}");
    let said = text(&out);
    assert!(said.contains("mysite.settings.production (chosen for production"), "{said}");
    assert!(said.contains("default to mysite.settings.dev"), "{said}");
    assert!(said.contains("others: mysite.settings.base, mysite.settings.dev"), "{said}");
    assert!(said.contains("--settings MODULE"), "{said}");
    // production.py imports settings/local.py when present: init says how to keep it across releases.
    assert!(said.contains("mysite/settings/local.py"), "{said}");
    assert!(said.contains("ManifestStaticFilesStorage"), "{said}");
    // No health view: the home page (Wagtail serves it from the database) is the health page, and init says so.
    assert_eq!(var(&plan, "health_path"), "/", "{plan}");
    assert!(said.contains("none found, so the plan checks /"), "{said}");
    // `wagtail start` writes no gunicorn into requirements.txt; the web step needs it.
    assert!(said.contains("warning: requirements.txt does not name gunicorn"), "{said}");

    // The user's choice wins, and init warns about what it brings.
    let out = zdd()
        .arg("init")
        .arg(dir.path())
        .args(["--settings", "mysite.settings.dev", "--force"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let plan = std::fs::read_to_string(dir.path().join("deploy/prod.kdl")).expect("plan written");
    assert_eq!(var(&plan, "settings"), "mysite.settings.dev", "{plan}");
    let said = text(&out);
    assert!(said.contains("mysite.settings.dev (--settings)"), "{said}");
    assert!(said.contains("warning: DEBUG is True"), "{said}");
    assert!(said.contains("warning: SECRET_KEY is hard-coded"), "{said}");

    let out = zdd().arg("init").arg(dir.path()).args(["--settings", "my-site.settings", "--force"]).output();
    let out = out.expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_source_leads_to_the_project_from_wherever_the_plan_is_written() {
    // Sibling: the plan in ops/, the project in site/, paths typed relative to the current directory.
    let base = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/init/startproject");
    copy_tree(&src, &base.path().join("site"));
    let plan = base.path().join("ops/deploy/prod.kdl");
    let source = init_in(base.path(), &["site", "--output", "ops/deploy/prod.kdl"], &plan, &base.path().join("site"));
    assert_eq!(source, "../../site");

    // Nested: manage.py one level below the directory given, the plan in its default place.
    let base = tempfile::tempdir().expect("temp dir");
    copy_tree(&src, &base.path().join("repo/src"));
    let plan = base.path().join("repo/deploy/prod.kdl");
    let source = init_in(base.path(), &["repo"], &plan, &base.path().join("repo/src"));
    assert_eq!(source, "../src");
    // ...and from inside the project, with no directory given.
    std::fs::remove_dir_all(base.path().join("repo/deploy")).expect("rm");
    let source = init_in(&base.path().join("repo"), &[], &plan, &base.path().join("repo/src"));
    assert_eq!(source, "../src");

    // --output elsewhere: another tree altogether, given as an absolute path.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let plan = elsewhere.path().join("plans/site/prod.kdl");
    let project_dir = base.path().join("repo");
    let plan_arg = plan.to_string_lossy().into_owned();
    let source = init_in(&project_dir, &["--output", &plan_arg], &plan, &base.path().join("repo/src"));
    assert!(source.starts_with("../../") && source.ends_with("/repo/src") && !source.contains("//"), "{source}");
}

#[test]
fn shared_paths_is_a_plan_variable() {
    let dir = project("startproject");
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let plan = dir.path().join("deploy/prod.kdl");
    let root = dir.path().join("srv");
    let preview = |extra: &[&str]| {
        let out = zdd()
            .arg("plan")
            .arg(&plan)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--var")
            .arg(format!("root={}", root.display()))
            .args(extra)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let links = |said: &str| -> Vec<String> {
        said.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("link ") && l.contains("/shared/") && l.contains("/releases/"))
            .map(|l| l.rsplit("/shared/").next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(links(&preview(&[])), ["media"]);
    let said = preview(&["--var", "shared_paths=media/ settings/local.py db.sqlite3"]);
    assert_eq!(links(&said), ["media", "settings/local.py", "db.sqlite3"], "{said}");
    // A path out of <root>/shared is refused like one written in the fragment.
    let out = zdd().arg("check").arg(&plan).args(["--var", "shared_paths=media/ ../etc"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(Code::BadSubPath.as_str()), "{}", text(&out));
}

#[test]
fn a_startproject_project_gets_a_report_and_warnings() {
    let dir = project("startproject");
    // No Django importable by python3 here, no venv in the project: the settings' text is read, and init says so.
    let out = zdd().arg("init").arg(dir.path()).env_remove("VIRTUAL_ENV").output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    for line in [
        "settings: mysite.settings (manage.py's default)",
        "STATIC_URL:  static/ (served at /static/)",
        "STATIC_ROOT: not set (fine: zdd collects into the release",
        "storage:     not set (Django's default StaticFilesStorage)",
        "database:    django.db.backends.sqlite3 (BASE_DIR / 'db.sqlite3')",
        "warning: DEBUG is True",
        "warning: SECRET_KEY is hard-coded with Django's `django-insecure-` prefix",
        "warning: ALLOWED_HOSTS is empty",
        "warning: the SQLite database db.sqlite3 is inside the project",
        "shared_paths=\"media/ db.sqlite3\"",
    ] {
        assert!(said.contains(line), "missing {line:?} in:\n{said}");
    }
    assert!(said.contains("read from the settings files (mysite/settings.py)"), "{said}");
    // A flat settings.py has no alternatives beside it (urls.py and wsgi.py are not settings).
    assert!(!said.contains("others:"), "{said}");
}

#[test]
fn init_asks_django_when_the_project_has_a_venv_with_it() {
    if !require("init_asks_django_when_the_project_has_a_venv_with_it", &[Requirement::Python]) {
        return;
    }
    let dir = project("startproject");
    std::os::unix::fs::symlink(support::venv::shared(), dir.path().join(".venv")).expect("link the venv");
    let out = zdd().arg("init").arg(dir.path()).env_remove("VIRTUAL_ENV").output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("asked Django ("), "{said}");
    // The effective values: Django puts the script prefix before STATIC_URL, and NAME is a path.
    let db: PathBuf = std::fs::canonicalize(dir.path()).expect("dir").join("db.sqlite3");
    for line in [
        "STATIC_URL:  /static/".to_owned(),
        "storage:     django.contrib.staticfiles.storage.StaticFilesStorage".to_owned(),
        format!("database:    django.db.backends.sqlite3 ({})", db.display()),
        "warning: DEBUG is True".to_owned(),
        "warning: SECRET_KEY is hard-coded".to_owned(),
        "warning: ALLOWED_HOSTS is empty".to_owned(),
        "warning: the SQLite database db.sqlite3 is inside the project".to_owned(),
    ] {
        assert!(said.contains(&line), "missing {line:?} in:\n{said}");
    }
}

#[test]
fn init_asks_django_about_a_wagtail_site_too() {
    if !require("init_asks_django_about_a_wagtail_site_too", &[Requirement::Python]) {
        return;
    }
    // The settings import nothing of Wagtail's: Django alone answers for them (the apps are not loaded).
    let dir = project("wagtail-start");
    std::os::unix::fs::symlink(support::venv::shared(), dir.path().join(".venv")).expect("link the venv");
    let out = zdd().arg("init").arg(dir.path()).env_remove("VIRTUAL_ENV").output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    let project_dir = std::fs::canonicalize(dir.path()).expect("dir");
    for line in [
        "asked Django (".to_owned(),
        "STATIC_URL:  /static/".to_owned(),
        format!("STATIC_ROOT: {}", project_dir.join("static").display()),
        "storage:     django.contrib.staticfiles.storage.ManifestStaticFilesStorage".to_owned(),
        "warning: the settings import mysite/settings/local.py when it exists".to_owned(),
        "warning: ALLOWED_HOSTS is empty".to_owned(),
        "warning: the SQLite database db.sqlite3 is inside the project".to_owned(),
    ] {
        assert!(said.contains(&line), "missing {line:?} in:\n{said}");
    }
    assert!(!said.contains("warning: DEBUG"), "{said}");
}

/// The Channels project of the ASGI scenario (tests/fixtures/projects/chat): init serves its `asgi.py` with
/// gunicorn's uvicorn worker, says why, and writes the WebSocket settings; the plan checks. A plain
/// `startproject`, which has an `asgi.py` too, stays WSGI.
#[test]
fn a_channels_project_gets_an_asgi_plan() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects/chat"), dir.path());
    let out = zdd().arg("init").arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("asgi:     mysite.asgi:application (Channels is in INSTALLED_APPS"), "{}", text(&out));
    let plan = std::fs::read_to_string(dir.path().join("deploy/prod.kdl")).expect("plan written");
    assert!(plan.contains(r#"var "asgi" "mysite.asgi:application""#), "{plan}");
    assert!(plan.contains(r#"var "server" "uvicorn-worker""#), "{plan}");
    assert!(plan.contains(r#"var "websocket_budget" "30s""#), "{plan}");
    let check = zdd().arg("check").arg(dir.path().join("deploy/prod.kdl")).output().expect("runs");
    assert!(check.status.success(), "{}", text(&check));

    let wsgi = project("flat-layout");
    let out = zdd().arg("init").arg(wsgi.path()).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let plan = std::fs::read_to_string(wsgi.path().join("deploy/prod.kdl")).expect("plan written");
    assert!(!plan.contains(r#"var "server""#), "{plan}");
}
