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
//! With `step_down_per_s_max`, the leader is asked now and then to step down,
//! naming a successor or not (leader transfer); a transfer the named node
//! won is counted (`transfer_won`), safety is checked as for any election.
//! With `transport`, every message goes through core's `$NRG` transport as
//! it does over real routes: each node's sends become subjects and reply
//! inboxes (appends for every follower one broadcast), a publish reaches
//! every node subscribed to its subject (the sender's own echo included)
//! under the same link faults, and the receiver's transport maps it back;
//! a response with no learned reply subject fails the run.
//! Lost logs: with `wipe_per_s_max` a minority node loses power and every
//! file; with `lazy_nodes` the first nodes acknowledge before their sync;
//! with `log_damage_per_s_max` a minority's log, term/vote or identity
//! file is damaged at rest. A node whose open reports a lost log gets its
//! directory cleared and a new id (`peer_id(slot, generation)`; the old one
//! is retired for good), and the leader is asked each tick to remove a
//! retired voter, then add the new id (`replace_lost`). With
//! `disk_error_max` a minority's disks fail calls (EIO, ENOSPC) until the
//! heal; a poisoned node is killed and restarted. Each node has its own
//! monotonic clock (`Clock`: drift, forward jumps) and may be paused
//! (messages and sync completions wait, its clock runs on). With `fifo`
//! each link delivers in order (the bench); otherwise messages reorder.
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
use rnats_core::raft::node::{
    Action, Config, Message, Node, ProposeError, SnapshotError, StepDownError,
};
use rnats_core::raft::transport::{Inbound, Outbound, Transport};
use rnats_core::raft::wire::{
    AppendEntry, AppendEntryResponse, Entry, EntryType, PeerId, VoteRequest, VoteResponse,
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
    /// Ceiling of leader step-downs (with a transfer when a voter is fit) per second.
    pub step_down_per_s_max: f64,
    /// Each node snapshots its key-value store every this many applied
    /// entries (0: never).
    pub snapshot_every: u64,
    /// Ceiling of snapshot files damaged at rest per second (a bit flipped
    /// or the file cut short), on a minority of the founding nodes, each
    /// followed by a kill so the restart reads it.
    pub snapshot_damage_per_s_max: f64,
    /// Ceiling of disk wipes per second: a minority node loses power and
    /// every file, and must rejoin under a new id.
    pub wipe_per_s_max: f64,
    /// The first this many nodes (at most a minority) run with lazy sync:
    /// they acknowledge before their sync, so each restart is a lost log.
    pub lazy_nodes: u32,
    /// Ceiling of damage at rest to a minority's log, term/vote or identity
    /// file per second (a bit flipped; the small files also cut short),
    /// each followed by a kill so the restart reads it.
    pub log_damage_per_s_max: f64,
    /// Ceiling of the per-call rate of EIO (read, write, sync) and ENOSPC
    /// on a minority's disks during the fault phase.
    pub disk_error_max: f64,
    /// Ceiling of process pauses per second (a node handles nothing for up
    /// to `pause_ms_max` while its clock runs on).
    pub pause_per_s_max: f64,
    pub pause_ms_max: u64,
    /// Ceiling of forward jumps of a node's monotonic clock per second (up
    /// to one maximum election timeout each).
    pub clock_jump_per_s_max: f64,
    /// Ceiling of each node's clock drift, in parts per million either way.
    pub clock_drift_ppm_max: u64,
    /// Messages on each link arrive in the order sent (a route is one TCP
    /// connection); without it each message's latency is drawn alone, so
    /// they reorder.
    pub fifo: bool,
    /// Route every message through core's `$NRG` transport (subjects,
    /// learned reply inboxes, broadcasts) instead of straight to its peer.
    pub transport: bool,
    /// Each node's `max_appends_in_flight`: messages a leader sends a
    /// follower past its next index before an acknowledgement.
    pub appends_in_flight: usize,
    /// Partitions may also be Jepsen's bridge: the other nodes split in two
    /// halves that reach each other only through one node, which sees
    /// both (each half may then elect a leader the bridge votes for).
    pub bridges: bool,
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
            step_down_per_s_max: 0.0,
            snapshot_every: 0,
            snapshot_damage_per_s_max: 0.0,
            wipe_per_s_max: 0.0,
            lazy_nodes: 0,
            log_damage_per_s_max: 0.0,
            disk_error_max: 0.0,
            pause_per_s_max: 0.0,
            pause_ms_max: 0,
            clock_jump_per_s_max: 0.0,
            clock_drift_ppm_max: 0,
            fifo: false,
            transport: false,
            appends_in_flight: 64,
            bridges: false,
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
const STREAM_TRANSPORT: u64 = STREAM_PLAN + (1 << 24);
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
    wipe_per_s: f64,
    log_damage_per_s: f64,
    disk_error: f64,
    pause_per_s: f64,
    clock_jump_per_s: f64,
    clock_drift_ppm: f64,
    step_down_per_s: f64,
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
            wipe_per_s: rate(spec.wipe_per_s_max),
            log_damage_per_s: rate(spec.log_damage_per_s_max),
            disk_error: rate(spec.disk_error_max),
            pause_per_s: rate(spec.pause_per_s_max),
            clock_jump_per_s: rate(spec.clock_jump_per_s_max),
            clock_drift_ppm: rate(spec.clock_drift_ppm_max as f64),
            // Drawn last: the plan's stream feeds nothing else, so the
            // earlier rates (and every older scenario's seeds) stay as they were.
            step_down_per_s: rate(spec.step_down_per_s_max),
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        /// The sender's id when it sent (a slot's id changes when it rejoins).
        from_id: PeerId,
        incarnation: u64,
        kind: u8,
        bytes: Bytes,
    },
    /// A NATS message on `subject` (transport mode), for node `to`.
    Nats {
        to: usize,
        from: usize,
        incarnation: u64,
        subject: String,
        reply: Option<String>,
        payload: Bytes,
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
    /// A paused node runs again (its timers are looked at from here on).
    Resume,
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
    /// With `transport`: this incarnation's end of the `$NRG` subjects.
    transport: Option<Transport>,
    incarnation: u64,
    kv: BTreeMap<u32, u64>,
    /// (index, op id or 0) of every entry this incarnation applied, in
    /// order, the entries of one message sharing its index (a restored
    /// snapshot: its index, 0).
    applied: Vec<(u64, u64)>,
    /// The index of the snapshot this incarnation restored (0: none).
    restored_at: u64,
    /// The slot's id has never been opened (the world's start, or minted
    /// for a rejoin): the node may create its state under it.
    fresh: bool,
    /// How many times the slot lost its log and rejoined under a new id.
    generation: u32,
    clock: Clock,
    /// The node handles nothing before this.
    paused_until: Instant,
}

/// A node's monotonic clock: it runs at `1 + ppm / 1e6` of real time from
/// `(global, local)`, and may jump forward (never back).
#[derive(Debug, Clone, Copy)]
struct Clock {
    ppm: i64,
    global: Instant,
    local: Instant,
}

impl Clock {
    fn local(&self, now: Instant) -> Instant {
        let elapsed = i128::from(now.as_nanos() - self.global.as_nanos());
        let scaled = elapsed * (1_000_000 + i128::from(self.ppm)) / 1_000_000;
        Instant::from_nanos(self.local.as_nanos() + scaled as u64)
    }

    /// The earliest real time at which the local clock reads at least `at`.
    fn global(&self, at: Instant) -> Instant {
        let Some(ahead) = at.as_nanos().checked_sub(self.local.as_nanos()) else {
            return self.global;
        };
        let rate = 1_000_000 + i128::from(self.ppm);
        let real = (i128::from(ahead) * 1_000_000 + rate - 1) / rate;
        Instant::from_nanos(self.global.as_nanos() + real as u64)
    }

    /// From `now` on, run at `ppm` after jumping `jump` ahead.
    fn rebase(&mut self, now: Instant, jump: Duration, ppm: i64) {
        self.local = self.local(now) + jump;
        self.global = now;
        self.ppm = ppm;
    }
}

/// An entry as the checkers compare it: term, type, data.
/// A committed message: its term and entries.
type Applied = (u64, Vec<Entry>);

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
    /// term -> the successor its leader named when it stepped down.
    transfers: BTreeMap<u64, PeerId>,
    /// index -> the message applied there (by anyone).
    committed: BTreeMap<u64, Applied>,
    /// The model: the key-value state after applying `committed` in order
    /// through `model_index`, and each operation's index and result by id.
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
    /// The founding voters (fixed: `Config::peers` of every node).
    founding: Vec<PeerId>,
    /// Ids given up by nodes that lost their logs: never used again, and
    /// removed from the voters by the leader.
    retired: Vec<PeerId>,
    /// New ids of nodes that lost their logs, until the leader added them.
    rejoining: Vec<PeerId>,
    disk_faults: SimDiskFaults,
    /// `RNATS_SIM_ECHO` set: every note goes to stderr as it is made (a
    /// panic inside a node otherwise leaves no events behind).
    echo: bool,
    /// Each acknowledged operation's commit latency: from its proposal to
    /// its apply on the node that took it (virtual nanoseconds).
    latencies: Vec<u64>,
    /// With `fifo`: the last delivery time on each link [from][to].
    link_last: Vec<Vec<Instant>>,
}

/// Slot `n`'s id in its `generation` (0: the founding one).
fn peer_id(n: usize, generation: u32) -> PeerId {
    let mut id = *b"RNSIM000";
    if generation > 0 {
        id[2] = b'W';
        id[3] = b'0' + (generation / 10 % 10) as u8;
        id[4] = b'0' + (generation % 10) as u8;
    }
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
        if !(1..=1024).contains(&spec.appends_in_flight) {
            return Err(format!(
                "raft.appends_in_flight must be 1 to 1024, not {}",
                spec.appends_in_flight
            ));
        }
        if spec.lazy_nodes > spec.nodes.saturating_sub(1) / 2 {
            return Err(format!(
                "raft.lazy_nodes must be a minority of raft.nodes, not {}",
                spec.lazy_nodes
            ));
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
            ids: (0..n).map(|i| peer_id(i, 0)).collect(),
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
            transfers: BTreeMap::new(),
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
            founding: (0..spec.nodes as usize).map(|i| peer_id(i, 0)).collect(),
            retired: Vec::new(),
            rejoining: Vec::new(),
            echo: std::env::var_os("RNATS_SIM_ECHO").is_some(),
            latencies: Vec::new(),
            link_last: vec![vec![Instant::ZERO; n]; n],
            disk_faults: SimDiskFaults {
                read_error: plan.disk_error,
                short_read: plan.disk_error,
                read_bit_flip: 0.0,
                write_error: plan.disk_error,
                no_space: plan.disk_error,
                sync_error: plan.disk_error,
            },
        };
        for i in 0..n {
            let disk = SimDisk::new(
                Rng::stream(seed, STREAM_DISK + i as u64),
                SimDiskFaults::default(),
            );
            world.nodes.push(SimNode {
                disk: SharedDisk::new(disk),
                node: None,
                transport: None,
                incarnation: 0,
                kv: BTreeMap::new(),
                applied: Vec::new(),
                restored_at: 0,
                fresh: true,
                generation: 0,
                clock: Clock {
                    ppm: 0,
                    global: Instant::ZERO,
                    local: Instant::ZERO,
                },
                paused_until: Instant::ZERO,
            });
            world.start_node(i);
        }
        let minority = ((spec.nodes as usize).saturating_sub(1) / 2).max(1);
        for i in 0..n {
            if i < minority {
                let faults = world.disk_faults;
                world.nodes[i].disk.with(|d| d.set_faults(faults));
            }
            let drift = plan.clock_drift_ppm as i64;
            if drift > 0 {
                let ppm = world.faults_rng.range(0, 2 * drift as u64 + 1) as i64 - drift;
                world.nodes[i].clock.ppm = ppm;
            }
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
            // Spares and rejoining nodes (new ids) are not among the
            // founding voters: they wait to be added.
            peers: self.founding.clone(),
            election_timeout_min: Duration::from_millis(self.spec.election_ms[0]),
            election_timeout_max: Duration::from_millis(self.spec.election_ms[1]),
            heartbeat_interval: Duration::from_millis(self.spec.heartbeat_ms),
            max_entries_per_append: 64,
            max_appends_in_flight: self.spec.appends_in_flight,
            seed: Rng::stream(self.seed, STREAM_NODE + (i as u64) * 4096 + incarnation).next_u64(),
            fresh: self.nodes.get(i).is_none_or(|n| n.fresh),
            lazy_sync: i < self.spec.lazy_nodes as usize,
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
        let local = self.local_now(i);
        match Node::open(config, disk, "raft", local) {
            Ok(node) => {
                self.nodes[i].node = Some(node);
                self.nodes[i].fresh = false;
                // A new process subscribes new inboxes.
                let incarnation = self.nodes[i].incarnation;
                let stream = STREAM_TRANSPORT + (i as u64) * 4096 + incarnation;
                self.nodes[i].transport = self.spec.transport.then(|| {
                    Transport::new(
                        "sim",
                        self.ids[i],
                        Rng::stream(self.seed, stream).next_u64(),
                    )
                });
            }
            Err(error) if error.is_lost_log() => return self.rejoin(i, &error.to_string()),
            Err(error) if self.disk_errors_possible() => {
                // EIO at open: try again later.
                *self.fault_counts.entry("open_failed").or_default() += 1;
                self.note(Some(i), format!("open failed: {error}"));
                let later = self.now + Duration::from_millis(50);
                return self.schedule(later, Event::Restart { node: i });
            }
            Err(error) => return self.fail(format!("node {i} cannot recover: {error}")),
        }
        self.nodes[i].kv.clear();
        self.nodes[i].applied.clear();
        self.nodes[i].restored_at = 0;
        self.note(Some(i), "start".to_string());
    }

    /// Node `i` lost its log: its directory is cleared, its id retired for
    /// good, and it starts again under a new one as a new member, which the
    /// leader adds once the old id is removed (`replace_lost`).
    fn rejoin(&mut self, i: usize, why: &str) {
        *self.fault_counts.entry("lost_log").or_default() += 1;
        self.note(Some(i), format!("lost its log: {why}"));
        if let Err(error) = self.nodes[i]
            .disk
            .with(|d| rnats_core::raft::log::clear(d, "raft"))
        {
            self.note(Some(i), format!("clearing failed: {error}"));
            let later = self.now + Duration::from_millis(50);
            return self.schedule(later, Event::Restart { node: i });
        }
        let old = self.ids[i];
        self.rejoining.retain(|id| *id != old);
        self.retired.push(old);
        self.nodes[i].generation += 1;
        if self.nodes[i].generation > 99 {
            return self.fail(format!("n{i} lost its log 100 times"));
        }
        self.ids[i] = peer_id(i, self.nodes[i].generation);
        self.rejoining.push(self.ids[i]);
        self.nodes[i].fresh = true;
        self.note(Some(i), format!("rejoins as {}", self.ids[i]));
        self.start_node(i);
    }

    fn disk_errors_possible(&self) -> bool {
        self.plan.disk_error > 0.0
    }

    fn local_now(&self, i: usize) -> Instant {
        self.nodes[i].clock.local(self.now)
    }

    fn paused(&self, i: usize) -> bool {
        self.now < self.nodes[i].paused_until
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
        let line = format!("{:>12.6}s {who} {text}", self.now.as_nanos() as f64 / 1e9);
        if self.echo {
            eprintln!("{line}");
        }
        self.recent.push_back(line);
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
                .filter(|&i| !self.paused(i))
                .filter_map(|i| {
                    let node = self.nodes[i].node.as_ref()?;
                    Some((self.nodes[i].clock.global(node.poll_timeout()), i))
                })
                .min();
            match (next_event, next_timer) {
                (_, Some((at, i))) if next_event.is_none_or(|e| at <= e) => {
                    self.now = self.now.max(at);
                    self.note(Some(i), "timer".into());
                    let now = self.local_now(i);
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
        // A paused node takes its messages and sync completions when it
        // runs again.
        if let Event::Deliver { to: i, .. }
        | Event::Nats { to: i, .. }
        | Event::SyncDone { node: i, .. } = event
        {
            if self.paused(i) {
                let at = self.nodes[i].paused_until;
                return self.schedule(at, event);
            }
        }
        match event {
            Event::Deliver {
                to,
                from,
                from_id,
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
                let now = self.local_now(to);
                self.with_node(to, |node| node.handle_message(now, from_id, message));
            }
            Event::Nats {
                to,
                from,
                incarnation,
                subject,
                reply,
                payload,
            } => {
                if self.nodes[to].incarnation != incarnation || self.nodes[to].node.is_none() {
                    return;
                }
                let transport = self.nodes[to].transport.as_mut().expect("transport mode");
                let (from_id, message) =
                    match transport.inbound(&subject, reply.as_deref(), &payload) {
                        Ok(Inbound::Message { from, message }) => (from, message),
                        Ok(Inbound::Own) => {
                            *self.counts.entry("own_echo").or_default() += 1;
                            return;
                        }
                        Ok(other) => {
                            return self
                                .fail(format!("n{to} got {other:?} on {subject}, never sent"))
                        }
                        Err(error) => {
                            return self.fail(format!(
                                "n{to} cannot take n{from}'s message on {subject}: {error}"
                            ))
                        }
                    };
                self.note(
                    Some(to),
                    format!("recv on {subject} from {from_id} {}", describe(&message)),
                );
                let now = self.local_now(to);
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
                let now = self.local_now(node);
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
            Event::Resume => {}
            Event::FaultTick => self.fault_tick(),
            Event::Heal => self.heal(),
            Event::End => unreachable!("handled by run"),
        }
    }

    /// Carry out node `i`'s actions.
    fn drain(&mut self, i: usize) {
        let mut sends: Vec<(PeerId, Message)> = Vec::new();
        loop {
            let Some(action) = self.nodes[i].node.as_mut().and_then(|n| n.poll_action()) else {
                break;
            };
            match action {
                // The transport maps the whole batch at once (broadcasts).
                Action::Send { to, message } if self.spec.transport => sends.push((to, message)),
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
                        if self.transfers.get(&(term - 1)) == Some(&self.ids[i]) {
                            *self.counts.entry("transfer_won").or_default() += 1;
                        }
                    }
                }
            }
        }
        if !sends.is_empty() {
            self.publish_sends(i, &sends);
        }
        if self.nodes[i].node.as_ref().is_some_and(|n| n.is_poisoned()) {
            // A disk error: the node can no longer tell what is durable
            // and must be reopened.
            if !self.disk_errors_possible() {
                return self.fail(format!("n{i} is poisoned without disk faults"));
            }
            *self.fault_counts.entry("poisoned").or_default() += 1;
            self.crash(i, false);
        }
    }

    /// Transport mode: node `from`'s sends as NATS messages, each to every
    /// node subscribed to its subject.
    fn publish_sends(&mut self, from: usize, sends: &[(PeerId, Message)]) {
        let Some(node) = self.nodes[from].node.as_ref() else {
            return;
        };
        let voters = node.voters().to_vec();
        let transport = self.nodes[from].transport.as_mut().expect("transport mode");
        let outbound = transport.outbound(sends, &voters);
        if transport.unroutable() > 0 {
            return self.fail(format!(
                "n{from} had a response with no learned reply subject"
            ));
        }
        for out in outbound {
            self.trace.write(out.subject.as_bytes());
            self.trace.write(&out.payload);
            for to in 0..self.nodes.len() {
                let subscribed = self.nodes[to]
                    .transport
                    .as_ref()
                    .is_some_and(|t| t.subscriptions().contains(&out.subject.as_str()));
                if subscribed {
                    self.publish_to(from, to, &out);
                }
            }
        }
    }

    /// One NATS message from node `from` to subscriber `to` (itself: the
    /// echo, which no link fault touches).
    fn publish_to(&mut self, from: usize, to: usize, out: &Outbound) {
        for at in self.link_arrivals(from, to, from != to) {
            let incarnation = self.nodes[to].incarnation;
            self.schedule(
                at,
                Event::Nats {
                    to,
                    from,
                    incarnation,
                    subject: out.subject.clone(),
                    reply: out.reply.clone(),
                    payload: out.payload.clone(),
                },
            );
        }
    }

    /// When a message sent now on link `from` -> `to` arrives: never (cut
    /// or lost), once, or twice (duplicated), each after its latency and
    /// jitter (in order on the link with `fifo`). Without `faults` (an
    /// echo), once after the latency alone.
    fn link_arrivals(&mut self, from: usize, to: usize, faults: bool) -> Vec<Instant> {
        let faults = faults && !self.healed;
        if faults && (self.blocked[from][to] || self.net.chance(self.plan.loss)) {
            *self.fault_counts.entry("dropped").or_default() += 1;
            return Vec::new();
        }
        let copies = if faults && self.net.chance(self.plan.duplicate) {
            2
        } else {
            1
        };
        let mut arrivals = Vec::with_capacity(copies);
        for _ in 0..copies {
            let [low, high] = self.spec.latency_ms;
            let jitter = if faults {
                self.net.unit() * self.plan.jitter_ms
            } else {
                0.0
            };
            let delay = ms(low + self.net.unit() * (high - low) + jitter);
            let mut at = self.now + delay;
            if self.spec.fifo {
                at = at.max(self.link_last[from][to]);
                self.link_last[from][to] = at;
            }
            arrivals.push(at);
        }
        arrivals
    }

    fn send(&mut self, from: usize, to: PeerId, message: Message) {
        let Some(to) = self.ids.iter().position(|id| *id == to) else {
            if self.retired.contains(&to) {
                // Its node lost its log and lives on under a new id.
                return;
            }
            return self.fail(format!("n{from} sent to unknown peer {to}"));
        };
        let from_id = self.ids[from];
        let (kind, bytes) = encode(&message);
        self.trace.write(&bytes);
        for at in self.link_arrivals(from, to, true) {
            let incarnation = self.nodes[to].incarnation;
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    from,
                    from_id,
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
        let now = self.local_now(i);
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

    /// Node `i` applies committed message `message`: each of its entries
    /// in order.
    fn apply(&mut self, i: usize, message: LogEntry) {
        self.checks += 1;
        let index = message.index;
        if let Some(applied_before) = self.nodes[i].applied.last() {
            if applied_before.0 + 1 != index {
                return self.fail(format!("n{i} applied {index} after {}", applied_before.0));
            }
        }
        match self.committed.get(&index) {
            Some((term, entries)) => {
                if (*term, entries) != (message.term, &message.entries) {
                    return self.fail(format!(
                        "state machine safety: n{i} applied term {} at index {index}, another node term {term}",
                        message.term
                    ));
                }
            }
            None => {
                self.committed
                    .insert(index, (message.term, message.entries.clone()));
                self.advance_model();
            }
        }
        for entry in &message.entries {
            self.apply_entry(i, index, entry);
        }
    }

    fn apply_entry(&mut self, i: usize, index: u64, entry: &Entry) {
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
        match self.results.get(&out.id) {
            Some((at, expected)) if *at == index && *expected == result => {}
            other => {
                return self.fail(format!(
                    "op {} at {index} answered {result:?}, the log order gives {other:?}",
                    out.id
                ));
            }
        }
        self.note(None, format!("ack op {} index {index} {result}", out.id));
        self.acked.insert(out.id, index);
        self.latencies
            .push(self.now.as_nanos() - out.invoked.as_nanos());
        self.acked_index_max = self.acked_index_max.max(index);
        *self.counts.entry("acked").or_default() += 1;
        if self.healed && out.invoked >= self.heal_at {
            self.acked_after_heal += 1;
        }
    }

    fn advance_model(&mut self) {
        while let Some((_, entries)) = self.committed.get(&(self.model_index + 1)) {
            self.model_index += 1;
            for entry in entries.iter().filter(|e| e.kind == EntryType::Normal) {
                if let Some((id, op)) = parse_op(&entry.data) {
                    let result = run_op(&mut self.model, &op);
                    self.results.insert(id, (self.model_index, result));
                }
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
        if self.paused(target) {
            return;
        }
        let (now, local) = (self.now, self.local_now(target));
        let Some(node) = self.nodes[target].node.as_mut() else {
            return;
        };
        let result = node.propose(local, data);
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
        // Replacing a lost member is recovery, not a fault: it goes on
        // after the heal.
        if !self.retired.is_empty() || !self.rejoining.is_empty() {
            self.replace_lost();
        }
        if self.healed {
            return;
        }
        let n = self.nodes.len();
        let per_tick = 0.1;
        for (rate, fault) in [
            (self.plan.wipe_per_s, 0),
            (self.plan.log_damage_per_s, 1),
            (self.plan.pause_per_s, 2),
            (self.plan.clock_jump_per_s, 3),
        ] {
            if self.faults_rng.chance(rate * per_tick) {
                match fault {
                    0 => self.wipe(),
                    1 => self.damage_log(),
                    2 => self.pause(),
                    _ => self.clock_jump(),
                }
            }
        }
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
        // Only drawn where the scenario asks: an extra draw would shift
        // every later fault of the older scenarios' seeds.
        if self.plan.step_down_per_s > 0.0
            && self.faults_rng.chance(self.plan.step_down_per_s * per_tick)
        {
            self.step_down();
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
        let Some(leader) = self.current_leader() else {
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
        let now = self.local_now(leader);
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

    /// Ask the leader of the highest term to step down, naming a random
    /// voter as its preferred successor half the time.
    fn step_down(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let now = self.local_now(leader);
        let node = self.nodes[leader].node.as_ref().expect("live");
        let (term, voters) = (node.term(), node.voters().to_vec());
        let preferred = (self.faults_rng.below(2) == 0)
            .then(|| voters[self.faults_rng.below(voters.len() as u64) as usize]);
        let node = self.nodes[leader].node.as_mut().expect("live");
        match node.step_down(now, preferred) {
            Ok(successor) => {
                *self.fault_counts.entry("step_down").or_default() += 1;
                self.note(
                    Some(leader),
                    format!(
                        "step down in term {term}, preferred {preferred:?}, named {successor:?}"
                    ),
                );
                if let Some(successor) = successor {
                    self.transfers.insert(term, successor);
                }
                self.drain(leader);
            }
            Err(StepDownError::Poisoned) if self.disk_errors_possible() => {
                *self.fault_counts.entry("step_down_refused").or_default() += 1;
            }
            Err(error) => self.fail(format!("n{leader} refused to step down: {error}")),
        }
    }

    /// The running leader of the highest term.
    fn current_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.paused(i))
            .filter_map(|i| {
                let node = self.nodes[i].node.as_ref()?;
                (node.role() == rnats_core::raft::Role::Leader).then_some((node.term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// What the operator (later, the JetStream meta layer) does for a node
    /// that lost its log: the leader removes its retired id, then adds its
    /// new one, one change at a time (a refused change is asked again at
    /// the next tick).
    fn replace_lost(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let node = self.nodes[leader].node.as_ref().expect("live");
        let voters = node.voters().to_vec();
        self.rejoining.retain(|id| !voters.contains(id));
        let retired = self.retired.iter().copied().find(|id| voters.contains(id));
        let now = self.local_now(leader);
        let node = self.nodes[leader].node.as_mut().expect("live");
        let (what, peer, result) = if let Some(old) = retired {
            ("remove", old, node.propose_remove_peer(now, old))
        } else if let Some(&new) = self.rejoining.first() {
            ("add", new, node.propose_add_peer(now, new))
        } else {
            return;
        };
        match result {
            Ok(index) => {
                *self.fault_counts.entry("replacement_change").or_default() += 1;
                self.note(Some(leader), format!("replace: {what} {peer} at {index}"));
                self.drain(leader);
            }
            Err(error) => self.note(Some(leader), format!("replace: {what} {peer}: {error}")),
        }
    }

    /// Run `f` on node `i`'s disk as damage at rest: the disk's injected
    /// call faults (EIO, ENOSPC) are off meanwhile, since no node made the call.
    fn at_rest<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut SimDisk) -> rnats_core::store::DiskResult<T>,
    ) -> rnats_core::store::DiskResult<T> {
        let minority = ((self.spec.nodes as usize).saturating_sub(1) / 2).max(1);
        let faults = if i < minority && !self.healed {
            self.disk_faults
        } else {
            SimDiskFaults::default()
        };
        self.nodes[i].disk.with(|d| {
            d.set_faults(SimDiskFaults::default());
            let result = f(d);
            d.set_faults(faults);
            result
        })
    }

    /// The nodes disk faults may hit: a minority of the founding slots.
    fn minority(&mut self) -> usize {
        let minority = ((self.spec.nodes as usize).saturating_sub(1) / 2).max(1);
        self.faults_rng.below(minority as u64) as usize
    }

    /// A minority node loses power and its disk is wiped: it must come
    /// back as a new member.
    fn wipe(&mut self) {
        let victim = self.minority();
        if self.nodes[victim].node.is_some() {
            self.crash(victim, true);
        }
        // The identity goes first, as a wipe takes everything.
        let result = self.at_rest(victim, |d| {
            let names = d.list("raft")?;
            for name in names {
                d.remove(&rnats_core::store::disk::join("raft", &name))?;
            }
            d.sync_dir("raft")
        });
        *self.fault_counts.entry("wipe").or_default() += 1;
        self.note(Some(victim), format!("disk wiped {result:?}"));
    }

    /// Damage a minority node's log, term/vote or identity file at rest (a
    /// bit flipped; the small files may also be cut short), then kill it so
    /// its restart reads the damage.
    fn damage_log(&mut self) {
        let file =
            ["raft/log", "raft/log", "raft/tav", "raft/id"][self.faults_rng.below(4) as usize];
        // A log cut short on a record boundary looks like an unsynced tail:
        // outside the fault model (ARCHITECTURE.md, RAFT).
        let may_cut = file != "raft/log";
        self.damage_file(file, may_cut, ["log_file_bit_flip", "log_file_truncated"]);
    }

    /// A live node stops handling anything for a while; its clock runs on.
    fn pause(&mut self) {
        let victim = self.faults_rng.below(self.nodes.len() as u64) as usize;
        if self.nodes[victim].node.is_none() || self.paused(victim) {
            return;
        }
        let ms = self.faults_rng.range(1, self.spec.pause_ms_max.max(2));
        let until = self.now + Duration::from_millis(ms);
        self.nodes[victim].paused_until = until;
        self.schedule(until, Event::Resume);
        *self.fault_counts.entry("pause").or_default() += 1;
        self.note(Some(victim), format!("paused {ms} ms"));
    }

    /// A node's monotonic clock jumps forward (a suspended VM) by up to
    /// one maximum election timeout.
    fn clock_jump(&mut self) {
        let victim = self.faults_rng.below(self.nodes.len() as u64) as usize;
        let ms = self.faults_rng.range(1, self.spec.election_ms[1] + 1);
        let now = self.now;
        let clock = &mut self.nodes[victim].clock;
        let ppm = clock.ppm;
        clock.rebase(now, Duration::from_millis(ms), ppm);
        *self.fault_counts.entry("clock_jump").or_default() += 1;
        self.note(Some(victim), format!("clock jumps {ms} ms"));
    }

    /// Damage a minority node's snapshot at rest, then kill it so its
    /// restart reads the damage.
    fn damage_snapshot(&mut self) {
        self.damage_file(
            "raft/snap",
            true,
            ["snapshot_bit_flip", "snapshot_truncated"],
        );
    }

    /// Flip a bit of `path` on a minority node (or, if `may_cut`, as often
    /// cut the file short) and sync it, then kill the node so its restart
    /// reads the damage; `counts` names the two faults.
    fn damage_file(&mut self, path: &str, may_cut: bool, counts: [&'static str; 2]) {
        let victim = self.minority();
        let Some(mut bytes) = self.at_rest(victim, |d| d.read_all(path)).ok().flatten() else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let at = self.faults_rng.below(bytes.len() as u64);
        let result = if !may_cut || self.faults_rng.below(2) == 0 {
            bytes[at as usize] ^= 1 << self.faults_rng.below(8);
            *self.fault_counts.entry(counts[0]).or_default() += 1;
            self.at_rest(victim, |d| {
                d.write_at(path, 0, &bytes).and_then(|()| d.sync(path))
            })
        } else {
            *self.fault_counts.entry(counts[1]).or_default() += 1;
            self.at_rest(victim, |d| d.truncate(path, at).and_then(|()| d.sync(path)))
        };
        if let Err(error) = result {
            return self.fail(format!("damaging n{victim}'s {path}: {error}"));
        }
        self.note(Some(victim), format!("{path} damaged at byte {at}"));
        if self.nodes[victim].node.is_some() {
            self.crash(victim, false);
        }
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        let lasting = Duration::from_millis(self.faults_rng.range(100, 3000));
        // Scenarios without bridges draw as they always did, so their
        // seeds keep finding what they found.
        let kinds = if self.spec.bridges && n >= 3 { 5 } else { 4 };
        let kind = self.faults_rng.below(kinds);
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
            3 => {
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
            // A bridge: two halves joined only through one node.
            _ => {
                let bridge = self.faults_rng.below(n as u64) as usize;
                let others: Vec<usize> = (0..n).filter(|o| *o != bridge).collect();
                let mut sides: Vec<bool> = others
                    .iter()
                    .map(|_| self.faults_rng.below(2) == 0)
                    .collect();
                // Both halves hold a node.
                if sides.iter().all(|s| *s) || sides.iter().all(|s| !*s) {
                    sides[0] = !sides[0];
                }
                for (i, &a) in others.iter().enumerate() {
                    for (j, &b) in others.iter().enumerate() {
                        if sides[i] != sides[j] {
                            cut(self, a, b);
                        }
                    }
                }
                *self.fault_counts.entry("partition_bridge").or_default() += 1;
            }
        }
    }

    fn crash(&mut self, i: usize, power_loss: bool) {
        self.nodes[i].node = None;
        self.nodes[i].transport = None;
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
        for node in &self.nodes {
            node.disk.with(|d| d.set_faults(SimDiskFaults::default()));
        }
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
                        .map(|e| (e.term, e.entries.clone()))
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
            let applied: std::collections::BTreeSet<(u64, u64)> =
                self.nodes[i].applied.iter().copied().collect();
            for (&op, &index) in &self.acked {
                // Through a restored snapshot, the store checked equal to
                // every node's there stands for the applied entries.
                if index > restored_at && !applied.contains(&(index, op)) {
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
        if !self.latencies.is_empty() {
            let mut sorted = self.latencies.clone();
            sorted.sort_unstable();
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize] / 1000;
            jetstream.insert("commit_p50_us", at(0.5));
            jetstream.insert("commit_p99_us", at(0.99));
        }
        // Clients propose from the start until `quiet_at`.
        jetstream.insert("load_ms", self.quiet_at.as_nanos() / 1_000_000);
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
        "raft-wiped-node-votes" => RaftDefect::WipedNodeVotes,
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
