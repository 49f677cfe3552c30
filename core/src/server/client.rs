//! One client connection's state inside the server machine.
//!
//! A `Client` owns its protocol parser, the options its CONNECT set, its
//! subscriptions and its outbound buffer. It does no routing itself: the
//! [`Server`](super::Server) reads and writes these fields while it routes.
//!
//! Invariants:
//! - `bytes_in_flight` counts bytes handed to the runtime and not yet reported
//!   written; `pending_bytes()` (outbound + in flight) is what the slow-consumer
//!   limit is measured against.
//! - `sids` and `subs` describe the same set: every sid maps to a live index.
//! - `sids` is hashed (fixed seed) and only ever looked up, never iterated;
//!   `subs` iterates in subscription order (ascending index), which is what
//!   monitoring and reload see.
//! - Once `closing` is set, nothing more is queued and nothing more is parsed.

use bytes::Bytes;
use core::net::SocketAddr;

pub use super::accounts::SubKey;
use super::accounts::{AccountId, GLOBAL};
use super::outbound::Outbound;
use crate::auth::{PermissionChecker, ResponseTracker};
use crate::protocol::{ClientParser, ConnectOptions, ParserLimits};
use crate::runtime::CloseReason;
use crate::subject::hash::FixedMap;
use crate::time::Instant;

/// Before its first PONG, a client gets no RTT PING until this long after
/// it connected (the reference's `maxNoRTTPingBeforeFirstPong`).
pub(super) const MAX_NO_RTT_PING_BEFORE_FIRST_PONG: core::time::Duration =
    core::time::Duration::from_secs(2);

/// A subscription as its owner made it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    pub sid: Bytes,
    /// Auto-unsubscribe after this many deliveries; 0 means no limit.
    pub max: u64,
    /// Messages delivered so far.
    pub delivered: u64,
}

/// A client's subscriptions by index, in index order.
///
/// Indices are handed out in increasing order and never reused, so new
/// entries are appended and the index column stays sorted: a lookup is a
/// binary search over a dense `u64` column (8 bytes per entry, cache
/// friendly), not a walk through B-tree nodes, and an entry costs its record
/// plus 8 bytes instead of a B-tree leaf slot about half full.
///
/// Invariants: `indices` is strictly increasing and as long as `records`;
/// `records[i]` is `None` (a removed entry) for exactly `holes` positions,
/// and holes never outnumber live entries once there are more than a few
/// (a removal that would break this compacts both columns).
#[derive(Debug, Default)]
pub struct SubTable {
    indices: Vec<u64>,
    records: Vec<Option<Subscription>>,
    holes: usize,
}

impl SubTable {
    /// Live subscriptions.
    pub fn len(&self) -> usize {
        self.records.len() - self.holes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `index` lives, if it is live. Every delivery asks this, and with
    /// 100,000 subscriptions a binary search is 17 cache misses, so first
    /// try where the index would sit if no index below it were gone.
    #[inline]
    fn position(&self, index: u64) -> Option<usize> {
        let first = *self.indices.first()?;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        // Strictly increasing indices: indices[k] >= first + k, so `index`
        // is at `offset` or before it.
        let bound = offset.min(self.indices.len() - 1);
        let at = if self.indices[bound] == index {
            bound
        } else {
            self.indices[..bound].binary_search(&index).ok()?
        };
        self.records[at].is_some().then_some(at)
    }

    pub fn get(&self, index: &u64) -> Option<&Subscription> {
        let at = self.position(*index)?;
        self.records[at].as_ref()
    }

    pub fn get_mut(&mut self, index: &u64) -> Option<&mut Subscription> {
        let at = self.position(*index)?;
        self.records[at].as_mut()
    }

    /// Stores `sub` under `index`, which must not be live. Appending (an index
    /// above every stored one) is the normal case and O(1); anything else
    /// (not done by the server today) is an O(n) insert.
    pub fn insert(&mut self, index: u64, sub: Subscription) {
        debug_assert!(self.indices.len() == self.records.len());
        match self.indices.last() {
            Some(&last) if last >= index => match self.indices.binary_search(&index) {
                Ok(at) => {
                    assert!(self.records[at].is_none(), "index {index} already live");
                    self.records[at] = Some(sub);
                    self.holes -= 1;
                }
                Err(at) => {
                    self.indices.insert(at, index);
                    self.records.insert(at, Some(sub));
                }
            },
            _ => {
                self.indices.push(index);
                self.records.push(Some(sub));
            }
        }
    }

    pub fn remove(&mut self, index: &u64) -> Option<Subscription> {
        let at = self.position(*index)?;
        let sub = self.records[at].take();
        self.holes += 1;
        // Trailing holes go at once (unsubscribing the newest is common);
        // inner ones when they outnumber the live entries, which keeps the
        // compaction's cost amortized O(1) per removal.
        while self.records.last().is_some_and(Option::is_none) {
            self.records.pop();
            self.indices.pop();
            self.holes -= 1;
        }
        if self.holes > 8 && self.holes > self.len() {
            self.compact();
        }
        debug_assert!(self.indices.len() == self.records.len());
        sub
    }

    fn compact(&mut self) {
        let mut live = 0;
        for at in 0..self.records.len() {
            if self.records[at].is_some() {
                self.records.swap(live, at);
                self.indices[live] = self.indices[at];
                live += 1;
            }
        }
        self.records.truncate(live);
        self.indices.truncate(live);
        self.records.shrink_to_fit();
        self.indices.shrink_to_fit();
        self.holes = 0;
    }

    pub fn clear(&mut self) {
        *self = SubTable::default();
    }

    /// `(index, subscription)` in ascending index order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Subscription)> + '_ {
        self.indices
            .iter()
            .zip(&self.records)
            .filter_map(|(index, record)| Some((index, record.as_ref()?)))
    }

    /// Ascending.
    pub fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.iter().map(|(index, _)| index)
    }

    /// In ascending index order.
    pub fn values(&self) -> impl Iterator<Item = &Subscription> + '_ {
        self.iter().map(|(_, sub)| sub)
    }
}

impl<'t> IntoIterator for &'t SubTable {
    type Item = (&'t u64, &'t Subscription);
    type IntoIter = Box<dyn Iterator<Item = (&'t u64, &'t Subscription)> + 't>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl IntoIterator for SubTable {
    type Item = (u64, Subscription);
    type IntoIter = std::iter::FilterMap<
        std::iter::Zip<std::vec::IntoIter<u64>, std::vec::IntoIter<Option<Subscription>>>,
        fn((u64, Option<Subscription>)) -> Option<(u64, Subscription)>,
    >;

    /// In ascending index order.
    fn into_iter(self) -> Self::IntoIter {
        self.indices
            .into_iter()
            .zip(self.records)
            .filter_map(|(index, record)| Some((index, record?)))
    }
}

/// Counters reported by monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

pub struct Client {
    pub peer: SocketAddr,
    /// The listener that accepted it (a websocket client is framed by the
    /// runtime; monitoring and INFO tell the two apart).
    pub listener: crate::runtime::ListenerKind,
    /// A websocket client's cookie credentials (see
    /// `Server::handle_accept_websocket`).
    pub cookies: Option<Box<crate::websocket::CookieCredentials>>,
    /// A websocket client's `X-Forwarded-For` address (log prefix only).
    pub forwarded_for: Option<Box<str>>,
    pub parser: ClientParser,
    /// What the client said in CONNECT, merged over the reference's defaults
    /// (verbose, pedantic and echo on) and over any earlier CONNECT.
    pub options: ConnectOptions,
    pub connect_received: bool,
    /// The account the client is bound to: `$G` until CONNECT says otherwise.
    pub account: AccountId,
    /// The user it logged in as (name or nkey), for logs; never a secret.
    pub user: Option<String>,
    /// `None`: no restrictions.
    pub permissions: Option<PermissionChecker>,
    /// Reply subjects it may answer under `allow_responses`.
    pub responses: ResponseTracker,
    /// The nonce its INFO carried (nkey users sign it); empty if none.
    pub nonce: String,
    /// Names from its verified TLS client certificate (`verify_and_map`).
    pub cert_names: Option<Vec<String>>,
    /// The one extra INFO (with `connect_info`) a protocol-1 client gets after
    /// its first PONG has been sent.
    pub connect_info_sent: bool,
    /// Bytes queued for the peer and not yet taken by the runtime.
    pub outbound: Outbound,
    /// Bytes taken by the runtime and not yet reported written.
    pub bytes_in_flight: usize,
    /// A `Transmit` action for this connection is queued and not yet served.
    pub transmit_queued: bool,
    /// Set when the server decided to close; the entry lives on until the runtime
    /// reports the socket closed, so the last bytes (an -ERR) can still be taken.
    pub closing: Option<CloseReason>,
    pub sids: FixedMap<Bytes, u64>,
    pub subs: SubTable,
    pub next_sub_index: u64,
    pub stats: ClientStats,
    pub accepted_at: Instant,
    /// Last time the client published, changed interest or pinged: proof it is
    /// alive, so the server skips its own PING. None until then.
    pub last_in: Option<Instant>,
    /// PINGs sent without a PONG back.
    pub pings_out: u32,
    pub auth_deadline: Option<Instant>,
    /// When the user JWT it logged in with expires: the connection is
    /// closed then, as the reference does.
    pub jwt_deadline: Option<Instant>,
    /// When its account's JWT expires: the connection is closed then with
    /// `Account Authentication Expired`, as the reference's account
    /// expiry timer closes every client of the account.
    pub account_deadline: Option<Instant>,
    /// A user JWT's (and its account's) `subs` limit, beside the server's.
    pub max_subs: Option<usize>,
    pub ping_deadline: Instant,
    /// The subjects it was subscribed to when it started closing (its
    /// subscriptions are gone by then); `/connz?state=closed&subs=1` lists them.
    pub closed_subjects: Vec<Bytes>,
    /// What its first CONNECT adds to its log prefix (see `log::client_label`).
    pub log_label: String,
    /// The last measured round trip (PING sent to PONG received).
    pub rtt: Option<core::time::Duration>,
    /// When the PING whose PONG measures `rtt` was sent.
    pub rtt_start: Option<Instant>,
    /// The server answered a PING after CONNECT: the client is past its
    /// handshake, so an unsolicited PING will not confuse it.
    pub first_pong_sent: bool,
    /// A CONNECT waiting for its bcrypt password check (`Action::CheckPassword`),
    /// its auth callout answer or its account's JWT.
    pub pending_login: Option<Box<PendingLogin>>,
    /// A reload asked the auth callout about this connected client again;
    /// it keeps going under its identity until the answer (or the auth
    /// timeout, `auth_deadline`) decides.
    pub callout_recheck: Option<Box<CalloutRecheck>>,
    /// Admitted by an auth callout's answer (not by the credentials it sent).
    pub by_callout: bool,
    /// Bytes read while a login was pending, or a partial frame left after
    /// it was decided; parsed before anything read later.
    pub parked: bytes::BytesMut,
}

/// A CONNECT whose credentials wait for a password check or for the auth
/// callout service's answer.
#[derive(Debug)]
pub struct PendingLogin {
    /// The options it will be logged in with (authenticated again once the
    /// check passed: a reload in between may have changed the users).
    pub options: ConnectOptions,
    pub wait: LoginWait,
}

/// The callout request a reload sent about a connected client.
#[derive(Debug)]
pub struct CalloutRecheck {
    /// The fresh user key the answer must name.
    pub user_nkey: String,
    /// The reply subject, filed in the callout account's Sublist.
    pub inbox: Bytes,
    pub callout: Box<crate::auth::callout::AuthCallout>,
}

/// What a pending login waits for.
#[derive(Debug)]
pub enum LoginWait {
    Password(crate::auth::PasswordCheck),
    /// The callout request went out; its answer comes to `inbox`.
    Callout {
        /// The fresh user key the answer must name.
        user_nkey: String,
        /// The reply subject, filed in `account`'s Sublist.
        inbox: Bytes,
        account: super::accounts::AccountId,
        /// The callout asked (the configuration's, or an account JWT's).
        callout: Box<crate::auth::callout::AuthCallout>,
    },
    /// The URL resolver is fetching this account's JWT.
    Account(String),
}

impl Client {
    pub fn new(peer: SocketAddr, limits: ParserLimits, now: Instant) -> Self {
        Client {
            peer,
            listener: crate::runtime::ListenerKind::Client,
            cookies: None,
            forwarded_for: None,
            parser: {
                let mut parser = ClientParser::new(limits);
                // HPUB is refused until a CONNECT asks for headers.
                parser.set_headers_enabled(false);
                parser
            },
            options: ConnectOptions::default(),
            connect_received: false,
            account: GLOBAL,
            user: None,
            permissions: None,
            responses: ResponseTracker::default(),
            nonce: String::new(),
            cert_names: None,
            connect_info_sent: false,
            outbound: Outbound::default(),
            bytes_in_flight: 0,
            transmit_queued: false,
            closing: None,
            sids: FixedMap::default(),
            subs: SubTable::default(),
            next_sub_index: 0,
            stats: ClientStats::default(),
            accepted_at: now,
            last_in: None,
            pings_out: 0,
            auth_deadline: None,
            jwt_deadline: None,
            account_deadline: None,
            max_subs: None,
            ping_deadline: now,
            closed_subjects: Vec::new(),
            log_label: String::new(),
            rtt: None,
            rtt_start: None,
            first_pong_sent: false,
            pending_login: None,
            callout_recheck: None,
            by_callout: false,
            parked: bytes::BytesMut::new(),
        }
    }

    /// Bytes written by the server and not yet on the wire.
    pub fn pending_bytes(&self) -> usize {
        self.outbound.len() + self.bytes_in_flight
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// The earliest moment this client needs the server's attention.
    pub fn next_deadline(&self) -> Instant {
        [self.auth_deadline, self.jwt_deadline, self.account_deadline]
            .into_iter()
            .flatten()
            .fold(self.ping_deadline, Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn sub(n: u64) -> Subscription {
        Subscription {
            subject: Bytes::from(format!("s.{n}")),
            queue: None,
            sid: Bytes::from(n.to_string()),
            max: 0,
            delivered: n,
        }
    }

    proptest! {
        /// The table behaves like the `BTreeMap` it replaced, through appends,
        /// removals (trailing, inner, compacting) and re-inserts below the top.
        #[test]
        fn sub_table_is_a_sorted_map(ops in prop::collection::vec((0u8..4, 0u64..64), 0..400)) {
            let mut table = SubTable::default();
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            let mut next = 0u64;
            for (op, n) in ops {
                match op {
                    0 | 1 => {
                        table.insert(next, sub(next));
                        model.insert(next, next);
                        next += 1;
                    }
                    2 => {
                        let removed = table.remove(&n).map(|s| s.delivered);
                        prop_assert_eq!(removed, model.remove(&n));
                    }
                    _ => {
                        // Refiling puts back an index that was taken out.
                        if n < next && !model.contains_key(&n) {
                            table.insert(n, sub(n));
                            model.insert(n, n);
                        }
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert_eq!(table.is_empty(), model.is_empty());
                prop_assert!(table.holes <= 8 || table.holes <= table.len());
                let seen: Vec<(u64, u64)> = table.iter().map(|(i, s)| (*i, s.delivered)).collect();
                let expected: Vec<(u64, u64)> = model.iter().map(|(i, d)| (*i, *d)).collect();
                prop_assert_eq!(&seen, &expected);
                prop_assert_eq!(table.get(&n).map(|s| s.delivered), model.get(&n).copied());
            }
            let drained: Vec<u64> = table.into_iter().map(|(i, _)| i).collect();
            prop_assert!(drained.iter().copied().eq(model.keys().copied()));
        }
    }
}
