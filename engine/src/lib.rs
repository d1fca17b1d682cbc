//! zdd's engine: everything between a plan file and a finished (or rolled back) deploy.
//!
//! The data takes one straight path:
//! `plan.kdl --load--> sources --parse--> raw (spans) --validate--> Plan (with its one StepGraph) --preflight-->
//! --run--> events --> reporters`. `zdd doctor` stops after the preflight: [`doctor`] runs every check and emits
//! them as events. The graph, built once by validation, orders the run, the preview, the
//! rollback, `recover` and `stop`; an undo gets its recorded facts and no plan ([`kind::UndoCtx`]).
//! Step kinds live in the `zdd-steps` crate and plug in through [`kind::StepKind`] (most through
//! [`settings::TypedKind`]: their fields parsed once, at validation, into typed settings); every command and file
//! operation goes through [`host::Host`].

/// This zdd's version: what `zdd-version` requirements are checked against and what `written_by` says.
pub const ZDD_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod diag;
pub mod doctor;
pub mod events;
pub mod format;
pub mod graph;
pub mod host;
pub mod journal;
pub mod kind;
pub mod lock;
pub mod plan;
pub mod preflight;
pub mod preview;
pub mod redact;
pub mod report;
pub mod run;
pub mod saved;
pub mod schema;
pub mod settings;
pub mod source;
pub mod state;
pub mod template;
