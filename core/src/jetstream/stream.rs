//! One stream: a sans-I/O machine over its store.
//!
//! Role: take the messages published on the stream's subjects, check them
//! against the publish headers (`Nats-Msg-Id`, `Nats-Expected-*`,
//! `Nats-Rollup`, `Nats-TTL`), store them, and acknowledge each to its
//! publisher once the store says it is durable. It also answers the
//! per-stream API calls the API handler forwards (info, purge, get, delete).
//! What the stream does is decided by its [`StreamRules`], derived from the
//! stream's configuration; the configuration itself is kept for reporting.
//! Per message it also rewrites the subject (`subject_transform`), sends
//! what it stored on (`republish`), and, when expiry takes a subject's last
//! message, stores a subject delete marker in its place.
//!
//! Inputs: [`Stream::publish`], the API calls, [`Stream::handle_sync_done`],
//! [`Stream::handle_timeout`]. Outputs: [`JsAction`]s pushed on the queue
//! handed in (acks and republished messages to publish, syncs for the
//! runtime, log lines).
//!
//! Invariants:
//! - A publish acknowledgement for sequence `s` leaves only after the store
//!   reported `Durable { through >= s }` (under the default sync policy,
//!   after an fsync covering `s`). `waiting` holds exactly the acks whose
//!   sequence is above `durable`.
//! - `durable` never decreases and never passes the store's last sequence.
//! - Every id in `dedupe` names a stored sequence published within the
//!   duplicate window (as of the last publish or timer).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::link::{JsAction, StreamId};
use super::room::Room;
use crate::protocol::find_header;
use crate::server::LogLevel;
use crate::store::{
    Disk, Expired, ExpiryCause, FileStore, Filter, MemStore, StoreAction, StoreConfig, StoreError,
    StoreResult, StoreState, StoredMsg, SubjectEmptied, SubjectState,
};
use crate::subject::SubjectTransform;
use crate::time::{Instant, WallTime};

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    #[default]
    File,
    Memory,
}

/// What a stream does, derived from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamRules {
    pub name: String,
    pub storage: Storage,
    /// Limits the store applies.
    pub limits: StoreConfig,
    /// The largest headers plus payload accepted (`max_msg_size`).
    pub max_msg_size: Option<u64>,
    /// How long a `Nats-Msg-Id` is remembered (zero: no deduplication).
    pub duplicate_window: Duration,
    pub sealed: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
    pub allow_rollup: bool,
    pub allow_msg_ttl: bool,
    /// `allow_msg_counter`: messages carry `Nats-Incr`, the stream stores
    /// running totals ([`super::counter`]).
    pub allow_msg_counter: bool,
    /// `allow_msg_schedules`: `Nats-Schedule` messages produce messages
    /// on the stream's subjects when due ([`super::schedule`]).
    pub allow_msg_schedules: bool,
    /// `allow_atomic`: messages with `Nats-Batch-Id` are staged until
    /// their batch commits ([`super::batch`]).
    pub allow_atomic: bool,
    /// `allow_batched`: messages with a fast batch reply (`...$FI`) are
    /// stored as they come, acked by flow ([`super::fast_batch`]).
    pub allow_batched: bool,
    /// The stream's subjects (a schedule's target must be among them).
    pub subjects: Vec<String>,
    /// `no_ack`: publishes get no acknowledgement.
    pub no_ack: bool,
    /// The server's JetStream domain, named in every ack (empty: none).
    pub domain: String,
    /// `subject_delete_marker_ttl`, in whole seconds as the reference uses
    /// it: when expiry takes a subject's last message, a marker stays.
    pub delete_marker_ttl: Option<u64>,
    /// `subject_transform`: incoming subjects are rewritten before storing.
    pub subject_transform: Option<SubjectTransform>,
    /// `republish`: each stored message is sent on to the mapped subject.
    pub republish: Option<RepublishRule>,
}

/// Where and how stored messages are republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishRule {
    /// `src` → `dest`; a subject `src` does not match is not republished.
    pub transform: SubjectTransform,
    /// Send the headers and the payload's size (`Nats-Msg-Size`) only.
    pub headers_only: bool,
}

/// Why a publish was refused: the wire error the publisher gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// `Nats-Expected-Stream` names another stream.
    WrongStream,
    /// `Nats-Expected-Last-Sequence` or `-Last-Subject-Sequence` did not
    /// match; carries the actual last sequence.
    WrongLastSequence(u64),
    /// `Nats-Expected-Last-Msg-Id` did not match; carries the actual one.
    WrongLastMsgId(String),
    /// The stream is sealed.
    Sealed,
    /// `Nats-Rollup` on a stream that does not allow it.
    RollupNotPermitted,
    /// `Nats-Rollup` with a value other than `sub` or `all`.
    InvalidRollup(String),
    /// `Nats-TTL` on a stream without `allow_msg_ttl`.
    TtlDisabled,
    /// `Nats-TTL` that does not parse.
    InvalidTtl,
    /// The message is larger than `max_msg_size`.
    TooLarge,
    /// The store refused it (limits with discard new, a disk failure).
    Store(StoreError),
    /// The server's `max_memory_store` / `max_file_store` is used up.
    InsufficientResources,
    /// The account's `max_mem` / `max_file` is used up.
    AccountResources,
    /// A check with a fixed-text API error (counters, schedules).
    Rejected(super::errors::ApiErrorKind),
    /// A client's message carries `Nats-Stream-Source`, which only
    /// sourcing may write ([`super::sourcing`]).
    SourceHeaderNotAllowed,
    /// An atomic batch longer than the limit it carries.
    BatchTooLarge(u64),
    /// An atomic batch uses a header batches do not support.
    BatchUnsupportedHeader(&'static str),
    /// `Nats-Rollup` in an atomic batch where it may not be.
    RollupFailed(&'static str),
}

/// A publisher waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WaitingAck {
    seq: u64,
    /// In the stream's account (which is the publisher's).
    reply: Bytes,
    body: AckBody,
}

/// What a waiting acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AckBody {
    /// The ack of one message (or of a duplicate of it), with a counter
    /// stream's new total for its `val`.
    Stored {
        duplicate: bool,
        total: Option<String>,
    },
    /// The atomic batch this ack commits, and how many it stored.
    Batch { id: String, count: u64 },
    /// A fast batch's flow ack or PubAck, written already.
    Written(Bytes),
}

/// The reply a message's batch protocol is read from: its own, whatever
/// its headers, or through an import the reply it had (`crossed_reply`).
fn batch_reply<'a>(reply: &'a [u8], crossed_reply: &'a [u8]) -> &'a [u8] {
    if crossed_reply.is_empty() || reply.ends_with(super::fast_batch::SUFFIX) {
        reply
    } else {
        crossed_reply
    }
}

/// The ids of recent messages (`Nats-Msg-Id`), forgotten after the window.
#[derive(Debug, Default)]
struct Dedupe {
    ids: BTreeMap<Bytes, u64>,
    /// `(stored at, id)` in the order stored, for expiry.
    order: VecDeque<(WallTime, Bytes)>,
    /// The id of the last message stored, `None` when it had none
    /// (`Nats-Expected-Last-Msg-Id` compares with this, as the reference).
    last: Option<Bytes>,
    /// Opened from disk and not yet rebuilt: the first publish that needs
    /// the ids rebuilds them. Rebuilding reads every message inside the
    /// window, which at start-up cost a second per million messages for
    /// streams that never see a `Nats-Msg-Id`.
    stale: bool,
}

impl Dedupe {
    fn expire(&mut self, now: WallTime, window: Duration) {
        let window = nanos(window);
        while let Some((at, _)) = self.order.front() {
            if at.0.saturating_add(window) > now.0 {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.ids.remove(&id);
        }
        debug_assert_eq!(self.ids.len(), self.order.len());
    }

    fn remember(&mut self, id: Bytes, seq: u64, at: WallTime) {
        if self.ids.insert(id.clone(), seq).is_none() {
            self.order.push_back((at, id));
        }
    }

    fn next_expiry(&self, window: Duration) -> Option<WallTime> {
        let (at, _) = self.order.front()?;
        Some(WallTime(at.0.saturating_add(nanos(window))))
    }
}

/// A stream's store: the same engine over memory or files. (The file
/// engine is larger; a stream holds one store for its life, so the size
/// difference costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
pub enum Store<D: Disk> {
    Memory(MemStore),
    File(FileStore<D>),
}

/// Run `$body` with `$store` bound to whichever engine the stream has.
macro_rules! on_store {
    ($self:expr, $store:ident => $body:expr) => {
        match $self {
            Store::Memory($store) => $body,
            Store::File($store) => $body,
        }
    };
}

impl<D: Disk> Store<D> {
    pub fn state(&self) -> StoreState {
        on_store!(self, s => s.state())
    }
    /// Write the store's full-state snapshot (a memory store has none).
    pub fn write_snapshot(&mut self) -> StoreResult<()> {
        on_store!(self, s => s.write_snapshot())
    }
    pub fn load_msg(&mut self, seq: u64) -> StoreResult<StoredMsg> {
        on_store!(self, s => s.load_msg(seq))
    }
    pub fn load_next(&mut self, filter: &Filter, start: u64) -> StoreResult<StoredMsg> {
        on_store!(self, s => s.load_next(filter, start))
    }
    pub fn load_last(&mut self, filter: &Filter) -> StoreResult<StoredMsg> {
        on_store!(self, s => s.load_last(filter))
    }
    pub fn subjects_state(&self, filter: &Filter) -> BTreeMap<Bytes, SubjectState> {
        on_store!(self, s => s.subjects_state(filter))
    }
    pub fn deleted(&mut self) -> Vec<u64> {
        on_store!(self, s => s.deleted().collect())
    }
    pub fn count_from(&mut self, filter: &Filter, start: u64) -> StoreResult<u64> {
        on_store!(self, s => s.count_from(filter, start))
    }
    fn store_msg(
        &mut self,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        ts: WallTime,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        on_store!(self, s => s.store_msg(subject, headers, payload, ts, ttl))
    }
    fn skip_msgs(&mut self, seq: u64, count: u64, ts: WallTime) -> StoreResult<()> {
        on_store!(self, s => s.skip_msgs(seq, count, ts))
    }
    /// Store `msg` at its own sequence and time, the sequences between the
    /// last one and it skipped (a mirror copying its origin, a restore).
    /// Returns whether it was stored (not when that sequence is passed).
    pub fn store_at(&mut self, msg: &StoredMsg) -> StoreResult<bool> {
        let last = self.state().last_seq;
        if msg.seq <= last {
            return Ok(false);
        }
        self.skip_through(msg.seq - 1, msg.ts)?;
        let ttl = find_header(&msg.headers, TTL).and_then(parse_ttl).flatten();
        self.store_msg(&msg.subject, &msg.headers, &msg.payload, msg.ts, ttl)?;
        Ok(true)
    }
    /// Skip every sequence after the last one up to `seq` (none when
    /// `seq` is not past it).
    pub fn skip_through(&mut self, seq: u64, ts: WallTime) -> StoreResult<()> {
        let last = self.state().last_seq;
        if seq > last {
            self.skip_msgs(last + 1, seq - last, ts)?;
        }
        Ok(())
    }
    fn remove_msg(&mut self, seq: u64, erase: bool) -> StoreResult<bool> {
        on_store!(self, s => if erase { s.erase_msg(seq) } else { s.remove_msg(seq) })
    }
    fn purge_ex(&mut self, filter: &Filter, seq: u64, keep: u64) -> StoreResult<u64> {
        on_store!(self, s => s.purge_ex(filter, seq, keep))
    }
    fn expire_report(&mut self, now: WallTime) -> StoreResult<Expired> {
        on_store!(self, s => s.expire_report(now))
    }
    fn next_expiry(&self) -> Option<WallTime> {
        on_store!(self, s => s.next_expiry())
    }
    fn set_config(&mut self, config: StoreConfig) -> StoreResult<()> {
        on_store!(self, s => { s.set_config(config); s.enforce_limits() })
    }
    fn poll_action(&mut self) -> Option<StoreAction> {
        on_store!(self, s => s.poll_action())
    }
    /// Everything up to here is durable: a FileStore syncs what it
    /// recovered before it opens; a MemStore holds nothing at start.
    fn durable_at_open(&self) -> u64 {
        match self {
            Store::Memory(s) => s.state().last_seq,
            Store::File(s) => s.backend().durable_through(),
        }
    }
    fn handle_sync_done(&mut self, tag: u64, result: crate::store::DiskResult<()>) {
        on_store!(self, s => s.handle_sync_done(tag, result))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        on_store!(self, s => s.poll_timeout())
    }
    fn handle_timeout(&mut self, now: Instant) {
        on_store!(self, s => s.handle_timeout(now))
    }
}

/// A publish as the stream sees it.
pub struct Publish<'a> {
    pub account: &'a str,
    pub subject: &'a [u8],
    /// Shared, not copied, into the waiting ack.
    pub reply: &'a Bytes,
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// What became of a publish, for the caller to answer the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored at `seq`; the ack follows when it is durable.
    Stored { seq: u64 },
    /// A duplicate of `seq` within the window.
    Duplicate { seq: u64 },
    /// Staged in an open atomic batch (nothing stored yet).
    Staged,
    /// Refused.
    Refused(PublishError),
}

/// The reply of a message the stream itself stores (markers, schedules,
/// sources): none.
pub static NO_REPLY: Bytes = Bytes::new();

/// The publish [`Stream::publish_crossed`] handles next, as the machine
/// hands it over ([`Stream::set_inbound`]).
#[derive(Debug, Clone, Copy)]
struct Inbound {
    /// What the server's and the account's storage limits leave it.
    room: Room,
    /// The bytes the stream held then: what it stores meanwhile (an
    /// atomic batch's earlier messages) counts against the room.
    held: u64,
    /// A client's message (not a source's): it may not carry
    /// `Nats-Stream-Source`.
    client: bool,
}

/// A stream machine.
pub struct Stream<D: Disk> {
    pub id: StreamId,
    /// Shared with every action naming it (acks, republished messages).
    pub account: std::sync::Arc<str>,
    rules: StreamRules,
    /// Where the acks' JSON is written, one buffer for many acks.
    acks: super::wire::AckArena,
    store: Store<D>,
    dedupe: Dedupe,
    waiting: VecDeque<WaitingAck>,
    /// The highest sequence the store reported durable.
    durable: u64,
    /// The total of the counter message `try_publish` just stored, taken
    /// by the caller for its ack.
    counted: Option<String>,
    schedules: super::schedule::Schedules,
    /// The schedules are rebuilt from the store at the first timer (a
    /// recovered schedule stream).
    schedules_stale: bool,
    /// Storing a message a schedule produced: the schedule checks are the
    /// schedule's, not repeated on it.
    firing: bool,
    /// Set while a fast batch message is stored: its checks run in the
    /// order the reference checks a batch's message, not a lone
    /// publish's ([`Stream::try_publish`]).
    fast_message: bool,
    /// The publish being handled, handed over by the machine (a client's
    /// or a source's); `None` for what the stream stores itself (delete
    /// markers, scheduled messages), which no limit refuses.
    inbound: Option<Inbound>,
    /// Open atomic batches.
    batches: super::batch::Batches,
    /// Batches dropped since the machine last looked, for its advisories.
    abandoned: Vec<(Bytes, super::batch::Abandoned)>,
    /// Whether the server may open another batch (its total limit): set
    /// by the machine, which counts every stream's open batches.
    batch_room: bool,
    /// Open fast batches.
    fast: super::fast_batch::FastBatches,
    /// Whether the server may open another fast batch (as `batch_room`).
    fast_room: bool,
    /// Planted defect: acknowledge at store time, before the sync.
    #[cfg(feature = "planted-defects")]
    pub ack_before_sync: bool,
}

impl<D: Disk> Stream<D> {
    /// A stream over `store` (new or recovered). The dedupe ids of a
    /// recovered store are rebuilt when a publish first needs them.
    pub fn new(id: StreamId, account: String, rules: StreamRules, store: Store<D>) -> Self {
        // A duplicate of a recovered message is acknowledged at once: what
        // was recovered is already durable.
        let durable = store.durable_at_open();
        let mut stream = Stream {
            id,
            account: account.into(),
            acks: super::wire::AckArena::new(&rules.name, &rules.domain),
            rules,
            store,
            dedupe: Dedupe::default(),
            waiting: VecDeque::new(),
            durable,
            counted: None,
            schedules: Default::default(),
            schedules_stale: false,
            firing: false,
            fast_message: false,
            inbound: None,
            batches: Default::default(),
            abandoned: Vec::new(),
            batch_room: true,
            fast: Default::default(),
            fast_room: true,
            #[cfg(feature = "planted-defects")]
            ack_before_sync: false,
        };
        stream.dedupe.stale = true;
        stream.schedules_stale = stream.rules.allow_msg_schedules;
        if stream.rules.allow_atomic {
            stream.drop_partial_batch();
        }
        stream
    }

    /// A store that lost power while an atomic batch was being written may
    /// end with the first messages of a batch whose commit never landed:
    /// they go, so no partial batch is ever seen (the reference rolls the
    /// batch forward from its staging store instead; rnats keeps none).
    fn drop_partial_batch(&mut self) {
        let last = self.store.state().last_seq;
        let Ok(msg) = self.store.load_msg(last) else {
            return;
        };
        let headers = &msg.headers;
        let Some(id) = find_header(headers, super::batch::BATCH_ID).filter(|id| !id.is_empty())
        else {
            return;
        };
        if find_header(headers, super::batch::BATCH_COMMIT).is_some() {
            return;
        }
        let Some(count) = find_header(headers, super::batch::BATCH_SEQ).and_then(parse_u64) else {
            return;
        };
        let id = Bytes::copy_from_slice(id);
        let first = (last + 1).saturating_sub(count);
        for seq in first..=last {
            let ours = self
                .store
                .load_msg(seq)
                .is_ok_and(|m| find_header(&m.headers, super::batch::BATCH_ID) == Some(&id[..]));
            if ours {
                let _ = self.store.remove_msg(seq, false);
            }
        }
    }

    pub fn rules(&self) -> &StreamRules {
        &self.rules
    }

    pub fn store(&self) -> &Store<D> {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut Store<D> {
        &mut self.store
    }

    /// Write the store's full-state snapshot (at a clean shutdown).
    pub fn write_snapshot(&mut self) -> StoreResult<()> {
        self.store.write_snapshot()
    }

    pub fn state(&self) -> StoreState {
        self.store.state()
    }

    /// The stream stops for good in this run (its account's JetStream was
    /// turned off): the store writes and syncs everything now, as at a
    /// clean shutdown, and the acks that waited for a sync go out, since
    /// the reference acknowledges every message it stored before it
    /// stopped. Should that write fail, the waiting acks are dropped
    /// unsent: their publishers time out and retry, as after a lost
    /// message. The store is dropped by the caller, never used again.
    pub fn stop(&mut self, out: &mut VecDeque<JsAction>) -> StoreResult<()> {
        let written = self.store.write_snapshot();
        if written.is_ok() {
            let last = self.store.state().last_seq;
            assert!(last >= self.durable, "durability went backwards");
            self.durable = last;
            for ack in std::mem::take(&mut self.waiting) {
                self.send_ack(ack, out);
            }
        }
        written
    }

    /// Acknowledgements waiting for a sync.
    pub fn waiting_acks(&self) -> usize {
        self.waiting.len()
    }

    /// After a restart, the ids of the messages still inside the window
    /// count as seen again (the reference rebuilds them too), so a
    /// publisher retrying across the restart gets a duplicate ack.
    fn rebuild_dedupe(&mut self, now: WallTime) {
        self.dedupe.stale = false;
        if self.rules.duplicate_window.is_zero() {
            return;
        }
        let since = now.0.saturating_sub(nanos(self.rules.duplicate_window));
        let state = self.store.state();
        let mut seq = state.last_seq;
        let mut found = Vec::new();
        while seq >= state.first_seq.max(1) {
            match self.store.load_msg(seq) {
                Ok(msg) if msg.ts.0 < since => break,
                Ok(msg) => {
                    if let Some(id) = find_header(&msg.headers, MSG_ID) {
                        found.push((msg.ts, Bytes::copy_from_slice(id), seq));
                    }
                }
                Err(_) => {}
            }
            seq -= 1;
        }
        for (ts, id, seq) in found.into_iter().rev() {
            self.dedupe.remember(id, seq, ts);
        }
        self.dedupe.last = self
            .store
            .load_msg(state.last_seq)
            .ok()
            .and_then(|msg| find_header(&msg.headers, MSG_ID).map(Bytes::copy_from_slice));
    }

    /// Replace the rules (a stream update): the store gets the new limits.
    pub fn update(&mut self, rules: StreamRules, out: &mut VecDeque<JsAction>) -> StoreResult<()> {
        let limits = rules.limits.clone();
        if !rules.allow_batched {
            // As the reference: turning fast batches off forgets the open ones.
            self.fast.clear();
        }
        self.rules = rules;
        let result = self.store.set_config(limits);
        self.drain_store(out);
        result
    }

    /// Store one message published on the stream's subjects and queue its
    /// acknowledgement (sent once durable). Refusals are answered at once.
    pub fn publish(
        &mut self,
        now: WallTime,
        msg: &Publish<'_>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        let result = self.publish_in_batch(now, msg, out);
        self.drain_store(out);
        result
    }

    /// As [`Stream::publish`], leaving the store's report (durability, the
    /// sync it asks for) to the caller's [`Stream::drain_store`] at the end
    /// of a batch: one write and one sync then cover the whole batch.
    pub fn publish_in_batch(
        &mut self,
        now: WallTime,
        msg: &Publish<'_>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        self.publish_crossed(now, msg, &[], out)
    }

    /// [`Stream::publish_in_batch`] for a message that may have crossed a
    /// service import: `crossed_reply` is the fast batch reply it had
    /// before (its own reply is then the import's `_R_.` one, where the
    /// answers go), empty otherwise.
    pub fn publish_crossed(
        &mut self,
        now: WallTime,
        msg: &Publish<'_>,
        crossed_reply: &[u8],
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        let result = self.route_publish(now, msg, crossed_reply, out);
        // What was handed over was for this publish only.
        self.inbound = None;
        result
    }

    /// Hand over the next publish: `room` is what the server's and the
    /// account's storage limits leave it, `client` whether a client (not
    /// a source) sent it. [`Stream::publish_crossed`] judges both among
    /// its checks and forgets them.
    pub fn set_inbound(&mut self, room: Room, client: bool) {
        let held = self.store.state().bytes;
        self.inbound = Some(Inbound { room, held, client });
    }

    /// The server's and the account's limits for a message of `size`
    /// bytes, as the store would count it (none for what the stream
    /// stores itself).
    fn check_room(&self, size: u64) -> Result<(), PublishError> {
        let Some(inbound) = &self.inbound else {
            return Ok(());
        };
        let now = self.store.state().bytes;
        inbound.room.after(inbound.held, now).check(size)
    }

    /// [`Stream::publish_crossed`] by kind: a fast batch's message, an
    /// atomic batch's, or a lone publish.
    fn route_publish(
        &mut self,
        now: WallTime,
        msg: &Publish<'_>,
        crossed_reply: &[u8],
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        if let Some(reply) = super::fast_batch::parse_reply(batch_reply(msg.reply, crossed_reply)) {
            return self.publish_fast(now, reply, msg, out);
        }
        // A client's batch message (a sourced one is stored as it came).
        if let Some(id) = find_header(msg.headers, super::batch::BATCH_ID)
            .filter(|id| !id.is_empty())
            .filter(|_| find_header(msg.headers, b"Nats-Stream-Source").is_none())
        {
            return self.publish_batched(now, id, msg, out);
        }
        let result = self.try_publish(now, msg, None, out);
        let answer = !msg.reply.is_empty() && !self.rules.no_ack;
        match &result {
            Published::Stored { seq } | Published::Duplicate { seq } if answer => {
                let duplicate = matches!(result, Published::Duplicate { .. });
                let ack = WaitingAck {
                    seq: *seq,
                    reply: msg.reply.clone(),
                    body: AckBody::Stored {
                        duplicate,
                        total: self.counted.take().filter(|_| !duplicate),
                    },
                };
                self.queue_ack(ack, out);
            }
            Published::Refused(error) if answer => self.answer_refusal(msg, error, out),
            _ => {}
        }
        result
    }

    /// A message of an atomic batch: refused, staged (an empty ack), or
    /// the commit of the whole batch (one ack with the batch and count).
    fn publish_batched(
        &mut self,
        now: WallTime,
        id: &[u8],
        msg: &Publish<'_>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        use super::batch::{Abandoned, Step};
        let answer = !msg.reply.is_empty() && !self.rules.no_ack;
        for gone in self.batches.expire(now) {
            self.abandoned.push((gone, Abandoned::Timeout));
        }
        // Sealed, then the server's and the account's limits for this
        // message, then the batch's own checks, as the reference.
        let refused = match self.rules.sealed {
            true => Err(PublishError::Sealed),
            false => self.check_room(self.rules.limits.sizing.size(
                msg.subject,
                msg.headers,
                msg.payload,
            )),
        };
        let step = if let Err(error) = refused {
            Step::Refused {
                error,
                abandoned: None,
            }
        } else {
            let size = (msg.headers.len() + msg.payload.len()) as u64;
            self.batches.step(
                id,
                self.rules.allow_atomic,
                self.batch_room,
                size,
                self.rules.max_msg_size,
                now,
                msg.subject,
                msg.headers,
                msg.payload,
            )
        };
        let result = match step {
            Step::Refused { error, abandoned } => {
                if let Some(reason) = abandoned {
                    self.abandoned.push((Bytes::copy_from_slice(id), reason));
                }
                Published::Refused(error)
            }
            Step::Staged => {
                if answer {
                    out.push_back(JsAction::Publish {
                        account: msg.account.into(),
                        subject: Bytes::copy_from_slice(msg.reply),
                        reply: Bytes::new(),
                        headers: Bytes::new(),
                        payload: Bytes::new(),
                    });
                }
                return Published::Staged;
            }
            Step::Commit(msgs) => self.commit_batch(now, &msgs, msg.account, out),
        };
        match &result {
            Published::Stored { seq } if answer => {
                let count = find_header(msg.headers, super::batch::BATCH_SEQ)
                    .and_then(parse_u64)
                    .unwrap_or(0);
                let eob = find_header(msg.headers, super::batch::BATCH_COMMIT) == Some(b"eob");
                let ack = WaitingAck {
                    seq: *seq,
                    reply: msg.reply.clone(),
                    body: AckBody::Batch {
                        id: String::from_utf8_lossy(id).into_owned(),
                        count: count - u64::from(eob),
                    },
                };
                self.queue_ack(ack, out);
            }
            Published::Refused(error) if answer => self.answer_refusal(msg, error, out),
            _ => {}
        }
        result
    }

    /// Store a committed batch, all of it or (refused) none of it: the
    /// batch's own checks over every message first, then each message
    /// through the ordinary path in one go. `Stored` names the last.
    fn commit_batch(
        &mut self,
        now: WallTime,
        msgs: &[super::batch::Staged],
        account: &str,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        let subjects: Vec<Bytes> = msgs
            .iter()
            .map(|msg| {
                let mut mapped = Vec::new();
                match &self.rules.subject_transform {
                    Some(transform) if transform.apply(&msg.subject, &mut mapped) => {
                        Bytes::from(mapped)
                    }
                    _ => msg.subject.clone(),
                }
            })
            .collect();
        if self.dedupe.stale {
            self.rebuild_dedupe(now);
        }
        self.dedupe.expire(now, self.rules.duplicate_window);
        let last_of = super::batch::checked_subjects(msgs, &subjects)
            .into_iter()
            .map(|subject| {
                let last = self.store.load_last(&Filter::subject(&subject));
                let seq = last.map(|m| m.seq).unwrap_or(0);
                (subject, seq)
            })
            .collect();
        let ids = &self.dedupe.ids;
        let known = super::batch::Known {
            stream: &self.rules.name,
            last_seq: self.store.state().last_seq,
            allow_rollup: self.rules.allow_rollup,
            deny_purge: self.rules.deny_purge,
            seen_id: &|id| ids.contains_key(id),
            last_of: &last_of,
        };
        if let Err(error) = super::batch::precheck(msgs, &subjects, &known) {
            return Published::Refused(error);
        }
        if let Err(error) = self.check_discard_new(msgs, &subjects) {
            return Published::Refused(error);
        }
        // What the ordinary path would refuse of one message alone is
        // refused for the batch before anything is stored.
        for msg in msgs {
            if let Err(error) = self.check_alone(&msg.headers, &msg.payload) {
                return Published::Refused(error);
            }
        }
        let mut stored = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let publish = Publish {
                account,
                subject: &msg.subject,
                reply: &NO_REPLY,
                headers: &msg.headers,
                payload: &msg.payload,
            };
            match self.try_publish(now, &publish, None, out) {
                Published::Stored { seq } => stored.push(seq),
                Published::Refused(error) => {
                    // Not foreseen by the checks (a disk failure, a limit
                    // with discard new): take back what was stored.
                    for seq in stored {
                        let _ = self.store.remove_msg(seq, false);
                    }
                    out.push_back(JsAction::Log {
                        level: LogLevel::Warn,
                        text: format!(
                            "Stream '{} > {}': atomic batch refused while committing: {error:?}",
                            self.account, self.rules.name
                        ),
                    });
                    return Published::Refused(error);
                }
                Published::Duplicate { .. } | Published::Staged => {}
            }
        }
        self.counted = None;
        match stored.last() {
            Some(&seq) => Published::Stored { seq },
            None => Published::Refused(PublishError::Rejected(
                super::errors::ApiErrorKind::AtomicPublishIncompleteBatch,
            )),
        }
    }

    /// Discard new: the batch as a whole must fit the stream's limits
    /// (messages, bytes, and per subject unless rolled up), as the
    /// reference counts what a batch has in flight.
    fn check_discard_new(
        &self,
        msgs: &[super::batch::Staged],
        subjects: &[Bytes],
    ) -> Result<(), PublishError> {
        let limits = &self.rules.limits;
        if limits.discard != crate::store::Discard::New {
            return Ok(());
        }
        let state = self.store.state();
        let (mut total, mut bytes) = (state.msgs, state.bytes);
        let mut per_subject: BTreeMap<&[u8], u64> = BTreeMap::new();
        for (msg, subject) in msgs.iter().zip(subjects) {
            total += 1;
            bytes += limits.sizing.size(subject, &msg.headers, &msg.payload);
            if limits.max_msgs.is_some_and(|max| total > max) {
                return Err(PublishError::Store(StoreError::MaxMsgs));
            }
            if limits.max_bytes.is_some_and(|max| bytes > max) {
                return Err(PublishError::Store(StoreError::MaxBytes));
            }
            let Some(max) = limits
                .max_msgs_per_subject
                .filter(|_| limits.discard_new_per_subject)
            else {
                continue;
            };
            let count = per_subject.entry(subject).or_insert_with(|| {
                self.store
                    .subjects_state(&Filter::subject(subject))
                    .values()
                    .map(|state| state.msgs)
                    .sum()
            });
            *count += 1;
            if *count > max && find_header(&msg.headers, ROLLUP).is_none() {
                return Err(PublishError::Store(StoreError::MaxMsgsPerSubject));
            }
        }
        Ok(())
    }

    /// The checks of one message that depend on nothing stored: `Nats-TTL`,
    /// a counter's `Nats-Incr`, the size.
    fn check_alone(&self, headers: &[u8], payload: &[u8]) -> Result<(), PublishError> {
        if let Err(kind) = super::counter::increment(headers, payload, self.rules.allow_msg_counter)
        {
            return Err(PublishError::Rejected(kind));
        }
        match find_header(headers, TTL) {
            Some(_) if !self.rules.allow_msg_ttl => return Err(PublishError::TtlDisabled),
            Some(text) if parse_ttl(text).is_none() => return Err(PublishError::InvalidTtl),
            _ => {}
        }
        if self.too_large(headers, payload) {
            return Err(PublishError::TooLarge);
        }
        Ok(())
    }

    /// How many batches are open, of each kind.
    pub fn open_batches(&self) -> super::batch::OpenBatches {
        super::batch::OpenBatches {
            atomic: self.batches.len(),
            fast: self.fast.len(),
        }
    }

    /// Whether the server has room for another open atomic batch (the
    /// machine's count against [`super::batch::MAX_INFLIGHT_TOTAL`]).
    pub fn set_batch_room(&mut self, room: bool, limits: super::batch::BatchLimits) {
        self.batch_room = room;
        self.batches.limits = limits;
    }

    /// As [`Stream::set_batch_room`], for fast batches.
    pub fn set_fast_batch_room(&mut self, room: bool, limits: super::fast_batch::FastLimits) {
        self.fast_room = room;
        self.fast.limits = limits;
    }

    /// A message whose reply is a fast batch reply: the stream's own checks
    /// in the reference's order (sealed, the server's and the account's
    /// limits, size, disabled, the pattern),
    /// then the batch's, then the ordinary publish path for what is
    /// stored; the batch decides what the publisher hears.
    fn publish_fast(
        &mut self,
        now: WallTime,
        reply: Result<super::fast_batch::FastReply<'_>, super::fast_batch::InvalidPattern>,
        msg: &Publish<'_>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        use super::errors::ApiErrorKind as K;
        self.fast.expire(now);
        let refusal = if self.rules.sealed {
            Some(PublishError::Sealed)
        } else if let Err(error) = self.check_room(self.stored_size(msg)) {
            Some(error)
        } else if self.too_large(msg.headers, msg.payload) {
            Some(PublishError::TooLarge)
        } else if !self.rules.allow_batched {
            Some(PublishError::Rejected(K::BatchPublishDisabled))
        } else {
            None
        };
        match (refusal, reply) {
            (None, Ok(reply)) => self.publish_fast_batch(now, &reply, msg, out),
            (refusal, _) => {
                let error =
                    refusal.unwrap_or(PublishError::Rejected(K::BatchPublishInvalidPattern));
                if !self.rules.no_ack {
                    let refused = super::fast_batch::Answer::Refused(error.clone());
                    self.answer_fast(msg, refused, out);
                }
                Published::Refused(error)
            }
        }
    }

    fn publish_fast_batch(
        &mut self,
        now: WallTime,
        reply: &super::fast_batch::FastReply<'_>,
        msg: &Publish<'_>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        use super::fast_batch::{Begin, Context, Stored};
        let mut answers = Vec::new();
        let context = Context {
            ack_prefix: self.acks.prefix(),
            room: self.fast_room,
            no_ack: self.rules.no_ack,
        };
        let begun = self
            .fast
            .begin(reply, msg.headers, now, &context, &mut answers);
        let result = match begun {
            Begin::Refused(error) => {
                if !self.rules.no_ack {
                    let refused = super::fast_batch::Answer::Refused(error.clone());
                    self.answer_fast(msg, refused, out);
                }
                Published::Refused(error)
            }
            Begin::Done => Published::Staged,
            Begin::Store { headers } => {
                let publish = Publish {
                    headers: headers.as_deref().unwrap_or(msg.headers),
                    ..*msg
                };
                let rules = super::fast_batch::HeaderRules {
                    name: &self.rules.name,
                    allow_msg_counter: self.rules.allow_msg_counter,
                    allow_msg_ttl: self.rules.allow_msg_ttl,
                };
                let result = match super::fast_batch::check_headers(
                    publish.headers,
                    publish.payload,
                    &rules,
                ) {
                    Err(error) => Published::Refused(error),
                    Ok(()) => {
                        self.fast_message = true;
                        let result = self.try_publish(now, &publish, None, out);
                        self.fast_message = false;
                        result
                    }
                };
                // A fast batch's PubAck carries no counter total.
                self.counted = None;
                let stored = match &result {
                    Published::Stored { seq } => Stored::At(*seq),
                    Published::Duplicate { seq } => Stored::Duplicate(*seq),
                    Published::Refused(error) => Stored::Refused(error),
                    Published::Staged => unreachable!("try_publish never stages"),
                };
                let context = Context {
                    ack_prefix: self.acks.prefix(),
                    room: self.fast_room,
                    no_ack: self.rules.no_ack,
                };
                self.fast.finish(reply, stored, &context, &mut answers);
                result
            }
        };
        for answer in answers {
            self.answer_fast(msg, answer, out);
        }
        result
    }

    /// Send a fast batch's answer on the message's reply: now, or once
    /// what it names is durable. An answer naming nothing stored still
    /// leaves after the acks waiting before it: the reference sends every
    /// answer of a stream in the order it decides them, so an error never
    /// overtakes the flow ack of an earlier message.
    fn answer_fast(
        &mut self,
        msg: &Publish<'_>,
        answer: super::fast_batch::Answer,
        out: &mut VecDeque<JsAction>,
    ) {
        use super::fast_batch::Answer;
        let (through, payload) = match answer {
            Answer::Durable { through, payload } => (through, payload),
            Answer::Now(payload) => (0, payload),
            Answer::Refused(error) => (0, super::wire::publish_error(&self.rules.name, &error)),
        };
        // Behind the last waiting ack (the highest sequence: a duplicate's
        // may sit behind later ones), so that it is released after it.
        let behind = self.waiting.iter().map(|ack| ack.seq).max().unwrap_or(0);
        let ack = WaitingAck {
            seq: through.max(behind),
            reply: msg.reply.clone(),
            body: AckBody::Written(payload),
        };
        self.queue_ack(ack, out);
    }

    /// Batches dropped since the last call (timed out, too large, a gap),
    /// with why: the machine's abandoned advisories.
    pub fn take_abandoned(&mut self) -> Vec<(Bytes, super::batch::Abandoned)> {
        std::mem::take(&mut self.abandoned)
    }

    /// Store a message a mirror copies from its origin, at the origin's
    /// sequence and time; the sequences between are skipped (the origin
    /// removed them or the mirror's filter passed them by). The publish
    /// checks are not made again: the origin made them. Returns whether it
    /// was stored (not when the mirror already holds that sequence).
    pub fn store_mirrored(&mut self, msg: &StoredMsg) -> Result<bool, PublishError> {
        self.store.store_at(msg).map_err(PublishError::Store)
    }

    fn answer_refusal(
        &self,
        msg: &Publish<'_>,
        error: &PublishError,
        out: &mut VecDeque<JsAction>,
    ) {
        out.push_back(JsAction::Publish {
            account: msg.account.into(),
            subject: Bytes::copy_from_slice(msg.reply),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: super::wire::publish_error(&self.rules.name, error),
        });
    }

    /// Check and store one message, its subject first rewritten by the
    /// stream's `subject_transform` (a subject it does not match is kept).
    /// `known_last` is the subject's last sequence when the caller knows it
    /// better than the store (a delete marker replaces a message expiry
    /// already took).
    fn try_publish(
        &mut self,
        now: WallTime,
        msg: &Publish<'_>,
        known_last: Option<u64>,
        out: &mut VecDeque<JsAction>,
    ) -> Published {
        let mut mapped = Vec::new();
        let transformed;
        let msg = match &self.rules.subject_transform {
            Some(transform) if transform.apply(msg.subject, &mut mapped) => {
                transformed = Publish {
                    subject: &mapped,
                    ..*msg
                };
                &transformed
            }
            _ => msg,
        };
        use super::errors::ApiErrorKind as K;
        use PublishError as E;
        // The checks run in the reference's order (v2.15.1, confirmed on
        // its binary). A lone publish's: sealed; `max_msg_size`; the
        // header size; `Nats-Incr`; `Nats-Expected-Stream`; a `Nats-TTL`
        // the stream does not allow; the expected subject sequence, then
        // the stream's; a schedule; a client's `Nats-Stream-Source`; a
        // duplicate; `Nats-Expected-Last-Msg-Id`; a roll-up; a counter's
        // total (and the sizes again); the server's, then the account's
        // storage limits; a `Nats-TTL` that does not parse; the stream's
        // own limits (the store, with discard new). A fast batch message's
        // run as the reference checks it before proposing (sealed, the
        // limits, the size, `Nats-Incr`, `Nats-Expected-Stream` and
        // `Nats-TTL` checked already by the batch): a duplicate and
        // `Nats-Stream-Source` first, the stream sequence before the
        // subject's.
        let lone = !self.fast_message;
        if self.rules.sealed {
            return Published::Refused(E::Sealed);
        }
        if lone {
            if let Err(error) = self.check_size(msg.headers, msg.payload) {
                return Published::Refused(error);
            }
        }
        let headers = msg.headers;
        self.counted = None;
        let incr =
            match super::counter::increment(headers, msg.payload, self.rules.allow_msg_counter) {
                Ok(incr) => incr,
                Err(kind) => return Published::Refused(E::Rejected(kind)),
            };
        if let Err(error) = check_expected_stream(headers, &self.rules.name) {
            return Published::Refused(error);
        }
        // A `Nats-TTL` that does not parse is refused only after the
        // limits (below); one that does, on a stream without TTLs, here.
        if let Some(text) = find_header(headers, TTL) {
            if lone && !self.rules.allow_msg_ttl && parse_ttl(text).is_some() {
                return Published::Refused(E::TtlDisabled);
            }
        }
        if !lone {
            if let Some(seq) = self.duplicate_of(now, headers) {
                return Published::Duplicate { seq };
            }
            if let Err(error) = super::sourcing::check_client_headers(headers) {
                return Published::Refused(error);
            }
            if let Err(error) = self.check_expected_last(headers) {
                return Published::Refused(error);
            }
        }
        if let Err(error) = self.check_expected_subject_last(headers, msg.subject) {
            return Published::Refused(error);
        }
        if lone {
            if let Err(error) = self.check_expected_last(headers) {
                return Published::Refused(error);
            }
        }
        let checked;
        let headers = match self.firing {
            true => headers,
            false => match super::schedule::check(
                headers,
                msg.subject,
                &super::schedule::Context {
                    allowed: self.rules.allow_msg_schedules,
                    allow_ttl: self.rules.allow_msg_ttl,
                    subjects: &self.rules.subjects,
                    now,
                },
                |subject| {
                    let last = self.store.load_last(&Filter::subject(subject));
                    last.ok().map(|m| m.headers)
                },
            ) {
                Ok(Some(added)) => {
                    checked = added;
                    &checked[..]
                }
                Ok(None) => headers,
                Err(kind) => return Published::Refused(E::Rejected(kind)),
            },
        };
        if lone {
            if self.inbound.is_some_and(|inbound| inbound.client) {
                if let Err(error) = super::sourcing::check_client_headers(headers) {
                    return Published::Refused(error);
                }
            }
            if let Some(seq) = self.duplicate_of(now, headers) {
                return Published::Duplicate { seq };
            }
        }
        let msg_id = find_header(headers, MSG_ID).filter(|id| !id.is_empty());
        // The reference checks a fast batch message's roll-up before its
        // `Nats-Expected-Last-Msg-Id` (that one only as it stores), any
        // other message's after.
        let early_rollup = match self.fast_message {
            true => match rollup_of(headers, self.rules.allow_rollup) {
                Ok(rollup) => Some(rollup),
                Err(error) => return Published::Refused(error),
            },
            false => None,
        };
        if let Some(expected) = find_header(headers, EXPECTED_LAST_MSG_ID) {
            let last = self.dedupe.last.as_deref().unwrap_or_default();
            if expected != last {
                return Published::Refused(E::WrongLastMsgId(
                    String::from_utf8_lossy(last).into_owned(),
                ));
            }
        }
        let rollup = match early_rollup {
            Some(rollup) => rollup,
            None => match rollup_of(headers, self.rules.allow_rollup) {
                Ok(rollup) => rollup,
                Err(error) => return Published::Refused(error),
            },
        };
        let total;
        let counted;
        let msg = match (incr, self.rules.allow_msg_counter) {
            (Some(incr), true) => {
                let last = self.store.load_last(&Filter::subject(msg.subject)).ok();
                match super::counter::next_total(last.as_ref().map(|m| &m.payload[..]), &incr) {
                    Ok(payload) => total = payload,
                    Err(kind) => return Published::Refused(E::Rejected(kind)),
                }
                counted = Publish {
                    payload: &total,
                    ..*msg
                };
                &counted
            }
            (None, true) => return Published::Refused(E::Rejected(K::MessageIncrMissing)),
            _ => msg,
        };
        // Again with what a schedule or a counter's total made of it.
        if let Err(error) = self.check_size(headers, msg.payload) {
            return Published::Refused(error);
        }
        let stored_size = self
            .rules
            .limits
            .sizing
            .size(msg.subject, headers, msg.payload);
        if let Err(error) = self.check_room(stored_size) {
            return Published::Refused(error);
        }
        let ttl = match find_header(headers, TTL) {
            None => None,
            Some(text) => match parse_ttl(text) {
                None => return Published::Refused(E::InvalidTtl),
                // Reached by what the stream stores itself only: a
                // publish's TTL was checked above.
                Some(_) if !self.rules.allow_msg_ttl => return Published::Refused(E::TtlDisabled),
                Some(ttl) => ttl,
            },
        };
        let mut raised = Vec::new();
        let (headers, ttl) = self.raise_ttl(headers, ttl, &mut raised);
        let republish = self.republish_to(msg.subject, known_last, out);
        let seq = match self
            .store
            .store_msg(msg.subject, headers, msg.payload, now, ttl)
        {
            Ok(seq) => seq,
            Err(error) => return Published::Refused(E::Store(error)),
        };
        if let Some(all) = rollup {
            let filter = if all {
                Filter::All
            } else {
                Filter::subject(msg.subject)
            };
            // Everything before this message goes; the message stays.
            let _ = self.store.purge_ex(&filter, seq, 0);
        }
        if let Some(id) = msg_id {
            self.dedupe.remember(Bytes::copy_from_slice(id), seq, now);
        }
        self.dedupe.last = msg_id.map(Bytes::copy_from_slice);
        if self.rules.allow_msg_counter {
            self.counted = Some(super::counter::ack_value(msg.payload));
        }
        if self.rules.allow_msg_schedules {
            self.schedule_stored(seq, msg.subject, headers, now);
        }
        if let Some((subject, last)) = republish {
            let stored = StoredMsg {
                seq,
                subject: Bytes::copy_from_slice(msg.subject),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(msg.payload),
                ts: now,
                ttl,
            };
            self.republish(subject, &stored, last, out);
        }
        Published::Stored { seq }
    }

    /// The sequence `headers`' `Nats-Msg-Id` names when it is a duplicate
    /// within the window (ids older than the window forgotten first).
    fn duplicate_of(&mut self, now: WallTime, headers: &[u8]) -> Option<u64> {
        if self.dedupe.stale
            && !headers.is_empty()
            && (find_header(headers, MSG_ID).is_some()
                || find_header(headers, EXPECTED_LAST_MSG_ID).is_some())
        {
            self.rebuild_dedupe(now);
        }
        self.dedupe.expire(now, self.rules.duplicate_window);
        let id = find_header(headers, MSG_ID).filter(|id| !id.is_empty())?;
        self.dedupe.ids.get(id).copied()
    }

    /// Whether headers plus payload are over `max_msg_size`.
    fn too_large(&self, headers: &[u8], payload: &[u8]) -> bool {
        let size = (headers.len() + payload.len()) as u64;
        self.rules.max_msg_size.is_some_and(|max| size > max)
    }

    /// `max_msg_size`, then the header block's own limit (its length is
    /// stored in 16 bits).
    fn check_size(&self, headers: &[u8], payload: &[u8]) -> Result<(), PublishError> {
        if self.too_large(headers, payload) {
            return Err(PublishError::TooLarge);
        }
        if headers.len() > usize::from(u16::MAX) {
            return Err(PublishError::Rejected(
                super::errors::ApiErrorKind::StreamHeaderExceedsMaximum,
            ));
        }
        Ok(())
    }

    /// `Nats-Expected-Last-Sequence`: the stream's last sequence.
    fn check_expected_last(&self, headers: &[u8]) -> Result<(), PublishError> {
        let last = self.store.state().last_seq;
        match find_header(headers, EXPECTED_LAST_SEQ).filter(|v| !v.is_empty()) {
            Some(expected) if parse_u64(expected) != Some(last) => {
                Err(PublishError::WrongLastSequence(last))
            }
            _ => Ok(()),
        }
    }

    /// `Nats-Expected-Last-Subject-Sequence`: the last sequence of the
    /// message's subject, or of the one `...-Subject` names (which alone,
    /// without a sequence, is refused).
    fn check_expected_subject_last(
        &mut self,
        headers: &[u8],
        subject: &[u8],
    ) -> Result<(), PublishError> {
        let named =
            find_header(headers, EXPECTED_LAST_SUBJECT_SEQ_SUBJECT).filter(|s| !s.is_empty());
        let Some(expected) =
            find_header(headers, EXPECTED_LAST_SUBJECT_SEQ).filter(|v| !v.is_empty())
        else {
            return match named {
                Some(_) => Err(PublishError::Rejected(
                    super::errors::ApiErrorKind::StreamExpectedLastSeqPerSubjectInvalid,
                )),
                None => Ok(()),
            };
        };
        let subject = named.unwrap_or(subject);
        let last = match self.store.load_last(&Filter::subject(subject)) {
            Ok(last) => last.seq,
            Err(_) => 0,
        };
        match parse_u64(expected) == Some(last) {
            true => Ok(()),
            false => Err(PublishError::WrongLastSequence(last)),
        }
    }

    /// The bytes the store would count for `msg`, its subject rewritten
    /// by the stream's `subject_transform`.
    fn stored_size(&self, msg: &Publish<'_>) -> u64 {
        let mut mapped = Vec::new();
        let subject = match &self.rules.subject_transform {
            Some(transform) if transform.apply(msg.subject, &mut mapped) => &mapped[..],
            _ => msg.subject,
        };
        self.rules
            .limits
            .sizing
            .size(subject, msg.headers, msg.payload)
    }

    /// With delete markers, a message TTL below the markers' is raised to
    /// theirs (a shorter one could expire a message after its subject's
    /// marker, leaving none), and its `Nats-TTL` header says so in seconds.
    /// A stream of one message per subject needs no such care.
    fn raise_ttl<'h>(
        &self,
        headers: &'h [u8],
        ttl: Option<Duration>,
        raised: &'h mut Vec<u8>,
    ) -> (&'h [u8], Option<Duration>) {
        let (Some(marker_ttl), Some(given)) = (self.rules.delete_marker_ttl, ttl) else {
            return (headers, ttl);
        };
        if self.rules.limits.max_msgs_per_subject == Some(1) || given.as_secs() >= marker_ttl {
            return (headers, ttl);
        }
        *raised = without_header(headers, TTL);
        append_headers(raised, &format!("Nats-TTL: {marker_ttl}\r\n"));
        (raised, Some(Duration::from_secs(marker_ttl)))
    }

    /// Where a message about to be stored on `subject` is republished, and
    /// the sequence of the subject's last message before it (`None`: not
    /// republished). Read before storing, as the reference reads it.
    fn republish_to(
        &mut self,
        subject: &[u8],
        known_last: Option<u64>,
        out: &mut VecDeque<JsAction>,
    ) -> Option<(Bytes, u64)> {
        let rule = self.rules.republish.as_ref()?;
        let mut dest = Vec::new();
        if !rule.transform.apply(subject, &mut dest) {
            return None;
        }
        if !crate::subject::is_valid_publish_subject(&dest) {
            out.push_back(JsAction::Log {
                level: LogLevel::Warn,
                text: format!(
                    "Stream '{} > {}' suppressing republish with invalid subject {}",
                    self.account,
                    self.rules.name,
                    crate::format::go_quote(&dest)
                ),
            });
            return None;
        }
        let last = known_last.unwrap_or_else(|| {
            self.store
                .load_last(&Filter::subject(subject))
                .map_or(0, |msg| msg.seq)
        });
        Some((Bytes::from(dest), last))
    }

    /// Send a stored message on to `subject`: its headers plus the
    /// stream's (`Nats-Stream`, `-Subject`, `-Sequence`, `-Time-Stamp`,
    /// `-Last-Sequence`, and `Nats-Msg-Size` instead of the payload when
    /// headers only), in the reference's order.
    fn republish(&self, subject: Bytes, msg: &StoredMsg, last: u64, out: &mut VecDeque<JsAction>) {
        let headers_only = self
            .rules
            .republish
            .as_ref()
            .is_some_and(|r| r.headers_only);
        let mut block = msg.headers.to_vec();
        let mut added = format!(
            "Nats-Stream: {}\r\nNats-Subject: {}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {}\r\nNats-Last-Sequence: {last}\r\n",
            self.rules.name,
            String::from_utf8_lossy(&msg.subject),
            msg.seq,
            crate::format::rfc3339_nanos(msg.ts),
        );
        if headers_only {
            added.push_str(&format!("Nats-Msg-Size: {}\r\n", msg.payload.len()));
        }
        append_headers(&mut block, &added);
        out.push_back(JsAction::Publish {
            account: self.account.clone(),
            subject,
            reply: Bytes::new(),
            headers: Bytes::from(block),
            payload: if headers_only {
                Bytes::new()
            } else {
                msg.payload.clone()
            },
        });
    }

    /// After expiry took the last message of each of `emptied`'s subjects,
    /// store a delete marker for it (unless the message was itself one):
    /// an empty message with `Nats-Marker-Reason: MaxAge` (the reference
    /// gives that reason for TTL expiry too), the marker TTL as a Go
    /// duration, and `Nats-Rollup: sub`. It goes through the publish path
    /// as the reference's does, so it is transformed and republished too.
    fn place_markers(
        &mut self,
        now: WallTime,
        mut emptied: Vec<SubjectEmptied>,
        out: &mut VecDeque<JsAction>,
    ) {
        let Some(marker_ttl) = self.rules.delete_marker_ttl else {
            return;
        };
        // The reference places the markers of `max_age` first (oldest
        // first), then those of message TTLs by sequence, not by deadline.
        emptied.sort_by_key(|gone| (gone.cause == ExpiryCause::Ttl, gone.seq));
        let headers = format!(
            "NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: {}\r\nNats-Rollup: sub\r\n\r\n",
            crate::format::go_duration(marker_ttl.saturating_mul(1_000_000_000))
        );
        let account = self.account.clone();
        for gone in emptied {
            if is_delete_marker(&gone.headers) {
                continue;
            }
            let marker = Publish {
                account: &account,
                subject: &gone.subject,
                reply: &NO_REPLY,
                headers: headers.as_bytes(),
                payload: b"",
            };
            if let Published::Refused(error) = self.try_publish(now, &marker, Some(gone.seq), out) {
                out.push_back(JsAction::Log {
                    level: LogLevel::Warn,
                    text: format!(
                        "Stream '{} > {}': delete marker for {} not stored: {error:?}",
                        self.account,
                        self.rules.name,
                        String::from_utf8_lossy(&gone.subject)
                    ),
                });
            }
        }
    }

    /// Hand the store's requests on and release the acks it made durable.
    pub fn drain_store(&mut self, out: &mut VecDeque<JsAction>) {
        while let Some(action) = self.store.poll_action() {
            match action {
                StoreAction::Sync { tag, files, dirs } => out.push_back(JsAction::Sync {
                    stream: self.id,
                    tag,
                    files,
                    dirs,
                }),
                StoreAction::Durable { through } => {
                    assert!(through >= self.durable, "durability went backwards");
                    self.durable = through;
                    while self.waiting.front().is_some_and(|ack| ack.seq <= through) {
                        let ack = self.waiting.pop_front().expect("front exists");
                        self.send_ack(ack, out);
                    }
                    // Duplicates of earlier messages may sit behind later ones.
                    if self.waiting.iter().any(|ack| ack.seq <= through) {
                        let (ready, rest): (Vec<_>, Vec<_>) =
                            self.waiting.drain(..).partition(|ack| ack.seq <= through);
                        self.waiting = rest.into();
                        for ack in ready {
                            self.send_ack(ack, out);
                        }
                    }
                }
                StoreAction::Warning(text) => out.push_back(JsAction::Log {
                    level: LogLevel::Warn,
                    text: format!("Stream '{} > {}': {text}", self.account, self.rules.name),
                }),
            }
        }
        debug_assert!(self.waiting.iter().all(|ack| ack.seq > self.durable));
    }

    #[cfg(feature = "planted-defects")]
    fn planted_ack_before_sync(&self) -> bool {
        self.ack_before_sync
    }

    #[cfg(not(feature = "planted-defects"))]
    fn planted_ack_before_sync(&self) -> bool {
        false
    }

    /// Takes the ack by value: its account and reply move into the action
    /// (cloning them cost allocations per message).
    /// Send `ack` now if its message is durable, else once it is.
    fn queue_ack(&mut self, ack: WaitingAck, out: &mut VecDeque<JsAction>) {
        if ack.seq <= self.durable || self.planted_ack_before_sync() {
            self.send_ack(ack, out);
        } else {
            self.waiting.push_back(ack);
        }
    }

    fn send_ack(&mut self, ack: WaitingAck, out: &mut VecDeque<JsAction>) {
        debug_assert!(
            ack.seq <= self.durable || self.planted_ack_before_sync(),
            "an ack before its sync"
        );
        out.push_back(JsAction::Publish {
            account: self.account.clone(),
            subject: ack.reply,
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: match ack.body {
                AckBody::Stored {
                    duplicate,
                    total: None,
                } => self.acks.stored(ack.seq, duplicate),
                AckBody::Stored { duplicate, total } => super::wire::pub_ack(
                    &self.rules.name,
                    &self.rules.domain,
                    ack.seq,
                    duplicate,
                    total,
                ),
                AckBody::Batch { id, count } => Bytes::from(
                    super::api::PubAck {
                        stream: self.rules.name.clone(),
                        domain: self.rules.domain.clone(),
                        seq: ack.seq,
                        batch: id,
                        count,
                        ..Default::default()
                    }
                    .encode(),
                ),
                AckBody::Written(payload) => payload,
            },
        });
    }

    /// A sync the store asked for finished.
    pub fn handle_sync_done(
        &mut self,
        tag: u64,
        result: crate::store::DiskResult<()>,
        out: &mut VecDeque<JsAction>,
    ) {
        self.store.handle_sync_done(tag, result);
        self.drain_store(out);
    }

    /// The next time the stream has work: a sync timer (monotonic), or an
    /// expiry (wall clock), converted by the caller.
    pub fn deadlines(&self) -> (Option<Instant>, Option<WallTime>) {
        let expiry = self.store.next_expiry();
        let dedupe = self.dedupe.next_expiry(self.rules.duplicate_window);
        let schedule = match self.schedules_stale {
            true => Some(WallTime(0)),
            false => self.schedules.next(),
        };
        let batches = self.batches.next_deadline();
        let fast = self.fast.next_deadline();
        let wall = expiry
            .into_iter()
            .chain(dedupe)
            .chain(schedule)
            .chain(batches)
            .chain(fast)
            .min();
        (self.store.poll_timeout(), wall)
    }

    /// Time passed: run the sync timer, expire messages and ids.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallTime, out: &mut VecDeque<JsAction>) {
        self.store.handle_timeout(now);
        match self.store.expire_report(wall) {
            Ok(expired) => self.place_markers(wall, expired.subjects_emptied, out),
            Err(error) => out.push_back(JsAction::Log {
                level: LogLevel::Error,
                text: format!(
                    "Stream '{} > {}': expiring messages failed: {error}",
                    self.account, self.rules.name
                ),
            }),
        }
        self.dedupe.expire(wall, self.rules.duplicate_window);
        for gone in self.batches.expire(wall) {
            self.abandoned
                .push((gone, super::batch::Abandoned::Timeout));
        }
        self.fast.expire(wall);
        self.fire_schedules(wall, out);
        self.drain_store(out);
    }

    /// Track a stored message's schedule, and purge the schedule a
    /// produced (or client) message names with `Nats-Schedule-Next: purge`.
    fn schedule_stored(&mut self, seq: u64, subject: &[u8], headers: &[u8], now: WallTime) {
        self.schedules.stored(seq, subject, headers, now);
        if let Some(scheduler) = super::schedule::purges(headers) {
            let _ = self.store.purge_ex(&Filter::subject(scheduler), 0, 0);
            self.schedules.remove(scheduler);
        }
    }

    /// Store what each due schedule produces, in sequence order.
    fn fire_schedules(&mut self, now: WallTime, out: &mut VecDeque<JsAction>) {
        if !self.rules.allow_msg_schedules {
            return;
        }
        if std::mem::take(&mut self.schedules_stale) {
            let subjects = self.store.subjects_state(&Filter::All);
            let last: Vec<_> = subjects
                .keys()
                .filter_map(|s| self.store.load_last(&Filter::subject(s)).ok())
                .map(|m| (m.seq, m.subject, m.headers, m.ts))
                .collect();
            self.schedules = super::schedule::recovered(last.into_iter(), now);
        }
        let mut due = self.schedules.take_due(now);
        due.sort_unstable();
        for (seq, at) in due {
            let Ok(schedule) = self.store.load_msg(seq) else {
                self.schedules.forget(seq);
                continue;
            };
            let source = find_header(&schedule.headers, b"Nats-Schedule-Source")
                .filter(|s| !s.is_empty())
                .and_then(|s| self.store.load_last(&Filter::subject(s)).ok())
                .map(|m| (m.headers, m.payload));
            let Some(produced) = super::schedule::produce(
                &schedule.subject,
                &schedule.headers,
                &schedule.payload,
                source,
                at,
                now,
            ) else {
                self.schedules.remove(&schedule.subject);
                continue;
            };
            let account = self.account.clone();
            let publish = Publish {
                account: &account,
                subject: &produced.target,
                reply: &NO_REPLY,
                headers: &produced.headers,
                payload: &produced.payload,
            };
            self.firing = true;
            let result = self.try_publish(now, &publish, None, out);
            self.firing = false;
            if let Published::Refused(error) = result {
                out.push_back(JsAction::Log {
                    level: LogLevel::Warn,
                    text: format!(
                        "Stream '{} > {}': scheduled message for {} not stored: {error:?}",
                        self.account,
                        self.rules.name,
                        String::from_utf8_lossy(&produced.target)
                    ),
                });
            }
        }
    }

    /// Purge by `filter` below `seq` (0: all) keeping the newest `keep`.
    pub fn purge(
        &mut self,
        filter: &Filter,
        seq: u64,
        keep: u64,
        out: &mut VecDeque<JsAction>,
    ) -> StoreResult<u64> {
        let purged = self.store.purge_ex(filter, seq, keep);
        self.drain_store(out);
        purged
    }

    /// Remove one message (overwriting its bytes when `erase`).
    pub fn remove(
        &mut self,
        seq: u64,
        erase: bool,
        out: &mut VecDeque<JsAction>,
    ) -> StoreResult<bool> {
        let removed = self.store.remove_msg(seq, erase);
        self.drain_store(out);
        removed
    }
}

const MSG_ID: &[u8] = b"Nats-Msg-Id";
/// A message's `Nats-Rollup`: none, `sub` (`Some(false)`) or `all`
/// (`Some(true)`); refused on a stream without roll-ups or when neither.
fn rollup_of(headers: &[u8], allowed: bool) -> Result<Option<bool>, PublishError> {
    match find_header(headers, ROLLUP) {
        None => Ok(None),
        Some(_) if !allowed => Err(PublishError::RollupNotPermitted),
        Some(b"sub") => Ok(Some(false)),
        Some(b"all") => Ok(Some(true)),
        Some(other) => Err(PublishError::InvalidRollup(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// A message's `Nats-Expected-Stream` against the stream's `name`; an
/// empty name expects nothing, as the reference reads it.
pub(super) fn check_expected_stream(headers: &[u8], name: &str) -> Result<(), PublishError> {
    match find_header(headers, EXPECTED_STREAM) {
        Some(expected) if !expected.is_empty() && expected != name.as_bytes() => {
            Err(PublishError::WrongStream)
        }
        _ => Ok(()),
    }
}

const EXPECTED_STREAM: &[u8] = b"Nats-Expected-Stream";
const EXPECTED_LAST_SEQ: &[u8] = b"Nats-Expected-Last-Sequence";
const EXPECTED_LAST_SUBJECT_SEQ: &[u8] = b"Nats-Expected-Last-Subject-Sequence";
const EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: &[u8] = b"Nats-Expected-Last-Subject-Sequence-Subject";
const EXPECTED_LAST_MSG_ID: &[u8] = b"Nats-Expected-Last-Msg-Id";
const ROLLUP: &[u8] = b"Nats-Rollup";
const TTL: &[u8] = b"Nats-TTL";
const MARKER_REASON: &[u8] = b"Nats-Marker-Reason";
const KV_OPERATION: &[u8] = b"KV-Operation";

/// A delete marker: a `Nats-Marker-Reason`, or a KV purge (which marks a
/// key's end the same way), as the reference tells them.
fn is_delete_marker(headers: &[u8]) -> bool {
    find_header(headers, MARKER_REASON).is_some_and(|reason| !reason.is_empty())
        || find_header(headers, KV_OPERATION) == Some(b"PURGE")
}

/// `headers` without its `key` lines (empty when nothing else is left).
fn without_header(headers: &[u8], key: &[u8]) -> Vec<u8> {
    crate::protocol::without_headers(headers, |name| name == key)
}

/// Add `lines` (each ending in CRLF) at the end of a header block, which
/// is started when empty.
pub(super) fn append_headers(block: &mut Vec<u8>, lines: &str) {
    if block.len() > 2 {
        block.truncate(block.len() - 2);
    } else {
        block.clear();
        block.extend_from_slice(b"NATS/1.0\r\n");
    }
    block.extend_from_slice(lines.as_bytes());
    block.extend_from_slice(b"\r\n");
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// `Nats-TTL`: a Go duration (`1s`, `1m30s`), bare seconds, or `never`.
/// `Some(None)` is "never expires"; `None` is invalid.
pub(super) fn parse_ttl(text: &[u8]) -> Option<Option<Duration>> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.eq_ignore_ascii_case("never") {
        return Some(None);
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return (seconds > 0).then_some(Some(Duration::from_secs(seconds)));
    }
    let nanos = crate::conf::value::parse_go_duration(text).ok()?;
    let duration = Duration::from_nanos(u64::try_from(nanos).ok()?);
    // The reference refuses TTLs under a second.
    (duration >= Duration::from_secs(1)).then_some(Some(duration))
}

#[cfg(test)]
mod header_tests {
    use super::{append_headers, is_delete_marker, without_header};

    #[test]
    fn a_header_is_removed_and_another_appended() {
        let block = b"NATS/1.0\r\nA: 1\r\nNats-TTL: 1s\r\nB: 2\r\n\r\n";
        let mut kept = without_header(block, b"Nats-TTL");
        assert_eq!(kept, b"NATS/1.0\r\nA: 1\r\nB: 2\r\n\r\n");
        append_headers(&mut kept, "Nats-TTL: 5\r\n");
        assert_eq!(kept, b"NATS/1.0\r\nA: 1\r\nB: 2\r\nNats-TTL: 5\r\n\r\n");
        // Nothing left: the block goes, and appending starts a new one.
        let mut only = without_header(b"NATS/1.0\r\nNats-TTL: 1s\r\n\r\n", b"Nats-TTL");
        assert!(only.is_empty());
        append_headers(&mut only, "Nats-TTL: 5\r\n");
        assert_eq!(only, b"NATS/1.0\r\nNats-TTL: 5\r\n\r\n");
        // A longer key sharing the prefix stays.
        let similar = b"NATS/1.0\r\nNats-TTL-X: 1\r\n\r\n";
        assert_eq!(without_header(similar, b"Nats-TTL"), similar);
    }

    #[test]
    fn markers_and_kv_purges_are_delete_markers() {
        assert!(is_delete_marker(
            b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\n\r\n"
        ));
        assert!(is_delete_marker(b"NATS/1.0\r\nKV-Operation: PURGE\r\n\r\n"));
        assert!(!is_delete_marker(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"));
        assert!(!is_delete_marker(b""));
    }
}

#[cfg(test)]
mod batch_recovery_tests {
    use super::*;
    use crate::store::MemDisk;

    fn batch_headers(id: &str, seq: u64, commit: bool) -> Vec<u8> {
        let commit = if commit {
            "Nats-Batch-Commit: 1\r\n"
        } else {
            ""
        };
        format!("NATS/1.0\r\nNats-Batch-Id: {id}\r\nNats-Batch-Sequence: {seq}\r\n{commit}\r\n")
            .into_bytes()
    }

    fn recovered(msgs: &[Vec<u8>], allow_atomic: bool) -> Stream<MemDisk> {
        let mut store = MemStore::new(StoreConfig::default());
        for headers in msgs {
            store
                .store_msg(b"s", headers, b"x", WallTime(1), None)
                .expect("stored");
        }
        let rules = StreamRules {
            allow_atomic,
            ..StreamRules::default()
        };
        Stream::new(StreamId(1), "A".into(), rules, Store::Memory(store))
    }

    #[test]
    fn a_batch_whose_commit_never_landed_is_dropped_at_open() {
        let committed = [batch_headers("a", 1, false), batch_headers("a", 2, true)];
        let partial = [batch_headers("b", 1, false), batch_headers("b", 2, false)];
        let all: Vec<Vec<u8>> = committed.iter().chain(&partial).cloned().collect();
        let stream = recovered(&all, true);
        assert_eq!(stream.state().msgs, 2);
        // Only streams with atomic batches look.
        assert_eq!(recovered(&all, false).state().msgs, 4);
        // A committed batch at the end stays whole.
        assert_eq!(recovered(&committed, true).state().msgs, 2);
    }
}
