//! Arbitrary bytes as a plan file: reading, validation and diagnostics rendering must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zdd_fuzz::check_plan(&String::from_utf8_lossy(data));
});
