//! Scenario 12, migrations in two phases (the shipped plan with `migrate_phase "pre"` and a `phase "post"`
//! migrate step after drain-stop, as the book's "Migrations in two phases" writes it), under load:
//! - v2 -> `v3-contract`: the pre step holds the drop of `Product.description` (v2 still selects it), the post
//!   step drops it once v2 has stopped; no request fails, and v2 answered after the pre step had finished;
//! - `zdd rollback` to v2 is refused before anything changes (v2's code needs the dropped column);
//! - `v4-contract-fails`: its post step (NOT NULL on a column with a NULL row) fails after the commit point:
//!   exit 5, nothing rolled back, v4 keeps serving, no request fails.

use std::time::Duration;

use super::scenarios::{Outcome, check, check_no_failures, measured, serving, step_messages, under_load};
use super::zdd::{Stack, ZddRun};

/// The plan's name in the stack's copy of `plans/`.
const PLAN: &str = "two-phase";

/// `prod.kdl` (the stack's patched copy) with the pre phase and the post step.
fn write_plan(stack: &Stack, plan: &str) -> Result<(), String> {
    let base = std::fs::read_to_string(stack.plan_path(plan)).map_err(|e| format!("read {plan}.kdl: {e}"))?;
    let text = base.replace(
        "include \"fragments/django.kdl\"",
        "var \"migrate_phase\" \"pre\"\n\ninclude \"fragments/django.kdl\"",
    ) + r#"
step "migrate-post" kind="migrate" {
    description "The contract migrations, once no old code runs"
    needs "drain-stop"
    phase "post"
    root "{{root}}"
    settings "{{settings}}"
    env-file "{{env_file}}"
}
"#;
    let path = stack.plan_path(plan).with_file_name(format!("{PLAN}.kdl"));
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn messages(run: &ZddRun, step: &str) -> String {
    step_messages(run, step).join("\n")
}

pub(crate) fn s12_two_phase_migrations(stack: &Stack, plan: &str) -> Outcome {
    write_plan(stack, plan)?;
    let before = serving(stack).unwrap_or_default();

    let (run, report) = under_load(stack, "run", PLAN, "v3-contract");
    check(run.code == 0, || format!("{before} -> v3-contract failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    check(serving(stack).as_deref() == Some("v3-contract"), || format!("serving {:?}", serving(stack)))?;
    let pre = messages(&run, "migrate");
    check(pre.contains("held for the post-deploy phase: catalog.0003_remove_product_description"), || {
        format!("the pre step did not hold the contract migration:\n{pre}")
    })?;
    let post = messages(&run, "migrate-post");
    check(post.contains("post-deploy, no old code runs: catalog.0003_remove_product_description"), || {
        format!("the post step did not apply it:\n{post}")
    })?;
    let columns = stack.columns("catalog_product");
    check(!columns.iter().any(|c| c == "description"), || format!("description still there: {columns:?}"))?;
    let old_answers = report.ok_from_version_between(&before, Duration::ZERO, report.duration);
    let first = format!("v3-contract: {} ({old_answers} answers from {before})", measured(&report, races, &run));

    let (run, report) = under_load(stack, "rollback", PLAN, "v3-contract");
    check(run.code == 1, || format!("rollback past the contract: exit {}\n{}", run.code, run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    check(serving(stack).as_deref() == Some("v3-contract"), || format!("serving {:?}", serving(stack)))?;
    check(run.stdout.contains("post-deploy migration(s) the database has"), || {
        format!("the refusal does not say why\n{}", run.describe())
    })?;
    let refused = format!("rollback refused: {}", measured(&report, races, &run));

    let (run, report) = under_load(stack, "run", PLAN, "v4-contract-fails");
    check(run.code == 5, || {
        format!("v4-contract-fails: exit {} (expected 5, committed)\n{}", run.code, run.describe())
    })?;
    let races = check_no_failures(stack, &report, &run)?;
    check(serving(stack).as_deref() == Some("v4-contract-fails"), || format!("serving {:?}", serving(stack)))?;
    let undone = run.events.iter().any(|e| e["event"] == "rollback-started");
    check(!undone, || format!("a committed run rolled back\n{}", run.describe()))?;
    Ok(format!("{first}; {refused}; v4 committed (exit 5): {}", measured(&report, races, &run)))
}
