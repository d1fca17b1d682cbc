//! `zdd doctor`'s checks of a `service` step beyond its preflight: the tool its manager drives (`systemctl`),
//! the unit directory it writes units into, and the instance the state directory calls live: is its process
//! still there? A live slot whose process is gone serves nothing, and `zdd run` would drain and switch away
//! from an instance that does not exist.

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::doctor::Check;
use zdd_engine::preflight::PreflightCtx;

use super::config::{Manager, ServiceConfig};
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
    checks.extend(live_instance(cfg, ctx).await);
    checks
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
