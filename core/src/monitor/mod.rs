//! HTTP monitoring data: what `/connz`, `/healthz` (and later `/varz`, `/subsz`, ...)
//! report, built from the server machine plus facts the runtime hands in.
//!
//! Role: pure functions and plain data. Nothing here reads a clock or a socket;
//! the runtime parses nothing itself, it passes the raw query string to
//! [`ConnzOptions::from_query`] and serializes what comes back.
//!
//! Invariants:
//! - Query errors carry the reference's exact response text (nats-server
//!   v2.15.1 answers 400 with that text as the body); it is produced only in
//!   the `Display` of [`QueryError`].
//! - The ring of closed connections never holds more than its capacity.

pub mod accountz;
pub mod closed;
pub mod cluster;
pub mod connz;
pub mod events;
pub mod query;
pub mod subsz;
pub mod varz;

pub use crate::time::Clock;
pub use accountz::{accountz, accstatz, AccountStatz, Accountz, UnknownAccount};
pub use closed::{ClosedConnection, ClosedRing, DEFAULT_MAX_CLOSED_CLIENTS};
pub use cluster::{gatewayz, leafz, routez};
pub use connz::{closed_connection, connz, ConnInfo, Connz, SubDetail};
pub use query::{
    ConnState, ConnzOptions, QueryError, SortOpt, SubszOptions, DEFAULT_CONN_LIST_SIZE,
};
pub use subsz::{subsz, Subsz};
pub use varz::{varz, Varz};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::time::{Instant, WallTime};

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

/// `/healthz` body when the server is healthy (nats-server prints `{"status":"ok"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthz {
    pub status: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    pub status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(value: &u16) -> bool {
    *value == 0
}

impl Healthz {
    /// Without JetStream or clustering there is nothing that can be unhealthy
    /// once the server accepts connections.
    pub fn ok() -> Self {
        Healthz {
            status: "ok",
            status_code: 0,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_ok_is_the_reference_body() {
        let body = serde_json::to_string(&Healthz::ok()).unwrap();
        assert_eq!(body, r#"{"status":"ok"}"#);
    }
}
