//! The benchmark (`scripts/bench.sh`, not a test): failed requests and latency under load for each way of
//! switching a Django release behind Nginx, zdd's deploy wall time against the seed's sequential shell script,
//! cutover and rollback latency, and zdd's peak memory. Prints a table and writes JSON. `bench soak` runs the
//! soak instead (see [`soak`]).
//!
//! It reuses the integration tests' harness (Nginx, venv, gunicorn, load generator) from `tests/support`.

#[path = "../../tests/support/mod.rs"]
mod support;

mod baselines;
mod report;
mod soak;
mod zdd_runs;

use std::path::PathBuf;
use std::time::Duration;

use support::env::{Requirement, require};

/// Settings from the command line.
pub struct Options {
    pub runs: usize,
    pub out: PathBuf,
    /// Seconds of load before and after each switch.
    pub settle: Duration,
    pub zdd: bool,
    /// Only this section (steady, in-place, seed-order, zdd, rollback, seed-script, installer); all when None.
    pub only: Option<String>,
}

impl Options {
    /// Whether a section runs (`--only` picks one).
    pub fn wants(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == section)
    }
}

/// `bench soak [--runs N] [--out FILE] [--no-book]`.
fn soak_options(args: impl Iterator<Item = String>) -> soak::SoakOptions {
    let mut options = soak::SoakOptions { runs: 100, out: PathBuf::from("target/zdd-soak.json"), book: true };
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(options.runs),
            "--out" => options.out = args.next().map(PathBuf::from).unwrap_or(options.out),
            "--no-book" => options.book = false,
            other => {
                eprintln!("usage: bench soak [--runs N] [--out FILE] [--no-book] (unknown argument {other})");
                std::process::exit(2);
            }
        }
    }
    options
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("soak") {
        let options = soak_options(std::env::args().skip(2));
        if !require("bench", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
            std::process::exit(1);
        }
        soak::run(&options);
        return;
    }
    let mut options = Options {
        runs: 3,
        out: PathBuf::from("target/zdd-bench.json"),
        settle: Duration::from_secs(3),
        zdd: true,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(options.runs),
            "--out" => options.out = args.next().map(PathBuf::from).unwrap_or(options.out),
            "--no-zdd" => options.zdd = false,
            "--only" => options.only = args.next(),
            other => {
                eprintln!(
                    "usage: bench [--runs N] [--out FILE] [--no-zdd] [--only SECTION] (unknown argument {other})"
                );
                std::process::exit(2);
            }
        }
    }
    if !require("bench", &[Requirement::Root, Requirement::Nginx, Requirement::Python]) {
        std::process::exit(1);
    }
    let mut results = report::Results::new();
    if options.wants("steady") {
        baselines::steady_state(&options, &mut results);
    }
    if options.wants("in-place") {
        baselines::in_place_restart(&options, &mut results);
    }
    if options.wants("seed-order") {
        baselines::seed_order(&options, &mut results);
    }
    if options.zdd {
        zdd_runs::all(&options, &mut results);
    }
    results.print_table();
    results.write_json(&options.out);
    println!("JSON written to {}", options.out.display());
}
