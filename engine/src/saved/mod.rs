//! Saved plans: `zdd plan --out FILE` writes the plan bound to its deploy target, with a fingerprint of all it was
//! bound against; `zdd run FILE` applies exactly that plan, or refuses and says what changed (Nomad's
//! `job plan` / `job run -check-index`, for one state directory).
//!
//! A saved plan is a JSON object ([`SavedPlan`]) whose first fields say what it is: `"zdd": "saved-plan"`,
//! `format` and `written_by`, as the state directory's files do ([`crate::format`]). It holds:
//!
//! - the main plan file and every file it loaded, each by absolute path and the SHA-256 of its text: the plan is
//!   read again from those paths when it is applied, and any byte changed is a refusal;
//! - the plan's variables with their values and where each came from. A secret variable's value is never written:
//!   only a salted SHA-256 of it (the salt is random per saved plan, so equal secrets in two files do not show
//!   as equal, and a table of known hashes is no use). Secrets are given again when the plan is applied
//!   (`ZDD_VAR_<NAME>`, as in CI); a value whose hash differs is a refusal;
//! - the state directory and the deploy target (release id, slot, live slot and release): the release id is
//!   fixed when the plan is saved (`--release`, or the time then), and the apply deploys that id;
//! - a fingerprint of the live state ([`LiveState`]): what is live and previous, and the last run of the state
//!   directory's history. Any run in between (a deploy, a rollback, even a failed run) changes the last run, so
//!   a saved plan is applied at most once, and never on top of a state it was not reviewed against;
//! - every bound step: its name, kind, host, needs, timeout, retry and its fields after interpolation, with every
//!   secret value masked (`***`, however short the value: the display redactor leaves values under four
//!   characters alone, a saved plan may not). That is what a reviewer reads, and the apply binds the plan again
//!   and requires the same steps: a zdd whose kinds bind the same text differently refuses.
//!
//! Why these and not the whole preview: the fingerprints decide whether the plan can still be applied, and they
//! are cheap and exact. The preview's file diffs depend on the disk at the moment and are what `zdd plan` prints
//! beside the file. What is not pinned: the project's source tree (`source`), which the plan reads when it runs,
//! and the host (packages, files outside the plan); pin the source by commit in the release id or a variable.
//!
//! [`read`] turns a file's text into a [`SavedPlan`] or located diagnostics; [`compare`] finds each [`Change`]
//! between a saved plan and what it would be applied against now.

pub mod compare;
pub mod read;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use compare::Change;

use crate::events::Outcome;
use crate::kind::DeployTarget;
use crate::plan::{Plan, Value, VarOrigin, Variable};
use crate::state::State;

/// The value of a saved plan's `zdd` field: what tells it from a plan file and from other JSON.
pub const KIND: &str = "saved-plan";

/// The saved-plan format this zdd writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// A saved plan, as written to its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always [`KIND`].
    pub zdd: String,
    pub format: u32,
    pub written_by: String,
    /// When it was saved (RFC 3339, UTC).
    pub saved_at: String,
    /// The plan's name.
    pub plan: String,
    /// The main plan file, absolute.
    pub main: PathBuf,
    /// Every file the plan loaded, the main file first.
    pub files: Vec<SavedFile>,
    /// The state directory the plan was bound against.
    pub state_dir: PathBuf,
    /// `--state-dir` as given when the plan was saved (absolute); absent: the plan's own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir_given: Option<PathBuf>,
    /// The random salt of the secrets' hashes (hex).
    pub salt: String,
    /// The plan's variables (not the runtime ones), in declaration order.
    pub variables: Vec<SavedVar>,
    pub target: DeployTarget,
    /// The state directory's live state when the plan was saved.
    pub live: LiveState,
    /// The bound steps, in declaration order, secrets masked.
    pub steps: Vec<SavedStep>,
}

/// One loaded plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    pub path: PathBuf,
    /// SHA-256 of its text, hex.
    pub sha256: String,
}

/// One plan variable: its value, or for a secret only the salted hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedVar {
    pub name: String,
    pub origin: VarOrigin,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// The value (absent for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `sha256(salt:name:value)` (secrets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl SavedVar {
    /// A secret, or a variable whose value holds one (`"postgres://shop:{{db_password}}@db/shop"`), is kept as
    /// its salted hash only.
    fn of(var: &Variable, salt: &str, mask: &Mask) -> Self {
        let (value, sha256) = if var.secret || mask.hides(&var.value) {
            (None, Some(secret_hash(salt, &var.name, &var.value)))
        } else {
            (Some(var.value.clone()), None)
        };
        Self { name: var.name.clone(), origin: var.origin.clone(), secret: var.secret, value, sha256 }
    }

    /// Does `var` (the same variable, bound now) have this value?
    pub fn matches(&self, var: &Variable, salt: &str) -> bool {
        self.secret == var.secret
            && match (&self.value, &self.sha256) {
                (_, Some(hash)) => *hash == secret_hash(salt, &var.name, &var.value),
                (Some(value), None) => *value == var.value,
                (None, None) => false,
            }
    }
}

/// What the state directory said when the plan was saved: enough to notice any run since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The release serving and its slot.
    pub live: Option<LiveRelease>,
    /// The release that served before it.
    pub previous: Option<String>,
    /// The newest entry of the history.
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRelease {
    pub release: String,
    pub slot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    pub release: String,
    pub outcome: Outcome,
}

impl LiveState {
    pub fn of(state: &State) -> Self {
        Self {
            live: state.live.as_ref().map(|l| LiveRelease { release: l.release.clone(), slot: l.slot.clone() }),
            previous: state.previous.as_ref().map(|p| p.release.clone()),
            last_run: state.history.last().map(|h| LastRun {
                run_id: h.run_id.clone(),
                release: h.release.clone(),
                outcome: h.outcome,
            }),
        }
    }

    /// `release r1 live in slot blue, previous r0, last run r1-4f2a (r1, deployed)`.
    pub fn describe(&self) -> String {
        let live = match &self.live {
            Some(l) => format!("release {} live in slot {}", l.release, l.slot),
            None => "nothing live".to_owned(),
        };
        let previous = self.previous.as_ref().map(|p| format!(", previous {p}")).unwrap_or_default();
        let last = match &self.last_run {
            Some(r) => format!("last run {} ({}, {})", r.run_id, r.release, outcome_word(r.outcome)),
            None => "no run yet".to_owned(),
        };
        format!("{live}{previous}, {last}")
    }
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Deployed => "deployed",
        Outcome::RolledBack => "rolled back",
        Outcome::RollbackIncomplete => "rollback incomplete",
        Outcome::Committed => "committed, then failed",
    }
}

/// One bound step, as a reviewer reads it and as the apply must bind it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStep {
    pub name: String,
    pub kind: String,
    /// The SSH destination; absent: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// `2m`, `30s`.
    pub timeout: String,
    pub retry: SavedRetry,
    /// The kind's fields after interpolation, defaults applied.
    pub fields: BTreeMap<String, Vec<SavedField>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRetry {
    pub attempts: u32,
    pub backoff: String,
    pub jitter: String,
}

/// One occurrence of a field: its argument and properties as JSON (strings, numbers, booleans, durations as
/// `30s`, lists as arrays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub props: BTreeMap<String, serde_json::Value>,
}

/// Secret values masked in everything a saved plan holds: every non-empty value, longest first.
struct Mask(Vec<String>);

impl Mask {
    fn of(plan: &Plan) -> Self {
        let mut secrets: Vec<String> = plan.secrets().map(str::to_owned).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// Does `text` hold a secret?
    fn hides(&self, text: &str) -> bool {
        self.0.iter().any(|s| text.contains(s.as_str()))
    }

    fn text(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |out, s| if out.contains(s.as_str()) { out.replace(s.as_str(), "***") } else { out })
    }

    fn value(&self, value: &Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            Value::Str(s) => J::String(self.text(s)),
            Value::Path(p) => J::String(self.text(&p.display().to_string())),
            Value::Int(i) => J::from(*i),
            Value::Port(p) => J::from(*p),
            Value::Bool(b) => J::Bool(*b),
            Value::Duration(d) => J::String(duration(*d)),
            Value::Strings(list) => J::Array(list.iter().map(|s| J::String(self.text(s))).collect()),
        }
    }
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The bound steps of `plan`, secrets masked: what a saved plan holds and what its apply compares.
pub fn steps_of(plan: &Plan) -> Vec<SavedStep> {
    let mask = Mask::of(plan);
    plan.steps
        .iter()
        .map(|step| SavedStep {
            // Names and hosts too: a `repeat` over a secret list names its steps by the items.
            name: mask.text(&step.name),
            kind: step.kind.clone(),
            host: step.host.as_deref().map(|h| mask.text(h)),
            description: step.description.as_deref().map(|d| mask.text(d)),
            needs: step.needs.iter().map(|n| mask.text(&plan.step(*n).name)).collect(),
            timeout: duration(step.policy.timeout),
            retry: SavedRetry {
                attempts: step.policy.retry.attempts,
                backoff: duration(step.policy.retry.backoff),
                jitter: duration(step.policy.retry.jitter),
            },
            fields: step
                .fields
                .map
                .iter()
                .map(|(name, values)| {
                    let saved = values
                        .iter()
                        .map(|f| SavedField {
                            value: f.value.as_ref().map(|v| mask.value(v)),
                            props: f.props.iter().map(|(k, v)| (k.clone(), mask.value(v))).collect(),
                        })
                        .collect();
                    (name.clone(), saved)
                })
                .collect(),
        })
        .collect()
}

/// A fingerprint of `plan`'s bound steps ([`steps_of`], secrets masked): a staged run records it, and `zdd
/// promote` refuses a plan that binds differently (a plan file or a variable changed since the stage).
pub fn bound_fingerprint(plan: &Plan) -> String {
    sha256_hex(serde_json::to_string(&steps_of(plan)).unwrap_or_default().as_bytes())
}

/// The plan's own variables (not the runtime ones).
pub fn plan_variables(plan: &Plan) -> impl Iterator<Item = &Variable> {
    plan.vars.iter().filter(|v| v.origin != VarOrigin::Runtime)
}

/// What a saved plan is made from.
pub struct SaveInput<'a> {
    /// The plan bound to `target`.
    pub plan: &'a Plan,
    pub state_dir: &'a Path,
    /// `--state-dir`, absolute.
    pub state_dir_given: Option<&'a Path>,
    pub target: &'a DeployTarget,
    /// The state the target was decided from.
    pub state: &'a State,
    /// What relative file paths are made absolute against.
    pub cwd: &'a Path,
}

impl SavedPlan {
    pub fn new(input: &SaveInput<'_>) -> Self {
        let plan = input.plan;
        let salt = hex(&rand::random::<[u8; 16]>());
        let absolute = |p: &Path| crate::plan::load::normalize(&input.cwd.join(p));
        let files: Vec<SavedFile> = plan
            .sources
            .files()
            .map(|(_, f)| SavedFile { path: absolute(&f.path), sha256: sha256_hex(f.text.as_bytes()) })
            .collect();
        Self {
            zdd: KIND.to_owned(),
            format: FORMAT,
            written_by: crate::format::WRITTEN_BY.to_owned(),
            saved_at: crate::lock::now_rfc3339(),
            plan: plan.name.clone(),
            main: files.first().map(|f| f.path.clone()).unwrap_or_default(),
            files,
            state_dir: input.state_dir.to_path_buf(),
            state_dir_given: input.state_dir_given.map(Path::to_path_buf),
            variables: plan_variables(plan).map(|v| SavedVar::of(v, &salt, &Mask::of(plan))).collect(),
            salt,
            target: input.target.clone(),
            live: LiveState::of(input.state),
            steps: steps_of(plan),
        }
    }

    /// The file's text: pretty JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The variable inputs an apply binds with: the values given when the plan was saved (from the same place:
    /// `--var` or `ZDD_VAR_*`), under what is given now (`now`: this command's `--var` and environment), so a
    /// value given again differently is bound, and then found changed. Secrets are never in the file: only
    /// `now` can give them.
    pub fn var_inputs(&self, now: &crate::plan::VarInputs) -> crate::plan::VarInputs {
        let mut inputs = crate::plan::VarInputs { cli: Vec::new(), env: now.env.clone() };
        for var in self.variables.iter().filter(|v| !v.secret) {
            let Some(value) = &var.value else { continue };
            match var.origin {
                VarOrigin::Cli => inputs.cli.push(format!("{}={value}", var.name)),
                VarOrigin::Env => {
                    inputs.env.entry(var.name.to_ascii_uppercase()).or_insert_with(|| value.clone());
                }
                VarOrigin::Default | VarOrigin::Runtime => {}
            }
        }
        // Later `--var`s win: what is given now comes after what was saved.
        inputs.cli.extend(now.cli.iter().cloned());
        inputs
    }
}

/// `sha256(salt:name:value)`, hex: the same secret gives the same hash only within one saved plan.
fn secret_hash(salt: &str, name: &str, value: &str) -> String {
    sha256_hex(format!("{salt}:{name}:{value}").as_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::VarInputs;

    fn var(name: &str, value: &str, origin: VarOrigin, secret: bool) -> Variable {
        Variable { name: name.into(), value: value.into(), secret, origin, doc: None, span: None }
    }

    fn saved(variables: Vec<SavedVar>, salt: &str) -> SavedPlan {
        SavedPlan {
            zdd: KIND.into(),
            format: FORMAT,
            written_by: crate::format::WRITTEN_BY.into(),
            saved_at: String::new(),
            plan: "p".into(),
            main: PathBuf::from("/p/plan.kdl"),
            files: Vec::new(),
            state_dir: PathBuf::from("/s"),
            state_dir_given: None,
            salt: salt.into(),
            variables,
            target: crate::plan::Runtime::sample_target(&[]),
            live: LiveState::default(),
            steps: Vec::new(),
        }
    }

    #[test]
    fn a_secret_is_saved_as_a_salted_hash_that_only_its_value_matches() {
        let token = var("token", "hunter2-long", VarOrigin::Env, true);
        let saved = SavedVar::of(&token, "salt-a", &Mask(vec![]));
        assert_eq!((saved.value.as_deref(), saved.sha256.as_ref().map(String::len)), (None, Some(64)));
        assert!(saved.matches(&token, "salt-a"));
        assert!(!saved.matches(&var("token", "hunter3-long", VarOrigin::Env, true), "salt-a"));
        assert_ne!(SavedVar::of(&token, "salt-b", &Mask(vec![])).sha256, saved.sha256, "the salt changes the hash");
        let plain = SavedVar::of(&var("app", "shop", VarOrigin::Default, false), "salt-a", &Mask(vec![]));
        assert_eq!((plain.value.as_deref(), plain.sha256.as_deref()), (Some("shop"), None));
    }

    #[test]
    fn saved_values_are_given_from_where_they_came_and_what_is_given_now_wins() {
        let vars = [
            var("from_cli", "a", VarOrigin::Cli, false),
            var("from_env", "b", VarOrigin::Env, false),
            var("by_default", "c", VarOrigin::Default, false),
            var("token", "hunter2-long", VarOrigin::Env, true),
        ];
        let saved = saved(vars.iter().map(|v| SavedVar::of(v, "s", &Mask(vec![]))).collect(), "s");
        let mut now = VarInputs::cli(["from_cli=z"]);
        now.env.insert("TOKEN".into(), "hunter2-long".into());
        let inputs = saved.var_inputs(&now);
        assert_eq!(inputs.cli, ["from_cli=a", "from_cli=z"], "the later --var wins");
        assert_eq!(inputs.env.get("FROM_ENV").map(String::as_str), Some("b"));
        assert_eq!(inputs.env.get("TOKEN").map(String::as_str), Some("hunter2-long"), "secrets only from now");
        assert!(!inputs.env.contains_key("BY_DEFAULT"), "a default comes from the plan's files");
        assert!(saved.secrets_not_given(&now).is_empty());
        assert_eq!(saved.secrets_not_given(&VarInputs::default()), [Change::SecretNotGiven("token".into())]);
    }
}
