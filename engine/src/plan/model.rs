//! The validated plan: immutable, typed, every value interpolated, every name resolved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::graph::StepGraph;
use crate::plan::fleet::Fleet;
use crate::settings::StepSettings;
use crate::source::{SourceMap, Span};

/// Index of a step in [`Plan::steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct StepId(pub usize);

/// A validated plan. Built only by [`crate::plan::validate`]; never changed after.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// Directory of the main plan file: relative paths in the plan are resolved against it.
    pub base_dir: PathBuf,
    pub sources: SourceMap,
    /// Every variable with its final value and where that value came from, in declaration order.
    pub vars: Vec<Variable>,
    /// The instance slots the plan alternates between (`slots "8001" "8002"`, `slots "blue" "green"`).
    pub slots: Vec<String>,
    /// `state-dir` from the plan, if set; the CLI's `--state-dir` wins, then `/var/lib/zdd/<name>`.
    pub state_dir: Option<PathBuf>,
    /// `stable-after`: how long a release must be live, without failing, to be stable (see [`crate::state`]).
    pub stable_after: Duration,
    pub defaults: StepPolicy,
    /// The SSH hosts the plan names, by role (empty: every step runs on this machine).
    pub fleet: Fleet,
    /// In declaration order (includes expanded where they stand); `StepId` indexes this.
    pub steps: Vec<Step>,
    /// The steps' `needs` (and step references) as the one graph every later phase reads.
    pub graph: StepGraph,
}

impl Plan {
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.0]
    }

    pub fn step_by_name(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Values that must never be shown: those of variables marked `secret=#true`.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().filter(|v| v.secret && !v.value.is_empty()).map(|v| v.value.as_str())
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VarOrigin {
    Default,
    /// `ZDD_VAR_<NAME>`.
    Env,
    /// `--var NAME=VALUE`.
    Cli,
    /// Filled in by the engine for each run (`release`, `slot`, `live_slot`, ...).
    Runtime,
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub secret: bool,
    pub origin: VarOrigin,
    pub doc: Option<String>,
    pub span: Option<Span>,
}

/// Retry policy of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Total attempts, at least 1.
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub backoff: Duration,
    /// Up to this much random delay is added to each backoff.
    pub jitter: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 1, backoff: Duration::from_secs(1), jitter: Duration::ZERO }
    }
}

/// Timeout and retry of a step (plan-wide defaults, overridden per step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPolicy {
    pub timeout: Duration,
    pub retry: Retry,
}

impl Default for StepPolicy {
    fn default() -> Self {
        Self { timeout: Duration::from_mins(10), retry: Retry::default() }
    }
}

/// One validated step.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: StepId,
    pub name: String,
    pub kind: String,
    pub needs: Vec<StepId>,
    pub policy: StepPolicy,
    pub fields: Fields,
    /// What the step's kind parsed its fields into, once, at validation: what it runs with.
    pub settings: StepSettings,
    /// Human description from `description "..."`, if any.
    pub description: Option<String>,
    /// The SSH destination the step runs on (a host of [`Plan::fleet`]); `None`: this machine.
    pub host: Option<String>,
    /// The whole `step` node.
    pub span: Span,
}

/// A typed value, after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Duration(Duration),
    Port(u16),
    Path(PathBuf),
    Strings(Vec<String>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Path(p) => p.to_str(),
            _ => None,
        }
    }
}

/// One occurrence of a field node: its argument (if any) and its properties.
#[derive(Debug, Clone)]
pub struct FieldValue {
    pub value: Option<Value>,
    pub props: BTreeMap<String, Value>,
    pub span: Span,
}

impl FieldValue {
    pub fn prop(&self, name: &str) -> Option<&Value> {
        self.props.get(name)
    }

    pub fn prop_str(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Value::as_str)
    }
}

/// A step's kind-specific fields, defaults applied, keyed by field name.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub map: BTreeMap<String, Vec<FieldValue>>,
}

impl Fields {
    /// Every occurrence of a (repeatable) field.
    pub fn all(&self, name: &str) -> &[FieldValue] {
        self.map.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.all(name).first().and_then(|f| f.value.as_ref())
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(Value::as_str)
    }

    pub fn path(&self, name: &str) -> Option<PathBuf> {
        match self.value(name)? {
            Value::Path(p) => Some(p.clone()),
            Value::Str(s) => Some(PathBuf::from(s)),
            _ => None,
        }
    }

    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.value(name)? {
            Value::Duration(d) => Some(*d),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            Value::Int(i) => Some(*i),
            Value::Port(p) => Some(i64::from(*p)),
            _ => None,
        }
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        match self.value(name)? {
            Value::Port(p) => Some(*p),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.value(name) {
            Some(Value::Strings(v)) => v.clone(),
            Some(other) => other.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}
