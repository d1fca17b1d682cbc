//! The systemd unit of a slot, rendered from `templates/gunicorn.service.hbs` (or the step's own template).

use std::path::Path;

use serde_json::json;
use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

use super::config::ServiceConfig;
use super::instance::Instance;
use super::server::Server;
use crate::common::path_text;
use crate::templates;

/// Directories systemd reads units from by itself; units elsewhere are `systemctl link`ed.
pub fn in_systemd_dir(dir: &Path) -> bool {
    ["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .any(|d| dir == Path::new(d))
}

/// The values a unit template sees; `env_file` is the release's ([`crate::envsnap::for_release`]).
pub fn data(cfg: &ServiceConfig, inst: &Instance, env_file: Option<&Path>) -> Result<serde_json::Value, StepError> {
    if let Some(word) = inst.argv.iter().find(|a| a.chars().any(char::is_whitespace) || a.is_empty()) {
        return Err(StepError::fatal(format!(
            "server argument {word:?} is empty or has spaces: not allowed in a unit"
        )));
    }
    Ok(json!({
        "unit": cfg.unit(&inst.slot),
        "app": cfg.app,
        "slot": inst.slot,
        "release": inst.release,
        "release_dir": path_text(&inst.cwd),
        "env_file": env_file.map(path_text),
        "settings": cfg.settings,
        "user": cfg.user,
        "group": cfg.group,
        "exec_start": inst.argv.join(" "),
        "bind": inst.argv.iter().skip_while(|a| *a != "--bind").nth(1),
        "stop_timeout_s": cfg.graceful_timeout.as_secs() + 5,
        "server": cfg.server.word(),
        "server_name": match cfg.server {
            Server::Gunicorn => "Gunicorn",
            Server::UvicornWorker => "Gunicorn (uvicorn workers)",
            Server::Uvicorn => "Uvicorn",
        },
        "service_type": cfg.server.systemd_type(),
        "notify": cfg.server.systemd_type() == "notify",
    }))
}

pub async fn render(host: &dyn Host, cfg: &ServiceConfig, inst: &Instance) -> Result<String, StepError> {
    let template = templates::load(host, cfg.template.as_deref(), templates::GUNICORN_SERVICE).await?;
    let env_file = crate::envsnap::for_release(host, &inst.cwd, cfg.env_file.as_deref()).await?;
    templates::render(&cfg.unit(&inst.slot), &template, &data(cfg, inst, env_file.as_deref())?)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::service::config::{Listen, Manager};

    pub(super) fn config() -> ServiceConfig {
        ServiceConfig {
            step: "web".into(),
            app: "shop".into(),
            root: PathBuf::from("/srv/shop"),
            application: "shop.wsgi:application".into(),
            server: crate::service::server::Server::Gunicorn,
            listen: Listen::Socket,
            manager: Manager::Systemd,
            workers: 4,
            timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(30),
            settings: Some("shop.settings".into()),
            env_file: Some(PathBuf::from("/etc/shop/shop.env")),
            user: Some("www-data".into()),
            group: None,
            template: None,
            unit_dir: PathBuf::from("/etc/systemd/system"),
            systemd_prefix: vec![],
            link_units: Some(false),
            control_socket: true,
            gunicorn_args: vec![],
            venv: "venv".into(),
            lane: None,
            docker: None,
        }
    }

    #[tokio::test]
    async fn renders_the_default_unit() {
        let cfg = config();
        let inst = Instance::new(&cfg, "20261126-171500", "b").unwrap();
        let text = render(&zdd_engine::host::LocalHost::new(), &cfg, &inst).await.unwrap();
        insta::assert_snapshot!(text);
    }

    #[tokio::test]
    async fn renders_an_asgi_unit_for_each_server() {
        let mut cfg = config();
        cfg.application = "mysite.asgi:application".into();
        for server in [Server::UvicornWorker, Server::Uvicorn] {
            cfg.server = server;
            let inst = Instance::new(&cfg, "20261126-171500", "b").unwrap();
            let text = render(&zdd_engine::host::LocalHost::new(), &cfg, &inst).await.unwrap();
            insta::assert_snapshot!(format!("asgi_unit_{}", server.word()), text);
        }
    }

    #[test]
    fn a_lane_names_its_own_instances() {
        let mut cfg = config();
        assert_eq!(cfg.instance_slot("b"), "b");
        cfg.lane = Some("2".into());
        let slot = cfg.instance_slot("b");
        assert_eq!(cfg.unit(&slot), "shop-2-b.service");
        assert_eq!(cfg.socket(&slot), PathBuf::from("/srv/shop/run/2-b.sock"));
        assert_eq!(cfg.record_file(&slot), PathBuf::from("/srv/shop/run/2-b.json"));
        let argv = cfg.server_argv("r1", &slot).unwrap();
        assert!(argv.contains(&"/srv/shop/run/2-b.ctl".to_owned()), "{argv:?}");
    }

    /// A release that took a snapshot of the plan's env file runs with it, not with the shared file.
    #[tokio::test]
    async fn the_unit_reads_the_release_snapshot_of_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.root = dir.path().to_path_buf();
        let inst = Instance::new(&cfg, "r1", "a").unwrap();
        let host = zdd_engine::host::LocalHost::new();
        assert!(render(&host, &cfg, &inst).await.unwrap().contains("EnvironmentFile=/etc/shop/shop.env\n"));
        let shared = cfg.env_file.clone().unwrap();
        let record = crate::envsnap::EnvRecord::of(&shared, &std::collections::BTreeMap::new());
        std::fs::create_dir_all(&inst.cwd).unwrap();
        std::fs::write(inst.cwd.join(crate::envsnap::RECORD), serde_json::to_vec(&record).unwrap()).unwrap();
        let text = render(&host, &cfg, &inst).await.unwrap();
        let snapshot = format!("EnvironmentFile={}\n", inst.cwd.join(crate::envsnap::SNAPSHOT).display());
        assert!(text.contains(&snapshot), "{text}");
    }

    #[tokio::test]
    async fn refuses_a_value_that_would_break_the_unit() {
        let mut cfg = config();
        cfg.settings = Some("shop.settings\nExecStartPre=/bin/evil".into());
        let inst = Instance::new(&cfg, "r1", "a").unwrap();
        let err = render(&zdd_engine::host::LocalHost::new(), &cfg, &inst).await.unwrap_err();
        assert!(format!("{err:?}").contains("line break"), "{err:?}");
    }
}
