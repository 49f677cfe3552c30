//! Time as core sees it: numbers handed in by the runtime, never read from the OS.
//!
//! `Instant` is monotonic nanoseconds since an arbitrary origin chosen by the
//! runtime; it never goes backwards. `WallTime` is nanoseconds since the Unix
//! epoch and may jump (the simulator skews and steps it).

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the runtime's monotonic clock, in nanoseconds from its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Wall-clock time: nanoseconds since the Unix epoch, as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallTime(pub u64);

impl WallTime {
    pub fn from_unix_nanos(nanos: u64) -> Self {
        WallTime(nanos)
    }

    pub fn as_unix_nanos(self) -> u64 {
        self.0
    }
}

/// The machine's monotonic now and the wall time read at the same moment.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub wall_now: WallTime,
}

impl Clock {
    /// The wall time of a monotonic instant in the past (or `wall_now` for later ones).
    pub fn wall(&self, at: Instant) -> WallTime {
        let ago = self.now.as_nanos().saturating_sub(at.as_nanos());
        WallTime::from_unix_nanos(self.wall_now.as_unix_nanos().saturating_sub(ago))
    }

    /// The wall time at `at`, past or later (then extrapolated from the
    /// last reading): for checks against dates, such as a JWT's expiry.
    pub fn wall_at(&self, at: Instant) -> WallTime {
        let since = at.as_nanos().saturating_sub(self.now.as_nanos());
        WallTime::from_unix_nanos(self.wall(at).as_unix_nanos().saturating_add(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant(10);
        assert_eq!(t + Duration::from_nanos(5), Instant(15));
        assert_eq!(Instant(3) - t, Duration::ZERO);
        assert_eq!(t - Instant(3), Duration::from_nanos(7));
        assert_eq!(
            Instant(u64::MAX) + Duration::from_secs(1),
            Instant(u64::MAX)
        );
    }
}
