//! Plans: reading KDL files into a span-keeping raw layer, then validating them into an immutable [`Plan`].
//!
//! - [`load`]: the only I/O: reads the main file and its includes into a [`crate::source::SourceMap`].
//! - [`raw`]: KDL text to raw nodes that keep every span (pure).
//! - [`vars`]: variable defaults, `ZDD_VAR_*`, `--var`, interpolation.
//! - [`validate`]: raw layer to [`Plan`], collecting every diagnostic.
//! - [`render`]: diagnostics to miette output.

pub mod load;
pub mod model;
pub mod raw;
pub mod render;
pub mod validate;
pub mod vars;

pub use model::{FieldValue, Fields, Plan, Retry, Step, StepId, StepPolicy, Value, VarOrigin, Variable};
