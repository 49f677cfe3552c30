//! The NATS JWT decoder (operator, account, user, activation claims).
//! The body and the invariants it checks: `fuzz-targets/src/jwt.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rnats_fuzz_targets::jwt::run(data));
