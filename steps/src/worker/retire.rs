//! The `worker-retire` kind: after the web switch (and the old web's drain), stop the old release's worker with
//! Celery's warm shutdown. Its consumers were cancelled by the `worker` step once the new worker was confirmed,
//! so it only finishes the tasks it holds; TERM lets it finish them within the worker's `shutdown-budget`, then
//! it is killed (systemd's `TimeoutStopSec`, or KILL for a process). A stop that took the whole budget is
//! reported with the number of tasks the worker held when it was asked to stop (with `acks_late` the broker
//! delivers those again). Its undo starts the old worker again and waits until it answers, so the `worker`
//! undo that follows can make it consume again.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use super::celery;
use super::config::WorkerConfig;
use crate::common::{Backoff, from_facts, sleep, to_facts};
use crate::service::backend;
use crate::service::config::Manager;
use crate::service::instance;

pub struct WorkerRetire;

static SPEC: KindSpec = KindSpec {
    name: "worker-retire",
    summary: "Stop the old release's Celery worker with a warm shutdown (finish the tasks it holds), within its budget.",
    fields: &[FieldSpec::new(
        "worker",
        ValueType::StepRef(&["worker"]),
        "The worker step whose old worker (the live slot's) is stopped.",
    )
    .required()],
    effect: Effect::Reversible,
    undo: "Starts the old worker again (same unit or command) and waits until it answers.",
};

/// A worker-retire step's settings.
#[derive(Debug)]
pub struct Settings {
    worker: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    /// The old worker's instance slot (`<name>-<live slot>`).
    slot: String,
    /// The old worker's release: whose `celery` asks it whether it answers again.
    release: Option<String>,
    config: WorkerConfig,
}

#[async_trait]
impl TypedKind for WorkerRetire {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings { worker: ctx.required("worker")?.to_owned() })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let cfg = WorkerConfig::of_step(&ctx.plan, &s.worker)?;
        let Some(live) = ctx.target.live_slot.as_deref().filter(|l| *l != ctx.target.slot) else {
            return Ok(Preview {
                actions: vec![PlannedAction::Note { text: "no old worker to retire: none is live yet".into() }],
                ..Preview::default()
            });
        };
        let (svc, islot) = (cfg.service(), cfg.instance_slot(live));
        let budget = cfg.shutdown_budget.as_secs();
        let (stop, start) = match cfg.manager {
            Manager::Systemd => (
                PlannedAction::Run { command: svc.systemctl(&["stop", &svc.unit(&islot)]).display() },
                PlannedAction::Run { command: svc.systemctl(&["start", &svc.unit(&islot)]).display() },
            ),
            Manager::Process => (
                PlannedAction::Note { text: format!("TERM worker {islot} (warm shutdown), KILL after {budget}s") },
                PlannedAction::Note { text: format!("start worker {islot}'s recorded command again") },
            ),
            Manager::Docker => return Err(super::not_in_containers()),
        };
        Ok(Preview { actions: vec![stop], checks: vec![format!("worker {islot} has exited")], undo: vec![start] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let cfg = WorkerConfig::of_step(&ctx.plan, &s.worker)?;
        let Some(live) = ctx.target.live_slot.as_deref().filter(|l| *l != ctx.target.slot) else {
            ctx.message("no old worker to retire (first deploy)");
            return Ok(());
        };
        let (svc, islot) = (cfg.service(), cfg.instance_slot(live));
        if !instance::running(ctx, &svc, &islot).await? {
            ctx.message(format!("the old worker {islot} is not running"));
            return Ok(());
        }
        let release = ctx.target.live_release.clone();
        ctx.record_undo(to_facts(&Facts { slot: islot.clone(), release: release.clone(), config: cfg.clone() }))
            .await?;
        let mut held = 0;
        if let Some(release) = &release
            && let Some(node) =
                celery::running_node(ctx, cfg, release, &cfg.node_prefix(live), super::LIVE_PING_ATTEMPTS).await?
        {
            held = celery::active(ctx, cfg, release, &node).await?;
            ctx.message(format!("the old worker {node} holds {held} running tasks"));
        }
        let start = Instant::now();
        backend::stop(ctx, &svc, &islot).await?;
        let took = start.elapsed();
        if took >= cfg.shutdown_budget {
            ctx.message(format!(
                "warning: the old worker {islot} took the whole shutdown budget ({}s) and was killed: up to {held} \
                 tasks outlived it (with acks_late the broker delivers them again)",
                cfg.shutdown_budget.as_secs()
            ));
        } else {
            ctx.message(format!("the old worker {islot} finished its tasks and exited in {} ms", took.as_millis()));
        }
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("worker-retire", facts)?;
        let (cfg, svc) = (&facts.config, facts.config.service());
        if !instance::running(ctx, &svc, &facts.slot).await? {
            match cfg.manager {
                Manager::Systemd => {
                    ctx.exec_ok(&svc.systemctl(&["start", &svc.unit(&facts.slot)])).await?;
                }
                Manager::Process => {
                    let Some(mut inst) = instance::read(ctx.host.as_ref(), &svc, &facts.slot).await? else {
                        return Err(StepError::failed(format!("no record of worker {} to restart", facts.slot)));
                    };
                    backend::launch(ctx, &svc, &mut inst, None).await?;
                }
                Manager::Docker => return Err(super::not_in_containers()),
            }
        }
        let Some(release) = &facts.release else {
            return Ok(());
        };
        // The `worker` undo that runs next asks this worker to consume again: it must answer by then.
        let prefix = format!("{}@", facts.slot);
        let start = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        while celery::ping(ctx, cfg, release, &prefix).await?.is_empty() {
            if start.elapsed() >= cfg.ready_within {
                return Err(StepError::failed(format!(
                    "worker {} was started again but does not answer after {}s",
                    facts.slot,
                    cfg.ready_within.as_secs()
                )));
            }
            sleep(&ctx.cancel, backoff.next_delay()).await?;
        }
        ctx.message(format!("worker {} answers again after {} ms", facts.slot, start.elapsed().as_millis()));
        Ok(())
    }
}
