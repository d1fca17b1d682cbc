//! `zdd plan`: the dry-run preview. Built from the validated plan, its graph's waves and each kind's
//! [`StepKind::preview`](crate::kind::StepKind::preview): resolved variables (secrets shown as `***`, with where
//! each value came from), steps wave by wave with their commands, every file they would write as a unified diff
//! against the file on disk now, links, checks, and how each step would be undone; and first, what the run's
//! preflight finds on this machine now.
//!
//! It changes nothing: kinds' previews only read through the host, and so does the diffing here.

mod text;

use std::path::PathBuf;
use std::sync::Arc;

use similar::TextDiff;

use crate::host::{Host, HostSet};
use crate::kind::{DeployTarget, Kinds, PlannedAction, PreviewCtx};
use crate::plan::{Plan, VarOrigin};
use crate::redact::Redactor;
use crate::schema::Effect;

pub use text::render_text;

/// The whole preview, ready to print as text or JSON. Secrets are already masked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanPreview {
    pub plan: String,
    pub target: DeployTarget,
    pub state_dir: PathBuf,
    pub variables: Vec<PreviewVar>,
    /// What the run would check before its first step, as found now (see [`crate::preflight`]).
    pub preflight: crate::preflight::Report,
    /// Steps grouped by wave: the steps of a wave can run at the same time.
    pub waves: Vec<Vec<StepPreview>>,
    /// The derived rollback, in the order it would run (the plan graph's undo waves: a step is undone after
    /// every step that needs it).
    pub rollback: Vec<RollbackPreview>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PreviewVar {
    pub name: String,
    /// `***` for secrets.
    pub value: String,
    pub secret: bool,
    pub origin: VarOrigin,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepPreview {
    pub name: String,
    pub kind: String,
    /// The SSH destination the step runs on; absent for this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub description: Option<String>,
    pub needs: Vec<String>,
    pub timeout_ms: u128,
    pub attempts: u32,
    pub effect: Effect,
    pub actions: Vec<ActionPreview>,
    pub checks: Vec<String>,
    /// How a run of this step is undone (empty for read-only and forward-only steps).
    pub undo: Vec<PlannedAction>,
    /// Set when the kind could not preview this step (the rest of the preview is still shown).
    pub error: Option<String>,
}

/// One planned action; writes carry the diff against the file on disk now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionPreview {
    #[serde(flatten)]
    pub action: PlannedAction,
    /// For writes: `new`, `changed` or `unchanged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStatus>,
    /// For writes: the unified diff (empty when unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// For writes whose current file could not be read: why (the diff then shows the whole new content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    New,
    Changed,
    Unchanged,
    /// Something is there that could not be read (permissions, a directory): not claimed to be new.
    Unreadable,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackPreview {
    pub step: String,
    pub effect: Effect,
    /// The undo wave, from 1: the undos of one wave run at the same time, after those of earlier waves.
    pub wave: usize,
    pub undo: Vec<PlannedAction>,
}

/// What the preview is built from.
pub struct PreviewInput<'a> {
    pub plan: &'a Arc<Plan>,
    pub kinds: &'a Kinds,
    pub target: &'a DeployTarget,
    pub state_dir: &'a std::path::Path,
    /// Used for reads only (current file contents, link targets): each step's own host.
    pub hosts: HostSet,
}

/// Build the preview. Never writes: kinds' previews and the diffs only read through the host.
pub async fn build(input: PreviewInput<'_>) -> PlanPreview {
    let plan = input.plan;
    let redactor = Redactor::new();
    for s in plan.secrets() {
        redactor.add(s);
    }
    let ctx = PreviewCtx {
        plan: Arc::clone(plan),
        target: input.target.clone(),
        host: input.hosts.get(None),
        state_dir: input.state_dir.to_path_buf(),
    };

    let variables = plan
        .vars
        .iter()
        .map(|v| PreviewVar {
            name: v.name.clone(),
            value: if v.secret { "***".to_owned() } else { redactor.redact(&v.value) },
            secret: v.secret,
            origin: v.origin.clone(),
        })
        .collect();

    let mut preflight = crate::preflight::run(plan, input.kinds, &ctx, &input.hosts).await;
    for f in &mut preflight.findings {
        f.finding.message = redactor.redact(&f.finding.message);
        f.finding.evidence = f.finding.evidence.iter().map(|e| redactor.redact(e)).collect();
    }

    let mut waves = Vec::with_capacity(plan.graph.waves.len());
    for wave in &plan.graph.waves {
        let mut steps = Vec::with_capacity(wave.len());
        for id in wave {
            let ctx = PreviewCtx { host: input.hosts.get(plan.step(*id).host.as_deref()), ..ctx.clone() };
            steps.push(step_preview(plan, *id, input.kinds, &ctx, &redactor).await);
        }
        waves.push(steps);
    }

    let rollback = plan
        .graph
        .rollback(plan, input.kinds)
        .into_iter()
        .map(|entry| {
            let name = &plan.step(entry.step).name;
            let undo = waves.iter().flatten().find(|s| &s.name == name).map(|s| s.undo.clone()).unwrap_or_default();
            RollbackPreview { step: name.clone(), effect: entry.effect, wave: entry.wave + 1, undo }
        })
        .collect();

    PlanPreview {
        plan: plan.name.clone(),
        target: input.target.clone(),
        state_dir: input.state_dir.to_path_buf(),
        variables,
        preflight,
        waves,
        rollback,
    }
}

async fn step_preview(
    plan: &Plan,
    id: crate::plan::StepId,
    kinds: &Kinds,
    ctx: &PreviewCtx,
    redactor: &Redactor,
) -> StepPreview {
    let step = plan.step(id);
    let kind = kinds.get(&step.kind);
    let effect = kind.map_or(Effect::ReadOnly, |k| k.effect(step));
    let mut out = StepPreview {
        name: step.name.clone(),
        kind: step.kind.clone(),
        host: step.host.clone(),
        description: step.description.as_ref().map(|d| redactor.redact(d)),
        needs: step.needs.iter().map(|n| plan.step(*n).name.clone()).collect(),
        timeout_ms: step.policy.timeout.as_millis(),
        attempts: step.policy.retry.attempts,
        effect,
        actions: Vec::new(),
        checks: Vec::new(),
        undo: Vec::new(),
        error: None,
    };
    let Some(kind) = kind else {
        out.error = Some(format!("unknown kind `{}`", step.kind));
        return out;
    };
    match kind.preview(step, ctx).await {
        Ok(p) => {
            for action in p.actions {
                out.actions.push(action_preview(action, ctx.host.as_ref(), redactor).await);
            }
            out.checks = p.checks.iter().map(|c| redactor.redact(c)).collect();
            out.undo = p.undo.iter().map(|a| redact_action(a, redactor)).collect();
        }
        Err(e) => out.error = Some(redactor.redact(&e.to_string())),
    }
    out
}

/// Attach the diff to a write (against what is on disk now); mask secrets everywhere.
async fn action_preview(action: PlannedAction, host: &dyn Host, redactor: &Redactor) -> ActionPreview {
    match &action {
        PlannedAction::Write { path, content, .. } => {
            let mut error = None;
            let (status, diff) = match host.read_file(path).await {
                Err(e) => {
                    error = Some(redactor.redact(&e.to_string()));
                    (FileStatus::Unreadable, unified_diff("", content, path))
                }
                Ok(None) => (FileStatus::New, unified_diff("", content, path)),
                Ok(Some(bytes)) => {
                    let old = String::from_utf8_lossy(&bytes);
                    if old == content.as_str() {
                        (FileStatus::Unchanged, String::new())
                    } else {
                        (FileStatus::Changed, unified_diff(&old, content, path))
                    }
                }
            };
            ActionPreview {
                action: redact_action(&action, redactor),
                file: Some(status),
                diff: Some(redactor.redact(&diff)),
                error,
            }
        }
        _ => ActionPreview { action: redact_action(&action, redactor), file: None, diff: None, error: None },
    }
}

/// A unified diff of a file's content now and as it would be written.
pub fn unified_diff(old: &str, new: &str, path: &std::path::Path) -> String {
    let shown = path.display().to_string();
    let now = if old.is_empty() { "/dev/null".to_owned() } else { format!("{shown} (now)") };
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&now, &format!("{shown} (planned)"))
        .to_string()
}

fn redact_action(action: &PlannedAction, r: &Redactor) -> PlannedAction {
    match action {
        PlannedAction::Run { command } => PlannedAction::Run { command: r.redact(command) },
        PlannedAction::Write { path, content, mode } => {
            PlannedAction::Write { path: path.clone(), content: r.redact(content), mode: *mode }
        }
        PlannedAction::Http { description } => PlannedAction::Http { description: r.redact(description) },
        PlannedAction::Note { text } => PlannedAction::Note { text: r.redact(text) },
        other => other.clone(),
    }
}
