//! Step kinds for tests of plan reading, the graph and the preview, written here so those tests do not depend
//! on the real kinds (written concurrently in `zdd-steps`). Included by path from unit tests, integration tests
//! and the plan-reading benchmark.

use std::sync::Arc;

use async_trait::async_trait;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::kind::{Kinds, PlannedAction, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, PropSpec, ValueType};

/// `fake`: writes a file and runs a command; reversible.
pub(crate) struct Fake;

const GET_PROPS: &[PropSpec] = &[PropSpec {
    name: "status",
    ty: ValueType::Int,
    required: false,
    default: Some("200"),
    doc: "Expected HTTP status",
}];

static FAKE: KindSpec = KindSpec {
    name: "fake",
    summary: "Writes a file and runs a command (test kind)",
    fields: &[
        FieldSpec::new("path", ValueType::Path, "File to write").required(),
        FieldSpec::new("content", ValueType::String, "What to write").default("hello {{release}}\n"),
        FieldSpec::new("port", ValueType::Port, "A port"),
        FieldSpec::new("url", ValueType::Url, "A health URL"),
        FieldSpec::new("wait", ValueType::Duration, "How long to wait").default("5s"),
        FieldSpec::new("mode", ValueType::Enum(&["fast", "slow"]), "Speed").default("fast"),
        FieldSpec::new("server-name", ValueType::ConfigWord, "Nginx server_name"),
        FieldSpec::new("cmd", ValueType::Strings, "Command to run"),
        FieldSpec::new("workers", ValueType::Int, "Worker count"),
        FieldSpec::new("enabled", ValueType::Bool, "Switch"),
        FieldSpec::new("get", ValueType::String, "A request path to check").repeated().props(GET_PROPS),
    ],
    effect: Effect::Reversible,
    undo: "restores the file's previous content",
};

#[async_trait]
impl StepKind for Fake {
    fn spec(&self) -> &'static KindSpec {
        &FAKE
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        if step.fields.str("content") == Some("forbidden") {
            let span = step.fields.all("content").first().map_or(step.span, |f| f.span);
            diags.push(
                Diagnostic::error(Code::BadEnum, "content is forbidden").at(span, "here").help("write something else"),
            );
        }
    }

    async fn preview(&self, step: &Step, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let path = ctx.plan.base_dir.join(step.fields.path("path").unwrap_or_default());
        let mut actions = vec![PlannedAction::Write {
            path: path.clone(),
            content: step.fields.str("content").unwrap_or_default().to_owned(),
            mode: 0o644,
        }];
        let cmd = step.fields.strings("cmd");
        if !cmd.is_empty() {
            actions.push(PlannedAction::Run { command: cmd.join(" ") });
        }
        Ok(Preview {
            actions,
            checks: step.fields.all("get").iter().map(|g| format!("GET {:?}", g.value)).collect(),
            undo: vec![PlannedAction::Note { text: format!("restore {}", path.display()) }],
        })
    }

    async fn run(&self, _step: &Step, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

/// `probe`: read-only check of a URL.
pub(crate) struct Probe;

static PROBE: KindSpec = KindSpec {
    name: "probe",
    summary: "Checks a URL (test kind)",
    fields: &[FieldSpec::new("url", ValueType::Url, "What to check").required()],
    effect: Effect::ReadOnly,
    undo: "nothing to undo",
};

#[async_trait]
impl StepKind for Probe {
    fn spec(&self) -> &'static KindSpec {
        &PROBE
    }

    async fn preview(&self, step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview {
            checks: vec![format!("GET {} expect 200", step.fields.str("url").unwrap_or_default())],
            ..Preview::default()
        })
    }

    async fn run(&self, _step: &Step, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

/// `schema`: a forward-only change (like a migration).
pub(crate) struct Schema;

static SCHEMA: KindSpec = KindSpec {
    name: "schema",
    summary: "Changes a schema (test kind)",
    fields: &[FieldSpec::new("sql", ValueType::String, "The change").required()],
    effect: Effect::ForwardOnly,
    undo: "not undone: the schema stays backward compatible",
};

#[async_trait]
impl StepKind for Schema {
    fn spec(&self) -> &'static KindSpec {
        &SCHEMA
    }

    async fn preview(&self, step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview {
            actions: vec![PlannedAction::Run {
                command: format!("psql -c {:?}", step.fields.str("sql").unwrap_or_default()),
            }],
            ..Preview::default()
        })
    }

    async fn run(&self, _step: &Step, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

/// The test registry: `fake`, `probe`, `schema`.
pub(crate) fn kinds() -> Kinds {
    let mut k = Kinds::new();
    k.register(Arc::new(Fake));
    k.register(Arc::new(Probe));
    k.register(Arc::new(Schema));
    k
}

/// What the [`Logged`] kinds did, in order: `run NAME`, `undo NAME`.
pub(crate) type Log = Arc<std::sync::Mutex<Vec<String>>>;

const LOGGED_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("fails", ValueType::Bool, "Fail the step after recording its undo"),
    FieldSpec::new("sleep", ValueType::Duration, "How long the step takes"),
];

static WORK: KindSpec = KindSpec {
    name: "work",
    summary: "Does reversible work, logged (test kind)",
    fields: LOGGED_FIELDS,
    effect: Effect::Reversible,
    undo: "logged",
};

static CUTOVER: KindSpec = KindSpec {
    name: "cutover",
    summary: "Moves the live traffic, logged (test kind)",
    fields: LOGGED_FIELDS,
    effect: Effect::Reversible,
    undo: "logged",
};

static CONTRACT: KindSpec = KindSpec {
    name: "contract",
    summary: "A commit point, like a post-deploy migration, logged (test kind)",
    fields: LOGGED_FIELDS,
    effect: Effect::Reversible,
    undo: "logged",
};

/// `work`, `cutover` (it [`cuts_over`](StepKind::cuts_over)) and `contract` (it
/// [`commits`](StepKind::commits)): each records undo facts, then takes `sleep`, then fails if `fails`; runs and
/// undos go to the log.
pub(crate) struct Logged {
    spec: &'static KindSpec,
    log: Log,
}

#[async_trait]
impl StepKind for Logged {
    fn spec(&self) -> &'static KindSpec {
        self.spec
    }

    fn cuts_over(&self, _step: &Step) -> bool {
        self.spec.name == "cutover"
    }

    /// The fake switch stands for the drain that stops the old instance too: a commit point after it may start.
    fn retires_old(&self, _step: &Step) -> Option<bool> {
        (self.spec.name == "cutover").then_some(true)
    }

    fn commits(&self, _step: &Step) -> bool {
        self.spec.name == "contract"
    }

    async fn preview(&self, _step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview::default())
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        ctx.record_undo(serde_json::json!({ "step": step.name })).await?;
        self.log.lock().unwrap().push(format!("run {}", step.name));
        tokio::select! {
            () = tokio::time::sleep(step.fields.duration("sleep").unwrap_or_default()) => {}
            () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        }
        if step.fields.bool("fails") == Some(true) {
            return Err(StepError::failed(format!("{} broke", step.name)));
        }
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        self.log.lock().unwrap().push(format!("undo {}", ctx.step));
        Ok(())
    }
}

/// The test registry ([`kinds`]) with the [`Logged`] kinds, which write to `log`.
pub(crate) fn kinds_with_commit(log: &Log) -> Kinds {
    let mut k = kinds();
    for spec in [&WORK, &CUTOVER, &CONTRACT] {
        k.register(Arc::new(Logged { spec, log: log.clone() }));
    }
    k
}
