//! Arbitrary bytes as a plan file: reading, validation and diagnostics rendering must never panic, and take at
//! most 100 ms per KiB (`budget.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "budget.rs"]
mod budget;

fuzz_target!(|data: &[u8]| {
    budget::within_budget(&String::from_utf8_lossy(data), |text| {
        zdd_fuzz::check_plan(text);
    });
});
