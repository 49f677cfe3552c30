//! The driver's handlers for routes: dialing, the handshake, interest
//! (RS+/RS-) both ways, routed messages in, and the route timers.
//!
//! The handshake, as nats-server v2.15.1 does it: the accepting server
//! sends its INFO at once; the dialing server sends CONNECT (its id, the
//! cluster name, the cluster credentials of the route URL) and its INFO.
//! A route is registered when the peer's INFO arrives (after a CONNECT
//! that passed, on an accepted route); then this server's local interest
//! goes out as RS+ lines, and from then on every change of local interest
//! (`Router::interest_changes`, drained at the end of each step).
//!
//! Invariants: nothing but CONNECT and INFO (and PING/PONG) is taken from
//! a route before it is registered; a routed message is delivered to
//! local subscribers only.

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use rand_chacha::rand_core::RngCore;

use super::log::{self, LogLevel};
use super::router::{Delivery, Origin};
use super::routes::{
    Dial, DialRequest, RouteConn, DEFAULT_ROUTE_AUTH_TIMEOUT, MAX_ROUTE_PING_INTERVAL,
};
use super::trace;
use super::WriteTimeoutPolicy;
use super::{Server, SubKey};
use crate::auth::PermissionChecker;
use crate::protocol::{self, ParserLimits};
use crate::route::{self as wire, GossipMode, RouteConnect, RouteInfo, RouteOp, RoutedMsg};
use crate::runtime::{CloseReason, ConnId, TimerKey};
use crate::time::Instant;

/// The route protocol version nats-server v2.15.1 announces.
const ROUTE_PROTO: i32 = 3;

impl Server {
    /// The cluster name: configured, or made up at start and replaced by
    /// the first peer's (the reference's dynamic name). Empty without a
    /// cluster.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// Whether the cluster name was made up (no `name` configured).
    pub fn cluster_name_is_dynamic(&self) -> bool {
        self.cluster_dynamic
    }

    /// The next route to dial: connect to `address`, then report with
    /// [`Server::handle_dialed`] or [`Server::handle_dial_failed`].
    pub fn poll_dial(&mut self) -> Option<DialRequest> {
        self.dialer.poll()
    }

    /// The explicit routes of the configuration, dialed once the runtime
    /// starts polling.
    pub(super) fn start_cluster(&mut self) {
        let Some(cluster) = &self.config.cluster else {
            return;
        };
        self.router.interest = Some(Default::default());
        self.router.refresh_announced();
        if cluster.name.is_empty() {
            let mut raw = [0u8; 11];
            rand_chacha::rand_core::RngCore::fill_bytes(&mut self.rng, &mut raw);
            self.cluster_name = crate::auth::encode_nonce(raw);
            self.cluster_dynamic = true;
        } else {
            self.cluster_name = cluster.name.clone();
        }
        let mut pinned = cluster.accounts.clone();
        if cluster.pool_size > 0 {
            if let Some(system) = &self.config.system_account {
                if !pinned.contains(system) {
                    pinned.push(system.clone());
                }
            }
        }
        self.pinned = pinned;
        self.dialer.connect_backoff = cluster.connect_backoff;
        let lanes: Vec<Option<String>> = std::iter::once(None)
            .chain(self.pinned.iter().cloned().map(Some))
            .collect();
        for url in cluster.routes.clone() {
            for account in &lanes {
                self.dialer.add(Dial {
                    address: url.address(),
                    user: url.user.clone(),
                    password: url.password.clone(),
                    explicit: true,
                    attempts: 0,
                    pending: false,
                    conn: None,
                    account: account.clone(),
                    gossip_mode: GossipMode::DEFAULT,
                });
            }
        }
    }

    /// Pooled connections per peer; 0: unpooled.
    fn pool_size(&self) -> usize {
        self.config
            .cluster
            .as_ref()
            .map_or(0, |c| usize::try_from(c.pool_size).unwrap_or(0))
    }

    /// The pool index and pinned-ness of account `name` on this server.
    fn account_lane(&self, name: &str) -> (usize, bool) {
        (
            super::routes::pool_index(self.pool_size(), name),
            self.pinned.iter().any(|p| p == name),
        )
    }

    /// The route dial `dial` connected as `conn`: send CONNECT and INFO.
    pub fn handle_dialed(&mut self, now: Instant, dial: u64, conn: ConnId, peer: SocketAddr) {
        self.dialer.connected(dial, conn);
        let mut route = self.new_route(peer, now);
        route.dial = Some(dial);
        route.dialed = true;
        route.configured = self.dialer.dials.get(&dial).is_some_and(|d| d.explicit);
        route.account = self.dialer.dials.get(&dial).and_then(|d| d.account.clone());
        if let Some(account) = &route.account {
            route.parser.pin(Bytes::copy_from_slice(account.as_bytes()));
        }
        // A pooled connection's INFO waits for the peer's: it names the
        // slot this server picks then. A pinned or unpooled one goes now.
        let delay_info = route.account.is_none() && self.pool_size() > 0;
        let account = route.account.clone();
        route.auth_deadline = Some(now + DEFAULT_ROUTE_AUTH_TIMEOUT);
        self.conns.insert_route(conn, route);
        let (user, pass) = self
            .dialer
            .dials
            .get(&dial)
            .map(|d| {
                (
                    d.user.clone().unwrap_or_default(),
                    d.password.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let connect = RouteConnect {
            echo: true,
            user,
            pass,
            headers: true,
            tls_required: self
                .config
                .cluster
                .as_ref()
                .is_some_and(|c| c.tls.is_some()),
            name: self.config.identity.server_id.clone(),
            cluster: self.cluster_name.clone(),
            dynamic: self.cluster_dynamic,
            ..RouteConnect::default()
        };
        let mut info = self.route_info();
        info.route_account = account.unwrap_or_default();
        info.gossip_mode = self.dial_gossip_mode(Some(dial));
        if let Some(mut sink) = self.conns.route_sink(conn) {
            wire::write_route_connect(&mut sink, &connect);
            if !delay_info {
                wire::write_route_info(&mut sink, &info);
            }
        }
        self.route_log(LogLevel::Debug, conn, "Route connect msg sent");
        self.route_log(LogLevel::Info, conn, "Route connection created");
        self.refile_route_timer(conn);
        self.finish_step(now);
    }

    /// The route dial `dial` failed (`error` says why): try again later,
    /// or give it up (`connect_retries`).
    pub fn handle_dial_failed(&mut self, now: Instant, dial: u64, error: &str) {
        if let Some(d) = self.dialer.dials.get(&dial) {
            let text = format!(
                "Error trying to connect to route (attempt {}): {error}",
                d.attempts + 1
            );
            self.logs.push(LogLevel::Debug, None, text);
        }
        self.dial_failed(now, dial);
        self.finish_step(now);
    }

    fn dial_failed(&mut self, now: Instant, dial: u64) {
        let retries = self
            .config
            .cluster
            .as_ref()
            .map_or(0, |c| c.connect_retries);
        match self.dialer.failed(dial, now, retries) {
            Some(at) => {
                // Up to 100 ms of jitter, as the reference adds, so two
                // servers whose routes crossed do not cross again.
                let jitter = Duration::from_millis(self.rng.next_u64() % 100);
                self.timers.set(TimerKey::RouteDial(dial), at + jitter)
            }
            None => self.timers.cancel(TimerKey::RouteDial(dial)),
        }
    }

    /// A dial's retry time came.
    pub(super) fn dial_timer(&mut self, dial: u64) {
        if self
            .dialer
            .dials
            .get(&dial)
            .is_some_and(|d| !d.pending && d.conn.is_none())
        {
            self.dialer.start(dial);
        }
    }

    /// A server connected to the route port: send INFO, wait for CONNECT.
    pub(super) fn accept_route(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        let timeout = self
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.auth_timeout)
            .unwrap_or(DEFAULT_ROUTE_AUTH_TIMEOUT);
        let mut route = self.new_route(peer, now);
        route.auth_deadline = Some(now + timeout);
        self.conns.insert_route(conn, route);
        let info = self.route_info();
        if let Some(mut sink) = self.conns.route_sink(conn) {
            wire::write_route_info(&mut sink, &info);
        }
        self.route_log(LogLevel::Info, conn, "Route connection created");
        self.refile_route_timer(conn);
        self.finish_step(now);
    }

    /// Bytes from route `conn`: every whole operation is handled.
    pub(super) fn read_route(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        if let Some(route) = self.conns.route_mut(conn) {
            route.last_in = Some(now);
        }
        loop {
            let Some(route) = self.conns.route_mut(conn) else {
                buf.clear();
                return;
            };
            if route.is_closing() {
                buf.clear();
                return;
            }
            match route.parser.next(buf) {
                Ok(None) => return,
                Ok(Some(op)) => {
                    if self.config.trace {
                        self.trace_route_op(conn, &op);
                    }
                    self.route_op(now, conn, op)
                }
                Err(error) => {
                    self.route_log(
                        LogLevel::Error,
                        conn,
                        &format!("Router parser ERROR: {error}"),
                    );
                    self.close(conn, CloseReason::ProtocolViolation);
                    buf.clear();
                    return;
                }
            }
        }
    }

    fn route_op(&mut self, now: Instant, conn: ConnId, op: RouteOp) {
        let registered = self.conns.route(conn).is_some_and(|r| r.remote.is_some());
        match op {
            RouteOp::Ping => {
                if let Some(mut sink) = self.conns.route_sink(conn) {
                    protocol::write_pong(&mut sink);
                }
            }
            RouteOp::Pong => {
                if let Some(route) = self.conns.route_mut(conn) {
                    route.pong(now);
                    if std::mem::take(&mut route.grow_on_pong) {
                        self.grow_pool(conn);
                    }
                }
            }
            RouteOp::Ok => {}
            RouteOp::Err(text) => {
                let text = String::from_utf8_lossy(&text).into_owned();
                self.route_log(LogLevel::Error, conn, &format!("Router Error {text}"));
                self.close(conn, CloseReason::ProtocolViolation);
            }
            RouteOp::Connect(json) => self.route_connect(conn, &json),
            RouteOp::Info(json) => self.route_info_received(now, conn, &json),
            _ if !registered => {
                // Interest or messages before the handshake ended.
                self.route_log(LogLevel::Error, conn, "Router protocol before INFO");
                self.close(conn, CloseReason::ProtocolViolation);
            }
            RouteOp::Sub {
                account,
                subject,
                queue,
            } => self.remote_sub(conn, &account, subject, queue),
            RouteOp::Unsub {
                account,
                subject,
                queue,
            } => self.remote_unsub(conn, &account, &subject, queue.as_ref()),
            RouteOp::Msg(msg) => self.routed_msg(now, conn, msg),
        }
    }

    /// An accepted route's CONNECT: the cluster credentials and name.
    fn route_connect(&mut self, conn: ConnId, json: &[u8]) {
        let Some(route) = self.conns.route(conn) else {
            return;
        };
        if route.dial.is_some() || route.connected {
            return;
        }
        let Ok(connect) = serde_json::from_slice::<RouteConnect>(json) else {
            self.route_error(conn, "Invalid CONNECT", CloseReason::ProtocolViolation);
            return;
        };
        let cluster = self.config.cluster.as_ref().expect("routes need a cluster");
        if let Some(user) = &cluster.user {
            if connect.user != *user || connect.pass != cluster.password {
                self.route_error(
                    conn,
                    "Authorization Violation",
                    CloseReason::AuthenticationViolation,
                );
                return;
            }
        }
        if !connect.cluster.is_empty() && connect.cluster != self.cluster_name {
            if self.cluster_dynamic && !connect.dynamic {
                self.adopt_cluster_name(connect.cluster);
            } else {
                self.route_error(
                    conn,
                    "Rejecting connection, cluster name conflict",
                    CloseReason::ClusterNameConflict,
                );
                return;
            }
        }
        if let Some(route) = self.conns.route_mut(conn) {
            route.connected = true;
        }
    }

    /// The peer's INFO: the first registers the route; later ones tell of
    /// other servers (gossip) or of this one's changes.
    fn route_info_received(&mut self, now: Instant, conn: ConnId, json: &[u8]) {
        let Ok(mut info) = serde_json::from_slice::<RouteInfo>(json) else {
            self.route_error(conn, "Invalid INFO", CloseReason::ProtocolViolation);
            return;
        };
        let Some(route) = self.conns.route(conn) else {
            return;
        };
        if let Some(remote) = &route.remote {
            if info.server_id != remote.server_id {
                self.implicit_route(&info);
            } else if info.ldm && !remote.ldm {
                // The peer is in lame duck mode: its client URLs leave
                // what our clients are told (and never come back).
                if let Some(remote) = self.conns.route_mut(conn).and_then(|r| r.remote.as_mut()) {
                    remote.ldm = true;
                }
                self.route_log(LogLevel::Debug, conn, "Remote server in lame duck mode");
                self.update_connect_urls();
            } else if (&remote.import, &remote.export) != (&info.import, &info.export) {
                self.peer_permissions_changed(conn, info);
            }
            return;
        }
        let (dial, dialed, connected, peer) =
            (route.dial, route.dialed, route.connected, route.peer);
        if !dialed && !connected {
            self.route_error(
                conn,
                "Authorization Violation",
                CloseReason::AuthenticationViolation,
            );
            return;
        }
        if info.server_id == self.config.identity.server_id {
            // A route to this very server (its own address in `routes`).
            if let Some(dial) = dial {
                self.dialer.dials.remove(&dial);
            }
            self.close(conn, CloseReason::DuplicateRoute);
            return;
        }
        if !info.cluster.is_empty() && info.cluster != self.cluster_name {
            if self.cluster_dynamic && !info.cluster_dynamic {
                self.adopt_cluster_name(info.cluster.clone());
            } else {
                self.close(conn, CloseReason::ClusterNameConflict);
                return;
            }
        }
        let Some(slot) = self.route_slot(conn, &info) else {
            return;
        };
        if let Some(other) = self.route_at(&info.server_id, &slot) {
            // Two connections for one slot: the registered one stays, as
            // in the reference, so a route already carrying messages is
            // never cut for a latecomer (that lost what was in flight on
            // it). When each end registered a different one first, both
            // go; the redials (jittered) settle it.
            self.close_duplicate(conn, Some(other));
            return;
        }
        if info.ip.is_empty() {
            info.ip = format!("nats-route://{}/", SocketAddr::new(peer.ip(), info.port));
        }
        let id = info.server_id.clone();
        // The first pooled (or unpooled) connection to the server.
        let first = !self.pool_route_to(&id);
        let pool = self.pool_size();
        let route = self.conns.route_mut(conn).expect("checked above");
        match &slot {
            Slot::Account(account) => {
                if !route.dialed {
                    route.parser.pin(Bytes::copy_from_slice(account.as_bytes()));
                }
                route.account = Some(account.clone());
                info.route_account = account.clone();
            }
            Slot::Pool(idx) => {
                route.pool_idx = Some(*idx);
                route.no_pool = info.route_pool_size <= 0 || pool == 0;
            }
        }
        route.remote = Some(info.clone());
        route.auth_deadline = None;
        let delayed_info = route.dialed && route.account.is_none() && pool > 0;
        let pooled = !route.no_pool && route.account.is_none();
        if let Some(dial) = dial {
            self.dialer.registered(dial);
        }
        if delayed_info {
            let mut ours = self.route_info();
            if let Slot::Pool(idx) = slot {
                ours.route_pool_idx = idx as i64;
            }
            ours.gossip_mode = self.dial_gossip_mode(dial);
            if let Some(mut sink) = self.conns.route_sink(conn) {
                wire::write_route_info(&mut sink, &ours);
            }
        }
        let text = match &slot {
            Slot::Account(account) => format!(
                "Registering remote route {} for account {}",
                crate::format::go_quote(id.as_bytes()),
                crate::format::go_quote(account.as_bytes())
            ),
            Slot::Pool(_) => format!(
                "Registering remote route {}",
                crate::format::go_quote(id.as_bytes())
            ),
        };
        self.route_log(LogLevel::Debug, conn, &text);
        self.send_all_interest(conn);
        self.route_log(LogLevel::Debug, conn, "Sent local subscriptions to route");
        if first {
            self.update_connect_urls();
        }
        // Gossip: the servers already routed to learn of this one (once per
        // server, and once per pinned account's route).
        // Not when we dialed it because gossip named it (its peers learn of
        // it as we did), unless the teller said to, nor when the peer says
        // it needs no telling: nats-server's `gossip_mode`.
        let configured = self.conns.route(conn).is_some_and(|r| r.configured);
        let from_gossip = dialed && !configured;
        let needed = !(from_gossip && self.dial_gossip_mode(dial) != GossipMode::OVERRIDE)
            && info.gossip_mode != GossipMode::DISABLED;
        if needed && ((first && matches!(slot, Slot::Pool(_))) || matches!(slot, Slot::Account(_)))
        {
            info.route_pool_idx = 0;
            self.gossip(&info, dialed, configured);
        }
        // A PING measures the round trip at once (routez `rtt`, as the
        // reference shows it from the start); on a pooled route this server
        // dialed, the next slot is dialed once the peer answers it.
        let grow = pooled && dialed && self.free_slot(&id, info.route_pool_size).is_some();
        if let Some(route) = self.conns.route_mut(conn) {
            route.grow_on_pong = grow;
            route.time_ping(now);
        }
        if let Some(mut sink) = self.conns.route_sink(conn) {
            protocol::write_ping(&mut sink);
        }
        self.refile_route_timer(conn);
    }

    /// Which slot the route whose first INFO is `info` takes, or `None`
    /// when it was refused (and is closing).
    fn route_slot(&mut self, conn: ConnId, info: &RouteInfo) -> Option<Slot> {
        let route = self.conns.route(conn)?;
        let (dialed, dial) = (route.dialed, route.dial);
        let account = route
            .account
            .clone()
            .or_else(|| (!info.route_account.is_empty()).then(|| info.route_account.clone()));
        let ours = self.pool_size();
        let pooled = info.route_pool_size > 0 && ours > 0;
        if let Some(account) = account {
            let quoted = crate::format::go_quote(account.as_bytes());
            let refusal = if !pooled {
                Some(format!(
                    "Not possible to have a dedicated route for account {quoted} between those servers"
                ))
            } else if !self.pinned.contains(&account) {
                Some(format!("No route for account {quoted}"))
            } else {
                None
            };
            if let Some(text) = refusal {
                if let Some(dial) = dial {
                    self.dialer.dials.remove(&dial);
                }
                self.route_error(conn, &text, CloseReason::ProtocolViolation);
                return None;
            }
            return Some(Slot::Account(account));
        }
        if !pooled {
            return Some(Slot::Pool(0));
        }
        let effective = ours.max(info.route_pool_size as usize);
        if dialed {
            if info.route_pool_idx != 0 {
                let text = format!(
                    "Route pool index should not be set but is set to {}",
                    info.route_pool_idx
                );
                self.route_error(conn, &text, CloseReason::ProtocolViolation);
                return None;
            }
            let Some(free) = self.free_slot(&info.server_id, info.route_pool_size) else {
                self.route_log(
                    LogLevel::Debug,
                    conn,
                    &format!(
                        "Route pool size reached, closing extra connection to {}",
                        crate::format::go_quote(info.server_id.as_bytes())
                    ),
                );
                let keep = self.route_to(&info.server_id);
                self.close_duplicate(conn, keep);
                return None;
            };
            return Some(Slot::Pool(free));
        }
        match usize::try_from(info.route_pool_idx) {
            Ok(idx) if idx < effective => Some(Slot::Pool(idx)),
            _ => {
                let text = format!(
                    "Invalid route pool index: {} - pool size is {}",
                    info.route_pool_idx, info.route_pool_size
                );
                self.route_error(conn, &text, CloseReason::ProtocolViolation);
                None
            }
        }
    }

    /// The first free pool slot to server `id` (whose pool size is
    /// `theirs`), if any.
    fn free_slot(&self, id: &str, theirs: i64) -> Option<usize> {
        let effective = self.pool_size().max(usize::try_from(theirs).unwrap_or(0));
        (0..effective).find(|idx| self.route_at(id, &Slot::Pool(*idx)).is_none())
    }

    /// Close `conn` as a duplicate; its dial (if any) is carried by `keep`
    /// when `keep` has none (so the pair is redialed when `keep` closes),
    /// or given up.
    fn close_duplicate(&mut self, conn: ConnId, keep: Option<ConnId>) {
        if let Some(dial) = self.conns.route_mut(conn).and_then(|r| r.dial.take()) {
            match keep
                .and_then(|k| self.conns.route_mut(k))
                .filter(|r| r.dial.is_none())
            {
                Some(kept) => {
                    kept.dial = Some(dial);
                    if let Some(k) = keep {
                        self.dialer.connected(dial, k);
                    }
                }
                None => {
                    self.dialer.dials.remove(&dial);
                }
            }
        }
        self.close(conn, CloseReason::DuplicateRoute);
    }

    /// The peer answered the PING sent when a pooled route it accepted
    /// registered: dial its next free slot (the same address, once).
    fn grow_pool(&mut self, conn: ConnId) {
        let Some(route) = self.conns.route(conn) else {
            return;
        };
        let (Some(remote), Some(dial)) = (&route.remote, route.dial) else {
            return;
        };
        if self
            .free_slot(&remote.server_id, remote.route_pool_size)
            .is_none()
        {
            return;
        }
        let Some(source) = self.dialer.dials.get(&dial) else {
            return;
        };
        let busy = self
            .dialer
            .dials
            .values()
            .any(|d| d.address == source.address && d.account.is_none() && d.conn.is_none());
        if busy {
            return;
        }
        let lane = Dial {
            attempts: 0,
            pending: false,
            conn: None,
            ..source.clone()
        };
        self.dialer.add(lane);
    }

    /// The `gossip_mode` a dial was named with (0 for explicit routes).
    fn dial_gossip_mode(&self, dial: Option<u64>) -> u8 {
        dial.and_then(|d| self.dialer.dials.get(&d))
            .map_or(GossipMode::DEFAULT, |d| d.gossip_mode)
    }

    /// Tell the other peers of a server that just registered (whose INFO
    /// is `info`; `dialed`: by us; `configured`: an explicit route): one
    /// INFO to each (over its pinned route for a pinned account's INFO,
    /// when it has one), each with the `gossip_mode` the reference gives it: a peer we
    /// reach by a configured route, or news of a configured route, is told
    /// to pass it on (override); news of a route we accepted needs no
    /// passing on (disabled).
    fn gossip(&mut self, info: &RouteInfo, dialed: bool, configured: bool) {
        let mut told: Vec<String> = vec![info.server_id.clone()];
        let pinned = (!info.route_account.is_empty()).then_some(info.route_account.as_str());
        let mut order: Vec<(bool, ConnId, String)> = self
            .conns
            .routes()
            .filter(|(_, r)| !r.is_closing())
            .filter_map(|(conn, r)| {
                let id = r.remote_id()?.to_string();
                if pinned.is_some() && r.no_pool {
                    return None;
                }
                let preferred = pinned.is_some() && r.account.as_deref() == pinned;
                Some((!preferred, *conn, id))
            })
            .collect();
        order.sort();
        for (_, other, id) in order {
            if told.contains(&id) {
                continue;
            }
            told.push(id);
            let other_configured = self.conns.route(other).is_some_and(|r| r.configured);
            let mut told_info = info.clone();
            told_info.gossip_mode = if (!dialed && other_configured) || (dialed && configured) {
                GossipMode::OVERRIDE
            } else if !dialed {
                GossipMode::DISABLED
            } else {
                GossipMode::DEFAULT
            };
            if let Some(mut sink) = self.conns.route_sink(other) {
                wire::write_route_info(&mut sink, &told_info);
            }
        }
    }

    /// Gossip named a server: dial it unless it is this one or already
    /// routed (its pool, or the pinned account the INFO is about).
    fn implicit_route(&mut self, info: &RouteInfo) {
        if info.server_id == self.config.identity.server_id {
            return;
        }
        let account = (!info.route_account.is_empty()).then(|| info.route_account.clone());
        match &account {
            Some(account) => {
                if self.pool_size() == 0
                    || !self.pinned.contains(account)
                    || self
                        .route_at(&info.server_id, &Slot::Account(account.clone()))
                        .is_some()
                {
                    return;
                }
            }
            None => {
                if self.pool_route_to(&info.server_id) {
                    return;
                }
            }
        }
        let address = info
            .ip
            .split_once("://")
            .map_or(info.ip.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string();
        if address.is_empty() || self.dialer.knows(&address, account.as_deref()) {
            return;
        }
        // The configured routes' credentials are the cluster's.
        let (user, password) = self
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.routes.iter().find(|r| r.user.is_some()))
            .map_or((None, None), |r| (r.user.clone(), r.password.clone()));
        self.dialer.add(Dial {
            address,
            user,
            password,
            explicit: false,
            attempts: 0,
            pending: false,
            conn: None,
            account,
            gossip_mode: info.gossip_mode,
        });
    }

    /// A registered route to server `id`, if any.
    fn route_to(&self, id: &str) -> Option<ConnId> {
        self.conns
            .routes()
            .find(|(_, r)| !r.is_closing() && r.remote_id() == Some(id))
            .map(|(conn, _)| *conn)
    }

    /// Whether a pooled (or unpooled) route to server `id` is registered
    /// (a pinned account's route may come first and says nothing of them).
    fn pool_route_to(&self, id: &str) -> bool {
        self.conns
            .routes()
            .any(|(_, r)| !r.is_closing() && r.remote_id() == Some(id) && r.account.is_none())
    }

    /// The registered route to server `id` in `slot`.
    fn route_at(&self, id: &str, slot: &Slot) -> Option<ConnId> {
        self.conns
            .routes()
            .find(|(_, r)| {
                !r.is_closing()
                    && r.remote_id() == Some(id)
                    && match slot {
                        Slot::Account(account) => r.account.as_ref() == Some(account),
                        Slot::Pool(idx) => r.account.is_none() && r.pool_idx == Some(*idx),
                    }
            })
            .map(|(conn, _)| *conn)
    }

    fn adopt_cluster_name(&mut self, name: String) {
        self.logs.push(
            LogLevel::Info,
            None,
            format!("Cluster name updated to {name}"),
        );
        self.cluster_name = name;
        self.cluster_dynamic = false;
    }

    fn remote_sub(
        &mut self,
        conn: ConnId,
        account: &[u8],
        subject: Bytes,
        queue: Option<(Bytes, u32)>,
    ) {
        let Some(account) = std::str::from_utf8(account)
            .ok()
            .and_then(|name| self.router.accounts.find(name))
        else {
            // An account this server does not have: nobody here can want it.
            return;
        };
        let (queue, weight) = match queue {
            Some((queue, weight)) => (Some(queue), weight),
            None => (None, 1),
        };
        let Some(route) = self.conns.route_mut(conn) else {
            return;
        };
        if !route.exports(&subject, queue.as_deref()) {
            let text = format!(
                "Can not export {}, ignoring remote subscription request",
                crate::format::go_quote(&subject)
            );
            self.route_log(LogLevel::Debug, conn, &text);
            return;
        }
        if let Some(index) = route.add_sub(account, subject.clone(), queue.clone(), weight) {
            let key = SubKey { conn, index };
            if !self
                .router
                .file_remote(account, key, &subject, queue.as_deref())
            {
                // Not a valid subject: forget it again.
                if let Some(route) = self.conns.route_mut(conn) {
                    route.remove_sub(account, &subject, queue.as_ref());
                }
            }
        }
    }

    fn remote_unsub(
        &mut self,
        conn: ConnId,
        account: &[u8],
        subject: &Bytes,
        queue: Option<&Bytes>,
    ) {
        let Some(account) = std::str::from_utf8(account)
            .ok()
            .and_then(|name| self.router.accounts.find(name))
        else {
            return;
        };
        let Some(route) = self.conns.route_mut(conn) else {
            return;
        };
        if let Some((index, sub)) = route.remove_sub(account, subject, queue) {
            self.router.unfile_remote(
                account,
                SubKey { conn, index },
                &sub.subject,
                sub.queue.as_deref(),
            );
        }
    }

    /// A message from a route: to local subscribers (and the queue groups
    /// it names), never on to another route.
    fn routed_msg(&mut self, now: Instant, conn: ConnId, msg: RoutedMsg) {
        let size = msg.headers.as_ref().map_or(0, Bytes::len) + msg.payload.len();
        if let Some(route) = self.conns.route_mut(conn) {
            route.stats.in_msgs += 1;
            route.stats.in_bytes += size as u64;
        }
        self.stats.in_msgs += 1;
        self.stats.in_bytes += size as u64;
        let Some(account) = std::str::from_utf8(&msg.account)
            .ok()
            .and_then(|name| self.router.accounts.find(name))
        else {
            return;
        };
        if let Some(headers) = msg.headers.as_deref() {
            if let Some(wanted) = trace::TraceHeaders::find(headers) {
                if !self.start_route_trace(now, conn, account, wanted, &msg.subject, headers, size)
                {
                    return;
                }
            }
        }
        let delivery = Delivery {
            publisher: conn,
            subject: &msg.subject,
            reply: msg.reply.as_deref(),
            headers: msg.headers.as_deref(),
            payload: &msg.payload,
            shown_subject: None,
        };
        let (router, mut cx) = self.route_parts(now);
        cx.origin = Origin::Route {
            queues: &msg.queues,
        };
        router.route(&mut cx, account, &delivery, true, 0);
        if let Some(trace) = self.trace.take() {
            self.publish_trace(now, account, &trace);
        }
    }

    /// A traced message came over route `conn`: this server traces it too
    /// (ingress from the route, named by the peer's server name, its hop
    /// from `Nats-Trace-Hop`) and publishes its own event, as the
    /// reference. False when the message must not be processed (a
    /// trace-only message with an invalid destination).
    #[allow(clippy::too_many_arguments)]
    fn start_route_trace(
        &mut self,
        now: Instant,
        conn: ConnId,
        account: super::AccountId,
        wanted: trace::TraceHeaders,
        subject: &[u8],
        headers: &[u8],
        size: usize,
    ) -> bool {
        if !crate::subject::is_valid_publish_subject(&wanted.dest) {
            let text = format!(
                "Destination {:?} is not valid, won't be able to trace events",
                String::from_utf8_lossy(&wanted.dest)
            );
            self.route_log(LogLevel::Error, conn, &text);
            return !wanted.only;
        }
        let name = self
            .conns
            .route(conn)
            .and_then(|r| r.remote.as_ref())
            .map(|r| r.server_name.clone())
            .unwrap_or_default();
        let account = self.router.accounts.list[account].name.clone();
        let ts = crate::format::rfc3339_nanos(self.clock(now).wall_now);
        let trace = trace::MsgTrace::new(
            wanted,
            ts,
            (trace::KIND_ROUTER, conn, &name),
            &account,
            subject,
            headers,
            size,
        );
        self.trace = Some(Box::new(trace));
        true
    }

    /// After a reload rebuilt the Sublists: the routes' interest goes back
    /// in (account ids survive a reload; a dropped account's slot stays).
    pub(super) fn refile_remote_interest(&mut self) {
        for conn in self.conns.route_ids() {
            let Some(route) = self.conns.route(conn) else {
                continue;
            };
            let subs: Vec<_> = route
                .subs
                .iter()
                .map(|(index, sub)| (*index, sub.account, sub.subject.clone(), sub.queue.clone()))
                .collect();
            for (index, account, subject, queue) in subs {
                let key = SubKey { conn, index };
                self.router
                    .file_remote(account, key, &subject, queue.as_deref());
            }
        }
    }

    /// RS+ for every local interest the route carries, to a route that
    /// just registered.
    fn send_all_interest(&mut self, conn: ConnId) {
        let Some(interest) = &self.router.interest else {
            return;
        };
        let lines: Vec<_> = interest
            .iter()
            .map(|((account, subject, queue), count)| {
                (*account, subject.clone(), queue.clone(), *count)
            })
            .collect();
        self.send_interest(conn, lines);
    }

    /// RS+ for each of `lines` (account, subject, queue, weight) the route
    /// carries and this server imports.
    fn send_interest(&mut self, conn: ConnId, lines: Vec<(usize, Bytes, Option<Bytes>, u32)>) {
        for (account, subject, queue, count) in lines {
            let name = self.router.accounts.list[account].name.clone();
            let (index, pinned) = self.account_lane(&name);
            let Some(route) = self.conns.route_mut(conn) else {
                return;
            };
            if !route.carries(&name, index, pinned) || !route.imports(&subject) {
                continue;
            }
            let wire_account = route.wire_account(&name);
            if let Some(mut sink) = self.conns.route_sink(conn) {
                wire::write_rs_plus(
                    &mut sink,
                    wire_account,
                    &subject,
                    queue.as_deref().map(|q| (q, count)),
                );
            }
        }
    }

    /// The peer's INFO names new cluster permissions (it reloaded): keep
    /// them for `/routez`, and, as the reference does, send the local
    /// interest its export now allows and did not before (and this server
    /// imports). What it no longer allows it drops itself.
    fn peer_permissions_changed(&mut self, conn: ConnId, info: RouteInfo) {
        let checker = |export: &Option<wire::RoutePermission>| {
            PermissionChecker::new(&crate::auth::Permissions {
                subscribe: export.as_ref().map(|side| crate::auth::SubjectPermission {
                    allow: (!side.allow.is_empty()).then(|| side.allow.clone()),
                    deny: side.deny.clone(),
                }),
                ..crate::auth::Permissions::default()
            })
        };
        let Some(route) = self.conns.route_mut(conn) else {
            return;
        };
        let Some(remote) = route.remote.as_mut() else {
            return;
        };
        let mut before = checker(&remote.export);
        let mut after = checker(&info.export);
        remote.import = info.import;
        remote.export = info.export;
        let Some(interest) = &self.router.interest else {
            return;
        };
        let lines: Vec<_> = interest
            .iter()
            .filter(|((_, subject, queue), _)| {
                after.may_subscribe(subject, queue.as_deref())
                    && !before.may_subscribe(subject, queue.as_deref())
            })
            .map(|((account, subject, queue), count)| {
                (*account, subject.clone(), queue.clone(), *count)
            })
            .collect();
        self.send_interest(conn, lines);
    }

    /// Tell every registered route carrying the account what local
    /// interest changed this step.
    pub(super) fn propagate_interest(&mut self) {
        if self.router.interest_changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.router.interest_changes);
        let routes = self.registered_routes();
        for change in &changes {
            let Some(account) = self.router.accounts.list.get(change.account) else {
                continue;
            };
            let name = account.name.clone();
            let (index, pinned) = self.account_lane(&name);
            for &conn in &routes {
                let Some(route) = self.conns.route_mut(conn) else {
                    continue;
                };
                if !route.carries(&name, index, pinned) || !route.imports(&change.subject) {
                    continue;
                }
                let wire_account = route.wire_account(&name);
                let Some(mut sink) = self.conns.route_sink(conn) else {
                    continue;
                };
                #[cfg(feature = "planted-defects")]
                if change.count == 0
                    && self.config.planted_defect
                        == Some(super::PlantedDefect::RouteUnsubscribeLost)
                {
                    continue;
                }
                match (change.count, &change.queue) {
                    (0, queue) => wire::write_rs_minus(
                        &mut sink,
                        wire_account,
                        &change.subject,
                        queue.as_deref(),
                    ),
                    (count, queue) => wire::write_rs_plus(
                        &mut sink,
                        wire_account,
                        &change.subject,
                        queue.as_deref().map(|q| (q, count)),
                    ),
                }
            }
        }
        let mut changes = changes;
        changes.clear();
        self.router.interest_changes = changes;
    }

    /// A route's timer: the handshake deadline, or its keepalive PING.
    pub(super) fn route_timer(&mut self, now: Instant, conn: ConnId) {
        let (ping_interval, ping_max) = (self.route_ping_interval(), self.route_ping_max());
        let Some(route) = self.conns.route_mut(conn) else {
            return;
        };
        if route.is_closing() {
            return;
        }
        if route.auth_deadline.is_some_and(|d| d <= now) {
            self.route_error(
                conn,
                "Authentication Timeout",
                CloseReason::AuthenticationTimeout,
            );
            return;
        }
        if route.ping_deadline <= now {
            if route.pings_out >= ping_max {
                self.stats.stale_connections += 1;
                self.route_log(LogLevel::Debug, conn, "Stale Router Connection - Closing");
                self.close(conn, CloseReason::StaleConnection);
                return;
            }
            route.pings_out += 1;
            route.time_ping(now);
            route.ping_deadline = now + ping_interval;
            self.route_log(LogLevel::Debug, conn, "Router Ping Timer");
            if let Some(mut sink) = self.conns.route_sink(conn) {
                protocol::write_ping(&mut sink);
            }
        }
        self.refile_route_timer(conn);
    }

    pub(super) fn refile_route_timer(&mut self, conn: ConnId) {
        if let Some(route) = self.conns.route(conn).filter(|r| !r.is_closing()) {
            self.timers
                .set(TimerKey::Connection(conn), route.next_deadline());
        }
    }

    /// Route `conn` is gone: forget it, and redial it if it was dialed.
    pub(super) fn route_gone(&mut self, now: Instant, conn: ConnId) {
        let Some(route) = self.conns.remove_route(conn) else {
            return;
        };
        self.timers.cancel(TimerKey::Connection(conn));
        if let Some(dial) = route.dial {
            self.dial_failed(now, dial);
        }
        self.update_connect_urls();
    }

    /// Recompute the cluster's client URLs (this server's first, then each
    /// routed server's, unless `no_advertise`); when they changed, tell the
    /// clients that take async INFO (protocol 1, past their first PONG),
    /// as the reference does when servers join and leave.
    pub(super) fn update_connect_urls(&mut self) {
        use crate::runtime::ListenerKind;
        let mut changed = Vec::new();
        if let Some(urls) = self.cluster_connect_urls(false) {
            if urls != self.connect_urls {
                self.connect_urls = urls;
                changed.push(ListenerKind::Client);
            }
        }
        if let Some(urls) = self.cluster_connect_urls(true) {
            if urls != self.ws_connect_urls {
                self.ws_connect_urls = urls;
                changed.push(ListenerKind::WebSocket);
            }
        }
        if changed.is_empty() {
            return;
        }
        for conn in self.conns.ids() {
            let Some(client) = self.conns.get(conn) else {
                continue;
            };
            if client.is_closing()
                || client.options.protocol < 1
                || !client.first_pong_sent
                || !changed.contains(&client.listener)
            {
                continue;
            }
            let info = self.info_for(conn, &client.peer, client.listener);
            protocol::write_info(&mut self.conns.sink(conn), &info);
            self.conns.queue_transmit(conn);
            self.enforce_pending_limit(conn);
        }
    }

    /// The client URLs clients are to be told (`websocket`: the websocket
    /// URLs websocket clients are): this server's (unless in lame duck
    /// mode), then those of every routed server not in lame duck mode.
    /// `None`: nothing to tell (no cluster, `no_advertise`, or no URL was
    /// ever announced).
    pub(super) fn cluster_connect_urls(&self, websocket: bool) -> Option<Vec<String>> {
        let (own, told) = if websocket {
            (&self.config.identity.ws_connect_urls, &self.ws_connect_urls)
        } else {
            (&self.config.identity.client_urls, &self.connect_urls)
        };
        let cluster = self.config.cluster.as_ref()?;
        if cluster.no_advertise {
            return None;
        }
        let open = || {
            self.conns
                .routes()
                .filter(|(_, r)| !r.is_closing())
                .filter_map(|(_, r)| r.remote.as_ref())
        };
        let leaving: Vec<&str> = open()
            .filter(|remote| remote.ldm)
            .map(|remote| remote.server_id.as_str())
            .collect();
        let mut peers: Vec<String> = Vec::new();
        for remote in open().filter(|remote| !leaving.contains(&remote.server_id.as_str())) {
            let theirs = if websocket {
                &remote.ws_connect_urls
            } else {
                &remote.connect_urls
            };
            for url in theirs {
                if !peers.contains(url) {
                    peers.push(url.clone());
                }
            }
        }
        if peers.is_empty() && told.is_empty() {
            return None;
        }
        let mut urls = if self.lame_duck {
            Vec::new()
        } else {
            own.clone()
        };
        for url in peers {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        Some(urls)
    }

    /// The registered routes not closing, in id order.
    fn registered_routes(&self) -> Vec<ConnId> {
        self.conns
            .routes()
            .filter(|(_, r)| r.remote.is_some() && !r.is_closing())
            .map(|(conn, _)| *conn)
            .collect()
    }

    /// Lame duck mode: one INFO with `ldm` to every registered route (the
    /// reference's), whose server stops telling its clients our URLs.
    pub(super) fn announce_lame_duck_to_routes(&mut self) {
        if self.config.cluster.is_none() {
            return;
        }
        let mut info = self.route_info();
        info.ldm = true;
        let routes = self.registered_routes();
        for conn in routes {
            if let Some(mut sink) = self.conns.route_sink(conn) {
                wire::write_route_info(&mut sink, &info);
            }
        }
    }

    /// `-ERR '<text>'` to the route, then close it.
    fn route_error(&mut self, conn: ConnId, text: &str, reason: CloseReason) {
        if let Some(mut sink) = self.conns.route_sink(conn) {
            protocol::write_err(&mut sink, text);
        }
        self.route_log(LogLevel::Error, conn, text);
        self.close(conn, reason);
    }

    /// The reference's `-V` line for an operation from a route.
    fn trace_route_op(&mut self, conn: ConnId, op: &RouteOp) {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        // A pinned route's lines carry no account.
        let pinned = self.conns.route(conn).is_some_and(|r| r.account.is_some());
        let acc = |b: &[u8]| {
            if pinned {
                String::new()
            } else {
                format!("{} ", text(b))
            }
        };
        let line = match op {
            RouteOp::Info(json) => format!("<<- [INFO {}]", text(json).trim_end()),
            RouteOp::Connect(json) => format!("<<- [CONNECT {}]", text(json).trim_end()),
            RouteOp::Ping => String::from("<<- [PING]"),
            RouteOp::Pong => String::from("<<- [PONG]"),
            RouteOp::Ok => String::from("<<- [OK]"),
            RouteOp::Err(t) => format!("<<- [-ERR {}]", text(t)),
            RouteOp::Sub {
                account,
                subject,
                queue,
            } => match queue {
                Some((q, w)) => format!(
                    "<<- [RS+ {}{} {} {w}]",
                    acc(account),
                    text(subject),
                    text(q)
                ),
                None => format!("<<- [RS+ {}{}]", acc(account), text(subject)),
            },
            RouteOp::Unsub {
                account,
                subject,
                queue,
            } => match queue {
                Some(q) => format!("<<- [RS- {}{} {}]", acc(account), text(subject), text(q)),
                None => format!("<<- [RS- {}{}]", acc(account), text(subject)),
            },
            RouteOp::Msg(msg) => {
                let verb = if msg.headers.is_some() {
                    "HMSG"
                } else {
                    "RMSG"
                };
                let mut line = format!("<<- [{verb} {}{}", acc(&msg.account), text(&msg.subject));
                match (&msg.reply, msg.queues.is_empty()) {
                    (Some(reply), true) => line.push_str(&format!(" {}", text(reply))),
                    (Some(reply), false) => line.push_str(&format!(" + {}", text(reply))),
                    (None, false) => line.push_str(" |"),
                    (None, true) => {}
                }
                for queue in &msg.queues {
                    line.push(' ');
                    line.push_str(&text(queue));
                }
                if let Some(headers) = &msg.headers {
                    line.push_str(&format!(" {}", headers.len()));
                }
                let size = msg.headers.as_ref().map_or(0, Bytes::len) + msg.payload.len();
                line.push_str(&format!(" {size}]"));
                line
            }
        };
        self.route_log(LogLevel::Trace, conn, &line);
    }

    /// [`Server::handle_write_stalled`] for a route: returns whether the
    /// runtime goes on writing.
    pub(super) fn route_write_stalled(&mut self, conn: ConnId, written: usize) -> bool {
        let deadline = self.config.write_deadline(true);
        let close = self
            .config
            .cluster
            .as_ref()
            .is_some_and(|c| c.write_timeout == WriteTimeoutPolicy::Close);
        let Some(route) = self.conns.route_mut(conn) else {
            return false;
        };
        let state = if route.slow { "State" } else { "Detected" };
        if !route.slow {
            // Each slow episode of a route is counted once.
            self.stats.slow_consumers += 1;
        }
        route.slow = true;
        let pending = route.pending_bytes();
        let nanos = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        let text = format!(
            "Slow Consumer {state}: WriteDeadline of {} exceeded with 1 chunks of {pending} total bytes.",
            crate::format::go_duration(nanos)
        );
        self.route_log(LogLevel::Info, conn, &text);
        if close || written == 0 {
            self.close(conn, CloseReason::SlowConsumerWriteDeadline);
            self.retire_subscriptions();
            return false;
        }
        true
    }

    fn route_log(&mut self, level: LogLevel, conn: ConnId, text: &str) {
        let Some(route) = self.conns.route(conn) else {
            return;
        };
        let prefix = log::route_prefix(conn, route.peer);
        self.logs
            .push_prefixed(level, Some(conn), prefix, text.to_string());
    }

    /// A route connection as every one starts: its parser's limits, its
    /// keepalive, the cluster's permissions compiled for it.
    fn new_route(&self, peer: SocketAddr, now: Instant) -> RouteConn {
        let mut route = RouteConn::new(peer, self.route_limits(), now);
        route.ping_deadline = now + self.route_ping_interval();
        route.permissions = self
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.permissions.as_ref())
            .map(PermissionChecker::new);
        route
    }

    /// The cluster's `ping_interval` (else the top-level one), at most
    /// 30 s as the reference caps it for routes.
    fn route_ping_interval(&self) -> Duration {
        self.config
            .cluster
            .as_ref()
            .and_then(|c| c.ping_interval)
            .unwrap_or(self.config.ping_interval)
            .min(MAX_ROUTE_PING_INTERVAL)
    }

    /// PINGs a route may leave unanswered before it is stale.
    fn route_ping_max(&self) -> u32 {
        self.config
            .cluster
            .as_ref()
            .and_then(|c| c.ping_max)
            .unwrap_or(self.config.ping_max)
    }

    fn route_limits(&self) -> ParserLimits {
        ParserLimits {
            max_control_line: self.config.max_control_line.max(4096),
            // A peer's max_payload may be larger than ours; the reference
            // does not check a routed message's size against its own.
            max_payload: self.config.max_payload.max(64 * 1024 * 1024),
        }
    }

    /// This server's INFO on the route port.
    pub(super) fn route_info(&self) -> RouteInfo {
        let cluster = self.config.cluster.as_ref().expect("routes need a cluster");
        let (host, port) = match cluster.advertise.as_deref().and_then(split_advertise) {
            Some((host, port)) => (host, port.unwrap_or(cluster.port)),
            None => (cluster.host.clone(), cluster.port),
        };
        let ip = format!("nats-route://{}/", join_host_port(&host, port));
        RouteInfo {
            server_id: self.config.identity.server_id.clone(),
            server_name: self.config.effective_name().to_string(),
            version: self.config.identity.version.clone(),
            proto: ROUTE_PROTO,
            go: self.config.identity.toolchain.clone(),
            host,
            port,
            headers: true,
            auth_required: cluster.user.is_some(),
            tls_required: cluster.tls.is_some(),
            tls_verify: cluster.tls.is_some(),
            max_payload: self.config.max_payload as i64,
            ip,
            cluster: self.cluster_name.clone(),
            cluster_dynamic: self.cluster_dynamic,
            compression: String::from("off"),
            route_pool_size: cluster.pool_size.max(0),
            import: cluster
                .permissions
                .as_ref()
                .and_then(|p| p.publish.as_ref())
                .map(Into::into),
            export: cluster
                .permissions
                .as_ref()
                .and_then(|p| p.subscribe.as_ref())
                .map(Into::into),
            connect_urls: if cluster.no_advertise {
                Vec::new()
            } else {
                self.config.identity.client_urls.clone()
            },
            ws_connect_urls: if cluster.no_advertise {
                Vec::new()
            } else {
                self.config.identity.ws_connect_urls.clone()
            },
            ..RouteInfo::default()
        }
    }
}

/// Where a route connection sits among a peer's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// A pooled connection's index (0 for an unpooled peer's one).
    Pool(usize),
    /// A pinned account's dedicated route.
    Account(String),
}

/// `host[:port]` of `cluster_advertise`.
fn split_advertise(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => Some((host.to_string(), port.parse().ok())),
        _ => Some((text.to_string(), None)),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
