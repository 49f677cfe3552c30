//! JetStream on a node: the runtime half that runs core's JetStream machine
//! beside the node's server machine, over the node's own simulated disk.
//!
//! Like runtime-tokio's JetStream thread, but in the world's event loop:
//! after every server step the messages the server routed to JetStream
//! (`poll_jetstream`) are handed to the machine in the same step, and its
//! actions carried out at once: `Publish`, `Listen` and `Log` go back into
//! the server; a `Sync` is performed on the simulated disk as a scheduled
//! event one drawn fsync latency later (`Event::JsSyncDone`), and only then
//! reported with `handle_sync_done`. JetStream's timers are world events too.
//! Each stream's own inputs (its publishes, its consumers' acks, its syncs)
//! run on a loan of that stream (`JetStream::lend`, core's `jetstream::loan`),
//! restored right after: the code runtime-tokio runs on several threads at
//! once, run here in the one event loop.
//!
//! A restart (process kill or power loss, from the fault injector) replaces
//! the node's server and JetStream machines: connections die with the
//! process, the disk keeps every write (kill) or only what was synced
//! (power loss), and JetStream is opened again over it.
//!
//! Invariants:
//! - a sync completion from before a restart never reaches the new machine
//!   (`generation`), and a sync is performed on the disk only when it completes;
//! - checked here, on every acknowledgement JetStream releases (safety,
//!   `invariants::jetstream::check_ack_durable`): the acknowledged sequence
//!   survives a power loss at that very instant;
//! - every draw comes from the node's own JETSTREAM and RESTART streams.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::runtime::ContractCheck;
use rnats_core::server::{Server, ServerConfig};
use rnats_core::store::perform_sync;
use rnats_core::time::Instant;

use crate::disk::{SharedSimDisk, SimDisk, SimDiskFaults};
use crate::invariants;
use crate::node::NodeId;
use crate::rng::{stream, Rng};
use crate::scenario::JetStreamSpec;
use crate::world::{Event, World, MS};

/// A node's JetStream machine and what its runtime half keeps.
pub(crate) struct JsNode {
    pub(crate) machine: JetStream<SharedSimDisk>,
    /// The node's disk: survives restarts (a power loss drops what was not synced).
    pub(crate) disk: SharedSimDisk,
    /// Sync latencies.
    rng: Rng,
    spec: JetStreamSpec,
    /// The earliest `JsTimer` queued, if still ahead.
    timer_at: Option<Instant>,
    /// Bumped at every restart: completions of the previous process are dropped.
    pub(crate) generation: u64,
    /// Syncs asked for and not yet performed, by (stream, tag), oldest
    /// first: a stream stopped and recovered under the same id (its
    /// account's JetStream turned off and on) asks again with the tags of
    /// its new store while the old store's may still be out. The machine
    /// tells the store only once both are done, so which files the first
    /// completion syncs does not matter.
    syncs: BTreeMap<(StreamId, u64), VecDeque<SyncFiles>>,
    /// Acknowledgements checked durable when released.
    pub(crate) acks_checked: u64,
    /// Per stream, each sequence stored by this process and not yet
    /// acknowledged, with the disk's serial right after it was stored:
    /// its acknowledgement must find every operation through that serial
    /// in the stream's directory synced.
    pub(crate) stored: BTreeMap<StreamId, VecDeque<(u64, u64)>>,
}

/// The files and directories one sync covers.
type SyncFiles = (Vec<String>, Vec<String>);

/// Stored sequences remembered per stream, at most (acks consume them).
const STORED_MAX: usize = 4096;

impl JsNode {
    fn last_seq(&self, id: StreamId) -> Option<u64> {
        self.machine
            .streams()
            .find(|entry| entry.stream.id == id)
            .map(|entry| entry.stream.state().last_seq)
    }

    /// Remember what the disk had done when `id` stored `seq`.
    fn note_stored(&mut self, id: StreamId, seq: u64) {
        let serial = self.disk.with(|disk| disk.serial());
        let queue = self.stored.entry(id).or_default();
        if queue.len() == STORED_MAX {
            queue.pop_front();
        }
        queue.push_back((seq, serial));
    }
}

/// The JetStream settings every simulated node runs with.
pub(crate) fn js_config() -> JetStreamConfig {
    JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
}

fn open_machine(
    node: NodeId,
    config: &ServerConfig,
    disk: &SharedSimDisk,
    now: Instant,
    wall: rnats_core::time::WallTime,
) -> JetStream<SharedSimDisk> {
    let js = config.jetstream.clone().expect("a JetStream node");
    let accounts: BTreeMap<String, AccountLimits> =
        rnats_core::jetstream::config::enabled_accounts(config);
    #[allow(unused_mut)]
    let mut machine = JetStream::open(node.to_string(), js, accounts, disk.clone(), now, wall);
    #[cfg(feature = "planted-defects")]
    if let Some(defect) = config.planted_defect {
        machine.plant(defect);
    }
    machine
}

impl JsNode {
    /// Node `node`'s JetStream at start, over a fresh disk.
    pub(crate) fn start(
        node: NodeId,
        config: &ServerConfig,
        spec: &JetStreamSpec,
        run_seed: u64,
        wall: rnats_core::time::WallTime,
    ) -> JsNode {
        let disk_rng = Rng::stream(run_seed, stream::node(stream::DISK, node.0));
        let disk = SharedSimDisk::new(SimDisk::new(disk_rng, SimDiskFaults::default()));
        let machine = open_machine(node, config, &disk, Instant::ZERO, wall);
        JsNode {
            machine,
            disk,
            rng: Rng::stream(run_seed, stream::node(stream::JETSTREAM, node.0)),
            spec: spec.clone(),
            timer_at: None,
            generation: 0,
            syncs: BTreeMap::new(),
            acks_checked: 0,
            stored: BTreeMap::new(),
        }
    }
}

impl World {
    /// Hand everything the server routed to JetStream to the machine and
    /// carry out what the machine asks. Returns whether the server was
    /// handed anything (its actions must be drained again).
    pub(crate) fn pump_jetstream(&mut self, node: NodeId) -> bool {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let wall = target.wall_time(now);
        let Some(js) = target.js.as_mut() else {
            return false;
        };
        if let Some(accounts) = target.server.take_jetstream_accounts() {
            // A claims update: before the messages routed after it.
            js.machine.set_accounts(accounts);
        }
        let mut inbound = 0u64;
        while let Some(msg) = target.server.poll_jetstream() {
            inbound += 1;
            self.trace.record_bytes(&msg.subject);
            self.trace.record_bytes(&msg.payload);
            let stream = match msg.target {
                JsTarget::Stream(id) => Some((id, js.last_seq(id))),
                JsTarget::Api
                | JsTarget::System
                | JsTarget::Consumer(..)
                | JsTarget::Interest(..)
                | JsTarget::ReplyGone(..)
                | JsTarget::Snapshot(_)
                | JsTarget::Feed(..) => None,
            };
            // A stream's own traffic runs on a loan of that stream, as
            // runtime-tokio runs it beside other streams' (restored at
            // once here: one event loop).
            match msg
                .target
                .lendable_stream()
                .and_then(|id| js.machine.lend(id))
            {
                Some(mut loan) => {
                    loan.handle_inbound(now, wall, msg);
                    js.machine.restore(loan);
                }
                None => js.machine.handle_inbound(now, wall, msg),
            }
            if let Some((id, Some(before))) = stream {
                if let Some(after) = js.last_seq(id).filter(|after| *after > before) {
                    js.note_stored(id, after);
                }
            }
        }
        if inbound > 0 {
            self.trace.record(now, Some(node), "js-inbound", inbound, 0);
        }
        self.carry_out_jetstream(node)
    }

    /// Carry out the machine's queued actions; returns whether the server
    /// was handed any.
    fn carry_out_jetstream(&mut self, node: NodeId) -> bool {
        let now = self.now;
        let mut for_server = false;
        let mut acks = Vec::new();
        loop {
            let target = &mut self.nodes[node.index()];
            let Some(js) = target.js.as_mut() else {
                return false;
            };
            let Some(action) = js.machine.poll_action() else {
                break;
            };
            match action {
                JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } => {
                    let [low, high] = js.spec.fsync_ms;
                    let low = (low * MS as f64) as u64;
                    let high = ((high * MS as f64) as u64).max(low);
                    let latency = js.rng.range(low, high);
                    let waiting = js.syncs.entry((stream, tag)).or_default();
                    waiting.push_back((files, dirs));
                    assert!(waiting.len() <= 2, "sync {tag} of {stream:?} asked again");
                    let generation = js.generation;
                    self.trace.record(now, Some(node), "js-sync", stream.0, tag);
                    self.schedule(
                        now + Duration::from_nanos(latency),
                        Event::JsSyncDone {
                            node,
                            stream,
                            tag,
                            generation,
                        },
                    );
                }
                other => {
                    if let JsAction::Publish {
                        account, payload, ..
                    } = &other
                    {
                        self.trace.record_bytes(payload);
                        if let Some(ack) = invariants::jetstream::parse_ack(payload) {
                            acks.push((account.to_string(), ack));
                        }
                    }
                    for_server = true;
                    target.server.handle_jetstream(now, other);
                }
            }
        }
        if !acks.is_empty() && !self.client_checks_only {
            self.model.stats.checks += acks.len() as u64;
            if let Err(error) = invariants::jetstream::check_ack_durable(self, node, &acks) {
                self.fail(error);
            }
        }
        self.arm_js_timer(node);
        for_server
    }

    fn arm_js_timer(&mut self, node: NodeId) {
        let now = self.now;
        let Some(js) = self.nodes[node.index()].js.as_mut() else {
            return;
        };
        if js.timer_at.is_some_and(|at| at <= now) {
            js.timer_at = None;
        }
        if let Some(deadline) = js.machine.poll_timeout() {
            if js.timer_at.is_none_or(|at| deadline < at) {
                js.timer_at = Some(deadline);
                self.schedule(deadline, Event::JsTimer { node });
            }
        }
    }

    /// JetStream's timer: sync timers, expiries, dedupe windows.
    pub(crate) fn js_timer(&mut self, node: NodeId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let wall = target.wall_time(now);
        let Some(js) = target.js.as_mut() else {
            return;
        };
        if js.timer_at.is_some_and(|at| at <= now) {
            js.timer_at = None;
        }
        if js.machine.poll_timeout().is_some_and(|t| t <= now) {
            js.machine.handle_timeout(now, wall);
        }
        if self.carry_out_jetstream(node) {
            self.drain_actions(node);
        }
        self.arm_js_timer(node);
    }

    /// A sync completes: performed on the disk now, then reported.
    pub(crate) fn js_sync_done(
        &mut self,
        node: NodeId,
        stream: StreamId,
        tag: u64,
        generation: u64,
    ) {
        let Some(js) = self.nodes[node.index()].js.as_mut() else {
            return;
        };
        if js.generation != generation {
            // Asked by a process that is gone.
            return;
        }
        let waiting = js
            .syncs
            .get_mut(&(stream, tag))
            .expect("a sync completes once");
        let (files, dirs) = waiting.pop_front().expect("empty entries are removed");
        if waiting.is_empty() {
            js.syncs.remove(&(stream, tag));
        }
        let mut disk = js.disk.clone();
        let result = perform_sync(&mut disk, &files, &dirs);
        self.trace
            .record(self.now, Some(node), "js-sync-done", stream.0, tag);
        match js.machine.lend(stream) {
            Some(mut loan) => {
                loan.handle_sync_done(tag, result);
                js.machine.restore(loan);
            }
            None => js.machine.handle_sync_done(stream, tag, result),
        }
        if self.carry_out_jetstream(node) {
            self.drain_actions(node);
        }
    }

    /// The node's process dies and starts again at once: every connection
    /// is gone, the disk keeps every write (`power_loss`: only synced ones),
    /// and a new server and JetStream machine start over that disk.
    pub(crate) fn restart_node(&mut self, node: NodeId, power_loss: bool) {
        self.count_fault(
            Some(node),
            if power_loss {
                "power-loss"
            } else {
                "process-kill"
            },
        );
        self.restart_routes(node);
        let ids: Vec<_> = self.nodes[node.index()].conns.keys().copied().collect();
        for id in ids {
            let conn = self.nodes[node.index()]
                .conns
                .get_mut(&id)
                .expect("listed conn");
            if conn.server_closed {
                continue;
            }
            // The kernel resets every socket of a dead process.
            conn.server_closed = true;
            conn.up.kill();
            conn.down.kill();
            conn.server_out.clear();
            self.model.server_closed(id);
            if !self.nodes[node.index()].conns[&id].client_gone {
                self.client_loses(node, id);
            }
        }
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        target.restarts += 1;
        let seed = target.restart_rng.next_u64();
        let mut config = target.config.clone();
        if config.cluster.is_some() {
            // A new process is a new server to its peers.
            config.identity.server_id =
                format!("{}R{}", config.identity.server_id, target.restarts);
        }
        target.server = Server::new(config, seed);
        target.contract = ContractCheck::default();
        target.timer_at = None;
        let wall = target.wall_time(now);
        target.server.set_wall_clock(now, wall);
        if let Some(js) = target.js.as_mut() {
            js.disk.with(|disk| {
                if power_loss {
                    disk.power_loss();
                } else {
                    disk.process_kill();
                }
            });
            js.generation += 1;
            js.syncs.clear();
            js.stored.clear();
            js.timer_at = None;
            js.machine = open_machine(node, &target.config, &js.disk, now, wall);
        }
        self.trace
            .record(now, Some(node), "restarted", u64::from(power_loss), seed);
        self.drain_actions(node);
    }
}
