//! A worker step's settings, parsed from its fields at validation, and what is derived from them: the Celery
//! command line, the node name of a slot's worker, and the [`ServiceConfig`] through which the worker is run by
//! the service kind's backends (systemd unit or detached process, record and log files).
//!
//! A slot's worker is named `<name>-<slot>` everywhere: its unit `<app>-<name>-<slot>.service`, its record
//! `<root>/run/<name>-<slot>.json`, its log `<root>/log/<app>-<name>-<slot>.log` and its Celery node
//! `<name>-<slot>@<hostname>`. The old and the new release's workers are therefore always told apart, by
//! systemd, by zdd and by Celery's remote control.

use std::path::PathBuf;
use std::time::Duration;

use zdd_engine::diag::Diagnostics;
use zdd_engine::plan::Plan;
use zdd_engine::settings::SettingsCtx;

use crate::common::path_text;
use crate::service::config::{Listen, Manager, ServiceConfig, UnitPlacement};

/// What to do when the live workers know a task the new release no longer defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DroppedTasks {
    /// Refuse the release before its workers start (the default): the live web may still send the task, and
    /// once the old workers stop consuming, a new worker would discard it as unregistered.
    Fail,
    /// Say so and go on: for a task you know nothing sends any more.
    Warn,
}

/// A worker step's settings, paths absolute. Recorded in the undo facts of `worker` and `worker-retire`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerConfig {
    pub step: String,
    /// Names the slot's worker: `<name>-<slot>`.
    pub name: String,
    /// The plan's app: units are `<app>-<name>-<slot>.service`.
    pub app: String,
    /// Celery's `-A`: the module holding the Celery app (`proj`, as in Celery's Django tutorial).
    pub celery_app: String,
    pub root: PathBuf,
    pub queues: Vec<String>,
    pub concurrency: i64,
    pub manager: Manager,
    pub settings: Option<String>,
    pub env_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub template: Option<PathBuf>,
    pub unit_dir: PathBuf,
    pub link_units: Option<bool>,
    pub systemd_prefix: Vec<String>,
    pub venv: String,
    pub celery_args: Vec<String>,
    /// How long a stopping worker may finish the tasks it holds (warm shutdown) before it is killed.
    pub shutdown_budget: Duration,
    /// How long the new worker has to answer `inspect ping` after it starts.
    pub ready_within: Duration,
    pub dropped_tasks: DroppedTasks,
}

impl WorkerConfig {
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Self, Diagnostics> {
        let UnitPlacement { unit_dir, systemd_prefix, link_units } = UnitPlacement::from_fields(ctx);
        // `queues "a" "b"` or, through a variable, `queues "a b"` / `queues "a,b"`.
        let mut queues: Vec<String> = ctx
            .strings("queues")
            .iter()
            .flat_map(|q| q.split([' ', ',']).filter(|q| !q.is_empty()).map(str::to_owned).collect::<Vec<_>>())
            .collect();
        if queues.is_empty() {
            queues.push("celery".to_owned());
        }
        Ok(Self {
            step: ctx.step.name.clone(),
            name: ctx.given("name").unwrap_or(&ctx.step.name).to_owned(),
            app: ctx.required("app")?.to_owned(),
            celery_app: ctx.required("celery-app")?.to_owned(),
            root: ctx.required_path("root")?,
            queues,
            concurrency: ctx.int("concurrency").unwrap_or(2).max(1),
            manager: if ctx.str("manager") == Some("process") { Manager::Process } else { Manager::Systemd },
            settings: ctx.given("settings").map(str::to_owned),
            env_file: ctx.path("env-file"),
            user: ctx.given("user").map(str::to_owned),
            group: ctx.given("group").map(str::to_owned),
            template: ctx.path("template"),
            unit_dir,
            link_units,
            systemd_prefix,
            venv: ctx.str("venv").unwrap_or("venv").to_owned(),
            celery_args: ctx.strings("celery-args"),
            shutdown_budget: ctx.duration("shutdown-budget", Duration::from_mins(1)),
            ready_within: ctx.duration("ready-within", Duration::from_mins(1)),
            dropped_tasks: if ctx.str("dropped-tasks") == Some("warn") {
                DroppedTasks::Warn
            } else {
                DroppedTasks::Fail
            },
        })
    }

    /// The settings of the `worker` step named `name` (validation made the reference point at one).
    pub fn of_step<'p>(plan: &'p Plan, name: &str) -> Result<&'p Self, zdd_engine::kind::StepError> {
        plan.step_by_name(name)
            .filter(|s| s.kind == "worker")
            .and_then(|s| s.settings.get::<Self>())
            .ok_or_else(|| zdd_engine::kind::StepError::fatal(format!("`{name}` is not a worker step of this plan")))
    }

    /// What names a slot's worker (unit, record, log, node): `<name>-<slot>`.
    pub fn instance_slot(&self, slot: &str) -> String {
        format!("{}-{slot}", self.name)
    }

    /// The Celery node name given with `-n` (`%h`: the host name, expanded by Celery).
    pub fn node_name(&self, slot: &str) -> String {
        format!("{}@%h", self.instance_slot(slot))
    }

    /// What every reply of the slot's node starts with: its name up to the host name.
    pub fn node_prefix(&self, slot: &str) -> String {
        format!("{}@", self.instance_slot(slot))
    }

    pub fn release_dir(&self, release: &str) -> PathBuf {
        crate::manage::release_dir(&self.root, release)
    }

    /// `<release>/<venv>/bin/<program>`.
    pub fn bin(&self, release: &str, program: &str) -> String {
        path_text(&self.release_dir(release).join(&self.venv).join("bin").join(program))
    }

    /// The worker's command line for a slot.
    pub fn celery_argv(&self, release: &str, slot: &str) -> Vec<String> {
        let mut argv = vec![
            self.bin(release, "celery"),
            "-A".into(),
            self.celery_app.clone(),
            "worker".into(),
            "-Q".into(),
            self.queues.join(","),
            "-c".into(),
            self.concurrency.to_string(),
            "-n".into(),
            self.node_name(slot),
            "--loglevel".into(),
            "INFO".into(),
        ];
        argv.extend(self.celery_args.iter().cloned());
        argv
    }

    /// The service settings the service kind's backends start, stop and read this worker with. No socket
    /// (`listen` is a port, which the backends only use to clear a stale socket), and the stop budget is the
    /// worker's shutdown budget: under systemd `TimeoutStopSec`, as a process the wait before KILL.
    pub fn service(&self) -> ServiceConfig {
        ServiceConfig {
            step: self.step.clone(),
            app: self.app.clone(),
            root: self.root.clone(),
            listen: Listen::Port,
            manager: self.manager,
            workers: self.concurrency,
            graceful_timeout: self.shutdown_budget,
            settings: self.settings.clone(),
            env_file: self.env_file.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            template: self.template.clone(),
            unit_dir: self.unit_dir.clone(),
            systemd_prefix: self.systemd_prefix.clone(),
            link_units: self.link_units,
            control_socket: false,
            venv: self.venv.clone(),
            ..ServiceConfig::default()
        }
    }
}
