//! The deploy lock of a state directory: one run at a time, owner recorded, stale locks taken over.
