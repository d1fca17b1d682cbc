//! Plan-reading benchmark (not a test): generates a 1,000-step plan and times `check` (read + validate) and
//! `plan` (read + validate + graph + preview + text) with trivial test kinds, printing a table.
//! Target: under 100 ms each. Run with `cargo bench -p zdd-engine --bench plan_read` (add `--profile dev` to skip the
//! optimised build).

#![allow(dead_code)]

#[path = "../../tests/support/fake_kinds.rs"]
mod fake_kinds;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zdd_engine::graph::StepGraph;
use zdd_engine::host::LocalHost;
use zdd_engine::plan::{self, Runtime, VarInputs};
use zdd_engine::preview::{self, PreviewInput};

const STEPS: usize = 1000;
const RUNS: usize = 7;

/// A plan of `n` steps: each needs the one before and the one seven back, so the graph has long chains and
/// parallel waves; every step interpolates variables into several typed fields.
fn generate(n: usize) -> String {
    let mut s = String::from(
        "plan \"bench\"\nslots \"8001\" \"8002\"\nvar \"app\" \"shop\"\nvar \"root\" \"/nonexistent/zdd-bench/{{app}}\"\n",
    );
    s.push_str(
        "defaults {\n    timeout \"2m\"\n    retry attempts=2 backoff=\"1s\" jitter=\"100ms\"\n}\n",
    );
    for i in 0..n {
        let _ = writeln!(s, "step \"s{i}\" kind=\"fake\" {{");
        let _ = writeln!(s, "    description \"Step {i} of {{{{app}}}}\"");
        if i > 0 {
            let _ = write!(s, "    needs \"s{}\"", i - 1);
            if i >= 7 {
                let _ = write!(s, " \"s{}\"", i - 7);
            }
            s.push('\n');
        }
        let _ = writeln!(s, "    path \"{{{{root}}}}/releases/{{{{release}}}}/f{i}\"");
        let _ = writeln!(s, "    port \"{{{{slot}}}}\"");
        let _ = writeln!(
            s,
            "    url \"http+unix://{{{{root}}}}/run/{{{{slot}}}}.sock:/health/\""
        );
        let _ = writeln!(s, "    cmd \"make\" \"step-{i}\"");
        let _ = writeln!(s, "    get \"/\" status=200");
        let _ = writeln!(s, "    timeout \"30s\"\n}}");
    }
    s
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[RUNS / 2])
}

fn main() {
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let check = || {
        let read = plan::read(&path, &vars, &Runtime::sample(), &kinds);
        assert!(read.result.is_ok(), "the generated plan must be valid");
        read
    };
    let plan_cmd = || {
        let read = plan::read(&path, &vars, &Runtime::sample(), &kinds);
        let plan = Arc::new(read.result.expect("valid plan"));
        let graph = StepGraph::build(&plan);
        let p = rt.block_on(preview::build(PreviewInput {
            plan: &plan,
            graph: &graph,
            kinds: &kinds,
            target: read.target.as_ref().expect("target"),
            state_dir: read.state_dir.as_deref().unwrap_or(Path::new("/")),
            host: Arc::new(LocalHost::new()),
        }));
        preview::render_text(&p, false).len()
    };

    let (parse_min, parse_med) = time(|| kdl::KdlDocument::parse_v2(&text).is_ok());
    let (check_min, check_med) = time(check);
    let (plan_min, plan_med) = time(plan_cmd);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "plan reading, {STEPS} steps ({} KiB of KDL), {RUNS} runs each",
        text.len() / 1024
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "what", "min", "median", "target"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "check (read + validate)",
        ms(check_min),
        ms(check_med),
        "100 ms"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "  of which KDL parsing (kdl crate)",
        ms(parse_min),
        ms(parse_med),
        ""
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "plan (+ graph + preview + text)",
        ms(plan_min),
        ms(plan_med),
        "100 ms"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
