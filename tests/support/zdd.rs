//! Running the built `zdd` binary against a stack of real components: the stack (Nginx, optionally PostgreSQL
//! and systemd, the app's root, state dir and env file) and the plan variables that point a shipped plan at it,
//! and the result of a run (exit code, JSON events).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::env::TestDir;
use super::nginx::Nginx;
use super::postgres::Postgres;
use super::systemd::Systemd;

/// The built `zdd` binary (integration tests get its path from cargo; the benchmark uses target/debug).
pub(crate) fn zdd_bin() -> PathBuf {
    option_env!("CARGO_BIN_EXE_zdd").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| super::shop::repo_root().join("target"), PathBuf::from)
            .join("debug/zdd")
    })
}

/// How long the scenarios' health gate waits for a release that never gets healthy (the shipped plans: 60 s).
pub(crate) const HEALTH_WITHIN: &str = "12s";

/// A shipped plan: `plans/<name>.kdl`.
pub(crate) fn plan(name: &str) -> PathBuf {
    super::shop::repo_root().join("plans").join(format!("{name}.kdl"))
}

/// What supervises gunicorn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Process,
    Systemd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// How traffic moves: swapping the upstream socket link, or rewriting the port and reloading Nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyMode {
    Socket,
    Reload,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct StackConfig {
    pub backend: Backend,
    pub db: Db,
    pub mode: ProxyMode,
}

impl std::fmt::Display for StackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}/{:?}/{:?}", self.backend, self.db, self.mode)
    }
}

/// The components one scenario deploys onto. Dropping it stops them all (systemd first: it ends the app).
pub(crate) struct Stack {
    pub config: StackConfig,
    pub systemd: Option<Systemd>,
    pub nginx: Nginx,
    pub pg: Option<Postgres>,
    /// The app's root (`releases/`, `run/`, `shared/`).
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub env_file: PathBuf,
    pub sqlite: PathBuf,
    /// Materialised versions of the shop, the plans' `source`.
    pub sources: PathBuf,
    /// Two free ports, the slots of a plan whose slots are ports (`port_a`, `port_b`: plans/port-switch.kdl).
    pub slot_ports: (u16, u16),
    /// Variables after the stack's own (they win): e.g. the Caddy scenario's, which put Caddy in front.
    pub extra_vars: Vec<(String, String)>,
    pub dir: TestDir,
}

impl Stack {
    pub(crate) fn start(name: &str, config: StackConfig) -> Stack {
        let dir = TestDir::new(name);
        let root = dir.join("app");
        let state_dir = dir.join("state");
        let sources = dir.join("src");
        for d in [&root, &state_dir, &sources] {
            std::fs::create_dir_all(d).expect("stack dir");
        }
        let pg = (config.db == Db::Postgres).then(|| Postgres::start(dir.path()));
        let sqlite = dir.join("db.sqlite3");
        let env_file = dir.join("shop.env");
        let mut env =
            String::from("SECRET_KEY=zdd-test-secret-key-not-for-production\nALLOWED_HOSTS=127.0.0.1,localhost\n");
        env.push_str(&format!("SQLITE_PATH={}\n", sqlite.display()));
        // The plans serve <root>/shared/static from Nginx (outside releases, so old pages' assets stay).
        env.push_str(&format!("STATIC_ROOT={}\n", root.join("shared/static").display()));
        if let Some(pg) = &pg {
            env.push_str(&format!("DATABASE_URL={}\n", pg.database_url()));
        }
        std::fs::write(&env_file, env).expect("env file");
        let nginx = Nginx::start(dir.path());
        let systemd = (config.backend == Backend::Systemd).then(|| Systemd::boot(dir.path()));
        let slot_ports = (super::env::free_port(), super::env::free_port());
        let extra_vars = Vec::new();
        Stack { config, systemd, nginx, pg, root, state_dir, env_file, sqlite, sources, slot_ports, extra_vars, dir }
    }

    /// The shop at `version`, materialised once per stack.
    pub(crate) fn source(&self, version: &str) -> PathBuf {
        let dest = self.sources.join(version);
        if !dest.exists() {
            super::shop::materialise(version, &dest).expect("materialise version");
        }
        dest
    }

    /// The plan variables that point a shipped plan at this stack and at `version`'s source.
    pub(crate) fn vars(&self, version: &str) -> Vec<(String, String)> {
        let mut vars = vec![("source".to_string(), self.source(version).display().to_string())];
        vars.extend(self.stack_vars());
        vars
    }

    /// The plan variables that point a plan at this stack (its root, Nginx, env file, wheel cache...), not at a
    /// project: a plan that names its own `source` (as `zdd init` writes it) takes only these.
    pub(crate) fn stack_vars(&self) -> Vec<(String, String)> {
        let nginx = &self.nginx;
        let mut vars = vec![
            ("root", self.root.display().to_string()),
            ("env_file", self.env_file.display().to_string()),
            ("host", "127.0.0.1".to_string()),
            ("listen", format!("127.0.0.1:{}", nginx.port)),
            ("proxy_url", format!("http://127.0.0.1:{}", nginx.port)),
            ("workers", "4".to_string()),
            ("python", super::venv::PYTHON.to_string()),
            ("pip_args", format!("--no-index --find-links {}", super::venv::wheel_dir())),
            ("nginx", format!("{} -p {}", super::nginx::NGINX, nginx.prefix.display())),
            ("nginx_conf", nginx.conf.display().to_string()),
            ("nginx_pid_file", nginx.prefix.join("nginx.pid").display().to_string()),
            ("nginx_error_log", nginx.prefix.join("error.log").display().to_string()),
            ("site_conf", nginx.sites_dir.join("shop.conf").display().to_string()),
            ("log_window", "1s".to_string()),
            (
                "service_manager",
                match self.config.backend {
                    Backend::Process => "process",
                    Backend::Systemd => "systemd",
                }
                .to_string(),
            ),
        ];
        if let Some(systemd) = &self.systemd {
            vars.push(("unit_dir", systemd.unit_dir.display().to_string()));
        }
        if let Some(uv) = super::venv::uv() {
            vars.push(("uv", uv.display().to_string()));
        }
        let mut vars: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        vars.extend(self.extra_vars.iter().cloned());
        vars
    }

    /// The plan file to run: the shipped plans copied (with their fragments) into the test's directory, with one
    /// test-only change: the health gate gives a release that never gets healthy [`HEALTH_WITHIN`] instead of a
    /// minute (the failing scenarios would otherwise spend that minute waiting). A plan whose slots are ports
    /// gets two free ones through its variables (see [`Self::plan_vars`]), as a user would give them.
    pub(crate) fn plan_path(&self, name: &str) -> PathBuf {
        let copy_dir = self.dir.join("plans");
        if !copy_dir.exists() {
            super::proc::run(
                "copy plans",
                Command::new("cp").arg("-a").arg(super::shop::repo_root().join("plans")).arg(&copy_dir),
            );
            let fragment = copy_dir.join("fragments/django.kdl");
            let text = std::fs::read_to_string(&fragment).unwrap_or_default();
            let patched = text.replace("within \"60s\"", &format!("within \"{HEALTH_WITHIN}\""));
            std::fs::write(&fragment, patched).expect("patch fragment");
        }
        let path = copy_dir.join(format!("{name}.kdl"));
        let marker = copy_dir.join(format!(".{name}.patched"));
        if marker.exists() {
            return path;
        }
        // A plan may have health gates of its own (rolling.kdl: one per lane).
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text = text.replace("within \"60s\"", &format!("within \"{HEALTH_WITHIN}\""));
        std::fs::write(&path, &text).expect("patch plan");
        std::fs::write(&marker, "").expect("marker");
        path
    }

    /// The variables only some plans declare: the slot ports `port_a` and `port_b` (plans/port-switch.kdl's
    /// slots), two free ports of this stack's, the same for every run.
    fn plan_vars(&self, plan: &Path) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(plan).unwrap_or_default();
        let (a, b) = self.slot_ports;
        [("port_a", a), ("port_b", b)]
            .into_iter()
            .filter(|(name, _)| text.contains(&format!("var \"{name}\"")))
            .map(|(name, port)| (name.to_string(), port.to_string()))
            .collect()
    }

    /// `zdd <command> <plan> --var ... --state-dir ... --json` for `version`.
    pub(crate) fn command(&self, command: &str, plan_name: &str, version: &str) -> Command {
        self.command_for(command, &self.plan_path(plan_name), &self.vars(version))
    }

    /// `zdd <command> <plan_file> --var ... --state-dir ... --json` with `vars`.
    pub(crate) fn command_for(&self, command: &str, plan_file: &Path, vars: &[(String, String)]) -> Command {
        let mut cmd = Command::new(zdd_bin());
        // `maintenance on`: a command of several words.
        cmd.args(command.split(' ')).arg(plan_file);
        for (name, value) in vars.iter().cloned().chain(self.plan_vars(plan_file)) {
            cmd.arg("--var").arg(format!("{name}={value}"));
        }
        cmd.arg("--state-dir").arg(&self.state_dir);
        if matches!(command.split(' ').next(), Some("run" | "rollback" | "recover" | "promote" | "abort")) {
            cmd.arg("--json");
        }
        if let Some(systemd) = &self.systemd {
            cmd.env("ZDD_SYSTEMD_PREFIX", systemd.nsenter_prefix().join(" "));
        }
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Runs zdd to completion.
    pub(crate) fn zdd(&self, command: &str, plan_name: &str, version: &str) -> ZddRun {
        self.zdd_with_args(command, plan_name, version, &[])
    }

    /// Runs zdd to completion, with more arguments after the harness's own (a later `--var` of a name wins).
    pub(crate) fn zdd_with_args(&self, command: &str, plan_name: &str, version: &str, extra: &[String]) -> ZddRun {
        ZddRun::of(self.command(command, plan_name, version).args(extra))
    }
}

impl ZddRun {
    /// Runs `command` (a zdd command line) to completion.
    pub(crate) fn of(command: &mut Command) -> ZddRun {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let out = command.output().expect("run zdd");
        ZddRun::new(
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started_at,
            start.elapsed(),
        )
    }
}

impl Stack {
    /// Starts zdd with stdout in `<dir>/<name>.out` (read it with `events_so_far`), for tests that kill it.
    pub(crate) fn spawn_zdd(&self, command: &str, plan_name: &str, version: &str, name: &str) -> (Child, PathBuf) {
        let out_path = self.dir.join(&format!("{name}.out"));
        let out = std::fs::File::create(&out_path).expect("zdd out");
        let err = std::fs::File::create(self.dir.join(&format!("{name}.err"))).expect("zdd err");
        let child = self
            .command(command, plan_name, version)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn zdd");
        (child, out_path)
    }

    /// The columns of a table in the app's database.
    pub(crate) fn columns(&self, table: &str) -> Vec<String> {
        if let Some(pg) = &self.pg {
            pg.columns(table)
        } else {
            let script = format!(
                "import sqlite3; c = sqlite3.connect({:?}); \
                 print('\\n'.join(sorted(r[1] for r in c.execute('PRAGMA table_info({table})'))))",
                self.sqlite.display().to_string()
            );
            let out = Command::new(super::venv::PYTHON).args(["-c", &script]).output().expect("python");
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
        }
    }

    /// The release directories present under `<root>/releases`.
    pub(crate) fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("releases"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Gunicorn masters running for this stack (their command lines mention the stack's root).
    pub(crate) fn gunicorn_masters(&self) -> Vec<u32> {
        let root = self.root.display().to_string();
        let mut masters = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let parent: u32 = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let parent_cmd = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
            let parent_is_gunicorn = String::from_utf8_lossy(&parent_cmd).contains("gunicorn");
            if cmdline.contains("gunicorn") && cmdline.contains(&root) && !parent_is_gunicorn {
                masters.push(pid);
            }
        }
        masters
    }

    /// The app's log output so far (gunicorn logs of every release, or the journal of its units).
    pub(crate) fn app_logs(&self) -> String {
        let mut logs = String::new();
        if let Some(systemd) = &self.systemd {
            logs.push_str(&systemd.inside_output("journalctl", &["--no-pager", "-o", "cat"]));
        }
        for entry in walk(&self.root) {
            if entry.extension().is_some_and(|e| e == "log") {
                logs.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
            }
        }
        logs
    }
}

impl Drop for Stack {
    /// The process backend's gunicorns are detached (their own session): nothing else would end them when the
    /// test's directory goes away. Every process whose command line names the stack's root is killed.
    fn drop(&mut self) {
        let root = self.root.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            if String::from_utf8_lossy(&cmdline).contains(&root) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if path.file_name().is_some_and(|n| n == "venv" || n == "staticfiles") {
                continue;
            }
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The result of one zdd run.
#[derive(Debug, Clone)]
pub(crate) struct ZddRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
    pub started_at: SystemTime,
    pub duration: Duration,
}

impl ZddRun {
    pub(crate) fn new(code: i32, stdout: String, stderr: String, started_at: SystemTime, duration: Duration) -> ZddRun {
        let events = parse_events(&stdout);
        ZddRun { code, stdout, stderr, events, started_at, duration }
    }

    /// The run's outcome from its `run-finished` event.
    pub(crate) fn outcome(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "run-finished")
            .and_then(|e| e["outcome"].as_str().map(str::to_string))
    }

    /// The final state of a step (`succeeded`, `failed`, `rolled-back`...).
    pub(crate) fn step_state(&self, step: &str) -> Option<String> {
        let mut state = None;
        for event in &self.events {
            if event["step"] == step {
                match event["event"].as_str() {
                    Some("step-finished") => state = event["state"].as_str().map(str::to_string),
                    Some("undo-finished") => {
                        state = Some(if event["ok"] == true { "rolled-back" } else { "rollback-failed" }.to_string());
                    }
                    _ => {}
                }
            }
        }
        state
    }

    /// When a step finished (successfully or not), as a wall clock time.
    pub(crate) fn step_finished_at(&self, step: &str) -> Option<SystemTime> {
        self.events
            .iter()
            .find(|e| e["event"] == "step-finished" && e["step"] == step)
            .and_then(|e| e["at"].as_u64())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// How long each step took, in the order they started (`release 1.2 s, python-env 30.1 s, ...`).
    pub(crate) fn step_times(&self) -> String {
        let at = |e: &Value| e["at"].as_u64();
        let mut times = Vec::new();
        for started in self.events.iter().filter(|e| e["event"] == "step-started") {
            let step = &started["step"];
            let finished = self.events.iter().find(|e| e["event"] == "step-finished" && e["step"] == *step);
            if let (Some(from), Some(to), Some(name)) = (at(started), finished.and_then(at), step.as_str()) {
                times.push(format!("{name} {:.1} s", Duration::from_millis(to.saturating_sub(from)).as_secs_f64()));
            }
        }
        times.join(", ")
    }

    /// Steps that started, in order.
    pub(crate) fn started_steps(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step-started")
            .filter_map(|e| e["step"].as_str().map(str::to_string))
            .collect()
    }

    /// Everything, for assertion messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "zdd exit {} in {:.1} s\n--- why\n{}\n--- stderr\n{}\n--- events\n{}",
            self.code,
            self.duration.as_secs_f64(),
            self.why(),
            tail(&self.stderr, 60),
            tail(&self.stdout, 60)
        )
    }

    /// The events that say why a run failed (a step that did not succeed, the rollback's cause, a failed undo,
    /// warnings), first in [`ZddRun::describe`]: a long run's tail may not reach back to them, and a CI log that
    /// is cut in the middle still shows its head.
    fn why(&self) -> String {
        let telling = |e: &Value| match e["event"].as_str() {
            Some("step-finished") => !matches!(e["state"].as_str(), Some("succeeded" | "skipped")),
            Some("undo-finished") => e["ok"] != Value::Bool(true),
            Some("rollback-started" | "warning") => true,
            _ => false,
        };
        let lines: Vec<String> =
            parse_events(&self.stdout).iter().filter(|e| telling(e)).map(Value::to_string).collect();
        if lines.is_empty() { "(no failed step in the events)".to_owned() } else { lines.join("\n") }
    }
}

/// The JSON events in a zdd `--json` output (non-JSON lines are ignored).
pub(crate) fn parse_events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(Value::is_object).collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
