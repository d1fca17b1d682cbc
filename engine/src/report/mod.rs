//! Reporters: the one component that writes to the terminal. TTY progress, plain lines, JSON lines.
//!
//! A reporter consumes the run's events (after the journal wrote them) and nothing else: [`drive`] feeds it
//! from the channel until the run drops its senders.
//!
//! - [`tty`]: a line per running step (spinner, elapsed time, attempt) on stderr, for people at a terminal.
//! - [`plain`]: timestamped lines, for CI logs and pipes.
//! - [`json`]: one JSON object per event on stdout, for machines.
//! - [`summary`]: the end-of-run table and outcome statement the first two print.

pub mod json;
pub mod plain;
pub mod summary;
pub mod tty;

use std::io::IsTerminal as _;

use tokio::sync::mpsc;

use crate::events::Stamped;

/// Something that shows events.
pub trait Reporter: Send {
    fn event(&mut self, stamped: &Stamped);

    /// The channel closed: the run is over.
    fn finish(&mut self) {}
}

/// Which reporter a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tty,
    Plain,
    Json,
}

impl Format {
    /// `--json` wins, then `--plain`; otherwise progress bars when stderr is a terminal, plain lines when not.
    pub fn choose(json: bool, plain: bool) -> Self {
        if json {
            Format::Json
        } else if plain || !std::io::stderr().is_terminal() {
            Format::Plain
        } else {
            Format::Tty
        }
    }

    pub fn reporter(self) -> Box<dyn Reporter> {
        match self {
            Format::Tty => Box::new(tty::TtyReporter::new(color_wanted())),
            Format::Plain => Box::new(plain::PlainReporter::new(Box::new(std::io::stdout()))),
            Format::Json => Box::new(json::JsonReporter::new(Box::new(std::io::stdout()))),
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything non-empty.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Feed `reporter` every event until all senders are gone, then let it finish.
pub async fn drive(mut reporter: Box<dyn Reporter>, mut events: mpsc::UnboundedReceiver<Stamped>) {
    while let Some(stamped) = events.recv().await {
        reporter.event(&stamped);
    }
    reporter.finish();
}

/// A duration for people: `850ms`, `1.2s`, `2m03s`.
// `ms` is below 60,000 where it becomes an f64: exact.
#[allow(clippy::cast_precision_loss)]
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 && ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    }
}

#[cfg(test)]
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1_250), "1.2s");
        assert_eq!(human_ms(20_000), "20s");
        assert_eq!(human_ms(123_000), "2m03s");
    }
}
