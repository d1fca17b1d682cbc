//! Small helpers every kind uses: splitting command prefixes, polling with backoff, undo facts as JSON.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zdd_engine::host::{Command, Output};
use zdd_engine::kind::{StepError, UndoCtx, UndoFacts};

/// Split a command prefix written as words (`nsenter -t 42 -m -p`): no shell quoting is interpreted.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Sleep, returning `Err(Cancelled)` if the step is cancelled meanwhile.
pub(crate) async fn sleep(cancel: &CancellationToken, d: Duration) -> Result<(), StepError> {
    tokio::select! {
        () = cancel.cancelled() => Err(StepError::Cancelled),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

/// A delay that starts small and doubles up to a ceiling: fast answers when things are quick, little load otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max: max.max(first) }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Run a command whose output is data for the step (a file list, a queue length), not progress for the user:
/// nothing is streamed to the reporters. Cancelled with the step.
pub(crate) async fn quiet(ctx: &UndoCtx, cmd: &Command) -> Result<Output, StepError> {
    Ok(ctx.host.run(cmd, &ctx.cancel, None).await?)
}

/// Like [`quiet`], failing the step (with the command's stderr) if it exits non-zero.
pub(crate) async fn quiet_ok(ctx: &UndoCtx, cmd: &Command) -> Result<Output, StepError> {
    let out = quiet(ctx, cmd).await?;
    if out.success() {
        return Ok(out);
    }
    let exit = out.code.map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
    Err(StepError::failed(format!("`{}` exited with {exit}", ctx.redactor.redact(&cmd.display())))
        .with_detail(ctx.redactor.redact(&tail(&out.stderr_str(), 20))))
}

/// Undo facts from a serializable value.
pub(crate) fn to_facts<T: serde::Serialize>(facts: &T) -> UndoFacts {
    serde_json::to_value(facts).unwrap_or(serde_json::Value::Null)
}

/// Undo facts read back; unreadable facts are fatal (retrying cannot fix them).
pub(crate) fn from_facts<T: serde::de::DeserializeOwned>(kind: &str, facts: &UndoFacts) -> Result<T, StepError> {
    serde_json::from_value(facts.clone()).map_err(|e| StepError::fatal(format!("{kind} undo facts unreadable: {e}")))
}

/// Last `n` lines of a text, for error details.
pub(crate) fn tail(text: &str, n: usize) -> String {
    zdd_engine::kind::tail_lines(text, n)
}

/// A path as a string for commands and templates.
pub(crate) fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350]);
    }

    #[test]
    fn words_ignore_extra_spaces() {
        assert_eq!(words("  nsenter -t 42  -m "), vec!["nsenter", "-t", "42", "-m"]);
    }
}
