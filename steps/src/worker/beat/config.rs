//! A beat step's settings, parsed from its fields at validation ([`BeatSettings`]), and bound at run time to the
//! settings of the worker step it names ([`BeatConfig`]): the Celery app, the release's venv, the environment,
//! the manager and the unit placement are the worker's, so a beat can never run another app or environment than
//! the workers that run its tasks.
//!
//! A slot's beat is named `<name>-<slot>` as a worker is: unit `<app>-<name>-<slot>.service`, record
//! `<root>/run/<name>-<slot>.json`, log `<root>/log/<app>-<name>-<slot>.log`.
//!
//! The schedule file (`--schedule`, Celery's `celerybeat-schedule`: when each entry last ran) is shared by the
//! releases, `<root>/shared/<name>-schedule` by default, not kept per release: a new beat then goes on from the
//! old one's last runs. With a fresh file each release, every interval entry would start counting again at each
//! deploy (a daily task deployed over daily would never run). Sharing it is safe because only one beat runs at a
//! time: the old beat has written it and exited before the new one opens it.

use std::path::PathBuf;
use std::time::Duration;

use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::kind::StepError;
use zdd_engine::plan::Plan;
use zdd_engine::settings::SettingsCtx;

use crate::common::path_text;
use crate::service::config::ServiceConfig;
use crate::service::instance::Instance;
use crate::worker::config::WorkerConfig;

/// How long a stopping beat may take to write its schedule and exit before it is killed. Beat holds no task:
/// on TERM it syncs the schedule file and exits at once.
pub const STOP_BUDGET: Duration = Duration::from_secs(10);

/// `celery beat` arguments `celery-args` may not carry, with why.
const REFUSED_ARGS: &[(&str, &str)] = &[
    ("--detach", "beat would fork away from the process zdd started and tracks"),
    ("-D", "beat would fork away from the process zdd started and tracks"),
    ("--schedule", "the step's `schedule` field sets it"),
    ("-s", "the step's `schedule` field sets it"),
];

/// A beat step's own fields.
#[derive(Debug, Clone)]
pub struct BeatSettings {
    pub step: String,
    /// The worker step whose app, venv, environment and manager beat runs with.
    pub worker: String,
    /// Names the slot's beat: `<name>-<slot>`.
    pub name: String,
    /// `false`: run no beat; one still running from an earlier deploy is stopped.
    pub enabled: bool,
    /// `None`: `<root>/shared/<name>-schedule`, the root being the worker's.
    pub schedule: Option<PathBuf>,
    pub ready_within: Duration,
    pub template: Option<PathBuf>,
    pub celery_args: Vec<String>,
}

impl BeatSettings {
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Self, Diagnostics> {
        let celery_args = ctx.strings("celery-args");
        let mut diags = Diagnostics::new();
        for arg in &celery_args {
            let word = arg.split('=').next().unwrap_or(arg);
            if let Some((refused, why)) = REFUSED_ARGS.iter().find(|(refused, _)| *refused == word) {
                diags.push(
                    Diagnostic::error(Code::BeatArgs, format!("`celery beat {refused}` cannot be given here"))
                        .at(ctx.span("celery-args"), format!("`{refused}`: {why}"))
                        .help("leave it out: zdd runs beat in the foreground and sets `--schedule` from `schedule`"),
                );
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Self {
            step: ctx.step.name.clone(),
            worker: ctx.required("worker")?.to_owned(),
            name: ctx.given("name").unwrap_or(&ctx.step.name).to_owned(),
            enabled: ctx.bool("enabled", true),
            schedule: ctx.path("schedule"),
            ready_within: ctx.duration("ready-within", Duration::from_secs(30)),
            template: ctx.path("template"),
            celery_args,
        })
    }
}

/// A beat step's settings with its worker step's, paths absolute: what run, preview and undo work with.
/// Recorded in the undo facts, so the undo needs no plan.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BeatConfig {
    pub step: String,
    pub name: String,
    pub enabled: bool,
    pub schedule: PathBuf,
    /// How long a new beat has to log that its scheduler started.
    pub ready_within: Duration,
    pub template: Option<PathBuf>,
    pub celery_args: Vec<String>,
    pub worker: WorkerConfig,
}

impl BeatConfig {
    /// The beat step's settings bound to the worker step it names (validation made the reference point at one).
    pub fn bind(s: &BeatSettings, plan: &Plan) -> Result<Self, StepError> {
        let worker = WorkerConfig::of_step(plan, &s.worker)?.clone();
        if s.name == worker.name {
            return Err(StepError::fatal(format!(
                "beat step `{}` and worker step `{}` are both named `{}`: they would share units and records; \
                 give the beat another `name`",
                s.step, s.worker, s.name
            )));
        }
        Ok(Self {
            step: s.step.clone(),
            name: s.name.clone(),
            enabled: s.enabled,
            schedule: s
                .schedule
                .clone()
                .unwrap_or_else(|| worker.root.join("shared").join(format!("{}-schedule", s.name))),
            ready_within: s.ready_within,
            template: s.template.clone(),
            celery_args: s.celery_args.clone(),
            worker,
        })
    }

    /// What names a slot's beat (unit, record, log): `<name>-<slot>`.
    pub fn instance_slot(&self, slot: &str) -> String {
        format!("{}-{slot}", self.name)
    }

    /// `<release>/<venv>/bin/celery -A <app> beat --schedule <file> --loglevel INFO` and the extra arguments.
    /// INFO is what makes beat log `beat: Starting...`, which the step waits for.
    pub fn celery_argv(&self, release: &str) -> Vec<String> {
        let mut argv = vec![
            self.worker.bin(release, "celery"),
            "-A".into(),
            self.worker.celery_app.clone(),
            "beat".into(),
            "--schedule".into(),
            path_text(&self.schedule),
            "--loglevel".into(),
            "INFO".into(),
        ];
        argv.extend(self.celery_args.iter().cloned());
        argv
    }

    /// The new beat of `release` in the plan's `slot`, not yet started.
    pub fn new_instance(&self, release: &str, slot: &str) -> Instance {
        Instance {
            release: release.to_owned(),
            slot: self.instance_slot(slot),
            argv: self.celery_argv(release),
            cwd: self.worker.release_dir(release),
            pid: None,
        }
    }

    /// The service settings the backends run beat with: the worker's, with beat's stop budget.
    pub fn service(&self) -> ServiceConfig {
        ServiceConfig { step: self.step.clone(), graceful_timeout: STOP_BUDGET, ..self.worker.service() }
    }
}

#[cfg(test)]
mod tests {
    use zdd_engine::plan::Value;

    use super::*;

    fn settings(fields: &[(&str, Value)]) -> Result<BeatSettings, Diagnostics> {
        let step = crate::testing::step("beat", "beat", fields);
        BeatSettings::from_fields(&SettingsCtx::new(&step, std::path::Path::new("/srv/plans")))
    }

    #[test]
    fn reads_the_fields_with_their_defaults() {
        let s = settings(&[("worker", Value::Str("worker".into()))]).unwrap();
        assert_eq!((s.name.as_str(), s.enabled, s.ready_within), ("beat", true, Duration::from_secs(30)));
        assert_eq!(s.schedule, None);
        let s = settings(&[
            ("worker", Value::Str("worker".into())),
            ("name", Value::Str("scheduler".into())),
            ("enabled", Value::Bool(false)),
            ("schedule", Value::Str("state/beat".into())),
            ("celery-args", Value::Strings(vec!["--max-interval".into(), "5".into()])),
        ])
        .unwrap();
        assert_eq!((s.name.as_str(), s.enabled), ("scheduler", false));
        assert_eq!(s.schedule, Some(PathBuf::from("/srv/plans/state/beat")));
        assert_eq!(s.celery_args, ["--max-interval", "5"]);
    }

    #[test]
    fn refuses_arguments_that_would_break_one_beat_at_a_time() {
        let diags = settings(&[
            ("worker", Value::Str("worker".into())),
            ("celery-args", Value::Strings(vec!["--detach".into(), "--schedule=/tmp/x".into(), "-l".into()])),
        ])
        .unwrap_err();
        let messages: Vec<String> = diags.iter().map(|d| format!("{}: {}", d.code, d.message)).collect();
        insta::assert_debug_snapshot!(messages, @r#"
        [
            "zdd::beat-args: `celery beat --detach` cannot be given here",
            "zdd::beat-args: `celery beat --schedule` cannot be given here",
        ]
        "#);
    }
}
