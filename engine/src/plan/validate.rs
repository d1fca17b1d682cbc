//! Validation: the raw layer to an immutable [`crate::plan::Plan`], collecting every diagnostic
//! (unknown nodes and properties with "did you mean", types, required fields, `needs`, duplicates, cycles).
