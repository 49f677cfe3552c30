//! The compressed stream around a backup archive: the Snappy framing
//! format (what rnats writes) or S2's framing (what nats-server writes,
//! `klauspost/compress/s2`'s `Writer`), decoded a frame at a time.
//!
//! Role: turn compressed input, handed in in pieces of any size, into the
//! archive's plain bytes; nothing about the archive itself
//! ([`super::archive`] reads that). Both framings share one layout:
//!
//! ```text
//! frame: type (1 byte) | body length (3 bytes, little endian) | body
//!   0xff  stream identifier, body "sNaPpY" (Snappy) or "S2sTwO" (S2); first,
//!         and again wherever streams were concatenated
//!   0x00  compressed data: masked CRC-32C of the data (4 bytes) | block
//!   0x01  uncompressed data: masked CRC-32C of the data (4 bytes) | data
//!   0x02..=0x7f  reserved, unskippable: an error
//!   0x80..=0xfe  skippable (S2's index 0x99, padding 0xfe): ignored
//! ```
//!
//! A Snappy frame holds at most 64 KiB of data, an S2 frame at most 4 MiB
//! (S2's largest block), and its block may use S2's extensions (repeat
//! offsets, longer copies), which the `minlz` crate's block decoder reads;
//! Snappy frames go through `snap`, as before.
//!
//! Invariants: at most one frame of compressed input is held (a frame's
//! length is checked against its framing's bound before it is buffered), a
//! block's stated decoded length is checked against the bound before it is
//! decoded, every data frame's checksum is checked before its data is
//! handed on, and any malformed input is a [`FramingError`], never a panic.

use std::fmt;
use std::io::Read;

/// The Snappy framing format's stream identifier frame.
pub(super) const SNAPPY_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";
/// S2's stream identifier body.
const S2_IDENTIFIER: &[u8; 6] = b"S2sTwO";
/// The most data one S2 frame holds (S2's `maxBlockSize`).
pub const MAX_S2_DATA: usize = 4 << 20;
/// The longest frame body taken: S2's largest block with its checksum and
/// a compressed block's worst-case growth (under 1/32 and a few bytes).
pub const MAX_FRAME: usize = MAX_S2_DATA + MAX_S2_DATA / 16;
/// The longest Snappy frame body (64 KiB and the worst-case growth).
const MAX_SNAPPY_FRAME: usize = 1 << 17;

/// Which framing the stream uses, once its identifier was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Snappy,
    S2,
}

/// Why a compressed stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// Neither framing's stream identifier first.
    NotFramed,
    /// A frame is damaged (checksum, length, block, unknown type).
    BadFrame(String),
    /// An S2 frame's data does not match its checksum (the reference's
    /// `s2.ErrCRC` text).
    S2Checksum,
    /// An S2 frame is malformed or cut (the reference's `s2.ErrCorrupt`).
    S2Corrupt,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::NotFramed => f.write_str(
                "snapshot is neither S2 (as nats-server writes) nor Snappy (as rnats writes) framed",
            ),
            FramingError::BadFrame(why) => write!(f, "snapshot damaged: {why}"),
            FramingError::S2Checksum => f.write_str("s2: corrupt input, crc mismatch"),
            FramingError::S2Corrupt => f.write_str("s2: corrupt input"),
        }
    }
}

impl std::error::Error for FramingError {}

/// Decodes a framed stream incrementally.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Compressed input not yet a whole frame.
    held: Vec<u8>,
    framing: Option<Framing>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The framing, once the stream identifier was read.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// Compressed bytes held (part of a frame).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Hand in the next compressed bytes; the data of every whole frame is
    /// appended to `plain`. On an error, `plain` holds only the data of the
    /// frames before the bad one.
    pub fn push(&mut self, input: &[u8], plain: &mut Vec<u8>) -> Result<(), FramingError> {
        self.held.extend_from_slice(input);
        let mut used = 0;
        let result = loop {
            let frame = &self.held[used..];
            if frame.len() < 4 {
                break Ok(());
            }
            let kind = frame[0];
            let len =
                usize::from(frame[1]) | usize::from(frame[2]) << 8 | usize::from(frame[3]) << 16;
            let bound = match self.framing {
                // The first frame must be an identifier.
                None if kind != 0xff || len != 6 => break Err(FramingError::NotFramed),
                None => 6,
                Some(Framing::Snappy) => MAX_SNAPPY_FRAME,
                Some(Framing::S2) => MAX_FRAME,
            };
            if len > bound {
                break Err(FramingError::BadFrame(format!("frame of {len} bytes")));
            }
            if frame.len() < 4 + len {
                break Ok(());
            }
            if let Err(error) = self.frame(used, len, plain) {
                break Err(error);
            }
            used += 4 + len;
        };
        self.held.drain(..used);
        debug_assert!(result.is_err() || self.held.len() < 4 + MAX_FRAME);
        result
    }

    /// The whole frame at `at` in `held`, body `len` bytes.
    fn frame(&mut self, at: usize, len: usize, plain: &mut Vec<u8>) -> Result<(), FramingError> {
        let frame = &self.held[at..at + 4 + len];
        let (kind, body) = (frame[0], &frame[4..]);
        match (kind, self.framing) {
            (0xff, framing) => {
                // Concatenated streams repeat the identifier; the
                // framing may change with it.
                self.framing = Some(if body == S2_IDENTIFIER {
                    Framing::S2
                } else if body == &SNAPPY_IDENTIFIER[4..] {
                    Framing::Snappy
                } else if framing.is_none() {
                    return Err(FramingError::NotFramed);
                } else {
                    return Err(FramingError::BadFrame("unknown stream identifier".into()));
                });
            }
            (0x00 | 0x01, Some(Framing::Snappy)) => {
                // One frame behind the identifier: the crate checks its
                // checksum and decompresses it.
                let mut framed = Vec::with_capacity(SNAPPY_IDENTIFIER.len() + frame.len());
                framed.extend_from_slice(SNAPPY_IDENTIFIER);
                framed.extend_from_slice(frame);
                let mut decoder = snap::read::FrameDecoder::new(framed.as_slice());
                let before = plain.len();
                if let Err(error) = decoder.read_to_end(plain) {
                    plain.truncate(before);
                    return Err(FramingError::BadFrame(error.to_string()));
                }
            }
            (0x00 | 0x01, Some(Framing::S2)) => s2_frame(kind, body, plain)?,
            (0x02..=0x7f, _) => {
                return Err(FramingError::BadFrame(format!(
                    "reserved unskippable frame type {kind:#04x}"
                )))
            }
            // Skippable frames (S2's index among them) and padding.
            _ => {}
        }
        Ok(())
    }
}

/// One S2 data frame's body: its data appended to `plain` once its
/// checksum matched.
fn s2_frame(kind: u8, body: &[u8], plain: &mut Vec<u8>) -> Result<(), FramingError> {
    let Some((sum, block)) = body.split_first_chunk::<4>() else {
        return Err(FramingError::S2Corrupt);
    };
    let before = plain.len();
    if kind == 0x00 {
        let (len, _) = minlz::s2::decode_len(block).map_err(|_| FramingError::S2Corrupt)?;
        if len > MAX_S2_DATA {
            return Err(FramingError::S2Corrupt);
        }
        plain.resize(before + len, 0);
        if minlz::s2::decode_into(&mut plain[before..], block) != Ok(len) {
            plain.truncate(before);
            return Err(FramingError::S2Corrupt);
        }
    } else {
        // The frame's bound leaves room for a little more than a block.
        if block.len() > MAX_S2_DATA {
            return Err(FramingError::S2Corrupt);
        }
        plain.extend_from_slice(block);
    }
    if minlz::crc::crc(&plain[before..]) != u32::from_le_bytes(*sum) {
        plain.truncate(before);
        return Err(FramingError::S2Checksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of S2's framing around `data`, with `minlz` as the reference
    /// writer (byte for byte Go's `s2.Encode`).
    fn s2_stream(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = b"\xff\x06\x00\x00S2sTwO".to_vec();
        for data in parts {
            let block = minlz::s2::encode(data);
            let (kind, body) = if block.len() < data.len() {
                (0x00, block)
            } else {
                (0x01, data.to_vec())
            };
            let len = body.len() + 4;
            out.extend_from_slice(&[kind, len as u8, (len >> 8) as u8, (len >> 16) as u8]);
            out.extend_from_slice(&minlz::crc::crc(data).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    fn read(bytes: &[u8], piece: usize) -> Result<Vec<u8>, FramingError> {
        let mut reader = FrameReader::new();
        let mut plain = Vec::new();
        for chunk in bytes.chunks(piece) {
            reader.push(chunk, &mut plain)?;
        }
        // A frame left unfinished: the stream was cut (or its length
        // damaged, which reads the same until the end).
        if reader.held() > 0 {
            return Err(FramingError::BadFrame("cut".into()));
        }
        Ok(plain)
    }

    #[test]
    fn s2_frames_decode_in_pieces_of_any_size() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let stream = s2_stream(&[b"NATSARC1", &big, &noise, b""]);
        let mut want = b"NATSARC1".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(&noise);
        for piece in [1, 7, 4096, stream.len()] {
            assert_eq!(read(&stream, piece).unwrap(), want, "piece {piece}");
        }
        let mut reader = FrameReader::new();
        reader.push(&stream[..10], &mut Vec::new()).unwrap();
        assert_eq!(reader.framing(), Some(Framing::S2));
    }

    #[test]
    fn damaged_s2_frames_are_refused() {
        let stream = s2_stream(&[b"NATSARC1 and some more bytes, more bytes, more bytes"]);
        // Every single flipped bit after the identifier is caught.
        for at in 10..stream.len() {
            let mut bad = stream.clone();
            bad[at] ^= 0x08;
            assert!(read(&bad, 5).is_err(), "flip at {at}");
        }
        // A block that claims more than S2 allows is refused unread.
        let mut huge = b"\xff\x06\x00\x00S2sTwO\x00\x09\x00\x00\0\0\0\0".to_vec();
        huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x10, 0]);
        assert_eq!(read(&huge, 64), Err(FramingError::S2Corrupt));
        // The reference's texts for its own format's damage.
        let mut bad = stream.clone();
        // The first data frame's checksum, after the identifier and the
        // frame's own header.
        bad[14] ^= 1;
        let error = read(&bad, 64).unwrap_err();
        assert_eq!(error.to_string(), "s2: corrupt input, crc mismatch");
        assert_eq!(read(b"ustar\0\0\0\0\0", 3), Err(FramingError::NotFramed));
        let reserved = b"\xff\x06\x00\x00S2sTwO\x05\x00\x00\x00";
        assert!(matches!(read(reserved, 3), Err(FramingError::BadFrame(_))));
        // Skippable frames (S2's index) are passed over.
        let mut skipped = s2_stream(&[b"one"]);
        skipped.extend_from_slice(b"\x99\x02\x00\x00ab");
        skipped.extend_from_slice(&s2_stream(&[b"two"])[10..]);
        assert_eq!(read(&skipped, 2).unwrap(), b"onetwo");
    }
}
