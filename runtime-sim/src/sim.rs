//! The simulation: one server machine, simulated clients and the network
//! between them, driven by an event queue ordered by (virtual time, sequence).
//!
//! Each event is one step: it may call the server (`handle_*`), after which
//! every action the server queued is carried out at once, the frames it
//! processed are applied to the [`Model`], and the safety invariants are
//! checked. The clock jumps to the next event; nothing else moves it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rnats_core::protocol;
use rnats_core::runtime::{Action, CloseReason, ConnId};
use rnats_core::server::{Server, ServerConfig};
use rnats_core::time::{Instant, WallTime};

use crate::model::{Frame, Model, MsgRecord};
use crate::net::Pipe;
use crate::rng::{stream, Rng};
use crate::scenario::{ClientSpec, FaultSpec, Role, Scenario};
use crate::trace::{Fnv64, Trace};
use crate::wire::{show, ServerOp, ServerOutputParser};

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
/// How often the fault injector rolls its dice.
const FAULT_TICK: u64 = 50 * MS;
/// Kernel buffering per direction (send plus receive buffer).
const WINDOW: usize = 256 * 1024;
/// Largest single read, like the tokio runner's read chunk.
const READ_MAX: usize = 64 * 1024;
/// Hard stop, whatever the scenario says: a run that never ends is a bug too.
const EVENTS_MAX: u64 = 50_000_000;

/// What one run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub seed: u64,
    /// A planted defect's name (see [`crate::defect_names`]); needs the
    /// `planted-defects` feature.
    pub defect: Option<String>,
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
    pub virtual_time: Instant,
    pub events: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// Connections the server closed, by reason.
    pub closes: BTreeMap<&'static str, u64>,
    pub published: u64,
    pub delivered: u64,
    pub checks: u64,
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    /// The swarm draw, readable.
    pub plan: String,
}

/// The fault rates of one run, drawn from the seed.
#[derive(Debug, Clone)]
struct FaultPlan {
    latency_min: u64,
    latency_max: u64,
    jitter_max: u64,
    /// Chance that a write is cut into segments, or a read cut short.
    split: f64,
    reset_per_s: f64,
    half_open_per_s: f64,
    stall_per_s: f64,
    stall_max: u64,
    refuse: f64,
    wall_jump_per_s: f64,
}

impl FaultPlan {
    fn draw(spec: &FaultSpec, rng: &mut Rng) -> FaultPlan {
        let mut rate = |max: f64| {
            if max <= 0.0 || rng.chance(0.25) {
                0.0
            } else {
                max * rng.unit()
            }
        };
        let reset_per_s = rate(spec.reset_per_s_max);
        let half_open_per_s = rate(spec.half_open_per_s_max);
        let stall_per_s = rate(spec.stall_per_s_max);
        let refuse = rate(spec.refuse_max);
        let wall_jump_per_s = rate(spec.wall_jump_per_s_max);
        let split = if spec.split { rate(1.0) } else { 0.0 };
        let low = (spec.latency_ms[0] * MS as f64) as u64;
        let high = (spec.latency_ms[1] * MS as f64).max(low as f64) as u64;
        let latency_min = rng.range(low, high);
        let latency_max = rng.range(latency_min, high);
        let jitter_max = (spec.jitter_ms_max * MS as f64 * rng.unit()) as u64;
        FaultPlan {
            latency_min,
            latency_max,
            jitter_max,
            split,
            reset_per_s,
            half_open_per_s,
            stall_per_s,
            stall_max: (spec.stall_ms_max * MS as f64) as u64,
            refuse,
            wall_jump_per_s,
        }
    }

    fn healed(&self) -> FaultPlan {
        FaultPlan {
            reset_per_s: 0.0,
            half_open_per_s: 0.0,
            stall_per_s: 0.0,
            refuse: 0.0,
            wall_jump_per_s: 0.0,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    ServerTimer,
    FaultTick,
    Heal,
    Mark,
    End,
    ClientConnect { client: usize },
    ClientTick { client: usize, conn: ConnId },
    Accept { conn: ConnId },
    Arrive { conn: ConnId, dir: Dir },
    ServerRead { conn: ConnId },
    ClientRead { conn: ConnId },
    ServerSeesReset { conn: ConnId },
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::ServerTimer => "server-timer",
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
        }
    }

    fn conn(&self) -> u64 {
        match self {
            Event::ClientTick { conn, .. }
            | Event::Accept { conn }
            | Event::Arrive { conn, .. }
            | Event::ServerRead { conn }
            | Event::ClientRead { conn }
            | Event::ServerSeesReset { conn } => conn.0,
            Event::ClientConnect { client } => *client as u64,
            _ => 0,
        }
    }
}

/// A node: one server machine and its clocks. Clusters will have several.
struct Node {
    server: Server,
    /// Wall clock = monotonic + offset; jumps do not touch monotonic time.
    wall_offset: i64,
}

impl Node {
    fn wall_time(&self, now: Instant) -> WallTime {
        const EPOCH_2025: u64 = 1_735_689_600 * SECOND;
        WallTime((EPOCH_2025 + now.as_nanos()).saturating_add_signed(self.wall_offset))
    }
}

/// A simulated client: its role and what survives its reconnects.
struct SimClient {
    spec: usize,
    role: Role,
    rng: Rng,
    verbose: bool,
    pedantic: bool,
    conn: Option<ConnId>,
    next_sid: u64,
    next_inbox: u64,
    connects: u64,
}

/// One connection: both pipes, the server side's buffers and the client
/// side's protocol state.
struct Conn {
    client: usize,
    rng: Rng,
    up: Pipe,
    down: Pipe,
    accepted: bool,
    server_closed: bool,
    client_gone: bool,
    paused: bool,
    /// A stall touched this connection: a slow-consumer or stale cut is excused.
    stalled: bool,
    server_buf: BytesMut,
    /// Taken from the server, not yet accepted by the pipe (the writer's buffer).
    server_out: BytesMut,
    server_read_pending: bool,
    client_read_pending: bool,
    /// Up-stream bytes handed to `handle_read`.
    handed: u64,
    /// Up-stream bytes the client wrote.
    written: u64,
    written_mark: u64,
    client_out: BytesMut,
    frames: VecDeque<(u64, Frame)>,
    parser: ServerOutputParser,
    client_buf: BytesMut,
    /// Every sid this connection ever used, with its subject.
    sids: BTreeMap<Bytes, Bytes>,
    live_sids: Vec<Bytes>,
    /// End offset of the malformed frame, once sent.
    malformed_end: Option<u64>,
    inbox: Option<Bytes>,
    /// Segments pushed into either pipe whose arrival is not yet scheduled.
    arrivals: Vec<(Instant, Dir)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    at: Instant,
    seq: u64,
    event: Event,
}

/// A whole run.
pub struct Sim {
    scenario: Scenario,
    seed: u64,
    plan: FaultPlan,
    active_plan: FaultPlan,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    node: Node,
    max_pending: usize,
    read_buf_max: usize,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    clients: Vec<SimClient>,
    model: Model,
    trace: Trace,
    fault_rng: Rng,
    wall_rng: Rng,
    faults: BTreeMap<&'static str, u64>,
    closes: BTreeMap<&'static str, u64>,
    events: u64,
    server_timer_at: Option<Instant>,
    healed: bool,
    failure: Option<String>,
}

impl Sim {
    pub fn new(scenario: &Scenario, options: &RunOptions) -> Result<Sim, String> {
        let seed = options.seed;
        let plan = FaultPlan::draw(&scenario.faults, &mut Rng::stream(seed, stream::PLAN));
        let spec = &scenario.server;
        #[allow(unused_mut)]
        let mut config = ServerConfig {
            max_pending: spec.max_pending,
            max_payload: spec.max_payload,
            max_control_line: spec.max_control_line,
            ping_interval: Duration::from_millis(spec.ping_interval_ms),
            ping_max: spec.ping_max,
            ..ServerConfig::default()
        };
        let mut model = Model::default();
        if let Some(security) = &scenario.security {
            let (auth, accounts) = security.server_config();
            config.auth = auth;
            config.accounts = accounts;
            if security.tls_map {
                config.tls = rnats_core::server::TlsPolicy {
                    required: true,
                    verify: true,
                    map: true,
                    allow_non_tls: false,
                };
            }
            model.imports = security.imports();
        }
        if let Some(name) = &options.defect {
            crate::apply_defect(&mut config, name)?;
        }
        let server_seed = Rng::stream(seed, stream::SERVER).next_u64();
        let mut node = Node {
            server: Server::new(config, server_seed),
            wall_offset: 0,
        };
        let wall = node.wall_time(Instant::ZERO);
        node.server.set_wall_clock(Instant::ZERO, wall);
        let mut clients = Vec::new();
        for (spec_index, spec) in scenario.clients.iter().enumerate() {
            for _ in 0..spec.count {
                let index = clients.len();
                let mut rng = Rng::stream(seed, stream::CLIENT_BASE + index as u64);
                let verbose = rng.chance(spec.verbose_ratio);
                let pedantic = rng.chance(spec.pedantic_ratio);
                clients.push(SimClient {
                    spec: spec_index,
                    role: spec.role,
                    rng,
                    verbose,
                    pedantic,
                    conn: None,
                    next_sid: 1,
                    next_inbox: 0,
                    connects: 0,
                });
            }
        }
        let duration = (scenario.duration_s * SECOND as f64) as u64;
        let end = duration + (scenario.heal_s * SECOND as f64) as u64;
        let mut sim = Sim {
            scenario: scenario.clone(),
            seed,
            active_plan: plan.clone(),
            plan,
            now: Instant::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            node,
            max_pending: spec.max_pending,
            read_buf_max: spec.max_payload.max(spec.max_control_line) + 16,
            conns: BTreeMap::new(),
            next_conn: 1,
            clients,
            model,
            trace: Trace::default(),
            fault_rng: Rng::stream(seed, stream::FAULTS),
            wall_rng: Rng::stream(seed, stream::WALL_CLOCK),
            faults: BTreeMap::new(),
            closes: BTreeMap::new(),
            events: 0,
            server_timer_at: None,
            healed: false,
            failure: None,
        };
        for client in 0..sim.clients.len() {
            let start = sim.clients[client].rng.below(200 * MS);
            sim.schedule(Instant(start), Event::ClientConnect { client });
        }
        sim.schedule(Instant(FAULT_TICK), Event::FaultTick);
        sim.schedule(Instant(duration), Event::Heal);
        sim.schedule(
            Instant(end.saturating_sub(2 * SECOND).max(duration)),
            Event::Mark,
        );
        sim.schedule(Instant(end), Event::End);
        Ok(sim)
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
            self.trace
                .record(self.now, next.event.name(), next.event.conn(), next.seq);
            if matches!(next.event, Event::End) {
                self.finish();
                break;
            }
            self.step(next.event);
            if self.failure.is_none() {
                self.check_safety();
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
            virtual_time: self.now,
            events: self.events,
            faults: self.faults.clone(),
            closes: self.closes.clone(),
            published: self.model.stats.published,
            delivered: self.model.stats.delivered,
            checks: self.model.stats.checks,
            trace_hash: self.trace.hash(),
            failure,
            plan: format!("{:?}", self.plan),
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        let at = at.max(self.now);
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.trace.record(self.now, "FAILURE", 0, 0);
            self.failure = Some(message);
        }
    }

    fn count_fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
        self.trace.record(self.now, kind, 0, 0);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::ServerTimer => self.server_timer(),
            Event::FaultTick => self.fault_tick(),
            Event::Heal => self.heal(),
            Event::Mark => {
                for conn in self.conns.values_mut() {
                    conn.written_mark = conn.written;
                }
            }
            Event::End => unreachable!("handled by run"),
            Event::ClientConnect { client } => self.client_connect(client),
            Event::ClientTick { client, conn } => self.client_tick(client, conn),
            Event::Accept { conn } => self.accept(conn),
            Event::Arrive { conn, dir } => self.arrive(conn, dir),
            Event::ServerRead { conn } => self.server_read(conn),
            Event::ClientRead { conn } => self.client_read(conn),
            Event::ServerSeesReset { conn } => self.server_sees_close(conn),
        }
    }

    // ----- the server side -----

    fn server_timer(&mut self) {
        if self.server_timer_at.is_some_and(|at| at <= self.now) {
            self.server_timer_at = None;
        }
        if self
            .node
            .server
            .poll_timeout()
            .is_some_and(|t| t <= self.now)
        {
            self.node.server.handle_timeout(self.now);
            self.drain_actions();
        }
        self.arm_server_timer();
    }

    fn arm_server_timer(&mut self) {
        if let Some(deadline) = self.node.server.poll_timeout() {
            if self.server_timer_at.is_none_or(|at| deadline < at) {
                self.server_timer_at = Some(deadline);
                self.schedule(deadline, Event::ServerTimer);
            }
        }
    }

    fn accept(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
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
        self.node.server.handle_accept(self.now, id, peer);
        if self.scenario.security.as_ref().is_some_and(|s| s.tls_map) {
            // The simulated handshake: the certificate names its user.
            let spec = &self.scenario.clients[self.clients[conn.client].spec];
            if let Some(user) = &spec.user {
                let name = crate::security::certificate_name(user);
                self.node.server.set_peer_certificate_names(id, vec![name]);
            }
        }
        self.drain_actions();
        if unread {
            self.schedule_server_read(id);
        }
        self.pump_client(id);
    }

    /// Carry out every action the server queued.
    fn drain_actions(&mut self) {
        while let Some(action) = self.node.server.poll_action() {
            match action {
                Action::Transmit(id) => {
                    self.trace.record(self.now, "transmit", id.0, 0);
                    if let Some(batch) = self.node.server.take_outbound(id) {
                        if let Some(conn) = self.conns.get_mut(&id) {
                            for slice in batch.slices() {
                                conn.server_out.extend_from_slice(slice);
                            }
                        }
                        self.node.server.recycle_outbound(batch);
                        self.pump_server(id);
                    }
                }
                Action::Close { conn, reason } => {
                    self.trace.record(self.now, "close", conn.0, reason as u64);
                    self.server_close(conn, reason);
                }
            }
        }
        self.arm_server_timer();
    }

    fn server_close(&mut self, id: ConnId, reason: CloseReason) {
        *self.closes.entry(reason.as_str()).or_default() += 1;
        self.check_close_reason(id, reason);
        let flush = if reason.skips_flush() {
            None
        } else {
            self.node.server.take_outbound(id)
        };
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(&id) {
            if let Some(batch) = &flush {
                for slice in batch.slices() {
                    conn.server_out.extend_from_slice(slice);
                }
            }
            if reason.skips_flush() {
                conn.server_out.clear();
            }
            // The kernel takes the last bytes whatever the window; then the FIN.
            let out = conn.server_out.split().freeze();
            if !out.is_empty() && !conn.down.dead {
                self.trace.record_bytes(&out);
                let arrival = now + Duration::from_nanos(latency(&self.active_plan, &mut conn.rng));
                let at = conn.down.push(arrival, Some(out));
                conn.arrivals.push((at, Dir::Down));
            }
            conn.server_closed = true;
            conn.up.kill();
            if !conn.down.dead && !conn.down.fin_sent {
                let arrival = now + Duration::from_nanos(latency(&self.active_plan, &mut conn.rng));
                let at = conn.down.push(arrival, None);
                conn.arrivals.push((at, Dir::Down));
            }
        }
        if let Some(batch) = flush {
            self.node.server.recycle_outbound(batch);
        }
        self.schedule_arrivals(id);
        self.node.server.handle_closed(self.now, id);
        self.model.server_closed(id);
    }

    /// The server learns the peer is gone (EOF after a graceful close, or a reset).
    fn server_sees_close(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.server_closed || !conn.accepted {
            return;
        }
        conn.server_closed = true;
        conn.down.kill();
        self.node.server.handle_closed(self.now, id);
        self.model.server_closed(id);
        self.drain_actions();
    }

    fn server_read(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.server_read_pending = false;
        if conn.server_closed {
            return;
        }
        if conn.up.recv.is_empty() {
            if conn.up.eof {
                self.server_sees_close(id);
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
        conn.server_buf.extend_from_slice(&chunk);
        conn.handed += take as u64;
        let more = !conn.up.recv.is_empty() || conn.up.eof;
        let mut buf = std::mem::take(&mut conn.server_buf);
        self.trace
            .record(self.now, "handle-read", id.0, take as u64);
        self.node.server.handle_read(self.now, id, &mut buf);
        let closing = self.node.server.close_reason(id).is_some();
        let conn = self.conns.get_mut(&id).expect("conn exists");
        conn.server_buf = buf;
        if conn.server_buf.len() > self.read_buf_max {
            let held = conn.server_buf.len();
            self.fail(format!(
                "{id}: the server left {held} bytes unprocessed in its read buffer (more than one partial frame)"
            ));
            return;
        }
        self.apply_processed_frames(id, !closing);
        self.drain_actions();
        if more {
            self.schedule_server_read(id);
        }
        self.pump_client(id);
    }

    fn apply_processed_frames(&mut self, id: ConnId, certain: bool) {
        let conn = self.conns.get_mut(&id).expect("conn exists");
        let handed = conn.handed;
        while conn.frames.front().is_some_and(|(end, _)| *end <= handed) {
            let (_, frame) = conn.frames.pop_front().expect("front exists");
            self.model.apply(id, &frame, certain);
        }
    }

    fn schedule_server_read(&mut self, id: ConnId) {
        let conn = self.conns.get_mut(&id).expect("conn exists");
        if !conn.server_read_pending {
            conn.server_read_pending = true;
            let delay = conn.rng.below(20_000);
            self.schedule(
                self.now + Duration::from_nanos(delay),
                Event::ServerRead { conn: id },
            );
        }
    }

    /// Move the server's pending output into the pipe as far as the window allows.
    fn pump_server(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.server_closed {
            return;
        }
        if conn.down.dead {
            // Reset: the runtime's write fails; the bytes count as written
            // until the server hears of the reset.
            let lost = conn.server_out.len();
            conn.server_out.clear();
            if lost > 0 {
                self.node.server.handle_written(id, lost);
            }
            return;
        }
        let room = conn.down.room().min(conn.server_out.len());
        if room == 0 {
            return;
        }
        let bytes = conn.server_out.split_to(room).freeze();
        self.trace.record_bytes(&bytes);
        send_segments(&self.active_plan, conn, Dir::Down, bytes, self.now);
        self.schedule_arrivals(id);
        self.node.server.handle_written(id, room);
    }

    // ----- the network -----

    /// One arrival event per segment pushed since the last call.
    fn schedule_arrivals(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let arrivals = std::mem::take(&mut conn.arrivals);
        for (at, dir) in arrivals {
            self.schedule(at, Event::Arrive { conn: id, dir });
        }
    }

    fn arrive(&mut self, id: ConnId, dir: Dir) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else {
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
                    self.schedule_server_read(id);
                }
            }
            Dir::Down => {
                if conn.paused && conn.down.eof {
                    // A client that stopped reading still learns of the close
                    // (its next write fails) and comes back.
                    self.client_loses(id);
                } else if !conn.client_gone && !conn.paused {
                    self.schedule_client_read(id);
                }
            }
        }
    }

    // ----- the client side -----

    fn client_connect(&mut self, index: usize) {
        if self.clients[index].conn.is_some() {
            return;
        }
        let client = &mut self.clients[index];
        client.connects += 1;
        if client.rng.chance(self.active_plan.refuse) {
            self.count_fault("connect-refused");
            let retry = self.clients[index].rng.range(50 * MS, 500 * MS);
            self.schedule(
                self.now + Duration::from_nanos(retry),
                Event::ClientConnect { client: index },
            );
            return;
        }
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let client = &mut self.clients[index];
        client.conn = Some(id);
        let mut conn = Conn {
            client: index,
            rng: Rng::stream(self.seed, stream::CONN_BASE + id.0),
            up: Pipe::new(WINDOW),
            down: Pipe::new(WINDOW),
            accepted: false,
            server_closed: false,
            client_gone: false,
            paused: false,
            stalled: false,
            server_buf: BytesMut::new(),
            server_out: BytesMut::new(),
            server_read_pending: false,
            client_read_pending: false,
            handed: 0,
            written: 0,
            written_mark: 0,
            client_out: BytesMut::new(),
            frames: VecDeque::new(),
            parser: ServerOutputParser::default(),
            client_buf: BytesMut::new(),
            sids: BTreeMap::new(),
            live_sids: Vec::new(),
            malformed_end: None,
            inbox: None,
            arrivals: Vec::new(),
        };
        let spec = self.scenario.clients[client.spec].clone();
        let identity = spec.user.as_ref().and_then(|user| {
            self.scenario
                .security
                .as_ref()
                .and_then(|security| security.identity(user))
        });
        self.model
            .open_conn(id, client.verbose, client.role == Role::Responder, identity);
        let tls_map = self
            .scenario
            .security
            .as_ref()
            .is_some_and(|security| security.tls_map);
        let credentials = spec
            .user
            .as_ref()
            .filter(|_| !tls_map)
            .map(|user| {
                format!(
                    "\"user\":\"{user}\",\"pass\":\"{}\",",
                    crate::security::PASSWORD
                )
            })
            .unwrap_or_default();
        let connect = format!(
            "CONNECT {{{credentials}\"verbose\":{},\"pedantic\":{},\"echo\":true,\"headers\":true,\"protocol\":1,\"lang\":\"sim\",\"version\":\"0\",\"name\":\"c{index}\"}}\r\n",
            client.verbose, client.pedantic
        );
        write_frame(&mut conn, connect.as_bytes(), Some(Frame::Connect));
        match spec.role {
            Role::Subscriber | Role::SlowReader => {
                for subject in &spec.subjects {
                    subscribe(client, &mut conn, subject.as_bytes(), None);
                }
            }
            Role::QueueMember | Role::Responder => {
                let group = spec.group.clone();
                for subject in &spec.subjects {
                    subscribe(
                        client,
                        &mut conn,
                        subject.as_bytes(),
                        group.as_deref().map(str::as_bytes),
                    );
                }
            }
            Role::Requester => {
                let inbox = format!("_INBOX.c{index}.{}", client.connects);
                subscribe(client, &mut conn, format!("{inbox}.*").as_bytes(), None);
                conn.inbox = Some(Bytes::from(inbox));
            }
            Role::Malformed => {
                subscribe(client, &mut conn, format!("bad.{index}").as_bytes(), None);
            }
            Role::Publisher => {}
        }
        write_frame(&mut conn, b"PING\r\n", Some(Frame::Ping));
        let handshake = latency(&self.active_plan, &mut conn.rng);
        self.conns.insert(id, conn);
        self.trace.record(self.now, "connect", id.0, index as u64);
        self.schedule(
            self.now + Duration::from_nanos(handshake),
            Event::Accept { conn: id },
        );
        let first_tick = self.clients[index].rng.below(50 * MS);
        self.schedule(
            self.now + Duration::from_nanos(handshake + first_tick),
            Event::ClientTick {
                client: index,
                conn: id,
            },
        );
    }

    fn client_tick(&mut self, index: usize, id: ConnId) {
        if self.clients[index].conn != Some(id) {
            return;
        }
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if !conn.accepted || conn.client_gone {
            return;
        }
        let spec = self.scenario.clients[self.clients[index].spec].clone();
        let interval = match spec.role {
            Role::Publisher | Role::Requester => (SECOND as f64 / spec.rate_hz) as u64,
            _ => 100 * MS,
        };
        let dt = interval as f64 / SECOND as f64;
        if !self.healed {
            if self.clients[index].rng.chance(spec.churn_per_s * dt) {
                self.churn(index, id);
                return;
            }
            self.workload(index, id, &spec, dt);
        }
        let next = self.clients[index]
            .rng
            .range(interval / 2, interval + interval / 2);
        self.schedule(
            self.now + Duration::from_nanos(next.max(1)),
            Event::ClientTick {
                client: index,
                conn: id,
            },
        );
        self.pump_client(id);
    }

    fn workload(&mut self, index: usize, id: ConnId, spec: &ClientSpec, dt: f64) {
        let client = &mut self.clients[index];
        let conn = self.conns.get_mut(&id).expect("conn exists");
        match spec.role {
            Role::Publisher => {
                let subject = Bytes::from(client.rng.pick(&spec.subjects).clone());
                let reply = client.rng.chance(spec.reply_ratio).then(|| {
                    client.next_inbox += 1;
                    Bytes::from(format!("_INBOX.p{index}.{}", client.next_inbox))
                });
                let headers = client.rng.chance(spec.headers_ratio);
                publish(
                    &mut self.model,
                    client,
                    conn,
                    id,
                    subject,
                    reply,
                    headers,
                    spec.payload_max,
                    None,
                );
            }
            Role::Requester => {
                let subject = Bytes::from(client.rng.pick(&spec.subjects).clone());
                client.next_inbox += 1;
                let inbox = conn.inbox.clone().expect("requesters have an inbox");
                let reply = Bytes::from(format!("{}.{}", show(&inbox), client.next_inbox));
                let headers = client.rng.chance(spec.headers_ratio);
                publish(
                    &mut self.model,
                    client,
                    conn,
                    id,
                    subject,
                    Some(reply),
                    headers,
                    spec.payload_max,
                    Some(true),
                );
            }
            Role::Subscriber => {
                if client.rng.chance(spec.resubscribe_per_s * dt) && !conn.live_sids.is_empty() {
                    let which = client.rng.below(conn.live_sids.len() as u64) as usize;
                    let sid = conn.live_sids.swap_remove(which);
                    let mut line = BytesMut::new();
                    protocol::write_unsub(&mut line, &sid, None);
                    write_frame(conn, &line, Some(Frame::Unsub { sid }));
                    let subject = client.rng.pick(&spec.subjects).clone();
                    subscribe(client, conn, subject.as_bytes(), None);
                }
            }
            Role::SlowReader => {
                if !conn.paused && client.rng.chance(dt * 2.0) {
                    conn.paused = true;
                    self.model.set_paused(id);
                    self.trace.record(self.now, "client-stops-reading", id.0, 0);
                }
            }
            Role::Malformed => {
                if conn.malformed_end.is_none() && client.rng.chance(dt * 2.0) {
                    let frame = malformed_frame(&mut client.rng, &self.scenario.server);
                    write_frame(conn, &frame, None);
                    conn.malformed_end = Some(conn.written);
                    self.faults
                        .entry("malformed-frame")
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                }
            }
            Role::QueueMember | Role::Responder => {}
        }
    }

    /// The client vanishes: a graceful close, a reset or a silent half-open.
    fn churn(&mut self, index: usize, id: ConnId) {
        let how = self.clients[index].rng.below(3);
        match how {
            0 => {
                self.count_fault("client-close");
                let now = self.now;
                let plan = self.active_plan.clone();
                let conn = self.conns.get_mut(&id).expect("conn exists");
                // Flush whatever it wrote, then the FIN.
                let rest = conn.client_out.split().freeze();
                if !rest.is_empty() && !conn.up.dead {
                    send_segments(&plan, conn, Dir::Up, rest, now);
                }
                if !conn.up.dead && !conn.up.fin_sent {
                    let at = conn.up.push(
                        now + Duration::from_nanos(latency(&plan, &mut conn.rng)),
                        None,
                    );
                    conn.arrivals.push((at, Dir::Up));
                }
                self.schedule_arrivals(id);
                self.client_loses(id);
            }
            1 => self.reset(id, "client-reset"),
            _ => self.half_open(id, "client-vanish"),
        }
    }

    fn client_read(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.client_read_pending = false;
        if conn.client_gone || conn.paused {
            return;
        }
        if conn.down.recv.is_empty() {
            if conn.down.eof {
                self.trace.record(self.now, "client-sees-eof", id.0, 0);
                self.client_loses(id);
            }
            return;
        }
        let available = conn.down.recv.len();
        let take = if conn.rng.chance(self.active_plan.split) {
            conn.rng.range(1, available as u64) as usize
        } else {
            available.min(READ_MAX)
        };
        let chunk = conn.down.recv.split_to(take);
        conn.client_buf.extend_from_slice(&chunk);
        let more = !conn.down.recv.is_empty() || conn.down.eof;
        loop {
            let conn = self.conns.get_mut(&id).expect("conn exists");
            let op = match conn.parser.next_op(&mut conn.client_buf) {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(error) => {
                    self.fail(format!("{id}: the server sent malformed output: {error}"));
                    return;
                }
            };
            self.client_handles(id, op);
            if self.failure.is_some() {
                return;
            }
        }
        if more {
            self.schedule_client_read(id);
        }
        self.pump_server(id);
        self.pump_client(id);
    }

    fn client_handles(&mut self, id: ConnId, op: ServerOp) {
        let conn = self.conns.get_mut(&id).expect("conn exists");
        let index = conn.client;
        let role = self.clients[index].role;
        match op {
            ServerOp::Info(_) | ServerOp::Pong => {}
            ServerOp::Ping => write_frame(conn, b"PONG\r\n", None),
            ServerOp::Ok => {
                if let Err(error) = self.model.ok_received(id) {
                    self.fail(error);
                }
            }
            ServerOp::Err(text) => {
                let text_str = String::from_utf8_lossy(&text)
                    .trim_matches('\'')
                    .to_string();
                if self.scenario.security.is_some() && text_str.starts_with("Permissions Violation")
                {
                    if let Err(error) = self.model.error_received(id, &text_str) {
                        self.fail(error);
                    }
                } else if role != Role::Malformed {
                    self.fail(format!(
                        "{id}: a well-behaved client got -ERR {}",
                        show(&text)
                    ));
                }
            }
            ServerOp::Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => {
                let pattern = conn.sids.get(&sid).cloned();
                let result = self.model.received(
                    id,
                    &sid,
                    pattern.as_ref(),
                    &subject,
                    reply.as_ref(),
                    headers.as_ref(),
                    &payload,
                );
                let msg = match result {
                    Ok(msg) => msg,
                    Err(error) => {
                        self.fail(error);
                        return;
                    }
                };
                if role == Role::Responder && !self.healed_for_replies() {
                    if let (Some(reply), Some(request)) = (reply, msg) {
                        let client = &mut self.clients[index];
                        let conn = self.conns.get_mut(&id).expect("conn exists");
                        let payload_max = self.scenario.clients[client.spec].payload_max;
                        publish(
                            &mut self.model,
                            client,
                            conn,
                            id,
                            reply,
                            None,
                            false,
                            payload_max,
                            None,
                        );
                        let reply_id = self.model.msgs.len() as u64 - 1;
                        self.model.msgs[reply_id as usize].in_reply_to = Some(request);
                    }
                }
            }
        }
    }

    /// Responders answer until the end: requests sent before the heal still get replies.
    fn healed_for_replies(&self) -> bool {
        false
    }

    fn schedule_client_read(&mut self, id: ConnId) {
        let conn = self.conns.get_mut(&id).expect("conn exists");
        if !conn.client_read_pending {
            conn.client_read_pending = true;
            let delay = conn.rng.below(50_000);
            self.schedule(
                self.now + Duration::from_nanos(delay),
                Event::ClientRead { conn: id },
            );
        }
    }

    /// Move the client's written bytes into the pipe as far as the window allows.
    fn pump_client(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.accepted || conn.client_gone || conn.up.dead {
            return;
        }
        let room = conn.up.room().min(conn.client_out.len());
        if room == 0 {
            return;
        }
        let bytes = conn.client_out.split_to(room).freeze();
        self.trace.record_bytes(&bytes);
        send_segments(&self.active_plan, conn, Dir::Up, bytes, self.now);
        self.schedule_arrivals(id);
    }

    /// The client side of `id` is finished; it reconnects after a pause.
    fn client_loses(&mut self, id: ConnId) {
        let conn = self.conns.get_mut(&id).expect("conn exists");
        if conn.client_gone {
            return;
        }
        conn.client_gone = true;
        conn.client_out.clear();
        let index = conn.client;
        self.model.client_gone(id);
        let client = &mut self.clients[index];
        if client.conn == Some(id) {
            client.conn = None;
            let pause = client.rng.range(50 * MS, 800 * MS);
            self.schedule(
                self.now + Duration::from_nanos(pause),
                Event::ClientConnect { client: index },
            );
        }
    }

    // ----- faults -----

    fn fault_tick(&mut self) {
        let dt = FAULT_TICK as f64 / SECOND as f64;
        let plan = self.active_plan.clone();
        if self.fault_rng.chance(plan.reset_per_s * dt) {
            if let Some(id) = self.pick_live_conn() {
                self.reset(id, "reset");
            }
        }
        if self.fault_rng.chance(plan.half_open_per_s * dt) {
            if let Some(id) = self.pick_live_conn() {
                self.half_open(id, "half-open");
            }
        }
        if self.fault_rng.chance(plan.stall_per_s * dt) {
            if let Some(id) = self.pick_live_conn() {
                let until =
                    self.now + Duration::from_nanos(self.fault_rng.range(1, plan.stall_max.max(1)));
                let down = self.fault_rng.chance(0.5);
                let conn = self.conns.get_mut(&id).expect("conn exists");
                conn.stalled = true;
                let pipe = if down { &mut conn.down } else { &mut conn.up };
                pipe.stalled_until = pipe.stalled_until.max(until);
                self.count_fault(if down { "stall-down" } else { "stall-up" });
            }
        }
        if self.fault_rng.chance(plan.wall_jump_per_s * dt) {
            let jump = self.wall_rng.range(0, 20 * SECOND) as i64 - 10 * SECOND as i64;
            self.node.wall_offset += jump;
            let wall = self.node.wall_time(self.now);
            self.node.server.set_wall_clock(self.now, wall);
            self.count_fault("wall-clock-jump");
            self.trace
                .record(self.now, "wall-time", 0, wall.as_unix_nanos());
        }
        if !self.healed {
            self.schedule(
                self.now + Duration::from_nanos(FAULT_TICK),
                Event::FaultTick,
            );
        }
    }

    fn pick_live_conn(&mut self) -> Option<ConnId> {
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.accepted && !c.server_closed && !c.client_gone)
            .map(|(id, _)| *id)
            .collect();
        (!live.is_empty()).then(|| *self.fault_rng.pick(&live))
    }

    fn reset(&mut self, id: ConnId, kind: &'static str) {
        self.count_fault(kind);
        let conn = self.conns.get_mut(&id).expect("conn exists");
        conn.up.kill();
        conn.down.kill();
        let delay = latency(&self.active_plan, &mut conn.rng);
        self.client_loses(id);
        self.schedule(
            self.now + Duration::from_nanos(delay),
            Event::ServerSeesReset { conn: id },
        );
    }

    fn half_open(&mut self, id: ConnId, kind: &'static str) {
        self.count_fault(kind);
        // The client host is gone without a word: nothing more is sent or read.
        self.client_loses(id);
    }

    fn heal(&mut self) {
        self.healed = true;
        self.active_plan = self.plan.healed();
        let now = self.now;
        for conn in self.conns.values_mut() {
            conn.up.stalled_until = conn.up.stalled_until.min(now);
            conn.down.stalled_until = conn.down.stalled_until.min(now);
        }
        self.trace.record(self.now, "healed", 0, 0);
    }

    // ----- invariants -----

    fn check_close_reason(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let role = self.clients[conn.client].role;
        let excused = conn.client_gone || conn.paused || conn.stalled;
        let allowed = match reason {
            CloseReason::SlowConsumerPendingBytes
            | CloseReason::SlowConsumerWriteDeadline
            | CloseReason::StaleConnection => excused,
            CloseReason::ClientClosed => true,
            _ => role == Role::Malformed,
        };
        self.model.stats.checks += 1;
        if !allowed {
            self.fail(format!(
                "{id} ({role:?}, healthy) was closed by the server: {}",
                reason.as_str()
            ));
        }
    }

    /// After every step: the server stays inside its memory bounds.
    fn check_safety(&mut self) {
        let slack =
            self.scenario.server.max_payload + self.scenario.server.max_control_line + 64 * 1024;
        let bound = self.max_pending + slack;
        let mut total = 0usize;
        let mut open = 0usize;
        for id in self.conns.keys() {
            let Some(client) = self.node.server.client(*id) else {
                continue;
            };
            if client.is_closing() {
                continue;
            }
            open += 1;
            let pending = client.pending_bytes();
            total += pending;
            if pending > bound {
                let message = format!(
                    "{id}: {pending} bytes pending at the server, over max_pending {} (+{slack} slack) and not cut off",
                    self.max_pending
                );
                self.fail(message);
                return;
            }
        }
        self.model.stats.checks += 1 + open as u64;
        if total > open * bound {
            self.fail(format!(
                "the server holds {total} bytes for {open} connections"
            ));
        }
    }

    /// The end: liveness after the heal.
    fn finish(&mut self) {
        for (id, conn) in &self.conns {
            if conn.client_gone || conn.server_closed || !conn.accepted {
                if let (Some(end), false) = (conn.malformed_end, conn.server_closed) {
                    if conn.handed >= end && !conn.client_gone {
                        self.failure = Some(format!(
                            "{id}: the server never closed a client that sent a malformed frame"
                        ));
                        return;
                    }
                }
                continue;
            }
            if let Some(end) = conn.malformed_end {
                if conn.handed >= end {
                    self.failure = Some(format!(
                        "{id}: the server never closed a client that sent a malformed frame"
                    ));
                    return;
                }
            }
            if !conn.paused && conn.handed < conn.written_mark {
                self.failure = Some(format!(
                    "{id}: the server processed {} of the {} bytes its client wrote before the end (stuck)",
                    conn.handed, conn.written_mark
                ));
                return;
            }
        }
        if let Err(error) = self.model.check_converged() {
            self.fail(error);
        }
    }
}

/// Append a frame to the client's output, remembering where it ends.
fn write_frame(conn: &mut Conn, bytes: &[u8], frame: Option<Frame>) {
    conn.client_out.extend_from_slice(bytes);
    conn.written += bytes.len() as u64;
    if let Some(frame) = frame {
        conn.frames.push_back((conn.written, frame));
    }
}

fn subscribe(client: &mut SimClient, conn: &mut Conn, subject: &[u8], queue: Option<&[u8]>) {
    let sid = Bytes::from(client.next_sid.to_string());
    client.next_sid += 1;
    let mut line = BytesMut::new();
    protocol::write_sub(&mut line, subject, queue, &sid);
    let subject = Bytes::copy_from_slice(subject);
    conn.sids.insert(sid.clone(), subject.clone());
    conn.live_sids.push(sid.clone());
    let frame = Frame::Sub {
        sid,
        subject,
        queue: queue.map(Bytes::copy_from_slice),
    };
    write_frame(conn, &line, Some(frame));
}

#[allow(clippy::too_many_arguments)]
fn publish(
    model: &mut Model,
    client: &mut SimClient,
    conn: &mut Conn,
    id: ConnId,
    subject: Bytes,
    reply: Option<Bytes>,
    with_headers: bool,
    payload_max: usize,
    request: Option<bool>,
) {
    let next = model.msgs.len();
    let mut payload = format!("m{next};").into_bytes();
    let filler = client.rng.below(payload_max as u64 + 1) as usize;
    payload.extend((0..filler).map(|i| b'a' + ((i as u64 + next as u64) % 26) as u8));
    let headers = with_headers.then(|| Bytes::from(format!("NATS/1.0\r\nX-Sim: {next}\r\n\r\n")));
    let record = MsgRecord {
        subject: subject.clone(),
        reply: reply.clone(),
        headers: headers.clone(),
        payload_hash: Fnv64::of(&payload),
        publisher: id,
        request: request.unwrap_or(false),
        in_reply_to: None,
        replied: false,
        processed: None,
        responders: Vec::new(),
    };
    let msg = model.register(record);
    debug_assert_eq!(msg as usize, next);
    let mut frame = BytesMut::new();
    match &headers {
        Some(headers) => {
            protocol::write_hpub(&mut frame, &subject, reply.as_deref(), headers, &payload)
        }
        None => protocol::write_pub(&mut frame, &subject, reply.as_deref(), &payload),
    }
    write_frame(conn, &frame, Some(Frame::Pub { msg }));
}

fn malformed_frame(rng: &mut Rng, server: &crate::scenario::ServerSpec) -> Vec<u8> {
    match rng.below(8) {
        0 => b"FOO bar\r\n".to_vec(),
        1 => b"PUB bad.x notanumber\r\n".to_vec(),
        2 => b"PUB bad.x 3\r\nabcdef\r\n".to_vec(),
        3 => format!("PUB bad.x {}\r\n", server.max_payload + 1).into_bytes(),
        4 => {
            let mut line = b"SUB ".to_vec();
            line.extend(std::iter::repeat_n(b'x', server.max_control_line + 10));
            line.extend_from_slice(b" 1\r\n");
            line
        }
        5 => b"HPUB bad.x 10 5\r\nhello\r\n".to_vec(),
        6 => b"CONNECT {bad json\r\n".to_vec(),
        _ => b"\x00\x01garbage\r\n".to_vec(),
    }
}

/// One-way latency for one segment.
fn latency(plan: &FaultPlan, rng: &mut Rng) -> u64 {
    rng.range(plan.latency_min, plan.latency_max) + rng.below(plan.jitter_max + 1)
}

/// Write `bytes` into one pipe of `conn`, cut at random boundaries.
fn send_segments(plan: &FaultPlan, conn: &mut Conn, dir: Dir, mut bytes: Bytes, now: Instant) {
    while !bytes.is_empty() {
        let cut = if bytes.len() > 1 && conn.rng.chance(plan.split) {
            conn.rng.range(1, bytes.len() as u64 - 1) as usize
        } else {
            bytes.len()
        };
        let segment = bytes.split_to(cut);
        let arrival = now + Duration::from_nanos(latency(plan, &mut conn.rng));
        let pipe = match dir {
            Dir::Up => &mut conn.up,
            Dir::Down => &mut conn.down,
        };
        let at = pipe.push(arrival, Some(segment));
        conn.arrivals.push((at, dir));
    }
}
