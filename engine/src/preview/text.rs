//! The preview as text for a person: header, variables, the preflight's findings, steps wave by wave (commands, file diffs, links,
//! checks, undo), then the rollback order. Colour (diff lines only) when asked.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ActionPreview, FileStatus, PlanPreview, StepPreview};
use crate::kind::PlannedAction;
use crate::plan::VarOrigin;
use crate::schema::Effect;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Render the preview for a terminal (`color`) or a log.
pub fn render_text(p: &PlanPreview, color: bool) -> String {
    let mut out = String::new();
    let t = &p.target;
    let live = match (&t.live_slot, &t.live_release) {
        (Some(slot), Some(release)) if !slot.is_empty() => {
            format!("live now: release {release} in slot {slot}")
        }
        _ => "first deploy: nothing live yet".to_owned(),
    };
    let _ = writeln!(out, "Plan `{}`: release {} into slot {} ({live})", p.plan, t.release, t.slot);
    let _ = writeln!(out, "State directory: {}", p.state_dir.display());
    let _ = writeln!(out, "Nothing below has been done: this is a preview.\n");

    let _ = writeln!(out, "Variables:");
    let width = p.variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in &p.variables {
        let origin = match v.origin {
            VarOrigin::Default => "default",
            VarOrigin::Env => "environment",
            VarOrigin::Cli => "--var",
            VarOrigin::Runtime => "runtime",
        };
        let _ = writeln!(out, "  {:width$} = {}  ({origin})", v.name, shown(&v.value));
    }

    if p.preflight.findings.is_empty() {
        let _ = writeln!(out, "\nPreflight (the run checks it again before its first step): nothing missing");
    } else {
        let errors = p.preflight.errors();
        let verdict = if errors > 0 {
            format!("{errors} problem{} would stop the run before it changes anything", plural(errors))
        } else {
            "warnings only".to_owned()
        };
        let _ = writeln!(out, "\nPreflight (the run checks it again before its first step): {verdict}");
        out.push_str(&p.preflight.render("  "));
    }

    let total: usize = p.waves.iter().map(Vec::len).sum();
    let _ = writeln!(out, "\nSteps ({total}, in {} wave{}):", p.waves.len(), plural(p.waves.len()));
    for (i, wave) in p.waves.iter().enumerate() {
        let together = if wave.len() > 1 { format!(", {} steps in parallel", wave.len()) } else { String::new() };
        let _ = writeln!(out, "\n── wave {}{together}", i + 1);
        for step in wave {
            step_text(&mut out, step, color);
        }
    }

    let _ = writeln!(
        out,
        "\nIf a step fails, the rollback undoes the steps that ran, in this order (a step after every step that \
         needs it; steps with the same number are undone at the same time):"
    );
    let mut n = 0;
    let mut read_only = Vec::new();
    let mut numbers: Vec<usize> = Vec::new();
    for r in &p.rollback {
        match r.effect {
            Effect::Reversible => {
                n += 1;
                // Number the undo waves that undo something 1, 2, 3... in the order they run.
                if numbers.last() != Some(&r.wave) {
                    numbers.push(r.wave);
                }
                let how = r.undo.iter().map(action_words).collect::<Vec<_>>().join("; ");
                let how = if how.is_empty() { "undo recorded at run time".to_owned() } else { how };
                let _ = writeln!(out, "  {}. {}: {how}", numbers.len(), r.step);
            }
            Effect::ForwardOnly => {
                let _ = writeln!(out, "  -  {}: forward-only, not undone", r.step);
            }
            Effect::ReadOnly => read_only.push(r.step.as_str()),
        }
    }
    if n == 0 {
        let _ = writeln!(out, "  (no step changes anything that can be undone)");
    }
    if !read_only.is_empty() {
        let _ = writeln!(out, "  Read-only, nothing to undo: {}", read_only.join(", "));
    }
    out
}

fn step_text(out: &mut String, s: &StepPreview, color: bool) {
    let about = s.description.as_ref().map_or_else(String::new, |d| format!(" — {d}"));
    let on = s.host.as_ref().map_or_else(String::new, |h| format!(" on {h}"));
    let _ = writeln!(out, "  ● {} [{}]{on}{about}", s.name, s.kind);
    if !s.needs.is_empty() {
        let _ = writeln!(out, "      needs: {}", s.needs.join(", "));
    }
    let attempts = if s.attempts > 1 { format!(", up to {} attempts", s.attempts) } else { String::new() };
    let _ = writeln!(out, "      timeout {}{attempts}", duration(s.timeout_ms));
    if let Some(e) = &s.error {
        let _ = writeln!(out, "      cannot preview: {e}");
    }
    for a in &s.actions {
        action_text(out, a, color);
    }
    for c in &s.checks {
        let _ = writeln!(out, "      check: {c}");
    }
    match s.effect {
        Effect::ReadOnly => {
            let _ = writeln!(out, "      read-only: nothing to undo");
        }
        Effect::ForwardOnly => {
            let _ = writeln!(out, "      forward-only: not undone");
        }
        Effect::Reversible if s.undo.is_empty() => {
            let _ = writeln!(out, "      undo: from facts recorded at run time");
        }
        Effect::Reversible => {
            for u in &s.undo {
                lines_under(out, "      ", &format!("undo: {}", action_words(u)));
            }
        }
    }
}

fn action_text(out: &mut String, a: &ActionPreview, color: bool) {
    match (&a.action, a.file) {
        (PlannedAction::Write { path, mode, .. }, Some(status)) => {
            let what = match status {
                FileStatus::New => "new file",
                FileStatus::Changed => "changed",
                FileStatus::Unchanged => "unchanged",
                FileStatus::Unreadable => "cannot read what is there now",
            };
            let _ = writeln!(out, "      write {} ({what}, mode {mode:04o})", path.display());
            if let Some(error) = &a.error {
                let _ = writeln!(out, "        ({error}; the whole new content follows)");
            }
            for line in a.diff.as_deref().unwrap_or_default().lines() {
                let painted = match line.chars().next() {
                    _ if !color => line.to_owned(),
                    Some('+') if !line.starts_with("+++") => format!("{GREEN}{line}{RESET}"),
                    Some('-') if !line.starts_with("---") => format!("{RED}{line}{RESET}"),
                    Some('@') => format!("{CYAN}{line}{RESET}"),
                    _ => line.to_owned(),
                };
                let _ = writeln!(out, "        {painted}");
            }
        }
        (action, _) => lines_under(out, "      ", &action_words(action)),
    }
}

/// Write `text` at `indent`, its further lines (a multi-line script) aligned under its first word's text, so
/// they read as part of the step: `run: set -eu` then `     mkdir ...` under `set`.
fn lines_under(out: &mut String, indent: &str, text: &str) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let _ = writeln!(out, "{indent}{first}");
    let hang = first.find(": ").map_or(2, |i| i + 2);
    for line in lines {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{indent}{:hang$}{line}", "");
        }
    }
}

/// An action in a few words.
pub(super) fn action_words(a: &PlannedAction) -> String {
    match a {
        PlannedAction::Run { command } => format!("run: {command}"),
        PlannedAction::Write { path, .. } => format!("write {}", path.display()),
        PlannedAction::Link { link, target } => {
            format!("link {} -> {}", link.display(), target.display())
        }
        PlannedAction::Remove { path } => format!("remove {}", path.display()),
        PlannedAction::Http { description } => format!("http: {description}"),
        PlannedAction::Note { text } => text.clone(),
    }
}

fn shown(value: &str) -> String {
    if value.is_empty() { "\"\"".to_owned() } else { value.to_owned() }
}

fn duration(ms: u128) -> String {
    let d = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    match d.as_millis() {
        ms if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::lines_under;

    #[test]
    fn a_multi_line_script_stays_under_its_step() {
        let mut out = String::new();
        lines_under(&mut out, "      ", "run: set -eu\nmkdir -p /srv/a\n\nif true; then\n    echo ok\nfi");
        insta::assert_snapshot!(out, @r"
              run: set -eu
                   mkdir -p /srv/a

                   if true; then
                       echo ok
                   fi
        ");
    }
}
