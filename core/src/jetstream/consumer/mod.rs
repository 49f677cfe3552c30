//! One consumer: a sans-I/O machine that hands a stream's messages to
//! clients and tracks what they acknowledged.
//!
//! Role: decide which stored message goes out next (redeliveries first,
//! then the last-per-subject set a `last_per_subject` consumer starts
//! with, then new messages in stream order), to whom (the oldest waiting
//! pull request, or a push consumer's deliver subject), and what happens
//! when the client acks, naks, terminates or stays silent past `ack_wait`.
//! The consumer reads its stream's store (lent by the owner for each
//! call) and never writes it; its own state ([`ConsumerTracker`]) is kept
//! in memory or, for durable consumers of file streams, in a
//! [`ConsumerFileStore`] the owner flushes.
//!
//! Deliveries may be paced ([`pacing`]: replay original, rate limits),
//! and [`Consumer::reset`] starts the consumer over (`CONSUMER.RESET`).
//!
//! Inputs: [`Consumer::handle_pull`], [`Consumer::handle_ack`],
//! [`Consumer::handle_flow_control`], [`Consumer::pump`] (after anything
//! that may let a message go out), [`Consumer::handle_timeout`].
//! Outputs: [`JsAction::Deliver`] and [`JsAction::Publish`] (status
//! messages, ack replies, advisories) pushed on the queue handed in.
//!
//! Invariants (checked by [`Consumer::check`] after every input):
//! - every pending message has exactly one redelivery deadline or sits in
//!   the redelivery set, never both (neither when flow control acks it:
//!   such a consumer never redelivers); nothing else has either;
//! - `next_seq` never decreases; every new delivery is at or above it;
//! - delivered consumer sequences increase by one per delivery;
//! - with `max_ack_pending`, no new message goes out while that many are
//!   pending (redeliveries still do).
//! - while pacing holds a delivery, nothing goes out;
//! - a push consumer's flow-control request covers no more than is in
//!   flight; while one is unanswered and more than the window is in
//!   flight, nothing goes out.

pub mod ack;
pub mod pacing;
pub mod pull;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::ack::{AckKind, AckTarget};
use self::pacing::{Pace, Pacing};
use self::pull::{pending_headers, status, WaitQueue, Waiting};
use super::api::{NextRequest, PriorityPolicy};
use super::link::{ConsumerId, JsAction};
use super::stream::Store;
use crate::store::{
    AckPolicy, ConsumerFileStore, ConsumerState, ConsumerTracker, Disk, Filter, SequencePair,
    StoredMsg,
};
use crate::time::{Instant, WallTime};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A push consumer's flow-control window when it starts: the bytes it may
/// have out that no answered request covers. Past half of it the consumer
/// asks the client (a flow-control request); past all of it, with the
/// request unanswered, it stops. The reference's sizes: it starts at 2 MiB
/// and doubles with each answer up to 32 MiB, so a client that keeps up is
/// asked a handful of times per stream read (six for 300,000 messages of
/// 128 B) and the consumer never waits for an answer; a window that stays
/// small asks every few thousand messages and stops whenever the client
/// is a window behind.
const FLOW_CONTROL_START: u64 = 2 * 1024 * 1024;
/// The largest a window grows to.
const FLOW_CONTROL_MAX: u64 = 32 * 1024 * 1024;
/// The most bytes a push consumer sends in one pump. The rest of what its
/// window allows goes in the next turn (see `PushState::resume`): the
/// deliveries made so far reach the connection, and its writer, first,
/// instead of a whole window's worth (up to 32 MiB) being built, held and
/// copied in one piece, which tripled an ordered consumer's peak RSS.
const PUSH_BURST: u64 = 256 * 1024;

/// Where a consumer starts in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverStart {
    All,
    Last,
    New,
    BySequence(u64),
    ByTime(WallTime),
    LastPerSubject,
}

/// A push consumer's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRules {
    pub deliver_subject: Bytes,
    pub flow_control: bool,
    pub idle_heartbeat: Option<Duration>,
}

/// What a consumer does, derived from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRules {
    pub account: String,
    pub stream: String,
    pub name: String,
    pub filter: Filter,
    pub start: DeliverStart,
    pub ack: AckPolicy,
    /// `ack_policy: flow_control`: acked as `All` (with `ack`
    /// [`AckPolicy::All`]), but only by the answers to flow-control
    /// requests (their `Nats-Last-Stream`), never by clients; nothing is
    /// redelivered (no ack wait).
    pub flow_control_acks: bool,
    pub ack_wait: Duration,
    /// Redelivery delays by delivery count (the last repeats).
    pub backoff: Vec<Duration>,
    pub max_deliver: Option<u64>,
    pub max_ack_pending: Option<u64>,
    pub max_waiting: usize,
    /// `None`: a pull consumer.
    pub push: Option<PushRules>,
    pub headers_only: bool,
    pub max_batch: Option<u64>,
    pub max_expires: Option<Duration>,
    pub max_bytes: Option<u64>,
    /// Paused until then (`CONSUMER.PAUSE`, `pause_until`): nothing is
    /// delivered, requests wait.
    pub pause_until: Option<WallTime>,
    /// How pull requests of the priority groups are served.
    pub priority_policy: PriorityPolicy,
    /// The groups a pull request may name (empty: no priority groups).
    pub priority_groups: Vec<String>,
    /// `pinned_client`: how long a pin lasts without a request from its
    /// client (`priority_timeout`).
    pub pinned_ttl: Duration,
    /// `sample_freq` in percent (0: no ack metrics).
    pub sample_percent: u32,
    /// `replay_policy: original`: deliveries keep the gaps between the
    /// messages' stored timestamps (see [`pacing`]).
    pub replay_original: bool,
    /// `rate_limit_bps` as bytes a second, and the burst (see [`pacing`]).
    pub rate_limit: Option<(u64, u64)>,
}

impl ConsumerRules {
    /// The delay before a message delivered `count` times is redelivered.
    fn redelivery_delay(&self, count: u64) -> Duration {
        if self.backoff.is_empty() {
            return self.ack_wait;
        }
        let index = usize::try_from(count.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(self.backoff.len() - 1);
        self.backoff[index]
    }
}

/// Where a consumer's state lives.
#[derive(Debug)]
pub enum ConsumerStore<D: Disk> {
    Memory(ConsumerTracker),
    File(ConsumerFileStore<D>),
}

impl<D: Disk> ConsumerStore<D> {
    pub fn tracker(&self) -> &ConsumerTracker {
        match self {
            ConsumerStore::Memory(tracker) => tracker,
            ConsumerStore::File(file) => file.tracker(),
        }
    }

    pub(in crate::jetstream) fn tracker_mut(&mut self) -> &mut ConsumerTracker {
        match self {
            ConsumerStore::Memory(tracker) => tracker,
            ConsumerStore::File(file) => file.tracker_mut(),
        }
    }

    /// Make the state durable if it changed (file consumers).
    pub fn flush(&mut self) -> Result<bool, crate::store::ConsumerError> {
        match self {
            ConsumerStore::Memory(tracker) => Ok(tracker.take_dirty()),
            ConsumerStore::File(file) => file.flush(),
        }
    }
}

/// A push consumer's flow control and heartbeat state.
#[derive(Debug)]
struct PushState {
    /// The reply subject of the unanswered flow-control request.
    outstanding: Option<String>,
    /// Bytes delivered that no answered request covers yet.
    in_flight: u64,
    /// The part of `in_flight` the outstanding request covers: what was
    /// out when it was sent (its answer says the client read that far).
    covered: u64,
    /// How many bytes may be in flight (see [`FLOW_CONTROL_START`]).
    window: u64,
    /// A pump stopped at [`PUSH_BURST`] with more maybe ready: due at once
    /// (a timer of this instant), the next pump goes on.
    resume: Option<Instant>,
    next_heartbeat: Option<Instant>,
    fc_count: u64,
}

impl Default for PushState {
    fn default() -> PushState {
        PushState {
            outstanding: None,
            in_flight: 0,
            covered: 0,
            window: FLOW_CONTROL_START,
            resume: None,
            next_heartbeat: None,
            fc_count: 0,
        }
    }
}

impl PushState {
    /// Whether deliveries wait for the outstanding request's answer.
    fn stalled(&self) -> bool {
        self.outstanding.is_some() && self.in_flight > self.window
    }

    /// Whether a delivery just made should ask for an answer.
    fn wants_request(&self) -> bool {
        self.outstanding.is_none() && self.in_flight > self.window / 2
    }

    /// The latest request was answered: what it covered is read, and the
    /// window grows.
    fn answered(&mut self) {
        debug_assert!(self.covered <= self.in_flight);
        self.outstanding = None;
        self.in_flight = self.in_flight.saturating_sub(self.covered);
        self.covered = 0;
        self.window = (self.window * 2).min(FLOW_CONTROL_MAX);
    }
}

/// Where a candidate message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Redelivery,
    LastPerSubject,
    New,
}

/// A consumer machine.
pub struct Consumer<D: Disk> {
    pub id: ConsumerId,
    rules: ConsumerRules,
    store: ConsumerStore<D>,
    /// The next stream sequence to look at for a new message.
    next_seq: u64,
    /// A `last_per_subject` consumer's starting set, delivered first.
    last_per_subject: VecDeque<u64>,
    /// Pending messages due for redelivery, in stream order.
    redeliver: BTreeSet<u64>,
    /// Redelivery deadlines of the other pending messages.
    deadlines: BTreeSet<(Instant, u64)>,
    due: BTreeMap<u64, Instant>,
    waiting: WaitQueue,
    push: PushState,
    /// Where each delivery's `$JS.ACK.` reply is written.
    ack_subjects: ack::AckSubjects,
    /// `rules.account`, shared by every delivery rather than copied into
    /// each.
    account: std::sync::Arc<str>,
    /// A push consumer delivers only while its deliver subject has
    /// subscribers (as the server reports).
    interest: bool,
    /// When a pause ends, on the monotonic clock.
    resume_at: Option<Instant>,
    /// When the last message went out, and when the floor last moved.
    last_delivery: Option<WallTime>,
    last_ack: Option<WallTime>,
    /// Stream sequences this consumer is done with since the owner last
    /// took them (acked, terminated, or delivered without acks): what
    /// interest and work-queue retention remove.
    settled: Vec<u64>,
    /// `pinned_client`: the client (by its `Nats-Pin-Id`) all messages go
    /// to while it keeps asking.
    pin: Option<Pin>,
    /// Pin ids and advisory ids: seeded from the creation time and name, so
    /// a run is reproducible from its inputs.
    ids: ChaCha8Rng,
    /// Replay original and rate limits: when the next delivery may go.
    pacing: Pacing,
    /// A defect planted on purpose so the simulator can prove it finds bugs.
    #[cfg(feature = "planted-defects")]
    planted_defect: Option<crate::server::PlantedDefect>,
}

/// A `pinned_client` consumer's current pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub id: String,
    /// When it was given (consumer info's `pinned_ts`).
    pub since: WallTime,
    /// When it lapses unless its client asks again.
    pub expires: Instant,
}

/// The numbers consumer info reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerNumbers {
    pub delivered: SequencePair,
    pub ack_floor: SequencePair,
    pub last_delivery: Option<WallTime>,
    pub last_ack: Option<WallTime>,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
}

impl<D: Disk> Consumer<D> {
    /// A consumer over `stream_store`: new (its state empty) or recovered.
    pub fn new(
        id: ConsumerId,
        rules: ConsumerRules,
        state: ConsumerStore<D>,
        stream_store: &mut Store<D>,
        now: Instant,
        wall: WallTime,
    ) -> Self {
        // FNV-1a over the names, mixed with the creation time.
        let seed = format!("{}.{}", rules.stream, rules.name)
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
            ^ wall.0;
        let mut consumer = Consumer {
            id,
            account: rules.account.as_str().into(),
            rules,
            store: state,
            next_seq: 1,
            last_per_subject: VecDeque::new(),
            redeliver: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            due: BTreeMap::new(),
            waiting: WaitQueue::default(),
            push: PushState::default(),
            ack_subjects: ack::AckSubjects::default(),
            interest: false,
            resume_at: None,
            last_delivery: None,
            last_ack: None,
            settled: Vec::new(),
            pin: None,
            ids: ChaCha8Rng::seed_from_u64(seed),
            pacing: Pacing::default(),
            #[cfg(feature = "planted-defects")]
            planted_defect: None,
        };
        // The reference replays up to the stream's last message when the
        // consumer starts (a restart replays again).
        let replay = consumer
            .rules
            .replay_original
            .then(|| stream_store.state().last_seq);
        consumer.pacing = Pacing::new(replay, consumer.rules.rate_limit);
        let recovered = *consumer.state() != ConsumerState::default();
        if recovered {
            let state = consumer.state().clone();
            consumer.next_seq = state.delivered.stream + 1;
            // Whatever was pending when the state was written is redelivered
            // one ack wait after it last went out.
            let redelivers = consumer.redelivers();
            for (&seq, pending) in state.pending.iter().filter(|_| redelivers) {
                let elapsed = Duration::from_nanos(wall.0.saturating_sub(pending.ts.0));
                let delay = consumer.rules.ack_wait.saturating_sub(elapsed);
                consumer.arm(seq, now + delay);
            }
        } else {
            consumer.start(stream_store);
        }
        consumer.push.next_heartbeat = consumer.heartbeat_interval().map(|every| now + every);
        consumer.resume_at = resume_at(&consumer.rules, now, wall);
        consumer.check();
        consumer
    }

    /// Place a new consumer in its stream by its deliver policy.
    fn start(&mut self, store: &mut Store<D>) {
        let state = store.state();
        let first = state.first_seq.max(1);
        let filter = self.rules.filter.clone();
        self.next_seq = match &self.rules.start {
            DeliverStart::All => first,
            DeliverStart::New => state.last_seq + 1,
            DeliverStart::Last => match store.load_last(&filter) {
                Ok(msg) => msg.seq,
                Err(_) => state.last_seq + 1,
            },
            DeliverStart::BySequence(seq) => (*seq).max(1),
            DeliverStart::ByTime(at) => seq_from_time(store, *at),
            DeliverStart::LastPerSubject => {
                let mut lasts: Vec<u64> = store
                    .subjects_state(&filter)
                    .values()
                    .map(|subject| subject.last_seq)
                    .collect();
                lasts.sort_unstable();
                self.last_per_subject = lasts.into();
                state.last_seq + 1
            }
        };
        let start = self
            .last_per_subject
            .front()
            .copied()
            .unwrap_or(self.next_seq);
        self.store
            .tracker_mut()
            .set_starting(start.saturating_sub(1));
    }

    /// `CONSUMER.RESET`: start over at stream sequence `seq` (0: just above
    /// the ack floor), forgetting every delivery, ack and redelivery, as
    /// the reference does. Any sequence is allowed to a `deliver_policy:
    /// all` consumer; one with a start sequence or time may not go below
    /// it; others may only go back to their floor. Returns the sequence
    /// the consumer starts at, or the reason it may not.
    pub fn reset(&mut self, seq: u64, store: &mut Store<D>) -> Result<u64, &'static str> {
        let seq = if seq == 0 {
            self.state().ack_floor.stream.saturating_add(1)
        } else {
            match &self.rules.start {
                DeliverStart::All => seq,
                DeliverStart::BySequence(start) if seq < *start => return Err("below start seq"),
                DeliverStart::BySequence(_) => seq,
                DeliverStart::ByTime(at) if seq < seq_from_time(store, *at) => {
                    return Err("below start time")
                }
                DeliverStart::ByTime(_) => seq,
                _ => return Err("not allowed"),
            }
        }
        .max(1);
        let start = SequencePair {
            consumer: 0,
            stream: seq - 1,
        };
        let state = ConsumerState {
            delivered: start,
            ack_floor: start,
            ..ConsumerState::default()
        };
        self.store
            .tracker_mut()
            .update(state, true)
            .expect("a state with nothing pending is valid");
        self.next_seq = seq;
        self.redeliver.clear();
        self.deadlines.clear();
        self.due.clear();
        self.last_delivery = None;
        self.last_ack = None;
        self.check();
        Ok(seq)
    }

    /// Plant `defect` (feature `planted-defects`, for the simulator's tests).
    #[cfg(feature = "planted-defects")]
    pub fn plant(&mut self, defect: crate::server::PlantedDefect) {
        self.planted_defect = Some(defect);
    }

    #[cfg(feature = "planted-defects")]
    fn planted(&self, defect: crate::server::PlantedDefect) -> bool {
        self.planted_defect == Some(defect)
    }

    pub fn rules(&self) -> &ConsumerRules {
        &self.rules
    }

    pub fn name(&self) -> &str {
        &self.rules.name
    }

    /// Whether a push consumer's deliver subject has subscribers.
    pub fn has_interest(&self) -> bool {
        self.interest
    }

    /// The server says whether the deliver subject has subscribers.
    pub fn set_interest(&mut self, interest: bool, now: Instant) {
        if interest && !self.interest {
            self.push.next_heartbeat = self.heartbeat_interval().map(|every| now + every);
        }
        self.interest = interest;
    }

    /// The sequences settled since the last call (see `settled`).
    pub fn take_settled(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.settled)
    }

    /// Whether this consumer still needs the message at `seq` on
    /// `subject`: it matches the filter and is not yet settled.
    pub fn needs(&self, seq: u64, subject: &[u8]) -> bool {
        if !self.rules.filter.matches(subject) {
            return false;
        }
        let state = self.state();
        seq > state.delivered.stream
            || state.pending.contains_key(&seq)
            || self.last_per_subject.contains(&seq)
    }

    /// Whether a pump could send anything: a push consumer with
    /// subscribers, or a pull consumer with requests waiting.
    pub fn is_hungry(&self) -> bool {
        if self.is_push() {
            self.interest
        } else {
            !self.waiting.is_empty()
        }
    }

    /// Pull requests waiting.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_push(&self) -> bool {
        self.rules.push.is_some()
    }

    pub fn state(&self) -> &ConsumerState {
        self.store.tracker().state()
    }

    pub fn consumer_store_mut(&mut self) -> &mut ConsumerStore<D> {
        &mut self.store
    }

    /// Take new rules (a consumer update, a pause); timers keep running.
    pub fn update(&mut self, rules: ConsumerRules, now: Instant, wall: WallTime) {
        if rules.rate_limit != self.rules.rate_limit {
            self.pacing.set_limit(rules.rate_limit);
        }
        if *self.account != *rules.account {
            self.account = rules.account.as_str().into();
        }
        self.rules = rules;
        self.push.next_heartbeat = self.heartbeat_interval().map(|every| now + every);
        self.resume_at = resume_at(&self.rules, now, wall);
    }

    /// Whether the consumer is paused.
    pub fn is_paused(&self) -> bool {
        self.resume_at.is_some()
    }

    /// The numbers for consumer info, counting what is pending in `store`.
    pub fn numbers(&mut self, store: &mut Store<D>) -> ConsumerNumbers {
        let state = self.state();
        ConsumerNumbers {
            delivered: state.delivered,
            ack_floor: state.ack_floor,
            last_delivery: self.last_delivery,
            last_ack: self.last_ack,
            num_ack_pending: state.pending.len() as u64,
            num_redelivered: state.redelivered.len() as u64,
            num_waiting: self.waiting.len() as u64,
            num_pending: self.num_pending(store),
        }
    }

    /// Messages not yet delivered.
    fn num_pending(&self, store: &mut Store<D>) -> u64 {
        let new = store
            .count_from(&self.rules.filter, self.next_seq)
            .unwrap_or(0);
        new + self.last_per_subject.len() as u64
    }

    // ----- inputs -----

    /// A pull request (`CONSUMER.MSG.NEXT`) with replies to `reply`.
    pub fn handle_pull(
        &mut self,
        account: &str,
        reply: &[u8],
        body: &[u8],
        store: &mut Store<D>,
        now: Instant,
        out: &mut VecDeque<JsAction>,
    ) {
        if reply.is_empty() {
            return;
        }
        let answer = |out: &mut VecDeque<JsAction>, code: u16, text: &str| {
            out.push_back(status_message(account, reply, status(code, text, &[])));
        };
        if self.is_push() {
            return answer(out, 409, "Consumer is push based");
        }
        let request = match NextRequest::parse(body) {
            Ok(request) => request,
            Err(error) => return answer(out, 400, &format!("Bad Request - {error}")),
        };
        let nanos = |value: i64| Duration::from_nanos(u64::try_from(value).unwrap_or(0));
        let expires = nanos(request.expires);
        let heartbeat = nanos(request.idle_heartbeat);
        // A batch of zero or less still gets one message, as in the
        // reference; its status headers show the number asked for.
        let batch = u64::try_from(request.batch).unwrap_or(0).max(1);
        if let Some(max) = self
            .rules
            .max_batch
            .filter(|&max| request.batch > 0 && batch > max)
        {
            return answer(out, 409, &format!("Exceeded MaxRequestBatch of {max}"));
        }
        if let Some(max) = self
            .rules
            .max_expires
            .filter(|&max| !expires.is_zero() && expires > max)
        {
            let text =
                crate::format::go_duration(u64::try_from(max.as_nanos()).unwrap_or(u64::MAX));
            return answer(out, 409, &format!("Exceeded MaxRequestExpires of {text}"));
        }
        let max_bytes = u64::try_from(request.max_bytes).unwrap_or(0);
        if let Some(max) = self
            .rules
            .max_bytes
            .filter(|&max| max_bytes > 0 && max_bytes > max)
        {
            return answer(out, 409, &format!("Exceeded MaxRequestMaxBytes of {max}"));
        }
        // A JSON request always carries a (maybe empty) priority group; a
        // bare batch size carries none and skips these checks.
        let json = body.trim_ascii().first() == Some(&b'{');
        if json {
            if let Err(text) = self.check_priority(&request) {
                return answer(out, 400, &format!("Bad Request - {text}"));
            }
            // The pinned client asking again keeps its pin; another id is
            // a stale one.
            let ttl = self.rules.pinned_ttl;
            if let Some(pin) = self.pin.as_mut() {
                if request.id == pin.id {
                    pin.expires = now + ttl;
                } else if !request.id.is_empty() {
                    return answer(out, 423, "Nats-Pin-Id mismatch");
                }
            }
        }
        // A negative `expires` is a deadline already past: the request is
        // queued and times out at once (408 with the pending headers).
        let expires_at = match request.expires {
            0 => None,
            nanos if nanos < 0 => Some(now),
            _ => Some(now + expires),
        };
        // What the reference does on its way in: drop expired requests.
        self.expire_requests(now, out);
        if request.no_wait {
            let pending = self.num_pending(store) + self.redeliver.len() as u64;
            if pending == 0 && expires_at.is_none() {
                return answer(out, 404, "No Messages");
            }
            // Fewer messages than those waiting already asked for: this
            // one would get nothing.
            let asked: i64 = self.waiting.iter().map(Waiting::pending_batch).sum();
            if pending > 0 && i64::try_from(pending).unwrap_or(i64::MAX) < asked {
                return answer(out, 408, "Requests Pending");
            }
        }
        if self.waiting.len() >= self.rules.max_waiting {
            // A requester with heartbeats waits for them to stop instead.
            if heartbeat.is_zero() {
                answer(out, 409, "Exceeded MaxWaiting");
            }
            return;
        }
        let heartbeat = (!heartbeat.is_zero()).then_some(heartbeat);
        let waiting = Waiting {
            reply: Bytes::copy_from_slice(reply),
            account: account.to_string(),
            batch_left: batch,
            batch_asked: request.batch,
            bytes_left: max_bytes,
            has_max_bytes: max_bytes > 0,
            no_wait: request.no_wait,
            expires: expires_at,
            heartbeat,
            next_heartbeat: heartbeat.map(|every| now + every),
            delivered: 0,
            min_pending: u64::try_from(request.min_pending).unwrap_or(0),
            min_ack_pending: u64::try_from(request.min_ack_pending).unwrap_or(0),
            pin_id: request.id,
            priority: if json { request.priority } else { i64::MAX },
        };
        if self.rules.priority_policy == PriorityPolicy::Prioritized {
            self.waiting.insert_by_priority(waiting);
        } else {
            self.waiting.push(waiting);
        }
        self.check();
    }

    /// The priority-group fields of a pull request against the consumer's
    /// policy: the reason after `400 Bad Request - ` when refused.
    fn check_priority(&self, request: &NextRequest) -> Result<(), &'static str> {
        let policy = self.rules.priority_policy;
        if (request.min_pending != 0 || request.min_ack_pending != 0)
            && policy != PriorityPolicy::Overflow
        {
            return Err("Not a Overflow Priority consumer");
        }
        if !request.id.is_empty() && policy != PriorityPolicy::PinnedClient {
            return Err("Not a Pinned Client Priority consumer");
        }
        if !(0..=9).contains(&request.priority) {
            return Err("Priority must be between 0 and 9");
        }
        if policy != PriorityPolicy::None {
            if request.group.is_empty() {
                return Err("Priority Group missing");
            }
            if !self.rules.priority_groups.contains(&request.group) {
                return Err("Invalid Priority Group");
            }
        }
        Ok(())
    }

    /// `pinned_client`: bring the request to serve to the front of the
    /// queue, as the reference does: with no pin, the oldest request
    /// without an id gets a new one (a stale id is told `423` and dropped);
    /// with a pin, only its holder is served, others without an id wait
    /// and others with an id are dropped with `423`. `None` when none may
    /// be served now, else whether the pin was given just now.
    fn select_pinned(
        &mut self,
        now: Instant,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) -> Option<bool> {
        let mut cycled = 0;
        while let Some(front) = self.waiting.front() {
            let held = self.pin.as_ref().map(|pin| pin.id.as_str());
            if held == Some(front.pin_id.as_str()) {
                return Some(false);
            }
            if front.pin_id.is_empty() {
                if held.is_none() {
                    let id = self.new_id();
                    self.pin = Some(Pin {
                        id: id.clone(),
                        since: wall,
                        expires: now + self.rules.pinned_ttl,
                    });
                    self.advise_pinned(&id, wall, out);
                    self.waiting.front_mut().expect("looked at").pin_id = id;
                    return Some(true);
                }
                self.waiting.cycle();
                cycled += 1;
                if cycled >= self.waiting.len() {
                    return None;
                }
                continue;
            }
            let request = self.waiting.pop_front().expect("looked at");
            let headers = status(423, "Nats-Wrong-Pin-Id", &pending_headers(&request));
            out.push_back(status_message(&request.account, &request.reply, headers));
        }
        None
    }

    /// Drop the pin (`CONSUMER.UNPIN`: `admin`; its lapse: `timeout`); the
    /// next request without an id gets a new one. An admin unpin advises
    /// even with no pin, as the reference does.
    pub fn unpin(&mut self, reason: &str, wall: WallTime, out: &mut VecDeque<JsAction>) {
        if self.pin.take().is_none() && reason != "admin" {
            return;
        }
        self.advise_group("UNPINNED", ("reason", reason), wall, out);
    }

    fn advise_pinned(&mut self, id: &str, wall: WallTime, out: &mut VecDeque<JsAction>) {
        self.advise_group("PINNED", ("pinned_id", id), wall, out);
    }

    /// `consumer_group_pinned` / `consumer_group_unpinned` (by `kind`),
    /// with the one field they differ in.
    fn advise_group(
        &mut self,
        kind: &str,
        (key, value): (&str, &str),
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let mut body = serde_json::json!({
            "type": format!(
                "io.nats.jetstream.advisory.v1.consumer_group_{}",
                kind.to_ascii_lowercase()
            ),
            "id": self.new_id(),
            "timestamp": crate::format::rfc3339_nanos(wall),
            "account": self.rules.account,
            "stream": self.rules.stream,
            "consumer": self.rules.name,
            "group": self.rules.priority_groups.first().cloned().unwrap_or_default(),
        });
        body[key] = serde_json::Value::String(value.to_owned());
        self.advise(kind, body, out);
    }

    /// `sample_freq`: an explicit ack of a pending message is reported on
    /// `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>` with the time
    /// since its delivery, for the configured share of acks (drawn as the
    /// reference does: a number below 100 at most the percentage).
    fn sample_ack(&mut self, target: AckTarget, wall: WallTime, out: &mut VecDeque<JsAction>) {
        let percent = self.rules.sample_percent;
        let Some(delivered) = self.state().pending.get(&target.stream_seq).map(|p| p.ts) else {
            return;
        };
        if percent == 0 || (percent < 100 && self.ids.next_u32() % 100 > percent) {
            return;
        }
        let body = serde_json::json!({
            "type": "io.nats.jetstream.metric.v1.consumer_ack",
            "id": self.new_id(),
            "timestamp": crate::format::rfc3339_nanos(wall),
            "stream": self.rules.stream,
            "consumer": self.rules.name,
            "consumer_seq": target.consumer_seq,
            "stream_seq": target.stream_seq,
            "ack_time": i64::try_from(wall.0).unwrap_or(i64::MAX)
                - i64::try_from(delivered.0).unwrap_or(i64::MAX),
            "deliveries": target.delivered,
        });
        out.push_back(JsAction::Publish {
            account: self.rules.account.as_str().into(),
            subject: Bytes::from(format!(
                "$JS.EVENT.METRIC.CONSUMER.ACK.{}.{}",
                self.rules.stream, self.rules.name
            )),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from(body.to_string()),
        });
    }

    /// The current pin, for consumer info.
    pub fn pin(&self) -> Option<&Pin> {
        self.pin.as_ref()
    }

    /// 22 characters of base 62, the shape of the reference's ids.
    fn new_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..22)
            .map(|_| ALPHABET[(self.ids.next_u32() as usize) % ALPHABET.len()] as char)
            .collect()
    }

    /// Overflow policy: whether `request` may take a message now, with
    /// `pending` messages left to deliver counting the one at hand. A
    /// request with neither minimum always may; otherwise either minimum
    /// reached is enough.
    fn overflow_ready(&self, request: &Waiting, pending: u64) -> bool {
        if self.rules.priority_policy != PriorityPolicy::Overflow
            || (request.min_pending == 0 && request.min_ack_pending == 0)
        {
            return true;
        }
        (request.min_pending > 0 && request.min_pending <= pending)
            || (request.min_ack_pending > 0
                && request.min_ack_pending <= self.state().pending.len() as u64)
    }

    /// An ack (any kind) on `subject` with the client's `reply`. Returns
    /// the pull request a `+NXT` carried, for the caller to pass on with
    /// [`Consumer::handle_pull`] after this ack is applied.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_ack(
        &mut self,
        subject: &[u8],
        reply: &[u8],
        body: &[u8],
        now: Instant,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) -> Option<Vec<u8>> {
        if self.rules.flow_control_acks {
            // Acked by flow control only: no ack subject is routed here
            // (as the reference subscribes none), so this is a stray.
            return None;
        }
        let target = ack::parse_ack_subject(subject)?;
        let kind = ack::parse_ack_body(body);
        if target.stream_seq >= self.next_seq && matches!(kind, AckKind::Ack | AckKind::Term { .. })
        {
            // As the reference: an ack above the delivery pointer names a
            // message this consumer has not delivered (a restart forgot the
            // delivery the client acks). It is ignored and, above all, not
            // confirmed: the message is still to be delivered.
            return None;
        }
        let mut next = None;
        match kind {
            AckKind::Ack => self.ack(target, wall, out),
            AckKind::Next { request } => {
                self.ack(target, wall, out);
                next = Some(request);
            }
            AckKind::Nak { delay } => self.nak(target, delay, now, wall, out),
            AckKind::Progress => {
                if self.state().pending.contains_key(&target.stream_seq) {
                    self.disarm(target.stream_seq);
                    self.arm(target.stream_seq, now + self.rules.ack_wait);
                }
            }
            AckKind::Term { reason } => self.terminate(target, &reason, wall, out),
            AckKind::Unknown => {}
        }
        // An ack with a reply (AckSync) is confirmed; `+NXT` replies go to
        // the pull request instead.
        if !reply.is_empty() && next.is_none() {
            out.push_back(JsAction::Publish {
                account: self.rules.account.as_str().into(),
                subject: Bytes::copy_from_slice(reply),
                reply: Bytes::new(),
                headers: Bytes::new(),
                payload: Bytes::new(),
            });
        }
        self.check();
        next
    }

    /// A reply to a flow-control request on `subject` with its `headers`.
    /// Only the answer to the latest request counts, as in the reference;
    /// for a `flow_control` ack policy its `Nats-Last-Stream` (with a
    /// non-zero `Nats-Last-Consumer`) acks everything up to it.
    pub fn handle_flow_control(
        &mut self,
        subject: &[u8],
        headers: &[u8],
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let latest = self
            .push
            .outstanding
            .as_deref()
            .is_some_and(|expected| expected.as_bytes() == subject);
        if !latest {
            return;
        }
        self.push.answered();
        if !self.rules.flow_control_acks {
            return;
        }
        let number = |key: &[u8]| {
            crate::protocol::find_header(headers, key)
                .and_then(|value| std::str::from_utf8(value).ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (last_consumer, last_stream) =
            (number(b"Nats-Last-Consumer"), number(b"Nats-Last-Stream"));
        // A zero delivery sequence (an answer before any delivery) acks
        // nothing, as the reference's ack-all check reads it.
        if last_consumer == 0 || last_stream == 0 {
            return;
        }
        // The floor moves to the newest pending message the answer covers
        // (the answer may name a sequence this consumer delivered before a
        // reset, or one past its pending ones), with its own delivery.
        let covered = self
            .state()
            .pending
            .range(..=last_stream)
            .next_back()
            .map(|(&seq, pending)| (seq, pending.sequence));
        if let Some((stream_seq, consumer_seq)) = covered {
            let target = AckTarget {
                delivered: 1,
                stream_seq,
                consumer_seq,
            };
            self.ack(target, wall, out);
            debug_assert!(self.state().ack_floor.stream >= stream_seq);
        }
        self.check();
    }

    /// The stream sequences an ack of `seq` covers, as the tracker applies
    /// it: under `all` (and flow-control acks) every one up to it.
    fn acked_by(&self, seq: u64) -> std::ops::RangeInclusive<u64> {
        match self.rules.ack {
            AckPolicy::All => 0..=seq,
            _ => seq..=seq,
        }
    }

    /// Whether unacknowledged messages are sent again (ack wait, naks):
    /// not without acks, nor when flow control acks them.
    fn redelivers(&self) -> bool {
        self.rules.ack != AckPolicy::None && !self.rules.flow_control_acks
    }

    fn ack(&mut self, target: AckTarget, wall: WallTime, out: &mut VecDeque<JsAction>) {
        if self.rules.ack == AckPolicy::None {
            return;
        }
        if self.rules.ack == AckPolicy::Explicit {
            self.sample_ack(target, wall, out);
        }
        let pending = &self.store.tracker().state().pending;
        match self.rules.ack {
            AckPolicy::All => self
                .settled
                .extend(pending.range(..=target.stream_seq).map(|(&seq, _)| seq)),
            _ if pending.contains_key(&target.stream_seq) => self.settled.push(target.stream_seq),
            _ => {}
        }
        // As the reference: a pending message is found by its stream
        // sequence and acked with the consumer sequence of its first
        // delivery. The ack subject's consumer sequence may name another
        // delivery: one made before a restart that numbered them anew.
        let consumer_seq = match self.state().pending.get(&target.stream_seq) {
            Some(pending) if self.rules.ack == AckPolicy::Explicit => pending.sequence,
            _ => target.consumer_seq,
        };
        let tracker = self.store.tracker_mut();
        if tracker
            .update_acks(consumer_seq, target.stream_seq)
            .is_err()
        {
            // Not pending (acked already, or never delivered): nothing to do.
            return;
        }
        self.forget_acked(self.acked_by(target.stream_seq));
        #[cfg(feature = "planted-defects")]
        if self.planted(crate::server::PlantedDefect::ConsumerAckLostOnRestart) {
            let _ = self.store.tracker_mut().take_dirty();
        }
        // The reference stamps the floor's `last_active` with every ack
        // it takes, whether or not the floor moved.
        self.last_ack = Some(wall);
    }

    fn nak(
        &mut self,
        target: AckTarget,
        delay: Option<Duration>,
        now: Instant,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let seq = target.stream_seq;
        if !self.state().pending.contains_key(&seq) {
            return;
        }
        self.advise_nak(target, wall, out);
        self.disarm(seq);
        match delay {
            Some(delay) if !delay.is_zero() => self.arm(seq, now + delay),
            _ => {
                // As when its ack wait runs out: a message that went out
                // `max_deliver` times is given up, never sent once more.
                let count = self.delivery_count(seq);
                if self.rules.max_deliver.is_some_and(|max| count >= max) {
                    self.give_up(seq, count, wall, out);
                } else {
                    self.redeliver.insert(seq);
                }
            }
        }
    }

    fn terminate(
        &mut self,
        target: AckTarget,
        reason: &str,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let seq = target.stream_seq;
        let Some(pending) = self.state().pending.get(&seq).copied() else {
            return;
        };
        // Under `all` a termination acks everything below it too (the
        // reference takes it as an ack): those are settled with it.
        let below: Vec<u64> = self
            .state()
            .pending
            .range(self.acked_by(seq))
            .map(|(&seq, _)| seq)
            .collect();
        self.store
            .tracker_mut()
            .update_acks(pending.sequence, seq)
            .expect("the message is pending");
        self.forget_acked(self.acked_by(seq));
        self.settled.extend(below);
        self.last_ack = Some(wall);
        self.advise_terminated(target, reason, wall, out);
    }

    // ----- timers -----

    /// The earliest instant [`Consumer::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let redelivery = self.deadlines.first().map(|&(at, _)| at);
        let heartbeat = self
            .push
            .next_heartbeat
            .filter(|_| self.interest && !self.pacing.holding());
        redelivery
            .into_iter()
            .chain(self.waiting.next_deadline())
            .chain(heartbeat)
            .chain(self.resume_at)
            .chain(self.pin.as_ref().map(|pin| pin.expires))
            .chain(self.pacing.deadline())
            .chain(self.push.resume)
            .min()
    }

    /// Time passed: redeliveries fall due, pull requests expire, idle
    /// heartbeats go out. The caller pumps afterwards (which also goes on
    /// with a push burst cut short).
    pub fn handle_timeout(&mut self, now: Instant, wall: WallTime, out: &mut VecDeque<JsAction>) {
        self.pacing.release(now);
        if self.resume_at.is_some_and(|at| at <= now) {
            self.resume_at = None;
        }
        if self.pin.as_ref().is_some_and(|pin| pin.expires <= now) {
            self.unpin("timeout", wall, out);
        }
        while let Some(&(at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.due.remove(&seq);
            let count = self.delivery_count(seq);
            if self.rules.max_deliver.is_some_and(|max| count >= max) {
                self.give_up(seq, count, wall, out);
            } else {
                self.redeliver.insert(seq);
            }
        }
        self.expire_requests(now, out);
        let account = self.rules.account.clone();
        let heartbeat = self.heartbeat_block();
        let mut beats = Vec::new();
        self.waiting.take_where(|request| {
            if let (Some(at), Some(every)) = (request.next_heartbeat, request.heartbeat) {
                if at <= now {
                    beats.push(request.reply.clone());
                    request.next_heartbeat = Some(now + every);
                }
            }
            false
        });
        for reply in beats {
            out.push_back(status_message(&account, &reply, heartbeat.clone()));
        }
        if let (Some(at), Some(push)) = (self.push.next_heartbeat, &self.rules.push) {
            if at <= now && self.interest && !self.pacing.holding() {
                let mut block = heartbeat;
                if let Some(fc) = &self.push.outstanding {
                    block = with_header(&block, "Nats-Consumer-Stalled", fc);
                }
                out.push_back(status_message(&account, &push.deliver_subject, block));
                self.push.next_heartbeat = self.heartbeat_interval().map(|every| now + every);
                // Acks come only from flow control: with messages pending
                // and no request out, each heartbeat asks for one.
                if self.rules.flow_control_acks
                    && !self.state().pending.is_empty()
                    && self.push.outstanding.is_none()
                {
                    let deliver_subject = push.deliver_subject.clone();
                    self.send_flow_control(&deliver_subject, out);
                }
            }
        }
        self.check();
    }

    /// Pull requests past their `expires` are told `408 Request Timeout`
    /// and dropped.
    fn expire_requests(&mut self, now: Instant, out: &mut VecDeque<JsAction>) {
        let account = &self.rules.account;
        for request in self
            .waiting
            .take_where(|request| request.expires.is_some_and(|at| at <= now))
        {
            let headers = status(408, "Request Timeout", &pending_headers(&request));
            out.push_back(status_message(account, &request.reply, headers));
        }
    }

    /// The server found no subscriber left on `reply`: the requests
    /// waiting there are dropped without a word, as the reference drops a
    /// request whose interest is gone.
    pub fn reply_gone(&mut self, account: &str, reply: &[u8]) {
        self.waiting
            .take_where(|request| request.reply == reply && request.account == account);
        self.check();
    }

    /// The reply subjects that started or stopped being waited on since
    /// the last call (see [`WaitQueue::take_reply_changes`]).
    pub fn take_reply_changes(&mut self) -> Vec<(String, Bytes, bool)> {
        self.waiting.take_reply_changes()
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        self.rules
            .push
            .as_ref()
            .and_then(|push| push.idle_heartbeat)
    }

    fn heartbeat_block(&self) -> Bytes {
        status(
            100,
            "Idle Heartbeat",
            &[
                (
                    "Nats-Last-Consumer",
                    self.state().delivered.consumer.to_string(),
                ),
                (
                    "Nats-Last-Stream",
                    self.next_seq.saturating_sub(1).to_string(),
                ),
            ],
        )
    }

    /// A message reached `max_deliver`: it stays unacknowledged but is
    /// never sent again; it stops counting as pending.
    fn give_up(&mut self, seq: u64, count: u64, wall: WallTime, out: &mut VecDeque<JsAction>) {
        let Some(pending) = self.state().pending.get(&seq).copied() else {
            return;
        };
        self.store
            .tracker_mut()
            .update_acks(pending.sequence, seq)
            .expect("the message is pending");
        self.forget_acked(self.acked_by(seq));
        self.advise_max_deliveries(seq, count, wall, out);
    }

    // ----- delivery -----

    /// Send every message that can go out now.
    pub fn pump(
        &mut self,
        store: &mut Store<D>,
        now: Instant,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let push = self.rules.push.clone();
        // Messages at or after `next_seq` matching the filter: counted once
        // per pump (a walk when the stream has gaps or the filter partial
        // subjects), then kept by hand: a new delivery is the first match
        // at or after `next_seq`, so it leaves exactly one fewer.
        let mut new_pending: Option<u64> = None;
        // Whether pacing holds the next delivery (not out of work).
        let mut held = false;
        // Bytes sent by this pump (push consumers), and whether it stopped
        // at `PUSH_BURST` (not out of work either).
        let (mut burst, mut cut) = (0u64, false);
        self.push.resume = None;
        // An expired request gets its 408, never a message.
        self.expire_requests(now, out);
        loop {
            if push.is_none() && self.waiting.is_empty() {
                break;
            }
            if push.is_some() && !self.interest {
                break;
            }
            if self.resume_at.is_some() {
                break;
            }
            if push.is_some() && self.push.stalled() {
                break;
            }
            if push.is_some() && burst >= PUSH_BURST {
                self.push.resume = Some(now);
                cut = true;
                break;
            }
            let Some((msg, count, source)) = self
                .released_candidate(store)
                .or_else(|| self.candidate(store))
            else {
                break;
            };
            let consumer_seq = self.state().delivered.consumer + 1;
            let new_count = *new_pending.get_or_insert_with(|| {
                store
                    .count_from(&self.rules.filter, self.next_seq)
                    .unwrap_or(0)
            });
            debug_assert!(source != Source::New || new_count > 0);
            let new_after = match source {
                Source::New => new_count.saturating_sub(1),
                Source::LastPerSubject | Source::Redelivery => new_count,
            };
            // The last-per-subject set still to send, without this one.
            let lps_after =
                self.last_per_subject.len() as u64 - u64::from(source == Source::LastPerSubject);
            let pending_after = new_after + lps_after;
            let target = AckTarget {
                delivered: count,
                stream_seq: msg.seq,
                consumer_seq,
            };
            let reply = self.ack_subjects.subject(
                &self.rules.stream,
                &self.rules.name,
                target,
                msg.ts.0,
                pending_after,
            );
            let (headers, payload) = if self.rules.headers_only {
                let size = msg.payload.len().to_string();
                (
                    with_header(&msg.headers, "Nats-Msg-Size", &size),
                    Bytes::new(),
                )
            } else {
                (msg.headers.clone(), msg.payload.clone())
            };
            let size = (msg.subject.len() + reply.len() + headers.len() + payload.len()) as u64;
            if self.pacing.pace(msg.seq, msg.ts, size, now) == Pace::Wait {
                held = true;
                self.hold_heartbeats();
                break;
            }
            let to = match &push {
                Some(push) => push.deliver_subject.clone(),
                None => {
                    let mut just_pinned = false;
                    if self.rules.priority_policy == PriorityPolicy::PinnedClient {
                        match self.select_pinned(now, wall, out) {
                            Some(assigned) => just_pinned = assigned,
                            None => break,
                        }
                    }
                    // Overflow requests whose minimums are not reached go
                    // to the back, as the reference cycles them; when none
                    // is ready, nothing is sent.
                    let pending_now = match source {
                        Source::Redelivery => new_count + lps_after + 1,
                        Source::New | Source::LastPerSubject => pending_after + 1,
                    };
                    let mut cycled = 0;
                    while !self
                        .overflow_ready(self.waiting.front().expect("checked above"), pending_now)
                        && cycled < self.waiting.len()
                    {
                        self.waiting.cycle();
                        cycled += 1;
                    }
                    if cycled == self.waiting.len() {
                        break;
                    }
                    let request = self.waiting.front_mut().expect("checked above");
                    if request.has_max_bytes {
                        if size > request.bytes_left {
                            let request = self.waiting.pop_front().expect("front exists");
                            // A pin given for this very message is taken
                            // back (no advisory), as the reference does.
                            if just_pinned {
                                self.pin = None;
                            }
                            let headers = status(
                                409,
                                "Message Size Exceeds MaxBytes",
                                &pending_headers(&request),
                            );
                            out.push_back(status_message(
                                &request.account,
                                &request.reply,
                                headers,
                            ));
                            continue;
                        }
                        request.bytes_left -= size;
                        if request.bytes_left == 0 {
                            request.batch_left = 1;
                        }
                    }
                    request.batch_left -= 1;
                    request.delivered += 1;
                    request.next_heartbeat = request.heartbeat.map(|every| now + every);
                    let to = request.reply.clone();
                    if request.batch_left == 0 {
                        self.waiting.pop_front();
                    } else if self.rules.priority_policy == PriorityPolicy::Prioritized {
                        // Requeued behind its own level, as the reference
                        // does: requests of one priority take turns.
                        let request = self.waiting.pop_front().expect("front exists");
                        self.waiting.insert_by_priority(request);
                    }
                    to
                }
            };
            let headers = match &self.pin {
                Some(pin) if push.is_none() => with_header(&headers, "Nats-Pin-Id", &pin.id),
                _ => headers,
            };
            self.commit(&msg, count, source, consumer_seq, now, wall);
            new_pending = Some(new_after);
            out.push_back(JsAction::Deliver {
                account: self.account.clone(),
                to: to.clone(),
                subject: msg.subject.clone(),
                reply,
                headers,
                payload,
            });
            if let Some(push) = &push {
                burst += size;
                if push.flow_control {
                    self.push.in_flight += size;
                }
                self.push.next_heartbeat = push.idle_heartbeat.map(|every| now + every);
                // With acks by flow control, reaching `max_ack_pending`
                // asks too: nothing else would free the window.
                if push.flow_control
                    && (self.push.wants_request()
                        || (self.rules.flow_control_acks
                            && self.push.outstanding.is_none()
                            && self.at_max_ack_pending()))
                {
                    self.send_flow_control(&push.deliver_subject, out);
                }
            }
        }
        if !held && !cut {
            self.pacing.idle(self.next_seq);
        }
        self.end_no_wait(store, out);
        self.check();
    }

    /// While a delivery is held the reference's delivery loop sleeps and
    /// sends no heartbeats: the next ones are due an interval after the
    /// hold ends (a delivery then starts them over).
    fn hold_heartbeats(&mut self) {
        let Some(until) = self.pacing.deadline() else {
            return;
        };
        if let (Some(at), Some(every)) = (self.push.next_heartbeat, self.heartbeat_interval()) {
            self.push.next_heartbeat = Some(at.max(until + every));
        }
        self.waiting.take_where(|request| {
            if let (Some(at), Some(every)) = (request.next_heartbeat, request.heartbeat) {
                request.next_heartbeat = Some(at.max(until + every));
            }
            false
        });
    }

    /// After a pump, a `no_wait` request that could not be filled ends: a
    /// `404` when it never had an expiry or already got something.
    fn end_no_wait(&mut self, store: &mut Store<D>, out: &mut VecDeque<JsAction>) {
        if !self.waiting.iter().any(|request| request.no_wait) {
            return;
        }
        let more = !self.redeliver.is_empty() || self.num_pending(store) > 0;
        let blocked = self.at_max_ack_pending();
        if more && !blocked {
            return;
        }
        for request in self.waiting.take_where(|request| {
            request.no_wait && (request.expires.is_none() || request.delivered > 0)
        }) {
            out.push_back(status_message(
                &request.account,
                &request.reply,
                status(404, "No Messages", &[]),
            ));
        }
    }

    fn send_flow_control(&mut self, deliver_subject: &Bytes, out: &mut VecDeque<JsAction>) {
        self.push.fc_count += 1;
        // Unique per request; the reference uses four random characters.
        let token = format!("{:04}", self.push.fc_count % 10_000);
        let reply = format!(
            "{}{}.{}.{token}",
            ack::FC_PREFIX,
            self.rules.stream,
            self.rules.name
        );
        out.push_back(JsAction::Publish {
            account: self.rules.account.as_str().into(),
            subject: deliver_subject.clone(),
            reply: Bytes::from(reply.clone()),
            headers: Bytes::from_static(b"NATS/1.0 100 FlowControl Request\r\n\r\n"),
            payload: Bytes::new(),
        });
        self.push.outstanding = Some(reply);
        self.push.covered = self.push.in_flight;
    }

    fn at_max_ack_pending(&self) -> bool {
        self.rules.ack != AckPolicy::None
            && self
                .rules
                .max_ack_pending
                .is_some_and(|max| self.state().pending.len() as u64 >= max)
    }

    /// The message pacing held and now releases, when it can still go: the
    /// reference had it in hand while it slept, so it goes before any
    /// redelivery that fell due meanwhile, whatever `max_ack_pending`.
    fn released_candidate(&mut self, store: &mut Store<D>) -> Option<(StoredMsg, u64, Source)> {
        let seq = self.pacing.released()?;
        if self.redeliver.contains(&seq) && self.state().pending.contains_key(&seq) {
            let msg = store.load_msg(seq).ok()?;
            return Some((msg, self.delivery_count(seq) + 1, Source::Redelivery));
        }
        if seq >= self.next_seq && self.last_per_subject.is_empty() {
            let msg = store.load_next(&self.rules.filter, self.next_seq).ok()?;
            if msg.seq == seq {
                return Some((msg, 1, Source::New));
            }
        }
        None
    }

    /// The next message to send, without taking it yet.
    fn candidate(&mut self, store: &mut Store<D>) -> Option<(StoredMsg, u64, Source)> {
        while let Some(&seq) = self.redeliver.first() {
            if self.state().pending.contains_key(&seq) {
                match store.load_msg(seq) {
                    Ok(msg) => {
                        return Some((msg, self.delivery_count(seq) + 1, Source::Redelivery))
                    }
                    Err(_) => {
                        // Gone from the stream (removed, purged, expired):
                        // nothing to redeliver, nothing left to ack.
                        self.redeliver.remove(&seq);
                        self.drop_pending(seq);
                        continue;
                    }
                }
            }
            self.redeliver.remove(&seq);
        }
        if self.at_max_ack_pending() {
            return None;
        }
        while let Some(&seq) = self.last_per_subject.front() {
            match store.load_msg(seq) {
                Ok(msg) if self.rules.filter.matches(&msg.subject) => {
                    return Some((msg, 1, Source::LastPerSubject))
                }
                _ => {
                    self.last_per_subject.pop_front();
                }
            }
        }
        let msg = store.load_next(&self.rules.filter, self.next_seq).ok()?;
        Some((msg, 1, Source::New))
    }

    /// Record that `msg` went out.
    fn commit(
        &mut self,
        msg: &StoredMsg,
        count: u64,
        source: Source,
        consumer_seq: u64,
        now: Instant,
        wall: WallTime,
    ) {
        debug_assert!(!self.pacing.holding(), "a delivery while pacing holds");
        match source {
            Source::Redelivery => {
                self.redeliver.remove(&msg.seq);
            }
            Source::LastPerSubject => {
                let taken = self.last_per_subject.pop_front();
                debug_assert_eq!(taken, Some(msg.seq));
            }
            Source::New => {
                assert!(msg.seq >= self.next_seq, "a new delivery went backwards");
                self.next_seq = msg.seq + 1;
            }
        }
        self.store
            .tracker_mut()
            .update_delivered(consumer_seq, msg.seq, count, wall)
            .expect("deliveries are valid for the ack policy");
        debug_assert_eq!(self.state().delivered.consumer, consumer_seq);
        if self.rules.flow_control_acks {
            // Pending until a flow-control answer covers it; never sent
            // again.
        } else if self.rules.ack != AckPolicy::None {
            #[allow(unused_mut)]
            let mut delay = self.rules.redelivery_delay(count);
            #[cfg(feature = "planted-defects")]
            if source == Source::Redelivery
                && self.planted(crate::server::PlantedDefect::RedeliveryTimerNotRearmed)
            {
                delay = Duration::from_secs(365 * 24 * 3600);
            }
            self.arm(msg.seq, now + delay);
        } else {
            self.settled.push(msg.seq);
        }
        self.last_delivery = Some(wall);
        self.pacing.delivered(msg.ts);
    }

    /// How many times the pending message at `seq` went out.
    fn delivery_count(&self, seq: u64) -> u64 {
        1 + self.state().redelivered.get(&seq).copied().unwrap_or(0)
    }

    fn arm(&mut self, seq: u64, at: Instant) {
        debug_assert!(!self.due.contains_key(&seq));
        self.redeliver.remove(&seq);
        self.due.insert(seq, at);
        self.deadlines.insert((at, seq));
    }

    fn disarm(&mut self, seq: u64) {
        if let Some(at) = self.due.remove(&seq) {
            self.deadlines.remove(&(at, seq));
        }
        self.redeliver.remove(&seq);
    }

    /// A pending message disappeared from the stream: settle it like an
    /// ack so the floor can pass it.
    fn drop_pending(&mut self, seq: u64) {
        if let Some(pending) = self.state().pending.get(&seq).copied() {
            let _ = self.store.tracker_mut().update_acks(pending.sequence, seq);
        }
        self.forget_acked(self.acked_by(seq));
    }

    /// Drop the timers of the messages in `seqs` that are no longer
    /// pending. Only the range an ack can have settled is looked at: a scan
    /// of every timer per ack made acking cost O(pending).
    fn forget_acked(&mut self, seqs: std::ops::RangeInclusive<u64>) {
        let pending = &self.store.tracker().state().pending;
        let gone: Vec<u64> = self
            .due
            .range(seqs.clone())
            .map(|(seq, _)| seq)
            .chain(self.redeliver.range(seqs))
            .filter(|seq| !pending.contains_key(seq))
            .copied()
            .collect();
        for seq in gone {
            self.disarm(seq);
        }
    }

    /// The stream dropped messages (a purge or a delete): what was pending
    /// among them is settled, and a purge past the consumer moves it up to
    /// the stream's new first message, as the reference does.
    pub fn stream_shrunk(&mut self, store: &mut Store<D>) {
        let gone: Vec<u64> = self
            .state()
            .pending
            .keys()
            .copied()
            .filter(|&seq| store.load_msg(seq).is_err())
            .collect();
        for seq in gone {
            self.drop_pending(seq);
        }
        let first = store.state().first_seq;
        if self.next_seq < first {
            self.next_seq = first;
            self.last_per_subject.retain(|&seq| seq >= first);
            self.store.tracker_mut().update_starting(first - 1);
        }
        if self.rules.ack != AckPolicy::None {
            self.store.tracker_mut().settle_floor();
        }
        self.check();
    }

    /// The consumer stops without being deleted (its account's JetStream
    /// was turned off): waiting requests are forgotten unanswered, as the
    /// reference's stopped consumer forgets them; the requesters' own
    /// expiry tells them.
    pub fn stop(&mut self) {
        drop(self.waiting.take_where(|_| true));
    }

    /// The consumer is going away: tell every waiting requester.
    pub fn close(&mut self, out: &mut VecDeque<JsAction>) {
        for request in self.waiting.take_where(|_| true) {
            out.push_back(status_message(
                &request.account,
                &request.reply,
                status(409, "Consumer Deleted", &[]),
            ));
        }
    }

    // ----- advisories -----

    fn advise_nak(&self, target: AckTarget, wall: WallTime, out: &mut VecDeque<JsAction>) {
        let body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.nak",
            "timestamp": crate::format::rfc3339_nanos(wall),
            "stream": self.rules.stream,
            "consumer": self.rules.name,
            "consumer_seq": target.consumer_seq,
            "stream_seq": target.stream_seq,
            "deliveries": target.delivered,
        });
        self.advise("MSG_NAKED", body, out);
    }

    fn advise_terminated(
        &self,
        target: AckTarget,
        reason: &str,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.terminated",
            "timestamp": crate::format::rfc3339_nanos(wall),
            "stream": self.rules.stream,
            "consumer": self.rules.name,
            "consumer_seq": target.consumer_seq,
            "stream_seq": target.stream_seq,
            "deliveries": target.delivered,
            "reason": reason,
        });
        self.advise("MSG_TERMINATED", body, out);
    }

    fn advise_max_deliveries(
        &self,
        seq: u64,
        count: u64,
        wall: WallTime,
        out: &mut VecDeque<JsAction>,
    ) {
        let body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.max_deliver",
            "timestamp": crate::format::rfc3339_nanos(wall),
            "stream": self.rules.stream,
            "consumer": self.rules.name,
            "stream_seq": seq,
            "deliveries": count,
        });
        self.advise("MAX_DELIVERIES", body, out);
    }

    fn advise(&self, kind: &str, body: serde_json::Value, out: &mut VecDeque<JsAction>) {
        out.push_back(JsAction::Publish {
            account: self.rules.account.as_str().into(),
            subject: Bytes::from(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.{kind}.{}.{}",
                self.rules.stream, self.rules.name
            )),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from(body.to_string()),
        });
    }

    /// The invariants in the module comment. O(pending): debug builds only
    /// (a release build did not drop the empty walk of `pending`).
    fn check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let state = self.state();
        for &seq in state.pending.keys() {
            if self.redelivers() {
                debug_assert!(
                    self.due.contains_key(&seq) != self.redeliver.contains(&seq),
                    "pending {seq} must have exactly one of a deadline or a redelivery slot"
                );
            } else {
                debug_assert!(!self.due.contains_key(&seq) && !self.redeliver.contains(&seq));
            }
        }
        debug_assert_eq!(self.due.len(), self.deadlines.len());
        debug_assert!(self.due.keys().all(|seq| state.pending.contains_key(seq)));
        debug_assert!(self.waiting.len() <= self.rules.max_waiting.max(1));
        let push = &self.push;
        debug_assert!(push.covered <= push.in_flight);
        debug_assert!(push.outstanding.is_some() || push.covered == 0);
        debug_assert!((FLOW_CONTROL_START..=FLOW_CONTROL_MAX).contains(&push.window));
    }
}

/// The first stream sequence stored at or after `at` (past the last when
/// none is).
fn seq_from_time<D: Disk>(store: &mut Store<D>, at: WallTime) -> u64 {
    let state = store.state();
    let mut seq = state.first_seq.max(1);
    loop {
        match store.load_next(&Filter::All, seq) {
            Ok(msg) if msg.ts >= at => break msg.seq,
            Ok(msg) => seq = msg.seq + 1,
            Err(_) => break state.last_seq + 1,
        }
    }
}

/// When a pause in `rules` ends on the monotonic clock (`None`: not paused).
fn resume_at(rules: &ConsumerRules, now: Instant, wall: WallTime) -> Option<Instant> {
    let until = rules.pause_until.filter(|until| *until > wall)?;
    Some(now + Duration::from_nanos(until.0 - wall.0))
}

/// A status message (no payload) to `reply` in `account`.
fn status_message(account: &str, reply: &[u8], headers: Bytes) -> JsAction {
    JsAction::Publish {
        account: account.into(),
        subject: Bytes::copy_from_slice(reply),
        reply: Bytes::new(),
        headers,
        payload: Bytes::new(),
    }
}

/// `block` (a header block, possibly empty) with `name: value` added.
fn with_header(block: &[u8], name: &str, value: &str) -> Bytes {
    let mut out = Vec::with_capacity(block.len() + name.len() + value.len() + 16);
    if block.len() >= 4 && block.ends_with(b"\r\n\r\n") {
        out.extend_from_slice(&block[..block.len() - 2]);
    } else {
        out.extend_from_slice(b"NATS/1.0\r\n");
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
