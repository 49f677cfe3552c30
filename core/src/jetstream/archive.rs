//! The stream backup archive: what `STREAM.SNAPSHOT` sends and
//! `STREAM.RESTORE` reads.
//!
//! Role: encoding and decoding only, no stream or store. The format is the
//! one nats-server 2.12+ writes for its own snapshots ("v2"), so a backup
//! moves between rnats and the reference in both directions as far as the
//! compression allows (below). It does not depend on any store layout:
//!
//! ```text
//! compressed stream (Snappy framing format) of:
//!   "NATSARC1"
//!   entry*: uvarint name length | varint (zigzag) timestamp ns | uvarint sequence |
//!           uvarint header length | uvarint payload length | name | header | payload
//! entries, in order:
//!   "state.json"        the stream's state (JSON, the API's StreamState; `consumer_count`
//!                       says how many consumer entries follow)
//!   "consumers/<name>"  {"config": ConsumerConfig, "state": {"delivered", "ack_floor",
//!                       "pending": {seq: {"Sequence", "Timestamp"}}, "redelivered"}}
//!   <subject>           one stored message: its sequence and time, header block, payload;
//!                       sequences increase, a gap is a deleted message
//!   "" and all zeros    end of backup (a backup without it was cut short)
//! ```
//!
//! Compression: rnats writes the Snappy framing format (`snap`), which the
//! reference's S2 reader also reads. The reference writes S2's own framing
//! (stream identifier `S2sTwO`), whose blocks may use S2's extensions that
//! no Snappy decoder reads; such a backup is refused by name, never half
//! read. Its older format (a tar of its store files, also S2) is refused the
//! same way.
//!
//! Invariants of the reader: it takes input in pieces of any size (a chunk
//! at a time, as they arrive) and never holds more than one frame of
//! compressed input (at most [`MAX_FRAME`] bytes) and one entry of
//! decompressed input (at most its `max_entry` plus the entry header); every
//! frame is checksummed (the `snap` decoder checks the CRC-32C); any
//! malformed input is an [`ArchiveError`], never a panic.

use std::fmt;
use std::io::{Read, Write};

/// The archive's first bytes, after decompression.
pub const MAGIC: &[u8; 8] = b"NATSARC1";
/// The Snappy framing format's stream identifier chunk.
const SNAPPY_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";
/// S2's stream identifier body: the reference's compression.
const S2_IDENTIFIER: &[u8; 6] = b"S2sTwO";
/// A Snappy frame holds at most 64 KiB of data; with its checksum and a
/// block's worst-case growth it stays under this.
pub const MAX_FRAME: usize = 1 << 17;
/// Names longer than this are refused (the reference's bound).
const MAX_NAME: u64 = 1 << 20;

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    /// Unix nanoseconds (messages), or when the entry was written.
    pub timestamp: i64,
    /// A message's sequence; 0 for every other entry.
    pub sequence: u64,
    /// How many leading bytes of `data` are the header block.
    pub header_len: usize,
    pub data: Vec<u8>,
}

impl Entry {
    /// The end-of-backup entry: empty name, every number zero.
    pub fn is_end(&self) -> bool {
        self.name.is_empty()
            && self.timestamp == 0
            && self.sequence == 0
            && self.header_len == 0
            && self.data.is_empty()
    }

    pub fn header(&self) -> &[u8] {
        &self.data[..self.header_len]
    }

    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len..]
    }
}

/// Why an archive could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// Compressed with S2 (by nats-server): not readable here.
    S2Compressed,
    /// Not the Snappy framing format at all.
    NotSnappy,
    /// A frame is damaged (checksum, length, unknown type).
    BadFrame(String),
    /// Decompressed, but not a `NATSARC1` archive (the reference's older
    /// tar format, or anything else).
    NotArchive,
    /// An entry's header is malformed or its sizes impossible.
    BadEntry(&'static str),
    /// An entry larger than the reader accepts.
    EntryTooLarge(u64),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::S2Compressed => f.write_str(
                "snapshot is S2-compressed (made by nats-server); rnats reads snapshots in the Snappy framing format, as rnats writes them",
            ),
            ArchiveError::NotSnappy => {
                f.write_str("snapshot is not in the Snappy framing format")
            }
            ArchiveError::BadFrame(why) => write!(f, "snapshot damaged: {why}"),
            ArchiveError::NotArchive => f.write_str(
                "snapshot is not a NATSARC1 archive (a nats-server v1 tar snapshot is not supported)",
            ),
            ArchiveError::BadEntry(why) => write!(f, "archive: invalid archive stream: {why}"),
            ArchiveError::EntryTooLarge(size) => {
                write!(f, "archive: entry of {size} bytes is larger than allowed")
            }
        }
    }
}

impl std::error::Error for ArchiveError {}

/// Writes an archive into memory, from which the caller takes the
/// compressed bytes as it sends them.
pub struct ArchiveWriter {
    encoder: snap::write::FrameEncoder<Vec<u8>>,
    started: bool,
}

impl Default for ArchiveWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveWriter {
    pub fn new() -> Self {
        ArchiveWriter {
            encoder: snap::write::FrameEncoder::new(Vec::new()),
            started: false,
        }
    }

    /// Append one entry.
    pub fn entry(
        &mut self,
        name: &[u8],
        timestamp: i64,
        sequence: u64,
        header: &[u8],
        payload: &[u8],
    ) {
        let mut head = Vec::with_capacity(48 + name.len());
        if !self.started {
            head.extend_from_slice(MAGIC);
            self.started = true;
        }
        put_uvarint(&mut head, name.len() as u64);
        put_uvarint(&mut head, zigzag(timestamp));
        put_uvarint(&mut head, sequence);
        put_uvarint(&mut head, header.len() as u64);
        put_uvarint(&mut head, payload.len() as u64);
        head.extend_from_slice(name);
        // Writing into a Vec cannot fail.
        let written = self
            .encoder
            .write_all(&head)
            .and_then(|()| self.encoder.write_all(header))
            .and_then(|()| self.encoder.write_all(payload));
        debug_assert!(written.is_ok());
    }

    /// Append the end-of-backup entry and compress everything held.
    pub fn finish(&mut self) {
        self.entry(b"", 0, 0, b"", b"");
        let flushed = self.encoder.flush();
        debug_assert!(flushed.is_ok());
    }

    /// Compressed bytes ready to be taken.
    pub fn ready(&self) -> usize {
        self.encoder.get_ref().len()
    }

    /// Take up to `max` compressed bytes.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let out = self.encoder.get_mut();
        let n = max.min(out.len());
        let rest = out.split_off(n);
        std::mem::replace(out, rest)
    }
}

/// Reads an archive from compressed input handed in as it arrives.
pub struct ArchiveReader {
    /// Compressed input not yet a whole frame.
    frames: Vec<u8>,
    /// Decompressed input not yet taken as entries, from `at`.
    plain: Vec<u8>,
    at: usize,
    identified: bool,
    magic: bool,
    max_entry: u64,
    /// Compressed bytes handed in.
    pub received: u64,
}

impl ArchiveReader {
    /// A reader that refuses entries larger than `max_entry` bytes.
    pub fn new(max_entry: u64) -> Self {
        ArchiveReader {
            frames: Vec::new(),
            plain: Vec::new(),
            at: 0,
            identified: false,
            magic: false,
            max_entry,
            received: 0,
        }
    }

    /// Bytes held: compressed (part of a frame), decompressed (part of an
    /// entry and what followed it in its frame).
    pub fn held(&self) -> (usize, usize) {
        (self.frames.len(), self.plain.len() - self.at)
    }

    /// Hand in the next compressed bytes.
    pub fn push(&mut self, input: &[u8]) -> Result<(), ArchiveError> {
        self.received += input.len() as u64;
        self.frames.extend_from_slice(input);
        let mut used = 0;
        while self.frames.len() - used >= 4 {
            let frame = &self.frames[used..];
            let kind = frame[0];
            let len =
                usize::from(frame[1]) | usize::from(frame[2]) << 8 | usize::from(frame[3]) << 16;
            if !self.identified {
                if kind != 0xff {
                    return Err(ArchiveError::NotSnappy);
                }
                if len != 6 {
                    return Err(ArchiveError::NotSnappy);
                }
            }
            if len > MAX_FRAME {
                return Err(ArchiveError::BadFrame(format!("frame of {len} bytes")));
            }
            if frame.len() < 4 + len {
                break;
            }
            let body = &frame[4..4 + len];
            match kind {
                0xff => {
                    if body == S2_IDENTIFIER {
                        return Err(ArchiveError::S2Compressed);
                    }
                    if body != &SNAPPY_IDENTIFIER[4..] {
                        return Err(ArchiveError::NotSnappy);
                    }
                    self.identified = true;
                }
                0x00 | 0x01 => {
                    // One frame behind the identifier: the crate checks its
                    // checksum and decompresses it.
                    let mut framed = Vec::with_capacity(SNAPPY_IDENTIFIER.len() + 4 + len);
                    framed.extend_from_slice(SNAPPY_IDENTIFIER);
                    framed.extend_from_slice(&frame[..4 + len]);
                    let mut decoder = snap::read::FrameDecoder::new(framed.as_slice());
                    let before = self.plain.len();
                    if let Err(error) = decoder.read_to_end(&mut self.plain) {
                        self.plain.truncate(before);
                        return Err(ArchiveError::BadFrame(error.to_string()));
                    }
                }
                0x02..=0x7f => {
                    return Err(ArchiveError::BadFrame(format!(
                        "reserved unskippable frame type {kind:#04x}"
                    )))
                }
                // Skippable and padding frames.
                _ => {}
            }
            used += 4 + len;
        }
        self.frames.drain(..used);
        Ok(())
    }

    /// The next whole entry, if all of it has arrived.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ArchiveError> {
        if !self.magic {
            if self.plain.len() - self.at < MAGIC.len() {
                return Ok(None);
            }
            if &self.plain[self.at..self.at + MAGIC.len()] != MAGIC {
                return Err(ArchiveError::NotArchive);
            }
            self.at += MAGIC.len();
            self.magic = true;
        }
        let mut cursor = &self.plain[self.at..];
        let start = cursor.len();
        let mut fields = [0u64; 5];
        for field in &mut fields {
            match get_uvarint(&mut cursor)? {
                Some(value) => *field = value,
                None => return Ok(None),
            }
        }
        let [name_len, timestamp, sequence, header_len, payload_len] = fields;
        if name_len > MAX_NAME {
            return Err(ArchiveError::BadEntry("name too long"));
        }
        let total = header_len
            .checked_add(payload_len)
            .filter(|&total| i64::try_from(total).is_ok())
            .ok_or(ArchiveError::BadEntry("negative entry size"))?;
        if total > self.max_entry {
            return Err(ArchiveError::EntryTooLarge(total));
        }
        let head = start - cursor.len();
        // Both bounded above, so these fit.
        let (name_len, total) = (name_len as usize, total as usize);
        if cursor.len() < name_len + total {
            self.compact();
            return Ok(None);
        }
        let name = cursor[..name_len].to_vec();
        let data = cursor[name_len..name_len + total].to_vec();
        self.at += head + name_len + total;
        self.compact();
        Ok(Some(Entry {
            name,
            timestamp: unzigzag(timestamp),
            sequence,
            header_len: header_len as usize,
            data,
        }))
    }

    /// Drop what was taken once it is most of the buffer.
    fn compact(&mut self) {
        if self.at > 0 && self.at * 2 >= self.plain.len() {
            self.plain.drain(..self.at);
            self.at = 0;
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A uvarint from the front of `input` (advanced past it); `None` when
/// `input` ends inside it.
fn get_uvarint(input: &mut &[u8]) -> Result<Option<u64>, ArchiveError> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate() {
        if i == 10 || (i == 9 && byte > 1) {
            return Err(ArchiveError::BadEntry("varint overflows a 64-bit integer"));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *input = &input[i + 1..];
            return Ok(Some(value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], piece: usize) -> Result<Vec<Entry>, ArchiveError> {
        let mut reader = ArchiveReader::new(1 << 20);
        let mut entries = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            reader.push(chunk)?;
            while let Some(entry) = reader.next_entry()? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    #[test]
    fn entries_survive_the_round_trip_in_pieces_of_any_size() {
        let mut writer = ArchiveWriter::new();
        writer.entry(b"state.json", 7, 0, b"", b"{\"messages\":2}");
        let big = vec![b'x'; 200_000];
        writer.entry(b"orders.1", -5, 3, b"NATS/1.0\r\nA: b\r\n\r\n", b"one");
        writer.entry(b"orders.2", i64::MAX, u64::MAX, b"", &big);
        writer.finish();
        let bytes = writer.take(usize::MAX);
        assert_eq!(writer.ready(), 0);
        for piece in [1, 3, 1000, 65_536, bytes.len()] {
            let entries = read_all(&bytes, piece).unwrap();
            assert_eq!(entries.len(), 4, "piece {piece}");
            assert_eq!(entries[0].name, b"state.json");
            assert_eq!(entries[0].timestamp, 7);
            assert_eq!(entries[1].sequence, 3);
            assert_eq!(entries[1].timestamp, -5);
            assert_eq!(entries[1].header(), b"NATS/1.0\r\nA: b\r\n\r\n");
            assert_eq!(entries[1].payload(), b"one");
            assert_eq!(entries[2].sequence, u64::MAX);
            assert_eq!(entries[2].timestamp, i64::MAX);
            assert_eq!(entries[2].payload(), big.as_slice());
            assert!(entries[3].is_end());
        }
    }

    #[test]
    fn the_wire_bytes_are_the_reference_format() {
        // Uncompressed frame content after the identifier: magic, then the
        // varints as Go's binary.PutUvarint / PutVarint write them.
        let mut writer = ArchiveWriter::new();
        writer.entry(b"a", -1, 300, b"", b"z");
        writer.finish();
        let bytes = writer.take(usize::MAX);
        assert_eq!(&bytes[..10], SNAPPY_IDENTIFIER);
        let mut plain = Vec::new();
        snap::read::FrameDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        let mut want = MAGIC.to_vec();
        want.extend_from_slice(&[1, 1, 0xac, 0x02, 0, 1, b'a', b'z']);
        want.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert_eq!(plain, want);
    }

    #[test]
    fn foreign_and_damaged_input_is_refused_by_name() {
        let s2 = b"\xff\x06\x00\x00S2sTwO\x00\x00\x00\x00";
        assert_eq!(read_all(s2, 4), Err(ArchiveError::S2Compressed));
        assert_eq!(
            read_all(b"ustar\0\0\0\0\0", 10),
            Err(ArchiveError::NotSnappy)
        );
        // A Snappy stream of something else (a tar's first bytes).
        let mut encoder = snap::write::FrameEncoder::new(Vec::new());
        encoder.write_all(&[0u8; 512]).unwrap();
        let tar = encoder.into_inner().unwrap();
        assert_eq!(read_all(&tar, 7), Err(ArchiveError::NotArchive));
        // A flipped byte in a frame fails its checksum.
        let mut writer = ArchiveWriter::new();
        writer.entry(b"state.json", 0, 0, b"", b"{}");
        writer.finish();
        let mut bytes = writer.take(usize::MAX);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(matches!(
            read_all(&bytes, 5),
            Err(ArchiveError::BadFrame(_))
        ));
        // An entry larger than allowed is refused before it is buffered.
        let mut writer = ArchiveWriter::new();
        writer.entry(b"m", 0, 1, b"", &vec![0; (1 << 20) + 1]);
        let bytes = writer.take(usize::MAX);
        assert_eq!(
            read_all(&bytes, 1 << 16),
            Err(ArchiveError::EntryTooLarge((1 << 20) + 1))
        );
    }
}
