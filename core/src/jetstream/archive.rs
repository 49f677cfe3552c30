//! The stream backup archive: what `STREAM.SNAPSHOT` sends and
//! `STREAM.RESTORE` reads.
//!
//! Role: encoding and decoding only, no stream or store. The format is the
//! one nats-server writes for its own snapshots (its "v2", `NATSARC1`), so
//! a backup moves between rnats and the reference in both directions. It
//! does not depend on any store layout:
//!
//! ```text
//! compressed stream (S2 or Snappy framing, see super::framing) of:
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
//! reference's S2 reader also reads; the reference writes S2's framing,
//! which this reader decodes ([`super::framing`]), file and memory streams
//! alike (the archive does not depend on the store). The reference's older
//! format, a tar of its store files inside the same S2 stream, is refused
//! by name once its first bytes are decompressed, never half read.
//!
//! Invariants of the reader: it takes input in pieces of any size (a chunk
//! at a time, as they arrive) and never holds more than one frame of
//! compressed input (at most [`MAX_FRAME`] bytes) and one entry of
//! decompressed input (at most its `max_entry` plus the entry header) with
//! the rest of its frame's data; every frame is checksummed (CRC-32C); any
//! malformed input is an [`ArchiveError`], never a panic.

use std::fmt;
use std::io::Write;

use super::framing::FrameReader;
pub use super::framing::{Framing, FramingError, MAX_FRAME, MAX_S2_DATA};

/// The archive's first bytes, after decompression.
pub const MAGIC: &[u8; 8] = b"NATSARC1";
/// A tar header's magic, and where it is.
const TAR_MAGIC: &[u8; 5] = b"ustar";
const TAR_MAGIC_AT: usize = 257;
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
    /// The compressed stream around it is foreign or damaged.
    Framing(FramingError),
    /// Decompressed, but not a `NATSARC1` archive.
    NotArchive,
    /// Decompressed, and a tar: the reference's older backup format.
    TarBackup,
    /// An entry's header is malformed or its sizes impossible.
    BadEntry(&'static str),
    /// An entry larger than the reader accepts.
    EntryTooLarge(u64),
}

impl From<FramingError> for ArchiveError {
    fn from(error: FramingError) -> Self {
        ArchiveError::Framing(error)
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Framing(error) => error.fmt(f),
            ArchiveError::NotArchive => f.write_str("snapshot is not a NATSARC1 archive"),
            ArchiveError::TarBackup => f.write_str(
                "snapshot is a nats-server tar backup (its older format), which rnats does not read; restore it into nats-server and back it up again",
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
    /// The compressed stream, a frame at a time.
    frames: FrameReader,
    /// Decompressed input not yet taken as entries, from `at`.
    plain: Vec<u8>,
    at: usize,
    magic: bool,
    max_entry: u64,
    /// Compressed bytes handed in.
    pub received: u64,
}

impl ArchiveReader {
    /// A reader that refuses entries larger than `max_entry` bytes.
    pub fn new(max_entry: u64) -> Self {
        ArchiveReader {
            frames: FrameReader::new(),
            plain: Vec::new(),
            at: 0,
            magic: false,
            max_entry,
            received: 0,
        }
    }

    /// Bytes held: compressed (part of a frame), decompressed (part of an
    /// entry and what followed it in its frame).
    pub fn held(&self) -> (usize, usize) {
        (self.frames.held(), self.plain.len() - self.at)
    }

    /// The compression, once the stream's identifier was read.
    pub fn framing(&self) -> Option<Framing> {
        self.frames.framing()
    }

    /// Hand in the next compressed bytes.
    pub fn push(&mut self, input: &[u8]) -> Result<(), ArchiveError> {
        self.received += input.len() as u64;
        self.frames.push(input, &mut self.plain)?;
        Ok(())
    }

    /// The next whole entry, if all of it has arrived.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ArchiveError> {
        if !self.magic {
            if self.plain.len() - self.at < MAGIC.len() {
                return Ok(None);
            }
            if &self.plain[self.at..self.at + MAGIC.len()] != MAGIC {
                // Named when it is the reference's older tar format: its
                // first header's magic is 257 bytes in.
                let plain = &self.plain[self.at..];
                if plain.len() < TAR_MAGIC_AT + TAR_MAGIC.len() {
                    return Ok(None);
                }
                if plain[TAR_MAGIC_AT..].starts_with(TAR_MAGIC) {
                    return Err(ArchiveError::TarBackup);
                }
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
    use std::io::Read;

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
        assert_eq!(&bytes[..10], b"\xff\x06\x00\x00sNaPpY");
        let mut plain = Vec::new();
        snap::read::FrameDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        let mut want = MAGIC.to_vec();
        want.extend_from_slice(&[1, 1, 0xac, 0x02, 0, 1, b'a', b'z']);
        want.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert_eq!(plain, want);
    }

    /// A backup nats-server 2.15 made of a file stream and of a memory
    /// stream (`testdata/`): 12 messages on `f.>` / `m.>`, every third
    /// with a header `X-N`, 2, 5 and 12 deleted, a durable `C` with 5
    /// delivered and 3 of them acked.
    #[test]
    fn the_reference_s2_backups_read_whole() {
        for (bytes, subject) in [
            (
                &include_bytes!("testdata/nats-server-file-stream.backup")[..],
                "f",
            ),
            (
                &include_bytes!("testdata/nats-server-memory-stream.backup")[..],
                "m",
            ),
        ] {
            for piece in [1, 100, bytes.len()] {
                let mut reader = ArchiveReader::new(1 << 20);
                let mut entries = Vec::new();
                for chunk in bytes.chunks(piece) {
                    reader.push(chunk).unwrap();
                    while let Some(entry) = reader.next_entry().unwrap() {
                        entries.push(entry);
                    }
                }
                assert_eq!(reader.framing(), Some(Framing::S2));
                assert_eq!(entries.len(), 1 + 1 + 9 + 1, "{subject} in {piece}");
                assert_eq!(entries[0].name, b"state.json");
                let state: serde_json::Value =
                    serde_json::from_slice(entries[0].payload()).unwrap();
                assert_eq!(state["messages"], 9);
                assert_eq!(state["consumer_count"], 1);
                assert_eq!(entries[1].name, b"consumers/C");
                let consumer: serde_json::Value =
                    serde_json::from_slice(entries[1].payload()).unwrap();
                let state = &consumer["state"];
                assert_eq!(state["delivered"]["stream_seq"], 7, "{consumer}");
                assert_eq!(state["ack_floor"]["stream_seq"], 3, "{consumer}");
                let pending: Vec<&String> = state["pending"].as_object().unwrap().keys().collect();
                assert_eq!(pending, ["4", "7"]);
                let messages = &entries[2..11];
                let seqs: Vec<u64> = messages.iter().map(|e| e.sequence).collect();
                assert_eq!(seqs, [1, 3, 4, 6, 7, 8, 9, 10, 11]);
                for entry in messages {
                    let i = entry.sequence;
                    assert_eq!(entry.name, format!("{subject}.{}", i % 4).as_bytes());
                    let mut payload = format!("m{i} ").into_bytes();
                    payload.resize(payload.len() + 7 * i as usize, b'y');
                    assert_eq!(entry.payload(), payload.as_slice());
                    assert_eq!(!entry.header().is_empty(), i % 3 == 0);
                    if i % 3 == 0 {
                        let header = String::from_utf8_lossy(entry.header()).into_owned();
                        assert!(header.contains(&format!("X-N: {i}\r\n")), "{header}");
                    }
                    assert!(entry.timestamp > 1_700_000_000_000_000_000);
                }
                assert!(entries[11].is_end());
            }
        }
    }

    #[test]
    fn foreign_and_damaged_input_is_refused_by_name() {
        assert_eq!(
            read_all(b"ustar\0\0\0\0\0", 10),
            Err(ArchiveError::Framing(FramingError::NotFramed))
        );
        // The reference's older format: a tar inside S2's framing.
        let mut tar = vec![0u8; 1024];
        tar[..8].copy_from_slice(b"meta.inf");
        tar[257..263].copy_from_slice(b"ustar\0");
        let block = minlz::s2::encode(&tar);
        let mut s2 = b"\xff\x06\x00\x00S2sTwO".to_vec();
        let len = block.len() + 4;
        s2.extend_from_slice(&[0, len as u8, (len >> 8) as u8, 0]);
        s2.extend_from_slice(&minlz::crc::crc(&tar).to_le_bytes());
        s2.extend_from_slice(&block);
        for piece in [1, 9, s2.len()] {
            assert_eq!(read_all(&s2, piece), Err(ArchiveError::TarBackup));
        }
        // A damaged reference backup is refused, wherever the damage.
        let reference = include_bytes!("testdata/nats-server-file-stream.backup");
        for at in (10..reference.len()).step_by(7) {
            let mut bad = reference.to_vec();
            bad[at] ^= 0x21;
            assert!(read_all(&bad, 64).is_err(), "flip at {at}");
        }
        // A Snappy stream of something else.
        let mut encoder = snap::write::FrameEncoder::new(Vec::new());
        encoder.write_all(&[0u8; 512]).unwrap();
        let zeros = encoder.into_inner().unwrap();
        assert_eq!(read_all(&zeros, 7), Err(ArchiveError::NotArchive));
        // A flipped byte in a frame fails its checksum.
        let mut writer = ArchiveWriter::new();
        writer.entry(b"state.json", 0, 0, b"", b"{}");
        writer.finish();
        let mut bytes = writer.take(usize::MAX);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(matches!(
            read_all(&bytes, 5),
            Err(ArchiveError::Framing(FramingError::BadFrame(_)))
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
