//! A RAFT node's durable state: its log file and its term/vote file.
//!
//! Role: keep the entries (in memory and in `<dir>/log`) and the current term
//! and vote (`<dir>/tav`) through the [`Disk`] trait, and rebuild both on
//! open without trusting a damaged byte. This is rnats's own format, not
//! nats-server's (which keeps its log in a filestore); only the messages on
//! the wire are shared with nats-server.
//!
//! ```text
//! <dir>/tav   term u64 | vote id (8 bytes, zeros: none) | crc32 of the 16 bytes before
//!             replaced atomically (tmp, sync, rename, sync dir) on every change
//! <dir>/log   header: "RNRAFTL2" | base index u64 | base term u64 | voter count u32 |
//!             voter ids | crc32 of the header before it
//!             then records appended, one per log index (one append-entry
//!             message, as nats-server's WAL stores them): body len u32 |
//!             index u64 | term u64 | kind u8 (0: a message) |
//!             entries, each: data len u32 | entry type u8 | data |
//!             crc32 of everything before it in the record
//!             replaced atomically when compacted (the base moves up)
//! <dir>/snap  "RNRAFTS1" | index u64 | term u64 | voter count u32 | voter ids |
//!             data len u32 | data | crc32 of everything before it
//!             replaced atomically by each snapshot
//! <dir>/id    "RNRAFTI1" | node id (8 bytes) | flags u8 (1: lazy sync) | crc32
//!             written once, atomically, before anything else in a new directory
//! ```
//!
//! A log index is one append-entry message: every entry of one message
//! shares its index and term (nats-server numbers its log the same way), so
//! a record holds a message's entries (at least one; a heartbeat is never
//! stored).
//!
//! A sync mark is a record of kind 0xFF with no entries whose index and term
//! are the last entry's: the node writes one before each sync it asks for,
//! so every synced entry is followed by a valid record. A record that fails
//! its checksum with a valid record after it is damage, never a torn
//! append; a damaged mark at the very end loses nothing (it carries no
//! data).
//!
//! The identity file says whose state this is. A directory whose identity
//! is missing while its other files exist, damaged, or another node's, and a
//! term/vote file or synced log that fails its checksums, are a lost log
//! ([`RecoveryError::is_lost_log`]): the node that owned it may have
//! forgotten votes and acknowledged entries, so it may never act as that
//! node again; the runtime clears the directory ([`clear`]) and the node
//! rejoins under a new id as a new member.
//!
//! The base is the point the log was compacted to: every entry through it
//! is committed and lives only in the snapshot; the header keeps its term
//! and the voters then, so that the log alone still says what the group
//! is even if the snapshot is damaged.
//!
//! Invariants: message `base + i` (i from 1) is `entries[i - 1]`; indexes are
//! dense and terms never decrease along the log (nor below the base term);
//! `offsets[i]` is where entry `base + i + 1`'s record starts and
//! `file_len` is where the next one goes. Appends and
//! truncations are not durable until a sync of [`RaftLog::log_path`]
//! completes: the node asks for that sync as an action and learns of its
//! completion (group commit). The term/vote file is written and synced
//! inline, because nothing that depends on it may leave before it is
//! durable and it changes at most a few times per election.
//!
//! Recovery: a damaged header is refused. The log is read record by record; a record whose checksum,
//! index or term does not fit ends the log. If nothing valid follows it (a
//! torn or unsynced append cut by a power loss), the file is cut there.
//! If a valid record starts anywhere after it, the damage is in data that
//! was once synced, and the log is refused ([`RecoveryError`]) rather
//! than cut: a voter that silently forgot acknowledged entries could elect
//! a leader without them. A record whose data happens to hold a valid
//! record's bytes can make a torn tail look damaged: that costs a rejoin,
//! never an entry.

use super::wire::{Entry, EntryType, PeerId, ID_LEN};
use crate::store::disk::{join, Disk, DiskError};
use bytes::Bytes;

/// Fixed part of a log record: length, index, term, kind, checksum.
const RECORD_OVERHEAD: usize = 4 + 8 + 8 + 1 + 4;
/// The body of a record (index, term, kind, entries) is at least this long.
const BODY_MIN: usize = 8 + 8 + 1;
/// What one entry adds to a record besides its data: length, type.
const ENTRY_OVERHEAD: usize = 4 + 1;
/// A record's entries (with their lengths and types) may not be longer:
/// bounds one message, and what recovery believes of a length.
pub const MAX_MESSAGE_LEN: usize = 8 << 20;
/// One entry's data may not be longer (a message of that entry alone fits).
pub const MAX_ENTRY_DATA: usize = MAX_MESSAGE_LEN - ENTRY_OVERHEAD;
const TERM_VOTE_LEN: usize = 8 + ID_LEN + 4;
const LOG_MAGIC: &[u8; 8] = b"RNRAFTL2";
const ID_MAGIC: &[u8; 8] = b"RNRAFTI1";
const ID_FILE_LEN: usize = 8 + ID_LEN + 1 + 4;
/// The record kind of a message.
const MESSAGE_KIND: u8 = 0;
/// The record kind of a sync mark.
const MARK_KIND: u8 = 0xFF;
const SNAP_MAGIC: &[u8; 8] = b"RNRAFTS1";
/// A group has at most this many voters (bounds what a header may claim).
pub const MAX_VOTERS: usize = 1024;

/// A state machine snapshot: everything through `index` (of `term`), and
/// the voters at that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<PeerId>,
    pub data: Bytes,
}

/// What opening found of the snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFile {
    None,
    Valid(Snapshot),
    /// Present but failing its checksum or layout: never trusted.
    Damaged,
}

/// Where the log starts: the compaction point, its term and the voters then.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Base {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<PeerId>,
}

/// The durable term and vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    /// `PeerId::NONE` when this node voted for nobody in `term`.
    pub vote: PeerId,
}

/// One index of the log: one append-entry message, its entries in order
/// (at least one), all of `term`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    pub entries: Vec<Entry>,
}

/// The length `entries` take in a record (what [`MAX_MESSAGE_LEN`] bounds).
pub fn message_len(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| ENTRY_OVERHEAD.saturating_add(e.data.len()))
        .fold(0, usize::saturating_add)
}

/// Why a node's durable state cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("disk: {0}")]
    Disk(#[from] DiskError),
    #[error("term/vote file is damaged")]
    DamagedTermVote,
    #[error("log record at offset {offset} is damaged and valid records follow it")]
    DamagedLog { offset: u64 },
    #[error("log header is damaged")]
    DamagedLogHeader,
    #[error("the directory is empty but the id {id} is not new: the node's state was wiped")]
    Wiped { id: PeerId },
    #[error("the node ran with lazy sync: its log may have lost acknowledged entries")]
    LazyRestart,
    #[error("the identity file is missing while the node's other files exist")]
    IdentityMissing,
    #[error("the identity file is damaged")]
    IdentityDamaged,
    #[error("the directory belongs to node {found}")]
    IdentityMismatch { found: PeerId },
    #[error("the {file} file is missing or empty while the identity file exists")]
    StateMissing { file: &'static str },
}

impl RecoveryError {
    /// The state cannot be trusted as this node's: the node must rejoin
    /// under a new id (everything but a disk error, which may pass).
    pub fn is_lost_log(&self) -> bool {
        !matches!(self, RecoveryError::Disk(_))
    }
}

/// What the identity file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Absent,
    Valid { id: PeerId, lazy: bool },
    Damaged,
}

/// Read `<dir>/id`.
pub fn read_identity<D: Disk>(disk: &mut D, dir: &str) -> Result<Identity, DiskError> {
    Ok(match disk.read_all(&join(dir, "id"))? {
        None => Identity::Absent,
        Some(bytes) => decode_identity(&bytes)
            .map_or(Identity::Damaged, |(id, lazy)| Identity::Valid { id, lazy }),
    })
}

/// Make `<dir>/id` name `id` (durable on return).
pub fn write_identity<D: Disk>(
    disk: &mut D,
    dir: &str,
    id: PeerId,
    lazy: bool,
) -> Result<(), DiskError> {
    let mut out = Vec::with_capacity(ID_FILE_LEN);
    out.extend_from_slice(ID_MAGIC);
    out.extend_from_slice(&id.0);
    out.push(u8::from(lazy));
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    disk.create_dir(dir)?;
    disk.write_atomic(dir, "id", &out)
}

fn decode_identity(bytes: &[u8]) -> Option<(PeerId, bool)> {
    if bytes.len() != ID_FILE_LEN || &bytes[..8] != ID_MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[ID_FILE_LEN - 4..].try_into().ok()?);
    if crc32fast::hash(&bytes[..ID_FILE_LEN - 4]) != stored {
        return None;
    }
    let id = PeerId::from_slice(&bytes[8..8 + ID_LEN]).ok()?;
    let lazy = match bytes[8 + ID_LEN] {
        0 => false,
        1 => true,
        _ => return None,
    };
    (!id.is_none()).then_some((id, lazy))
}

/// A new node's state in an empty `dir`: the term/vote file, the log (its
/// base naming `voters`), then the identity file, each durable before the
/// next, so that an identity file always vouches for the other two.
pub fn create<D: Disk>(
    disk: &mut D,
    dir: &str,
    id: PeerId,
    lazy: bool,
    voters: &[PeerId],
) -> Result<(), DiskError> {
    disk.create_dir(dir)?;
    disk.write_atomic(dir, "tav", &encode_term_vote(HardState::default()))?;
    let base = Base {
        index: 0,
        term: 0,
        voters: voters.to_vec(),
    };
    disk.write_atomic(dir, "log", &encode_header(&base))?;
    write_identity(disk, dir, id, lazy)
}

/// Whether `dir` holds any of a node's state (log, term/vote, snapshot).
pub fn has_state<D: Disk>(disk: &mut D, dir: &str) -> Result<bool, DiskError> {
    for name in ["log", "tav", "snap"] {
        if disk.len(&join(dir, name))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Remove every file of a lost node's state (the identity last, so a crash
/// part way leaves state without an identity: lost again, never trusted).
pub fn clear<D: Disk>(disk: &mut D, dir: &str) -> Result<(), DiskError> {
    disk.create_dir(dir)?;
    let mut names = disk.list(dir)?;
    names.sort_by_key(|name| name == "id");
    for name in names {
        disk.remove(&join(dir, &name))?;
    }
    disk.sync_dir(dir)
}

/// The log and the term/vote file of one node.
#[derive(Debug)]
pub struct RaftLog<D> {
    disk: D,
    dir: String,
    base: Base,
    entries: Vec<LogEntry>,
    offsets: Vec<u64>,
    file_len: u64,
}

impl<D: Disk> RaftLog<D> {
    /// Open (or create) the state in `dir`; what recovery found. A new
    /// log's base names `voters`.
    pub fn open(
        mut disk: D,
        dir: &str,
        voters: &[PeerId],
    ) -> Result<(RaftLog<D>, HardState), RecoveryError> {
        disk.create_dir(dir)?;
        let hard = match disk.read_all(&join(dir, "tav"))? {
            None => HardState::default(),
            Some(bytes) => decode_term_vote(&bytes).ok_or(RecoveryError::DamagedTermVote)?,
        };
        let log_path = join(dir, "log");
        if disk.len(&log_path)?.is_none_or(|len| len == 0) {
            // The file (its header and its name) must be durable before any
            // entry in it is acknowledged: a power loss may otherwise take
            // the whole file.
            let base = Base {
                index: 0,
                term: 0,
                voters: voters.to_vec(),
            };
            disk.write_atomic(dir, "log", &encode_header(&base))?;
        }
        let bytes = disk.read_all(&log_path)?.unwrap_or_default();
        let scan = scan_log(&bytes)?;
        if (scan.valid_len as usize) < bytes.len() {
            // A torn or unsynced tail: cut it so later appends follow valid records.
            disk.truncate(&log_path, scan.valid_len)?;
        }
        // What a killed process left may still sit unsynced in the OS:
        // everything recovered is made durable before the node answers
        // anyone on the strength of it.
        disk.sync(&log_path)?;
        let log = RaftLog {
            disk,
            dir: dir.to_string(),
            base: scan.base,
            entries: scan.entries,
            offsets: scan.offsets,
            file_len: scan.valid_len,
        };
        log.check();
        Ok((log, hard))
    }

    pub fn log_path(&self) -> String {
        join(&self.dir, "log")
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The compaction point (index 0: never compacted).
    pub fn base(&self) -> &Base {
        &self.base
    }

    pub fn last_index(&self) -> u64 {
        self.base.index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.base.term, |e| e.term)
    }

    /// The term of entry `index`: the base's at the base, `None` below it
    /// (compacted) or past the end.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&LogEntry> {
        let i = usize::try_from(index.checked_sub(self.base.index + 1)?).ok()?;
        self.entries.get(i)
    }

    /// Entries `from..=to` (clamped to what the log holds).
    pub fn slice(&self, from: u64, to: u64) -> &[LogEntry] {
        let from = from.max(self.base.index + 1);
        let last = self.last_index();
        if from > last || to < from {
            return &[];
        }
        let b = self.base.index;
        &self.entries[(from - b - 1) as usize..(to.min(last) - b) as usize]
    }

    /// Move the base up to `base` (its index at most the last): the entries
    /// after it stay if the log holds `base.index` in `base.term`, else the
    /// log is emptied (what it held there lost to the snapshot's history).
    /// The new file replaces the old atomically and is durable on return.
    pub fn compact(&mut self, base: Base) -> Result<(), DiskError> {
        assert!(base.index > self.base.index, "the base only moves up");
        let keep = self.term_at(base.index) == Some(base.term);
        let entries: Vec<LogEntry> = if keep {
            self.slice(base.index + 1, self.last_index()).to_vec()
        } else {
            Vec::new()
        };
        let mut file = encode_header(&base);
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(file.len() as u64);
            file.extend_from_slice(&encode_record(entry));
        }
        if let Some(last) = entries.last() {
            file.extend_from_slice(&encode_mark(last.index, last.term));
        }
        self.disk.write_atomic(&self.dir, "log", &file)?;
        self.base = base;
        self.entries = entries;
        self.offsets = offsets;
        self.file_len = file.len() as u64;
        self.check();
        Ok(())
    }

    /// Make `snapshot` the node's snapshot (durable on return).
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), DiskError> {
        self.disk
            .write_atomic(&self.dir, "snap", &encode_snapshot(snapshot))
    }

    /// The snapshot file as found: absent, valid, or damaged.
    pub fn load_snapshot(&mut self) -> Result<SnapshotFile, DiskError> {
        Ok(match self.disk.read_all(&join(&self.dir, "snap"))? {
            None => SnapshotFile::None,
            Some(bytes) => {
                decode_snapshot(&bytes, true).map_or(SnapshotFile::Damaged, SnapshotFile::Valid)
            }
        })
    }

    /// The snapshot file read without its checksum (a planted defect only).
    #[cfg(feature = "planted-defects")]
    pub fn load_snapshot_unchecked(&mut self) -> Result<Option<Snapshot>, DiskError> {
        Ok(self
            .disk
            .read_all(&join(&self.dir, "snap"))?
            .and_then(|bytes| decode_snapshot(&bytes, false)))
    }

    /// Write message `entry` after the last one (not yet durable).
    pub fn append(&mut self, entry: LogEntry) -> Result<(), DiskError> {
        assert_eq!(entry.index, self.last_index() + 1, "log indexes are dense");
        assert!(
            entry.term >= self.last_term(),
            "terms never decrease along the log"
        );
        assert!(!entry.entries.is_empty(), "a stored message has entries");
        assert!(
            message_len(&entry.entries) <= MAX_MESSAGE_LEN,
            "message over the bound"
        );
        let record = encode_record(&entry);
        let path = self.log_path();
        self.disk.write_at(&path, self.file_len, &record)?;
        self.offsets.push(self.file_len);
        self.file_len += record.len() as u64;
        self.entries.push(entry);
        self.check();
        Ok(())
    }

    /// Write a sync mark after the last entry (see the module doc), before
    /// a sync is asked for (not yet durable itself).
    pub fn mark(&mut self) -> Result<(), DiskError> {
        let record = encode_mark(self.last_index(), self.last_term());
        let path = self.log_path();
        self.disk.write_at(&path, self.file_len, &record)?;
        self.file_len += record.len() as u64;
        self.check();
        Ok(())
    }

    /// Drop every entry after `index` (not yet durable).
    pub fn truncate_after(&mut self, index: u64) -> Result<(), DiskError> {
        assert!(
            index < self.last_index(),
            "truncation must remove something"
        );
        assert!(index >= self.base.index, "compacted entries are committed");
        let keep = (index - self.base.index) as usize;
        let offset = self.offsets[keep];
        let path = self.log_path();
        self.disk.truncate(&path, offset)?;
        self.entries.truncate(keep);
        self.offsets.truncate(keep);
        self.file_len = offset;
        self.check();
        Ok(())
    }

    /// Make `hard` durable before returning (write, sync, rename, sync dir).
    pub fn save_hard_state(&mut self, hard: HardState) -> Result<(), DiskError> {
        let bytes = encode_term_vote(hard);
        self.disk.write_atomic(&self.dir, "tav", &bytes)
    }

    fn check(&self) {
        debug_assert_eq!(self.entries.len(), self.offsets.len());
        debug_assert!(self
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == self.base.index + i as u64 + 1));
        debug_assert!(self.entries.windows(2).all(|w| w[0].term <= w[1].term));
        debug_assert!(self
            .entries
            .first()
            .is_none_or(|e| e.term >= self.base.term));
        debug_assert!(self.offsets.last().is_none_or(|&o| o < self.file_len));
    }
}

fn encode_term_vote(hard: HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(TERM_VOTE_LEN);
    out.extend_from_slice(&hard.term.to_le_bytes());
    out.extend_from_slice(&hard.vote.0);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), TERM_VOTE_LEN);
    out
}

fn decode_term_vote(bytes: &[u8]) -> Option<HardState> {
    if bytes.len() != TERM_VOTE_LEN {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc32fast::hash(&bytes[..16]) != stored {
        return None;
    }
    Some(HardState {
        term: u64::from_le_bytes(bytes[..8].try_into().ok()?),
        vote: PeerId::from_slice(&bytes[8..16]).ok()?,
    })
}

/// What the log header and the snapshot file start with: magic, index,
/// term, voter count and ids (`extra` bytes reserved after).
fn encode_point(
    magic: &[u8; 8],
    index: u64,
    term: u64,
    voters: &[PeerId],
    extra: usize,
) -> Vec<u8> {
    assert!(voters.len() <= MAX_VOTERS);
    let mut out = Vec::with_capacity(28 + ID_LEN * voters.len() + extra);
    out.extend_from_slice(magic);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&(voters.len() as u32).to_le_bytes());
    for voter in voters {
        out.extend_from_slice(&voter.0);
    }
    out
}

/// The fields `encode_point` wrote at the start of `bytes`, and where they end.
fn decode_point(magic: &[u8; 8], bytes: &[u8]) -> Option<(u64, u64, Vec<PeerId>, usize)> {
    if bytes.get(..8)? != magic {
        return None;
    }
    let count = u32::from_le_bytes(bytes.get(24..28)?.try_into().ok()?) as usize;
    if count > MAX_VOTERS {
        return None;
    }
    let end = 28 + ID_LEN * count;
    let voters = bytes
        .get(28..end)?
        .chunks_exact(ID_LEN)
        .map(PeerId::from_slice)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let index = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let term = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    Some((index, term, voters, end))
}

/// A log file's header.
pub fn encode_header(base: &Base) -> Vec<u8> {
    let mut out = encode_point(LOG_MAGIC, base.index, base.term, &base.voters, 4);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A header at the start of `bytes` and its length.
fn decode_header(bytes: &[u8]) -> Option<(Base, usize)> {
    let (index, term, voters, end) = decode_point(LOG_MAGIC, bytes)?;
    let stored = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(&bytes[..end]) != stored {
        return None;
    }
    Some((
        Base {
            index,
            term,
            voters,
        },
        end + 4,
    ))
}

/// A snapshot file's bytes.
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    assert!(snapshot.data.len() <= u32::MAX as usize);
    let mut out = encode_point(
        SNAP_MAGIC,
        snapshot.index,
        snapshot.term,
        &snapshot.voters,
        4 + snapshot.data.len() + 4,
    );
    out.extend_from_slice(&(snapshot.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&snapshot.data);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A snapshot file's content; `None` if it is damaged. Without `checked`
/// the checksum is ignored and a short data section taken as it is (the
/// planted defect "trust a damaged snapshot").
pub fn decode_snapshot(bytes: &[u8], checked: bool) -> Option<Snapshot> {
    let (index, term, voters, ids_end) = decode_point(SNAP_MAGIC, bytes)?;
    let data_len = u32::from_le_bytes(bytes.get(ids_end..ids_end + 4)?.try_into().ok()?) as usize;
    let data_start = ids_end + 4;
    let data = if checked {
        let end = data_start.checked_add(data_len)?;
        if bytes.len() != end + 4 {
            return None;
        }
        let stored = u32::from_le_bytes(bytes[end..].try_into().ok()?);
        if crc32fast::hash(&bytes[..end]) != stored {
            return None;
        }
        &bytes[data_start..end]
    } else {
        let end = data_start.saturating_add(data_len).min(bytes.len());
        &bytes[data_start.min(end)..end]
    };
    Some(Snapshot {
        index,
        term,
        voters,
        data: Bytes::copy_from_slice(data),
    })
}

/// One log record's bytes: a message and its entries.
pub fn encode_record(entry: &LogEntry) -> Vec<u8> {
    let entries_len = message_len(&entry.entries);
    assert!(entries_len <= MAX_MESSAGE_LEN, "message over the bound");
    let body_len = BODY_MIN + entries_len;
    let mut out = Vec::with_capacity(RECORD_OVERHEAD + entries_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.push(MESSAGE_KIND);
    for e in &entry.entries {
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.push(e.kind as u8);
        out.extend_from_slice(&e.data);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), RECORD_OVERHEAD + entries_len);
    out
}

/// A sync mark's bytes: the last entry's index and term, no data.
pub fn encode_mark(index: u64, term: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_OVERHEAD);
    out.extend_from_slice(&(BODY_MIN as u32).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.push(MARK_KIND);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// One record of a log file.
#[derive(Debug)]
enum Record {
    Entry(LogEntry),
    Mark { index: u64, term: u64 },
}

/// What a scan of a log file found.
#[derive(Debug)]
pub struct Scan {
    pub base: Base,
    pub entries: Vec<LogEntry>,
    pub offsets: Vec<u64>,
    /// The valid prefix's length; bytes beyond are a torn tail.
    pub valid_len: u64,
}

/// Read every valid record of a log file (see the module doc for what is
/// cut and what is refused). Never panics, whatever `bytes` holds.
pub fn scan_log(bytes: &[u8]) -> Result<Scan, RecoveryError> {
    // The header is written atomically: damage to it is never a torn tail.
    let (base, header_len) = decode_header(bytes).ok_or(RecoveryError::DamagedLogHeader)?;
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut offsets = Vec::new();
    let mut at = header_len;
    while at < bytes.len() {
        let expect_index = base.index + entries.len() as u64 + 1;
        let min_term = entries.last().map_or(base.term, |e| e.term);
        match decode_record(&bytes[at..]) {
            Some((Record::Entry(entry), len))
                if entry.index == expect_index && entry.term >= min_term =>
            {
                offsets.push(at as u64);
                entries.push(entry);
                at += len;
            }
            Some((Record::Mark { index, term }, len))
                if index + 1 == expect_index && term == min_term =>
            {
                at += len;
            }
            _ => {
                // A torn append leaves nothing valid after it; a valid
                // record anywhere after this one (a flipped length hides
                // where the next starts) means synced data is damaged.
                if (at + 1..bytes.len()).any(|from| decode_record(&bytes[from..]).is_some()) {
                    return Err(RecoveryError::DamagedLog { offset: at as u64 });
                }
                break;
            }
        }
    }
    Ok(Scan {
        base,
        entries,
        offsets,
        valid_len: at as u64,
    })
}

/// The length a record claims, if plausible.
fn claimed_len(bytes: &[u8]) -> Option<usize> {
    let body = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    (BODY_MIN..=BODY_MIN + MAX_MESSAGE_LEN)
        .contains(&body)
        .then_some(4 + body + 4)
}

/// One record at the start of `bytes` whose checksum matches, and its length.
fn decode_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let len = claimed_len(bytes)?;
    let record = bytes.get(..len)?;
    let stored = u32::from_le_bytes(record[len - 4..].try_into().ok()?);
    if crc32fast::hash(&record[..len - 4]) != stored {
        return None;
    }
    let index = u64::from_le_bytes(record[4..12].try_into().ok()?);
    let term = u64::from_le_bytes(record[12..20].try_into().ok()?);
    match record[20] {
        MARK_KIND => (len == RECORD_OVERHEAD).then_some((Record::Mark { index, term }, len)),
        MESSAGE_KIND => {
            let entries = decode_entries(&record[21..len - 4])?;
            Some((
                Record::Entry(LogEntry {
                    index,
                    term,
                    entries,
                }),
                len,
            ))
        }
        _ => None,
    }
}

/// A record's entries, exactly filling `bytes` (at least one); `None` if
/// they do not parse (never trusted: a checksum that matches bytes no
/// writer made is damage as much as one that fails).
fn decode_entries(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let kind = EntryType::from_u8(*bytes.get(4)?).ok()?;
        let end = ENTRY_OVERHEAD.checked_add(len)?;
        let data = bytes.get(ENTRY_OVERHEAD..end)?;
        entries.push(Entry {
            kind,
            data: Bytes::copy_from_slice(data),
        });
        bytes = &bytes[end..];
    }
    (!entries.is_empty()).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::MemDisk;

    fn entry(index: u64, term: u64, data: &'static [u8]) -> LogEntry {
        LogEntry {
            index,
            term,
            entries: vec![Entry::new(EntryType::Normal, Bytes::from_static(data))],
        }
    }

    #[test]
    fn record_bytes_are_pinned() {
        let bytes = encode_record(&entry(1, 2, b"hi"));
        let mut want = vec![24, 0, 0, 0];
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&[0, 2, 0, 0, 0, 0, b'h', b'i']);
        let crc = crc32fast::hash(&want);
        want.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_message_of_several_entries_is_one_record_at_one_index() {
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        let message = LogEntry {
            index: 1,
            term: 1,
            entries: vec![
                Entry::new(EntryType::Normal, Bytes::from_static(b"a")),
                Entry::new(EntryType::Normal, Bytes::new()),
                Entry::new(EntryType::AddPeer, Bytes::from_static(b"BBBBBBBB")),
            ],
        };
        log.append(message.clone()).unwrap();
        log.append(entry(2, 1, b"b")).unwrap();
        log.mark().unwrap();
        disk.with(|d| d.sync("g/log")).unwrap();
        disk.with(|d| d.power_loss());
        let (log, _) = RaftLog::open(disk, "g", &[]).unwrap();
        assert_eq!((log.last_index(), log.last_term()), (2, 1));
        assert_eq!(log.slice(1, 9), &[message, entry(2, 1, b"b")]);
    }

    #[test]
    fn a_record_whose_entries_do_not_parse_is_never_taken() {
        // Checksummed bytes no writer made (an entry running past the
        // record, an unknown type, no entry at all) are damage.
        let record = |body: &[u8]| {
            let mut out = ((BODY_MIN + body.len()) as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&1u64.to_le_bytes());
            out.push(MESSAGE_KIND);
            out.extend_from_slice(body);
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        };
        for body in [&[][..], &[9, 0, 0, 0, 0, b'x'], &[1, 0, 0, 0, 0xEE, b'x']] {
            assert!(decode_record(&record(body)).is_none(), "{body:?}");
        }
        assert!(decode_record(&record(&[1, 0, 0, 0, 0, b'x'])).is_some());
    }

    #[test]
    fn reopen_returns_what_was_written_and_synced() {
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let (mut log, hard) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        assert_eq!(hard, HardState::default());
        log.append(entry(1, 1, b"a")).unwrap();
        log.append(entry(2, 1, b"b")).unwrap();
        log.append(entry(3, 2, b"c")).unwrap();
        log.truncate_after(2).unwrap();
        log.append(entry(3, 3, b"d")).unwrap();
        log.save_hard_state(HardState {
            term: 3,
            vote: PeerId(*b"AAAAAAAA"),
        })
        .unwrap();
        disk.with(|d| d.sync("g/log")).unwrap();
        disk.with(|d| d.power_loss());
        let (log, hard) = RaftLog::open(disk, "g", &[]).unwrap();
        assert_eq!(
            hard,
            HardState {
                term: 3,
                vote: PeerId(*b"AAAAAAAA")
            }
        );
        assert_eq!(
            log.slice(1, 9),
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 3, b"d")]
        );
    }

    #[test]
    fn a_synced_entry_survives_power_loss_in_a_new_log_file() {
        // Found by the simulator: the log file's name was not durable, so a
        // power loss took the whole file with entries already acknowledged.
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        log.append(entry(1, 1, b"a")).unwrap();
        disk.with(|d| d.sync("g/log")).unwrap();
        disk.with(|d| d.power_loss());
        let (log, _) = RaftLog::open(disk, "g", &[]).unwrap();
        assert_eq!(log.slice(1, 1), &[entry(1, 1, b"a")]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_valid_records_is_refused() {
        let mut file = encode_header(&Base::default());
        let header = file.len();
        for e in [entry(1, 1, b"a"), entry(2, 1, b"bb"), entry(3, 1, b"ccc")] {
            file.extend_from_slice(&encode_record(&e));
        }
        let whole = file.len();
        // Torn: the last record lost its end.
        let scan = scan_log(&file[..whole - 3]).unwrap();
        assert_eq!(scan.entries.len(), 2);
        assert_eq!(
            scan.valid_len as usize,
            header
                + encode_record(&entry(1, 1, b"a")).len()
                + encode_record(&entry(2, 1, b"bb")).len()
        );
        // A flipped bit in the last record: cut, it may be a torn write.
        let mut last_flipped = file.clone();
        last_flipped[whole - 6] ^= 1;
        assert_eq!(scan_log(&last_flipped).unwrap().entries.len(), 2);
        // A flipped bit in the middle record, with a valid one after it: refused.
        let mut middle = file.clone();
        let second = header + encode_record(&entry(1, 1, b"a")).len();
        middle[second + 22] ^= 1;
        assert_eq!(
            scan_log(&middle).unwrap_err(),
            RecoveryError::DamagedLog {
                offset: second as u64
            }
        );
    }

    #[test]
    fn a_flipped_length_with_a_valid_record_later_is_damage() {
        // Found by the simulator: a flipped length claimed past the end of
        // the file, so the record looked torn and the entries after it
        // (acknowledged) were cut.
        let mut file = encode_header(&Base::default());
        let header = file.len();
        for e in [entry(1, 1, b"a"), entry(2, 1, b"bb")] {
            file.extend_from_slice(&encode_record(&e));
        }
        file.extend_from_slice(&encode_mark(2, 1));
        file[header + 3] ^= 0x40;
        assert_eq!(
            scan_log(&file).unwrap_err(),
            RecoveryError::DamagedLog {
                offset: header as u64
            }
        );
        // A damaged final mark loses nothing.
        let mut file = encode_header(&Base::default());
        file.extend_from_slice(&encode_record(&entry(1, 1, b"a")));
        let len = file.len();
        file.extend_from_slice(&encode_mark(1, 1));
        file[len + 2] ^= 0x01;
        let scan = scan_log(&file).unwrap();
        assert_eq!(scan.entries, vec![entry(1, 1, b"a")]);
        assert_eq!(scan.valid_len as usize, len);
    }

    #[test]
    fn compaction_moves_the_base_and_survives_reopen_and_power_loss() {
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let voters = [PeerId(*b"AAAAAAAA"), PeerId(*b"BBBBBBBB")];
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &voters).unwrap();
        for e in [entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 2, b"c")] {
            log.append(e).unwrap();
        }
        let base = Base {
            index: 2,
            term: 1,
            voters: voters.to_vec(),
        };
        log.compact(base.clone()).unwrap();
        assert_eq!(log.base(), &base);
        assert_eq!(log.term_at(2), Some(1));
        assert_eq!(log.term_at(1), None);
        assert_eq!(log.slice(1, 9), &[entry(3, 2, b"c")]);
        log.append(entry(4, 2, b"d")).unwrap();
        disk.with(|d| d.sync("g/log")).unwrap();
        disk.with(|d| d.power_loss());
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        assert_eq!(log.base(), &base);
        assert_eq!(log.slice(1, 9), &[entry(3, 2, b"c"), entry(4, 2, b"d")]);
        // A base the log does not hold in that term empties it.
        log.compact(Base {
            index: 9,
            term: 5,
            voters: vec![],
        })
        .unwrap();
        assert_eq!((log.last_index(), log.last_term()), (9, 5));
        assert!(log.slice(1, 99).is_empty());
    }

    #[test]
    fn a_snapshot_with_a_flipped_bit_or_cut_short_is_damaged() {
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        assert_eq!(log.load_snapshot().unwrap(), SnapshotFile::None);
        let snap = Snapshot {
            index: 7,
            term: 2,
            voters: vec![PeerId(*b"AAAAAAAA")],
            data: Bytes::from_static(b"state"),
        };
        log.save_snapshot(&snap).unwrap();
        disk.with(|d| d.power_loss());
        assert_eq!(log.load_snapshot().unwrap(), SnapshotFile::Valid(snap));
        let good = disk.with(|d| d.read_all("g/snap")).unwrap().unwrap();
        for at in 0..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x04;
            assert_eq!(decode_snapshot(&flipped, true), None, "flip at {at}");
        }
        for len in 0..good.len() {
            assert_eq!(decode_snapshot(&good[..len], true), None, "cut at {len}");
        }
    }

    #[test]
    fn a_damaged_term_vote_file_is_refused() {
        let disk = crate::store::disk::SharedDisk::new(MemDisk::default());
        let (mut log, _) = RaftLog::open(disk.clone(), "g", &[]).unwrap();
        log.save_hard_state(HardState {
            term: 5,
            vote: PeerId::NONE,
        })
        .unwrap();
        disk.with(|d| {
            let mut bytes = d.read_all("g/tav").unwrap().unwrap();
            bytes[0] ^= 0x10;
            d.write_at("g/tav", 0, &bytes).unwrap();
        });
        assert_eq!(
            RaftLog::open(disk, "g", &[]).unwrap_err(),
            RecoveryError::DamagedTermVote
        );
    }

    #[test]
    fn scanning_garbage_never_panics() {
        let mut seed = 7u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = scan_log(&bytes);
        }
    }
}
