//! The preflight: what every step needs that can be known before any work, checked for all steps before the
//! first one starts (and shown by `zdd plan`). A run whose preflight finds an error changes nothing and lists
//! every problem at once, each with its evidence and a fix.
//!
//! Each kind answers [`StepKind::preflight`](crate::kind::StepKind::preflight), reading only. What one step
//! creates another may need (the env file a `prepare` step writes, the nginx a `packages` step installs): kinds
//! declare it with [`StepKind::provides`](crate::kind::StepKind::provides), and a check of a thing some step
//! provides passes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::diag::{Code, Severity};
use crate::host::HostSet;
use crate::kind::{Kinds, PreviewCtx};
use crate::plan::Plan;

/// Something a step makes exist for the steps after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provision {
    /// A file or directory the step writes (an `exec` step's `creates`).
    Path(PathBuf),
    /// A package the step installs if it is missing (`packages`).
    Package(String),
}

/// What the plan's steps provide, and which step provides each.
#[derive(Debug, Clone, Default)]
pub struct Provisions {
    paths: BTreeMap<PathBuf, String>,
    packages: BTreeMap<String, String>,
}

impl Provisions {
    /// The step that creates `path`, if one does.
    pub fn path(&self, path: &Path) -> Option<&str> {
        self.paths.get(path).map(String::as_str)
    }

    /// The step that installs `package`, if one does.
    pub fn package(&self, package: &str) -> Option<&str> {
        self.packages.get(package).map(String::as_str)
    }

    pub fn add(&mut self, step: &str, provision: Provision) {
        match provision {
            Provision::Path(p) => self.paths.entry(p).or_insert_with(|| step.to_owned()),
            Provision::Package(p) => self.packages.entry(p).or_insert_with(|| step.to_owned()),
        };
    }
}

/// What a preflight check may use: the preview's read-only context and what the plan's steps provide.
#[derive(Clone)]
pub struct PreflightCtx {
    pub preview: PreviewCtx,
    pub provided: Provisions,
}

/// One problem a kind found before the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `error` stops the run; `warning` is shown and lets it go on.
    #[serde(serialize_with = "severity_name")]
    pub severity: Severity,
    /// Stable code, e.g. `zdd::preflight-unreachable`, documented in the troubleshooting chapter.
    pub code: Code,
    /// What is wrong, naming the path or program.
    pub message: String,
    /// What was seen: modes and owners, the config line, the command's answer.
    pub evidence: Vec<String>,
    /// How to fix it.
    pub help: String,
}

impl Finding {
    pub fn error(code: Code, message: impl Into<String>, help: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, message: message.into(), evidence: Vec::new(), help: help.into() }
    }

    pub fn warning(code: Code, message: impl Into<String>, help: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message, help) }
    }

    #[must_use]
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's serialize_with passes a reference")]
fn severity_name<S: serde::Serializer>(s: &Severity, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    })
}

/// A finding and the steps that reported it (several steps needing one env file report it once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepFinding {
    pub steps: Vec<String>,
    #[serde(flatten)]
    pub finding: Finding,
}

/// Every finding of a plan's preflight, in step order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub findings: Vec<StepFinding>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.finding.severity == Severity::Error)
    }

    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.finding.severity == Severity::Error).count()
    }

    /// The findings as text, each with its code, steps, evidence and fix (indented by `indent`).
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let level = match f.finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "{indent}{level}[{}] {} (step {})",
                f.finding.code,
                f.finding.message,
                f.steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            );
            for line in &f.finding.evidence {
                let _ = writeln!(out, "{indent}    {line}");
            }
            let _ = writeln!(out, "{indent}    help: {}", f.finding.help);
        }
        out
    }
}

/// What every step of `plan` provides.
pub fn provisions(plan: &Plan, kinds: &Kinds, ctx: &PreviewCtx) -> Provisions {
    let mut provided = Provisions::default();
    for step in &plan.steps {
        if let Some(kind) = kinds.get(&step.kind) {
            for p in kind.provides(step, ctx) {
                provided.add(&step.name, p);
            }
        }
    }
    provided
}

/// Run every step's preflight (reads only) and collect what they found, merging a finding several steps report.
/// Each step's checks read through its own host of `hosts` (`ctx.host` is replaced by it).
pub async fn run(plan: &Plan, kinds: &Kinds, ctx: &PreviewCtx, hosts: &HostSet) -> Report {
    let mut ctx = PreflightCtx { preview: ctx.clone(), provided: provisions(plan, kinds, ctx) };
    let mut report = Report::default();
    for step in &plan.steps {
        let Some(kind) = kinds.get(&step.kind) else { continue };
        ctx.preview.host = hosts.get(step.host.as_deref());
        for finding in kind.preflight(step, &ctx).await {
            match report.findings.iter_mut().find(|f| f.finding == finding) {
                Some(seen) => seen.steps.push(step.name.clone()),
                None => report.findings.push(StepFinding { steps: vec![step.name.clone()], finding }),
            }
        }
    }
    report
}
