//! The `worker` kind: a Celery worker of the new release in the deploy's slot, started and checked before the
//! web switch; (in [`retire`]) the `worker-retire` kind that retires the old release's worker after it; and (in
//! [`beat`]) the `beat` kind, Celery's scheduler, one at a time.
//!
//! The worker runs `<venv>/bin/celery -A <celery-app> worker -Q <queues> -c <concurrency> -n <name>-<slot>@%h`
//! through the service kind's backends ([`crate::service::backend`]): a systemd unit
//! (`templates/celery-worker.service.hbs`) or a detached process with a record and a log file.
//!
//! # Why this order
//!
//! Celery delivers a task to whichever worker consumes its queue, and a worker that receives a task it does not
//! define discards it ("unregistered task"): the task is lost. So at every moment, every worker consuming a queue
//! must know every task either web release may send to it:
//!
//! 1. **Before anything changes**, the tasks the new release defines (its Celery app loaded as the worker loads
//!    it) are compared with those the live worker has registered. A task only the old release defines may still
//!    be sent by the old web, which serves until the switch, or be waiting in the queue: once the old worker stops
//!    consuming, a new worker would discard it. The step refuses such a release (`dropped-tasks "fail"`, the
//!    default, a fatal error like an unsafe migration), or says so and goes on (`"warn"`, for a task you know
//!    nothing sends any more; and always on `zdd rollback`, whose previous release may well lack a newer task).
//! 2. **The new worker starts** and must answer `inspect ping` for its node within `ready-within`, and its
//!    `inspect registered` must include every task the release defines (a wrong `-A`, an import error in a
//!    tasks module, a missing `include`). A failure here fails the step: the rollback stops the new worker, and
//!    the web switch, which comes later, has not happened.
//! 3. **The old worker stops consuming** (`control cancel_consumer` for each of its queues) as soon as the new
//!    one is confirmed, still before the web switch. From then on only new workers take tasks: they know every
//!    task the old web sends (step 1) and every task the new web will send. Cancelling later (after the switch)
//!    would leave a window in which the new web's new tasks reach an old worker that discards them. The old
//!    worker keeps running the tasks it already holds.
//! 4. **After the switch and the old web's drain**, `worker-retire` stops the old worker with Celery's warm
//!    shutdown (TERM: finish the tasks in hand, take no new ones) within the worker's `shutdown-budget`, then
//!    kills it (systemd `TimeoutStopSec`; a process gets KILL). Tasks that outlived the budget are reported; with
//!    `acks_late` the broker delivers them again to a new worker.
//!
//! Undo (from the facts alone): the old worker resumes consuming its queues (`add_consumer`), then the new worker
//! is stopped warmly and its unit and record are put back as they were. `worker-retire`'s undo, which runs
//! first, restarts the old worker and waits until it answers.

pub mod beat;
pub mod celery;
pub mod config;
pub mod retire;
pub mod unit;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{Backoff, from_facts, sleep, to_facts};
use crate::manage::{ENV_FILE, ROOT, SETTINGS};
use crate::service::backend;
use crate::service::config::Manager;
use crate::service::instance::{self, Instance};
use celery::Consumers;
use config::{DroppedTasks, WorkerConfig};

pub use beat::Beat;
pub use retire::WorkerRetire;

pub struct Worker;

/// The managers a worker runs under: the service kind's, but containers (no worker image yet).
pub const MANAGERS: &[&str] = &["systemd", "process"];

/// A worker config can only name a manager of [`MANAGERS`]; this is the error should another one reach it.
pub(crate) fn not_in_containers() -> StepError {
    StepError::fatal("a Celery worker runs under systemd or as a process, not as a docker container (not built yet)")
}

static SPEC: KindSpec = KindSpec {
    name: "worker",
    summary: "Start a Celery worker for the new release in the deploy's slot, check it before the web switch, \
              and make the old worker stop consuming.",
    fields: &[
        FieldSpec::new("app", ValueType::Name, "The app's name: units are `<app>-<name>-<slot>.service`.").required(),
        FieldSpec::new(
            "celery-app",
            ValueType::ConfigWord,
            "Celery's `-A`: the module with the Celery app, e.g. `proj`.",
        )
        .required(),
        ROOT,
        FieldSpec::new(
            "name",
            ValueType::Name,
            "Names the slot's worker `<name>-<slot>` (node `<name>-<slot>@<host>`); default: the step's name.",
        ),
        FieldSpec::new("queues", ValueType::Strings, "The queues it consumes (`-Q`).").default("celery"),
        FieldSpec::new("concurrency", ValueType::Int, "Pool processes (`-c`).").default("2"),
        FieldSpec::new(
            "manager",
            ValueType::Enum(MANAGERS),
            "`systemd` units, or detached `process`es with pid files (not `docker` containers yet).",
        )
        .default("systemd"),
        FieldSpec::new(
            "shutdown-budget",
            ValueType::Duration,
            "How long a stopping worker may finish the tasks it holds (warm shutdown) before it is killed.",
        )
        .default("60s"),
        FieldSpec::new("ready-within", ValueType::Duration, "How long the new worker has to answer `inspect ping`.")
            .default("60s"),
        FieldSpec::new(
            "dropped-tasks",
            ValueType::Enum(&["fail", "warn"]),
            "A task the live worker knows and the new release no longer defines: refuse the release, or only warn.",
        )
        .default("fail"),
        SETTINGS,
        ENV_FILE,
        FieldSpec::new("user", ValueType::ConfigWord, "systemd `User=`."),
        FieldSpec::new("group", ValueType::ConfigWord, "systemd `Group=`."),
        FieldSpec::new("template", ValueType::Path, "Your own unit template (handlebars) instead of the built-in one."),
        FieldSpec::new("unit-dir", ValueType::Path, "Where unit files are written.").default("/etc/systemd/system"),
        FieldSpec::new(
            "unit-link",
            ValueType::Enum(&["auto", "yes", "no"]),
            "`systemctl link` the unit file (as the `service` kind's `unit-link`).",
        )
        .default("auto"),
        FieldSpec::new(
            "systemd-prefix",
            ValueType::String,
            "Words put before `systemctl`/`journalctl`; default: $ZDD_SYSTEMD_PREFIX.",
        ),
        FieldSpec::new("celery-args", ValueType::Strings, "Extra `celery worker` arguments."),
        FieldSpec::new("venv", ValueType::SubPath, "The venv inside the release.").default("venv"),
    ],
    effect: Effect::Reversible,
    undo: "The old worker consumes its queues again; the new worker is stopped warmly and its unit file restored.",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    /// The new worker's instance slot (`<name>-<slot>`).
    slot: String,
    release: String,
    /// Whether this run started the new worker (not when it found it running the release already).
    started: bool,
    previous_unit: Option<String>,
    previous_record: Option<instance::Instance>,
    /// The live worker whose consumers this run cancelled, recorded before it cancels them.
    cancelled: Option<String>,
    /// The worker's settings: what the undo stops and resumes with, with no plan.
    config: WorkerConfig,
}

#[async_trait]
impl TypedKind for Worker {
    type Settings = WorkerConfig;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<WorkerConfig, Diagnostics> {
        WorkerConfig::from_fields(ctx)
    }

    /// The old worker stops consuming as soon as the new one is confirmed, before the web switch (step 3 above):
    /// from then on the new release runs the live tasks, so a plan with a worker cannot be staged.
    fn moves_work_before_cutover(&self, _config: &WorkerConfig) -> bool {
        true
    }

    async fn preflight(
        &self,
        cfg: &WorkerConfig,
        ctx: &zdd_engine::preflight::PreflightCtx,
    ) -> Vec<zdd_engine::preflight::Finding> {
        crate::preflight::django_step(cfg.env_file.as_deref(), cfg.settings.as_deref(), ctx).await
    }

    async fn preview(&self, cfg: &WorkerConfig, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let (slot, release) = (&ctx.target.slot, &ctx.target.release);
        let svc = cfg.service();
        let islot = cfg.instance_slot(slot);
        let inst = new_instance(cfg, release, slot);
        let live = ctx.target.live_slot.as_deref().filter(|l| *l != slot.as_str());
        let mut preview = Preview::default();
        preview.actions.push(PlannedAction::Note {
            text: match live {
                Some(live) => format!(
                    "list the tasks release {release} defines; refuse if worker {}* knows one it drops",
                    cfg.node_prefix(live)
                ),
                None => format!("list the tasks release {release} defines"),
            },
        });
        match cfg.manager {
            Manager::Docker => return Err(not_in_containers()),
            Manager::Systemd => {
                let content = unit::render(ctx.host.as_ref(), cfg, &inst).await?;
                preview.actions.push(PlannedAction::Write { path: svc.unit_file(&islot), content, mode: 0o644 });
                for args in [vec!["daemon-reload".to_owned()], vec!["start".to_owned(), svc.unit(&islot)]] {
                    preview.actions.push(PlannedAction::Run { command: svc.systemctl(&args).display() });
                }
                preview
                    .undo
                    .push(PlannedAction::Run { command: svc.systemctl(&["stop", &svc.unit(&islot)]).display() });
                preview.undo.push(PlannedAction::Remove { path: svc.unit_file(&islot) });
            }
            Manager::Process => {
                preview.actions.push(PlannedAction::Run {
                    command: format!("{} >> {} 2>&1 &", inst.argv.join(" "), svc.log_file(&islot).display()),
                });
                preview.undo.push(PlannedAction::Note {
                    text: format!("TERM worker {islot} (warm shutdown, {}s budget)", cfg.shutdown_budget.as_secs()),
                });
            }
        }
        preview.checks.push(format!(
            "{} answers `inspect ping` within {}s",
            cfg.node_name(slot),
            cfg.ready_within.as_secs()
        ));
        preview.checks.push("its registered tasks include every task the release defines".into());
        if let Some(live) = live {
            let queues = cfg.queues.join(" ");
            preview.actions.push(PlannedAction::Note {
                text: format!("the live worker {}* stops consuming {queues} (cancel_consumer)", cfg.node_prefix(live)),
            });
            preview.undo.insert(
                0,
                PlannedAction::Note {
                    text: format!("the live worker {}* consumes {queues} again (add_consumer)", cfg.node_prefix(live)),
                },
            );
        }
        Ok(preview)
    }

    async fn run(&self, cfg: &WorkerConfig, ctx: &StepCtx) -> Result<(), StepError> {
        let (slot, release) = (&ctx.target.slot, &ctx.target.release);
        if ctx.target.live_slot.as_deref() == Some(slot.as_str()) {
            return Err(StepError::fatal(format!("slot {slot} is live: the new worker needs the other slot")));
        }
        let live = ctx.target.live_slot.as_deref();
        let tasks = celery::release_tasks(ctx, cfg, release).await?;
        ctx.message(format!("release {release} defines {} tasks: {}", tasks.len(), list(&tasks)));
        let old_node = match live {
            Some(live) => celery::running_node(ctx, cfg, release, &cfg.node_prefix(live), LIVE_PING_ATTEMPTS).await?,
            None => None,
        };
        if let Some(node) = &old_node {
            compatible(ctx, cfg, release, node, &tasks).await?;
        }

        let svc = cfg.service();
        let islot = cfg.instance_slot(slot);
        let previous_record = instance::read(ctx.host.as_ref(), &svc, &islot).await?;
        let running = instance::running(ctx, &svc, &islot).await?;
        let reuse = running && previous_record.as_ref().is_some_and(|r| &r.release == release);
        let previous_unit = match cfg.manager {
            Manager::Systemd if !reuse => {
                ctx.host.read_file(&svc.unit_file(&islot)).await?.map(|b| String::from_utf8_lossy(&b).into_owned())
            }
            _ => None,
        };
        let mut facts = Facts {
            slot: islot.clone(),
            release: release.clone(),
            started: !reuse,
            previous_unit,
            previous_record,
            cancelled: None,
            config: cfg.clone(),
        };
        ctx.record_undo(to_facts(&facts)).await?;
        if reuse {
            ctx.message(format!("worker {islot} already runs release {release}: reusing it"));
        } else {
            if running {
                ctx.message(format!("stopping the stale worker {islot} first (warm shutdown)"));
                backend::stop(ctx, &svc, &islot).await?;
            }
            let mut inst = new_instance(cfg, release, slot);
            let text = match cfg.manager {
                Manager::Systemd => Some(unit::render(ctx.host.as_ref(), cfg, &inst).await?),
                Manager::Process => None,
                Manager::Docker => return Err(not_in_containers()),
            };
            if let Err(e) = backend::launch(ctx, &svc, &mut inst, text.as_deref()).await {
                let lines = backend::last_lines(ctx, &svc, &islot, 30).await;
                return Err(e.with_detail(ctx.redactor.redact(&lines)));
            }
        }
        let node = wait_ready(ctx, cfg, slot).await?;
        let registered = celery::registered(ctx, cfg, release, &node).await?.unwrap_or_default();
        let missing: BTreeSet<&String> = tasks.difference(&registered).collect();
        if !missing.is_empty() {
            return Err(StepError::failed(format!(
                "worker {node} has not registered {} of release {release}'s tasks: {}",
                missing.len(),
                list(missing)
            )));
        }
        ctx.message(format!("worker {node} answers and has registered all {} tasks", tasks.len()));

        if let Some(old) = old_node {
            facts.cancelled = Some(old.clone());
            ctx.record_undo(to_facts(&facts)).await?;
            let said = celery::consumers(ctx, cfg, release, Consumers::Cancel, &old).await?;
            ctx.message(format!("the old worker {old} stopped consuming: {}", said.join("; ")));
        }
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("worker", facts)?;
        let cfg = &facts.config;
        let svc = cfg.service();
        // The old worker consumes again before the new one stops, so the queues always have a consumer.
        if let Some(old) = &facts.cancelled {
            let said = celery::consumers(ctx, cfg, &facts.release, Consumers::Add, old).await?;
            ctx.message(format!("the old worker {old} consumes again: {}", said.join("; ")));
        }
        if !facts.started {
            return Ok(());
        }
        if backend::stop(ctx, &svc, &facts.slot).await? {
            ctx.message(format!("worker {} stopped (warm shutdown)", facts.slot));
        }
        if cfg.manager == Manager::Systemd {
            match &facts.previous_unit {
                Some(text) => backend::install_unit(ctx, &svc, &facts.slot, text).await?,
                None => backend::remove_unit(ctx, &svc, &facts.slot).await?,
            }
        }
        match &facts.previous_record {
            Some(rec) => instance::write(ctx.host.as_ref(), &svc, rec).await?,
            None => ctx.host.remove_all(&svc.record_file(&facts.slot)).await?,
        }
        Ok(())
    }

    async fn stop(&self, cfg: &WorkerConfig, ctx: &StepCtx) -> Result<bool, StepError> {
        let svc = cfg.service();
        let mut any = false;
        for islot in ctx.plan.slots.iter().map(|s| cfg.instance_slot(s)) {
            if backend::stop(ctx, &svc, &islot).await? {
                ctx.message(format!("stopped worker {islot}"));
                any = true;
            }
        }
        Ok(any)
    }
}

/// The new worker of `release` in the plan's `slot`, not yet started.
fn new_instance(cfg: &WorkerConfig, release: &str, slot: &str) -> Instance {
    Instance {
        release: release.to_owned(),
        slot: cfg.instance_slot(slot),
        argv: cfg.celery_argv(release, slot),
        cwd: cfg.release_dir(release),
        pid: None,
    }
}

/// Refuse (or warn about) a release that drops a task the live worker `node` knows.
async fn compatible(
    ctx: &StepCtx,
    cfg: &WorkerConfig,
    release: &str,
    node: &str,
    tasks: &BTreeSet<String>,
) -> Result<(), StepError> {
    let Some(known) = celery::registered(ctx, cfg, release, node).await? else {
        ctx.message(format!("the live worker {node} did not say which tasks it knows: not compared"));
        return Ok(());
    };
    let dropped: BTreeSet<&String> = known.difference(tasks).collect();
    if dropped.is_empty() {
        ctx.message(format!("release {release} defines every task the live worker {node} knows"));
        return Ok(());
    }
    let what = format!(
        "release {release} no longer defines {} the live worker {node} runs: {}",
        if dropped.len() == 1 { "a task" } else { "tasks" },
        list(dropped)
    );
    // Going back (`zdd rollback`) to a release without a newer task is the point of a rollback: warn only.
    match cfg.dropped_tasks {
        DroppedTasks::Fail if !ctx.target.rollback => Err(StepError::fatal(what).with_detail(
            "the live web may still send them, or they may be queued; once the old worker stops consuming, a new \
             worker would discard them as unregistered. Keep the task in this release (remove it in a later one, \
             once nothing sends it), or set `dropped-tasks \"warn\"` on the worker step."
                .to_owned(),
        )),
        DroppedTasks::Fail | DroppedTasks::Warn => {
            ctx.message(format!("warning: {what}"));
            Ok(())
        }
    }
}

/// How many `inspect ping` broadcasts the live worker may miss before it counts as not running.
pub(crate) const LIVE_PING_ATTEMPTS: usize = 3;

/// Wait until the slot's new worker answers `inspect ping`; its full node name. Fails if it exits meanwhile
/// or does not answer within `ready-within`, with its last log lines.
async fn wait_ready(ctx: &StepCtx, cfg: &WorkerConfig, slot: &str) -> Result<String, StepError> {
    let svc = cfg.service();
    let islot = cfg.instance_slot(slot);
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
    loop {
        if !instance::running(ctx, &svc, &islot).await? {
            let lines = backend::last_lines(ctx, &svc, &islot, 30).await;
            return Err(StepError::failed(format!("worker {islot} exited right after starting"))
                .with_detail(ctx.redactor.redact(&lines)));
        }
        if let Some(node) =
            celery::ping(ctx, cfg, &ctx.target.release, &cfg.node_prefix(slot)).await?.into_iter().next()
        {
            ctx.message(format!("worker {node} answered after {} ms", start.elapsed().as_millis()));
            return Ok(node);
        }
        if start.elapsed() >= cfg.ready_within {
            let lines = backend::last_lines(ctx, &svc, &islot, 30).await;
            return Err(StepError::failed(format!(
                "worker {islot} did not answer `inspect ping` within {}s",
                cfg.ready_within.as_secs()
            ))
            .with_detail(ctx.redactor.redact(&lines)));
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
}

/// Task names for a message.
fn list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}
