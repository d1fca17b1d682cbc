//! The systemd units of a slot's Celery processes: the worker's, rendered from `templates/celery-worker.service.hbs`,
//! and beat's ([`super::beat`]), from `templates/celery-beat.service.hbs` (or the step's own template), with the
//! values the service units get, the node name and the stop budget.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

use super::config::WorkerConfig;
use crate::service::config::ServiceConfig;
use crate::service::instance::Instance;
use crate::templates;

pub async fn render(host: &dyn Host, cfg: &WorkerConfig, inst: &Instance) -> Result<String, StepError> {
    let template = Template { custom: cfg.template.as_deref(), builtin: templates::CELERY_WORKER_SERVICE };
    render_celery(host, &cfg.service(), inst, template, cfg.shutdown_budget).await
}

/// Which template a unit is rendered from: the step's own file, else the built-in text.
#[derive(Debug, Clone, Copy)]
pub struct Template<'a> {
    pub custom: Option<&'a Path>,
    pub builtin: &'static str,
}

/// A Celery unit for `inst`, run with `service`'s environment, killed `stop_timeout` after TERM.
pub async fn render_celery(
    host: &dyn Host,
    service: &ServiceConfig,
    inst: &Instance,
    template: Template<'_>,
    stop_timeout: Duration,
) -> Result<String, StepError> {
    let env_file = crate::envsnap::for_release(host, &inst.cwd, service.env_file.as_deref()).await?;
    let mut data = crate::service::unit::data(service, inst, env_file.as_deref())?;
    if let Value::Object(map) = &mut data {
        // `%` starts a systemd specifier (`%h` is the user's home there): Celery must see `-n name@%h` as written.
        map.insert("exec_start".into(), Value::String(inst.argv.join(" ").replace('%', "%%")));
        map.insert("node".into(), Value::String(format!("{}@%h", inst.slot)));
        map.insert("stop_timeout_s".into(), Value::from(stop_timeout.as_secs().max(1)));
    }
    let text = templates::load(host, template.custom, template.builtin).await?;
    templates::render(&service.unit(&inst.slot), &text, &data)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::service::config::Manager;
    use crate::worker::config::DroppedTasks;

    fn config() -> WorkerConfig {
        WorkerConfig {
            step: "worker".into(),
            name: "worker".into(),
            app: "proj".into(),
            celery_app: "proj".into(),
            root: PathBuf::from("/srv/proj"),
            queues: vec!["celery".into(), "emails".into()],
            concurrency: 4,
            manager: Manager::Systemd,
            settings: Some("proj.settings".into()),
            env_file: Some(PathBuf::from("/etc/proj/proj.env")),
            user: None,
            group: None,
            template: None,
            unit_dir: PathBuf::from("/etc/systemd/system"),
            link_units: Some(false),
            systemd_prefix: vec![],
            venv: "venv".into(),
            celery_args: vec![],
            shutdown_budget: Duration::from_secs(90),
            ready_within: Duration::from_mins(1),
            dropped_tasks: DroppedTasks::Fail,
        }
    }

    #[tokio::test]
    async fn renders_the_worker_unit() {
        let cfg = config();
        let inst = Instance {
            release: "r2".into(),
            slot: cfg.instance_slot("b"),
            argv: cfg.celery_argv("r2", "b"),
            cwd: cfg.release_dir("r2"),
            pid: None,
        };
        assert_eq!(cfg.service().unit(&inst.slot), "proj-worker-b.service");
        let text = render(&zdd_engine::host::LocalHost::new(), &cfg, &inst).await.unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        insta::assert_snapshot!(exec, @"ExecStart=/srv/proj/releases/r2/venv/bin/celery -A proj worker -Q celery,emails -c 4 -n worker-b@%%h --loglevel INFO");
        assert!(text.contains("TimeoutStopSec=90\n"), "{text}");
        assert!(text.contains("KillSignal=SIGTERM\n"), "{text}");
    }
}
