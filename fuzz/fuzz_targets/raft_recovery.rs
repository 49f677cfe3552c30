//! Opening a RAFT node on arbitrary (or built, then damaged) files.
//! The body and the invariants it checks: `fuzz-targets/src/raft_recovery.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::raft_recovery::run(data));
