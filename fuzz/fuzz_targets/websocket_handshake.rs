//! The websocket codec under arbitrary input.
//! The body and the invariants it checks: `fuzz-targets/src/websocket_handshake.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::websocket_handshake::run(data));
