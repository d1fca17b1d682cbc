//! The `symlink` kind: repoint a link (`<root>/current`) atomically, remembering where it pointed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};

use crate::common::{from_facts, req_path, to_facts};

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

#[async_trait]
impl StepKind for Symlink {
    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    async fn preview(&self, step: &Step, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let link = ctx.resolve(&req_path(step, "link")?);
        let target = ctx.resolve(&req_path(step, "target")?);
        let previous = ctx.host.read_link(&link).await?;
        let undo = match previous {
            Some(prev) => PlannedAction::Link { link: link.clone(), target: prev },
            None => PlannedAction::Remove { path: link.clone() },
        };
        Ok(Preview { actions: vec![PlannedAction::Link { link, target }], checks: vec![], undo: vec![undo] })
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        let link = ctx.resolve(&req_path(step, "link")?);
        let target = ctx.resolve(&req_path(step, "target")?);
        let previous = ctx.host.read_link(&link).await?;
        let facts = Facts { link: link.clone(), previous };
        ctx.record_undo(to_facts(&facts)).await?;
        ctx.host.swap_symlink(&link, &target).await?;
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
