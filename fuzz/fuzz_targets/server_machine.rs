//! The server machine: several connections' byte streams, timers, writes and closes interleaved.
//! The body and the invariants it checks: `fuzz-targets/src/server_machine.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::server_machine::run(data));
