//! The record of the instance running in a slot (`<root>/run/<slot>.json`): which release, which command, which
//! pid. It lets a rollback reuse a running instance, `drain-stop` restart one, and `zdd stop` find them all.
//! It holds no environment values: those are re-read whenever an instance is started, from the release's snapshot
//! of the env file when it has one ([`crate::envsnap`]), else from the env file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zdd_engine::host::{Command, Host};
use zdd_engine::kind::{StepError, UndoCtx};

use super::config::{Manager, ServiceConfig};
use crate::common::quiet;
use crate::{envfile, envsnap};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub release: String,
    pub slot: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The gunicorn master's pid (process manager only).
    pub pid: Option<u32>,
}

impl Instance {
    pub fn new(cfg: &ServiceConfig, release: &str, slot: &str) -> Result<Self, StepError> {
        Ok(Self {
            release: release.to_owned(),
            slot: slot.to_owned(),
            argv: cfg.server_argv(release, slot)?,
            cwd: cfg.release_dir(release),
            pid: None,
        })
    }

    /// The process-manager command: the gunicorn argv with the release's environment, settings and release id in
    /// its environment.
    pub async fn command(&self, cfg: &ServiceConfig, ctx: &UndoCtx) -> Result<Command, StepError> {
        let file = envsnap::for_release(ctx.host.as_ref(), &self.cwd, cfg.env_file.as_deref()).await?;
        let mut env: BTreeMap<String, String> = match &file {
            Some(file) => envfile::load(ctx.host.as_ref(), file, Some(&ctx.redactor)).await?,
            None => BTreeMap::new(),
        };
        if let Some(s) = &cfg.settings {
            env.insert("DJANGO_SETTINGS_MODULE".into(), s.clone());
        }
        env.insert("ZDD_RELEASE".into(), self.release.clone());
        env.insert("ZDD_SLOT".into(), self.slot.clone());
        env.insert("PYTHONUNBUFFERED".into(), "1".into());
        let mut cmd = Command::new(self.argv.first().cloned().unwrap_or_default()).cwd(&self.cwd);
        cmd.args = self.argv.iter().skip(1).cloned().collect();
        cmd.env = env;
        Ok(cmd)
    }
}

pub async fn read(host: &dyn Host, cfg: &ServiceConfig, slot: &str) -> Result<Option<Instance>, StepError> {
    let Some(bytes) = host.read_file(&cfg.record_file(slot)).await? else {
        return Ok(None);
    };
    // A record we cannot read is treated as absent: the slot is then handled as empty and overwritten.
    Ok(serde_json::from_slice(&bytes).ok())
}

pub async fn write(host: &dyn Host, cfg: &ServiceConfig, inst: &Instance) -> Result<(), StepError> {
    let bytes = serde_json::to_vec_pretty(inst).map_err(|e| StepError::fatal(e.to_string()))?;
    host.create_dir_all(&cfg.run_dir()).await?;
    host.write_file(&cfg.record_file(&inst.slot), &bytes, 0o600).await?;
    Ok(())
}

/// The recorded pid of a process-managed instance, if that process is alive and is this instance: its
/// environment has the `ZDD_SLOT` and `ZDD_RELEASE` zdd started it with. A stale record whose pid now belongs
/// to another process (pid reuse, a record copied from elsewhere) gives `None`: that process is never signalled.
pub async fn live_pid(host: &dyn Host, inst: &Instance) -> Result<Option<u32>, StepError> {
    let Some(pid) = inst.pid else {
        return Ok(None);
    };
    if !host.process_alive(pid).await? {
        return Ok(None);
    }
    // Gone meanwhile, or not readable by us: not an instance we started.
    let Ok(Some(environ)) = host.read_file(std::path::Path::new(&format!("/proc/{pid}/environ"))).await else {
        return Ok(None);
    };
    let slot = format!("ZDD_SLOT={}", inst.slot);
    let release = format!("ZDD_RELEASE={}", inst.release);
    let (mut has_slot, mut has_release) = (false, false);
    for var in environ.split(|b| *b == 0) {
        has_slot |= var == slot.as_bytes();
        has_release |= var == release.as_bytes();
    }
    Ok((has_slot && has_release).then_some(pid))
}

/// Is something running in the slot? (systemd: the unit is active; process: the recorded pid is alive and is
/// the recorded instance; docker: the slot's container is running.)
pub async fn running(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<bool, StepError> {
    match cfg.manager {
        Manager::Systemd => Ok(quiet(ctx, &cfg.systemctl(&["is-active", "--quiet", &cfg.unit(slot)])).await?.success()),
        Manager::Process => match read(ctx.host.as_ref(), cfg, slot).await? {
            Some(inst) => Ok(live_pid(ctx.host.as_ref(), &inst).await?.is_some()),
            None => Ok(false),
        },
        Manager::Docker => super::docker::running(ctx, cfg, slot).await,
    }
}
