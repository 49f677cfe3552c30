//! The bodies of rnats's fuzz targets, as plain functions of `&[u8]`.
//!
//! Each function takes one fuzzer input, drives one parser or machine of
//! `rnats-core` with it, and panics when an invariant breaks. The cargo-fuzz
//! binaries in `fuzz/fuzz_targets/` are one-line wrappers around them, and
//! `tests/corpus_replay.rs` runs every file of `fuzz/corpus/<target>/` through
//! the same function on stable Rust, so CI catches a regression without a
//! fuzzing toolchain.
//!
//! | target | function | input |
//! | --- | --- | --- |
//! | `client_parser` | [`client_parser::run`] | 3 control bytes, then protocol bytes |
//! | `header_block` | [`header_block::run`] | a header block |
//! | `subject` | [`subject::run`] | 1 control byte, then a subject (and queue name) |
//! | `sublist_ops` | [`sublist_ops::run`] | `arbitrary` op sequence |
//! | `server_machine` | [`server_machine::run`] | 4 config bytes, then an event script |
//! | `connect_json` | [`connect_json::run`] | a CONNECT JSON document |
//! | `conf` | [`conf::run`] | config text, includes and env vars, split at NUL |
//! | `store_record` | [`store_record::run`] | 1 control byte, then one block file |
//! | `store_scan` | [`store_scan::run`] | 1 control byte, then one block file |
//! | `store_recovery` | [`store_recovery::run`] | 1 control byte, then `meta` and block files, split at a separator |
//! | `jetstream_api` | [`jetstream_api::run`] | API requests and publishes, split at NUL |
//! | `websocket_frames` | [`websocket_frames::run`] | 1 control byte, then what a client sends after the upgrade |
//! | `websocket_handshake` | [`websocket_handshake::run`] | 1 control byte, then an HTTP request |
//! | `raft_wire` | [`raft_wire::run`] | 1 control byte (which decoder, the log scan, or the `$NRG` transport on which subject), then bytes |
//! | `raft_recovery` | [`raft_recovery::run`] | 1 control byte, then a RAFT node's files (or a log to build), split at a separator |
//! | `route_parser` | [`route_parser::run`] | 1 control byte (piece size), then what a route sends |
//! | `user_times` | [`user_times::run`] | 8 bytes of clock, then ranges and a zone, split at NUL |
//! | `jetstream_consumer` | [`jetstream_consumer::run`] | 1 control byte, then consumer requests, pulls, acks, publishes and time, split at NUL |
//! | `jetstream_feed` | [`jetstream_feed::run`] | 1 control byte, then an external mirror's and source's answers, deliveries, statuses and time, split at NUL |
//! | `fast_batch` | [`fast_batch::run`] | fast batch reply subjects, each after a control byte, split at NUL |
//! | `jetstream_restore` | [`jetstream_restore::run`] | 1 control byte (chunk size, compress or not), then a backup |
//!
//! Invariant: every function is deterministic and its work is bounded by a
//! small multiple of its input's length (so libFuzzer's `-timeout` finds hangs).

#![forbid(unsafe_code)]

pub mod client_parser;
pub mod conf;
pub mod connect_json;
pub mod fast_batch;
pub mod header_block;
pub mod jetstream_api;
pub mod jetstream_consumer;
pub mod jetstream_feed;
pub mod jetstream_restore;
pub mod jwt;
pub mod raft_recovery;
pub mod raft_wire;
pub mod route_parser;
pub mod server_machine;
pub mod store_record;
pub mod store_recovery;
pub mod store_scan;
pub mod subject;
pub mod sublist_ops;
pub mod user_times;
pub mod websocket_frames;
pub mod websocket_handshake;

/// The records of an input split at NUL, at most `max`, each as its first
/// byte (what it is) and the rest (its body); empty records are skipped.
pub fn op_records(records: &[u8], max: usize) -> impl Iterator<Item = (u8, &[u8])> {
    records
        .split(|&b| b == 0)
        .take(max)
        .filter_map(|record| record.split_first().map(|(&op, body)| (op, body)))
}

/// A target body: one fuzzer input in, a panic if an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("client_parser", client_parser::run),
    ("header_block", header_block::run),
    ("subject", subject::run),
    ("sublist_ops", sublist_ops::run),
    ("server_machine", server_machine::run),
    ("connect_json", connect_json::run),
    ("conf", conf::run),
    ("store_record", store_record::run),
    ("store_recovery", store_recovery::run),
    ("jetstream_api", jetstream_api::run),
    ("jetstream_consumer", jetstream_consumer::run),
    ("jetstream_restore", jetstream_restore::run),
    ("jetstream_feed", jetstream_feed::run),
    ("store_scan", store_scan::run),
    ("websocket_frames", websocket_frames::run),
    ("websocket_handshake", websocket_handshake::run),
    ("jwt", jwt::run),
    ("raft_wire", raft_wire::run),
    ("raft_recovery", raft_recovery::run),
    ("route_parser", route_parser::run),
    ("user_times", user_times::run),
    ("fast_batch", fast_batch::run),
];
