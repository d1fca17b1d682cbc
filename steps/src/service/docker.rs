//! The `docker` manager of the `service` kind: each instance is a container of the release's image, named
//! `<app>-<slot>` (`<app>-<lane>-<slot>` with a lane), driven through the `docker` CLI on the step's host.
//!
//! Why the CLI through the [`zdd_engine::host::Host`] and not the engine API (bollard): every command is then a
//! [`Command`] like any other step's, so it runs on a remote host over the same SSH transport, shows word for
//! word in `zdd plan`, and its output lands in the run's events; an API client would need the engine's socket
//! forwarded to every host and would be invisible in previews.
//!
//! Why unix sockets in a bind mount and the host's network: the container's gunicorn binds
//! `unix:<root>/run/<slot>.sock`, a directory mounted at the same path from the host, so the health gate, the
//! socket link swap of `proxy-switch` and its lanes, and `drain-stop` work on the container exactly as on a
//! process. `drain-stop` reads the socket's accept queue with `ss`, which lists the sockets of its own network
//! namespace only: the container shares the host's (`--network host`, the default) so that the queue it waits on
//! is the container's. Nginx never sees a port, so it never sends traffic to a container zdd has not health-checked.
//!
//! gunicorn is the container's command in exec form (PID 1, so `docker stop` TERMs the master itself: a graceful
//! stop) and `--stop-timeout` is the graceful timeout plus 5 s, before Docker's KILL. gunicorn logs to
//! `<root>/log/<app>-<slot>.log` (also a bind mount) so `log-check` reads a container's log as a process's.
//! `<root>/shared` is mounted too: the published static files (and their manifest, which Django's manifest
//! storage reads at run time) and media live there, shared by every release as on the host.
//! The env file is read by zdd and each variable passed as `--env NAME`, its value in the `docker` client's own
//! environment: no secret is on a command line, in a preview or in the journal.

use std::collections::BTreeMap;

use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};

use super::config::ServiceConfig;
use super::instance::Instance;
use crate::common::{path_text, quiet, tail, words};
use crate::{envfile, envsnap};

/// A docker-managed service's own settings (the `image`, `docker`, `docker-network` and `docker-args` fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DockerConfig {
    /// The image of every instance; `None`: `<app>:<release>`, what the `image` kind builds.
    pub image: Option<String>,
    /// The `docker` command words (e.g. `sudo docker`, `docker --context prod`).
    pub docker: Vec<String>,
    pub network: String,
    /// Extra `docker run` arguments (volumes for an SQLite file or media, `--user`, `--memory`...).
    pub run_args: Vec<String>,
}

impl DockerConfig {
    pub fn from_fields(ctx: &zdd_engine::settings::SettingsCtx<'_>) -> Self {
        let docker = words(ctx.given("docker").unwrap_or("docker"));
        Self {
            image: ctx.given("image").map(str::to_owned),
            docker: if docker.is_empty() { vec!["docker".to_owned()] } else { docker },
            network: ctx.given("docker-network").unwrap_or("host").to_owned(),
            run_args: ctx.strings("docker-args").iter().flat_map(|a| words(a)).collect(),
        }
    }

    /// `docker ARGS`.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(self.docker[0].clone());
        cmd.args.extend(self.docker[1..].iter().cloned());
        cmd.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        cmd
    }

    pub fn image(&self, app: &str, release: &str) -> String {
        self.image.clone().unwrap_or_else(|| format!("{app}:{release}"))
    }
}

fn settings(cfg: &ServiceConfig) -> Result<&DockerConfig, StepError> {
    cfg.docker.as_ref().ok_or_else(|| StepError::fatal(format!("service `{}` has no docker settings", cfg.step)))
}

/// The container of an instance slot.
pub fn container(cfg: &ServiceConfig, slot: &str) -> String {
    format!("{}-{slot}", cfg.app)
}

/// The server (gunicorn, or uvicorn for an ASGI service) inside the image: found on the image's PATH by its
/// name (the venv's place is the Dockerfile's business), its logs into the slot's log file in the bind-mounted
/// log directory.
fn gunicorn_argv(cfg: &ServiceConfig, inst: &Instance) -> Vec<String> {
    let mut argv = inst.argv.clone();
    if let Some(first) = argv.first_mut() {
        let name = std::path::Path::new(first.as_str())
            .file_name()
            .map_or_else(|| "gunicorn".to_owned(), |n| n.to_string_lossy().into_owned());
        *first = name;
    }
    let log = path_text(&cfg.log_file(&inst.slot));
    for flag in ["--access-logfile", "--error-logfile"] {
        if let Some(i) = argv.iter().position(|a| a == flag)
            && let Some(value) = argv.get_mut(i + 1)
        {
            value.clone_from(&log);
        }
    }
    argv
}

/// `docker run` for an instance; `env_names` are passed as `--env NAME` (their values in the client's environment).
pub fn run_command(cfg: &ServiceConfig, inst: &Instance, env_names: &[String]) -> Result<Command, StepError> {
    let docker = settings(cfg)?;
    let slot = &inst.slot;
    let (run, log, shared) =
        (path_text(&cfg.run_dir()), path_text(&cfg.log_dir()), path_text(&cfg.root.join("shared")));
    let mut args: Vec<String> = ["run", "--detach", "--name"].map(str::to_owned).to_vec();
    args.push(container(cfg, slot));
    for (label, value) in [("app", cfg.app.as_str()), ("slot", slot), ("release", &inst.release)] {
        args.push("--label".into());
        args.push(format!("zdd.{label}={value}"));
    }
    args.extend(["--network".into(), docker.network.clone()]);
    args.extend(["--stop-timeout".into(), (cfg.graceful_timeout.as_secs() + 5).to_string()]);
    for dir in [&run, &log, &shared] {
        args.extend(["--volume".into(), format!("{dir}:{dir}")]);
    }
    let mut fixed = vec![
        format!("ZDD_RELEASE={}", inst.release),
        format!("ZDD_SLOT={slot}"),
        format!("ZDD_SOCKET={}", path_text(&cfg.socket(slot))),
        "PYTHONUNBUFFERED=1".to_owned(),
    ];
    if let Some(s) = &cfg.settings {
        fixed.push(format!("DJANGO_SETTINGS_MODULE={s}"));
    }
    for var in fixed.into_iter().chain(env_names.iter().cloned()) {
        args.extend(["--env".into(), var]);
    }
    args.extend(docker.run_args.iter().cloned());
    args.push(docker.image(&cfg.app, &inst.release));
    args.extend(gunicorn_argv(cfg, inst));
    Ok(docker.command(&args))
}

/// Start the instance's container: a container left in the slot (stopped, or exited) is removed first.
pub async fn start(ctx: &UndoCtx, cfg: &ServiceConfig, inst: &Instance) -> Result<(), StepError> {
    let docker = settings(cfg)?;
    let name = container(cfg, &inst.slot);
    quiet(ctx, &docker.command(&["rm", "--force", &name])).await?;
    let file = envsnap::for_release(ctx.host.as_ref(), &inst.cwd, cfg.env_file.as_deref()).await?;
    let env: BTreeMap<String, String> = match &file {
        Some(file) => envfile::load(ctx.host.as_ref(), file, Some(&ctx.redactor)).await?,
        None => BTreeMap::new(),
    };
    let names: Vec<String> = env.keys().cloned().collect();
    let mut cmd = run_command(cfg, inst, &names)?;
    cmd.env = env;
    ctx.exec_ok(&cmd).await?;
    Ok(())
}

/// Is the slot's container running?
pub async fn running(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<bool, StepError> {
    let docker = settings(cfg)?;
    let out =
        quiet(ctx, &docker.command(&["inspect", "--format", "{{.State.Running}}", &container(cfg, slot)])).await?;
    Ok(out.success() && out.stdout_str().trim() == "true")
}

/// Wait until the slot's container reports healthy: its image's HEALTHCHECK answered. `Ok(true)` at once for
/// an image without one (nothing to wait for beyond its socket), `Ok(false)` if it turned unhealthy or
/// `timeout` passed. A container restarted by a rollback listens long before its workers have booted on a busy
/// host; traffic sent back to it meanwhile would wait in its queue past a client's patience.
pub async fn wait_healthy(
    ctx: &UndoCtx,
    cfg: &ServiceConfig,
    slot: &str,
    timeout: std::time::Duration,
) -> Result<bool, StepError> {
    let docker = settings(cfg)?;
    let format = "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}";
    let cmd = docker.command(&["inspect", "--format", format, &container(cfg, slot)]);
    let start = std::time::Instant::now();
    loop {
        let out = quiet(ctx, &cmd).await?;
        match out.stdout_str().trim() {
            "healthy" | "none" => return Ok(true),
            "unhealthy" => return Ok(false),
            _ if start.elapsed() >= timeout => return Ok(false),
            _ => crate::common::sleep(&ctx.cancel, std::time::Duration::from_millis(250)).await?,
        }
    }
}

/// `docker stop` (TERM to gunicorn, KILL after `--stop-timeout`), then remove the container, so that no stopped
/// container of a release is left behind. Returns whether it was running.
pub async fn stop(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str) -> Result<bool, StepError> {
    let docker = settings(cfg)?;
    let name = container(cfg, slot);
    let was = running(ctx, cfg, slot).await?;
    if was {
        let wait = (cfg.graceful_timeout.as_secs() + 5).to_string();
        ctx.exec_ok(&docker.command(&["stop", "-t", &wait, &name])).await?;
    }
    // Also an exited container (a release that died at boot): nothing of the slot stays.
    quiet(ctx, &docker.command(&["rm", "--force", &name])).await?;
    Ok(was)
}

/// The container's last output lines (what gunicorn printed before it logs to its file: an import error).
pub async fn last_lines(ctx: &UndoCtx, cfg: &ServiceConfig, slot: &str, n: usize) -> String {
    let Ok(docker) = settings(cfg) else {
        return String::new();
    };
    let cmd = docker.command(&["logs", "--tail", &n.to_string(), &container(cfg, slot)]);
    let from_docker =
        quiet(ctx, &cmd).await.map(|o| format!("{}{}", o.stdout_str(), o.stderr_str())).unwrap_or_default();
    let from_file = match ctx.host.read_file(&cfg.log_file(slot)).await {
        Ok(Some(bytes)) => tail(&String::from_utf8_lossy(&bytes), n),
        _ => String::new(),
    };
    tail(&format!("{from_docker}{from_file}"), n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::{Listen, Manager};
    use std::path::PathBuf;
    use std::time::Duration;

    fn config() -> ServiceConfig {
        ServiceConfig {
            step: "web".into(),
            app: "shop".into(),
            root: PathBuf::from("/srv/shop"),
            application: "shop.wsgi:application".into(),
            server: crate::service::server::Server::default(),
            listen: Listen::Socket,
            manager: Manager::Docker,
            workers: 2,
            timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(20),
            settings: Some("shop.settings".into()),
            env_file: None,
            user: None,
            group: None,
            template: None,
            unit_dir: PathBuf::from("/etc/systemd/system"),
            systemd_prefix: vec![],
            link_units: None,
            control_socket: false,
            gunicorn_args: vec![],
            venv: "venv".into(),
            lane: Some("2".into()),
            docker: Some(DockerConfig {
                image: None,
                docker: vec!["docker".into()],
                network: "host".into(),
                run_args: vec!["--memory".into(), "512m".into()],
            }),
        }
    }

    #[test]
    fn the_run_command_mounts_the_socket_directory_and_runs_gunicorn_as_pid_1() {
        let cfg = config();
        let slot = cfg.instance_slot("a");
        let inst = Instance::new(&cfg, "20260101T000000Z", &slot).unwrap();
        let cmd = run_command(&cfg, &inst, &["SECRET_KEY".to_owned()]).unwrap();
        insta::assert_snapshot!(cmd.display(), @"docker run --detach --name shop-2-a --label zdd.app=shop --label zdd.slot=2-a --label zdd.release=20260101T000000Z --network host --stop-timeout 25 --volume /srv/shop/run:/srv/shop/run --volume /srv/shop/log:/srv/shop/log --volume /srv/shop/shared:/srv/shop/shared --env ZDD_RELEASE=20260101T000000Z --env ZDD_SLOT=2-a --env ZDD_SOCKET=/srv/shop/run/2-a.sock --env PYTHONUNBUFFERED=1 --env DJANGO_SETTINGS_MODULE=shop.settings --env SECRET_KEY --memory 512m shop:20260101T000000Z gunicorn shop.wsgi:application --bind unix:/srv/shop/run/2-a.sock --workers 2 --timeout 30 --graceful-timeout 20 --access-logfile /srv/shop/log/shop-2-a.log --error-logfile /srv/shop/log/shop-2-a.log");
    }
}
