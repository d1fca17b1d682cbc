//! The systemd unit of a slot's worker, rendered from `templates/celery-worker.service.hbs` (or the step's own
//! template) with the values the service units get, and the node name.

use serde_json::Value;
use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

use super::config::WorkerConfig;
use crate::service::instance::Instance;
use crate::templates;

pub async fn render(host: &dyn Host, cfg: &WorkerConfig, inst: &Instance) -> Result<String, StepError> {
    let service = cfg.service();
    let env_file = crate::envsnap::for_release(host, &inst.cwd, service.env_file.as_deref()).await?;
    let mut data = crate::service::unit::data(&service, inst, env_file.as_deref())?;
    if let Value::Object(map) = &mut data {
        // `%` starts a systemd specifier (`%h` is the user's home there): Celery must see `-n name@%h` as written.
        map.insert("exec_start".into(), Value::String(inst.argv.join(" ").replace('%', "%%")));
        map.insert("node".into(), Value::String(format!("{}@%h", inst.slot)));
        map.insert("stop_timeout_s".into(), Value::from(cfg.shutdown_budget.as_secs().max(1)));
    }
    let template = templates::load(host, cfg.template.as_deref(), templates::CELERY_WORKER_SERVICE).await?;
    templates::render(&service.unit(&inst.slot), &template, &data)
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
