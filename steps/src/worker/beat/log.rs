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

/// Wait until the beat in `islot`, started after `mark`, has logged [`STARTED`] and its process is still the same
/// and alive [`SETTLE`] later; fails if it exits meanwhile or is silent for `within`, with the last lines of this
/// start. The same process, because under systemd (`Restart=on-failure`) a beat that died may already be running
/// again, and die again.
pub async fn wait_started(
    ctx: &UndoCtx,
    svc: &ServiceConfig,
    islot: &str,
    mark: Mark,
    within: Duration,
) -> Result<(), StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    let exited = |what: &str, logged: &str| {
        StepError::failed(format!("beat {islot} exited right after {what}"))
            .with_detail(ctx.redactor.redact(&tail(logged, 30)))
    };
    loop {
        let logged = since(ctx, svc, islot, mark).await?;
        // The process is asked for after the log is read: a beat that logged the line and then died is not taken.
        let Some(pid) = main_pid(ctx, svc, islot).await? else {
            let logged = if logged.is_empty() { backend::last_lines(ctx, svc, islot, 30).await } else { logged };
            return Err(exited("starting", &logged));
        };
        if logged.contains(STARTED) {
            // Beat opens its schedule file right after the line; one it cannot open makes it exit at once.
            sleep(&ctx.cancel, SETTLE).await?;
            if main_pid(ctx, svc, islot).await? != Some(pid) {
                return Err(exited("starting its scheduler", &since(ctx, svc, islot, mark).await?));
            }
            ctx.message(format!("beat {islot} started its scheduler after {} ms", start.elapsed().as_millis()));
            return Ok(());
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

/// The pid of the beat running in `islot` now: under systemd the main pid of the active unit, as a process the
/// recorded pid if it is alive. Not [`instance::live_pid`]'s check of the process's environment: the pid was
/// recorded by this run's start a moment ago, and right after it the process is still going through `setsid` and
/// `exec`, when `/proc/<pid>/environ` can read empty and a beat starting would be taken for one that exited.
async fn main_pid(ctx: &UndoCtx, svc: &ServiceConfig, islot: &str) -> Result<Option<u32>, StepError> {
    match svc.manager {
        Manager::Systemd => {
            if !instance::running(ctx, svc, islot).await? {
                return Ok(None);
            }
            let out = quiet(ctx, &svc.systemctl(&["show", "-P", "MainPID", &svc.unit(islot)])).await?;
            Ok(out.stdout_str().trim().parse().ok().filter(|pid| *pid != 0))
        }
        Manager::Process => match instance::read(ctx.host.as_ref(), svc, islot).await?.and_then(|inst| inst.pid) {
            Some(pid) if ctx.host.process_alive(pid).await? => Ok(Some(pid)),
            _ => Ok(None),
        },
        Manager::Docker => Err(crate::worker::not_in_containers()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use zdd_engine::kind::MemoryJournal;

    use super::*;
    use crate::service::instance::Instance;

    /// A "beat" that is `script` run as a detached process in slot `beat-b` under `root`.
    async fn launch(ctx: &UndoCtx, root: &Path, script: &str) -> (ServiceConfig, Mark) {
        let svc = ServiceConfig {
            app: "proj".into(),
            manager: Manager::Process,
            root: root.to_path_buf(),
            ..ServiceConfig::default()
        };
        let mut inst = Instance {
            release: "r9".into(),
            slot: "beat-b".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            cwd: root.to_path_buf(),
            pid: None,
        };
        let mark = mark(ctx, &svc, "beat-b").await.unwrap();
        backend::launch(ctx, &svc, &mut inst, None).await.unwrap();
        (svc, mark)
    }

    #[tokio::test]
    async fn a_beat_counts_as_started_once_it_logged_the_line_and_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::testing::ctx("beat", dir.path(), Arc::new(MemoryJournal::default()));
        // An earlier start's line in the same log does not count.
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::write(dir.path().join("log/proj-beat-b.log"), format!("{STARTED}\n")).unwrap();
        let (svc, mark) = launch(&ctx, dir.path(), "exec sleep 30").await;
        let err = wait_started(&ctx, &svc, "beat-b", mark, Duration::from_millis(500)).await.unwrap_err();
        assert!(err.to_string().contains("did not log `beat: Starting...` within"), "{err:?}");
        assert!(backend::stop(&ctx, &svc, "beat-b").await.unwrap());
        let (svc, mark) = launch(&ctx, dir.path(), "sleep 0.3; echo 'beat: Starting...'; exec sleep 30").await;
        wait_started(&ctx, &svc, "beat-b", mark, Duration::from_secs(20)).await.unwrap();
        assert!(backend::stop(&ctx, &svc, "beat-b").await.unwrap());
    }

    #[tokio::test]
    async fn a_beat_that_exits_fails_with_what_it_logged() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::testing::ctx("beat", dir.path(), Arc::new(MemoryJournal::default()));
        let (svc, mark) = launch(&ctx, dir.path(), "echo 'ImportError: no module proj' >&2; exit 1").await;
        let err = wait_started(&ctx, &svc, "beat-b", mark, Duration::from_secs(20)).await.unwrap_err();
        let StepError::Failed { message, detail } = err else { panic!("{err:?}") };
        assert_eq!(message, "beat beat-b exited right after starting");
        assert!(detail.is_some_and(|d| d.contains("ImportError")));

        let (svc, mark) = launch(&ctx, dir.path(), "echo 'beat: Starting...'; sleep 0.2; exit 1").await;
        let err = wait_started(&ctx, &svc, "beat-b", mark, Duration::from_secs(20)).await.unwrap_err();
        let StepError::Failed { message, .. } = err else { panic!("{err:?}") };
        assert_eq!(message, "beat beat-b exited right after starting its scheduler");
    }
}
