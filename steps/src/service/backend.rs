//! Starting, stopping and reading the logs of a slot's instance, under systemd or as a detached process.

use std::time::{Duration, Instant};

use zdd_engine::kind::{StepError, UndoCtx};

use super::config::{Manager, ServiceConfig};
use super::instance::{self, Instance};
use super::unit;
use crate::common::{Backoff, path_text, quiet, sleep, tail};

/// Start an instance (the unit is written first under systemd). The caller has recorded its undo facts.
pub async fn start(ctx: &UndoCtx, cfg: &ServiceConfig, inst: &mut Instance) -> Result<(), StepError> {
    let unit = match cfg.manager {
        Manager::Systemd => Some(unit::render(ctx.host.as_ref(), cfg, inst).await?),
        Manager::Process | Manager::Docker => None,
    };
    launch(ctx, cfg, inst, unit.as_deref()).await
}

/// Start an instance whose unit text (systemd) the caller rendered: the `worker` kind runs Celery with these
/// backends and its own unit template.
pub async fn launch(
    ctx: &UndoCtx,
    cfg: &ServiceConfig,
    inst: &mut Instance,
    unit: Option<&str>,
) -> Result<(), StepError> {
    ctx.host.create_dir_all(&cfg.run_dir()).await?;
    ctx.host.create_dir_all(&cfg.log_dir()).await?;
    if cfg.listen == super::config::Listen::Socket {
        // A socket file left by a killed instance would make gunicorn's bind fail.
        ctx.host.remove_all(&cfg.socket(&inst.slot)).await?;
    }
    match cfg.manager {
        Manager::Systemd => {
            let text = unit.ok_or_else(|| StepError::fatal(format!("no unit rendered for slot {}", inst.slot)))?;
            install_unit(ctx, cfg, &inst.slot, text).await?;
            ctx.exec_ok(&cfg.systemctl(&["start", &cfg.unit(&inst.slot)])).await?;
        }
        Manager::Process => {
            let cmd = inst.command(cfg, ctx).await?;
            let pid = ctx.host.spawn_detached(&cmd, &cfg.log_file(&inst.slot)).await?;
            inst.pid = Some(pid);
        }
        Manager::Docker => super::docker::start(ctx, cfg, inst).await?,
    }
    instance::write(ctx.host.as_ref(), cfg, inst).await
}

/// Write a unit file and make systemd see it (`systemctl link` when it is outside systemd's own directories).
pub async fn install_unit(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str, text: &str) -> Result<(), StepError> {
    let file = cfg.unit_file(slot);
    ctx.host.create_dir_all(&cfg.unit_dir).await?;
    ctx.host.write_file(&file, text.as_bytes(), 0o644).await?;
    ctx.exec_ok(&cfg.systemctl(&["daemon-reload"])).await?;
    let link = if let Some(link) = cfg.link_units {
        link
    } else {
        // The directory may be systemd's own under another name (mounted over /etc/systemd/system in a
        // container): link only if systemd does not find the unit by itself.
        let state = quiet(ctx, &cfg.systemctl(&["show", "-P", "LoadState", &cfg.unit(slot)])).await?;
        state.stdout_str().trim() != "loaded"
    };
    if link {
        ctx.exec_ok(&cfg.systemctl(&["link", &path_text(&file)])).await?;
        ctx.exec_ok(&cfg.systemctl(&["daemon-reload"])).await?;
    }
    Ok(())
}

/// Remove a slot's unit (undo of a first start).
pub async fn remove_unit(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<(), StepError> {
    if cfg.link_units != Some(false) {
        // Removes the link `systemctl link` made; fails harmlessly if there is none.
        quiet(ctx, &cfg.systemctl(&["disable", &cfg.unit(slot)])).await?;
    }
    ctx.host.remove_all(&cfg.unit_file(slot)).await?;
    ctx.exec_ok(&cfg.systemctl(&["daemon-reload"])).await?;
    Ok(())
}

/// Stop a slot's instance gracefully (TERM; workers finish the request in hand). Returns whether one was running
/// (under systemd: or was about to be restarted).
pub async fn stop(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<bool, StepError> {
    match cfg.manager {
        Manager::Systemd => {
            let state = quiet(ctx, &cfg.systemctl(&["is-active", &cfg.unit(slot)])).await?.stdout_str();
            // `activating` is also a unit waiting to be started again after a crash (`Restart=on-failure`): not
            // running now, but it would be a second later. Stopping it ends the restarts.
            let was = matches!(state.trim(), "active" | "activating" | "deactivating" | "reloading");
            if was {
                // systemctl waits for the stop (up to TimeoutStopSec) before returning.
                ctx.exec_ok(&cfg.systemctl(&["stop", &cfg.unit(slot)])).await?;
            }
            Ok(was)
        }
        Manager::Process => {
            let Some(inst) = instance::read(ctx.host.as_ref(), cfg, slot).await? else {
                return Ok(false);
            };
            // Only the process zdd started for this record: a stale pid now used by another is left alone.
            let Some(pid) = instance::live_pid(ctx.host.as_ref(), &inst).await? else {
                return Ok(false);
            };
            ctx.host.signal(pid, "TERM").await?;
            let grace = cfg.graceful_timeout + Duration::from_secs(5);
            if !wait_exit(ctx, pid, grace).await? {
                ctx.message(format!("{} {pid} still running after {}s: KILL", cfg.server.program(), grace.as_secs()));
                ctx.host.signal(pid, "KILL").await?;
                wait_exit(ctx, pid, Duration::from_secs(5)).await?;
            }
            Ok(true)
        }
        Manager::Docker => super::docker::stop(ctx, cfg, slot).await,
    }
}

/// Wait until a pid is gone; `Ok(false)` on timeout.
pub async fn wait_exit(ctx: &UndoCtx, pid: u32, timeout: Duration) -> Result<bool, StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
    while ctx.host.process_alive(pid).await? {
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
    Ok(true)
}

/// The last lines an instance logged (journal or log file), as evidence when it died.
pub async fn last_lines(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str, n: usize) -> String {
    match cfg.manager {
        Manager::Systemd => {
            let cmd = cfg.journalctl(&["-u", &cfg.unit(slot), "-n", &n.to_string(), "--no-pager", "-o", "cat"]);
            quiet(ctx, &cmd).await.map(|o| o.stdout_str()).unwrap_or_default()
        }
        Manager::Process => match ctx.host.read_file(&cfg.log_file(slot)).await {
            Ok(Some(bytes)) => tail(&String::from_utf8_lossy(&bytes), n),
            _ => String::new(),
        },
        Manager::Docker => super::docker::last_lines(ctx, cfg, slot, n).await,
    }
}
