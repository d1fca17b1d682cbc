//! The `maintenance` kind: turn a `proxy-switch` site's maintenance page on (or off) as a step of the plan, for
//! the rare change that cannot be made with zero downtime: a step that needs it goes after a `maintenance` step
//! with `state "on"`, and a `maintenance` step with `state "off"` after that. Its undo puts the flag back as it
//! was, so a failed deploy never leaves visitors on the page nor takes it away from under an operator who turned
//! it on by hand. See [`crate::proxy::maintenance`] for how the site serves it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, to_facts};
use crate::proxy::{self, maintenance};

pub struct Maintenance;

static SPEC: KindSpec = KindSpec {
    name: "maintenance",
    summary: "Serve a proxy-switch site's maintenance page (503, Retry-After) instead of the app, or the app again.",
    fields: &[
        FieldSpec::new(
            "proxy-switch",
            ValueType::SettingsRef(&["proxy-switch"]),
            "The proxy-switch step whose site serves the page (its `maintenance-page`, `root` and `confirm`); this \
             step may run before it.",
        )
        .required(),
        FieldSpec::new("state", ValueType::Enum(&["on", "off"]), "`on`: the page; `off`: the app.").default("on"),
    ],
    effect: Effect::Reversible,
    undo: "Puts the maintenance flag back as it was before the step: removed if it was off, written if it was on.",
};

/// A maintenance step's settings.
#[derive(Debug)]
pub struct Settings {
    proxy_switch: String,
    on: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    /// The flag file (`<root>/maintenance/on`) and whether it existed before the step.
    flag: PathBuf,
    was_on: bool,
}

#[async_trait]
impl TypedKind for Maintenance {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings { proxy_switch: ctx.required("proxy-switch")?.to_owned(), on: ctx.str("state") != Some("off") })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let root = &proxy::switch_settings(&ctx.plan, &s.proxy_switch)?.nginx.root;
        let flag = maintenance::flag(root);
        let was_on = ctx.host.exists(&flag).await?;
        let (write, remove) = (
            PlannedAction::Write { path: flag.clone(), content: "on\n".into(), mode: 0o644 },
            PlannedAction::Remove { path: flag.clone() },
        );
        let mut preview = Preview::default();
        if s.on {
            preview.actions.push(PlannedAction::Write {
                path: maintenance::page(root),
                content: "(the maintenance page)".into(),
                mode: 0o644,
            });
            preview.actions.push(write.clone());
            preview.checks.push("visitors get the maintenance page with 503 and Retry-After".into());
        } else {
            preview.actions.push(remove.clone());
            preview.checks.push("visitors get the app again".into());
        }
        if was_on != s.on {
            preview.undo.push(if was_on { write } else { remove });
        }
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let switch = proxy::switch_settings(&ctx.plan, &s.proxy_switch)?;
        // The flag is a file on the switch's host: this step acts on its own host, so they must be one.
        let host_of = |name: &str| ctx.plan.step_by_name(name).and_then(|step| step.host.clone());
        let (own, theirs) = (host_of(&ctx.step), host_of(&s.proxy_switch));
        if own != theirs {
            let on = |h: Option<String>| h.map_or_else(|| "this machine".to_owned(), |h| format!("host {h}"));
            return Err(StepError::fatal(format!(
                "this step runs on {} and `{}` on {}: give it the same `host=` (or `role=`), so the page is turned \
                 on where the site is served",
                on(own),
                s.proxy_switch,
                on(theirs)
            )));
        }
        let flag = maintenance::flag(&switch.nginx.root);
        let was_on = maintenance::is_on(ctx.host.as_ref(), &switch.nginx).await?;
        ctx.record_undo(to_facts(&Facts { flag, was_on })).await?;
        maintenance::switch(switch, ctx, s.on).await
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("maintenance", facts)?;
        if facts.was_on {
            ctx.host.write_file(&facts.flag, b"on\n", 0o644).await?;
        } else {
            ctx.host.remove_all(&facts.flag).await?;
        }
        Ok(())
    }
}
