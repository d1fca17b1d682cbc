//! Shipped plans edited with KDL and plan-language tokens: gets past the parser far more often than random
//! bytes, into variables, includes, step fields and the graph. Reading one takes at most 100 ms per KiB of the
//! edited plan (`budget.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "budget.rs"]
mod budget;

fuzz_target!(|ops: &[u8]| {
    budget::within_budget(&zdd_fuzz::mutate(ops), |text| {
        zdd_fuzz::check_plan(text);
    });
});
