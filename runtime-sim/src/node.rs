//! A node: one `Server` machine and its runtime half, the part runtime-tokio
//! plays in production: the connections it accepted (read buffers, writes
//! the pipe has not taken yet), its one timer, and its wall clock.
//!
//! The world calls into a node only through the handlers below, one event
//! at a time; after each `Server::handle_*` every action the server queued is
//! carried out at once (`drain_actions`), so nothing is left pending between
//! steps.
//!
//! Invariants:
//! - a node's connections are only its own: a `Conn` lives in exactly one
//!   node's table and that node's server is the only one told about it;
//! - a closed connection (`server_closed`) is never handed to the server again;
//! - `timer_at` is the earliest `ServerTimer` event queued for this node, if
//!   it is still ahead; a later deadline never replaces an earlier one;
//! - monotonic time comes from the world's clock only; the wall clock is
//!   monotonic time plus `wall_offset`, which only the fault injector moves.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rnats_core::runtime::{Action, CloseReason, ConnId, ContractCheck, ListenerKind};
use rnats_core::server::{Server, ServerConfig};
use rnats_core::time::{Instant, WallTime};

use crate::conn::{Conn, Dir};
use crate::invariants;
use crate::jetstream::JsNode;
use crate::rng::{stream, Rng};
use crate::scenario::JetStreamSpec;
use crate::world::{Event, World, SECOND};

/// How long a bcrypt password check takes off the server's lock.
const PASSWORD_CHECK_TIME: Duration = Duration::from_millis(20);

/// Largest single read, like the tokio runner's read chunk.
pub(crate) const READ_MAX: usize = 64 * 1024;

/// A node's number in its world: 0, 1, ... in scenario order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl NodeId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// One server machine and its runtime half.
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) server: Server,
    /// Wall clock = monotonic + offset; jumps do not touch monotonic time.
    pub(crate) wall_offset: i64,
    /// This node's wall-clock jumps.
    pub(crate) wall_rng: Rng,
    /// The earliest `ServerTimer` queued for this node, if any.
    pub(crate) timer_at: Option<Instant>,
    /// The connections clients opened to this node, by world-unique id.
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    /// Core's runtime contract, held against every action this node's
    /// server asks for (a broken rule panics with the connection).
    pub(crate) contract: ContractCheck,
    /// The configuration a restart starts the server with again.
    pub(crate) config: ServerConfig,
    /// Process restarts so far (kills and power losses).
    pub(crate) restarts: u64,
    /// The seeds of restarted server machines.
    pub(crate) restart_rng: Rng,
    /// The JetStream machine and its disk, when the scenario has JetStream.
    pub(crate) js: Option<JsNode>,
    /// This node's route ends: (link, side) by connection id (`routes.rs`).
    pub(crate) route_conns: BTreeMap<ConnId, (u64, usize)>,
}

impl Node {
    /// Node `id` of the run seeded with `run_seed`: its server machine and
    /// its wall clock each draw from their own stream, so nodes never share
    /// randomness and node 0 draws exactly what a one-node world drew.
    pub(crate) fn new(
        id: NodeId,
        config: ServerConfig,
        run_seed: u64,
        jetstream: Option<&JetStreamSpec>,
    ) -> Node {
        let server_seed = Rng::stream(run_seed, stream::node(stream::SERVER, id.0)).next_u64();
        let mut node = Node {
            id,
            server: Server::new(config.clone(), server_seed),
            wall_offset: 0,
            wall_rng: Rng::stream(run_seed, stream::node(stream::WALL_CLOCK, id.0)),
            timer_at: None,
            conns: BTreeMap::new(),
            contract: ContractCheck::default(),
            config,
            restarts: 0,
            restart_rng: Rng::stream(run_seed, stream::node(stream::RESTART, id.0)),
            js: None,
            route_conns: BTreeMap::new(),
        };
        let wall = node.wall_time(Instant::ZERO);
        node.server.set_wall_clock(Instant::ZERO, wall);
        if let Some(spec) = jetstream {
            assert!(node.config.jetstream.is_some(), "JetStream nodes enable it");
            node.js = Some(JsNode::start(id, &node.config, spec, run_seed, wall));
        }
        node
    }

    pub(crate) fn wall_time(&self, now: Instant) -> WallTime {
        const EPOCH_2025: u64 = 1_735_689_600 * SECOND;
        WallTime((EPOCH_2025 + now.as_nanos()).saturating_add_signed(self.wall_offset))
    }
}

impl World {
    pub(crate) fn server_timer(&mut self, node: NodeId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        if target.timer_at.is_some_and(|at| at <= now) {
            target.timer_at = None;
        }
        if target.server.poll_timeout().is_some_and(|t| t <= now) {
            target.server.handle_timeout(now);
            self.drain_actions(node);
        }
        self.arm_server_timer(node);
    }

    fn arm_server_timer(&mut self, node: NodeId) {
        let target = &mut self.nodes[node.index()];
        if let Some(deadline) = target.server.poll_timeout() {
            if target.timer_at.is_none_or(|at| deadline < at) {
                target.timer_at = Some(deadline);
                self.schedule(deadline, Event::ServerTimer { node });
            }
        }
    }

    pub(crate) fn accept(&mut self, node: NodeId, id: ConnId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let Some(conn) = target.conns.get_mut(&id) else {
            return;
        };
        if conn.client_gone && conn.up.dead {
            return;
        }
        conn.accepted = true;
        let peer = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (conn.client >> 8) as u8,
                conn.client as u8,
            )),
            40000 + (id.0 % 20000) as u16,
        );
        let unread = !conn.up.recv.is_empty() || conn.up.eof;
        let client = conn.client;
        let kind = match conn.ws.as_mut() {
            Some(ws) => {
                // The upgrade, judged by core, answered before anything else.
                let config = crate::ws::listener_config();
                match crate::ws::upgrade_response(&config) {
                    Ok(response) => ws.queue(&mut conn.server_out, &response, 0),
                    Err(error) => {
                        self.fail(format!("{id}: {error}"));
                        return;
                    }
                }
                ListenerKind::WebSocket
            }
            None => ListenerKind::Client,
        };
        let target = &mut self.nodes[node.index()];
        target.contract.accepted(id);
        target.server.handle_accept(now, id, peer, kind);
        if self.scenario.security.as_ref().is_some_and(|s| s.tls_map) {
            // The simulated handshake: the certificate names its user.
            let spec = &self.scenario.clients[self.clients[client].spec];
            if let Some(user) = &spec.user {
                let name = crate::security::certificate_name(user);
                target.server.set_peer_certificate_names(id, vec![name]);
            }
        }
        self.drain_actions(node);
        if unread {
            self.schedule_server_read(node, id);
        }
        self.pump_client(node, id);
    }

    /// Carry out every action the node's server queued, and what its
    /// JetStream machine asks in turn, until neither has more.
    pub(crate) fn drain_actions(&mut self, node: NodeId) {
        loop {
            self.drain_server_actions(node);
            self.start_dials(node);
            if !self.pump_jetstream(node) {
                break;
            }
        }
        self.arm_server_timer(node);
    }

    fn drain_server_actions(&mut self, node: NodeId) {
        while let Some(action) = self.nodes[node.index()].server.poll_action() {
            self.nodes[node.index()].contract.action(&action);
            match action {
                Action::Transmit(id) if self.nodes[node.index()].route_conns.contains_key(&id) => {
                    self.trace
                        .record(self.now, Some(node), "route-transmit", id.0, 0);
                    self.route_transmit(node, id);
                }
                Action::Close { conn, reason }
                    if self.nodes[node.index()].route_conns.contains_key(&conn) =>
                {
                    let now = self.now;
                    self.trace
                        .record(now, Some(node), "route-close", conn.0, reason as u64);
                    self.route_close(node, conn, reason);
                }
                Action::Transmit(id) => {
                    self.trace.record(self.now, Some(node), "transmit", id.0, 0);
                    let target = &mut self.nodes[node.index()];
                    target.contract.taken(id);
                    if let Some(batch) = target.server.take_outbound(id) {
                        if let Some(conn) = target.conns.get_mut(&id) {
                            conn.take_batch(batch.slices());
                        }
                        target.server.recycle_outbound(batch);
                        self.pump_server(node, id);
                    }
                }
                Action::CheckPassword(id) => {
                    // bcrypt takes its time on a pool; the node goes on meanwhile.
                    self.trace
                        .record(self.now, Some(node), "check-password", id.0, 0);
                    let at = self.now + PASSWORD_CHECK_TIME;
                    self.schedule(at, Event::PasswordChecked { node, conn: id });
                }
                Action::Close { conn, reason } => {
                    let reason_code = reason as u64;
                    let now = self.now;
                    self.trace
                        .record(now, Some(node), "close", conn.0, reason_code);
                    self.server_close(node, conn, reason);
                }
            }
        }
    }

    /// The server's password check ran: report it, then carry out what follows.
    pub(crate) fn password_checked(&mut self, node: NodeId, id: ConnId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let Some(check) = target.server.take_password_check(id) else {
            return;
        };
        let passed = check.run();
        target.server.handle_password_checked(now, id, passed);
        self.drain_actions(node);
    }

    /// The server closes `id`: its last bytes (unless the reason skips the
    /// flush) and then the FIN go down; nothing more comes up.
    fn server_close(&mut self, node: NodeId, id: ConnId, reason: CloseReason) {
        *self.closes.entry(reason.as_str()).or_default() += 1;
        self.model.stats.checks += 1;
        if let Err(error) = invariants::close_reasons::check(self, node, id, reason) {
            self.fail(error);
        }
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        // Core never asks to close a connection the runtime reported gone
        // (the contract check above would have failed first).
        assert!(
            !target.conns.get(&id).is_some_and(|c| c.server_closed),
            "{id}: Close after handle_closed"
        );
        let flush = if reason.skips_flush() {
            None
        } else {
            target.contract.taken(id);
            target.server.take_outbound(id)
        };
        if let Some(conn) = target.conns.get_mut(&id) {
            if let Some(batch) = &flush {
                conn.take_batch(batch.slices());
            }
            if reason.skips_flush() {
                conn.server_out.clear();
            } else if let Some(ws) = conn.ws.as_mut() {
                // The runtime's last frame: the close status for the reason.
                let close = rnats_core::websocket::close_frame_for(reason);
                ws.queue(&mut conn.server_out, &close, 0);
            }
            // The kernel takes the last bytes whatever the window; then the FIN.
            let out = conn.server_out.split().freeze();
            if !out.is_empty() && !conn.down.dead {
                self.trace.record_bytes(&out);
                let arrival = now + Duration::from_nanos(self.active_plan.latency(&mut conn.rng));
                let at = conn.down.push(arrival, Some(out));
                conn.arrivals.push((at, Dir::Down));
            }
            conn.server_closed = true;
            conn.up.kill();
            conn.send_fin(&self.active_plan, Dir::Down, now);
        }
        if let Some(batch) = flush {
            target.server.recycle_outbound(batch);
        }
        self.schedule_arrivals(node, id);
        self.nodes[node.index()].contract.closed(id);
        self.nodes[node.index()].server.handle_closed(self.now, id);
        self.model.server_closed(id);
    }

    /// The server learns the peer is gone (EOF after a graceful close, or a reset).
    pub(crate) fn server_sees_close(&mut self, node: NodeId, id: ConnId) {
        let target = &mut self.nodes[node.index()];
        let Some(conn) = target.conns.get_mut(&id) else {
            return;
        };
        if conn.server_closed || !conn.accepted {
            return;
        }
        conn.server_closed = true;
        conn.down.kill();
        target.contract.closed(id);
        target.server.handle_closed(self.now, id);
        self.model.server_closed(id);
        self.drain_actions(node);
    }

    /// One read: a random prefix of what arrived (or all of it, up to
    /// `READ_MAX`) goes to `handle_read`; the frames it completed go to the model.
    pub(crate) fn server_read(&mut self, node: NodeId, id: ConnId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let Some(conn) = target.conns.get_mut(&id) else {
            return;
        };
        conn.server_read_pending = false;
        if conn.server_closed {
            return;
        }
        if conn.up.recv.is_empty() {
            if conn.up.eof {
                self.server_sees_close(node, id);
            }
            return;
        }
        let available = conn.up.recv.len();
        let take = if conn.rng.chance(self.active_plan.split) {
            conn.rng.range(1, available as u64) as usize
        } else {
            available.min(READ_MAX)
        };
        let chunk = conn.up.recv.split_to(take);
        let before = conn.server_buf.len();
        match conn.ws.as_mut() {
            Some(ws) => {
                ws.server_raw.extend_from_slice(&chunk);
                if let Err(error) = ws.server_decode(&mut conn.server_buf, &mut conn.server_out) {
                    self.fail(format!("{id}: the node refused a client frame: {error}"));
                    return;
                }
                let raw = ws.server_raw.len();
                if let Err(error) = invariants::websocket::check_undecoded(id, raw) {
                    self.fail(error);
                    return;
                }
            }
            None => conn.server_buf.extend_from_slice(&chunk),
        }
        conn.handed += (conn.server_buf.len() - before) as u64;
        assert!(
            conn.handed <= conn.written,
            "{id}: handed bytes never written"
        );
        let more = !conn.up.recv.is_empty() || conn.up.eof;
        let mut buf = std::mem::take(&mut conn.server_buf);
        self.trace
            .record(now, Some(node), "handle-read", id.0, take as u64);
        target.server.handle_read(now, id, &mut buf);
        let closing = target.server.close_reason(id).is_some();
        let conn = target.conns.get_mut(&id).expect("conn exists");
        conn.server_buf = buf;
        let held = conn.server_buf.len();
        if let Err(error) = invariants::memory_bounds::check_read_buffer(self, id, held) {
            self.fail(error);
            return;
        }
        self.apply_processed_frames(node, id, !closing);
        self.drain_actions(node);
        if more {
            self.schedule_server_read(node, id);
        }
        self.pump_client(node, id);
    }

    /// Every frame `handle_read` has now consumed entirely goes to the
    /// model, in order; `certain` is false when the read ended in a close.
    fn apply_processed_frames(&mut self, node: NodeId, id: ConnId, certain: bool) {
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        let handed = conn.handed;
        while conn.frames.front().is_some_and(|(end, _)| *end <= handed) {
            let (_, frame) = conn.frames.pop_front().expect("front exists");
            self.model.apply(id, &frame, certain);
        }
    }

    pub(crate) fn schedule_server_read(&mut self, node: NodeId, id: ConnId) {
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        if !conn.server_read_pending {
            conn.server_read_pending = true;
            let delay = conn.rng.below(20_000);
            self.schedule(
                self.now + Duration::from_nanos(delay),
                Event::ServerRead { node, conn: id },
            );
        }
    }

    /// Move the server's pending output into the pipe as far as the window allows.
    pub(crate) fn pump_server(&mut self, node: NodeId, id: ConnId) {
        let target = &mut self.nodes[node.index()];
        let Some(conn) = target.conns.get_mut(&id) else {
            return;
        };
        if conn.server_closed {
            return;
        }
        if conn.down.dead {
            // Reset: the runtime's write fails; the bytes count as written
            // until the server hears of the reset.
            let mut lost = conn.server_out.len();
            conn.server_out.clear();
            if let Some(ws) = conn.ws.as_mut() {
                lost = ws.drop_unsent();
            }
            if lost > 0 {
                target.server.handle_written(id, lost);
            }
            return;
        }
        let room = conn.down.room().min(conn.server_out.len());
        if room == 0 {
            return;
        }
        let bytes = conn.server_out.split_to(room).freeze();
        self.trace.record_bytes(&bytes);
        conn.send(&self.active_plan, Dir::Down, bytes, self.now);
        // Over websocket the server hears of whole batches, in NATS bytes.
        let written = conn.ws.as_mut().map_or(room, |ws| ws.sent(room));
        self.schedule_arrivals(node, id);
        if written > 0 {
            self.nodes[node.index()].server.handle_written(id, written);
        }
    }
}
