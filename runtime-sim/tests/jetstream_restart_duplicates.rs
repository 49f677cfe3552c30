//! A publisher that retries a msg id after its server restarted gets its
//! duplicate ack. (Found by the `jetstream-restarts` scenario, e.g. seed 42:
//! a publish stored just before a kill was retried after the restart and
//! never answered, since nothing was published after it.)
//!
//! The JetStream machine is driven directly over a simulated disk: create a
//! stream, publish with `Nats-Msg-Id`, restart (process kill), publish the
//! same id again, and carry out every sync the machine asks for. The retry
//! must be acked as a duplicate of the original sequence.

use std::collections::BTreeMap;

use bytes::Bytes;
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::perform_sync;
use rnats_core::time::{Instant, WallTime};
use rnats_runtime_sim::disk::{SharedSimDisk, SimDisk, SimDiskFaults};

fn config() -> JetStreamConfig {
    JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
}

fn open(disk: &SharedSimDisk, at: u64) -> JetStream<SharedSimDisk> {
    let mut accounts = BTreeMap::new();
    accounts.insert("$G".to_string(), AccountLimits::default());
    let (now, wall) = (Instant::from_nanos(at), WallTime(1_000_000_000 + at));
    JetStream::open("n0".into(), config(), accounts, disk.clone(), now, wall)
}

fn send(
    js: &mut JetStream<SharedSimDisk>,
    at: u64,
    target: JsTarget,
    subject: &str,
    reply: &str,
    headers: &[u8],
    payload: &[u8],
) {
    let msg = JsInbound {
        account: "$G".to_string(),
        target,
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        reply: Bytes::copy_from_slice(reply.as_bytes()),
        headers: Bytes::copy_from_slice(headers),
        payload: Bytes::copy_from_slice(payload),
        context: Bytes::new(),
    };
    js.handle_inbound(Instant::from_nanos(at), WallTime(1_000_000_000 + at), msg);
}

/// Carry out everything the machine asks, syncs included (when `sync`),
/// until it asks nothing more. Returns the replies by subject and the
/// stream the last `Listen` named.
fn settle(
    js: &mut JetStream<SharedSimDisk>,
    disk: &SharedSimDisk,
    sync: bool,
) -> (Vec<(String, String)>, Option<StreamId>) {
    let mut replies = Vec::new();
    let mut stream = None;
    loop {
        let mut syncs = Vec::new();
        while let Some(action) = js.poll_action() {
            match action {
                JsAction::Publish {
                    subject, payload, ..
                } => replies.push((
                    String::from_utf8_lossy(&subject).into_owned(),
                    String::from_utf8_lossy(&payload).into_owned(),
                )),
                JsAction::Listen {
                    target: JsTarget::Stream(id),
                    ..
                } => stream = Some(id),
                JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } => syncs.push((stream, tag, files, dirs)),
                _ => {}
            }
        }
        if syncs.is_empty() || !sync {
            return (replies, stream);
        }
        for (stream, tag, files, dirs) in syncs {
            let result = perform_sync(&mut disk.clone(), &files, &dirs);
            js.handle_sync_done(stream, tag, result);
        }
    }
}

/// Exactly one reply, on `ack2`: a duplicate of sequence 1.
fn assert_duplicate_of_one(replies: &[(String, String)]) {
    assert_eq!(replies.len(), 1, "{replies:?}");
    let ack: serde_json::Value = serde_json::from_str(&replies[0].1).expect("JSON");
    assert_eq!(replies[0].0, "ack2");
    assert_eq!(ack["seq"], 1, "{ack}");
    assert_eq!(ack["duplicate"], true, "{ack}");
}

const ID: &[u8] = b"NATS/1.0\r\nNats-Msg-Id: one\r\n\r\n";

fn retry_after_kill(synced_before_kill: bool) -> Vec<(String, String)> {
    let disk = SharedSimDisk::new(SimDisk::from_seed(1, SimDiskFaults::default()));
    let mut js = open(&disk, 0);
    let create = br#"{"name":"S","subjects":["s.>"],"storage":"file","num_replicas":1}"#;
    send(
        &mut js,
        1,
        JsTarget::Api,
        "$JS.API.STREAM.CREATE.S",
        "create",
        b"",
        create,
    );
    let (_, stream) = settle(&mut js, &disk, true);
    let stream = stream.expect("the stream listens");
    send(
        &mut js,
        2,
        JsTarget::Stream(stream),
        "s.a",
        "ack1",
        ID,
        b"payload",
    );
    let (first, _) = settle(&mut js, &disk, synced_before_kill);
    assert_eq!(first.len(), usize::from(synced_before_kill), "{first:?}");
    drop(js);
    disk.with(|d| d.process_kill());
    let mut js = open(&disk, 3);
    let (_, stream) = settle(&mut js, &disk, true);
    let stream = stream.expect("the stream is recovered");
    send(
        &mut js,
        4,
        JsTarget::Stream(stream),
        "s.a",
        "ack2",
        ID,
        b"payload",
    );
    settle(&mut js, &disk, true).0
}

#[test]
fn a_retry_after_a_kill_is_acked_as_a_duplicate_when_the_original_was_not_synced() {
    let replies = retry_after_kill(false);
    assert_duplicate_of_one(&replies);
}

#[test]
fn a_retry_after_a_kill_is_acked_as_a_duplicate_when_the_original_was_acked() {
    let replies = retry_after_kill(true);
    assert_duplicate_of_one(&replies);
}
