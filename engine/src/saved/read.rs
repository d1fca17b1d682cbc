//! Reading a saved plan's file: telling it from a plan file, and every way it can be unreadable (not JSON, cut
//! short, not a saved plan, a newer format, a missing field) as a diagnostic pointing into the file.
//!
//! A saved plan is recognised by its content, not its name: a file whose first character (after white space) is
//! `{`. No KDL document starts with `{`, so a plan file is never taken for a saved plan, and a saved plan that
//! was cut or edited is reported as one, not as a KDL syntax error.

use std::path::Path;

use crate::ZDD_VERSION;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::saved::{FORMAT, KIND, SavedPlan};
use crate::source::{SourceMap, Span};

/// Is this text meant to be a saved plan (rather than a plan file)?
pub fn looks_saved(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// The saved plan in `text` (read from `path`), or why it cannot be applied, pointing into it.
pub fn parse(path: &Path, text: &str) -> Result<SavedPlan, (Diagnostics, SourceMap)> {
    let mut sources = SourceMap::new();
    let file = sources.add(path.display().to_string(), path, text);
    let shown = path.display();
    let fail = |diagnostic: Diagnostic, sources: SourceMap| {
        let mut diags = Diagnostics::new();
        diags.push(diagnostic);
        Err((diags, sources))
    };
    let remake = "a saved plan is the file `zdd plan PLAN --out FILE` wrote, unchanged: make it again";
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let what = if e.is_eof() { "it ends too soon (cut short?)" } else { "it is not valid JSON" };
            return fail(
                Diagnostic::error(Code::SavedPlanInvalid, format!("cannot read the saved plan {shown}: {what}"))
                    .at(at(file, text, &e), strip_position(&e))
                    .help(remake),
                sources,
            );
        }
    };
    let start = Span::new(file, text.len() - text.trim_start().len(), 1);
    if value.get("zdd").and_then(serde_json::Value::as_str) != Some(KIND) {
        return fail(
            Diagnostic::error(Code::SavedPlanInvalid, format!("{shown} is JSON but not a saved plan"))
                .at(start, format!("no \"zdd\": \"{KIND}\" here"))
                .help(remake),
            sources,
        );
    }
    let format_span = crate::format::format_field(text).map_or(start, |(offset, len)| Span::new(file, offset, len));
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(f) if f <= u64::from(FORMAT) => {}
        Some(f) => {
            let writer = value.get("written_by").and_then(serde_json::Value::as_str).unwrap_or("a newer zdd");
            return fail(
                Diagnostic::error(
                    Code::SavedPlanNewer,
                    format!(
                        "{shown} is a saved plan in format {f}, written by {writer}; this zdd ({ZDD_VERSION}) reads \
                         saved plans up to format {FORMAT}"
                    ),
                )
                .at(format_span, format!("format {f}"))
                .help(format!("apply it with {writer} or later, or make the plan again with this zdd")),
                sources,
            );
        }
        None => {
            return fail(
                Diagnostic::error(Code::SavedPlanInvalid, format!("the saved plan {shown} has no format number"))
                    .at(format_span, "\"format\" must be a whole number")
                    .help(remake),
                sources,
            );
        }
    }
    match serde_json::from_str::<SavedPlan>(text) {
        Ok(saved) => Ok(saved),
        Err(e) => fail(
            Diagnostic::error(Code::SavedPlanInvalid, format!("the saved plan {shown} is incomplete or was edited"))
                .at(at(file, text, &e), strip_position(&e))
                .help(remake),
            sources,
        ),
    }
}

/// serde's message without its `at line L column C` (the span shows where).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Where serde found the problem, as a span of one character (or none, at the end).
fn at(file: crate::source::FileId, text: &str, e: &serde_json::Error) -> Span {
    let line_start: usize = text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum();
    let line = &text[line_start.min(text.len())..];
    let line = line.split('\n').next().unwrap_or("");
    // serde counts the column in bytes, the one it stopped at; 0 before the line's first.
    let column = e.column().saturating_sub(1).min(line.len());
    let offset = line_start + column;
    let len = usize::from(offset < text.len() && !text[offset..].starts_with('\n'));
    Span::new(file, offset, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(text: &str) -> String {
        let (diags, sources) = parse(Path::new("/ci/deploy.plan.json"), text).unwrap_err();
        diags.render(&sources, false)
    }

    #[test]
    fn only_text_starting_with_a_brace_is_taken_for_a_saved_plan() {
        assert!(looks_saved("  \n{\"zdd\": \"saved-plan\"}"));
        assert!(!looks_saved("plan \"shop\"\n"));
        assert!(!looks_saved(""));
    }

    #[test]
    fn a_cut_file_is_located_at_its_end() {
        let out = rendered("{\n  \"zdd\": \"saved-plan\",\n  \"format\": 1,\n  \"plan\": \"sh");
        assert!(out.contains("zdd::saved-plan-invalid"), "{out}");
        assert!(out.contains("it ends too soon"), "{out}");
        assert!(out.contains("/ci/deploy.plan.json:4:"), "{out}");
    }

    #[test]
    fn text_that_is_not_json_is_located_where_reading_stopped() {
        let out = rendered("{\n  \"zdd\": \"saved-plan\",\n  format: 1\n}");
        assert!(out.contains("it is not valid JSON"), "{out}");
        assert!(out.contains("key must be a string"), "{out}");
        assert!(out.contains("/ci/deploy.plan.json:3:3"), "{out}");
    }

    #[test]
    fn json_of_something_else_is_not_a_saved_plan() {
        let out = rendered("{\"format\": 2, \"live\": null}");
        assert!(out.contains("is JSON but not a saved plan"), "{out}");
    }

    #[test]
    fn a_newer_format_points_at_its_format() {
        let out = rendered("{\n  \"zdd\": \"saved-plan\",\n  \"format\": 7,\n  \"written_by\": \"zdd 9.0.0\"\n}");
        assert!(out.contains("zdd::saved-plan-newer"), "{out}");
        assert!(out.contains("written by zdd 9.0.0"), "{out}");
        assert!(out.contains("/ci/deploy.plan.json:3:3"), "{out}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let out = rendered("{\"zdd\": \"saved-plan\", \"format\": 1, \"written_by\": \"zdd 0.1.0\"}");
        assert!(out.contains("incomplete or was edited"), "{out}");
        assert!(out.contains("missing field"), "{out}");
    }
}
