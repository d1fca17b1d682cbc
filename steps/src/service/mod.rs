//! The `service` kind: a gunicorn instance of the new release in the deploy's slot, under systemd (a unit per
//! slot, `<app>-<slot>.service`) or as a detached process with a pid and log file. It listens on its own unix
//! socket (`<root>/run/<slot>.sock`) or on `127.0.0.1:<slot>`; the old instance keeps serving meanwhile.
//! With a `lane`, the step is one of several instances (rolling replacement) and its slot is `<lane>-<slot>`.
//! Under the `docker` manager each instance is a container of the release's image ([`docker`]).

pub mod backend;
pub mod config;
pub mod connections;
pub mod docker;
pub mod doctor;
pub mod drain;
pub mod instance;
pub mod server;
pub mod unit;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::doctor::Check;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, sleep, to_facts};
use crate::manage::{ENV_FILE, ROOT, SETTINGS};
use config::{Manager, ServiceConfig};
use instance::Instance;

pub struct Service;

pub const MANAGERS: &[&str] = &["systemd", "process", "docker"];
pub const LISTENS: &[&str] = &["socket", "port"];

static SPEC: KindSpec = KindSpec {
    name: "service",
    summary: "Start gunicorn or uvicorn for the new release in the deploy's slot (systemd unit or detached process).",
    fields: &[
        FieldSpec::new("app", ValueType::Name, "The app's name: units are `<app>-<slot>.service`.").required(),
        ROOT,
        FieldSpec::new("wsgi", ValueType::ConfigWord, "The WSGI application, e.g. `shop.wsgi:application` (gunicorn)."),
        FieldSpec::new(
            "asgi",
            ValueType::ConfigWord,
            "The ASGI application, e.g. `mysite.asgi:application` (`uvicorn-worker`, `uvicorn`).",
        ),
        FieldSpec::new(
            "server",
            ValueType::Enum(server::SERVERS),
            "`gunicorn` serves `wsgi`; `uvicorn-worker` (gunicorn with uvicorn's worker class) and `uvicorn` serve \
             `asgi`, WebSockets included.",
        )
        .default("gunicorn"),
        FieldSpec::new(
            "listen",
            ValueType::Enum(LISTENS),
            "`socket`: `<root>/run/<slot>.sock`; `port`: `127.0.0.1:<slot>` (the plan's slots are ports).",
        )
        .default("socket"),
        FieldSpec::new(
            "manager",
            ValueType::Enum(MANAGERS),
            "`systemd` units, detached `process`es with pid files, or `docker` containers of the release's image.",
        )
        .default("systemd"),
        FieldSpec::new("workers", ValueType::Int, "gunicorn (or uvicorn) workers.").default("3"),
        FieldSpec::new(
            "worker-timeout",
            ValueType::Duration,
            "gunicorn `--timeout`: a worker silent this long is killed and replaced.",
        )
        .default("30s"),
        FieldSpec::new(
            "graceful-timeout",
            ValueType::Duration,
            "How long a stopping worker may finish its request (gunicorn `--graceful-timeout`).",
        )
        .default("30s"),
        SETTINGS,
        ENV_FILE,
        FieldSpec::new("user", ValueType::ConfigWord, "systemd `User=`."),
        FieldSpec::new("group", ValueType::ConfigWord, "systemd `Group=`."),
        FieldSpec::new("template", ValueType::Path, "Your own unit template (handlebars) instead of the built-in one."),
        FieldSpec::new(
            "unit-dir",
            ValueType::Path,
            "Where unit files are written; outside systemd's directories they are `systemctl link`ed.",
        )
        .default("/etc/systemd/system"),
        FieldSpec::new(
            "unit-link",
            ValueType::Enum(&["auto", "yes", "no"]),
            "`systemctl link` the unit file: `auto` when `unit-dir` is not one of systemd's own directories; `no` when \
             it is one under another name (a directory mounted over /etc/systemd/system in a container).",
        )
        .default("auto"),
        FieldSpec::new(
            "systemd-prefix",
            ValueType::String,
            "Words put before `systemctl`/`journalctl` (e.g. `nsenter -t 4242 -m -p`); default: $ZDD_SYSTEMD_PREFIX.",
        ),
        FieldSpec::new(
            "control-socket",
            ValueType::Bool,
            "Give each master its own `--control-socket` (gunicorn 27+); `#false` for older gunicorn.",
        )
        .default("true"),
        FieldSpec::new(
            "gunicorn-args",
            ValueType::Strings,
            "Extra arguments of the server: gunicorn's, or uvicorn's with `server \"uvicorn\"`.",
        ),
        FieldSpec::new("venv", ValueType::SubPath, "The venv inside the release.").default("venv"),
        FieldSpec::new(
            "lane",
            ValueType::Name,
            "One of several instances behind Nginx (rolling replacement): unit, socket, record and log are named \
             `<lane>-<slot>`, and `proxy-switch` with the same `lane` points `<root>/run/current-<lane>.sock` at it. \
             Socket listen only.",
        ),
        FieldSpec::new(
            "image",
            ValueType::String,
            "`docker` manager: the image every instance runs; default `<app>:<release>` (what the `image` kind builds).",
        ),
        FieldSpec::new("docker", ValueType::String, "`docker` manager: the docker command words.").default("docker"),
        FieldSpec::new(
            "docker-network",
            ValueType::String,
            "`docker` manager: the containers' network. `host` lets `drain-stop` see their sockets' queues.",
        )
        .default("host"),
        FieldSpec::new(
            "docker-args",
            ValueType::Strings,
            "`docker` manager: extra `docker run` arguments, e.g. `--volume /srv/shop/media:/srv/shop/media`.",
        ),
    ],
    effect: Effect::Reversible,
    undo: "Stops the instance it started (TERM, graceful) and removes or restores the slot's unit file.",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    slot: String,
    release: String,
    previous_unit: Option<String>,
    previous_record: Option<Instance>,
    /// The settings the instance was started with: what the undo stops and restores, with no plan.
    config: ServiceConfig,
}

#[async_trait]
impl TypedKind for Service {
    type Settings = ServiceConfig;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<ServiceConfig, Diagnostics> {
        ServiceConfig::from_fields(ctx)
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        let given = |name: &str| step.fields.str(name).is_some_and(|s| !s.trim().is_empty());
        let server = server::Server::from_word(step.fields.str("server"));
        if let Some((message, help)) = server::missing_application(server, given("wsgi"), given("asgi")) {
            let span = step.fields.all("server").first().map_or(step.span, |f| f.span);
            diags.push(
                Diagnostic::error(Code::MissingField, message)
                    .at(span, format!("`{}` loads the application this field names", server.word()))
                    .help(help),
            );
        }
        if let (Some(lane), Some("port")) = (step.fields.all("lane").first(), step.fields.str("listen")) {
            diags.push(
                Diagnostic::error(Code::ServiceLane, "a `lane` needs `listen \"socket\"`")
                    .at(lane.span, "lanes are told apart by their sockets")
                    .help("use `listen \"socket\"` (the default), or drop `lane` for a single instance"),
            );
        }
        if let (Some(field), Some(problem)) =
            (step.fields.all("lane").first(), step.fields.str("lane").and_then(config::lane_name_problem))
        {
            diags.push(
                Diagnostic::error(Code::ServiceLane, problem)
                    .at(field.span, "it names the unit, the socket and the link")
                    .help("name lanes `1`, `2`, `3` (letters and digits)"),
            );
        }
    }

    async fn preflight(
        &self,
        cfg: &ServiceConfig,
        ctx: &zdd_engine::preflight::PreflightCtx,
    ) -> Vec<zdd_engine::preflight::Finding> {
        let mut found = crate::preflight::django_step(cfg.env_file.as_deref(), cfg.settings.as_deref(), ctx).await;
        if let Some(docker) = &cfg.docker {
            found.extend(crate::image::engine_finding(ctx.preview.host.as_ref(), &docker.docker).await);
        }
        found
    }

    async fn doctor(&self, cfg: &ServiceConfig, ctx: &zdd_engine::preflight::PreflightCtx) -> Vec<Check> {
        let mut checks = zdd_engine::doctor::from_findings(self.preflight(cfg, ctx).await);
        checks.extend(doctor::checks(cfg, ctx).await);
        checks
    }

    async fn preview(&self, cfg: &ServiceConfig, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let slot = &cfg.instance_slot(&ctx.target.slot);
        let inst = Instance::new(cfg, &ctx.target.release, slot)?;
        let mut preview = Preview::default();
        if ctx.target.rollback {
            preview.actions.push(PlannedAction::Note {
                text: format!("reuse the instance in slot {slot} if it already runs release {}", ctx.target.release),
            });
        }
        match cfg.manager {
            Manager::Systemd => {
                let content = unit::render(ctx.host.as_ref(), cfg, &inst).await?;
                preview.actions.push(PlannedAction::Write { path: cfg.unit_file(slot), content, mode: 0o644 });
                for args in [vec!["daemon-reload".to_owned()], vec!["start".to_owned(), cfg.unit(slot)]] {
                    preview.actions.push(PlannedAction::Run { command: cfg.systemctl(&args).display() });
                }
                preview.undo.push(PlannedAction::Run { command: cfg.systemctl(&["stop", &cfg.unit(slot)]).display() });
                preview.undo.push(PlannedAction::Remove { path: cfg.unit_file(slot) });
            }
            Manager::Process => {
                let mut cmd = zdd_engine::host::Command::new(inst.argv[0].clone()).cwd(&inst.cwd);
                cmd.args = inst.argv[1..].to_vec();
                preview.actions.push(PlannedAction::Run {
                    command: format!("{} >> {} 2>&1 &", cmd.display(), cfg.log_file(slot).display()),
                });
                preview.undo.push(PlannedAction::Note {
                    text: format!("TERM the {} master of slot {slot} and wait for it to exit", cfg.server.program()),
                });
            }
            Manager::Docker => {
                let docker = cfg.docker.as_ref().ok_or_else(|| StepError::fatal("no docker settings"))?;
                let name = docker::container(cfg, slot);
                preview
                    .actions
                    .push(PlannedAction::Run { command: docker.command(&["rm", "--force", &name]).display() });
                if let Some(file) = &cfg.env_file {
                    preview.actions.push(PlannedAction::Note {
                        text: format!(
                            "and `--env NAME` for each variable of {} (values in docker's environment, not its command line)",
                            file.display()
                        ),
                    });
                }
                preview.actions.push(PlannedAction::Run { command: docker::run_command(cfg, &inst, &[])?.display() });
                let wait = (cfg.graceful_timeout.as_secs() + 5).to_string();
                preview
                    .undo
                    .push(PlannedAction::Run { command: docker.command(&["stop", "-t", &wait, &name]).display() });
                preview.undo.push(PlannedAction::Run { command: docker.command(&["rm", "--force", &name]).display() });
            }
        }
        preview.checks.push(format!("the instance in slot {slot} is running"));
        Ok(preview)
    }

    async fn run(&self, cfg: &ServiceConfig, ctx: &StepCtx) -> Result<(), StepError> {
        if ctx.target.live_slot.as_deref() == Some(ctx.target.slot.as_str()) {
            let slot = &ctx.target.slot;
            return Err(StepError::fatal(format!("slot {slot} is live: the new instance needs the other slot")));
        }
        let (slot, release) = (&cfg.instance_slot(&ctx.target.slot), &ctx.target.release);
        let previous_record = instance::read(ctx.host.as_ref(), cfg, slot).await?;
        let running = instance::running(ctx, cfg, slot).await?;
        if running && previous_record.as_ref().is_some_and(|r| &r.release == release) {
            ctx.message(format!("slot {slot} already runs release {release}: reusing it without a restart"));
            return Ok(());
        }
        let previous_unit = match cfg.manager {
            Manager::Systemd => {
                ctx.host.read_file(&cfg.unit_file(slot)).await?.map(|b| String::from_utf8_lossy(&b).into_owned())
            }
            Manager::Process | Manager::Docker => None,
        };
        let facts =
            Facts { slot: slot.clone(), release: release.clone(), previous_unit, previous_record, config: cfg.clone() };
        ctx.record_undo(to_facts(&facts)).await?;
        if running {
            ctx.message(format!(
                "stopping the old instance in slot {slot} (release {:?})",
                facts.previous_record.as_ref().map(|r| r.release.clone())
            ));
            // Not live, but it may have been until a moment ago (blue-green): let its queue drain first.
            drain::wait(ctx, cfg, slot, cfg.graceful_timeout).await?;
            backend::stop(ctx, cfg, slot).await?;
        }
        let mut inst = Instance::new(cfg, release, slot)?;
        if let Err(e) = backend::start(ctx, cfg, &mut inst).await {
            let lines = backend::last_lines(ctx, cfg, slot, 30).await;
            return Err(e.with_detail(ctx.redactor.redact(&lines)));
        }
        // Give a broken release a moment to die, so the failure names the service rather than the health check.
        sleep(&ctx.cancel, Duration::from_millis(300)).await?;
        if !instance::running(ctx, cfg, slot).await? {
            let lines = backend::last_lines(ctx, cfg, slot, 30).await;
            return Err(StepError::failed(format!("{} in slot {slot} exited right after starting", cfg.server.word()))
                .with_detail(ctx.redactor.redact(&lines)));
        }
        ctx.message(format!(
            "{} for release {release} started in slot {slot} ({})",
            cfg.server.word(),
            cfg.bind(slot)?
        ));
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("service", facts)?;
        let cfg = &facts.config;
        // The rollback has switched traffic back already: let Nginx's last connections to this instance be
        // served before its listener closes (stopping at once would reset them: 502s).
        if instance::running(ctx, cfg, &facts.slot).await?
            && !drain::wait(ctx, cfg, &facts.slot, cfg.graceful_timeout).await?
        {
            ctx.message(format!(
                "slot {} not drained after {}s: stopping anyway",
                facts.slot,
                cfg.graceful_timeout.as_secs()
            ));
        }
        backend::stop(ctx, cfg, &facts.slot).await?;
        if cfg.manager == Manager::Systemd {
            match &facts.previous_unit {
                Some(text) => backend::install_unit(ctx, cfg, &facts.slot, text).await?,
                None => backend::remove_unit(ctx, cfg, &facts.slot).await?,
            }
        }
        match &facts.previous_record {
            Some(rec) => instance::write(ctx.host.as_ref(), cfg, rec).await?,
            None => ctx.host.remove_all(&cfg.record_file(&facts.slot)).await?,
        }
        Ok(())
    }

    async fn stop(&self, cfg: &ServiceConfig, ctx: &StepCtx) -> Result<bool, StepError> {
        let mut any = false;
        for slot in ctx.plan.slots.iter().map(|s| cfg.instance_slot(s)) {
            if backend::stop(ctx, cfg, &slot).await? {
                ctx.message(format!("stopped slot {slot}"));
                any = true;
            }
        }
        Ok(any)
    }
}
