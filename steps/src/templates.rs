//! The default templates, compiled into the binary so plans work outside the repository; a plan may point a
//! step's `template` field at its own file instead.

use std::path::Path;

use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

pub const GUNICORN_SERVICE: &str = include_str!("../../templates/gunicorn.service.hbs");
pub const CELERY_WORKER_SERVICE: &str = include_str!("../../templates/celery-worker.service.hbs");
pub const CELERY_BEAT_SERVICE: &str = include_str!("../../templates/celery-beat.service.hbs");
pub const NGINX_SITE: &str = include_str!("../../templates/nginx-site.conf.hbs");
pub const CADDY_SITE: &str = include_str!("../../templates/caddy-site.json.hbs");

/// The template text: the plan's own file if given, else the built-in one.
pub async fn load(host: &dyn Host, custom: Option<&Path>, builtin: &'static str) -> Result<String, StepError> {
    match custom {
        None => Ok(builtin.to_owned()),
        Some(path) => match host.read_file(path).await? {
            Some(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            None => Err(StepError::fatal(format!("template {} does not exist", path.display()))),
        },
    }
}

/// Render a config template, turning template errors into fatal step errors.
pub fn render(name: &str, template: &str, data: &serde_json::Value) -> Result<String, StepError> {
    zdd_engine::template::render_config(name, template, data).map_err(|e| StepError::fatal(e.to_string()))
}
