//! The route protocol parser, fed the same bytes whole and in pieces.
//! The body and the invariants it checks: `fuzz-targets/src/route_parser.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::route_parser::run(data));
