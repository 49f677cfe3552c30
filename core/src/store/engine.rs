//! The store engine: sequences, per-subject state, limits and expiry over a
//! [`Backend`] that holds the messages.
//!
//! Inputs: the store calls (`store_msg`, loads, removes, purges, `expire`).
//! Outputs: results, and the backend's [`StoreAction`]s passed through;
//! `expire_report` also names the subjects expiry left empty ([`Expired`]).
//!
//! Expiry: by the stream's `max_age` (from the first message) and by each
//! message's own TTL (`ttl_index`, rebuilt from the stored TTLs on open,
//! so a FileStore's TTLs survive a restart); `next_expiry` is the earlier
//! of the two deadlines.
//!
//! Invariants (checked by `check` in debug builds and by tests):
//! - `last_seq <= SEQ_MAX` (a backend claiming more is refused as corrupt;
//!   a store there refuses new sequences), so `last_seq + 1` never overflows.
//! - `first_seq <= last_seq + 1`; empty ⇔ `msgs == 0` ⇔ `first_seq == last_seq + 1`
//!   or no message present in `first_seq..=last_seq`.
//! - When `msgs > 0`, a message is present at `first_seq` and `first_ts` is its time.
//! - `subjects` holds exactly the subjects with a message present; their
//!   counts add up to `msgs`; each entry's `first_seq`/`last_seq` hold a
//!   message of that subject.
//! - `ttl_index` holds `(expiry, seq)` for exactly the present messages with a TTL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::{
    Discard, DiskResult, Filter, StoreAction, StoreConfig, StoreError, StoreResult, StoreState,
    StoredMsg, SubjectState, SEQ_MAX,
};
use crate::time::{Instant, WallTime};

/// A message being stored, borrowed from the caller (no copy on the way in).
#[derive(Debug, Clone, Copy)]
pub struct NewMsg<'a> {
    pub seq: u64,
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    pub ts: WallTime,
    pub ttl: Option<Duration>,
}

/// What one [`Engine::expire_report`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Messages removed, by age or by their own TTL.
    pub removed: u64,
    /// The subjects left without a message, in the order they emptied
    /// (at most one entry per removed message).
    pub subjects_emptied: Vec<SubjectEmptied>,
}

impl Expired {
    fn note(&mut self, msg: StoredMsg, emptied: bool, cause: ExpiryCause) {
        self.removed += 1;
        if emptied {
            self.subjects_emptied.push(SubjectEmptied {
                subject: msg.subject,
                seq: msg.seq,
                headers: msg.headers,
                cause,
            });
        }
    }
}

/// A subject whose last message expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectEmptied {
    pub subject: Bytes,
    /// The sequence of that last message.
    pub seq: u64,
    /// Its header block (empty if none), so the caller can tell a message
    /// that was itself a delete marker (`Nats-Marker-Reason`).
    pub headers: Bytes,
    pub cause: ExpiryCause,
}

/// Why a message expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryCause {
    /// The stream's `max_age`.
    MaxAge,
    /// The message's own TTL (`Nats-TTL`).
    Ttl,
}

/// The accounting of the messages present, built by a backend in the same
/// pass that recovers them ([`Backend::take_tally`]), so opening a store
/// reads its data once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub(super) msgs: u64,
    pub(super) bytes: u64,
    /// The lowest sequence present and its timestamp.
    pub(super) first: Option<(u64, WallTime)>,
    pub(super) subjects: BTreeMap<Bytes, SubjectState>,
    pub(super) ttl_index: BTreeSet<(u64, u64)>,
}

impl Tally {
    /// Count message `seq` (present, counted once) of `size` bytes.
    pub fn add(
        &mut self,
        seq: u64,
        subject: &[u8],
        size: u64,
        ts: WallTime,
        ttl: Option<Duration>,
    ) {
        assert!(
            seq > 0 && seq <= SEQ_MAX,
            "tallied sequence {seq} out of range"
        );
        self.msgs += 1;
        self.bytes += size;
        if self.first.is_none_or(|(first, _)| seq < first) {
            self.first = Some((seq, ts));
        }
        count_in_subject(&mut self.subjects, subject, seq);
        if let Some(ttl) = ttl {
            self.ttl_index.insert((expiry(ts, ttl), seq));
        }
    }

    /// The lowest sequence counted.
    pub fn first_seq(&self) -> Option<u64> {
        self.first.map(|(seq, _)| seq)
    }

    /// The highest sequence counted (0: none).
    pub fn last_seq(&self) -> u64 {
        self.subjects
            .values()
            .map(|state| state.last_seq)
            .max()
            .unwrap_or(0)
    }
}

/// Where the messages live. Implemented by [`super::MemBackend`] and
/// [`super::FileBackend`]; the engine keeps all accounting.
pub trait Backend {
    /// `(floor, last_seq, last_ts)` after opening: no message below `floor`
    /// is present, `last_seq` is the highest sequence ever handed out that
    /// the backend knows of.
    fn bounds(&self) -> (u64, u64, WallTime);
    /// Keep `msg`; its sequence is above every sequence kept before.
    fn append(&mut self, msg: &NewMsg<'_>) -> StoreResult<()>;
    /// Record that every sequence up to `through` has been handed out.
    fn skip(&mut self, through: u64, ts: WallTime) -> StoreResult<()>;
    /// The message at `seq`, if present.
    fn get(&mut self, seq: u64) -> StoreResult<Option<StoredMsg>>;
    /// The smallest present sequence `>= seq`.
    fn next_present(&mut self, seq: u64) -> Option<u64>;
    /// The largest present sequence `<= seq`.
    fn prev_present(&mut self, seq: u64) -> Option<u64>;
    /// Remove the message at `seq` (overwriting its bytes if `erase`).
    /// Returns whether it was present.
    fn remove(&mut self, seq: u64, erase: bool) -> StoreResult<bool>;
    /// Drop every message below `floor`; `last_seq` is the store's last
    /// sequence. Durable when it returns.
    fn compact(&mut self, floor: u64, last_seq: u64, last_ts: WallTime) -> StoreResult<()>;
    /// Drop every message above `last_seq`, which becomes the last sequence.
    /// Durable when it returns.
    fn truncate(&mut self, last_seq: u64, last_ts: WallTime) -> StoreResult<()>;
    /// The next action for the runtime; `last_seq` is the store's last sequence.
    fn poll_action(&mut self, last_seq: u64) -> Option<StoreAction>;
    /// A sync requested with `tag` finished.
    fn handle_sync_done(&mut self, tag: u64, result: DiskResult<()>);
    /// The backend's next deadline (the sync interval), if any.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time passed; an interval sync may be due.
    fn handle_timeout(&mut self, now: Instant);
    /// Whether a failed sync poisoned the backend.
    fn failed(&self) -> bool;
    /// The store's configuration, at open and on every change (a FileStore
    /// takes `compress` from it; the limits are the engine's).
    fn configure(&mut self, _config: &StoreConfig) {}
    /// The accounting of the messages present, if the backend built it
    /// while opening (taken once); `None`: the engine counts them itself
    /// by loading every message.
    fn take_tally(&mut self) -> Option<Tally> {
        None
    }
    /// Whether the backend wants a snapshot written (after a store).
    fn snapshot_due(&self) -> bool {
        false
    }
    /// Keep the backend's state and `tally` (the engine's accounting) for
    /// the next open; a backend without persistent state does nothing.
    fn write_snapshot(&mut self, _tally: &Tally) -> StoreResult<()> {
        Ok(())
    }
}

/// A store: the accounting shared by MemStore and FileStore over a backend.
#[derive(Debug)]
pub struct Engine<B: Backend> {
    backend: B,
    config: StoreConfig,
    first_seq: u64,
    last_seq: u64,
    first_ts: WallTime,
    last_ts: WallTime,
    msgs: u64,
    bytes: u64,
    subjects: BTreeMap<Bytes, SubjectState>,
    ttl_index: BTreeSet<(u64, u64)>,
    /// A bulk change failed midway: the accounting may disagree with the
    /// backend, so writes are refused until the store is reopened.
    poisoned: bool,
}

impl<B: Backend> Engine<B> {
    /// Open a store over `backend`, rebuilding the accounting from the
    /// messages present.
    pub fn open(backend: B, config: StoreConfig) -> StoreResult<Engine<B>> {
        let (floor, last_seq, last_ts) = backend.bounds();
        if last_seq > SEQ_MAX {
            return Err(StoreError::Corrupt(format!(
                "last sequence {last_seq} above the highest a store hands out ({SEQ_MAX})"
            )));
        }
        assert!(
            floor <= last_seq + 1,
            "backend floor {floor} above last {last_seq}"
        );
        let mut backend = backend;
        backend.configure(&config);
        let mut engine = Engine {
            backend,
            config,
            // A store that never held anything reports first 0, as the
            // reference does.
            first_seq: if floor == 0 && last_seq == 0 {
                0
            } else {
                last_seq + 1
            },
            last_seq,
            first_ts: WallTime(0),
            last_ts,
            msgs: 0,
            bytes: 0,
            subjects: BTreeMap::new(),
            ttl_index: BTreeSet::new(),
            poisoned: false,
        };
        let sizing = engine.config.sizing;
        let tally = match engine.backend.take_tally() {
            Some(tally) => {
                // Debug builds (tests, fuzzing) count again by loading
                // every message: the one-pass count must agree.
                // (A record damaged at rest in a block a snapshot vouched
                // for fails that load; the tally stands, reads refuse it.)
                if cfg!(debug_assertions) {
                    if let Ok(counted) = count_present(&mut engine.backend, floor, last_seq, sizing)
                    {
                        assert_eq!(
                            counted, tally,
                            "the backend's tally disagrees with its messages"
                        );
                    }
                }
                tally
            }
            None => count_present(&mut engine.backend, floor, last_seq, sizing)?,
        };
        engine.adopt(tally);
        engine.check();
        // A crash can keep a message and lose the removal its arrival
        // caused (they may sit in different files): the limits hold again
        // before anything is served.
        engine.enforce_limits()?;
        Ok(engine)
    }

    /// Take the backend's count of the messages present (a fresh engine).
    fn adopt(&mut self, tally: Tally) {
        assert_eq!(self.msgs, 0, "adopt into a fresh engine");
        if let Some((seq, ts)) = tally.first {
            assert!(
                seq <= self.last_seq,
                "tallied {seq} above last {}",
                self.last_seq
            );
            self.first_seq = seq;
            self.first_ts = ts;
        }
        self.msgs = tally.msgs;
        self.bytes = tally.bytes;
        self.subjects = tally.subjects;
        self.ttl_index = tally.ttl_index;
    }

    /// The bytes this store counts for `msg`.
    fn size_of(&self, msg: &StoredMsg) -> u64 {
        self.config
            .sizing
            .size(&msg.subject, &msg.headers, &msg.payload)
    }

    /// Whether the store refuses writes (a failed sync or bulk change).
    pub fn failed(&self) -> bool {
        self.poisoned || self.backend.failed()
    }

    /// The stream's limits.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Change the limits (applied at the next store or `enforce_limits`).
    pub fn set_config(&mut self, config: StoreConfig) {
        assert_eq!(
            config.sizing, self.config.sizing,
            "a store's sizing is fixed for its life"
        );
        self.backend.configure(&config);
        self.config = config;
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Store a message; returns its sequence.
    pub fn store_msg(
        &mut self,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        ts: WallTime,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        assert!(!subject.is_empty(), "a stored message needs a subject");
        let size = self.config.sizing.size(subject, headers, payload);
        if self.config.max_msg_size.is_some_and(|max| size > max) {
            return Err(StoreError::MsgTooLarge);
        }
        // The store is full of sequences: nothing can ever be stored again.
        let seq = self
            .last_seq
            .checked_add(1)
            .filter(|&seq| seq <= SEQ_MAX)
            .ok_or(StoreError::InvalidSequence)?;
        self.check_discard_new(subject, size)?;
        let msg = NewMsg {
            seq,
            subject,
            headers,
            payload,
            ts,
            ttl,
        };
        self.backend.append(&msg)?;
        self.last_seq = seq;
        self.last_ts = ts;
        if self.msgs == 0 {
            self.first_seq = seq;
            self.first_ts = ts;
        }
        self.account_added(seq, subject, size, ts, ttl);
        // The message is stored; if dropping the oldest now fails (a read
        // error, a message damaged since opening), the limits no longer
        // hold: refuse writes until a reopen recovers from the files.
        let enforced = self
            .enforce_subject_limit(subject)
            .and_then(|()| self.enforce_totals());
        if let Err(error) = enforced {
            self.poisoned = true;
            return Err(error);
        }
        self.check();
        if self.backend.snapshot_due() {
            // The message is stored either way: a snapshot that could not
            // be written only makes the next open read more blocks (the
            // failure is the backend's to report; a failed sync poisons it).
            let _ = self.write_snapshot();
        }
        Ok(seq)
    }

    /// Write the backend's full-state snapshot now (a FileStore: so the
    /// next open need not read its blocks; at a clean shutdown).
    pub fn write_snapshot(&mut self) -> StoreResult<()> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        let tally = Tally {
            msgs: self.msgs,
            bytes: self.bytes,
            first: (self.msgs > 0).then_some((self.first_seq, self.first_ts)),
            subjects: self.subjects.clone(),
            ttl_index: self.ttl_index.clone(),
        };
        self.backend.write_snapshot(&tally)
    }

    /// Discard-new refusals, as the reference's memstore decides them: a
    /// message that will push out its subject's oldest (the subject is at
    /// its per-subject limit) passes the message limit, and the byte limit
    /// if that oldest is at least as large.
    fn check_discard_new(&mut self, subject: &[u8], size: u64) -> StoreResult<()> {
        if self.config.discard != Discard::New {
            return Ok(());
        }
        let held = self.subjects.get(subject).copied();
        let at_subject_limit = match (self.config.max_msgs_per_subject, held) {
            (Some(max), Some(state)) => max > 0 && state.msgs >= max,
            _ => false,
        };
        if at_subject_limit && self.config.discard_new_per_subject {
            return Err(StoreError::MaxMsgsPerSubject);
        }
        if self.config.max_msgs.is_some_and(|max| self.msgs >= max) && !at_subject_limit {
            return Err(StoreError::MaxMsgs);
        }
        if self
            .config
            .max_bytes
            .is_some_and(|max| self.bytes + size >= max)
        {
            let Some(state) = held.filter(|_| at_subject_limit) else {
                return Err(StoreError::MaxBytes);
            };
            let oldest = self
                .backend
                .get(state.first_seq)?
                .ok_or(StoreError::NotFound)?;
            if self.size_of(&oldest) < size {
                return Err(StoreError::MaxBytes);
            }
        }
        Ok(())
    }

    /// Drop the oldest messages until every limit holds (after a change
    /// of limits: every subject is checked).
    pub fn enforce_limits(&mut self) -> StoreResult<()> {
        let subjects: Vec<Bytes> = self.subjects.keys().cloned().collect();
        for subject in subjects {
            self.enforce_subject_limit(&subject)?;
        }
        self.enforce_totals()
    }

    /// Drop `subject`'s oldest messages while it is over its limit.
    fn enforce_subject_limit(&mut self, subject: &[u8]) -> StoreResult<()> {
        let Some(max) = self.config.max_msgs_per_subject else {
            return Ok(());
        };
        while let Some(state) = self.subjects.get(subject).copied() {
            if state.msgs <= max {
                break;
            }
            let removed = self.remove_internal(state.first_seq, false)?;
            assert!(removed, "per-subject first {} absent", state.first_seq);
        }
        Ok(())
    }

    /// Drop the oldest messages while over the message or byte limit.
    fn enforce_totals(&mut self) -> StoreResult<()> {
        if let Some(max) = self.config.max_msgs {
            while self.msgs > max {
                let removed = self.remove_internal(self.first_seq, false)?;
                assert!(removed, "first sequence {} absent", self.first_seq);
            }
        }
        if let Some(max) = self.config.max_bytes {
            while self.bytes > max {
                let removed = self.remove_internal(self.first_seq, false)?;
                assert!(removed, "first sequence {} absent", self.first_seq);
            }
        }
        Ok(())
    }

    /// Hand out the next sequence without a message.
    pub fn skip_msg(&mut self, ts: WallTime) -> StoreResult<u64> {
        let seq = self.last_seq + 1;
        self.skip_msgs(seq, 1, ts)?;
        Ok(seq)
    }

    /// Hand out `count` sequences starting at `seq`, which must be the next one.
    pub fn skip_msgs(&mut self, seq: u64, count: u64, ts: WallTime) -> StoreResult<()> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        if seq != self.last_seq + 1 {
            return Err(StoreError::SequenceMismatch);
        }
        if count == 0 {
            return Ok(());
        }
        let through = seq
            .checked_add(count - 1)
            .filter(|&through| through <= SEQ_MAX)
            .ok_or(StoreError::InvalidSequence)?;
        self.backend.skip(through, ts)?;
        self.last_seq = through;
        self.last_ts = ts;
        if self.msgs == 0 {
            self.first_seq = through + 1;
        }
        self.check();
        Ok(())
    }

    /// The message at `seq`: `NotFound` if removed or below the first
    /// sequence, `Eof` above the last.
    pub fn load_msg(&mut self, seq: u64) -> StoreResult<StoredMsg> {
        if seq > self.last_seq {
            return Err(StoreError::Eof);
        }
        if seq < self.first_seq {
            return Err(StoreError::NotFound);
        }
        let msg = self.backend.get(seq)?.ok_or(StoreError::NotFound)?;
        assert_eq!(msg.seq, seq, "backend returned the wrong message");
        Ok(msg)
    }

    /// The first message at or after `start` whose subject matches `filter`.
    pub fn load_next(&mut self, filter: &Filter, start: u64) -> StoreResult<StoredMsg> {
        let (low, high) = match filter {
            Filter::All => (self.first_seq, self.last_seq),
            // With many subjects, narrowing the span costs a pass over all
            // of them on every call (a consumer calls once per message);
            // walking the messages from `start` usually meets a match first.
            Filter::Subjects(patterns)
                if self.subjects.len() > SPAN_SUBJECTS_MAX
                    && !patterns
                        .iter()
                        .all(|pattern| crate::subject::subject_is_literal(pattern)) =>
            {
                (self.first_seq, self.last_seq)
            }
            Filter::Subjects(_) => self.filter_span(filter).ok_or(StoreError::Eof)?,
        };
        let mut cursor = self.backend.next_present(start.max(low));
        while let Some(seq) = cursor {
            if seq > high {
                break;
            }
            let msg = self.backend.get(seq)?.ok_or(StoreError::NotFound)?;
            if filter.matches(&msg.subject) {
                return Ok(msg);
            }
            cursor = self.backend.next_present(seq + 1);
        }
        Err(StoreError::Eof)
    }

    /// The last message whose subject matches `filter`.
    pub fn load_last(&mut self, filter: &Filter) -> StoreResult<StoredMsg> {
        let seq = match filter {
            Filter::All => self
                .backend
                .prev_present(self.last_seq)
                .ok_or(StoreError::NotFound)?,
            Filter::Subjects(_) => self.filter_span(filter).ok_or(StoreError::NotFound)?.1,
        };
        let msg = self.backend.get(seq)?.ok_or(StoreError::NotFound)?;
        assert!(
            filter.matches(&msg.subject),
            "last of a filter does not match it"
        );
        Ok(msg)
    }

    /// How many messages matching `filter` have a sequence at or above
    /// `start` (a consumer's pending count). Whole subjects are counted
    /// from their state; only subjects with messages on both sides of
    /// `start` need a walk, and only up to the last of those.
    pub fn count_from(&mut self, filter: &Filter, start: u64) -> StoreResult<u64> {
        let start = start.max(self.first_seq);
        if self.msgs == 0 || start > self.last_seq {
            return Ok(0);
        }
        let mut partial: Vec<Bytes> = Vec::new();
        let mut walk_to = 0;
        let mut counted = 0;
        match filter {
            Filter::All => {
                let span = self.last_seq - start + 1;
                if start == self.first_seq {
                    return Ok(self.msgs);
                }
                if self.msgs == self.last_seq + 1 - self.first_seq {
                    // No gaps: every sequence in the span holds a message.
                    return Ok(span);
                }
                let mut cursor = self.backend.next_present(start);
                while let Some(seq) = cursor.filter(|&seq| seq <= self.last_seq) {
                    counted += 1;
                    cursor = self.backend.next_present(seq + 1);
                }
                return Ok(counted);
            }
            Filter::Subjects(patterns) => {
                let literal = patterns
                    .iter()
                    .all(|pattern| crate::subject::subject_is_literal(pattern));
                let mut consider = |subject: &Bytes, state: &SubjectState| {
                    if state.first_seq >= start {
                        counted += state.msgs;
                    } else if state.last_seq >= start {
                        partial.push(subject.clone());
                        walk_to = walk_to.max(state.last_seq);
                    }
                };
                if literal {
                    for pattern in patterns {
                        if let Some((subject, state)) = self.subjects.get_key_value(pattern) {
                            consider(subject, state);
                        }
                    }
                } else {
                    for (subject, state) in &self.subjects {
                        if filter.matches(subject) {
                            consider(subject, state);
                        }
                    }
                }
            }
        }
        if partial.is_empty() {
            return Ok(counted);
        }
        partial.sort_unstable();
        let mut cursor = self.backend.next_present(start);
        while let Some(seq) = cursor.filter(|&seq| seq <= walk_to) {
            let msg = self.backend.get(seq)?.ok_or(StoreError::NotFound)?;
            if partial.binary_search(&msg.subject).is_ok() {
                counted += 1;
            }
            cursor = self.backend.next_present(seq + 1);
        }
        Ok(counted)
    }

    /// `(lowest first, highest last)` over the subjects matching `filter`.
    fn filter_span(&self, filter: &Filter) -> Option<(u64, u64)> {
        let mut span: Option<(u64, u64)> = None;
        if let Filter::Subjects(patterns) = filter {
            if patterns
                .iter()
                .all(|pattern| crate::subject::subject_is_literal(pattern))
            {
                for state in patterns
                    .iter()
                    .filter_map(|pattern| self.subjects.get(pattern))
                {
                    let (low, high) = span.unwrap_or((u64::MAX, 0));
                    span = Some((low.min(state.first_seq), high.max(state.last_seq)));
                }
                return span;
            }
        }
        for (subject, state) in &self.subjects {
            if filter.matches(subject) {
                let (low, high) = span.unwrap_or((u64::MAX, 0));
                span = Some((low.min(state.first_seq), high.max(state.last_seq)));
            }
        }
        span
    }

    /// Remove the message at `seq`; `Ok(false)` if it was not there.
    pub fn remove_msg(&mut self, seq: u64) -> StoreResult<bool> {
        self.remove_checked(seq, false)
    }

    /// Remove the message at `seq` and overwrite its bytes where it was kept.
    pub fn erase_msg(&mut self, seq: u64) -> StoreResult<bool> {
        self.remove_checked(seq, true)
    }

    fn remove_checked(&mut self, seq: u64, erase: bool) -> StoreResult<bool> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        if seq < self.first_seq || seq > self.last_seq {
            return Ok(false);
        }
        let removed = self.remove_internal(seq, erase)?;
        self.check();
        Ok(removed)
    }

    fn remove_internal(&mut self, seq: u64, erase: bool) -> StoreResult<bool> {
        Ok(self.remove_returning(seq, erase)?.is_some())
    }

    /// Remove `seq`: the message removed and whether it was the last of
    /// its subject; `None` if it was not present.
    fn remove_returning(
        &mut self,
        seq: u64,
        erase: bool,
    ) -> StoreResult<Option<(StoredMsg, bool)>> {
        let Some(msg) = self.backend.get(seq)? else {
            return Ok(None);
        };
        // Every read this removal needs happens before anything changes, so
        // a failed read leaves the store as it was.
        let subject_after = self.subject_after_removal(&msg)?;
        let first_after = if seq == self.first_seq {
            Some(self.first_present_after(seq + 1)?)
        } else {
            None
        };
        let removed = self.backend.remove(seq, erase)?;
        assert!(removed, "backend lost message {seq} between get and remove");
        assert!(self.msgs > 0, "removing from an empty store");
        let size = self.size_of(&msg);
        assert!(self.bytes >= size, "bytes would go negative");
        self.msgs -= 1;
        self.bytes -= size;
        if let Some(ttl) = msg.ttl {
            let present = self.ttl_index.remove(&(expiry(msg.ts, ttl), msg.seq));
            assert!(present, "ttl index missed message {}", msg.seq);
        }
        let emptied = subject_after.is_none();
        match subject_after {
            Some(state) => self.subjects.insert(msg.subject.clone(), state),
            None => self.subjects.remove(&msg.subject),
        };
        if let Some(first) = first_after {
            match first {
                Some((next, ts)) => {
                    self.first_seq = next;
                    self.first_ts = ts;
                }
                None => {
                    assert_eq!(self.msgs, 0, "messages counted but none present");
                    self.first_seq = self.last_seq + 1;
                    self.first_ts = WallTime(0);
                }
            }
        }
        debug_assert_eq!(emptied, !self.subjects.contains_key(&msg.subject));
        Ok(Some((msg, emptied)))
    }

    /// The state of `msg`'s subject once `msg` is gone (`None`: no message left).
    fn subject_after_removal(&mut self, msg: &StoredMsg) -> StoreResult<Option<SubjectState>> {
        let mut state = *self
            .subjects
            .get(&msg.subject)
            .expect("removed message's subject is indexed");
        assert!(state.msgs > 0, "indexed subject without messages");
        state.msgs -= 1;
        if state.msgs == 0 {
            return Ok(None);
        }
        if state.msgs == 1 {
            // Two were left, at the subject's ends: the other end is the
            // one that stays. No scan: a KV bucket (one message per key)
            // would otherwise walk every message since the key's last put.
            assert!(
                msg.seq == state.first_seq || msg.seq == state.last_seq,
                "of two messages, one is at each end"
            );
            let other = state.first_seq + state.last_seq - msg.seq;
            state.first_seq = other;
            state.last_seq = other;
            return Ok(Some(state));
        }
        if msg.seq == state.first_seq {
            state.first_seq = self.scan_subject(&msg.subject, msg.seq + 1, state.last_seq, true)?;
        } else if msg.seq == state.last_seq {
            state.last_seq =
                self.scan_subject(&msg.subject, state.first_seq, msg.seq - 1, false)?;
        }
        Ok(Some(state))
    }

    /// The first present message at or after `from`: `(seq, ts)`, `None` if none.
    fn first_present_after(&mut self, from: u64) -> StoreResult<Option<(u64, WallTime)>> {
        match self.backend.next_present(from) {
            Some(next) if next <= self.last_seq => {
                let msg = self.backend.get(next)?.ok_or(StoreError::NotFound)?;
                Ok(Some((next, msg.ts)))
            }
            _ => Ok(None),
        }
    }

    /// Move `first_seq` to the first present sequence at or after `from`.
    fn advance_first(&mut self, from: u64) -> StoreResult<()> {
        match self.backend.next_present(from) {
            Some(next) if next <= self.last_seq => {
                let msg = self.backend.get(next)?.ok_or(StoreError::NotFound)?;
                self.first_seq = next;
                self.first_ts = msg.ts;
            }
            _ => {
                assert_eq!(self.msgs, 0, "messages counted but none present");
                self.first_seq = self.last_seq + 1;
                self.first_ts = WallTime(0);
            }
        }
        Ok(())
    }

    fn account_added(
        &mut self,
        seq: u64,
        subject: &[u8],
        size: u64,
        ts: WallTime,
        ttl: Option<Duration>,
    ) {
        self.msgs += 1;
        self.bytes += size;
        count_in_subject(&mut self.subjects, subject, seq);
        if let Some(ttl) = ttl {
            self.ttl_index.insert((expiry(ts, ttl), seq));
        }
    }

    /// The first (`forward`) or last sequence in `low..=high` holding `subject`.
    fn scan_subject(
        &mut self,
        subject: &[u8],
        low: u64,
        high: u64,
        forward: bool,
    ) -> StoreResult<u64> {
        let mut cursor = if forward {
            self.backend.next_present(low)
        } else {
            self.backend.prev_present(high)
        };
        while let Some(seq) = cursor {
            if seq < low || seq > high {
                break;
            }
            let msg = self.backend.get(seq)?.ok_or(StoreError::NotFound)?;
            if msg.subject.as_ref() == subject {
                return Ok(seq);
            }
            cursor = if forward {
                self.backend.next_present(seq + 1)
            } else if seq == 0 {
                None
            } else {
                self.backend.prev_present(seq - 1)
            };
        }
        Err(StoreError::Corrupt(format!(
            "subject index counts a message in {low}..={high} that is not there"
        )))
    }

    /// Remove every message; returns how many.
    pub fn purge(&mut self) -> StoreResult<u64> {
        let result = self.purge_inner();
        self.poisoned |= result.is_err();
        result
    }

    fn purge_inner(&mut self) -> StoreResult<u64> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        let purged = self.msgs;
        self.backend
            .compact(self.last_seq + 1, self.last_seq, self.last_ts)?;
        self.msgs = 0;
        self.bytes = 0;
        self.subjects.clear();
        self.ttl_index.clear();
        self.first_seq = self.last_seq + 1;
        self.first_ts = WallTime(0);
        self.check();
        Ok(purged)
    }

    /// Remove every message below `seq`; returns how many. A `seq` past the
    /// end moves the last sequence up to `seq - 1`.
    pub fn compact(&mut self, seq: u64) -> StoreResult<u64> {
        // Past SEQ_MAX + 1 the last sequence would pass SEQ_MAX: refused
        // before anything changes (not a failure that poisons the store).
        if seq > SEQ_MAX + 1 {
            return Err(StoreError::InvalidSequence);
        }
        let result = self.compact_inner(seq);
        self.poisoned |= result.is_err();
        result
    }

    fn compact_inner(&mut self, seq: u64) -> StoreResult<u64> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        if seq == 0 {
            return self.purge_inner();
        }
        if seq <= self.first_seq {
            return Ok(0);
        }
        if seq > self.last_seq + 1 {
            let purged = self.msgs;
            self.last_seq = seq - 1;
            self.backend.compact(seq, self.last_seq, self.last_ts)?;
            self.msgs = 0;
            self.bytes = 0;
            self.subjects.clear();
            self.ttl_index.clear();
            self.first_seq = seq;
            self.first_ts = WallTime(0);
            self.check();
            return Ok(purged);
        }
        let mut purged = 0;
        let mut cursor = self.backend.next_present(self.first_seq);
        while let Some(current) = cursor {
            if current >= seq {
                break;
            }
            let msg = self.backend.get(current)?.ok_or(StoreError::NotFound)?;
            // Accounting first, while the subject scans can still see the
            // messages above `current`.
            self.account_removed_bulk(&msg);
            purged += 1;
            cursor = self.backend.next_present(current + 1);
        }
        self.backend.compact(seq, self.last_seq, self.last_ts)?;
        self.refresh_subject_firsts(seq)?;
        self.first_seq = self.first_seq.max(seq);
        self.advance_first(self.first_seq)?;
        self.check();
        Ok(purged)
    }

    /// Accounting for a bulk removal: subject first/last fixed afterwards.
    fn account_removed_bulk(&mut self, msg: &StoredMsg) {
        self.msgs -= 1;
        self.bytes -= self.size_of(msg);
        if let Some(ttl) = msg.ttl {
            self.ttl_index.remove(&(expiry(msg.ts, ttl), msg.seq));
        }
        let state = self
            .subjects
            .get_mut(&msg.subject)
            .expect("removed message's subject is indexed");
        state.msgs -= 1;
        if state.msgs == 0 {
            self.subjects.remove(&msg.subject);
        }
    }

    /// After a compact to `floor`: subjects whose first fell below it.
    fn refresh_subject_firsts(&mut self, floor: u64) -> StoreResult<()> {
        let stale: Vec<(Bytes, SubjectState)> = self
            .subjects
            .iter()
            .filter(|(_, state)| state.first_seq < floor)
            .map(|(subject, state)| (subject.clone(), *state))
            .collect();
        for (subject, mut state) in stale {
            state.first_seq = self.scan_subject(&subject, floor, state.last_seq, true)?;
            self.subjects.insert(subject, state);
        }
        Ok(())
    }

    /// Remove every message above `seq`, which becomes the last sequence.
    pub fn truncate(&mut self, seq: u64) -> StoreResult<()> {
        let result = self.truncate_inner(seq);
        self.poisoned |= result.is_err();
        result
    }

    fn truncate_inner(&mut self, seq: u64) -> StoreResult<()> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        if seq >= self.last_seq {
            return Ok(());
        }
        let mut cursor = self.backend.prev_present(self.last_seq);
        while let Some(current) = cursor {
            if current <= seq {
                break;
            }
            let msg = self.backend.get(current)?.ok_or(StoreError::NotFound)?;
            self.account_removed_bulk(&msg);
            cursor = self.backend.prev_present(current - 1);
        }
        let last_ts = match self.backend.get(seq)? {
            Some(msg) => msg.ts,
            None => self.last_ts,
        };
        self.backend.truncate(seq, last_ts)?;
        self.last_seq = seq;
        self.last_ts = last_ts;
        let stale: Vec<(Bytes, SubjectState)> = self
            .subjects
            .iter()
            .filter(|(_, state)| state.last_seq > seq)
            .map(|(subject, state)| (subject.clone(), *state))
            .collect();
        for (subject, mut state) in stale {
            state.last_seq = self.scan_subject(&subject, state.first_seq, seq, false)?;
            self.subjects.insert(subject, state);
        }
        if self.msgs == 0 || self.first_seq > seq {
            // Truncating to 0 resets the store to fresh (first 0), as the reference does.
            self.first_seq = if seq == 0 { 0 } else { seq + 1 };
            self.first_ts = WallTime(0);
        }
        self.check();
        Ok(())
    }

    /// Remove messages matching `filter` below `seq` (if `seq > 0`),
    /// keeping the newest `keep` of them (if `keep > 0`). Returns how many.
    pub fn purge_ex(&mut self, filter: &Filter, seq: u64, keep: u64) -> StoreResult<u64> {
        // `seq` means "below seq": 1 purges nothing.
        if seq == 1 {
            return Ok(0);
        }
        if *filter == Filter::All {
            if keep == 0 && seq == 0 {
                return self.purge();
            }
            if seq > 1 {
                return self.compact(seq);
            }
        }
        let Some((low, high)) = self.matching_span(filter) else {
            return Ok(0);
        };
        let total: u64 = self
            .subjects
            .iter()
            .filter(|(subject, _)| filter.matches(subject))
            .map(|(_, state)| state.msgs)
            .sum();
        if keep >= total && keep > 0 {
            return Ok(0);
        }
        let mut budget = if keep > 0 { total - keep } else { total };
        let upper = if seq > 0 { high.min(seq - 1) } else { high };
        let mut purged = 0;
        let mut cursor = self.backend.next_present(low);
        while let Some(current) = cursor {
            if current > upper || budget == 0 {
                break;
            }
            let msg = self.backend.get(current)?.ok_or(StoreError::NotFound)?;
            if filter.matches(&msg.subject) {
                self.remove_internal(current, false)?;
                purged += 1;
                budget -= 1;
            }
            cursor = self.backend.next_present(current + 1);
        }
        self.check();
        Ok(purged)
    }

    fn matching_span(&self, filter: &Filter) -> Option<(u64, u64)> {
        match filter {
            Filter::All if self.msgs > 0 => Some((self.first_seq, self.last_seq)),
            Filter::All => None,
            Filter::Subjects(_) => self.filter_span(filter),
        }
    }

    /// Remove messages older than `max_age` or past their TTL at `now`.
    /// Returns how many ([`Engine::expire_report`] says which subjects
    /// they emptied).
    pub fn expire(&mut self, now: WallTime) -> StoreResult<u64> {
        Ok(self.expire_report(now)?.removed)
    }

    /// Remove messages older than `max_age` (oldest first), then those
    /// past their own TTL (earliest deadline first), at `now`. Returns how
    /// many, and each subject whose last message went: where the
    /// JetStream layer places a subject delete marker.
    pub fn expire_report(&mut self, now: WallTime) -> StoreResult<Expired> {
        let mut expired = Expired::default();
        if let Some(max_age) = self.config.max_age {
            while self.msgs > 0 && expiry(self.first_ts, max_age) <= now.0 {
                let first = self.first_seq;
                let removed = self.remove_returning(first, false)?;
                let (msg, emptied) = removed.expect("first message present");
                expired.note(msg, emptied, ExpiryCause::MaxAge);
            }
        }
        while let Some(&(at, seq)) = self.ttl_index.first() {
            if at > now.0 {
                break;
            }
            let removed = self.remove_returning(seq, false)?;
            let (msg, emptied) = removed.expect("the ttl index names present messages");
            expired.note(msg, emptied, ExpiryCause::Ttl);
        }
        assert!(expired.subjects_emptied.len() as u64 <= expired.removed);
        self.check();
        Ok(expired)
    }

    /// When `expire` next has something to do.
    pub fn next_expiry(&self) -> Option<WallTime> {
        let by_age = self
            .config
            .max_age
            .filter(|_| self.msgs > 0)
            .map(|max_age| expiry(self.first_ts, max_age));
        let by_ttl = self.ttl_index.first().map(|&(at, _)| at);
        by_age.into_iter().chain(by_ttl).min().map(WallTime)
    }

    /// A summary of the store.
    pub fn state(&self) -> StoreState {
        let span = (self.last_seq + 1).saturating_sub(self.first_seq);
        StoreState {
            msgs: self.msgs,
            bytes: self.bytes,
            first_seq: self.first_seq,
            first_ts: self.first_ts,
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_subjects: self.subjects.len() as u64,
            num_deleted: if self.msgs == 0 { 0 } else { span - self.msgs },
        }
    }

    /// The sequences between first and last holding no message, in
    /// increasing order, found as they are taken: the store holds nothing
    /// for the list (a stream can have billions of deleted sequences), the
    /// caller bounds what it keeps.
    pub fn deleted(&mut self) -> Deleted<'_, B> {
        let cursor = self.first_seq;
        Deleted {
            engine: self,
            cursor,
            gap_end: None,
        }
    }

    /// Per-subject state of the subjects matching `filter`, by subject.
    pub fn subjects_state(&self, filter: &Filter) -> BTreeMap<Bytes, SubjectState> {
        self.subjects
            .iter()
            .filter(|(subject, _)| filter.matches(subject))
            .map(|(subject, state)| (subject.clone(), *state))
            .collect()
    }

    /// The next action for the runtime (syncs, durability, warnings).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<StoreAction> {
        self.backend.poll_action(self.last_seq)
    }

    /// A sync requested with `tag` finished with `result`.
    pub fn handle_sync_done(&mut self, tag: u64, result: DiskResult<()>) {
        self.backend.handle_sync_done(tag, result);
    }

    /// The next deadline of the sync timer, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.backend.poll_timeout()
    }

    /// The sync timer's time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.backend.handle_timeout(now);
    }

    /// Assert the accounting invariants (debug builds: every call).
    fn check(&self) {
        debug_assert!(self.last_seq <= SEQ_MAX);
        debug_assert!(self.first_seq <= self.last_seq + 1);
        debug_assert!(
            self.msgs > 0
                || self.first_seq == self.last_seq + 1
                || (self.first_seq == 0 && self.last_seq == 0)
        );
        debug_assert!(self.msgs == 0 || self.first_seq <= self.last_seq);
        debug_assert_eq!(
            self.subjects.values().map(|state| state.msgs).sum::<u64>(),
            self.msgs
        );
        debug_assert!(self.subjects.values().all(|state| state.msgs > 0
            && state.first_seq <= state.last_seq
            && state.first_seq >= self.first_seq
            && state.last_seq <= self.last_seq));
    }
}

/// The iterator of [`Engine::deleted`].
#[derive(Debug)]
pub struct Deleted<'a, B: Backend> {
    engine: &'a mut Engine<B>,
    /// The next sequence to consider.
    cursor: u64,
    /// The first present sequence at or after `cursor` (`last_seq + 1` if
    /// none), once looked up.
    gap_end: Option<u64>,
}

impl<B: Backend> Iterator for Deleted<'_, B> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let last = self.engine.last_seq;
        loop {
            if self.engine.msgs == 0 || self.cursor > last {
                return None;
            }
            let end = match self.gap_end {
                Some(end) => end,
                None => {
                    let end = self
                        .engine
                        .backend
                        .next_present(self.cursor)
                        .filter(|&seq| seq <= last)
                        .unwrap_or(last + 1);
                    assert!(end >= self.cursor, "next_present went backwards");
                    self.gap_end = Some(end);
                    end
                }
            };
            if self.cursor < end {
                self.cursor += 1;
                return Some(self.cursor - 1);
            }
            // `cursor` holds a message: the next gap starts after it.
            self.cursor = end + 1;
            self.gap_end = None;
        }
    }
}

/// Count every message `backend` holds at or above `floor` by loading it.
fn count_present<B: Backend>(
    backend: &mut B,
    floor: u64,
    last_seq: u64,
    sizing: super::Sizing,
) -> StoreResult<Tally> {
    let mut tally = Tally::default();
    let mut cursor = backend.next_present(floor);
    while let Some(seq) = cursor {
        assert!(
            seq <= last_seq,
            "present sequence {seq} above last {last_seq}"
        );
        let msg = backend.get(seq)?.ok_or(StoreError::NotFound)?;
        assert_eq!(msg.seq, seq, "backend returned the wrong message");
        let size = sizing.size(&msg.subject, &msg.headers, &msg.payload);
        tally.add(seq, &msg.subject, size, msg.ts, msg.ttl);
        cursor = backend.next_present(seq + 1);
    }
    Ok(tally)
}

/// Above this many subjects, a wildcard `load_next` walks messages instead
/// of first narrowing the span over every matching subject.
const SPAN_SUBJECTS_MAX: usize = 256;

fn expiry(ts: WallTime, after: Duration) -> u64 {
    ts.0.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX))
}

/// Count message `seq` in its subject's state (kept at open and on store).
fn count_in_subject(subjects: &mut BTreeMap<Bytes, SubjectState>, subject: &[u8], seq: u64) {
    match subjects.get_mut(subject) {
        Some(state) => {
            state.msgs += 1;
            state.first_seq = state.first_seq.min(seq);
            state.last_seq = state.last_seq.max(seq);
        }
        None => {
            let state = SubjectState {
                msgs: 1,
                first_seq: seq,
                last_seq: seq,
            };
            subjects.insert(Bytes::copy_from_slice(subject), state);
        }
    }
}
