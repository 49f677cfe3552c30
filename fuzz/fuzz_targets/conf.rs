//! The config file parser and options mapping over an in-memory ConfSource.
//! The body and the invariants it checks: `fuzz-targets/src/conf.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::conf::run(data));
