//! What changed between a saved plan and what it would be applied against now, one [`Change`] each: a plan file, a
//! variable, a secret not given again, the state directory, the live state, the target, a step that binds
//! differently. An apply with any change refuses (`zdd::saved-plan-stale`), listing them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::kind::DeployTarget;
use crate::plan::{Plan, VarInputs, VarOrigin};
use crate::saved::{LiveState, SavedPlan, SavedStep, plan_variables, sha256_hex, steps_of};
use crate::source::SourceMap;

/// One difference between a saved plan and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `--state-dir` names another directory than the one the plan was saved against.
    StateDir {
        saved: PathBuf,
        now: PathBuf,
    },
    /// `--release` names another release than the saved one.
    Release {
        saved: String,
        now: String,
    },
    FileChanged(PathBuf),
    /// A recorded file that cannot be read now (removed, unreadable), and why.
    FileGone {
        path: PathBuf,
        error: String,
    },
    /// A file the plan loads now that it did not load then.
    FileAdded(PathBuf),
    /// A variable with another value (or none) now. Values are `None` for secrets.
    Var {
        name: String,
        saved: Option<(Option<String>, VarOrigin)>,
        now: Option<(Option<String>, VarOrigin)>,
    },
    /// A secret given when the plan was saved and not given now.
    SecretNotGiven(String),
    Live {
        saved: LiveState,
        now: LiveState,
    },
    Target {
        saved: DeployTarget,
        now: DeployTarget,
    },
    /// A step bound now differs from the saved one (its name, and what differs).
    Step {
        name: String,
        what: Vec<String>,
    },
}

impl Change {
    /// The diagnostic an apply prints for this change.
    pub fn diagnostic(&self) -> Diagnostic {
        let stale = |message: String| Diagnostic::error(Code::SavedPlanStale, message);
        let remake = "make the plan again (`zdd plan PLAN --out FILE`), review it, and apply the new one";
        match self {
            Change::StateDir { saved, now } => stale(format!(
                "state directory differs: the plan was saved against {}, this run would use {}",
                saved.display(),
                now.display()
            ))
            .help("give the state directory it was saved against, or no --state-dir (the saved plan names it)"),
            Change::Release { saved, now } => {
                stale(format!("release differs: the plan was saved for release {saved}, --release gives {now}"))
                    .help("leave out --release: a saved plan deploys the release id it was saved with")
            }
            Change::FileChanged(path) => stale(format!("plan file changed: {}", path.display())).help(remake),
            Change::FileGone { path, error } => {
                stale(format!("plan file cannot be read: {}: {error}", path.display())).help(remake)
            }
            Change::FileAdded(path) => stale(format!("plan file added: {}", path.display())).help(remake),
            Change::Var { name, saved: Some((None, _)), now: Some((None, _)) } => {
                stale(format!("secret variable changed: {name}: its value is not the one the plan was saved with"))
                    .help("give the secret it was saved with, or make the plan again with the new one")
            }
            Change::Var { name, saved, now } => {
                let shown = |v: &Option<(Option<String>, VarOrigin)>| match v {
                    None => "not set".to_owned(),
                    Some((Some(value), origin)) => format!("`{value}` ({})", origin_word(origin)),
                    Some((None, origin)) => format!("a secret ({})", origin_word(origin)),
                };
                stale(format!("variable changed: {name}: was {}, now {}", shown(saved), shown(now)))
                    .help("give the value it was saved with, or make the plan again with the new one")
            }
            Change::SecretNotGiven(name) => stale(format!(
                "secret variable {name} was given when the plan was saved and is not given now (secrets are not saved)"
            ))
            .help(format!("give it again: ZDD_VAR_{}=... or --var {name}=...", name.to_ascii_uppercase())),
            Change::Live { saved, now } => {
                stale(format!("live state changed: was {}; now {}", saved.describe(), now.describe())).help(
                    "a run changed the state directory since the plan was saved: make the plan again against what \
                     is live now",
                )
            }
            Change::Target { saved, now } => {
                stale(format!("deploy target changed: was {}; now {}", describe_target(saved), describe_target(now)))
                    .help(remake)
            }
            Change::Step { name, what } => {
                stale(format!("step {name} binds differently than when the plan was saved ({})", what.join(", ")))
                    .help(format!("this zdd binds the plan's text differently from the zdd that saved it: {remake}"))
            }
        }
    }
}

fn origin_word(origin: &VarOrigin) -> &'static str {
    match origin {
        VarOrigin::Default => "default",
        VarOrigin::Env => "environment",
        VarOrigin::Cli => "--var",
        VarOrigin::Runtime => "runtime",
    }
}

fn describe_target(t: &DeployTarget) -> String {
    let live = match (&t.live_release, &t.live_slot) {
        (Some(r), Some(s)) => format!("{r} in slot {s}"),
        _ => "nothing".to_owned(),
    };
    format!("release {} into slot {} (live: {live})", t.release, t.slot)
}

/// Every change, as diagnostics (no place in a file: each names what changed).
pub fn diagnostics(changes: &[Change]) -> (Diagnostics, SourceMap) {
    let mut diags = Diagnostics::new();
    for change in changes {
        diags.push(change.diagnostic());
    }
    (diags, SourceMap::new())
}

impl SavedPlan {
    /// The recorded files against the files a plan loaded now (`sources`), by path and hash.
    pub fn changed_files(&self, sources: &SourceMap) -> Vec<Change> {
        let now: Vec<(PathBuf, String)> =
            sources.files().map(|(_, f)| (absolute(&f.path), sha256_hex(f.text.as_bytes()))).collect();
        let mut changes = Vec::new();
        for saved in &self.files {
            match now.iter().find(|(p, _)| *p == saved.path) {
                Some((_, hash)) if *hash == saved.sha256 => {}
                Some(_) => changes.push(Change::FileChanged(saved.path.clone())),
                None => changes.push(file_on_disk(&saved.path, &saved.sha256).unwrap_or_else(|| Change::FileGone {
                    path: saved.path.clone(),
                    error: "no longer loaded".to_owned(),
                })),
            }
        }
        for (path, _) in &now {
            if !self.files.iter().any(|f| f.path == *path) {
                changes.push(Change::FileAdded(path.clone()));
            }
        }
        changes
    }

    /// The recorded files against the disk, for when the plan no longer reads at all.
    pub fn changed_files_on_disk(&self) -> Vec<Change> {
        self.files.iter().filter_map(|f| file_on_disk(&f.path, &f.sha256)).collect()
    }

    /// Secrets that were given (`--var`, `ZDD_VAR_*`) when the plan was saved and are not given now.
    pub fn secrets_not_given(&self, now: &VarInputs) -> Vec<Change> {
        self.variables
            .iter()
            .filter(|v| v.secret && matches!(v.origin, VarOrigin::Cli | VarOrigin::Env))
            .filter(|v| {
                let on_cli = now.cli.iter().any(|a| a.split_once('=').is_some_and(|(n, _)| n == v.name));
                !on_cli && !now.env.contains_key(&v.name.to_ascii_uppercase())
            })
            .map(|v| Change::SecretNotGiven(v.name.clone()))
            .collect()
    }

    /// The variables of `plan` (bound now) against the saved ones, by name and value (secrets by hash).
    pub fn changed_vars(&self, plan: &Plan) -> Vec<Change> {
        let now: BTreeMap<&str, _> = plan_variables(plan).map(|v| (v.name.as_str(), v)).collect();
        let mut changes = Vec::new();
        for saved in &self.variables {
            let shown_saved = Some((saved.value.clone(), saved.origin.clone()));
            match now.get(saved.name.as_str()) {
                Some(var) if saved.matches(var, &self.salt) => {}
                Some(var) => changes.push(Change::Var {
                    name: saved.name.clone(),
                    saved: shown_saved,
                    now: Some(((!var.secret).then(|| var.value.clone()), var.origin.clone())),
                }),
                None => changes.push(Change::Var { name: saved.name.clone(), saved: shown_saved, now: None }),
            }
        }
        for (name, var) in &now {
            if !self.variables.iter().any(|v| v.name == *name) {
                let value = (!var.secret).then(|| var.value.clone());
                changes.push(Change::Var {
                    name: (*name).to_owned(),
                    saved: None,
                    now: Some((value, var.origin.clone())),
                });
            }
        }
        changes
    }

    /// The live state now against the saved one, and the target a run would take now (decided from it) against
    /// the saved one: a changed live state is said alone, as the target it changes follows from it.
    pub fn changed_state(&self, live: &LiveState, target: &DeployTarget) -> Option<Change> {
        if self.live != *live {
            return Some(Change::Live { saved: self.live.clone(), now: live.clone() });
        }
        (self.target != *target).then(|| Change::Target { saved: self.target.clone(), now: target.clone() })
    }

    /// The steps of `plan` (bound now to the saved target) against the saved ones.
    pub fn changed_steps(&self, plan: &Plan) -> Vec<Change> {
        let now = steps_of(plan);
        let mut changes = Vec::new();
        for saved in &self.steps {
            match now.iter().find(|s| s.name == saved.name) {
                Some(step) if step == saved => {}
                Some(step) => changes.push(Change::Step { name: saved.name.clone(), what: differences(saved, step) }),
                None => changes.push(Change::Step { name: saved.name.clone(), what: vec!["gone".to_owned()] }),
            }
        }
        for step in now.iter().filter(|s| !self.steps.iter().any(|saved| saved.name == s.name)) {
            changes.push(Change::Step { name: step.name.clone(), what: vec!["new".to_owned()] });
        }
        let order = |steps: &[SavedStep]| steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if changes.is_empty() && order(&self.steps) != order(&now) {
            changes.push(Change::Step { name: "(all)".to_owned(), what: vec!["order".to_owned()] });
        }
        changes
    }
}

fn file_on_disk(path: &Path, sha256: &str) -> Option<Change> {
    match std::fs::read(path) {
        Ok(bytes) if sha256_hex(&bytes) == sha256 => None,
        Ok(_) => Some(Change::FileChanged(path.to_path_buf())),
        Err(e) => Some(Change::FileGone { path: path.to_path_buf(), error: e.to_string() }),
    }
}

/// A loaded file's path made absolute against the working directory, as the saved plan recorded it.
fn absolute(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    crate::plan::load::normalize(&cwd.join(path))
}

/// What differs between two versions of a step, by attribute and field name.
fn differences(saved: &SavedStep, now: &SavedStep) -> Vec<String> {
    let mut what = Vec::new();
    let mut differs = |differ: bool, name: &str| {
        if differ {
            what.push(name.to_owned());
        }
    };
    differs(saved.kind != now.kind, "kind");
    differs(saved.host != now.host, "host");
    differs(saved.description != now.description, "description");
    differs(saved.needs != now.needs, "needs");
    differs(saved.timeout != now.timeout, "timeout");
    differs(saved.retry != now.retry, "retry");
    let names: std::collections::BTreeSet<&String> = saved.fields.keys().chain(now.fields.keys()).collect();
    for name in names {
        if saved.fields.get(name) != now.fields.get(name) {
            what.push(format!("field {name}"));
        }
    }
    what
}
