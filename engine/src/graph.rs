//! The step graph (petgraph): forward edges from `needs`, and the rollback order derived from each
//! step's effect (the reverse of the forward order over steps that change state).
