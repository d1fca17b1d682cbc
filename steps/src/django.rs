//! The `django` kind: any `manage.py` command in the new release (collectstatic, check --deploy, createcachetable).

use async_trait::async_trait;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};

use crate::common::{from_facts, to_facts};
use crate::manage::{ENV, ENV_FILE, Manage, PYTHON, ROOT, SETTINGS};

pub struct Django;

static SPEC: KindSpec = KindSpec {
    name: "django",
    summary: "Run a manage.py command in the new release with the plan's env file and settings.",
    fields: &[
        FieldSpec::new(
            "command",
            ValueType::Strings,
            "The manage.py arguments, one word each: `command \"collectstatic\" \"--noinput\"`.",
        )
        .required(),
        ROOT,
        PYTHON,
        SETTINGS,
        ENV_FILE,
        ENV,
        FieldSpec::new(
            "undo",
            ValueType::Strings,
            "manage.py arguments that undo the command; without it the command is not undone (forward-only).",
        ),
    ],
    effect: Effect::ForwardOnly,
    undo: "Runs the `undo` manage.py command if the step has one; otherwise nothing (what a command does inside the \
           release directory goes away with the release).",
};

/// What the undo runs: the same `manage.py` (env file read again, not recorded) with the `undo` arguments.
#[derive(serde::Serialize, serde::Deserialize)]
struct Facts {
    manage: Manage,
    undo: Vec<String>,
}

#[async_trait]
impl StepKind for Django {
    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn effect(&self, step: &Step) -> Effect {
        if step.fields.strings("undo").is_empty() { Effect::ForwardOnly } else { Effect::Reversible }
    }

    async fn preflight(
        &self,
        step: &Step,
        ctx: &zdd_engine::preflight::PreflightCtx,
    ) -> Vec<zdd_engine::preflight::Finding> {
        crate::preflight::django_step(step, ctx).await
    }

    async fn preview(&self, step: &Step, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let m = Manage::describe(step, &ctx.target, |p| ctx.resolve(p))?;
        let mut preview = Preview::default();
        preview.actions.extend(m.env_file_note());
        preview.actions.push(PlannedAction::Run { command: m.command(&step.fields.strings("command")).display() });
        let undo = step.fields.strings("undo");
        if !undo.is_empty() {
            preview.undo.push(PlannedAction::Run { command: m.command(&undo).display() });
        }
        Ok(preview)
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        let m = Manage::load(step, ctx).await?;
        let undo = step.fields.strings("undo");
        if !undo.is_empty() {
            ctx.record_undo(to_facts(&Facts { manage: m.clone(), undo })).await?;
        }
        ctx.exec_ok(&m.command(&step.fields.strings("command"))).await?;
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("django", facts)?;
        let mut m = facts.manage;
        if !ctx.host.exists(&m.release_dir).await? {
            return Ok(()); // The release is gone already: nothing of it to undo.
        }
        m.read_env_file(ctx).await?;
        ctx.exec_ok(&m.command(&facts.undo)).await?;
        Ok(())
    }
}
