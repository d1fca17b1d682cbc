//! The executor: a pure scheduling core, the tokio runner around it (semaphore, `JoinSet`, cancellation,
//! retries, timeouts), and the rollback.
//!
//! - [`schedule`]: which steps may start (pure, no tokio, no clock).
//! - [`retry`]: backoff delays.
//! - [`step`]: one step's attempts, timeouts and cancellation.
//! - [`executor`]: the run and its rollback.
//! - [`session`]: a run with its journal, lock and state; `recover`; signals.

pub mod executor;
pub mod retry;
pub mod schedule;
pub mod session;
pub mod step;

pub use executor::{Executor, Forward, Rollback, RunReport, Span, default_jobs};
pub use session::{Session, SessionError, StepCommand, interrupt_on_signals, new_run_id, process_log_path};

#[cfg(test)]
mod tests;
