//! Plans: reading KDL files into a span-keeping raw layer, then validating them into an immutable [`Plan`].
//!
//! - [`load`]: the only I/O: reads the main file and its includes into a [`crate::source::SourceMap`].
//! - [`raw`]: KDL text to raw nodes that keep every span (pure).
//! - [`vars`]: variable defaults, `ZDD_VAR_*`, `--var`, interpolation.
//! - [`fleet`]: the SSH hosts by role (`hosts`, `ssh-config`) and each step's `host`/`role`.
//! - [`repeat`]: `repeat` groups expanded into one copy of their steps per item.
//! - [`validate`]: raw layer to [`Plan`], collecting every diagnostic ([`fields`] and [`types`] check step fields).
//! - [`render`]: diagnostics to miette output.
//!
//! A run [`open`]s the plan once (validated with sample runtime values, no state needed), decides its deploy target
//! from the [`PlanHeader`], then [`Unbound::bind`]s it. [`read`] does both with a target known beforehand (or
//! sample values) and [`read_header`] reads only the header. For example ([`from_sources`] serves plans held in
//! memory):
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
pub mod fleet;
pub mod load;
pub mod model;
pub mod raw;
pub mod render;
pub mod repeat;
pub mod suggest;
pub mod types;
pub mod validate;
pub mod vars;
pub mod version_pin;

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
    /// `stable-after`, else [`DEFAULT_STABLE_AFTER`].
    pub stable_after: std::time::Duration,
}

/// How long a release must be live, without failing after its cutover, to be stable when the plan does not say
/// (`stable-after`; see [`crate::state`]): long enough for the errors a release shows only under real traffic.
pub const DEFAULT_STABLE_AFTER: std::time::Duration = std::time::Duration::from_mins(10);

/// Where the runtime variables (`release`, `slot`, `live_slot`, `live_release`) come from.
#[derive(Clone, Copy)]
pub enum TargetSource<'a> {
    /// Sample values for `zdd check`: release `20260101-000000`, the first slot, live in the second slot with
    /// release `20251231-000000`.
    Sample,
    /// A target already known (decided by a run from the plan's header and the state directory).
    Fixed(&'a DeployTarget),
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
    read_with(path, &absolute_base_dir(path), &load::FsReader, vars, runtime, kinds)
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

/// A plan read once and validated with sample runtime values, not yet bound to a deploy target.
///
/// `zdd run` opens the plan (refusing an invalid one before it touches the state directory), then locks the
/// state directory, decides the target from [`Unbound::header`], and [`Unbound::bind`]s: the loaded text is
/// validated again with the real values, and nothing is read a second time.
#[derive(Debug, Clone)]
pub struct Unbound {
    loaded: load::Loaded,
    base_dir: PathBuf,
    vars: VarInputs,
    state_dir_override: Option<PathBuf>,
    header: PlanHeader,
    sample: Plan,
}

impl Unbound {
    /// Name, slots and state directory: what deciding a target needs.
    pub fn header(&self) -> &PlanHeader {
        &self.header
    }

    /// The plan bound to sample values (what `zdd check` validated).
    pub fn sample(&self) -> &Plan {
        &self.sample
    }

    pub fn sources(&self) -> &SourceMap {
        &self.loaded.sources
    }

    /// Bind to `target`: validate with its runtime values. Errors here are those only real values show (a
    /// release id that makes a field invalid); the sample validation found every other one.
    pub fn bind(&self, target: &DeployTarget, kinds: &Kinds) -> Result<Plan, Diagnostics> {
        let runtime = Runtime { state_dir: self.state_dir_override.as_deref(), target: TargetSource::Fixed(target) };
        let mut diags = Diagnostics::new();
        let validated = validate::validate(&self.loaded, &self.base_dir, &self.vars, &runtime, kinds, &mut diags);
        diags.sort();
        match validated {
            Some(v) if !diags.has_errors() => Ok(v.plan),
            _ => Err(diags),
        }
    }
}

/// The outcome of [`open`]: the sources (to render diagnostics) and the unbound plan or every problem found.
#[derive(Debug, Clone)]
pub struct Opened {
    pub sources: SourceMap,
    pub result: Result<Unbound, Diagnostics>,
}

/// Read the plan at `path` once and validate it with sample runtime values (`state_dir` is `--state-dir`).
pub fn open(path: &Path, vars: &VarInputs, state_dir: Option<&Path>, kinds: &Kinds) -> Opened {
    open_with(path, absolute_base_dir(path), &load::FsReader, vars, state_dir, kinds)
}

/// Like [`open`], but from files held in memory; `base_dir` is what `plan_dir` and relative paths resolve to.
pub fn open_sources(
    path: &Path,
    base_dir: &Path,
    reader: &load::MemoryReader,
    vars: &VarInputs,
    state_dir: Option<&Path>,
    kinds: &Kinds,
) -> Opened {
    open_with(path, base_dir.to_path_buf(), reader, vars, state_dir, kinds)
}

fn open_with(
    path: &Path,
    base_dir: PathBuf,
    reader: &dyn load::SourceReader,
    vars: &VarInputs,
    state_dir: Option<&Path>,
    kinds: &Kinds,
) -> Opened {
    let (loaded, mut diags) = load::load(path, reader);
    let runtime = Runtime { state_dir, target: TargetSource::Sample };
    let validated = validate::validate(&loaded, &base_dir, vars, &runtime, kinds, &mut diags);
    diags.sort();
    let sources = loaded.sources.clone();
    let result = match validated {
        Some(v) if !diags.has_errors() => {
            let header = PlanHeader {
                name: v.plan.name.clone(),
                slots: v.plan.slots.clone(),
                state_dir: v.state_dir,
                stable_after: v.plan.stable_after,
            };
            Ok(Unbound {
                loaded,
                base_dir,
                vars: vars.clone(),
                state_dir_override: state_dir.map(Path::to_path_buf),
                header,
                sample: v.plan,
            })
        }
        _ => Err(diags),
    };
    Opened { sources, result }
}

/// Only the plan's header, for commands that need the state directory and nothing else (`status`, `history`,
/// `unlock`): a plan whose steps do not validate still says where its state is.
pub fn read_header(
    path: &Path,
    vars: &VarInputs,
    state_dir: Option<&Path>,
) -> (SourceMap, Result<PlanHeader, Diagnostics>) {
    let base_dir = absolute_base_dir(path);
    let (loaded, mut diags) = load::load(path, &load::FsReader);
    let header = validate::header(&loaded, &base_dir, vars, state_dir, &mut diags);
    diags.sort();
    let result = match header {
        Some(h) if !diags.has_errors() => Ok(h),
        _ => Err(diags),
    };
    (loaded.sources, result)
}

/// The main file's directory, made absolute against the working directory once, so `plan_dir` and every
/// relative path in the plan are absolute (they end up in unit and Nginx files).
fn absolute_base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        parent => {
            let cwd = std::env::current_dir().unwrap_or_default();
            load::normalize(&cwd.join(parent.unwrap_or(Path::new(""))))
        }
    }
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
