//! The websocket codec under arbitrary input.
//! The body and the invariants it checks: `fuzz-targets/src/websocket_frames.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::websocket_frames::run(data));
