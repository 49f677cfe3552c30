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
pub mod cluster;
pub mod connz;
pub mod events;
pub mod query;
pub mod subsz;
pub mod varz;

pub use crate::server::{
    ClosedConnection, ClosedRing, HostStats, MonitorState, DEFAULT_MAX_CLOSED_CLIENTS,
};
pub use crate::time::Clock;
pub use accountz::{accountz, accstatz, AccountStatz, Accountz, UnknownAccount};
pub use cluster::{gatewayz, leafz, routez};
pub use connz::{connz, ConnInfo, Connz, SubDetail};
pub use query::{
    ConnState, ConnzOptions, QueryError, RoutezOptions, SortOpt, SubszOptions,
    DEFAULT_CONN_LIST_SIZE,
};
pub use subsz::{subsz, Subsz};
pub use varz::{varz, Varz};

use serde::Serialize;

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
