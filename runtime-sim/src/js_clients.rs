//! JetStream publishers: simulated clients that own one stream each and
//! check, from what comes back on the wire, what JetStream promised.
//!
//! A `js_publisher` speaks the plain client protocol (PUB/HPUB with reply
//! subjects into its own inbox) and keeps its own record of the stream
//! ([`JsPublisher`]): every message it sent, every acknowledgement, every
//! purge. On each connection it first creates its stream (file storage,
//! discard old, `max_msgs` or `max_msgs_per_subject` drawn from its
//! stream) and publishes only once the create was answered. Publishes
//! carry `Nats-Msg-Id` (then they are retried with the same id and payload
//! after a timeout or a reconnect) or `Nats-Expected-Last-Sequence` (its
//! best guess of the last sequence) or neither. Now and then it purges,
//! asks for STREAM.INFO, or sends an acknowledged message with a msg id
//! again (owed a duplicate ack with its sequence); after its node restarted it reads acknowledged
//! messages back with MSG.GET. The checks themselves are in
//! `invariants::jetstream`.
//!
//! Invariants:
//! - every draw comes from the client's own stream;
//! - at most `WAITING_MAX` requests wait for a reply at once;
//! - a message's payload names the client and the message (`j<client>.<n>;`),
//!   so whatever MSG.GET returns can be traced to what was sent.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use rnats_core::protocol;
use rnats_core::runtime::ConnId;
use rnats_core::time::Instant;
use serde_json::Value;

use crate::clients::SimClient;
use crate::invariants::jetstream as checks;
use crate::node::NodeId;
use crate::rng::Rng;
use crate::scenario::ClientSpec;
use crate::world::{World, SECOND};

/// How long a publish waits for its acknowledgement before it is retried
/// (with a msg id) or given up.
const ACK_TIMEOUT: u64 = 2 * SECOND;
/// Requests waiting for a reply at once, at most.
const WAITING_MAX: usize = 64;
/// Subjects per stream: `<prefix>.0` .. `<prefix>.3`.
const SUBJECTS: u64 = 4;
/// Messages read back after each restart of the client's node.
const READ_BACK: usize = 8;

/// One message the client published (perhaps several times, same id).
#[derive(Debug, Clone)]
pub(crate) struct SentMsg {
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
    pub(crate) msg_id: Option<String>,
}

/// What a reply token is waiting for.
#[derive(Debug, Clone)]
pub(crate) enum Waiting {
    Create,
    Publish {
        msg: usize,
        expected_last: Option<u64>,
        sent_at: Instant,
        conn: ConnId,
    },
    Purge {
        purge: usize,
    },
    Info,
    Get {
        seq: u64,
    },
}

/// A purge the client asked for: it may have removed every message sent
/// before its reply came (`done_at`: how many messages had been sent then).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PurgeRecord {
    pub(crate) done_at: Option<usize>,
}

/// The limits the client's stream was created with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsLimits {
    pub(crate) max_msgs: Option<u64>,
    pub(crate) per_subject: Option<u64>,
}

/// One acknowledgement, as the client recorded it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckRecord {
    pub(crate) msg: usize,
    /// The node's restart count when it came.
    pub(crate) restarts: u64,
}

/// A JetStream publisher's record of its stream.
pub(crate) struct JsPublisher {
    pub(crate) index: usize,
    pub(crate) stream: String,
    pub(crate) prefix: String,
    pub(crate) limits: JsLimits,
    pub(crate) msg_id_ratio: f64,
    pub(crate) expect_ratio: f64,
    /// The create was answered on the current connection.
    pub(crate) ready: bool,
    /// The inbox prefix of the current connection.
    pub(crate) inbox: String,
    next_token: u64,
    pub(crate) waiting: BTreeMap<u64, Waiting>,
    pub(crate) sent: Vec<SentMsg>,
    /// Acknowledged sequences (not duplicates), with their message.
    pub(crate) acked: BTreeMap<u64, AckRecord>,
    /// The sequence each message was last acknowledged with.
    pub(crate) seq_of: BTreeMap<usize, u64>,
    /// The last non-duplicate sequence acknowledged on this connection.
    pub(crate) last_on_conn: Option<u64>,
    /// The client's guess of the stream's last sequence.
    known_last: Option<u64>,
    pub(crate) purges: Vec<PurgeRecord>,
    /// Node restarts already followed by a read-back.
    read_back_after: u64,
    read_back: VecDeque<u64>,
    /// Messages with a msg id whose acknowledgement is owed: retried on reconnect.
    retry: VecDeque<usize>,
    /// What happened, for the run summary (`Outcome::jetstream`).
    pub(crate) counts: BTreeMap<&'static str, u64>,
}

impl JsPublisher {
    pub(crate) fn new(index: usize, spec: &ClientSpec, rng: &mut Rng) -> JsPublisher {
        // Each publisher's stream has subjects of its own under the spec's prefix.
        let prefix = format!("{}.c{index}", spec.subjects[0].trim_end_matches(".>"));
        let limits = match rng.below(3) {
            0 => JsLimits {
                max_msgs: Some(rng.range(20, 200)),
                per_subject: None,
            },
            1 => JsLimits {
                max_msgs: None,
                per_subject: Some(rng.range(1, 6)),
            },
            _ => JsLimits {
                max_msgs: Some(rng.range(20, 200)),
                per_subject: Some(rng.range(1, 6)),
            },
        };
        JsPublisher {
            index,
            stream: format!("S{index}"),
            prefix,
            limits,
            msg_id_ratio: spec.reply_ratio,
            expect_ratio: spec.headers_ratio,
            ready: false,
            inbox: String::new(),
            next_token: 0,
            waiting: BTreeMap::new(),
            sent: Vec::new(),
            acked: BTreeMap::new(),
            seq_of: BTreeMap::new(),
            last_on_conn: None,
            known_last: None,
            purges: Vec::new(),
            read_back_after: 0,
            read_back: VecDeque::new(),
            retry: VecDeque::new(),
            counts: BTreeMap::new(),
        }
    }

    pub(crate) fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn token(&mut self, waiting: Waiting) -> String {
        self.next_token += 1;
        let previous = self.waiting.insert(self.next_token, waiting);
        assert!(previous.is_none(), "reply tokens are never reused");
        format!("{}.{}", self.inbox, self.next_token)
    }

    fn create_body(&self) -> String {
        let limit = |value: Option<u64>| value.map_or(-1, |v| v as i64);
        format!(
            "{{\"name\":\"{}\",\"subjects\":[\"{}.>\"],\"storage\":\"file\",\"retention\":\"limits\",\"discard\":\"old\",\"max_msgs\":{},\"max_msgs_per_subject\":{},\"num_replicas\":1}}",
            self.stream,
            self.prefix,
            limit(self.limits.max_msgs),
            limit(self.limits.per_subject)
        )
    }

    /// A new connection: its inbox, and the create request first of all.
    /// Publishes still waiting on the old connection are retried (with a
    /// msg id) or given up (their fate is unknown).
    pub(crate) fn on_connect(&mut self, connects: u64) -> Vec<u8> {
        self.inbox = format!("_INBOX.js{}.{connects}", self.index);
        self.ready = false;
        self.last_on_conn = None;
        for waiting in std::mem::take(&mut self.waiting).into_values() {
            if let Waiting::Publish { msg, .. } = waiting {
                if self.sent[msg].msg_id.is_some() {
                    self.retry.push_back(msg);
                }
                self.known_last = None;
            }
        }
        let mut frame = BytesMut::new();
        protocol::write_sub(
            &mut frame,
            format!("{}.*", self.inbox).as_bytes(),
            None,
            b"1",
        );
        let reply = self.token(Waiting::Create);
        let subject = format!("$JS.API.STREAM.CREATE.{}", self.stream);
        let body = self.create_body();
        protocol::write_pub(
            &mut frame,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            body.as_bytes(),
        );
        frame.to_vec()
    }

    /// One unit of work: a retry, a read-back, a purge, an info or a publish.
    pub(crate) fn work(
        &mut self,
        rng: &mut Rng,
        now: Instant,
        conn: ConnId,
        node_restarts: u64,
    ) -> Vec<u8> {
        let mut out = BytesMut::new();
        if !self.ready || self.waiting.len() >= WAITING_MAX {
            return out.to_vec();
        }
        self.expire(now);
        if self.read_back_after < node_restarts {
            self.read_back_after = node_restarts;
            self.plan_read_back(rng);
        }
        if let Some(msg) = self.retry.pop_front() {
            self.count("retries");
            self.write_publish(&mut out, msg, None, now, conn);
            return out.to_vec();
        }
        if let Some(seq) = self.read_back.pop_front() {
            self.count("msg-gets");
            let reply = self.token(Waiting::Get { seq });
            let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
            let body = format!("{{\"seq\":{seq}}}");
            protocol::write_pub(
                &mut out,
                subject.as_bytes(),
                Some(reply.as_bytes()),
                body.as_bytes(),
            );
            return out.to_vec();
        }
        let roll = rng.below(1000);
        if roll < 5 {
            self.count("purges");
            let purge = self.purges.len();
            self.purges.push(PurgeRecord { done_at: None });
            let reply = self.token(Waiting::Purge { purge });
            let subject = format!("$JS.API.STREAM.PURGE.{}", self.stream);
            protocol::write_pub(&mut out, subject.as_bytes(), Some(reply.as_bytes()), b"");
            return out.to_vec();
        }
        if roll < 40 {
            self.count("infos");
            let reply = self.token(Waiting::Info);
            let subject = format!("$JS.API.STREAM.INFO.{}", self.stream);
            protocol::write_pub(&mut out, subject.as_bytes(), Some(reply.as_bytes()), b"");
            return out.to_vec();
        }
        if roll < 60 {
            // Send an acknowledged message with a msg id again: it must be
            // acked as a duplicate of its sequence (the window is 2 minutes,
            // longer than any run).
            let candidates: Vec<usize> = self
                .seq_of
                .keys()
                .rev()
                .filter(|msg| self.sent[**msg].msg_id.is_some())
                .take(32)
                .copied()
                .collect();
            if !candidates.is_empty() {
                self.count("resends");
                let msg = *rng.pick(&candidates);
                self.write_publish(&mut out, msg, None, now, conn);
                return out.to_vec();
            }
        }
        let n = self.sent.len();
        let subject = format!("{}.{}", self.prefix, rng.below(SUBJECTS));
        let mut payload = format!("j{}.{n};", self.index).into_bytes();
        let filler = rng.below(48) as usize;
        payload.extend((0..filler).map(|i| b'a' + ((i + n) % 26) as u8));
        let msg_id = rng
            .chance(self.msg_id_ratio)
            .then(|| format!("c{}-{n}", self.index));
        let expected = if rng.chance(self.expect_ratio) {
            self.known_last.or(Some(0))
        } else {
            None
        };
        self.count("published");
        self.sent.push(SentMsg {
            subject,
            payload: Bytes::from(payload),
            msg_id,
        });
        self.write_publish(&mut out, n, expected, now, conn);
        out.to_vec()
    }

    fn write_publish(
        &mut self,
        out: &mut BytesMut,
        msg: usize,
        expected_last: Option<u64>,
        now: Instant,
        conn: ConnId,
    ) {
        let reply = self.token(Waiting::Publish {
            msg,
            expected_last,
            sent_at: now,
            conn,
        });
        let sent = &self.sent[msg];
        let mut headers = String::new();
        if let Some(id) = &sent.msg_id {
            headers.push_str(&format!("Nats-Msg-Id: {id}\r\n"));
        }
        if let Some(expected) = expected_last {
            headers.push_str(&format!("Nats-Expected-Last-Sequence: {expected}\r\n"));
        }
        if headers.is_empty() {
            protocol::write_pub(
                out,
                sent.subject.as_bytes(),
                Some(reply.as_bytes()),
                &sent.payload,
            );
        } else {
            let block = format!("NATS/1.0\r\n{headers}\r\n");
            protocol::write_hpub(
                out,
                sent.subject.as_bytes(),
                Some(reply.as_bytes()),
                block.as_bytes(),
                &sent.payload,
            );
        }
    }

    /// Publishes that waited too long: retried with their id, or given up.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| {
                matches!(w, Waiting::Publish { sent_at, .. } if now.as_nanos() >= sent_at.as_nanos() + ACK_TIMEOUT)
            })
            .map(|(token, _)| *token)
            .collect();
        for token in late {
            if let Some(Waiting::Publish { msg, .. }) = self.waiting.remove(&token) {
                self.known_last = None;
                if self.sent[msg].msg_id.is_some() {
                    self.retry.push_back(msg);
                }
            }
        }
    }

    /// After a restart: the last few acknowledged messages and a few drawn at random.
    fn plan_read_back(&mut self, rng: &mut Rng) {
        let seqs: Vec<u64> = self.acked.keys().copied().collect();
        if seqs.is_empty() {
            return;
        }
        for seq in seqs.iter().rev().take(READ_BACK / 2) {
            self.read_back.push_back(*seq);
        }
        for _ in 0..READ_BACK / 2 {
            self.read_back.push_back(*rng.pick(&seqs));
        }
    }

    /// A reply arrived on `token`; the checks run on it. `restarts`: the
    /// node's restart count now.
    pub(crate) fn reply(
        &mut self,
        token: u64,
        payload: &[u8],
        restarts: u64,
    ) -> Result<(), String> {
        let Some(waiting) = self.waiting.remove(&token) else {
            // A second answer to one request, or an answer after its timeout.
            return Ok(());
        };
        let value: Value = serde_json::from_slice(payload).map_err(|e| {
            format!(
                "{}: reply is not JSON ({e}): {}",
                self.stream,
                String::from_utf8_lossy(payload)
            )
        })?;
        match waiting {
            Waiting::Create => {
                if value.get("error").is_some() {
                    return Err(format!("{}: create refused: {value}", self.stream));
                }
                self.ready = true;
                Ok(())
            }
            Waiting::Publish {
                msg, expected_last, ..
            } => {
                let seq = checks::on_pub_ack(self, msg, expected_last, &value, restarts)?;
                if let Some(seq) = seq {
                    if self
                        .waiting
                        .values()
                        .all(|w| !matches!(w, Waiting::Publish { .. }))
                    {
                        self.known_last = Some(seq);
                    }
                }
                Ok(())
            }
            Waiting::Purge { purge } => {
                if value.get("error").is_some() {
                    return Err(format!("{}: purge refused: {value}", self.stream));
                }
                self.purges[purge].done_at = Some(self.sent.len());
                self.known_last = None;
                Ok(())
            }
            Waiting::Info => checks::on_info(self, &value),
            Waiting::Get { seq } => checks::on_msg_get(self, seq, &value),
        }
    }
}

impl World {
    /// A JetStream publisher's tick: one unit of work on its connection.
    pub(crate) fn js_workload(&mut self, node: NodeId, index: usize, id: ConnId) {
        let now = self.now;
        let restarts = self.nodes[node.index()].restarts;
        let client: &mut SimClient = &mut self.clients[index];
        let js = client.js.as_mut().expect("a JetStream publisher");
        let bytes = js.work(&mut client.rng, now, id, restarts);
        if !bytes.is_empty() {
            let conn = self.nodes[node.index()]
                .conns
                .get_mut(&id)
                .expect("conn exists");
            conn.write_frame(&bytes, None);
        }
    }

    /// A message for a JetStream publisher: a reply to one of its requests.
    pub(crate) fn js_client_receives(
        &mut self,
        node: NodeId,
        index: usize,
        subject: &Bytes,
        payload: &Bytes,
    ) {
        let restarts = self.nodes[node.index()].restarts;
        self.model.stats.delivered += 1;
        self.model.stats.checks += 1;
        let js = self.clients[index]
            .js
            .as_mut()
            .expect("a JetStream publisher");
        let subject = String::from_utf8_lossy(subject);
        let Some(token) = subject
            .strip_prefix(js.inbox.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|token| token.parse::<u64>().ok())
        else {
            let error = format!("{}: a message on {subject}, not its inbox", js.stream);
            self.fail(error);
            return;
        };
        if let Err(error) = js.reply(token, payload, restarts) {
            self.fail(error);
        }
    }
}
