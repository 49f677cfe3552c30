//! The store's record decoder and block scan, driven directly.
//! The body and the invariants it checks: `fuzz-targets/src/store_scan.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::store_scan::run(data));
