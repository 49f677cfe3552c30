//! Log lines the server machine wants written, in nats-server's wording.
//!
//! Core never writes a log itself: it queues records and the runtime drains
//! them with [`Server::take_logs`](super::Server::take_logs) and prints
//! `prefix` + `text` at `level`, as in
//! `[ERR] 127.0.0.1:5555 - cid:3 - "v1.0:go:app" - "$G/user:bob" - Publish Violation`.
//! The prefix is taken when the record is queued, so a line about a
//! connection that is gone by the time the runtime drains the queue still
//! names it.
//!
//! Invariant: the queue holds at most `MAX_QUEUED` records; a runtime that
//! never drains it (the fuzzer, say) loses the oldest, not memory.

use std::collections::VecDeque;

use crate::runtime::ConnId;

const MAX_QUEUED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    /// Protocol tracing (`-V`): only queued when the config asks for it.
    Trace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The connection the line is about.
    pub conn: Option<ConnId>,
    /// `<peer> - cid:<n>[ - "<client label>"][ - "<account>/<user label>"] - `,
    /// or empty for server-wide lines.
    pub prefix: String,
    /// Never holds a secret: callers name users, never passwords or tokens.
    pub text: String,
}

#[derive(Debug, Default)]
pub struct LogQueue {
    records: VecDeque<LogRecord>,
    dropped: u64,
}

impl LogQueue {
    /// A server-wide line.
    pub fn push(&mut self, level: LogLevel, conn: Option<ConnId>, text: String) {
        self.push_prefixed(level, conn, String::new(), text);
    }

    pub fn push_prefixed(
        &mut self,
        level: LogLevel,
        conn: Option<ConnId>,
        prefix: String,
        text: String,
    ) {
        if self.records.len() == MAX_QUEUED {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(LogRecord {
            level,
            conn,
            prefix,
            text,
        });
        debug_assert!(self.records.len() <= MAX_QUEUED);
    }

    pub fn drain(&mut self) -> impl Iterator<Item = LogRecord> + '_ {
        self.records.drain(..)
    }
}

/// How log lines name a client: `<peer> - cid:<n>` (`wid:<n>` for a
/// websocket client, as the reference writes it) and, after its first
/// CONNECT, its label (see [`client_label`]).
pub fn client_prefix(conn: ConnId, client: &super::Client) -> String {
    let id = match client.listener {
        crate::runtime::ListenerKind::Client => "cid",
        crate::runtime::ListenerKind::WebSocket => "wid",
        crate::runtime::ListenerKind::Route => "rid",
    };
    match &client.forwarded_for {
        // IPv6 in brackets, as the reference writes it.
        Some(ip) if ip.contains(':') => format!(
            "[{ip}]/{} - {id}:{}{} - ",
            client.peer, conn.0, client.log_label
        ),
        Some(ip) => format!(
            "{ip}/{} - {id}:{}{} - ",
            client.peer, conn.0, client.log_label
        ),
        None => format!("{} - {id}:{}{} - ", client.peer, conn.0, client.log_label),
    }
}

/// A route's log prefix, as the reference writes it: `<peer> - rid:<n> - `.
pub fn route_prefix(conn: ConnId, peer: core::net::SocketAddr) -> String {
    format!("{peer} - rid:{} - ", conn.0)
}

/// The part of a client's log prefix its first CONNECT settles, as the
/// reference builds it: `"v<version>:<lang>:<name>"` (the parts it sent) and
/// `"<account>/<user label>"` when it logged in as someone.
pub fn client_label(options: &crate::protocol::ConnectOptions, account: &str) -> String {
    fn present(text: &Option<String>) -> Option<&str> {
        text.as_deref().filter(|t| !t.is_empty())
    }
    let mut parts = Vec::new();
    if let Some(version) = present(&options.version) {
        parts.push(format!("v{version}"));
    }
    if let Some(lang) = present(&options.lang) {
        parts.push(lang.to_owned());
    }
    if let Some(name) = present(&options.name) {
        parts.push(name.to_owned());
    }
    let user = if let Some(nkey) = present(&options.nkey) {
        Some(format!("nkey:{nkey}"))
    } else if let Some(user) = present(&options.user) {
        Some(format!("user:{user}"))
    } else {
        present(&options.auth_token).map(|_| String::from("token"))
    };
    let mut label = String::new();
    if !parts.is_empty() {
        label.push_str(&format!(" - {:?}", parts.join(":")));
    }
    if let Some(user) = user {
        label.push_str(&format!(" - {:?}", format!("{account}/{user}")));
    }
    label
}
