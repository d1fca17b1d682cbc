//! Whether a beat just started has started its scheduler: the process is alive and what it logged *since this
//! start* says `beat: Starting...` (Celery logs it at INFO once the app is loaded and its logging set up, right
//! before it opens the schedule file and enters the scheduler's loop), and it is still alive a second later (a
//! schedule file it cannot open makes it exit at once). Earlier starts of the same slot logged the same line, so only this start's
//! output counts: a process's log file from the length it had before the start; under systemd, the journal of
//! the unit's current invocation (`_SYSTEMD_INVOCATION_ID`).
//!
//! Celery 5.7's beat can also answer `celery inspect ping` (`--enable-remote-control`); older Celery cannot, so
//! the log is what is read.

use std::time::{Duration, Instant};

use zdd_engine::kind::{StepError, UndoCtx};

use crate::common::{Backoff, quiet, sleep, tail};
use crate::service::backend;
use crate::service::config::{Manager, ServiceConfig};
use crate::service::instance;

/// The line beat logs when its scheduler starts.
pub const STARTED: &str = "beat: Starting...";

/// How long a beat that logged [`STARTED`] must stay alive: it opens its schedule file right after.
const SETTLE: Duration = Duration::from_secs(1);

/// Where this start's output begins.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// The process's log file had this many bytes before the start.
    Offset(usize),
    /// The unit's journal, current invocation.
    Journal,
}

/// Taken before a start.
pub async fn mark(ctx: &UndoCtx, svc: &ServiceConfig, islot: &str) -> Result<Mark, StepError> {
    Ok(match svc.manager {
        Manager::Systemd => Mark::Journal,
        Manager::Docker => return Err(crate::worker::not_in_containers()),
        Manager::Process => Mark::Offset(ctx.host.read_file(&svc.log_file(islot)).await?.map_or(0, |b| b.len())),
    })
}

/// What the beat in `islot` logged since `mark`.
async fn since(ctx: &UndoCtx, svc: &ServiceConfig, islot: &str, mark: Mark) -> Result<String, StepError> {
    match mark {
        Mark::Offset(offset) => {
            let bytes = ctx.host.read_file(&svc.log_file(islot)).await?.unwrap_or_default();
            Ok(String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default()).into_owned())
        }
        Mark::Journal => {
            let unit = svc.unit(islot);
            let id = quiet(ctx, &svc.systemctl(&["show", "-P", "InvocationID", &unit])).await?.stdout_str();
            let id = id.trim();
            if id.is_empty() {
                return Ok(String::new());
            }
            let filter = format!("_SYSTEMD_INVOCATION_ID={id}");
            Ok(quiet(ctx, &svc.journalctl(&[filter.as_str(), "--no-pager", "-o", "cat"])).await?.stdout_str())
        }
    }
}

/// Wait until the beat in `islot`, started after `mark`, has logged [`STARTED`] and is still alive [`SETTLE`]
/// later; fails if it exits meanwhile or is silent for `within`, with the last lines of this start.
pub async fn wait_started(
    ctx: &UndoCtx,
    svc: &ServiceConfig,
    islot: &str,
    mark: Mark,
    within: Duration,
) -> Result<(), StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    loop {
        let logged = since(ctx, svc, islot, mark).await?;
        // Alive is asked after the log is read: a beat that logged the line and then died is not taken.
        if !instance::running(ctx, svc, islot).await? {
            let lines =
                if logged.is_empty() { backend::last_lines(ctx, svc, islot, 30).await } else { tail(&logged, 30) };
            return Err(StepError::failed(format!("beat {islot} exited right after starting"))
                .with_detail(ctx.redactor.redact(&lines)));
        }
        if logged.contains(STARTED) {
            // Beat opens its schedule file right after the line; one it cannot open makes it exit at once.
            sleep(&ctx.cancel, SETTLE).await?;
            if instance::running(ctx, svc, islot).await? {
                ctx.message(format!("beat {islot} started its scheduler after {} ms", start.elapsed().as_millis()));
                return Ok(());
            }
            let lines = tail(&since(ctx, svc, islot, mark).await?, 30);
            return Err(StepError::failed(format!("beat {islot} exited right after starting its scheduler"))
                .with_detail(ctx.redactor.redact(&lines)));
        }
        if start.elapsed() >= within {
            return Err(StepError::failed(format!(
                "beat {islot} did not log `{STARTED}` within {}s",
                within.as_secs()
            ))
            .with_detail(ctx.redactor.redact(&tail(&logged, 30))));
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
}
