//! The shape shared by the generated 1,000-step plans of the plan-reading benchmarks (`benches/plan_cli.rs`,
//! `engine/benches/plan_read.rs`).

use std::fmt::Write as _;

/// Writes the opening of step `i`: its name and kind, a description, and `needs` on the step before and the one
/// seven back, so the graph has long chains and parallel waves. The caller writes the fields and the closing `}`.
pub(crate) fn open_step(s: &mut String, i: usize, kind: &str) {
    let _ = writeln!(s, "step \"s{i}\" kind=\"{kind}\" {{");
    let _ = writeln!(s, "    description \"Step {i} of {{{{app}}}}\"");
    if i > 0 {
        let _ = write!(s, "    needs \"s{}\"", i - 1);
        if i >= 7 {
            let _ = write!(s, " \"s{}\"", i - 7);
        }
        s.push('\n');
    }
}
