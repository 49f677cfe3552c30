//! A connection's outbound bytes: a queue of fixed-size chunks from a
//! server-wide pool.
//!
//! Role: frames for a peer are appended here ([`OutboundSink`]) and the
//! runtime takes them all at once ([`Outbound::take`]) as an
//! [`OutboundBatch`], which it writes with vectored writes and hands back
//! ([`ChunkPool::recycle`]) once written. Chunks, not one growing buffer, so a
//! busy subscriber's backlog never reallocates (no copy of what is already
//! queued, no doubling overshoot in memory), and recycled chunks make the
//! steady state allocation-free. An idle connection holds no chunk at all.
//!
//! Invariants:
//! - `Outbound::len` is the sum of its chunks' lengths; no chunk is empty.
//! - Every chunk has capacity [`SMALL_CHUNK`] or [`LARGE_CHUNK`] and is never
//!   split, so a cleared chunk keeps its whole capacity for reuse.
//! - A frame may span chunks: readers see the batch as one byte sequence.
//! - The pool holds at most [`POOL_SMALL`] small and [`POOL_LARGE`] large
//!   chunks (and as many empty chunk lists as small chunks); the rest go back
//!   to the allocator.

use std::io::IoSlice;

use bytes::{Buf, BytesMut};

use crate::protocol::FrameSink;

/// The first chunk of an empty outbound: most connections only ever queue a
/// few small frames (INFO, PONG, a reply) at a time.
pub const SMALL_CHUNK: usize = 4 * 1024;
/// Every further chunk: large enough that a backlog is a few vectored-write
/// slices, small enough to stay below the allocator's mmap threshold.
pub const LARGE_CHUNK: usize = 64 * 1024;
/// Recycled chunks kept for reuse (at most 1 MiB).
const POOL_SMALL: usize = 256;
/// Recycled large chunks kept for reuse (at most 2 MiB).
const POOL_LARGE: usize = 32;

/// Written chunks waiting to be reused, shared by every connection.
#[derive(Debug, Default)]
pub struct ChunkPool {
    small: Vec<BytesMut>,
    large: Vec<BytesMut>,
    /// Emptied chunk lists of recycled batches (their capacity is reused too).
    lists: Vec<Vec<BytesMut>>,
}

impl ChunkPool {
    fn get(&mut self, size: usize) -> BytesMut {
        let free = if size == SMALL_CHUNK {
            &mut self.small
        } else {
            &mut self.large
        };
        let chunk = free.pop().unwrap_or_else(|| BytesMut::with_capacity(size));
        debug_assert!(chunk.is_empty() && chunk.capacity() == size);
        chunk
    }

    fn put(&mut self, mut chunk: BytesMut) {
        chunk.clear();
        let (free, limit) = match chunk.capacity() {
            SMALL_CHUNK => (&mut self.small, POOL_SMALL),
            LARGE_CHUNK => (&mut self.large, POOL_LARGE),
            // Not one of ours (cannot happen: chunks are never split); let it go.
            _ => return,
        };
        if free.len() < limit {
            free.push(chunk);
        }
    }

    /// Take back the chunks of a batch the runtime has written (or given up on).
    pub fn recycle(&mut self, mut batch: OutboundBatch) {
        for chunk in batch.chunks.drain(..) {
            self.put(chunk);
        }
        if self.lists.len() < POOL_SMALL {
            self.lists.push(batch.chunks);
        }
    }

    fn list(&mut self) -> Vec<BytesMut> {
        self.lists.pop().unwrap_or_default()
    }

    /// Chunks waiting for reuse (for tests and memory accounting).
    pub fn free_chunks(&self) -> usize {
        self.small.len() + self.large.len()
    }
}

/// Bytes queued for one peer and not yet taken by the runtime.
#[derive(Debug, Default)]
pub struct Outbound {
    chunks: Vec<BytesMut>,
    len: usize,
}

impl Outbound {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frames are appended through a sink that can draw chunks from `pool`.
    pub fn sink<'a>(&'a mut self, pool: &'a mut ChunkPool) -> OutboundSink<'a> {
        OutboundSink {
            outbound: self,
            pool,
        }
    }

    /// Everything queued, in order; the outbound is empty afterwards.
    pub fn take(&mut self) -> OutboundBatch {
        // Checked once per batch, not per append (appends are the hot path).
        debug_assert_eq!(
            self.len,
            self.chunks.iter().map(BytesMut::len).sum::<usize>()
        );
        debug_assert!(self.chunks.iter().all(|chunk| !chunk.is_empty()));
        let batch = OutboundBatch {
            remaining: self.len,
            chunks: std::mem::take(&mut self.chunks),
            index: 0,
            offset: 0,
        };
        self.len = 0;
        batch
    }

    /// Drop everything queued (a close that skips the flush).
    pub fn discard(&mut self, pool: &mut ChunkPool) {
        pool.recycle(self.take());
    }

    fn append(&mut self, mut bytes: &[u8], pool: &mut ChunkPool) {
        self.len += bytes.len();
        while !bytes.is_empty() {
            let room = self.chunks.last().map_or(0, |c| c.capacity() - c.len());
            if room == 0 {
                let size = if self.chunks.is_empty() {
                    if self.chunks.capacity() == 0 {
                        self.chunks = pool.list();
                    }
                    SMALL_CHUNK
                } else {
                    LARGE_CHUNK
                };
                self.chunks.push(pool.get(size));
                continue;
            }
            let tail = self.chunks.last_mut().expect("a chunk with room");
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            // Within capacity: never reallocates, so the chunk stays poolable.
            tail.extend_from_slice(now);
            bytes = rest;
        }
    }
}

/// Appends frames to an [`Outbound`], drawing new chunks from the pool.
pub struct OutboundSink<'a> {
    outbound: &'a mut Outbound,
    pool: &'a mut ChunkPool,
}

impl FrameSink for OutboundSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.outbound.append(bytes, self.pool);
    }

    fn written(&self) -> usize {
        self.outbound.len
    }
}

/// What the runtime takes in one go: a [`Buf`] over the chunks, so
/// `write_all_buf` writes it with vectored writes.
#[derive(Debug)]
pub struct OutboundBatch {
    chunks: Vec<BytesMut>,
    /// The chunk and offset the next unwritten byte is at.
    index: usize,
    offset: usize,
    remaining: usize,
}

impl OutboundBatch {
    /// Bytes not yet consumed through [`Buf::advance`].
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The unconsumed bytes, chunk by chunk.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks
            .iter()
            .skip(self.index)
            .enumerate()
            .map(|(i, chunk)| {
                if i == 0 {
                    &chunk[self.offset..]
                } else {
                    &chunk[..]
                }
            })
            .filter(|slice| !slice.is_empty())
    }

    /// The unconsumed bytes in one contiguous buffer (tests, the simulator,
    /// the protocol trace; the production writer never copies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.remaining);
        for slice in self.slices() {
            all.extend_from_slice(slice);
        }
        all
    }
}

impl Buf for OutboundBatch {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.slices().next().unwrap_or_default()
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a batch");
        self.remaining -= cnt;
        while cnt > 0 {
            let left = self.chunks[self.index].len() - self.offset;
            if cnt < left {
                self.offset += cnt;
                return;
            }
            cnt -= left;
            self.index += 1;
            self.offset = 0;
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, slice) in dst.iter_mut().zip(self.slices()) {
            *slot = IoSlice::new(slice);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_idle_outbound_holds_no_chunk_and_recycling_reuses_them() {
        let mut pool = ChunkPool::default();
        let mut outbound = Outbound::default();
        assert!(outbound.take().is_empty());
        outbound.sink(&mut pool).put(b"PONG\r\n");
        let batch = outbound.take();
        assert_eq!(batch.to_vec(), b"PONG\r\n");
        assert!(outbound.is_empty() && outbound.chunks.is_empty());
        pool.recycle(batch);
        assert_eq!(pool.free_chunks(), 1);
        outbound.sink(&mut pool).put(b"PING\r\n");
        assert_eq!(pool.free_chunks(), 0, "the pooled chunk was reused");
    }

    #[test]
    fn a_large_frame_spans_a_small_then_large_chunks() {
        let mut pool = ChunkPool::default();
        let mut outbound = Outbound::default();
        let frame = vec![7u8; 100 * 1024];
        outbound.sink(&mut pool).put(&frame);
        let sizes: Vec<usize> = outbound.chunks.iter().map(BytesMut::capacity).collect();
        assert_eq!(sizes, [SMALL_CHUNK, LARGE_CHUNK, LARGE_CHUNK]);
        assert_eq!(outbound.take().to_vec(), frame);
    }

    proptest! {
        /// Whatever the appends and however the writer advances (short
        /// writes included), the bytes come out exactly as appended.
        #[test]
        fn batches_carry_appended_bytes_in_order(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 0..12),
            steps in proptest::collection::vec(1usize..70_000, 1..40),
        ) {
            let mut pool = ChunkPool::default();
            let mut outbound = Outbound::default();
            let mut expected = Vec::new();
            for frame in &frames {
                outbound.sink(&mut pool).put(frame);
                expected.extend_from_slice(frame);
            }
            prop_assert_eq!(outbound.len(), expected.len());
            let mut batch = outbound.take();
            let mut written = Vec::new();
            let mut steps = steps.into_iter().cycle();
            while batch.has_remaining() {
                let mut slices = [IoSlice::new(&[]); 4];
                let filled = batch.chunks_vectored(&mut slices);
                prop_assert!(filled > 0);
                prop_assert_eq!(slices[0].as_ref(), batch.chunk());
                let mut want = steps.next().expect("cycle");
                let mut took = 0;
                for slice in &slices[..filled] {
                    let n = want.min(slice.len());
                    written.extend_from_slice(&slice[..n]);
                    took += n;
                    want -= n;
                }
                batch.advance(took);
            }
            prop_assert_eq!(written, expected);
            pool.recycle(batch);
        }
    }
}
