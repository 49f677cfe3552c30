//! Routes between nodes: the runtime half of core's route part, simulated.
//!
//! A scenario whose topology has `routes` gives every node a `cluster`
//! (host `10.1.0.<n+1>`, port 6222) and explicit routes (to every other node
//! in a `mesh`; to node 0 only in `seed`, so the rest of the mesh must come
//! from gossip). A node's dials (`Server::poll_dial`) become [`RouteLink`]s:
//! one TCP connection with a server at each end, each end a `ConnId` of its
//! own node, each direction a [`Pipe`] with the same latency, cuts and
//! window as a client's. A dial fails (after a timeout) while a partition
//! separates the two nodes.
//!
//! Every byte a server hands to a route is also read by the simulator's own
//! route parser (`route_wire`); each frame goes to the model once the peer's
//! `handle_read` has taken its last byte, which is how the model knows, at
//! every step, what interest each node has learned from each other one and
//! which routed messages it owes to whom.
//!
//! Faults: partitions between two nodes (both ways or one way, a few hundred
//! milliseconds to seconds, so flapping when frequent) stall the pipes that
//! cross them and fail dials; route resets kill one link; a node restart
//! resets all its links. The peers learn as TCP would tell them.
//!
//! Invariants:
//! - an end is told to its own node's server only, and never again once
//!   `closed`;
//! - `handed <= ` the bytes the other end wrote, and the frames the other
//!   end wrote are applied to the model exactly once, in order, when
//!   `handed` passes their end;
//! - a link's two ends are on two different nodes.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use rnats_core::runtime::{CloseReason, ConnId, ListenerKind};
use rnats_core::server::{ClusterConfig, RouteUrl, ServerConfig};
use serde::Deserialize;

use crate::conn::WINDOW;
use crate::net::Pipe;
use crate::node::{NodeId, READ_MAX};
use crate::rng::{stream, Rng};
use crate::route_wire::{RouteFrame, RouteStreamParser};
use crate::world::{Event, World, MS, SECOND};

/// The route port of every node.
pub(crate) const ROUTE_PORT: u16 = 6222;

/// How long a dial across a partition takes to fail (runtime-tokio's
/// dial timeout).
const DIAL_TIMEOUT: u64 = 2 * SECOND;

/// How the nodes of a scenario are routed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTopology {
    /// No routes: each node is alone.
    #[default]
    None,
    /// Every node names every other one.
    Mesh,
    /// Every node names node 0 only; gossip completes the mesh.
    Seed,
}

/// The host a node's routes listen on.
pub(crate) fn node_host(node: NodeId) -> String {
    format!("10.1.0.{}", node.0 + 1)
}

fn node_of_address(address: &str) -> Option<NodeId> {
    let (host, port) = address.rsplit_once(':')?;
    if port.parse::<u16>().ok()? != ROUTE_PORT {
        return None;
    }
    let last: u32 = host.strip_prefix("10.1.0.")?.parse().ok()?;
    last.checked_sub(1).map(NodeId)
}

/// Node `node`'s cluster, in a world of `servers` nodes routed as `topology`.
pub(crate) fn cluster_config(
    config: &mut ServerConfig,
    node: NodeId,
    servers: u32,
    topology: RouteTopology,
) {
    let peers: Vec<u32> = match topology {
        RouteTopology::None => return,
        RouteTopology::Mesh => (0..servers).filter(|n| *n != node.0).collect(),
        RouteTopology::Seed if node.0 == 0 => Vec::new(),
        RouteTopology::Seed => vec![0],
    };
    let routes = peers
        .into_iter()
        .map(|peer| {
            RouteUrl::parse(&format!(
                "nats-route://{}:{ROUTE_PORT}",
                node_host(NodeId(peer))
            ))
            .expect("a route URL the simulator writes parses")
        })
        .collect();
    // Servers tell each other apart (and a route to itself) by id.
    config.identity.server_id = format!("NSIMNODE{}", node.0);
    config.cluster = Some(ClusterConfig {
        name: "sim".to_string(),
        host: node_host(node),
        port: ROUTE_PORT,
        routes,
        // Production's defaults: a pool of three and the system account's
        // own route.
        pool_size: 3,
        ..ClusterConfig::default()
    });
}

/// One end of a route connection.
pub(crate) struct RouteEnd {
    pub(crate) node: NodeId,
    pub(crate) conn: ConnId,
    /// Carries what this end writes to the other end.
    pub(crate) out_pipe: Pipe,
    /// Taken from this end's server, not yet taken by `out_pipe`.
    pub(crate) out: BytesMut,
    /// What this end's `handle_read` left unprocessed.
    pub(crate) read_buf: BytesMut,
    pub(crate) read_pending: bool,
    /// This end's server closed it or learned it is gone.
    pub(crate) closed: bool,
    /// Bytes of the other end's stream handed to this end's server.
    pub(crate) handed: u64,
    /// Bytes this end's server wrote (taken from its outbound).
    pub(crate) written: u64,
    /// The simulator's reading of what this end writes.
    pub(crate) parser: RouteStreamParser,
    /// Frames this end wrote that the other end has not processed yet.
    pub(crate) frames: VecDeque<(u64, RouteFrame)>,
    /// This end's server processed an `-ERR` from its peer (which closes
    /// the route as the reference does, as a protocol violation).
    pub(crate) peer_erred: bool,
}

impl RouteEnd {
    fn new(node: NodeId, conn: ConnId) -> RouteEnd {
        RouteEnd {
            node,
            conn,
            out_pipe: Pipe::new(WINDOW),
            out: BytesMut::new(),
            read_buf: BytesMut::new(),
            read_pending: false,
            closed: false,
            handed: 0,
            written: 0,
            parser: RouteStreamParser::default(),
            frames: VecDeque::new(),
            peer_erred: false,
        }
    }
}

/// One route connection: `ends[0]` dialed, `ends[1]` accepted.
pub(crate) struct RouteLink {
    pub(crate) ends: [RouteEnd; 2],
    pub(crate) rng: Rng,
    /// The acceptor's server has been told (`handle_accept`).
    pub(crate) accepted: bool,
    /// The dialer's dial this link answers.
    pub(crate) dial: u64,
}

impl RouteLink {
    fn live(&self) -> bool {
        self.accepted && !self.ends[0].closed && !self.ends[1].closed
    }

    /// Bytes end `side`'s server handed over: queued for its pipe and read
    /// by the simulator's parser (a pinned route pins both directions).
    fn take_output(&mut self, side: usize, bytes: &[u8]) -> Result<(), String> {
        let end = &mut self.ends[side];
        end.out.extend_from_slice(bytes);
        end.written += bytes.len() as u64;
        let frames = end.parser.feed(bytes)?;
        for (_, frame) in &frames {
            if let RouteFrame::Pinned(account) = frame {
                self.ends[1 - side].parser.pin(account.clone());
            }
        }
        self.ends[side].frames.extend(frames);
        Ok(())
    }
}

impl World {
    /// Every route dial the node's server asked for.
    pub(crate) fn start_dials(&mut self, node: NodeId) {
        while let Some(request) = self.nodes[node.index()].server.poll_dial() {
            let now = self.now;
            self.trace
                .record(now, Some(node), "route-dial", request.id, 0);
            let target = node_of_address(&request.address)
                .filter(|target| target.index() < self.nodes.len() && *target != node);
            let Some(target) = target else {
                self.schedule(
                    now + Duration::from_millis(1),
                    Event::RouteDialFailed {
                        node,
                        dial: request.id,
                        timeout: false,
                    },
                );
                continue;
            };
            if self.partitioned(node, target) || self.partitioned(target, node) {
                self.schedule(
                    now + Duration::from_nanos(DIAL_TIMEOUT),
                    Event::RouteDialFailed {
                        node,
                        dial: request.id,
                        timeout: true,
                    },
                );
                continue;
            }
            let link = self.next_link;
            self.next_link += 1;
            let (a, b) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
            self.next_conn += 2;
            let mut rng = Rng::stream(self.seed, stream::ROUTE_BASE + link);
            let handshake = self.active_plan.latency(&mut rng);
            self.links.insert(
                link,
                RouteLink {
                    ends: [RouteEnd::new(node, a), RouteEnd::new(target, b)],
                    rng,
                    accepted: false,
                    dial: request.id,
                },
            );
            self.nodes[node.index()].route_conns.insert(a, (link, 0));
            self.nodes[target.index()].route_conns.insert(b, (link, 1));
            self.model.route_opened(a, node, b, target);
            let at = now + Duration::from_nanos(handshake);
            self.schedule(at, Event::RouteConnected { node, link });
            self.schedule(at, Event::RouteAccept { node: target, link });
        }
    }

    fn partitioned(&self, from: NodeId, to: NodeId) -> bool {
        self.partitions
            .get(&(from, to))
            .is_some_and(|until| *until > self.now)
    }

    pub(crate) fn route_dial_failed(&mut self, node: NodeId, dial: u64, timeout: bool) {
        let error = if timeout {
            "i/o timeout"
        } else {
            "connection refused"
        };
        let now = self.now;
        self.nodes[node.index()]
            .server
            .handle_dial_failed(now, dial, error);
        self.drain_actions(node);
    }

    /// The dialer's connect returned.
    pub(crate) fn route_connected(&mut self, node: NodeId, link: u64) {
        let Some(route) = self.links.get(&link) else {
            return;
        };
        let end = &route.ends[0];
        if end.closed {
            // The dialer restarted meanwhile: the new process never dialed it.
            return;
        }
        let (conn, dial) = (end.conn, route.dial);
        let peer = SocketAddr::new(host_ip(route.ends[1].node), ROUTE_PORT);
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        target.contract.accepted(conn);
        target.server.handle_dialed(now, dial, conn, peer);
        self.drain_actions(node);
        self.route_schedule_read(link, 0);
    }

    /// The acceptor's server learns of the connection.
    pub(crate) fn route_accept(&mut self, node: NodeId, link: u64) {
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        if route.ends[1].closed {
            return;
        }
        route.accepted = true;
        let conn = route.ends[1].conn;
        let peer = SocketAddr::new(host_ip(route.ends[0].node), 40000 + (conn.0 % 20000) as u16);
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        target.contract.accepted(conn);
        target
            .server
            .handle_accept(now, conn, peer, ListenerKind::Route);
        self.drain_actions(node);
        self.route_schedule_read(link, 1);
    }

    /// `Action::Transmit` for a route end.
    pub(crate) fn route_transmit(&mut self, node: NodeId, id: ConnId) {
        let Some(&(link, side)) = self.nodes[node.index()].route_conns.get(&id) else {
            return;
        };
        let target = &mut self.nodes[node.index()];
        target.contract.taken(id);
        let Some(batch) = target.server.take_outbound(id) else {
            return;
        };
        let route = self
            .links
            .get_mut(&link)
            .expect("a node's route end has a link");
        let mut parsed: Result<(), String> = Ok(());
        for slice in batch.slices() {
            if let Err(error) = route.take_output(side, slice) {
                parsed = Err(error);
            }
        }
        target.server.recycle_outbound(batch);
        if let Err(error) = parsed {
            self.fail(format!(
                "{id} on {node}: the route stream does not parse: {error}"
            ));
            return;
        }
        self.route_pump(link, side);
    }

    /// Move one end's pending output into its pipe as far as the window allows.
    fn route_pump(&mut self, link: u64, side: usize) {
        let now = self.now;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        let peer_node = route.ends[1 - side].node;
        let end = &mut route.ends[side];
        if end.closed {
            return;
        }
        let (node, conn) = (end.node, end.conn);
        if end.out_pipe.dead {
            let lost = end.out.len();
            end.out.clear();
            if lost > 0 {
                self.nodes[node.index()].server.handle_written(conn, lost);
            }
            return;
        }
        let room = end.out_pipe.room().min(end.out.len());
        if room == 0 {
            return;
        }
        let mut bytes = end.out.split_to(room).freeze();
        self.trace.record_bytes(&bytes);
        let mut arrivals = Vec::new();
        while !bytes.is_empty() {
            let cut = if bytes.len() > 1 && route.rng.chance(self.active_plan.split) {
                route.rng.range(1, bytes.len() as u64 - 1) as usize
            } else {
                bytes.len()
            };
            let segment = bytes.split_to(cut);
            let arrival = now + Duration::from_nanos(self.active_plan.latency(&mut route.rng));
            arrivals.push(route.ends[side].out_pipe.push(arrival, Some(segment)));
        }
        for at in arrivals {
            self.schedule(
                at,
                Event::RouteArrive {
                    node: peer_node,
                    link,
                    side: 1 - side,
                },
            );
        }
        self.nodes[node.index()].server.handle_written(conn, room);
    }

    /// A segment for end `side` of `link` is due.
    pub(crate) fn route_arrive(&mut self, link: u64, side: usize) {
        let now = self.now;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        if route.ends[1 - side].out_pipe.arrive(now) {
            self.route_schedule_read(link, side);
        }
    }

    fn route_schedule_read(&mut self, link: u64, side: usize) {
        let now = self.now;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        let ready = if side == 1 { route.accepted } else { true };
        let incoming = &route.ends[1 - side].out_pipe;
        let unread = !incoming.recv.is_empty() || incoming.eof;
        let end = &route.ends[side];
        if !ready || end.closed || end.read_pending || !unread {
            return;
        }
        let node = end.node;
        route.ends[side].read_pending = true;
        let delay = route.rng.below(20_000);
        self.schedule(
            now + Duration::from_nanos(delay),
            Event::RouteRead { node, link, side },
        );
    }

    /// One read on end `side`: a random prefix of what arrived goes to
    /// `handle_read`; the frames it completed go to the model.
    pub(crate) fn route_read(&mut self, link: u64, side: usize) {
        let now = self.now;
        let split = self.active_plan.split;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        route.ends[side].read_pending = false;
        if route.ends[side].closed {
            return;
        }
        let incoming = &mut route.ends[1 - side].out_pipe;
        if incoming.recv.is_empty() {
            if incoming.eof {
                self.route_sees_close(link, side);
            }
            return;
        }
        let available = incoming.recv.len();
        let take = if route.rng.chance(split) {
            route.rng.range(1, available as u64) as usize
        } else {
            available.min(READ_MAX)
        };
        let chunk = incoming.recv.split_to(take);
        let end = &mut route.ends[side];
        end.read_buf.extend_from_slice(&chunk);
        end.handed += take as u64;
        let (node, conn, handed) = (end.node, end.conn, end.handed);
        assert!(
            handed <= route.ends[1 - side].written,
            "{conn}: handed route bytes never written"
        );
        let mut buf = std::mem::take(&mut route.ends[side].read_buf);
        self.trace
            .record(now, Some(node), "route-read", conn.0, take as u64);
        let server = &mut self.nodes[node.index()].server;
        server.handle_read(now, conn, &mut buf);
        let closing = server.close_reason(conn).is_some();
        let route = self.links.get_mut(&link).expect("link exists");
        route.ends[side].read_buf = buf;
        let mut processed = Vec::new();
        let sender = &mut route.ends[1 - side];
        while sender.frames.front().is_some_and(|(end, _)| *end <= handed) {
            processed.push(sender.frames.pop_front().expect("front exists").1);
        }
        if processed.contains(&RouteFrame::Err) {
            route.ends[side].peer_erred = true;
        }
        for frame in processed {
            if let Err(error) = self.model.route_frame(conn, &frame, !closing) {
                self.fail(error);
                return;
            }
        }
        self.drain_actions(node);
        // The read made room in the window: the sender may go on.
        self.route_pump(link, 1 - side);
        self.route_schedule_read(link, side);
    }

    /// The server of end `side` closes it: its last bytes (unless the reason
    /// skips the flush) and then the FIN go out; nothing more is read.
    pub(crate) fn route_close(&mut self, node: NodeId, id: ConnId, reason: CloseReason) {
        *self.closes.entry(reason.as_str()).or_default() += 1;
        let Some(&(link, side)) = self.nodes[node.index()].route_conns.get(&id) else {
            return;
        };
        let answered_err =
            reason == CloseReason::ProtocolViolation && self.links[&link].ends[side].peer_erred;
        if !answered_err
            && matches!(
                reason,
                CloseReason::ProtocolViolation
                    | CloseReason::MaxPayloadExceeded
                    | CloseReason::MaxControlLineExceeded
                    | CloseReason::ClusterNameConflict
                    | CloseReason::AuthenticationViolation
            )
        {
            let said: Vec<String> = self.nodes[node.index()]
                .server
                .take_logs()
                .filter(|log| log.conn == Some(id))
                .map(|log| log.text)
                .collect();
            self.fail(format!(
                "{id} on {node}: a route between two rnats nodes closed for {} (the server said {said:?})",
                reason.as_str()
            ));
            return;
        }
        let flush = if reason.skips_flush() {
            None
        } else {
            self.nodes[node.index()].contract.taken(id);
            self.nodes[node.index()].server.take_outbound(id)
        };
        if let Some(batch) = flush {
            let route = self.links.get_mut(&link).expect("link exists");
            for slice in batch.slices() {
                // A stream that does not parse failed the run when written.
                let _ = route.take_output(side, slice);
            }
            self.nodes[node.index()].server.recycle_outbound(batch);
        }
        let now = self.now;
        let route = self.links.get_mut(&link).expect("link exists");
        // The kernel takes the last bytes whatever the window; then the FIN.
        let end = &mut route.ends[side];
        if reason.skips_flush() {
            end.out.clear();
        }
        let out = end.out.split().freeze();
        let mut arrivals = Vec::new();
        if !end.out_pipe.dead {
            let latency = self.active_plan.latency(&mut route.rng);
            let end = &mut route.ends[side];
            if !out.is_empty() {
                self.trace.record_bytes(&out);
                arrivals.push(
                    end.out_pipe
                        .push(now + Duration::from_nanos(latency), Some(out)),
                );
            }
            if !end.out_pipe.fin_sent {
                arrivals.push(end.out_pipe.push(now + Duration::from_nanos(latency), None));
            }
        }
        route.ends[side].closed = true;
        route.ends[1 - side].out_pipe.kill();
        let peer = route.ends[1 - side].node;
        for at in arrivals {
            self.schedule(
                at,
                Event::RouteArrive {
                    node: peer,
                    link,
                    side: 1 - side,
                },
            );
        }
        self.route_end_gone(link, side);
        let target = &mut self.nodes[node.index()];
        target.contract.closed(id);
        target.server.handle_closed(now, id);
    }

    /// End `side` learns the connection is gone (EOF, or a reset).
    pub(crate) fn route_sees_close(&mut self, link: u64, side: usize) {
        let now = self.now;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        let end = &mut route.ends[side];
        if end.closed || (side == 1 && !route.accepted) {
            if side == 1 && !route.accepted {
                // Reset before the acceptor's server ever heard of it.
                route.ends[1].closed = true;
                self.route_end_gone(link, 1);
            }
            return;
        }
        end.closed = true;
        end.out_pipe.kill();
        let (node, conn) = (end.node, end.conn);
        self.route_end_gone(link, side);
        let target = &mut self.nodes[node.index()];
        target.contract.closed(conn);
        target.server.handle_closed(now, conn);
        self.drain_actions(node);
    }

    /// End `side` is closed (its caller marked it): the model drops what it
    /// owed through it (the link broke when the first end closed), and a
    /// link whose both ends are closed is forgotten.
    fn route_end_gone(&mut self, link: u64, side: usize) {
        let route = self.links.get_mut(&link).expect("link exists");
        let (node, conn) = (route.ends[side].node, route.ends[side].conn);
        debug_assert!(route.ends[side].closed, "{conn}: gone before closed");
        let first = !route.ends[1 - side].closed;
        self.model.route_end_closed(conn, first);
        self.nodes[node.index()].route_conns.remove(&conn);
        if route.ends.iter().all(|end| end.closed) {
            self.links.remove(&link);
        }
    }

    /// Reset one link: both pipes die; each end learns one latency later.
    pub(crate) fn route_reset(&mut self, link: u64, kind: &'static str) {
        let now = self.now;
        let Some(route) = self.links.get_mut(&link) else {
            return;
        };
        route.ends[0].out_pipe.kill();
        route.ends[1].out_pipe.kill();
        let delays = [
            self.active_plan.latency(&mut route.rng),
            self.active_plan.latency(&mut route.rng),
        ];
        let nodes = [route.ends[0].node, route.ends[1].node];
        self.count_fault(Some(nodes[0]), kind);
        for side in 0..2 {
            self.schedule(
                now + Duration::from_nanos(delays[side]),
                Event::RouteSeesClose {
                    node: nodes[side],
                    link,
                    side,
                },
            );
        }
    }

    /// A node's process died: every route end it had is gone at once (the
    /// new process never heard of them); the peers learn as from a reset.
    pub(crate) fn restart_routes(&mut self, node: NodeId) {
        let ends: Vec<(u64, usize)> = self.nodes[node.index()]
            .route_conns
            .values()
            .copied()
            .collect();
        for (link, side) in ends {
            let now = self.now;
            let Some(route) = self.links.get_mut(&link) else {
                continue;
            };
            route.ends[0].out_pipe.kill();
            route.ends[1].out_pipe.kill();
            route.ends[side].closed = true;
            let delay = self.active_plan.latency(&mut route.rng);
            let peer = route.ends[1 - side].node;
            self.route_end_gone(link, side);
            self.schedule(
                now + Duration::from_nanos(delay),
                Event::RouteSeesClose {
                    node: peer,
                    link,
                    side: 1 - side,
                },
            );
        }
        assert!(
            self.nodes[node.index()].route_conns.is_empty(),
            "a restarted node keeps no route end"
        );
    }

    /// The fault injector's route faults for one tick.
    pub(crate) fn route_faults(&mut self, dt: f64) {
        let plan = self.active_plan.clone();
        let servers = self.nodes.len() as u64;
        if plan.partition_per_s > 0.0
            && servers > 1
            && self.fault_rng.chance(plan.partition_per_s * dt)
        {
            let a = NodeId(self.fault_rng.below(servers) as u32);
            let b =
                NodeId(((u64::from(a.0) + self.fault_rng.range(1, servers - 1)) % servers) as u32);
            let until = self.now
                + Duration::from_nanos(
                    self.fault_rng
                        .range(100 * MS, plan.partition_max.max(100 * MS)),
                );
            let (kind, directions): (&'static str, Vec<(NodeId, NodeId)>) =
                match self.fault_rng.below(3) {
                    0 => ("partition", vec![(a, b), (b, a)]),
                    1 => ("partition-one-way", vec![(a, b)]),
                    _ => ("partition-one-way", vec![(b, a)]),
                };
            for (from, to) in directions {
                let entry = self.partitions.entry((from, to)).or_insert(until);
                *entry = (*entry).max(until);
                for route in self.links.values_mut() {
                    for side in 0..2 {
                        if route.ends[side].node == from && route.ends[1 - side].node == to {
                            let pipe = &mut route.ends[side].out_pipe;
                            pipe.stalled_until = pipe.stalled_until.max(until);
                        }
                    }
                }
            }
            self.count_fault(Some(a), kind);
        }
        if plan.route_reset_per_s > 0.0 && self.fault_rng.chance(plan.route_reset_per_s * dt) {
            let live: Vec<u64> = self
                .links
                .iter()
                .filter(|(_, route)| route.live())
                .map(|(id, _)| *id)
                .collect();
            if !live.is_empty() {
                let link = *self.fault_rng.pick(&live);
                self.route_reset(link, "route-reset");
            }
        }
    }

    /// The heal: partitions end, stalled route pipes flow again.
    pub(crate) fn heal_routes(&mut self) {
        let now = self.now;
        self.partitions.clear();
        for route in self.links.values_mut() {
            for end in &mut route.ends {
                end.out_pipe.stalled_until = end.out_pipe.stalled_until.min(now);
            }
        }
    }

    /// At the end: every pair of nodes is joined by open routes (one, or a
    /// pool and pinned ones), and what each node learned from the other is
    /// what the other has.
    pub(crate) fn check_routes_converged(&mut self) -> Result<(), String> {
        if self.scenario.topology.routes == RouteTopology::None {
            return Ok(());
        }
        let servers = self.nodes.len() as u32;
        for a in 0..servers {
            for b in (a + 1)..servers {
                let open: Vec<u64> = self
                    .links
                    .iter()
                    .filter(|(_, route)| {
                        route.live()
                            && [route.ends[0].node, route.ends[1].node]
                                .iter()
                                .all(|n| n.0 == a || n.0 == b)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                if open.is_empty() {
                    return Err(format!("after the heal no open route joins n{a} and n{b}"));
                }
            }
        }
        self.model.check_route_interest()
    }
}

/// A node's address as its peers see it.
fn host_ip(node: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, 0, (node.0 + 1) as u8))
}

/// Links by id, for the world.
pub(crate) type Links = BTreeMap<u64, RouteLink>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_nodes() {
        assert_eq!(node_of_address("10.1.0.1:6222"), Some(NodeId(0)));
        assert_eq!(node_of_address("10.1.0.3:6222"), Some(NodeId(2)));
        assert_eq!(node_of_address("10.1.0.3:4222"), None);
        assert_eq!(node_of_address("10.1.0.0:6222"), None);
        assert_eq!(node_of_address("example:6222"), None);
        assert_eq!(
            node_of_address(&format!("{}:{ROUTE_PORT}", node_host(NodeId(7)))),
            Some(NodeId(7))
        );
    }
}
