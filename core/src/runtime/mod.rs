//! The runtime interface: how a core machine meets the world.
//!
//! A machine never calls out. The runtime (tokio in production, the simulator
//! in tests) feeds it events by calling its `handle_*` methods, each carrying
//! the current [`Instant`](crate::time::Instant), and then drains the actions
//! the machine queued with `poll_action`. Timers follow the quinn-proto shape:
//! the machine reports its earliest deadline with `poll_timeout`, and the
//! runtime calls `handle_timeout(now)` once that time has come.
//!
//! ```text
//! Event (a handle_* call)              Action (poll_action)
//!   accept(conn, peer, listener)         Transmit(conn): outbound bytes are ready
//!   read(conn, bytes)                    Close{conn, reason}: flush, then close
//!   written(conn, n)
//!   closed(conn)
//!   timeout(now)
//! ```
//!
//! Outbound bytes stay in the machine's per-connection buffer until the
//! runtime takes them (`take_outbound`) and reports how many it wrote
//! (`handle_written`), so the machine always knows the bytes pending per
//! connection: that is what slow-consumer detection is measured against.
//! Disk I/O will join the same way: `Action::Disk{tag, ..}` out, and a
//! `handle_disk_done(tag, result)` completion back in.

mod contract;
mod timers;

pub use contract::ContractCheck;
pub use timers::{TimerKey, TimerTable};

use core::fmt;

/// Names one client connection for the life of the process; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cid:{}", self.0)
    }
}

/// Which listener accepted a connection: what kind of peer it is, and so
/// which machine speaks with it. Route, leaf-node and gateway listeners join
/// here, each handing its connections to its own machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerKind {
    /// The client port (`-p`, `port`): the NATS client protocol.
    #[default]
    Client,
    /// The websocket port (`websocket { }`): the NATS client protocol inside
    /// WebSocket frames, which the runtime removes and adds
    /// (`crate::websocket`); the machine sees an ordinary client.
    WebSocket,
    /// The route port (`cluster { }`): another server of the cluster,
    /// speaking the route protocol (`crate::route`).
    Route,
}

impl ListenerKind {
    /// The connection type `/connz` shows.
    pub fn connz_type(self) -> &'static str {
        match self {
            ListenerKind::Client => "nats",
            ListenerKind::WebSocket => "websocket",
            ListenerKind::Route => "route",
        }
    }
}

/// Why the server closes a connection (the reference's close reasons, as shown in monitoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    ClientClosed,
    AuthenticationTimeout,
    AuthenticationViolation,
    /// The user JWT expired.
    AuthenticationExpired,
    /// The account revoked the user JWT.
    Revocation,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    StaleConnection,
    ProtocolViolation,
    MaxPayloadExceeded,
    MaxControlLineExceeded,
    MaxConnectionsExceeded,
    /// The account's JWT `conn` limit was reached.
    MaxAccountConnectionsExceeded,
    MaxSubscriptionsExceeded,
    ReadError,
    WriteError,
    ServerShutdown,
    /// A second route to a server already routed to (or to itself).
    DuplicateRoute,
    /// A route from another cluster.
    ClusterNameConflict,
    /// The runtime's TLS handshake with the client failed or timed out.
    TlsHandshakeFailure,
}

impl CloseReason {
    /// Whether the runtime should close without flushing (the peer is not reading).
    pub fn skips_flush(self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline
        )
    }

    /// The reason as nats-server names it in `/connz` (`reason` field).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::AuthenticationExpired => "Authentication Expired",
            CloseReason::Revocation => "Credentials Revoked",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            CloseReason::MaxSubscriptionsExceeded => "Maximum Subscriptions Exceeded",
            CloseReason::ReadError => "Read Error",
            CloseReason::WriteError => "Write Error",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::DuplicateRoute => "Duplicate Route",
            CloseReason::ClusterNameConflict => "Cluster Name Conflict",
            CloseReason::TlsHandshakeFailure => "TLS Handshake Failure",
        }
    }
}

/// What a machine asks its runtime to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// `conn` has bytes in its outbound buffer: take them with `take_outbound`
    /// and write them. Queued at most once per connection until taken.
    Transmit(ConnId),
    /// `conn`'s CONNECT needs a bcrypt password check, which costs tens of
    /// milliseconds: take it with `Server::take_password_check`, run it
    /// where it blocks nothing else (`PasswordCheck::run` on a blocking
    /// pool), and report with `Server::handle_password_checked`. Until then
    /// the server parses nothing more from `conn` (a runtime should stop
    /// reading it; what arrives meanwhile is kept, up to a bound).
    CheckPassword(ConnId),
    /// Write whatever is still outbound for `conn`, then close it. No further
    /// input for `conn` will be accepted. For a slow consumer nothing more can
    /// be written: close at once, abandoning any write in progress.
    Close { conn: ConnId, reason: CloseReason },
}

impl Action {
    /// The connection the action is about.
    pub fn conn(&self) -> ConnId {
        match *self {
            Action::Transmit(conn) | Action::CheckPassword(conn) | Action::Close { conn, .. } => {
                conn
            }
        }
    }
}
