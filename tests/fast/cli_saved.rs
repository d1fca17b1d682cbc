//! Saved plans through the built binary (`tests/fixtures/executor/saved`, copied per test so it can be edited):
//! `zdd plan --out FILE` then `zdd run FILE` deploys the saved release; each change since (a plan file, a
//! variable, a secret, a deploy in between, another state directory) is refused with exit 2, naming it, and leaves
//! every file as it was; a cut, foreign or newer file is refused with a located error. No secret value is written.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::tree::tree;

const SECRET: &str = "hunter2-saved-secret";
const RELEASE: &str = "r-saved";

/// A copy of the fixture plan, its out directory, state directory and saved plan, in one temporary directory.
struct Saved {
    dir: tempfile::TempDir,
}

impl Saved {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/executor/saved");
        std::fs::create_dir(dir.path().join("plan")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        for file in ["plan.kdl", "steps.kdl"] {
            std::fs::copy(fixture.join(file), dir.path().join("plan").join(file)).unwrap();
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn plan(&self) -> PathBuf {
        self.path().join("plan/plan.kdl")
    }

    fn file(&self) -> PathBuf {
        self.path().join("saved.json")
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    fn out(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join("out").join(name)).unwrap_or_default()
    }

    /// `zdd ARGS`, the secret in the environment (as CI gives it), no colour.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdd"));
        cmd.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("ZDD_VAR_TOKEN", SECRET)
            .env_remove("ZDD_STATE_DIR")
            .env_remove("ZDD_VAR_GREETING");
        cmd
    }

    /// `zdd COMMAND PLAN --state-dir STATE --var out=OUT EXTRA`.
    fn on_plan(&self, command: &str, extra: &[&str]) -> Output {
        let out = format!("out={}", self.path().join("out").display());
        let (plan, state) = (self.plan().display().to_string(), self.state().display().to_string());
        let mut args = vec![command, &plan, "--state-dir", &state, "--var", &out];
        args.extend(extra);
        self.command(&args).output().unwrap()
    }

    /// `zdd plan ... --release r-saved --out saved.json EXTRA`, which must succeed.
    fn save(&self, extra: &[&str]) {
        let file = self.file().display().to_string();
        let mut args = vec!["--release", RELEASE, "--out", &file];
        args.extend(extra);
        let out = self.on_plan("plan", &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("saved the plan to"), "{}", text(&out.stderr));
    }

    /// `zdd run saved.json --plain EXTRA`, not started.
    fn apply_command(&self, extra: &[&str]) -> Command {
        let file = self.file().display().to_string();
        let mut args = vec!["run", &file, "--plain"];
        args.extend(extra);
        self.command(&args)
    }

    fn apply(&self, extra: &[&str]) -> Output {
        self.apply_command(extra).output().unwrap()
    }

    /// Run `cmd` (an apply), which must be refused with exit 2 and change nothing; its stderr, the directory shown
    /// as `[DIR]`.
    fn refused(&self, cmd: &mut Command) -> String {
        let before = tree(self.path());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(before, tree(self.path()), "a refused apply must leave every file as it was");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        text(&out.stderr).replace(&self.path().display().to_string(), "[DIR]")
    }

    fn saved_json(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.file()).unwrap()).unwrap()
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state().join("state.json")).unwrap()).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_saved_plan_applies_and_deploys_the_saved_release() {
    let s = Saved::new();
    s.save(&[]);
    assert!(!s.state().exists(), "zdd plan --out must not create the state directory");
    let saved = s.saved_json();
    assert_eq!(saved["zdd"], "saved-plan");
    assert_eq!(saved["target"]["release"], RELEASE);
    assert_eq!(saved["target"]["slot"], "blue");
    let files: Vec<&str> = saved["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[1].ends_with("plan/steps.kdl"), "{files:?}");
    let run = &saved["steps"][0]["fields"]["run"][0]["value"];
    let run = run.as_str().unwrap();
    assert!(run.ends_with(&format!("; echo hello {RELEASE} blue > {}/out/deployed", s.path().display())), "{run}");

    // No --var out, no --state-dir, no --release: the saved plan gives them; the secret comes from the environment.
    let out = s.apply(&[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(s.out("deployed").trim(), format!("hello {RELEASE} blue"));
    assert_eq!(s.out("token").trim(), SECRET, "the apply ran with the secret given again");
    assert_eq!(s.state_json()["live"]["release"], RELEASE);
}

#[test]
fn no_secret_value_is_written_into_the_saved_plan() {
    let s = Saved::new();
    s.save(&[]);
    let written = std::fs::read_to_string(s.file()).unwrap();
    assert!(!written.contains(SECRET), "{written}");
    assert!(written.contains("echo *** > "), "the step that uses the secret shows it masked: {written}");
    let token = &s.saved_json()["variables"].as_array().unwrap().iter().find(|v| v["name"] == "token").cloned();
    let token = token.as_ref().unwrap();
    assert_eq!(token["secret"], true);
    assert!(token.get("value").is_none(), "{token}");
    assert_eq!(token["sha256"].as_str().unwrap().len(), 64, "{token}");
}

#[test]
fn a_plan_file_edited_since_is_refused_naming_it() {
    let s = Saved::new();
    s.save(&[]);
    let steps = s.path().join("plan/steps.kdl");
    let edited = std::fs::read_to_string(&steps).unwrap().replace("echo {{greeting}}", "echo {{greeting}} again");
    std::fs::write(&steps, edited).unwrap();
    let stderr = s.refused(&mut s.apply_command(&[]));
    assert!(stderr.contains("plan file changed: [DIR]/plan/steps.kdl"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_different_variable_is_refused_naming_it() {
    let s = Saved::new();
    s.save(&[]);
    let stderr = s.refused(&mut s.apply_command(&["--var", "greeting=bonjour"]));
    insta::assert_snapshot!(stderr);
    let stderr = s.refused(s.apply_command(&[]).env("ZDD_VAR_GREETING", "hi"));
    assert!(stderr.contains("variable changed: greeting: was `hello` (default), now `hi` (environment)"), "{stderr}");
}

#[test]
fn a_secret_not_given_again_or_different_is_refused() {
    let s = Saved::new();
    s.save(&[]);
    let stderr = s.refused(s.apply_command(&[]).env_remove("ZDD_VAR_TOKEN"));
    insta::assert_snapshot!("secret_not_given", stderr);
    // Every other change is still found.
    let stderr = s.refused(s.apply_command(&["--var", "greeting=hi"]).env_remove("ZDD_VAR_TOKEN"));
    assert!(stderr.contains("secret variable token was given when the plan was saved"), "{stderr}");
    assert!(stderr.contains("variable changed: greeting: was `hello` (default), now `hi` (--var)"), "{stderr}");
    assert!(stderr.contains("2 changes since it was saved"), "{stderr}");
    let stderr = s.refused(s.apply_command(&[]).env("ZDD_VAR_TOKEN", "another-secret"));
    assert!(stderr.contains("secret variable changed: token"), "{stderr}");
    assert!(!stderr.contains("another-secret"), "{stderr}");
}

#[test]
fn a_deploy_in_between_is_refused_naming_the_live_state_change() {
    let s = Saved::new();
    s.save(&[]);
    let between = s.on_plan("run", &["--plain", "--release", "r-between"]);
    assert_eq!(between.status.code(), Some(0), "{}{}", text(&between.stdout), text(&between.stderr));
    let run_id = s.state_json()["history"][0]["run_id"].as_str().unwrap().to_owned();
    let stderr = s.refused(&mut s.apply_command(&[])).replace(&run_id, "[RUN]");
    insta::assert_snapshot!(stderr);
    assert_eq!(s.out("deployed").trim(), "hello r-between blue", "the saved plan did not run");
}

#[test]
fn a_run_that_finishes_while_the_apply_waits_for_the_lock_is_found_under_the_lock() {
    let s = Saved::new();
    s.save(&[]);
    let out_dir = s.path().join("out");
    std::fs::write(out_dir.join("hold"), "").unwrap();
    let out = format!("out={}", out_dir.display());
    let (plan, state) = (s.plan().display().to_string(), s.state().display().to_string());
    let args = ["run", &plan, "--state-dir", &state, "--var", &out, "--plain", "--release", "r-between"];
    let mut between = s.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&out_dir.join("holding"));

    // The apply's first pass finds nothing changed (the run holding the lock has not finished), then it waits.
    let mut apply =
        s.apply_command(&["--lock-wait", "1m"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(apply.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("waiting up to") {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "the apply ended without waiting for the lock: {seen}");
        seen.push_str(&line);
    }
    std::fs::remove_file(out_dir.join("hold")).unwrap();
    assert_eq!(between.wait().unwrap().code(), Some(0));

    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(apply.wait().unwrap().code(), Some(2), "{seen}");
    assert!(seen.contains("live state changed: was nothing live, no run yet; now release r-between live"), "{seen}");
    assert_eq!(s.out("deployed").trim(), "hello r-between blue", "the saved plan did not run");
}

/// Wait until `path` exists (a step says it got there).
fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_saved_plan_is_applied_once() {
    let s = Saved::new();
    s.save(&[]);
    assert_eq!(s.apply(&[]).status.code(), Some(0));
    let stderr = s.refused(&mut s.apply_command(&[]));
    assert!(stderr.contains("live state changed: was nothing live, no run yet; now release r-saved live"), "{stderr}");
}

#[test]
fn another_state_directory_is_refused_and_not_created() {
    let s = Saved::new();
    s.save(&[]);
    let other = s.path().join("other-state");
    let stderr = s.refused(&mut s.apply_command(&["--state-dir", &other.display().to_string()]));
    insta::assert_snapshot!(stderr);
    assert!(!other.exists());
    let stderr = s.refused(s.apply_command(&[]).env("ZDD_STATE_DIR", &other));
    assert!(stderr.contains("state directory differs"), "{stderr}");
    // The one it was saved against is accepted.
    let out = s.apply(&["--state-dir", &s.state().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn another_release_id_is_refused() {
    let s = Saved::new();
    s.save(&[]);
    let stderr = s.refused(&mut s.apply_command(&["--release", "r-other"]));
    assert!(stderr.contains("release differs: the plan was saved for release r-saved, --release gives r-other"));
}

#[test]
fn unreadable_saved_plans_are_refused_with_a_located_error() {
    let s = Saved::new();
    s.save(&[]);
    let whole = std::fs::read_to_string(s.file()).unwrap();
    std::fs::write(s.file(), &whole[..whole.find("\"target\"").unwrap()]).unwrap();
    let cut = s.refused(&mut s.apply_command(&[]));
    assert!(cut.contains("zdd::saved-plan-invalid"), "{cut}");
    assert!(cut.contains("it ends too soon (cut short?)"), "{cut}");
    assert!(cut.contains("╭─[[DIR]/saved.json:"), "{cut}");

    let newer = whole.replacen("\"format\": 1,", "\"format\": 9,", 1);
    let newer = newer.replacen(
        &format!("\"written_by\": \"zdd {}\"", env!("CARGO_PKG_VERSION")),
        "\"written_by\": \"zdd 9.0.0\"",
        1,
    );
    std::fs::write(s.file(), newer).unwrap();
    let newer = s.refused(&mut s.apply_command(&[])).replace(env!("CARGO_PKG_VERSION"), "[VERSION]");
    insta::assert_snapshot!("newer_format", newer);

    std::fs::write(s.file(), "{\"format\": 2, \"live\": null}\n").unwrap();
    let foreign = s.refused(&mut s.apply_command(&[]));
    assert!(foreign.contains("is JSON but not a saved plan"), "{foreign}");
}

#[test]
fn other_commands_given_a_saved_plan_say_what_it_is() {
    let s = Saved::new();
    s.save(&[]);
    let file = s.file().display().to_string();
    let out = s.command(&["plan", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a saved plan, not a plan file"), "{}", text(&out.stderr));
    let out = s.command(&["check", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("saved plan of `saved` (2 steps, 2 files), release r-saved into slot blue"), "{stdout}");
    // Commands that take a plan file name the one the plan was saved from.
    let out = s.command(&["status", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let expected = format!("give the plan file it was saved from: `zdd status {}`", s.plan().display());
    assert!(text(&out.stderr).contains(&expected), "{}", text(&out.stderr));
    std::fs::write(s.file(), "{\"zdd\": \"saved-plan\"").unwrap();
    let out = s.command(&["check", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("zdd::saved-plan-invalid"), "{}", text(&out.stderr));
}

#[test]
fn out_is_in_the_help_the_man_page_and_the_completions() {
    let s = Saved::new();
    let help = text(&s.command(&["plan", "--help"]).output().unwrap().stdout);
    assert!(help.contains("--out <FILE>"), "{help}");
    let run_help = text(&s.command(&["run", "--help"]).output().unwrap().stdout);
    assert!(run_help.contains("saved plan"), "{run_help}");
    let man = text(&s.command(&["man"]).output().unwrap().stdout);
    assert!(man.contains(".SH \"ZDD PLAN\""), "the man page has no section for zdd plan");
    assert!(
        man.contains("Given a saved plan (zdd plan \\-\\-out FILE)"),
        "the man page does not say what zdd run FILE does"
    );
    assert!(man.contains("\\fB\\-\\-out\\fR \\fI<FILE>\\fR"), "the man page has no --out");
    for (shell, option) in [("bash", "--out"), ("zsh", "'--out=["), ("fish", "plan\" -l out ")] {
        let completions = text(&s.command(&["completions", shell]).output().unwrap().stdout);
        assert!(completions.contains(option), "{shell}: no {option}");
    }
}

#[test]
fn values_given_when_saving_need_not_be_given_again_and_relative_paths_are_kept_absolute() {
    let s = Saved::new();
    // A relative plan and state directory, from the directory; the apply runs from `/`.
    let out_var = format!("out={}", s.path().join("out").display());
    let out = s
        .command(&["plan", "plan/plan.kdl", "--state-dir", "state", "--var", &out_var, "--out", "saved.json"])
        .env("ZDD_VAR_GREETING", "bonjour")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let saved = s.saved_json();
    assert_eq!(saved["state_dir"].as_str().unwrap(), s.state().display().to_string());
    assert_eq!(saved["main"].as_str().unwrap(), s.plan().display().to_string());
    let out = s.apply_command(&[]).current_dir("/").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let release = saved["target"]["release"].as_str().unwrap();
    assert_eq!(s.out("deployed").trim(), format!("bonjour {release} blue"), "the greeting saved from the environment");
    assert_eq!(s.state_json()["live"]["release"], release);
}

#[test]
fn a_secret_of_any_length_is_masked_in_the_saved_steps() {
    let s = Saved::new();
    let short = "q7z";
    let file = s.file().display().to_string();
    let out_var = format!("out={}", s.path().join("out").display());
    let plan = s.plan().display().to_string();
    let state = s.state().display().to_string();
    let args = ["plan", &plan, "--state-dir", &state, "--var", &out_var, "--out", &file];
    let out = s.command(&args).env("ZDD_VAR_TOKEN", short).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(s.file()).unwrap();
    assert!(!written.contains(short), "{written}");
    assert!(written.contains("echo *** > "), "{written}");
}
