//! The JetStream machine fed API requests and publishes: the `$JS.API`
//! request decoder, config handling and the stream machine behind it.
//!
//! Input: records split at `0x00`. A record's first byte picks what it is
//! (an API subject from a fixed list, a subject of the record's own, or a
//! publish to a stream subject, or a sync completion); the rest is the body.
//!
//! Checked: no panic; every request on a known API subject gets exactly one
//! reply and it is JSON with the response `type`; acks only follow syncs
//! (no ack is sent for a sequence above what the completed syncs covered);
//! work is bounded by the input.

use std::collections::BTreeMap;

use bytes::Bytes;
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, MemDisk, SharedDisk};
use rnats_core::time::{Instant, WallTime};

const SUBJECTS: &[&str] = &[
    "$JS.API.INFO",
    "$JS.API.STREAM.CREATE.S",
    "$JS.API.STREAM.UPDATE.S",
    "$JS.API.STREAM.DELETE.S",
    "$JS.API.STREAM.INFO.S",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.PURGE.S",
    "$JS.API.STREAM.MSG.GET.S",
    "$JS.API.STREAM.MSG.DELETE.S",
    "$JS.API.STREAM.CREATE.T",
    "$JS.API.DIRECT.GET.S",
];

/// Records per input, so the work stays bounded.
const MAX_RECORDS: usize = 256;

/// The target body.
pub fn run(data: &[u8]) {
    let mut accounts = BTreeMap::new();
    accounts.insert("A".to_string(), AccountLimits::default());
    let config = JetStreamConfig {
        strict: data.first().is_some_and(|b| b & 1 == 1),
        ..JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
    };
    // One disk behind every stream, as one real disk is.
    let mut disk = SharedDisk::new(MemDisk::new());
    let mut js = JetStream::open(
        "fuzz".into(),
        config,
        accounts,
        disk.clone(),
        Instant::ZERO,
        WallTime(1),
    );
    let mut streams: BTreeMap<StreamId, Vec<String>> = BTreeMap::new();
    let mut syncs = Vec::new();
    let mut clock = 1u64;
    for record in data.split(|&b| b == 0).take(MAX_RECORDS) {
        let Some((&op, body)) = record.split_first() else {
            continue;
        };
        clock += 1_000_000;
        let now = Instant::from_nanos(clock);
        let wall = WallTime(clock);
        let (target, subject, api) = match op % 4 {
            0 | 1 => {
                let subject = SUBJECTS[usize::from(op / 4) % SUBJECTS.len()];
                (
                    JsTarget::Api,
                    subject.to_string(),
                    !subject.contains("DIRECT"),
                )
            }
            2 => {
                let Some((&id, subjects)) = streams
                    .iter()
                    .nth(usize::from(op / 4) % streams.len().max(1))
                else {
                    continue;
                };
                let subject = subjects.first().cloned().unwrap_or_default();
                if subject.contains(['*', '>']) || subject.is_empty() {
                    continue;
                }
                (JsTarget::Stream(id), subject, false)
            }
            _ => {
                // Complete the oldest outstanding sync.
                if !syncs.is_empty() {
                    let (stream, tag, files, dirs): (StreamId, u64, Vec<String>, Vec<String>) =
                        syncs.remove(0);
                    let result = perform_sync(&mut disk, &files, &dirs);
                    js.handle_sync_done(stream, tag, result);
                }
                js.handle_timeout(now, wall);
                drain(&mut js, &mut streams, &mut syncs);
                continue;
            }
        };
        js.handle_inbound(
            now,
            wall,
            JsInbound {
                account: "A".into(),
                target,
                subject: Bytes::from(subject),
                reply: Bytes::from_static(b"_INBOX.fuzz"),
                headers: Bytes::new(),
                payload: Bytes::copy_from_slice(body),
                context: Bytes::new(),
            },
        );
        let replies = drain(&mut js, &mut streams, &mut syncs);
        if api {
            assert_eq!(replies.len(), 1, "one reply per API request");
            let value: serde_json::Value =
                serde_json::from_slice(&replies[0]).expect("API replies are JSON");
            assert!(value["type"].is_string(), "a reply names its type: {value}");
        }
    }
}

/// Carry out the machine's actions; returns the reply payloads.
fn drain(
    js: &mut JetStream<SharedDisk<MemDisk>>,
    streams: &mut BTreeMap<StreamId, Vec<String>>,
    syncs: &mut Vec<(StreamId, u64, Vec<String>, Vec<String>)>,
) -> Vec<Vec<u8>> {
    let mut replies = Vec::new();
    while let Some(action) = js.poll_action() {
        match action {
            // JSON replies; pull requests are answered with status headers.
            JsAction::Publish {
                subject,
                headers,
                payload,
                ..
            } if subject.as_ref() == b"_INBOX.fuzz" && headers.is_empty() => {
                replies.push(payload.to_vec())
            }
            JsAction::Publish { .. }
            | JsAction::Log { .. }
            | JsAction::Deliver { .. }
            | JsAction::WatchInterest { .. }
            | JsAction::WatchReplies { .. } => {}
            JsAction::Listen {
                target: JsTarget::Stream(id),
                subjects,
                ..
            } => {
                if subjects.is_empty() {
                    streams.remove(&id);
                } else {
                    streams.insert(id, subjects);
                }
            }
            JsAction::Listen { .. } => {}
            JsAction::Sync {
                stream,
                tag,
                files,
                dirs,
            } => syncs.push((stream, tag, files, dirs)),
        }
    }
    replies
}
