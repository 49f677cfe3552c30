//! FileStore recovery from arbitrary `meta` and block files on a MemDisk.
//! The body and the invariants it checks: `fuzz-targets/src/store_recovery.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::store_recovery::run(data));
