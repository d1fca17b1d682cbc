//! Plan-reading benchmark (not a test): generates a 1,000-step plan and times `check` (read + validate) and
//! `plan` (read + validate + graph + preview + text) with trivial test kinds, printing a table; then times
//! `check` on every family of plans shaped to make the KDL parser slow (issue 11, finding 6:
//! `tests/support/pathological_plans.rs`) at 1, 4, 16 and 64 KiB, with how the time grows from 16 to 64 KiB
//! (4x is linear). Target: under 100 ms each. Run with `cargo bench -p zdd-engine --bench plan_read` (add
//! `--profile dev` to skip the optimised build); `... --bench plan_read -- FAMILY BYTES` reads only that plan,
//! once, for `valgrind --tool=callgrind` to count its instructions. The `zdd` binary's own figures, process
//! start included, come from `benches/plan_cli.rs`.

#![allow(dead_code)]

#[path = "../../tests/support/fake_kinds.rs"]
mod fake_kinds;
#[path = "../../tests/support/generated_plan.rs"]
mod generated_plan;
#[path = "../../tests/support/pathological_plans.rs"]
mod pathological_plans;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zdd_engine::host::LocalHost;
use zdd_engine::plan::{self, Runtime, VarInputs};
use zdd_engine::preview::{self, PreviewInput};

// The allocator the `zdd` binary uses, so these parts add up to its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: usize = 1000;
const RUNS: usize = 7;

/// A plan of `n` steps: each needs the one before and the one seven back, so the graph has long chains and
/// parallel waves; every step interpolates variables into several typed fields.
fn generate(n: usize) -> String {
    let mut s = String::from(
        "plan \"bench\"\nslots \"8001\" \"8002\"\nvar \"app\" \"shop\"\nvar \"root\" \"/nonexistent/zdd-bench/{{app}}\"\n",
    );
    s.push_str("defaults {\n    timeout \"2m\"\n    retry attempts=2 backoff=\"1s\" jitter=\"100ms\"\n}\n");
    for i in 0..n {
        generated_plan::open_step(&mut s, i, "fake");
        let _ = writeln!(s, "    path \"{{{{root}}}}/releases/{{{{release}}}}/f{i}\"");
        let _ = writeln!(s, "    port \"{{{{slot}}}}\"");
        let _ = writeln!(s, "    url \"http+unix://{{{{root}}}}/run/{{{{slot}}}}.sock:/health/\"");
        let _ = writeln!(s, "    cmd \"make\" \"step-{i}\"");
        let _ = writeln!(s, "    get \"/\" status=200");
        let _ = writeln!(s, "    timeout \"30s\"\n}}");
    }
    s
}

/// The sizes each pathological family is read at.
const SIZES: [usize; 4] = [1024, 4 * 1024, 16 * 1024, 64 * 1024];

/// `family` at `bytes`, as `zdd check` reads it (none is a valid plan).
fn pathological(family: &pathological_plans::Family, bytes: usize) -> String {
    pathological_plans::generate(family, bytes, plan::raw::MAX_NESTING)
}

/// Wall-clock minimum and median of `RUNS` runs, and the mean CPU time of a run (all threads; less sensitive to
/// other processes on a shared machine than wall-clock time).
struct Timing {
    min: Duration,
    median: Duration,
    cpu: Option<Duration>,
}

fn time<T>(mut f: impl FnMut() -> T) -> Timing {
    let cpu_before = cpu_time();
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before) / u32::try_from(RUNS).expect("RUNS fits in u32"));
    samples.sort();
    Timing { min: samples[0], median: samples[RUNS / 2], cpu }
}

/// This process's user + system CPU time so far, from /proc (Linux), in clock ticks of 10 ms.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if let [name, bytes] = &args[..] {
        read_one(name, bytes);
        return;
    }
    let dir = std::env::temp_dir().join(format!("zdd-plan-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("bench.kdl");
    let text = generate(STEPS);
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("cannot write {}: {e}", path.display());
        return;
    }
    let kinds = fake_kinds::kinds();
    let vars = VarInputs::default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");

    let check = || {
        let read = plan::read(&path, &vars, &Runtime::sample(), &kinds);
        assert!(read.result.is_ok(), "the generated plan must be valid");
        read
    };
    let plan_cmd = || {
        let read = plan::read(&path, &vars, &Runtime::sample(), &kinds);
        let plan = Arc::new(read.result.expect("valid plan"));
        let p = rt.block_on(preview::build(PreviewInput {
            plan: &plan,
            kinds: &kinds,
            target: read.target.as_ref().expect("target"),
            state_dir: read.state_dir.as_deref().unwrap_or(Path::new("/")),
            hosts: zdd_engine::host::HostSet::local(Arc::new(LocalHost::new())),
        }));
        preview::render_text(&p, false).len()
    };

    let parse = time(|| kdl::KdlDocument::parse_v2(&text).is_ok());
    // zdd's own share: validation of files already loaded and parsed, and the preview of a validated plan.
    let (loaded, _) = plan::load::load(&path, &plan::load::FsReader);
    let validate_only = time(|| {
        let mut diags = zdd_engine::diag::Diagnostics::new();
        let base = path.parent().unwrap_or(Path::new("/"));
        plan::validate::validate(&loaded, base, &vars, &Runtime::sample(), &kinds, &mut diags).is_some()
    });
    let read = plan::read(&path, &vars, &Runtime::sample(), &kinds);
    let valid = Arc::new(read.result.expect("valid plan"));
    let preview_only = time(|| {
        let p = rt.block_on(preview::build(PreviewInput {
            plan: &valid,
            kinds: &kinds,
            target: read.target.as_ref().expect("target"),
            state_dir: Path::new("/nonexistent"),
            hosts: zdd_engine::host::HostSet::local(Arc::new(LocalHost::new())),
        }));
        preview::render_text(&p, false).len()
    });
    let check = time(check);
    let plan = time(plan_cmd);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let cpu = |t: &Timing| t.cpu.map_or_else(|| "?".to_owned(), ms);
    println!("plan reading, {STEPS} steps ({} KiB of KDL), {RUNS} runs each", text.len() / 1024);
    println!("{:<36} {:>10} {:>10} {:>12} {:>8}", "what", "min", "median", "CPU per run", "target");
    let rows = [
        ("check (read + validate)", &check, "100 ms"),
        ("  KDL parsing alone, one thread", &parse, ""),
        ("  validation alone (parsed files)", &validate_only, ""),
        ("plan (+ graph + preview + text)", &plan, "100 ms"),
        ("  graph + preview + text alone", &preview_only, ""),
    ];
    for (what, t, target) in rows {
        println!("{what:<36} {:>10} {:>10} {:>12} {target:>8}", ms(t.min), ms(t.median), cpu(t));
    }
    println!("\ncheck of plans shaped to make the KDL parser slow, median of {RUNS} runs (CPU per run at 64 KiB)");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "family", "1 KiB", "4 KiB", "16 KiB", "64 KiB", "CPU", "x16→64"
    );
    let bad = dir.join("pathological.kdl");
    for family in pathological_plans::FAMILIES {
        let mut medians = Vec::new();
        let mut cpu_64 = None;
        for bytes in SIZES {
            if let Err(e) = std::fs::write(&bad, pathological(family, bytes)) {
                eprintln!("cannot write {}: {e}", bad.display());
                return;
            }
            let t = time(|| plan::read(&bad, &vars, &Runtime::sample(), &kinds).result.is_err());
            medians.push(t.median);
            cpu_64 = t.cpu;
        }
        let growth = medians[3].as_secs_f64() / medians[2].as_secs_f64().max(1e-6);
        let cells: Vec<String> = medians.iter().map(|&d| ms(d)).collect();
        let cpu = cpu_64.map_or_else(|| "?".to_owned(), ms);
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9} {cpu:>9} {growth:>6.1}x",
            family.name, cells[0], cells[1], cells[2], cells[3]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Read one pathological plan once (`-- FAMILY BYTES`), for an instruction count under callgrind.
fn read_one(name: &str, bytes: &str) {
    let Some(family) = pathological_plans::FAMILIES.iter().find(|f| f.name == name) else {
        eprintln!(
            "no family {name}; the families: {}",
            pathological_plans::FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>().join(" ")
        );
        std::process::exit(2);
    };
    let Ok(bytes) = bytes.parse() else {
        eprintln!("not a size in bytes: {bytes}");
        std::process::exit(2);
    };
    let path = std::env::temp_dir().join(format!("zdd-plan-bench-{}-{name}.kdl", std::process::id()));
    if let Err(e) = std::fs::write(&path, pathological(family, bytes)) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let read = plan::read(&path, &VarInputs::default(), &Runtime::sample(), &fake_kinds::kinds());
    let first = read.result.err().and_then(|d| d.iter().next().map(|d| d.code));
    println!("{name} {bytes}: {first:?}");
    let _ = std::fs::remove_file(&path);
}
