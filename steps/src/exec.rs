//! The `exec` kind: run a command the plan wrote, optionally with the command that undoes it.
//!
//! `run "script"` goes through `/bin/sh -c` (the plan wrote shell); `command "prog" "arg"...` is an argument
//! vector, no shell. `undo` / `undo-command` are the same for the compensation. The undo command is recorded
//! (resolved: cwd, environment) as the step's undo facts *before* the command runs, so a crash mid-command
//! is still undone, by `zdd recover` from the journal alone.
//!
//! Effect: with an undo, reversible. Without one, forward-only: zdd cannot know what an arbitrary command
//! changed, so it does not claim it is read-only; it is simply not undone, and the preview says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::host::Command;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::{Step, Value};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

static SPEC: KindSpec = KindSpec {
    name: "exec",
    summary: "Run a command (shell script or argument vector), with an optional command that undoes it",
    fields: &[
        FieldSpec::new("run", ValueType::Shell, "A shell script, run with `/bin/sh -c`."),
        FieldSpec::new("command", ValueType::Strings, "A program and its arguments, run without a shell."),
        FieldSpec::new("cwd", ValueType::Path, "Working directory (default: the plan file's directory)."),
        FieldSpec::new("env", ValueType::Strings, "An environment variable: `env \"NAME\" \"value\"` (repeatable).")
            .repeated(),
        FieldSpec::new("undo", ValueType::Shell, "A shell script that undoes `run`; makes the step reversible."),
        FieldSpec::new("undo-command", ValueType::Strings, "Like `undo`, as a program and its arguments."),
        FieldSpec::new(
            "stop",
            ValueType::Shell,
            "A shell script `zdd stop` runs: stop what `run` left running (a daemon).",
        ),
        FieldSpec::new("stop-command", ValueType::Strings, "Like `stop`, as a program and its arguments."),
        FieldSpec::new(
            "creates",
            ValueType::Strings,
            "Paths `run` writes that later steps need (an env file, a config): the preflight does not report \
             them missing before this step ran.",
        ),
        FieldSpec::new("kill-grace", ValueType::Duration, "Between TERM and KILL when the step is cancelled.")
            .default("5s"),
        FieldSpec::new(
            "cutover",
            ValueType::Bool,
            "This step moves the live traffic to the new release (a switch of your own, such as a load balancer's \
             API): a run that fails after it marks the release bad.",
        )
        .default("false"),
    ],
    effect: Effect::ForwardOnly,
    undo: "runs the step's `undo` (or `undo-command`) with the same working directory and environment; \
           a step without one is not undone",
};

/// The `exec` kind.
#[derive(Debug, Default)]
pub struct Exec;

/// A command as recorded in the journal: everything needed to run it again without the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordedCommand {
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    kill_grace_ms: u64,
}

impl RecordedCommand {
    fn of(cmd: &Command) -> Self {
        Self {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            cwd: cmd.cwd.clone(),
            env: cmd.env.clone(),
            kill_grace_ms: u64::try_from(cmd.kill_grace.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program).args(self.args.iter().cloned());
        cmd.cwd.clone_from(&self.cwd);
        cmd.env = self.env.clone();
        cmd.kill_grace = Duration::from_millis(self.kill_grace_ms);
        cmd
    }
}

/// An exec step's settings: its commands as written, the working directory and `creates` paths absolute.
#[derive(Debug)]
pub struct Settings {
    /// The step's name, given to its commands as `ZDD_STEP`.
    step: String,
    run: Command,
    undo: Option<Command>,
    stop: Option<Command>,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    kill_grace: Duration,
    creates: Vec<PathBuf>,
    /// `cutover #true`: the step moves the live traffic (see [`zdd_engine::kind::StepKind::cuts_over`]).
    cutover: bool,
}

/// The command of a shell field (`run`, `undo`) or an argv field (`command`, `undo-command`).
fn command_settings(ctx: &SettingsCtx<'_>, shell_field: &str, argv_field: &str) -> Option<Command> {
    if let Some(script) = ctx.str(shell_field) {
        return Some(Command::shell(script));
    }
    let argv = ctx.strings(argv_field);
    let (program, rest) = argv.split_first()?;
    Some(Command::new(program).args(rest.iter().cloned()))
}

impl Exec {
    /// Apply the step's working directory, environment and kill grace, plus the deploy's facts as `ZDD_*`.
    fn prepare(s: &Settings, cmd: &Command, target: &zdd_engine::kind::DeployTarget) -> Command {
        let mut cmd = cmd.clone();
        cmd.cwd = Some(s.cwd.clone());
        cmd.kill_grace = s.kill_grace;
        cmd.env.insert("ZDD_STEP".into(), s.step.clone());
        cmd.env.insert("ZDD_RELEASE".into(), target.release.clone());
        cmd.env.insert("ZDD_SLOT".into(), target.slot.clone());
        cmd.env.insert("ZDD_LIVE_SLOT".into(), target.live_slot.clone().unwrap_or_default());
        cmd.env.insert("ZDD_ROLLBACK".into(), if target.rollback { "1" } else { "0" }.into());
        cmd.env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        cmd
    }
}

#[async_trait]
impl TypedKind for Exec {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        // `check` made sure there is a command, and at most one of each pair; malformed `env`s were refused.
        let run = command_settings(ctx, "run", "command").ok_or_else(|| ctx.missing("run"))?;
        Ok(Settings {
            step: ctx.step.name.clone(),
            run,
            undo: command_settings(ctx, "undo", "undo-command"),
            stop: command_settings(ctx, "stop", "stop-command"),
            cwd: ctx.path("cwd").unwrap_or_else(|| ctx.base_dir.to_path_buf()),
            env: ctx
                .all("env")
                .iter()
                .filter_map(|f| match &f.value {
                    Some(Value::Strings(kv)) if kv.len() == 2 => Some((kv[0].clone(), kv[1].clone())),
                    _ => None,
                })
                .collect(),
            kill_grace: ctx.duration("kill-grace", Duration::from_secs(5)),
            creates: ctx.strings("creates").iter().map(|p| ctx.resolve(std::path::Path::new(p))).collect(),
            cutover: ctx.bool("cutover", false),
        })
    }

    fn cuts_over(&self, s: &Settings) -> bool {
        s.cutover
    }

    fn effect(&self, s: &Settings) -> Effect {
        if s.undo.is_some() { Effect::Reversible } else { Effect::ForwardOnly }
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        let field_span = |name: &str| step.fields.all(name).first().map_or(step.span, |f| f.span);
        let has = |name: &str| !step.fields.all(name).is_empty();
        match (has("run"), has("command")) {
            (false, false) => diags.push(
                Diagnostic::error(Code::ExecNothingToRun, format!("step `{}` has nothing to run", step.name))
                    .at(step.span, "this exec step")
                    .help("add `run \"shell script\"` or `command \"program\" \"arg\"...`"),
            ),
            (true, true) => diags.push(
                Diagnostic::error(Code::ExecRunAndCommand, "`run` and `command` both given")
                    .at(field_span("command"), "second command")
                    .related(field_span("run"), "first command")
                    .help("keep one: `run` for a shell script, `command` for a program and its arguments"),
            ),
            _ => {}
        }
        let pairs = [
            ("undo", "undo-command", Code::ExecUndoAndUndoCommand),
            ("stop", "stop-command", Code::ExecStopAndStopCommand),
        ];
        for (shell, argv, code) in pairs {
            if has(shell) && has(argv) {
                diags.push(
                    Diagnostic::error(code, format!("`{shell}` and `{argv}` both given"))
                        .at(field_span(argv), format!("second {shell}"))
                        .related(field_span(shell), format!("first {shell}"))
                        .help(format!(
                            "keep one: `{shell}` for a shell script, `{argv}` for a program and its arguments"
                        )),
                );
            }
        }
        for field in step.fields.all("env") {
            let ok = matches!(&field.value, Some(Value::Strings(kv)) if kv.len() == 2 && valid_env_name(&kv[0]));
            if !ok {
                diags.push(
                    Diagnostic::error(Code::ExecBadEnv, "`env` takes a variable name and its value")
                        .at(field.span, "expected `env \"NAME\" \"value\"`")
                        .help("write e.g. `env \"DJANGO_SETTINGS_MODULE\" \"shop.settings\"`"),
                );
            }
        }
        for name in ["command", "undo-command"] {
            if has(name) && step.fields.strings(name).first().is_none_or(String::is_empty) {
                diags.push(
                    Diagnostic::error(Code::ExecEmptyCommand, format!("`{name}` needs a program"))
                        .at(field_span(name), "no program")
                        .help("write the program first, then its arguments: `command \"make\" \"assets\"`"),
                );
            }
        }
    }

    fn provides(&self, s: &Settings, _ctx: &PreviewCtx) -> Vec<zdd_engine::preflight::Provision> {
        s.creates.iter().cloned().map(zdd_engine::preflight::Provision::Path).collect()
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let prepare = |cmd: &Command| Self::prepare(s, cmd, &ctx.target);
        let mut preview =
            Preview { actions: vec![PlannedAction::Run { command: display(&prepare(&s.run)) }], ..Preview::default() };
        match &s.undo {
            Some(undo) => preview.undo.push(PlannedAction::Run { command: display(&prepare(undo)) }),
            None => {
                preview.undo.push(PlannedAction::Note { text: "not undone: this exec step has no `undo`".to_owned() });
            }
        }
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        if let Some(undo) = &s.undo {
            let mut undo = Self::prepare(s, undo, &ctx.target);
            undo.env.insert("ZDD_UNDO".into(), "1".into());
            ctx.record_undo(serde_json::json!({ "undo": RecordedCommand::of(&undo) })).await?;
        }
        ctx.exec_ok(&Self::prepare(s, &s.run, &ctx.target)).await.map(|_| ())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let recorded: RecordedCommand = serde_json::from_value(facts["undo"].clone()).map_err(|e| {
            StepError::fatal(format!("the undo facts of step `{}` are not an exec undo: {e}", ctx.step))
        })?;
        ctx.exec_ok(&recorded.command()).await.map(|_| ())
    }

    async fn stop(&self, s: &Settings, ctx: &StepCtx) -> Result<bool, StepError> {
        let Some(command) = &s.stop else { return Ok(false) };
        ctx.exec_ok(&Self::prepare(s, command, &ctx.target)).await.map(|_| true)
    }
}

/// The command as shown in previews: the script itself for `sh -c`, else the quoted argv.
fn display(cmd: &Command) -> String {
    match cmd.args.as_slice() {
        [flag, script] if cmd.program == "/bin/sh" && flag == "-c" => script.clone(),
        _ => Command { cwd: None, ..cmd.clone() }.display(),
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zdd_engine::kind::{MemoryJournal, StepKind};
    use zdd_engine::settings::Typed;

    use super::*;

    fn step_in(dir: &std::path::Path, fields: &[(&str, Value)]) -> Step {
        crate::testing::step_in(dir, "build", "exec", fields)
    }

    fn step(fields: &[(&str, Value)]) -> Step {
        step_in(std::path::Path::new("/"), fields)
    }

    fn ctx(dir: &std::path::Path, journal: Arc<MemoryJournal>) -> StepCtx {
        crate::testing::ctx("build", dir, journal)
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn strings(v: &[&str]) -> Value {
        Value::Strings(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[tokio::test]
    async fn runs_records_the_undo_first_and_undoes_from_the_facts_alone() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(MemoryJournal::default());
        let step = step_in(
            dir.path(),
            &[
                ("run", s("echo \"$ZDD_RELEASE $GREETING\" > out")),
                ("undo", s("echo undone-$ZDD_UNDO >> out")),
                ("env", strings(&["GREETING", "hi"])),
            ],
        );
        assert_eq!(Typed(Exec).effect(&step), Effect::Reversible);
        let ctx = ctx(dir.path(), journal.clone());
        Typed(Exec).run(&step, &ctx).await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("out")).unwrap(), "r9 hi\n");
        let facts = journal.facts.lock().unwrap().get("build").cloned().unwrap();
        // Undo from the facts alone: no step, no plan.
        Exec.undo(&facts, &ctx.undo_ctx()).await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("out")).unwrap(), "r9 hi\nundone-1\n");
    }

    #[test]
    fn an_exec_step_is_the_cutover_only_when_it_says_so() {
        let plain = step(&[("run", s("true"))]);
        assert!(!Typed(Exec).cuts_over(&plain));
        let switch = step(&[("run", s("lb-switch")), ("cutover", Value::Bool(true))]);
        assert!(Typed(Exec).cuts_over(&switch));
    }

    #[tokio::test]
    async fn a_failing_command_fails_the_step_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let step = step(&[("command", strings(&["/bin/sh", "-c", "echo boom >&2; exit 7"]))]);
        assert_eq!(Typed(Exec).effect(&step), Effect::ForwardOnly);
        let err = Typed(Exec).run(&step, &ctx(dir.path(), Arc::default())).await.unwrap_err();
        let StepError::Failed { message, detail } = err else { panic!() };
        assert!(message.contains("status 7"), "{message}");
        assert_eq!(detail.as_deref(), Some("boom"));
    }

    #[test]
    fn check_reports_conflicts_and_bad_env() {
        let mut diags = Diagnostics::new();
        Exec.check(
            &step(&[
                ("run", s("a")),
                ("command", strings(&["b"])),
                ("undo", s("c")),
                ("undo-command", strings(&["d"])),
                ("env", strings(&["1BAD", "x"])),
            ]),
            &mut diags,
        );
        let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::ExecRunAndCommand, Code::ExecUndoAndUndoCommand, Code::ExecBadEnv]);
        let mut diags = Diagnostics::new();
        Exec.check(&step(&[]), &mut diags);
        assert_eq!(diags.iter().next().unwrap().code, Code::ExecNothingToRun);
    }
}
