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

use crate::auth::AuthConfig;
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
    /// `ping_interval` (zero: not set, the top-level one applies).
    pub ping_interval: Duration,
    pub headers: Vec<(String, String)>,
    /// `compression: true`: permessage-deflate for clients that ask.
    pub compression: bool,
    /// `authorization { user, password, token, timeout }` and
    /// `no_auth_user` of the block.
    pub auth: WebSocketAuth,
    /// Cookie names whose values stand in for CONNECT's missing
    /// credentials (`user_cookie`, `pass_cookie`, `token_cookie`,
    /// `jwt_cookie`).
    pub cookies: CookieNames,
}

/// The websocket block's own credentials. As in the reference, setting a
/// user, a token or `no_auth_user` overrides the top-level single user,
/// token and `no_auth_user` for websocket clients; the users and nkeys
/// lists stay the top-level ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSocketAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub no_auth_user: Option<String>,
    /// The block's `authorization { timeout }`.
    pub timeout: Option<Duration>,
}

impl WebSocketAuth {
    /// The reference's `authOverride`.
    pub fn overrides(&self) -> bool {
        let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
        set(&self.user) || set(&self.token) || set(&self.no_auth_user)
    }

    /// The authentication websocket clients get when [`Self::overrides`].
    pub fn auth_config(&self, global: &AuthConfig) -> AuthConfig {
        let mut auth = match (&self.token, &self.user) {
            (Some(token), _) if !token.is_empty() => AuthConfig::token(token.clone()),
            (_, Some(user)) if !user.is_empty() => {
                AuthConfig::single_user(user.clone(), self.password.clone().unwrap_or_default())
            }
            _ => AuthConfig::default(),
        };
        auth.users = global.users.clone();
        auth.nkeys = global.nkeys.clone();
        auth.default_permissions = global.default_permissions.clone();
        auth.no_auth_user = self.no_auth_user.clone().filter(|u| !u.is_empty());
        auth
    }
}

/// `user_cookie`, `pass_cookie`, `token_cookie`, `jwt_cookie` (the last
/// only in operator mode: start-up refuses it otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieNames {
    pub user: Option<String>,
    pub pass: Option<String>,
    pub jwt: Option<String>,
    pub token: Option<String>,
}

/// Credentials a websocket client's upgrade request carried in cookies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieCredentials {
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
    pub jwt: Option<String>,
}

/// What the machine keeps of a websocket client's upgrade request
/// (`Server::handle_accept_websocket`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSession {
    pub cookies: CookieCredentials,
    /// The first `X-Forwarded-For` value when it is one IP address, as
    /// sent: the reference names the client `<it>/<peer>` in its log
    /// lines (monitoring keeps the peer's address).
    pub forwarded_for: Option<String>,
}

impl CookieCredentials {
    /// Fills what a CONNECT left out, as the reference does.
    pub fn fill(&self, options: &mut crate::protocol::ConnectOptions) {
        let empty = |value: &Option<String>| value.as_deref().is_none_or(str::is_empty);
        if empty(&options.user) && self.user.is_some() {
            options.user = self.user.clone();
        }
        if empty(&options.pass) && self.pass.is_some() {
            options.pass = self.pass.clone();
        }
        if empty(&options.auth_token) && self.token.is_some() {
            options.auth_token = self.token.clone();
        }
        if empty(&options.jwt) && self.jwt.is_some() {
            options.jwt = self.jwt.clone();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.pass.is_none() && self.token.is_none() && self.jwt.is_none()
    }
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
        policy.cookies = self.cookies.clone();
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
        | CloseReason::AuthenticationExpired
        | CloseReason::Revocation
        | CloseReason::SlowConsumerPendingBytes
        | CloseReason::SlowConsumerWriteDeadline
        | CloseReason::MaxConnectionsExceeded
        | CloseReason::MaxAccountConnectionsExceeded
        | CloseReason::MaxControlLineExceeded
        | CloseReason::MaxSubscriptionsExceeded => status::POLICY_VIOLATION,
        CloseReason::TlsHandshakeFailure => status::TLS_HANDSHAKE,
        CloseReason::ProtocolViolation => status::PROTOCOL_ERROR,
        // Route reasons; a websocket client never gets them.
        CloseReason::DuplicateRoute | CloseReason::ClusterNameConflict => status::POLICY_VIOLATION,
        CloseReason::MaxPayloadExceeded => status::MESSAGE_TOO_BIG,
        // 1006 must never be sent in a close frame: the reference sends
        // "going away" for a broken or stale connection too.
        CloseReason::ServerShutdown
        | CloseReason::WriteError
        | CloseReason::ReadError
        | CloseReason::StaleConnection => status::GOING_AWAY,
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
        // Never 1006 on the wire (RFC 6455 7.4.1): the reference says "going away".
        assert_eq!(close_status(CloseReason::StaleConnection), 1001);
        assert_eq!(close_status(CloseReason::Revocation), 1008);
    }
}
