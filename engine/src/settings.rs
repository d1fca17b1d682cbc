//! Typed step settings: each kind parses its step's fields once, at validation, into a value of its own type
//! kept with the step ([`StepSettings`] on [`Step::settings`]), with relative paths made absolute there.
//!
//! - [`SettingsCtx`] is what building settings may read: the step's checked fields and the plan's directory.
//! - [`TypedKind`] is the contract a kind with settings implements: its preview, run, preflight, doctor and stop get
//!   `&Self::Settings`, never the step's fields, so no field is looked up by name at run time.
//! - [`Typed`] adapts a [`TypedKind`] to the engine's [`StepKind`] (register it with [`Kinds::register_typed`]).
//!
//! Undo is not part of this: it acts on the facts its run recorded, and never sees settings or a plan.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::doctor::Check;
use crate::kind::{Kinds, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoCtx, UndoFacts};
use crate::plan::{FieldValue, Fields, Step};
use crate::preflight::{Finding, PreflightCtx, Provision};
use crate::schema::{Effect, KindSpec};
use crate::source::Span;

/// A step's settings as its kind built them at validation; empty for kinds without settings (and for a step
/// whose fields had errors: such a plan is never run).
#[derive(Clone, Default)]
pub struct StepSettings(Option<Arc<dyn Any + Send + Sync>>);

impl StepSettings {
    pub fn new<T: Any + Send + Sync>(settings: T) -> Self {
        Self(Some(Arc::new(settings)))
    }

    /// The settings, if they are a `T` (a step of the kind that builds `T`).
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|s| s.downcast_ref())
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for StepSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "StepSettings(..)" } else { "StepSettings(none)" })
    }
}

/// What building a step's settings may read: the step, its fields checked against the kind's spec (defaults
/// applied, variables interpolated), and the plan's directory, which relative paths are resolved against.
#[derive(Clone, Copy)]
pub struct SettingsCtx<'a> {
    pub step: &'a Step,
    /// Directory of the main plan file.
    pub base_dir: &'a Path,
}

impl<'a> SettingsCtx<'a> {
    pub fn new(step: &'a Step, base_dir: &'a Path) -> Self {
        Self { step, base_dir }
    }

    /// A plan path made absolute (relative paths are relative to the main plan file's directory).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.base_dir.join(path) }
    }

    pub fn fields(&self) -> &'a Fields {
        &self.step.fields
    }

    /// Every occurrence of a (repeatable) field.
    pub fn all(&self, name: &str) -> &'a [FieldValue] {
        self.step.fields.all(name)
    }

    /// A string field as written (after interpolation).
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.step.fields.str(name)
    }

    /// A string field, empty or blank counting as absent (a variable left empty on purpose).
    pub fn given(&self, name: &str) -> Option<&'a str> {
        self.str(name).filter(|s| !s.trim().is_empty())
    }

    /// A string field the kind's spec requires (validation reported it if missing).
    pub fn required(&self, name: &str) -> Result<&'a str, Diagnostics> {
        self.str(name).ok_or_else(|| self.missing(name))
    }

    /// A path field, made absolute; an empty one counts as absent.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.step.fields.path(name).filter(|p| !p.as_os_str().is_empty()).map(|p| self.resolve(&p))
    }

    /// A path field as written, not resolved: for paths relative to something else than the plan (the release).
    pub fn relative_path(&self, name: &str) -> Option<PathBuf> {
        self.step.fields.path(name).filter(|p| !p.as_os_str().is_empty())
    }

    /// A path field the kind's spec requires, made absolute.
    pub fn required_path(&self, name: &str) -> Result<PathBuf, Diagnostics> {
        self.step.fields.path(name).map(|p| self.resolve(&p)).ok_or_else(|| self.missing(name))
    }

    pub fn duration(&self, name: &str, fallback: Duration) -> Duration {
        self.step.fields.duration(name).unwrap_or(fallback)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.step.fields.int(name)
    }

    pub fn bool(&self, name: &str, fallback: bool) -> bool {
        self.step.fields.bool(name).unwrap_or(fallback)
    }

    /// All arguments of a field (a single value as one).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.step.fields.strings(name)
    }

    /// The field's first occurrence, else the step: where a problem with it is shown.
    pub fn span(&self, name: &str) -> Span {
        self.all(name).first().map_or(self.step.span, |f| f.span)
    }

    /// A required field that is not there. Validation reports missing fields before settings are built, so
    /// this only happens to a step that did not go through it.
    pub fn missing(&self, name: &str) -> Diagnostics {
        let mut diags = Diagnostics::new();
        diags.push(
            Diagnostic::error(Code::MissingField, format!("`{}` steps need `{name}`", self.step.kind))
                .at(self.step.span, format!("no `{name}` in this step"))
                .help(format!("add `{name}` to step `{}` (see `zdd kinds {}`)", self.step.name, self.step.kind)),
        );
        diags
    }
}

/// Check a step's fields across each other, then build its settings: once, at validation, for a step whose
/// fields were all fine. Errors of either go to `diags`; settings are kept only when there were none.
///
/// Settings are built only while the plan has no error at all: a plan with one is not used, and a step an
/// earlier error touched (a `repeat` copy whose unknown step reference was left out) would only add a second,
/// misleading diagnostic.
pub(crate) fn check_and_build(kind: &dyn StepKind, step: &mut Step, base_dir: &Path, diags: &mut Diagnostics) {
    kind.check(step, diags);
    if diags.has_errors() {
        return;
    }
    match kind.settings(&SettingsCtx::new(step, base_dir)) {
        Ok(settings) => step.settings = settings,
        Err(found) => diags.extend(found),
    }
}

/// A step kind whose preview, run, preflight and stop act on typed settings it built once at validation.
#[async_trait]
pub trait TypedKind: Send + Sync + 'static {
    /// What the kind parses its fields into: paths absolute, defaults applied, lists split.
    type Settings: Send + Sync + 'static;

    fn spec(&self) -> &'static KindSpec;

    /// Checks across fields beyond what the spec's types express; spans come from the fields.
    fn check(&self, _step: &Step, _diags: &mut Diagnostics) {}

    /// Parse the step's checked fields into settings, once, at validation (after [`TypedKind::check`] found
    /// nothing). A problem found here is a diagnostic with the field's span, a code and a help line.
    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Self::Settings, Diagnostics>;

    /// The effect of this particular step (defaults to the kind's).
    fn effect(&self, _settings: &Self::Settings) -> Effect {
        self.spec().effect
    }

    /// What this step makes exist for later steps, so their preflight does not report it missing.
    fn provides(&self, _settings: &Self::Settings, _ctx: &PreviewCtx) -> Vec<Provision> {
        Vec::new()
    }

    /// What this step needs that can be known before any step runs. Reads only.
    async fn preflight(&self, _settings: &Self::Settings, _ctx: &PreflightCtx) -> Vec<Finding> {
        Vec::new()
    }

    /// `zdd doctor`'s checks of this step, ok ones included. Reads only. Default: its preflight as checks.
    async fn doctor(&self, settings: &Self::Settings, ctx: &PreflightCtx) -> Vec<Check> {
        crate::doctor::from_findings(self.preflight(settings, ctx).await)
    }

    /// What the step would do. Reads only.
    async fn preview(&self, settings: &Self::Settings, ctx: &PreviewCtx) -> Result<Preview, StepError>;

    /// Do it. Record undo facts (via [`StepCtx::record_undo`]) before each effect: they, not the settings, are
    /// what the undo gets.
    async fn run(&self, settings: &Self::Settings, ctx: &StepCtx) -> Result<(), StepError>;

    /// Undo a run from the facts it recorded alone: no settings, no plan.
    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError>;

    /// `zdd stop`: stop whatever this step keeps running. Returns whether it stopped anything.
    async fn stop(&self, _settings: &Self::Settings, _ctx: &StepCtx) -> Result<bool, StepError> {
        Ok(false)
    }

    /// `zdd maintenance on|off` (see [`StepKind::maintenance`]). Returns whether the step has a maintenance page.
    async fn maintenance(&self, _settings: &Self::Settings, _ctx: &StepCtx, _on: bool) -> Result<bool, StepError> {
        Ok(false)
    }

    /// How many releases the step keeps, for kinds that prune old ones (see [`StepKind::releases_kept`]).
    fn releases_kept(&self, _settings: &Self::Settings) -> Option<usize> {
        None
    }

    /// See [`StepKind::retires_old`].
    fn retires_old(&self, _settings: &Self::Settings) -> Option<bool> {
        None
    }

    /// Whether the step moves the live traffic to the new release (see [`StepKind::cuts_over`]).
    fn cuts_over(&self, _settings: &Self::Settings) -> bool {
        false
    }

    /// See [`StepKind::moves_work_before_cutover`].
    fn moves_work_before_cutover(&self, _settings: &Self::Settings) -> bool {
        false
    }

    /// Whether the step is a commit point: no rollback once it started (see [`StepKind::commits`]).
    fn commits(&self, _settings: &Self::Settings) -> bool {
        false
    }
}

/// A [`TypedKind`] as the engine's [`StepKind`]: hands each call the settings validation built for the step.
pub struct Typed<K>(pub K);

impl<K: TypedKind> Typed<K> {
    fn settings_of<'s>(&self, step: &'s Step) -> Result<&'s K::Settings, StepError> {
        step.settings.get::<K::Settings>().ok_or_else(|| {
            StepError::fatal(format!(
                "step `{}` has no {} settings: its plan was not validated with this kind",
                step.name,
                self.0.spec().name
            ))
        })
    }
}

#[async_trait]
impl<K: TypedKind> StepKind for Typed<K> {
    fn spec(&self) -> &'static KindSpec {
        self.0.spec()
    }

    fn effect(&self, step: &Step) -> Effect {
        self.settings_of(step).map_or(self.0.spec().effect, |s| self.0.effect(s))
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        self.0.check(step, diags);
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<StepSettings, Diagnostics> {
        self.0.settings(ctx).map(StepSettings::new)
    }

    fn provides(&self, step: &Step, ctx: &PreviewCtx) -> Vec<Provision> {
        self.settings_of(step).map_or_else(|_| Vec::new(), |s| self.0.provides(s, ctx))
    }

    async fn preflight(&self, step: &Step, ctx: &PreflightCtx) -> Vec<Finding> {
        // A step without settings cannot be previewed or run either, and says so there.
        match self.settings_of(step) {
            Ok(s) => self.0.preflight(s, ctx).await,
            Err(_) => Vec::new(),
        }
    }

    async fn doctor(&self, step: &Step, ctx: &PreflightCtx) -> Vec<Check> {
        // As for the preflight: a step without settings cannot be run either, and says so there.
        match self.settings_of(step) {
            Ok(s) => self.0.doctor(s, ctx).await,
            Err(_) => Vec::new(),
        }
    }

    async fn preview(&self, step: &Step, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        self.0.preview(self.settings_of(step)?, ctx).await
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        self.0.run(self.settings_of(step)?, ctx).await
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        self.0.undo(facts, ctx).await
    }

    async fn stop(&self, step: &Step, ctx: &StepCtx) -> Result<bool, StepError> {
        self.0.stop(self.settings_of(step)?, ctx).await
    }

    async fn maintenance(&self, step: &Step, ctx: &StepCtx, on: bool) -> Result<bool, StepError> {
        self.0.maintenance(self.settings_of(step)?, ctx, on).await
    }

    fn releases_kept(&self, step: &Step) -> Option<usize> {
        self.settings_of(step).ok().and_then(|s| self.0.releases_kept(s))
    }

    fn cuts_over(&self, step: &Step) -> bool {
        self.settings_of(step).is_ok_and(|s| self.0.cuts_over(s))
    }

    fn retires_old(&self, step: &Step) -> Option<bool> {
        self.settings_of(step).ok().and_then(|s| self.0.retires_old(s))
    }

    fn moves_work_before_cutover(&self, step: &Step) -> bool {
        self.settings_of(step).is_ok_and(|s| self.0.moves_work_before_cutover(s))
    }

    fn commits(&self, step: &Step) -> bool {
        self.settings_of(step).is_ok_and(|s| self.0.commits(s))
    }
}

impl Kinds {
    /// Register a kind with typed settings.
    pub fn register_typed<K: TypedKind>(&mut self, kind: K) {
        self.register(Arc::new(Typed(kind)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Runtime, VarInputs, load::MemoryReader};
    use crate::schema::{FieldSpec, ValueType};

    /// `copy`: a kind whose settings are a resolved path and a count that must be odd.
    struct Copy;

    #[derive(Debug, PartialEq)]
    struct CopySettings {
        from: PathBuf,
        times: i64,
    }

    static SPEC: KindSpec = KindSpec {
        name: "copy",
        summary: "test kind",
        fields: &[
            FieldSpec::new("from", ValueType::Path, "a path").required(),
            FieldSpec::new("times", ValueType::Int, "odd").default("1"),
        ],
        effect: Effect::ReadOnly,
        undo: "nothing",
    };

    #[async_trait]
    impl TypedKind for Copy {
        type Settings = CopySettings;

        fn spec(&self) -> &'static KindSpec {
            &SPEC
        }

        fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<CopySettings, Diagnostics> {
            let times = ctx.int("times").unwrap_or(1);
            if times % 2 == 0 {
                let mut diags = Diagnostics::new();
                diags.push(Diagnostic::error(Code::BadInt, "even").at(ctx.span("times"), "even").help("make it odd"));
                return Err(diags);
            }
            Ok(CopySettings { from: ctx.required_path("from")?, times })
        }

        async fn preview(&self, s: &CopySettings, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
            Ok(Preview { checks: vec![format!("{} x{}", s.from.display(), s.times)], ..Preview::default() })
        }

        async fn run(&self, _s: &CopySettings, _ctx: &StepCtx) -> Result<(), StepError> {
            Ok(())
        }

        async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
            Ok(())
        }
    }

    fn read(body: &str) -> plan::PlanRead {
        let mut kinds = Kinds::new();
        kinds.register_typed(Copy);
        let text = format!("plan \"t\"\nstep \"c\" kind=\"copy\" {{\n{body}\n}}\n");
        let reader = MemoryReader::new().with("/plans/p.kdl", text);
        plan::from_sources(
            Path::new("/plans/p.kdl"),
            Path::new("/plans"),
            &reader,
            &VarInputs::default(),
            &Runtime::sample(),
            &kinds,
        )
    }

    #[test]
    fn settings_are_built_at_validation_with_paths_made_absolute() {
        let read = read("from \"data/x\"\ntimes 3");
        let plan = read.result.unwrap();
        let settings = plan.steps[0].settings.get::<CopySettings>().unwrap();
        assert_eq!(settings, &CopySettings { from: PathBuf::from("/plans/data/x"), times: 3 });
        // Settings of another type are not there.
        assert!(plan.steps[0].settings.get::<String>().is_none());
    }

    #[test]
    fn a_problem_found_building_settings_is_a_diagnostic_at_the_field() {
        let diags = read("from \"x\"\ntimes 2").result.unwrap_err();
        let d = diags.iter().next().unwrap();
        assert_eq!((d.code, d.message.as_str(), d.help.as_deref()), (Code::BadInt, "even", Some("make it odd")));
        assert!(d.span.is_some());
    }

    #[tokio::test]
    async fn a_step_without_settings_is_refused_not_guessed() {
        let plan = read("from \"x\"").result.unwrap();
        let mut step = plan.steps[0].clone();
        let ctx = PreviewCtx {
            plan: Arc::new(plan),
            target: Runtime::sample_target(&[]),
            host: Arc::new(crate::host::LocalHost::new()),
            state_dir: PathBuf::from("/tmp"),
        };
        let kind = Typed(Copy);
        assert_eq!(kind.preview(&step, &ctx).await.unwrap().checks, ["/plans/x x1"]);
        step.settings = StepSettings::default();
        let err = kind.preview(&step, &ctx).await.unwrap_err();
        assert!(err.to_string().contains("step `c` has no copy settings"), "{err}");
    }
}
