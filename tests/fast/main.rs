//! The fast integration tests, as one binary: plans, diagnostics, previews, the CLI, the executor on `exec`
//! steps, the docs' examples, hardening that needs no real service, and each kind's effect on the local host.
//! `cargo test --test fast` runs them in well under a minute once built; `cargo test --test fast plan_cli`
//! runs one module.
//!
//! One binary instead of one per file: the crates link once, and shared support compiles once.

// Test-only helpers that not every module uses.
#![allow(dead_code)]

#[path = "../support/book.rs"]
mod book;
#[path = "../steps_support/driver.rs"]
mod driver;
#[path = "../fixtures/executor/support.rs"]
mod executor_support;
#[path = "../support/fake_kinds.rs"]
mod fake_kinds;
// The fuzz crate's library: its items are `pub` for the fuzz targets, a private module here.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;
#[path = "../support/pathological_plans.rs"]
mod pathological_plans;
#[path = "../support/mod.rs"]
mod support;

mod cli_closed_stdout;
mod cli_doctor;
mod cli_init;
mod cli_saved;
mod docs_codes;
mod docs_kdl;
mod executor_commit;
mod executor_interrupt;
mod executor_marks;
mod executor_run;
mod executor_stage;
mod executor_state;
mod executor_upgrade;
mod fuzz_corpus;
mod harden_files;
mod harden_injection;
mod harden_secrets;
mod plan_cli;
mod plan_diagnostics;
mod plan_envsnap;
mod plan_graph;
mod plan_hosts;
mod plan_preview;
mod plan_validate;
mod steps_kinds;
mod steps_preview;
