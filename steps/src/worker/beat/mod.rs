//! The `beat` kind: Celery beat, the scheduler that sends periodic tasks, for the new release in the deploy's
//! slot, `<venv>/bin/celery -A <celery-app> beat --schedule <file>`, run through the service kind's backends
//! (a systemd unit from `templates/celery-beat.service.hbs`, or a detached process) with the settings of the
//! `worker` step it names.
//!
//! # One beat at a time
//!
//! Two beats running at once would each send every periodic task: each would run twice. So the step stops the
//! live release's beat (the live slot's, `<name>-<live slot>`, found as `worker-retire` finds the old worker)
//! and waits until it has exited, before it starts the new one; a stale beat in the deploy's slot (a failed
//! earlier run) is stopped too. The new beat must then be alive and have logged `beat: Starting...` since its
//! start, within `ready-within`. Between the stop and that line no beat runs: a task due in that second or two
//! is sent by the new beat as soon as it starts, since the schedule file (shared, see [`config`]) says it is due.
//!
//! A separate kind rather than a mode of `worker`: beat takes no queue, answers no `inspect ping` (before Celery
//! 5.7), holds no task, and its order is the opposite of the worker's (the worker starts beside the old one and
//! retires it later; beat stops the old one first).
//!
//! # Where it sits in the graph
//!
//! After the web switch, beside `drain-stop` (`needs "current"` in `plans/web-worker.kdl`). Any task beat sends
//! reaches only workers that know it: by then the `worker` step has made the old workers stop consuming, and
//! the new workers know every task of both releases. Placed there, a release refused or rolled back before its
//! traffic moved (a dropped task, a worker or web that does not start) never touches the running beat; and the
//! new release's periodic tasks start only once its web serves.
//!
//! Undo (from the facts alone): the new beat is stopped and its unit and record put back as they were, then the
//! live release's beat, if it was running (or its record says the live release started it: a retried attempt
//! finds it stopped already), is started again (same unit, or its recorded command line) and must log
//! `beat: Starting...` again: still one at a time, the new one gone before the old one starts.
//!
//! `enabled #false` runs no beat: the step only stops the live release's beat (and the undo starts it again).

pub mod config;
pub mod log;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use super::unit::{self, Template};
use crate::common::{from_facts, to_facts};
use crate::service::backend;
use crate::service::config::{Manager, ServiceConfig};
use crate::service::instance::{self, Instance};
use crate::templates;
use config::{BeatConfig, BeatSettings};

pub struct Beat;

static SPEC: KindSpec = KindSpec {
    name: "beat",
    summary: "Run Celery beat for the new release in the deploy's slot, one beat at a time: the live release's \
              beat stops before the new one starts.",
    fields: &[
        FieldSpec::new(
            "worker",
            ValueType::StepRef(&["worker"]),
            "The worker step whose Celery app, venv, environment and manager beat runs with.",
        )
        .required(),
        FieldSpec::new("name", ValueType::Name, "Names the slot's beat `<name>-<slot>`; default: the step's name."),
        FieldSpec::new(
            "enabled",
            ValueType::Bool,
            "`false`: run no beat; the live release's beat, if one runs, is stopped (and restarted by the undo).",
        )
        .default("true"),
        FieldSpec::new(
            "schedule",
            ValueType::Path,
            "Beat's schedule file (`--schedule`), shared by the releases; default: `<root>/shared/<name>-schedule`.",
        ),
        FieldSpec::new("ready-within", ValueType::Duration, "How long the new beat has to log `beat: Starting...`.")
            .default("30s"),
        FieldSpec::new("template", ValueType::Path, "Your own unit template (handlebars) instead of the built-in one."),
        FieldSpec::new(
            "celery-args",
            ValueType::Strings,
            "Extra `celery beat` arguments (`--scheduler`, `--max-interval`...); not `--detach` or `--schedule`.",
        ),
    ],
    effect: Effect::Reversible,
    undo: "The new beat is stopped and its unit file restored, then the live release's beat is started again.",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    /// The new beat's instance slot (`<name>-<slot>`).
    slot: String,
    release: String,
    /// Whether this run started the new beat (not when it found it running the release already).
    started: bool,
    previous_unit: Option<String>,
    previous_record: Option<Instance>,
    /// The live release's beat (`<name>-<live slot>`) this run stopped, recorded before it stops it.
    stopped: Option<String>,
    /// The beat's settings, the worker's included: what the undo stops and restarts with, with no plan.
    config: BeatConfig,
}

#[async_trait]
impl TypedKind for Beat {
    type Settings = BeatSettings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<BeatSettings, Diagnostics> {
        BeatSettings::from_fields(ctx)
    }

    async fn preview(&self, s: &BeatSettings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let cfg = BeatConfig::bind(s, &ctx.plan)?;
        let (slot, release) = (&ctx.target.slot, &ctx.target.release);
        let svc = cfg.service();
        let islot = cfg.instance_slot(slot);
        let live = ctx.target.live_slot.as_deref().filter(|l| *l != slot.as_str()).map(|l| cfg.instance_slot(l));
        let mut preview = Preview::default();
        if let Some(old) = &live {
            preview.actions.push(stop_action(&svc, old, "the live release's beat")?);
            preview.checks.push(format!("beat {old} has exited before another starts"));
        }
        if cfg.enabled {
            let inst = cfg.new_instance(release, slot);
            match cfg.worker.manager {
                Manager::Systemd => {
                    let content = render(ctx.host.as_ref(), &cfg, &inst).await?;
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
                    preview.undo.push(PlannedAction::Note { text: format!("TERM beat {islot}") });
                }
                Manager::Docker => return Err(super::not_in_containers()),
            }
            preview.checks.push(format!(
                "beat {islot} is running and has logged `{}` within {}s",
                log::STARTED,
                cfg.ready_within.as_secs()
            ));
        } else {
            preview
                .actions
                .push(PlannedAction::Note { text: "beat is disabled (`enabled false`): none starts".into() });
        }
        if let Some(old) = &live {
            preview.undo.push(start_action(&svc, old)?);
        }
        Ok(preview)
    }

    async fn run(&self, s: &BeatSettings, ctx: &StepCtx) -> Result<(), StepError> {
        let cfg = BeatConfig::bind(s, &ctx.plan)?;
        let (slot, release) = (&ctx.target.slot, &ctx.target.release);
        if ctx.target.live_slot.as_deref() == Some(slot.as_str()) {
            return Err(StepError::fatal(format!("slot {slot} is live: the new beat needs the other slot")));
        }
        let svc = cfg.service();
        let islot = cfg.instance_slot(slot);
        let previous_record = instance::read(ctx.host.as_ref(), &svc, &islot).await?;
        let running_here = instance::running(ctx, &svc, &islot).await?;
        // A record of this very release is an earlier attempt's (a retry): putting it back on undo would bring back
        // this release's beat, so the undo removes it, as if the slot had had none.
        let earlier_attempt = previous_record.as_ref().is_some_and(|r| &r.release == release);
        let reuse = cfg.enabled && running_here && earlier_attempt;
        let previous_record = previous_record.filter(|_| !earlier_attempt);
        let previous_unit = match cfg.worker.manager {
            Manager::Systemd if cfg.enabled && !earlier_attempt => {
                ctx.host.read_file(&svc.unit_file(&islot)).await?.map(|b| String::from_utf8_lossy(&b).into_owned())
            }
            _ => None,
        };
        let mut facts = Facts {
            slot: islot.clone(),
            release: release.clone(),
            started: false,
            previous_unit,
            previous_record,
            stopped: None,
            config: cfg.clone(),
        };
        // Every other beat stops before the new one starts: never two at once. The stops run even when nothing
        // runs: under systemd a beat that crashed may be waiting to be restarted, which the stop ends too.
        if let Some(old) = ctx.target.live_slot.as_deref().map(|l| cfg.instance_slot(l)) {
            // The undo restarts the live release's beat if it runs, or if its record says the live release started
            // it: a retried attempt finds it stopped by the attempt before, whose facts this one replaces.
            let record = instance::read(ctx.host.as_ref(), &svc, &old).await?;
            let live_ran_one = record.is_some_and(|r| ctx.target.live_release.as_ref() == Some(&r.release));
            if live_ran_one || instance::running(ctx, &svc, &old).await? {
                facts.stopped = Some(old.clone());
                ctx.record_undo(to_facts(&facts)).await?;
            }
            let started = std::time::Instant::now();
            if backend::stop(ctx, &svc, &old).await? {
                ctx.message(format!("the live release's beat {old} stopped in {} ms", started.elapsed().as_millis()));
            } else {
                ctx.message(format!("no beat of the live release runs ({old})"));
            }
        }
        if !reuse && backend::stop(ctx, &svc, &islot).await? {
            ctx.message(format!("stopped the stale beat {islot} first"));
        }
        if !cfg.enabled {
            ctx.message("beat is disabled (`enabled false`): none runs now");
            return Ok(());
        }
        if reuse {
            ctx.message(format!("beat {islot} already runs release {release}: reusing it"));
            return Ok(());
        }
        facts.started = true;
        ctx.record_undo(to_facts(&facts)).await?;
        if let Some(dir) = cfg.schedule.parent() {
            ctx.host.create_dir_all(dir).await?;
        }
        let mark = log::mark(ctx, &svc, &islot).await?;
        let mut inst = cfg.new_instance(release, slot);
        let text = match cfg.worker.manager {
            Manager::Systemd => Some(render(ctx.host.as_ref(), &cfg, &inst).await?),
            Manager::Process => None,
            Manager::Docker => return Err(super::not_in_containers()),
        };
        if let Err(e) = backend::launch(ctx, &svc, &mut inst, text.as_deref()).await {
            let lines = backend::last_lines(ctx, &svc, &islot, 30).await;
            return Err(e.with_detail(ctx.redactor.redact(&lines)));
        }
        log::wait_started(ctx, &svc, &islot, mark, cfg.ready_within).await
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("beat", facts)?;
        let cfg = &facts.config;
        let svc = cfg.service();
        // The new beat goes first, so the old one never runs beside it.
        if facts.started {
            if backend::stop(ctx, &svc, &facts.slot).await? {
                ctx.message(format!("beat {} stopped", facts.slot));
            }
            if cfg.worker.manager == Manager::Systemd {
                match &facts.previous_unit {
                    Some(text) => backend::install_unit(ctx, &svc, &facts.slot, text).await?,
                    None => backend::remove_unit(ctx, &svc, &facts.slot).await?,
                }
            }
            match &facts.previous_record {
                Some(rec) => instance::write(ctx.host.as_ref(), &svc, rec).await?,
                None => ctx.host.remove_all(&svc.record_file(&facts.slot)).await?,
            }
        }
        if let Some(old) = &facts.stopped {
            restart(ctx, cfg, &svc, old).await?;
        }
        Ok(())
    }

    async fn stop(&self, s: &BeatSettings, ctx: &StepCtx) -> Result<bool, StepError> {
        let cfg = BeatConfig::bind(s, &ctx.plan)?;
        let svc = cfg.service();
        let mut any = false;
        for islot in ctx.plan.slots.iter().map(|s| cfg.instance_slot(s)) {
            if backend::stop(ctx, &svc, &islot).await? {
                ctx.message(format!("stopped beat {islot}"));
                any = true;
            }
        }
        Ok(any)
    }
}

/// Start the beat in `islot` again (its unit, or its recorded command line) and wait until it has started its
/// scheduler; nothing if it runs already.
async fn restart(ctx: &UndoCtx, cfg: &BeatConfig, svc: &ServiceConfig, islot: &str) -> Result<(), StepError> {
    if instance::running(ctx, svc, islot).await? {
        return Ok(());
    }
    let mark = log::mark(ctx, svc, islot).await?;
    match cfg.worker.manager {
        Manager::Systemd => {
            ctx.exec_ok(&svc.systemctl(&["start", &svc.unit(islot)])).await?;
        }
        Manager::Process => {
            let Some(mut inst) = instance::read(ctx.host.as_ref(), svc, islot).await? else {
                return Err(StepError::failed(format!("no record of beat {islot} to restart")));
            };
            backend::launch(ctx, svc, &mut inst, None).await?;
        }
        Manager::Docker => return Err(super::not_in_containers()),
    }
    log::wait_started(ctx, svc, islot, mark, cfg.ready_within).await?;
    ctx.message(format!("beat {islot} runs again"));
    Ok(())
}

async fn render(host: &dyn zdd_engine::host::Host, cfg: &BeatConfig, inst: &Instance) -> Result<String, StepError> {
    let template = Template { custom: cfg.template.as_deref(), builtin: templates::CELERY_BEAT_SERVICE };
    unit::render_celery(host, &cfg.service(), inst, template, config::STOP_BUDGET).await
}

/// The preview's stop of `islot`'s beat.
fn stop_action(svc: &ServiceConfig, islot: &str, whose: &str) -> Result<PlannedAction, StepError> {
    Ok(match svc.manager {
        Manager::Systemd => PlannedAction::Run { command: svc.systemctl(&["stop", &svc.unit(islot)]).display() },
        Manager::Process => PlannedAction::Note {
            text: format!(
                "TERM {whose} {islot} and wait until it has exited (KILL after {}s)",
                config::STOP_BUDGET.as_secs() + 5
            ),
        },
        Manager::Docker => return Err(super::not_in_containers()),
    })
}

/// The preview's restart of `islot`'s beat (the undo).
fn start_action(svc: &ServiceConfig, islot: &str) -> Result<PlannedAction, StepError> {
    Ok(match svc.manager {
        Manager::Systemd => PlannedAction::Run { command: svc.systemctl(&["start", &svc.unit(islot)]).display() },
        Manager::Process => PlannedAction::Note { text: format!("start beat {islot}'s recorded command again") },
        Manager::Docker => return Err(super::not_in_containers()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use zdd_engine::kind::MemoryJournal;
    use zdd_engine::plan::Value;

    use super::*;

    /// A release whose `celery` is a stand-in beat: it logs the line beat logs, then waits.
    fn fake_release(root: &Path, release: &str) {
        let bin = root.join("releases").join(release).join("venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("celery"), "#!/bin/sh\necho 'beat: Starting...'\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(bin.join("celery"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn pid(root: &Path, islot: &str) -> Option<u32> {
        let record = std::fs::read(root.join(format!("run/{islot}.json"))).ok()?;
        serde_json::from_slice::<Instance>(&record).ok()?.pid
    }

    /// Release r9 into slot b, r8's beat live in slot a: the run stops r8's beat before r9's starts. A retried
    /// attempt (r9's beat died, the run again) replaces the facts; the undo still restarts r8's beat, once r9's
    /// is stopped.
    #[tokio::test]
    async fn stops_the_live_beat_first_and_the_undo_restarts_it_even_after_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_release(root, "r8");
        fake_release(root, "r9");
        let s = |v: &str| Value::Str(v.into());
        let worker = crate::testing::step(
            "worker",
            "worker",
            &[
                ("app", s("proj")),
                ("celery-app", s("proj")),
                ("root", s(&root.display().to_string())),
                ("manager", s("process")),
            ],
        );
        let beat = crate::testing::step("beat", "beat", &[("worker", s("worker"))]);
        let settings = beat.settings.get::<BeatSettings>().unwrap().clone();
        let journal = Arc::new(MemoryJournal::default());
        let mut ctx = crate::testing::ctx("beat", root, journal.clone());
        let mut plan = (*ctx.plan).clone();
        plan.steps = vec![worker, beat];
        ctx.plan = Arc::new(plan);
        ctx.io.target.live_release = Some("r8".into());
        let cfg = BeatConfig::bind(&settings, &ctx.plan).unwrap();
        let svc = cfg.service();

        let mark = log::mark(&ctx, &svc, "beat-a").await.unwrap();
        let mut old = cfg.new_instance("r8", "a");
        backend::launch(&ctx, &svc, &mut old, None).await.unwrap();
        log::wait_started(&ctx, &svc, "beat-a", mark, Duration::from_secs(20)).await.unwrap();
        let old_pid = old.pid.unwrap();

        Beat.run(&settings, &ctx).await.unwrap();
        assert!(!ctx.host.process_alive(old_pid).await.unwrap(), "the live beat still runs beside the new one");
        let new_pid = pid(root, "beat-b").unwrap();
        assert!(ctx.host.process_alive(new_pid).await.unwrap());
        assert!(root.join("shared").is_dir(), "the schedule file's directory");

        // The retry: r9's beat died, the step runs again and records its facts anew.
        ctx.host.signal(new_pid, "KILL").await.unwrap();
        assert!(backend::wait_exit(&ctx, new_pid, Duration::from_secs(5)).await.unwrap());
        Beat.run(&settings, &ctx).await.unwrap();
        let new_pid = pid(root, "beat-b").unwrap();

        let facts = journal.facts.lock().unwrap().get("beat").cloned().unwrap();
        Beat.undo(&facts, &ctx).await.unwrap();
        assert!(!ctx.host.process_alive(new_pid).await.unwrap(), "the new beat survived the undo");
        assert!(!root.join("run/beat-b.json").exists());
        let restarted = pid(root, "beat-a").unwrap();
        assert_ne!(restarted, old_pid);
        assert!(ctx.host.process_alive(restarted).await.unwrap(), "the live beat was not restarted");
        backend::stop(&ctx, &svc, "beat-a").await.unwrap();
    }
}
