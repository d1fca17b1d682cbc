//! The `symlink` kind: repoint a link (`<root>/current`) atomically, remembering where it pointed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, to_facts};

pub struct Symlink;

static SPEC: KindSpec = KindSpec {
    name: "symlink",
    summary: "Point a symlink at a new target atomically (a new link renamed over the old one).",
    fields: &[
        FieldSpec::new("link", ValueType::Path, "The link to repoint, e.g. `{{root}}/current`.").required(),
        FieldSpec::new("target", ValueType::Path, "Where it should point, e.g. `{{root}}/releases/{{release}}`.")
            .required(),
    ],
    effect: Effect::Reversible,
    undo: "Points the link back at its previous target (or removes it if there was none).",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    link: PathBuf,
    previous: Option<PathBuf>,
}

/// A symlink step's settings: both paths absolute.
#[derive(Debug)]
pub struct Settings {
    link: PathBuf,
    target: PathBuf,
}

#[async_trait]
impl TypedKind for Symlink {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings { link: ctx.required_path("link")?, target: ctx.required_path("target")? })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let (link, target) = (s.link.clone(), s.target.clone());
        let previous = ctx.host.read_link(&link).await?;
        let undo = match previous {
            Some(prev) => PlannedAction::Link { link: link.clone(), target: prev },
            None => PlannedAction::Remove { path: link.clone() },
        };
        Ok(Preview { actions: vec![PlannedAction::Link { link, target }], checks: vec![], undo: vec![undo] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let (link, target) = (&s.link, &s.target);
        let previous = ctx.host.read_link(link).await?;
        let facts = Facts { link: link.clone(), previous };
        ctx.record_undo(to_facts(&facts)).await?;
        ctx.host.swap_symlink(link, target).await?;
        ctx.message(format!("{} -> {}", link.display(), target.display()));
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("symlink", facts)?;
        match &facts.previous {
            Some(prev) => ctx.host.swap_symlink(&facts.link, prev).await?,
            None => ctx.host.remove_all(&facts.link).await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use zdd_engine::plan::Value;

    use super::*;

    #[test]
    fn relative_paths_are_made_absolute_against_the_plan_directory_at_validation() {
        let fields = [("link", Value::Path("run/current".into())), ("target", Value::Path("/srv/r1".into()))];
        let step = crate::testing::step_in(std::path::Path::new("/srv/plans"), "current", "symlink", &fields);
        let settings = step.settings.get::<Settings>().expect("settings built");
        assert_eq!(settings.link, PathBuf::from("/srv/plans/run/current"));
        assert_eq!(settings.target, PathBuf::from("/srv/r1"));
    }
}
