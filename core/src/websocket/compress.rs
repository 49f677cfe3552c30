//! permessage-deflate (RFC 7692) as nats-server v2.15.1 negotiates it:
//! `server_no_context_takeover; client_no_context_takeover`, so every
//! message is compressed and decompressed on its own.
//!
//! Input: a compressed message's payload in pieces (unmasked) for the
//! [`Inflater`]; an outbound batch's bytes for the [`Deflater`]. Output:
//! the NATS bytes, or one compressed frame payload.
//!
//! Invariants:
//! - The inflater produces at most the output budget it is given per call
//!   and reports what it consumed, so a small message that inflates to a lot
//!   (a compression bomb) is produced piece by piece, each piece handed to
//!   the client parser (which bounds what it keeps) before the next.
//! - Both sides start every message from an empty dictionary.

use bytes::Buf;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The sync-flush marker a sender strips from each message's end and a
/// receiver puts back (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The reference compresses only batches longer than this.
pub const COMPRESS_THRESHOLD: usize = 64;

/// Output produced per inflate step.
const STEP: usize = 16 * 1024;

/// Decompresses client messages.
pub struct Inflater {
    inner: Decompress,
    /// The message held a final deflate block: what follows it in the
    /// message is ignored, as the reference's reader ignores it.
    ended: bool,
    /// Scratch space for one inflate step's output.
    step: Box<[u8; STEP]>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.inner.total_in())
            .finish()
    }
}

impl Clone for Inflater {
    /// A fresh inflater: state is never shared between connections.
    fn clone(&self) -> Self {
        Inflater::new()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

/// A compressed message that does not inflate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compressed data")]
pub struct InflateError;

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            inner: Decompress::new(false),
            ended: false,
            step: Box::new([0; STEP]),
        }
    }

    /// Inflates from `input` into `out` until `input` is used up or `out`
    /// grew by `budget` bytes; returns how many input bytes were consumed.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut bytes::BytesMut,
        budget: usize,
    ) -> Result<usize, InflateError> {
        if self.ended {
            return Ok(input.len());
        }
        let mut consumed = 0;
        let mut produced = 0;
        while produced < budget {
            let room = STEP.min(budget - produced).max(1);
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(
                    &input[consumed..],
                    &mut self.step[..room],
                    FlushDecompress::None,
                )
                .map_err(|_| InflateError)?;
            let used = (self.inner.total_in() - before_in) as usize;
            let made = (self.inner.total_out() - before_out) as usize;
            out.extend_from_slice(&self.step[..made]);
            consumed += used;
            produced += made;
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(input.len());
            }
            if used == 0 && made == 0 {
                break;
            }
            if consumed == input.len() && made < room {
                break;
            }
        }
        debug_assert!(consumed <= input.len());
        Ok(consumed)
    }

    /// Ends a message: the stripped tail goes in (whatever it flushes out is
    /// appended to `out`) and the dictionary is dropped for the next one.
    pub fn finish(&mut self, out: &mut bytes::BytesMut) -> Result<(), InflateError> {
        if self.ended {
            self.ended = false;
            self.inner.reset(false);
            return Ok(());
        }
        let mut tail: &[u8] = &TAIL;
        // The tail makes the inflater flush what it still holds: at most its
        // window, so this loop is bounded.
        for _ in 0..64 {
            let consumed = self.inflate(tail, out, STEP)?;
            tail = &tail[consumed..];
            if tail.is_empty() {
                break;
            }
        }
        self.inner.reset(false);
        Ok(())
    }
}

/// Compresses server messages.
pub struct Deflater {
    inner: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish()
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

impl Deflater {
    pub fn new() -> Self {
        // Best speed, as the reference compresses.
        Deflater {
            inner: Compress::new(Compression::fast(), false),
        }
    }

    /// One message's compressed payload (the tail stripped) from all of
    /// `input`, which is consumed chunk by chunk (an outbound batch is
    /// compressed where it lies, not copied out first).
    pub fn deflate(&mut self, mut input: impl Buf) -> Vec<u8> {
        let mut out = Vec::new();
        while input.has_remaining() {
            let chunk = input.chunk();
            let n = chunk.len();
            self.feed(chunk, FlushCompress::None, &mut out);
            input.advance(n);
        }
        self.feed(&[], FlushCompress::Sync, &mut out);
        self.inner.reset();
        debug_assert!(out.ends_with(&TAIL));
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    }

    fn feed(&mut self, mut input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.inner.total_in();
            let before_out = out.len();
            // In-memory compression cannot fail: an error is a bug.
            self.inner
                .compress_vec(input, out, flush)
                .expect("deflate into memory");
            let used = (self.inner.total_in() - before_in) as usize;
            input = &input[used..];
            // Done when the input is in and the flush left spare room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces_and_without_context() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        let message = b"PUB subject 11\r\nhello world\r\n".repeat(50);
        for _ in 0..3 {
            let compressed = deflater.deflate(Buf::chain(&message[..100], &message[100..]));
            assert!(compressed.len() < message.len() / 4);
            let mut out = bytes::BytesMut::new();
            for piece in compressed.chunks(7) {
                let mut rest = piece;
                while !rest.is_empty() {
                    let used = inflater.inflate(rest, &mut out, 64).unwrap();
                    rest = &rest[used..];
                }
            }
            inflater.finish(&mut out).unwrap();
            assert_eq!(&out[..], &message[..]);
        }
    }

    #[test]
    fn a_bomb_comes_out_one_budget_at_a_time() {
        let bomb = Deflater::new().deflate(&vec![b'a'; 4 << 20][..]);
        assert!(bomb.len() < (4 << 20) / 100, "{}", bomb.len());
        let mut inflater = Inflater::new();
        let mut out = bytes::BytesMut::new();
        let used = inflater.inflate(&bomb, &mut out, 100_000).unwrap();
        assert!(out.len() <= 100_000);
        assert!(used < bomb.len(), "input left for the next step");
        assert!(Inflater::new().inflate(&[0xff; 10], &mut out, 10).is_err());
    }
}
