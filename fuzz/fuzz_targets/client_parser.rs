//! The client protocol parser, fed the same bytes whole and in arbitrary pieces.
//! The body and the invariants it checks: `fuzz-targets/src/client_parser.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::client_parser::run(data));
