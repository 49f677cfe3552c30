//! Pacing of a consumer's deliveries: `replay_policy: original` and
//! `rate_limit_bps`.
//!
//! Role: before a message goes out, say whether it must wait and until
//! when. The reference sleeps in its delivery loop with the message in
//! hand; here the consumer holds its next delivery (that message, by
//! stream sequence) until an instant on the monotonic clock the runtime
//! hands in (a timer like the others), then sends it first, without
//! asking again.
//!
//! - Replay original: from the second delivery on, a message waits the gap
//!   between its stored timestamp and that of the message delivered before
//!   it (any delivery, redeliveries included), when the gap is over a
//!   millisecond. Only while replaying: from start-up until the consumer
//!   first runs out of work having passed the stream's last sequence of
//!   start-up; from then on it delivers at once.
//! - Rate limit: a token bucket of bytes (`rate_limit_bps / 8` per second,
//!   starting full) whose size, the burst, is the stream's `max_msg_size`
//!   or else the largest payload. A delivery counts its subject, ack reply,
//!   headers and payload. One larger than the burst can never be taken:
//!   the consumer stops delivering, as the reference's does; with a rate
//!   under one byte a second the bucket never refills.
//!
//! Invariant: at most one hold; while it lasts nothing is delivered.

use std::time::Duration;

use crate::time::{Instant, WallTime};

/// Gaps this short are not waited for (the reference's threshold).
const REPLAY_MIN_GAP: Duration = Duration::from_millis(1);

/// A token bucket of bytes, as `golang.org/x/time/rate` keeps one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second (0: the burst is all there ever is).
    rate: u64,
    /// The bucket's size; with a rate of 0, what is left of it.
    burst: u64,
    tokens: f64,
    /// When `tokens` was last brought up to date (`None`: never; full).
    last: Option<Instant>,
}

/// What a reservation gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Send after this long (zero: now).
    After(Duration),
    /// The bucket can never hold this much: never.
    Never,
}

impl TokenBucket {
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst as f64,
            last: None,
        }
    }

    /// Take `size` bytes at `now`, going into debt if needed: how long
    /// until the debt is paid.
    pub fn reserve(&mut self, size: u64, now: Instant) -> Reserved {
        if self.rate == 0 {
            if size > self.burst {
                return Reserved::Never;
            }
            self.burst -= size;
            return Reserved::After(Duration::ZERO);
        }
        if size > self.burst {
            return Reserved::Never;
        }
        let mut tokens = self.tokens;
        if let Some(last) = self.last {
            // An earlier `now` than the last adds nothing, as in the
            // reference.
            tokens += now.saturating_duration_since(last).as_secs_f64() * self.rate as f64;
        }
        tokens = tokens.min(self.burst as f64) - size as f64;
        self.tokens = tokens;
        self.last = Some(now);
        if tokens >= 0.0 {
            return Reserved::After(Duration::ZERO);
        }
        Reserved::After(Duration::from_secs_f64(-tokens / self.rate as f64))
    }
}

/// The pacing state of one consumer.
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    /// Replaying at the original pace, until the consumer runs out of work
    /// past this stream sequence (the stream's last at start-up).
    replay_through: Option<u64>,
    /// The stored timestamp of the message delivered last (since start-up).
    last_ts: Option<WallTime>,
    limiter: Option<TokenBucket>,
    /// The next delivery, of the message at this stream sequence, waits
    /// until then.
    hold: Option<(Instant, u64)>,
    /// The hold of this message ended: it goes next, without being paced
    /// again (the reference sends the message it slept with).
    released: Option<u64>,
    /// A delivery the limiter can never allow: nothing goes out any more.
    stalled: bool,
}

/// What pacing says of the message at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Go,
    /// Wait (a hold is set; see [`Pacing::deadline`]).
    Wait,
}

impl Pacing {
    /// Pacing for a consumer starting (or restarting) now: `replay` with
    /// the stream's last sequence, a limit of `rate` bytes a second and
    /// `burst`.
    pub fn new(replay: Option<u64>, limit: Option<(u64, u64)>) -> Pacing {
        Pacing {
            replay_through: replay,
            limiter: limit.map(|(rate, burst)| TokenBucket::new(rate, burst)),
            ..Pacing::default()
        }
    }

    /// A changed rate limit (a consumer update) starts a new, full bucket.
    pub fn set_limit(&mut self, limit: Option<(u64, u64)>) {
        self.limiter = limit.map(|(rate, burst)| TokenBucket::new(rate, burst));
    }

    /// Whether the message stored at `ts`, `size` bytes on the wire, may
    /// go now.
    pub fn pace(&mut self, seq: u64, ts: WallTime, size: u64, now: Instant) -> Pace {
        if self.stalled {
            return Pace::Wait;
        }
        self.release(now);
        if self.hold.is_some() {
            return Pace::Wait;
        }
        if self.released.take().is_some() {
            return Pace::Go;
        }
        let mut wait = Duration::ZERO;
        if let (Some(_), Some(last)) = (self.replay_through, self.last_ts) {
            let gap = Duration::from_nanos(ts.0.saturating_sub(last.0));
            if gap > REPLAY_MIN_GAP {
                wait = gap;
            }
        }
        if let Some(limiter) = self.limiter.as_mut() {
            match limiter.reserve(size, now + wait) {
                Reserved::After(more) => wait += more,
                Reserved::Never => {
                    self.stalled = true;
                    return Pace::Wait;
                }
            }
        }
        if wait.is_zero() {
            return Pace::Go;
        }
        self.hold = Some((now + wait, seq));
        Pace::Wait
    }

    /// Time passed: a hold that ended becomes a release, so that it is no
    /// deadline any more even if nothing can be sent now.
    pub fn release(&mut self, now: Instant) {
        if let Some((until, seq)) = self.hold.filter(|&(until, _)| until <= now) {
            debug_assert!(until <= now);
            self.hold = None;
            self.released = Some(seq);
        }
    }

    /// A message stored at `ts` went out.
    pub fn delivered(&mut self, ts: WallTime) {
        self.last_ts = Some(ts);
    }

    /// The consumer ran out of work with `next_seq` the next stream
    /// sequence to look at: replay ends once that is past the stream's
    /// last sequence of start-up.
    pub fn idle(&mut self, next_seq: u64) {
        if self.replay_through.is_some_and(|last| next_seq > last) {
            self.replay_through = None;
        }
    }

    /// When a held delivery may go.
    pub fn deadline(&self) -> Option<Instant> {
        self.hold.filter(|_| !self.stalled).map(|(until, _)| until)
    }

    /// Whether a delivery is being held (the reference's loop is asleep:
    /// no heartbeats go out meanwhile).
    pub fn holding(&self) -> bool {
        self.hold.is_some() || self.stalled
    }

    /// The message whose hold ended, to be sent next.
    pub fn released(&self) -> Option<u64> {
        self.released
    }

    pub fn replaying(&self) -> bool {
        self.replay_through.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    #[test]
    fn bucket_starts_full_then_paces() {
        let mut bucket = TokenBucket::new(1000, 500);
        assert_eq!(bucket.reserve(400, at(0)), Reserved::After(Duration::ZERO));
        // 100 left: 300 more is a debt of 200 bytes, 200 ms at 1000 B/s.
        assert_eq!(
            bucket.reserve(300, at(0)),
            Reserved::After(Duration::from_millis(200))
        );
        // At 200 ms the debt is paid; another 100 costs 100 ms more.
        assert_eq!(
            bucket.reserve(100, at(200)),
            Reserved::After(Duration::from_millis(100))
        );
        assert_eq!(bucket.reserve(501, at(10_000)), Reserved::Never);
    }

    #[test]
    fn zero_rate_allows_the_burst_once() {
        let mut bucket = TokenBucket::new(0, 100);
        assert_eq!(bucket.reserve(60, at(0)), Reserved::After(Duration::ZERO));
        assert_eq!(bucket.reserve(60, at(1_000_000)), Reserved::Never);
        assert_eq!(bucket.reserve(40, at(1)), Reserved::After(Duration::ZERO));
    }

    #[test]
    fn replay_waits_the_gaps_then_stops_when_caught_up() {
        let mut pacing = Pacing::new(Some(3), None);
        let ts = |millis: u64| WallTime(millis * 1_000_000);
        // The first delivery never waits.
        assert_eq!(pacing.pace(1, ts(1000), 10, at(0)), Pace::Go);
        pacing.delivered(ts(1000));
        // 250 ms later in the stream: held 250 ms.
        assert_eq!(pacing.pace(1, ts(1250), 10, at(5)), Pace::Wait);
        assert_eq!(pacing.deadline(), Some(at(255)));
        assert_eq!(pacing.pace(1, ts(1250), 10, at(100)), Pace::Wait);
        assert_eq!(pacing.pace(1, ts(1250), 10, at(255)), Pace::Go);
        pacing.delivered(ts(1250));
        // A gap of a millisecond or less is not waited for.
        assert_eq!(pacing.pace(1, ts(1251), 10, at(256)), Pace::Go);
        pacing.delivered(ts(1251));
        pacing.idle(3);
        assert!(pacing.replaying());
        pacing.idle(4);
        assert!(!pacing.replaying());
        assert_eq!(pacing.pace(1, ts(9000), 10, at(300)), Pace::Go);
    }
}
