//! FileStore: messages in checksummed block files behind the [`Disk`] interface.
//!
//! Role: the store of `storage: file` streams. The [`Engine`] keeps the
//! accounting; [`FileBackend`] keeps the messages on disk, a few recently
//! used blocks in memory (bounded by `cache_blocks`), and per block only its
//! sequence range and the sequences deleted inside it.
//!
//! Inputs: the engine's calls; `handle_sync_done(tag, result)` for the syncs
//! it asked for; `handle_timeout(now)` for the sync interval.
//! Outputs: `StoreAction::Sync { tag, files, dirs }` (group commit: at most one
//! in flight; it covers every record written before it was asked for),
//! `StoreAction::Durable { through }` once the sync covering `through`
//! completed (or at once under `SyncPolicy::Interval`), and
//! `StoreAction::Warning` for what recovery found.
//!
//! # On-disk format (version 2)
//!
//! A store is one directory holding:
//!
//! - `meta`: 44 bytes, written atomically (`meta.tmp`, sync, rename over
//!   `meta`, sync the directory):
//!   `"RNSM"` magic (4) | format version u32 (4) = 2 | floor u64 (8) |
//!   last sequence u64 (8) | last timestamp u64 (8) | active block number
//!   u64 (8) | crc32 u32 (4) over the 40 bytes before it. (Version 1, 36
//!   bytes without the block number, is still read.) Rewritten on purge,
//!   compact, truncate, block removal, a skip of more than one sequence,
//!   and before the first record of every new block (the new block's file
//!   is created first, so the directory sync of `meta` makes its name
//!   durable). A damaged or missing `meta` is rebuilt from the blocks (it
//!   never deletes a stream: the blocks carry the same facts in Floor
//!   records).
//! - `snapshot`: the full-state snapshot (below); optional.
//! - `key`, `key.2` (encrypted stores only): the data key, sealed under
//!   the configured key ([`KeyRing::new_store_key`]), three copies per file;
//!   written atomically, rebuilt from any copy that opens.
//! - `NNNNNNNNNN.blk` (ten decimal digits, the block's number, increasing):
//!   a sequence of records, appended. A new block starts when the next record
//!   would pass `block_size` or a message follows a skip of 1024 or more
//!   sequences. Tombstones are appended to the block holding the message.
//!   A block emptied by removals is deleted (unless it is the last) once a
//!   Skip naming its sequences is appended to the block before it (for the
//!   first block: a Floor above them), so no sequence goes unaccounted.
//!
//! Every record, all integers little endian:
//!
//! ```text
//! offset  size  field
//!      0     4  record length L (all of it, checksum included), 40 ..= 64 MiB
//!      4     1  kind: 1 message, 2 tombstone, 3 skip, 4 erased, 5 floor,
//!               6 sealed message (compressed and/or encrypted)
//!      5     1  magic 0xA5
//!      6     2  subject length S
//!      8     8  sequence (message: its own; tombstone/erased: the removed one;
//!               skip: the last sequence handed out; floor: the floor)
//!     16     8  timestamp, unix nanoseconds
//!     24     8  time to live, nanoseconds (0: none)
//!     32     4  headers length H
//!     36     S  subject
//!   36+S     H  headers
//! 36+S+H     P  payload (P = L - 40 - S - H; a floor's payload is the last
//!               sequence, u64; an erased record's payload is zeros)
//!    L-4     4  crc32 (IEEE, crc32fast) of bytes 0 .. L-4
//! ```
//!
//! The checksum covers the whole record but itself, so a flipped bit in the
//! length, the kind, the sequence or the payload is caught.
//!
//! A sealed message (kind 6: `compression: "s2"` and the record shrank, or
//! encryption at rest) has an empty subject and headers; its payload is
//! the sealed body laid out in [`super::codec`], which holds them. It is
//! checksummed like any record, so damage is found before it is opened; a
//! sealed record whose checksum matches but that does not open is refused
//! like an impossible record (skipped, counted, named). Compression is per
//! record (why: [`super::codec`]); the bytes a store counts are the
//! uncompressed message sizes, as the reference counts them.
//!
//! # Recovery
//!
//! The per-block index (sequence range, deleted sequences as ranges, the
//! offset of every 32nd message) lives in memory; on disk it is kept in the
//! full-state snapshot (`snapshot`, layout in [`super::snapshot`]) with the
//! engine's accounting. The snapshot is written by [`Engine::write_snapshot`]
//! (a clean shutdown) and by the store every `snapshot_every` appended
//! bytes, after a sync of the blocks it describes, atomically. On open it
//! is used only if it opens and decodes (checksum, consistent contents) and
//! describes the block files as they are: the same files, each as long as
//! it says and ending in the bytes it checksummed (`TAIL_CHECK`), except its
//! last block, which may have grown (read on from where it stopped, with
//! the blocks after it). If what was appended after it removes or drops
//! messages it counted, the pass is dropped and every block read instead.
//! Any other snapshot is named in `RecoveryReport::snapshot` (a damaged one
//! in a warning), removed, and every block read: a snapshot holds no data,
//! so it can cost time, never a message. An erase, compact or truncate
//! removes it (durably) first: those change blocks in ways its checks do
//! not see. A block a snapshot vouched for is not checked at open; every
//! read of it is, as always. A random load reads its record from the
//! nearest indexed offset; a sequential one loads the whole block into the
//! bounded cache.
//!
//! Without a usable snapshot every block is read once and every record checked (a block that
//! looks damaged is read up to three times first, so a fault on the read
//! path does not cut good records); the accounting the engine needs
//! (counts, bytes, per-subject state, TTLs) is counted in the same pass
//! ([`Backend::take_tally`]; when a removal or floor record makes that
//! count doubtful the engine counts again by loading). A damaged record
//! followed by a good one is skipped and counted (its message is never
//! served); a damaged or torn tail is cut at the last good record, with a
//! warning naming the file, the offset and the records lost. A last block
//! found damaged takes no more records (appends go to a new block file,
//! made at recovery): how a damaged stretch is read can depend on the
//! bytes after it, and every later open must read it as this one did. A record whose
//! checksum matches but whose contents are impossible (a message not above
//! the block's previous message, a message numbered 0, a sequence above
//! [`SEQ_MAX`]) is refused
//! like a damaged one: skipped, counted, named in a warning. The floor is
//! the highest of `meta`'s and the Floor records'; the last sequence the
//! highest sequence any record or `meta` names, raised by the records a cut
//! tail held (up to `SEQ_MAX`), so a sequence handed out is not handed out
//! again. A `meta` naming a sequence above `SEQ_MAX` counts as damaged.
//! Sequences below a block's first message that neither the floor nor any
//! record of an earlier block names were in a block file that is gone: a
//! warning names the missing block number(s) and the sequences lost (they
//! stay handed out: they are below a recovered message).
//! A block after the last block file found that `meta` names as the last
//! written is gone with its messages: a warning names it, and the last
//! sequence becomes `meta`'s plus one per record the lost block(s) could
//! hold (`block_size / 40`), so no sequence acknowledged from it is handed
//! out again (sequences are skipped rather than risked).
//!
//! # Durability
//!
//! Under `SyncPolicy::BeforeAck` a message's sequence appears in `Durable`
//! only after a sync of its block (and of the directory, for a new block)
//! requested after it was written has completed. Purge, compact and
//! truncate sync inline before they return. A failed sync poisons the store
//! (no write accepted, nothing more reported durable) until reopened.
//!
//! Invariants: the in-memory block table agrees with the files (lengths,
//! ranges); message ranges of blocks increase with the block number; every
//! byte served passed its checksum when read from disk; the index's memory
//! is bounded by the records on disk (a gap is one deleted range), never
//! by the sequence numbers they name; no sequence above `SEQ_MAX` is kept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::codec::{self, Codec, KeyError, KeyRing, SecretKey};
use super::disk::{join, Disk, DiskResult};
use super::engine::{Backend, Engine, NewMsg, Tally};
use super::record::{self, Kind, MIN_RECORD};
use super::seqset::SeqSet;
use super::snapshot::{self, BlockIndex, Snapshot};
use super::write_behind::WriteBehind;
use super::{
    Sizing, StoreAction, StoreConfig, StoreError, StoreResult, StoredMsg, SyncPolicy, SEQ_MAX,
};
use crate::time::{Instant, WallTime};

/// A store kept in block files.
pub type FileStore<D> = Engine<FileBackend<D>>;

impl<D: Disk> Engine<FileBackend<D>> {
    /// Open (or create) the store in `file_config.dir` on `disk`.
    pub fn open_on(
        disk: D,
        file_config: FileStoreConfig,
        config: StoreConfig,
    ) -> StoreResult<FileStore<D>> {
        let backend = FileBackend::open(disk, file_config, &config)?;
        Engine::open(backend, config)
    }
}

/// How a FileStore lays out and caches its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStoreConfig {
    /// The store's directory.
    pub dir: String,
    /// A block is sealed once the next record would take it past this.
    pub block_size: u64,
    /// How many blocks stay loaded in memory (at least 1).
    pub cache_blocks: usize,
    pub sync: SyncPolicy,
    /// Encryption at rest: message records are encrypted under a data key
    /// kept in `<dir>/key`, sealed under the configured key.
    pub encryption: Option<KeyRing>,
    /// Seeds the nonces and the data key's salt (core's seeded randomness,
    /// handed in by the caller; different for every open).
    pub seed: u64,
    /// The store writes its full-state snapshot by itself once this many
    /// bytes were appended to its blocks since the last one (or eight times
    /// the last snapshot's size, if more); 0: only when asked
    /// ([`Engine::write_snapshot`], at a clean shutdown).
    pub snapshot_every: u64,
}

impl Default for FileStoreConfig {
    fn default() -> Self {
        FileStoreConfig {
            dir: "store".to_string(),
            block_size: 4 << 20,
            cache_blocks: 4,
            sync: SyncPolicy::BeforeAck,
            encryption: None,
            seed: 0,
            snapshot_every: 64 << 20,
        }
    }
}

/// What opening the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub blocks: u64,
    /// Records whose checksum matched (of the blocks read: a block the
    /// snapshot described is not read).
    pub records: u64,
    /// What became of the full-state snapshot.
    pub snapshot: SnapshotUse,
    /// Blocks taken from the snapshot without reading them (the last one
    /// may have been read from where the snapshot left it).
    pub snapshot_blocks: u64,
    /// Damaged stretches in the middle of a block, skipped.
    pub damaged_records: u64,
    /// Checksum-valid records whose contents are impossible (a message not
    /// above the one before it in its block, a sequence above
    /// [`SEQ_MAX`]): skipped like damaged ones, each with a warning.
    pub records_refused: u64,
    /// Blocks whose tail was cut.
    pub tails_cut: u64,
    /// Records (estimated) lost in cut tails.
    pub records_lost_in_tails: u64,
    /// `meta` was missing or damaged and was rebuilt.
    pub meta_rebuilt: bool,
    /// Sequence ranges `(first, last)` below a block that no block
    /// accounts for: a block file was lost with its messages. Those
    /// sequences are never handed out again.
    pub missing_sequences: Vec<(u64, u64)>,
    /// Block numbers after the last block file found, up to the one `meta`
    /// names as the last written (at most 1024 listed): the last block(s)
    /// are gone. The sequences they may have held are not handed out again.
    pub missing_last_blocks: Vec<u64>,
    pub warnings: Vec<String>,
}

impl RecoveryReport {
    /// Whether recovery found damage or loss (what an operator must hear of).
    pub fn has_findings(&self) -> bool {
        self.damaged_records > 0
            || self.records_refused > 0
            || self.tails_cut > 0
            || self.records_lost_in_tails > 0
            || self.meta_rebuilt
            || !self.missing_sequences.is_empty()
            || !self.missing_last_blocks.is_empty()
    }
}

const META_NAME: &str = "meta";
/// The full-state snapshot (`snapshot.rs`).
const SNAPSHOT_NAME: &str = "snapshot";

/// What opening did with the full-state snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotUse {
    /// There was none: every block was read.
    #[default]
    Missing,
    /// It described the blocks as they are (or a prefix of them, which was
    /// read on from where it stopped): used.
    Used,
    /// Not used, removed, every block read: why (damaged, or the blocks it
    /// describes changed since it was written).
    Rebuilt(String),
}
/// An encrypted store's data key, sealed under the configured key, in two
/// copies (written one after the other, each atomically): a damaged copy
/// is rebuilt from the other instead of costing the whole store.
const KEY_NAMES: [&str; 2] = ["key", "key.2"];
/// Each key file holds its record this many times: a copy whose checksum
/// fails is passed over, and when every copy is damaged a byte-by-byte
/// majority of the three usually is the record (bit rot at rest hits one
/// copy of a byte, not two).
const KEY_COPIES: usize = 3;
const META_MAGIC: &[u8; 4] = b"RNSM";
const META_VERSION: u32 = 2;
/// Version 1 had no active block number.
const META_LEN_V1: usize = 36;
const META_LEN: usize = 44;
/// A message after a skip this long starts a new block (the skipped
/// sequences would otherwise all sit in the block's deleted set).
const GAP_NEW_BLOCK: u64 = 1024;
/// How often a damaged-looking block is read before recovery acts on it.
const READ_ATTEMPTS: u32 = 3;
/// Warnings kept for `poll_action` (and in the recovery report).
const WARNINGS_MAX: usize = 256;
/// One sparse index entry per this many message records of a block.
const SPARSE_EVERY: u64 = 32;
/// How much a direct read of one message reads at a time.
const DIRECT_WINDOW: usize = 16 << 10;

/// One block file as memory knows it.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) number: u64,
    path: String,
    /// First and last message sequence written to it; 0/0 when none.
    pub(super) first_seq: u64,
    pub(super) last_seq: u64,
    /// Sequences in `first_seq..=last_seq` holding no message, as ranges:
    /// a gap between two messages costs one entry however long it is.
    pub(super) deleted: SeqSet,
    /// The highest sequence any of its records names (messages, skips, floors).
    max_recorded: u64,
    /// Bytes in the file: where the next record goes.
    len: u64,
    /// `(seq, offset)` of every `SPARSE_EVERY`-th message record: where a
    /// read of one message from an unloaded block starts.
    sparse: Vec<(u64, u64)>,
    /// Message records written to the block (spaces the sparse index).
    messages_written: u64,
    /// For a block without messages: the store's last sequence when it was
    /// made (every later message is above it); keeps `upper` monotonic.
    pub(super) made_after: u64,
    /// The highest sequence its records named before its first message
    /// (`u64::MAX` when damage came first): what explains the sequences
    /// below it (`find_missing`).
    before_first: u64,
    /// Recovery read damage in it (a skipped stretch or a cut tail): no
    /// record is appended to it again. How `record::scan` reads a damaged
    /// stretch can depend on the bytes after it, so an append could make a
    /// later open read the block differently from this one (serve a
    /// message this open did not, or drop one it served).
    damaged: bool,
}

impl Block {
    /// Block `number` at `path`, nothing in it yet.
    fn empty(number: u64, path: String, made_after: u64) -> Block {
        Block {
            number,
            path,
            first_seq: 0,
            last_seq: 0,
            deleted: SeqSet::default(),
            max_recorded: 0,
            sparse: Vec::new(),
            messages_written: 0,
            len: 0,
            made_after,
            before_first: 0,
            damaged: false,
        }
    }

    fn has_messages(&self) -> bool {
        self.first_seq != 0
    }

    /// Every message in this and earlier blocks is at or below this.
    fn upper(&self) -> u64 {
        if self.has_messages() {
            self.last_seq
        } else {
            self.made_after
        }
    }

    fn present_count(&self) -> u64 {
        if !self.has_messages() {
            return 0;
        }
        self.last_seq - self.first_seq + 1 - self.deleted.len()
    }

    /// The first present sequence in `from..` inside this block.
    fn next_present(&self, from: u64) -> Option<u64> {
        if !self.has_messages() || from > self.last_seq {
            return None;
        }
        let seq = self.deleted.next_absent(from.max(self.first_seq));
        (seq <= self.last_seq).then_some(seq)
    }

    /// The last present sequence in `..=to` inside this block.
    fn prev_present(&self, to: u64) -> Option<u64> {
        if !self.has_messages() || to < self.first_seq {
            return None;
        }
        let seq = self.deleted.prev_absent(to.min(self.last_seq))?;
        (seq >= self.first_seq).then_some(seq)
    }
}

/// A block loaded into memory, every record checked.
#[derive(Debug)]
struct Cached {
    number: u64,
    data: Vec<u8>,
    /// Offset of each message record by sequence.
    offsets: BTreeMap<u64, usize>,
}

/// The messages of a [`FileStore`], on a [`Disk`].
#[derive(Debug)]
pub struct FileBackend<D: Disk> {
    /// Appends are joined into one write per batch; written out before any
    /// other disk operation and before [`Backend::poll_action`] reports.
    disk: WriteBehind<D>,
    config: FileStoreConfig,
    pub(super) blocks: Vec<Block>,
    floor: u64,
    last_seq: u64,
    last_ts: WallTime,
    /// Most recently used first; at most `config.cache_blocks`.
    cache: VecDeque<Cached>,
    dirty_files: BTreeSet<String>,
    dirty_dirs: BTreeSet<String>,
    /// `(tag, through)` of the sync in flight.
    in_flight: Option<(u64, u64)>,
    next_tag: u64,
    durable_through: u64,
    reported: u64,
    failed: bool,
    warnings: VecDeque<String>,
    /// Warnings dropped from the full queue, reported by the next poll.
    warnings_dropped: u64,
    next_sync_at: Option<Instant>,
    sync_due: bool,
    report: RecoveryReport,
    scratch: Vec<u8>,
    /// The sequence of the last `get`: a following `get` of the next one
    /// loads the whole block (a scan), any other reads just the record.
    last_get: u64,
    /// Reused buffer of direct reads.
    direct: Vec<u8>,
    /// How message records are sealed (compression, encryption).
    codec: Codec,
    /// The active block `meta` names on disk.
    meta_active: u64,
    /// How the engine counts bytes (for the tally).
    sizing: Sizing,
    /// The accounting recovery counted, until the engine takes it.
    tally: Option<Tally>,
    /// A snapshot file is on disk (it must go before any change in place).
    snapshot_on_disk: bool,
    /// Bytes appended to blocks since the last snapshot (or the open).
    since_snapshot: u64,
    /// The size of the last snapshot written.
    snapshot_len: u64,
    /// Snapshots written by this open (varies their nonces).
    snapshots_written: u64,
    /// Tails to cut once recovery is sure of what it read: `(path, offset)`.
    pending_cuts: Vec<(String, u64)>,
}

impl<D: Disk> FileBackend<D> {
    /// Open the store in `config.dir`, checking every block (each block
    /// file is read once: the accounting for `store` is counted on the way,
    /// [`Backend::take_tally`]).
    pub fn open(
        mut disk: D,
        mut config: FileStoreConfig,
        store: &StoreConfig,
    ) -> StoreResult<FileBackend<D>> {
        config.cache_blocks = config.cache_blocks.max(1);
        assert!(
            config.block_size >= MIN_RECORD as u64,
            "block size below one record"
        );
        disk.create_dir(&config.dir)?;
        let codec = Codec::new(store.compress, None, 0);
        let mut backend = FileBackend {
            disk: WriteBehind::new(disk),
            config,
            blocks: Vec::new(),
            floor: 0,
            last_seq: 0,
            last_ts: WallTime(0),
            cache: VecDeque::new(),
            dirty_files: BTreeSet::new(),
            dirty_dirs: BTreeSet::new(),
            in_flight: None,
            next_tag: 1,
            durable_through: 0,
            reported: 0,
            failed: false,
            warnings: VecDeque::new(),
            warnings_dropped: 0,
            next_sync_at: None,
            sync_due: false,
            report: RecoveryReport::default(),
            scratch: Vec::new(),
            last_get: 0,
            direct: Vec::new(),
            codec,
            sizing: store.sizing,
            tally: None,
            meta_active: 0,
            snapshot_on_disk: false,
            since_snapshot: 0,
            snapshot_len: 0,
            snapshots_written: 0,
            pending_cuts: Vec::new(),
        };
        let key = backend.store_key()?;
        backend.codec = Codec::new(store.compress, key, backend.config.seed);
        backend.recover()?;
        Ok(backend)
    }

    /// The data key of an encrypted store: made with its key file for a
    /// new store (or the first open with a key configured: records written
    /// before stay readable, plain); read from the key file otherwise,
    /// under the configured key or the previous one (then the key file is
    /// sealed again under the configured key: the rotation). A key file
    /// without a configured key, or that no configured key opens, refuses
    /// the open and changes nothing on disk.
    fn store_key(&mut self) -> StoreResult<Option<SecretKey>> {
        let dir = self.config.dir.clone();
        let mut copies = Vec::new();
        for name in KEY_NAMES {
            copies.push(self.disk.read_all(&join(&dir, name))?);
        }
        let Some(ring) = self.config.encryption.clone() else {
            return match copies.iter().any(Option::is_some) {
                false => Ok(None),
                true => Err(StoreError::Key(KeyError::NotConfigured)),
            };
        };
        let seed = self.config.seed ^ 0x6b65_7973;
        if copies.iter().all(Option::is_none) {
            let (data, record) = ring.new_store_key(&dir, seed);
            let file = record.repeat(KEY_COPIES);
            for name in KEY_NAMES {
                self.disk.write_atomic(&dir, name, &file)?;
            }
            return Ok(Some(data));
        }
        // The first copy that opens (each read again on damage: a fault on
        // the read path is not damage at rest).
        let mut outcome = Err(KeyError::Damaged);
        for (index, name) in KEY_NAMES.iter().enumerate() {
            let path = join(&dir, name);
            for _ in 0..READ_ATTEMPTS {
                let Some(bytes) = &copies[index] else { break };
                for candidate in key_candidates(bytes) {
                    outcome = ring
                        .open_store_key(&dir, &candidate, seed)
                        .map(|opened| (opened, candidate));
                    if !matches!(outcome, Err(KeyError::Damaged)) {
                        break;
                    }
                }
                if !matches!(outcome, Err(KeyError::Damaged)) {
                    break;
                }
                copies[index] = self.disk.read_all(&path)?;
            }
            if outcome.is_ok() {
                break;
            }
        }
        let ((data, rewrapped), record) = outcome.map_err(StoreError::Key)?;
        let rotated = rewrapped.is_some();
        if rotated {
            self.warn(format!(
                "{}: opened with the previous key; its data key is now sealed under the configured key",
                join(&dir, KEY_NAMES[0])
            ));
        }
        let file = rewrapped.unwrap_or(record).repeat(KEY_COPIES);
        // Both copies say the same again (sealed under the configured key).
        for (index, name) in KEY_NAMES.iter().enumerate() {
            if copies[index].as_deref() == Some(&file[..]) {
                continue;
            }
            if !rotated {
                self.warn(format!(
                    "{}: missing or damaged; written again from a good copy",
                    join(&dir, name)
                ));
            }
            self.disk.write_atomic(&dir, name, &file)?;
        }
        Ok(Some(data))
    }

    pub fn disk(&self) -> &D {
        self.disk.inner()
    }

    pub fn disk_mut(&mut self) -> &mut D {
        self.disk.inner_mut()
    }

    pub fn into_disk(self) -> D {
        self.disk.into_inner()
    }

    /// What opening found.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// Forget every loaded block (the next read goes to the disk).
    pub fn drop_cache(&mut self) {
        self.cache.clear();
    }

    /// How many blocks are loaded in memory now.
    pub fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    /// How many block files the store has.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The highest sequence reported durable so far.
    pub fn durable_through(&self) -> u64 {
        self.durable_through
    }

    /// Queue a warning for `poll_action` and the recovery report. Both are
    /// bounded: past `WARNINGS_MAX` the oldest queued one is dropped (and
    /// counted in the next), the report keeps its first ones.
    fn warn(&mut self, text: String) {
        if self.report.warnings.len() < WARNINGS_MAX {
            self.report.warnings.push(text.clone());
        }
        if self.warnings.len() >= WARNINGS_MAX {
            self.warnings.pop_front();
            self.warnings_dropped += 1;
        }
        self.warnings.push_back(text);
        debug_assert!(self.warnings.len() <= WARNINGS_MAX);
    }

    fn recover(&mut self) -> StoreResult<()> {
        let dir = self.config.dir.clone();
        let meta = self.read_meta()?;
        let mut names = self.disk.list(&dir)?;
        names.retain(|name| parse_block_name(name).is_some());
        names.sort();
        let numbers: Vec<u64> = names
            .iter()
            .map(|name| parse_block_name(name).expect("filtered above"))
            .collect();
        let snapshot = self.read_snapshot(&numbers)?;
        let used = snapshot.is_some();
        let (report, warnings) = (self.report.clone(), self.warnings.len());
        if !self.recover_blocks(meta, &numbers, snapshot)? {
            // The blocks appended after the snapshot remove or drop messages
            // it counted: forget what this pass found and read every block.
            assert!(used, "only a snapshot makes a pass doubtful");
            self.report = report;
            self.warnings.truncate(warnings);
            self.blocks.clear();
            self.pending_cuts.clear();
            self.report.snapshot = SnapshotUse::Rebuilt(
                "blocks written after it remove messages it counts".to_string(),
            );
            let complete = self.recover_blocks(meta, &numbers, None)?;
            assert!(complete, "a pass without a snapshot is never redone");
        }
        if !matches!(self.report.snapshot, SnapshotUse::Used) && self.snapshot_on_disk {
            // Never used again: blocks that come to match it by chance
            // must not make it believed.
            self.disk.remove(&join(&dir, SNAPSHOT_NAME))?;
            self.snapshot_on_disk = false;
        }
        for (path, offset) in std::mem::take(&mut self.pending_cuts) {
            self.disk.truncate(&path, offset)?;
            self.dirty_files.insert(path);
        }
        if self.blocks.last().is_some_and(|block| block.damaged) {
            // Appends go to a new block file, created now so that the next
            // open (with or without a snapshot) finds it last as well.
            self.new_block();
            let path = self.blocks.last().expect("just made").path.clone();
            self.disk.write_at(&path, 0, &[])?;
            self.dirty_files.insert(path);
        }
        self.durable_through = self.last_seq;
        self.reported = self.last_seq;
        // What survived a process kill may sit unsynced in the page cache:
        // make it durable before anything is built on it.
        for block in &self.blocks {
            self.dirty_files.insert(block.path.clone());
        }
        self.dirty_dirs.insert(dir);
        self.sync_now()?;
        self.meta_active = meta.map_or(0, |meta| meta.3);
        if meta != Some(self.meta_now()) {
            self.write_meta()?;
        }
        Ok(())
    }

    /// Build the block table and the tally from the block files `numbers`
    /// (and `snapshot`, which describes a prefix of them). `false`: the
    /// blocks after the snapshot make its count doubtful (nothing was
    /// written; the caller starts again without it).
    fn recover_blocks(
        &mut self,
        meta: Option<Meta>,
        numbers: &[u64],
        snapshot: Option<Snapshot>,
    ) -> StoreResult<bool> {
        let mut tombstones = BTreeSet::new();
        let mut floor = meta.map_or(0, |(floor, _, _, _)| floor);
        let mut last_seq = meta.map_or(0, |(_, last, _, _)| last);
        let mut last_ts = meta.map_or(0, |(_, _, ts, _)| ts);
        let highest_number = numbers.last().copied().unwrap_or(0);
        if let Some((_, meta_last, _, active)) = meta.filter(|meta| meta.3 > highest_number) {
            last_seq = last_seq.max(self.missing_last_blocks(highest_number, active, meta_last));
        }
        // Per block: the highest sequence its records name before its first
        // message, and in all.
        let mut reaches = Vec::new();
        let mut counting = Counting {
            tally: Tally::default(),
            valid: true,
            floor,
            highest: 0,
            orphan_removals: BTreeSet::new(),
        };
        let mut resume = None;
        let from_snapshot = snapshot.is_some();
        if let Some(snapshot) = snapshot {
            floor = floor.max(snapshot.floor);
            counting.floor = floor;
            if snapshot.last_seq >= last_seq {
                last_seq = snapshot.last_seq;
                last_ts = last_ts.max(snapshot.last_ts);
            }
            counting.highest = snapshot.tally.last_seq();
            counting.tally = snapshot.tally;
            let described = snapshot.blocks.len();
            for (index, entry) in snapshot.blocks.into_iter().enumerate() {
                let block = self.block_from_index(entry);
                let file_len = self.disk.len(&block.path)?.unwrap_or(0);
                if index + 1 == described && file_len > block.len {
                    // Written on after the snapshot: read from there.
                    let start = block.len as usize;
                    resume = Some((block, start));
                } else {
                    reaches.push((block.before_first, block.max_recorded));
                    self.blocks.push(block);
                }
                self.report.snapshot_blocks += 1;
            }
            self.report.snapshot = SnapshotUse::Used;
        }
        for &number in numbers {
            let resumed = resume
                .as_ref()
                .is_some_and(|(block, _): &(Block, usize)| block.number == number);
            if !resumed && self.blocks.iter().any(|block| block.number == number) {
                continue;
            }
            let start = if resumed { resume.take() } else { None };
            let found = self.recover_block(number, start, &mut tombstones, &mut counting)?;
            reaches.push((found.before_messages, found.max_seq));
            floor = floor.max(found.floor);
            if found.max_seq >= last_seq {
                last_seq = found.max_seq;
                last_ts = last_ts.max(found.last_ts);
            }
        }
        assert!(resume.is_none(), "the resumed block is a listed file");
        // A floor record above `meta`'s (a crash before `meta` was
        // rewritten) may drop messages already counted: count again.
        if counting
            .tally
            .first_seq()
            .is_some_and(|first| first < floor)
        {
            counting.valid = false;
        }
        if from_snapshot && !counting.valid {
            return Ok(false);
        }
        for seq in tombstones {
            if let Some(index) = self.block_of(seq) {
                self.blocks[index].deleted.insert(seq);
            }
        }
        self.check_block_order()?;
        self.find_missing(floor, &reaches);
        self.tally = counting.valid.then_some(counting.tally);
        self.floor = floor;
        self.last_seq = last_seq.max(floor.saturating_sub(1));
        self.last_ts = WallTime(last_ts);
        Ok(true)
    }

    /// The snapshot, if there is one that describes the block files
    /// `numbers` as they are (each as long as it says, its last bytes
    /// those it checksummed) or a prefix of them (the last block it
    /// describes grown since, later blocks added). Anything else
    /// (damaged, a described block changed or gone, a block it skips)
    /// is not used: `report.snapshot` says why, and `recover` removes it.
    fn read_snapshot(&mut self, numbers: &[u64]) -> StoreResult<Option<Snapshot>> {
        let path = join(&self.config.dir, SNAPSHOT_NAME);
        let Some(bytes) = self.disk.read_all(&path)? else {
            return Ok(None);
        };
        self.snapshot_on_disk = true;
        let plain = match &self.config.encryption {
            Some(ring) => ring
                .open_file(&self.snapshot_purpose(), &bytes)
                .map(|(plain, _)| plain)
                .map_err(|error| format!("does not open: {error}")),
            None => Ok(bytes),
        };
        let snapshot = match plain.and_then(|plain| snapshot::decode(&plain)) {
            Ok(snapshot) => snapshot,
            Err(why) => {
                self.warn(format!(
                    "{path}: damaged ({why}); the store is rebuilt from its blocks"
                ));
                self.report.snapshot = SnapshotUse::Rebuilt(format!("damaged: {why}"));
                return Ok(None);
            }
        };
        match self.snapshot_mismatch(&snapshot, numbers)? {
            None => Ok(Some(snapshot)),
            Some(why) => {
                self.report.snapshot = SnapshotUse::Rebuilt(why);
                Ok(None)
            }
        }
    }

    /// Why `snapshot` does not describe the block files `numbers` (or a
    /// prefix of them), or `None` if it does.
    fn snapshot_mismatch(
        &mut self,
        snapshot: &Snapshot,
        numbers: &[u64],
    ) -> StoreResult<Option<String>> {
        let Some(last) = snapshot.blocks.last() else {
            // It knew no block: usable if none was written before it.
            return Ok((!numbers.is_empty()).then(|| "blocks written since".to_string()));
        };
        let below: Vec<u64> = numbers
            .iter()
            .copied()
            .filter(|&number| number <= last.number)
            .collect();
        let described: Vec<u64> = snapshot.blocks.iter().map(|block| block.number).collect();
        if below != described {
            return Ok(Some(
                "the block files are not those it describes".to_string(),
            ));
        }
        for (index, block) in snapshot.blocks.iter().enumerate() {
            let path = self.block_path(block.number);
            let len = self.disk.len(&path)?.unwrap_or(0);
            let grown = index + 1 == snapshot.blocks.len() && len > block.len;
            if len != block.len && !grown {
                return Ok(Some(format!(
                    "{path} is {len} bytes, the snapshot says {}",
                    block.len
                )));
            }
            if self.tail_crc(&path, block.len)? != Some(block.tail_crc) {
                return Ok(Some(format!("{path}: its last bytes changed")));
            }
        }
        Ok(None)
    }

    /// crc32 of the last `min(len, TAIL_CHECK)` bytes of the first `len`
    /// of `path` (`None` if the file is shorter).
    fn tail_crc(&mut self, path: &str, len: u64) -> StoreResult<Option<u32>> {
        let from = len.saturating_sub(snapshot::TAIL_CHECK);
        let mut buf = vec![0u8; (len - from) as usize];
        if !self.read_exact(path, from, &mut buf)? {
            return Ok(None);
        }
        Ok(Some(crc32fast::hash(&buf)))
    }

    fn snapshot_purpose(&self) -> String {
        format!("{}/{SNAPSHOT_NAME}", self.config.dir)
    }

    /// A block as the snapshot describes it.
    fn block_from_index(&self, entry: BlockIndex) -> Block {
        let mut deleted = SeqSet::default();
        for (start, end) in entry.deleted {
            deleted.insert_range(start, end);
        }
        Block {
            number: entry.number,
            path: self.block_path(entry.number),
            first_seq: entry.first_seq,
            last_seq: entry.last_seq,
            deleted,
            max_recorded: entry.max_recorded,
            len: entry.len,
            sparse: entry.sparse,
            messages_written: entry.messages_written,
            made_after: self.blocks.last().map_or(0, Block::upper),
            before_first: entry.before_first,
            damaged: false,
        }
    }

    /// Write the full-state snapshot: the blocks as they are now (synced
    /// first, so it never describes what a power loss can take) and
    /// `tally`, the engine's accounting of them. Atomic (temp, sync,
    /// rename, sync the directory).
    fn write_snapshot_now(&mut self, tally: &Tally) -> StoreResult<()> {
        if self.failed {
            return Err(StoreError::Failed);
        }
        let synced = self.sync_now();
        self.failed |= synced.is_err();
        synced?;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for index in 0..self.blocks.len() {
            let (path, len) = (self.blocks[index].path.clone(), self.blocks[index].len);
            let tail_crc = self.tail_crc(&path, len)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{path}: shorter than the {len} bytes written"))
            })?;
            let block = &self.blocks[index];
            blocks.push(BlockIndex {
                number: block.number,
                len,
                tail_crc,
                first_seq: block.first_seq,
                last_seq: block.last_seq,
                max_recorded: block.max_recorded,
                messages_written: block.messages_written,
                before_first: block.before_first,
                deleted: block.deleted.ranges().collect(),
                sparse: block.sparse.clone(),
            });
        }
        let snapshot = Snapshot {
            floor: self.floor,
            last_seq: self.last_seq,
            last_ts: self.last_ts.0,
            tally: tally.clone(),
            blocks,
        };
        let mut bytes = snapshot::encode(&snapshot);
        if let Some(ring) = &self.config.encryption {
            // A nonce of its own for every snapshot of every open.
            let seed = (self.config.seed ^ 0x736e_6170_0000_0000)
                .wrapping_add(self.snapshots_written.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            bytes = ring.seal_file(&self.snapshot_purpose(), &bytes, seed);
        }
        self.disk
            .write_atomic(&self.config.dir, SNAPSHOT_NAME, &bytes)?;
        self.snapshot_on_disk = true;
        self.snapshots_written += 1;
        self.since_snapshot = 0;
        self.snapshot_len = bytes.len() as u64;
        Ok(())
    }

    /// Remove the snapshot, durably, before a change it cannot see (a
    /// record overwritten in place, a block cut or removed by a bulk
    /// change): blocks changed that way could otherwise match it again.
    fn drop_snapshot(&mut self) -> StoreResult<()> {
        if !self.snapshot_on_disk {
            return Ok(());
        }
        let path = join(&self.config.dir, SNAPSHOT_NAME);
        if self.disk.len(&path)?.is_some() {
            self.disk.remove(&path)?;
        }
        self.disk.sync_dir(&self.config.dir)?;
        self.snapshot_on_disk = false;
        Ok(())
    }

    /// Blocks `after + 1 ..= active` are gone: `meta` named block `active`
    /// as written to (it is rewritten whenever a new block gets its first
    /// record), and no file after `after` is left. Their messages are lost;
    /// warn, and return the last sequence they may have handed out: what
    /// `meta` knew then plus one per record the blocks could hold, so no
    /// sequence acknowledged from them is handed out again. (A bulk skip
    /// rewrites `meta` too, so no record in them names more than that.)
    fn missing_last_blocks(&mut self, after: u64, active: u64, meta_last: u64) -> u64 {
        assert!(active > after, "no block is missing");
        let count = active - after;
        let per_block = (self.config.block_size / MIN_RECORD as u64).max(1);
        let through = meta_last
            .saturating_add(count.saturating_mul(per_block))
            .min(SEQ_MAX);
        self.report
            .missing_last_blocks
            .extend(after + 1..=active.min(after + 1024));
        let files = if count == 1 {
            format!("block file {active:010}.blk is missing")
        } else {
            format!(
                "block files {:010}.blk to {active:010}.blk are missing",
                after + 1
            )
        };
        self.warn(format!(
            "{}: {files} (meta names block {active} as the last written): their messages are lost; sequences up to {through} are not handed out again",
            self.config.dir
        ));
        through
    }

    /// Warn of the sequences no block accounts for: below a block's first
    /// message, above everything the blocks before it (and the floor)
    /// name. The store never leaves such a hole (a skip is recorded, a
    /// block emptied and removed leaves a skip or a floor behind,
    /// `remove_block`), so a block file was lost. Those sequences stay
    /// handed out: they are below a recovered message.
    fn find_missing(&mut self, floor: u64, reaches: &[(u64, u64)]) {
        assert_eq!(reaches.len(), self.blocks.len(), "one reach per block");
        let mut covered = floor.saturating_sub(1);
        let mut previous: Option<usize> = None;
        for (index, &(before_messages, reach)) in reaches.iter().enumerate() {
            let block = &self.blocks[index];
            let explained = covered.max(before_messages);
            if block.has_messages() && block.first_seq > explained.saturating_add(1) {
                let lost = (explained + 1, block.first_seq - 1);
                let after = previous.map(|at| &self.blocks[at]);
                let text = missing_warning(&self.config.dir, after, block, lost);
                self.report.missing_sequences.push(lost);
                self.warn(text);
            }
            covered = covered.max(reach);
            previous = Some(index);
        }
    }

    /// Read `meta`; `None` (with a warning) if missing or damaged.
    fn read_meta(&mut self) -> StoreResult<Option<Meta>> {
        let path = join(&self.config.dir, META_NAME);
        let Some(bytes) = self.disk.read_all(&path)? else {
            self.report.meta_rebuilt = true;
            return Ok(None);
        };
        match decode_meta(&bytes) {
            Some(meta @ (floor, last, _, _)) if floor <= SEQ_MAX + 1 && last <= SEQ_MAX => {
                Ok(Some(meta))
            }
            _ => {
                self.report.meta_rebuilt = true;
                self.warn(format!(
                    "{path}: damaged ({} bytes); rebuilt from the blocks",
                    bytes.len()
                ));
                Ok(None)
            }
        }
    }

    fn write_meta(&mut self) -> StoreResult<()> {
        let meta = self.meta_now();
        let bytes = encode_meta(meta.0, meta.1, meta.2, meta.3);
        assert_eq!(
            decode_meta(&bytes),
            Some(meta),
            "meta must read back as written"
        );
        self.disk
            .write_atomic(&self.config.dir, META_NAME, &bytes)?;
        self.meta_active = meta.3;
        Ok(())
    }

    /// What `meta` should say now.
    fn meta_now(&self) -> Meta {
        let active = self.blocks.last().map_or(0, |block| block.number);
        (self.floor, self.last_seq, self.last_ts.0, active)
    }

    /// Check one block file (from the start, or `resume`: the block as
    /// the snapshot left it and the offset to read on from), note its
    /// damaged tail for cutting, add it to the table.
    fn recover_block(
        &mut self,
        number: u64,
        resume: Option<(Block, usize)>,
        tombstones: &mut BTreeSet<u64>,
        counting: &mut Counting,
    ) -> StoreResult<BlockFindings> {
        let path = self.block_path(number);
        let start = resume.as_ref().map_or(0, |&(_, start)| start);
        let (data, scan) = self.read_checked(&path, start)?;
        let mut found = BlockFindings::default();
        let mut block = match resume {
            Some((block, _)) => {
                found.max_seq = block.max_recorded;
                block
            }
            None => Block::empty(
                number,
                path.clone(),
                self.blocks.last().map_or(0, Block::upper),
            ),
        };
        block.len = scan.good_len(data.len()) as u64;
        let had_messages = block.has_messages();
        let refused_before = self.report.records_refused;
        // This block's messages and removals, counted once the block is read.
        let mut messages: Vec<BlockMessage> = Vec::new();
        let mut removed = BTreeSet::new();
        for &offset in &scan.good {
            let record = record::decode_verified(&data[offset..]).expect("scan checked it");
            if record.kind.holds_message() && !block.has_messages() {
                found.before_messages = found.max_seq;
                // Damage before the first message may have held records
                // naming the sequences before it: reported as damage, not
                // as a missing block.
                let damaged_before = scan.skipped.first().is_some_and(|&(at, _)| at < offset);
                if damaged_before || self.report.records_refused > refused_before {
                    found.before_messages = u64::MAX;
                }
            }
            let opened = match plausible(&record, &block) {
                Ok(()) if record.kind == Kind::Sealed => self
                    .codec
                    .open(&record)
                    .map(|opened| {
                        let size =
                            self.sizing
                                .size(&opened.subject, &opened.headers, &opened.payload);
                        Some((opened.subject, size))
                    })
                    .map_err(|why| why.to_string()),
                Ok(()) => Ok(None),
                Err(why) => Err(why),
            };
            let opened = match opened {
                Ok(opened) => opened,
                Err(why) => {
                    self.report.records_refused += 1;
                    self.warn(format!(
                        "{path}: record at offset {offset} refused as corrupt: {why}"
                    ));
                    continue;
                }
            };
            found.note(&record);
            block.max_recorded = block.max_recorded.max(found.max_seq);
            if record.kind == Kind::Floor {
                block.max_recorded = block.max_recorded.max(record.seq);
            }
            match record.kind {
                Kind::Message | Kind::Sealed => {
                    add_message(&mut block, record.seq, offset as u64);
                    messages.push((record.seq, offset, opened));
                }
                Kind::Tombstone | Kind::Erased => {
                    tombstones.insert(record.seq);
                    removed.insert(record.seq);
                }
                Kind::Skip | Kind::Floor => {}
            }
        }
        if had_messages {
            found.before_messages = block.before_first;
        } else if block.has_messages() {
            block.before_first = found.before_messages;
        }
        self.count_block(&data, &messages, &removed, counting);
        self.report.blocks += 1;
        self.report.records += scan.good.len() as u64;
        for &(offset, len) in &scan.skipped {
            self.report.damaged_records += 1;
            self.warn(format!(
                "{path}: damaged record at offset {offset} ({len} bytes) skipped"
            ));
        }
        block.damaged = !scan.skipped.is_empty() || scan.tail.is_some();
        if let Some((offset, lost)) = scan.tail {
            self.report.tails_cut += 1;
            self.report.records_lost_in_tails += lost;
            self.warn(format!(
                "{path}: damaged tail cut at offset {offset}: {} bytes, about {lost} record(s) lost",
                data.len() - offset
            ));
            self.pending_cuts.push((path.clone(), offset as u64));
            // The lost records may have held sequences already handed out
            // (an estimate: it stops at the highest sequence a store uses).
            let lost_through = block.last_seq.saturating_add(lost).min(SEQ_MAX);
            found.max_seq = found.max_seq.max(lost_through);
        }
        self.blocks.push(block);
        Ok(found)
    }

    /// Count block's messages (`(seq, offset, opened subject and size)`)
    /// that its removals (`removed`) and the floor leave present.
    fn count_block(
        &self,
        data: &[u8],
        messages: &[BlockMessage],
        removed: &BTreeSet<u64>,
        counting: &mut Counting,
    ) {
        debug_assert!(
            messages.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "recovery accepts a block's messages in increasing order"
        );
        // Removals naming no message of their block (none unless records
        // were lost or damaged: the writer puts a removal in the block of
        // its message). They apply to whichever block holds the sequence,
        // as they do for `deleted`: a later block's message is not counted
        // (`orphan_removals`); one at or below a message already counted
        // (an earlier block's) makes the count doubtful, and the engine
        // counts again by loading.
        for &seq in removed {
            if messages
                .binary_search_by_key(&seq, |message| message.0)
                .is_ok()
            {
                continue;
            }
            if seq >= counting.floor && seq <= counting.highest {
                counting.valid = false;
            }
            counting.orphan_removals.insert(seq);
        }
        for (seq, offset, opened) in messages {
            let seq = *seq;
            if seq < counting.floor
                || removed.contains(&seq)
                || counting.orphan_removals.contains(&seq)
            {
                continue;
            }
            let record = record::decode_verified(&data[*offset..]).expect("scanned above");
            match opened {
                Some((subject, size)) => {
                    counting
                        .tally
                        .add(seq, subject, *size, WallTime(record.ts), record.ttl())
                }
                None => {
                    let size = self
                        .sizing
                        .size(record.subject, record.headers, record.payload);
                    counting.tally.add(
                        seq,
                        record.subject,
                        size,
                        WallTime(record.ts),
                        record.ttl(),
                    );
                }
            }
            counting.highest = counting.highest.max(seq);
        }
    }

    /// Read and scan a block; on damage read it again (up to
    /// `READ_ATTEMPTS` times) before believing it, so a fault on the read
    /// path does not cut good records from the file.
    fn read_checked(&mut self, path: &str, start: usize) -> StoreResult<(Vec<u8>, record::Scan)> {
        let mut attempt = 1;
        loop {
            let data = self.disk.read_all(path)?.unwrap_or_default();
            let scan = record::scan_from(&data, start);
            if (scan.skipped.is_empty() && scan.tail.is_none()) || attempt == READ_ATTEMPTS {
                return Ok((data, scan));
            }
            attempt += 1;
        }
    }

    fn check_block_order(&self) -> StoreResult<()> {
        let mut previous = 0;
        for block in self.blocks.iter().filter(|block| block.has_messages()) {
            if block.first_seq <= previous {
                return Err(StoreError::Corrupt(format!(
                    "{}: messages from {} overlap an earlier block ending at {previous}",
                    block.path, block.first_seq
                )));
            }
            previous = block.last_seq;
        }
        Ok(())
    }

    /// The index of the block whose message range holds `seq`.
    fn block_of(&self, seq: u64) -> Option<usize> {
        let index = self.blocks.partition_point(|block| block.upper() < seq);
        let block = self.blocks.get(index)?;
        (block.has_messages() && block.first_seq <= seq && seq <= block.last_seq).then_some(index)
    }

    fn block_path(&self, number: u64) -> String {
        join(&self.config.dir, &format!("{number:010}.blk"))
    }

    /// Start a new block file; it becomes the active (last) block.
    fn new_block(&mut self) {
        let number = self.blocks.last().map_or(1, |block| block.number + 1);
        let block = Block::empty(number, self.block_path(number), self.last_seq);
        self.blocks.push(block);
        self.dirty_dirs.insert(self.config.dir.clone());
    }

    /// Append the record in `scratch` to block `index`.
    fn write_scratch(&mut self, index: usize) -> StoreResult<u64> {
        let block = &self.blocks[index];
        let (offset, number) = (block.len, block.number);
        debug_assert!(record::decode(&self.scratch).is_ok());
        if number > self.meta_active {
            // A new block: create its file, then have `meta` name it as the
            // last block written (the directory sync of that write makes the
            // file's name durable), so its loss is seen at recovery
            // (`missing_last_blocks`). Both before the record: if either
            // fails, nothing of the record is on disk.
            assert_eq!(offset, 0, "a new block starts empty");
            let path = self.blocks[index].path.clone();
            self.disk.write_at(&path, 0, &[])?;
            self.write_meta()?;
        }
        let path = &self.blocks[index].path;
        self.disk.write_at(path, offset, &self.scratch)?;
        // No copy of the path per record: it is dirty already, mostly.
        if !self.dirty_files.contains(path) {
            self.dirty_files.insert(path.clone());
        }
        self.blocks[index].len += self.scratch.len() as u64;
        self.since_snapshot += self.scratch.len() as u64;
        if let Some(cached) = self.cache.iter_mut().find(|cached| cached.number == number) {
            assert_eq!(
                cached.data.len() as u64,
                offset,
                "cache out of step with file"
            );
            cached.data.extend_from_slice(&self.scratch);
        }
        Ok(offset)
    }

    /// The active block, started anew if `bytes` would not fit or `rollover`.
    fn active_for(&mut self, bytes: usize, rollover: bool) -> usize {
        let full = self.blocks.last().is_none_or(|block| {
            (block.len > 0 && block.len + bytes as u64 > self.config.block_size) || rollover
        });
        if full {
            self.new_block();
        }
        self.blocks.len() - 1
    }

    /// Write a control record (skip, floor) to the active block.
    fn write_control(
        &mut self,
        kind: Kind,
        seq: u64,
        ts: u64,
        payload: &[u8],
    ) -> StoreResult<usize> {
        self.scratch.clear();
        record::encode(&mut self.scratch, kind, seq, ts, 0, b"", b"", payload);
        let index = self.active_for(self.scratch.len(), false);
        self.write_scratch(index)?;
        let named = match kind {
            Kind::Floor => seq.max(u64::from_le_bytes(
                payload.try_into().expect("a floor names the last sequence"),
            )),
            _ => seq,
        };
        let block = &mut self.blocks[index];
        block.max_recorded = block.max_recorded.max(named);
        Ok(index)
    }

    /// Append a control record to block `index` (not necessarily the
    /// active one: a skip left by `remove_block`).
    fn write_control_to(
        &mut self,
        index: usize,
        kind: Kind,
        seq: u64,
        ts: u64,
        payload: &[u8],
    ) -> StoreResult<()> {
        assert!(kind == Kind::Skip, "only a skip goes to a sealed block");
        assert!(seq <= self.last_seq, "a skip names a handed-out sequence");
        self.scratch.clear();
        record::encode(&mut self.scratch, kind, seq, ts, 0, b"", b"", payload);
        self.write_scratch(index)?;
        let block = &mut self.blocks[index];
        block.max_recorded = block.max_recorded.max(seq);
        Ok(())
    }

    /// Load block `index` into the cache (checking every record).
    fn load(&mut self, index: usize) -> StoreResult<usize> {
        let number = self.blocks[index].number;
        if let Some(position) = self.cache.iter().position(|cached| cached.number == number) {
            let cached = self.cache.remove(position).expect("position is valid");
            self.cache.push_front(cached);
            return Ok(0);
        }
        let block = &self.blocks[index];
        let path = block.path.clone();
        let expected = block.len;
        if self.disk.len(&path)?.is_none() {
            return Err(StoreError::Corrupt(format!("{path}: block file missing")));
        }
        let (mut data, mut scan) = self.read_checked(&path, 0)?;
        if (data.len() as u64) < expected {
            return Err(StoreError::Corrupt(format!(
                "{path}: {} bytes, expected {expected}",
                data.len()
            )));
        }
        if data.len() as u64 > expected {
            // Bytes past the block's end (a failed append) are not records.
            data.truncate(expected as usize);
            scan = record::scan(&data);
        }
        let mut offsets = BTreeMap::new();
        let mut previous = 0;
        for &offset in &scan.good {
            let record = record::decode_verified(&data[offset..]).expect("scan checked it");
            // The messages recovery refused stay refused (see `follows`).
            // The same rule as recovery's: a sealed record that does not
            // open is refused (and does not count as the previous message).
            if record.kind.holds_message()
                && follows(previous, record.seq)
                && (record.kind == Kind::Message || self.codec.open(&record).is_ok())
            {
                offsets.insert(record.seq, offset);
                previous = record.seq;
            }
        }
        if !scan.skipped.is_empty() || scan.tail.is_some() {
            self.warn(format!(
                "{path}: damaged since opened ({} stretch(es) skipped, tail {:?}); its messages there are not served",
                scan.skipped.len(),
                scan.tail
            ));
        }
        self.cache.push_front(Cached {
            number,
            data,
            offsets,
        });
        self.cache.truncate(self.config.cache_blocks);
        Ok(0)
    }

    fn evict(&mut self, number: u64) {
        self.cache.retain(|cached| cached.number != number);
    }

    /// Remove block `index`'s file (it holds no present message). First
    /// record, durably, that its sequences are accounted for, so recovery
    /// does not take the removal for a lost file (`find_missing`): a skip
    /// through them in the block before it, or, for the first block, a
    /// floor above them.
    fn remove_block(&mut self, index: usize) -> StoreResult<()> {
        assert!(index + 1 < self.blocks.len(), "the active block stays");
        // (`max_recorded` may lag above the last sequence after a truncate
        // that found nothing to cut in the block; nothing above it counts.)
        let reach = self.blocks[index]
            .max_recorded
            .max(self.blocks[index].upper())
            .min(self.last_seq);
        let marked = if index == 0 {
            // Nothing below `reach` is present: no block before it, and every
            // later block's messages are above everything this one names.
            self.floor = self.floor.max(reach + 1);
            let last = self.last_seq.to_le_bytes();
            self.write_control(Kind::Floor, self.floor, self.last_ts.0, &last)?
        } else {
            // Timestamp 0: the skip claims no time (the last timestamp
            // recovery finds must stay that of the last message or skip).
            self.write_control_to(index - 1, Kind::Skip, reach, 0, b"")?;
            index - 1
        };
        let marked_path = self.blocks[marked].path.clone();
        self.disk.sync(&marked_path)?;
        let block = self.blocks.remove(index);
        assert_eq!(
            block.present_count(),
            0,
            "removing a block that holds messages"
        );
        self.evict(block.number);
        self.write_meta()?;
        self.disk.remove(&block.path)?;
        self.dirty_files.remove(&block.path);
        self.dirty_dirs.insert(self.config.dir.clone());
        Ok(())
    }

    /// Sync every dirty file and directory now (bulk operations).
    fn sync_now(&mut self) -> StoreResult<()> {
        for path in std::mem::take(&mut self.dirty_files) {
            self.disk.sync(&path)?;
        }
        for dir in std::mem::take(&mut self.dirty_dirs) {
            self.disk.sync_dir(&dir)?;
        }
        Ok(())
    }

    /// The offset where block `index` must be cut so nothing above `last`
    /// remains, or `None` if nothing in it is above.
    fn cut_offset(&mut self, index: usize, last: u64, floor: u64) -> StoreResult<Option<usize>> {
        if self.blocks[index].max_recorded <= last {
            return Ok(None);
        }
        self.load(index)?;
        let data = &self.cache[0].data;
        let mut offset = 0;
        while offset < data.len() {
            let Ok(record) = record::decode(&data[offset..]) else {
                return Ok(Some(offset));
            };
            let above = match record.kind {
                // A tombstone or erased record above `last` must go too: the
                // sequence it names will be handed out again.
                Kind::Message | Kind::Sealed | Kind::Skip | Kind::Tombstone | Kind::Erased => {
                    record.seq > last
                }
                // So must a floor above the floor after the cut (it was
                // written after messages above `last`).
                Kind::Floor => floor_last(&record) > last || record.seq > floor,
            };
            if above {
                return Ok(Some(offset));
            }
            offset += record.len;
        }
        Ok(None)
    }

    fn compact_inner(&mut self, floor: u64, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        assert!(floor >= self.floor, "the floor never goes down");
        self.drop_snapshot()?;
        assert!(floor <= last_seq + 1, "floor above last + 1");
        self.floor = floor;
        self.last_seq = last_seq.max(self.last_seq);
        self.last_ts = last_ts;
        self.write_control(Kind::Floor, floor, last_ts.0, &self.last_seq.to_le_bytes())?;
        self.sync_now()?;
        self.write_meta()?;
        let active = self.blocks.len() - 1;
        // A block whose records name a sequence at or above the floor (a
        // skip) stays: recovery needs that record to account for the
        // sequences between it and the next block (`find_missing`).
        let below: Vec<u64> = self.blocks[..active]
            .iter()
            .filter(|block| block.upper().max(block.max_recorded) < floor)
            .map(|block| block.number)
            .collect();
        for number in below {
            let index = self
                .blocks
                .iter()
                .position(|block| block.number == number)
                .expect("listed above");
            let block = self.blocks.remove(index);
            self.evict(block.number);
            self.disk.remove(&block.path)?;
            self.dirty_files.remove(&block.path);
            self.dirty_dirs.insert(self.config.dir.clone());
        }
        for block in &mut self.blocks {
            block.deleted.remove_below(floor);
        }
        self.sync_now()?;
        Ok(())
    }

    fn truncate_inner(&mut self, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        assert!(
            last_seq < self.last_seq,
            "truncate must lower the last sequence"
        );
        self.drop_snapshot()?;
        // Truncating to 0 makes the store fresh again (floor 0).
        let floor = if last_seq == 0 {
            0
        } else {
            self.floor.min(last_seq + 1)
        };
        let mut index = self.blocks.len();
        while index > 0 {
            index -= 1;
            let Some(cut) = self.cut_offset(index, last_seq, floor)? else {
                continue;
            };
            let number = self.blocks[index].number;
            // Tombstones written after the cut go with it: the messages
            // before the cut that they removed need them again. (Gaps need
            // none: recovery derives them from the messages around them.)
            let retombstone: Vec<u64> = self.cache[0]
                .offsets
                .iter()
                .filter(|&(&seq, &offset)| {
                    offset < cut && seq <= last_seq && self.blocks[index].deleted.contains(seq)
                })
                .map(|(&seq, _)| seq)
                .collect();
            self.evict(number);
            if cut == 0 {
                let block = self.blocks.remove(index);
                self.disk.remove(&block.path)?;
                self.dirty_files.remove(&block.path);
                self.dirty_dirs.insert(self.config.dir.clone());
                continue;
            }
            let path = self.blocks[index].path.clone();
            self.disk.truncate(&path, cut as u64)?;
            self.dirty_files.insert(path);
            let block = &mut self.blocks[index];
            block.len = cut as u64;
            block.max_recorded = last_seq;
            block
                .sparse
                .retain(|&(seq, offset)| seq <= last_seq && offset < cut as u64);
            block.deleted.remove_above(last_seq);
            if block.first_seq > last_seq {
                block.first_seq = 0;
                block.last_seq = 0;
                block.deleted.clear();
            } else {
                block.last_seq = block.last_seq.min(last_seq);
            }
            for seq in retombstone {
                self.scratch.clear();
                record::encode(&mut self.scratch, Kind::Tombstone, seq, 0, 0, b"", b"", b"");
                self.write_scratch(index)?;
            }
        }
        for block in &mut self.blocks {
            block.made_after = block.made_after.min(last_seq);
        }
        self.last_seq = last_seq;
        self.last_ts = last_ts;
        // Cutting below the floor hands those sequences out again (the
        // reference allows it: truncate is how a replica drops a tail).
        self.floor = floor;
        self.durable_through = self.durable_through.min(last_seq);
        // A sync asked for before the cut covers nothing above it: the
        // sequences above will be new messages written after that request.
        if let Some((tag, through)) = self.in_flight {
            self.in_flight = Some((tag, through.min(last_seq)));
        }
        self.reported = self.reported.min(last_seq);
        self.write_control(Kind::Floor, self.floor, last_ts.0, &last_seq.to_le_bytes())?;
        self.sync_now()?;
        self.write_meta()?;
        Ok(())
    }

    /// Read message `seq` from block `index` without loading the block:
    /// from the sparse index entry at or before it, record by record, every
    /// record's checksum checked. `None` when that path meets anything it
    /// cannot read cleanly: the caller then loads (and rescans) the block.
    fn read_direct(&mut self, index: usize, seq: u64) -> StoreResult<Option<StoredMsg>> {
        let block = &self.blocks[index];
        let entry = block.sparse.partition_point(|&(first, _)| first <= seq);
        let Some(&(_, mut offset)) = entry.checked_sub(1).and_then(|at| block.sparse.get(at))
        else {
            return Ok(None);
        };
        let (path, end) = (block.path.clone(), block.len);
        let mut buf = std::mem::take(&mut self.direct);
        let mut found = None;
        'window: while offset < end {
            let want = DIRECT_WINDOW.min((end - offset) as usize);
            buf.resize(want, 0);
            if !self.read_exact(&path, offset, &mut buf)? {
                break;
            }
            let mut at = 0;
            loop {
                match record::decode(&buf[at..]) {
                    Ok(record) if record.kind.holds_message() && record.seq == seq => {
                        // A sealed record that does not open was refused at
                        // recovery: the message is a later record (as `load`).
                        if let Ok(msg) = message_of(&self.codec, &path, &record, seq) {
                            found = Some(msg);
                            break 'window;
                        }
                        at += record.len;
                    }
                    Ok(record) if record.kind.holds_message() && record.seq > seq => break 'window,
                    Ok(record) => at += record.len,
                    Err(record::DecodeError::Short) if at > 0 => break,
                    Err(record::DecodeError::Short) => {
                        // One record longer than the window: read all of it.
                        let len = buf.get(..4).map_or(0, |bytes| {
                            u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize
                        });
                        if len <= buf.len() || offset + len as u64 > end {
                            break 'window;
                        }
                        buf.resize(len, 0);
                        if !self.read_exact(&path, offset, &mut buf)? {
                            break 'window;
                        }
                        continue;
                    }
                    Err(_) => break 'window,
                }
                if at >= buf.len() {
                    break;
                }
            }
            offset += at as u64;
        }
        self.direct = buf;
        Ok(found)
    }

    /// Fill `buf` from `path` at `offset`; `false` if the file ends first.
    fn read_exact(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> StoreResult<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self
                .disk
                .read_at(path, offset + filled as u64, &mut buf[filled..])?;
            if n == 0 {
                return Ok(false);
            }
            filled += n;
        }
        Ok(true)
    }

    fn request_sync(&mut self, through: u64) -> StoreAction {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.in_flight = Some((tag, through));
        StoreAction::Sync {
            tag,
            files: std::mem::take(&mut self.dirty_files).into_iter().collect(),
            dirs: std::mem::take(&mut self.dirty_dirs).into_iter().collect(),
        }
    }

    fn dirty(&self) -> bool {
        !self.dirty_files.is_empty() || !self.dirty_dirs.is_empty()
    }
}

/// A message record recovery found: sequence, offset, and for a sealed
/// record its opened subject and counted size.
type BlockMessage = (u64, usize, Option<(Bytes, u64)>);

/// The accounting recovery counts while it reads the blocks.
#[derive(Debug)]
struct Counting {
    tally: Tally,
    /// False once something makes the count doubtful (the engine then
    /// counts by loading every message).
    valid: bool,
    /// `meta`'s floor: no message below it is counted.
    floor: u64,
    /// The highest sequence counted.
    highest: u64,
    /// Removals whose message was not in their block (none unless records
    /// were lost or damaged).
    orphan_removals: BTreeSet<u64>,
}

/// What the records of one block say.
#[derive(Debug, Default)]
struct BlockFindings {
    floor: u64,
    max_seq: u64,
    last_ts: u64,
    /// `max_seq` before the block's first message record; `u64::MAX` when
    /// damaged or refused records come first (they may have named more).
    before_messages: u64,
}

impl BlockFindings {
    fn note(&mut self, record: &record::Record<'_>) {
        let named = match record.kind {
            Kind::Message | Kind::Sealed | Kind::Skip | Kind::Erased => record.seq,
            Kind::Floor => {
                self.floor = self.floor.max(record.seq);
                floor_last(record)
            }
            Kind::Tombstone => {
                // The removed sequence was handed out even if its message
                // record is lost; the timestamp is the removal's, not a
                // message's, so it does not move `last_ts`.
                self.max_seq = self.max_seq.max(record.seq);
                return;
            }
        };
        if named >= self.max_seq && named > 0 {
            self.max_seq = named;
            self.last_ts = self.last_ts.max(record.ts);
        }
    }
}

/// The key records a key file offers: each of its copies, then their
/// byte-by-byte majority (a file of another length is one candidate).
fn key_candidates(bytes: &[u8]) -> Vec<Vec<u8>> {
    let len = codec::KEY_FILE_LEN;
    if bytes.len() != len * KEY_COPIES {
        return vec![bytes.to_vec()];
    }
    let copies: Vec<&[u8]> = bytes.chunks(len).collect();
    let majority = (0..len)
        .map(|at| {
            let (a, b, c) = (copies[0][at], copies[1][at], copies[2][at]);
            if a == b || a == c {
                a
            } else {
                b
            }
        })
        .collect();
    let mut candidates: Vec<Vec<u8>> = copies.iter().map(|copy| copy.to_vec()).collect();
    candidates.push(majority);
    candidates
}

/// The warning for sequences `lost` that no block accounts for, found
/// below `block`'s first message (`after` is the block before it).
fn missing_warning(dir: &str, after: Option<&Block>, block: &Block, lost: (u64, u64)) -> String {
    let (first, last) = lost;
    let low = after.map_or(1, |after| after.number + 1);
    let files = match block.number.saturating_sub(low) {
        0 => "no block file is missing by number (one was emptied or damaged?)".to_string(),
        1 => format!("block file {low:010}.blk is missing"),
        count => format!(
            "{count} block files ({low:010}.blk to {:010}.blk) are missing",
            block.number - 1
        ),
    };
    format!(
        "{dir}: sequences {first}..={last} are in no block before {}: {files}; their messages are lost and the sequences are not handed out again",
        block.path
    )
}

/// Add message `seq` (above every message already in it) to `block`.
fn add_message(block: &mut Block, seq: u64, offset: u64) {
    if block.messages_written.is_multiple_of(SPARSE_EVERY) {
        block.sparse.push((seq, offset));
    }
    block.messages_written += 1;
    assert!(seq <= SEQ_MAX, "message {seq} above SEQ_MAX");
    if !block.has_messages() {
        block.first_seq = seq;
        block.before_first = block.max_recorded;
    } else {
        // Recovery refuses anything else first (`plausible`).
        assert!(seq > block.last_seq, "messages in a block must increase");
        if seq > block.last_seq + 1 {
            block.deleted.insert_range(block.last_seq + 1, seq - 1);
        }
    }
    block.last_seq = seq;
    block.max_recorded = block.max_recorded.max(seq);
}

/// Why a checksum-valid record of `block` (read so far) cannot be what the
/// store wrote: a sequence above [`SEQ_MAX`] (a floor may be `SEQ_MAX + 1`),
/// or a message not above the block's previous one (the writer appends
/// messages in increasing order). `Ok` if it can be.
fn plausible(record: &record::Record<'_>, block: &Block) -> Result<(), String> {
    let highest = match record.kind {
        Kind::Floor => SEQ_MAX + 1,
        _ => SEQ_MAX,
    };
    if record.seq > highest {
        return Err(format!("sequence {} above {highest}", record.seq));
    }
    if record.kind == Kind::Floor && floor_last(record) > SEQ_MAX {
        return Err(format!(
            "floor names last sequence {} above {SEQ_MAX}",
            floor_last(record)
        ));
    }
    if record.kind.holds_message() && record.seq == 0 {
        return Err("message with sequence 0".to_string());
    }
    if record.kind.holds_message() && !follows(block.last_seq, record.seq) {
        return Err(format!(
            "message {} does not follow message {} of the same block",
            record.seq, block.last_seq
        ));
    }
    Ok(())
}

/// Whether message `seq` may follow message `previous` (0: none yet) in
/// one block: the writer appends a block's messages in increasing order,
/// from sequence 1 (a block whose first message is 0 would look empty to
/// the block table while its record is read, so 0 is refused).
fn follows(previous: u64, seq: u64) -> bool {
    seq > 0 && seq <= SEQ_MAX && (previous == 0 || seq > previous)
}

/// The message a checked record (of block file `path`) holds; a sealed
/// record that does not open is corrupt (never served).
fn message_of(
    codec: &Codec,
    path: &str,
    record: &record::Record<'_>,
    seq: u64,
) -> StoreResult<StoredMsg> {
    assert!(record.kind.holds_message(), "index names a non-message");
    assert_eq!(record.seq, seq, "index names the wrong record");
    let opened = codec.open(record).map_err(|why| {
        StoreError::Corrupt(format!("{path}: message {seq} does not open: {why}"))
    })?;
    Ok(StoredMsg {
        seq,
        subject: opened.subject,
        headers: opened.headers,
        payload: opened.payload,
        ts: WallTime(record.ts),
        ttl: record.ttl(),
    })
}

fn floor_last(record: &record::Record<'_>) -> u64 {
    record.payload.get(..8).map_or(0, |bytes| {
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    })
}

fn parse_block_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".blk")?;
    if digits.len() != 10 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `meta`'s facts: (floor, last sequence, last timestamp, active block).
type Meta = (u64, u64, u64, u64);

fn encode_meta(floor: u64, last_seq: u64, last_ts: u64, active: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(META_LEN);
    bytes.extend_from_slice(META_MAGIC);
    bytes.extend_from_slice(&META_VERSION.to_le_bytes());
    bytes.extend_from_slice(&floor.to_le_bytes());
    bytes.extend_from_slice(&last_seq.to_le_bytes());
    bytes.extend_from_slice(&last_ts.to_le_bytes());
    bytes.extend_from_slice(&active.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(bytes.len(), META_LEN);
    bytes
}

/// Version 2 (44 bytes), or version 1 (36 bytes: active block 0, unknown).
fn decode_meta(bytes: &[u8]) -> Option<Meta> {
    let (version, len) = match bytes.get(4..8)?.try_into().map(u32::from_le_bytes).ok()? {
        1 => (1, META_LEN_V1),
        2 => (2, META_LEN),
        _ => return None,
    };
    if bytes.len() != len || &bytes[..4] != META_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[len - 4..].try_into().ok()?);
    if crc32fast::hash(&bytes[..len - 4]) != crc {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let active = if version == 2 { word(32) } else { 0 };
    Some((word(8), word(16), word(24), active))
}

impl<D: Disk> Backend for FileBackend<D> {
    fn bounds(&self) -> (u64, u64, WallTime) {
        (self.floor, self.last_seq, self.last_ts)
    }

    fn append(&mut self, msg: &NewMsg<'_>) -> StoreResult<()> {
        assert!(msg.seq > self.last_seq, "append below the last sequence");
        self.scratch.clear();
        let ttl = msg.ttl.map_or(0, |ttl| {
            u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.codec.encode_message(
            &mut self.scratch,
            msg.seq,
            msg.ts.0,
            ttl,
            msg.subject,
            msg.headers,
            msg.payload,
        );
        let rollover = self
            .blocks
            .last()
            .is_some_and(|block| block.has_messages() && msg.seq - block.last_seq >= GAP_NEW_BLOCK);
        let index = self.active_for(self.scratch.len(), rollover);
        let offset = self.write_scratch(index)?;
        add_message(&mut self.blocks[index], msg.seq, offset);
        let number = self.blocks[index].number;
        if let Some(cached) = self.cache.iter_mut().find(|cached| cached.number == number) {
            cached.offsets.insert(msg.seq, offset as usize);
        }
        self.last_seq = msg.seq;
        self.last_ts = msg.ts;
        Ok(())
    }

    fn skip(&mut self, through: u64, ts: WallTime) -> StoreResult<()> {
        assert!(through > self.last_seq, "skip below the last sequence");
        let bulk = through > self.last_seq + 1;
        self.write_control(Kind::Skip, through, ts.0, b"")?;
        self.last_seq = through;
        self.last_ts = ts;
        if bulk {
            // `meta` must know the sequences a lost last block handed out.
            self.write_meta()?;
        }
        Ok(())
    }

    fn get(&mut self, seq: u64) -> StoreResult<Option<StoredMsg>> {
        if seq < self.floor || seq > self.last_seq {
            return Ok(None);
        }
        let Some(index) = self.block_of(seq) else {
            return Ok(None);
        };
        if self.blocks[index].deleted.contains(seq) {
            return Ok(None);
        }
        let sequential = self.last_get.checked_add(1) == Some(seq);
        self.last_get = seq;
        let number = self.blocks[index].number;
        let cached = self.cache.iter().any(|cached| cached.number == number);
        if !cached && !sequential {
            if let Some(msg) = self.read_direct(index, seq)? {
                return Ok(Some(msg));
            }
        }
        self.load(index)?;
        let cached = &self.cache[0];
        let path = &self.blocks[index].path;
        let offset = *cached.offsets.get(&seq).ok_or_else(|| {
            StoreError::Corrupt(format!("{path}: message {seq} failed its checksum"))
        })?;
        // Checked when loaded (or written by this store): no crc32 per read.
        let record = record::decode_verified(&cached.data[offset..]).map_err(|_| {
            StoreError::Corrupt(format!(
                "{path}: message {seq} at offset {offset} failed its checksum"
            ))
        })?;
        Ok(Some(message_of(&self.codec, path, &record, seq)?))
    }

    fn next_present(&mut self, seq: u64) -> Option<u64> {
        let from = seq.max(self.floor);
        let start = self.blocks.partition_point(|block| block.upper() < from);
        self.blocks[start..]
            .iter()
            .find_map(|block| block.next_present(from))
            .filter(|&found| found <= self.last_seq)
    }

    fn prev_present(&mut self, seq: u64) -> Option<u64> {
        let to = seq.min(self.last_seq);
        if to < self.floor {
            return None;
        }
        let end = self
            .blocks
            .partition_point(|block| block.upper() < to)
            .min(self.blocks.len().saturating_sub(1));
        if self.blocks.is_empty() {
            return None;
        }
        self.blocks[..=end]
            .iter()
            .rev()
            .find_map(|block| block.prev_present(to))
            .filter(|&found| found >= self.floor)
    }

    fn remove(&mut self, seq: u64, erase: bool) -> StoreResult<bool> {
        let Some(index) = self.block_of(seq) else {
            return Ok(false);
        };
        if seq < self.floor || self.blocks[index].deleted.contains(seq) {
            return Ok(false);
        }
        if erase {
            self.drop_snapshot()?;
            self.load(index)?;
            let offset = *self.cache[0]
                .offsets
                .get(&seq)
                .ok_or_else(|| StoreError::Corrupt(format!("message {seq} unreadable")))?;
            let (len, ts) = record::decode(&self.cache[0].data[offset..])
                .map(|record| (record.len, record.ts))
                .map_err(|_| StoreError::Corrupt(format!("message {seq} unreadable")))?;
            self.scratch.clear();
            let zeros = vec![0u8; len - MIN_RECORD];
            record::encode(
                &mut self.scratch,
                Kind::Erased,
                seq,
                ts,
                0,
                b"",
                b"",
                &zeros,
            );
            assert_eq!(self.scratch.len(), len, "erased record must fit in place");
            let path = self.blocks[index].path.clone();
            self.disk.write_at(&path, offset as u64, &self.scratch)?;
            let cached = &mut self.cache[0];
            cached.data[offset..offset + len].copy_from_slice(&self.scratch);
            cached.offsets.remove(&seq);
            self.dirty_files.insert(path);
        } else {
            self.scratch.clear();
            record::encode(&mut self.scratch, Kind::Tombstone, seq, 0, 0, b"", b"", b"");
            self.write_scratch(index)?;
        }
        let block = &mut self.blocks[index];
        block.deleted.insert(seq);
        if block.present_count() == 0 && index + 1 < self.blocks.len() {
            let result = self.remove_block(index);
            self.failed |= result.is_err();
            result?;
        }
        Ok(true)
    }

    fn compact(&mut self, floor: u64, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        let result = self.compact_inner(floor, last_seq, last_ts);
        // A bulk change cut short leaves memory and files apart: refuse
        // writes until the store is reopened (recovery reads the files).
        self.failed |= result.is_err();
        result
    }

    fn truncate(&mut self, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        let result = self.truncate_inner(last_seq, last_ts);
        self.failed |= result.is_err();
        result
    }

    fn poll_action(&mut self, last_seq: u64) -> Option<StoreAction> {
        // Nothing is reported durable, and no sync asked for, before the
        // joined appends reach the OS.
        let _ = self.disk.flush();
        if let (Some(error), false) = (self.disk.failure(), self.failed) {
            let text = format!("write failed: {error}; the store refuses writes until reopened");
            self.failed = true;
            self.warn(text);
        }
        if self.warnings_dropped > 0 {
            let dropped = std::mem::take(&mut self.warnings_dropped);
            return Some(StoreAction::Warning(format!(
                "{dropped} warning(s) dropped unread: the queue was full"
            )));
        }
        if let Some(text) = self.warnings.pop_front() {
            return Some(StoreAction::Warning(text));
        }
        if self.failed {
            return None;
        }
        match self.config.sync {
            SyncPolicy::BeforeAck => {
                if self.durable_through <= self.reported && self.in_flight.is_none() {
                    if self.dirty() {
                        return Some(self.request_sync(last_seq));
                    }
                    // Nothing written since the last completed sync.
                    self.durable_through = self.durable_through.max(last_seq);
                }
                if self.durable_through > self.reported {
                    self.reported = self.durable_through;
                    return Some(StoreAction::Durable {
                        through: self.reported,
                    });
                }
            }
            SyncPolicy::Interval(_) => {
                if last_seq > self.reported {
                    self.reported = last_seq;
                    return Some(StoreAction::Durable { through: last_seq });
                }
                if self.sync_due && self.in_flight.is_none() && self.dirty() {
                    self.sync_due = false;
                    return Some(self.request_sync(last_seq));
                }
            }
        }
        None
    }

    fn handle_sync_done(&mut self, tag: u64, result: DiskResult<()>) {
        let (expected, through) = self
            .in_flight
            .take()
            .expect("a sync completed that was not asked for");
        assert_eq!(tag, expected, "sync completion for the wrong tag");
        match result {
            Ok(()) => self.durable_through = self.durable_through.max(through),
            Err(error) => {
                self.failed = true;
                self.warn(format!(
                    "sync failed: {error}; the store refuses writes until reopened"
                ));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.config.sync {
            SyncPolicy::BeforeAck => None,
            SyncPolicy::Interval(_) => Some(self.next_sync_at.unwrap_or(Instant::ZERO)),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let SyncPolicy::Interval(interval) = self.config.sync else {
            return;
        };
        match self.next_sync_at {
            Some(at) if now >= at => {
                self.sync_due = true;
                self.next_sync_at = Some(now + interval);
            }
            Some(_) => {}
            None => self.next_sync_at = Some(now + interval),
        }
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn configure(&mut self, config: &StoreConfig) {
        assert_eq!(config.sizing, self.sizing, "a store's sizing is fixed");
        self.codec.set_compress(config.compress);
    }

    fn take_tally(&mut self) -> Option<Tally> {
        self.tally.take()
    }

    fn snapshot_due(&self) -> bool {
        let every = self.config.snapshot_every;
        !self.failed && every > 0 && self.since_snapshot >= every.max(8 * self.snapshot_len)
    }

    fn write_snapshot(&mut self, tally: &Tally) -> StoreResult<()> {
        self.write_snapshot_now(tally)
    }
}
