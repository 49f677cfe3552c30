//! The server's connections: every client, its outbound bytes and the
//! connection actions (`Transmit`, `Close`) the runtime carries out.
//!
//! Role: one owner for what belongs to a connection and nothing else. The
//! step driver ([`Server`](super::Server)) and the router write to clients
//! through it; closing a connection, for any reason, goes through
//! [`Connections::close`] (and a slow consumer through
//! [`Connections::cut_slow_consumer`], which ends in it), so every close
//! logs, traces and retires subscriptions the same way.
//!
//! Subscriptions leave the Sublists at the end of the step, not at the close:
//! a close can happen while a match result borrowed from a Sublist is being
//! walked. `close` moves a closing client's subscriptions to `retired`, and
//! auto-unsubscribes that fall due during delivery go to `expired`; the
//! driver files both out in `finish_step`. Until then delivery skips them
//! (a closing client receives nothing; an expired subscription is at its max).
//!
//! Invariants:
//! - Each connection has at most one `Transmit` queued until its bytes are
//!   taken, and none once it is closing.
//! - A closing connection holds no subscriptions (they are in `retired` or
//!   already out of the Sublists) and is never written to again.
//! - `retired`, `expired` and `newly_closed` are empty between steps.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::accounts::AccountId;
use super::client::{Client, SubKey, Subscription};
use super::error::ServerError;
use super::log::{self, LogLevel, LogQueue};
use super::outbound::{ChunkPool, OutboundBatch, OutboundSink};
use super::protocol_trace;
use super::routes::RouteConn;
use crate::protocol;
use crate::runtime::{Action, CloseReason, ConnId};

/// Every connection the runtime has accepted and not yet reported closed.
#[derive(Default)]
pub struct Connections {
    clients: BTreeMap<ConnId, Client>,
    /// Route connections (`routes.rs`): other servers of the cluster.
    routes: BTreeMap<ConnId, RouteConn>,
    actions: VecDeque<Action>,
    /// Outbound chunks the runtime has written and handed back.
    chunks: ChunkPool,
    /// Subscriptions of clients that started closing this step, with the
    /// account whose Sublist still holds them.
    pub(super) retired: Vec<(AccountId, SubKey, Subscription)>,
    /// Remote interest of routes that started closing this step (or that
    /// the peer withdrew), still in the Sublists.
    pub(super) retired_remote: Vec<(AccountId, SubKey, Bytes, Option<Bytes>)>,
    /// Auto-unsubscribes that reached their max during this step.
    pub(super) expired: Vec<SubKey>,
    /// Connections that started closing during this step (their timers go
    /// at the end of it).
    pub(super) newly_closed: Vec<ConnId>,
}

impl Connections {
    pub fn get(&self, conn: ConnId) -> Option<&Client> {
        self.clients.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Client> {
        self.clients.get_mut(&conn)
    }

    /// A client the caller knows is there (it is handling an event for it).
    pub(super) fn client(&mut self, conn: ConnId) -> &mut Client {
        self.clients
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("{conn}: no such client"))
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.clients.contains_key(&conn) || self.routes.contains_key(&conn)
    }

    pub fn route(&self, conn: ConnId) -> Option<&RouteConn> {
        self.routes.get(&conn)
    }

    pub(super) fn route_mut(&mut self, conn: ConnId) -> Option<&mut RouteConn> {
        self.routes.get_mut(&conn)
    }

    pub fn routes(&self) -> impl Iterator<Item = (&ConnId, &RouteConn)> + '_ {
        self.routes.iter()
    }

    /// Route connection ids in order (a copy: the caller may change the set).
    pub(super) fn route_ids(&self) -> Vec<ConnId> {
        self.routes.keys().copied().collect()
    }

    pub(super) fn insert_route(&mut self, conn: ConnId, route: RouteConn) {
        assert!(!self.clients.contains_key(&conn), "{conn} accepted twice");
        let fresh = self.routes.insert(conn, route).is_none();
        assert!(fresh, "{conn} accepted twice");
    }

    /// Forget route `conn` (the runtime reported it gone).
    pub(super) fn remove_route(&mut self, conn: ConnId) -> Option<RouteConn> {
        let route = self.routes.remove(&conn)?;
        assert!(
            route.subs.is_empty(),
            "{conn}: forgotten with remote interest"
        );
        self.actions.retain(|action| action.conn() != conn);
        Some(route)
    }

    /// A frame sink over route `conn`'s outbound buffer, and a Transmit
    /// queued for it; `None` once it is closing.
    pub(super) fn route_sink(&mut self, conn: ConnId) -> Option<OutboundSink<'_>> {
        let route = self.routes.get_mut(&conn).filter(|r| !r.is_closing())?;
        if !route.transmit_queued {
            route.transmit_queued = true;
            self.actions.push_back(Action::Transmit(conn));
        }
        Some(route.outbound.sink(&mut self.chunks))
    }

    /// Bytes of route `conn` the runtime reported written.
    pub(super) fn route_written(&mut self, conn: ConnId, written: usize) {
        if let Some(route) = self.routes.get_mut(&conn) {
            assert!(
                written <= route.bytes_in_flight,
                "{conn}: wrote more than was taken"
            );
            route.bytes_in_flight -= written;
            // The write that stalled has finished.
            route.slow = false;
        }
    }

    /// Mark route `conn` closing: its remote interest leaves the Sublists
    /// at the end of the step, and the runtime flushes and closes it.
    pub(super) fn close_route(&mut self, conn: ConnId, reason: CloseReason, logs: &mut LogQueue) {
        let Some(route) = self.routes.get_mut(&conn) else {
            return;
        };
        if route.is_closing() {
            return;
        }
        route.closing = Some(reason);
        if reason.skips_flush() {
            // Nothing more will be written to a peer that does not read.
            route.outbound.discard(&mut self.chunks);
        }
        let prefix = log::route_prefix(conn, route.peer);
        let remote = match &route.remote {
            Some(info) if !info.server_name.is_empty() => {
                format!(" - Remote: {}", info.server_name)
            }
            _ => String::new(),
        };
        logs.push_prefixed(
            LogLevel::Info,
            Some(conn),
            prefix,
            format!("Router connection closed: {}{remote}", reason.as_str()),
        );
        for (index, sub) in route.take_subs() {
            self.retired_remote
                .push((sub.account, SubKey { conn, index }, sub.subject, sub.queue));
        }
        self.actions.push_back(Action::Close { conn, reason });
        self.newly_closed.push(conn);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ConnId, &Client)> + '_ {
        self.clients.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &Client> + '_ {
        self.clients.values()
    }

    /// Connection ids in order (a copy: the caller may change the set).
    pub(super) fn ids(&self) -> Vec<ConnId> {
        self.clients.keys().copied().collect()
    }

    pub(super) fn insert(&mut self, conn: ConnId, client: Client) {
        let fresh = self.clients.insert(conn, client).is_none();
        assert!(fresh, "{conn} accepted twice");
    }

    /// Forget `conn` (the runtime reported it gone).
    pub(super) fn remove(&mut self, conn: ConnId) -> Option<Client> {
        let client = self.clients.remove(&conn)?;
        assert!(
            client.subs.is_empty(),
            "{conn}: forgotten with subscriptions"
        );
        // Actions still queued for it are dropped: the runtime holds
        // nothing to carry them out on.
        self.actions.retain(|action| action.conn() != conn);
        Some(client)
    }

    /// The next action for the runtime.
    pub(super) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A frame sink over `conn`'s outbound buffer.
    pub(super) fn sink(&mut self, conn: ConnId) -> OutboundSink<'_> {
        let client = self
            .clients
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("{conn}: no such client"));
        debug_assert!(!client.is_closing(), "{conn}: written to while closing");
        client.outbound.sink(&mut self.chunks)
    }

    /// Split borrow: one client, the chunk pool its sink draws from, and the
    /// action queue (for [`Connections::queue_transmit_of`]).
    pub(super) fn client_parts(
        &mut self,
        conn: ConnId,
    ) -> Option<(&mut Client, &mut ChunkPool, &mut VecDeque<Action>)> {
        let client = self.clients.get_mut(&conn)?;
        Some((client, &mut self.chunks, &mut self.actions))
    }

    /// [`Connections::queue_transmit`] for a client already in hand.
    pub(super) fn queue_transmit_of(
        client: &mut Client,
        actions: &mut VecDeque<Action>,
        conn: ConnId,
    ) {
        if !client.transmit_queued && !client.is_closing() {
            client.transmit_queued = true;
            actions.push_back(Action::Transmit(conn));
        }
    }

    /// Split borrow: one client and the chunk pool its sink draws from.
    pub(super) fn client_and_chunks(
        &mut self,
        conn: ConnId,
    ) -> Option<(&mut Client, &mut ChunkPool)> {
        let client = self.clients.get_mut(&conn)?;
        Some((client, &mut self.chunks))
    }

    /// Queue `-ERR '<error>'` for `conn`.
    pub(super) fn write_err(&mut self, conn: ConnId, error: &ServerError) {
        protocol::write_err(&mut self.sink(conn), &error.to_string());
        self.queue_transmit(conn);
    }

    /// Ask the runtime to write `conn`'s outbound bytes (once per step at most).
    pub(super) fn queue_transmit(&mut self, conn: ConnId) {
        if let Some(client) = self.clients.get_mut(&conn) {
            Self::queue_transmit_of(client, &mut self.actions, conn);
        }
    }

    /// Split borrow for a route's delivery: the route, the chunk pool and
    /// the action queue.
    pub(super) fn route_parts(
        &mut self,
        conn: ConnId,
    ) -> Option<(&mut RouteConn, &mut ChunkPool, &mut VecDeque<Action>)> {
        let route = self.routes.get_mut(&conn)?;
        Some((route, &mut self.chunks, &mut self.actions))
    }

    /// Ask the runtime to run `conn`'s pending password check.
    pub(super) fn queue_password_check(&mut self, conn: ConnId) {
        debug_assert!(self.clients[&conn].pending_login.is_some());
        self.actions.push_back(Action::CheckPassword(conn));
    }

    /// Hand the runtime everything queued for `conn`.
    pub(super) fn take_outbound(&mut self, conn: ConnId) -> Option<OutboundBatch> {
        if let Some(route) = self.routes.get_mut(&conn) {
            route.transmit_queued = false;
            if route.outbound.is_empty() {
                return None;
            }
            let batch = route.outbound.take();
            route.bytes_in_flight += batch.len();
            return Some(batch);
        }
        let client = self.clients.get_mut(&conn)?;
        client.transmit_queued = false;
        if client.outbound.is_empty() {
            return None;
        }
        let batch = client.outbound.take();
        client.bytes_in_flight += batch.len();
        Some(batch)
    }

    pub(super) fn recycle_outbound(&mut self, batch: OutboundBatch) {
        self.chunks.recycle(batch);
    }

    /// Queue a log line about `conn`, prefixed the way the reference names
    /// clients (see `log::client_prefix`).
    pub(super) fn log(&self, logs: &mut LogQueue, level: LogLevel, conn: ConnId, text: String) {
        let prefix = match self.routes.get(&conn) {
            Some(route) => log::route_prefix(conn, route.peer),
            None => self
                .clients
                .get(&conn)
                .map(|client| log::client_prefix(conn, client))
                .unwrap_or_default(),
        };
        logs.push_prefixed(level, Some(conn), prefix, text);
    }

    /// Queue `-ERR '<error>'` for `conn`, then close it for `reason`.
    pub(super) fn close_with_error(
        &mut self,
        conn: ConnId,
        error: &ServerError,
        reason: CloseReason,
        logs: &mut LogQueue,
        trace: bool,
    ) {
        if self.clients.get(&conn).is_some_and(|c| !c.is_closing()) {
            self.write_err(conn, error);
        }
        self.close(conn, reason, logs, trace);
    }

    /// Mark `conn` closing and ask the runtime to flush and close it. Its
    /// subscriptions move to `retired` (the driver takes them out of the
    /// Sublists at the end of the step); with protocol tracing on, each
    /// gets the reference's `-V` DELSUB line.
    pub(super) fn close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        logs: &mut LogQueue,
        trace: bool,
    ) {
        if self.routes.contains_key(&conn) {
            // One close path for every kind of connection.
            self.close_route(conn, reason, logs);
            return;
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.is_closing() {
            return;
        }
        client.closing = Some(reason);
        let prefix = log::client_prefix(conn, client);
        logs.push_prefixed(
            LogLevel::Debug,
            Some(conn),
            prefix.clone(),
            format!("Client connection closed: {}", reason.as_str()),
        );
        if trace {
            for sub in client.subs.values() {
                logs.push_prefixed(
                    LogLevel::Trace,
                    Some(conn),
                    prefix.clone(),
                    protocol_trace::delsub(&sub.sid),
                );
            }
        }
        let subs = std::mem::take(&mut client.subs);
        client.sids.clear();
        client.closed_subjects = subs.values().map(|sub| sub.subject.clone()).collect();
        let account = client.account;
        self.retired.extend(
            subs.into_iter()
                .map(|(index, sub)| (account, SubKey { conn, index }, sub)),
        );
        self.actions.push_back(Action::Close { conn, reason });
        self.newly_closed.push(conn);
        debug_assert!(self.clients[&conn].subs.is_empty());
    }

    /// `conn` holds more unsent output than `max_pending`: a slow consumer.
    /// Like nats-server, no `-ERR` (the peer is not reading anyway): its
    /// buffered output is dropped and it alone is closed; whoever filled the
    /// buffer goes on. Returns the account to charge, if it was cut off now.
    pub(super) fn cut_slow_consumer(
        &mut self,
        conn: ConnId,
        max_pending: usize,
        logs: &mut LogQueue,
        trace: bool,
    ) -> Option<AccountId> {
        let client = self.clients.get_mut(&conn)?;
        if client.is_closing() || client.pending_bytes() <= max_pending {
            return None;
        }
        let account = client.account;
        client.outbound.discard(&mut self.chunks);
        self.log(
            logs,
            LogLevel::Info,
            conn,
            format!("Slow Consumer Detected: MaxPending of {max_pending} Exceeded"),
        );
        self.close(conn, CloseReason::SlowConsumerPendingBytes, logs, trace);
        Some(account)
    }

    /// Move the expired auto-unsubscribes to `retired`.
    pub(super) fn expire_subscriptions(&mut self) {
        while let Some(key) = self.expired.pop() {
            let Some(client) = self.clients.get_mut(&key.conn) else {
                continue;
            };
            let Some(sub) = client.subs.remove(&key.index) else {
                continue;
            };
            client.sids.remove(&sub.sid);
            self.retired.push((client.account, key, sub));
        }
    }
}
