//! What the server keeps for monitoring beyond its routing state.
//!
//! Role: plain data the step driver owns and the monitoring pages read:
//! the ring of closed connections, HTTP request counts, the host facts and
//! the latest wall-clock reading the runtime handed in. Nothing here reads
//! a clock or the OS.

use std::collections::BTreeMap;

use super::closed::{ClosedRing, DEFAULT_MAX_CLOSED_CLIENTS};
use crate::time::{Clock, Instant, WallTime};

/// What the process looks like to the operating system, sampled by the
/// runtime (core cannot ask): resident memory in bytes, CPU use in percent
/// of one core, and the cores available.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostStats {
    pub mem: u64,
    pub cpu: f64,
    pub cores: u32,
}

/// Monitoring state the server machine keeps for the endpoints.
#[derive(Debug, Clone)]
pub struct MonitorState {
    /// Recently closed connections (`/connz?state=closed`).
    pub closed: ClosedRing,
    /// Requests per HTTP endpoint path (`/varz` `http_req_stats`).
    pub http_requests: BTreeMap<String, u64>,
    pub host: HostStats,
    /// The runtime's latest wall-clock reading and the instant it was taken.
    pub wall: Clock,
    /// Wall time of the first reading: when the server started.
    pub started: WallTime,
    /// Wall time of the last (re)load of the configuration.
    pub config_loaded: WallTime,
}

impl Default for MonitorState {
    fn default() -> Self {
        MonitorState {
            closed: ClosedRing::new(DEFAULT_MAX_CLOSED_CLIENTS),
            http_requests: BTreeMap::new(),
            host: HostStats::default(),
            wall: Clock {
                now: Instant::ZERO,
                wall_now: WallTime::default(),
            },
            started: WallTime::default(),
            config_loaded: WallTime::default(),
        }
    }
}

impl MonitorState {
    /// The clock at monotonic `now`, carried forward from the latest reading.
    pub fn clock(&self, now: Instant) -> Clock {
        let elapsed = now.as_nanos().saturating_sub(self.wall.now.as_nanos());
        Clock {
            now,
            wall_now: WallTime::from_unix_nanos(
                self.wall.wall_now.as_unix_nanos().saturating_add(elapsed),
            ),
        }
    }
}
