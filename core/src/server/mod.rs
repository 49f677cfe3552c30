//! The server machine: client connections, subscriptions and message routing.
//!
//! `Server` is the sans-I/O heart of rnats. The runtime calls it with events
//! (see [`crate::runtime`]): a connection accepted, bytes read, bytes written,
//! a connection closed, a timer due. It answers by appending protocol bytes to
//! per-connection outbound buffers and queueing [`Action`]s; it never blocks
//! and never touches a socket.
//!
//! Routing: a PUB or HPUB is matched against the Sublist once; the payload is
//! copied into each matching connection's outbound buffer behind its own MSG
//! line. Every plain subscription gets the message; each queue group gets it
//! once, at a member chosen with the server's seeded random stream.
//!
//! Invariants:
//! - A connection whose `closing` is set has no subscriptions in the Sublist
//!   and receives no more bytes.
//! - Each connection has at most one `Transmit` action queued at a time.
//! - `timers` holds exactly one entry per open connection, at its
//!   `next_deadline()`.
//! - A publisher never waits for a subscriber: a subscriber whose pending
//!   output passes `max_pending` is closed as a slow consumer instead.

pub(crate) mod accounts;
mod client;
mod config;
mod log;
mod outbound;
mod protocol_trace;
pub mod system;
pub mod trace;

pub use crate::auth::AuthConfig;
pub use accounts::{AccountId, AccountStats, SubTarget};
pub use client::{Client, ClientStats, SubKey, Subscription};
#[cfg(feature = "planted-defects")]
pub use config::PlantedDefect;
pub use config::{MonitorSettings, ServerConfig, TlsPolicy, NATS_COMPATIBLE_VERSION};
pub use log::{LogLevel, LogRecord};
pub use outbound::{OutboundBatch, LARGE_CHUNK, SMALL_CHUNK};

use std::collections::{hash_map, BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::ResponseType;
use crate::auth::{self as auth, Authenticator, PermissionChecker};
use crate::monitor::format::go_quote;
use crate::monitor::{closed_connection, Clock, HostStats, MonitorState};
use crate::protocol::{self, ClientOp, ParserLimits, ServerInfo};
use crate::runtime::{Action, CloseReason, ConnId};
use crate::subject;
use crate::time::{Instant, WallTime};
use accounts::{Accounts, GLOBAL};
use log::LogQueue;
use outbound::ChunkPool;

/// The first PING after CONNECT comes sooner than `ping_interval`, as in nats-server.
const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);

/// Account boundaries one message may cross (import chains; ends a cycle).
const MAX_ACCOUNT_HOPS: usize = 8;

/// The JetStream API level nats-server v2.15 announces in INFO (`api_lvl`).
const JETSTREAM_API_LEVEL: i32 = 5;

/// Reply subjects longer than this make a delivery measure the receiver's
/// round trip (the reference's `minReplyLen`).
const MIN_RTT_REPLY_LEN: usize = 15;
/// Before its first PONG, a client gets no RTT PING until this long after
/// it connected (the reference's `maxNoRTTPingBeforeFirstPong`).
const MAX_NO_RTT_PING_BEFORE_FIRST_PONG: Duration = Duration::from_secs(2);

/// Server-wide counters reported by monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub total_connections: u64,
}

/// The core NATS server state machine.
pub struct Server {
    config: ServerConfig,
    clients: BTreeMap<ConnId, Client>,
    /// Every account's Sublist and the routes between accounts.
    accounts: Accounts,
    authenticator: Authenticator,
    /// Draws queue-group members and ping jitter; seeded by the runtime.
    rng: ChaCha8Rng,
    actions: VecDeque<Action>,
    /// (deadline, connection): one entry per open connection.
    timers: BTreeSet<(Instant, ConnId)>,
    stats: ServerStats,
    /// Auto-unsubscribes that fell due while a match result was borrowed.
    expired_subs: Vec<SubKey>,
    /// Reused buffer for the no-responders header block.
    scratch: BytesMut,
    /// Reused buffer for a subject rewritten by an account mapping.
    mapped_subject: Vec<u8>,
    /// Reused per-depth lists of import routes a match reached.
    crossings: [Vec<SubTarget>; MAX_ACCOUNT_HOPS],
    /// Log lines for the runtime, in the reference's wording.
    logs: LogQueue,
    /// Closed connections, HTTP request counts, host facts, wall clock.
    monitor: MonitorState,
    /// `$SYS` events and request handling.
    system: system::System,
    /// The trace of the message being routed, when it asked for one.
    trace: Option<Box<trace::MsgTrace>>,
    /// Outbound chunks the runtime has written and handed back.
    chunks: ChunkPool,
}

/// A message on its way through the router.
struct Delivery<'a> {
    publisher: ConnId,
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    /// The header block (HPUB), if any.
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
}

impl Server {
    /// A server with `config`, drawing its randomness from `seed`.
    pub fn new(config: ServerConfig, seed: u64) -> Self {
        assert!(config.max_payload > 0, "max_payload must be positive");
        assert!(
            config.max_control_line > 0,
            "max_control_line must be positive"
        );
        assert!(config.ping_max > 0, "ping_max must be positive");
        let (accounts, warnings) = Accounts::build(&config);
        let mut logs = LogQueue::default();
        for warning in warnings {
            logs.push(LogLevel::Error, None, warning);
        }
        Server {
            authenticator: Authenticator::new(&config.auth),
            accounts,
            config,
            clients: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            actions: VecDeque::new(),
            timers: BTreeSet::new(),
            stats: ServerStats::default(),
            expired_subs: Vec::new(),
            scratch: BytesMut::new(),
            mapped_subject: Vec::new(),
            crossings: Default::default(),
            monitor: MonitorState::default(),
            system: system::System::new(seed),
            trace: None,
            chunks: ChunkPool::default(),
            logs,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    pub fn client(&self, conn: ConnId) -> Option<&Client> {
        self.clients.get(&conn)
    }

    pub fn num_connections(&self) -> usize {
        self.clients.values().filter(|c| !c.is_closing()).count()
    }

    /// Client subscriptions, in every account.
    pub fn num_subscriptions(&self) -> usize {
        self.accounts.client_subscriptions()
    }

    /// The name of the account `conn` is bound to.
    pub fn account_of(&self, conn: ConnId) -> Option<&str> {
        let client = self.clients.get(&conn)?;
        Some(&self.accounts.list[client.account].name)
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
            self.monitor.started = wall;
            self.monitor.config_loaded = wall;
            self.system.start(now);
        }
    }

    /// The latest process facts the runtime sampled (memory, CPU, cores).
    pub fn set_host_stats(&mut self, host: HostStats) {
        self.monitor.host = host;
    }

    /// How many closed connections `/connz?state=closed` remembers
    /// (`max_closed_clients`; 0 keeps none).
    pub fn set_closed_capacity(&mut self, capacity: usize) {
        self.monitor.closed = crate::monitor::ClosedRing::new(capacity);
    }

    /// Clients a monitoring page just listed whose round trip is unknown
    /// get one PING to measure it, as the reference does when `/connz`
    /// reports them (only clients that named their language: real client
    /// libraries, not telnet sessions).
    pub fn measure_rtt(&mut self, now: Instant, conns: impl IntoIterator<Item = ConnId>) {
        for conn in conns {
            let Some(client) = self.clients.get_mut(&conn) else {
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
            protocol::write_ping(&mut client.outbound.sink(&mut self.chunks));
            self.queue_transmit(conn);
        }
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

    pub(crate) fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Connections of `account` past CONNECT and not closing.
    pub fn account_connections(&self, account: AccountId) -> usize {
        self.clients
            .values()
            .filter(|c| c.account == account && c.connect_received && !c.is_closing())
            .count()
    }

    /// Every Sublist entry in every account: client subscriptions and the
    /// server's own (imports, system services), as the reference counts them.
    pub fn total_subscriptions(&self) -> usize {
        self.accounts.list.iter().map(|a| a.sublist.len()).sum()
    }

    // ----- events in -----

    /// A connection was accepted from `peer`: send INFO and start its timers.
    pub fn handle_accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        assert!(!self.clients.contains_key(&conn), "{conn} accepted twice");
        assert!(conn != system::INTERNAL_CONN, "{conn} is the server's own");
        let limits = ParserLimits {
            max_control_line: self.config.max_control_line,
            max_payload: self.config.max_payload,
        };
        let mut client = Client::new(peer, limits, now);
        client.ping_deadline = now + self.config.ping_interval;
        if self.config.auth.is_required() {
            client.auth_deadline = Some(now + self.config.auth_timeout);
        }
        let mut info = self.info_for(conn, &peer);
        if self.authenticator.needs_nonce() {
            let mut raw = [0u8; 11];
            self.rng.fill_bytes(&mut raw);
            client.nonce = auth::encode_nonce(raw);
            info.nonce = client.nonce.clone();
        }
        protocol::write_info(&mut client.outbound.sink(&mut self.chunks), &info);
        self.stats.total_connections += 1;
        let over_limit = self.config.max_connections > 0
            && self.num_connections() >= self.config.max_connections;
        self.clients.insert(conn, client);
        self.log(
            LogLevel::Debug,
            conn,
            String::from("Client connection created"),
        );
        self.refile_timer(conn);
        self.queue_transmit(conn);
        if over_limit {
            self.close_with_error(
                conn,
                "maximum connections exceeded",
                CloseReason::MaxConnectionsExceeded,
            );
        }
    }

    /// Bytes arrived on `conn`. Every complete operation in `buf` is processed;
    /// a trailing partial frame stays in `buf` for the next read.
    pub fn handle_read(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        if !self.clients.contains_key(&conn) {
            buf.clear();
            return;
        }
        #[cfg(feature = "planted-defects")]
        let mut drop_split = self.config.planted_defect == Some(PlantedDefect::DropSplitFrame)
            && !self.clients[&conn].parser.at_op_start();
        #[cfg(feature = "planted-defects")]
        if self.config.planted_defect == Some(PlantedDefect::SlowSubscriberBlocksPublisher)
            && self
                .clients
                .values()
                .any(|c| c.pending_bytes() > self.config.max_pending / 2)
        {
            return;
        }
        while let Some(client) = self.clients.get_mut(&conn) {
            if client.is_closing() {
                // Nothing after a fatal error is looked at, as in the reference.
                buf.clear();
                break;
            }
            if self.config.auth.is_required()
                && !client.connect_received
                && client.parser.at_op_start()
                && buf.first().is_some_and(|b| !matches!(b, b'C' | b'c'))
            {
                // Before CONNECT, an auth-required server takes nothing but CONNECT.
                self.close_with_error(
                    conn,
                    "Authorization Violation",
                    CloseReason::AuthenticationViolation,
                );
                buf.clear();
                break;
            }
            match client.parser.next_op(buf) {
                Ok(None) => break,
                Ok(Some(op)) => {
                    #[cfg(feature = "planted-defects")]
                    if std::mem::take(&mut drop_split)
                        && matches!(op, ClientOp::Pub { .. } | ClientOp::HPub { .. })
                    {
                        continue;
                    }
                    self.process_op(now, conn, op);
                    // Replies to a peer that does not read (a PING flood, say)
                    // are bounded like deliveries: past max_pending it is cut off.
                    self.enforce_pending_limit(conn);
                }
                Err(error) => {
                    let reason = error.close_reason();
                    if let Some(text) = error.wire_error() {
                        let client = self.clients.get_mut(&conn).expect("client exists");
                        protocol::write_err(&mut client.outbound.sink(&mut self.chunks), text);
                        self.queue_transmit(conn);
                    }
                    if error.closes_connection() {
                        self.close(conn, reason);
                        buf.clear();
                        break;
                    }
                }
            }
        }
        self.apply_expired_subs();
        self.run_system(now);
        self.apply_expired_subs();
    }

    /// The runtime wrote `written` bytes it had taken with [`Server::take_outbound`].
    pub fn handle_written(&mut self, conn: ConnId, written: usize) {
        if let Some(client) = self.clients.get_mut(&conn) {
            assert!(
                written <= client.bytes_in_flight,
                "{conn}: wrote more than was taken"
            );
            client.bytes_in_flight -= written;
        }
    }

    /// A write to `conn` has not finished within the runtime's write deadline:
    /// the peer is not reading. Like nats-server, a slow consumer: cut it off.
    pub fn handle_write_stalled(&mut self, conn: ConnId) {
        if let Some(client) = self.clients.get(&conn).filter(|c| !c.is_closing()) {
            self.accounts.list[client.account].stats.slow_consumers += 1;
            self.stats.slow_consumers += 1;
            let pending = client.pending_bytes();
            let deadline = self.config.monitoring.write_deadline.as_secs();
            self.log(
                LogLevel::Info,
                conn,
                format!("Slow Consumer Detected: WriteDeadline of {deadline}s exceeded with 1 chunks of {pending} total bytes."),
            );
            self.close(conn, CloseReason::SlowConsumerWriteDeadline);
        }
    }

    /// The connection is gone (the peer closed it, an I/O error, or the runtime
    /// finished a close this machine asked for). Forget it.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(client) = self.clients.get(&conn) {
            if !client.is_closing() {
                self.close(conn, CloseReason::ClientClosed);
            }
        }
        self.publish_disconnect_event(now, conn);
        let clock = self.clock(now);
        if let Some(closed) = closed_connection(self, conn, clock) {
            self.monitor.closed.push(closed);
        }
        if let Some(client) = self.clients.remove(&conn) {
            if let Some(deadline) = client.filed_deadline {
                self.timers.remove(&(deadline, conn));
            }
            debug_assert!(client.subs.is_empty());
        }
        self.apply_expired_subs();
        self.run_system(now);
        self.apply_expired_subs();
    }

    /// The earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let client = self.timers.first().map(|(deadline, _)| *deadline);
        match (client, self.system.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the next statsz heartbeat is due (`None` before the first
    /// wall-clock reading). The one timer that outlives every connection.
    pub fn heartbeat_deadline(&self) -> Option<Instant> {
        self.system.deadline()
    }

    /// Run every timer due at `now`: auth timeouts and keepalive PINGs.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, conn)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.remove(&(deadline, conn));
            let client = self
                .clients
                .get_mut(&conn)
                .expect("timer for a known client");
            client.filed_deadline = None;
            if client.is_closing() {
                continue;
            }
            if client.auth_deadline.is_some_and(|d| d <= now) {
                self.close_with_error(
                    conn,
                    "Authentication Timeout",
                    CloseReason::AuthenticationTimeout,
                );
                continue;
            }
            if client.ping_deadline <= now {
                self.ping_timer_fired(now, conn);
            }
            if self.clients.get(&conn).is_some_and(|c| !c.is_closing()) {
                self.refile_timer(conn);
            }
        }
        self.run_system(now);
    }

    // ----- actions out -----

    /// The next thing the runtime must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Take the bytes queued for `conn`. The runtime writes them, reports
    /// progress with [`Server::handle_written`] and hands the batch back with
    /// [`Server::recycle_outbound`].
    pub fn take_outbound(&mut self, conn: ConnId) -> Option<OutboundBatch> {
        let client = self.clients.get_mut(&conn)?;
        client.transmit_queued = false;
        if client.outbound.is_empty() {
            return None;
        }
        let batch = client.outbound.take();
        client.bytes_in_flight += batch.len();
        if self.config.trace {
            let bytes = batch.to_vec();
            for line in protocol_trace::outbound(&bytes, self.config.max_traced_msg_len) {
                self.log(LogLevel::Trace, conn, line);
            }
        }
        Some(batch)
    }

    /// A batch taken with [`Server::take_outbound`] is written (or abandoned):
    /// its chunks are reused for later output, so the steady state allocates
    /// nothing. Optional: a batch that is just dropped costs an allocation later.
    pub fn recycle_outbound(&mut self, batch: OutboundBatch) {
        self.chunks.recycle(batch);
    }

    /// Why the server is closing `conn`, if it is.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.clients.get(&conn).and_then(|c| c.closing)
    }

    /// Apply a reloaded configuration. The server's identity (id, name, address)
    /// stays; limits and credentials change. Connections whose credentials no
    /// longer pass are closed with `Authorization Violation`, as the reference
    /// does; the others keep going under the new limits.
    pub fn reload(&mut self, mut config: ServerConfig) {
        config.server_id = self.config.server_id.clone();
        config.xkey = self.config.xkey.clone();
        config.host = self.config.host.clone();
        config.port = self.config.port;
        self.config = config;
        let limits = ParserLimits {
            max_control_line: self.config.max_control_line,
            max_payload: self.config.max_payload,
        };
        // Accounts are rebuilt from scratch; every client is authenticated
        // again and its subscriptions filed anew under its (new) account and
        // permissions. Open response routes of service imports are dropped.
        let conns: Vec<ConnId> = self.clients.keys().copied().collect();
        for &conn in &conns {
            self.unfile_all(conn);
        }
        let (mut accounts, warnings) = Accounts::build(&self.config);
        for warning in warnings {
            self.logs.push(LogLevel::Error, None, warning);
        }
        for old in &self.accounts.list {
            if let Some(id) = accounts.find(&old.name) {
                accounts.list[id].stats = old.stats;
            }
        }
        self.accounts = accounts;
        self.monitor.config_loaded = self.monitor.wall.wall_now;
        self.authenticator = Authenticator::new(&self.config.auth);
        for conn in conns {
            let client = self.clients.get_mut(&conn).expect("client exists");
            if client.is_closing() {
                continue;
            }
            client.parser.set_limits(limits);
            if !client.connect_received {
                self.refile_all(conn, GLOBAL, None, None, true);
                continue;
            }
            let identity = self
                .authenticator
                .authenticate(
                    &client.options,
                    client.nonce.as_bytes(),
                    self.config
                        .tls
                        .map
                        .then(|| client.cert_names.as_deref().unwrap_or(&[])),
                )
                .ok()
                .and_then(|identity| Some((self.accounts.find(&identity.account)?, identity)));
            match identity {
                Some((account, identity)) => self.refile_all(
                    conn,
                    account,
                    identity.user,
                    identity.permissions.as_ref(),
                    true,
                ),
                None => {
                    let client = self.clients.get_mut(&conn).expect("client exists");
                    client.subs.clear();
                    client.sids.clear();
                    let options = client.options.clone();
                    self.auth_violation(conn, &options);
                }
            }
        }
    }

    /// Lame-duck mode: tell every client (INFO with `ldm: true`) that this
    /// server is going away, so clients reconnect elsewhere.
    pub fn enter_lame_duck_mode(&mut self) {
        let conns: Vec<ConnId> = self.clients.keys().copied().collect();
        for conn in conns {
            let client = &self.clients[&conn];
            if client.is_closing() {
                continue;
            }
            let mut info = self.info_for(conn, &client.peer);
            info.ldm = true;
            let client = self.clients.get_mut(&conn).expect("client exists");
            protocol::write_info(&mut client.outbound.sink(&mut self.chunks), &info);
            self.queue_transmit(conn);
            self.enforce_pending_limit(conn);
        }
    }

    /// The runtime verified `conn`'s client certificate: these are the names
    /// it maps to under `verify_and_map` (emails, DNS names, URIs, then the
    /// subject DN), most specific first. Call before its CONNECT is read.
    pub fn set_peer_certificate_names(&mut self, conn: ConnId, names: Vec<String>) {
        if let Some(client) = self.clients.get_mut(&conn) {
            client.cert_names = Some(names);
        }
    }

    /// Connections not yet closing, in id order.
    pub fn open_connections(&self) -> Vec<ConnId> {
        self.clients
            .iter()
            .filter(|(_, c)| !c.is_closing())
            .map(|(&conn, _)| conn)
            .collect()
    }

    /// Close one connection for `reason` (lame duck mode closes clients one
    /// by one with `ServerShutdown`).
    pub fn close_connection(&mut self, conn: ConnId, reason: CloseReason) {
        self.close(conn, reason);
    }

    /// Close every connection (server shutdown).
    pub fn shutdown(&mut self) {
        let conns: Vec<ConnId> = self.clients.keys().copied().collect();
        for conn in conns {
            self.close(conn, CloseReason::ServerShutdown);
        }
    }

    // ----- protocol operations -----

    fn process_op(&mut self, now: Instant, conn: ConnId, op: ClientOp) {
        if self.config.trace {
            for line in protocol_trace::inbound(&op, self.config.max_traced_msg_len) {
                self.log(LogLevel::Trace, conn, line);
            }
        }
        let client = self.clients.get_mut(&conn).expect("client exists");
        if matches!(
            op,
            ClientOp::Pub { .. }
                | ClientOp::HPub { .. }
                | ClientOp::Sub { .. }
                | ClientOp::Unsub { .. }
                | ClientOp::Ping
        ) {
            // Activity the reference counts as proof of life (CONNECT and PONG are not).
            client.last_in = Some(now);
        }
        match op {
            ClientOp::Connect(json) => self.process_connect(now, conn, &json),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.process_pub(now, conn, &subject, reply.as_deref(), None, &payload),
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => {
                // The parser refuses HPUB until CONNECT enabled headers.
                debug_assert!(client.options.headers);
                // A zero-length header block is delivered as a plain message.
                let headers = (!headers.is_empty()).then_some(&headers[..]);
                #[cfg(feature = "planted-defects")]
                let reply = reply
                    .filter(|_| self.config.planted_defect != Some(PlantedDefect::HpubLosesReply));
                self.process_pub(now, conn, &subject, reply.as_deref(), headers, &payload)
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.process_sub(conn, subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.process_unsub(conn, &sid, max),
            ClientOp::Ping => {
                protocol::write_pong(&mut client.outbound.sink(&mut self.chunks));
                client.first_pong_sent |= client.connect_received;
                if client.connect_received
                    && client.options.protocol >= 1
                    && !client.connect_info_sent
                {
                    // nats-server follows the first PONG of a protocol-1 client
                    // with an INFO confirming the connection's account.
                    client.connect_info_sent = true;
                    let peer = client.peer;
                    let account = client.account;
                    let mut info = self.info_for(conn, &peer);
                    info.connect_info = true;
                    info.remote_account = self.accounts.list[account].name.clone();
                    info.acc_is_sys = self.accounts.system == Some(account);
                    let client = self.clients.get_mut(&conn).expect("client exists");
                    protocol::write_info(&mut client.outbound.sink(&mut self.chunks), &info);
                }
                self.queue_transmit(conn);
            }
            ClientOp::Pong => {
                client.pings_out = 0;
                if let Some(start) = client.rtt_start.take() {
                    client.rtt = Some((now - start).max(Duration::from_nanos(1)));
                }
            }
            ClientOp::StrayHMsg => {
                // The reference takes a client's empty HMSG as a 0-byte message to nowhere.
                client.stats.in_msgs += 1;
                self.stats.in_msgs += 1;
                if client.options.verbose {
                    protocol::write_ok(&mut client.outbound.sink(&mut self.chunks));
                    self.queue_transmit(conn);
                }
            }
        }
    }

    fn process_connect(&mut self, now: Instant, conn: ConnId, json: &[u8]) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        // A CONNECT is applied over the current options (the reference's
        // defaults, or an earlier CONNECT), field by field.
        let mut options = client.options.clone();
        if options.apply_json(json).is_err() {
            // The reference drops the connection without an -ERR on bad JSON.
            self.close(conn, CloseReason::ProtocolViolation);
            return;
        }
        if options.account.is_some() || options.new_account {
            self.auth_violation(conn, &options);
            return;
        }
        let cert_names = self
            .config
            .tls
            .map
            .then(|| client.cert_names.as_deref().unwrap_or(&[]));
        let identity =
            match self
                .authenticator
                .authenticate(&options, client.nonce.as_bytes(), cert_names)
            {
                Ok(identity) => identity,
                Err(_) => {
                    // The reference logs no more than `authentication error`.
                    // Like it, the client keeps what its CONNECT said (events
                    // and the closed-connection ring name the user it claimed).
                    let client = self.clients.get_mut(&conn).expect("client exists");
                    client.options = options.clone();
                    self.auth_violation(conn, &options);
                    return;
                }
            };
        let Some(account) = self.accounts.find(&identity.account) else {
            self.auth_violation(conn, &options);
            return;
        };
        if !options.protocol_supported() {
            self.close_with_error(
                conn,
                "invalid client protocol",
                CloseReason::ProtocolViolation,
            );
            return;
        }
        if options.no_responders && !options.headers {
            self.close_with_error(
                conn,
                "no responders requires headers support",
                CloseReason::ProtocolViolation,
            );
            return;
        }
        let first_ping = FIRST_PING_INTERVAL.min(self.config.ping_interval);
        let jitter_ceiling = u64::try_from(first_ping.as_nanos() / 5)
            .unwrap_or(u64::MAX)
            .max(1);
        let jitter = Duration::from_nanos(self.rng.next_u64() % jitter_ceiling);
        self.bind(conn, account, identity.user, identity.permissions.as_ref());
        let client = self.clients.get_mut(&conn).expect("client exists");
        client.parser.set_headers_enabled(options.headers);
        let verbose = options.verbose;
        let already_connected = client.connect_received;
        if !already_connected {
            client.log_label = log::client_label(&options, &self.accounts.list[account].name);
        }
        client.options = options;
        client.connect_received = true;
        client.auth_deadline = None;
        client.ping_deadline = now + first_ping + jitter;
        if verbose {
            protocol::write_ok(&mut client.outbound.sink(&mut self.chunks));
            self.queue_transmit(conn);
        }
        self.refile_timer(conn);
        if !already_connected {
            self.system.client_connected(conn);
        }
    }

    fn process_pub(
        &mut self,
        now: Instant,
        conn: ConnId,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        let size = headers.map_or(0, <[u8]>::len) + payload.len();
        client.stats.in_msgs += 1;
        client.stats.in_bytes += size as u64;
        self.stats.in_msgs += 1;
        self.stats.in_bytes += size as u64;
        let received = &mut self.accounts.list[client.account].stats;
        received.received_msgs += 1;
        received.received_bytes += size as u64;
        if subject.starts_with(b"_GR_.") {
            self.publish_violation(conn, subject);
            return;
        }
        // Account mappings rewrite the subject before anything looks at it.
        let account = client.account;
        let published = subject;
        let mut mapped = std::mem::take(&mut self.mapped_subject);
        let subject = if self.map_subject(account, subject, &mut mapped) {
            &mapped[..]
        } else {
            subject
        };
        let client = self.clients.get_mut(&conn).expect("client exists");
        #[cfg(feature = "planted-defects")]
        let skip_check = headers.is_some()
            && self.config.planted_defect == Some(PlantedDefect::HpubSkipsPublishPermissions);
        #[cfg(not(feature = "planted-defects"))]
        let skip_check = false;
        if let Some(permissions) = client.permissions.as_mut().filter(|_| !skip_check) {
            if !permissions.may_publish(subject) {
                let answered = permissions
                    .response_permission()
                    .is_some_and(|permission| client.responses.allow(subject, now, permission));
                if !answered {
                    self.publish_violation(conn, subject);
                    self.mapped_subject = mapped;
                    return;
                }
            }
        }
        let system = self.accounts.system == Some(account);
        if let Some(violation) = reserved_subject_violation(subject, reply, system) {
            let client = self.clients.get_mut(&conn).expect("client exists");
            protocol::write_err(&mut client.outbound.sink(&mut self.chunks), &violation);
            self.queue_transmit(conn);
            self.mapped_subject = mapped;
            return;
        }
        if let Some(headers) = headers {
            if let Some(wanted) = trace::TraceHeaders::find(headers) {
                let size = headers.len() + payload.len();
                if !self.start_trace(now, conn, wanted, published, subject, headers, size) {
                    self.mapped_subject = mapped;
                    return;
                }
            }
        }
        let client = self.clients.get_mut(&conn).expect("client exists");
        let (pedantic, verbose, echo, no_responders) = {
            let o = &client.options;
            (o.pedantic, o.verbose, o.echo, o.no_responders)
        };
        let invalid = pedantic && !subject::is_valid_literal_subject(subject);
        if invalid {
            // Reported, yet still delivered: the reference does both.
            protocol::write_err(
                &mut client.outbound.sink(&mut self.chunks),
                "Invalid Publish Subject",
            );
        }
        if verbose {
            protocol::write_ok(&mut client.outbound.sink(&mut self.chunks));
        }
        if invalid || verbose {
            self.queue_transmit(conn);
        }
        let delivery = Delivery {
            publisher: conn,
            subject,
            reply,
            headers,
            payload,
        };
        let delivered = self.route(now, account, &delivery, echo, 0);
        if let Some(trace) = self.trace.take() {
            self.publish_trace(now, account, &trace);
        }
        if !delivered && no_responders {
            if let Some(reply) = reply.filter(|r| !r.is_empty()) {
                self.send_no_responders(conn, subject, reply);
            }
        }
        self.mapped_subject = mapped;
    }

    /// Apply `account`'s mappings to `subject`; true when `out` holds a new subject.
    fn map_subject(&mut self, account: AccountId, subject: &[u8], out: &mut Vec<u8>) -> bool {
        let mappings = &self.accounts.list[account].mappings;
        for mapping in mappings {
            let draw = if mapping.is_weighted() {
                self.rng.next_u32() % 100
            } else {
                0
            };
            if let Some(changed) = mapping.apply(subject, draw, out) {
                return changed;
            }
        }
        false
    }

    fn publish_violation(&mut self, conn: ConnId, subject: &[u8]) {
        let subject = go_quote(subject);
        let client = self.clients.get_mut(&conn).expect("client exists");
        protocol::write_err(
            &mut client.outbound.sink(&mut self.chunks),
            &format!("Permissions Violation for Publish to {subject}"),
        );
        self.queue_transmit(conn);
        self.log(
            LogLevel::Error,
            conn,
            format!("Publish Violation - Subject {subject}"),
        );
    }

    /// Deliver to every match in `account`, following imports into other
    /// accounts; returns whether anyone got the message. `depth` counts the
    /// account boundaries crossed, so an import cycle ends.
    fn route(
        &mut self,
        now: Instant,
        account: AccountId,
        msg: &Delivery<'_>,
        publisher_echo: bool,
        depth: u8,
    ) -> bool {
        let mut crossings = std::mem::take(&mut self.crossings[usize::from(depth)]);
        debug_assert!(crossings.is_empty());
        let routed_account = self
            .trace
            .as_ref()
            .map(|_| self.accounts.list[account].name.clone());
        let Server {
            clients,
            accounts,
            rng,
            actions,
            stats,
            expired_subs,
            config,
            trace,
            logs,
            chunks,
            ..
        } = self;
        let result = accounts.list[account].sublist.matches(msg.subject);
        let mut delivered = false;
        let mut out = Outbox {
            clients,
            actions,
            stats,
            expired_subs,
            config,
            now,
            sent: AccountStats::default(),
            trace: trace.as_deref_mut(),
            routed_account: routed_account.as_deref().unwrap_or(""),
            logs,
            chunks,
        };
        for target in &result.plain {
            match *target {
                SubTarget::Client(key) => {
                    if key.conn == msg.publisher && !publisher_echo {
                        out.trace_refusal(key, trace::ERR_NO_ECHO);
                        continue;
                    }
                    delivered |= out.deliver(key, msg);
                }
                other => crossings.push(other),
            }
        }
        for group in &result.queues {
            let members = &group.members;
            if members.is_empty() {
                continue;
            }
            // Start at a random member and take the first that can receive, so a
            // member on its way out does not swallow the message.
            let start = (rng.next_u64() % members.len() as u64) as usize;
            for offset in 0..members.len() {
                let SubTarget::Client(key) = members[(start + offset) % members.len()] else {
                    continue;
                };
                if key.conn == msg.publisher && !publisher_echo {
                    continue;
                }
                if out.deliver(key, msg) {
                    delivered = true;
                    #[cfg(feature = "planted-defects")]
                    if offset == 0
                        && members.len() > 2
                        && out.config.planted_defect == Some(PlantedDefect::QueueDoubleDelivery)
                    {
                        continue;
                    }
                    break;
                }
            }
        }
        let sent = out.sent;
        let account_stats = &mut self.accounts.list[account].stats;
        account_stats.sent_msgs += sent.sent_msgs;
        account_stats.sent_bytes += sent.sent_bytes;
        account_stats.slow_consumers += sent.slow_consumers;
        for target in crossings.drain(..) {
            if usize::from(depth) + 1 < MAX_ACCOUNT_HOPS {
                delivered |= self.cross(now, target, msg, depth + 1);
            }
        }
        self.crossings[usize::from(depth)] = crossings;
        delivered
    }

    /// Carry `msg` across an account boundary through an import route.
    fn cross(&mut self, now: Instant, target: SubTarget, msg: &Delivery<'_>, depth: u8) -> bool {
        let mut subject = Vec::new();
        match target {
            SubTarget::Client(_) => unreachable!("clients are delivered to directly"),
            SubTarget::System(service) => self.system_request(service, msg),
            SubTarget::StreamImport(index) => {
                let route = &self.accounts.stream_imports[index as usize];
                if !route.transform.apply(msg.subject, &mut subject) {
                    return false;
                }
                let importer = route.importer;
                if let Some(trace) = self.trace.as_deref_mut() {
                    trace.stream_export(&self.accounts.list[importer].name, &subject);
                }
                let crossed = Delivery {
                    subject: &subject,
                    ..*msg
                };
                self.route(now, importer, &crossed, true, depth)
            }
            SubTarget::ServiceImport(index) => {
                let route = &self.accounts.service_imports[index as usize];
                if !route.transform.apply(msg.subject, &mut subject) {
                    return false;
                }
                let exporter = route.exporter;
                if let Some(trace) = self.trace.as_deref_mut() {
                    let name = &self.accounts.list[exporter].name;
                    trace.service_import(name, msg.subject, &subject);
                }
                let response = msg.reply.filter(|r| !r.is_empty()).map(|reply| {
                    let token = self.response_token();
                    let id = self.accounts.next_response;
                    (id, self.accounts.open_response(index, reply, &token, now))
                });
                let crossed = Delivery {
                    subject: &subject,
                    reply: response.as_ref().map(|(_, reply)| &reply[..]),
                    ..*msg
                };
                let delivered = self.route(now, exporter, &crossed, true, depth);
                if let (false, Some((id, _))) = (delivered, &response) {
                    self.accounts.close_response(*id);
                }
                delivered
            }
            SubTarget::Response(id) => {
                let Some(route) = self.accounts.responses.get(&id) else {
                    return false;
                };
                let importer = route.importer;
                let reply = route.reply.clone();
                if route.response_type == ResponseType::Singleton {
                    self.accounts.close_response(id);
                }
                // The responder's own reply subject means nothing in the
                // requester's account, so it does not cross.
                let crossed = Delivery {
                    subject: &reply,
                    reply: None,
                    ..*msg
                };
                self.route(now, importer, &crossed, true, depth)
            }
        }
    }

    /// Random text for a `_R_.` reply subject.
    fn response_token(&mut self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..12)
            .map(|_| ALPHABET[(self.rng.next_u32() as usize) % ALPHABET.len()] as char)
            .collect()
    }

    /// The reference answers a request nobody can serve with a 503 status
    /// message, sent only to the requester's own subscription on the reply subject.
    fn send_no_responders(&mut self, conn: ConnId, subject: &[u8], reply: &[u8]) {
        let account = self.clients[&conn].account;
        let result = self.accounts.list[account].sublist.matches(reply);
        let Some(key) = result.plain.iter().find_map(|target| match target {
            SubTarget::Client(key) if key.conn == conn => Some(*key),
            _ => None,
        }) else {
            return;
        };
        let client = self.clients.get_mut(&conn).expect("client exists");
        let Some(sub) = client.subs.get(&key.index) else {
            return;
        };
        self.scratch.clear();
        self.scratch
            .extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        self.scratch.extend_from_slice(subject);
        self.scratch.extend_from_slice(b"\r\n\r\n");
        protocol::write_hmsg(
            &mut client.outbound.sink(&mut self.chunks),
            reply,
            &sub.sid,
            None,
            &self.scratch,
            b"",
        );
        self.queue_transmit(conn);
    }

    fn process_sub(&mut self, conn: ConnId, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        let max_subs = self.config.max_subscriptions;
        let client = self.clients.get_mut(&conn).expect("client exists");
        if max_subs > 0 && client.subs.len() >= max_subs {
            protocol::write_err(
                &mut client.outbound.sink(&mut self.chunks),
                "maximum subscriptions exceeded",
            );
            self.queue_transmit(conn);
            return;
        }
        let verbose = client.options.verbose;
        if let Some(permissions) = &mut client.permissions {
            if !permissions.may_subscribe(&subject, queue.as_deref()) {
                self.subscribe_violation(conn, &subject, queue.as_deref(), &sid);
                return;
            }
        }
        let client = self.clients.get_mut(&conn).expect("client exists");
        let mut invalid = false;
        // One sid lookup: a repeated sid is ignored, as the reference does.
        if let hash_map::Entry::Vacant(slot) = client.sids.entry(sid.clone()) {
            // Queue names are not validated: the reference accepts any bytes there.
            let index = client.next_sub_index;
            let key = SubKey { conn, index };
            let account = &mut self.accounts.list[client.account];
            if account
                .sublist
                .insert(&subject, queue.as_deref(), SubTarget::Client(key))
                .is_err()
            {
                invalid = true;
            } else {
                account.client_subs += 1;
                client.next_sub_index += 1;
                slot.insert(index);
                client.subs.insert(
                    index,
                    Subscription {
                        subject,
                        queue,
                        sid,
                        max: 0,
                        delivered: 0,
                    },
                );
            }
        }
        if invalid {
            protocol::write_err(
                &mut client.outbound.sink(&mut self.chunks),
                "Invalid Subject",
            );
            self.queue_transmit(conn);
            return;
        }
        if verbose {
            protocol::write_ok(&mut client.outbound.sink(&mut self.chunks));
            self.queue_transmit(conn);
        }
    }

    fn subscribe_violation(
        &mut self,
        conn: ConnId,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) {
        let subject = go_quote(subject);
        let sid = String::from_utf8_lossy(sid);
        let (error, log) = match queue {
            Some(queue) => {
                let queue = go_quote(queue);
                (
                    format!(
                        "Permissions Violation for Subscription to {subject} using queue {queue}"
                    ),
                    format!(
                        "Subscription Violation - Subject {subject}, Queue: {queue}, SID {sid}"
                    ),
                )
            }
            None => (
                format!("Permissions Violation for Subscription to {subject}"),
                format!("Subscription Violation - Subject {subject}, SID {sid}"),
            ),
        };
        let client = self.clients.get_mut(&conn).expect("client exists");
        protocol::write_err(&mut client.outbound.sink(&mut self.chunks), &error);
        self.queue_transmit(conn);
        self.log(LogLevel::Error, conn, log);
    }

    fn process_unsub(&mut self, conn: ConnId, sid: &[u8], max: Option<u64>) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        let verbose = client.options.verbose;
        if let Some(&index) = client.sids.get(sid) {
            let sub = client
                .subs
                .get_mut(&index)
                .expect("sid maps to a live subscription");
            match max {
                Some(max) if max > 0 && max > sub.delivered => sub.max = max,
                _ => self.remove_subscription(SubKey { conn, index }),
            }
        }
        if verbose {
            let client = self.clients.get_mut(&conn).expect("client exists");
            protocol::write_ok(&mut client.outbound.sink(&mut self.chunks));
            self.queue_transmit(conn);
        }
    }

    fn remove_subscription(&mut self, key: SubKey) {
        let Some(client) = self.clients.get_mut(&key.conn) else {
            return;
        };
        let Some(sub) = client.subs.remove(&key.index) else {
            return;
        };
        client.sids.remove(&sub.sid);
        unfile_subscription(&mut self.accounts, client.account, key, &sub);
    }

    fn apply_expired_subs(&mut self) {
        while let Some(key) = self.expired_subs.pop() {
            self.remove_subscription(key);
        }
    }

    // ----- authentication and accounts -----

    /// Bind `conn` to `account` as `user` with `permissions`. Its existing
    /// subscriptions move with it; those the new permissions refuse are
    /// dropped with the reference's violation error.
    fn bind(
        &mut self,
        conn: ConnId,
        account: AccountId,
        user: Option<String>,
        permissions: Option<&auth::Permissions>,
    ) {
        self.unfile_all(conn);
        self.refile_all(conn, account, user, permissions, false);
    }

    /// Take every subscription of `conn` out of its account's Sublist; they
    /// stay in the client's own table.
    fn unfile_all(&mut self, conn: ConnId) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        for (&index, sub) in &client.subs {
            unfile_subscription(
                &mut self.accounts,
                client.account,
                SubKey { conn, index },
                sub,
            );
        }
    }

    /// File every subscription of `conn` under `account` and `permissions`
    /// (after [`Self::unfile_all`]). On a reload, refused subscriptions are
    /// reported with their sid, as the reference does.
    fn refile_all(
        &mut self,
        conn: ConnId,
        account: AccountId,
        user: Option<String>,
        permissions: Option<&auth::Permissions>,
        reload: bool,
    ) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        client.user = user;
        client.account = account;
        client.permissions = permissions.map(PermissionChecker::new);
        let mut refused = Vec::new();
        let subs = std::mem::take(&mut client.subs);
        for (index, sub) in subs {
            let allowed = client
                .permissions
                .as_mut()
                .is_none_or(|p| p.may_subscribe(&sub.subject, sub.queue.as_deref()));
            if !allowed {
                client.sids.remove(&sub.sid);
                refused.push(sub);
                continue;
            }
            let target = &mut self.accounts.list[account];
            let key = SubKey { conn, index };
            let inserted =
                target
                    .sublist
                    .insert(&sub.subject, sub.queue.as_deref(), SubTarget::Client(key));
            assert!(inserted.is_ok(), "a filed subscription is valid");
            target.client_subs += 1;
            client.subs.insert(index, sub);
        }
        for sub in refused {
            if reload {
                self.reload_removed_subscription(conn, &sub);
            } else {
                self.subscribe_violation(conn, &sub.subject, sub.queue.as_deref(), &sub.sid);
            }
        }
    }

    fn reload_removed_subscription(&mut self, conn: ConnId, sub: &Subscription) {
        let subject = go_quote(&sub.subject);
        let sid = go_quote(&sub.sid);
        let client = self.clients.get_mut(&conn).expect("client exists");
        let who = match &client.user {
            Some(user) => format!("User \"{user}\""),
            None => String::from("User \"N/A\""),
        };
        let (error, log) = match &sub.queue {
            Some(queue) => {
                let queue = go_quote(queue);
                (
                    format!("Permissions Violation for Subscription to {subject} using queue {queue} (sid {sid})"),
                    format!("Removed sub {subject} using queue {queue} (sid {sid}) for {who} - not authorized"),
                )
            }
            None => (
                format!("Permissions Violation for Subscription to {subject} (sid {sid})"),
                format!("Removed sub {subject} (sid {sid}) for {who} - not authorized"),
            ),
        };
        protocol::write_err(&mut client.outbound.sink(&mut self.chunks), &error);
        self.queue_transmit(conn);
        self.logs.push(LogLevel::Info, None, log);
    }

    fn auth_violation(&mut self, conn: ConnId, options: &protocol::ConnectOptions) {
        let who = if let Some(nkey) = options.nkey.as_deref().filter(|n| !n.is_empty()) {
            format!(" - Nkey \"{nkey}\"")
        } else if let Some(user) = options.user.as_deref().filter(|u| !u.is_empty()) {
            format!(" - User \"{user}\"")
        } else if options.auth_token.as_deref().is_some_and(|t| !t.is_empty()) {
            String::from(" - Token \"[REDACTED]\"")
        } else {
            String::new()
        };
        self.log(LogLevel::Error, conn, format!("authentication error{who}"));
        self.close_with_error(
            conn,
            "Authorization Violation",
            CloseReason::AuthenticationViolation,
        );
    }

    /// Queue a log line about `conn`, prefixed the way the reference names
    /// clients (see `log::client_prefix`).
    fn log(&mut self, level: LogLevel, conn: ConnId, text: String) {
        let prefix = self
            .clients
            .get(&conn)
            .map(|client| log::client_prefix(conn, client))
            .unwrap_or_default();
        self.logs.push_prefixed(level, Some(conn), prefix, text);
    }

    // ----- keepalive -----

    fn ping_timer_fired(&mut self, now: Instant, conn: ConnId) {
        let ping_interval = self.config.ping_interval;
        let ping_max = self.config.ping_max;
        let client = self.clients.get_mut(&conn).expect("client exists");
        client.ping_deadline = now + ping_interval;
        // Traffic from the client within the interval proves it alive; skip
        // the PING, unless it is needed to measure the round trip.
        let needs_rtt = client.rtt.is_none();
        if !needs_rtt
            && client
                .last_in
                .is_some_and(|last| now.saturating_duration_since(last) < ping_interval)
        {
            return;
        }
        if client.pings_out + 1 > ping_max {
            self.stats.stale_connections += 1;
            self.close_with_error(conn, "Stale Connection", CloseReason::StaleConnection);
            return;
        }
        client.pings_out += 1;
        client.rtt_start = Some(now);
        protocol::write_ping(&mut client.outbound.sink(&mut self.chunks));
        self.queue_transmit(conn);
        self.enforce_pending_limit(conn);
    }

    fn refile_timer(&mut self, conn: ConnId) {
        let client = self.clients.get_mut(&conn).expect("client exists");
        if let Some(old) = client.filed_deadline.take() {
            self.timers.remove(&(old, conn));
        }
        if client.is_closing() {
            return;
        }
        let deadline = client.next_deadline();
        client.filed_deadline = Some(deadline);
        self.timers.insert((deadline, conn));
    }

    // ----- closing -----

    fn close_with_error(&mut self, conn: ConnId, text: &str, reason: CloseReason) {
        if let Some(client) = self.clients.get_mut(&conn) {
            if client.is_closing() {
                return;
            }
            protocol::write_err(&mut client.outbound.sink(&mut self.chunks), text);
            self.queue_transmit(conn);
        }
        self.close(conn, reason);
    }

    /// Mark `conn` closing: drop its subscriptions and timers and ask the runtime
    /// to flush and close it.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.is_closing() {
            return;
        }
        client.closing = Some(reason);
        if let Some(old) = client.filed_deadline.take() {
            self.timers.remove(&(old, conn));
        }
        let prefix = log::client_prefix(conn, client);
        self.logs.push_prefixed(
            LogLevel::Debug,
            Some(conn),
            prefix,
            format!("Client connection closed: {}", reason.as_str()),
        );
        let client = self.clients.get_mut(&conn).expect("client exists");
        let subs = std::mem::take(&mut client.subs);
        client.closed_subjects = subs.values().map(|sub| sub.subject.clone()).collect();
        client.sids.clear();
        if self.config.trace {
            let prefix = log::client_prefix(conn, client);
            for sub in subs.values() {
                self.logs.push_prefixed(
                    LogLevel::Trace,
                    Some(conn),
                    prefix.clone(),
                    protocol_trace::delsub(&sub.sid),
                );
            }
        }
        let account = client.account;
        for (index, sub) in subs {
            unfile_subscription(&mut self.accounts, account, SubKey { conn, index }, &sub);
        }
        self.actions.push_back(Action::Close { conn, reason });
    }

    /// A connection holding more unsent output than `max_pending` is a slow
    /// consumer, whatever filled its buffer (nats-server checks on every queueing).
    fn enforce_pending_limit(&mut self, conn: ConnId) {
        let over = self
            .clients
            .get(&conn)
            .is_some_and(|c| !c.is_closing() && c.pending_bytes() > self.config.max_pending);
        if over {
            self.stats.slow_consumers += 1;
            let max_pending = self.config.max_pending;
            self.log(
                LogLevel::Info,
                conn,
                format!("Slow Consumer Detected: MaxPending of {max_pending} Exceeded"),
            );
            let client = self.clients.get_mut(&conn).expect("client exists");
            self.accounts.list[client.account].stats.slow_consumers += 1;
            client.outbound.discard(&mut self.chunks);
            self.close(conn, CloseReason::SlowConsumerPendingBytes);
        }
    }

    fn queue_transmit(&mut self, conn: ConnId) {
        queue_transmit(&mut self.clients, &mut self.actions, conn);
    }

    fn info_for(&self, conn: ConnId, peer: &SocketAddr) -> ServerInfo {
        ServerInfo {
            server_id: self.config.server_id.clone(),
            server_name: self.config.effective_name().to_string(),
            version: self.config.version.clone(),
            proto: 1,
            git_commit: self.config.git_commit.clone(),
            go: self.config.toolchain.clone(),
            host: self.config.host.clone(),
            port: self.config.port,
            headers: true,
            auth_required: self.authenticator.announces_auth_required(),
            tls_required: self.config.tls.required && !self.config.tls.allow_non_tls,
            tls_verify: self.config.tls.required && self.config.tls.verify,
            tls_available: self.config.tls.required && self.config.tls.allow_non_tls,
            max_payload: self.config.max_payload as i64,
            client_id: conn.0,
            client_ip: peer.ip().to_string(),
            api_lvl: JETSTREAM_API_LEVEL,
            xkey: self.config.xkey.clone(),
            ..ServerInfo::default()
        }
    }
}

fn queue_transmit(
    clients: &mut BTreeMap<ConnId, Client>,
    actions: &mut VecDeque<Action>,
    conn: ConnId,
) {
    if let Some(client) = clients.get_mut(&conn) {
        if !client.transmit_queued && !client.is_closing() {
            client.transmit_queued = true;
            actions.push_back(Action::Transmit(conn));
        }
    }
}

/// What delivering to a client needs from the server, borrowed apart from
/// the Sublist whose match result is being walked.
struct Outbox<'a> {
    clients: &'a mut BTreeMap<ConnId, Client>,
    actions: &'a mut VecDeque<Action>,
    stats: &'a mut ServerStats,
    expired_subs: &'a mut Vec<SubKey>,
    config: &'a ServerConfig,
    now: Instant,
    /// What this match delivered, for the account's counters.
    sent: AccountStats,
    /// The trace of a traced message (egress events go here).
    trace: Option<&'a mut trace::MsgTrace>,
    /// The routed account's name while tracing (empty otherwise).
    routed_account: &'a str,
    logs: &'a mut LogQueue,
    chunks: &'a mut ChunkPool,
}

impl Outbox<'_> {
    /// Record in the trace (if any) that `key` did not get the message.
    fn trace_refusal(&mut self, key: SubKey, error: &'static str) {
        let Some(trace) = self.trace.as_deref_mut() else {
            return;
        };
        let Some(client) = self.clients.get(&key.conn) else {
            return;
        };
        if let Some(sub) = client.subs.get(&key.index) {
            let name = client.options.name.as_deref();
            trace.egress(key.conn, name, sub, self.routed_account, error);
        }
    }

    /// Write one message to one subscription. Returns whether it was delivered.
    fn deliver(&mut self, key: SubKey, msg: &Delivery<'_>) -> bool {
        let Some(client) = self.clients.get_mut(&key.conn) else {
            return false;
        };
        if client.is_closing() {
            self.trace_refusal(key, trace::ERR_CLIENT_CLOSED);
            return false;
        }
        let Some(sub) = client.subs.get_mut(&key.index) else {
            return false;
        };
        if sub.max > 0 && sub.delivered >= sub.max {
            // Already due for removal later in this step.
            self.trace_refusal(key, trace::ERR_AUTO_UNSUB);
            return false;
        }
        if let Some(permissions) = &mut client.permissions {
            #[cfg(feature = "planted-defects")]
            let check_deny =
                self.config.planted_defect != Some(PlantedDefect::DenyIgnoredOnDelivery);
            #[cfg(not(feature = "planted-defects"))]
            let check_deny = true;
            if check_deny
                && !permissions.may_receive(&sub.subject, sub.queue.as_deref(), msg.subject)
            {
                self.trace_refusal(key, trace::ERR_SUB_DENY);
                return false;
            }
            if let (Some(permission), Some(reply)) = (permissions.response_permission(), msg.reply)
            {
                // The subscriber may answer this request even where its
                // publish permissions would not let it.
                if !reply.is_empty() && !permissions.may_publish(reply) {
                    client.responses.track(reply, self.now, permission);
                }
            }
        }
        if let Some(trace) = self.trace.as_deref_mut() {
            let name = client.options.name.as_deref();
            trace.egress(key.conn, name, sub, self.routed_account, "");
            if trace.only {
                // Traced, not delivered (`Nats-Trace-Only`).
                return true;
            }
        }
        sub.delivered += 1;
        if sub.max > 0 && sub.delivered == sub.max {
            self.expired_subs.push(key);
        }
        if client.rtt.is_none() && msg.reply.is_some_and(|r| r.len() > MIN_RTT_REPLY_LEN) {
            // A responder's round trip is worth knowing: measure it now, as
            // the reference does, once the client is past its handshake.
            let settled = client.first_pong_sent
                || self.now - client.accepted_at > MAX_NO_RTT_PING_BEFORE_FIRST_PONG;
            if settled && client.rtt_start.is_none() {
                client.rtt_start = Some(self.now);
                client.pings_out += 1;
                protocol::write_ping(&mut client.outbound.sink(self.chunks));
            }
        }
        let size = match (msg.headers, client.options.headers) {
            (Some(headers), true) => {
                protocol::write_hmsg(
                    &mut client.outbound.sink(self.chunks),
                    msg.subject,
                    &sub.sid,
                    msg.reply,
                    headers,
                    msg.payload,
                );
                headers.len() + msg.payload.len()
            }
            // A subscriber that cannot take headers gets the payload alone.
            _ => {
                protocol::write_msg(
                    &mut client.outbound.sink(self.chunks),
                    msg.subject,
                    &sub.sid,
                    msg.reply,
                    msg.payload,
                );
                msg.payload.len()
            }
        };
        client.stats.out_msgs += 1;
        client.stats.out_bytes += size as u64;
        self.stats.out_msgs += 1;
        self.stats.out_bytes += size as u64;
        self.sent.sent_msgs += 1;
        self.sent.sent_bytes += size as u64;
        if client.pending_bytes() > self.config.max_pending {
            // Slow consumer: this connection alone is cut off; the publisher goes on.
            // Like the reference, no -ERR: the peer is not reading anyway.
            self.stats.slow_consumers += 1;
            self.sent.slow_consumers += 1;
            let prefix = log::client_prefix(key.conn, client);
            self.logs.push_prefixed(
                LogLevel::Info,
                Some(key.conn),
                prefix.clone(),
                format!(
                    "Slow Consumer Detected: MaxPending of {} Exceeded",
                    self.config.max_pending
                ),
            );
            self.logs.push_prefixed(
                LogLevel::Debug,
                Some(key.conn),
                prefix,
                String::from("Client connection closed: Slow Consumer (Pending Bytes)"),
            );
            client.closing = Some(CloseReason::SlowConsumerPendingBytes);
            client.closed_subjects = client.subs.values().map(|s| s.subject.clone()).collect();
            client.outbound.discard(self.chunks);
            // Its subscriptions leave the sublist once the match result is released.
            self.expired_subs
                .extend(client.subs.keys().map(|&index| SubKey {
                    conn: key.conn,
                    index,
                }));
            self.actions.push_back(Action::Close {
                conn: key.conn,
                reason: CloseReason::SlowConsumerPendingBytes,
            });
            return true;
        }
        queue_transmit(self.clients, self.actions, key.conn);
        true
    }
}

/// Take `sub` (of connection `key.conn`) out of `account`'s Sublist.
fn unfile_subscription(
    accounts: &mut Accounts,
    account: AccountId,
    key: SubKey,
    sub: &Subscription,
) {
    let account = &mut accounts.list[account];
    let removed =
        account
            .sublist
            .remove(&sub.subject, sub.queue.as_deref(), SubTarget::Client(key));
    assert!(
        removed.is_ok(),
        "subscription {key:?} was not in its account's Sublist"
    );
    account.client_subs -= 1;
}

/// Subjects and reply subjects a client may not publish with, and the
/// reference's error for each: internal service replies, JetStream acks,
/// gateway-routed replies and RAFT traffic.
/// RAFT subjects (`$NRG.`) are the system account's own.
fn reserved_subject_violation(
    subject: &[u8],
    reply: Option<&[u8]>,
    system_account: bool,
) -> Option<String> {
    const GATEWAY_REPLY_PREFIX: &[u8] = b"_GR_.";
    if subject.starts_with(GATEWAY_REPLY_PREFIX)
        || (subject.starts_with(b"$NRG.") && !system_account)
    {
        let subject = String::from_utf8_lossy(subject);
        return Some(format!(
            "Permissions Violation for Publish to \"{subject}\""
        ));
    }
    let reply = reply?;
    let reserved = reply.starts_with(b"_R_.")
        || reply.starts_with(b"$JS.ACK.")
        || (reply.len() > GATEWAY_REPLY_PREFIX.len() && reply.starts_with(GATEWAY_REPLY_PREFIX));
    reserved.then(|| {
        let reply = String::from_utf8_lossy(reply);
        format!("Permissions Violation for Publish with Reply of \"{reply}\"")
    })
}

#[cfg(test)]
mod tests;
