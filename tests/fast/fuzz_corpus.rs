//! The fuzz targets' inputs, replayed on stable: every seed (`fuzz/seeds/`, the shipped plans and the book's
//! KDL blocks), every input of a fuzzing run's corpus when `ZDD_FUZZ_CORPUS` names its directories
//! (`scripts/fuzz.sh` does), and 500 deterministic mutations of the shipped plans. None may panic or
//! take a second; the slowest is printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{book, harness};

use crate::pathological_plans;

/// The size of the seeds made from the plans that made the KDL parser slow: large enough that a quadratic
/// parse of one (2 s for 16 KiB of `a #"`) is over the fuzz targets' budget of 100 ms per KiB and libFuzzer's
/// 1-second limit, and over this replay's second in a debug build.
const SLOW_SEED_BYTES: usize = 16 * 1024;

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
    };
}

/// The mutator's starting points must be valid where the fuzzers read them (with the fragments beside them), or
/// most mutations would stop at the first error instead of reaching validation and the graph.
#[test]
fn the_mutators_seed_plans_are_valid_in_the_fuzz_harness() {
    for (i, seed) in harness::SEEDS.iter().enumerate() {
        // The fragments are valid as included, not alone (they need the including plan's `prepare` step).
        if [harness::FRAGMENT, harness::RELEASE_FRAGMENT].contains(seed) {
            continue;
        }
        assert!(harness::check_plan(seed), "seed {i} is not valid in the fuzz harness:\n{seed}");
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
    // A hang detector, not a speed target (those are the plan_read benchmark's): the shapes that made the parser
    // backtrack took minutes, a debug build on a loaded 2-core runner takes up to about a second.
    assert!(slowest.0 < Duration::from_secs(20), "{} took {:?}: a parse that no longer ends", slowest.1, slowest.0);
}

/// The seeds the corpus must hold: every shipped plan (`plans_<path>.kdl`), every `kdl` block of the book
/// (`book_<chapter>_<n>.kdl`, numbered across the chapters in order) and every shape that made the KDL parser
/// slow (`slow_<family>.kdl`, 16 KiB of it), by file name.
fn expected_seeds(root: &Path) -> Vec<(String, String)> {
    let mut seeds = Vec::new();
    let mut plans = Vec::new();
    book::files_with_extension(&root.join("plans"), "kdl", &mut plans);
    for path in plans {
        let rel = path.strip_prefix(root.join("plans")).unwrap().to_string_lossy().replace('/', "_");
        seeds.push((format!("plans_{rel}"), std::fs::read_to_string(&path).unwrap()));
    }
    let mut chapters = Vec::new();
    book::markdown_files(&root.join("book/src"), &mut chapters);
    let blocks = chapters.iter().flat_map(|chapter| book::kdl_blocks(chapter));
    for (n, block) in blocks.enumerate() {
        let stem = block.chapter.file_stem().unwrap().to_string_lossy().into_owned();
        seeds.push((format!("book_{stem}_{:02}.kdl", n + 1), block.text));
    }
    for family in pathological_plans::FAMILIES {
        let text = pathological_plans::generate(family, SLOW_SEED_BYTES, zdd_engine::plan::raw::MAX_NESTING);
        seeds.push((format!("slow_{}.kdl", family.name), text));
    }
    seeds
}

/// The fuzzers start from what the project shows, so a new plan or book example is fuzzed from the next run on.
/// `ZDD_UPDATE_SEEDS=1` rewrites the `plans_*`, `book_*` and `slow_*` seeds instead of failing (other seeds, such as
/// regressions, are left alone).
#[test]
fn the_seed_corpus_holds_every_shipped_plan_and_book_example() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fuzz/seeds/plan_bytes");
    let expected = expected_seeds(&root);
    let generated = |name: &str| ["plans_", "book_", "slow_"].iter().any(|prefix| name.starts_with(prefix));
    let present: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            generated(&name).then(|| (name, std::fs::read_to_string(&p).unwrap_or_default()))
        })
        .collect();
    let mut wrong: Vec<&str> = expected.iter().filter(|e| !present.contains(e)).map(|(n, _)| n.as_str()).collect();
    wrong.extend(present.iter().filter(|p| !expected.contains(p)).map(|(n, _)| n.as_str()));
    if wrong.is_empty() {
        return;
    }
    if std::env::var_os("ZDD_UPDATE_SEEDS").is_some() {
        for (name, _) in &present {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        for (name, text) in &expected {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    wrong.sort_unstable();
    wrong.dedup();
    panic!(
        "fuzz/seeds/plan_bytes is out of date ({}): run `ZDD_UPDATE_SEEDS=1 cargo test --test fast fuzz_corpus` and commit",
        wrong.join(", ")
    );
}
