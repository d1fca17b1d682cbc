//! The plain reporter: one timestamped line per event (UTC), for CI logs and pipes. No colour, no cursor
//! movement; step output is shown as `step | line`.

use std::io::Write;
use std::time::UNIX_EPOCH;

use super::summary::{Summary, state_word};
use super::{Reporter, human_ms};
use crate::events::{Event, Stamped, StepState};

pub struct PlainReporter {
    out: Box<dyn Write + Send>,
    summary: Summary,
}

impl PlainReporter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out, summary: Summary::default() }
    }

    fn line(&mut self, stamped: &Stamped, text: &str) {
        let clock = clock(stamped);
        for (i, part) in text.lines().enumerate() {
            // Continuation lines (an error's detail) are indented under the first.
            let _ =
                if i == 0 { writeln!(self.out, "{clock} {part}") } else { writeln!(self.out, "{clock}     {part}") };
        }
        let _ = self.out.flush();
    }
}

/// `HH:MM:SS.mmm`, UTC.
pub fn clock(stamped: &Stamped) -> String {
    let ms = stamped.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1_000) % 60,
        day_ms % 1_000
    )
}

/// The line for an event (the summary aside), shared with the TTY reporter.
pub fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { plan, release, run_id, steps } => {
            let plural = if steps.len() == 1 { "" } else { "s" };
            format!("run {run_id}: plan {plan}, release {release}, {} step{plural}", steps.len())
        }
        Event::StepStarted { step, kind, attempt, attempts, host } => {
            let on = host.as_ref().map_or_else(String::new, |h| format!(" on {h}"));
            if *attempts > 1 {
                format!("{step}: started ({kind}{on}, attempt {attempt}/{attempts})")
            } else {
                format!("{step}: started ({kind}{on})")
            }
        }
        Event::StepOutput { step, line } => format!("{step} | {line}"),
        Event::StepMessage { step, message } => format!("{step}: {message}"),
        Event::StepRetrying { step, attempt, cause, delay_ms } => {
            format!("{step}: {cause}; retrying in {} (attempt {attempt})", human_ms(*delay_ms))
        }
        Event::StepFinished { state: StepState::Skipped, step, .. } => format!("{step}: skipped"),
        Event::StepFinished { step, state, attempts, duration_ms, error } => {
            let tries = if *attempts > 1 { format!(" after {attempts} attempts") } else { String::new() };
            let mut text = format!("{step}: {}{tries} in {}", state_word(*state), human_ms(*duration_ms));
            if let Some(e) = error {
                text.push_str(": ");
                text.push_str(e);
            }
            text
        }
        Event::RollbackStarted { cause } => format!("rolling back: {cause}"),
        Event::UndoStarted { step, host: None } => format!("undo {step}: started"),
        Event::UndoStarted { step, host: Some(host) } => format!("undo {step}: started (on {host})"),
        Event::UndoFinished { step, ok: true, duration_ms, .. } => {
            format!("undo {step}: done in {}", human_ms(*duration_ms))
        }
        Event::UndoFinished { step, error, .. } => {
            format!("undo {step}: FAILED: {}", error.as_deref().unwrap_or("unknown error"))
        }
        Event::Warning { message } => format!("warning: {message}"),
        Event::Serving { step, url } => format!("{step}: the new release answers at {url}"),
        Event::CutOver { step, release } => format!("{step}: cut the live traffic over to release {release}"),
        Event::Check { check, outcome, detail, fix, code } => {
            let mut text = format!("{:<7} {check}: {detail}", outcome.word());
            if let Some(fix) = fix {
                text.push_str(&format!("\n  fix: {fix}"));
                if let Some(code) = code {
                    text.push_str(&format!(" [{code}]"));
                }
            }
            text
        }
        Event::DoctorFinished { ok, warnings, problems } => {
            let count = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            let verdict =
                if *problems == 0 { "nothing stands in the way of a run" } else { "fix each problem before `zdd run`" };
            format!("doctor: {ok} ok, {}, {}: {verdict}", count(*warnings, "warning"), count(*problems, "problem"))
        }
        Event::Staged { release, slot, held } => format!(
            "staged: release {release} runs in slot {slot} beside the live release, healthy (the health gate \
             above says where it answers); held for `zdd promote`: {}. `zdd promote` moves the traffic to it, \
             `zdd abort` rolls it back",
            held.join(", ")
        ),
        Event::Resumed { run_id, by } => format!("{by}: taking up staged run {run_id}"),
        Event::RunFinished { .. } => return None,
    })
}

impl Reporter for PlainReporter {
    fn event(&mut self, stamped: &Stamped) {
        self.summary.observe(&stamped.event);
        if let Event::RunFinished { outcome, duration_ms, summary } = &stamped.event {
            let lines = self.summary.render(*outcome, *duration_ms, summary);
            let _ = writeln!(self.out);
            for line in lines {
                let _ = writeln!(self.out, "{line}");
            }
            let _ = self.out.flush();
            return;
        }
        if let Some(text) = describe(&stamped.event) {
            self.line(stamped, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{SharedBuf, deployed_run, failed_run};

    fn render(events: Vec<Stamped>) -> String {
        let buf = SharedBuf::default();
        let mut r = PlainReporter::new(Box::new(buf.clone()));
        for e in events {
            r.event(&e);
        }
        buf.text()
    }

    #[test]
    fn a_failed_run_with_an_incomplete_rollback() {
        insta::with_settings!({ filters => vec![(r"\d\d:\d\d:\d\d\.\d{3}", "[clock]")] }, {
            insta::assert_snapshot!(render(failed_run()));
        });
    }

    #[test]
    fn doctor_checks_one_line_each_with_their_fix() {
        insta::with_settings!({ filters => vec![(r"\d\d:\d\d:\d\d\.\d{3}", "[clock]")] }, {
            insta::assert_snapshot!(render(crate::report::fixture::doctor_checks()), @r#"
            [clock] ok      state dir: /var/lib/zdd/shop: release r1 live in slot blue
            [clock] problem lock: the lock names pid 4242 (ci on web1), running `zdd run` since 2026-11-26T17:15:00Z, and that process is gone
            [clock]       fix: `zdd unlock plans/prod.kdl` clears it [zdd::doctor-stale-lock]
            [clock] warning step venv: tools: `uv` is not installed
            [clock]       fix: install uv, or write `installer "pip"` [zdd::preflight-no-uv]
            [clock] doctor: 1 ok, 1 warning, 1 problem: fix each problem before `zdd run`
            "#);
        });
    }

    #[test]
    fn a_deployed_run() {
        insta::with_settings!({ filters => vec![(r"\d\d:\d\d:\d\d\.\d{3}", "[clock]")] }, {
            insta::assert_snapshot!(render(deployed_run()));
        });
    }
}
