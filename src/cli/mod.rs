//! Command-line interface: one module per command; this one holds the clap definitions and dispatch.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[macro_use]
mod out;

mod check;
mod completions;
mod doctor;
mod explain;
mod graph;
mod history;
mod hosts;
mod init;
mod kinds;
mod maintenance;
mod plan;
mod promote;
mod recover;
mod rollback;
mod run;
mod saved;
mod status;
mod stop;
mod unlock;

/// Exit codes, as documented in the book.
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    /// The run failed and every change was rolled back.
    pub(crate) const ROLLED_BACK: i32 = 1;
    /// Invalid plan or usage.
    pub(crate) const INVALID: i32 = 2;
    /// The run failed and the rollback is incomplete.
    pub(crate) const ROLLBACK_INCOMPLETE: i32 = 3;
    /// The deploy lock is held by another run.
    pub(crate) const LOCKED: i32 = 4;
    /// The run failed after its commit point: nothing was rolled back and the new release is live.
    pub(crate) const COMMITTED: i32 = 5;
}

/// Shown under every command's help: scripts and CI branch on these.
const EXIT_CODES: &str = "Exit codes: 0 done; 1 the run failed and was rolled back; 2 invalid plan or usage; \
3 rollback incomplete (run `zdd recover`); 4 the deploy lock is held by another run; 5 a step failed after the \
commit point: nothing was rolled back and the new release is live.";

/// Zero-downtime deploys for Django: a plan graph with health gates, atomic cutover and derived rollback.
#[derive(Debug, Parser)]
#[command(name = "zdd", version, about, propagate_version = true, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log what zdd runs to stderr (-v debug, -vv trace); ZDD_LOG=<filter> chooses finer.
    #[allow(clippy::doc_markdown)] // --help text, not rustdoc
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The plan file and its variables, shared by every command that reads a plan.
// Field docs are the --help text people read, not rustdoc: no backticks there.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
pub(crate) struct PlanArgs {
    /// The plan file (KDL).
    pub plan: PathBuf,
    /// Set a variable, overriding its default and ZDD_VAR_<NAME> (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Where the run's state lives.
#[derive(Debug, Clone, Args)]
pub(crate) struct StateArgs {
    /// State directory (state.json, journal, lock). Default: the plan's `state-dir`, else /var/lib/zdd/<plan>.
    #[arg(long, env = "ZDD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How a run reports.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
    /// Plain timestamped lines even on a terminal.
    #[arg(long, conflicts_with = "json")]
    pub plain: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
}

/// `zdd maintenance on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    /// Serve the maintenance page.
    On,
    /// Serve the app again.
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

// Variant docs are the --help text people read, not rustdoc: no backticks there.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a plan: every error at once, with file:line:col and a hint.
    Check {
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Preview a run without changing anything: variables, steps, commands, file diffs, checks, rollback.
    Plan {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Preview the run of this release id, as `zdd run --release` would deploy it (default: the current UTC
        /// time, YYYYMMDD-HHMMSS).
        #[arg(long)]
        release: Option<String>,
        /// Print the preview as JSON.
        #[arg(long)]
        json: bool,
        /// Also save the plan bound to this target in FILE (JSON, no secret values): `zdd run FILE` applies
        /// exactly it, and refuses (exit 2) if a plan file, a variable or the live state changed since.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Every check zdd knows for a plan, on this machine and its hosts now: tools, versions, permissions, disk
    /// space, the state directory. One line each (ok, warning, problem, with a fix); changes nothing. Exit 0 with
    /// no problem, 2 with one.
    Doctor {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print the step graph, forward and rollback edges styled differently.
    Graph {
        #[command(flatten)]
        plan: PlanArgs,
        /// Graphviz dot (`| dot -Tsvg`) or a Mermaid flowchart (for Markdown).
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Deploy: run the plan's steps; on any failure, roll back what was done.
    ///
    /// Given a saved plan (zdd plan --out FILE) instead of a plan file, apply exactly it: refused (exit 2, nothing
    /// changed) if a plan file, a variable or the live state changed since it was saved.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Steps running at once (default: number of cores, at least 2).
        #[arg(long)]
        jobs: Option<usize>,
        /// Release id: letters, digits, `-`, `_`, `.` (default: the current UTC time, YYYYMMDD-HHMMSS; for a saved
        /// plan, the one it was saved with).
        #[arg(long)]
        release: Option<String>,
        /// Deploy `--release` even though it is marked bad (a run of it failed after its cutover).
        #[arg(long, requires = "release")]
        allow_bad: bool,
        /// Stop before the cutover: deploy and check the new release beside the live one, then wait for `zdd
        /// promote` (move the traffic to it) or `zdd abort` (roll it back).
        #[arg(long)]
        stage: bool,
        /// Wait this long for the deploy lock instead of exiting 4 (e.g. 5m).
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
    },
    /// Put the newest stable earlier release back live (else the newest that is not marked bad), through the same
    /// steps (zero-downtime too).
    #[command(after_help = EXIT_CODES)]
    Rollback {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Wait this long for the deploy lock instead of exiting 4 (e.g. 5m).
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
    },
    /// Go on with the release `zdd run --stage` staged: the cutover and every step after it, with the same
    /// rollback on failure (the staged steps included).
    #[command(after_help = EXIT_CODES)]
    Promote {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Steps running at once (default: number of cores, at least 2).
        #[arg(long)]
        jobs: Option<usize>,
        /// Wait this long for the deploy lock instead of exiting 4 (e.g. 5m).
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
    },
    /// Roll back the release `zdd run --stage` staged, from its journal; the live release never stopped serving.
    #[command(after_help = EXIT_CODES)]
    Abort {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Roll back a run that was interrupted (zdd killed, CI runner lost) or whose rollback did not complete, from
    /// its journal alone.
    #[command(after_help = EXIT_CODES)]
    Recover {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The live release, the previous one, the lock holder, and any run waiting for `zdd recover`.
    Status {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Past runs: release, result, duration, who, and what their steps judged (a canary's verdicts).
    History {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear the deploy lock left by a run that was killed (refused while its holder still runs).
    Unlock {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Stop the plan's services gracefully (both slots).
    Stop {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Serve the plan's maintenance page (503 with Retry-After) instead of the app, or the app again. Takes
    /// effect at once: Nginx is not reloaded and no connection is dropped.
    Maintenance {
        /// on: the maintenance page; off: the app.
        #[arg(value_enum)]
        switch: Switch,
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Scaffold a plan for an existing Django project.
    Init {
        /// The Django project (default: the current directory).
        dir: Option<PathBuf>,
        /// Where to write the plan (default: DIR/deploy/prod.kdl).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The settings module the plan uses (default: the production module of a split settings package, else
        /// manage.py's DJANGO_SETTINGS_MODULE).
        #[arg(long, value_name = "MODULE")]
        settings: Option<String>,
        /// Replace an existing plan (and the fragment beside it).
        #[arg(long)]
        force: bool,
    },
    /// List the step kinds with their fields.
    Kinds {
        /// Only this kind.
        kind: Option<String>,
    },
    /// Print the book's entry for a diagnostic code (zdd::unknown-step, or just unknown-step).
    Explain {
        /// The code, with or without its zdd:: prefix.
        #[arg(required_unless_present = "list", conflicts_with = "list")]
        code: Option<String>,
        /// List every code with a one-line summary.
        #[arg(long)]
        list: bool,
    },
    /// Print shell completions.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff).
    Man,
}

impl Command {
    /// The command's name and plan, for the commands that take a plan file and not a saved plan (`run` applies
    /// one, `check` says what it holds).
    fn plan_file_only(&self) -> Option<(&'static str, &PlanArgs)> {
        match self {
            Command::Plan { plan, .. } => Some(("plan", plan)),
            Command::Rollback { plan, .. } => Some(("rollback", plan)),
            Command::Recover { plan, .. } => Some(("recover", plan)),
            Command::Promote { plan, .. } => Some(("promote", plan)),
            Command::Abort { plan, .. } => Some(("abort", plan)),
            Command::Status { plan, .. } => Some(("status", plan)),
            Command::History { plan, .. } => Some(("history", plan)),
            Command::Unlock { plan, .. } => Some(("unlock", plan)),
            Command::Stop { plan, .. } => Some(("stop", plan)),
            Command::Maintenance { plan, .. } => Some(("maintenance", plan)),
            Command::Graph { plan, .. } => Some(("graph", plan)),
            Command::Doctor { plan, .. } => Some(("doctor", plan)),
            _ => None,
        }
    }
}

/// Run a command, returning the process exit code.
pub(crate) fn dispatch(cli: Cli) -> i32 {
    if let Some((name, plan)) = cli.command.plan_file_only()
        && let Some(text) = saved::saved_text(&plan.plan)
    {
        return saved::not_a_plan_file(name, &plan.plan, &text);
    }
    match cli.command {
        Command::Check { plan } => check::run(&plan),
        Command::Kinds { kind } => kinds::run(kind.as_deref()),
        Command::Explain { code, list } => explain::run(code.as_deref(), list),
        Command::Run { plan, state, output, jobs, release, allow_bad, stage, lock_wait } => {
            let launch = run::Launch { output: &output, jobs, stage };
            run::run(&plan, &state, launch, release.as_deref(), allow_bad, lock_wait.as_deref())
        }
        Command::Promote { plan, state, output, jobs, lock_wait } => {
            promote::promote(&plan, &state, &output, jobs, lock_wait.as_deref())
        }
        Command::Abort { plan, state, output } => promote::abort(&plan, &state, &output),
        Command::Rollback { plan, state, output, lock_wait } => {
            rollback::run(&plan, &state, &output, lock_wait.as_deref())
        }
        Command::Recover { plan, state, output } => recover::run(&plan, &state, &output),
        Command::Status { plan, state, json } => status::run(&plan, &state, json),
        Command::History { plan, state, json } => history::run(&plan, &state, json),
        Command::Unlock { plan, state } => unlock::run(&plan, &state),
        Command::Stop { plan, state, output } => stop::run(&plan, &state, &output),
        Command::Maintenance { switch, plan, state, output } => {
            maintenance::run(switch == Switch::On, &plan, &state, &output)
        }
        Command::Plan { plan, state, release, json, out } => {
            plan::run(&plan, &state, release.as_deref(), json, out.as_deref())
        }
        Command::Graph { plan, format } => graph::run(&plan, format),
        Command::Doctor { plan, state, output } => doctor::run(&plan, &state, &output),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
        Command::Init { dir, output, settings, force } => {
            init::run(dir.as_deref(), output.as_deref(), settings.as_deref(), force)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` must say what every option and argument is for.
    #[test]
    fn every_argument_of_every_command_is_documented() {
        let cli = Cli::command();
        let mut undocumented = Vec::new();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    undocumented.push(format!("zdd {} {id}", command.get_name()));
                }
            }
        }
        assert!(undocumented.is_empty(), "no help text: {undocumented:?}");
    }
}
