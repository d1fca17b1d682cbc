//! `zdd check` and `zdd plan` end to end (not a test): the built binary, process start to exit, on a generated
//! plan of 1,000 steps of the built-in kinds. Target: under 100 ms each. Prints a table.
//!
//! Run with `cargo bench --bench plan_cli` (cargo builds the binary in the bench profile first).
//! `engine/benches/plan_read.rs` splits the same work into its parts (parsing, validation, preview) in-process.

#[path = "../tests/support/generated_plan.rs"]
mod generated_plan;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 1000;
const RUNS: usize = 15;

/// A plan of `n` steps, mostly `exec` with an undo, an environment and a working directory, every tenth an `http`
/// check; each needs the step before and the one seven back, so the graph has long chains and parallel waves.
fn generate(n: usize) -> String {
    let mut s = String::from(
        "plan \"bench\"\nvar \"app\" \"shop\"\nvar \"root\" \"/nonexistent/zdd-bench/{{app}}\"\n\
         defaults {\n    timeout \"2m\"\n    retry attempts=2 backoff=\"1s\" jitter=\"100ms\"\n}\n",
    );
    for i in 0..n {
        let kind = if i % 10 == 9 { "http" } else { "exec" };
        generated_plan::open_step(&mut s, i, kind);
        if kind == "http" {
            let _ = writeln!(s, "    url \"http+unix://{{{{root}}}}/run/web.sock:/health/{i}\"");
            let _ = writeln!(s, "    header \"X-Step\" \"s{i}\"");
            s.push_str("    expect-status 200\n");
        } else {
            let _ = writeln!(s, "    command \"make\" \"-C\" \"{{{{root}}}}/releases/{{{{release}}}}\" \"step-{i}\"");
            let _ =
                writeln!(s, "    undo-command \"make\" \"-C\" \"{{{{root}}}}/releases/{{{{release}}}}\" \"undo-{i}\"");
            s.push_str("    env \"APP\" \"{{app}}\"\n    cwd \"/\"\n");
        }
        s.push_str("    timeout \"30s\"\n}\n");
    }
    s
}

/// Wall-clock times of `RUNS` runs of `zdd <args>`, sorted; `None` if a run failed.
fn time(zdd: &Path, args: &[&str]) -> Option<Vec<Duration>> {
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..=RUNS {
        let start = Instant::now();
        let status = Command::new(zdd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
        if !status.success() {
            eprintln!("zdd {} failed: {status}", args.join(" "));
            return None;
        }
        // The first run warms the page cache; it is not counted.
        if run > 0 {
            samples.push(start.elapsed());
        }
    }
    samples.sort();
    Some(samples)
}

fn main() {
    let zdd = Path::new(env!("CARGO_BIN_EXE_zdd"));
    let dir = std::env::temp_dir().join(format!("zdd-plan-cli-bench-{}", std::process::id()));
    let path = dir.join("bench.kdl");
    let text = generate(STEPS);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
        eprintln!("cannot write {}: {e}", path.display());
        return;
    }
    let file = path.to_string_lossy();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("zdd on a generated plan: {STEPS} steps ({} KiB of KDL), {RUNS} runs each", text.len() / 1024);
    println!("{:<12} {:>10} {:>10} {:>10} {:>8}", "command", "min", "median", "max", "target");
    for command in ["check", "plan"] {
        match time(zdd, &[command, &file]) {
            Some(t) => println!(
                "{:<12} {:>10} {:>10} {:>10} {:>8}",
                format!("zdd {command}"),
                ms(t[0]),
                ms(t[RUNS / 2]),
                ms(t[RUNS - 1]),
                "100 ms"
            ),
            None => println!("zdd {command}: failed (run it by hand on {})", path.display()),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
