//! The store's block/record scan over one arbitrary block file.
//! The body and the invariants it checks: `fuzz-targets/src/store_record.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::store_record::run(data));
