//! Block records: encoding, checked decoding, and the block scan that
//! recovery and cache loads share. The layout is documented in
//! [`super::filestore`].
//!
//! Inputs: record fields (encode) or a block's bytes (decode/scan).
//! Outputs: bytes, or records whose checksum matched, plus what was damaged.
//! Invariant: nothing leaves `decode` unless its crc32 matched and every
//! length inside it fits the record; `scan`'s good records, skipped
//! stretches and tail tile the block in order.
//!
//! Public (hidden from the docs) only for the fuzz target `store_scan`,
//! which drives `decode` and `scan` directly; nothing outside the store
//! should build on it.

use std::time::Duration;

/// Fixed part before the subject.
pub const HEADER_LEN: usize = 36;
/// Header plus the trailing checksum: the smallest record.
pub const MIN_RECORD: usize = HEADER_LEN + 4;
/// The largest record accepted (64 MiB).
pub const MAX_RECORD: usize = 64 << 20;
/// Byte 5 of every record.
pub const MAGIC: u8 = 0xA5;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message: `seq` holds it.
    Message = 1,
    /// The message at `seq` was removed.
    Tombstone = 2,
    /// Every sequence up to `seq` was handed out.
    Skip = 3,
    /// The message at `seq` was erased (written over a message in place).
    Erased = 4,
    /// Nothing below `seq` is present; the payload holds the store's last
    /// sequence (8 bytes, little endian) at the time.
    Floor = 5,
    /// A message sealed by [`super::codec`] (compressed and/or encrypted):
    /// `seq` holds it; subject and headers are empty and the payload is the
    /// sealed body, which holds them.
    Sealed = 6,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Message),
            2 => Some(Kind::Tombstone),
            3 => Some(Kind::Skip),
            4 => Some(Kind::Erased),
            5 => Some(Kind::Floor),
            6 => Some(Kind::Sealed),
            _ => None,
        }
    }

    /// Whether a record of this kind holds a message (plain or sealed).
    pub fn holds_message(self) -> bool {
        matches!(self, Kind::Message | Kind::Sealed)
    }
}

/// A decoded record, borrowing from the block's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub ts: u64,
    /// Nanoseconds; 0 means none.
    pub ttl: u64,
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    /// The whole record's length in bytes.
    pub len: usize,
}

impl Record<'_> {
    pub fn ttl(&self) -> Option<Duration> {
        (self.ttl != 0).then(|| Duration::from_nanos(self.ttl))
    }
}

/// The encoded length of a record with these parts.
pub fn encoded_len(subject: usize, headers: usize, payload: usize) -> usize {
    MIN_RECORD + subject + headers + payload
}

/// Append one record to `out`.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    ts: u64,
    ttl: u64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) {
    let len = encoded_len(subject.len(), headers.len(), payload.len());
    assert!(len <= MAX_RECORD, "record of {len} bytes over the maximum");
    assert!(subject.len() <= usize::from(u16::MAX), "subject too long");
    let start = out.len();
    out.extend_from_slice(&header(
        kind,
        seq,
        ts,
        ttl,
        subject.len(),
        headers.len(),
        payload.len(),
    ));
    debug_assert_eq!(out.len() - start, HEADER_LEN);
    out.extend_from_slice(subject);
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len() - start, len, "encoded length disagrees");
    debug_assert!(decode(&out[start..]).is_ok(), "a fresh record must decode");
}

/// The first [`HEADER_LEN`] bytes of a record with these fields (what a
/// sealed record's encryption authenticates besides its body).
pub fn header(
    kind: Kind,
    seq: u64,
    ts: u64,
    ttl: u64,
    subject: usize,
    headers: usize,
    payload: usize,
) -> [u8; HEADER_LEN] {
    let len = encoded_len(subject, headers, payload);
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4] = kind as u8;
    out[5] = MAGIC;
    out[6..8].copy_from_slice(&(subject as u16).to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&ts.to_le_bytes());
    out[24..32].copy_from_slice(&ttl.to_le_bytes());
    out[32..36].copy_from_slice(&(headers as u32).to_le_bytes());
    out
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record claims (or than a header): a torn write.
    Short,
    /// The length, magic or kind is impossible: the header is damaged.
    BadHeader,
    /// The header is plausible but the checksum does not match.
    BadChecksum { len: usize },
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decode the record at the start of `bytes`, checking its checksum.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    decode_inner(bytes, true)
}

/// Decode a record whose checksum was already checked where these bytes
/// came from (a block the cache loaded with [`scan`], or a record the store
/// encoded itself): the framing is still checked, the crc32 only in debug
/// builds. A store reading its cache pays one crc32 per message loaded,
/// not one per message read.
pub fn decode_verified(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let record = decode_inner(bytes, false);
    debug_assert!(
        record.is_err() || decode(bytes).is_ok(),
        "a verified record fails its checksum"
    );
    record
}

fn decode_inner(bytes: &[u8], check_crc: bool) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < 6 {
        return Err(DecodeError::Short);
    }
    let len = u32_at(bytes, 0) as usize;
    let kind = Kind::from_byte(bytes[4]).ok_or(DecodeError::BadHeader)?;
    if bytes[5] != MAGIC || !(MIN_RECORD..=MAX_RECORD).contains(&len) {
        return Err(DecodeError::BadHeader);
    }
    if bytes.len() < len {
        return Err(DecodeError::Short);
    }
    let subject_len = usize::from(u16_at(bytes, 6));
    let headers_len = u32_at(bytes, 32) as usize;
    if MIN_RECORD + subject_len + headers_len > len {
        return Err(DecodeError::BadChecksum { len });
    }
    if check_crc && crc32fast::hash(&bytes[..len - 4]) != u32_at(bytes, len - 4) {
        return Err(DecodeError::BadChecksum { len });
    }
    let body = &bytes[HEADER_LEN..len - 4];
    let (subject, rest) = body.split_at(subject_len);
    let (headers, payload) = rest.split_at(headers_len);
    Ok(Record {
        kind,
        seq: u64_at(bytes, 8),
        ts: u64_at(bytes, 16),
        ttl: u64_at(bytes, 24),
        subject,
        headers,
        payload,
        len,
    })
}

/// What a scan of one block found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Offsets of the records whose checksum matched, in file order.
    pub good: Vec<usize>,
    /// `(offset, bytes)` of damaged stretches followed by good records:
    /// skipped, never served.
    pub skipped: Vec<(usize, usize)>,
    /// Where a damaged or torn tail starts (the file should be cut there),
    /// with an estimate of how many records it held.
    pub tail: Option<(usize, u64)>,
}

impl Scan {
    /// The length of the block once its tail is cut.
    pub fn good_len(&self, block_len: usize) -> usize {
        self.tail.map_or(block_len, |(offset, _)| offset)
    }
}

/// Check every record of a block. A damaged record with a readable length
/// is stepped over; otherwise the scan looks for the next offset where a
/// whole record with a matching checksum starts. Nothing found: the rest
/// is a damaged tail.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut result = Scan::default();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode(&bytes[offset..]) {
            Ok(record) => {
                result.good.push(offset);
                offset += record.len;
            }
            Err(error) => {
                let resume = match error {
                    DecodeError::BadChecksum { len } if offset + len < bytes.len() => {
                        // Trust the length only if a good record follows it.
                        let next = offset + len;
                        if decode(&bytes[next..]).is_ok() {
                            Some(next)
                        } else {
                            resync(bytes, offset + 1)
                        }
                    }
                    _ => resync(bytes, offset + 1),
                };
                match resume {
                    Some(next) => {
                        result.skipped.push((offset, next - offset));
                        offset = next;
                    }
                    None => {
                        result.tail = Some((offset, estimate_records(&bytes[offset..])));
                        break;
                    }
                }
            }
        }
    }
    assert!(
        result.good.windows(2).all(|pair| pair[0] < pair[1]),
        "scan offsets must increase"
    );
    result
}

/// [`scan`] of `bytes[start..]` (records start at `start`), with offsets
/// into the whole of `bytes`.
pub fn scan_from(bytes: &[u8], start: usize) -> Scan {
    let mut result = scan(bytes.get(start..).unwrap_or_default());
    for offset in &mut result.good {
        *offset += start;
    }
    for (offset, _) in &mut result.skipped {
        *offset += start;
    }
    if let Some((offset, _)) = &mut result.tail {
        *offset += start;
    }
    result
}

/// The next offset at or after `from` where a record decodes.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(MIN_RECORD - 1)).find(|&offset| {
        bytes[offset + 5] == MAGIC
            && Kind::from_byte(bytes[offset + 4]).is_some()
            && decode(&bytes[offset..]).is_ok()
    })
}

/// How many records a damaged tail seems to hold (at least one).
fn estimate_records(bytes: &[u8]) -> u64 {
    let mut count = 0;
    let mut offset = 0;
    while offset + 4 <= bytes.len() {
        let len = u32_at(bytes, offset) as usize;
        count += 1;
        if !(MIN_RECORD..=MAX_RECORD).contains(&len) {
            break;
        }
        offset += len;
    }
    count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, Kind::Message, seq, 7, 0, b"a.b", b"", payload);
        out
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode(
            &mut out,
            Kind::Message,
            9,
            11,
            13,
            b"foo",
            b"NATS/1.0\r\n\r\n",
            b"hi",
        );
        let record = decode(&out).unwrap();
        assert_eq!(record.kind, Kind::Message);
        assert_eq!((record.seq, record.ts, record.ttl), (9, 11, 13));
        assert_eq!(record.subject, b"foo");
        assert_eq!(record.headers, b"NATS/1.0\r\n\r\n");
        assert_eq!(record.payload, b"hi");
        assert_eq!(record.len, out.len());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = message(1, b"payload");
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn scan_skips_a_damaged_middle_record_and_cuts_a_torn_tail() {
        let mut block = message(1, b"one");
        let second = block.len();
        block.extend(message(2, b"two"));
        let third = block.len();
        block.extend(message(3, b"three"));
        let fourth = block.len();
        block.extend(message(4, b"four"));
        block[second + 40] ^= 0xFF; // payload of record 2
        block.truncate(block.len() - 3); // record 4 torn
        let scan = scan(&block);
        assert_eq!(scan.good, vec![0, third]);
        assert_eq!(scan.skipped, vec![(second, third - second)]);
        assert_eq!(scan.tail, Some((fourth, 1)));
    }

    #[test]
    fn scan_resyncs_after_a_damaged_length() {
        let mut block = message(1, b"one");
        let second = block.len();
        block.extend(message(2, b"two"));
        let third = block.len();
        block.extend(message(3, b"three"));
        block[second] ^= 0x40; // length of record 2
        let scan = scan(&block);
        assert_eq!(scan.good, vec![0, third]);
        assert_eq!(scan.skipped, vec![(second, third - second)]);
        assert_eq!(scan.tail, None);
    }
}
