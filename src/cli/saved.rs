//! Saved plans on the command line: `zdd plan --out FILE` writes one, `zdd run FILE` applies exactly it or refuses
//! (exit 2, nothing changed) listing every change since it was saved. The format and the comparisons are
//! [`zdd_engine::saved`]'s; this module orders the checks so that a refusal writes nothing.
//!
//! The apply checks twice. First reading only: the state directory it names, the secrets given again, the plan
//! files (as loaded now), the live state and the target, then the variables and the steps bound to the saved
//! target. A refusal there has not created, locked or written anything. Then again under the deploy lock, the
//! live state and the target only (a run may have finished while this one waited for the lock), and the run
//! starts with the plan bound and checked in the first pass: the files are not read a third time.
//!
//! A secret not given again is a change, and the plan is bound with a stand-in for it all the same, so that the
//! other changes are listed too (the run never starts with it).
//!
//! `zdd check FILE` says whether FILE is a saved plan this zdd reads, and what it holds; every other command that
//! takes a plan file refuses a saved plan, naming the plan file it was saved from.

use std::path::{Path, PathBuf};

use zdd_engine::journal::RunMode;
use zdd_engine::plan::{self, Plan, PlanHeader, VarInputs};
use zdd_engine::saved::{self, Change, LiveState, SaveInput, SavedPlan};

use super::check::{report_diagnostics, stderr_color};
use super::plan::{cannot_decide, read_state};
use super::run::{Intent, Launch, Refusal, deploy_bound, lock_wait, prepare};
use super::{PlanArgs, StateArgs, exit};

/// The text of `path` if it is a saved plan (by its content: see [`saved::read::looks_saved`]); `None` for a plan
/// file, or a file that cannot be read (the plan reader says why).
pub(super) fn saved_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().filter(|text| saved::read::looks_saved(text))
}

/// `path` made absolute against the working directory, `.` and `..` resolved by name.
pub(super) fn absolute(path: &Path) -> PathBuf {
    zdd_engine::plan::load::normalize(&std::env::current_dir().unwrap_or_default().join(path))
}

/// Write the saved plan of `input` to `path` (atomically, mode 0600) and say so on stderr.
pub(super) fn write(path: &Path, input: &SaveInput<'_>) -> Result<(), Refusal> {
    let saved = SavedPlan::new(input);
    zdd_engine::host::local::write_atomically(path, saved.to_json().as_bytes(), 0o600)
        .map_err(|e| Refusal::new(exit::INVALID, format!("cannot write the saved plan {}: {e}", path.display())))?;
    eprintln!(
        "zdd: saved the plan to {} (release {} into slot {}); `zdd run {0}` applies exactly it",
        path.display(),
        saved.target.release,
        saved.target.slot
    );
    Ok(())
}

/// `zdd check FILE` of a saved plan: is it one this zdd can apply? What it holds; whether it still matches is
/// for `zdd run FILE` to find (it reads the state directory, which `check` never does).
pub(super) fn describe(file: &Path, text: &str) -> i32 {
    match saved::read::parse(file, text) {
        Ok(saved) => {
            outln!(
                "{}: saved plan of `{}` ({} step{}, {} file{}), release {} into slot {}, saved {} by {}; `zdd run {0}` \
                 applies it if nothing changed since",
                file.display(),
                saved.plan,
                saved.steps.len(),
                if saved.steps.len() == 1 { "" } else { "s" },
                saved.files.len(),
                if saved.files.len() == 1 { "" } else { "s" },
                saved.target.release,
                saved.target.slot,
                saved.saved_at,
                saved.written_by
            );
            exit::OK
        }
        Err((diags, sources)) => report_diagnostics(&diags, &sources),
    }
}

/// A saved plan given to a command that takes a plan file (`zdd status FILE`): refused, naming the plan file it
/// was saved from.
pub(super) fn not_a_plan_file(command: &str, file: &Path, text: &str) -> i32 {
    let hint = match saved::read::parse(file, text) {
        Ok(saved) => format!("give the plan file it was saved from: `zdd {command} {}`", saved.main.display()),
        Err(_) => "give the plan file (KDL)".to_owned(),
    };
    Refusal::new(
        exit::INVALID,
        format!(
            "{} is a saved plan, not a plan file: `zdd {command}` reads a plan file ({}); {hint}",
            file.display(),
            if command == "plan" { "the saved plan's steps are in it" } else { "`zdd run FILE` applies a saved plan" }
        ),
    )
    .print()
}

/// What `zdd run FILE` was given besides the file.
pub(super) struct Apply<'a> {
    pub plan: &'a PlanArgs,
    pub state: &'a StateArgs,
    pub launch: Launch<'a>,
    pub release: Option<&'a str>,
    /// `--allow-bad`: the saved release may be one marked bad since.
    pub allow_bad: bool,
    pub lock_wait: Option<&'a str>,
}

/// `zdd run FILE`: apply the saved plan in `text` (FILE's content), or refuse.
pub(super) fn apply(args: &Apply<'_>, text: &str) -> i32 {
    let file = &args.plan.plan;
    let saved = match saved::read::parse(file, text) {
        Ok(saved) => saved,
        Err((diags, sources)) => return report_diagnostics(&diags, &sources),
    };
    let wait = match lock_wait(args.lock_wait) {
        Ok(wait) => wait,
        Err(refusal) => return refusal.print(),
    };
    let (plan, header) = match verify(args, &saved) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.print(),
    };
    let intent = Intent::Deploy { release: Some(&saved.target.release), allow_bad: args.allow_bad };
    // Messages that name the plan (`zdd recover PLAN`) name the plan file, not the saved plan.
    let prepared = match prepare(&header, &saved.main, &intent, wait) {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.print(),
    };
    // Under the lock: the state the first pass read may have changed while this run waited for it.
    let now = match prepared.state.load() {
        Ok(now) => LiveState::of(&now),
        Err(e) => return Refusal::from(e).print(),
    };
    if let Some(change) = saved.changed_state(&now, &prepared.target) {
        return stale(file, &[change]).print();
    }
    deploy_bound(plan, prepared, args.launch, RunMode::Deploy)
}

/// The first pass, reading only: the plan bound to the saved target and its header, or the refusal listing every
/// change found.
fn verify(args: &Apply<'_>, saved: &SavedPlan) -> Result<(Plan, PlanHeader), Refusal> {
    let file = &args.plan.plan;
    let kinds = zdd_steps::builtin();
    let given = VarInputs::from_env(args.plan.vars.clone());
    let mut changes = Vec::new();
    if let Some(dir) = &args.state.state_dir {
        let dir = absolute(dir);
        if dir != saved.state_dir {
            changes.push(Change::StateDir { saved: saved.state_dir.clone(), now: dir });
        }
    }
    if let Some(release) = args.release.filter(|r| *r != saved.target.release) {
        changes.push(Change::Release { saved: saved.target.release.clone(), now: release.to_owned() });
    }
    let missing = saved.secrets_not_given(&given);
    let mut inputs = saved.var_inputs(&given);
    // A stand-in for each secret not given, so the plan still binds and every other change is found too: a run
    // with it never starts, as the missing secret is a change itself.
    for change in &missing {
        if let Change::SecretNotGiven(name) = change {
            inputs.cli.push(format!("{name}=zdd-secret-not-given"));
        }
    }
    changes.extend(missing);
    let opened = plan::open(&saved.main, &inputs, saved.state_dir_given.as_deref(), &kinds);
    let unbound = match &opened.result {
        Ok(unbound) => unbound,
        Err(diags) => {
            // A changed file is the likely reason the plan no longer reads: say that, not its diagnostics.
            changes.extend(saved.changed_files_on_disk());
            return Err(if changes.is_empty() {
                Refusal::printed(report_diagnostics(diags, &opened.sources))
            } else {
                stale(file, &changes)
            });
        }
    };
    changes.extend(saved.changed_files(unbound.sources()));
    let header = unbound.header();
    let same_dir = header.state_dir == saved.state_dir;
    if !same_dir && !changes.iter().any(|c| matches!(c, Change::StateDir { .. })) {
        changes.push(Change::StateDir { saved: saved.state_dir.clone(), now: header.state_dir.clone() });
    }
    if same_dir {
        let current = read_state(header)?;
        let target = current.deploy_target(&header.slots, Some(&saved.target.release)).map_err(cannot_decide)?;
        changes.extend(saved.changed_state(&LiveState::of(&current), &target));
    }
    let plan = match unbound.bind(&saved.target, &kinds) {
        Ok(plan) => plan,
        Err(_) if !changes.is_empty() => return Err(stale(file, &changes)),
        Err(diags) => return Err(Refusal::printed(report_diagnostics(&diags, unbound.sources()))),
    };
    let not_given = |name: &str| changes.iter().any(|c| matches!(c, Change::SecretNotGiven(n) if n == name));
    let changed_vars: Vec<Change> = saved
        .changed_vars(&plan)
        .into_iter()
        .filter(|c| !matches!(c, Change::Var { name, .. } if not_given(name)))
        .collect();
    changes.extend(changed_vars);
    if changes.is_empty() {
        // With nothing else changed, a step bound differently is this zdd's doing: said last, alone.
        changes.extend(saved.changed_steps(&plan));
    }
    if changes.is_empty() { Ok((plan, header.clone())) } else { Err(stale(file, &changes)) }
}

/// The refusal of a stale saved plan: each change as a diagnostic, then what it means.
fn stale(file: &Path, changes: &[Change]) -> Refusal {
    let (diags, sources) = saved::compare::diagnostics(changes);
    let mut text = diags.render(&sources, stderr_color());
    text.push_str(&format!(
        "zdd: the saved plan {} was not applied: {} since it was saved; nothing was changed\n",
        file.display(),
        match changes.len() {
            1 => "1 change".to_owned(),
            n => format!("{n} changes"),
        }
    ));
    Refusal::diagnostics(exit::INVALID, text)
}
