//! A stream restore fed arbitrary backups.
//! The body and the invariants it checks: `fuzz-targets/src/jetstream_restore.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::jetstream_restore::run(data));
