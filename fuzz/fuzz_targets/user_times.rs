//! A user JWT's connect times and time zone.
//! The body and the invariants it checks: `fuzz-targets/src/user_times.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::user_times::run(data));
