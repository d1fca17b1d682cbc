//! Plans: reading KDL files into a span-keeping raw layer, then validating them into an immutable [`Plan`].
//!
//! - [`load`]: the only I/O: reads the main file and its includes into a [`crate::source::SourceMap`].
//! - [`raw`]: KDL text to raw nodes that keep every span (pure).
//! - [`vars`]: variable defaults, `ZDD_VAR_*`, `--var`, interpolation.
//! - [`repeat`]: `repeat` groups expanded into one copy of their steps per item.
//! - [`validate`]: raw layer to [`Plan`], collecting every diagnostic ([`fields`] and [`types`] check step fields).
//! - [`render`]: diagnostics to miette output.
//!
//! The entry point is [`read`] (or [`from_sources`] for plans held in memory):
//!
//! ```no_run
//! use zdd_engine::plan::{self, Runtime, VarInputs};
//! # let kinds = zdd_engine::kind::Kinds::new();
//! let read = plan::read("deploy/prod.kdl".as_ref(), &VarInputs::from_env(vec![]), &Runtime::sample(), &kinds);
//! match &read.result {
//!     Ok(plan) => println!("{} steps", plan.steps.len()),
//!     Err(diags) => eprint!("{}", diags.render(&read.sources, false)),
//! }
//! ```

pub mod chunks;
pub mod fields;
pub mod load;
pub mod model;
pub mod raw;
pub mod render;
pub mod repeat;
pub mod suggest;
pub mod types;
pub mod validate;
pub mod vars;

use std::path::{Path, PathBuf};

pub use model::{FieldValue, Fields, Plan, Retry, Step, StepId, StepPolicy, Value, VarOrigin, Variable};
pub use vars::VarInputs;

use crate::diag::Diagnostics;
use crate::kind::{DeployTarget, Kinds};
use crate::source::SourceMap;

/// What the plan knows before the deploy target is decided: enough for the engine to read the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanHeader {
    pub name: String,
    pub slots: Vec<String>,
    /// `--state-dir`, else the plan's `state-dir`, else `/var/lib/zdd/<name>`.
    pub state_dir: PathBuf,
}

/// Decides the deploy target once the plan's header is known (the executor reads the state directory).
pub type DecideTarget<'a> = &'a dyn Fn(&PlanHeader) -> Result<DeployTarget, String>;

/// Where the runtime variables (`release`, `slot`, `live_slot`, `live_release`) come from.
#[derive(Clone, Copy)]
pub enum TargetSource<'a> {
    /// Sample values for `zdd check`: release `20260101-000000`, the first slot, live in the second slot with
    /// release `20251231-000000`.
    Sample,
    /// A target already known.
    Fixed(&'a DeployTarget),
    /// Decided from the header (slots, state directory).
    Decide(DecideTarget<'a>),
}

/// The run-time values validation interpolates into step fields.
#[derive(Clone, Copy)]
pub struct Runtime<'a> {
    /// `--state-dir` (wins over the plan's `state-dir`).
    pub state_dir: Option<&'a Path>,
    pub target: TargetSource<'a>,
}

impl<'a> Runtime<'a> {
    /// Sample values, for `zdd check`.
    pub fn sample() -> Self {
        Self { state_dir: None, target: TargetSource::Sample }
    }

    #[must_use]
    pub fn with_state_dir(mut self, state_dir: Option<&'a Path>) -> Self {
        self.state_dir = state_dir;
        self
    }

    /// The sample target for a plan with these slots.
    pub fn sample_target(slots: &[String]) -> DeployTarget {
        DeployTarget {
            release: "20260101-000000".to_owned(),
            slot: slots.first().cloned().unwrap_or_else(|| "a".to_owned()),
            live_slot: Some(slots.get(1).cloned().unwrap_or_else(|| "b".to_owned())),
            live_release: Some("20251231-000000".to_owned()),
            rollback: false,
        }
    }
}

/// The outcome of reading a plan: its sources (to render diagnostics) and the plan or every problem found.
#[derive(Debug, Clone)]
pub struct PlanRead {
    pub sources: SourceMap,
    pub result: Result<Plan, Diagnostics>,
    /// The deploy target the plan was validated with (absent if reading stopped before it was decided).
    pub target: Option<DeployTarget>,
    /// The state directory the plan was validated with.
    pub state_dir: Option<PathBuf>,
}

/// Read, interpolate and validate the plan at `path` and its includes.
///
/// Variables come from `vars` (`--var` and `ZDD_VAR_*`) and the plan's defaults; runtime variables from
/// `runtime`; step fields are checked against the kinds in `kinds`. Every problem is collected, sorted by
/// position.
pub fn read(path: &Path, vars: &VarInputs, runtime: &Runtime<'_>, kinds: &Kinds) -> PlanRead {
    // Relative plan paths are resolved against the working directory once, so `plan_dir` and every relative
    // path in the plan are absolute (they end up in unit and Nginx files).
    let base_dir = match path.parent() {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        parent => {
            let cwd = std::env::current_dir().unwrap_or_default();
            load::normalize(&cwd.join(parent.unwrap_or(Path::new(""))))
        }
    };
    read_with(path, &base_dir, &load::FsReader, vars, runtime, kinds)
}

/// Like [`read`], but from files held in memory; `base_dir` is what `plan_dir` and relative paths resolve to.
pub fn from_sources(
    path: &Path,
    base_dir: &Path,
    reader: &load::MemoryReader,
    vars: &VarInputs,
    runtime: &Runtime<'_>,
    kinds: &Kinds,
) -> PlanRead {
    read_with(path, base_dir, reader, vars, runtime, kinds)
}

fn read_with(
    path: &Path,
    base_dir: &Path,
    reader: &dyn load::SourceReader,
    vars: &VarInputs,
    runtime: &Runtime<'_>,
    kinds: &Kinds,
) -> PlanRead {
    let (loaded, mut diags) = load::load(path, reader);
    let validated = validate::validate(&loaded, base_dir, vars, runtime, kinds, &mut diags);
    diags.sort();
    diags.dedup();
    let (result, target, state_dir) = match validated {
        Some(v) if !diags.has_errors() => (Ok(v.plan), Some(v.target), Some(v.state_dir)),
        Some(v) => (Err(diags), Some(v.target), Some(v.state_dir)),
        None => (Err(diags), None, None),
    };
    PlanRead { sources: loaded.sources, result, target, state_dir }
}
