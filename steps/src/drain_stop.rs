//! The `drain-stop` kind: stop the old instance only once nothing can reach it any more.
//!
//! Socket mode: wait until the old listener's accept queue is empty (the Recv-Q of `ss -xlH src <socket>`):
//! connections Nginx made before the link swap are still waiting there, and gunicorn's TERM closes the listener
//! at once, resetting whatever is queued. Port mode: wait until the Nginx workers that existed before the reload
//! have exited (they may still send keep-alive requests to the old port). Then TERM the master and wait for it.
//! With a `lane` on the service step, the old instance is that lane's (`<lane>-<live slot>`): a rolling
//! replacement stops one old instance per lane, right after that lane's switch. Its undo restarts it and waits
//! until its socket accepts again (a container: until its image's health check passes too), before the
//! switch's undo points Nginx back at it.
//!
//! An ASGI service (`server "uvicorn-worker"` or `"uvicorn"`) may hold WebSockets: once drained, the old
//! instance keeps its open connections for `websocket-budget`, and the step reports how many were open, how many
//! ended on their own and how many the stop then closed with 1012 (Service Restart) — see
//! [`crate::service::connections`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, to_facts};
use crate::service::config::{Listen, Manager, ServiceConfig};
use crate::service::instance;
use crate::service::{backend, connections, drain};

pub struct DrainStop;

static SPEC: KindSpec = KindSpec {
    name: "drain-stop",
    summary: "Stop the old instance once drained: its accept queue empty (socket) or the pre-reload Nginx workers gone (port).",
    fields: &[
        FieldSpec::new(
            "service",
            ValueType::StepRef(&["service"]),
            "The service step whose old instance (the live slot) is stopped.",
        )
        .required(),
        FieldSpec::new("drain-timeout", ValueType::Duration, "Longest wait for the drain before stopping anyway.")
            .default("30s"),
        FieldSpec::new(
            "keep-old",
            ValueType::Bool,
            "Leave the old instance running (blue-green: a rollback switches back to it without a restart).",
        )
        .default("false"),
        FieldSpec::new(
            "websocket-budget",
            ValueType::Duration,
            "An ASGI service only: how long the drained old instance keeps its open connections (WebSockets) before \
             the stop closes them with 1012 (Service Restart).",
        )
        .default("30s"),
    ],
    effect: Effect::Reversible,
    undo: "Starts the old instance again (same unit or command), so a rollback that switches traffic back finds it.",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    slot: String,
    /// The service's settings: the undo restarts the old instance with them, with no plan.
    config: ServiceConfig,
}

/// A drain-stop step's settings.
#[derive(Debug)]
pub struct Settings {
    /// The service step whose old instance is stopped.
    service: String,
    drain_timeout: Duration,
    keep_old: bool,
    /// How long an ASGI instance's open connections may stay once it is drained.
    websocket_budget: Duration,
}

#[async_trait]
impl TypedKind for DrainStop {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn retires_old(&self, s: &Settings) -> Option<bool> {
        Some(!s.keep_old)
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            service: ctx.required("service")?.to_owned(),
            drain_timeout: ctx.duration("drain-timeout", Duration::from_secs(30)),
            keep_old: ctx.bool("keep-old", false),
            websocket_budget: ctx.duration("websocket-budget", Duration::from_secs(30)),
        })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let cfg = ServiceConfig::of_step(&ctx.plan, &s.service)?;
        let Some(live) = ctx.target.live_slot.as_deref().filter(|l| *l != ctx.target.slot) else {
            return Ok(Preview {
                actions: vec![PlannedAction::Note { text: "nothing to stop: no instance is live yet".into() }],
                ..Preview::default()
            });
        };
        if s.keep_old {
            return Ok(Preview {
                actions: vec![PlannedAction::Note { text: format!("keep the old instance in slot {live} running") }],
                ..Preview::default()
            });
        }
        let live = &cfg.instance_slot(live);
        let wait = match cfg.listen {
            Listen::Socket => format!("wait until {}'s accept queue is empty", cfg.socket(live).display()),
            Listen::Port => "wait until the Nginx workers from before the reload have exited".to_owned(),
        };
        let stop_old = match cfg.manager {
            Manager::Systemd => cfg.systemctl(&["stop", &cfg.unit(live)]).display(),
            Manager::Process => {
                format!("TERM the {} master of slot {live}, wait for it to exit", cfg.server.program())
            }
            Manager::Docker => format!("docker stop the container of slot {live}, then remove it"),
        };
        let restart = match cfg.manager {
            Manager::Systemd => cfg.systemctl(&["start", &cfg.unit(live)]).display(),
            Manager::Process => format!("start slot {live}'s recorded gunicorn command again"),
            Manager::Docker => format!("run slot {live}'s recorded release in a new container"),
        };
        let mut actions = vec![PlannedAction::Note { text: wait }];
        if cfg.server.is_asgi() {
            actions.push(PlannedAction::Note {
                text: format!(
                    "keep slot {live}'s open connections (WebSockets) for up to {}s; the stop closes the rest with \
                     1012 (Service Restart)",
                    s.websocket_budget.as_secs_f64()
                ),
            });
        }
        actions.push(PlannedAction::Run { command: stop_old });
        Ok(Preview { actions, checks: vec![], undo: vec![PlannedAction::Run { command: restart }] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let cfg = ServiceConfig::of_step(&ctx.plan, &s.service)?;
        let Some(live) = ctx.target.live_slot.as_deref().filter(|l| *l != ctx.target.slot) else {
            ctx.message("no old instance to stop (first deploy)");
            return Ok(());
        };
        let live = cfg.instance_slot(live);
        if s.keep_old {
            ctx.message(format!("keeping the old instance in slot {live} running (keep-old)"));
            return Ok(());
        }
        let timeout = s.drain_timeout;
        let start = Instant::now();
        let drained = drain::wait(ctx, cfg, &live, timeout).await?;
        if drained {
            ctx.message(format!("slot {live} drained in {} ms", start.elapsed().as_millis()));
        } else {
            ctx.message(format!("slot {live} not drained after {}s: stopping anyway", timeout.as_secs()));
        }
        if cfg.server.is_asgi() {
            let tally = connections::hold(ctx, cfg, &live, s.websocket_budget).await?;
            ctx.message(tally.describe(&live, s.websocket_budget));
        }
        ctx.record_undo(to_facts(&Facts { slot: live.clone(), config: cfg.clone() })).await?;
        let stop_start = Instant::now();
        if backend::stop(ctx, cfg, &live).await? {
            ctx.message(format!("old instance in slot {live} stopped in {} ms", stop_start.elapsed().as_millis()));
        }
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("drain-stop", facts)?;
        let cfg = &facts.config;
        if instance::running(ctx, cfg, &facts.slot).await? {
            return Ok(());
        }
        match cfg.manager {
            Manager::Systemd => {
                ctx.exec_ok(&cfg.systemctl(&["start", &cfg.unit(&facts.slot)])).await?;
            }
            Manager::Process | Manager::Docker => {
                let Some(mut inst) = instance::read(ctx.host.as_ref(), cfg, &facts.slot).await? else {
                    return Err(StepError::failed(format!("no record of slot {}'s instance to restart", facts.slot)));
                };
                backend::start(ctx, cfg, &mut inst).await?;
            }
        }
        // The undo that runs next points Nginx back at this instance: its socket must accept by then (requests
        // then wait in its queue while the workers boot, instead of failing to connect).
        if cfg.listen == Listen::Socket {
            let socket = cfg.socket(&facts.slot);
            let start = Instant::now();
            if drain::wait_listening(ctx, &socket, cfg.graceful_timeout).await? {
                ctx.message(format!("slot {} listens again after {} ms", facts.slot, start.elapsed().as_millis()));
            } else {
                // Not a message only: the switch back would point Nginx at a socket nobody accepts on, so the
                // rollback must end as incomplete and say why.
                return Err(StepError::failed(format!(
                    "slot {}'s instance was started again but does not listen on {} after {}s",
                    facts.slot,
                    socket.display(),
                    cfg.graceful_timeout.as_secs()
                )));
            }
        }
        // A container also waits for its image's health check: its workers boot well after its socket listens.
        if cfg.manager == Manager::Docker
            && !crate::service::docker::wait_healthy(ctx, cfg, &facts.slot, Duration::from_mins(1)).await?
        {
            return Err(StepError::failed(format!(
                "slot {}'s container was started again but is not healthy",
                facts.slot
            )));
        }
        Ok(())
    }
}
