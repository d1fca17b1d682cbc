//! The fuzz targets' inputs, replayed on stable: every seed (`fuzz/seeds/`, the shipped plans and the book's
//! KDL blocks), every input of a fuzzing run's corpus when `ZDD_FUZZ_CORPUS` names its directories
//! (`scripts/fuzz.sh` does), and 500 deterministic mutations of the shipped plans. None may panic or
//! take a second; the slowest is printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The fuzz crate's library: its items are `pub` for the fuzz targets, private modules here.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

/// An input and how to run it.
enum Input {
    /// Bytes read as a plan (`plan_bytes`).
    Plan(Vec<u8>),
    /// Mutation ops applied to a shipped plan (`plan_mutated`).
    Ops(Vec<u8>),
}

fn run(input: &Input) {
    match input {
        Input::Plan(bytes) => harness::check_plan(&String::from_utf8_lossy(bytes)),
        Input::Ops(ops) => harness::check_plan(&harness::mutate(ops)),
    }
}

fn read_dir(dir: &Path, ops: bool, out: &mut Vec<(String, Input)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let input = if ops { Input::Ops(bytes) } else { Input::Plan(bytes) };
            out.push((path.display().to_string(), input));
        }
    }
}

/// xorshift64*: deterministic mutations without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn every_seed_corpus_input_and_mutation_is_read_quickly_without_panicking() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    read_dir(&root.join("fuzz/seeds/plan_bytes"), false, &mut inputs);
    read_dir(&root.join("fuzz/seeds/plan_mutated"), true, &mut inputs);
    let seeds = inputs.len();
    assert!(seeds >= 20, "only {seeds} seeds");
    // `ZDD_FUZZ_CORPUS=<plan_bytes dir>:<plan_mutated dir>` (scripts/fuzz.sh): a fuzzing run's corpus too.
    if let Ok(dirs) = std::env::var("ZDD_FUZZ_CORPUS") {
        for (i, dir) in dirs.split(':').enumerate() {
            read_dir(Path::new(dir), i == 1, &mut inputs);
        }
    }
    let mutations: u64 = std::env::var("ZDD_FUZZ_MUTATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..mutations {
        let len = 1 + next(&mut state) % 64;
        #[allow(clippy::cast_possible_truncation)] // each op is the low byte of the next number
        let ops: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        inputs.push((format!("mutation #{i}"), Input::Ops(ops)));
    }

    let mut slowest = (Duration::ZERO, String::new());
    let mut total = Duration::ZERO;
    for (name, input) in &inputs {
        let start = Instant::now();
        run(input);
        let took = start.elapsed();
        total += took;
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
    }
    println!("{} inputs ({seeds} seeds), {:.1?} in all; slowest {:.1?}: {}", inputs.len(), total, slowest.0, slowest.1);
    assert!(slowest.0 < Duration::from_secs(1), "{} took {:?}", slowest.1, slowest.0);
}
