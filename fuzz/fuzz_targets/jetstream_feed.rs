#![no_main]
//! The body and the invariants it checks: `fuzz-targets/src/jetstream_feed.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::jetstream_feed::run(data));
