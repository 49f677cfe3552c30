//! JetStream consumer clients: simulated clients that publish into a file
//! stream of their own and consume it through two durable consumers, a
//! pull consumer and a push consumer, as real clients do.
//!
//! A `js_consumer` speaks the plain client protocol. On each connection it
//! subscribes its API inbox, its pull inbox and the push consumer's deliver
//! subject, then creates (idempotently) its stream and both consumers with
//! settings drawn once from its stream: `ack_wait`, `max_deliver`, and for
//! the pull consumer `max_ack_pending`. Once all three creates were
//! answered it publishes with acknowledgements (learning each message's
//! sequence), keeps one pull request out at a time (a drawn batch, an
//! expiry, sometimes `no_wait`), and answers each delivery, pull or push,
//! as drawn: `+ACK`, `+ACK` with a reply (AckSync: the server confirms it),
//! `-NAK` (sometimes with a delay), `+TERM` with a reply, holding it to ack
//! later (perhaps on a later connection, with the old ack subject), or
//! staying silent past `ack_wait`. Now and then it asks for CONSUMER.INFO.
//! Acks also get lost: a reset, a vanished client or a restarted node
//! drops whatever was on the wire.
//!
//! In the heal phase it stops publishing, acks everything with AckSync and
//! keeps pulling; once a consumer has been quiet longer than its ack wait
//! (an empty pull for the pull consumer) it asks CONSUMER.INFO and checks
//! that nothing is left pending. The checks are in `invariants::consumers`.
//!
//! Invariants:
//! - every draw comes from the client's own stream;
//! - at most one pull request is out at a time, and at most `WAITING_MAX`
//!   requests wait for a reply;
//! - a message's payload names the client and the message (`k<client>.<n>;`).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use rnats_core::protocol;
use rnats_core::runtime::ConnId;
use rnats_core::time::Instant;
use serde_json::Value;

use crate::clients::SimClient;
use crate::invariants::consumers as checks;
use crate::node::NodeId;
use crate::rng::Rng;
use crate::scenario::ClientSpec;
use crate::world::{World, MS, SECOND};

/// Requests waiting for a reply at once, at most.
const WAITING_MAX: usize = 64;
/// A publish, AckSync or info reply not back after this long is given up.
const REPLY_TIMEOUT: u64 = 2 * SECOND;
/// Subjects per stream: `<prefix>.0` .. `<prefix>.3`.
const SUBJECTS: u64 = 4;
/// Deliveries held to be acked later, at most.
const HELD_MAX: usize = 32;
/// The sid of the API inbox, the pull inbox and the deliver subject.
pub(crate) const SID_INBOX: &[u8] = b"1";
pub(crate) const SID_PULL: &[u8] = b"2";
pub(crate) const SID_PUSH: &[u8] = b"3";
/// The two consumers, by index in [`JsConsumerClient::consumers`].
pub(crate) const PULL: usize = 0;
pub(crate) const PUSH: usize = 1;

/// What a reply token waits for.
#[derive(Debug, Clone)]
pub(crate) enum Wait {
    Create,
    Publish {
        msg: usize,
        sent_at: Instant,
    },
    AckSync {
        consumer: usize,
        seq: u64,
        sent_at: Instant,
    },
    Info {
        consumer: usize,
        quiet: bool,
        sent_at: Instant,
    },
}

/// The client's record of one consumer: what it saw delivered and what
/// the server confirmed.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerModel {
    pub(crate) name: &'static str,
    pub(crate) ack_wait_ns: u64,
    pub(crate) max_deliver: Option<u64>,
    pub(crate) max_ack_pending: Option<u64>,
    /// The node's restart count when `last_new` was set: first deliveries
    /// increase within one server process.
    pub(crate) generation: u64,
    /// The highest stream sequence delivered for the first time (count 1)
    /// by the current server process.
    pub(crate) last_new: u64,
    /// Stream sequences the server must have on disk as delivered: first
    /// deliveries after a restart come above it.
    pub(crate) durable_delivered: u64,
    /// The highest ack floor consumer info showed: nothing at or below it
    /// is delivered again.
    pub(crate) floor: u64,
    /// Stream sequences whose ack the server confirmed (an AckSync reply,
    /// a `+TERM` with a reply, or at or below an ack floor in consumer
    /// info), with why: never delivered again.
    pub(crate) confirmed: BTreeMap<u64, &'static str>,
    /// The highest delivery count seen per stream sequence.
    pub(crate) seen: BTreeMap<u64, u64>,
    /// When the last delivery arrived.
    pub(crate) last_received: Instant,
    /// The heal-phase info found nothing pending.
    pub(crate) quiet_checked: bool,
    /// A heal-phase info is out.
    pub(crate) quiet_asked: bool,
}

impl ConsumerModel {
    fn new(name: &'static str, rng: &mut Rng, pull: bool) -> ConsumerModel {
        ConsumerModel {
            name,
            ack_wait_ns: rng.range(300, 1500) * MS,
            max_deliver: rng.chance(0.5).then(|| rng.range(2, 5)),
            max_ack_pending: (pull && rng.chance(0.5)).then(|| rng.range(4, 40)),
            generation: 0,
            last_new: 0,
            durable_delivered: 0,
            floor: 0,
            confirmed: BTreeMap::new(),
            seen: BTreeMap::new(),
            last_received: Instant::ZERO,
            quiet_checked: false,
            quiet_asked: false,
        }
    }
}

/// The pull request that is out.
#[derive(Debug, Clone)]
pub(crate) struct PullRequest {
    pub(crate) token: u64,
    pub(crate) batch_left: u64,
    pub(crate) got: u64,
    pub(crate) sent_at: Instant,
    pub(crate) expires_ns: u64,
}

/// A delivery the client holds, to ack later.
#[derive(Debug, Clone)]
struct Held {
    consumer: usize,
    ack_subject: Bytes,
    seq: u64,
}

/// One message the client published.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
}

/// A consumer client's record of its stream and its two consumers.
pub(crate) struct JsConsumerClient {
    pub(crate) index: usize,
    pub(crate) stream: String,
    prefix: String,
    deliver_subject: String,
    pub(crate) consumers: [ConsumerModel; 2],
    /// Creates still unanswered on this connection.
    creates_left: u32,
    pub(crate) ready: bool,
    inbox: String,
    pull_inbox: String,
    next_token: u64,
    pub(crate) waiting: BTreeMap<u64, Wait>,
    pub(crate) sent: Vec<Sent>,
    /// Stream sequence of each acknowledged publish.
    pub(crate) stored: BTreeMap<u64, usize>,
    pub(crate) pull: Option<PullRequest>,
    /// The last heal-phase pull that came back empty was sent at this time.
    pub(crate) last_empty_pull: Option<Instant>,
    held: VecDeque<Held>,
    pub(crate) counts: BTreeMap<&'static str, u64>,
    /// An ack was just written and the connection must be reset before it
    /// leaves (an ack lost to the network).
    lose_connection: bool,
}

impl JsConsumerClient {
    pub(crate) fn new(index: usize, spec: &ClientSpec, rng: &mut Rng) -> JsConsumerClient {
        let prefix = format!("{}.k{index}", spec.subjects[0].trim_end_matches(".>"));
        JsConsumerClient {
            index,
            stream: format!("K{index}"),
            prefix,
            deliver_subject: format!("_DLV.k{index}"),
            consumers: [
                ConsumerModel::new("pull", rng, true),
                ConsumerModel::new("push", rng, false),
            ],
            creates_left: 0,
            ready: false,
            inbox: String::new(),
            pull_inbox: String::new(),
            next_token: 0,
            waiting: BTreeMap::new(),
            sent: Vec::new(),
            stored: BTreeMap::new(),
            pull: None,
            last_empty_pull: None,
            held: VecDeque::new(),
            counts: BTreeMap::new(),
            lose_connection: false,
        }
    }

    pub(crate) fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn token(&mut self, wait: Wait) -> (u64, String) {
        self.next_token += 1;
        let previous = self.waiting.insert(self.next_token, wait);
        assert!(previous.is_none(), "reply tokens are never reused");
        (
            self.next_token,
            format!("{}.{}", self.inbox, self.next_token),
        )
    }

    fn consumer_body(&self, which: usize) -> String {
        let model = &self.consumers[which];
        let mut config = format!(
            "\"durable_name\":\"{}\",\"deliver_policy\":\"all\",\"ack_policy\":\"explicit\",\"ack_wait\":{},\"max_deliver\":{}",
            model.name,
            model.ack_wait_ns,
            model.max_deliver.map_or(-1, |max| max as i64),
        );
        if let Some(max) = model.max_ack_pending {
            config.push_str(&format!(",\"max_ack_pending\":{max}"));
        }
        if which == PUSH {
            config.push_str(&format!(
                ",\"deliver_subject\":\"{}\"",
                self.deliver_subject
            ));
        }
        format!(
            "{{\"stream_name\":\"{}\",\"config\":{{{config}}}}}",
            self.stream
        )
    }

    /// A new connection: the subscriptions and the three creates.
    /// Requests waiting on the old connection are dropped (their fate is
    /// unknown); held deliveries are kept and acked later.
    pub(crate) fn on_connect(&mut self, connects: u64) -> Vec<u8> {
        self.inbox = format!("_INBOX.k{}.{connects}", self.index);
        self.pull_inbox = format!("_PULL.k{}.{connects}", self.index);
        self.ready = false;
        self.pull = None;
        self.waiting.clear();
        for model in &mut self.consumers {
            model.quiet_asked = false;
        }
        let mut frame = BytesMut::new();
        let inbox = format!("{}.*", self.inbox);
        protocol::write_sub(&mut frame, inbox.as_bytes(), None, SID_INBOX);
        let pulls = format!("{}.*", self.pull_inbox);
        protocol::write_sub(&mut frame, pulls.as_bytes(), None, SID_PULL);
        protocol::write_sub(&mut frame, self.deliver_subject.as_bytes(), None, SID_PUSH);
        let (_, reply) = self.token(Wait::Create);
        let subject = format!("$JS.API.STREAM.CREATE.{}", self.stream);
        let body = format!(
            "{{\"name\":\"{}\",\"subjects\":[\"{}.>\"],\"storage\":\"file\",\"retention\":\"limits\",\"num_replicas\":1}}",
            self.stream, self.prefix
        );
        protocol::write_pub(
            &mut frame,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            body.as_bytes(),
        );
        for which in [PULL, PUSH] {
            let (_, reply) = self.token(Wait::Create);
            let subject = format!(
                "$JS.API.CONSUMER.DURABLE.CREATE.{}.{}",
                self.stream, self.consumers[which].name
            );
            let body = self.consumer_body(which);
            protocol::write_pub(
                &mut frame,
                subject.as_bytes(),
                Some(reply.as_bytes()),
                body.as_bytes(),
            );
        }
        self.creates_left = 3;
        frame.to_vec()
    }

    /// One unit of work: publish, pull, ack a held delivery, ask for info;
    /// in the heal phase, drain and check quiet.
    pub(crate) fn work(
        &mut self,
        rng: &mut Rng,
        now: Instant,
        heal_at: Option<Instant>,
    ) -> Vec<u8> {
        let mut out = BytesMut::new();
        if !self.ready {
            return out.to_vec();
        }
        self.expire(now);
        if self.waiting.len() >= WAITING_MAX {
            return out.to_vec();
        }
        if let Some(heal_at) = heal_at {
            self.heal_work(now, heal_at, &mut out);
            return out.to_vec();
        }
        if !self.held.is_empty() && rng.chance(0.3) {
            let held = self.held.pop_front().expect("not empty");
            let sync = rng.chance(0.5);
            self.count("c-acked-later");
            self.write_ack(&mut out, &held, b"+ACK", sync, now);
        }
        if self.pull.is_none() && rng.chance(0.5) {
            let batch = rng.range(1, 12);
            let expires_ns = rng.range(100, 1000) * MS;
            let no_wait = rng.chance(0.2);
            self.write_pull(&mut out, batch, expires_ns, no_wait, now);
        }
        let roll = rng.below(100);
        if roll < 4 {
            let which = if rng.chance(0.5) { PULL } else { PUSH };
            self.write_info(&mut out, which, false, now);
        } else if roll < 50 {
            self.write_publish(&mut out, rng, now);
        }
        out.to_vec()
    }

    /// The heal phase: ack every held delivery (AckSync), keep one pull
    /// out, and once a consumer has been quiet long enough ask for its info.
    fn heal_work(&mut self, now: Instant, heal_at: Instant, out: &mut BytesMut) {
        while let Some(held) = self.held.pop_front() {
            self.write_ack(out, &held, b"+ACK", true, now);
        }
        if self.pull.is_none() {
            self.write_pull(out, 20, 400 * MS, false, now);
        }
        let busy = |client: &JsConsumerClient, which: usize| {
            client.waiting.values().any(|wait| match wait {
                Wait::Publish { .. } | Wait::Create => true,
                Wait::AckSync { consumer, .. } | Wait::Info { consumer, .. } => *consumer == which,
            })
        };
        for which in [PULL, PUSH] {
            let model = &self.consumers[which];
            if model.quiet_checked || model.quiet_asked || busy(self, which) {
                continue;
            }
            // Deliveries into connections that died before the heal (and
            // pull requests of those connections, which expire within a
            // second) are not seen: count from the heal too.
            let since = model.last_received.max(heal_at).as_nanos() + SECOND;
            let settled = since + model.ack_wait_ns + SECOND;
            let quiet = match which {
                PULL => self
                    .last_empty_pull
                    .is_some_and(|at| at.as_nanos() >= settled),
                _ => now.as_nanos() >= settled,
            };
            if quiet {
                self.consumers[which].quiet_asked = true;
                self.write_info(out, which, true, now);
            }
        }
    }

    fn write_pull(
        &mut self,
        out: &mut BytesMut,
        batch: u64,
        expires_ns: u64,
        no_wait: bool,
        now: Instant,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        let reply = format!("{}.{token}", self.pull_inbox);
        let subject = format!(
            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
            self.stream, self.consumers[PULL].name
        );
        let body = format!("{{\"batch\":{batch},\"expires\":{expires_ns},\"no_wait\":{no_wait}}}");
        protocol::write_pub(
            out,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            body.as_bytes(),
        );
        self.pull = Some(PullRequest {
            token,
            batch_left: batch,
            got: 0,
            sent_at: now,
            expires_ns,
        });
        self.count(if no_wait {
            "c-pulls-no-wait"
        } else {
            "c-pulls"
        });
    }

    fn write_info(&mut self, out: &mut BytesMut, which: usize, quiet: bool, now: Instant) {
        let (_, reply) = self.token(Wait::Info {
            consumer: which,
            quiet,
            sent_at: now,
        });
        let subject = format!(
            "$JS.API.CONSUMER.INFO.{}.{}",
            self.stream, self.consumers[which].name
        );
        protocol::write_pub(out, subject.as_bytes(), Some(reply.as_bytes()), b"");
        self.count("c-infos");
    }

    fn write_publish(&mut self, out: &mut BytesMut, rng: &mut Rng, now: Instant) {
        let n = self.sent.len();
        let subject = format!("{}.{}", self.prefix, rng.below(SUBJECTS));
        let mut payload = format!("k{}.{n};", self.index).into_bytes();
        let filler = rng.below(32) as usize;
        payload.extend((0..filler).map(|i| b'a' + ((i + n) % 26) as u8));
        self.sent.push(Sent {
            subject: subject.clone(),
            payload: Bytes::from(payload),
        });
        let (_, reply) = self.token(Wait::Publish {
            msg: n,
            sent_at: now,
        });
        protocol::write_pub(
            out,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            &self.sent[n].payload,
        );
        self.count("c-published");
    }

    fn write_ack(
        &mut self,
        out: &mut BytesMut,
        held: &Held,
        body: &[u8],
        sync: bool,
        now: Instant,
    ) {
        let reply = sync.then(|| {
            let (_, reply) = self.token(Wait::AckSync {
                consumer: held.consumer,
                seq: held.seq,
                sent_at: now,
            });
            reply
        });
        protocol::write_pub(
            out,
            &held.ack_subject,
            reply.as_deref().map(str::as_bytes),
            body,
        );
    }

    /// Replies that waited too long are given up.
    fn expire(&mut self, now: Instant) {
        let late = |sent_at: &Instant| now.as_nanos() >= sent_at.as_nanos() + REPLY_TIMEOUT;
        let gone: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, wait)| match wait {
                Wait::Create => false,
                Wait::Publish { sent_at, .. }
                | Wait::AckSync { sent_at, .. }
                | Wait::Info { sent_at, .. } => late(sent_at),
            })
            .map(|(token, _)| *token)
            .collect();
        for token in gone {
            if let Some(Wait::Info {
                consumer,
                quiet: true,
                ..
            }) = self.waiting.remove(&token)
            {
                self.consumers[consumer].quiet_asked = false;
            }
        }
        // A pull request whose answer never came (its expiry plus slack).
        if self.pull.as_ref().is_some_and(|pull| {
            now.as_nanos() >= pull.sent_at.as_nanos() + pull.expires_ns + REPLY_TIMEOUT
        }) {
            self.pull = None;
            self.count("c-pulls-unanswered");
        }
    }

    /// A JSON or empty reply on the API inbox.
    fn reply(&mut self, token: u64, payload: &[u8], restarts: u64) -> Result<(), String> {
        let Some(wait) = self.waiting.remove(&token) else {
            return Ok(());
        };
        match wait {
            Wait::AckSync { consumer, seq, .. } => {
                if !payload.is_empty() {
                    return Err(format!(
                        "{}: an AckSync reply carried {:?}",
                        self.stream,
                        String::from_utf8_lossy(payload)
                    ));
                }
                self.count("c-acks-confirmed");
                checks::on_ack_confirmed(self, consumer, seq, restarts);
                Ok(())
            }
            Wait::Create => {
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("{}: create reply is not JSON ({e})", self.stream))?;
                if value.get("error").is_some() {
                    return Err(format!("{}: create refused: {value}", self.stream));
                }
                self.creates_left -= 1;
                self.ready = self.creates_left == 0;
                Ok(())
            }
            Wait::Publish { msg, .. } => {
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("{}: publish ack is not JSON ({e})", self.stream))?;
                checks::on_pub_ack(self, msg, &value)
            }
            Wait::Info {
                consumer, quiet, ..
            } => {
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("{}: info reply is not JSON ({e})", self.stream))?;
                checks::on_info(self, consumer, quiet, &value)
            }
        }
    }

    /// A status message (no ack subject) on the pull inbox: the pull ends.
    fn pull_status(&mut self, subject: &[u8], headers: Option<&Bytes>) -> Result<(), String> {
        let text = String::from_utf8_lossy(subject);
        let token = text
            .rsplit('.')
            .next()
            .and_then(|token| token.parse::<u64>().ok());
        let status = headers
            .map(|h| {
                String::from_utf8_lossy(h)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let code = status.split_whitespace().nth(1).unwrap_or("");
        if !matches!(code, "404" | "408" | "409" | "100") {
            return Err(format!("{}: pull request answered {status:?}", self.stream));
        }
        if code == "100" {
            return Ok(());
        }
        self.count(match code {
            "404" => "c-pull-404",
            "408" => "c-pull-408",
            _ => "c-pull-409",
        });
        if let Some(pull) = self.pull.take() {
            if Some(pull.token) != token {
                // An answer to an older request: the current one stays out.
                self.pull = Some(pull);
            } else if pull.got == 0 {
                self.last_empty_pull = Some(pull.sent_at);
            }
        }
        Ok(())
    }

    /// A delivery from consumer `which`: checked, then answered as drawn.
    #[allow(clippy::too_many_arguments)]
    fn delivery(
        &mut self,
        rng: &mut Rng,
        which: usize,
        subject: &[u8],
        ack_subject: Bytes,
        payload: &[u8],
        now: Instant,
        restarts: u64,
        healed: bool,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let target =
            checks::on_delivery(self, which, subject, &ack_subject, payload, now, restarts)?;
        if which == PULL {
            if let Some(pull) = self.pull.as_mut() {
                pull.got += 1;
                pull.batch_left = pull.batch_left.saturating_sub(1);
                if pull.batch_left == 0 {
                    self.pull = None;
                }
            }
        }
        let held = Held {
            consumer: which,
            ack_subject,
            seq: target.stream_seq,
        };
        if healed {
            self.write_ack(out, &held, b"+ACK", true, now);
            return Ok(());
        }
        if rng.chance(0.005) {
            // The ack is written, then the connection breaks before it leaves.
            self.count("c-acks-lost");
            let sync = rng.chance(0.5);
            self.write_ack(out, &held, b"+ACK", sync, now);
            self.lose_connection = true;
            return Ok(());
        }
        let roll = rng.below(100);
        match roll {
            0..=44 => {
                self.count("c-acks");
                self.write_ack(out, &held, b"+ACK", false, now);
            }
            45..=64 => {
                self.count("c-acks-sync");
                self.write_ack(out, &held, b"+ACK", true, now);
            }
            65..=71 => {
                self.count("c-naks");
                self.write_ack(out, &held, b"-NAK", false, now);
            }
            72..=74 => {
                self.count("c-naks-delayed");
                self.write_ack(out, &held, b"-NAK {\"delay\":200000000}", false, now);
            }
            75..=76 => {
                self.count("c-terms");
                self.write_ack(out, &held, b"+TERM sim", true, now);
            }
            77..=88 if self.held.len() < HELD_MAX => {
                self.count("c-held");
                self.held.push_back(held);
            }
            _ => self.count("c-silent"),
        }
        Ok(())
    }
}

impl World {
    /// A consumer client's tick: one unit of work on its connection.
    pub(crate) fn consumer_workload(&mut self, node: NodeId, index: usize, id: ConnId) {
        let now = self.now;
        let heal_at = self
            .healed
            .then_some(Instant((self.scenario.duration_s * SECOND as f64) as u64));
        let client: &mut SimClient = &mut self.clients[index];
        let consumer = client.consumer.as_mut().expect("a consumer client");
        let bytes = consumer.work(&mut client.rng, now, heal_at);
        self.write_client(node, id, &bytes);
    }

    fn write_client(&mut self, node: NodeId, id: ConnId, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        conn.write_frame(bytes, None);
    }

    /// A message for a consumer client: an API reply, a delivery or a
    /// pull request's status.
    pub(crate) fn consumer_client_receives(
        &mut self,
        node: NodeId,
        id: ConnId,
        index: usize,
        op: (Bytes, Bytes, Option<Bytes>, Option<Bytes>, Bytes),
    ) {
        let (subject, sid, reply, headers, payload) = op;
        let now = self.now;
        let healed = self.healed;
        let restarts = self.nodes[node.index()].restarts;
        self.model.stats.delivered += 1;
        self.model.stats.checks += 1;
        let client = &mut self.clients[index];
        let consumer = client.consumer.as_mut().expect("a consumer client");
        let mut out = BytesMut::new();
        let is_ack = reply.as_ref().is_some_and(|r| r.starts_with(b"$JS.ACK."));
        let result = match &sid[..] {
            SID_INBOX => {
                let text = String::from_utf8_lossy(&subject);
                match text
                    .strip_prefix(consumer.inbox.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .and_then(|token| token.parse::<u64>().ok())
                {
                    Some(token) => consumer.reply(token, &payload, restarts),
                    None => Err(format!(
                        "{}: a message on {text}, not its inbox",
                        consumer.stream
                    )),
                }
            }
            SID_PULL | SID_PUSH if is_ack => {
                let which = if &sid[..] == SID_PULL { PULL } else { PUSH };
                let ack = reply.expect("checked");
                consumer.delivery(
                    &mut client.rng,
                    which,
                    &subject,
                    ack,
                    &payload,
                    now,
                    restarts,
                    healed,
                    &mut out,
                )
            }
            SID_PULL => consumer.pull_status(&subject, headers.as_ref()),
            SID_PUSH => {
                // Push status messages (heartbeats, flow control) are not asked for.
                Err(format!(
                    "{}: the push consumer sent a message without an ack subject",
                    consumer.stream
                ))
            }
            _ => Err(format!(
                "{}: a message on unknown sid {:?}",
                consumer.stream, sid
            )),
        };
        if let Err(error) = result {
            self.fail(error);
            return;
        }
        let lose = std::mem::take(&mut consumer.lose_connection);
        self.write_client(node, id, &out);
        if lose {
            self.reset(node, id, "ack-lost-reset");
        }
    }
}
