//! The TTY reporter: a live line per running step (spinner, step, elapsed time, attempt, latest output) on
//! stderr, finished steps and warnings printed above the bars, and the summary at the end.
//!
//! Everything goes through the `MultiProgress` (`println`), so the bars are never torn by other output.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Reporter;
use super::plain::describe;
use super::summary::Summary;
use crate::doctor::CheckOutcome;
use crate::events::{Event, Outcome, Stamped, StepState};

/// The longest output line shown beside a spinner.
const OUTPUT_WIDTH: usize = 60;

pub struct TtyReporter {
    bars: MultiProgress,
    running: HashMap<String, ProgressBar>,
    style: ProgressStyle,
    color: bool,
    summary: Summary,
}

impl TtyReporter {
    /// Bars on stderr.
    pub fn new(color: bool) -> Self {
        Self::with_target(color, ProgressDrawTarget::stderr())
    }

    pub fn with_target(color: bool, target: ProgressDrawTarget) -> Self {
        let template = if color {
            "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {msg:.dim}"
        } else {
            "{spinner} {prefix} {elapsed:>4} {msg}"
        };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self {
            bars: MultiProgress::with_draw_target(target),
            running: HashMap::new(),
            style,
            color,
            summary: Summary::default(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    fn print(&self, text: &str) {
        let _ = self.bars.println(text);
    }
}

fn shorten(line: &str) -> String {
    let mut s: String = line.chars().take(OUTPUT_WIDTH).collect();
    if line.chars().count() > OUTPUT_WIDTH {
        s.push('…');
    }
    s
}

impl Reporter for TtyReporter {
    fn event(&mut self, stamped: &Stamped) {
        self.summary.observe(&stamped.event);
        match &stamped.event {
            Event::StepStarted { step, attempt, attempts, .. } => {
                let bar = self.running.remove(step).unwrap_or_else(|| {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(self.style.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                let tries = if *attempts > 1 { format!(" [{attempt}/{attempts}]") } else { String::new() };
                bar.set_prefix(format!("{step}{tries}"));
                bar.set_message("");
                self.running.insert(step.clone(), bar);
            }
            Event::StepOutput { step, line } => {
                if let Some(bar) = self.running.get(step) {
                    bar.set_message(shorten(line));
                }
            }
            Event::StepMessage { step, message } => {
                if let Some(bar) = self.running.get(step) {
                    bar.set_message(shorten(message));
                }
            }
            Event::StepRetrying { step, .. } => {
                if let Some(bar) = self.running.get(step) {
                    bar.set_message("waiting to retry");
                }
                if let Some(text) = describe(&stamped.event) {
                    self.print(&self.paint("33", &text));
                }
            }
            Event::StepFinished { step, state, .. } => {
                if let Some(bar) = self.running.remove(step) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                if let Some(text) = describe(&stamped.event) {
                    let (mark, code) = match state {
                        StepState::Succeeded => ("✓", "32"),
                        StepState::Skipped | StepState::Cancelled => ("-", "2"),
                        _ => ("✗", "31"),
                    };
                    self.print(&self.paint(code, &format!("{mark} {text}")));
                }
            }
            Event::Check { outcome, .. } => {
                if let Some(text) = describe(&stamped.event) {
                    let (mark, code) = match outcome {
                        CheckOutcome::Ok => ("✓", "32"),
                        CheckOutcome::Warning => ("!", "33"),
                        CheckOutcome::Problem => ("✗", "31"),
                    };
                    self.print(&self.paint(code, &format!("{mark} {text}")));
                }
            }
            Event::RunFinished { outcome, duration_ms, summary } => {
                for bar in self.running.values() {
                    bar.finish_and_clear();
                }
                self.running.clear();
                let lines = self.summary.render(*outcome, *duration_ms, summary);
                let code = match outcome {
                    Outcome::Deployed => "32;1",
                    Outcome::RolledBack | Outcome::Committed => "33;1",
                    Outcome::RollbackIncomplete => "31;1",
                };
                self.print("");
                let last_table_row = summary.len();
                for (i, line) in lines.iter().enumerate() {
                    if i > last_table_row + 1 { self.print(&self.paint(code, line)) } else { self.print(line) }
                }
            }
            other => {
                if let Some(text) = describe(other) {
                    let text = match other {
                        Event::Warning { .. } | Event::RollbackStarted { .. } => self.paint("33", &text),
                        Event::UndoFinished { ok: false, .. } => self.paint("31", &text),
                        Event::DoctorFinished { problems: 0, .. } => self.paint("32;1", &text),
                        Event::DoctorFinished { .. } => self.paint("31;1", &text),
                        _ => text,
                    };
                    self.print(&text);
                }
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.running.values() {
            bar.finish_and_clear();
        }
        let _ = self.bars.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{deployed_run, doctor_checks, failed_run};

    #[test]
    fn follows_a_whole_run_and_leaves_no_bar_running() {
        for color in [true, false] {
            let mut r = TtyReporter::with_target(color, ProgressDrawTarget::hidden());
            for e in failed_run().iter().chain(deployed_run().iter()).chain(doctor_checks().iter()) {
                r.event(e);
            }
            assert!(r.running.is_empty());
            r.finish();
        }
    }
}
