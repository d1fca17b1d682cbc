//! The `django` kind: any `manage.py` command in the new release (collectstatic, check --deploy, createcachetable).

use async_trait::async_trait;
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, to_facts};
use crate::manage::{ENV, ENV_FILE, Manage, ManageSettings, PYTHON, ROOT, SETTINGS};

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

/// A django step's settings.
#[derive(Debug)]
pub struct Settings {
    manage: ManageSettings,
    command: Vec<String>,
    undo: Vec<String>,
}

#[async_trait]
impl TypedKind for Django {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            manage: ManageSettings::from_fields(ctx)?,
            command: ctx.strings("command"),
            undo: ctx.strings("undo"),
        })
    }

    fn effect(&self, s: &Settings) -> Effect {
        if s.undo.is_empty() { Effect::ForwardOnly } else { Effect::Reversible }
    }

    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        crate::preflight::django_step(s.manage.env_file.as_deref(), s.manage.settings.as_deref(), ctx).await
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let m = Manage::describe(&s.manage, &ctx.target);
        let mut preview = Preview::default();
        preview.actions.extend(m.env_file_note());
        preview.actions.push(PlannedAction::Run { command: m.command(&s.command).display() });
        if !s.undo.is_empty() {
            preview.undo.push(PlannedAction::Run { command: m.command(&s.undo).display() });
        }
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let m = Manage::load(&s.manage, ctx).await?;
        if !s.undo.is_empty() {
            ctx.record_undo(to_facts(&Facts { manage: m.clone(), undo: s.undo.clone() })).await?;
        }
        ctx.exec_ok(&m.command(&s.command)).await?;
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
