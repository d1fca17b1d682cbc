//! Variables: defaults from the plan, `ZDD_VAR_<NAME>` from the environment, `--var NAME=VALUE` (wins),
//! runtime values from the engine, and handlebars interpolation (strict: an undefined name is an error).
//!
//! Resolution happens in two phases. First the plan's own variables (and `state-dir`, `slots`) are resolved;
//! their defaults may use other plan variables and `plan_dir`. Then the engine decides the deploy target and
//! the runtime variables (`release`, `slot`, `live_slot`, `live_release`, `state_dir`, `plan_dir`) join them
//! for the step fields.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use handlebars::{Handlebars, RenderErrorReason};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::{VarOrigin, Variable};
use crate::plan::raw::RawValue;
use crate::plan::suggest::did_you_mean;
use crate::source::{FileId, SourceMap, Span};

/// Names the engine fills in for each run; a plan cannot declare them.
pub const RUNTIME_VARS: &[&str] = &["release", "slot", "live_slot", "live_release", "state_dir", "plan_dir"];

/// Variable values given from outside the plan.
#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `--var NAME=VALUE`, as typed.
    pub cli: Vec<String>,
    /// `ZDD_VAR_<NAME>` values, keyed by the upper-cased name.
    pub env: BTreeMap<String, String>,
}

impl VarInputs {
    /// `--var` arguments plus every `ZDD_VAR_*` variable of this process's environment.
    pub fn from_env(cli: Vec<String>) -> Self {
        let env = std::env::vars().filter_map(|(k, v)| k.strip_prefix("ZDD_VAR_").map(|n| (n.to_owned(), v))).collect();
        Self { cli, env }
    }

    /// Only `--var` arguments (tests, examples: the environment is ignored).
    pub fn cli(cli: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { cli: cli.into_iter().map(Into::into).collect(), env: BTreeMap::new() }
    }
}

/// One `var` node, as found while walking the plan and its includes.
#[derive(Debug, Clone)]
pub struct VarDecl {
    pub name: String,
    /// The span of the name argument.
    pub name_span: Span,
    pub default: Option<RawValue>,
    pub secret: bool,
    pub doc: Option<String>,
    /// How deep in the include tree the declaring file is (the main file is 0): shallower wins.
    pub depth: usize,
    pub file: FileId,
}

/// Is `name` usable as a variable name (and in `ZDD_VAR_<NAME>`)?
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Pick the winning declaration of each name: the shallowest file wins; twice in one file (or at the same
/// depth in two files) is an error. Returns the winners in declaration order.
pub fn pick_declarations(decls: Vec<VarDecl>, diags: &mut Diagnostics) -> Vec<VarDecl> {
    let mut winners: Vec<VarDecl> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for decl in decls {
        if RUNTIME_VARS.contains(&decl.name.as_str()) {
            diags.push(
                Diagnostic::error(Code::ReservedVar, format!("`{}` is a runtime variable", decl.name))
                    .at(decl.name_span, "reserved name")
                    .help(format!(
                        "the engine sets {} for each run; use `{{{{{}}}}}` without declaring it, or pick another name",
                        RUNTIME_VARS.join(", "),
                        decl.name
                    )),
            );
            continue;
        }
        if !valid_name(&decl.name) {
            diags.push(
                Diagnostic::error(Code::BadVarName, format!("`{}` is not a valid variable name", decl.name))
                    .at(decl.name_span, "invalid name")
                    .help("use letters, digits and `_`, starting with a letter (it also names ZDD_VAR_<NAME>)"),
            );
            continue;
        }
        match index.get(&decl.name) {
            None => {
                index.insert(decl.name.clone(), winners.len());
                winners.push(decl);
            }
            Some(&i) => {
                let first = &winners[i];
                if first.file == decl.file || first.depth == decl.depth {
                    diags.push(
                        Diagnostic::error(Code::DuplicateVar, format!("variable `{}` is declared twice", decl.name))
                            .at(decl.name_span, "declared again here")
                            .related(first.name_span, "first declared here")
                            .help("remove one of the declarations (a file that includes another may override it)"),
                    );
                } else if decl.depth < first.depth {
                    winners[i] = decl;
                }
            }
        }
    }
    winners
}

/// Handlebars set up for plan strings: strict (an undefined name is an error), no HTML escaping.
pub fn handlebars() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb
}

/// Interpolates `{{name}}` in plan strings against a set of variables.
pub struct Interpolator<'a> {
    hb: Handlebars<'static>,
    values: serde_json::Map<String, serde_json::Value>,
    /// `values` as handlebars data, built once per change rather than for every string.
    context: std::cell::OnceCell<handlebars::Context>,
    sources: &'a SourceMap,
    /// Names that exist but are not usable here, with the reason (runtime variables in a `var` default).
    unavailable: Vec<(&'static str, &'static str)>,
    /// Values never to show in a diagnostic.
    secrets: Vec<String>,
    /// Where each plan variable's value came from, for diagnostics about a value it helped make.
    provenance: HashMap<String, Provenance>,
}

/// Where a variable's value came from: a default written in a file (its text, which may use other variables),
/// `--var` or the environment.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub origin: VarOrigin,
    /// The default as written (`http://127.0.0.1:{{listen}}`), for a default.
    pub template: Option<String>,
    /// The default's place, or the declaration's for a value given from outside.
    pub span: Span,
}

impl<'a> Interpolator<'a> {
    pub fn new(sources: &'a SourceMap) -> Self {
        Self {
            hb: handlebars(),
            values: serde_json::Map::new(),
            context: std::cell::OnceCell::new(),
            sources,
            unavailable: Vec::new(),
            secrets: Vec::new(),
            provenance: HashMap::new(),
        }
    }

    /// Remember where `name`'s value came from.
    pub fn set_provenance(&mut self, name: impl Into<String>, provenance: Provenance) {
        self.provenance.insert(name.into(), provenance);
    }

    /// The variables that made `text`'s value, transitively through the defaults that use other variables, in
    /// order of first use: each with its value and where it came from. Runtime variables have no provenance and
    /// are listed with their value only.
    pub fn provenance_of(&self, text: &str) -> Vec<(String, String, Option<&Provenance>)> {
        let mut out: Vec<(String, String, Option<&Provenance>)> = Vec::new();
        let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::from([text.to_owned()]);
        while let Some(text) = queue.pop_front() {
            for (name, value) in self.referenced(&text) {
                if out.iter().any(|(n, _, _)| *n == name) {
                    continue;
                }
                let provenance = self.provenance.get(&name);
                if let Some(template) = provenance.and_then(|p| p.template.as_ref()) {
                    queue.push_back(template.clone());
                }
                out.push((name, value, provenance));
            }
        }
        out
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), serde_json::Value::String(value.into()));
        self.context = std::cell::OnceCell::new();
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Mark a name as existing but not available in this phase, with why.
    pub fn unavailable(&mut self, name: &'static str, why: &'static str) {
        self.unavailable.push((name, why));
    }

    /// Every name is usable from now on (the runtime variables have been set).
    pub fn clear_unavailable(&mut self) {
        self.unavailable.clear();
    }

    /// Remember a secret value: [`Self::mask`] hides it.
    pub fn secret(&mut self, value: String) {
        if !value.is_empty() {
            self.secrets.push(value);
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret value replaced by `***` (for messages that quote an interpolated value).
    pub fn mask(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// Interpolate `text` (written at `span`). On an undefined name, the diagnostic names it and points at it.
    pub fn render(&self, text: &str, span: Span) -> Result<String, Box<Diagnostic>> {
        self.render_missing(text, span).map_err(|e| Box::new(e.0))
    }

    /// Like [`Self::render`], but also returns the missing name (if that was the problem).
    pub fn render_missing(&self, text: &str, span: Span) -> Result<String, Box<(Diagnostic, Option<String>)>> {
        if !text.contains("{{") {
            return Ok(text.to_owned());
        }
        match self.substitute_plain(text) {
            Some(Ok(s)) => return Ok(s),
            Some(Err(name)) => {
                let d = self.undefined(&name, span);
                return Err(Box::new((d, Some(name))));
            }
            None => {}
        }
        let context =
            self.context.get_or_init(|| handlebars::Context::from(serde_json::Value::Object(self.values.clone())));
        match self.hb.render_template_with_context(text, context) {
            Ok(s) => Ok(s),
            Err(e) => match e.reason() {
                RenderErrorReason::MissingVariable(Some(path)) => {
                    let name = path.split(['.', '/', '[']).next().unwrap_or(path).to_owned();
                    Err(Box::new((self.undefined(&name, span), Some(name))))
                }
                _ => Err(Box::new((
                    Diagnostic::error(Code::BadTemplate, format!("cannot interpolate this string: {}", e.reason()))
                        .at(span, "here")
                        .help("write variables as `{{name}}`; a literal `{{` is written `\\{{`"),
                    None,
                ))),
            },
        }
    }

    /// The common case without handlebars: a string whose only templates are plain `{{name}}`s. Gives the
    /// same result as handlebars (strict, no escaping) and is much cheaper for large plans. `None` when the
    /// string uses anything else (helpers, blocks, escapes, whitespace control): handlebars renders those.
    fn substitute_plain(&self, text: &str) -> Option<Result<String, String>> {
        if text.contains("\\{{") || text.contains("{{{") {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after.find("}}")?;
            let name = after[..close].trim();
            if !valid_name(name) {
                return None;
            }
            match self.values.get(name) {
                Some(serde_json::Value::String(v)) => out.push_str(v),
                Some(_) => return None,
                None => return Some(Err(name.to_owned())),
            }
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return None;
        }
        out.push_str(rest);
        Some(Ok(out))
    }

    fn undefined(&self, name: &str, span: Span) -> Diagnostic {
        let span = self.narrow(span, name);
        if let Some((_, why)) = self.unavailable.iter().find(|(n, _)| *n == name) {
            return Diagnostic::error(Code::UndefinedVar, format!("variable `{name}` is not available here"))
                .at(span, "not available here")
                .help(*why);
        }
        let d = Diagnostic::error(Code::UndefinedVar, format!("undefined variable `{name}`")).at(span, "not defined");
        let names = self.values.keys().map(String::as_str);
        match did_you_mean(name, names) {
            Some(s) => d.help(format!("did you mean `{s}`? Or declare it: `var \"{name}\" \"value\"`")),
            None => d.help(format!(
                "declare it with `var \"{name}\" \"value\"`; runtime variables are {}",
                RUNTIME_VARS.join(", ")
            )),
        }
    }

    /// The variables `text` interpolates, with their values, in order of first use (for checks on what a
    /// template lets in). Names inside helper expressions (`{{#if name}}`) count too.
    pub fn referenced(&self, text: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else { break };
            for word in after[..close].split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(serde_json::Value::String(value)) = self.values.get(word)
                    && !out.iter().any(|(n, _)| n == word)
                {
                    out.push((word.to_owned(), value.clone()));
                }
            }
            rest = &after[close + 2..];
        }
        out
    }

    /// Point at `{{name` inside the string when it can be found in the source, else at the whole string.
    pub fn narrow(&self, span: Span, name: &str) -> Span {
        let Some(file) = self.sources.get(span.file) else {
            return span;
        };
        let Some(src) = file.text.get(span.offset..span.offset + span.len) else {
            return span;
        };
        let mut from = 0;
        while let Some(i) = src[from..].find("{{") {
            let start = from + i;
            let inner = src[start + 2..].trim_start();
            if inner.starts_with(name) {
                let end = src[start..].find("}}").map_or(src.len(), |j| start + j + 2);
                return Span::new(span.file, span.offset + start, end - start);
            }
            from = start + 2;
        }
        span
    }
}

/// Resolve the plan's variables: `--var` > `ZDD_VAR_<NAME>` > default (interpolated against the others).
/// `plan_dir` is the only runtime value a default may use. Adds every resolved variable to `interp`.
// Given values, then defaults resolved to a fixed point, then what is left reported: one pass, best read whole.
#[allow(clippy::too_many_lines)]
pub fn resolve(
    decls: &[VarDecl],
    inputs: &VarInputs,
    interp: &mut Interpolator<'_>,
    diags: &mut Diagnostics,
) -> Vec<Variable> {
    let mut given: HashMap<String, (String, VarOrigin)> = HashMap::new();
    for (name, value) in &inputs.env {
        if let Some(d) = decls.iter().find(|d| d.name.to_ascii_uppercase() == *name) {
            given.insert(d.name.clone(), (value.clone(), VarOrigin::Env));
        }
    }
    for arg in &inputs.cli {
        let Some((name, value)) = arg.split_once('=') else {
            diags.push(
                Diagnostic::error(Code::BadVarArg, format!("`--var {arg}` is not NAME=VALUE"))
                    .help("write `--var name=value`, e.g. `--var app=shop`"),
            );
            continue;
        };
        if !decls.iter().any(|d| d.name == name) {
            let d = Diagnostic::error(Code::UnknownVar, format!("`--var {name}=...` names no variable of the plan"));
            let declared = decls.iter().map(|d| d.name.as_str());
            diags.push(match did_you_mean(name, declared) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if decls.is_empty() => d.help("the plan declares no variables"),
                None => d.help(format!(
                    "the plan declares: {}",
                    decls.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
                )),
            });
            continue;
        }
        given.insert(name.to_owned(), (value.to_owned(), VarOrigin::Cli));
    }

    for (name, (value, origin)) in &given {
        interp.set(name.clone(), value.clone());
        if let Some(d) = decls.iter().find(|d| d.name == *name) {
            interp
                .set_provenance(name.clone(), Provenance { origin: origin.clone(), template: None, span: d.name_span });
        }
    }
    for name in RUNTIME_VARS.iter().filter(|n| **n != "plan_dir") {
        interp.unavailable(
            name,
            "runtime variables (other than plan_dir) are set per run: use them in step fields, not in `var` defaults",
        );
    }

    // Defaults may refer to other variables in any order: resolve until nothing more can be.
    let mut values: HashMap<String, String> = given.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
    let mut pending: Vec<&VarDecl> = decls.iter().filter(|d| !values.contains_key(&d.name)).collect();
    let mut failures: HashMap<String, Diagnostic> = HashMap::new();
    loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for decl in pending {
            let Some(default) = &decl.default else {
                failures.insert(decl.name.clone(), no_value(decl));
                continue;
            };
            let Some(text) = default.value.text() else {
                failures.insert(
                    decl.name.clone(),
                    Diagnostic::error(Code::WrongType, format!("the default of `{}` is #null", decl.name))
                        .at(default.span, "not a value")
                        .help("give a string, or leave the default out to require a value"),
                );
                continue;
            };
            match interp.render_missing(&text, default.span) {
                Ok(v) => {
                    let v = clean_path(&v);
                    interp.set(decl.name.clone(), v.clone());
                    interp.set_provenance(
                        decl.name.clone(),
                        Provenance { origin: VarOrigin::Default, template: Some(text.clone()), span: default.span },
                    );
                    values.insert(decl.name.clone(), v);
                    progressed = true;
                }
                Err(e) => {
                    let (d, missing) = *e;
                    let waits = missing.is_some_and(|m| decls.iter().any(|o| o.name == m && !values.contains_key(&m)));
                    if waits {
                        still.push(decl);
                    } else {
                        failures.insert(decl.name.clone(), d);
                    }
                }
            }
        }
        pending = still;
        if !progressed || pending.is_empty() {
            break;
        }
    }
    for decl in pending {
        let span = decl.default.as_ref().map_or(decl.name_span, |d| d.span);
        failures.entry(decl.name.clone()).or_insert_with(|| {
            Diagnostic::error(Code::VarCycle, format!("the default of `{}` depends on itself", decl.name))
                .at(span, "refers back to this variable")
                .help("variables' defaults refer to each other in a circle: give one of them a plain value")
        });
    }
    let mut failed: Vec<_> = failures.into_values().collect();
    failed.sort_by_key(|d| d.span.map(|s| (s.file, s.offset)));
    for d in failed {
        diags.push(d);
    }

    decls
        .iter()
        .filter_map(|d| {
            let value = values.get(&d.name)?.clone();
            let origin = given.get(&d.name).map_or(VarOrigin::Default, |(_, o)| o.clone());
            Some(Variable {
                name: d.name.clone(),
                value,
                secret: d.secret,
                origin,
                doc: d.doc.clone(),
                span: Some(d.name_span),
            })
        })
        .collect()
}

fn no_value(decl: &VarDecl) -> Diagnostic {
    Diagnostic::error(Code::VarNoValue, format!("variable `{}` has no value", decl.name))
        .at(decl.name_span, "declared without a default")
        .help(format!(
            "give it one with `--var {}=VALUE` or the environment variable ZDD_VAR_{}, or add a default: `var \"{}\" \"value\"`",
            decl.name,
            decl.name.to_ascii_uppercase(),
            decl.name
        ))
}

/// The runtime variables' values for one run.
pub fn runtime_variables(
    target: &crate::kind::DeployTarget,
    state_dir: &std::path::Path,
    plan_dir: &std::path::Path,
) -> Vec<Variable> {
    let rt = |name: &str, value: String| Variable {
        name: name.to_owned(),
        value,
        secret: false,
        origin: VarOrigin::Runtime,
        doc: None,
        span: None,
    };
    vec![
        rt("release", target.release.clone()),
        rt("slot", target.slot.clone()),
        rt("live_slot", target.live_slot.clone().unwrap_or_default()),
        rt("live_release", target.live_release.clone().unwrap_or_default()),
        rt("state_dir", state_dir.display().to_string()),
        rt("plan_dir", plan_dir.display().to_string()),
    ]
}

/// `plan_dir` as a string (the directory of the main plan file).
pub fn plan_dir_string(base_dir: &std::path::Path) -> String {
    let s = base_dir.display().to_string();
    if s.is_empty() { ".".to_owned() } else { s }
}

/// Resolve `state_dir`: `--state-dir`, else the plan's `state-dir`, else `/var/lib/zdd/<plan>`.
pub fn state_dir(cli: Option<&PathBuf>, plan: Option<&PathBuf>, base_dir: &std::path::Path, name: &str) -> PathBuf {
    match (cli, plan) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if p.is_absolute() => crate::plan::load::normalize(p),
        (None, Some(p)) => crate::plan::load::normalize(&base_dir.join(p)),
        (None, None) => PathBuf::from("/var/lib/zdd").join(name),
    }
}

/// A variable's value that is one absolute path, with `.` and `..` resolved by name (`/srv/plans/../app` is
/// `/srv/app`), so previews, messages and the files zdd writes show the path a person would write. Such values
/// are mostly `{{plan_dir}}/..`, and `plan_dir` is the working directory's physical path, so the parent by
/// name is the real parent. Anything else (several words, a URL, a relative path) is left as it is.
pub fn clean_path(value: &str) -> String {
    let single_path = value.starts_with('/') && !value.contains(char::is_whitespace);
    let needs_cleaning =
        value.contains("/./") || value.contains("/../") || value.ends_with("/..") || value.ends_with("/.");
    if single_path && needs_cleaning {
        let cleaned = crate::plan::load::normalize(std::path::Path::new(value)).display().to_string();
        // Keep a trailing slash (`static_url`-like values and directories written as `dir/`).
        if value.ends_with('/') && !cleaned.ends_with('/') { format!("{cleaned}/") } else { cleaned }
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::raw::Scalar;

    fn decl(name: &str, default: Option<&str>, depth: usize, file: u32, at: usize) -> VarDecl {
        let span = Span::new(FileId(file), at, name.len());
        VarDecl {
            name: name.to_owned(),
            name_span: span,
            default: default.map(|d| RawValue { value: Scalar::Str(d.to_owned()), span }),
            secret: false,
            doc: None,
            depth,
            file: FileId(file),
        }
    }

    fn resolve_all(decls: &[VarDecl], inputs: &VarInputs) -> (Vec<Variable>, Diagnostics) {
        let sources = SourceMap::new();
        let mut interp = Interpolator::new(&sources);
        interp.set("plan_dir", "/p");
        let mut diags = Diagnostics::new();
        let vars = resolve(decls, inputs, &mut interp, &mut diags);
        (vars, diags)
    }

    #[test]
    fn absolute_paths_in_values_are_cleaned_by_name() {
        assert_eq!(clean_path("/work/zdd/plans/../.zdd/demo"), "/work/zdd/.zdd/demo");
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(clean_path("/a/b/.."), "/a");
        // Not one absolute path: left alone.
        assert_eq!(clean_path("nginx -p /a/../b"), "nginx -p /a/../b");
        assert_eq!(clean_path("../shared"), "../shared");
        assert_eq!(clean_path("http://x/a/../b"), "http://x/a/../b");
    }

    fn value<'a>(vars: &'a [Variable], name: &str) -> (&'a str, VarOrigin) {
        let v = vars.iter().find(|v| v.name == name).unwrap();
        (v.value.as_str(), v.origin.clone())
    }

    #[test]
    fn cli_beats_env_beats_default() {
        let decls = [decl("a", Some("da"), 0, 0, 0), decl("b", Some("db"), 0, 0, 10), decl("c", Some("dc"), 0, 0, 20)];
        let mut inputs = VarInputs::cli(["a=cli"]);
        inputs.env.insert("A".into(), "env".into());
        inputs.env.insert("B".into(), "env".into());
        let (vars, diags) = resolve_all(&decls, &inputs);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(value(&vars, "a"), ("cli", VarOrigin::Cli));
        assert_eq!(value(&vars, "b"), ("env", VarOrigin::Env));
        assert_eq!(value(&vars, "c"), ("dc", VarOrigin::Default));
    }

    #[test]
    fn defaults_refer_to_other_variables_in_any_order() {
        let decls = [
            decl("root", Some("{{base}}/{{app}}"), 0, 0, 0),
            decl("app", Some("shop"), 0, 0, 10),
            decl("base", Some("{{plan_dir}}/srv"), 0, 0, 20),
        ];
        let (vars, diags) = resolve_all(&decls, &VarInputs::default());
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(value(&vars, "root").0, "/p/srv/shop");
    }

    #[test]
    fn includer_wins_and_duplicates_in_one_file_are_errors() {
        let mut diags = Diagnostics::new();
        let picked = pick_declarations(
            vec![
                decl("x", Some("included"), 1, 1, 0),
                decl("x", Some("main"), 0, 0, 5),
                decl("y", None, 0, 0, 9),
                decl("y", None, 0, 0, 12),
            ],
            &mut diags,
        );
        assert_eq!(picked.len(), 2);
        assert_eq!(picked[0].default.as_ref().unwrap().value, Scalar::Str("main".into()));
        assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), [Code::DuplicateVar]);
    }

    #[test]
    fn missing_value_cycle_and_bad_cli_are_reported() {
        let decls = [decl("key", None, 0, 0, 0), decl("a", Some("{{b}}"), 0, 0, 5), decl("b", Some("{{a}}"), 0, 0, 9)];
        let inputs = VarInputs::cli(["nonsense", "kye=1"]);
        let (_, diags) = resolve_all(&decls, &inputs);
        let mut codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        codes.sort_unstable();
        assert_eq!(codes, [Code::BadVarArg, Code::UnknownVar, Code::VarCycle, Code::VarCycle, Code::VarNoValue]);
        let unknown = diags.iter().find(|d| d.code == Code::UnknownVar).unwrap();
        assert!(unknown.span.is_none());
        assert!(unknown.help.as_deref().unwrap().contains("`key`"), "{:?}", unknown.help);
    }

    #[test]
    fn runtime_variables_are_reserved_and_unavailable_in_defaults() {
        let mut diags = Diagnostics::new();
        let picked = pick_declarations(vec![decl("release", Some("x"), 0, 0, 0)], &mut diags);
        assert!(picked.is_empty());
        assert_eq!(diags.iter().next().unwrap().code, Code::ReservedVar);
        let (_, diags) = resolve_all(&[decl("d", Some("/r/{{release}}"), 0, 0, 0)], &VarInputs::default());
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::UndefinedVar);
        assert!(d.message.contains("not available"));
    }

    #[test]
    fn plain_substitution_matches_handlebars() {
        let sources = SourceMap::new();
        let mut interp = Interpolator::new(&sources);
        interp.set("a", "<x & 'y'>");
        interp.set("b", "2");
        let span = Span::new(FileId(0), 0, 0);
        for text in ["{{a}}/{{ b }}", "x{{a}}y", "{{#if b}}yes{{/if}}", "\\{{a}} {{b}}", "{{~a}}", "a }} b {{b}}"] {
            let fast = interp.substitute_plain(text);
            let hb = interp.hb.render_template(text, &interp.values).ok();
            if let Some(fast) = fast {
                assert_eq!(fast.ok(), hb, "{text}");
            }
        }
        assert_eq!(interp.substitute_plain("{{nope}}"), Some(Err("nope".to_owned())));
        assert!(interp.render("{{#if b}}yes{{/if}}", span).is_ok());
    }

    #[test]
    fn interpolation_does_not_escape_html() {
        let sources = SourceMap::new();
        let mut interp = Interpolator::new(&sources);
        interp.set("a", "<&'\">");
        assert_eq!(interp.render("x {{a}} y", Span::new(FileId(0), 0, 0)).unwrap(), "x <&'\"> y");
    }
}
