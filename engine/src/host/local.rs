//! [`LocalHost`]: the host this zdd runs on.

/// This machine.
#[derive(Debug, Clone, Default)]
pub struct LocalHost;
