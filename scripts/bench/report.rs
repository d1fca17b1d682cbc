//! The benchmark's results: one row per measured method, printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::load::Report;

/// Load results of one method over its runs.
pub(crate) struct LoadRow {
    pub method: String,
    pub runs: usize,
    pub requests: usize,
    pub failed_by_kind: BTreeMap<String, usize>,
    pub failed_per_run: Vec<usize>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadRow {
    pub(crate) fn from_reports(method: &str, reports: &[Report]) -> LoadRow {
        let mut failed_by_kind = BTreeMap::new();
        for report in reports {
            for (kind, n) in report.failures_by_kind() {
                *failed_by_kind.entry(kind.to_string()).or_insert(0) += n;
            }
        }
        let quantile = |q: f64| {
            let mut values: Vec<f64> = reports.iter().map(|r| r.latency_quantile(q).as_secs_f64() * 1000.0).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(0.0)
        };
        LoadRow {
            method: method.to_string(),
            runs: reports.len(),
            requests: reports.iter().map(Report::total).sum(),
            failed_by_kind,
            failed_per_run: reports.iter().map(Report::failed).collect(),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }
}

/// Everything measured.
pub(crate) struct Results {
    pub load: Vec<LoadRow>,
    /// Named timings in milliseconds (one value per run).
    pub timings: BTreeMap<String, Vec<f64>>,
    pub notes: Vec<String>,
}

impl Results {
    pub(crate) fn new() -> Results {
        Results { load: Vec::new(), timings: BTreeMap::new(), notes: Vec::new() }
    }

    pub(crate) fn timing(&mut self, name: &str, ms: f64) {
        self.timings.entry(name.to_string()).or_default().push(ms);
    }

    pub(crate) fn print_table(&self) {
        println!();
        println!("| method | runs | requests | failed per run | failed by kind | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|---|");
        for row in &self.load {
            let kinds: Vec<String> = row.failed_by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!(
                "| {} | {} | {} | {:?} | {} | {:.1} | {:.1} |",
                row.method,
                row.runs,
                row.requests,
                row.failed_per_run,
                if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") },
                row.p50_ms,
                row.p99_ms
            );
        }
        if !self.timings.is_empty() {
            println!();
            println!("| timing | median ms | runs (ms) |");
            println!("|---|---|---|");
            for (name, values) in &self.timings {
                let runs: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
                println!("| {name} | {:.0} | {} |", median(values), runs.join(", "));
            }
        }
        for note in &self.notes {
            println!("- {note}");
        }
    }

    pub(crate) fn write_json(&self, path: &Path) {
        let load: Vec<Value> = self
            .load
            .iter()
            .map(|r| {
                json!({
                    "method": r.method, "runs": r.runs, "requests": r.requests,
                    "failed_by_kind": r.failed_by_kind, "failed_per_run": r.failed_per_run,
                    "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                })
            })
            .collect();
        let timings: BTreeMap<&String, Value> =
            self.timings.iter().map(|(k, v)| (k, json!({ "median_ms": median(v), "runs_ms": v }))).collect();
        let doc = json!({
            "machine": machine(),
            "load": load,
            "timings": timings,
            "notes": self.notes,
        });
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// CPU model, core count and memory of the machine, for the record.
pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_default();
    json!({ "cpu": model, "cores": cores, "memory_mb": mem_kb / 1024, "os": os })
}
