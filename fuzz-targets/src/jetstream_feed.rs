//! The JetStream machine's external mirror and source fed what a consumer
//! on the origin (or anyone publishing on their subjects) may send.
//!
//! Input: the first byte is control (bit 0: a file mirror instead of a
//! memory one). Account B holds the mirror `M` and the stream `S` with one
//! source, both of `O` through the API prefix `JS.A.API`. Then records
//! split at `0x00`; a record's first byte `op` picks what it is (`op % 4`)
//! and for whom (`op / 4` even: the mirror, odd: the source); the rest is
//! the body:
//!
//! | `op % 4` | record |
//! | --- | --- |
//! | 0 | an answer to the feed's last create request: body as JSON (empty: a valid answer, consumer `<name>-c`) |
//! | 1 | a delivery on the feed's subject: body `<reply> <payload>`, the reply as is |
//! | 2 | a delivery with a well-formed ack reply naming the answered consumer: body bytes pick delivery count, sequence, delivery sequence and pending + 1 |
//! | 3 | time passes: `(op / 8 + 1) * 500` ms, timers fire; or (`op / 4` odd) a heartbeat or flow-control status with the body as header value |
//!
//! Checked: no panic; every create request is published in B on
//! `JS.A.API.CONSUMER.CREATE.O[...]` with a reply, its body JSON naming a
//! direct, sourcing push consumer, after the feed listens on its reply
//! inbox and deliver subject; the mirror's last sequence never goes back;
//! neither stores more messages than were delivered to it. Work is
//! bounded by the input.

use std::collections::BTreeMap;

use bytes::Bytes;
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, MemDisk, SharedDisk};
use rnats_core::time::{Instant, WallTime};
use serde_json::Value;

/// Records per input, so the work stays bounded.
const MAX_RECORDS: usize = 256;

/// One feed as the harness sees it: its target and last request.
#[derive(Default, Clone)]
struct FeedView {
    target: Option<JsTarget>,
    reply: String,
    deliver: String,
    consumer: String,
}

struct Harness {
    js: JetStream<SharedDisk<MemDisk>>,
    disk: SharedDisk<MemDisk>,
    clock: u64,
    /// Mirror, then source.
    feeds: [FeedView; 2],
    /// Deliveries handed to the mirror, to the source.
    delivered: [u64; 2],
    mirror_last: u64,
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, records)) = data.split_first() else {
        return;
    };
    let mut harness = Harness::open(control);
    for (op, body) in crate::op_records(records, MAX_RECORDS) {
        harness.record(op, body);
        harness.check();
    }
}

impl Harness {
    fn open(control: u8) -> Harness {
        let accounts: BTreeMap<String, AccountLimits> = ["A", "B"]
            .into_iter()
            .map(|a| (a.to_string(), AccountLimits::default()))
            .collect();
        let disk = SharedDisk::new(MemDisk::new());
        let js = JetStream::open(
            "fuzz".into(),
            JetStreamConfig::with_bounds("", 1 << 30, 1 << 30),
            accounts,
            disk.clone(),
            Instant::ZERO,
            WallTime(1),
        );
        let mut harness = Harness {
            js,
            disk,
            clock: 1,
            feeds: [FeedView::default(), FeedView::default()],
            delivered: [0, 0],
            mirror_last: 0,
        };
        let storage = if control & 1 == 1 { "file" } else { "memory" };
        let external = r#"{"api":"JS.A.API","deliver":"deliver.b"}"#;
        for (name, config) in [
            (
                "M",
                format!(
                    r#"{{"name":"M","storage":"{storage}","mirror":{{"name":"O","external":{external}}}}}"#
                ),
            ),
            (
                "S",
                format!(
                    r#"{{"name":"S","storage":"memory","sources":[{{"name":"O","external":{external}}}]}}"#
                ),
            ),
        ] {
            let subject = format!("$JS.API.STREAM.CREATE.{name}");
            harness.send(
                JsTarget::Api,
                &subject,
                b"_INBOX.fuzz",
                b"",
                config.as_bytes(),
            );
        }
        harness.tick(1_000);
        harness
    }

    fn record(&mut self, op: u8, body: &[u8]) {
        self.clock += 1_000_000;
        let which = usize::from(op / 4) % 2;
        let view = self.feeds[which].clone();
        let Some(target) = view.target else {
            self.tick(500);
            return;
        };
        match op % 4 {
            0 if body.is_empty() => {
                let answer = format!(
                    r#"{{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"O","name":"{}","created":"2026-01-01T00:00:00Z","config":{{"deliver_subject":"{}","ack_policy":"none"}},"delivered":{{"consumer_seq":0,"stream_seq":0}},"ack_floor":{{"consumer_seq":0,"stream_seq":0}},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":0,"ts":"2026-01-01T00:00:00Z"}}"#,
                    view.consumer, view.deliver
                );
                self.send(target, &view.reply, b"", b"", answer.as_bytes());
            }
            0 => self.send(target, &view.reply, b"", b"", body),
            1 => {
                let (reply, payload) = match body.iter().position(|&b| b == b' ') {
                    Some(at) => (&body[..at], &body[at + 1..]),
                    None => (body, &b""[..]),
                };
                self.delivered[which] += 1;
                self.send(target, "o.x", reply, b"", payload);
            }
            2 => {
                let byte = |i: usize| u64::from(body.get(i).copied().unwrap_or(1));
                // No zero bytes in a record: pending is the byte less one.
                let (count, seq, dseq) = (byte(0) % 3, byte(1), byte(2));
                let pending = byte(3).saturating_sub(1);
                let reply = format!(
                    "$JS.ACK.O.{}.{count}.{seq}.{dseq}.1000.{pending}",
                    view.consumer
                );
                self.delivered[which] += 1;
                self.send(target, "o.x", reply.as_bytes(), b"", body);
            }
            _ if which == 0 => self.tick((u64::from(op / 8) + 1) * 500),
            _ => {
                let value = String::from_utf8_lossy(body).replace(['\r', '\n'], "");
                let headers = format!(
                    "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {value}\r\nNats-Consumer-Stalled: {value}\r\n\r\n"
                );
                let reply: &[u8] = if body.first().is_some_and(|b| b % 2 == 1) {
                    b"$JS.FC.O.x.y"
                } else {
                    b""
                };
                let deliver = view.deliver.clone();
                self.send(target, &deliver, reply, headers.as_bytes(), b"");
            }
        }
    }

    fn tick(&mut self, ms: u64) {
        self.clock += ms * 1_000_000;
        let (now, wall) = (Instant::from_nanos(self.clock), WallTime(self.clock));
        self.js.handle_timeout(now, wall);
        self.drain();
    }

    fn send(&mut self, target: JsTarget, subject: &str, reply: &[u8], headers: &[u8], body: &[u8]) {
        let (now, wall) = (Instant::from_nanos(self.clock), WallTime(self.clock));
        self.js.handle_inbound(
            now,
            wall,
            JsInbound {
                account: "B".into(),
                target,
                subject: Bytes::from(subject.to_string()),
                reply: Bytes::copy_from_slice(reply),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(body),
                context: Bytes::new(),
            },
        );
        self.drain();
    }

    /// Carries out the machine's actions, checking every create request.
    fn drain(&mut self) {
        let mut pending_listen: Option<(JsTarget, Vec<String>)> = None;
        while let Some(action) = self.js.poll_action() {
            match action {
                JsAction::Listen {
                    target: target @ JsTarget::Feed(..),
                    subjects,
                    ..
                } => pending_listen = Some((target, subjects)),
                JsAction::Publish {
                    account,
                    subject,
                    reply,
                    payload,
                    ..
                } if subject.starts_with(b"JS.A.API.") => {
                    assert_eq!(&*account, "B", "requests leave in the stream's account");
                    assert!(subject.starts_with(b"JS.A.API.CONSUMER.CREATE.O"));
                    assert!(!reply.is_empty(), "a create request has a reply");
                    let body: Value = serde_json::from_slice(&payload).expect("JSON request");
                    let config = &body["config"];
                    assert_eq!(config["direct"], true);
                    assert_eq!(config["sourcing"], true);
                    assert_eq!(config["flow_control"], true);
                    let deliver = config["deliver_subject"]
                        .as_str()
                        .expect("push")
                        .to_string();
                    let which = usize::from(deliver.starts_with("deliver.b.S."));
                    let (target, subjects) = pending_listen.take().expect("listens first");
                    assert_eq!(subjects.len(), 2, "reply inbox and deliver subject");
                    let name = config["name"].as_str().unwrap_or_default();
                    self.feeds[which] = FeedView {
                        target: Some(target),
                        reply: String::from_utf8_lossy(&reply).into_owned(),
                        deliver,
                        consumer: format!("{name}-c"),
                    };
                }
                JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } => {
                    let result = perform_sync(&mut self.disk, &files, &dirs);
                    self.js.handle_sync_done(stream, tag, result);
                }
                _ => {}
            }
        }
    }

    fn check(&mut self) {
        for entry in self.js.streams() {
            let state = entry.stream.state();
            let which = usize::from(entry.meta.config.name != "M");
            assert!(
                state.msgs <= self.delivered[which],
                "no more messages than deliveries"
            );
            if which == 0 {
                assert!(
                    state.last_seq >= self.mirror_last,
                    "a mirror never goes back"
                );
                self.mirror_last = state.last_seq;
            }
        }
    }
}
