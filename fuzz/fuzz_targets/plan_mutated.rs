//! Shipped plans edited with KDL and plan-language tokens: gets past the parser far more often than random
//! bytes, into variables, includes, step fields and the graph.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: &[u8]| {
    zdd_fuzz::check_plan(&zdd_fuzz::mutate(ops));
});
