//! `zdd plan`'s view of each migration: before the release exists, the migrations are those of the step's
//! `source`, the checkout the release is made from. With a release live, the inspection script runs there with
//! the live release's Python and the env file (Django is set up; nothing is written: `migrate --plan` and
//! `sqlmigrate`'s SQL only), and the gate and the phases judge what it finds, as the run will. When that cannot
//! work (no source, nothing live, the live Python cannot import the new code), the preview says so and why.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zdd_engine::kind::{PlannedAction, PreviewCtx};
use zdd_engine::redact::Redactor;

use super::failure::PythonError;
use super::gate::{Dialect, Gate};
use super::inspect::{self, Inspection};
use super::phase::{self, Phase};
use super::{Settings, StepPhase};
use crate::envfile;
use crate::manage::{Manage, release_dir};

/// How long the preview's inspection may take before it is stopped (a database that does not answer).
const INSPECT_WITHIN: Duration = Duration::from_secs(30);

/// One note per unapplied migration (its phase and the verdict the run would give), or one saying why not.
pub(super) async fn phases(s: &Settings, source: &Path, ctx: &PreviewCtx) -> Vec<PlannedAction> {
    let note = |text: String| vec![PlannedAction::Note { text }];
    let Some(live) = ctx.target.live_release.as_deref().filter(|l| *l != ctx.target.release) else {
        return note("each migration: nothing is live, so every one applies (first deploy)".into());
    };
    let found = match inspect_source(s, source, live, ctx).await {
        Ok(found) => found,
        Err(why) => return note(format!("each migration's phase: not previewed ({why}); the run shows them")),
    };
    if found.migrations.is_empty() {
        return note(format!(
            "each migration: none unapplied in {} (as far as the database says now)",
            source.display()
        ));
    }
    let Some(dialect) = s.database.or_else(|| Dialect::from_vendor(&found.vendor)) else {
        return note(format!("each migration's phase: not previewed (the gate does not know `{}`)", found.vendor));
    };
    let mut gate = Gate::new(dialect, &found.schema).existing_tables(found.tables.as_deref());
    for pending in &found.migrations {
        gate.migration(pending);
    }
    let findings = gate.findings();
    let phases = phase::classify(&found.migrations, &findings);
    let mut notes = Vec::new();
    for placed in &phases.placed {
        let refused: Vec<&str> = findings
            .iter()
            .filter(|f| f.migration == placed.migration && !s.allow.contains(&f.migration))
            .map(|f| f.rule.code())
            .collect();
        let verdict = match (s.phase, placed.phase) {
            (StepPhase::Pre, Phase::Post) => "held for the post step".to_owned(),
            (_, _) if refused.is_empty() => "applied".to_owned(),
            (StepPhase::All, Phase::Post) => {
                format!("refused ({}): a `phase \"post\"` step after drain-stop could apply it", refused.join(", "))
            }
            (_, _) => format!("refused ({})", refused.join(", ")),
        };
        notes.push(PlannedAction::Note {
            text: format!("migration {}: {} ({}): {verdict}", placed.migration, placed.phase.word(), placed.why),
        });
    }
    for o in &phases.out_of_order {
        notes.push(PlannedAction::Note {
            text: format!("refused: {} (pre-deploy) depends on {} (post-deploy)", o.pre, o.post),
        });
    }
    notes
}

/// The inspection, run in `source` with the live release's Python.
async fn inspect_source(s: &Settings, source: &Path, live: &str, ctx: &PreviewCtx) -> Result<Inspection, String> {
    let mut m = Manage::for_release(&s.manage, live);
    if !ctx.host.exists(&m.python).await.unwrap_or(false) {
        return Err(format!("the live release has no Python at {}", m.python.display()));
    }
    let redactor = Redactor::new();
    if let Some(file) = &m.env_file {
        m.env = envfile::load(ctx.host.as_ref(), file, Some(&redactor)).await.map_err(|e| e.to_string())?;
    }
    m.release_dir = source.to_path_buf();
    let live_dir = release_dir(&s.manage.root, live).to_string_lossy().into_owned();
    let cmd = m.python_script(inspect::SCRIPT).arg(s.alias.clone()).arg(live_dir);
    // Stopped through its token (signalled and reaped by the host), never by dropping the running future.
    let cancel = CancellationToken::new();
    let timer = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(INSPECT_WITHIN).await;
            cancel.cancel();
        })
    };
    let out = ctx.host.run(&cmd, &cancel, None).await;
    timer.abort();
    let out = out.map_err(|e| {
        if cancel.is_cancelled() {
            format!("the inspection took longer than {}s and was stopped", INSPECT_WITHIN.as_secs())
        } else {
            e.to_string()
        }
    })?;
    if !out.success() {
        let stderr = out.stderr_str();
        let why = PythonError::last_in(&stderr).map_or_else(|| "it failed".to_owned(), |e| e.name_and_headline());
        return Err(redactor.redact(&format!("the live release's Python could not inspect the source: {why}")));
    }
    inspect::parse(&out.stdout_str())
}
