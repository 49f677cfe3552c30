//! Every error the server sends a client, as one typed enum.
//!
//! Role: the server decides *which* error a client gets ([`ServerError`]);
//! its `Display` is the one place that turns it into the exact text
//! nats-server puts inside `-ERR '...'`. Client bytes (subjects, queue names,
//! sids) are quoted there with Go's `%q` ([`go_quote`]), so no control byte
//! a client managed to put in a subject ever reaches the wire raw.
//!
//! Invariant: the text of every variant is one line (no `\r` or `\n`);
//! `protocol::write_err` asserts it again when it frames the error.
//!
//! The JetStream API error table (JSON `{code, err_code, description}`) will
//! live beside this one.

use core::fmt;

use crate::format::go_quote;
use crate::protocol::ParseError;

/// An error a client is told about with `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad or missing credentials, or anything but CONNECT before it when
    /// authentication is required.
    AuthorizationViolation,
    /// No CONNECT within the authentication timeout.
    AuthenticationTimeout,
    /// The user JWT the client logged in with expired.
    UserAuthenticationExpired,
    /// The account revoked the user JWT the client logged in with.
    UserAuthenticationRevoked,
    /// The client's account was deleted (or expired).
    AccountAuthenticationExpired,
    /// The account's JWT `conn` limit was reached.
    MaxAccountConnectionsExceeded,
    /// The client answered none of `ping_max` PINGs.
    StaleConnection,
    /// `max_connections` connections were already open.
    MaxConnectionsExceeded,
    /// The client already holds `max_subscriptions` subscriptions.
    MaxSubscriptionsExceeded,
    /// CONNECT named a protocol version this server does not speak.
    InvalidClientProtocol,
    /// CONNECT asked for no-responders without headers.
    NoRespondersRequiresHeaders,
    /// A pedantic client published to a subject with wildcards or empty tokens.
    InvalidPublishSubject,
    /// SUB with a subject that is not a valid subscription subject.
    InvalidSubject,
    /// A publish its permissions (or a reserved prefix) refuse.
    PublishViolation { subject: Vec<u8> },
    /// A publish whose reply subject is reserved for the server.
    PublishReplyViolation { reply: Vec<u8> },
    /// A subscription its permissions refuse.
    SubscribeViolation {
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
    },
    /// A subscription a reloaded configuration no longer permits: removed.
    SubscriptionRemoved {
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
        sid: Vec<u8>,
    },
    /// A protocol error found by the parser that the reference reports.
    Protocol(&'static str),
}

impl ServerError {
    /// The `-ERR` a parser error earns, if the reference sends one (some
    /// close the connection silently).
    pub fn from_parse(error: &ParseError) -> Option<ServerError> {
        error.wire_error().map(ServerError::Protocol)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::AuthorizationViolation => f.write_str("Authorization Violation"),
            ServerError::AuthenticationTimeout => f.write_str("Authentication Timeout"),
            ServerError::UserAuthenticationExpired => f.write_str("User Authentication Expired"),
            ServerError::UserAuthenticationRevoked => f.write_str("User Authentication Revoked"),
            ServerError::AccountAuthenticationExpired => {
                f.write_str("Account Authentication Expired")
            }
            ServerError::MaxAccountConnectionsExceeded => {
                f.write_str("maximum account active connections exceeded")
            }
            ServerError::StaleConnection => f.write_str("Stale Connection"),
            ServerError::MaxConnectionsExceeded => f.write_str("maximum connections exceeded"),
            ServerError::MaxSubscriptionsExceeded => f.write_str("maximum subscriptions exceeded"),
            ServerError::InvalidClientProtocol => f.write_str("invalid client protocol"),
            ServerError::NoRespondersRequiresHeaders => {
                f.write_str("no responders requires headers support")
            }
            ServerError::InvalidPublishSubject => f.write_str("Invalid Publish Subject"),
            ServerError::InvalidSubject => f.write_str("Invalid Subject"),
            ServerError::PublishViolation { subject } => {
                write!(
                    f,
                    "Permissions Violation for Publish to {}",
                    go_quote(subject)
                )
            }
            ServerError::PublishReplyViolation { reply } => write!(
                f,
                "Permissions Violation for Publish with Reply of {}",
                go_quote(reply)
            ),
            ServerError::SubscribeViolation { subject, queue } => {
                subscription_violation(f, subject, queue.as_deref())
            }
            ServerError::SubscriptionRemoved {
                subject,
                queue,
                sid,
            } => {
                subscription_violation(f, subject, queue.as_deref())?;
                write!(f, " (sid {})", go_quote(sid))
            }
            ServerError::Protocol(text) => f.write_str(text),
        }
    }
}

/// `Permissions Violation for Subscription to "<subject>"[ using queue "<queue>"]`.
fn subscription_violation(
    f: &mut fmt::Formatter<'_>,
    subject: &[u8],
    queue: Option<&[u8]>,
) -> fmt::Result {
    write!(
        f,
        "Permissions Violation for Subscription to {}",
        go_quote(subject)
    )?;
    if let Some(queue) = queue {
        write!(f, " using queue {}", go_quote(queue))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_bytes_are_quoted_as_go_does() {
        // Texts checked against nats-server v2.15.1 (a raw `\r` in a PUB
        // subject or reply comes back escaped).
        let error = ServerError::PublishViolation {
            subject: b"$NRG.a\rb".to_vec(),
        };
        assert_eq!(
            error.to_string(),
            r#"Permissions Violation for Publish to "$NRG.a\rb""#
        );
        let error = ServerError::PublishReplyViolation {
            reply: b"$JS.ACK.\xff".to_vec(),
        };
        assert_eq!(
            error.to_string(),
            r#"Permissions Violation for Publish with Reply of "$JS.ACK.\xff""#
        );
        let error = ServerError::SubscriptionRemoved {
            subject: b"foo".to_vec(),
            queue: Some(b"q".to_vec()),
            sid: b"2".to_vec(),
        };
        assert_eq!(
            error.to_string(),
            r#"Permissions Violation for Subscription to "foo" using queue "q" (sid "2")"#
        );
    }

    #[test]
    fn no_text_spans_lines() {
        let nasty = b"a\r\nb".to_vec();
        let errors = [
            ServerError::PublishViolation {
                subject: nasty.clone(),
            },
            ServerError::PublishReplyViolation {
                reply: nasty.clone(),
            },
            ServerError::SubscribeViolation {
                subject: nasty.clone(),
                queue: Some(nasty.clone()),
            },
            ServerError::SubscriptionRemoved {
                subject: nasty.clone(),
                queue: Some(nasty.clone()),
                sid: nasty,
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains(['\r', '\n']), "{text}");
        }
    }
}
