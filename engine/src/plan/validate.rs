//! Validation: the raw layer to an immutable [`crate::plan::Plan`], collecting every diagnostic.
//!
//! Walks the main file with its includes expanded where they stand; checks the zdd versions the files are written
//! for ([`version_pin`]), then the header (`plan`, `state-dir`, `slots`), resolves variables, decides the deploy target, applies `defaults`, expands `repeat` groups
//! ([`crate::plan::repeat`]), then checks each step (name,
//! `kind`, common fields, the kind's own fields through [`crate::plan::fields`], `needs`) and finally looks for
//! dependency cycles. Nothing stops at the first problem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::kind::{DeployTarget, Kinds};
use crate::plan::fields::{self, FieldCtx};
use crate::plan::fleet;
use crate::plan::load::Loaded;
use crate::plan::model::{Fields, Plan, Step, StepId, StepPolicy, Value};
use crate::plan::raw::{RawItem, RawNode, RawValue, Scalar};
use crate::plan::repeat;
use crate::plan::suggest::did_you_mean;
use crate::plan::vars::{self, Interpolator, VarDecl, VarInputs};
use crate::plan::version_pin;
use crate::plan::{PlanHeader, Runtime, TargetSource};
use crate::schema::ValueType;
use crate::source::{FileId, Span};

/// A plan that was built, with the runtime values it was validated against. The plan is only usable when
/// no error was collected.
#[derive(Debug, Clone)]
pub struct Validated {
    pub plan: Plan,
    pub target: DeployTarget,
    pub state_dir: PathBuf,
}

/// Step names become journal keys, file names and graph ids: keep them plain.
fn valid_step_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The top-level nodes of the main file and its includes, in reading order.
#[derive(Default)]
struct Collected<'a> {
    plan: Vec<&'a RawNode>,
    /// `zdd-version` nodes, from every file.
    zdd_version: Vec<&'a RawNode>,
    state_dir: Vec<&'a RawNode>,
    slots: Vec<&'a RawNode>,
    stable_after: Vec<&'a RawNode>,
    vars: Vec<VarDecl>,
    defaults: Vec<(&'a RawNode, usize)>,
    hosts: Vec<&'a RawNode>,
    ssh_config: Vec<&'a RawNode>,
    /// `step` and `repeat` nodes.
    steps: Vec<&'a RawNode>,
}

fn collect<'a>(loaded: &'a Loaded, file: FileId, depth: usize, out: &mut Collected<'a>, diags: &mut Diagnostics) {
    for (index, item) in loaded.doc(file).items.iter().enumerate() {
        match item {
            RawItem::Plan(n) | RawItem::StateDir(n) | RawItem::Slots(n) | RawItem::StableAfter(n) if depth > 0 => {
                diags.push(
                    Diagnostic::error(Code::MisplacedNode, format!("`{}` belongs in the main plan file", n.name))
                        .at(n.name_span, "in an included file")
                        .help(
                            "move it to the plan file given to zdd; included files hold `var`, `defaults` and `step`",
                        ),
                );
            }
            RawItem::Plan(n) => out.plan.push(n),
            RawItem::ZddVersion(n) => out.zdd_version.push(n),
            RawItem::StateDir(n) => out.state_dir.push(n),
            RawItem::Slots(n) => out.slots.push(n),
            RawItem::StableAfter(n) => out.stable_after.push(n),
            RawItem::Var(n) => {
                if let Some(d) = var_decl(n, depth, file, diags) {
                    out.vars.push(d);
                }
            }
            RawItem::Include(_) => {
                if let Some(&included) = loaded.includes.get(&(file, index)) {
                    collect(loaded, included, depth + 1, out, diags);
                }
            }
            RawItem::Defaults(n) => out.defaults.push((n, depth)),
            RawItem::Hosts(n) => out.hosts.push(n),
            RawItem::SshConfig(n) => out.ssh_config.push(n),
            // Repeats stay among the steps, in place: they are expanded once the variables are known.
            RawItem::Step(n) | RawItem::Repeat(n) => out.steps.push(n),
        }
    }
}

fn var_decl(node: &RawNode, depth: usize, file: FileId, diags: &mut Diagnostics) -> Option<VarDecl> {
    no_block(node, diags);
    let name = node.args.first();
    let Some(name) = name else {
        diags.push(missing_argument(node, "`var` needs a name", "write `var \"name\" \"default value\"`"));
        return None;
    };
    let Scalar::Str(name_text) = &name.value else {
        diags.push(wrong_type(name, "a variable name", "write the name in double quotes: `var \"app\" \"shop\"`"));
        return None;
    };
    if let Some(extra) = node.args.get(2) {
        diags.push(
            Diagnostic::error(Code::ExtraArgument, "`var` takes a name and at most one default value")
                .at(extra.span, "extra argument")
                .help("write `var \"name\" \"default\"`; join words into one string"),
        );
    }
    let secret = match node.prop("secret").map(|p| &p.value) {
        None => false,
        Some(RawValue { value: Scalar::Bool(b), .. }) => *b,
        Some(other) => {
            diags.push(wrong_type(other, "#true or #false", "write `secret=#true`"));
            false
        }
    };
    let doc = match node.prop("doc").map(|p| &p.value) {
        None => None,
        Some(RawValue { value: Scalar::Str(s), .. }) => Some(s.clone()),
        Some(other) => {
            diags.push(wrong_type(other, "a string", "write `doc=\"what this is\"`"));
            None
        }
    };
    Some(VarDecl {
        name: name_text.clone(),
        name_span: name.span,
        default: node.args.get(1).cloned(),
        secret,
        doc,
        depth,
        file,
    })
}

/// What the plan says before any step is looked at: its name, variables, slots and state directory. It needs no
/// state and no deploy target; `zdd status`, `history` and `unlock` stop here.
struct HeaderPhase<'a> {
    c: Collected<'a>,
    name: String,
    interp: Interpolator<'a>,
    variables: Vec<crate::plan::Variable>,
    /// A variable failed to resolve: the kinds' cross-field checks are skipped (they would repeat it).
    vars_failed: bool,
    plan_state_dir: Option<PathBuf>,
    header: PlanHeader,
}

fn header_phase<'a>(
    loaded: &'a Loaded,
    base_dir: &Path,
    inputs: &VarInputs,
    state_dir_override: Option<&Path>,
    diags: &mut Diagnostics,
) -> Option<HeaderPhase<'a>> {
    if loaded.docs.is_empty() {
        return None;
    }
    let mut c = Collected::default();
    collect(loaded, FileId(0), 0, &mut c, diags);
    // A plan written for another zdd is judged no further: what this one would say of the rest may be wrong.
    if !version_pin::check(&c.zdd_version, &version_pin::running(), diags) {
        return None;
    }

    let name = header_string(&c.plan, "plan", true, diags).map(|(s, _)| s).unwrap_or_default();
    // A file that is not KDL has no nodes: do not also complain that the plan has no name.
    let unparsable = diags.iter().any(|d| d.code == Code::KdlSyntax);
    if c.plan.is_empty() && !unparsable {
        diags.push(
            Diagnostic::error(Code::MissingPlan, "the plan has no name")
                .at(Span::new(FileId(0), 0, 0), "expected `plan \"name\"` in this file")
                .help("add `plan \"myapp\"` at the top of the main plan file"),
        );
    }

    // Variables (phase one: the plan's own, with `plan_dir`).
    let plan_dir = vars::plan_dir_string(base_dir);
    let mut interp = Interpolator::new(&loaded.sources);
    interp.set("plan_dir", plan_dir);
    let decls = vars::pick_declarations(std::mem::take(&mut c.vars), diags);
    let before = diags.len();
    let variables = vars::resolve(&decls, inputs, &mut interp, diags);
    let vars_failed = diags.len() > before;
    for d in &decls {
        if !interp.contains(&d.name) {
            // Unresolved: later strings using it are skipped rather than reported again.
            interp.set(d.name.clone(), fields::UNRESOLVED);
        }
    }
    for v in variables.iter().filter(|v| v.secret) {
        interp.secret(v.value.clone());
    }

    let plan_state_dir = header_string(&c.state_dir, "state-dir", false, diags)
        .and_then(|(s, span)| render_or_report(&interp, &s, span, diags))
        .map(PathBuf::from);
    let slots = slots(&c.slots, &interp, diags);
    let state_dir =
        vars::state_dir(state_dir_override.map(Path::to_path_buf).as_ref(), plan_state_dir.as_ref(), base_dir, &name);
    let stable_after = stable_after(&c.stable_after, &interp, diags);
    let header = PlanHeader { name: name.clone(), slots, state_dir, stable_after };
    Some(HeaderPhase { c, name, interp, variables, vars_failed, plan_state_dir, header })
}

/// Only the plan's header (name, variables, slots, state directory): steps are not checked, so a plan with a
/// broken step still tells where its state is.
pub fn header(
    loaded: &Loaded,
    base_dir: &Path,
    inputs: &VarInputs,
    state_dir_override: Option<&Path>,
    diags: &mut Diagnostics,
) -> Option<PlanHeader> {
    header_phase(loaded, base_dir, inputs, state_dir_override, diags).map(|h| h.header)
}

/// Validate everything loaded against `runtime`'s deploy target (sample values, or the target a run decided:
/// binding is validating again with real values, from the same loaded text). Returns `None` only when there is
/// no plan to speak of (no main file).
// One pass over the plan's sections in their order, collecting every error; splitting it would scatter that order.
#[allow(clippy::too_many_lines)]
pub fn validate(
    loaded: &Loaded,
    base_dir: &Path,
    inputs: &VarInputs,
    runtime: &Runtime<'_>,
    kinds: &Kinds,
    diags: &mut Diagnostics,
) -> Option<Validated> {
    let HeaderPhase { c, name, mut interp, mut variables, vars_failed, plan_state_dir, header } =
        header_phase(loaded, base_dir, inputs, runtime.state_dir, diags)?;
    let PlanHeader { slots, state_dir, stable_after, .. } = header;
    let target = match runtime.target {
        TargetSource::Sample => Runtime::sample_target(&slots),
        TargetSource::Fixed(t) => t.clone(),
    };
    let runtime_vars = vars::runtime_variables(&target, &state_dir, base_dir);
    for v in &runtime_vars {
        interp.set(v.name.clone(), v.value.clone());
    }
    interp.clear_unavailable();
    variables.extend(runtime_vars);

    let defaults = plan_defaults(&c.defaults, &interp, diags);
    let fleet = fleet::fleet(&c.hosts, &c.ssh_config, base_dir, &interp, diags);

    // Steps.
    let expanded = repeat::expand(&c.steps, &interp, kinds, diags);
    let mut steps: Vec<Step> = Vec::with_capacity(expanded.len());
    let mut needs_raw: Vec<Vec<(String, Span)>> = Vec::with_capacity(expanded.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut name_spans: Vec<Span> = Vec::new();
    // Steps whose own fields were all fine: only those get the kind's cross-field checks (a kind may assume
    // its required fields are there).
    let mut clean: Vec<bool> = Vec::new();
    let mut item_scope = repeat::ItemScope::default();
    for entry in &expanded {
        item_scope.enter(&mut interp, entry.item.as_ref());
        let node = entry.node.as_ref();
        let id = StepId(steps.len());
        let before = diags.len();
        let ctx = FieldCtx { interp: &interp, diags: &mut *diags };
        let Some((mut step, needs)) = step(node, id, defaults, kinds, ctx, &by_name, &name_spans) else {
            continue;
        };
        step.host = fleet::step_host(node, &fleet, &interp, diags);
        by_name.entry(step.name.clone()).or_insert(id.0);
        name_spans.push(node.args.first().map_or(node.name_span, |a| a.span));
        clean.push(diags.len() == before);
        steps.push(step);
        needs_raw.push(needs);
    }
    item_scope.leave(&mut interp);
    // Duplicates were reported; resolve `needs` against the first step of each name.
    let mut edges = Vec::new();
    for (i, needs) in needs_raw.iter().enumerate() {
        for (need, span) in needs {
            if let Some(&j) = by_name.get(need) {
                if !steps[i].needs.contains(&StepId(j)) {
                    steps[i].needs.push(StepId(j));
                    edges.push((i, j));
                }
            } else {
                let d = Diagnostic::error(Code::UnknownStep, format!("`needs` names an unknown step `{need}`"))
                    .at(*span, "no step has this name");
                let names = steps.iter().map(|s| s.name.as_str());
                diags.push(match did_you_mean(need, names) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help("name a step declared in this plan or its includes"),
                });
            }
        }
    }
    // A step whose reference is broken gets no cross-field check and no settings (they would look the step up).
    for i in step_references(&mut steps, &by_name, &name_spans, kinds, &mut edges, diags) {
        clean[i] = false;
    }
    for cycle in crate::graph::find_cycles(steps.len(), &edges) {
        let path = cycle.iter().map(|&i| steps[i].name.as_str()).collect::<Vec<_>>().join(" -> ");
        let mut d = Diagnostic::error(Code::DependencyCycle, format!("dependency cycle: {path}"))
            .at(name_spans[cycle[0]], "this step ends up needing itself")
            .help("each `a -> b` means a needs b: remove one of these `needs` so the steps can be ordered");
        for &i in &cycle[1..cycle.len() - 1] {
            d = d.related(name_spans[i], "in the cycle");
        }
        diags.push(d);
    }

    // Kind-specific checks across fields, once the step is complete; then the kind's typed settings, built once.
    if !vars_failed {
        for s in steps.iter_mut().filter(|s| clean[s.id.0]) {
            if let Some(kind) = kinds.get(&s.kind) {
                crate::settings::check_and_build(kind.as_ref(), s, base_dir, diags);
            }
        }
        commit_points_after_cutover(&steps, &name_spans, kinds, diags);
    }

    let plan = Plan {
        name,
        base_dir: base_dir.to_path_buf(),
        sources: loaded.sources.clone(),
        vars: variables,
        slots,
        state_dir: plan_state_dir,
        stable_after,
        defaults,
        fleet,
        graph: crate::graph::StepGraph::build_from_steps(&steps),
        steps,
    };
    Some(Validated { plan, target, state_dir })
}

/// A commit point ([`StepKind::commits`](crate::kind::StepKind::commits)) ends the rollback, so it must come after
/// every cutover step ([`StepKind::cuts_over`](crate::kind::StepKind::cuts_over)): it needs each of them, directly
/// or through other steps. Otherwise a failure before the switch could start it, and then not roll back.
fn commit_points_after_cutover(steps: &[Step], name_spans: &[Span], kinds: &Kinds, diags: &mut Diagnostics) {
    let is = |s: &Step, test: fn(&dyn crate::kind::StepKind, &Step) -> bool| {
        kinds.get(&s.kind).is_some_and(|k| test(k.as_ref(), s))
    };
    let cutovers: Vec<usize> = steps.iter().filter(|s| is(s, |k, s| k.cuts_over(s))).map(|s| s.id.0).collect();
    for commit in steps.iter().filter(|s| is(s, |k, s| k.commits(s))) {
        // Everything the commit point needs, through any number of steps (a cycle was reported already).
        let mut needed = vec![false; steps.len()];
        let mut stack: Vec<StepId> = commit.needs.clone();
        while let Some(id) = stack.pop() {
            if let Some(seen) = needed.get_mut(id.0).filter(|seen| !**seen) {
                *seen = true;
                stack.extend(steps[id.0].needs.iter().copied());
            }
        }
        let missed: Vec<usize> = cutovers.iter().copied().filter(|&c| !needed[c] && c != commit.id.0).collect();
        // Once it follows every cutover, the old release's instance must be gone too (one error at a time).
        if !cutovers.is_empty() && missed.is_empty() {
            old_release_stopped_before(commit, steps, &needed, name_spans, kinds, diags);
        }
        for &cut in &missed {
            diags.push(
                Diagnostic::error(
                    Code::CommitBeforeCutover,
                    format!(
                        "step `{}` is a commit point but does not come after the cutover step `{}`",
                        commit.name, steps[cut].name
                    ),
                )
                .at(name_spans[commit.id.0], "a commit point: once it starts, the run no longer rolls back")
                .related(name_spans[cut], "this step moves the live traffic")
                .help(
                    "a commit point ends the rollback: it must come after the switch (and drain-stop) so that a \
                     failure before it can still roll back; add `needs \"drain-stop\"`",
                ),
            );
        }
    }
}

/// A commit point (with a cutover in the plan) must need a step that stops the old release's instance, and no
/// step may keep that instance running: what the commit point does (drop what the old code uses) would break it.
fn old_release_stopped_before(
    commit: &Step,
    steps: &[Step],
    needed: &[bool],
    name_spans: &[Span],
    kinds: &Kinds,
    diags: &mut Diagnostics,
) {
    let retires = |s: &Step| kinds.get(&s.kind).and_then(|k| k.retires_old(s));
    for keeper in steps.iter().filter(|s| retires(s) == Some(false)) {
        diags.push(
            Diagnostic::error(
                Code::CommitWhileOldRuns,
                format!("step `{}` is a commit point but step `{}` keeps the old release running", commit.name, keeper.name),
            )
            .at(name_spans[commit.id.0], "a commit point: what it does breaks the old release")
            .related(name_spans[keeper.id.0], "keeps the old instance running (keep-old)")
            .help("with the old instance kept for a switch back (blue-green), leave the contract migrations to a `phase \"all\"` step in a later release, or drop `keep-old`"),
        );
    }
    let stopped = steps.iter().any(|s| needed[s.id.0] && retires(s) == Some(true));
    if !stopped {
        diags.push(
            Diagnostic::error(
                Code::CommitWhileOldRuns,
                format!(
                    "step `{}` is a commit point but does not come after the step that stops the old release",
                    commit.name
                ),
            )
            .at(name_spans[commit.id.0], "may start while the old release's instance still serves")
            .help("add `needs \"drain-stop\"`: the old workers finish their requests and stop before it starts"),
        );
    }
}

/// Resolve every field of type [`ValueType::StepRef`] (`service "web"`) as `needs` is resolved: the step must
/// exist and be of an accepted kind, and the referring step gets a `needs` edge to it, so it runs after it (and
/// is undone before it). A [`ValueType::SettingsRef`] is checked alike and adds no edge.
fn step_references(
    steps: &mut [Step],
    by_name: &HashMap<String, usize>,
    name_spans: &[Span],
    kinds: &Kinds,
    edges: &mut Vec<(usize, usize)>,
    diags: &mut Diagnostics,
) -> Vec<usize> {
    let mut broken = Vec::new();
    for i in 0..steps.len() {
        let Some(spec) = kinds.spec(&steps[i].kind) else { continue };
        let mut refs: Vec<usize> = Vec::new();
        for field in spec.fields {
            let (accepted, ordered) = match field.ty {
                ValueType::StepRef(accepted) => (accepted, true),
                ValueType::SettingsRef(accepted) => (accepted, false),
                _ => continue,
            };
            for occurrence in steps[i].fields.all(field.name) {
                let Some(target) = occurrence.value.as_ref().and_then(Value::as_str) else { continue };
                let Some(&j) = by_name.get(target) else {
                    let d = Diagnostic::error(
                        Code::UnknownStep,
                        format!("`{}` names an unknown step `{target}`", field.name),
                    )
                    .at(occurrence.span, "no step has this name");
                    let candidates =
                        steps.iter().filter(|s| accepted.contains(&s.kind.as_str())).map(|s| s.name.as_str());
                    diags.push(match did_you_mean(target, candidates) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "name a {} step declared in this plan or its includes",
                            accepted.join(" or ")
                        )),
                    });
                    broken.push(i);
                    continue;
                };
                if !accepted.contains(&steps[j].kind.as_str()) {
                    let fitting: Vec<String> = steps
                        .iter()
                        .filter(|s| accepted.contains(&s.kind.as_str()))
                        .map(|s| format!("`{}`", s.name))
                        .collect();
                    diags.push(
                        Diagnostic::error(
                            Code::WrongStepKind,
                            format!(
                                "`{}` must name a {} step, and `{target}` is a {} step",
                                field.name,
                                accepted.join(" or "),
                                steps[j].kind
                            ),
                        )
                        .at(occurrence.span, format!("a {} step", steps[j].kind))
                        .related(name_spans[j], "declared here")
                        .help(if fitting.is_empty() {
                            format!("the plan has no {} step: add one, or remove this field", accepted.join(" or "))
                        } else {
                            format!("name one of {}", fitting.join(", "))
                        }),
                    );
                    broken.push(i);
                    continue;
                }
                if ordered {
                    refs.push(j);
                }
            }
        }
        for j in refs {
            if !steps[i].needs.contains(&StepId(j)) {
                steps[i].needs.push(StepId(j));
                edges.push((i, j));
            }
        }
    }
    broken
}

/// The single string argument of a header node (`plan`, `state-dir`) that may appear once.
fn header_string(nodes: &[&RawNode], what: &str, _required: bool, diags: &mut Diagnostics) -> Option<(String, Span)> {
    let first = single_node(nodes, what, diags)?;
    let Some(arg) = first.args.first() else {
        diags.push(missing_argument(first, &format!("`{what}` needs a value"), &format!("write `{what} \"...\"`")));
        return None;
    };
    if let Some(extra) = first.args.get(1) {
        diags.push(
            Diagnostic::error(Code::ExtraArgument, format!("`{what}` takes one value"))
                .at(extra.span, "extra argument")
                .help(format!("write `{what} \"...\"` with a single string")),
        );
    }
    match &arg.value {
        Scalar::Str(s) if !s.is_empty() => Some((s.clone(), arg.span)),
        Scalar::Str(_) => {
            diags.push(
                Diagnostic::error(Code::EmptyValue, format!("`{what}` is empty"))
                    .at(arg.span, "empty")
                    .help(format!("give `{what}` a value")),
            );
            None
        }
        _ => {
            diags.push(wrong_type(arg, "a string", "write the value in double quotes"));
            None
        }
    }
}

fn render_or_report(interp: &Interpolator<'_>, text: &str, span: Span, diags: &mut Diagnostics) -> Option<String> {
    match interp.render(text, span) {
        Ok(s) if s.contains(fields::UNRESOLVED) => None,
        Ok(s) => Some(s),
        Err(d) => {
            diags.push(*d);
            None
        }
    }
}

/// `stable-after "10m"`: a duration, zero allowed (every deployed release is stable at once); absent,
/// [`crate::plan::DEFAULT_STABLE_AFTER`].
fn stable_after(nodes: &[&RawNode], interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Duration {
    let fallback = crate::plan::DEFAULT_STABLE_AFTER;
    let Some((text, span)) = header_string(nodes, "stable-after", false, diags) else { return fallback };
    let Some(text) = render_or_report(interp, &text, span, diags) else { return fallback };
    match crate::plan::types::parse_duration(&text) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::error(e.code, e.message).at(span, "not a duration").help(e.help));
            fallback
        }
    }
}

/// `slots "a" "b"`: exactly two distinct plain words (they name files, units and sockets).
fn slots(nodes: &[&RawNode], interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Vec<String> {
    let default = vec!["a".to_owned(), "b".to_owned()];
    let Some(first) = single_node(nodes, "slots", diags) else {
        return default;
    };
    let mut out = Vec::new();
    for arg in &first.args {
        let Some(text) = arg.value.text().filter(|_| matches!(arg.value, Scalar::Str(_) | Scalar::Int(_))) else {
            diags.push(wrong_type(arg, "a string", "write slots as strings: `slots \"8001\" \"8002\"`"));
            continue;
        };
        let Some(value) = render_or_report(interp, &text, arg.span, diags) else {
            continue;
        };
        if !valid_step_name(&value) {
            diags.push(
                Diagnostic::error(Code::BadSlot, format!("slot `{value}` is not a plain word"))
                    .at(arg.span, "not a plain word")
                    .help("slots name files, units and sockets: use letters, digits, `-`, `_` or `.`"),
            );
            continue;
        }
        if out.contains(&value) {
            diags.push(
                Diagnostic::error(Code::BadSlot, format!("slot `{value}` is given twice"))
                    .at(arg.span, "same as another slot")
                    .help("the two slots must differ: deploys alternate between them"),
            );
            continue;
        }
        out.push(value);
    }
    if first.args.len() != 2 {
        diags.push(
            Diagnostic::error(Code::BadSlot, format!("`slots` takes two values, not {}", first.args.len()))
                .at(first.span, "expected two slots")
                .help(
                    "write `slots \"a\" \"b\"` (or ports: `slots \"8001\" \"8002\"`): deploys alternate between them",
                ),
        );
    }
    if out.len() == 2 { out } else { default }
}

/// Merge the `defaults` blocks: the shallowest file wins; two blocks in files of the same depth clash.
fn plan_defaults(nodes: &[(&RawNode, usize)], interp: &Interpolator<'_>, diags: &mut Diagnostics) -> StepPolicy {
    let mut policy = StepPolicy::default();
    let mut sorted: Vec<&(&RawNode, usize)> = nodes.iter().collect();
    sorted.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
    let mut seen_at_depth: HashMap<usize, Span> = HashMap::new();
    for (node, depth) in sorted {
        if let Some(first) = seen_at_depth.get(depth) {
            diags.push(
                Diagnostic::error(Code::DuplicateNode, "`defaults` is given twice")
                    .at(node.name_span, "given again here")
                    .related(*first, "first given here")
                    .help("merge the two `defaults` blocks into one"),
            );
            continue;
        }
        seen_at_depth.insert(*depth, node.name_span);
        for arg in &node.args {
            diags.push(
                Diagnostic::error(Code::ExtraArgument, "`defaults` takes no arguments")
                    .at(arg.span, "unexpected")
                    .help("write `defaults { timeout \"2m\"; retry attempts=2 }`"),
            );
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for child in &node.children {
            if let Some(first) = seen.insert(child.name.as_str(), child.name_span) {
                diags.push(duplicate_field(child, first));
                continue;
            }
            let mut ctx = FieldCtx { interp, diags: &mut *diags };
            match child.name.as_str() {
                "timeout" => {
                    if let Some(t) = fields::timeout(child, &mut ctx) {
                        policy.timeout = t;
                    }
                }
                "retry" => fields::retry(child, &mut policy.retry, &mut ctx),
                other => {
                    let d = Diagnostic::error(Code::UnknownField, format!("unknown field `{other}` in `defaults`"))
                        .at(child.name_span, "not a default");
                    diags.push(match did_you_mean(other, ["timeout", "retry"]) {
                        Some(s) => d.help(format!("did you mean `{s}`? `defaults` holds `timeout` and `retry`")),
                        None => d.help("`defaults` holds `timeout` and `retry`"),
                    });
                }
            }
        }
    }
    policy
}

/// One step node: its name, kind, common fields and the kind's fields. Returns the step and its raw `needs`.
// Reads the node's fields in order, collecting every error; splitting it would scatter that order.
#[allow(clippy::too_many_lines)]
fn step(
    node: &RawNode,
    id: StepId,
    defaults: StepPolicy,
    kinds: &Kinds,
    mut ctx: FieldCtx<'_, '_>,
    by_name: &HashMap<String, usize>,
    name_spans: &[Span],
) -> Option<(Step, Vec<(String, Span)>)> {
    let Some(name_arg) = node.args.first() else {
        ctx.diags.push(missing_argument(node, "`step` needs a name", "write `step \"build\" kind=\"exec\" { ... }`"));
        return None;
    };
    let Scalar::Str(name) = &name_arg.value else {
        ctx.diags.push(wrong_type(name_arg, "a step name", "write the name in double quotes"));
        return None;
    };
    if let Some(extra) = node.args.get(1) {
        ctx.diags.push(
            Diagnostic::error(Code::ExtraArgument, "`step` takes one name")
                .at(extra.span, "extra argument")
                .help("write `step \"name\" kind=\"...\" { ... }`"),
        );
    }
    if !valid_step_name(name) {
        ctx.diags.push(
            Diagnostic::error(Code::BadStepName, format!("`{name}` is not a valid step name"))
                .at(name_arg.span, "invalid name")
                .help("use letters, digits, `-`, `_` and `.`: step names become journal keys and file names"),
        );
    }
    if let Some(&first) = by_name.get(name) {
        ctx.diags.push(
            Diagnostic::error(Code::DuplicateStep, format!("there are two steps named `{name}`"))
                .at(name_arg.span, "second step with this name")
                .related(name_spans[first], "first step with this name")
                .help("rename one of them; step names must be unique across the plan and its includes"),
        );
    }

    let kind_name = match node.prop("kind").map(|p| &p.value) {
        Some(RawValue { value: Scalar::Str(k), span }) => Some((k.as_str(), *span)),
        Some(other) => {
            ctx.diags.push(wrong_type(other, "a kind name", "write `kind=\"exec\"`"));
            None
        }
        None => {
            ctx.diags.push(
                Diagnostic::error(Code::MissingKind, format!("step `{name}` has no kind"))
                    .at(name_arg.span, "no `kind=`")
                    .help(format!("add `kind=\"...\"`; the kinds are: {}", kind_list(kinds))),
            );
            None
        }
    };
    let spec = kind_name.and_then(|(k, span)| {
        let spec = kinds.spec(k);
        if spec.is_none() {
            let d = Diagnostic::error(Code::UnknownKind, format!("unknown step kind `{k}`")).at(span, "no such kind");
            let list = kind_list(kinds);
            ctx.diags.push(match did_you_mean(k, kinds.names()) {
                Some(s) => d.help(format!("did you mean `{s}`? `zdd kinds` lists every kind")),
                None => d.help(format!("the kinds are: {list} (see `zdd kinds`)")),
            });
        }
        spec
    });

    let mut policy = defaults;
    let mut needs = Vec::new();
    let mut description = None;
    let mut field_map = Fields::default();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for child in &node.children {
        let repeated_ok = match child.name.as_str() {
            "needs" => true,
            c if fields::COMMON_FIELDS.contains(&c) => false,
            c => spec.and_then(|s| s.fields.iter().find(|f| f.name == c)).is_some_and(|f| f.repeated),
        };
        if let Some(first) = seen.insert(child.name.as_str(), child.name_span)
            && !repeated_ok
        {
            ctx.diags.push(duplicate_field(child, first));
            continue;
        }
        match child.name.as_str() {
            "needs" => needs.extend(fields::needs(child, &mut ctx)),
            "description" => description = fields::description(child, &mut ctx),
            "timeout" => {
                if let Some(t) = fields::timeout(child, &mut ctx) {
                    policy.timeout = t;
                }
            }
            "retry" => fields::retry(child, &mut policy.retry, &mut ctx),
            other => {
                let Some(spec) = spec else { continue };
                match spec.fields.iter().find(|f| f.name == other) {
                    Some(field) => {
                        if let Some(v) = fields::field(field, child, &mut ctx) {
                            field_map.map.entry(field.name.to_owned()).or_default().push(v);
                        }
                    }
                    None => ctx.diags.push(fields::unknown_field(spec, child)),
                }
            }
        }
    }
    if let Some(spec) = spec {
        fields::apply_defaults(spec, node, name_arg.span, &mut field_map, &mut ctx);
    }

    let step = Step {
        id,
        name: name.clone(),
        kind: kind_name.map(|(k, _)| k.to_owned()).unwrap_or_default(),
        needs: Vec::new(),
        policy,
        fields: field_map,
        settings: crate::settings::StepSettings::default(),
        description,
        host: None,
        span: node.span,
    };
    Some((step, needs))
}

/// The registered kinds, for help lines.
fn kind_list(kinds: &Kinds) -> String {
    let names: Vec<&str> = kinds.names().collect();
    if names.is_empty() { "(none registered)".to_owned() } else { names.join(", ") }
}

/// The one node of a name that may be given once (`plan`, `slots`, `ssh-config`): each further one is an error
/// pointing back at the first, and the first may not have a block. `None` when there is none.
pub(crate) fn single_node<'a>(nodes: &[&'a RawNode], what: &str, diags: &mut Diagnostics) -> Option<&'a RawNode> {
    let first = *nodes.first()?;
    for again in &nodes[1..] {
        diags.push(
            Diagnostic::error(Code::DuplicateNode, format!("`{what}` is given twice"))
                .at(again.name_span, "given again here")
                .related(first.name_span, "first given here")
                .help(format!("keep one `{what}`")),
        );
    }
    no_block(first, diags);
    Some(first)
}

pub(crate) fn no_block(node: &RawNode, diags: &mut Diagnostics) {
    if node.has_block {
        diags.push(
            Diagnostic::error(Code::UnexpectedBlock, format!("`{}` takes no `{{ ... }}` block", node.name))
                .at(node.name_span, "has a block")
                .help("remove the braces and what is inside them"),
        );
    }
}

pub(crate) fn missing_argument(node: &RawNode, message: &str, help: &str) -> Diagnostic {
    Diagnostic::error(Code::MissingArgument, message.to_owned()).at(node.name_span, "argument missing").help(help)
}

pub(crate) fn wrong_type(value: &RawValue, expected: &str, help: &str) -> Diagnostic {
    Diagnostic::error(Code::WrongType, format!("expected {expected}, found {}", value.value.describe()))
        .at(value.span, format!("expected {expected}"))
        .help(help)
}

pub(crate) fn duplicate_field(node: &RawNode, first: Span) -> Diagnostic {
    Diagnostic::error(Code::DuplicateField, format!("`{}` is given twice", node.name))
        .at(node.name_span, "given again here")
        .related(first, "first given here")
        .help(format!("`{}` may appear once: keep one", node.name))
}
