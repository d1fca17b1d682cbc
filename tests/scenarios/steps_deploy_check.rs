//! The `deploy-check` kind on real Django (the shared venv) and the `startproject` fixture, copied into a
//! release: the project with `DEBUG = True`, as `django-admin startproject` writes it, is refused with each
//! problem's code and fix and Django's check ids; a settings module that reads `DEBUG`, `ALLOWED_HOSTS` and the
//! trusted origin from the environment passes with the env file of a production host, and is refused with
//! `DEBUG=1` in the same env file (the settings are read with the env file applied). No secret is printed.

use crate::driver;
use crate::support;

use std::path::{Path, PathBuf};

use support::env::{Requirement, TestDir, require};
use zdd_engine::kind::StepError;

/// A 50-character key with many distinct characters: check --deploy's security.W009 has nothing to say.
const STRONG_KEY: &str = "zdd-test-Qw8Xr2Lm5Tn7Vb3Kc9Hj4Gf6Dp1Sa0Ye-not-for-prod";
/// Settings on top of the fixture's, the way a project reads its production values from the environment.
const FROM_ENV: &str = "from .settings import *  # noqa\nimport os\n\nDEBUG = os.environ.get('DJANGO_DEBUG') == '1'\n\
                        ALLOWED_HOSTS = os.environ['ALLOWED_HOSTS'].split(',')\n\
                        CSRF_TRUSTED_ORIGINS = os.environ['CSRF_TRUSTED_ORIGINS'].split(',')\n\
                        SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')\n";
/// What plain HTTP to the proxy's upstream leaves check --deploy to say, let through in the passing plan.
const HTTPS_WARNINGS: &str = "security.W004 security.W008 security.W012 security.W016";

/// `<dir>/srv/releases/r1`: the startproject fixture with `edit` applied to its settings.py, and
/// `mysite/settings_env.py`.
fn release(dir: &TestDir, edit: impl Fn(&str) -> String) -> PathBuf {
    let root = dir.join("srv");
    let release = root.join("releases/r1");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects/startproject");
    support::projects::copy_tree(&fixture, &release).unwrap();
    let settings = release.join("mysite/settings.py");
    std::fs::write(&settings, edit(&std::fs::read_to_string(&settings).unwrap())).unwrap();
    std::fs::write(release.join("mysite/settings_env.py"), FROM_ENV).unwrap();
    root
}

async fn check(dir: &TestDir, root: &Path, settings: &str, env: &str, fields: &str) -> (Result<(), StepError>, String) {
    std::fs::write(dir.join("site.env"), env).unwrap();
    let python = support::venv::bin(&support::venv::shared(), "python");
    let plan = dir.join("plan.kdl");
    std::fs::write(
        &plan,
        format!(
            "plan \"deploy-check\"\nstep \"settings\" kind=\"deploy-check\" {{\n    root \"{}\"\n    python \"{}\"\n    \
             settings \"{settings}\"\n    env-file \"{}\"\n    server-name \"shop.example.com _\"\n    origin \
             \"https://shop.example.com\"\n{fields}}}\n",
            root.display(),
            python.display(),
            dir.join("site.env").display()
        ),
    )
    .unwrap();
    let target = driver::target("r1", "a", None);
    let mut run =
        driver::Run::new(driver::read_plan(&plan, &[], &target, &dir.join("state")), target, &dir.join("state"));
    let result = run.run(None).await.map_err(|(_, e)| e);
    let log = run.log_text();
    (result, log)
}

fn refusal(result: Result<(), StepError>, log: &str) -> (String, String) {
    match result {
        Err(StepError::Fatal { message, detail }) => (message, detail.unwrap_or_default()),
        other => panic!("expected a refusal, got {other:?}\n{log}"),
    }
}

#[tokio::test]
async fn startproject_with_debug_on_is_refused_with_each_fix() {
    if !require("startproject_with_debug_on_is_refused_with_each_fix", &[Requirement::Python]) {
        return;
    }
    let dir = TestDir::new("deploy-check-debug");
    let root = release(&dir, |s| s.replace("DEBUG = False", "DEBUG = True"));
    let (result, log) =
        check(&dir, &root, "mysite.settings", "SECRET_KEY=short-secret-value\n", "    allow \"security.W004\"\n").await;
    let (message, detail) = refusal(result, &log);
    for expected in [
        "DEBUG is True in mysite.settings",
        "[zdd::deploy-check-debug]",
        "ALLOWED_HOSTS in mysite.settings does not allow `shop.example.com`",
        "[zdd::deploy-check-allowed-hosts]",
        "SECURE_PROXY_SSL_HEADER is not set",
        "[zdd::deploy-check-proxy-ssl-header]",
        "CSRF_TRUSTED_ORIGINS in mysite.settings does not trust https://shop.example.com",
        "[zdd::deploy-check-csrf-origin]",
        // Django's own ids and messages.
        "security.W018 (warning): You should not have DEBUG set to True in deployment.",
        "security.W008 (warning): Your SECURE_SSL_REDIRECT setting is not set to True.",
        "security.W009 (warning): Your SECRET_KEY has less than 50 characters",
    ] {
        assert!(message.contains(expected), "no `{expected}` in:\n{message}\n{log}");
    }
    assert!(!message.contains("security.W004 (warning)"), "an allowed warning refused:\n{message}");
    assert!(log.contains("allowed: security.W004"), "{log}");
    for fix in [
        "set DEBUG = False",
        "add \"shop.example.com\" to ALLOWED_HOSTS",
        "SECURE_PROXY_SSL_HEADER = (",
        "add \"https://shop.example.com\" to CSRF_TRUSTED_ORIGINS",
        "allow \"<id>\"",
    ] {
        assert!(detail.contains(fix), "no `{fix}` in:\n{detail}");
    }
    assert!(!format!("{message}{detail}{log}").contains("short-secret-value"), "the secret key was printed");
}

#[tokio::test]
async fn settings_from_the_environment_pass_with_debug_off_and_are_refused_with_it_on() {
    if !require("settings_from_the_environment_pass_with_debug_off_and_are_refused_with_it_on", &[Requirement::Python])
    {
        return;
    }
    let dir = TestDir::new("deploy-check-env");
    let root = release(&dir, str::to_owned);
    let env = |debug: &str| {
        format!(
            "SECRET_KEY={STRONG_KEY}\nDJANGO_DEBUG={debug}\nALLOWED_HOSTS=localhost,shop.example.com\n\
             CSRF_TRUSTED_ORIGINS=https://shop.example.com\n"
        )
    };
    let allow = format!("    allow \"{HTTPS_WARNINGS}\"\n");
    let (result, log) = check(&dir, &root, "mysite.settings_env", &env("0"), &allow).await;
    assert!(result.is_ok(), "{result:?}\n{log}");
    assert!(log.contains("check --deploy: 4 issue(s), none refused"), "{log}");
    assert!(!log.contains(STRONG_KEY), "the secret key was printed:\n{log}");

    let (result, log) = check(&dir, &root, "mysite.settings_env", &env("1"), &allow).await;
    let (message, _) = refusal(result, &log);
    assert!(message.contains("[zdd::deploy-check-debug]") && message.contains("security.W018"), "{message}");
    assert!(!message.contains("deploy-check-allowed-hosts"), "{message}");
}
