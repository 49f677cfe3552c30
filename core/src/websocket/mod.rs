//! WebSocket clients (RFC 6455), sans-I/O: the HTTP upgrade
//! ([`handshake`]) and the framing ([`frame`]). The runtime owns the
//! listener, TLS and the sockets; after the upgrade it hands the machine an
//! ordinary client connection (`ListenerKind::WebSocket`) and runs the
//! framing on both directions of it:
//!
//! ```text
//!   socket bytes ──► FrameDecoder ──► NATS bytes ──► Server::handle_read
//!        ▲                └─► ControlEvent (ping, close) ──► control frames
//!        └── frame_header + Server::take_outbound batch (one binary frame)
//! ```
//!
//! [`WebSocketConfig`] is the listener's configuration as the machine
//! needs it: INFO's host and port, `/varz`'s `websocket` section, and the
//! upgrade policy.

pub mod compress;
pub mod frame;
pub mod handshake;

use std::time::Duration;

use crate::runtime::CloseReason;

/// The reference's default host for the websocket listener.
pub const DEFAULT_HOST: &str = "0.0.0.0";

/// The websocket listener as configured (`websocket { }`), with the port it
/// was bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSocketConfig {
    pub host: String,
    /// The bound port (a configured -1 is resolved by the runtime).
    pub port: u16,
    pub advertise: Option<String>,
    /// The listener speaks TLS (`wss://`).
    pub tls: bool,
    /// `no_tls: true` was configured.
    pub no_tls: bool,
    pub same_origin: bool,
    pub allowed_origins: Vec<String>,
    /// `handshake_timeout` (zero: not set).
    pub handshake_timeout: Duration,
    pub headers: Vec<(String, String)>,
    /// `compression: true`: permessage-deflate for clients that ask.
    pub compression: bool,
}

impl WebSocketConfig {
    /// The upgrade checks this configuration asks for.
    pub fn policy(&self) -> handshake::UpgradePolicy {
        let mut policy = handshake::UpgradePolicy::new(
            self.tls,
            self.same_origin,
            &self.allowed_origins,
            self.headers.clone(),
        );
        policy.compression = self.compression;
        policy
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }
}

/// The status of the close frame sent to a websocket client the server
/// closes for `reason` (the reference's mapping); its body is the reason's
/// text.
pub fn close_status(reason: CloseReason) -> u16 {
    use frame::status;
    match reason {
        CloseReason::ClientClosed => status::NORMAL,
        CloseReason::AuthenticationTimeout
        | CloseReason::AuthenticationViolation
        | CloseReason::SlowConsumerPendingBytes
        | CloseReason::SlowConsumerWriteDeadline
        | CloseReason::MaxConnectionsExceeded
        | CloseReason::MaxControlLineExceeded
        | CloseReason::MaxSubscriptionsExceeded => status::POLICY_VIOLATION,
        CloseReason::TlsHandshakeFailure => status::TLS_HANDSHAKE,
        CloseReason::ProtocolViolation => status::PROTOCOL_ERROR,
        CloseReason::MaxPayloadExceeded => status::MESSAGE_TOO_BIG,
        CloseReason::ServerShutdown => status::GOING_AWAY,
        CloseReason::WriteError | CloseReason::ReadError | CloseReason::StaleConnection => {
            status::ABNORMAL
        }
    }
}

/// The whole close frame for a server-side close.
pub fn close_frame_for(reason: CloseReason) -> Vec<u8> {
    let payload = frame::close_payload(close_status(reason), reason.as_str());
    frame::control_frame(frame::Opcode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_carry_the_references_status_and_reason() {
        assert_eq!(
            close_frame_for(CloseReason::AuthenticationViolation),
            [&[0x88, 24, 0x03, 0xf0][..], b"Authentication Failure"].concat()
        );
        assert_eq!(close_status(CloseReason::ServerShutdown), 1001);
        assert_eq!(close_status(CloseReason::MaxPayloadExceeded), 1009);
        assert_eq!(close_status(CloseReason::StaleConnection), 1006);
    }
}
