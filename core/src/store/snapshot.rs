//! The FileStore's full-state snapshot: the engine's accounting and the
//! index of every block, in one checksummed file (`<stream dir>/snapshot`),
//! so a store opens without reading its blocks.
//!
//! Role: encoding and decoding only; when it is written and whether the
//! blocks still match it is [`super::filestore`]'s business. Decoding takes
//! arbitrary bytes: anything that is not a snapshot this module wrote
//! (checksum, lengths, counts, impossible contents) is refused with the
//! reason, never a panic, and no allocation is larger than the input
//! justifies.
//!
//! Layout (integers little endian):
//!
//! ```text
//! "RNSS" | version u32 = 1 | body length u64 | crc32 u32 of the body | body
//! body:
//!   floor u64 | last sequence u64 | last timestamp u64
//!   tally: messages u64 | bytes u64 | first sequence u64 | first timestamp u64
//!          (0 and 0 when empty)
//!          | subjects u64 | per subject: length u32 | subject | messages u64 |
//!            first u64 | last u64
//!          | TTL entries u64 | per entry: expiry u64 | sequence u64
//!   blocks u64 | per block (the block index):
//!     number u64 | length u64 | tail crc32 u32 (of the block's last
//!     min(length, TAIL_CHECK) bytes) | first message u64 | last message u64
//!     (0 and 0: none) | highest sequence named u64 | message records u64 |
//!     highest sequence named before the first message u64 |
//!     deleted ranges u64 | per range: start u64 | end u64 |
//!     sparse entries u64 | per entry: sequence u64 | offset u64
//! ```
//!
//! Under encryption at rest the whole file is sealed (`KeyRing::seal_file`),
//! so subjects are never in clear.
//!
//! Invariants of a decoded snapshot (checked by `decode`): the tally is
//! consistent (counts add up, every sequence within the snapshot's floor and
//! last sequence); blocks increase by number and by message range; every
//! deleted range and sparse entry lies inside its block.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::engine::Tally;
use super::{SubjectState, SEQ_MAX};
use crate::time::WallTime;

const MAGIC: &[u8; 4] = b"RNSS";
const VERSION: u32 = 1;
const HEADER: usize = 20;
/// How many bytes at the end of each block the snapshot checksums: a block
/// that was cut and written again to the same length is caught by them.
pub(super) const TAIL_CHECK: u64 = 512;

/// One block as the snapshot describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlockIndex {
    pub(super) number: u64,
    pub(super) len: u64,
    pub(super) tail_crc: u32,
    pub(super) first_seq: u64,
    pub(super) last_seq: u64,
    pub(super) max_recorded: u64,
    pub(super) messages_written: u64,
    pub(super) before_first: u64,
    pub(super) deleted: Vec<(u64, u64)>,
    pub(super) sparse: Vec<(u64, u64)>,
}

/// The store's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) floor: u64,
    pub(super) last_seq: u64,
    pub(super) last_ts: u64,
    pub(super) tally: Tally,
    pub(super) blocks: Vec<BlockIndex>,
}

pub(super) fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut body = Vec::new();
    let put = |body: &mut Vec<u8>, value: u64| body.extend_from_slice(&value.to_le_bytes());
    put(&mut body, snapshot.floor);
    put(&mut body, snapshot.last_seq);
    put(&mut body, snapshot.last_ts);
    let tally = &snapshot.tally;
    put(&mut body, tally.msgs);
    put(&mut body, tally.bytes);
    let (first, first_ts) = tally.first.map_or((0, 0), |(seq, ts)| (seq, ts.0));
    put(&mut body, first);
    put(&mut body, first_ts);
    put(&mut body, tally.subjects.len() as u64);
    for (subject, state) in &tally.subjects {
        let len = u32::try_from(subject.len()).expect("a subject fits a u32 length");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(subject);
        put(&mut body, state.msgs);
        put(&mut body, state.first_seq);
        put(&mut body, state.last_seq);
    }
    put(&mut body, tally.ttl_index.len() as u64);
    for &(at, seq) in &tally.ttl_index {
        put(&mut body, at);
        put(&mut body, seq);
    }
    put(&mut body, snapshot.blocks.len() as u64);
    for block in &snapshot.blocks {
        put(&mut body, block.number);
        put(&mut body, block.len);
        body.extend_from_slice(&block.tail_crc.to_le_bytes());
        for value in [
            block.first_seq,
            block.last_seq,
            block.max_recorded,
            block.messages_written,
            block.before_first,
        ] {
            put(&mut body, value);
        }
        for pairs in [&block.deleted, &block.sparse] {
            put(&mut body, pairs.len() as u64);
            for &(a, b) in pairs.iter() {
                put(&mut body, a);
                put(&mut body, b);
            }
        }
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    debug_assert_eq!(decode(&out).as_ref(), Ok(snapshot));
    out
}

/// Reads the body, refusing anything short.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("ends early at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A count of items of at least `each` bytes, bounded by what is left.
    fn count(&mut self, each: usize) -> Result<usize, String> {
        let count = self.u64()?;
        let left = (self.bytes.len() - self.at) / each;
        usize::try_from(count)
            .ok()
            .filter(|&count| count <= left)
            .ok_or_else(|| format!("count {count} larger than the file"))
    }
}

fn check(ok: bool, why: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why.to_string())
    }
}

/// Decode a snapshot, or say why these bytes are not one.
pub(super) fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    check(bytes.len() >= HEADER, "shorter than its header")?;
    check(&bytes[..4] == MAGIC, "bad magic")?;
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    check(version == VERSION, "unknown version")?;
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    check(
        len == (bytes.len() - HEADER) as u64,
        "length does not match the file",
    )?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[HEADER..];
    check(crc32fast::hash(body) == crc, "checksum mismatch")?;
    let mut reader = Reader { bytes: body, at: 0 };
    let r = &mut reader;
    let (floor, last_seq, last_ts) = (r.u64()?, r.u64()?, r.u64()?);
    check(
        last_seq <= SEQ_MAX && floor <= last_seq + 1,
        "impossible floor or last sequence",
    )?;
    let tally = decode_tally(r, floor, last_seq)?;
    let count = r.count(60)?;
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let block = decode_block(r)?;
        if let Some(previous) = blocks.last() {
            let previous: &BlockIndex = previous;
            check(
                block.number > previous.number,
                "block numbers do not increase",
            )?;
        }
        if block.first_seq != 0 {
            let below = blocks
                .iter()
                .rev()
                .find(|other: &&BlockIndex| other.first_seq != 0)
                .map_or(0, |other| other.last_seq);
            check(block.first_seq > below, "block message ranges overlap")?;
            check(
                block.last_seq <= last_seq,
                "a block above the last sequence",
            )?;
        }
        blocks.push(block);
    }
    check(r.at == body.len(), "bytes after the last block")?;
    Ok(Snapshot {
        floor,
        last_seq,
        last_ts,
        tally,
        blocks,
    })
}

fn decode_tally(r: &mut Reader<'_>, floor: u64, last_seq: u64) -> Result<Tally, String> {
    let (msgs, bytes, first, first_ts) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let first = (first != 0).then_some((first, WallTime(first_ts)));
    check(
        first.is_some() == (msgs > 0),
        "first sequence and count disagree",
    )?;
    let low = first.map_or(0, |(seq, _)| seq);
    check(
        first.is_none() || (low >= floor && low <= last_seq),
        "first sequence out of range",
    )?;
    let count = r.count(28)?;
    let mut subjects = BTreeMap::new();
    let mut total = 0u64;
    for _ in 0..count {
        let len = r.u32()? as usize;
        let subject = Bytes::copy_from_slice(r.take(len)?);
        let state = SubjectState {
            msgs: r.u64()?,
            first_seq: r.u64()?,
            last_seq: r.u64()?,
        };
        check(
            // (A subject may be empty: recovery serves what a block
            // holds, and a damaged block may hold a record without one.)
            state.msgs > 0
                && state.first_seq >= low
                && state.first_seq <= state.last_seq
                && state.last_seq <= last_seq
                && state.msgs <= state.last_seq - state.first_seq + 1,
            "impossible subject state",
        )?;
        total = total.saturating_add(state.msgs);
        check(subjects.insert(subject, state).is_none(), "a subject twice")?;
    }
    check(total == msgs, "subject counts do not add up")?;
    let count = r.count(16)?;
    check(count as u64 <= msgs, "more TTLs than messages")?;
    let mut ttl_index = BTreeSet::new();
    for _ in 0..count {
        let entry = (r.u64()?, r.u64()?);
        check(
            entry.1 >= low && entry.1 <= last_seq,
            "a TTL for a sequence out of range",
        )?;
        ttl_index.insert(entry);
    }
    Ok(Tally {
        msgs,
        bytes,
        first,
        subjects,
        ttl_index,
    })
}

fn decode_block(r: &mut Reader<'_>) -> Result<BlockIndex, String> {
    let (number, len, tail_crc) = (r.u64()?, r.u64()?, r.u32()?);
    let (first_seq, last_seq) = (r.u64()?, r.u64()?);
    let (max_recorded, messages_written, before_first) = (r.u64()?, r.u64()?, r.u64()?);
    check(
        (first_seq == 0 && last_seq == 0)
            || (first_seq > 0 && first_seq <= last_seq && last_seq <= SEQ_MAX),
        "impossible block range",
    )?;
    check(max_recorded <= SEQ_MAX + 1, "impossible highest sequence")?;
    let mut pairs = [Vec::new(), Vec::new()];
    for list in &mut pairs {
        let count = r.count(16)?;
        list.reserve(count);
        for _ in 0..count {
            list.push((r.u64()?, r.u64()?));
        }
    }
    let [deleted, sparse] = pairs;
    let mut previous = None;
    for &(start, end) in &deleted {
        check(
            first_seq <= start && start <= end && end <= last_seq,
            "a deleted range outside its block",
        )?;
        check(
            previous.is_none_or(|previous: u64| start > previous + 1),
            "deleted ranges overlap",
        )?;
        previous = Some(end);
    }
    let mut previous: Option<(u64, u64)> = None;
    for &(seq, offset) in &sparse {
        check(
            seq >= first_seq && seq <= last_seq && offset < len,
            "a sparse entry outside its block",
        )?;
        check(
            previous.is_none_or(|(s, o)| seq > s && offset > o),
            "sparse entries do not increase",
        )?;
        previous = Some((seq, offset));
    }
    Ok(BlockIndex {
        number,
        len,
        tail_crc,
        first_seq,
        last_seq,
        max_recorded,
        messages_written,
        before_first,
        deleted,
        sparse,
    })
}
