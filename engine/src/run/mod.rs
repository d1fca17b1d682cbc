//! The executor: a pure scheduling core, the tokio runner around it (semaphore, JoinSet, cancellation,
//! retries, timeouts), and the rollback.
