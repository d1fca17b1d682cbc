//! `zdd kinds [KIND]`: every step kind's summary, fields (type, default, doc), effect and undo, from its
//! `KindSpec`.

use zdd_engine::kind::Kinds;
use zdd_engine::plan::fields::COMMON_FIELDS;
use zdd_engine::plan::suggest::did_you_mean;
use zdd_engine::plan::types::type_name;
use zdd_engine::schema::{Effect, KindSpec};

use super::exit;

pub(super) fn run(kind: Option<&str>) -> i32 {
    let kinds = zdd_steps::builtin();
    match kind {
        None => {
            out!("{}", describe_all(&kinds));
            exit::OK
        }
        Some(name) => {
            if let Some(spec) = kinds.spec(name) {
                out!("{}", describe(spec));
                exit::OK
            } else {
                let known: Vec<&str> = kinds.names().collect();
                let hint = did_you_mean(name, known.iter().copied())
                    .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"));
                eprintln!("zdd: no step kind `{name}`{hint}; the kinds are: {}", known.join(", "));
                exit::INVALID
            }
        }
    }
}

/// Every kind, one after the other.
pub(super) fn describe_all(kinds: &Kinds) -> String {
    let mut out = String::new();
    for name in kinds.names() {
        if let Some(spec) = kinds.spec(name) {
            out.push_str(&describe(spec));
            out.push('\n');
        }
    }
    out.push_str(&format!("Every step also takes: {}.\n", COMMON_FIELDS.join(", ")));
    out
}

/// One kind: summary, fields with their properties, effect and undo.
pub(super) fn describe(spec: &KindSpec) -> String {
    let mut out = format!("{}: {}\n", spec.name, spec.summary);
    out.push_str(&format!("  effect: {}\n", effect_name(spec.effect)));
    out.push_str(&format!("  undo:   {}\n", spec.undo));
    out.push_str("  fields:\n");
    for f in spec.fields {
        let field_flags = flags(f.required, f.repeated, f.default);
        out.push_str(&format!("    {} <{}{field_flags}>  {}\n", f.name, type_name(f.ty), f.doc));
        for p in f.props {
            let prop_flags = flags(p.required, false, p.default);
            out.push_str(&format!("      {}=<{}{prop_flags}>  {}\n", p.name, type_name(p.ty), p.doc));
        }
    }
    out
}

/// `, required, repeatable, default "5s"` (empty when none applies).
fn flags(required: bool, repeated: bool, default: Option<&str>) -> String {
    let mut flags = Vec::new();
    if required {
        flags.push("required".to_owned());
    }
    if repeated {
        flags.push("repeatable".to_owned());
    }
    if let Some(d) = default {
        flags.push(format!("default {d:?}"));
    }
    if flags.is_empty() { String::new() } else { format!(", {}", flags.join(", ")) }
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::ReadOnly => "read-only (nothing to undo)",
        Effect::Reversible => "reversible (undone on rollback)",
        Effect::ForwardOnly => "forward-only (never undone)",
    }
}
