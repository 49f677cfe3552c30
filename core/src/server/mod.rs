//! The server machine: the step driver and the parts it owns.
//!
//! `Server` is the sans-I/O heart of rnats. The runtime calls it with events
//! (see [`crate::runtime`]): a connection accepted, bytes read, bytes written,
//! a connection closed, a timer due. It answers by appending protocol bytes to
//! per-connection outbound buffers and queueing [`Action`]s; it never blocks
//! and never touches a socket.
//!
//! ```text
//! Server (the step driver: events in, actions out, finish_step)
//!   ├── Connections   clients, outbound bytes, Transmit/Close, every close
//!   ├── Router        accounts, Sublists, imports, mappings, delivery
//!   ├── System        $SYS requests and events, answered at the end of a step
//!   ├── TimerTable    one deadline per connection, the statsz heartbeat
//!   └── LogQueue, MonitorState, the message trace, the seeded rng
//! ```
//!
//! JetStream, the store, RAFT and the server-to-server links arrive as more
//! parts owned here, each a machine of its own that the driver feeds and
//! whose outputs it collects at the end of the step.
//!
//! Every public event ends with [`Server::finish_step`] (or, for events that
//! carry no time, with the retirement of the step's closed subscriptions),
//! so between two calls the machine is consistent: the Sublists hold exactly
//! the open clients' subscriptions, the system services have answered, and
//! the timer table holds each open connection's next deadline.
//!
//! Invariants:
//! - A connection whose `closing` is set receives no more bytes, and holds
//!   no subscriptions once its step is finished.
//! - Each connection has at most one `Transmit` action queued at a time.
//! - Every open connection is filed in the timer table at its
//!   `next_deadline()`; a closing one fires no timer.
//! - A publisher never waits for a subscriber: a subscriber whose pending
//!   output passes `max_pending` is closed as a slow consumer instead.

pub(crate) mod accounts;
mod callout_ops;
mod client;
mod client_ops;
mod closed;
mod config;
mod connections;
mod error;
mod fetch_ops;
mod jetstream_link;
mod log;
mod monitor_state;
mod outbound;
mod protocol_trace;
mod resolver_peers;
mod resolver_requests;
mod route_ops;
mod router;
mod routes;
mod stats;
pub mod system;
mod system_inbox;
pub mod trace;
mod view;

pub use crate::auth::AuthConfig;
pub use accounts::{AccountId, AccountStats, SubTarget};
pub use client::{Client, ClientStats, SubKey, Subscription};
#[cfg(test)]
pub(crate) use closed::closed_connection;
pub(crate) use closed::non_empty;
pub use closed::{ClosedConnection, ClosedRing, DEFAULT_MAX_CLOSED_CLIENTS};
#[cfg(feature = "planted-defects")]
pub use config::PlantedDefect;
pub use config::{
    ClusterConfig, MonitorSettings, RouteTls, RouteUrl, ServerConfig, ServerIdentity, TlsPolicy,
    WriteTimeoutPolicy, NATS_COMPATIBLE_VERSION,
};
pub use connections::Connections;
pub use error::ServerError;
pub use log::{LogLevel, LogRecord};
pub use monitor_state::{HostStats, MonitorState};
pub use outbound::{OutboundBatch, LARGE_CHUNK, SMALL_CHUNK};
pub use router::Router;
pub use routes::{DialRequest, RouteConn, DEFAULT_ROUTE_AUTH_TIMEOUT, MAX_ROUTE_PING_INTERVAL};
pub use stats::ServerStats;
pub use view::View;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use core::net::SocketAddr;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::{self as auth, Authenticator};
use crate::protocol::{self, ParserLimits, ServerInfo};
use crate::runtime::{Action, CloseReason, ConnId, ListenerKind, TimerKey, TimerTable};
use crate::time::{Clock, Instant, WallTime};
use accounts::Accounts;
use client::MAX_NO_RTT_PING_BEFORE_FIRST_PONG;
use log::LogQueue;
use router::{Delivery, RouteCx};

/// The first PING after CONNECT comes sooner than `ping_interval`, as in nats-server.
const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);

/// The JetStream API level nats-server v2.15 announces in INFO (`api_lvl`).
const JETSTREAM_API_LEVEL: i32 = 5;

/// The core NATS server state machine.
pub struct Server {
    config: ServerConfig,
    conns: Connections,
    router: Router,
    authenticator: Authenticator,
    /// Websocket clients' authenticator when the websocket block overrides
    /// the top-level credentials (`WebSocketAuth::overrides`).
    ws_authenticator: Option<Authenticator>,
    /// Draws queue-group members, weighted mappings, response tokens,
    /// nonces and ping jitter; seeded by the runtime.
    rng: ChaCha8Rng,
    timers: TimerTable,
    stats: ServerStats,
    /// Log lines for the runtime, in the reference's wording.
    logs: LogQueue,
    /// Closed connections, HTTP request counts, host facts, wall clock.
    monitor: MonitorState,
    /// `$SYS` events and request handling.
    system: system_inbox::System,
    /// JetStream's subscriptions and the messages queued for it.
    jetstream: jetstream_link::JetStreamLink,
    /// The trace of the message being routed, when it asked for one.
    trace: Option<Box<trace::MsgTrace>>,
    /// Reused buffer for the no-responders header block.
    scratch: BytesMut,
    /// Reused buffer for a subject rewritten by an account mapping.
    mapped_subject: Vec<u8>,
    /// The directory resolver's file changes and the replies that wait
    /// for them (`resolver_requests.rs`).
    resolver_files: resolver_requests::ResolverFiles,
    /// The routes this server dials (`routes.rs`).
    dialer: routes::Dialer,
    /// See [`Server::cluster_name`].
    cluster_name: String,
    cluster_dynamic: bool,
    /// Auth callout requests waiting for an answer (`callout_ops.rs`).
    callouts: callout_ops::Callouts,
    account_fetches: fetch_ops::AccountFetches,
    peers: resolver_peers::PeerResolver,
    /// Accounts with a dedicated route to every pooling peer (the
    /// configured ones, and the system account when pooling).
    pinned: Vec<String>,
    /// The `connect_urls` clients were last told (empty until a peer
    /// announced URLs, as the reference's INFO).
    connect_urls: Vec<String>,
    /// The same for websocket clients (the servers' websocket URLs).
    ws_connect_urls: Vec<String>,
    /// Lame duck mode was entered: this server's own client URLs are no
    /// longer announced.
    lame_duck: bool,
}

impl Server {
    /// A server with `config`, drawing its randomness from `seed`.
    pub fn new(mut config: ServerConfig, seed: u64) -> Self {
        assert!(config.max_payload > 0, "max_payload must be positive");
        assert!(
            config.max_control_line > 0,
            "max_control_line must be positive"
        );
        assert!(config.ping_max > 0, "ping_max must be positive");
        let (mut accounts, warnings) = Accounts::build(&config, None);
        let jetstream = jetstream_link::JetStreamLink::new(config.jetstream.as_ref());
        jetstream.install(&mut accounts, &config.identity.server_id);
        let mut logs = LogQueue::default();
        for warning in warnings {
            logs.push(LogLevel::Error, None, warning);
        }
        let mut resolver_files = resolver_requests::ResolverFiles::default();
        if let Some(mode) = config.auth.operator.as_mut() {
            for write in std::mem::take(&mut mode.startup_writes) {
                resolver_files.queue(write);
            }
            for warning in std::mem::take(&mut mode.startup_warnings) {
                logs.push(LogLevel::Error, None, warning);
            }
        }
        let mut server = Server {
            resolver_files,
            authenticator: Authenticator::new(&config.auth),
            ws_authenticator: websocket_auth(&config).map(|auth| Authenticator::new(&auth)),
            router: Router::new(accounts),
            config,
            conns: Connections::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            timers: TimerTable::default(),
            stats: ServerStats::default(),
            monitor: MonitorState::default(),
            system: system_inbox::System::new(seed),
            jetstream,
            trace: None,
            scratch: BytesMut::new(),
            mapped_subject: Vec::new(),
            logs,
            dialer: routes::Dialer::default(),
            cluster_name: String::new(),
            cluster_dynamic: false,
            callouts: callout_ops::Callouts::default(),
            account_fetches: fetch_ops::AccountFetches::default(),
            peers: resolver_peers::PeerResolver::default(),
            pinned: Vec::new(),
            connect_urls: Vec::new(),
            ws_connect_urls: Vec::new(),
            lame_duck: false,
        };
        server.start_cluster();
        server
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The parts, borrowed for reading (what monitoring is built from).
    pub fn view(&self) -> View<'_> {
        View {
            config: &self.config,
            conns: &self.conns,
            accounts: &self.router.accounts,
            stats: self.stats,
            monitor: &self.monitor,
            cluster_name: &self.cluster_name,
        }
    }

    pub fn client(&self, conn: ConnId) -> Option<&Client> {
        self.conns.get(conn)
    }

    /// Every connection, open or closing.
    pub fn connections(&self) -> &Connections {
        &self.conns
    }

    pub fn num_connections(&self) -> usize {
        self.view().num_connections()
    }

    /// Client subscriptions, in every account.
    pub fn num_subscriptions(&self) -> usize {
        self.view().num_subscriptions()
    }

    /// The name of the account `conn` is bound to.
    pub fn account_of(&self, conn: ConnId) -> Option<&str> {
        self.view().account_of(conn)
    }

    /// Changes to the directory resolver's files since the last call, in
    /// the order to make them, each with its id for
    /// [`Server::handle_resolver_written`].
    pub fn take_resolver_writes(&mut self) -> Vec<(u64, auth::ResolverWrite)> {
        self.resolver_files.take()
    }

    /// The accounts JetStream serves and their limits, when a claims update
    /// changed them since the last call: for the runtime to hand to the
    /// JetStream machine (`JetStream::set_accounts`).
    pub fn take_jetstream_accounts(
        &mut self,
    ) -> Option<BTreeMap<String, crate::jetstream::config::AccountLimits>> {
        self.jetstream.take_changed_accounts()
    }

    /// Log lines produced since the last call, oldest first.
    pub fn take_logs(&mut self) -> impl Iterator<Item = LogRecord> + '_ {
        self.logs.drain()
    }

    // ----- monitoring -----

    /// The runtime's wall clock read at monotonic `now`. The first reading
    /// is the server's start time; later ones (the runtime may give one at
    /// any step) keep dates right when the wall clock is stepped.
    pub fn set_wall_clock(&mut self, now: Instant, wall: WallTime) {
        let first = self.monitor.started == WallTime::default();
        self.monitor.wall = Clock {
            now,
            wall_now: wall,
        };
        if first {
            if let Some(mode) = self.config.auth.operator.as_mut() {
                let now = i64::try_from(wall.as_unix_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
                for warning in mode.preload_warnings(now) {
                    self.logs.push(LogLevel::Warn, None, warning);
                }
            }
            self.monitor.started = wall;
            self.monitor.config_loaded = wall;
            self.system.start(now);
            self.timers
                .set_or_cancel(TimerKey::Heartbeat, self.system.deadline());
        }
    }

    /// The latest process facts the runtime sampled (memory, CPU, cores).
    pub fn set_host_stats(&mut self, host: HostStats) {
        self.monitor.host = host;
    }

    /// How many closed connections `/connz?state=closed` remembers
    /// (`max_closed_clients`; 0 keeps none).
    pub fn set_closed_capacity(&mut self, capacity: usize) {
        self.monitor.closed = ClosedRing::new(capacity);
    }

    /// Clients a monitoring page just listed whose round trip is unknown
    /// get one PING to measure it, as the reference does when `/connz`
    /// reports them (only clients that named their language: real client
    /// libraries, not telnet sessions).
    pub fn measure_rtt(&mut self, now: Instant, conns: impl IntoIterator<Item = ConnId>) {
        for conn in conns {
            let Some(client) = self.conns.get_mut(conn) else {
                continue;
            };
            let real_client = client
                .options
                .lang
                .as_deref()
                .is_some_and(|l| !l.is_empty());
            let settled = client.first_pong_sent
                || now - client.accepted_at > MAX_NO_RTT_PING_BEFORE_FIRST_PONG;
            if client.is_closing()
                || client.rtt.is_some()
                || client.rtt_start.is_some()
                || !real_client
                || !settled
            {
                continue;
            }
            client.rtt_start = Some(now);
            client.pings_out += 1;
            protocol::write_ping(&mut self.conns.sink(conn));
            self.conns.queue_transmit(conn);
            self.enforce_pending_limit(conn);
        }
        self.retire_subscriptions();
    }

    /// Count one HTTP request to the endpoint `path` (`/varz` `http_req_stats`).
    pub fn note_http_request(&mut self, path: &str) {
        *self
            .monitor
            .http_requests
            .entry(path.to_owned())
            .or_insert(0) += 1;
    }

    /// Monitoring's view of time at `now`.
    pub fn clock(&self, now: Instant) -> Clock {
        self.monitor.clock(now)
    }

    pub fn monitor_state(&self) -> &MonitorState {
        &self.monitor
    }

    #[cfg(test)]
    pub(crate) fn monitor_mut(&mut self) -> &mut MonitorState {
        &mut self.monitor
    }

    #[cfg(test)]
    pub(crate) fn accounts(&self) -> &Accounts {
        &self.router.accounts
    }

    /// Connections of `account` past CONNECT and not closing.
    pub fn account_connections(&self, account: AccountId) -> usize {
        self.view().account_connections(account)
    }

    /// Every Sublist entry in every account (client and internal ones).
    pub fn total_subscriptions(&self) -> usize {
        self.view().total_subscriptions()
    }

    // ----- events in -----

    /// A connection was accepted from `peer` on a `listener`: for a client,
    /// send INFO and start its timers.
    pub fn handle_accept(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        listener: ListenerKind,
    ) {
        match listener {
            ListenerKind::Client | ListenerKind::WebSocket => {
                self.accept_client(now, conn, peer, listener, None)
            }
            ListenerKind::Route => self.accept_route(now, conn, peer),
        }
    }

    /// A websocket client after its upgrade: `handle_accept` with what the
    /// machine keeps of the request (cookies, `X-Forwarded-For`), in place
    /// before the first log line names the client.
    pub fn handle_accept_websocket(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        session: crate::websocket::ClientSession,
    ) {
        self.accept_client(now, conn, peer, ListenerKind::WebSocket, Some(session));
    }

    fn accept_client(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        listener: ListenerKind,
        session: Option<crate::websocket::ClientSession>,
    ) {
        assert!(!self.conns.contains(conn), "{conn} accepted twice");
        assert!(
            conn != system_inbox::INTERNAL_CONN,
            "{conn} is the server's own"
        );
        let limits = ParserLimits {
            max_control_line: self.config.max_control_line,
            max_payload: self.config.max_payload,
        };
        let mut client = Client::new(peer, limits, now);
        client.listener = listener;
        if let Some(session) = session {
            debug_assert_eq!(listener, ListenerKind::WebSocket);
            client.cookies = (!session.cookies.is_empty()).then(|| Box::new(session.cookies));
            client.forwarded_for = session.forwarded_for.map(String::into_boxed_str);
        }
        client.ping_deadline = now + self.config.ping_interval_for(listener);
        let ws_auth = match listener {
            ListenerKind::WebSocket => self.config.websocket.as_ref().map(|ws| &ws.auth),
            ListenerKind::Client | ListenerKind::Route => None,
        };
        let overridden = ws_auth.is_some_and(|auth| auth.overrides());
        if self.config.auth.is_required() || overridden {
            let timeout = ws_auth.and_then(|auth| auth.timeout);
            client.auth_deadline = Some(now + timeout.unwrap_or(self.config.auth_timeout));
        }
        let mut info = self.info_for(conn, &peer, listener);
        if self.authenticator.needs_nonce() {
            let mut raw = [0u8; 11];
            self.rng.fill_bytes(&mut raw);
            client.nonce = auth::encode_nonce(raw);
            info.nonce = client.nonce.clone();
        }
        self.stats.total_connections += 1;
        let over_limit = self.config.max_connections > 0
            && self.num_connections() >= self.config.max_connections;
        self.conns.insert(conn, client);
        protocol::write_info(&mut self.conns.sink(conn), &info);
        self.conns.log(
            &mut self.logs,
            LogLevel::Debug,
            conn,
            String::from("Client connection created"),
        );
        self.refile_timer(conn);
        self.conns.queue_transmit(conn);
        if over_limit {
            self.close_with_error(
                conn,
                &ServerError::MaxConnectionsExceeded,
                CloseReason::MaxConnectionsExceeded,
            );
        }
        self.finish_step(now);
    }

    /// Bytes arrived on `conn`. Every complete operation in `buf` is processed;
    /// a trailing partial frame stays in `buf` for the next read.
    pub fn handle_read(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        if self.conns.route(conn).is_some() {
            self.read_route(now, conn, buf);
            self.finish_step(now);
            return;
        }
        let Some(client) = self.conns.get(conn) else {
            buf.clear();
            return;
        };
        if client.parked.is_empty() {
            self.read_ops(now, conn, buf);
        } else {
            self.read_parked(now, conn, buf);
        }
        self.finish_step(now);
    }

    /// The password check `Action::CheckPassword(conn)` asked for: run
    /// [`PasswordCheck::run`](crate::auth::PasswordCheck::run) where it
    /// blocks nothing, then report with [`Server::handle_password_checked`].
    /// `None` if the login is no longer pending (the client closed).
    pub fn take_password_check(&self, conn: ConnId) -> Option<crate::auth::PasswordCheck> {
        let client = self.conns.get(conn).filter(|c| !c.is_closing())?;
        match &client.pending_login.as_ref()?.wait {
            client::LoginWait::Password(check) => Some(check.clone()),
            client::LoginWait::Callout { .. } | client::LoginWait::Account(_) => None,
        }
    }

    /// The runtime ran `conn`'s password check: log the client in (or
    /// refuse it), then parse what it sent meanwhile. A report for a login
    /// that is no longer pending is ignored.
    pub fn handle_password_checked(&mut self, now: Instant, conn: ConnId, passed: bool) {
        let Some(client) = self.conns.get_mut(conn).filter(|c| !c.is_closing()) else {
            return;
        };
        if !matches!(
            client.pending_login.as_deref(),
            Some(client::PendingLogin {
                wait: client::LoginWait::Password(_),
                ..
            })
        ) {
            return;
        }
        let Some(pending) = client.pending_login.take() else {
            return;
        };
        let listener = client.listener;
        let client::PendingLogin { options, wait } = *pending;
        if let client::LoginWait::Password(check) = &wait {
            self.authenticator_for(listener)
                .password_checked(check, passed);
        }
        // Authenticated again when passed (now from the cache): a reload
        // while the check ran may have changed the users.
        self.decide_parked_login(now, conn, options, passed);
        self.finish_step(now);
    }

    /// What a parked login waited for came: authenticate it again
    /// (`again`) or refuse it, then parse what it sent meanwhile.
    fn decide_parked_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: protocol::ConnectOptions,
        again: bool,
    ) {
        if again {
            self.log_in(now, conn, options);
        } else {
            self.conns.client(conn).options = options.clone();
            self.auth_violation(conn, &options);
        }
        self.resume_parked(now, conn);
    }

    /// A login was decided: parse what `conn` sent while it waited.
    fn resume_parked(&mut self, now: Instant, conn: ConnId) {
        self.enforce_pending_limit(conn);
        if self
            .conns
            .get(conn)
            .is_some_and(|c| !c.is_closing() && c.pending_login.is_none())
        {
            let mut rest = BytesMut::new();
            self.read_parked(now, conn, &mut rest);
            // A partial frame waits for the next read.
            if let Some(client) = self.conns.get_mut(conn) {
                client.parked.extend_from_slice(&rest);
            }
        }
    }

    /// The runtime wrote `written` bytes it had taken with [`Server::take_outbound`].
    pub fn handle_written(&mut self, conn: ConnId, written: usize) {
        self.conns.route_written(conn, written);
        if let Some(client) = self.conns.get_mut(conn) {
            assert!(
                written <= client.bytes_in_flight,
                "{conn}: wrote more than was taken"
            );
            client.bytes_in_flight -= written;
        }
    }

    /// A write to `conn` has not finished within the runtime's write deadline
    /// (the cluster's `write_deadline` for a route when set, else the
    /// top-level one), `written` bytes of it done: the peer
    /// is not reading, a slow consumer. A client is cut off. A route, as in
    /// the reference, is cut off only if nothing at all was written or its
    /// `write_timeout` is `close`; otherwise it is reported slow and the
    /// runtime keeps writing (returns true: go on with the write).
    pub fn handle_write_stalled(&mut self, conn: ConnId, written: usize) -> bool {
        if self.conns.route(conn).is_some_and(|r| !r.is_closing()) {
            return self.route_write_stalled(conn, written);
        }
        if let Some(client) = self.conns.get(conn).filter(|c| !c.is_closing()) {
            self.router.accounts.list[client.account]
                .stats
                .slow_consumers += 1;
            self.stats.slow_consumers += 1;
            let pending = client.pending_bytes();
            // Go prints a time.Duration with %v: "10s", "300ms".
            let nanos = self.config.write_deadline(false).as_nanos();
            let deadline = crate::format::go_duration(u64::try_from(nanos).unwrap_or(u64::MAX));
            self.conns.log(
                &mut self.logs,
                LogLevel::Info,
                conn,
                format!("Slow Consumer Detected: WriteDeadline of {deadline} exceeded with 1 chunks of {pending} total bytes."),
            );
            self.close(conn, CloseReason::SlowConsumerWriteDeadline);
        }
        self.retire_subscriptions();
        false
    }

    /// The connection is gone (the peer closed it, an I/O error, or the runtime
    /// finished a close this machine asked for). Forget it.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if self.conns.route(conn).is_some() {
            self.close(conn, CloseReason::ClientClosed);
            self.retire_subscriptions();
            self.route_gone(now, conn);
            self.finish_step(now);
            return;
        }
        if self.conns.get(conn).is_some_and(|c| !c.is_closing()) {
            self.close(conn, CloseReason::ClientClosed);
        }
        self.retire_subscriptions();
        self.publish_disconnect_event(now, conn);
        let clock = self.clock(now);
        if let Some(client) = self.conns.get(conn) {
            let account = &self.router.accounts.list[client.account].name;
            let closed = closed::closed_connection(client, conn, account, clock);
            self.monitor.closed.push(closed);
        }
        if self.conns.remove(conn).is_some() {
            self.timers.cancel(TimerKey::Connection(conn));
        }
        self.finish_step(now);
    }

    /// The earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// When the next statsz heartbeat is due (`None` before the first
    /// wall-clock reading). The one timer that outlives every connection.
    pub fn heartbeat_deadline(&self) -> Option<Instant> {
        self.timers.deadline(TimerKey::Heartbeat)
    }

    /// Run every timer due at `now`: auth timeouts, keepalive PINGs, the
    /// statsz heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Connection(conn) if self.conns.route(conn).is_some() => {
                    self.route_timer(now, conn)
                }
                TimerKey::Connection(conn) => self.connection_timer(now, conn),
                TimerKey::RouteDial(dial) => self.dial_timer(dial),
                TimerKey::Resolver => self.resolver_timer(now),
                // Sent by the system services in `finish_step`, which files
                // the next one.
                TimerKey::Heartbeat => {}
            }
        }
        self.finish_step(now);
    }

    /// The end of every step: subscriptions of clients that closed and
    /// auto-unsubscribes that fell due leave the Sublists, the system
    /// services publish their events and answer their requests (which may
    /// close slow consumers in turn), and the heartbeat is filed anew.
    fn finish_step(&mut self, now: Instant) {
        self.retire_subscriptions();
        self.run_callouts(now);
        self.run_system(now);
        self.retire_subscriptions();
        self.jetstream
            .refresh_interest(&mut self.router.accounts, &mut self.router.changed_accounts);
        self.propagate_interest();
        self.run_resolver_peers(now);
        self.timers
            .set_or_cancel(TimerKey::Heartbeat, self.system.deadline());
        debug_assert!(self.conns.retired.is_empty() && self.conns.expired.is_empty());
        debug_assert!(self.conns.newly_closed.is_empty());
    }

    /// File out of the Sublists what closed or expired during this step,
    /// and cancel the timers of connections that started closing.
    fn retire_subscriptions(&mut self) {
        self.conns.expire_subscriptions();
        for (account, key, sub) in self.conns.retired.drain(..) {
            self.router.unfile(account, key, &sub);
        }
        for (account, key, subject, queue) in self.conns.retired_remote.drain(..) {
            self.router
                .unfile_remote(account, key, &subject, queue.as_deref());
        }
        for conn in self.conns.newly_closed.drain(..) {
            self.timers.cancel(TimerKey::Connection(conn));
        }
    }

    // ----- actions out -----

    /// The next thing the runtime must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.conns.poll_action()
    }

    /// Take the bytes queued for `conn`. The runtime writes them, reports
    /// progress with [`Server::handle_written`] and hands the batch back with
    /// [`Server::recycle_outbound`].
    pub fn take_outbound(&mut self, conn: ConnId) -> Option<OutboundBatch> {
        let batch = self.conns.take_outbound(conn)?;
        if self.config.trace {
            let bytes = batch.to_vec();
            for line in protocol_trace::outbound(&bytes, self.config.max_traced_msg_len) {
                self.conns.log(&mut self.logs, LogLevel::Trace, conn, line);
            }
        }
        Some(batch)
    }

    /// A batch taken with [`Server::take_outbound`] is written (or abandoned):
    /// its chunks are reused for later output, so the steady state allocates
    /// nothing. Optional: a batch that is just dropped costs an allocation later.
    pub fn recycle_outbound(&mut self, batch: OutboundBatch) {
        self.conns.recycle_outbound(batch);
    }

    /// Why the server is closing `conn`, if it is.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        match self.conns.route(conn) {
            Some(route) => route.closing,
            None => self.conns.get(conn).and_then(|c| c.closing),
        }
    }

    /// Apply a reloaded configuration. The server's identity (id, name, address)
    /// stays; limits and credentials change. Connections whose credentials no
    /// longer pass are closed with `Authorization Violation`, as the reference
    /// does; the others keep going under the new limits.
    pub fn reload(&mut self, config: ServerConfig) {
        // The latest clock reading stands in for an instant of its own.
        self.reload_at(self.monitor.wall.now, config);
    }

    /// [`Self::reload`] at `now` (the auth callout's timeout for the
    /// clients a reload asks it about again runs from there).
    pub fn reload_at(&mut self, now: Instant, mut config: ServerConfig) {
        self.retire_subscriptions();
        config.identity = self.config.identity.clone();
        if let (Some(current), Some(_)) = (&self.config.auth.operator, &config.auth.operator) {
            // Operator settings never change on a reload (the runtime refuses
            // that); the accounts stay as claims updates left them.
            config.auth.operator = Some(current.clone());
            config.accounts = self.config.accounts.clone();
        }
        if config.jetstream.is_some() != self.jetstream.enabled() {
            // Turned on or off by the reload (the runtime starts or stops
            // the JetStream machine around this).
            self.jetstream.switch(config.jetstream.as_ref());
        }
        self.config = config;
        self.monitor.config_loaded = self.monitor.wall.wall_now;
        self.rebuild_from_config(Some(now));
        // The accounts' JetStream limits as the file now says them.
        self.jetstream
            .accounts_changed(crate::jetstream::config::enabled_accounts(&self.config));
    }

    /// An account claims update was accepted: the JWT accounts are built
    /// anew from `mode`, as a reload would (without counting as one).
    pub(super) fn apply_operator_mode(&mut self, mode: crate::auth::OperatorMode) {
        self.retire_subscriptions();
        self.config.accounts = mode
            .account_configs()
            .expect("update_account checked that the accounts build");
        self.config.auth.operator = Some(mode);
        self.rebuild_from_config(None);
        self.enforce_account_connection_limits();
        self.jetstream
            .accounts_changed(crate::jetstream::config::enabled_accounts(&self.config));
    }

    /// After new account claims: an account over its (new) `conn` limit
    /// keeps its oldest clients and closes the newest, as the reference.
    fn enforce_account_connection_limits(&mut self) {
        let Some(mode) = &self.config.auth.operator else {
            return;
        };
        let mut counted: BTreeMap<AccountId, usize> = BTreeMap::new();
        let mut over = Vec::new();
        // Ids ascend in connection order: oldest first.
        for conn in self.conns.ids() {
            let client = self.conns.client(conn);
            if client.is_closing() || !client.connect_received {
                continue;
            }
            let name = &self.router.accounts.list[client.account].name;
            let Some(max) = mode.connection_limit(name) else {
                continue;
            };
            let count = counted.entry(client.account).or_default();
            if *count >= max {
                over.push(conn);
            } else {
                *count += 1;
            }
        }
        for conn in over {
            self.close_with_error(
                conn,
                &ServerError::MaxAccountConnectionsExceeded,
                CloseReason::MaxAccountConnectionsExceeded,
            );
        }
        self.retire_subscriptions();
    }

    /// Accounts, authenticators and every client's identity, built anew
    /// from `self.config`.
    /// `reload` is the instant of a configuration reload (`None`: a claims
    /// update), from which callout questions it sends time out.
    fn rebuild_from_config(&mut self, reload: Option<Instant>) {
        // Accounts are rebuilt from scratch (an account keeps its id); every
        // client is authenticated again and its subscriptions filed anew
        // under its (new) account and permissions. Open response routes of
        // service imports are dropped.
        let conns = self.conns.ids();
        for &conn in &conns {
            self.unfile_all(conn);
        }
        let (mut accounts, warnings) = Accounts::build(&self.config, Some(&self.router.accounts));
        self.jetstream
            .install(&mut accounts, &self.config.identity.server_id);
        for warning in warnings {
            self.logs.push(LogLevel::Error, None, warning);
        }
        self.router.replace_accounts(accounts);
        self.router.refresh_announced();
        self.refile_remote_interest();
        self.authenticator = self.authenticator.renewed(&self.config.auth);
        self.ws_authenticator = match (&self.ws_authenticator, websocket_auth(&self.config)) {
            (Some(current), Some(auth)) => Some(current.renewed(&auth)),
            (None, Some(auth)) => Some(Authenticator::new(&auth)),
            (_, None) => None,
        };
        for conn in conns {
            self.reauthenticate(reload, conn);
        }
        if let Some(now) = reload {
            self.send_rechecks(now);
        }
        self.retire_subscriptions();
    }

    /// Lame-duck mode: tell every route and every client (INFO with
    /// `ldm: true`) that this server is going away, so peers stop
    /// announcing its client URLs and clients reconnect elsewhere; the
    /// clients' INFO names the other servers only, as the reference's.
    pub fn enter_lame_duck_mode(&mut self) {
        if std::mem::replace(&mut self.lame_duck, true) {
            return;
        }
        self.announce_lame_duck_to_routes();
        if let Some(urls) = self.cluster_connect_urls(false) {
            self.connect_urls = urls;
        }
        if let Some(urls) = self.cluster_connect_urls(true) {
            self.ws_connect_urls = urls;
        }
        for conn in self.conns.ids() {
            let client = self.conns.get(conn).expect("listed");
            if client.is_closing() {
                continue;
            }
            let mut info = self.info_for(conn, &client.peer, client.listener);
            info.ldm = true;
            protocol::write_info(&mut self.conns.sink(conn), &info);
            self.conns.queue_transmit(conn);
            self.enforce_pending_limit(conn);
        }
        self.retire_subscriptions();
    }

    /// The runtime verified `conn`'s client certificate: these are the names
    /// it maps to under `verify_and_map` (emails, DNS names, URIs, then the
    /// subject DN), most specific first. Call before its CONNECT is read.
    pub fn set_peer_certificate_names(&mut self, conn: ConnId, names: Vec<String>) {
        if let Some(client) = self.conns.get_mut(conn) {
            client.cert_names = Some(names);
        }
    }

    /// Connections not yet closing, in id order.
    pub fn open_connections(&self) -> Vec<ConnId> {
        self.view().open_connections()
    }

    /// Close one connection for `reason` (lame duck mode closes clients one
    /// by one with `ServerShutdown`).
    pub fn close_connection(&mut self, conn: ConnId, reason: CloseReason) {
        self.close(conn, reason);
        self.retire_subscriptions();
    }

    /// The runtime found a websocket framing violation on `conn` (it sends
    /// the close frame): logged as the reference logs it, then the
    /// connection closes as a read error.
    pub fn handle_websocket_error(
        &mut self,
        conn: ConnId,
        error: &crate::websocket::frame::FrameError,
    ) {
        if self
            .conns
            .get(conn)
            .is_some_and(|client| !client.is_closing())
        {
            self.conns.log(
                &mut self.logs,
                LogLevel::Error,
                conn,
                format!("read error: {error}"),
            );
        }
        self.close_connection(conn, CloseReason::ReadError);
    }

    /// Close every connection (server shutdown).
    pub fn shutdown(&mut self) {
        for conn in self.conns.ids() {
            self.close(conn, CloseReason::ServerShutdown);
        }
        for conn in self.conns.route_ids() {
            self.close(conn, CloseReason::ServerShutdown);
        }
        self.retire_subscriptions();
    }

    // ----- the parts, borrowed together -----

    /// The router and what routing may touch, borrowed apart.
    fn route_parts(&mut self, now: Instant) -> (&mut Router, RouteCx<'_>) {
        let clock = self.monitor.clock(now);
        let Server {
            config,
            conns,
            router,
            rng,
            stats,
            logs,
            system,
            jetstream,
            trace,
            ..
        } = self;
        let cx = RouteCx {
            conns,
            rng,
            stats,
            logs,
            system,
            jetstream,
            trace: trace.as_deref_mut(),
            config,
            now,
            clock,
            origin: router::Origin::Local,
        };
        (router, cx)
    }

    /// Route `delivery` in `account` from its publisher.
    fn route(
        &mut self,
        now: Instant,
        account: AccountId,
        delivery: &Delivery<'_>,
        publisher_echo: bool,
    ) -> bool {
        // Interest this step added goes to the routes before the message:
        // a request's reply subscription must reach the responder's
        // server before the request does. (Checked inline: this is every
        // publish's path.)
        if !self.router.interest_changes.is_empty() {
            self.propagate_interest();
        }
        let (router, mut cx) = self.route_parts(now);
        router.route(&mut cx, account, delivery, publisher_echo, 0)
    }

    // ----- timers -----

    fn connection_timer(&mut self, now: Instant, conn: ConnId) {
        let client = self
            .conns
            .get(conn)
            .expect("timers of gone clients are cancelled");
        if client.is_closing() {
            return;
        }
        let callout_pending = client.callout_recheck.is_some()
            || matches!(
                client.pending_login.as_deref(),
                Some(client::PendingLogin {
                    wait: client::LoginWait::Callout { .. },
                    ..
                })
            );
        if client.auth_deadline.is_some_and(|d| d <= now) && callout_pending {
            // An auth callout that was not answered in time.
            self.callout_timed_out(now, conn);
            return;
        }
        if client.auth_deadline.is_some_and(|d| d <= now) {
            self.close_with_error(
                conn,
                &ServerError::AuthenticationTimeout,
                CloseReason::AuthenticationTimeout,
            );
            return;
        }
        if client.jwt_deadline.is_some_and(|d| d <= now) {
            self.close_with_error(
                conn,
                &ServerError::UserAuthenticationExpired,
                CloseReason::AuthenticationExpired,
            );
            return;
        }
        if client.account_deadline.is_some_and(|d| d <= now) {
            self.close_with_error(
                conn,
                &ServerError::AccountAuthenticationExpired,
                CloseReason::AuthenticationExpired,
            );
            return;
        }
        if client.ping_deadline <= now {
            self.ping_timer_fired(now, conn);
        }
        self.refile_timer(conn);
    }

    fn refile_timer(&mut self, conn: ConnId) {
        let key = TimerKey::Connection(conn);
        match self.conns.get(conn) {
            Some(client) if !client.is_closing() => self.timers.set(key, client.next_deadline()),
            // Cancelled with the step's other closes.
            _ => debug_assert!(
                self.conns.newly_closed.contains(&conn) || self.timers.deadline(key).is_none()
            ),
        }
    }

    // ----- closing -----

    fn close_with_error(&mut self, conn: ConnId, error: &ServerError, reason: CloseReason) {
        self.conns
            .close_with_error(conn, error, reason, &mut self.logs, self.config.trace);
    }

    /// Mark `conn` closing: its subscriptions and its timer go at the end
    /// of the step, and the runtime is asked to flush and close it.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.conns
            .close(conn, reason, &mut self.logs, self.config.trace);
    }

    /// A connection holding more unsent output than `max_pending` is a slow
    /// consumer, whatever filled its buffer (nats-server checks on every queueing).
    fn enforce_pending_limit(&mut self, conn: ConnId) {
        let cut = self.conns.cut_slow_consumer(
            conn,
            self.config.max_pending,
            &mut self.logs,
            self.config.trace,
        );
        if let Some(account) = cut {
            self.stats.slow_consumers += 1;
            self.router.accounts.list[account].stats.slow_consumers += 1;
        }
    }

    /// The INFO for `conn`. A websocket client is told the websocket
    /// listener's host, port and TLS, as the reference tells it.
    fn info_for(&self, conn: ConnId, peer: &SocketAddr, listener: ListenerKind) -> ServerInfo {
        let mut info = self.client_port_info(conn, peer);
        if let (ListenerKind::WebSocket, Some(ws)) = (listener, &self.config.websocket) {
            info.host = ws.host.clone();
            info.port = ws.port;
            info.tls_required = ws.tls;
            info.tls_available = ws.tls;
            info.auth_required |= ws.auth.overrides();
            // A websocket client is told the servers' websocket URLs.
            info.connect_urls = self.ws_connect_urls.clone();
        }
        info
    }

    /// The authenticator for a client from `listener`.
    fn authenticator_for(&self, listener: ListenerKind) -> &Authenticator {
        match (listener, &self.ws_authenticator) {
            (ListenerKind::WebSocket, Some(authenticator)) => authenticator,
            _ => &self.authenticator,
        }
    }

    fn client_port_info(&self, conn: ConnId, peer: &SocketAddr) -> ServerInfo {
        ServerInfo {
            server_id: self.config.identity.server_id.clone(),
            server_name: self.config.effective_name().to_string(),
            version: self.config.identity.version.clone(),
            proto: 1,
            git_commit: self.config.identity.git_commit.clone(),
            go: self.config.identity.toolchain.clone(),
            host: self.config.identity.host.clone(),
            port: self.config.identity.port,
            headers: true,
            auth_required: self.authenticator.announces_auth_required(),
            tls_required: self.config.tls.required && !self.config.tls.allow_non_tls,
            tls_verify: self.config.tls.required && self.config.tls.verify,
            tls_available: self.config.tls.required && self.config.tls.allow_non_tls,
            max_payload: self.config.max_payload as i64,
            client_id: conn.0,
            client_ip: peer.ip().to_string(),
            api_lvl: JETSTREAM_API_LEVEL,
            jetstream: self.jetstream.enabled(),
            xkey: self.config.identity.xkey.clone(),
            cluster: self.cluster_name.clone(),
            cluster_dynamic: self.cluster_dynamic,
            connect_urls: self.connect_urls.clone(),
            ..ServerInfo::default()
        }
    }
}

/// The websocket clients' authentication when the websocket block
/// overrides the top-level one.
fn websocket_auth(config: &ServerConfig) -> Option<crate::auth::AuthConfig> {
    let ws = config.websocket.as_ref()?;
    ws.auth
        .overrides()
        .then(|| ws.auth.auth_config(&config.auth))
}

#[cfg(test)]
mod tests;
