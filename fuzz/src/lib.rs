//! What the fuzz targets run, shared with the workspace test that replays the corpus (`tests/fast/fuzz_corpus.rs`
//! includes this file): read and validate a plan from text, render its diagnostics, build its graph; and a
//! structure-aware mutator that edits a valid plan with KDL tokens.
//!
//! Only `zdd-engine` and `zdd-steps` are used here (no libfuzzer), so the replay test builds on stable.

use std::path::Path;

use zdd_engine::plan::load::MemoryReader;
use zdd_engine::plan::{self, Runtime, VarInputs};

/// The fragment the shipped plans include, so mutated plans reach step validation.
pub const FRAGMENT: &str = include_str!("../../plans/fragments/django.kdl");

/// The build half of the Django fragment: `django.kdl` includes it, and `rolling.kdl` includes it alone.
pub const RELEASE_FRAGMENT: &str = include_str!("../../plans/fragments/django-release.kdl");

/// Valid plans the mutator starts from.
pub const SEEDS: &[&str] = &[
    include_str!("../../plans/prod.kdl"),
    include_str!("../../plans/port-switch.kdl"),
    include_str!("../../plans/blue-green.kdl"),
    include_str!("../../plans/demo.kdl"),
    include_str!("../../plans/rolling.kdl"),
    FRAGMENT,
    RELEASE_FRAGMENT,
];

/// KDL and plan-language tokens the mutator inserts (also the libFuzzer dictionary, `fuzz/kdl.dict`).
pub const TOKENS: &[&str] = &[
    "{",
    "}",
    ";",
    "\n",
    "\"",
    "#\"",
    "\"#",
    "\"\"\"",
    "#\"\"\"",
    "/*",
    "*/",
    "//",
    "/-",
    "\\",
    "=",
    "(",
    ")",
    "#true",
    "#false",
    "#null",
    "#inf",
    "#nan",
    "0x",
    "1e99",
    "-",
    "_",
    "{{",
    "}}",
    "{{app}}",
    "{{release}}",
    "{{nope}}",
    "{{#if x}}",
    "{{/if}}",
    "plan ",
    "step ",
    "var ",
    "include ",
    "defaults ",
    "slots ",
    "state-dir ",
    "needs ",
    "kind=",
    "secret=#true",
    "timeout ",
    "retry ",
    "attempts=",
    "backoff=",
    "\"1s\"",
    "\"0ms\"",
    "\"999999h\"",
    "\"exec\"",
    "\"service\"",
    "\"proxy-switch\"",
    "run ",
    "\"x\"",
    "\"/\"",
    "\"..\"",
    "\"fragments/django.kdl\"",
    "\"fragments/django-release.kdl\"",
    "\"prod.kdl\"",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "\t",
    "é",
    "\u{2028}",
];

/// Read `text` as the plan `/fuzz/plan.kdl` (the shipped fragment beside it), validate it with the built-in
/// kinds, render its diagnostics or build its graph. Must never panic, whatever `text` is. Returns whether the
/// plan was valid.
pub fn check_plan(text: &str) -> bool {
    let reader = MemoryReader::new()
        .with("/fuzz/plan.kdl", text)
        .with("/fuzz/fragments/django.kdl", FRAGMENT)
        .with("/fuzz/fragments/django-release.kdl", RELEASE_FRAGMENT);
    let kinds = zdd_steps::builtin();
    let read = plan::from_sources(
        Path::new("/fuzz/plan.kdl"),
        Path::new("/fuzz"),
        &reader,
        &VarInputs::cli(["source=/fuzz/src"]),
        &Runtime::sample().with_state_dir(Some(Path::new("/fuzz/state"))),
        &kinds,
    );
    match &read.result {
        Ok(p) => {
            let graph = zdd_engine::graph::StepGraph::build(p);
            let _ = graph.rollback(p, &kinds);
            true
        }
        Err(diags) => {
            let _ = zdd_engine::plan::render::render_diagnostics(diags, &read.sources, false);
            false
        }
    }
}

/// A valid plan edited by `ops`: each group of 4 bytes picks an edit (insert a token, delete a range,
/// duplicate or drop a line, insert raw bytes) and where to apply it.
pub fn mutate(ops: &[u8]) -> String {
    let Some((&which, ops)) = ops.split_first() else {
        return SEEDS[0].to_owned();
    };
    let mut text: Vec<u8> = SEEDS[usize::from(which) % SEEDS.len()].as_bytes().to_vec();
    for op in ops.chunks(4) {
        let [kind, a, b, c] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let pos = if text.is_empty() { 0 } else { (usize::from(a) << 8 | usize::from(b)) * 7 % (text.len() + 1) };
        match kind % 6 {
            0 | 1 => {
                let token = TOKENS[usize::from(c) % TOKENS.len()].as_bytes();
                text.splice(pos..pos, token.iter().copied());
            }
            2 => {
                let end = (pos + usize::from(c) % 32).min(text.len());
                text.drain(pos..end);
            }
            3 => {
                let (start, end) = line_around(&text, pos);
                let line = text[start..end].to_vec();
                text.splice(end..end, line);
            }
            4 => {
                let (start, end) = line_around(&text, pos);
                text.drain(start..end);
            }
            _ => text.insert(pos.min(text.len()), c),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The line (with its newline) containing byte `pos`.
fn line_around(text: &[u8], pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let start = text[..pos].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = text[pos..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| pos + i + 1);
    (start, end)
}
