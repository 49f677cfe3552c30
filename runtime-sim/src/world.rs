//! The world: the nodes, the clients, the network between them and the
//! event queue that drives them, ordered by (virtual time, sequence).
//!
//! Each event is one step: it may call one node's server (`handle_*`), after
//! which every action that server queued is carried out at once, the frames
//! it processed are applied to the [`Model`], and the safety invariants are
//! checked. The clock jumps to the next event; nothing else moves it.
//!
//! Invariants:
//! - the clock never goes back: events are taken in (time, sequence) order
//!   and none is scheduled before `now`;
//! - sequence numbers are unique, so ties in time break by scheduling order
//!   and never by anything that could differ between two runs;
//! - every event that concerns one node carries its [`NodeId`]; only the
//!   world's own events (fault ticks, heal, mark, end) carry none;
//! - after the first failure no further step runs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use rnats_core::jetstream::link::StreamId;
use rnats_core::runtime::ConnId;
use rnats_core::server::ServerConfig;
use rnats_core::time::Instant;

use crate::clients::SimClient;
use crate::conn::Dir;
use crate::faults::{FaultPlan, FAULT_TICK};
use crate::invariants;
use crate::model::Model;
use crate::node::{Node, NodeId};
use crate::rng::{stream, Rng};
use crate::scenario::Scenario;
use crate::trace::Trace;

pub(crate) const MS: u64 = 1_000_000;
pub(crate) const SECOND: u64 = 1_000_000_000;
/// Hard stop, whatever the scenario says: a run that never ends is a bug too.
const EVENTS_MAX: u64 = 50_000_000;

/// What one run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub seed: u64,
    /// A planted defect's name (see [`crate::defect_names`]); needs the
    /// `planted-defects` feature.
    pub defect: Option<String>,
    /// Skip the node-side check that every JetStream acknowledgement is
    /// durable when released, so that only what clients see (sequences,
    /// read-backs after power losses) can catch a defect: proves those
    /// checks on their own.
    pub client_checks_only: bool,
}

/// A failed invariant, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub at: Instant,
    pub recent: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    /// Nodes in the world (`topology.servers`).
    pub servers: u32,
    pub virtual_time: Instant,
    pub events: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// Connections the servers closed, by reason (all nodes).
    pub closes: BTreeMap<&'static str, u64>,
    pub published: u64,
    pub delivered: u64,
    pub checks: u64,
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    /// JetStream: what the publishers did and saw (summed over all of
    /// them), and how many acknowledgements were checked durable.
    pub jetstream: BTreeMap<&'static str, u64>,
    /// The swarm draw, readable.
    pub plan: String,
}

/// One step of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    /// A node's server asked to be woken (`poll_timeout`).
    ServerTimer {
        node: NodeId,
    },
    /// The fault injector rolls its dice (world-wide).
    FaultTick,
    /// The workload phase ends; faults stop.
    Heal,
    /// Two seconds before the end: what each client wrote so far must be processed.
    Mark,
    End,
    /// A client opens a connection to its node.
    ClientConnect {
        node: NodeId,
        client: usize,
    },
    ClientTick {
        node: NodeId,
        client: usize,
        conn: ConnId,
    },
    /// The node accepts a connection (the handshake took one latency).
    Accept {
        node: NodeId,
        conn: ConnId,
    },
    /// The segment at the head of one pipe is due.
    Arrive {
        node: NodeId,
        conn: ConnId,
        dir: Dir,
    },
    ServerRead {
        node: NodeId,
        conn: ConnId,
    },
    ClientRead {
        node: NodeId,
        conn: ConnId,
    },
    ServerSeesReset {
        node: NodeId,
        conn: ConnId,
    },
    /// A password check the node's server asked for has run (off the
    /// server's lock, as runtime-tokio runs it on a blocking pool).
    PasswordChecked {
        node: NodeId,
        conn: ConnId,
    },
    /// A node's JetStream machine asked to be woken.
    JsTimer {
        node: NodeId,
    },
    /// A sync a node's JetStream asked for completes (`generation`: the
    /// process that asked; a restarted node ignores it).
    JsSyncDone {
        node: NodeId,
        stream: StreamId,
        tag: u64,
        generation: u64,
    },
    /// A route dial of the node failed (refused, or timed out across a partition).
    RouteDialFailed {
        node: NodeId,
        dial: u64,
        timeout: bool,
    },
    /// A route dial of the node connected.
    RouteConnected {
        node: NodeId,
        link: u64,
    },
    /// The node's route port accepts a dialed link.
    RouteAccept {
        node: NodeId,
        link: u64,
    },
    /// The segment at the head of the pipe towards end `side` is due.
    RouteArrive {
        node: NodeId,
        link: u64,
        side: usize,
    },
    RouteRead {
        node: NodeId,
        link: u64,
        side: usize,
    },
    /// End `side` learns its link is gone (a reset, or its peer died).
    RouteSeesClose {
        node: NodeId,
        link: u64,
        side: usize,
    },
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::ServerTimer { .. } => "server-timer",
            Event::FaultTick => "fault-tick",
            Event::Heal => "heal",
            Event::Mark => "mark",
            Event::End => "end",
            Event::ClientConnect { .. } => "client-connect",
            Event::ClientTick { .. } => "client-tick",
            Event::Accept { .. } => "accept",
            Event::Arrive { dir: Dir::Up, .. } => "arrive-at-server",
            Event::Arrive { dir: Dir::Down, .. } => "arrive-at-client",
            Event::ServerRead { .. } => "server-read",
            Event::ClientRead { .. } => "client-read",
            Event::ServerSeesReset { .. } => "server-sees-reset",
            Event::PasswordChecked { .. } => "password-checked",
            Event::JsTimer { .. } => "js-timer",
            Event::JsSyncDone { .. } => "js-sync-complete",
            Event::RouteDialFailed { .. } => "route-dial-failed",
            Event::RouteConnected { .. } => "route-connected",
            Event::RouteAccept { .. } => "route-accept",
            Event::RouteArrive { .. } => "route-arrive",
            Event::RouteRead { .. } => "route-read",
            Event::RouteSeesClose { .. } => "route-sees-close",
        }
    }

    /// The node this event happens on; `None` for the world's own events.
    fn node(&self) -> Option<NodeId> {
        match self {
            Event::ServerTimer { node }
            | Event::ClientConnect { node, .. }
            | Event::ClientTick { node, .. }
            | Event::Accept { node, .. }
            | Event::Arrive { node, .. }
            | Event::ServerRead { node, .. }
            | Event::ClientRead { node, .. }
            | Event::ServerSeesReset { node, .. }
            | Event::PasswordChecked { node, .. }
            | Event::JsTimer { node }
            | Event::JsSyncDone { node, .. }
            | Event::RouteDialFailed { node, .. }
            | Event::RouteConnected { node, .. }
            | Event::RouteAccept { node, .. }
            | Event::RouteArrive { node, .. }
            | Event::RouteRead { node, .. }
            | Event::RouteSeesClose { node, .. } => Some(*node),
            Event::FaultTick | Event::Heal | Event::Mark | Event::End => None,
        }
    }

    /// The connection (or, for a connect, the client) the trace names.
    fn subject(&self) -> u64 {
        match self {
            Event::ClientTick { conn, .. }
            | Event::Accept { conn, .. }
            | Event::Arrive { conn, .. }
            | Event::ServerRead { conn, .. }
            | Event::ClientRead { conn, .. }
            | Event::ServerSeesReset { conn, .. }
            | Event::PasswordChecked { conn, .. } => conn.0,
            Event::ClientConnect { client, .. } => *client as u64,
            Event::JsSyncDone { stream, tag, .. } => (stream.0 << 32) ^ tag,
            Event::RouteDialFailed { dial, .. } => *dial,
            Event::RouteConnected { link, .. } | Event::RouteAccept { link, .. } => *link,
            Event::RouteArrive { link, side, .. }
            | Event::RouteRead { link, side, .. }
            | Event::RouteSeesClose { link, side, .. } => (*link << 1) | *side as u64,
            Event::ServerTimer { .. }
            | Event::JsTimer { .. }
            | Event::FaultTick
            | Event::Heal
            | Event::Mark
            | Event::End => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    at: Instant,
    seq: u64,
    event: Event,
}

/// A whole run.
pub struct World {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) plan: FaultPlan,
    /// `plan` until the heal, then `plan.healed()`.
    pub(crate) active_plan: FaultPlan,
    pub(crate) now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    /// Indexed by `NodeId`.
    pub(crate) nodes: Vec<Node>,
    /// The next `ConnId`: unique across all nodes.
    pub(crate) next_conn: u64,
    pub(crate) clients: Vec<SimClient>,
    pub(crate) model: Model,
    pub(crate) trace: Trace,
    /// The fault injector's choices.
    pub(crate) fault_rng: Rng,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) closes: BTreeMap<&'static str, u64>,
    events: u64,
    pub(crate) healed: bool,
    failure: Option<String>,
    /// `RunOptions::client_checks_only`.
    pub(crate) client_checks_only: bool,
    /// Route connections between nodes, by link id (`routes.rs`).
    pub(crate) links: crate::routes::Links,
    pub(crate) next_link: u64,
    /// (from, to): bytes from `from` to `to` are held until then.
    pub(crate) partitions: BTreeMap<(NodeId, NodeId), Instant>,
}

impl World {
    pub fn new(scenario: &Scenario, options: &RunOptions) -> Result<World, String> {
        let seed = options.seed;
        let plan = FaultPlan::draw(&scenario.faults, &mut Rng::stream(seed, stream::PLAN));
        let config = server_config(scenario, options)?;
        let mut model = Model::default();
        let routes = scenario.topology.routes;
        model.routed = routes != crate::routes::RouteTopology::None;
        if let Some(security) = &scenario.security {
            model.imports = security.imports();
        }
        let nodes: Vec<Node> = (0..scenario.topology.servers)
            .map(|n| {
                let mut config = config.clone();
                crate::routes::cluster_config(
                    &mut config,
                    NodeId(n),
                    scenario.topology.servers,
                    routes,
                );
                Node::new(NodeId(n), config, seed, scenario.jetstream.as_ref())
            })
            .collect();
        let scenario = &with_system_client(scenario);
        let mut clients = Vec::new();
        for (spec_index, spec) in scenario.clients.iter().enumerate() {
            for index_in_spec in 0..spec.count {
                let index = clients.len();
                let node = NodeId(scenario.server_of(spec, index_in_spec));
                clients.push(SimClient::new(index, spec_index, spec, node, seed));
            }
        }
        assert!(!nodes.is_empty(), "a world has at least one node");
        let duration = (scenario.duration_s * SECOND as f64) as u64;
        let end = duration + (scenario.heal_s * SECOND as f64) as u64;
        let mut world = World {
            scenario: scenario.clone(),
            seed,
            active_plan: plan.clone(),
            plan,
            now: Instant::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            next_conn: 1,
            clients,
            model,
            trace: Trace::default(),
            fault_rng: Rng::stream(seed, stream::FAULTS),
            faults: BTreeMap::new(),
            closes: BTreeMap::new(),
            events: 0,
            healed: false,
            failure: None,
            client_checks_only: options.client_checks_only,
            links: Default::default(),
            next_link: 0,
            partitions: BTreeMap::new(),
        };
        for client in 0..world.clients.len() {
            let start = world.clients[client].rng.below(200 * MS);
            let node = world.clients[client].node;
            world.schedule(Instant(start), Event::ClientConnect { node, client });
        }
        // JetStream's recovered streams ask for their subscriptions first;
        // routed nodes dial their routes.
        for node in 0..world.nodes.len() {
            if world.nodes[node].js.is_some() || world.model.routed {
                world.drain_actions(NodeId(node as u32));
            }
        }
        world.schedule(Instant(FAULT_TICK), Event::FaultTick);
        world.schedule(Instant(duration), Event::Heal);
        world.schedule(
            Instant(end.saturating_sub(2 * SECOND).max(duration)),
            Event::Mark,
        );
        world.schedule(Instant(end), Event::End);
        Ok(world)
    }

    /// Run to the end or the first failure.
    pub fn run(mut self) -> Outcome {
        while self.failure.is_none() {
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            assert!(next.at >= self.now, "the clock never goes back");
            self.now = next.at;
            self.events += 1;
            self.trace.record(
                self.now,
                next.event.node(),
                next.event.name(),
                next.event.subject(),
                next.seq,
            );
            if matches!(next.event, Event::End) {
                if let Err(error) = invariants::check_liveness(&mut self) {
                    self.fail(error);
                }
                break;
            }
            self.step(next.event);
            if self.failure.is_none() {
                match invariants::check_safety(&self) {
                    Ok(checked) => self.model.stats.checks += checked,
                    Err(error) => self.fail(error),
                }
            }
            if self.events >= EVENTS_MAX {
                self.fail(format!("no end after {EVENTS_MAX} events"));
            }
        }
        let failure = self.failure.take().map(|message| Failure {
            message,
            at: self.now,
            recent: self.trace.recent_lines(),
        });
        Outcome {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            servers: self.nodes.len() as u32,
            virtual_time: self.now,
            events: self.events,
            faults: self.faults.clone(),
            closes: self.closes.clone(),
            published: self.model.stats.published,
            delivered: self.model.stats.delivered,
            checks: self.model.stats.checks,
            trace_hash: self.trace.hash(),
            failure,
            jetstream: self.jetstream_counts(),
            plan: format!("{:?}", self.plan),
        }
    }

    fn jetstream_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for js in self.clients.iter().filter_map(|c| c.js.as_ref()) {
            for (what, n) in &js.counts {
                *counts.entry(*what).or_default() += n;
            }
        }
        for consumer in self.clients.iter().filter_map(|c| c.consumer.as_ref()) {
            for (what, n) in &consumer.counts {
                *counts.entry(*what).or_default() += n;
            }
        }
        for js in self.nodes.iter().filter_map(|n| n.js.as_ref()) {
            *counts.entry("acks-checked-durable").or_default() += js.acks_checked;
        }
        counts
    }

    pub(crate) fn schedule(&mut self, at: Instant, event: Event) {
        let at = at.max(self.now);
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Record the first failure; the run stops after this step.
    pub(crate) fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.trace.record(self.now, None, "FAILURE", 0, 0);
            self.failure = Some(message);
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Count one fault of `kind`, on `node` when it struck one.
    pub(crate) fn count_fault(&mut self, node: Option<NodeId>, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
        self.trace.record(self.now, node, kind, 0, 0);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::ServerTimer { node } => self.server_timer(node),
            Event::FaultTick => self.fault_tick(),
            Event::Heal => self.heal(),
            Event::Mark => {
                for conn in self.nodes.iter_mut().flat_map(|n| n.conns.values_mut()) {
                    conn.written_mark = conn.written;
                }
            }
            Event::End => unreachable!("handled by run"),
            Event::ClientConnect { node, client } => {
                debug_assert_eq!(self.clients[client].node, node);
                self.client_connect(client)
            }
            Event::ClientTick { node, client, conn } => self.client_tick(node, client, conn),
            Event::Accept { node, conn } => self.accept(node, conn),
            Event::Arrive { node, conn, dir } => self.arrive(node, conn, dir),
            Event::ServerRead { node, conn } => self.server_read(node, conn),
            Event::ClientRead { node, conn } => self.client_read(node, conn),
            Event::ServerSeesReset { node, conn } => self.server_sees_close(node, conn),
            Event::PasswordChecked { node, conn } => self.password_checked(node, conn),
            Event::JsTimer { node } => self.js_timer(node),
            Event::JsSyncDone {
                node,
                stream,
                tag,
                generation,
            } => self.js_sync_done(node, stream, tag, generation),
            Event::RouteDialFailed {
                node,
                dial,
                timeout,
            } => self.route_dial_failed(node, dial, timeout),
            Event::RouteConnected { node, link } => self.route_connected(node, link),
            Event::RouteAccept { node, link } => self.route_accept(node, link),
            Event::RouteArrive { link, side, .. } => self.route_arrive(link, side),
            Event::RouteRead { link, side, .. } => self.route_read(link, side),
            Event::RouteSeesClose { link, side, .. } => self.route_sees_close(link, side),
        }
    }

    /// One arrival event per segment pushed into `id`'s pipes since the last call.
    pub(crate) fn schedule_arrivals(&mut self, node: NodeId, id: ConnId) {
        let Some(conn) = self.nodes[node.index()].conns.get_mut(&id) else {
            return;
        };
        let arrivals = std::mem::take(&mut conn.arrivals);
        for (at, dir) in arrivals {
            self.schedule(
                at,
                Event::Arrive {
                    node,
                    conn: id,
                    dir,
                },
            );
        }
    }

    /// The segment at the head of one pipe arrives; its reader is woken.
    fn arrive(&mut self, node: NodeId, id: ConnId, dir: Dir) {
        let now = self.now;
        let Some(conn) = self.nodes[node.index()].conns.get_mut(&id) else {
            return;
        };
        let pipe = match dir {
            Dir::Up => &mut conn.up,
            Dir::Down => &mut conn.down,
        };
        if !pipe.arrive(now) {
            return;
        }
        match dir {
            Dir::Up => {
                if !conn.server_closed && conn.accepted {
                    self.schedule_server_read(node, id);
                }
            }
            Dir::Down => {
                if conn.paused && conn.down.eof {
                    // A client that stopped reading still learns of the close
                    // (its next write fails) and comes back.
                    self.client_loses(node, id);
                } else if !conn.client_gone && !conn.paused {
                    self.schedule_client_read(node, id);
                }
            }
        }
    }
}

/// The server configuration every node of `scenario` runs with.
/// `scenario` with the world's system client added after the scenario's
/// own (so their random streams stay as they were) when it has claims
/// updates to publish.
fn with_system_client(scenario: &Scenario) -> Scenario {
    let mut scenario = scenario.clone();
    if scenario
        .security
        .as_ref()
        .is_some_and(|s| !s.jwt_updates.is_empty())
    {
        // Every other field as a scenario's default; the role no scenario
        // file may name is set after.
        let defaults = serde_json::json!({"role": "publisher", "server": 0, "rate_hz": 10.0,
                                          "user": crate::security::SYSTEM_USER});
        let mut spec: crate::scenario::ClientSpec =
            serde_json::from_value(defaults).expect("a valid client spec");
        spec.role = crate::scenario::Role::System;
        scenario.clients.push(spec);
    }
    scenario
}

fn server_config(scenario: &Scenario, options: &RunOptions) -> Result<ServerConfig, String> {
    let spec = &scenario.server;
    let mut config = ServerConfig {
        max_pending: spec.max_pending,
        max_payload: spec.max_payload,
        max_control_line: spec.max_control_line,
        ping_interval: Duration::from_millis(spec.ping_interval_ms),
        ping_max: spec.ping_max,
        ..ServerConfig::default()
    };
    if let Some(security) = &scenario.security {
        let (auth, accounts, system_account) = security.server_config();
        config.auth = auth;
        config.accounts = accounts;
        if system_account.is_some() {
            config.system_account = system_account;
        }
        if security.tls_map {
            config.tls = rnats_core::server::TlsPolicy {
                required: true,
                verify: true,
                map: true,
                allow_non_tls: false,
            };
        }
    }
    if scenario.jetstream.is_some() {
        config.jetstream = Some(crate::jetstream::js_config());
    }
    if scenario.clients.iter().any(|client| client.websocket) {
        if scenario.security.as_ref().is_some_and(|s| s.tls_map) {
            return Err("websocket clients cannot log in by certificate (tls_map)".to_string());
        }
        config.websocket = Some(crate::ws::listener_config());
    }
    if let Some(name) = &options.defect {
        crate::apply_defect(&mut config, name)?;
    }
    Ok(config)
}
