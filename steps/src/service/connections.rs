//! The open connections of an instance, and holding an ASGI instance's long-lived ones (WebSockets) for a budget
//! before it is stopped.
//!
//! After the switch no new connection reaches the old instance; once its accept queue is empty, what is still
//! established to it is a request in hand or a WebSocket. They are counted with `ss` (the accepted sockets of its
//! unix socket, `ss -xH state established src <socket>`, or of its port), polled until none is left or the
//! budget runs out. Then the caller stops the instance: uvicorn closes what is left with close code 1012
//! (Service Restart), so no client sees an abnormal close.

use std::time::{Duration, Instant};

use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};

use super::config::{Listen, ServiceConfig};
use crate::common::{Backoff, path_text, quiet_ok, sleep};

/// What happened to the connections an old instance held while its budget ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Established when the hold began (after the switch, the accept queue drained).
    pub open: u64,
    /// Closed by their clients (or finished) within the budget.
    pub ended: u64,
    /// Still open when the budget ran out: the stop closes them (1012).
    pub left: u64,
    /// How long the hold took.
    pub waited: Duration,
}

impl Tally {
    /// The step message that reports it (every reporter shows step messages).
    pub fn describe(&self, slot: &str, budget: Duration) -> String {
        let budget_s = budget.as_secs_f64();
        if self.open == 0 {
            return format!("slot {slot}: no connection open when the drain began");
        }
        let mut text = format!(
            "slot {slot}: {} connection(s) open when the drain began (WebSockets and requests in hand), {} ended on \
             their own",
            self.open, self.ended
        );
        if self.left == 0 {
            text.push_str(&format!(" within {} ms", self.waited.as_millis()));
        } else {
            text.push_str(&format!(
                ", {} still open at the {budget_s}s budget: closed by the stop with 1012 (Service Restart)",
                self.left
            ));
        }
        text
    }
}

/// The number of established connections the `ss` output lists (one a line, no header).
pub fn count_lines(ss_output: &str) -> u64 {
    ss_output.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// The `ss` command that lists the established connections to the instance in `slot`.
pub fn ss_command(cfg: &ServiceConfig, slot: &str) -> Result<Command, StepError> {
    Ok(match cfg.listen {
        Listen::Socket => {
            Command::new("ss").args(["-xH", "state", "established", "src"]).arg(path_text(&cfg.socket(slot)))
        }
        Listen::Port => Command::new("ss")
            .args(["-tnH", "state", "established", "src"])
            .arg(format!("127.0.0.1:{}", cfg.port(slot)?)),
    })
}

/// How many connections are established to the instance in `slot` now.
pub async fn count(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<u64, StepError> {
    let out = quiet_ok(ctx, &ss_command(cfg, slot)?).await?;
    Ok(count_lines(&out.stdout_str()))
}

/// Wait until no connection is established to the instance in `slot`, or `budget` has passed.
pub async fn hold(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str, budget: Duration) -> Result<Tally, StepError> {
    let start = Instant::now();
    let open = count(ctx, cfg, slot).await?;
    let mut left = open;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(250));
    while left > 0 && start.elapsed() < budget {
        sleep(&ctx.cancel, backoff.next_delay().min(budget.saturating_sub(start.elapsed()))).await?;
        left = count(ctx, cfg, slot).await?;
    }
    // A request may have arrived from the queue meanwhile: more left than open is not "-1 ended".
    let left = left.min(open);
    Ok(Tally { open, ended: open - left, left, waited: start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_established_sockets() {
        let out = "u_str 0      0      /srv/shop/run/a.sock 110138 * 110136\n\
                   u_str 0      0      /srv/shop/run/a.sock 110139 * 110137\n";
        assert_eq!(count_lines(out), 2);
        assert_eq!(count_lines(""), 0);
    }

    #[test]
    fn says_what_ended_and_what_the_stop_closes() {
        let tally = Tally { open: 3, ended: 1, left: 2, waited: Duration::from_secs(3) };
        insta::assert_snapshot!(tally.describe("a", Duration::from_secs(3)), @"slot a: 3 connection(s) open when the drain began (WebSockets and requests in hand), 1 ended on their own, 2 still open at the 3s budget: closed by the stop with 1012 (Service Restart)");
        let tally = Tally { open: 2, ended: 2, left: 0, waited: Duration::from_millis(420) };
        insta::assert_snapshot!(tally.describe("a", Duration::from_secs(3)), @"slot a: 2 connection(s) open when the drain began (WebSockets and requests in hand), 2 ended on their own within 420 ms");
    }
}
