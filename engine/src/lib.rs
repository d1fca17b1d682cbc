//! zdd's engine: everything between a plan file and a finished (or rolled back) deploy.
//!
//! The data takes one straight path:
//! `plan.kdl --load--> sources --parse--> raw (spans) --validate--> Plan --build--> Graph --run--> events --> reporters`.
//! Step kinds live in the `zdd-steps` crate and plug in through [`kind::StepKind`]; every command and file
//! operation goes through [`host::Host`].

pub mod diag;
pub mod events;
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
pub mod schema;
pub mod source;
pub mod state;
pub mod template;
