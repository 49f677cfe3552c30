//! A RAFT world: core's `raft::Node` machines under network, crash and power
//! faults, with a replicated key-value store on top and its checkers.
//!
//! A scenario with a `raft` section runs here instead of the server world.
//! Every node is a `Node<SharedDisk<SimDisk>>` over its own simulated disk;
//! every message is encoded with nats-server's NRG layout and decoded at the
//! receiver. Syncs a node asks for complete one drawn latency later (the
//! sync itself runs on the disk then). Clients propose key-value operations
//! (write, read, compare-and-set) through whichever node they believe leads;
//! an operation is acknowledged when the node that accepted it applies it.
//! With `snapshot_every`, each node snapshots its store every so many
//! entries and compacts its log; with `snapshot_damage_per_s_max`, snapshot
//! files of a minority are damaged at rest (a bit flipped, cut short) and the
//! node killed: every restored snapshot must equal the store every node had
//! at its index. With `spares` and `membership_per_s_max`, the leader is asked now and
//! then to add a non-member or remove a voter (itself included), sometimes
//! twice at once, during every other fault; removed nodes are re-added later.
//!
//! Checked online, after every step: at most one leader per term (election
//! safety); no two nodes apply different entries at one index (state
//! machine safety); each acknowledged result equals what the log order
//! gives, and an operation invoked after another was acknowledged sits later
//! in the log (linearizability, the log being the witness order). Every
//! second: log matching between every pair of live nodes. At the end, after
//! the heal: every acknowledged operation is in every node's applied
//! sequence of every final voter (no acknowledged write lost) and an operation invoked after the
//! heal was acknowledged (liveness).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rnats_core::raft::log::LogEntry;
use rnats_core::raft::node::{Action, Config, Message, Node, ProposeError, SnapshotError};
use rnats_core::raft::wire::{
    AppendEntry, AppendEntryResponse, EntryType, PeerId, VoteRequest, VoteResponse,
};
use rnats_core::raft::Snapshot;
use rnats_core::store::disk::{Disk, SharedDisk};
use rnats_core::time::Instant;
use serde::Deserialize;

use crate::disk::{SimDisk, SimDiskFaults};
use crate::rng::Rng;
use crate::trace::Fnv64;
use crate::world::{Failure, Outcome, RunOptions};
use crate::Scenario;

/// The `raft` section of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSpec {
    /// Voters in the group (3 or 5 in the checked-in scenarios).
    pub nodes: u32,
    pub election_ms: [u64; 2],
    pub heartbeat_ms: u64,
    pub fsync_ms: [f64; 2],
    pub latency_ms: [f64; 2],
    pub clients: u32,
    pub ops_per_s: f64,
    pub keys: u32,
    /// Ceilings of the swarm draw: each fault is off in about one run in
    /// four, else its rate is drawn below the ceiling.
    pub partition_per_s_max: f64,
    pub loss_max: f64,
    pub duplicate_max: f64,
    pub jitter_ms_max: f64,
    pub kill_per_s_max: f64,
    pub power_loss_per_s_max: f64,
    /// A crashed node is down this long (drawn).
    pub restart_ms: [u64; 2],
    /// Nodes outside the founding group, waiting to be added.
    pub spares: u32,
    /// Ceiling of membership changes (add or remove one voter) per second.
    pub membership_per_s_max: f64,
    /// Each node snapshots its key-value store every this many applied
    /// entries (0: never).
    pub snapshot_every: u64,
    /// Ceiling of snapshot files damaged at rest per second (a bit flipped
    /// or the file cut short), on a minority of the founding nodes, each
    /// followed by a kill so the restart reads it.
    pub snapshot_damage_per_s_max: f64,
}

impl Default for RaftSpec {
    fn default() -> Self {
        RaftSpec {
            nodes: 3,
            election_ms: [150, 300],
            heartbeat_ms: 50,
            fsync_ms: [0.05, 4.0],
            latency_ms: [0.1, 2.0],
            clients: 3,
            ops_per_s: 40.0,
            keys: 4,
            partition_per_s_max: 1.0,
            loss_max: 0.2,
            duplicate_max: 0.1,
            jitter_ms_max: 20.0,
            kill_per_s_max: 0.5,
            power_loss_per_s_max: 0.5,
            restart_ms: [20, 1500],
            spares: 0,
            membership_per_s_max: 0.0,
            snapshot_every: 0,
            snapshot_damage_per_s_max: 0.0,
        }
    }
}

/// Seed streams of a RAFT world (it has no server world's streams).
const STREAM_PLAN: u64 = 1 << 30;
const STREAM_NET: u64 = STREAM_PLAN + 1;
const STREAM_FAULTS: u64 = STREAM_PLAN + 2;
const STREAM_CLIENTS: u64 = STREAM_PLAN + 3;
const STREAM_NODE: u64 = STREAM_PLAN + 16;
const STREAM_DISK: u64 = STREAM_PLAN + 1024;
const EVENTS_MAX: u64 = 20_000_000;

/// The fault rates this seed drew.
#[derive(Debug, Clone, Copy)]
struct Plan {
    partition_per_s: f64,
    loss: f64,
    duplicate: f64,
    jitter_ms: f64,
    kill_per_s: f64,
    power_loss_per_s: f64,
    membership_per_s: f64,
    snapshot_damage_per_s: f64,
}

impl Plan {
    fn draw(rng: &mut Rng, spec: &RaftSpec) -> Plan {
        let mut rate = |max: f64| {
            if rng.below(4) == 0 {
                0.0
            } else {
                rng.unit() * max
            }
        };
        Plan {
            partition_per_s: rate(spec.partition_per_s_max),
            loss: rate(spec.loss_max),
            duplicate: rate(spec.duplicate_max),
            jitter_ms: rate(spec.jitter_ms_max),
            kill_per_s: rate(spec.kill_per_s_max),
            power_loss_per_s: rate(spec.power_loss_per_s_max),
            membership_per_s: rate(spec.membership_per_s_max),
            snapshot_damage_per_s: rate(spec.snapshot_damage_per_s_max),
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        incarnation: u64,
        kind: u8,
        bytes: Bytes,
    },
    SyncDone {
        node: usize,
        incarnation: u64,
        tag: u64,
        path: String,
    },
    Restart {
        node: usize,
    },
    HealLink {
        from: usize,
        to: usize,
    },
    CutLink {
        from: usize,
        to: usize,
    },
    ClientTick {
        client: usize,
    },
    FaultTick,
    Heal,
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write { key: u32, value: u64 },
    Read { key: u32 },
    Cas { key: u32, expect: u64, value: u64 },
}

/// An operation a client is waiting on.
#[derive(Debug, Clone)]
struct Outstanding {
    id: u64,
    node: usize,
    incarnation: u64,
    index: u64,
    invoked: Instant,
    /// Highest log index of an operation acknowledged before this one was invoked.
    floor: u64,
}

#[derive(Debug, Default)]
struct Client {
    leader_guess: Option<usize>,
    outstanding: Option<Outstanding>,
}

struct SimNode {
    disk: SharedDisk<SimDisk>,
    node: Option<Node<SharedDisk<SimDisk>>>,
    incarnation: u64,
    kv: BTreeMap<u32, u64>,
    /// (index, op id or 0) of every entry this incarnation applied, in
    /// order (a restored snapshot: its index, 0).
    applied: Vec<(u64, u64)>,
    /// The index of the snapshot this incarnation restored (0: none).
    restored_at: u64,
}

/// An entry as the checkers compare it: term, type, data.
type Applied = (u64, EntryType, Bytes);

/// The world.
pub struct RaftWorld {
    name: String,
    spec: RaftSpec,
    plan: Plan,
    seed: u64,
    #[allow(dead_code)]
    defect: Option<String>,
    ids: Vec<PeerId>,
    nodes: Vec<SimNode>,
    queue: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    now: Instant,
    net: Rng,
    faults_rng: Rng,
    client_rng: Rng,
    clients: Vec<Client>,
    /// blocked[from][to]: messages from `from` to `to` are dropped.
    blocked: Vec<Vec<bool>>,
    healed: bool,
    heal_at: Instant,
    /// Clients invoke nothing after this (one second before the end), so
    /// the end checks a quiet group.
    quiet_at: Instant,
    trace: Fnv64,
    recent: VecDeque<String>,
    events: u64,
    checks: u64,
    counts: BTreeMap<&'static str, u64>,
    fault_counts: BTreeMap<&'static str, u64>,
    /// term -> the node that led it.
    leaders: BTreeMap<u64, usize>,
    /// index -> the entry applied there (by anyone).
    committed: BTreeMap<u64, Applied>,
    /// The model: the key-value state after applying `committed` in order
    /// through `model_index`, and each operation's result by index.
    model: BTreeMap<u32, u64>,
    model_index: u64,
    results: BTreeMap<u64, (u64, String)>,
    /// op id -> index, for every acknowledged operation.
    acked: BTreeMap<u64, u64>,
    acked_index_max: u64,
    acked_after_heal: u64,
    /// index -> the key-value store there, as the first snapshot of it had it.
    snapshots: BTreeMap<u64, Bytes>,
    next_op: u64,
    failure: Option<Failure>,
}

fn peer_id(n: usize) -> PeerId {
    let mut id = *b"RNSIM000";
    id[5] = b'0' + (n / 100) as u8;
    id[6] = b'0' + (n / 10 % 10) as u8;
    id[7] = b'0' + (n % 10) as u8;
    PeerId(id)
}

fn ms(value: f64) -> Duration {
    Duration::from_nanos((value * 1e6) as u64)
}

impl RaftWorld {
    pub fn new(
        scenario: &Scenario,
        spec: &RaftSpec,
        options: &RunOptions,
    ) -> Result<RaftWorld, String> {
        if !(1..=9).contains(&spec.nodes) {
            return Err(format!("raft.nodes must be 1 to 9, not {}", spec.nodes));
        }
        if spec.spares > 4 {
            return Err(format!("raft.spares must be 0 to 4, not {}", spec.spares));
        }
        if !scenario.clients.is_empty()
            || scenario.jetstream.is_some()
            || scenario.security.is_some()
        {
            return Err("a raft scenario has no server clients, jetstream or security".into());
        }
        #[cfg(not(feature = "planted-defects"))]
        if let Some(defect) = &options.defect {
            return Err(format!(
                "defect {defect:?} needs the planted-defects feature"
            ));
        }
        #[cfg(feature = "planted-defects")]
        if let Some(defect) = &options.defect {
            planted(defect)?;
        }
        let seed = options.seed;
        let plan = Plan::draw(&mut Rng::stream(seed, STREAM_PLAN), spec);
        let n = (spec.nodes + spec.spares) as usize;
        let mut world = RaftWorld {
            name: scenario.name.clone(),
            spec: spec.clone(),
            plan,
            seed,
            defect: options.defect.clone(),
            ids: (0..n).map(peer_id).collect(),
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            now: Instant::ZERO,
            net: Rng::stream(seed, STREAM_NET),
            faults_rng: Rng::stream(seed, STREAM_FAULTS),
            client_rng: Rng::stream(seed, STREAM_CLIENTS),
            clients: (0..spec.clients).map(|_| Client::default()).collect(),
            blocked: vec![vec![false; n]; n],
            healed: false,
            heal_at: Instant::ZERO + Duration::from_secs_f64(scenario.duration_s),
            quiet_at: Instant::ZERO
                + Duration::from_secs_f64(scenario.duration_s + scenario.heal_s - 1.0),
            trace: Fnv64::default(),
            recent: VecDeque::new(),
            events: 0,
            checks: 0,
            counts: BTreeMap::new(),
            fault_counts: BTreeMap::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            model: BTreeMap::new(),
            model_index: 0,
            results: BTreeMap::new(),
            acked: BTreeMap::new(),
            acked_index_max: 0,
            acked_after_heal: 0,
            snapshots: BTreeMap::new(),
            next_op: 1,
            failure: None,
        };
        for i in 0..n {
            let disk = SimDisk::new(
                Rng::stream(seed, STREAM_DISK + i as u64),
                SimDiskFaults::default(),
            );
            world.nodes.push(SimNode {
                disk: SharedDisk::new(disk),
                node: None,
                incarnation: 0,
                kv: BTreeMap::new(),
                applied: Vec::new(),
                restored_at: 0,
            });
            world.start_node(i);
        }
        for client in 0..world.clients.len() {
            let first = world.client_interval();
            world.schedule(world.now + first, Event::ClientTick { client });
        }
        world.schedule(Instant::ZERO + Duration::from_millis(100), Event::FaultTick);
        world.schedule(world.heal_at, Event::Heal);
        let end = world.heal_at + Duration::from_secs_f64(scenario.heal_s);
        world.schedule(end, Event::End);
        Ok(world)
    }

    fn config(&self, i: usize) -> Config {
        let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation);
        Config {
            id: self.ids[i],
            // Spares list the founding group without themselves: they
            // wait to be added.
            peers: self.ids[..self.spec.nodes as usize].to_vec(),
            election_timeout_min: Duration::from_millis(self.spec.election_ms[0]),
            election_timeout_max: Duration::from_millis(self.spec.election_ms[1]),
            heartbeat_interval: Duration::from_millis(self.spec.heartbeat_ms),
            max_entries_per_append: 64,
            seed: Rng::stream(self.seed, STREAM_NODE + (i as u64) * 4096 + incarnation).next_u64(),
            #[cfg(feature = "planted-defects")]
            planted_defect: self
                .defect
                .as_deref()
                .map(|d| planted(d).expect("checked at start")),
        }
    }

    fn start_node(&mut self, i: usize) {
        let config = self.config(i);
        let disk = self.nodes[i].disk.clone();
        match Node::open(config, disk, "raft", self.now) {
            Ok(node) => self.nodes[i].node = Some(node),
            Err(error) => self.fail(format!("node {i} cannot recover: {error}")),
        }
        self.nodes[i].kv.clear();
        self.nodes[i].applied.clear();
        self.nodes[i].restored_at = 0;
        self.note(Some(i), "start".to_string());
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn client_interval(&mut self) -> Duration {
        let mean = 1.0 / self.spec.ops_per_s.max(0.01);
        Duration::from_secs_f64(mean * (0.5 + self.client_rng.unit()))
    }

    fn note(&mut self, node: Option<usize>, text: String) {
        self.trace.write_u64(self.now.as_nanos());
        self.trace.write_u64(node.map_or(u64::MAX, |n| n as u64));
        self.trace.write(text.as_bytes());
        if self.recent.len() == 64 {
            self.recent.pop_front();
        }
        let who = node.map_or("--".to_string(), |n| format!("n{n}"));
        self.recent.push_back(format!(
            "{:>12.6}s {who} {text}",
            self.now.as_nanos() as f64 / 1e9
        ));
    }

    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.note(None, format!("FAIL {message}"));
            self.failure = Some(Failure {
                message,
                at: self.now,
                recent: self.recent.iter().cloned().collect(),
            });
        }
    }

    /// Run to the end (or the first failure).
    pub fn run(mut self) -> Outcome {
        while self.failure.is_none() {
            let next_event = self.queue.keys().next().map(|k| k.0);
            let next_timer = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].node.as_ref().map(|n| (n.poll_timeout(), i)))
                .min();
            match (next_event, next_timer) {
                (_, Some((at, i))) if next_event.is_none_or(|e| at <= e) => {
                    self.now = self.now.max(at);
                    self.note(Some(i), "timer".into());
                    let now = self.now;
                    self.with_node(i, |node| node.handle_timeout(now));
                }
                (Some(_), _) => {
                    let ((at, _), event) = self.queue.pop_first().expect("non-empty");
                    assert!(at >= self.now, "the virtual clock never goes back");
                    self.now = at;
                    if matches!(event, Event::End) {
                        self.finish();
                        break;
                    }
                    self.step(event);
                }
                (None, _) => break,
            }
            self.events += 1;
            if self.events > EVENTS_MAX {
                self.fail(format!("more than {EVENTS_MAX} events"));
            }
        }
        self.outcome()
    }

    fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Node<SharedDisk<SimDisk>>)) {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        f(node);
        self.drain(i);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver {
                to,
                from,
                incarnation,
                kind,
                bytes,
            } => {
                if self.nodes[to].incarnation != incarnation || self.nodes[to].node.is_none() {
                    return;
                }
                let message = match decode(kind, &bytes) {
                    Ok(message) => message,
                    Err(error) => {
                        return self.fail(format!("n{from} sent an undecodable message: {error}"))
                    }
                };
                self.note(
                    Some(to),
                    format!("recv from n{from} {}", describe(&message)),
                );
                let (now, from_id) = (self.now, self.ids[from]);
                self.with_node(to, |node| node.handle_message(now, from_id, message));
            }
            Event::SyncDone {
                node,
                incarnation,
                tag,
                path,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let result = self.nodes[node].disk.with(|d| d.sync(&path));
                self.note(Some(node), format!("sync {tag} done"));
                let now = self.now;
                self.with_node(node, |n| n.handle_sync_done(now, tag, result));
            }
            Event::Restart { node } => {
                self.start_node(node);
                self.drain(node);
            }
            Event::HealLink { from, to } => self.blocked[from][to] = false,
            Event::CutLink { from, to } => {
                if !self.healed {
                    self.blocked[from][to] = true;
                }
            }
            Event::ClientTick { client } => self.client_tick(client),
            Event::FaultTick => self.fault_tick(),
            Event::Heal => self.heal(),
            Event::End => unreachable!("handled by run"),
        }
    }

    /// Carry out node `i`'s actions.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(action) = self.nodes[i].node.as_mut().and_then(|n| n.poll_action()) else {
                break;
            };
            match action {
                Action::Send { to, message } => self.send(i, to, message),
                Action::Sync { tag, path } => {
                    let [low, high] = self.spec.fsync_ms;
                    let delay = ms(low + self.net.unit() * (high - low));
                    let incarnation = self.nodes[i].incarnation;
                    self.schedule(
                        self.now + delay,
                        Event::SyncDone {
                            node: i,
                            incarnation,
                            tag,
                            path,
                        },
                    );
                }
                Action::Apply(entry) => {
                    let index = entry.index;
                    self.apply(i, entry);
                    let every = self.spec.snapshot_every;
                    if every > 0 && index % every == 0 {
                        self.take_snapshot(i);
                    }
                }
                Action::Restore(snapshot) => self.restore(i, snapshot),
                // Only a store that snapshots at all answers (scenarios
                // without snapshots keep their logs whole).
                Action::SnapshotWanted if self.spec.snapshot_every > 0 => self.take_snapshot(i),
                Action::SnapshotWanted => {}
                Action::LeaderChanged { term, leader } => {
                    self.note(Some(i), format!("leader term {term} {leader:?}"));
                    if leader == Some(self.ids[i]) {
                        *self.counts.entry("elections").or_default() += 1;
                        self.checks += 1;
                        if let Some(&other) = self.leaders.get(&term) {
                            if other != i {
                                return self.fail(format!(
                                    "election safety: n{other} and n{i} both led term {term}"
                                ));
                            }
                        }
                        self.leaders.insert(term, i);
                    }
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: PeerId, message: Message) {
        let Some(to) = self.ids.iter().position(|id| *id == to) else {
            return self.fail(format!("n{from} sent to unknown peer {to}"));
        };
        let (kind, bytes) = encode(&message);
        self.trace.write(&bytes);
        if !self.healed && (self.blocked[from][to] || self.net.chance(self.plan.loss)) {
            *self.fault_counts.entry("dropped").or_default() += 1;
            return;
        }
        let copies = if !self.healed && self.net.chance(self.plan.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let [low, high] = self.spec.latency_ms;
            let jitter = if self.healed {
                0.0
            } else {
                self.net.unit() * self.plan.jitter_ms
            };
            let delay = ms(low + self.net.unit() * (high - low) + jitter);
            let incarnation = self.nodes[to].incarnation;
            self.schedule(
                self.now + delay,
                Event::Deliver {
                    to,
                    from,
                    incarnation,
                    kind,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    /// Node `i` snapshots its store at what it applied last.
    fn take_snapshot(&mut self, i: usize) {
        let Some(&(index, _)) = self.nodes[i].applied.last() else {
            return;
        };
        let data = encode_kv(&self.nodes[i].kv);
        self.checks += 1;
        match self.snapshots.get(&index) {
            Some(first) if *first != data => {
                return self.fail(format!(
                    "state machine safety: n{i}'s store at {index} differs from another node's"
                ))
            }
            Some(_) => {}
            None => {
                self.snapshots.insert(index, data.clone());
            }
        }
        let now = self.now;
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        match node.snapshot(now, index, data) {
            Ok(()) => {
                *self.counts.entry("snapshots").or_default() += 1;
                self.note(Some(i), format!("snapshot at {index}"));
            }
            Err(SnapshotError::Stale { .. }) | Err(SnapshotError::Poisoned) => {}
            Err(error) => self.fail(format!("n{i} refused its snapshot at {index}: {error}")),
        }
    }

    /// Node `i` replaces its store with `snapshot`: it must be the store
    /// every node had at that index.
    fn restore(&mut self, i: usize, snapshot: Snapshot) {
        self.checks += 1;
        let index = snapshot.index;
        if self.snapshots.get(&index) != Some(&snapshot.data) {
            return self.fail(format!(
                "n{i} restored a snapshot at {index} that no node's store had there"
            ));
        }
        let Some(kv) = decode_kv(&snapshot.data) else {
            return self.fail(format!("n{i} restored an unreadable snapshot at {index}"));
        };
        *self.counts.entry("restores").or_default() += 1;
        self.note(Some(i), format!("restore snapshot at {index}"));
        let node = &mut self.nodes[i];
        node.kv = kv;
        node.applied.clear();
        node.applied.push((index, 0));
        node.restored_at = index;
    }

    fn apply(&mut self, i: usize, entry: LogEntry) {
        self.checks += 1;
        let index = entry.index;
        if let Some(applied_before) = self.nodes[i].applied.last() {
            if applied_before.0 + 1 != index {
                return self.fail(format!("n{i} applied {index} after {}", applied_before.0));
            }
        }
        match self.committed.get(&index) {
            Some((term, kind, data)) => {
                if (*term, *kind, data) != (entry.term, entry.kind, &entry.data) {
                    return self.fail(format!(
                        "state machine safety: n{i} applied term {} at index {index}, another node term {term}",
                        entry.term
                    ));
                }
            }
            None => {
                self.committed
                    .insert(index, (entry.term, entry.kind, entry.data.clone()));
                self.advance_model();
            }
        }
        let parsed = (entry.kind == EntryType::Normal)
            .then(|| parse_op(&entry.data))
            .flatten();
        let (op_id, result) = match &parsed {
            Some((id, op)) => (*id, run_op(&mut self.nodes[i].kv, op)),
            None => (0, String::new()),
        };
        self.nodes[i].applied.push((index, op_id));
        if op_id == 0 {
            return;
        }
        // Acknowledge the client waiting on it at this node.
        let incarnation = self.nodes[i].incarnation;
        for c in 0..self.clients.len() {
            let Some(out) = self.clients[c].outstanding.clone() else {
                continue;
            };
            if out.id != op_id || out.node != i || out.incarnation != incarnation {
                continue;
            }
            self.clients[c].outstanding = None;
            self.acknowledge(out, index, result.clone());
        }
    }

    fn acknowledge(&mut self, out: Outstanding, index: u64, result: String) {
        self.checks += 1;
        if index != out.index {
            return self.fail(format!(
                "op {} proposed at {} applied at {index}",
                out.id, out.index
            ));
        }
        if index <= out.floor {
            return self.fail(format!(
                "linearizability: op {} invoked after an op at index {} was acknowledged, yet sits at {index}",
                out.id, out.floor
            ));
        }
        match self.results.get(&index) {
            Some((id, expected)) if *id == out.id && *expected == result => {}
            other => {
                return self.fail(format!(
                    "op {} at {index} answered {result:?}, the log order gives {other:?}",
                    out.id
                ));
            }
        }
        self.note(None, format!("ack op {} index {index} {result}", out.id));
        self.acked.insert(out.id, index);
        self.acked_index_max = self.acked_index_max.max(index);
        *self.counts.entry("acked").or_default() += 1;
        if self.healed && out.invoked >= self.heal_at {
            self.acked_after_heal += 1;
        }
    }

    fn advance_model(&mut self) {
        while let Some((_, kind, data)) = self.committed.get(&(self.model_index + 1)) {
            self.model_index += 1;
            if *kind != EntryType::Normal {
                continue;
            }
            if let Some((id, op)) = parse_op(data) {
                let result = run_op(&mut self.model, &op);
                self.results.insert(self.model_index, (id, result));
            }
        }
    }

    fn client_tick(&mut self, c: usize) {
        let next = self.client_interval();
        self.schedule(self.now + next, Event::ClientTick { client: c });
        if let Some(out) = &self.clients[c].outstanding {
            if self.now < out.invoked + Duration::from_secs(2) {
                return;
            }
            // No answer: the operation's outcome stays unknown; try a new one.
            self.clients[c].outstanding = None;
            *self.counts.entry("timed_out").or_default() += 1;
        }
        if self.now >= self.quiet_at {
            return;
        }
        let n = self.nodes.len();
        let target = match self.clients[c].leader_guess {
            Some(t) if self.client_rng.below(8) != 0 => t,
            _ => self.client_rng.below(n as u64) as usize,
        };
        let id = self.next_op;
        self.next_op += 1;
        let key = self.client_rng.below(u64::from(self.spec.keys)) as u32;
        let op = match self.client_rng.below(3) {
            0 => Op::Write { key, value: id },
            1 => Op::Read { key },
            _ => Op::Cas {
                key,
                expect: self.client_rng.below(id),
                value: id,
            },
        };
        let data = encode_op(id, &op);
        let now = self.now;
        let Some(node) = self.nodes[target].node.as_mut() else {
            return;
        };
        let result = node.propose(now, data);
        let incarnation = self.nodes[target].incarnation;
        match result {
            Ok(index) => {
                *self.counts.entry("proposed").or_default() += 1;
                self.note(Some(target), format!("propose op {id} at {index}"));
                self.clients[c].leader_guess = Some(target);
                self.clients[c].outstanding = Some(Outstanding {
                    id,
                    node: target,
                    incarnation,
                    index,
                    invoked: now,
                    floor: self.acked_index_max,
                });
                self.drain(target);
            }
            Err(ProposeError::NotLeader { leader }) => {
                self.clients[c].leader_guess =
                    leader.and_then(|l| self.ids.iter().position(|id| *id == l));
            }
            Err(error) => self.fail(format!("propose at n{target}: {error}")),
        }
    }

    fn fault_tick(&mut self) {
        let tick = Duration::from_millis(100);
        self.schedule(self.now + tick, Event::FaultTick);
        if self.now.as_nanos() / 1_000_000_000
            != (self.now.as_nanos() - 100_000_000) / 1_000_000_000
        {
            self.check_log_matching();
        }
        if self.healed {
            return;
        }
        let n = self.nodes.len();
        let per_tick = 0.1;
        if self.faults_rng.chance(self.plan.partition_per_s * per_tick) {
            self.partition();
        }
        if self
            .faults_rng
            .chance(self.plan.snapshot_damage_per_s * per_tick)
        {
            self.damage_snapshot();
        }
        if self
            .faults_rng
            .chance(self.plan.membership_per_s * per_tick)
        {
            self.change_membership();
            // A second change at once: a correct leader refuses it while
            // the first is uncommitted.
            if self.faults_rng.below(2) == 0 {
                self.change_membership();
            }
        }
        for (rate, power) in [
            (self.plan.kill_per_s, false),
            (self.plan.power_loss_per_s, true),
        ] {
            if self.faults_rng.chance(rate * per_tick) {
                let victim = self.faults_rng.below(n as u64) as usize;
                if self.nodes[victim].node.is_some() {
                    self.crash(victim, power);
                }
            }
        }
    }

    /// Ask the leader of the highest term to add a non-member or remove a
    /// voter (itself included), keeping the group within one voter of its
    /// founding size.
    fn change_membership(&mut self) {
        let Some(leader) = (0..self.nodes.len())
            .filter_map(|i| {
                let node = self.nodes[i].node.as_ref()?;
                (node.role() == rnats_core::raft::Role::Leader).then_some((node.term(), i))
            })
            .max()
            .map(|(_, i)| i)
        else {
            return;
        };
        let voters = self.nodes[leader]
            .node
            .as_ref()
            .expect("live")
            .voters()
            .to_vec();
        let founding = self.spec.nodes as usize;
        let outside: Vec<PeerId> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        let add = match voters.len() {
            len if len < founding => true,
            len if len > founding => false,
            _ => self.faults_rng.below(2) == 0,
        };
        let add = if outside.is_empty() { false } else { add };
        let now = self.now;
        let (what, peer, result) = if add {
            let peer = outside[self.faults_rng.below(outside.len() as u64) as usize];
            let node = self.nodes[leader].node.as_mut().expect("live");
            ("add", peer, node.propose_add_peer(now, peer))
        } else {
            let peer = voters[self.faults_rng.below(voters.len() as u64) as usize];
            let node = self.nodes[leader].node.as_mut().expect("live");
            ("remove", peer, node.propose_remove_peer(now, peer))
        };
        match result {
            Ok(index) => {
                *self.fault_counts.entry("membership_change").or_default() += 1;
                self.note(Some(leader), format!("propose {what} {peer} at {index}"));
                self.drain(leader);
            }
            Err(ProposeError::Poisoned) => {
                self.fail(format!("n{leader} is poisoned without disk faults"))
            }
            Err(error) => {
                *self.fault_counts.entry("membership_refused").or_default() += 1;
                self.note(Some(leader), format!("{what} {peer} refused: {error}"));
            }
        }
    }

    /// Damage a minority node's snapshot at rest, then kill it so its
    /// restart reads the damage.
    fn damage_snapshot(&mut self) {
        let minority = ((self.spec.nodes as usize).saturating_sub(1) / 2).max(1);
        let victim = self.faults_rng.below(minority as u64) as usize;
        let path = "raft/snap";
        let Some(mut bytes) = self.nodes[victim]
            .disk
            .with(|d| d.read_all(path))
            .ok()
            .flatten()
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let at = self.faults_rng.below(bytes.len() as u64);
        let result = if self.faults_rng.below(2) == 0 {
            bytes[at as usize] ^= 1 << self.faults_rng.below(8);
            *self.fault_counts.entry("snapshot_bit_flip").or_default() += 1;
            self.nodes[victim]
                .disk
                .with(|d| d.write_at(path, 0, &bytes).and_then(|()| d.sync(path)))
        } else {
            *self.fault_counts.entry("snapshot_truncated").or_default() += 1;
            self.nodes[victim]
                .disk
                .with(|d| d.truncate(path, at).and_then(|()| d.sync(path)))
        };
        if let Err(error) = result {
            return self.fail(format!("damaging n{victim}'s snapshot: {error}"));
        }
        self.note(Some(victim), format!("snapshot damaged at byte {at}"));
        if self.nodes[victim].node.is_some() {
            self.crash(victim, false);
        }
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        let lasting = Duration::from_millis(self.faults_rng.range(100, 3000));
        let kind = self.faults_rng.below(4);
        let cut = |world: &mut RaftWorld, from: usize, to: usize| {
            world.blocked[from][to] = true;
            world.schedule(world.now + lasting, Event::HealLink { from, to });
        };
        match kind {
            // One node alone (a minority), both ways.
            0 => {
                let lone = self.faults_rng.below(n as u64) as usize;
                for other in (0..n).filter(|o| *o != lone) {
                    cut(self, lone, other);
                    cut(self, other, lone);
                }
                *self.fault_counts.entry("partition_isolate").or_default() += 1;
            }
            // A random split into two sides.
            1 => {
                let sides: Vec<bool> = (0..n).map(|_| self.faults_rng.below(2) == 0).collect();
                for a in 0..n {
                    for b in 0..n {
                        if sides[a] != sides[b] {
                            cut(self, a, b);
                        }
                    }
                }
                *self.fault_counts.entry("partition_split").or_default() += 1;
            }
            // One way between two nodes.
            2 => {
                let a = self.faults_rng.below(n as u64) as usize;
                let b = (a + 1 + self.faults_rng.below(n as u64 - 1) as usize) % n;
                cut(self, a, b);
                *self.fault_counts.entry("partition_one_way").or_default() += 1;
            }
            // Flapping: a node cut off and back in short bursts.
            _ => {
                let lone = self.faults_rng.below(n as u64) as usize;
                for burst in 0..5u64 {
                    let cut_at = self.now + Duration::from_millis(burst * 200);
                    let heal_at = cut_at + Duration::from_millis(100);
                    for other in (0..n).filter(|o| *o != lone) {
                        for (from, to) in [(lone, other), (other, lone)] {
                            self.schedule(cut_at, Event::CutLink { from, to });
                            self.schedule(heal_at, Event::HealLink { from, to });
                        }
                    }
                }
                *self.fault_counts.entry("partition_flap").or_default() += 1;
            }
        }
    }

    fn crash(&mut self, i: usize, power_loss: bool) {
        self.nodes[i].node = None;
        self.nodes[i].incarnation += 1;
        if power_loss {
            self.nodes[i].disk.with(|d| d.power_loss());
            *self.fault_counts.entry("power_loss").or_default() += 1;
        } else {
            self.nodes[i].disk.with(|d| d.process_kill());
            *self.fault_counts.entry("kill").or_default() += 1;
        }
        self.note(Some(i), format!("crash power_loss={power_loss}"));
        let [low, high] = self.spec.restart_ms;
        let down = Duration::from_millis(self.faults_rng.range(low, high));
        self.schedule(self.now + down, Event::Restart { node: i });
    }

    fn heal(&mut self) {
        self.healed = true;
        self.note(None, "heal".into());
        for row in &mut self.blocked {
            row.iter_mut().for_each(|b| *b = false);
        }
    }

    /// Every pair of live nodes: where their logs hold an entry of the same
    /// index and term, they hold the same entries up to it.
    fn check_log_matching(&mut self) {
        // Each log from the first entry it holds (compaction drops a prefix
        // that is committed, and checked by state machine safety).
        let logs: Vec<(usize, u64, Vec<Applied>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.as_ref().map(|node| (i, node.log())))
            .map(|(i, log)| {
                (
                    i,
                    log.base().index + 1,
                    log.slice(1, log.last_index())
                        .iter()
                        .map(|e| (e.term, e.kind, e.data.clone()))
                        .collect(),
                )
            })
            .collect();
        for (x, (a, first_a, log_a)) in logs.iter().enumerate() {
            for (b, first_b, log_b) in logs.iter().skip(x + 1) {
                self.checks += 1;
                let from = (*first_a).max(*first_b);
                let to = (first_a + log_a.len() as u64).min(first_b + log_b.len() as u64);
                let at_a = |i: u64| &log_a[(i - first_a) as usize];
                let at_b = |i: u64| &log_b[(i - first_b) as usize];
                let Some(last_same_term) = (from..to).rev().find(|&i| at_a(i).0 == at_b(i).0)
                else {
                    continue;
                };
                if (from..=last_same_term).any(|i| at_a(i) != at_b(i)) {
                    let message = format!("log matching: n{a} and n{b} agree on the term of index {last_same_term} but not on every entry up to it");
                    return self.fail(message);
                }
            }
        }
    }

    fn finish(&mut self) {
        self.note(None, "end".into());
        self.check_log_matching();
        if self.failure.is_some() {
            return;
        }
        if self.acked_after_heal == 0 {
            return self
                .fail("liveness: no operation invoked after the heal was acknowledged".into());
        }
        // The voters as the node that knows the most committed entries
        // has them (membership changes stop at the heal, so they committed).
        let voters: Vec<PeerId> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .max_by_key(|n| (n.commit_index(), n.term()))
            .map(|n| n.voters().to_vec())
            .unwrap_or_default();
        // Every voter must have applied every acknowledged operation, where
        // it was acknowledged (a removed node is not kept up to date).
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                return self.fail(format!("n{i} is still down at the end"));
            }
            if !voters.contains(&self.ids[i]) {
                continue;
            }
            let restored_at = self.nodes[i].restored_at;
            let applied: BTreeMap<u64, u64> = self.nodes[i].applied.iter().copied().collect();
            for (&op, &index) in &self.acked {
                // Through a restored snapshot, the store checked equal to
                // every node's there stands for the applied entries.
                if index > restored_at && applied.get(&index) != Some(&op) {
                    return self.fail(format!(
                        "acknowledged op {op} at index {index} is not applied there on n{i}"
                    ));
                }
            }
        }
    }

    fn outcome(self) -> Outcome {
        let mut jetstream = BTreeMap::new();
        for (k, v) in &self.counts {
            jetstream.insert(*k, *v);
        }
        jetstream.insert("terms", self.leaders.len() as u64);
        jetstream.insert("committed", self.committed.len() as u64);
        Outcome {
            scenario: self.name,
            seed: self.seed,
            servers: self.spec.nodes + self.spec.spares,
            virtual_time: self.now,
            events: self.events,
            faults: self.fault_counts,
            closes: BTreeMap::new(),
            published: self.counts.get("proposed").copied().unwrap_or(0),
            delivered: self.counts.get("acked").copied().unwrap_or(0),
            checks: self.checks,
            trace_hash: self.trace.finish(),
            failure: self.failure,
            jetstream,
            plan: format!("{:?}", self.plan),
        }
    }
}

#[cfg(feature = "planted-defects")]
fn planted(name: &str) -> Result<rnats_core::raft::node::RaftDefect, String> {
    use rnats_core::raft::node::RaftDefect;
    Ok(match name {
        "raft-vote-not-durable" => RaftDefect::VoteNotDurable,
        "raft-ack-before-durable" => RaftDefect::AckBeforeDurable,
        "raft-commit-old-term" => RaftDefect::CommitOldTermByCounting,
        "raft-concurrent-config" => RaftDefect::ConcurrentConfigChanges,
        "raft-trust-damaged-snapshot" => RaftDefect::TrustDamagedSnapshot,
        other => return Err(format!("unknown raft defect {other:?}")),
    })
}

fn encode_op(id: u64, op: &Op) -> Bytes {
    Bytes::from(match op {
        Op::Write { key, value } => format!("{id} w {key} {value}"),
        Op::Read { key } => format!("{id} r {key}"),
        Op::Cas { key, expect, value } => format!("{id} c {key} {expect} {value}"),
    })
}

fn parse_op(data: &[u8]) -> Option<(u64, Op)> {
    let text = std::str::from_utf8(data).ok()?;
    let words: Vec<&str> = text.split(' ').collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    let id = num(0)?;
    let key = num(2)? as u32;
    let op = match *words.get(1)? {
        "w" => Op::Write {
            key,
            value: num(3)?,
        },
        "r" => Op::Read { key },
        "c" => Op::Cas {
            key,
            expect: num(3)?,
            value: num(4)?,
        },
        _ => return None,
    };
    Some((id, op))
}

/// Apply `op` to `kv`; its result as text.
fn run_op(kv: &mut BTreeMap<u32, u64>, op: &Op) -> String {
    match op {
        Op::Write { key, value } => {
            kv.insert(*key, *value);
            "ok".into()
        }
        Op::Read { key } => format!("{:?}", kv.get(key)),
        Op::Cas { key, expect, value } => {
            let current = kv.get(key).copied().unwrap_or(0);
            if current == *expect {
                kv.insert(*key, *value);
                "swapped".into()
            } else {
                format!("was {current}")
            }
        }
    }
}

fn encode_kv(kv: &BTreeMap<u32, u64>) -> Bytes {
    let text: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Bytes::from(text.join(","))
}

fn decode_kv(data: &[u8]) -> Option<BTreeMap<u32, u64>> {
    let text = std::str::from_utf8(data).ok()?;
    if text.is_empty() {
        return Some(BTreeMap::new());
    }
    text.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

fn encode(message: &Message) -> (u8, Bytes) {
    let mut out = BytesMut::new();
    let kind = match message {
        Message::Append(m) => {
            m.encode(&mut out);
            0
        }
        Message::AppendResponse(m) => {
            m.encode(&mut out);
            1
        }
        Message::Vote(m) => {
            m.encode(&mut out);
            2
        }
        Message::VoteResponse(m) => {
            m.encode(&mut out);
            3
        }
    };
    (kind, out.freeze())
}

/// Which decoder applies is what the subject says in nats-server (`$NRG.AE.`,
/// `$NRG.V.`, the reply inboxes); `kind` stands for it.
fn decode(kind: u8, bytes: &Bytes) -> Result<Message, rnats_core::raft::wire::WireError> {
    Ok(match kind {
        0 => Message::Append(AppendEntry::decode(bytes)?),
        1 => Message::AppendResponse(AppendEntryResponse::decode(bytes)?),
        2 => Message::Vote(VoteRequest::decode(bytes)?),
        _ => Message::VoteResponse(VoteResponse::decode(bytes)?),
    })
}

fn describe(message: &Message) -> String {
    match message {
        Message::Append(m) => format!(
            "append term {} lterm {} prev {}/{} n={} commit {}",
            m.term,
            m.leader_term,
            m.prev_term,
            m.prev_index,
            m.entries.len(),
            m.commit
        ),
        Message::AppendResponse(m) => format!(
            "append-resp term {} index {} ok={}",
            m.term, m.index, m.success
        ),
        Message::Vote(m) => format!(
            "vote-req term {} last {}/{}",
            m.term, m.last_term, m.last_index
        ),
        Message::VoteResponse(m) => format!("vote-resp term {} granted={}", m.term, m.granted),
    }
}
