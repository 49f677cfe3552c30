//! Message storage for JetStream streams: one store interface, two stores.
//!
//! Role: keep a stream's messages by sequence, answer loads by sequence and
//! by subject, apply the stream's limits, and (for [`FileStore`]) survive
//! crashes. [`MemStore`] keeps everything in memory; [`FileStore`] keeps
//! messages in block files behind the [`disk::Disk`] interface.
//!
//! Consumers keep their delivery and ack state in [`consumer`]
//! ([`ConsumerTracker`], persisted by [`ConsumerFileStore`]).
//!
//! Both are an [`Engine`] (sequences, per-subject state, limits, expiry: the
//! logic nats-server's memstore and filestore share) over a [`Backend`]
//! (where the messages live). The store is passive: time comes in with every
//! call ([`WallTime`] for message timestamps and ages, [`Instant`] for the
//! sync timer), and disk work goes through the `Disk` the caller hands in.
//!
//! Inputs: `store_msg`, loads, removes, purges, `expire(now)` (or
//! `expire_report(now)`, which also names the subjects left empty),
//! `handle_timeout(now)`, `handle_sync_done(tag, result)`.
//! Outputs ([`Engine::poll_action`]): [`StoreAction::Sync`] asks the runtime
//! to make files durable; [`StoreAction::Durable`] says every sequence up to
//! `through` may now be acknowledged.
//!
//! Invariants:
//! - `first_seq <= last_seq + 1`; an empty store has `first_seq == last_seq + 1`.
//! - `last_seq <= SEQ_MAX`: no sequence near `u64::MAX` is handed out or
//!   believed when read back.
//! - `msgs` and `bytes` equal the count and summed [`msg_size`] of the
//!   messages present; the per-subject counts add up to `msgs`.
//! - A sequence is handed out once: `last_seq` never decreases except through
//!   an explicit [`Engine::truncate`].
//! - Under [`SyncPolicy::BeforeAck`], `Durable { through }` is emitted only by
//!   `handle_sync_done` for a sync that was requested after every sequence up
//!   to `through` had been written (group commit: one sync in flight at a
//!   time covers everything appended before it was requested).
//!
//! [`WallTime`]: crate::time::WallTime
//! [`Instant`]: crate::time::Instant

pub mod codec;
pub mod consumer;
pub mod disk;
mod engine;
pub mod filestore;
pub mod memstore;
// Public only so that the fuzz target `store_scan` can drive the decoder
// directly; not part of the store's API.
#[doc(hidden)]
pub mod record;
mod seqset;
mod snapshot;
#[cfg(test)]
mod tests;
mod write_behind;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::time::WallTime;

pub use codec::{CipherKind, KeyError, KeyRing};
pub use consumer::{
    AckPolicy, ConsumerError, ConsumerFileStore, ConsumerState, ConsumerTracker, Pending,
    SequencePair,
};
pub use disk::{perform_sync, Disk, DiskError, DiskResult, MemDisk, SharedDisk};
pub use engine::{Backend, Deleted, Engine, Expired, ExpiryCause, NewMsg, SubjectEmptied};
pub use filestore::{FileBackend, FileStore, FileStoreConfig, RecoveryReport, SnapshotUse};
pub use memstore::{MemBackend, MemStore};
pub use write_behind::WriteBehind;

/// The highest sequence a store hands out (`i64::MAX`). Every sequence
/// read from disk above it is refused as corrupt, so `last + 1` and the
/// estimates recovery adds to a sequence can never overflow; a store at
/// this sequence refuses new messages with [`StoreError::InvalidSequence`].
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// A stored message. The byte fields share one buffer when loaded from a
/// cached block (no copy per load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub subject: Bytes,
    /// The raw `NATS/1.0` header block, empty when the message has none.
    pub headers: Bytes,
    pub payload: Bytes,
    /// When the message was stored (handed in by the caller).
    pub ts: WallTime,
    /// Per-message time to live, if any.
    pub ttl: Option<Duration>,
}

impl StoredMsg {
    /// The size the store accounts for this message.
    pub fn size(&self) -> u64 {
        msg_size(&self.subject, &self.headers, &self.payload)
    }
}

/// The accounted size of a message: subject, headers and payload plus 16
/// bytes (nats-server's memstore figure; its filestore adds a few more).
pub fn msg_size(subject: &[u8], headers: &[u8], payload: &[u8]) -> u64 {
    (subject.len() + headers.len() + payload.len() + 16) as u64
}

/// How a store counts a message's bytes (its state's `bytes`, `max_bytes`).
/// The reference's two stores count differently and clients see the
/// numbers, so a stream counts as the reference's store of its kind would,
/// whatever rnats's own layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sizing {
    /// subject + headers + payload + 16 (the reference's memory store).
    #[default]
    Memory,
    /// 22 + subject + payload + 8, plus 4 + headers when there are any
    /// (the reference's file store records).
    File,
}

impl Sizing {
    pub fn size(self, subject: &[u8], headers: &[u8], payload: &[u8]) -> u64 {
        match self {
            Sizing::Memory => msg_size(subject, headers, payload),
            Sizing::File => {
                let headers = if headers.is_empty() {
                    0
                } else {
                    4 + headers.len()
                };
                (22 + subject.len() + headers + payload.len() + 8) as u64
            }
        }
    }
}

/// What to do when a limit would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Discard {
    /// Remove the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// When messages become durable relative to their acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Acknowledge only after a sync covering the message completed (group
    /// commit). `sync_interval: always` maps here too.
    #[default]
    BeforeAck,
    /// Acknowledge at once; sync dirty files every interval
    /// (`jetstream { sync_interval: <duration> }`).
    Interval(Duration),
}

/// A stream's limits as the store applies them. `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    pub max_msgs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    pub max_msgs_per_subject: Option<u64>,
    /// The largest single message accepted (its [`msg_size`]).
    pub max_msg_size: Option<u64>,
    pub discard: Discard,
    /// With `Discard::New`, also refuse a message over the per-subject limit
    /// instead of dropping that subject's oldest.
    pub discard_new_per_subject: bool,
    /// How bytes are counted; fixed for the store's life.
    pub sizing: Sizing,
    /// Compress message records (`compression: "s2"`; a FileStore only).
    /// Changeable: records keep the form they were written in, and every
    /// form stays readable. Bytes are counted uncompressed either way, as
    /// the reference counts them.
    pub compress: bool,
}

/// Which subjects a load or purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every subject (`""` or `>` in the reference).
    All,
    /// Subjects matching any of these (literal or wildcard) patterns.
    Subjects(Vec<Bytes>),
}

impl Filter {
    /// One pattern; `""` and `>` mean every subject.
    pub fn subject(pattern: &[u8]) -> Filter {
        if pattern.is_empty() || pattern == b">" {
            Filter::All
        } else {
            Filter::Subjects(vec![Bytes::copy_from_slice(pattern)])
        }
    }

    pub fn matches(&self, subject: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Subjects(patterns) => patterns.iter().any(|pattern| {
                pattern.as_ref() == subject
                    || crate::subject::subject_matches_pattern(pattern, subject)
            }),
        }
    }
}

/// Per-subject state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubjectState {
    pub msgs: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A summary of the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreState {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    /// Timestamp of the first message (zero when empty).
    pub first_ts: WallTime,
    pub last_seq: u64,
    /// Timestamp of the last message stored or sequence skipped.
    pub last_ts: WallTime,
    pub num_subjects: u64,
    /// Sequences between first and last that hold no message.
    pub num_deleted: u64,
}

/// What the store asks of its runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAction {
    /// Sync these files, then these directories, and report the outcome
    /// with `handle_sync_done(tag, ..)`. A file removed meanwhile is
    /// skipped ([`disk::perform_sync`] does all of this).
    Sync {
        tag: u64,
        files: Vec<String>,
        dirs: Vec<String>,
    },
    /// Every message with a sequence up to `through` is durable under the
    /// configured policy and may be acknowledged.
    Durable { through: u64 },
    /// Something the operator should know (recovery findings).
    Warning(String),
}

/// A store error. The texts of the variants that have one in nats-server's
/// `store.go` are the reference's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// "no message found": the sequence is gone or matched nothing.
    NotFound,
    /// "stream store EOF": nothing at or after the requested sequence.
    Eof,
    /// "maximum messages exceeded" (discard new).
    MaxMsgs,
    /// "maximum bytes exceeded" (discard new).
    MaxBytes,
    /// "maximum messages per subject exceeded" (discard new per subject).
    MaxMsgsPerSubject,
    /// "message too large".
    MsgTooLarge,
    /// "invalid sequence" (also: the next sequence would pass [`SEQ_MAX`]).
    InvalidSequence,
    /// "expected sequence does not match store".
    SequenceMismatch,
    /// A disk operation failed; the store refuses writes from then on.
    Disk(DiskError),
    /// A sync failed earlier: what was written may not be on disk, so the
    /// store accepts nothing more until it is reopened.
    Failed,
    /// A file is damaged beyond what recovery repairs.
    Corrupt(String),
    /// An encrypted store does not open with the configured keys (or none
    /// is configured); nothing on disk was changed.
    Key(codec::KeyError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("no message found"),
            StoreError::Eof => f.write_str("stream store EOF"),
            StoreError::MaxMsgs => f.write_str("maximum messages exceeded"),
            StoreError::MaxBytes => f.write_str("maximum bytes exceeded"),
            StoreError::MaxMsgsPerSubject => f.write_str("maximum messages per subject exceeded"),
            StoreError::MsgTooLarge => f.write_str("message too large"),
            StoreError::InvalidSequence => f.write_str("invalid sequence"),
            StoreError::SequenceMismatch => f.write_str("expected sequence does not match store"),
            StoreError::Disk(error) => write!(f, "disk error: {error}"),
            StoreError::Failed => f.write_str("store failed after a sync error"),
            StoreError::Corrupt(what) => write!(f, "corrupt store: {what}"),
            StoreError::Key(error) => write!(f, "encrypted store: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<DiskError> for StoreError {
    fn from(error: DiskError) -> StoreError {
        StoreError::Disk(error)
    }
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;
