//! Routes: links to the other servers of the cluster, a part beside the
//! router.
//!
//! Role: one [`RouteConn`] per route connection (its parser, outbound
//! bytes, handshake state and the peer's interest), kept by
//! [`Connections`](super::Connections) beside the clients so routes share
//! the outbound, timer and close paths; and the [`Dialer`], which owns the
//! explicit routes (and the implicit ones gossip names): which address to
//! dial next, how often it failed, when to retry (a `TimerKey::RouteDial`
//! deadline). The driver's handlers are in `route_ops.rs`.
//!
//! Pooling, as nats-server v2.15.1: a peer is reached over `pool_size`
//! connections (the larger of both sides' sizes), each in a slot
//! (`RouteConn::pool_idx`); an account's interest and messages go over the
//! slot `pool_index(pool_size, name)` picks, so both servers of a mixed
//! cluster agree. A pinned account has a connection of its own
//! (`RouteConn::account`) whose lines leave the account out. A peer that
//! does not pool (no `route_pool_size`, or ours is negative) gets one
//! connection carrying every account (`RouteConn::no_pool`).
//!
//! Invariants:
//! - A route's remote subscriptions are in the Sublists exactly while the
//!   route is open and registered; `subs` and `by_key` describe the same set.
//! - At most one registered route per (remote server id, slot), a slot
//!   being a pool index or a pinned account.
//! - A dial is in flight (`Dial::pending`), connected (`conn`), or waiting
//!   for its retry timer, never two of these at once.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;

use super::accounts::AccountId;
use super::client::ClientStats;
use super::client::SubKey;
use super::outbound::Outbound;
use crate::auth::PermissionChecker;
use crate::protocol::ParserLimits;
use crate::route::{RouteInfo, RouteParser};
use crate::runtime::CloseReason;
use crate::time::Instant;

/// How long a route connection may take to send its CONNECT and INFO
/// (the reference's default cluster `auth_timeout`).
pub const DEFAULT_ROUTE_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest interval between a route's PINGs (the reference caps a
/// longer `ping_interval` to this for routes).
pub const MAX_ROUTE_PING_INTERVAL: Duration = Duration::from_secs(30);

/// The first retry of a failed dial comes after this; each failure doubles
/// it up to [`MAX_DIAL_BACKOFF`] (the reference retries every second).
const FIRST_DIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(2);

/// With `connect_backoff`, as the reference: the first retry after a
/// second, each failure doubling it up to 30 s.
const FIRST_CONNECT_BACKOFF: Duration = Duration::from_secs(1);
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Failed dials in a row after which an implicit route (one gossip named)
/// is given up, when `connect_retries` does not allow more: about a minute
/// at the backoff above. The reference tries an implicit route once more
/// and then waits for gossip, so a mesh learned by gossip stays split after
/// a partition between two servers that only learned of each other; rnats
/// redials long enough to ride out such a partition.
const IMPLICIT_DIAL_ATTEMPTS: u32 = 32;

/// An interest a peer announced (RS+), as filed in the Sublist.
#[derive(Debug, Clone)]
pub struct RemoteSub {
    pub account: AccountId,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    /// Queue members on the peer (1 for plain interest).
    pub weight: u32,
    /// Messages sent over the route for this interest (routez `msgs`: the
    /// first interest of the route a message matched, as the reference
    /// counts).
    pub msgs: u64,
}

/// One route connection.
pub struct RouteConn {
    pub peer: SocketAddr,
    pub parser: RouteParser,
    pub outbound: Outbound,
    pub bytes_in_flight: usize,
    pub transmit_queued: bool,
    pub closing: Option<CloseReason>,
    /// The dial redialed when it closes: the one that opened it, or one
    /// it took over from a duplicate it replaced (routez `did_solicit`).
    pub dial: Option<u64>,
    /// This server dialed it (which end's connection wins a duplicate).
    pub dialed: bool,
    /// Its slot among the peer's pooled connections (0 when unpooled).
    pub pool_idx: Option<usize>,
    /// The pinned account whose dedicated route this is.
    pub account: Option<String>,
    /// The peer does not pool: every account goes over this one.
    pub no_pool: bool,
    /// Dial the peer's next pool slot when the peer answers our PING (so
    /// credentials it refuses do not open a connection per slot).
    pub grow_on_pong: bool,
    /// The peer's INFO, once received: the route is registered.
    pub remote: Option<RouteInfo>,
    /// An accepted route's CONNECT has arrived (and passed).
    pub connected: bool,
    pub accepted_at: Instant,
    /// When the route last sent something.
    pub last_in: Option<Instant>,
    /// Dialed for an explicit (configured) route.
    pub configured: bool,
    pub auth_deadline: Option<Instant>,
    pub ping_deadline: Instant,
    pub pings_out: u32,
    /// When the PING being timed went out (routez `rtt`).
    pub rtt_start: Option<Instant>,
    /// The last round trip measured.
    pub rtt: Option<Duration>,
    pub subs: BTreeMap<u64, RemoteSub>,
    pub by_key: BTreeMap<super::router::InterestKey, u64>,
    next_sub: u64,
    pub stats: ClientStats,
    /// A write to it passed its deadline and it is still being written
    /// (reported once per episode, cleared when a write completes).
    pub slow: bool,
    /// The cluster's `permissions`, compiled: publish is the import side,
    /// subscribe the export side.
    pub permissions: Option<PermissionChecker>,
}

impl RouteConn {
    pub(super) fn new(peer: SocketAddr, limits: ParserLimits, now: Instant) -> Self {
        RouteConn {
            peer,
            parser: RouteParser::new(limits),
            outbound: Outbound::default(),
            bytes_in_flight: 0,
            transmit_queued: false,
            closing: None,
            dial: None,
            dialed: false,
            pool_idx: None,
            account: None,
            no_pool: false,
            grow_on_pong: false,
            remote: None,
            connected: false,
            accepted_at: now,
            last_in: None,
            configured: false,
            auth_deadline: None,
            ping_deadline: now,
            pings_out: 0,
            rtt_start: None,
            rtt: None,
            subs: BTreeMap::new(),
            by_key: BTreeMap::new(),
            next_sub: 0,
            stats: ClientStats::default(),
            permissions: None,
            slow: false,
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    pub fn pending_bytes(&self) -> usize {
        self.outbound.len() + self.bytes_in_flight
    }

    /// The remote server's id, once registered.
    pub fn remote_id(&self) -> Option<&str> {
        self.remote.as_ref().map(|info| info.server_id.as_str())
    }

    pub(super) fn next_deadline(&self) -> Instant {
        match self.auth_deadline {
            Some(auth) => auth.min(self.ping_deadline),
            None => self.ping_deadline,
        }
    }

    /// RS+: a new interest or a queue's new weight. Returns the key when
    /// the interest is new (the caller files it in the Sublist).
    pub(super) fn add_sub(
        &mut self,
        account: AccountId,
        subject: Bytes,
        queue: Option<Bytes>,
        weight: u32,
    ) -> Option<u64> {
        let key = (account, subject.clone(), queue.clone());
        if let Some(index) = self.by_key.get(&key) {
            if let Some(sub) = self.subs.get_mut(index) {
                sub.weight = weight.max(1);
            }
            return None;
        }
        let index = self.next_sub;
        self.next_sub += 1;
        self.by_key.insert(key, index);
        self.subs.insert(
            index,
            RemoteSub {
                account,
                subject,
                queue,
                weight: weight.max(1),
                msgs: 0,
            },
        );
        Some(index)
    }

    /// RS-: the interest is gone; returns it to take out of the Sublist.
    pub(super) fn remove_sub(
        &mut self,
        account: AccountId,
        subject: &Bytes,
        queue: Option<&Bytes>,
    ) -> Option<(u64, RemoteSub)> {
        let key = (account, subject.clone(), queue.cloned());
        let index = self.by_key.remove(&key)?;
        let sub = self.subs.remove(&index)?;
        Some((index, sub))
    }

    /// Every remote subscription, taken out (the route is closing).
    pub(super) fn take_subs(&mut self) -> BTreeMap<u64, RemoteSub> {
        self.by_key.clear();
        std::mem::take(&mut self.subs)
    }

    /// Whether interest and messages of `account` (its name, its pool
    /// index) go over this route.
    pub fn carries(&self, account: &str, index: usize, pinned: bool) -> bool {
        match (&self.account, self.pool_idx) {
            _ if self.no_pool => true,
            (Some(own), _) => own == account,
            (None, Some(slot)) => !pinned && slot == index,
            (None, None) => false,
        }
    }

    /// The account as written on this route's lines (none on its own).
    pub fn wire_account<'a>(&self, account: &'a str) -> Option<&'a [u8]> {
        self.account.is_none().then_some(account.as_bytes())
    }

    /// Whether this server announces its interest in `subject` over the
    /// route (the cluster's `import` permission).
    pub(super) fn imports(&mut self, subject: &[u8]) -> bool {
        self.permissions
            .as_mut()
            .is_none_or(|p| p.may_publish(subject))
    }

    /// Whether the peer's interest in `subject` (`queue`) is accepted (the
    /// cluster's `export` permission).
    pub(super) fn exports(&mut self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        self.permissions
            .as_mut()
            .is_none_or(|p| p.may_subscribe(subject, queue))
    }

    /// Whether a message on `subject` may go out for the interest filed
    /// under `index`: an export deny filters what a broader wildcard the
    /// peer was allowed carries.
    pub(super) fn may_send(&mut self, index: u64, subject: &[u8]) -> bool {
        let Some(permissions) = &mut self.permissions else {
            return true;
        };
        let Some(sub) = self.subs.get(&index) else {
            return true;
        };
        permissions.may_receive(&sub.subject, sub.queue.as_deref(), subject)
    }

    /// Send a PING whose PONG measures the round trip (unless one is
    /// being timed already).
    pub(super) fn time_ping(&mut self, now: Instant) {
        if self.rtt_start.is_none() {
            self.rtt_start = Some(now);
        }
    }

    /// A PONG arrived: the PING being timed is answered.
    pub(super) fn pong(&mut self, now: Instant) {
        self.pings_out = 0;
        if let Some(start) = self.rtt_start.take() {
            self.rtt = Some((now - start).max(Duration::from_nanos(1)));
        }
    }

    /// The weight of the queue interest filed under `key`.
    pub fn weight(&self, key: SubKey) -> u32 {
        self.subs.get(&key.index).map_or(1, |sub| sub.weight)
    }
}

/// An address the server keeps dialing: an explicit route, or one gossip
/// told it about.
#[derive(Debug, Clone)]
pub struct Dial {
    /// `host:port`.
    pub address: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Explicit (configured) routes are redialed when they close.
    pub explicit: bool,
    pub attempts: u32,
    pub pending: bool,
    pub conn: Option<crate::runtime::ConnId>,
    /// The pinned account this dial opens the dedicated route of.
    pub account: Option<String>,
    /// The `gossip_mode` of the INFO that named an implicit route, sent
    /// back in our first INFO on it.
    pub gossip_mode: u8,
}

/// The pool slot of `account` with `pool_size` pooled connections: FNV-1a
/// (32 bits) of the name modulo the size, as the reference computes it, so
/// both ends of a mixed cluster put an account on the same connection.
pub fn pool_index(pool_size: usize, account: &str) -> usize {
    if pool_size <= 1 {
        return 0;
    }
    let hash = account.bytes().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % pool_size as u32) as usize
}

/// A dial the runtime should carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest {
    pub id: u64,
    /// `host:port`.
    pub address: String,
}

/// The routes this server dials.
#[derive(Debug, Default)]
pub struct Dialer {
    pub dials: BTreeMap<u64, Dial>,
    next: u64,
    /// Dials for the runtime to start (drained by `Server::poll_dial`).
    requests: VecDeque<DialRequest>,
    /// The cluster's `connect_backoff`: retries back off to 30 s.
    pub connect_backoff: bool,
}

impl Dialer {
    /// Adds an address to dial (now); returns its id.
    pub(super) fn add(&mut self, dial: Dial) -> u64 {
        let id = self.next;
        self.next += 1;
        self.dials.insert(id, dial);
        self.start(id);
        id
    }

    /// Whether `address` is dialed already (for `account`'s pinned route,
    /// or for the pool).
    pub(super) fn knows(&self, address: &str, account: Option<&str>) -> bool {
        self.dials
            .values()
            .any(|dial| dial.address == address && dial.account.as_deref() == account)
    }

    /// Ask the runtime to dial `id` now.
    pub(super) fn start(&mut self, id: u64) {
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        assert!(
            !dial.pending && dial.conn.is_none(),
            "dial {id} started twice"
        );
        dial.pending = true;
        self.requests.push_back(DialRequest {
            id,
            address: dial.address.clone(),
        });
    }

    pub(super) fn poll(&mut self) -> Option<DialRequest> {
        self.requests.pop_front()
    }

    /// The dial failed (or its connection closed); when to try again, if
    /// at all (`connect_retries` failures in a row give an explicit route
    /// up when it is not 0; an implicit one gives up after
    /// [`IMPLICIT_DIAL_ATTEMPTS`] or `connect_retries`, whichever is more).
    pub(super) fn failed(&mut self, id: u64, now: Instant, retries: u32) -> Option<Instant> {
        let dial = self.dials.get_mut(&id)?;
        dial.pending = false;
        dial.conn = None;
        dial.attempts += 1;
        let limit = if dial.explicit {
            retries
        } else {
            retries.max(IMPLICIT_DIAL_ATTEMPTS)
        };
        if limit > 0 && dial.attempts > limit {
            self.dials.remove(&id);
            return None;
        }
        let (first, max) = if self.connect_backoff {
            (FIRST_CONNECT_BACKOFF, MAX_CONNECT_BACKOFF)
        } else {
            (FIRST_DIAL_BACKOFF, MAX_DIAL_BACKOFF)
        };
        let shift = dial.attempts.saturating_sub(1).min(8);
        let backoff = first.saturating_mul(1 << shift).min(max);
        debug_assert!(backoff >= first && backoff <= max);
        Some(now + backoff)
    }

    pub(super) fn connected(&mut self, id: u64, conn: crate::runtime::ConnId) {
        if let Some(dial) = self.dials.get_mut(&id) {
            dial.pending = false;
            dial.conn = Some(conn);
        }
    }

    /// The route of `id` registered: its failures are forgotten.
    pub(super) fn registered(&mut self, id: u64) {
        if let Some(dial) = self.dials.get_mut(&id) {
            dial.attempts = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dial(explicit: bool) -> Dial {
        Dial {
            address: "10.0.0.2:6222".to_string(),
            user: None,
            password: None,
            explicit,
            attempts: 0,
            pending: false,
            conn: None,
            account: None,
            gossip_mode: 0,
        }
    }

    /// Fails dial `id` until the dialer gives it up; returns how many
    /// failures it took (None: still dialed after `max`).
    fn failures_until_given_up(
        dialer: &mut Dialer,
        id: u64,
        retries: u32,
        max: u32,
    ) -> Option<u32> {
        let mut now = Instant::ZERO;
        for failure in 1..=max {
            match dialer.failed(id, now, retries) {
                Some(at) => {
                    assert!(at > now && at <= now + MAX_DIAL_BACKOFF);
                    now = at;
                    dialer.start(id);
                    assert_eq!(dialer.poll().map(|r| r.id), Some(id));
                }
                None => {
                    assert!(!dialer.dials.contains_key(&id));
                    return Some(failure);
                }
            }
        }
        None
    }

    #[test]
    fn explicit_routes_are_dialed_until_connect_retries_and_forever_without() {
        let mut dialer = Dialer::default();
        let id = dialer.add(dial(true));
        assert_eq!(dialer.poll().map(|r| r.id), Some(id));
        assert_eq!(failures_until_given_up(&mut dialer, id, 3, 100), Some(4));
        let id = dialer.add(dial(true));
        dialer.poll();
        assert_eq!(failures_until_given_up(&mut dialer, id, 0, 500), None);
    }

    #[test]
    fn connect_backoff_doubles_from_a_second_to_thirty() {
        let mut dialer = Dialer {
            connect_backoff: true,
            ..Dialer::default()
        };
        let id = dialer.add(dial(true));
        dialer.poll();
        let mut waits = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..7 {
            let at = dialer.failed(id, now, 0).unwrap();
            waits.push((at - now).as_secs());
            now = at;
            dialer.start(id);
            dialer.poll();
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn implicit_routes_ride_out_a_partition_then_give_up() {
        let mut dialer = Dialer::default();
        let id = dialer.add(dial(false));
        dialer.poll();
        assert_eq!(
            failures_until_given_up(&mut dialer, id, 0, 100),
            Some(IMPLICIT_DIAL_ATTEMPTS + 1)
        );
        let id = dialer.add(dial(false));
        dialer.poll();
        assert_eq!(failures_until_given_up(&mut dialer, id, 50, 100), Some(51));
        // A route that registered starts counting again.
        let id = dialer.add(dial(false));
        dialer.poll();
        for _ in 0..10 {
            dialer.failed(id, Instant::ZERO, 0);
            dialer.start(id);
            dialer.poll();
        }
        dialer.registered(id);
        assert_eq!(
            failures_until_given_up(&mut dialer, id, 0, 100),
            Some(IMPLICIT_DIAL_ATTEMPTS + 1)
        );
    }
}
