//! nats-server's RAFT message decoders and the RAFT log scan.
//! The body and the invariants it checks: `fuzz-targets/src/raft_wire.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::raft_wire::run(data));
