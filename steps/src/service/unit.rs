//! The systemd unit of a slot, rendered from `templates/gunicorn.service.hbs` (or the step's own template).

use std::path::Path;

use serde_json::json;
use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

use super::config::ServiceConfig;
use super::instance::Instance;
use crate::common::p;
use crate::templates;

/// Directories systemd reads units from by itself; units elsewhere are `systemctl link`ed.
pub fn in_systemd_dir(dir: &Path) -> bool {
    [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ]
    .iter()
    .any(|d| dir == Path::new(d))
}

/// The values a unit template sees.
pub fn data(cfg: &ServiceConfig, inst: &Instance) -> Result<serde_json::Value, StepError> {
    if let Some(word) = inst
        .argv
        .iter()
        .find(|a| a.chars().any(char::is_whitespace) || a.is_empty())
    {
        return Err(StepError::fatal(format!(
            "gunicorn argument {word:?} is empty or has spaces: not allowed in a unit"
        )));
    }
    Ok(json!({
        "unit": cfg.unit(&inst.slot),
        "app": cfg.app,
        "slot": inst.slot,
        "release": inst.release,
        "release_dir": p(&inst.cwd),
        "env_file": cfg.env_file.as_deref().map(p),
        "settings": cfg.settings,
        "user": cfg.user,
        "group": cfg.group,
        "exec_start": inst.argv.join(" "),
        "bind": inst.argv.iter().skip_while(|a| *a != "--bind").nth(1),
        "stop_timeout_s": cfg.graceful_timeout.as_secs() + 5,
    }))
}

pub async fn render(
    host: &dyn Host,
    cfg: &ServiceConfig,
    inst: &Instance,
) -> Result<String, StepError> {
    let template =
        templates::load(host, cfg.template.as_deref(), templates::GUNICORN_SERVICE).await?;
    templates::render(&cfg.unit(&inst.slot), &template, &data(cfg, inst)?)
}
