//! The state directory: live and previous release and slot, and the history of runs.
