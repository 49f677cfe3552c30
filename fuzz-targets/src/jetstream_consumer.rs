//! The JetStream machine's consumers fed consumer API requests, pull
//! requests, acks, publishes, interest reports and time.
//!
//! Input: the first byte is control (bit 0: strict API mode, bit 1: a file
//! stream instead of a memory one); stream `S` on `s.>` exists before the
//! first record. Then records split at `0x00`. A record's first byte `op`
//! picks what it is (`op % 8`) and a choice within that (`op / 8`); the rest
//! is the body:
//!
//! | `op % 8` | record |
//! | --- | --- |
//! | 0 | a consumer API request on one of [`API_SUBJECTS`], body as JSON |
//! | 1 | a pull request (`MSG.NEXT`) for one of [`CONSUMERS`], body as is, reply on a fresh inbox |
//! | 2 | a publish to `s.<0..4>` |
//! | 3 | an ack (body) on the ack subject of a recent delivery, AckSync when `op / 8` is odd |
//! | 4 | an ack on a subject of the record's own (`<subject> <body>`) to a known consumer; on a `$JS.FC.` subject, a flow-control answer with the body as its header block |
//! | 5 | time passes: `(op / 8 + 1) * 100` ms, timers fire |
//! | 6 | the oldest outstanding sync completes |
//! | 7 | an interest report (`0`/`1`) for a known consumer |
//!
//! Checked: no panic; every consumer API request gets exactly one reply,
//! JSON with the response `type` (`CONSUMER.RESET`, answered by the
//! consumer itself, none when it does not exist); a pull request's inbox gets only
//! deliveries whose reply is an ack subject, and status messages
//! (`NATS/1.0 <code>`, code 100, 400, 404, 408, 409 or 503, no payload);
//! nothing arrives on an inbox after its terminal status (any but 100) or
//! after its whole batch was delivered; at the end every consumer's info is JSON
//! without error, with `num_ack_pending` ≤ `delivered.consumer_seq` and
//! `num_pending` ≤ the stream's message count. Work is bounded by the input.

use std::collections::BTreeMap;

use bytes::Bytes;
use rnats_core::jetstream::api::NextRequest;
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::consumer::ack::parse_ack_subject;
use rnats_core::jetstream::link::{ConsumerId, JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, MemDisk, SharedDisk};
use rnats_core::subject::subject_matches_pattern;
use rnats_core::time::{Instant, WallTime};
use serde_json::Value;

/// Consumer API subjects (JSON requests with one reply each).
pub const API_SUBJECTS: &[&str] = &[
    "$JS.API.CONSUMER.CREATE.S",
    "$JS.API.CONSUMER.CREATE.S.C",
    "$JS.API.CONSUMER.CREATE.S.F.s.1",
    "$JS.API.CONSUMER.DURABLE.CREATE.S.D",
    "$JS.API.CONSUMER.CREATE.S.P",
    "$JS.API.CONSUMER.INFO.S.C",
    "$JS.API.CONSUMER.INFO.S.D",
    "$JS.API.CONSUMER.NAMES.S",
    "$JS.API.CONSUMER.LIST.S",
    "$JS.API.CONSUMER.DELETE.S.C",
    "$JS.API.CONSUMER.DELETE.S.D",
    "$JS.API.CONSUMER.CREATE.T.C",
    "$JS.API.STREAM.PURGE.S",
    "$JS.API.STREAM.MSG.DELETE.S",
    "$JS.API.STREAM.INFO.S",
    "$JS.API.CONSUMER.INFO.S.F",
    "$JS.API.CONSUMER.RESET.S.C",
    "$JS.API.CONSUMER.RESET.S.D",
];

/// Consumers a pull request may name (`X` never exists).
pub const CONSUMERS: &[&str] = &["C", "D", "F", "P", "X"];

/// Records per input, so the work stays bounded.
const MAX_RECORDS: usize = 256;
/// Recent deliveries kept as ack targets.
const MAX_DELIVERIES: usize = 64;

/// What a pull request's inbox has received so far.
#[derive(Default)]
struct PullInbox {
    /// The batch asked for, when the body parsed with a positive one.
    batch: Option<u64>,
    delivered: u64,
    /// A status other than 100 arrived.
    ended: bool,
}

/// The harness's view of the machine.
struct Harness {
    js: JetStream<SharedDisk<MemDisk>>,
    disk: SharedDisk<MemDisk>,
    clock: u64,
    stream: Option<StreamId>,
    /// Each consumer's ack subjects.
    consumers: BTreeMap<ConsumerId, (StreamId, Vec<String>)>,
    syncs: Vec<(StreamId, u64, Vec<String>, Vec<String>)>,
    pulls: BTreeMap<Vec<u8>, PullInbox>,
    deliveries: Vec<Bytes>,
    /// Reply subjects the machine asked the server to watch, per consumer.
    watched: std::collections::BTreeSet<(ConsumerId, String, Bytes)>,
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, records)) = data.split_first() else {
        return;
    };
    let mut harness = Harness::open(control);
    for (op, body) in crate::op_records(records, MAX_RECORDS) {
        harness.record(op, body);
    }
    harness.check_infos();
}

impl Harness {
    fn open(control: u8) -> Harness {
        let mut accounts = BTreeMap::new();
        accounts.insert("A".to_string(), AccountLimits::default());
        let config = JetStreamConfig {
            strict: control & 1 == 1,
            ..JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
        };
        let disk = SharedDisk::new(MemDisk::new());
        let js = JetStream::open(
            "fuzz".into(),
            config,
            accounts,
            disk.clone(),
            Instant::ZERO,
            WallTime(1),
        );
        let mut harness = Harness {
            js,
            disk,
            clock: 1,
            stream: None,
            consumers: BTreeMap::new(),
            syncs: Vec::new(),
            pulls: BTreeMap::new(),
            deliveries: Vec::new(),
            watched: std::collections::BTreeSet::new(),
        };
        let storage = if control & 2 == 2 { "file" } else { "memory" };
        let config = format!(r#"{{"name":"S","subjects":["s.>"],"storage":"{storage}"}}"#);
        let replies = harness.api("$JS.API.STREAM.CREATE.S", config.as_bytes());
        assert!(replies[0]["error"].is_null(), "stream S: {}", replies[0]);
        assert!(harness.stream.is_some(), "stream S listens");
        harness
    }

    fn now(&self) -> (Instant, WallTime) {
        (Instant::from_nanos(self.clock), WallTime(self.clock))
    }

    fn record(&mut self, op: u8, body: &[u8]) {
        self.clock += 1_000_000;
        let choice = usize::from(op / 8);
        match op % 8 {
            0 => {
                let subject = API_SUBJECTS[choice % API_SUBJECTS.len()];
                self.api(subject, body);
            }
            1 => self.pull(CONSUMERS[choice % CONSUMERS.len()], body),
            2 => {
                if let Some(stream) = self.stream {
                    let subject = format!("s.{}", choice % 4);
                    self.send(JsTarget::Stream(stream), &subject, b"_INBOX.pub", body);
                }
            }
            3 => {
                if self.deliveries.is_empty() {
                    return;
                }
                let subject = self.deliveries[choice % self.deliveries.len()].clone();
                let reply: &[u8] = if choice % 2 == 1 { b"_INBOX.ack" } else { b"" };
                self.ack(&subject, reply, body);
            }
            4 => {
                let (subject, ack_body) = match body.iter().position(|&b| b == b' ') {
                    Some(at) => (&body[..at], &body[at + 1..]),
                    None => (body, &b""[..]),
                };
                let Some((&id, (stream, _))) = self
                    .consumers
                    .iter()
                    .nth(choice % self.consumers.len().max(1))
                else {
                    return;
                };
                let subject = String::from_utf8_lossy(subject).into_owned();
                let target = JsTarget::Consumer(*stream, id);
                if subject.starts_with("$JS.FC.") {
                    // What a sourcing stream answers: the position in headers.
                    self.send_headers(target, &subject, ack_body);
                } else {
                    self.send(target, &subject, b"_INBOX.ack", ack_body);
                }
            }
            5 => {
                self.clock += (choice as u64 + 1) * 100_000_000;
                let (now, wall) = self.now();
                self.js.handle_timeout(now, wall);
                self.drain();
            }
            6 => {
                if !self.syncs.is_empty() {
                    let (stream, tag, files, dirs) = self.syncs.remove(0);
                    let result = perform_sync(&mut self.disk, &files, &dirs);
                    self.js.handle_sync_done(stream, tag, result);
                }
                let (now, wall) = self.now();
                self.js.handle_timeout(now, wall);
                self.drain();
            }
            _ => {
                let Some((&id, (stream, _))) = self
                    .consumers
                    .iter()
                    .nth(choice % self.consumers.len().max(1))
                else {
                    return;
                };
                let payload: &[u8] = if choice % 2 == 1 { b"1" } else { b"0" };
                let target =
                    JsTarget::Interest(rnats_core::jetstream::link::Watcher::Consumer(*stream, id));
                self.send(target, "", b"", payload);
            }
        }
    }

    /// An API request; returns its JSON replies (checked: exactly one).
    fn api(&mut self, subject: &str, body: &[u8]) -> Vec<Value> {
        let replies = self.send(JsTarget::Api, subject, b"_INBOX.fuzz", body);
        if subject.contains(".RESET.") && replies.is_empty() {
            let name = subject.rsplit('.').next().unwrap_or_default();
            let info = self.send(
                JsTarget::Api,
                &format!("$JS.API.CONSUMER.INFO.S.{name}"),
                b"_INBOX.fuzz",
                b"",
            );
            assert!(
                info.first()
                    .is_some_and(|reply| reply.windows(b"10014".len()).any(|w| w == b"10014")),
                "a reset of an existing consumer is answered"
            );
            return Vec::new();
        }
        assert_eq!(replies.len(), 1, "one reply to {subject}");
        let value: Value = serde_json::from_slice(&replies[0]).expect("API replies are JSON");
        assert!(value["type"].is_string(), "a reply names its type: {value}");
        vec![value]
    }

    fn pull(&mut self, consumer: &str, body: &[u8]) {
        let inbox = format!("_INBOX.pull.{}", self.pulls.len());
        let batch = NextRequest::parse(body)
            .ok()
            .and_then(|request| u64::try_from(request.batch).ok())
            .filter(|&batch| batch > 0);
        self.pulls.insert(
            inbox.clone().into_bytes(),
            PullInbox {
                batch,
                ..PullInbox::default()
            },
        );
        let subject = format!("$JS.API.CONSUMER.MSG.NEXT.S.{consumer}");
        let replies = self.send(JsTarget::Api, &subject, inbox.as_bytes(), body);
        assert!(replies.is_empty(), "a pull request has no JSON reply");
    }

    /// An ack on `subject`, routed to the consumer whose ack subjects match.
    fn ack(&mut self, subject: &[u8], reply: &[u8], body: &[u8]) {
        assert!(
            parse_ack_subject(subject).is_some(),
            "deliveries carry ack subjects"
        );
        let target = self.consumers.iter().find(|(_, (_, subjects))| {
            subjects
                .iter()
                .any(|pattern| subject_matches_pattern(pattern.as_bytes(), subject))
        });
        // A deleted consumer's acks reach nobody.
        let Some((&id, (stream, _))) = target else {
            return;
        };
        let target = JsTarget::Consumer(*stream, id);
        let subject = String::from_utf8_lossy(subject).into_owned();
        self.send(target, &subject, reply, body);
    }

    /// Hands one message to the machine; returns the JSON replies on
    /// `_INBOX.fuzz` it caused.
    fn send(&mut self, target: JsTarget, subject: &str, reply: &[u8], body: &[u8]) -> Vec<Vec<u8>> {
        self.inbound(target, subject, reply, b"", body)
    }

    /// A message with a header block and no payload or reply.
    fn send_headers(&mut self, target: JsTarget, subject: &str, headers: &[u8]) -> Vec<Vec<u8>> {
        self.inbound(target, subject, b"", headers, b"")
    }

    fn inbound(
        &mut self,
        target: JsTarget,
        subject: &str,
        reply: &[u8],
        headers: &[u8],
        body: &[u8],
    ) -> Vec<Vec<u8>> {
        let (now, wall) = self.now();
        self.js.handle_inbound(
            now,
            wall,
            JsInbound {
                account: "A".into(),
                target,
                subject: Bytes::from(subject.to_string()),
                reply: Bytes::copy_from_slice(reply),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(body),
                context: Bytes::new(),
            },
        );
        self.drain()
    }

    /// Carries out the machine's actions, checking what reaches pull
    /// inboxes; returns the JSON API replies.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut replies = Vec::new();
        while let Some(action) = self.js.poll_action() {
            match action {
                JsAction::Publish {
                    subject,
                    headers,
                    payload,
                    ..
                } => {
                    if subject.as_ref() == b"_INBOX.fuzz" {
                        assert!(headers.is_empty(), "API replies carry no headers");
                        replies.push(payload.to_vec());
                    } else if let Some(inbox) = self.pulls.get_mut(subject.as_ref()) {
                        check_status(inbox, &headers, &payload);
                    }
                }
                JsAction::Deliver { to, reply, .. } => {
                    if let Some(inbox) = self.pulls.get_mut(to.as_ref()) {
                        assert!(!inbox.ended, "a delivery after the request ended");
                        inbox.delivered += 1;
                        if inbox.batch == Some(inbox.delivered) {
                            inbox.ended = true;
                        }
                    }
                    assert!(
                        parse_ack_subject(&reply).is_some() || reply.is_empty(),
                        "a delivery's reply is an ack subject: {reply:?}"
                    );
                    if !reply.is_empty() {
                        if self.deliveries.len() == MAX_DELIVERIES {
                            self.deliveries.remove(0);
                        }
                        self.deliveries.push(reply);
                    }
                }
                JsAction::Listen {
                    target: JsTarget::Stream(id),
                    subjects,
                    ..
                } => {
                    self.stream = (!subjects.is_empty()).then_some(id);
                }
                JsAction::Listen {
                    target: JsTarget::Consumer(stream, id),
                    subjects,
                    ..
                } => {
                    if subjects.is_empty() {
                        self.consumers.remove(&id);
                    } else {
                        self.consumers.insert(id, (stream, subjects));
                    }
                }
                JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } => self.syncs.push((stream, tag, files, dirs)),
                JsAction::WatchReplies {
                    consumer, changes, ..
                } => {
                    // Watched while waited on, each exactly once.
                    for change in changes {
                        let key = (consumer, change.account, change.reply);
                        if change.watch {
                            assert!(self.watched.insert(key), "a reply watched twice");
                        } else {
                            assert!(self.watched.remove(&key), "an unwatched reply dropped");
                        }
                    }
                }
                JsAction::Listen { .. } | JsAction::Log { .. } | JsAction::WatchInterest { .. } => {
                }
            }
        }
        replies
    }

    /// Every consumer's info at the end.
    fn check_infos(&mut self) {
        let names = self.api("$JS.API.CONSUMER.NAMES.S", b"");
        let Some(names) = names[0]["consumers"].as_array().cloned() else {
            return;
        };
        let stream = self.api("$JS.API.STREAM.INFO.S", b"");
        let messages = stream[0]["state"]["messages"].as_u64().unwrap_or(0);
        for name in names {
            let name = name.as_str().expect("names are strings");
            let info = self.api(&format!("$JS.API.CONSUMER.INFO.S.{name}"), b"");
            let info = &info[0];
            assert!(info["error"].is_null(), "info of a listed consumer: {info}");
            let delivered = info["delivered"]["consumer_seq"].as_u64().unwrap_or(0);
            let ack_pending = info["num_ack_pending"].as_u64().unwrap_or(0);
            let pending = info["num_pending"].as_u64().unwrap_or(0);
            assert!(
                ack_pending <= delivered,
                "ack pending beyond delivered: {info}"
            );
            assert!(pending <= messages, "pending beyond the stream: {info}");
        }
    }
}

/// A status message on a pull inbox.
fn check_status(inbox: &mut PullInbox, headers: &[u8], payload: &[u8]) {
    assert!(payload.is_empty(), "a status message has no payload");
    let line = headers.split(|&b| b == b'\r').next().unwrap_or_default();
    let code = line
        .strip_prefix(b"NATS/1.0 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse::<u16>().ok());
    let Some(code) = code else {
        panic!(
            "not a status message: {:?}",
            String::from_utf8_lossy(headers)
        );
    };
    assert!(
        [100, 400, 404, 408, 409, 503].contains(&code),
        "status {code} on a pull inbox"
    );
    assert!(!inbox.ended, "status {code} after the request ended");
    if code != 100 {
        inbox.ended = true;
    }
}
