//! Subject and queue-name validation against a naive model; Sublist::insert accepts exactly the valid subjects.
//! The body and the invariants it checks: `fuzz-targets/src/subject.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::subject::run(data));
