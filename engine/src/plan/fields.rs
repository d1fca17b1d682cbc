//! Checking a step's child nodes: the common fields (`needs`, `description`, `timeout`, `retry`) and the
//! kind's own fields against its [`FieldSpec`]s (arguments, properties, types after interpolation, required
//! fields, defaults).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::{FieldValue, Fields, Retry, Value, VarOrigin};
use crate::plan::raw::{self, RawNode, RawValue, Scalar};
use crate::plan::suggest::did_you_mean;
use crate::plan::types::{check_shell_value, describe_char, parse_typed, type_name};
use crate::plan::validate::{missing_argument, wrong_type};
use crate::plan::vars::Interpolator;
use crate::schema::{FieldSpec, KindSpec, PropSpec, ValueType};
use crate::source::Span;

/// The value a variable gets when it could not be resolved (already reported): strings that use it are
/// skipped instead of being reported again.
pub const UNRESOLVED: &str = "\u{0}zdd-unresolved\u{0}";

/// Child nodes every step accepts, whatever its kind.
pub const COMMON_FIELDS: &[&str] = &["needs", "description", "timeout", "retry"];

/// The properties of `retry`.
const RETRY_PROPS: &[&str] = &["attempts", "backoff", "jitter"];

/// What checking a field needs: the variables and where to report.
pub struct FieldCtx<'i, 'd> {
    pub interp: &'i Interpolator<'i>,
    pub diags: &'d mut Diagnostics,
}

impl FieldCtx<'_, '_> {
    /// The value as a string after interpolation; `None` if it was reported or uses an unresolved variable.
    fn text(&mut self, raw: &RawValue, expected: ValueType) -> Option<String> {
        let text = match &raw.value {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(_) | Scalar::Float(_) if expected != ValueType::Bool => raw.value.text()?,
            _ => {
                let help = match expected {
                    ValueType::Bool => "write `#true` or `#false`".to_owned(),
                    _ => "write the value in double quotes".to_owned(),
                };
                self.diags.push(wrong_type(raw, &type_name(expected), &help));
                return None;
            }
        };
        match self.interp.render(&text, raw.span) {
            Ok(s) if s.contains(UNRESOLVED) => None,
            Ok(s) => Some(s),
            Err(d) => {
                self.diags.push(*d);
                None
            }
        }
    }

    /// One value of type `ty` (never [`ValueType::Strings`], which the caller splits).
    pub fn typed(&mut self, ty: ValueType, raw: &RawValue) -> Option<Value> {
        self.typed_field(ty, raw, false)
    }

    /// [`Self::typed`]; with `optional`, an optional path that plan variables left empty (`tls-cert
    /// "{{tls_cert}}"` with `var "tls_cert" ""`) is an empty string, which the kinds read as not given, instead of
    /// a bad path: a shared fragment can pass an optional file on without every plan having to set one.
    fn typed_field(&mut self, ty: ValueType, raw: &RawValue, optional: bool) -> Option<Value> {
        if let (ValueType::Bool, Scalar::Bool(b)) = (ty, &raw.value) {
            return Some(Value::Bool(*b));
        }
        let text = self.text(raw, ty)?;
        let from_variables = matches!(&raw.value, Scalar::Str(s) if s.contains("{{"));
        if optional && from_variables && text.trim().is_empty() && matches!(ty, ValueType::Path | ValueType::ConfigPath)
        {
            return Some(Value::Str(String::new()));
        }
        if ty == ValueType::Shell && !self.shell_values_safe(raw) {
            return None;
        }
        match parse_typed(ty, &text) {
            Ok(v) => Some(v),
            Err(e) => {
                let message = self.interp.mask(&e.message);
                let d = Diagnostic::error(e.code, message).at(raw.span, format!("expected {}", type_name(ty)));
                let d = self.made_of_variables(d, raw);
                self.diags.push(d.help(e.help));
                None
            }
        }
    }
}

impl FieldCtx<'_, '_> {
    /// A value that failed its type after interpolation: point at every variable that made it and say where
    /// each value was set (the default's place in its file, or `--var`/the environment), so a wrong `listen`
    /// is found from the `proxy_url` it broke.
    fn made_of_variables(&self, mut d: Diagnostic, raw: &RawValue) -> Diagnostic {
        let Scalar::Str(written) = &raw.value else { return d };
        let made_of = self.interp.provenance_of(written);
        if made_of.is_empty() {
            return d;
        }
        let mut given = Vec::new();
        for (name, value, provenance) in &made_of {
            let value = self.interp.mask(value);
            match provenance {
                Some(p) if p.template.is_some() => {
                    d = d.related(p.span, format!("`{name}` is `{value}`: its default, set here"));
                }
                Some(p) => {
                    let how = match p.origin {
                        VarOrigin::Cli => "--var",
                        VarOrigin::Env => "the environment (ZDD_VAR_…)",
                        _ => "outside the plan",
                    };
                    d = d.related(p.span, format!("`{name}` is `{value}`, given by {how}"));
                    given.push(format!("`{name}` = `{value}` ({how})"));
                }
                None => given.push(format!("`{name}` = `{value}` (runtime)")),
            }
        }
        let names: Vec<String> = made_of.iter().map(|(n, _, _)| format!("`{n}`")).collect();
        d.message = format!("{} (made from {})", d.message, names.join(", "));
        if !given.is_empty() {
            d.message = format!("{}; {}", d.message, given.join(", "));
        }
        d
    }

    /// A shell script may interpolate only values that cannot change it: report each variable whose value has a
    /// character the shell treats specially. The script's own text is the plan's: it is not checked.
    fn shell_values_safe(&mut self, raw: &RawValue) -> bool {
        let Scalar::Str(script) = &raw.value else {
            return true;
        };
        let mut safe = true;
        for (name, value) in self.interp.referenced(script) {
            let Err(c) = check_shell_value(&value) else {
                continue;
            };
            safe = false;
            self.diags.push(
                Diagnostic::error(
                    Code::UnsafeShellValue,
                    format!(
                        "`{{{{{name}}}}}` is interpolated into a shell script, and its value `{}` contains {}",
                        self.interp.mask(&value).escape_debug(),
                        describe_char(c)
                    ),
                )
                .at(self.interp.narrow(raw.span, &name), "interpolated into a shell script")
                .help(format!(
                    "a value in a script may use letters, digits, spaces and `/ . _ - + = : , @ % ^`; to pass any \
                     other value, give it to the command as an environment variable (`env \"NAME\" \"{{{{{name}}}}}\"`) \
                     and write \"$NAME\" in the script, or use `command` (an argument vector, no shell)"
                )),
            );
        }
        safe
    }
}

/// `needs "a" "b"`: step names with their spans (resolved once every step is known).
pub fn needs(node: &RawNode, ctx: &mut FieldCtx<'_, '_>) -> Vec<(String, Span)> {
    no_props(node, &[], ctx.diags);
    if node.args.is_empty() {
        ctx.diags.push(missing_argument(node, "`needs` names no step", "write `needs \"build\" \"migrate\"`"));
    }
    node.args
        .iter()
        .filter_map(|a| {
            if let Scalar::Str(s) = &a.value {
                Some((s.clone(), a.span))
            } else {
                ctx.diags.push(wrong_type(a, "a step name", "write step names in double quotes"));
                None
            }
        })
        .collect()
}

pub fn description(node: &RawNode, ctx: &mut FieldCtx<'_, '_>) -> Option<String> {
    no_props(node, &[], ctx.diags);
    let arg = single_arg(node, "`description` needs a text", "write `description \"Build the assets\"`", ctx.diags)?;
    ctx.text(arg, ValueType::String)
}

pub fn timeout(node: &RawNode, ctx: &mut FieldCtx<'_, '_>) -> Option<Duration> {
    no_props(node, &[], ctx.diags);
    let arg = single_arg(node, "`timeout` needs a duration", "write `timeout \"30s\"`", ctx.diags)?;
    match ctx.typed(ValueType::Duration, arg)? {
        Value::Duration(d) if d.is_zero() => {
            ctx.diags.push(
                Diagnostic::error(Code::BadDuration, "a timeout of zero would fail every attempt")
                    .at(arg.span, "zero")
                    .help("give the step time to run, e.g. `timeout \"30s\"`"),
            );
            None
        }
        Value::Duration(d) => Some(d),
        _ => None,
    }
}

/// `retry attempts=3 backoff="500ms" jitter="100ms"`: each property given overrides `retry`'s current value.
pub fn retry(node: &RawNode, retry: &mut Retry, ctx: &mut FieldCtx<'_, '_>) {
    no_props(node, RETRY_PROPS, ctx.diags);
    if let Some(arg) = node.args.first() {
        ctx.diags.push(
            Diagnostic::error(Code::ExtraArgument, "`retry` takes properties, not arguments")
                .at(arg.span, "unexpected argument")
                .help("write `retry attempts=3 backoff=\"500ms\" jitter=\"100ms\"`"),
        );
    }
    if let Some(p) = node.prop("attempts") {
        match ctx.typed(ValueType::Int, &p.value) {
            Some(Value::Int(n)) if let Ok(attempts @ 1..=100) = u32::try_from(n) => retry.attempts = attempts,
            Some(_) => ctx.diags.push(
                Diagnostic::error(Code::BadInt, "`attempts` must be from 1 to 100")
                    .at(p.value.span, "out of range")
                    .help("`attempts` counts every try, the first included: `attempts=1` means no retry"),
            ),
            None => {}
        }
    }
    if let Some(p) = node.prop("backoff")
        && let Some(Value::Duration(d)) = ctx.typed(ValueType::Duration, &p.value)
    {
        retry.backoff = d;
    }
    if let Some(p) = node.prop("jitter")
        && let Some(Value::Duration(d)) = ctx.typed(ValueType::Duration, &p.value)
    {
        retry.jitter = d;
    }
}

/// A kind's field node, checked against its spec.
pub fn field(spec: &FieldSpec, node: &RawNode, ctx: &mut FieldCtx<'_, '_>) -> Option<FieldValue> {
    if node.has_block {
        ctx.diags.push(
            Diagnostic::error(Code::UnexpectedBlock, format!("`{}` takes no `{{ ... }}` block", node.name))
                .at(node.name_span, "has a block")
                .help("write the value as an argument: `name \"value\"`"),
        );
    }
    let value = match spec.ty {
        ValueType::Strings => {
            if node.args.is_empty() {
                ctx.diags.push(missing_argument(
                    node,
                    &format!("`{}` needs at least one value", node.name),
                    &format!("write `{} \"...\"` ({})", node.name, spec.doc),
                ));
                None
            } else {
                let all: Vec<Option<String>> = node.args.iter().map(|a| ctx.text(a, ValueType::Strings)).collect();
                all.into_iter().collect::<Option<Vec<_>>>().map(Value::Strings)
            }
        }
        ValueType::Bool if node.args.is_empty() => Some(Value::Bool(true)),
        ty => match node.args.as_slice() {
            [] if node.props.is_empty() => {
                ctx.diags.push(missing_argument(
                    node,
                    &format!("`{}` needs a value ({})", node.name, type_name(ty)),
                    &format!("write `{} <{}>`: {}", node.name, type_name(ty), spec.doc),
                ));
                None
            }
            [] => None,
            [one, rest @ ..] => {
                if let Some(extra) = rest.first() {
                    ctx.diags.push(
                        Diagnostic::error(Code::ExtraArgument, format!("`{}` takes one value", node.name))
                            .at(extra.span, "extra argument")
                            .help(format!("`{}` is {}: join words into one string", node.name, type_name(ty))),
                    );
                }
                ctx.typed_field(ty, one, !spec.required)
            }
        },
    };
    let props = props(&node.name, spec.props, node, ctx);
    Some(FieldValue { value, props, span: node.span })
}

fn props(field: &str, specs: &[PropSpec], node: &RawNode, ctx: &mut FieldCtx<'_, '_>) -> BTreeMap<String, Value> {
    let names: Vec<&str> = specs.iter().map(|p| p.name).collect();
    no_props(node, &names, ctx.diags);
    let mut out = BTreeMap::new();
    for spec in specs {
        match node.prop(spec.name) {
            Some(p) => {
                if let Some(v) = ctx.typed(spec.ty, &p.value) {
                    out.insert(spec.name.to_owned(), v);
                }
            }
            None => {
                if let Some(default) = spec.default {
                    if let Ok(v) = parse_typed(spec.ty, default) {
                        out.insert(spec.name.to_owned(), v);
                    }
                } else if spec.required {
                    ctx.diags.push(
                        Diagnostic::error(Code::MissingProperty, format!("`{field}` needs `{}=`", spec.name))
                            .at(node.name_span, format!("no `{}=`", spec.name))
                            .help(format!("add `{}=<{}>`: {}", spec.name, type_name(spec.ty), spec.doc)),
                    );
                }
            }
        }
    }
    out
}

/// Unknown properties on a node that accepts `allowed`.
fn no_props(node: &RawNode, allowed: &[&str], diags: &mut Diagnostics) {
    for p in &node.props {
        if !allowed.contains(&p.name.as_str()) {
            diags.push(raw::unknown_property(&node.name, &p.name, p.name_span, allowed));
        }
    }
}

fn single_arg<'n>(node: &'n RawNode, message: &str, help: &str, diags: &mut Diagnostics) -> Option<&'n RawValue> {
    if let Some(extra) = node.args.get(1) {
        diags.push(
            Diagnostic::error(Code::ExtraArgument, format!("`{}` takes one value", node.name))
                .at(extra.span, "extra argument")
                .help(help.to_owned()),
        );
    }
    let arg = node.args.first();
    if arg.is_none() {
        diags.push(missing_argument(node, message, help));
    }
    arg
}

/// `zdd::unknown-field`, with "did you mean" over the kind's fields and the common ones.
pub fn unknown_field(spec: &KindSpec, node: &RawNode) -> Diagnostic {
    let names: Vec<&str> = spec.fields.iter().map(|f| f.name).chain(COMMON_FIELDS.iter().copied()).collect();
    let d = Diagnostic::error(Code::UnknownField, format!("`{}` steps have no field `{}`", spec.name, node.name))
        .at(node.name_span, "unknown field");
    let list = names.join(", ");
    match did_you_mean(&node.name, names.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`? `{}` takes: {list}", spec.name)),
        None => d.help(format!("`{}` takes: {list} (see `zdd kinds {}`)", spec.name, spec.name)),
    }
}

/// Report missing required fields and fill in the defaults of absent ones.
pub fn apply_defaults(
    spec: &KindSpec,
    node: &RawNode,
    name_span: Span,
    fields: &mut Fields,
    ctx: &mut FieldCtx<'_, '_>,
) {
    for f in spec.fields {
        // A kind field named like a common field (`timeout`) can never be written in a step: the common
        // field takes the node. Its default still applies.
        let shadowed = COMMON_FIELDS.contains(&f.name);
        let present = !shadowed && node.children.iter().any(|c| c.name == f.name);
        if present {
            continue;
        }
        if let Some(default) = f.default {
            let raw = RawValue { value: Scalar::Str(default.to_owned()), span: name_span };
            let value = match f.ty {
                ValueType::Strings => ctx.text(&raw, ValueType::Strings).map(|s| Value::Strings(vec![s])),
                ty => ctx.typed(ty, &raw),
            };
            if let Some(value) = value {
                let props = f
                    .props
                    .iter()
                    .filter_map(|p| Some((p.name.to_owned(), parse_typed(p.ty, p.default?).ok()?)))
                    .collect();
                fields.map.insert(f.name.to_owned(), vec![FieldValue { value: Some(value), props, span: name_span }]);
            }
        } else if f.required && !shadowed {
            ctx.diags.push(
                Diagnostic::error(Code::MissingField, format!("`{}` steps need `{}`", spec.name, f.name))
                    .at(name_span, format!("no `{}` in this step", f.name))
                    .help(format!("add `{} <{}>`: {}", f.name, type_name(f.ty), f.doc)),
            );
        }
    }
}
