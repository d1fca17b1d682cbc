//! The soak (`scripts/bench.sh soak`, not a test): consecutive deploys and rollbacks of the shop on one host
//! (plans/prod.kdl: the process backend, SQLite, the socket switch) under continuous load, mixing good releases,
//! a failing health check, a release that breaks after the cutover (its smoke check fails), an unsafe migration
//! (the gate refuses it) and `zdd rollback`. Per run it records the exit code against the expected one, failed
//! requests, the releases on disk, the processes and open file descriptors under the stack's directory, the
//! state directory's size and journals, and the deploy time: a slow drift in any of them means something
//! accumulates. It writes the table into `book/src/soak.md` and the plot of deploy time per run into
//! `book/src/soak-deploy-times.svg`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;
use serde_json::json;

use crate::support::load::{Load, LoadConfig, Report};
use crate::support::scenarios::serving;
use crate::support::shop;
use crate::support::zdd::{Backend, Db, ProxyMode, Stack, StackConfig, ZddRun};

/// The soak's settings from the command line.
pub(crate) struct SoakOptions {
    pub runs: u32,
    pub out: PathBuf,
    /// Write the table and the plot into the book (off for trial runs).
    pub book: bool,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Good,
    HealthFails,
    BreaksAfterCutover,
    UnsafeMigration,
    Rollback,
}

/// The runs repeat this cycle: half good releases, one of each failure, two rollbacks.
const CYCLE: [Action; 10] = [
    Action::Good,
    Action::Good,
    Action::HealthFails,
    Action::Good,
    Action::Rollback,
    Action::BreaksAfterCutover,
    Action::Good,
    Action::UnsafeMigration,
    Action::Good,
    Action::Rollback,
];

/// Load before the first run and after each run, still counted for that run (late failures).
const SETTLE: Duration = Duration::from_millis(700);

impl Action {
    const ALL: [Action; 5] =
        [Action::Good, Action::HealthFails, Action::BreaksAfterCutover, Action::UnsafeMigration, Action::Rollback];

    fn label(self) -> &'static str {
        match self {
            Action::Good => "good release",
            Action::HealthFails => "health check fails",
            Action::BreaksAfterCutover => "fails after cutover",
            Action::UnsafeMigration => "unsafe migration",
            Action::Rollback => "zdd rollback",
        }
    }

    /// 0 for a deploy or rollback that goes live, 1 for a release rolled back.
    fn expected_exit(self) -> i32 {
        match self {
            Action::Good | Action::Rollback => 0,
            Action::HealthFails | Action::BreaksAfterCutover | Action::UnsafeMigration => 1,
        }
    }

    /// The shop version a failing run deploys.
    fn failing_version(self) -> Option<&'static str> {
        match self {
            Action::HealthFails => Some("v3-health-fails"),
            Action::BreaksAfterCutover => Some("v3-breaks-after-cutover"),
            Action::UnsafeMigration => Some("v3-unsafe-migration"),
            Action::Good | Action::Rollback => None,
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Action::Good => RGBColor(31, 119, 180),
            Action::HealthFails => RGBColor(255, 127, 14),
            Action::BreaksAfterCutover => RGBColor(214, 39, 40),
            Action::UnsafeMigration => RGBColor(148, 103, 189),
            Action::Rollback => RGBColor(44, 160, 44),
        }
    }
}

/// What one run left and measured.
struct Row {
    run: u32,
    action: Action,
    exit: i32,
    seconds: f64,
    requests: usize,
    /// Failed requests of any kind, except the answers of a release that breaks after the cutover itself.
    failed: usize,
    /// The broken release's own error answers (between the cutover and the switch back).
    broken_answers: usize,
    /// The version Nginx serves after the run, and whether it is the one expected.
    serving: String,
    serving_expected: bool,
    releases: usize,
    masters: usize,
    processes: usize,
    fds: usize,
    state_bytes: u64,
    journals: usize,
}

pub(crate) fn run(options: &SoakOptions) {
    let stack =
        Stack::start("bench-soak", StackConfig { backend: Backend::Process, db: Db::Sqlite, mode: ProxyMode::Socket });
    let first = release_run(&stack, "v1", "soak-000");
    if first.code != 0 {
        eprintln!("soak: the first deploy failed:\n{}", first.describe());
        std::process::exit(1);
    }
    // Live and previous releases' versions: what Nginx must serve, and what a rollback brings back.
    let mut live = "v1".to_string();
    let mut previous: Option<String> = None;
    let mut rows = Vec::new();
    let mut load = Load::start(load_config(&stack));
    std::thread::sleep(SETTLE);
    for run in 1..=options.runs {
        let action = CYCLE[(run as usize - 1) % CYCLE.len()];
        let (result, version) = match action {
            Action::Good => {
                let version = format!("v2-s{run:03}");
                numbered_source(&stack, &version);
                (release_run(&stack, &version, &format!("soak-{run:03}")), version)
            }
            Action::Rollback => {
                let back = previous.clone().unwrap_or_else(|| live.clone());
                (ZddRun::of(&mut stack.command("rollback", "prod", &back)), back)
            }
            failing => {
                let version = failing.failing_version().unwrap_or("v2").to_string();
                (release_run(&stack, &version, &format!("soak-{run:03}")), version)
            }
        };
        if result.code == 0 {
            let before = std::mem::replace(&mut live, version.clone());
            previous = Some(before);
        }
        // The old instance drains after the switch; then the load goes on a moment more, counted for this run.
        crate::support::proc::wait_until(Duration::from_secs(40), || stack.gunicorn_masters().len() == 1);
        std::thread::sleep(SETTLE);
        // The next run's load starts before this one's stops: the load never pauses.
        let report = std::mem::replace(&mut load, Load::start(load_config(&stack))).finish();
        let row = measure(&stack, run, action, &result, &report, &live);
        eprintln!(
            "soak run {run}/{}: {} exit {} (expected {}) in {:.1} s; {}; releases {}, processes {}, fds {}, state {} KiB",
            options.runs,
            action.label(),
            row.exit,
            action.expected_exit(),
            row.seconds,
            report.summary(),
            row.releases,
            row.processes,
            row.fds,
            row.state_bytes / 1024
        );
        if row.exit != action.expected_exit() || !row.serving_expected {
            eprintln!("{}", result.describe());
        }
        rows.push(row);
    }
    let tail = load.finish();
    let summary = summary(&rows, &tail);
    let table = table(&rows);
    println!("\n{summary}\n\n{table}");
    write_json(&options.out, &rows);
    if options.book {
        let book = shop::repo_root().join("book/src");
        write_into_page(&book.join("soak.md"), &format!("{summary}\n\n{table}"));
        if let Err(e) = plot(&book.join("soak-deploy-times.svg"), &rows) {
            eprintln!("soak: could not draw the plot: {e}");
        }
        println!(
            "table written into {}, plot into {}",
            book.join("soak.md").display(),
            book.join("soak-deploy-times.svg").display()
        );
    }
}

fn load_config(stack: &Stack) -> LoadConfig {
    let mut config = LoadConfig::standard(stack.nginx.port);
    config.max_duration = Duration::from_mins(5);
    config
}

/// `zdd run` of `version` as release `id` (ids sort by run, as the release step's pruning expects).
fn release_run(stack: &Stack, version: &str, id: &str) -> ZddRun {
    ZddRun::of(stack.command("run", "prod", version).arg("--release").arg(id))
}

/// A copy of v2 whose version string is `name`, so every good release's answers are told apart.
fn numbered_source(stack: &Stack, name: &str) {
    let dir = stack.sources.join(name);
    shop::materialise("v2", &dir).expect("materialise");
    std::fs::write(dir.join("shop/version.py"), format!("VERSION = \"{name}\"\n")).expect("write version");
}

fn measure(stack: &Stack, run: u32, action: Action, result: &ZddRun, report: &Report, live: &str) -> Row {
    let broken = action.failing_version().filter(|_| action == Action::BreaksAfterCutover);
    let (failed, broken_answers) = match broken {
        Some(version) => (report.failed_excluding_version(version), report.errors_from_version(version)),
        None => (report.failed(), 0),
    };
    let now = serving(stack).unwrap_or_else(|| "nothing".to_string());
    let (processes, fds) = processes_under(stack.dir.path());
    let state = &stack.state_dir;
    Row {
        run,
        action,
        exit: result.code,
        seconds: result.duration.as_secs_f64(),
        requests: report.total(),
        failed,
        broken_answers,
        serving_expected: now == live,
        serving: now,
        releases: stack.releases().len(),
        masters: stack.gunicorn_masters().len(),
        processes,
        fds,
        state_bytes: size_of(state),
        journals: std::fs::read_dir(state.join("journal")).map_or(0, Iterator::count),
    }
}

/// The processes whose command line names `dir` (Nginx's master, gunicorn's master and workers), with their
/// children (Nginx's workers rename themselves), and their open file descriptors.
fn processes_under(dir: &Path) -> (usize, usize) {
    let needle = dir.display().to_string();
    let mut all: Vec<(u32, u32, bool)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let parent =
            stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        all.push((pid, parent, String::from_utf8_lossy(&cmdline).contains(&needle)));
    }
    let mut under: Vec<u32> = all.iter().filter(|(_, _, named)| *named).map(|(pid, _, _)| *pid).collect();
    loop {
        let children: Vec<u32> = all
            .iter()
            .filter(|(pid, parent, _)| under.contains(parent) && !under.contains(pid))
            .map(|(pid, _, _)| *pid)
            .collect();
        if children.is_empty() {
            break;
        }
        under.extend(children);
    }
    let fds = under.iter().map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)).sum();
    (under.len(), fds)
}

/// The bytes of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { size_of(&entry.path()) } else { meta.len() };
    }
    total
}

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn summary(rows: &[Row], tail: &Report) -> String {
    let runs = rows.len();
    let requests: usize = rows.iter().map(|r| r.requests).sum::<usize>() + tail.total();
    let failed: usize = rows.iter().map(|r| r.failed).sum::<usize>() + tail.failed();
    let broken: usize = rows.iter().map(|r| r.broken_answers).sum();
    let wrong_exit: Vec<String> = rows
        .iter()
        .filter(|r| r.exit != r.action.expected_exit())
        .map(|r| format!("run {} ({}): exit {}", r.run, r.action.label(), r.exit))
        .collect();
    let wrong_version: Vec<String> =
        rows.iter().filter(|r| !r.serving_expected).map(|r| format!("run {}: {}", r.run, r.serving)).collect();
    let max_releases = rows.iter().map(|r| r.releases).max().unwrap_or(0);
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return "no runs".to_string() };
    let max_state = rows.iter().map(|r| r.state_bytes).max().unwrap_or(0);
    let mut lines = vec![
        "| measure | result |".to_string(),
        "|---|---|".to_string(),
        format!("| runs | {runs} (after a first deploy of v1 that is not counted) |"),
        format!("| requests under load | {requests} |"),
        format!("| failed requests, any kind | **{failed}** |"),
        format!(
            "| error answers of the release that breaks after the cutover (its own 500s, until the switch back) | {broken} |"
        ),
        format!(
            "| exit codes other than expected | {} |",
            if wrong_exit.is_empty() { "none".to_string() } else { wrong_exit.join("; ") }
        ),
        format!(
            "| runs after which Nginx did not serve the expected version | {} |",
            if wrong_version.is_empty() { "none".to_string() } else { wrong_version.join("; ") }
        ),
        format!("| releases on disk (keep 5) | at most {max_releases} |"),
        format!(
            "| processes / open fds under the stack's directory, after run 1 → after run {runs} | {} / {} → {} / {} |",
            first.processes, first.fds, last.processes, last.fds
        ),
        format!("| gunicorn masters after run 1 → after run {runs} | {} → {} |", first.masters, last.masters),
        format!(
            "| state directory, after run 1 → after run {runs} (largest) | {} → {} KiB ({} KiB), {} → {} journals |",
            first.state_bytes / 1024,
            last.state_bytes / 1024,
            max_state / 1024,
            first.journals,
            last.journals
        ),
    ];
    for action in Action::ALL {
        let times: Vec<f64> = rows.iter().filter(|r| r.action == action).map(|r| r.seconds).collect();
        if times.is_empty() {
            continue;
        }
        let tenth = times.len().div_ceil(10).max(1);
        lines.push(format!(
            "| deploy time, {} ({} runs): median; first {tenth} → last {tenth} | {:.1} s; {:.1} s → {:.1} s |",
            action.label(),
            times.len(),
            median(times.clone()),
            median(times[..tenth].to_vec()),
            median(times[times.len() - tenth..].to_vec()),
        ));
    }
    lines.join("\n")
}

fn table(rows: &[Row]) -> String {
    let mut lines = vec![
        "| run | action | exit (expected) | deploy s | requests | failed | broken's own 500s | serving | releases | processes | fds | state KiB | journals |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for r in rows {
        lines.push(format!(
            "| {} | {} | {} ({}) | {:.1} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} |",
            r.run,
            r.action.label(),
            r.exit,
            r.action.expected_exit(),
            r.seconds,
            r.requests,
            r.failed,
            r.broken_answers,
            r.serving,
            if r.serving_expected { "" } else { " (unexpected)" },
            r.releases,
            r.processes,
            r.fds,
            r.state_bytes / 1024,
            r.journals
        ));
    }
    lines.join("\n")
}

fn write_json(path: &Path, rows: &[Row]) {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "run": r.run, "action": r.action.label(), "exit": r.exit, "expected_exit": r.action.expected_exit(),
                "seconds": r.seconds, "requests": r.requests, "failed": r.failed, "broken_answers": r.broken_answers,
                "serving": r.serving, "serving_expected": r.serving_expected, "releases": r.releases,
                "gunicorn_masters": r.masters, "processes": r.processes, "fds": r.fds,
                "state_bytes": r.state_bytes, "journals": r.journals,
            })
        })
        .collect();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&rows) {
        Ok(text) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("soak: could not write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("soak: {e}"),
    }
}

/// The markers in the book's page between which the measured tables go.
const BEGIN: &str = "<!-- soak: begin (written by `scripts/bench.sh soak`) -->";
const END: &str = "<!-- soak: end -->";

/// Replace what is between the page's markers with `text` (the prose around it is kept).
fn write_into_page(page: &Path, text: &str) {
    let old = std::fs::read_to_string(page).unwrap_or_default();
    let (Some(start), Some(end)) = (old.find(BEGIN), old.find(END)) else {
        eprintln!("soak: {} has no markers `{BEGIN}` ... `{END}`; the table is not written there", page.display());
        return;
    };
    let new = format!("{}{BEGIN}\n\n{text}\n\n{}", &old[..start], &old[end..]);
    if let Err(e) = std::fs::write(page, new) {
        eprintln!("soak: could not write {}: {e}", page.display());
    }
}

/// Deploy time against run number, a point per run coloured by action, good releases joined by a line.
fn plot(path: &Path, rows: &[Row]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let runs = rows.last().map_or(1, |r| r.run);
    let top = rows.iter().map(|r| r.seconds).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("zdd soak: deploy time of each of {runs} runs"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0..runs + 1, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("run").y_desc("seconds").draw().map_err(|e| e.to_string())?;
    let good: Vec<(u32, f64)> = rows.iter().filter(|r| r.action == Action::Good).map(|r| (r.run, r.seconds)).collect();
    chart.draw_series(LineSeries::new(good, Action::Good.color().mix(0.4))).map_err(|e| e.to_string())?;
    for action in Action::ALL {
        let color = action.color();
        chart
            .draw_series(
                rows.iter().filter(|r| r.action == action).map(|r| Circle::new((r.run, r.seconds), 4, color.filled())),
            )
            .map_err(|e| e.to_string())?
            .label(action.label())
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
