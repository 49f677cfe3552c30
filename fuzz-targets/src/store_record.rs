//! Fuzz target `store_record`: the store's block/record decoder (the
//! checksum-checking scan of `core/src/store/record.rs`) over arbitrary bytes
//! as one block file.
//!
//! The record module is private to `rnats-core`, so the target reaches the
//! scan the way recovery does: the input becomes the only block file
//! (`s/0000000001.blk`, no `meta`) of a [`MemDisk`] and a [`FileStore`] is
//! opened on it. Every message the store then serves is a record the scan
//! accepted; the target re-encodes it with its own encoder written from the
//! documented format ([`encode`], the table in `core/src/store/filestore.rs`)
//! and looks for those exact bytes in the block.
//!
//! Input: 1 control byte, then the block's bytes (at most [`MAX_BLOCK`]).
//! Control bit 0: before the store sees the block, walk it by its length
//! fields and rewrite each record's crc32 ([`fix_checksums`]), so mutated
//! headers, lengths and bodies reach the code behind the checksum instead of
//! all being rejected by it.
//!
//! Invariants checked (beyond no panic / hang / OOM):
//! - opening succeeds or reports `StoreError::Corrupt`, never another error;
//! - every served message re-encodes to bytes found verbatim in the block at
//!   an offset where a record starts (round trip), with a valid crc32 (the
//!   encoder computes it), at increasing offsets for increasing sequences:
//!   damaged input never yields a record that was not in the input;
//! - the recovery report counts no more good records than the block has
//!   offsets where a checksum-valid record starts ([`valid_record_offsets`]);
//! - a block that is a clean run of valid records (tiling it exactly) is
//!   reported with every record good, nothing skipped, no tail cut, exactly
//!   the impossible records refused ([`accepted_records`]: a message
//!   numbered 0 or not above the one before it, a sequence above
//!   `SEQ_MAX`), and every accepted message record not removed by an
//!   accepted tombstone, erased record or floor is served, equal to its
//!   record;
//! - recovery never writes into the block: afterwards the file is a prefix
//!   of the input, the whole input unless a tail was cut;
//! - `state()` agrees with the messages served (count, bytes, first, last).
//!
//! No input is skipped: the three recovery bugs once excused here (store
//! findings 1 to 3 in `fuzz/RESULTS.md`) are fixed, and their reproducers
//! in `fuzz/regressions/store_record/` replay as ordinary inputs.
//!
//! Work: the scan's resync tries a decode at every offset after damage, so
//! its worst case is (block length) × (record length); [`MAX_BLOCK`] keeps
//! that within libFuzzer's `-timeout`.

use rnats_core::store::{
    msg_size, Disk, FileStore, FileStoreConfig, Filter, MemDisk, StoreConfig, StoreError,
    StoredMsg, SyncPolicy, SEQ_MAX,
};

/// The largest block the target scans.
pub const MAX_BLOCK: usize = 16 << 10;
/// The fixed header before the subject.
pub const HEADER_LEN: usize = 36;
/// Header plus checksum: the smallest record.
pub const MIN_RECORD: usize = HEADER_LEN + 4;
/// The largest record the store accepts.
pub const MAX_RECORD: usize = 64 << 20;
/// Byte 5 of every record.
pub const MAGIC: u8 = 0xA5;
/// Record kinds.
pub const MESSAGE: u8 = 1;
pub const TOMBSTONE: u8 = 2;
pub const SKIP: u8 = 3;
pub const ERASED: u8 = 4;
pub const FLOOR: u8 = 5;
/// A message sealed by the store's codec (`core/src/store/codec.rs`): its
/// payload is a flags byte and the sealed body; without a key only
/// compression (flags 1) opens.
pub const SEALED: u8 = 6;

/// The store directory the targets use.
pub const DIR: &str = "s";

/// Append one record, as the documented format lays it out.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    out: &mut Vec<u8>,
    kind: u8,
    seq: u64,
    ts: u64,
    ttl: u64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) {
    let len = MIN_RECORD + subject.len() + headers.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind);
    out.push(MAGIC);
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&ttl.to_le_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The record bytes of a stored message.
pub fn encode_msg(msg: &StoredMsg) -> Vec<u8> {
    let mut out = Vec::new();
    let ttl = msg.ttl.map_or(0, |ttl| ttl.as_nanos() as u64);
    encode(
        &mut out,
        MESSAGE,
        msg.seq,
        msg.ts.0,
        ttl,
        &msg.subject,
        &msg.headers,
        &msg.payload,
    );
    out
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A record as this target's reference decoder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRecord {
    pub kind: u8,
    pub seq: u64,
    pub ts: u64,
    pub ttl: u64,
    pub subject: Vec<u8>,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
    pub len: usize,
}

/// Decode the record at the start of `bytes` by the documented format.
pub fn ref_decode(bytes: &[u8]) -> Option<RefRecord> {
    if bytes.len() < MIN_RECORD {
        return None;
    }
    let len = u32_at(bytes, 0);
    if !(1..=6).contains(&bytes[4]) || bytes[5] != MAGIC {
        return None;
    }
    if !(MIN_RECORD..=MAX_RECORD).contains(&len) || len > bytes.len() {
        return None;
    }
    let subject_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let headers_len = u32_at(bytes, 32);
    if MIN_RECORD + subject_len + headers_len > len {
        return None;
    }
    if crc32fast::hash(&bytes[..len - 4]) != u32_at(bytes, len - 4) as u32 {
        return None;
    }
    let body = &bytes[HEADER_LEN..len - 4];
    Some(RefRecord {
        kind: bytes[4],
        seq: u64_at(bytes, 8),
        ts: u64_at(bytes, 16),
        ttl: u64_at(bytes, 24),
        subject: body[..subject_len].to_vec(),
        headers: body[subject_len..subject_len + headers_len].to_vec(),
        payload: body[subject_len + headers_len..].to_vec(),
        len,
    })
}

/// The subject, headers and payload a message record holds, read by the
/// documented format: a plain message as it is; a sealed one with flags 1
/// (compressed, not encrypted) by snappy-decompressing it and splitting
/// `subject len u16 | headers len u32 | subject | headers | payload`.
/// `None`: not a message, or a sealed record that does not open without a
/// key (the store refuses it).
pub fn ref_message(record: &RefRecord) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    match record.kind {
        MESSAGE => Some((
            record.subject.clone(),
            record.headers.clone(),
            record.payload.clone(),
        )),
        SEALED => {
            let (&flags, body) = record.payload.split_first()?;
            if flags != 1 {
                return None;
            }
            let len = snap::raw::decompress_len(body).ok()?;
            if len > MAX_RECORD {
                return None;
            }
            let plain = snap::raw::Decoder::new().decompress_vec(body).ok()?;
            if plain.len() != len || plain.len() < 6 {
                return None;
            }
            let subject_len = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
            let headers_len = u32_at(&plain, 2);
            let end = 6usize.checked_add(subject_len)?.checked_add(headers_len)?;
            if end > plain.len() {
                return None;
            }
            Some((
                plain[6..6 + subject_len].to_vec(),
                plain[6 + subject_len..end].to_vec(),
                plain[end..].to_vec(),
            ))
        }
        _ => None,
    }
}

/// Where in `content`, at or after `from`, the record holding `msg` starts,
/// and its length: the plain encoding found verbatim, or a sealed record
/// of that sequence that opens to the same message.
pub fn record_of(content: &[u8], msg: &StoredMsg, from: usize) -> Option<(usize, usize)> {
    let bytes = encode_msg(msg);
    if let Some(at) = find_from(content, &bytes, from) {
        return Some((at, bytes.len()));
    }
    let ttl = msg.ttl.map_or(0, |ttl| ttl.as_nanos() as u64);
    (from..content.len()).find_map(|at| {
        let record = ref_decode(&content[at..])?;
        let same = record.kind == SEALED
            && (record.seq, record.ts, record.ttl) == (msg.seq, msg.ts.0, ttl)
            && ref_message(&record).is_some_and(|(subject, headers, payload)| {
                (&subject[..], &headers[..], &payload[..])
                    == (&msg.subject[..], &msg.headers[..], &msg.payload[..])
            });
        same.then_some((at, record.len))
    })
}

/// A clean block's records as recovery must take them: `(accepted,
/// refused)`. Recovery refuses a checksum-valid record that cannot be what
/// the store wrote: a sequence above [`SEQ_MAX`] (a floor's may be
/// `SEQ_MAX + 1`), a floor naming a last sequence above `SEQ_MAX`, a
/// message with sequence 0, a message not above the block's previous
/// accepted message (0: none yet).
pub fn accepted_records(records: &[RefRecord]) -> (Vec<&RefRecord>, u64) {
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut previous = 0;
    for record in records {
        let highest = if record.kind == FLOOR {
            SEQ_MAX + 1
        } else {
            SEQ_MAX
        };
        let floor_last = if record.payload.len() >= 8 {
            u64_at(&record.payload, 0)
        } else {
            0
        };
        let ok = record.seq <= highest
            && (record.kind != FLOOR || floor_last <= SEQ_MAX)
            && (!holds_message(record)
                || (record.seq > 0 && (previous == 0 || record.seq > previous)))
            && (record.kind != SEALED || ref_message(record).is_some());
        if !ok {
            refused += 1;
            continue;
        }
        if holds_message(record) {
            previous = record.seq;
        }
        accepted.push(record);
    }
    (accepted, refused)
}

fn holds_message(record: &RefRecord) -> bool {
    record.kind == MESSAGE || record.kind == SEALED
}

/// Rewrite the crc32 of every record reached by following length fields
/// from the start; stops at the first length that does not fit.
pub fn fix_checksums(block: &mut [u8]) {
    let mut offset = 0;
    while offset + 4 <= block.len() {
        let len = u32_at(block, offset);
        if !(MIN_RECORD..=block.len() - offset).contains(&len) {
            break;
        }
        let end = offset + len;
        let crc = crc32fast::hash(&block[offset..end - 4]);
        block[end - 4..end].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
}

/// How many offsets of `block` start a checksum-valid record. Only cheap
/// candidates (kind and magic right, length fitting) are checksummed.
pub fn valid_record_offsets(block: &[u8]) -> usize {
    (0..block.len())
        .filter(|&offset| ref_decode(&block[offset..]).is_some())
        .count()
}

/// The records of `block` if it is exactly a run of valid records.
pub fn clean_records(block: &[u8]) -> Option<Vec<RefRecord>> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < block.len() {
        let record = ref_decode(&block[offset..])?;
        offset += record.len;
        records.push(record);
    }
    Some(records)
}

/// The offsets at or after `from` where `needle` occurs in `haystack`.
pub fn find_from(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.len() < 4 || haystack.len() < needle.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&at| {
        haystack[at..at + 4] == needle[..4] && &haystack[at..at + needle.len()] == needle
    })
}

/// The store configuration the targets open with.
pub fn file_config(cache_blocks: usize, block_size: u64) -> FileStoreConfig {
    FileStoreConfig {
        dir: DIR.to_string(),
        block_size,
        cache_blocks,
        sync: SyncPolicy::BeforeAck,
        ..FileStoreConfig::default()
    }
}

/// Every message the store serves, by walking `load_next` from the first
/// sequence; checks each against `load_msg` and the sum against `state()`.
pub fn served_messages<D: Disk>(store: &mut FileStore<D>) -> Vec<StoredMsg> {
    let state = store.state();
    let mut msgs: Vec<StoredMsg> = Vec::new();
    let mut next = state.first_seq;
    loop {
        match store.load_next(&Filter::All, next) {
            Ok(msg) => {
                assert!(msg.seq >= next, "load_next went backwards");
                assert!(
                    msg.seq >= state.first_seq && msg.seq <= state.last_seq,
                    "message {} outside {}..={}",
                    msg.seq,
                    state.first_seq,
                    state.last_seq
                );
                assert_eq!(
                    store.load_msg(msg.seq).as_ref(),
                    Ok(&msg),
                    "load_msg disagrees with load_next"
                );
                assert!(
                    msgs.len() as u64 <= state.msgs,
                    "more messages served than state() counts"
                );
                next = msg.seq.saturating_add(1);
                let last = msg.seq == u64::MAX;
                msgs.push(msg);
                if last {
                    break;
                }
            }
            Err(StoreError::NotFound | StoreError::Eof) => break,
            Err(error) => panic!("load_next failed: {error:?}"),
        }
    }
    assert_eq!(msgs.len() as u64, state.msgs, "state() msgs vs served");
    let bytes: u64 = msgs
        .iter()
        .map(|msg| msg_size(&msg.subject, &msg.headers, &msg.payload))
        .sum();
    assert_eq!(bytes, state.bytes, "state() bytes vs served");
    if let (Some(first), Some(last)) = (msgs.first(), msgs.last()) {
        assert_eq!(first.seq, state.first_seq, "state() first_seq");
        assert!(last.seq <= state.last_seq, "a message above last_seq");
    }
    msgs
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_BLOCK {
        return;
    }
    let mut block = rest.to_vec();
    if control & 1 == 1 {
        fix_checksums(&mut block);
    }
    let path = format!("{DIR}/0000000001.blk");
    let mut disk = MemDisk::new();
    disk.write_at(&path, 0, &block).expect("MemDisk writes");
    disk.sync_everything();
    let mut store = match FileStore::open_on(disk, file_config(2, 1 << 20), StoreConfig::default())
    {
        Ok(store) => store,
        Err(StoreError::Corrupt(_)) => return,
        Err(error) => panic!("open failed with {error:?}"),
    };
    let report = store.backend().recovery().clone();
    let msgs = served_messages(&mut store);

    // Every served message is a record of the input, in file order.
    let mut from = 0;
    for msg in &msgs {
        let Some((at, len)) = record_of(&block, msg, from) else {
            panic!(
                "message {} served but its record is not in the block after offset {from}",
                msg.seq
            );
        };
        assert!(
            ref_decode(&block[at..]).is_some(),
            "found bytes do not decode"
        );
        from = at + len;
    }

    let valid = valid_record_offsets(&block);
    assert!(
        report.records as usize <= valid,
        "{} good records reported, {valid} valid offsets",
        report.records
    );

    if let Some(records) = clean_records(&block) {
        assert_eq!(
            report.records as usize,
            records.len(),
            "clean block records"
        );
        assert_eq!(report.damaged_records, 0, "clean block: damage reported");
        assert_eq!(report.tails_cut, 0, "clean block: tail cut");
        let (records, refused) = accepted_records(&records);
        assert_eq!(report.records_refused, refused, "clean block: refused");
        let floor = records
            .iter()
            .filter(|record| record.kind == FLOOR)
            .map(|record| record.seq)
            .max()
            .unwrap_or(0);
        let removed: std::collections::BTreeSet<u64> = records
            .iter()
            .filter(|record| record.kind == TOMBSTONE || record.kind == ERASED)
            .map(|record| record.seq)
            .collect();
        let expected: Vec<&RefRecord> = records
            .into_iter()
            .filter(|record| {
                holds_message(record) && record.seq >= floor && !removed.contains(&record.seq)
            })
            .collect();
        assert_eq!(msgs.len(), expected.len(), "clean block: messages served");
        for (msg, record) in msgs.iter().zip(expected) {
            assert_eq!(msg.seq, record.seq, "clean block: sequence");
            let (subject, headers, payload) = ref_message(record).expect("accepted: opens");
            assert_eq!(&msg.subject[..], &subject[..], "clean block: subject");
            assert_eq!(&msg.headers[..], &headers[..], "clean block: headers");
            assert_eq!(&msg.payload[..], &payload[..], "clean block: payload");
            assert_eq!(msg.ts.0, record.ts, "clean block: timestamp");
        }
    }

    let mut disk = store.into_backend().into_disk();
    let after = disk
        .read_all(&path)
        .expect("MemDisk reads")
        .expect("the block is still there");
    assert!(block.starts_with(&after), "recovery wrote into the block");
    if report.tails_cut == 0 {
        assert_eq!(after.len(), block.len(), "block cut without a tail cut");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_reproducer(name: &str) -> FileStore<MemDisk> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/store_record")
            .join(name);
        let data = std::fs::read(&path).expect("the reproducer");
        run(&data);
        let mut disk = MemDisk::new();
        disk.write_at(&format!("{DIR}/0000000001.blk"), 0, &data[1..])
            .expect("MemDisk writes");
        FileStore::open_on(disk, file_config(2, 1 << 20), StoreConfig::default())
            .expect("the reproducer opens")
    }

    /// Store findings 1 to 3 (fixed): each reproducer opens without a
    /// panic or an allocation the size of its sequence numbers, and
    /// recovery says what it refused.
    #[test]
    fn fixed_store_bugs_reproducers_open() {
        for (name, refused, msgs, last_seq) in [
            ("decreasing", 1, 1, 2),
            ("dup", 1, 1, 3),
            ("gap", 0, 2, 1 << 40),
            ("maxseq", 1, 0, 0),
            ("maxseq_torn", 1, 0, 1),
        ] {
            let store = open_reproducer(&format!("fixed-{name}"));
            let report = store.backend().recovery();
            assert_eq!(report.records_refused, refused, "{name}: refused");
            assert_eq!(store.state().msgs, msgs, "{name}: messages");
            assert_eq!(store.state().last_seq, last_seq, "{name}: last_seq");
        }
    }
}
