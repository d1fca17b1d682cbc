//! `zdd check`: read and validate a plan with sample runtime values; print every problem, or a one-line summary.

use std::io::IsTerminal;

use zdd_engine::kind::Kinds;
use zdd_engine::plan::{self, PlanRead, Runtime, VarInputs};

use super::{PlanArgs, exit};

/// Should diagnostics on stderr be coloured? Only on a terminal, and never with `NO_COLOR` set.
pub(super) fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Read a plan as every command does: `--var`, `ZDD_VAR_*`, the given runtime values, the built-in kinds.
pub(super) fn read_plan(args: &PlanArgs, runtime: &Runtime<'_>, kinds: &Kinds) -> PlanRead {
    plan::read(&args.plan, &VarInputs::from_env(args.vars.clone()), runtime, kinds)
}

/// Read a plan once and validate it with sample values, to bind it to a deploy target later.
pub(super) fn open_plan(args: &PlanArgs, state_dir: Option<&std::path::Path>, kinds: &Kinds) -> plan::Opened {
    plan::open(&args.plan, &VarInputs::from_env(args.vars.clone()), state_dir, kinds)
}

/// Print a failed read's diagnostics to stderr; returns the exit code for an invalid plan.
pub(super) fn report_invalid(read: &PlanRead) -> i32 {
    match &read.result {
        Err(diags) => report_diagnostics(diags, &read.sources),
        Ok(_) => exit::INVALID,
    }
}

/// Print diagnostics to stderr; returns the exit code for an invalid plan.
pub(super) fn report_diagnostics(
    diags: &zdd_engine::diag::Diagnostics,
    sources: &zdd_engine::source::SourceMap,
) -> i32 {
    eprint!("{}", diags.render(sources, stderr_color()));
    exit::INVALID
}

pub(super) fn run(args: &PlanArgs) -> i32 {
    if let Some(text) = super::saved::saved_text(&args.plan) {
        return super::saved::describe(&args.plan, &text);
    }
    let kinds = zdd_steps::builtin();
    let read = read_plan(args, &Runtime::sample(), &kinds);
    match &read.result {
        Ok(plan) => {
            let files = read.sources.files().count();
            outln!(
                "{}: plan `{}` is valid ({} step{}, {} file{})",
                args.plan.display(),
                plan.name,
                plan.steps.len(),
                if plan.steps.len() == 1 { "" } else { "s" },
                files,
                if files == 1 { "" } else { "s" }
            );
            exit::OK
        }
        Err(_) => report_invalid(&read),
    }
}
