//! Reading a plan file and its includes from disk into a [`crate::source::SourceMap`].
//! The only I/O of plan reading; include cycles and missing includes become diagnostics.
