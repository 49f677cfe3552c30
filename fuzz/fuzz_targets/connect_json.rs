//! The CONNECT JSON decoder.
//! The body and the invariants it checks: `fuzz-targets/src/connect_json.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::connect_json::run(data));
