//! The simulated network: one [`Pipe`] per direction of a connection.
//!
//! A pipe carries a byte stream. Bytes written into it are cut into segments
//! at random boundaries, each arriving after the link's latency plus jitter,
//! never before the segment ahead of it (TCP's order), and never during a
//! stall. Arrived bytes wait in the receiver's buffer until it reads; reads
//! take random prefixes, so frames are split and merged at random.
//!
//! Flow control: bytes in transit plus bytes arrived and unread never exceed
//! `window` (the two kernels' buffers). A writer may put in only `room()`
//! bytes; the rest waits with the writer, which is how a reader that stops
//! reading pushes back on the server until it is a slow consumer.
//!
//! A live pipe never loses bytes; a reset kills both pipes of a connection,
//! and both ends learn of it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rnats_core::time::Instant;

/// One direction of a connection.
#[derive(Debug)]
pub struct Pipe {
    /// Segments on their way, in order; `None` is the FIN.
    pub segments: VecDeque<(Instant, Option<Bytes>)>,
    pub in_transit: usize,
    /// Arrived, not yet read.
    pub recv: BytesMut,
    /// The FIN arrived after every byte.
    pub eof: bool,
    pub fin_sent: bool,
    /// Reset: nothing more moves.
    pub dead: bool,
    /// No segment arrives before the one ahead of it.
    pub last_arrival: Instant,
    /// Segments sent during a stall arrive after it.
    pub stalled_until: Instant,
    pub window: usize,
}

impl Pipe {
    pub fn new(window: usize) -> Pipe {
        assert!(window > 0, "a pipe needs a window");
        Pipe {
            segments: VecDeque::new(),
            in_transit: 0,
            recv: BytesMut::new(),
            eof: false,
            fin_sent: false,
            dead: false,
            last_arrival: Instant::ZERO,
            stalled_until: Instant::ZERO,
            window,
        }
    }

    /// Bytes a writer may put in now.
    pub fn room(&self) -> usize {
        if self.dead || self.fin_sent {
            return 0;
        }
        self.window
            .saturating_sub(self.in_transit + self.recv.len())
    }

    /// Queue one segment (or the FIN) to arrive at `arrival` or later;
    /// returns the time it will arrive.
    pub fn push(&mut self, arrival: Instant, segment: Option<Bytes>) -> Instant {
        assert!(!self.fin_sent, "nothing is sent after the FIN");
        let arrival = arrival.max(self.last_arrival).max(self.stalled_until);
        self.last_arrival = arrival;
        if let Some(bytes) = &segment {
            self.in_transit += bytes.len();
        } else {
            self.fin_sent = true;
        }
        self.segments.push_back((arrival, segment));
        arrival
    }

    /// The segment due at `now` moves into the receive buffer. Returns
    /// whether anything arrived.
    pub fn arrive(&mut self, now: Instant) -> bool {
        if self.dead {
            return false;
        }
        match self.segments.front() {
            Some((at, _)) if *at <= now => {}
            _ => return false,
        }
        let (_, segment) = self.segments.pop_front().expect("front exists");
        match segment {
            Some(bytes) => {
                self.in_transit -= bytes.len();
                self.recv.extend_from_slice(&bytes);
            }
            None => self.eof = true,
        }
        true
    }

    /// Reset: everything in flight and unread is gone.
    pub fn kill(&mut self) {
        self.dead = true;
        self.segments.clear();
        self.in_transit = 0;
        self.recv.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_their_order_and_respect_the_window() {
        let mut pipe = Pipe::new(10);
        assert_eq!(pipe.room(), 10);
        let first = pipe.push(Instant(50), Some(Bytes::from_static(b"abc")));
        let second = pipe.push(Instant(20), Some(Bytes::from_static(b"de")));
        assert_eq!(first, Instant(50));
        assert_eq!(second, Instant(50), "never overtakes the segment ahead");
        assert_eq!(pipe.room(), 5);
        assert!(!pipe.arrive(Instant(49)));
        assert!(pipe.arrive(Instant(50)));
        assert!(pipe.arrive(Instant(50)));
        assert_eq!(&pipe.recv[..], b"abcde");
        assert_eq!(pipe.room(), 5);
        pipe.push(Instant(60), None);
        assert_eq!(pipe.room(), 0);
        assert!(pipe.arrive(Instant(60)));
        assert!(pipe.eof);
    }
}
