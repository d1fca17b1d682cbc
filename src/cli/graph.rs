//! `zdd graph`: the step graph as Graphviz dot or Mermaid, forward edges solid, the rollback order dashed.

use zdd_engine::graph;
use zdd_engine::plan::Runtime;

use super::check::{read_plan, report_invalid};
use super::{GraphFormat, PlanArgs, exit};

pub(super) fn run(args: &PlanArgs, format: GraphFormat) -> i32 {
    let kinds = zdd_steps::builtin();
    let read = read_plan(args, &Runtime::sample(), &kinds);
    let Ok(plan) = &read.result else {
        return report_invalid(&read);
    };
    match format {
        GraphFormat::Dot => out!("{}", graph::to_dot(plan, &kinds)),
        GraphFormat::Mermaid => out!("{}", graph::to_mermaid(plan, &kinds)),
    }
    exit::OK
}
