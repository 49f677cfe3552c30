//! Consumer state: what a consumer delivered, what was acknowledged, what is
//! pending and how often each pending message was redelivered.
//!
//! Role: [`ConsumerTracker`] is the state machine (the reference's consumer
//! store semantics: `update_delivered`, `update_acks`, `update`);
//! [`ConsumerFileStore`] persists it through the [`Disk`] interface as one
//! checksummed file written atomically.
//!
//! Inputs: deliveries `(consumer seq, stream seq, delivery count, time)`,
//! acks `(consumer seq, stream seq)`, whole-state updates (replication).
//! Outputs: the [`ConsumerState`]; for the file store, `flush()` writes it.
//!
//! Invariants (asserted after every change):
//! - `ack_floor.consumer <= delivered.consumer`, `ack_floor.stream <= delivered.stream`;
//! - every pending stream sequence is in `ack_floor.stream + 1 ..= delivered.stream`;
//! - with `AckPolicy::None` nothing is pending and the floor equals delivered.
//!
//! File format (`<dir>/state`, version 1, little endian): `"RNSC"` |
//! version u32 | delivered consumer u64 | delivered stream u64 | ack floor
//! consumer u64 | ack floor stream u64 | pending count u32 | per pending:
//! stream seq u64, consumer seq u64, delivery time u64 | redelivered count
//! u32 | per entry: stream seq u64, count u64 | crc32 u32 of all before it.
//! Written as `state.tmp`, synced, renamed over `state`, directory synced.
//! A damaged file is reported and the consumer starts from an empty state
//! (every message is delivered again: at least once, never lost).
//! With encryption at rest ([`ConsumerFileStore::open_encrypted`]) the
//! whole file is sealed ([`KeyRing::seal_file`], the AEAD tag checks it);
//! one that no configured key opens refuses the open instead.

use std::collections::BTreeMap;
use std::fmt;

use super::codec::{is_sealed_file, KeyError, KeyRing};
use super::disk::{join, Disk, DiskError};
use crate::time::WallTime;

/// How a consumer's messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckPolicy {
    /// Nothing is acknowledged: delivered is the floor.
    None,
    /// An ack covers every message up to it (also flow-control acks).
    All,
    /// Each message is acknowledged on its own.
    #[default]
    Explicit,
}

/// A consumer sequence and the stream sequence it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SequencePair {
    pub consumer: u64,
    pub stream: u64,
}

/// A delivered, not yet acknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The consumer sequence of its first delivery.
    pub sequence: u64,
    /// When it was last delivered.
    pub ts: WallTime,
}

/// A consumer's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerState {
    pub delivered: SequencePair,
    pub ack_floor: SequencePair,
    /// By stream sequence.
    pub pending: BTreeMap<u64, Pending>,
    /// Redelivery count (deliveries - 1) by stream sequence.
    pub redelivered: BTreeMap<u64, u64>,
}

/// A consumer store error; texts are the reference's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerError {
    /// "ack policy is none".
    NoAckPolicy,
    /// "no message found": an ack for a message not pending.
    NotFound,
    /// "old update ignored".
    OldUpdate,
    /// "bad ack floor for consumer".
    BadAckFloorConsumer,
    /// "bad ack floor for stream".
    BadAckFloorStream,
    /// "bad pending entry, sequence \[N\] out of range".
    BadPending(u64),
    Disk(DiskError),
    /// The state is encrypted and the configured keys do not open it (or
    /// none is configured): refused, never taken for an empty state.
    Key(KeyError),
}

impl fmt::Display for ConsumerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsumerError::NoAckPolicy => f.write_str("ack policy is none"),
            ConsumerError::NotFound => f.write_str("no message found"),
            ConsumerError::OldUpdate => f.write_str("old update ignored"),
            ConsumerError::BadAckFloorConsumer => f.write_str("bad ack floor for consumer"),
            ConsumerError::BadAckFloorStream => f.write_str("bad ack floor for stream"),
            ConsumerError::BadPending(seq) => {
                write!(f, "bad pending entry, sequence [{seq}] out of range")
            }
            ConsumerError::Disk(error) => write!(f, "disk error: {error}"),
            ConsumerError::Key(error) => write!(f, "encrypted consumer state: {error}"),
        }
    }
}

impl std::error::Error for ConsumerError {}

impl From<DiskError> for ConsumerError {
    fn from(error: DiskError) -> ConsumerError {
        ConsumerError::Disk(error)
    }
}

/// The consumer state machine.
#[derive(Debug, Clone, Default)]
pub struct ConsumerTracker {
    policy: AckPolicy,
    /// Deliveries beyond this drop the message from pending (0: no limit).
    max_deliver: u64,
    state: ConsumerState,
    /// Changed since the last `take_dirty`.
    dirty: bool,
}

impl ConsumerTracker {
    pub fn new(policy: AckPolicy, max_deliver: u64) -> ConsumerTracker {
        ConsumerTracker {
            policy,
            max_deliver,
            ..ConsumerTracker::default()
        }
    }

    pub fn state(&self) -> &ConsumerState {
        &self.state
    }

    /// Whether the state changed since the last call (and clear the mark).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Start at stream sequence `stream` (delivered and floor both there).
    pub fn set_starting(&mut self, stream: u64) {
        self.state.delivered.stream = stream;
        self.state.ack_floor.stream = stream;
        self.dirty = true;
        self.check();
    }

    /// Move the start up to `stream` if it is above what was delivered.
    pub fn update_starting(&mut self, stream: u64) {
        if stream > self.state.delivered.stream {
            self.state.delivered.stream = stream;
            if self.policy == AckPolicy::None {
                self.state.ack_floor.stream = stream;
            }
            self.dirty = true;
        }
        self.check();
    }

    /// A message was delivered (`count` is its delivery count, 1 the first).
    pub fn update_delivered(
        &mut self,
        consumer: u64,
        stream: u64,
        count: u64,
        ts: WallTime,
    ) -> Result<(), ConsumerError> {
        if count != 1 && self.policy == AckPolicy::None {
            return Err(ConsumerError::NoAckPolicy);
        }
        // A replay of something already acknowledged.
        if consumer <= self.state.ack_floor.consumer {
            return Ok(());
        }
        let state = &mut self.state;
        if self.policy == AckPolicy::None {
            if consumer > state.delivered.consumer {
                state.delivered.consumer = consumer;
                state.ack_floor.consumer = consumer;
            }
            if stream > state.delivered.stream {
                state.delivered.stream = stream;
                state.ack_floor.stream = stream;
            }
        } else {
            if stream <= state.delivered.stream {
                // A redelivery: keep the first consumer sequence.
                if let Some(pending) = state.pending.get_mut(&stream) {
                    pending.ts = ts;
                }
            } else {
                state.pending.insert(
                    stream,
                    Pending {
                        sequence: consumer,
                        ts,
                    },
                );
            }
            state.delivered.consumer = state.delivered.consumer.max(consumer);
            state.delivered.stream = state.delivered.stream.max(stream);
            if count > 1 {
                if self.max_deliver > 0 && count > self.max_deliver {
                    state.pending.remove(&stream);
                }
                let redelivered = state.redelivered.entry(stream).or_insert(0);
                *redelivered = (*redelivered).max(count - 1);
            }
        }
        self.dirty = true;
        self.check();
        Ok(())
    }

    /// A message was acknowledged.
    pub fn update_acks(&mut self, consumer: u64, stream: u64) -> Result<(), ConsumerError> {
        if self.policy == AckPolicy::None {
            return Err(ConsumerError::NoAckPolicy);
        }
        if self.state.redelivered.remove(&stream).is_some() {
            self.dirty = true;
        }
        if consumer <= self.state.ack_floor.consumer {
            return Ok(());
        }
        if !self.state.pending.contains_key(&stream) {
            return Err(ConsumerError::NotFound);
        }
        self.dirty = true;
        if self.policy == AckPolicy::All {
            self.ack_all(consumer, stream);
        } else {
            self.ack_explicit(consumer, stream);
        }
        self.check();
        Ok(())
    }

    fn ack_all(&mut self, consumer: u64, stream: u64) {
        let state = &mut self.state;
        state.ack_floor = SequencePair { consumer, stream };
        let rest = state.pending.split_off(&(stream + 1));
        for acked in std::mem::replace(&mut state.pending, rest).keys() {
            state.redelivered.remove(acked);
        }
    }

    fn ack_explicit(&mut self, mut consumer: u64, stream: u64) {
        let state = &mut self.state;
        if let Some(pending) = state.pending.remove(&stream) {
            if consumer > pending.sequence && pending.sequence > 0 {
                consumer = pending.sequence;
            }
        }
        if state.pending.is_empty() {
            state.ack_floor = state.delivered;
        } else if consumer == state.ack_floor.consumer + 1 {
            state.ack_floor = SequencePair { consumer, stream };
            if state.delivered.consumer > consumer {
                // The floor moves up to just below the oldest still pending.
                if let Some((&next, pending)) = state.pending.range(stream + 1..).next() {
                    if pending.sequence > 0 {
                        state.ack_floor = SequencePair {
                            consumer: pending.sequence - 1,
                            stream: next - 1,
                        };
                    }
                }
            }
        }
    }

    /// With nothing pending, the floor is what was delivered (after the
    /// stream dropped messages that were pending, or skipped ahead).
    pub fn settle_floor(&mut self) {
        if self.state.pending.is_empty() && self.state.ack_floor != self.state.delivered {
            self.state.ack_floor = self.state.delivered;
            self.dirty = true;
        }
        self.check();
    }

    /// Forget redelivery counts below stream sequence `stream`.
    pub fn remove_redelivered_below(&mut self, stream: u64) {
        let kept = self.state.redelivered.split_off(&stream);
        if kept.len() != self.state.redelivered.len() {
            self.dirty = true;
        }
        self.state.redelivered = kept;
    }

    /// Replace the whole state (a replicated snapshot). Refuses one older
    /// than what is held unless `force`.
    pub fn update(&mut self, state: ConsumerState, force: bool) -> Result<(), ConsumerError> {
        validate(&state)?;
        if !force
            && (state.delivered.consumer < self.state.delivered.consumer
                || state.ack_floor.stream < self.state.ack_floor.stream)
        {
            return Err(ConsumerError::OldUpdate);
        }
        self.state = state;
        self.dirty = true;
        self.check();
        Ok(())
    }

    fn check(&self) {
        let state = &self.state;
        debug_assert!(
            self.policy == AckPolicy::None
                || state
                    .pending
                    .keys()
                    .all(|&seq| seq > state.ack_floor.stream && seq <= state.delivered.stream),
            "pending outside the floor..delivered window: {state:?}"
        );
        if self.policy == AckPolicy::None {
            debug_assert!(state.pending.is_empty());
            debug_assert_eq!(state.ack_floor.consumer, state.delivered.consumer);
        }
    }
}

/// The checks a state must pass to be taken whole.
fn validate(state: &ConsumerState) -> Result<(), ConsumerError> {
    if state.ack_floor.consumer > state.delivered.consumer {
        return Err(ConsumerError::BadAckFloorConsumer);
    }
    if state.ack_floor.stream > state.delivered.stream {
        return Err(ConsumerError::BadAckFloorStream);
    }
    if let Some(&seq) = state
        .pending
        .keys()
        .find(|&&seq| seq <= state.ack_floor.stream || seq > state.delivered.stream)
    {
        return Err(ConsumerError::BadPending(seq));
    }
    Ok(())
}

const MAGIC: &[u8; 4] = b"RNSC";
const VERSION: u32 = 1;
const STATE_NAME: &str = "state";

/// Encode `state` in the file format above.
pub fn encode_state(state: &ConsumerState) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + state.pending.len() * 24 + state.redelivered.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for value in [
        state.delivered.consumer,
        state.delivered.stream,
        state.ack_floor.consumer,
        state.ack_floor.stream,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&(state.pending.len() as u32).to_le_bytes());
    for (stream, pending) in &state.pending {
        out.extend_from_slice(&stream.to_le_bytes());
        out.extend_from_slice(&pending.sequence.to_le_bytes());
        out.extend_from_slice(&pending.ts.0.to_le_bytes());
    }
    out.extend_from_slice(&(state.redelivered.len() as u32).to_le_bytes());
    for (stream, count) in &state.redelivered {
        out.extend_from_slice(&stream.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(decode_state(&out).as_ref(), Some(state));
    out
}

/// Decode a state file; `None` if anything about it is wrong.
pub fn decode_state(bytes: &[u8]) -> Option<ConsumerState> {
    let body_len = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut reader = Reader { bytes: body, at: 0 };
    if reader.take(4)? != MAGIC || reader.u32()? != VERSION {
        return None;
    }
    let mut state = ConsumerState {
        delivered: SequencePair {
            consumer: reader.u64()?,
            stream: reader.u64()?,
        },
        ack_floor: SequencePair {
            consumer: reader.u64()?,
            stream: reader.u64()?,
        },
        ..ConsumerState::default()
    };
    for _ in 0..reader.u32()? {
        let stream = reader.u64()?;
        let sequence = reader.u64()?;
        let ts = WallTime(reader.u64()?);
        state.pending.insert(stream, Pending { sequence, ts });
    }
    for _ in 0..reader.u32()? {
        let stream = reader.u64()?;
        state.redelivered.insert(stream, reader.u64()?);
    }
    (reader.at == body.len() && validate(&state).is_ok()).then_some(state)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// A consumer's state kept in `<dir>/state` on a [`Disk`].
#[derive(Debug)]
pub struct ConsumerFileStore<D: Disk> {
    disk: D,
    dir: String,
    tracker: ConsumerTracker,
    /// What opening found wrong, if anything.
    warning: Option<String>,
    /// Encryption at rest: the state file is sealed under these keys.
    keys: Option<KeyRing>,
    /// Draws the nonce of each write (core's seeded randomness).
    nonces: u64,
    /// A state file is there (read at open, damaged or not, or written
    /// since). Without one, opening gives the empty state, so an empty
    /// state need not be written: a new consumer costs no state write
    /// (and no syncs) until it first moves.
    on_disk: bool,
}

impl<D: Disk> ConsumerFileStore<D> {
    /// Open (or create) the consumer state in `dir`.
    pub fn open(
        disk: D,
        dir: &str,
        policy: AckPolicy,
        max_deliver: u64,
    ) -> Result<ConsumerFileStore<D>, ConsumerError> {
        ConsumerFileStore::open_encrypted(disk, dir, policy, max_deliver, None, 0)
    }

    /// Open (or create) the consumer state in `dir`, sealed under `keys`
    /// (`jetstream { key, prev_key }`). A state sealed under the previous
    /// key, or written before encryption was configured, is sealed again
    /// under the key at the next `flush`. A sealed state that no key opens
    /// refuses the open (the acks it holds are not given up); `seed` draws
    /// the nonces and must differ for every open (core's seeded randomness:
    /// a nonce repeated under one key breaks the AEAD).
    pub fn open_encrypted(
        mut disk: D,
        dir: &str,
        policy: AckPolicy,
        max_deliver: u64,
        keys: Option<KeyRing>,
        seed: u64,
    ) -> Result<ConsumerFileStore<D>, ConsumerError> {
        disk.create_dir(dir)?;
        let path = join(dir, STATE_NAME);
        let mut tracker = ConsumerTracker::new(policy, max_deliver);
        let mut warning = None;
        let stored = disk.read_all(&path)?;
        let on_disk = stored.is_some();
        if let Some(bytes) = stored {
            let (bytes, reseal) = match (&keys, is_sealed_file(&bytes)) {
                (Some(keys), true) => keys.open_file(&path, &bytes).map_err(ConsumerError::Key)?,
                (Some(_), false) => (bytes, true),
                (None, true) => return Err(ConsumerError::Key(KeyError::NotConfigured)),
                (None, false) => (bytes, false),
            };
            match decode_state(&bytes) {
                Some(state) => {
                    tracker.state = state;
                    tracker.dirty = reseal;
                }
                None => {
                    warning = Some(format!(
                        "{path}: damaged ({} bytes); the consumer starts over (redelivers)",
                        bytes.len()
                    ))
                }
            }
        }
        Ok(ConsumerFileStore {
            disk,
            dir: dir.to_string(),
            tracker,
            warning,
            keys,
            nonces: seed,
            on_disk,
        })
    }

    pub fn tracker(&self) -> &ConsumerTracker {
        &self.tracker
    }

    /// Change the state; `flush` makes the change durable.
    pub fn tracker_mut(&mut self) -> &mut ConsumerTracker {
        &mut self.tracker
    }

    pub fn state(&self) -> &ConsumerState {
        self.tracker.state()
    }

    /// The warning opening produced, once.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    pub fn into_disk(self) -> D {
        self.disk
    }

    /// Write the state atomically if it changed; returns whether it wrote.
    pub fn flush(&mut self) -> Result<bool, ConsumerError> {
        if !self.tracker.take_dirty() {
            return Ok(false);
        }
        if !self.on_disk && *self.tracker.state() == ConsumerState::default() {
            // What opening without a file gives: nothing to make durable.
            return Ok(false);
        }
        let bytes = encode_state(self.tracker.state());
        assert_eq!(
            decode_state(&bytes).as_ref(),
            Some(self.tracker.state()),
            "consumer state must read back as written"
        );
        let bytes = match &self.keys {
            Some(keys) => {
                self.nonces = self.nonces.wrapping_add(0x9e37_79b9_7f4a_7c15);
                keys.seal_file(&join(&self.dir, STATE_NAME), &bytes, self.nonces)
            }
            None => bytes,
        };
        if let Err(error) = self.disk.write_atomic(&self.dir, STATE_NAME, &bytes) {
            self.tracker.dirty = true;
            return Err(error.into());
        }
        self.on_disk = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CipherKind, MemDisk};
    use proptest::prelude::*;

    #[test]
    fn encrypted_state_survives_rotation_and_refuses_a_wrong_key() {
        let ring = |key: &str, prev: Option<&str>| {
            Some(KeyRing::new(
                CipherKind::Aes256Gcm,
                key.as_bytes(),
                prev.map(str::as_bytes),
            ))
        };
        let open = |disk: MemDisk, keys| {
            ConsumerFileStore::open_encrypted(disk, "c", AckPolicy::Explicit, 5, keys, 7)
        };
        let mut store = open(MemDisk::new(), ring("one", None)).unwrap();
        store
            .tracker_mut()
            .update_delivered(1, 41, 1, WallTime(5))
            .unwrap();
        store
            .tracker_mut()
            .update_delivered(2, 42, 1, WallTime(6))
            .unwrap();
        store.tracker_mut().update_acks(1, 41).unwrap();
        assert!(store.flush().unwrap());
        let state = store.state().clone();
        let mut disk = store.into_disk();
        let bytes = disk.read_all("c/state").unwrap().unwrap();
        assert!(is_sealed_file(&bytes));
        assert_eq!(decode_state(&bytes), None, "not readable without the key");
        for (keys, error) in [
            (ring("two", None), KeyError::Unrecoverable),
            (None, KeyError::NotConfigured),
        ] {
            let refused = open(disk.clone(), keys).err();
            assert_eq!(refused, Some(ConsumerError::Key(error)));
        }
        let mut store = open(disk, ring("two", Some("one"))).unwrap();
        assert_eq!(store.state(), &state);
        assert!(store.flush().unwrap(), "sealed again under the new key");
        let store = open(store.into_disk(), ring("two", None)).unwrap();
        assert_eq!(store.state(), &state);
    }

    fn at(n: u64) -> WallTime {
        WallTime(n)
    }

    #[test]
    fn explicit_acks_move_the_floor_over_contiguous_acks_only() {
        let mut tracker = ConsumerTracker::new(AckPolicy::Explicit, 0);
        for i in 1..=4 {
            tracker.update_delivered(i, i + 10, 1, at(i)).unwrap();
        }
        assert_eq!(tracker.state().pending.len(), 4);
        tracker.update_acks(2, 12).unwrap();
        assert_eq!(tracker.state().ack_floor, SequencePair::default());
        tracker.update_acks(1, 11).unwrap();
        assert_eq!(
            tracker.state().ack_floor,
            SequencePair {
                consumer: 2,
                stream: 12
            }
        );
        assert_eq!(tracker.update_acks(9, 19), Err(ConsumerError::NotFound));
        tracker.update_acks(4, 14).unwrap();
        tracker.update_acks(3, 13).unwrap();
        assert_eq!(
            tracker.state().ack_floor,
            SequencePair {
                consumer: 4,
                stream: 14
            }
        );
        assert!(tracker.state().pending.is_empty());
        // A replay below the floor is ignored.
        tracker.update_delivered(2, 12, 1, at(9)).unwrap();
        assert!(tracker.state().pending.is_empty());
    }

    #[test]
    fn redeliveries_count_and_max_deliver_drops_pending() {
        let mut tracker = ConsumerTracker::new(AckPolicy::Explicit, 2);
        tracker.update_delivered(1, 5, 1, at(1)).unwrap();
        tracker.update_delivered(2, 5, 2, at(2)).unwrap();
        assert_eq!(
            tracker.state().pending[&5],
            Pending {
                sequence: 1,
                ts: at(2)
            }
        );
        assert_eq!(tracker.state().redelivered[&5], 1);
        tracker.update_delivered(3, 5, 3, at(3)).unwrap();
        assert!(
            !tracker.state().pending.contains_key(&5),
            "past max deliver"
        );
        assert_eq!(tracker.state().redelivered[&5], 2);
    }

    #[test]
    fn ack_all_and_ack_none() {
        let mut tracker = ConsumerTracker::new(AckPolicy::All, 0);
        for i in 1..=5 {
            tracker.update_delivered(i, i, 1, at(i)).unwrap();
        }
        tracker.update_acks(3, 3).unwrap();
        assert_eq!(
            tracker.state().ack_floor,
            SequencePair {
                consumer: 3,
                stream: 3
            }
        );
        assert_eq!(
            tracker.state().pending.keys().copied().collect::<Vec<_>>(),
            vec![4, 5]
        );

        let mut none = ConsumerTracker::new(AckPolicy::None, 0);
        none.update_delivered(1, 7, 1, at(1)).unwrap();
        assert_eq!(
            none.state().ack_floor,
            SequencePair {
                consumer: 1,
                stream: 7
            }
        );
        assert_eq!(none.update_acks(1, 7), Err(ConsumerError::NoAckPolicy));
        assert_eq!(
            none.update_delivered(2, 8, 2, at(2)),
            Err(ConsumerError::NoAckPolicy)
        );
    }

    #[test]
    fn whole_state_updates_are_checked() {
        let mut tracker = ConsumerTracker::new(AckPolicy::Explicit, 0);
        let mut state = ConsumerState {
            delivered: SequencePair {
                consumer: 5,
                stream: 9,
            },
            ack_floor: SequencePair {
                consumer: 6,
                stream: 1,
            },
            ..ConsumerState::default()
        };
        assert_eq!(
            tracker.update(state.clone(), false),
            Err(ConsumerError::BadAckFloorConsumer)
        );
        state.ack_floor = SequencePair {
            consumer: 2,
            stream: 3,
        };
        state.pending.insert(
            3,
            Pending {
                sequence: 2,
                ts: at(0),
            },
        );
        assert_eq!(
            tracker.update(state.clone(), false),
            Err(ConsumerError::BadPending(3))
        );
        state.pending.clear();
        state.pending.insert(
            4,
            Pending {
                sequence: 3,
                ts: at(0),
            },
        );
        tracker.update(state.clone(), false).unwrap();
        let mut older = state.clone();
        older.delivered.consumer = 4;
        assert_eq!(
            tracker.update(older.clone(), false),
            Err(ConsumerError::OldUpdate)
        );
        tracker.update(older, true).unwrap();
        assert_eq!(
            ConsumerError::BadPending(3).to_string(),
            "bad pending entry, sequence [3] out of range"
        );
    }

    #[test]
    fn an_empty_state_is_not_written_until_the_consumer_moves() {
        let mut store =
            ConsumerFileStore::open(MemDisk::new(), "c", AckPolicy::Explicit, 0).unwrap();
        store
            .tracker_mut()
            .update(ConsumerState::default(), true)
            .unwrap();
        assert!(
            !store.flush().unwrap(),
            "the empty state is what no file means"
        );
        let mut disk = store.into_disk();
        assert_eq!(disk.read_all("c/state").unwrap(), None);
        let mut store = ConsumerFileStore::open(disk, "c", AckPolicy::Explicit, 0).unwrap();
        store
            .tracker_mut()
            .update_delivered(1, 10, 1, at(1))
            .unwrap();
        assert!(store.flush().unwrap());
        let moved = store.state().clone();
        let store =
            ConsumerFileStore::open(store.into_disk(), "c", AckPolicy::Explicit, 0).unwrap();
        assert_eq!(store.state(), &moved);
        // Once there is a file, even a return to empty is written.
        let mut store = store;
        store
            .tracker_mut()
            .update(ConsumerState::default(), true)
            .unwrap();
        assert!(store.flush().unwrap());
        let store =
            ConsumerFileStore::open(store.into_disk(), "c", AckPolicy::Explicit, 0).unwrap();
        assert_eq!(store.state(), &ConsumerState::default());
    }

    #[test]
    fn the_file_survives_power_loss_once_flushed_and_damage_starts_over() {
        let mut store =
            ConsumerFileStore::open(MemDisk::new(), "c", AckPolicy::Explicit, 0).unwrap();
        store
            .tracker_mut()
            .update_delivered(1, 10, 1, at(1))
            .unwrap();
        store
            .tracker_mut()
            .update_delivered(2, 11, 1, at(2))
            .unwrap();
        assert!(store.flush().unwrap());
        assert!(!store.flush().unwrap(), "nothing changed");
        store.tracker_mut().update_acks(1, 10).unwrap();
        let expected_before_ack = {
            let mut state = store.state().clone();
            state.pending.insert(
                10,
                Pending {
                    sequence: 1,
                    ts: at(1),
                },
            );
            state.ack_floor = SequencePair::default();
            state
        };
        let mut disk = store.into_disk();
        disk.power_loss();
        let store = ConsumerFileStore::open(disk, "c", AckPolicy::Explicit, 0).unwrap();
        assert_eq!(
            store.state(),
            &expected_before_ack,
            "the unflushed ack is lost, the rest kept"
        );
        let mut disk = store.into_disk();
        disk.bytes_mut("c/state").unwrap()[9] ^= 0x01;
        let mut store = ConsumerFileStore::open(disk, "c", AckPolicy::Explicit, 0).unwrap();
        assert!(store.take_warning().unwrap().contains("c/state: damaged"));
        assert_eq!(store.state(), &ConsumerState::default());
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_catches_any_flipped_bit(
            pending in proptest::collection::btree_map(11u64..100, (1u64..50, any::<u64>()), 0..10),
            redelivered in proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..5),
            bit in any::<usize>(),
        ) {
            let state = ConsumerState {
                delivered: SequencePair { consumer: 60, stream: 100 },
                ack_floor: SequencePair { consumer: 5, stream: 10 },
                pending: pending
                    .into_iter()
                    .map(|(stream, (sequence, ts))| (stream, Pending { sequence, ts: WallTime(ts) }))
                    .collect(),
                redelivered,
            };
            let bytes = encode_state(&state);
            prop_assert_eq!(decode_state(&bytes), Some(state));
            let mut damaged = bytes.clone();
            let bit = bit % (damaged.len() * 8);
            damaged[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(decode_state(&damaged), None);
        }
    }
}
