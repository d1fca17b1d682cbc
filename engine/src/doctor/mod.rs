//! `zdd doctor`: every check zdd knows for a plan, on the machines it would run on, now, as one line each (ok,
//! warning or problem, a fix with each warning and problem). It reads only, like `zdd plan`.
//!
//! What it checks, in order:
//! - the state directory ([`state`]): safe and readable, no stale lock, no interrupted run waiting for
//!   `zdd recover`;
//! - each SSH host of the plan: reached (the steps of one that is not are not checked);
//! - each step, through its kind's [`StepKind::doctor`](crate::kind::StepKind::doctor): by default its preflight
//!   (tools, files, permissions, versions), to which kinds add their own (the live instance's process, the unit
//!   directory, the disk space a new release needs: [`disk`]).
//!
//! Each check is an [`Event::Check`]; the reporters print them, and [`Event::DoctorFinished`] closes the list.

pub mod disk;
pub mod state;

use std::path::Path;

use crate::diag::{Code, Severity};
use crate::events::{Event, EventSink};
use crate::host::HostSet;
use crate::kind::{Kinds, PreviewCtx};
use crate::plan::Plan;
use crate::preflight::{Finding, PreflightCtx, provisions};
use crate::redact::Redactor;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckOutcome {
    Ok,
    /// Worth knowing; a run would go on.
    Warning,
    /// A run would fail, or would act on a state that is not what it believes.
    Problem,
}

impl CheckOutcome {
    /// The word a reporter shows.
    pub fn word(self) -> &'static str {
        match self {
            CheckOutcome::Ok => "ok",
            CheckOutcome::Warning => "warning",
            CheckOutcome::Problem => "problem",
        }
    }
}

/// One line of `zdd doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, in a word or two (`lock`, `tools`, `disk space`).
    pub check: String,
    pub outcome: CheckOutcome,
    /// What was found, naming the path, program or process.
    pub detail: String,
    /// How to fix it (warnings and problems).
    pub fix: Option<String>,
    /// The code `zdd explain` explains (warnings and problems).
    pub code: Option<Code>,
}

impl Check {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { check: check.into(), outcome: CheckOutcome::Ok, detail: detail.into(), fix: None, code: None }
    }

    pub fn problem(code: Code, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            outcome: CheckOutcome::Problem,
            detail: detail.into(),
            fix: Some(fix.into()),
            code: Some(code),
        }
    }

    pub fn warning(code: Code, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { outcome: CheckOutcome::Warning, ..Self::problem(code, check, detail, fix) }
    }

    /// A preflight finding as a check: an error is a problem, a warning a warning; its evidence follows the
    /// message.
    pub fn from_finding(finding: Finding) -> Self {
        let mut detail = finding.message;
        for line in &finding.evidence {
            detail.push_str("; ");
            detail.push_str(line);
        }
        let outcome = match finding.severity {
            Severity::Error => CheckOutcome::Problem,
            Severity::Warning => CheckOutcome::Warning,
        };
        Self {
            check: label(finding.code).to_owned(),
            outcome,
            detail,
            fix: Some(finding.help),
            code: Some(finding.code),
        }
    }
}

/// The check a preflight code belongs to.
fn label(code: Code) -> &'static str {
    match code {
        Code::PreflightProgram | Code::PreflightDocker | Code::PreflightNoUv => "tools",
        Code::PreflightNginxUser | Code::PreflightUnreachable | Code::PreflightUnreadable => "permissions",
        Code::PreflightNoGunicorn => "versions",
        _ => "files",
    }
}

/// The default of a kind's doctor: its preflight's findings as checks, or one ok line when it found nothing.
pub fn from_findings(findings: Vec<Finding>) -> Vec<Check> {
    if findings.is_empty() {
        return vec![Check::ok("preflight", "what it needs is there")];
    }
    findings.into_iter().map(Check::from_finding).collect()
}

/// How many checks came out each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub ok: usize,
    pub warnings: usize,
    pub problems: usize,
}

impl Tally {
    fn add(&mut self, outcome: CheckOutcome) {
        match outcome {
            CheckOutcome::Ok => self.ok += 1,
            CheckOutcome::Warning => self.warnings += 1,
            CheckOutcome::Problem => self.problems += 1,
        }
    }
}

/// What the doctor examines.
pub struct DoctorInput<'a> {
    pub plan: &'a Plan,
    /// The plan file as given on the command line: fixes name it (`zdd recover plans/prod.kdl`).
    pub plan_file: &'a Path,
    pub kinds: &'a Kinds,
    /// The read-only context the run would have (its deploy target, the state directory).
    pub ctx: &'a PreviewCtx,
    /// Each step's own host, for reading only.
    pub hosts: &'a HostSet,
    /// The plan's SSH hosts that could not be reached, and why: their steps are not checked.
    pub unreachable: &'a [(String, String)],
    pub events: &'a EventSink,
}

/// A line per SSH host of the plan: reached, or not (and then its steps are not checked).
fn host_checks(plan: &Plan, unreachable: &[(String, String)]) -> Vec<Check> {
    let mut checks = Vec::new();
    for host in plan.fleet.destinations() {
        let check = format!("host {host}");
        let Some((_, why)) = unreachable.iter().find(|(h, _)| h == host) else {
            checks.push(Check::ok(check, "reached over SSH"));
            continue;
        };
        let steps: Vec<&str> =
            plan.steps.iter().filter(|s| s.host.as_deref() == Some(host)).map(|s| s.name.as_str()).collect();
        checks.push(Check::problem(
            Code::DoctorUnreachable,
            check,
            format!("cannot be reached, so its steps ({}) were not checked: {why}", steps.join(", ")),
            "check that this user can `ssh` there: its address and port, the key, known_hosts, the plan's `ssh-config`",
        ));
    }
    checks
}

/// Run every check, each emitted as an [`Event::Check`] as soon as it is known, then
/// [`Event::DoctorFinished`]. Reads only.
pub async fn run(input: DoctorInput<'_>) -> Tally {
    let redactor = Redactor::new();
    for secret in input.plan.secrets() {
        redactor.add(secret);
    }
    let mut tally = Tally::default();
    let mut emit = |prefix: &str, check: Check| {
        tally.add(check.outcome);
        let name = if prefix.is_empty() { check.check } else { format!("{prefix}: {}", check.check) };
        input.events.emit(Event::Check {
            check: name,
            outcome: check.outcome,
            detail: redactor.redact(&check.detail),
            fix: check.fix.map(|f| redactor.redact(&f)),
            code: check.code,
        });
    };
    for check in state::checks(&input.ctx.state_dir, input.plan_file) {
        emit("", check);
    }
    for check in host_checks(input.plan, input.unreachable) {
        emit("", check);
    }
    let mut ctx = PreflightCtx { preview: input.ctx.clone(), provided: provisions(input.plan, input.kinds, input.ctx) };
    // A problem several steps share (one missing program) is one line naming them all.
    let mut found: Vec<(Vec<String>, Check)> = Vec::new();
    for step in &input.plan.steps {
        let Some(kind) = input.kinds.get(&step.kind) else { continue };
        if input.unreachable.iter().any(|(host, _)| step.host.as_deref() == Some(host.as_str())) {
            continue;
        }
        ctx.preview.host = input.hosts.get(step.host.as_deref());
        for check in kind.doctor(step, &ctx).await {
            match found.iter_mut().find(|(_, seen)| *seen == check) {
                Some((steps, _)) => steps.push(step.name.clone()),
                None => found.push((vec![step.name.clone()], check)),
            }
        }
    }
    for (steps, check) in found {
        emit(&format!("step {}", steps.join(", ")), check);
    }
    input.events.emit(Event::DoctorFinished { ok: tally.ok, warnings: tally.warnings, problems: tally.problems });
    tally
}
