#![no_main]
//! The body and the invariants it checks: `fuzz-targets/src/jetstream_consumer.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::jetstream_consumer::run(data));
