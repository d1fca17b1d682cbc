//! Injection refused: every variable of the shipped plans (`plans/*.kdl`), given a value with a newline, `;`,
//! `{`, `}`, `#`, a quote, `$(...)` or a backtick, is either refused with a located error before anything is
//! written, or lands only where such characters are harmless: one element of an argument vector (no shell), a
//! file path, or an HTTP request path; never in an Nginx site, a systemd unit or a shell script.
//!
//! The full matrix (plan x variable x value) goes through the plan reader in-process (the same path as
//! `--var`); each variable is also given through the `zdd` binary (`plan` and `run`), and the accepted ones are
//! followed into the commands `zdd plan --json` shows. A real `exec` run proves that an argument vector
//! reaches the program as one element each, with no shell in between.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use zdd_engine::diag::Code;
use zdd_engine::host::shell_quote;
use zdd_engine::plan::{self, Runtime, VarInputs};

const PLANS: &[&str] = &["prod", "port-switch", "blue-green", "rolling", "demo", "caddy"];

/// Values that end or open a directive, a command or a quoted string. `PWNED` is replaced by a marker path.
const HOSTILE: &[&str] =
    &["x\ny", "x;touch PWNED", "x{y", "x}y", "x#y", "x\"y", "x'y", "x$(touch PWNED)y", "x`touch PWNED`y"];

/// Where an accepted variable's value goes, in the plans that do not put it in a shell script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// One argument of a command run without a shell.
    Arg,
    /// Split on spaces into arguments of a command run without a shell (`nginx`, `caddy`, `pip_args`).
    Args,
    /// A file or directory zdd reads, writes or copies (never written into a config file).
    File,
    /// A request path of an HTTP check.
    Http,
}

/// The variables that may keep such characters, and where they go.
const ACCEPTED: &[(&str, Dest)] = &[
    ("nginx", Dest::Args),
    ("caddy", Dest::Args),
    ("pip_args", Dest::Args),
    ("nginx_reload", Dest::Args),
    ("systemd_prefix", Dest::Args),
    ("requirements", Dest::Arg),
    ("uv", Dest::Arg),
    ("nginx_conf", Dest::Arg),
    ("source", Dest::File),
    ("site_conf", Dest::File),
    ("unit_dir", Dest::File),
    ("nginx_error_log", Dest::File),
    ("nginx_pid_file", Dest::File),
    ("smoke_paths", Dest::Http),
    ("static_page", Dest::Http),
];

/// Variables that hold a list separated by whitespace (`lanes`, a `repeat`'s list): a newline separates two
/// items, which are then checked like any other item.
const LISTS: &[&str] = &["lanes"];

/// Variables `plans/demo.kdl` interpolates into its `prepare` shell script: refused there.
const DEMO_SCRIPT_VARS: &[&str] =
    &["root", "env_file", "static_dir", "nginx", "nginx_conf", "nginx_pid_file", "nginx_error_log"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plan_path(name: &str) -> PathBuf {
    root().join("plans").join(format!("{name}.kdl"))
}

/// Every variable a shipped plan declares (its own and its fragments').
fn variables(plan: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // The plan's own, and those of the fragments it includes (django.kdl includes django-release.kdl).
    let own = std::fs::read_to_string(plan_path(plan)).unwrap();
    let fragments = ["django.kdl", "django-release.kdl"]
        .into_iter()
        .filter(|f| own.contains("fragments/django.kdl") || own.contains(&format!("fragments/{f}")))
        .map(|f| root().join("plans/fragments").join(f));
    for file in std::iter::once(plan_path(plan)).chain(fragments) {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("var \"") {
                names.insert(rest.split('"').next().unwrap().to_owned());
            }
        }
    }
    names
}

fn accepted(plan: &str, var: &str) -> Option<Dest> {
    if plan == "demo" && DEMO_SCRIPT_VARS.contains(&var) {
        return None;
    }
    // Caddy's config holds its log path (the plan's nginx_error_log): refused there.
    if plan == "caddy" && var == "nginx_error_log" {
        return None;
    }
    ACCEPTED.iter().find(|(n, _)| *n == var).map(|(_, d)| *d)
}

fn hostile(marker: &Path) -> Vec<String> {
    HOSTILE.iter().map(|v| v.replace("PWNED", &marker.display().to_string())).collect()
}

fn zdd() -> Command {
    let mut cmd = Command::cargo_bin("zdd").unwrap();
    cmd.env_remove("ZDD_STATE_DIR").env("NO_COLOR", "1");
    cmd
}

/// `zdd run <plan> --state-dir <state>`, for the caller's further arguments.
fn zdd_run(plan: &Path, state: &Path) -> Command {
    let mut cmd = zdd();
    cmd.arg("run").arg(plan).arg("--state-dir").arg(state);
    cmd
}

/// Nothing below `dir`.
fn assert_empty(dir: &Path, what: &str) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "{what} wrote {left:?}");
}

#[test]
fn every_variable_of_every_shipped_plan_refuses_or_contains_hostile_values() {
    let kinds = zdd_steps::builtin();
    let marker = Path::new("/nonexistent/zdd-pwned");
    let mut checked = 0;
    for plan in PLANS {
        let vars = variables(plan);
        assert!(vars.len() > 20, "{plan}: only {vars:?}");
        for var in &vars {
            for value in hostile(marker) {
                let inputs = VarInputs::cli([format!("{var}={value}")]);
                let read = plan::read(&plan_path(plan), &inputs, &Runtime::sample(), &kinds);
                checked += 1;
                match (&read.result, accepted(plan, var)) {
                    (Ok(_), Some(_)) => {}
                    (Ok(_), None) if LISTS.contains(&var.as_str()) && value.split_whitespace().count() > 1 => {}
                    (Ok(_), None) => panic!("{plan}: `{var}` = {value:?} was accepted"),
                    (Err(diags), _) => {
                        let errors: Vec<_> =
                            diags.iter().filter(|d| d.severity == zdd_engine::diag::Severity::Error).collect();
                        assert!(!errors.is_empty(), "{plan} {var} {value:?}");
                        for d in errors {
                            assert!(d.span.is_some(), "{plan} {var} {value:?}: no location: {d:?}");
                            assert!(d.help.is_some(), "{plan} {var} {value:?}: no help: {d:?}");
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 4 * 25 * HOSTILE.len(), "{checked}");
}

#[test]
fn refused_values_leave_nothing_behind_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let values = hostile(&marker);
    for plan in PLANS {
        for (i, var) in variables(plan).iter().enumerate() {
            if accepted(plan, var).is_some() {
                continue;
            }
            // One hostile value per variable here (the matrix above covers them all), each through `plan` and
            // `run`, through `--var` and, for every other variable, through ZDD_VAR_<NAME>.
            let value = &values[i % values.len()];
            let work = tempfile::tempdir().unwrap();
            let state = work.path().join("state");
            for command in ["plan", "run"] {
                let mut cmd = zdd();
                cmd.arg(command).arg(plan_path(plan)).arg("--state-dir").arg(&state);
                if i % 2 == 0 {
                    cmd.arg("--var").arg(format!("{var}={value}"));
                } else {
                    cmd.env(format!("ZDD_VAR_{}", var.to_uppercase()), value);
                }
                let out = cmd.output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{command} {plan} {var}={value:?}: {stderr}");
                assert!(stderr.contains(".kdl:"), "{command} {plan} {var}: error not located: {stderr}");
                assert!(stderr.contains("zdd::"), "{stderr}");
                assert_empty(work.path(), &format!("`zdd {command}` {plan} {var}={value:?}"));
            }
        }
    }
    assert!(!marker.exists(), "a hostile value ran a command");
}

/// The commands of a `zdd plan --json` preview, and the contents of the files it would write.
fn preview(plan: &str, var: &str, value: &str, state: &Path) -> (Vec<String>, Vec<String>) {
    let out = zdd()
        .args(["plan", "--json"])
        .arg(plan_path(plan))
        .arg("--state-dir")
        .arg(state)
        .arg("--var")
        .arg(format!("{var}={value}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{plan} {var}={value:?}: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (mut commands, mut files) = (Vec::new(), Vec::new());
    for step in json["waves"].as_array().unwrap().iter().flat_map(|w| w.as_array().unwrap()) {
        for action in step["actions"].as_array().unwrap() {
            match action["action"].as_str() {
                Some("run") => commands.push(action["command"].as_str().unwrap().to_owned()),
                Some("write") => files.push(action["content"].as_str().unwrap_or_default().to_owned()),
                _ => {}
            }
        }
    }
    (commands, files)
}

/// The arguments of a command line as the preview prints it (words, `'...'` quoting, `'\''` for a quote).
fn split_words(command: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut in_word) = (Vec::new(), String::new(), false, false);
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if !quoted => {}
            ' ' | '(' | ')' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Does the command line hold `word` as one whole argument (a path may have been made absolute)?
fn is_one_argument(command: &str, word: &str) -> bool {
    split_words(command).iter().any(|w| w == word || w.ends_with(&format!("/{word}")))
}

#[test]
fn accepted_values_reach_commands_as_quoted_arguments_and_never_config_files() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let marker = tmp.path().join("pwned");
    // The shell-special ones: the matrix shows the others are accepted or refused the same way.
    let values: Vec<String> = hostile(&marker).into_iter().filter(|v| v.contains(['$', ';'])).collect();
    for plan in PLANS {
        let declared = variables(plan);
        for (var, dest) in ACCEPTED {
            if accepted(plan, var).is_none() || !declared.contains(*var) {
                continue;
            }
            for value in &values {
                let (commands, files) = preview(plan, var, value, &state);
                for content in &files {
                    assert!(!content.contains(value.as_str()), "{plan}: `{var}` landed in a file:\n{content}");
                }
                let words: Vec<&str> = match dest {
                    Dest::Arg => vec![value.as_str()],
                    Dest::Args => value.split(' ').filter(|w| !w.is_empty()).collect(),
                    Dest::File | Dest::Http => vec![],
                };
                for word in words {
                    // Shown in a command (some steps preview no command for it): only as one quoted argument.
                    for c in commands.iter().filter(|c| c.contains(word) || c.contains(&shell_quote(word))) {
                        assert!(is_one_argument(c, word), "{plan}: `{var}` word {word:?} is not one argument in {c}");
                    }
                }
            }
        }
    }
    assert!(!marker.exists(), "a hostile value ran a command");
    assert_empty(tmp.path(), "`zdd plan`");
}

#[test]
fn an_argument_vector_reaches_the_program_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    // Relative to the command's directory: a value with `/` would not name one file.
    let marker = Path::new("pwned");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(
        tmp.path().join("plan.kdl"),
        format!(
            "plan \"argv\"\nvar \"name\" \"plain\"\nstep \"touch\" kind=\"exec\" {{\n    cwd \"{}\"\n    command \"touch\" \"--\" \"{{{{name}}}}\"\n}}\n",
            out_dir.display()
        ),
    )
    .unwrap();
    for value in hostile(marker) {
        let out = zdd_run(&tmp.path().join("plan.kdl"), &tmp.path().join("state"))
            .arg("--plain")
            .arg("--var")
            .arg(format!("name={value}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{value:?}: {}", String::from_utf8_lossy(&out.stderr));
        let made: Vec<String> =
            std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(made, vec![value.clone()], "the value is not one argument");
        std::fs::remove_file(out_dir.join(&value)).unwrap();
    }
}

#[test]
fn a_shell_script_refuses_hostile_interpolations_but_takes_them_through_env() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let plan = tmp.path().join("plan.kdl");
    std::fs::write(
        &plan,
        "plan \"shell\"\nvar \"name\" \"plain\"\n\
         step \"unsafe\" kind=\"exec\" {\n    run \"echo {{name}} > out\"\n}\n",
    )
    .unwrap();
    for value in hostile(&marker) {
        let out = zdd_run(&plan, &tmp.path().join("state")).arg("--var").arg(format!("name={value}")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
        assert!(stderr.contains(Code::UnsafeShellValue.as_str()), "{stderr}");
        assert!(stderr.contains("plan.kdl:4:"), "not located at the script: {stderr}");
        assert!(stderr.contains("env \"NAME\""), "no way out offered: {stderr}");
    }
    assert!(!tmp.path().join("state").exists(), "a refused run created its state directory");

    // The way the error suggests: the value as an environment variable, quoted in the script.
    std::fs::write(
        &plan,
        "plan \"shell\"\nvar \"name\" \"plain\"\n\
         step \"safe\" kind=\"exec\" {\n    env \"NAME\" \"{{name}}\"\n    run \"printf '%s' \\\"$NAME\\\" > out\"\n}\n",
    )
    .unwrap();
    for value in hostile(&marker) {
        let out = zdd_run(&plan, &tmp.path().join("state")).arg("--var").arg(format!("name={value}")).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{value:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(tmp.path().join("out")).unwrap(), value);
    }
    assert!(!marker.exists(), "a hostile value ran a command");
}

#[test]
fn hostile_release_ids_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    for release in ["..", ".", "-rf", "a/b", "a;b", "$(id)", "`id`", "a\nb", "a b", ""] {
        let out = zdd_run(&plan_path("demo"), &tmp.path().join("state"))
            .arg(format!("--release={release}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{release:?}: {stderr}");
        assert!(stderr.contains("--release"), "{stderr}");
        assert_empty(tmp.path(), &format!("--release {release:?}"));
    }
}
