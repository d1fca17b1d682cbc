//! Waiting until nothing can reach an instance any more, before it is stopped (by `drain-stop` after a switch,
//! or by the `service` undo after a switch back).
//!
//! Socket mode: the accept queue of the instance's socket (the Recv-Q of `ss -xlH src <socket>`) must be empty:
//! connections Nginx opened before the link swap wait there, and gunicorn's TERM closes the listener at once,
//! resetting whatever is still queued (502s). Port mode: the Nginx workers alive before the last reload (which
//! may still send keep-alive requests to the old port) must have exited.

use std::path::Path;
use std::time::{Duration, Instant};

use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};

use super::backend;
use super::config::{Listen, ServiceConfig};
use crate::common::{Backoff, path_text, quiet, quiet_ok, sleep};

/// Wait until the instance in `slot` is drained; `Ok(false)` if `timeout` passed first.
pub async fn wait(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str, timeout: Duration) -> Result<bool, StepError> {
    match cfg.listen {
        Listen::Socket => wait_queue_empty(ctx, &path_text(&cfg.socket(slot)), timeout).await,
        Listen::Port => wait_workers_gone(ctx, cfg, timeout).await,
    }
}

/// The accept-queue length of a listening unix socket (`None`: no such listener).
pub fn parse_recv_q(ss_output: &str) -> Option<u64> {
    ss_output.lines().find_map(|l| l.split_whitespace().nth(2).and_then(|q| q.parse().ok()))
}

pub async fn wait_queue_empty(ctx: &UndoCtx, socket: &str, timeout: Duration) -> Result<bool, StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        let out = quiet_ok(ctx, &Command::new("ss").args(["-xlH", "src", socket])).await?;
        match parse_recv_q(&out.stdout_str()) {
            None | Some(0) => return Ok(true),
            Some(_) if start.elapsed() >= timeout => return Ok(false),
            Some(_) => sleep(&ctx.cancel, backoff.next_delay()).await?,
        }
    }
}

/// Wait until something listens on a unix socket again (an instance just restarted); `Ok(false)` on timeout.
pub async fn wait_listening(ctx: &UndoCtx, socket: &Path, timeout: Duration) -> Result<bool, StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    loop {
        let out = quiet_ok(ctx, &Command::new("ss").args(["-xlH", "src", &path_text(socket)])).await?;
        if parse_recv_q(&out.stdout_str()).is_some() {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
}

pub async fn wait_workers_gone(ctx: &UndoCtx, cfg: &ServiceConfig, timeout: Duration) -> Result<bool, StepError> {
    let file = cfg.run_dir().join("nginx-workers-before-reload");
    let Some(bytes) = ctx.host.read_file(&file).await? else {
        return Ok(true);
    };
    let pids: Vec<u32> = String::from_utf8_lossy(&bytes).lines().filter_map(|l| l.trim().parse().ok()).collect();
    let start = Instant::now();
    for pid in pids {
        // The file may be old and the pid reused since: only an Nginx worker is worth waiting for.
        let command = quiet(ctx, &Command::new("ps").args(["-o", "args=", "-p"]).arg(pid.to_string())).await?;
        if !command.stdout_str().contains("nginx: worker") {
            continue;
        }
        let left = timeout.saturating_sub(start.elapsed());
        if !backend::wait_exit(ctx, pid, left).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recv_q() {
        assert_eq!(parse_recv_q("u_str LISTEN 3      16     /srv/run/a.sock 53293 * 0\n"), Some(3));
        assert_eq!(parse_recv_q(""), None);
    }
}
