//! Arbitrary bytes as a NATS header block.
//! The body and the invariants it checks: `fuzz-targets/src/header_block.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::header_block::run(data));
