//! Sequences of Sublist insert / remove / match (derived with `arbitrary`) against a naive model.
//! The body and the invariants it checks: `fuzz-targets/src/sublist_ops.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::sublist_ops::run(data));
