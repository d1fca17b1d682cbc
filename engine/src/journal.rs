//! The run journal: JSON lines under the state directory, fsync'd before a step's effect counts as done,
//! so `zdd recover` can roll back an interrupted run from the journal alone.
