//! A service step's settings, parsed from its fields at validation, and the names and paths derived from them (unit name, socket,
//! pid and log files). Other kinds (`health-gate`, `log-check`, `drain-stop`) name a service step and read its
//! settings from here, so each fact is written once in a plan. A service with a `lane` (one of several instances
//! behind the proxy) names everything `<lane>-<slot>` instead of `<slot>`: see [`ServiceConfig::instance_slot`].

use std::path::PathBuf;
use std::time::Duration;

use zdd_engine::diag::Diagnostics;
use zdd_engine::host::Command;
use zdd_engine::kind::StepError;
use zdd_engine::plan::Plan;
use zdd_engine::settings::SettingsCtx;

use super::server::{self, Server};
use crate::common::{path_text, words};
use crate::manage::release_dir;

/// Where the instance listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Listen {
    /// A unix socket per slot, `<root>/run/<slot>.sock`; Nginx follows the `current.sock` symlink.
    #[default]
    Socket,
    /// `127.0.0.1:<slot>`: the slots are port numbers; Nginx is reloaded with the new port.
    Port,
}

/// What supervises the instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Manager {
    #[default]
    Systemd,
    /// A detached gunicorn with a pid file: for machines without systemd (demos, containers, tests).
    Process,
    /// A container of the release's image per instance ([`super::docker`]).
    Docker,
}

/// A service step's settings, paths absolute. Recorded in the undo facts of the steps that act on the
/// service (service, drain-stop), whose undos act with these settings and no plan.
/// `Default` lets the `worker` kind fill only what its Celery instances use.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub step: String,
    pub app: String,
    pub root: PathBuf,
    /// The application the server loads: the `wsgi` field for gunicorn, `asgi` for the uvicorn servers.
    #[serde(alias = "wsgi")]
    pub application: String,
    /// What runs it (journals from before ASGI have none: gunicorn).
    #[serde(default)]
    pub server: Server,
    pub listen: Listen,
    pub manager: Manager,
    pub workers: i64,
    pub timeout: Duration,
    pub graceful_timeout: Duration,
    pub settings: Option<String>,
    pub env_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub template: Option<PathBuf>,
    pub unit_dir: PathBuf,
    pub systemd_prefix: Vec<String>,
    /// `systemctl link` unit files after writing them: always, never, or (`None`) when systemd does not find them.
    pub link_units: Option<bool>,
    pub control_socket: bool,
    pub gunicorn_args: Vec<String>,
    pub venv: String,
    /// One of several instances behind the proxy (rolling replacement): its names are `<lane>-<slot>`.
    pub lane: Option<String>,
    /// The image, docker command and run arguments of the `docker` manager (`None` under the others).
    #[serde(default)]
    pub docker: Option<super::docker::DockerConfig>,
}

/// The environment variable that supplies the systemd command prefix when the step has none.
pub const SYSTEMD_PREFIX_ENV: &str = "ZDD_SYSTEMD_PREFIX";

/// Where and how units are installed, from the fields the service and worker kinds share (`unit-dir`,
/// `systemd-prefix` or `$ZDD_SYSTEMD_PREFIX`, `unit-link`).
pub struct UnitPlacement {
    pub unit_dir: PathBuf,
    pub systemd_prefix: Vec<String>,
    pub link_units: Option<bool>,
}

impl UnitPlacement {
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Self {
        let prefix = ctx
            .given("systemd-prefix")
            .map(str::to_owned)
            .or_else(|| std::env::var(SYSTEMD_PREFIX_ENV).ok())
            .unwrap_or_default();
        let unit_dir = ctx.path("unit-dir").unwrap_or_else(|| PathBuf::from("/etc/systemd/system"));
        let link_units = match ctx.str("unit-link") {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ if super::unit::in_systemd_dir(&unit_dir) => Some(false),
            _ => None,
        };
        Self { unit_dir, systemd_prefix: words(&prefix), link_units }
    }
}

impl ServiceConfig {
    /// From a service step's fields, at validation (its `check` refused a lane with port listen already).
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Self, Diagnostics> {
        let server = Server::from_word(ctx.str("server"));
        let UnitPlacement { unit_dir, systemd_prefix, link_units } = UnitPlacement::from_fields(ctx);
        Ok(Self {
            step: ctx.step.name.clone(),
            app: ctx.required("app")?.to_owned(),
            root: ctx.required_path("root")?,
            application: ctx.required(server.application_field())?.to_owned(),
            server,
            listen: if ctx.str("listen") == Some("port") { Listen::Port } else { Listen::Socket },
            manager: match ctx.str("manager") {
                Some("process") => Manager::Process,
                Some("docker") => Manager::Docker,
                _ => Manager::Systemd,
            },
            workers: ctx.int("workers").unwrap_or(3).max(1),
            timeout: ctx.duration("worker-timeout", Duration::from_secs(30)),
            graceful_timeout: ctx.duration("graceful-timeout", Duration::from_secs(30)),
            settings: ctx.given("settings").map(str::to_owned),
            env_file: ctx.path("env-file"),
            user: ctx.given("user").map(str::to_owned),
            group: ctx.given("group").map(str::to_owned),
            template: ctx.path("template"),
            unit_dir,
            systemd_prefix,
            link_units,
            control_socket: ctx.bool("control-socket", true),
            gunicorn_args: ctx.strings("gunicorn-args"),
            venv: ctx.str("venv").unwrap_or("venv").to_owned(),
            lane: ctx.given("lane").map(str::to_owned),
            docker: (ctx.str("manager") == Some("docker")).then(|| super::docker::DockerConfig::from_fields(ctx)),
        })
    }

    /// The instance slot of the plan's `slot`: what names this step's unit, socket, record, log and control
    /// socket. The slot itself, or `<lane>-<slot>` for a lane of a rolling replacement, so that every lane
    /// alternates between its own two instances. Every other method takes an instance slot.
    pub fn instance_slot(&self, slot: &str) -> String {
        match &self.lane {
            Some(lane) => format!("{lane}-{slot}"),
            None => slot.to_owned(),
        }
    }

    /// The settings of the `service` step named `name` in this plan (validation made the reference point at one).
    pub fn of_step<'p>(plan: &'p Plan, name: &str) -> Result<&'p Self, StepError> {
        plan.step_by_name(name)
            .filter(|s| s.kind == "service")
            .and_then(|s| s.settings.get::<Self>())
            .ok_or_else(|| StepError::fatal(format!("`{name}` is not a service step of this plan")))
    }

    pub fn unit(&self, slot: &str) -> String {
        format!("{}-{slot}.service", self.app)
    }

    pub fn unit_file(&self, slot: &str) -> PathBuf {
        self.unit_dir.join(self.unit(slot))
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn socket(&self, slot: &str) -> PathBuf {
        self.run_dir().join(format!("{slot}.sock"))
    }

    /// The record of the instance in a slot (release, command, pid): `<root>/run/<slot>.json`, mode 0600.
    pub fn record_file(&self, slot: &str) -> PathBuf {
        self.run_dir().join(format!("{slot}.json"))
    }

    pub fn log_file(&self, slot: &str) -> PathBuf {
        self.log_dir().join(format!("{}-{slot}.log", self.app))
    }

    pub fn port(&self, slot: &str) -> Result<u16, StepError> {
        slot.parse().map_err(|_| {
            StepError::fatal(format!("slot `{slot}` is not a port: with `listen \"port\"` the plan's slots are ports"))
        })
    }

    /// gunicorn's `--bind` for a slot.
    pub fn bind(&self, slot: &str) -> Result<String, StepError> {
        Ok(match self.listen {
            Listen::Socket => format!("unix:{}", path_text(&self.socket(slot))),
            Listen::Port => format!("127.0.0.1:{}", self.port(slot)?),
        })
    }

    pub fn release_dir(&self, release: &str) -> PathBuf {
        release_dir(&self.root, release)
    }

    /// The command line of a slot's instance: gunicorn's, or uvicorn's ([`server`]).
    pub fn server_argv(&self, release: &str, slot: &str) -> Result<Vec<String>, StepError> {
        let dir = self.release_dir(release);
        let program = path_text(&dir.join(&self.venv).join("bin").join(self.server.program()));
        if self.server == Server::Uvicorn {
            let bind = self.bind(slot)?;
            let launch = server::Launch {
                application: &self.application,
                bind: &bind,
                workers: self.workers,
                graceful_s: self.graceful_timeout.as_secs().max(1),
            };
            let mut argv = vec![program];
            argv.extend(server::uvicorn_args(&launch));
            argv.extend(self.gunicorn_args.iter().cloned());
            return Ok(argv);
        }
        let mut argv = vec![
            program,
            self.application.clone(),
            "--bind".into(),
            self.bind(slot)?,
            "--workers".into(),
            self.workers.to_string(),
            "--timeout".into(),
            self.timeout.as_secs().max(1).to_string(),
            "--graceful-timeout".into(),
            self.graceful_timeout.as_secs().max(1).to_string(),
            "--access-logfile".into(),
            "-".into(),
            "--error-logfile".into(),
            "-".into(),
        ];
        // gunicorn 27 opens a control socket at one default path for every master: give each slot its own.
        if self.control_socket {
            argv.push("--control-socket".into());
            argv.push(path_text(&self.run_dir().join(format!("{slot}.ctl"))));
        }
        if self.server == Server::UvicornWorker {
            argv.extend(["--worker-class".into(), server::UVICORN_WORKER_CLASS.into()]);
        }
        argv.extend(self.gunicorn_args.iter().cloned());
        Ok(argv)
    }

    /// `systemctl ARGS`, behind the configured prefix (`nsenter -t <pid> -m -p` to drive a namespaced systemd).
    pub fn systemctl<S: AsRef<str>>(&self, args: &[S]) -> Command {
        self.prefixed("systemctl", args)
    }

    pub fn journalctl<S: AsRef<str>>(&self, args: &[S]) -> Command {
        self.prefixed("journalctl", args)
    }

    fn prefixed<S: AsRef<str>>(&self, program: &str, args: &[S]) -> Command {
        let mut words: Vec<String> = self.systemd_prefix.clone();
        words.push(program.to_owned());
        words.extend(args.iter().map(|a| a.as_ref().to_owned()));
        let mut cmd = Command::new(words.remove(0));
        cmd.args.extend(words);
        cmd
    }
}

/// Why `lane` cannot name a lane, if it cannot. Lanes are ASCII letters and digits only: a lane's instance is
/// `<lane>-<slot>` and its link `current-<lane>.sock`, and slot names may hold `-`, so with a `-` (or a lane
/// called `current`) two lanes' names could meet (`1-a` + `b` and `1` + `a-b`; `current` + `a` is lane `a`'s link).
pub(crate) fn lane_name_problem(lane: &str) -> Option<&'static str> {
    if lane.is_empty() || !lane.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some("a lane name is letters and digits only")
    } else if lane == "current" {
        Some("`current` cannot name a lane: it is the links' prefix")
    } else {
        None
    }
}
