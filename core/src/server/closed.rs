//! A bounded ring of recently closed client connections, for `/connz?state=closed`.
//!
//! Role: remember what a connection looked like when it closed (counters,
//! subscriptions, the close reason) after the server machine has forgotten it.
//! Inputs: one [`ClosedConnection`] per close, pushed by the server. Output:
//! the entries, oldest first.
//!
//! Invariants:
//! - `len() <= capacity()`: once full, each push drops the oldest entry,
//!   as nats-server does with `max_closed_clients` (default 10000).
//! - A capacity of 0 keeps nothing (the reference's `max_closed_clients: 0`).

use std::collections::VecDeque;

use super::client::{Client, ClientStats};
use crate::runtime::{CloseReason, ConnId};
use crate::time::{Clock, WallTime};

/// nats-server's default `max_closed_clients`.
pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;

/// What `/connz` reports about a connection that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedConnection {
    pub cid: ConnId,
    pub listener: crate::runtime::ListenerKind,
    pub ip: String,
    pub port: u16,
    pub start: WallTime,
    pub stop: WallTime,
    pub last_activity: WallTime,
    pub stats: ClientStats,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub account: String,
    pub user: Option<String>,
    /// Subjects of its subscriptions at close time (for `subs=1`).
    pub subscriptions: Vec<String>,
    pub rtt: Option<core::time::Duration>,
    pub reason: CloseReason,
    /// What its user JWT said, kept as the reference keeps it: the JWT (not
    /// a bearer one), its signer, its tags, its name.
    pub jwt: Option<JwtFacts>,
}

/// The parts of a closed client's user JWT that `/connz` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtFacts {
    /// `None` for a bearer token (never shown).
    pub token: Option<String>,
    pub issuer_key: String,
    pub tags: Vec<String>,
    pub name: String,
}

impl JwtFacts {
    /// What `connect_jwt` (a CONNECT's `jwt`) says, when it decodes.
    pub fn of(connect_jwt: Option<&str>) -> Option<JwtFacts> {
        let user = crate::auth::jwt::decode_user(connect_jwt?).ok()?;
        Some(JwtFacts {
            token: (!user.nats.bearer_token).then(|| user.token.clone()),
            issuer_key: user.claims.issuer,
            tags: user.nats.tags,
            name: user.claims.name,
        })
    }
}

/// Recently closed connections, bounded.
#[derive(Debug, Clone)]
pub struct ClosedRing {
    entries: VecDeque<ClosedConnection>,
    capacity: usize,
}

impl ClosedRing {
    pub fn new(capacity: usize) -> Self {
        ClosedRing {
            // Grow on demand: most servers never fill 10000 entries.
            entries: VecDeque::new(),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, entry: ClosedConnection) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        debug_assert!(self.entries.len() <= self.capacity);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ClosedConnection> + '_ {
        self.entries.iter()
    }

    pub fn get(&self, cid: ConnId) -> Option<&ClosedConnection> {
        self.entries.iter().find(|entry| entry.cid == cid)
    }
}

/// What the ring keeps of `conn`, read just before the runtime reports it
/// closed (`Server::handle_closed` forgets the client). A connection the
/// server did not decide to close was closed by its peer: "Client Closed".
pub(crate) fn closed_connection(
    client: &Client,
    conn: ConnId,
    account: &str,
    clock: Clock,
) -> ClosedConnection {
    ClosedConnection {
        cid: conn,
        listener: client.listener,
        ip: client.peer.ip().to_string(),
        port: client.peer.port(),
        start: clock.wall(client.accepted_at),
        stop: clock.wall_now,
        last_activity: clock.wall(client.last_in.unwrap_or(client.accepted_at)),
        stats: client.stats,
        name: non_empty(&client.options.name),
        lang: non_empty(&client.options.lang),
        version: non_empty(&client.options.version),
        account: account.to_owned(),
        user: client.user.clone(),
        subscriptions: if client.is_closing() {
            client
                .closed_subjects
                .iter()
                .map(|subject| String::from_utf8_lossy(subject).into_owned())
                .collect()
        } else {
            client
                .subs
                .values()
                .map(|sub| String::from_utf8_lossy(&sub.subject).into_owned())
                .collect()
        },
        rtt: client.rtt,
        reason: client.closing.unwrap_or(CloseReason::ClientClosed),
        jwt: JwtFacts::of(client.options.jwt.as_deref()),
    }
}

/// A CONNECT field as monitoring reports it: absent when empty.
pub(crate) fn non_empty(text: &Option<String>) -> Option<String> {
    text.as_ref().filter(|t| !t.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cid: u64) -> ClosedConnection {
        ClosedConnection {
            cid: ConnId(cid),
            listener: crate::runtime::ListenerKind::Client,
            ip: "127.0.0.1".into(),
            port: 4000,
            start: WallTime::from_unix_nanos(cid),
            stop: WallTime::from_unix_nanos(cid + 1),
            last_activity: WallTime::from_unix_nanos(cid),
            stats: ClientStats::default(),
            name: None,
            lang: None,
            version: None,
            account: "$G".into(),
            user: None,
            subscriptions: Vec::new(),
            rtt: None,
            reason: CloseReason::ClientClosed,
            jwt: None,
        }
    }

    #[test]
    fn ring_drops_the_oldest_when_full() {
        let mut ring = ClosedRing::new(3);
        for cid in 1..=5 {
            ring.push(entry(cid));
        }
        assert_eq!(ring.len(), 3);
        let cids: Vec<u64> = ring.iter().map(|e| e.cid.0).collect();
        assert_eq!(cids, vec![3, 4, 5]);
        assert!(ring.get(ConnId(2)).is_none());
        assert!(ring.get(ConnId(4)).is_some());
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut ring = ClosedRing::new(0);
        ring.push(entry(1));
        assert!(ring.is_empty());
    }
}
