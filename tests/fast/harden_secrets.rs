//! Secrets never shown: a deploy with a secret variable (`secret=#true`) and an env file read by a `django`
//! step, whose commands print both. Every byte `zdd` wrote (stdout and stderr of `run` with `--plain`,
//! `--json` and the default reporter without a terminal, of `plan`, `plan --json`, `status`, `history`, of a
//! refused plan and of a failed run) and every file of the state directory is searched: the secrets appear
//! only as `***`.
//!
//! One exception, by design (see the book's reliability chapter): an `exec` step's undo facts are what
//! `zdd recover` runs, so they are journaled as recorded; a secret the plan passes to an undo command is in
//! the journal's `undo-facts` line. The journal is then only readable by its owner (0600, in a 0700
//! directory), which this test checks too.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use zdd_engine::diag::Code;

/// A secret given as a variable, and one only the env file holds.
const VAR_SECRET: &str = "var-secret-7f3a9c1e55";
const FILE_SECRET: &str = "file-secret-b81d04e2aa";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(fail: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app")).unwrap();
        // The "python" of the django step: prints the env file's secret and the arguments, on both streams.
        let python = root.join("fake-python");
        std::fs::write(
            &python,
            "#!/bin/sh\necho \"manage.py args: $* key=$SECRET_KEY\"\necho \"warning: key=$SECRET_KEY\" >&2\n",
        )
        .unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("app.env"), format!("SECRET_KEY={FILE_SECRET}\nDEBUG=0\n")).unwrap();
        std::fs::set_permissions(root.join("app.env"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let failing = if fail {
            "step \"boom\" kind=\"exec\" {\n    needs \"manage\" \"use-token\"\n    env \"TOKEN\" \"{{token}}\"\n    \
             run \"echo failing with $TOKEN >&2; exit 3\"\n}\n"
        } else {
            ""
        };
        let plan = format!(
            r#"plan "secrets"
var "token" secret=#true doc="An API token"
var "root" "{root}/app"

step "make-release" kind="exec" {{
    command "mkdir" "-p" "{{{{root}}}}/releases/{{{{release}}}}"
    undo-command "rm" "-rf" "{{{{root}}}}/releases/{{{{release}}}}"
}}

step "use-token" kind="exec" {{
    needs "make-release"
    description "Uses the token"
    env "TOKEN" "{{{{token}}}}"
    run "echo stdout token=$TOKEN; echo stderr token=$TOKEN >&2"
    undo "echo undo token=$TOKEN"
}}

step "manage" kind="django" {{
    needs "make-release"
    root "{{{{root}}}}"
    python "{python}"
    env-file "{root}/app.env"
    command "check" "--deploy"
}}
{failing}"#,
            root = root.display(),
            python = python.display(),
        );
        std::fs::write(root.join("plan.kdl"), plan).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    fn zdd(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::cargo_bin("zdd").unwrap();
        cmd.args(args).arg(self.path().join("plan.kdl"));
        if args[0] != "check" {
            cmd.arg("--state-dir").arg(self.state());
        }
        cmd.env_remove("ZDD_STATE_DIR").env("ZDD_VAR_TOKEN", VAR_SECRET).output().unwrap()
    }
}

/// Fail if a secret is anywhere in `bytes`; return them as text.
fn assert_clean(what: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    for secret in [VAR_SECRET, FILE_SECRET] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
    text
}

fn assert_output_clean(what: &str, out: &std::process::Output) -> String {
    let stdout = assert_clean(&format!("{what} (stdout)"), &out.stdout);
    let stderr = assert_clean(&format!("{what} (stderr)"), &out.stderr);
    format!("{stdout}{stderr}")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The state directory holds no secret, except in a journal's `undo-facts` lines; the journal is 0600 and the
/// state directory 0700.
fn assert_state_clean(state: &Path) {
    assert_eq!(mode(state), 0o700, "state directory mode");
    for file in files(state) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let is_journal = file.parent().is_some_and(|p| p.ends_with("journal"));
        if is_journal {
            assert_eq!(mode(&file), 0o600, "{} mode", file.display());
        }
        for line in text.lines() {
            if is_journal && line.contains("\"undo-facts\"") {
                continue;
            }
            for secret in [VAR_SECRET, FILE_SECRET] {
                assert!(!line.contains(secret), "{} shows a secret: {line}", file.display());
            }
        }
    }
}

#[test]
fn a_deploy_shows_secrets_only_as_stars() {
    let f = Fixture::new(false);

    let preview = assert_output_clean("zdd plan", &f.zdd(&["plan"]));
    assert!(preview.contains("token"), "{preview}");
    assert!(preview.contains("***"), "the preview does not show the secret as ***:\n{preview}");
    assert_output_clean("zdd plan --json", &f.zdd(&["plan", "--json"]));

    for (i, args) in [&["run", "--plain"][..], &["run", "--json"], &["run"]].iter().enumerate() {
        let out = f.zdd(args);
        let text = assert_output_clean(&format!("zdd {args:?}"), &out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        if i == 0 {
            // The commands did print the secrets: the reporter masked them.
            assert!(text.contains("stdout token=***"), "{text}");
            assert!(text.contains("key=***"), "{text}");
        }
    }
    assert_output_clean("zdd status", &f.zdd(&["status"]));
    assert_output_clean("zdd history --json", &f.zdd(&["history", "--json"]));
    assert_state_clean(&f.state());
}

#[test]
fn a_failed_run_and_its_rollback_show_secrets_only_as_stars() {
    let f = Fixture::new(true);
    let out = f.zdd(&["run", "--plain"]);
    let text = assert_output_clean("a failed run", &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("failing with ***"), "{text}");
    assert!(text.contains("undo token=***"), "the undo ran and its output is masked: {text}");
    assert_state_clean(&f.state());
    // By design the undo facts keep what recover must run: the token is in the journal, readable by its owner only.
    let journal = files(&f.state().join("journal")).pop().unwrap();
    let facts = std::fs::read_to_string(&journal).unwrap();
    assert!(facts.lines().any(|l| l.contains("\"undo-facts\"") && l.contains(VAR_SECRET)));
    assert_eq!(mode(&journal), 0o600);
}

#[test]
fn errors_quoting_a_secret_mask_it() {
    let f = Fixture::new(false);
    // The secret in a shell script, with a character the shell treats specially: refused, the value masked.
    let plan = std::fs::read_to_string(f.path().join("plan.kdl"))
        .unwrap()
        .replace("run \"echo stdout token=$TOKEN; echo stderr token=$TOKEN >&2\"", "run \"echo {{token}}\"");
    std::fs::write(f.path().join("plan.kdl"), plan).unwrap();
    let out = Command::cargo_bin("zdd")
        .unwrap()
        .arg("run")
        .arg(f.path().join("plan.kdl"))
        .arg("--state-dir")
        .arg(f.state())
        .env("ZDD_VAR_TOKEN", format!("{VAR_SECRET};x"))
        .output()
        .unwrap();
    let text = assert_output_clean("a refused plan", &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(Code::UnsafeShellValue.as_str()) && text.contains("***"), "{text}");

    // The secret in a typed field it does not fit.
    let plan = std::fs::read_to_string(f.path().join("plan.kdl"))
        .unwrap()
        .replace("run \"echo {{token}}\"", "run \"true\"\n    kill-grace \"{{token}}\"");
    std::fs::write(f.path().join("plan.kdl"), plan).unwrap();
    let out = f.zdd(&["check"]);
    let text = assert_output_clean("zdd check", &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("***"), "{text}");
}
