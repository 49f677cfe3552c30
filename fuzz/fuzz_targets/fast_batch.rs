//! Fast batch reply subjects and the batch machine they drive.
//! The body and the invariants it checks: `fuzz-targets/src/fast_batch.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::fast_batch::run(data));
