//! `repeat`: a group of steps written once and expanded into one copy per item of a list, before the steps are
//! validated. This module owns the expansion and its checks; validation then sees each copy as a written step.
//!
//! ```kdl
//! var "lanes" "1 2 3"
//! repeat "lane" in="{{lanes}}" serial=1 {
//!     step "web" kind="service" { lane "{{lane}}"; ... }
//!     step "health" kind="health-gate" { needs "web"; service "web"; ... }
//! }
//! ```
//!
//! - The list is the `in` string, interpolated, split on whitespace; inside the group `{{lane}}` is the item.
//! - Step `web` of the group becomes `web.<item>` (`web.1`, `web.2`, ...). A character of the item that a step
//!   name cannot hold (`deploy@10.0.0.5:22`) becomes `-` in the name; the variable keeps the item as written.
//! - Inside the group, a name of one of the group's own steps (in `needs` or a step reference such as
//!   `service "web"`) means the copy of the same iteration.
//! - Anywhere else, `needs "web"` means every copy of `web`, and `needs "web.2"` one copy.
//! - `serial=N` (or a string: `serial="{{batch}}"`, `serial="25%"` of the items, rounded up) runs the iterations
//!   in batches of N: the group's first steps (those needing no step of the
//!   group) of each iteration need the group's last steps (those no step of the group needs) of every iteration
//!   of the batch before. Without it the iterations are independent and may run in parallel.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::kind::Kinds;
use crate::plan::fields::UNRESOLVED;
use crate::plan::raw::{RawNode, RawValue, Scalar};
use crate::plan::suggest::did_you_mean;
use crate::plan::validate::{missing_argument, wrong_type};
use crate::plan::vars::{self, Interpolator, RUNTIME_VARS};
use crate::schema::ValueType;
use crate::source::Span;

/// The top-level node that repeats a group of steps.
pub const REPEAT: &str = "repeat";

/// Separates a repeated step's name from its item's suffix: `web.1`.
pub const SUFFIX_SEPARATOR: char = '.';

/// The item variable of one iteration and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub var: String,
    pub value: String,
}

/// A step to validate: one written in the plan, or a copy of a repeated one (with its names rewritten).
#[derive(Debug, Clone)]
pub struct Expanded<'a> {
    pub node: Cow<'a, RawNode>,
    /// The iteration's item, for a copy of a repeated step.
    pub item: Option<Item>,
}

/// Binds the item variable of the step being validated, and unbinds it for the next step.
#[derive(Default)]
pub struct ItemScope {
    bound: Option<String>,
}

impl ItemScope {
    /// Make `item` (if any) the only item variable set in `interp`.
    pub fn enter(&mut self, interp: &mut Interpolator<'_>, item: Option<&Item>) {
        self.leave(interp);
        if let Some(item) = item {
            interp.set(item.var.clone(), item.value.clone());
            self.bound = Some(item.var.clone());
        }
    }

    /// Unset the item variable bound last.
    pub fn leave(&mut self, interp: &mut Interpolator<'_>) {
        if let Some(var) = self.bound.take() {
            interp.unset(&var);
        }
    }
}

/// One `repeat` node, read.
struct Group<'a> {
    /// The item variable (absent when the node does not name a usable one).
    var: Option<String>,
    /// Each item as written, with the suffix it gives step names.
    items: Vec<(String, String)>,
    templates: Vec<&'a RawNode>,
    serial: Option<(usize, Span)>,
    /// The `in` value.
    in_span: Option<Span>,
}

impl Group<'_> {
    fn has_template(&self, name: &str) -> bool {
        self.templates.iter().any(|t| step_name(t).is_some_and(|n| n == name))
    }

    /// Every copy of the group's step `name`.
    fn copies(&self, name: &str) -> impl Iterator<Item = String> + '_ {
        let name = name.to_owned();
        self.items.iter().map(move |(_, suffix)| suffixed(&name, suffix))
    }

    /// The names of the group's steps that each template needs, in `needs` or a step reference.
    fn internal_deps(&self, kinds: &Kinds) -> Vec<HashSet<String>> {
        self.templates
            .iter()
            .map(|t| {
                references(t, kinds)
                    .filter_map(|v| match &v.value {
                        Scalar::Str(s) if self.has_template(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }
}

enum Entry<'a> {
    Written(&'a RawNode),
    Group(Group<'a>),
}

/// `name.suffix`.
fn suffixed(name: &str, suffix: &str) -> String {
    format!("{name}{SUFFIX_SEPARATOR}{suffix}")
}

/// An item made fit for a step name: characters other than letters, digits, `-`, `_` and `.` become `-`.
pub fn suffix(item: &str) -> String {
    item.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect()
}

/// A step node's name as written, if it has one.
fn step_name(node: &RawNode) -> Option<&str> {
    match node.args.first().map(|a| &a.value) {
        Some(Scalar::Str(s)) => Some(s),
        _ => None,
    }
}

/// The children of a step that hold the names of other steps: `needs`, and the kind's step-reference fields.
fn is_reference(child: &RawNode, kind_fields: &[&str]) -> bool {
    child.name == "needs" || kind_fields.contains(&child.name.as_str())
}

/// The names of a step's kind's step-reference fields (`service` of a health gate).
fn step_ref_fields(node: &RawNode, kinds: &Kinds) -> Vec<&'static str> {
    let kind = match node.prop("kind").map(|p| &p.value.value) {
        Some(Scalar::Str(k)) => k.as_str(),
        _ => return Vec::new(),
    };
    kinds
        .spec(kind)
        .map(|spec| {
            spec.fields
                .iter()
                .filter(|f| matches!(f.ty, ValueType::StepRef(_) | ValueType::SettingsRef(_)))
                .map(|f| f.name)
                .collect()
        })
        .unwrap_or_default()
}

/// Every value naming another step in `node` (`needs` arguments and step references).
fn references<'n>(node: &'n RawNode, kinds: &Kinds) -> impl Iterator<Item = &'n RawValue> + 'n {
    let fields = step_ref_fields(node, kinds);
    node.children.iter().filter(move |c| is_reference(c, &fields)).flat_map(|c| c.args.iter())
}

/// Expand every `repeat` among `nodes` (the plan's `step` and `repeat` nodes, in reading order) into copies of
/// its steps, and rewrite the `needs` of written steps that name a repeated step (every copy). `interp` holds
/// the plan's variables, for the `in` lists.
pub fn expand<'a>(
    nodes: &[&'a RawNode],
    interp: &Interpolator<'_>,
    kinds: &Kinds,
    diags: &mut Diagnostics,
) -> Vec<Expanded<'a>> {
    let mut entries: Vec<Entry<'a>> = nodes
        .iter()
        .map(|&n| if n.name == REPEAT { Entry::Group(group(n, interp, diags)) } else { Entry::Written(n) })
        .collect();
    limit_size(&mut entries, diags);
    if !entries.iter().any(|e| matches!(e, Entry::Group(_))) {
        return nodes.iter().map(|&n| Expanded { node: Cow::Borrowed(n), item: None }).collect();
    }
    let groups: Vec<&Group<'a>> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Group(g) => Some(g),
            Entry::Written(_) => None,
        })
        .collect();
    let written: HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Written(n) => step_name(n),
            Entry::Group(_) => None,
        })
        .collect();
    name_collisions(&entries, diags);
    let mut known: HashSet<String> = written.iter().map(|&n| n.to_owned()).collect();
    for group in &groups {
        for name in group.templates.iter().filter_map(|t| step_name(t)) {
            known.insert(name.to_owned());
            known.extend(group.copies(name));
        }
    }
    for group in &groups {
        unknown_names(group, &known, &groups, &written, kinds, diags);
    }

    let mut out = Vec::new();
    for entry in &entries {
        match entry {
            Entry::Written(node) => {
                let fields = step_ref_fields(node, kinds);
                let names_group = node.children.iter().filter(|c| c.name == "needs").flat_map(|c| c.args.iter()).any(
                    |a| matches!(&a.value, Scalar::Str(s) if !written.contains(s.as_str()) && groups.iter().any(|g| g.has_template(s))),
                );
                let node = if names_group {
                    Cow::Owned(rewrite(node, &fields, None, &groups, &written))
                } else {
                    Cow::Borrowed(*node)
                };
                out.push(Expanded { node, item: None });
            }
            Entry::Group(group) => expand_group(group, &groups, &written, &known, kinds, &mut out),
        }
    }
    out
}

fn expand_group<'a>(
    group: &Group<'a>,
    groups: &[&Group<'a>],
    written: &HashSet<&str>,
    known: &HashSet<String>,
    kinds: &Kinds,
    out: &mut Vec<Expanded<'a>>,
) {
    let Some(var) = &group.var else { return };
    let deps = group.internal_deps(kinds);
    let needed: HashSet<&str> = deps.iter().flatten().map(String::as_str).collect();
    let leaves: Vec<&str> =
        group.templates.iter().filter_map(|t| step_name(t)).filter(|n| !needed.contains(n)).collect();
    for (i, (item, suffix)) in group.items.iter().enumerate() {
        for (t, template) in group.templates.iter().enumerate() {
            let fields = step_ref_fields(template, kinds);
            let mut node = rewrite(template, &fields, Some((group, suffix)), groups, written);
            // Unknown names were reported once, for the step as written: not again for each copy.
            drop_unknown_names(&mut node, &fields, known);
            if let Some(name) = node.args.first_mut()
                && let Scalar::Str(s) = &name.value
            {
                name.value = Scalar::Str(suffixed(s, suffix));
            }
            if let Some((batch, span)) = group.serial
                && i >= batch
                && deps[t].is_empty()
            {
                let previous = &group.items[(i / batch - 1) * batch..(i / batch) * batch];
                let args = previous
                    .iter()
                    .flat_map(|(_, s)| leaves.iter().map(move |leaf| suffixed(leaf, s)))
                    .map(|name| RawValue { value: Scalar::Str(name), span })
                    .collect();
                node.children.push(RawNode {
                    name: "needs".to_owned(),
                    name_span: span,
                    args,
                    props: Vec::new(),
                    children: Vec::new(),
                    has_block: false,
                    span,
                });
            }
            out.push(Expanded { node: Cow::Owned(node), item: Some(Item { var: var.clone(), value: item.clone() }) });
        }
    }
}

/// `node` with the step names in its `needs` and step references resolved: a name of a step of `own` (the
/// group `node` belongs to, with this iteration's suffix) becomes that iteration's copy; in `needs`, the name of
/// another group's step that is not also a written step becomes every copy of it.
fn rewrite(
    node: &RawNode,
    ref_fields: &[&str],
    own: Option<(&Group<'_>, &str)>,
    groups: &[&Group<'_>],
    written: &HashSet<&str>,
) -> RawNode {
    let mut node = node.clone();
    let mut emptied = false;
    for child in &mut node.children {
        if !is_reference(child, ref_fields) || child.args.is_empty() {
            continue;
        }
        let is_needs = child.name == "needs";
        let mut args = Vec::with_capacity(child.args.len());
        for arg in child.args.drain(..) {
            let Scalar::Str(name) = &arg.value else {
                args.push(arg);
                continue;
            };
            if let Some((group, suffix)) = own
                && group.has_template(name)
            {
                args.push(RawValue { value: Scalar::Str(suffixed(name, suffix)), span: arg.span });
            } else if is_needs
                && !written.contains(name.as_str())
                && let Some(other) = groups.iter().find(|g| g.has_template(name))
            {
                args.extend(other.copies(name).map(|copy| RawValue { value: Scalar::Str(copy), span: arg.span }));
            } else {
                args.push(arg);
            }
        }
        emptied |= args.is_empty();
        child.args = args;
    }
    if emptied {
        // A `needs` left empty named only a group that expanded to nothing (its problem is reported already).
        node.children.retain(|c| c.name != "needs" || !c.args.is_empty());
    }
    node
}

/// At most this many steps come out of all the plan's `repeat`s...
pub const MAX_REPEATED_STEPS: usize = 1000;
/// ...and at most this much plan text (each copy counted as its step's text).
pub const MAX_REPEATED_TEXT: usize = 1 << 20;

/// Refuse (and expand to nothing) a group that would take the plan past [`MAX_REPEATED_STEPS`] or
/// [`MAX_REPEATED_TEXT`]: a list times a group grows quadratically in the file's size, and reading a plan stays
/// linear.
fn limit_size(entries: &mut [Entry<'_>], diags: &mut Diagnostics) {
    let (mut steps, mut text) = (0usize, 0usize);
    for entry in entries {
        let Entry::Group(group) = entry else { continue };
        let group_text: usize = group.templates.iter().map(|t| t.span.len).sum();
        let more_steps = group.items.len().saturating_mul(group.templates.len());
        let more_text = group.items.len().saturating_mul(group_text);
        if steps.saturating_add(more_steps) <= MAX_REPEATED_STEPS && text.saturating_add(more_text) <= MAX_REPEATED_TEXT
        {
            steps += more_steps;
            text += more_text;
            continue;
        }
        if let Some(span) = group.in_span {
            diags.push(
                Diagnostic::error(
                    Code::RepeatTooLarge,
                    format!("this `repeat` makes {more_steps} steps ({} KiB of plan)", more_text / 1024),
                )
                .at(span, format!("{} items", group.items.len()))
                .help(format!(
                    "the plan's repeats make at most {MAX_REPEATED_STEPS} steps and {} KiB of plan: shorten the list",
                    MAX_REPEATED_TEXT / 1024
                )),
            );
        }
        group.items.clear();
    }
}

/// Is `name`, written in a group's step, a step name that names no step? Names still to be interpolated
/// (`service "web.{{lane}}"`) are checked once they are, by validation.
fn names_no_step(value: &RawValue, known: &HashSet<String>) -> bool {
    matches!(&value.value, Scalar::Str(n) if !n.contains("{{") && !known.contains(n))
}

/// `needs` and step references in a group's steps naming no step: reported once for the step as written, with
/// the closest name as written (`start`, not `start.1`); the copies then leave them out.
fn unknown_names(
    group: &Group<'_>,
    known: &HashSet<String>,
    groups: &[&Group<'_>],
    written: &HashSet<&str>,
    kinds: &Kinds,
    diags: &mut Diagnostics,
) {
    let candidates: Vec<&str> = written
        .iter()
        .copied()
        .chain(groups.iter().flat_map(|g| g.templates.iter().filter_map(|t| step_name(t))))
        .collect();
    for template in &group.templates {
        let fields = step_ref_fields(template, kinds);
        for child in template.children.iter().filter(|c| is_reference(c, &fields)) {
            for arg in child.args.iter().filter(|a| names_no_step(a, known)) {
                let Scalar::Str(name) = &arg.value else { continue };
                let d =
                    Diagnostic::error(Code::UnknownStep, format!("`{}` names an unknown step `{name}`", child.name))
                        .at(arg.span, "no step has this name");
                diags.push(match did_you_mean(name, candidates.iter().copied()) {
                    Some(s) if group.has_template(s) => {
                        d.help(format!("did you mean `{s}`? In a `repeat`, its own steps are named as written"))
                    }
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => {
                        d.help("name a step declared in this plan or its includes, or one of this `repeat`'s steps")
                    }
                });
            }
        }
    }
}

/// Leave out of a copy the names [`unknown_names`] reported: `needs` arguments go, a step reference's value
/// becomes unresolved (the field is skipped, as after any problem already reported).
fn drop_unknown_names(node: &mut RawNode, ref_fields: &[&str], known: &HashSet<String>) {
    for child in node.children.iter_mut().filter(|c| is_reference(c, ref_fields)) {
        if child.name == "needs" {
            child.args.retain(|a| !names_no_step(a, known));
        } else {
            for arg in child.args.iter_mut().filter(|a| names_no_step(a, known)) {
                arg.value = Scalar::Str(UNRESOLVED.to_owned());
            }
        }
    }
    node.children.retain(|c| c.name != "needs" || !c.args.is_empty());
}

/// A repeated step's name that is also a written step's, or another group's: `needs "web"` would not say which.
fn name_collisions(entries: &[Entry<'_>], diags: &mut Diagnostics) {
    let mut seen: HashMap<&str, (Span, bool)> = HashMap::new();
    for entry in entries {
        if let Entry::Written(node) = entry
            && let Some(name) = step_name(node)
        {
            seen.entry(name).or_insert((node.args[0].span, false));
        }
    }
    for entry in entries {
        let Entry::Group(group) = entry else { continue };
        let mut own: HashSet<&str> = HashSet::new();
        for template in &group.templates {
            let Some(name) = step_name(template) else { continue };
            if !own.insert(name) {
                continue;
            }
            let span = template.args[0].span;
            match seen.get(name) {
                Some(&(first, repeated)) => diags.push(
                    Diagnostic::error(
                        Code::RepeatNameCollision,
                        format!(
                            "`{name}` names a repeated step and {}",
                            if repeated { "another repeated step" } else { "a written step" }
                        ),
                    )
                    .at(span, "repeated step")
                    .related(first, "also named here")
                    .help(format!(
                        "rename one: `needs \"{name}\"` must say which steps it means (every copy of a repeated step)"
                    )),
                ),
                None => {
                    seen.insert(name, (span, true));
                }
            }
        }
    }
}

/// Read one `repeat` node: its item variable, its list and its steps, reporting every problem.
fn group<'a>(node: &'a RawNode, interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Group<'a> {
    let var = item_var(node, interp, diags);
    let mut templates = Vec::new();
    for child in &node.children {
        if child.name == "step" {
            templates.push(child);
        } else {
            diags.push(
                Diagnostic::error(Code::RepeatBody, format!("`{}` inside `repeat`", child.name))
                    .at(child.name_span, "not a step")
                    .help(
                        "a `repeat` holds `step` nodes only: declare variables, defaults and includes at the top \
                         level, and repeat one group at a time (no `repeat` inside `repeat`)",
                    ),
            );
        }
    }
    if templates.is_empty() && node.children.is_empty() {
        diags.push(
            Diagnostic::error(Code::RepeatBody, "this `repeat` holds no step")
                .at(node.name_span, "nothing to repeat")
                .help("write the steps to repeat in its block: `repeat \"lane\" in=\"{{lanes}}\" { step ... }`"),
        );
    }
    let mut items = items(node, interp, diags);
    let serial = serial(node, items.len(), interp, diags);
    if var.is_none() {
        // Nothing is expanded: no copy exists for `needs` outside to name.
        items.clear();
    }
    let in_span = node.prop("in").map(|p| p.value.span);
    Group { var, items, templates, serial, in_span }
}

/// The item variable: a plain variable name that no plan or runtime variable has.
fn item_var(node: &RawNode, interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Option<String> {
    let Some(arg) = node.args.first() else {
        diags.push(missing_argument(
            node,
            "`repeat` needs the name of its item variable",
            "write `repeat \"lane\" in=\"{{lanes}}\" { ... }`; inside, `{{lane}}` is the item",
        ));
        return None;
    };
    if let Some(extra) = node.args.get(1) {
        diags.push(
            Diagnostic::error(Code::ExtraArgument, "`repeat` takes one name, its item variable")
                .at(extra.span, "extra argument")
                .help("give the list as `in=\"...\"`: `repeat \"lane\" in=\"1 2 3\" { ... }`"),
        );
    }
    let Scalar::Str(name) = &arg.value else {
        diags.push(wrong_type(arg, "a variable name", "write the name in double quotes: `repeat \"lane\" ...`"));
        return None;
    };
    let problem = if !vars::valid_name(name) {
        Some("use letters, digits and `_`, starting with a letter".to_owned())
    } else if RUNTIME_VARS.contains(&name.as_str()) {
        Some(format!("`{name}` is a runtime variable: pick another name for the item"))
    } else if interp.contains(name) {
        Some(format!("the plan declares a variable `{name}`: pick another name for the item (`{name}_item`)"))
    } else {
        None
    };
    match problem {
        Some(help) => {
            diags.push(
                Diagnostic::error(Code::RepeatVar, format!("`{name}` cannot be the item variable"))
                    .at(arg.span, "item variable")
                    .help(help),
            );
            None
        }
        None => Some(name.clone()),
    }
}

/// `serial=N`, or a string: `serial="{{batch}}"` (interpolated), `serial="25%"` (of the items, rounded up): a
/// batch size of at least 1.
fn serial(
    node: &RawNode,
    item_count: usize,
    interp: &Interpolator<'_>,
    diags: &mut Diagnostics,
) -> Option<(usize, Span)> {
    let value = &node.prop("serial")?.value;
    let too_small = |diags: &mut Diagnostics| {
        diags.push(
            Diagnostic::error(Code::BadInt, "`serial` must be at least 1")
                .at(value.span, "not a batch size")
                .help("`serial=1` runs the iterations one after another; leave it out to run them in parallel"),
        );
    };
    match &value.value {
        Scalar::Int(n) if *n >= 1 => Some((usize::try_from(*n).unwrap_or(usize::MAX), value.span)),
        Scalar::Int(_) => {
            too_small(diags);
            None
        }
        Scalar::Str(text) => {
            let rendered = match interp.render(text, value.span) {
                Ok(r) if r.contains(UNRESOLVED) => return None,
                Ok(r) => r,
                Err(d) => {
                    diags.push(*d);
                    return None;
                }
            };
            let rendered = rendered.trim();
            let size = match rendered.strip_suffix('%') {
                Some(percent) => percent
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .map(|p| (item_count * p).div_ceil(100).max(1)),
                None => rendered.parse::<usize>().ok(),
            };
            match size {
                Some(0) => {
                    too_small(diags);
                    None
                }
                Some(n) => Some((n, value.span)),
                None => {
                    diags.push(
                        Diagnostic::error(Code::BadInt, format!("`serial` is `{rendered}`, not a batch size"))
                            .at(value.span, "not a count or a percentage")
                            .help("write a count (`serial=2`, `serial=\"{{batch}}\"`) or a share of the items from 1% to 100% (`serial=\"25%\"`)"),
                    );
                    None
                }
            }
        }
        _ => {
            diags.push(wrong_type(value, "an integer or a string", "write `serial=1`, or `serial=\"25%\"`"));
            None
        }
    }
}

/// The items of `in`, interpolated and split on whitespace, each with its suffix; empty after a problem.
fn items(node: &RawNode, interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Vec<(String, String)> {
    let Some(prop) = node.prop("in") else {
        diags.push(
            Diagnostic::error(Code::MissingProperty, "`repeat` has no list")
                .at(node.name_span, "no `in=`")
                .help("add the items, separated by spaces: `in=\"1 2 3\"` or `in=\"{{lanes}}\"`"),
        );
        return Vec::new();
    };
    let Scalar::Str(text) = &prop.value.value else {
        diags.push(wrong_type(&prop.value, "a string", "write `in=\"1 2 3\"`: the items separated by spaces"));
        return Vec::new();
    };
    let span = prop.value.span;
    let rendered = match interp.render(text, span) {
        Ok(s) if s.contains(UNRESOLVED) => return Vec::new(),
        Ok(s) => s,
        Err(d) => {
            diags.push(*d);
            return Vec::new();
        }
    };
    let mut items: Vec<(String, String)> = Vec::new();
    for word in rendered.split_whitespace() {
        let suffix = suffix(word);
        match items.iter().find(|(_, s)| *s == suffix) {
            Some((first, _)) => {
                let message = if first == word {
                    format!("`{word}` is in the list twice")
                } else {
                    format!("`{first}` and `{word}` give the same step names (`*.{suffix}`)")
                };
                diags.push(
                    Diagnostic::error(Code::RepeatDuplicateItem, interp.mask(&message))
                        .at(span, "the list")
                        .help(made_of(interp, text, "each item names a copy of every step: list each once")),
                );
            }
            None => items.push((word.to_owned(), suffix)),
        }
    }
    if items.is_empty() && !diags.iter().any(|d| d.code == Code::RepeatDuplicateItem && d.span == Some(span)) {
        diags.push(
            Diagnostic::error(Code::RepeatEmpty, "`repeat` has an empty list: its steps would not run at all")
                .at(span, "no items")
                .help(made_of(interp, text, "give at least one item, separated by spaces: `in=\"1 2 3\"`")),
        );
    }
    items
}

/// `help`, followed by the variables the list was made of and their values.
fn made_of(interp: &Interpolator<'_>, text: &str, help: &str) -> String {
    let used: Vec<String> = interp
        .referenced(text)
        .into_iter()
        .map(|(name, value)| format!("`{name}` is {:?}", interp.mask(&value)))
        .collect();
    if used.is_empty() { help.to_owned() } else { format!("{help} ({})", used.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_keeps_plain_characters_only() {
        assert_eq!(suffix("web-2"), "web-2");
        assert_eq!(suffix("deploy@10.0.0.5:22"), "deploy-10.0.0.5-22");
        assert_eq!(suffix("ü"), "-");
        assert_eq!(suffixed("health", "2"), "health.2");
    }
}
