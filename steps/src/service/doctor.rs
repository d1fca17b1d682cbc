//! `zdd doctor`'s checks of a `service` step beyond its preflight: the tool its manager drives (`systemctl`),
//! the unit directory it writes units into, the port the new instance binds (`listen "port"`), and the
//! instance the state directory calls live: is its process
//! still there? A live slot whose process is gone serves nothing, and `zdd run` would drain and switch away
//! from an instance that does not exist.

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::doctor::Check;
use zdd_engine::preflight::PreflightCtx;

use super::config::{Listen, Manager, ServiceConfig};
use super::instance;

/// Every check of the step, its preflight's first.
pub async fn checks(cfg: &ServiceConfig, ctx: &PreflightCtx) -> Vec<Check> {
    let mut checks = Vec::new();
    if cfg.manager == Manager::Systemd {
        let systemctl = cfg.systemctl(&[] as &[&str]).program;
        let host = ctx.preview.host.as_ref();
        checks.push(match crate::preflight::program(host, &systemctl, "systemd", &ctx.provided).await {
            Some(finding) => Check::from_finding(finding),
            None => Check::ok("tools", format!("`{systemctl}` is installed")),
        });
        checks.push(crate::doctor::writable_dir(host, &cfg.unit_dir, "the unit directory", "unit-dir").await);
    }
    checks.extend(free_port(cfg, ctx).await);
    checks.extend(live_instance(cfg, ctx).await);
    checks
}

/// With `listen "port"`, nothing but the slot's own old instance (which the run stops first) listens on the
/// port the new instance binds.
async fn free_port(cfg: &ServiceConfig, ctx: &PreflightCtx) -> Option<Check> {
    if cfg.listen != Listen::Port {
        return None;
    }
    let slot = &ctx.preview.target.slot;
    let port = cfg.port(slot).ok()?;
    let host = ctx.preview.host.as_ref();
    if !crate::doctor::port_listening(host, port).await? {
        return Some(Check::ok("ports", format!("127.0.0.1:{port} (slot {slot}, for the new instance) is free")));
    }
    if slot_runs(cfg, ctx, slot).await {
        return Some(Check::ok(
            "ports",
            format!("127.0.0.1:{port} is held by slot {slot}'s old instance, which the run stops first"),
        ));
    }
    Some(Check::problem(
        Code::DoctorPortInUse,
        "ports",
        format!("something else listens on 127.0.0.1:{port}, the port of slot {slot}, which the new instance takes"),
        format!(
            "stop what listens there (`ss -ltnp 'sport = :{port}'` names it), or give the plan other `slots` ports"
        ),
    ))
}

/// Does zdd's own instance run in `slot` (its recorded process, its unit, its container)?
async fn slot_runs(cfg: &ServiceConfig, ctx: &PreflightCtx, slot: &str) -> bool {
    let host = ctx.preview.host.as_ref();
    match cfg.manager {
        Manager::Process => match instance::read(host, cfg, slot).await {
            Ok(Some(inst)) => matches!(instance::live_pid(host, &inst).await, Ok(Some(_))),
            _ => false,
        },
        Manager::Systemd => {
            let active = cfg.systemctl(&["is-active", "--quiet", &cfg.unit(slot)]);
            host.run(&active, &CancellationToken::new(), None).await.is_ok_and(|o| o.success())
        }
        // The container of the slot holds the port on the host network; it is replaced by the run.
        Manager::Docker => true,
    }
}

/// The instance in the live slot (from the state directory) runs; nothing when nothing is live.
async fn live_instance(cfg: &ServiceConfig, ctx: &PreflightCtx) -> Option<Check> {
    let live = ctx.preview.target.live_slot.as_deref()?;
    let release = ctx.preview.target.live_release.as_deref().unwrap_or("?");
    let slot = cfg.instance_slot(live);
    let host = ctx.preview.host.as_ref();
    let gone = |detail: String, fix: String| Some(Check::problem(Code::DoctorLiveGone, "live instance", detail, fix));
    let redeploy = "deploy again (`zdd run`) or put the previous release back (`zdd rollback`): either starts an \
                    instance in the other slot and moves traffic to it";
    match cfg.manager {
        Manager::Process => match instance::read(host, cfg, &slot).await {
            Ok(Some(inst)) => match instance::live_pid(host, &inst).await {
                Ok(Some(pid)) => {
                    Some(Check::ok("live instance", format!("slot {slot} runs release {} (pid {pid})", inst.release)))
                }
                _ => gone(
                    format!(
                        "the live slot {slot}'s {} (release {}, pid {}) is not running: requests to it fail",
                        cfg.server.word(),
                        inst.release,
                        inst.pid.map_or_else(|| "none recorded".to_owned(), |p| p.to_string())
                    ),
                    redeploy.to_owned(),
                ),
            },
            _ => gone(
                format!(
                    "the state directory says release {release} is live in slot {slot}, but {} records no instance",
                    cfg.record_file(&slot).display()
                ),
                redeploy.to_owned(),
            ),
        },
        Manager::Systemd => {
            let unit = cfg.unit(&slot);
            let active = cfg.systemctl(&["is-active", "--quiet", &unit]);
            let out = host.run(&active, &CancellationToken::new(), None).await.ok()?;
            if out.success() {
                return Some(Check::ok("live instance", format!("{unit} (release {release}) is active")));
            }
            gone(
                format!("the live slot {slot}'s unit {unit} (release {release}) is not active: requests to it fail"),
                format!("`{}`, or {redeploy}", cfg.systemctl(&["start", &unit]).display()),
            )
        }
        // A container's state needs the docker engine the preflight checks; `zdd status` shows the rest.
        Manager::Docker => None,
    }
}
