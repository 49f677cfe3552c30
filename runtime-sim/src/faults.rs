//! Faults: the plan drawn from the seed, and the injector that carries it out.
//!
//! [`FaultPlan::draw`] turns a scenario's ceilings into this run's rates
//! (swarm testing: each fault is off in about one run in four, otherwise its
//! rate is drawn below the ceiling). Every `FAULT_TICK` of virtual time the
//! injector rolls its dice from the world's fault stream: reset, half-open or
//! stall a live connection (any node's), and jump each node's wall clock.
//! At the heal the world switches to [`FaultPlan::healed`]: latency, jitter
//! and splits stay (they are not faults a system must recover from), the rest
//! stop, and every stall ends.
//!
//! Invariant: every draw the injector makes comes from `fault_rng` (whether
//! to reset, half-open or stall, which connection, which direction, how
//! long) or from a node's own wall-clock stream (whether and how far its
//! clock jumps), so a workload change never moves a fault, and a node added
//! to a scenario leaves the other nodes' clocks alone.

use std::time::Duration;

use rnats_core::runtime::ConnId;

use crate::node::NodeId;
use crate::rng::Rng;
use crate::scenario::FaultSpec;
use crate::world::{Event, World, MS, SECOND};

/// How often the fault injector rolls its dice.
pub(crate) const FAULT_TICK: u64 = 50 * MS;

/// The fault rates of one run, drawn from the seed.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    pub(crate) latency_min: u64,
    pub(crate) latency_max: u64,
    pub(crate) jitter_max: u64,
    /// Chance that a write is cut into segments, or a read cut short.
    pub(crate) split: f64,
    pub(crate) reset_per_s: f64,
    pub(crate) half_open_per_s: f64,
    pub(crate) stall_per_s: f64,
    pub(crate) stall_max: u64,
    pub(crate) refuse: f64,
    pub(crate) wall_jump_per_s: f64,
    /// Node restarts per second (whole run): process kills, power losses.
    pub(crate) kill_per_s: f64,
    pub(crate) power_loss_per_s: f64,
    /// Partitions between two nodes per second, each up to `partition_max`.
    pub(crate) partition_per_s: f64,
    pub(crate) partition_max: u64,
    pub(crate) route_reset_per_s: f64,
}

impl FaultPlan {
    pub(crate) fn draw(spec: &FaultSpec, rng: &mut Rng) -> FaultPlan {
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
        // Drawn last, and not at all when off: scenarios without restarts
        // keep the draws they always had.
        let mut rate = |max: f64| {
            if max <= 0.0 || rng.chance(0.25) {
                0.0
            } else {
                max * rng.unit()
            }
        };
        let kill_per_s = rate(spec.kill_per_s_max);
        let power_loss_per_s = rate(spec.power_loss_per_s_max);
        let partition_per_s = rate(spec.partition_per_s_max);
        let route_reset_per_s = rate(spec.route_reset_per_s_max);
        let plan = FaultPlan {
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
            kill_per_s,
            power_loss_per_s,
            partition_per_s,
            partition_max: (spec.partition_ms_max * MS as f64) as u64,
            route_reset_per_s,
        };
        assert!(plan.latency_min <= plan.latency_max);
        assert!((0.0..=1.0).contains(&plan.split));
        plan
    }

    /// The plan after the heal: the network stays as slow and as choppy,
    /// nothing breaks any more.
    pub(crate) fn healed(&self) -> FaultPlan {
        FaultPlan {
            reset_per_s: 0.0,
            half_open_per_s: 0.0,
            stall_per_s: 0.0,
            refuse: 0.0,
            wall_jump_per_s: 0.0,
            kill_per_s: 0.0,
            power_loss_per_s: 0.0,
            partition_per_s: 0.0,
            route_reset_per_s: 0.0,
            ..self.clone()
        }
    }

    /// One-way latency for one segment.
    pub(crate) fn latency(&self, rng: &mut Rng) -> u64 {
        rng.range(self.latency_min, self.latency_max) + rng.below(self.jitter_max + 1)
    }
}

impl World {
    pub(crate) fn fault_tick(&mut self) {
        let dt = FAULT_TICK as f64 / SECOND as f64;
        let plan = self.active_plan.clone();
        if self.fault_rng.chance(plan.reset_per_s * dt) {
            if let Some((node, id)) = self.pick_live_conn() {
                self.reset(node, id, "reset");
            }
        }
        if self.fault_rng.chance(plan.half_open_per_s * dt) {
            if let Some((node, id)) = self.pick_live_conn() {
                self.half_open(node, id, "half-open");
            }
        }
        if self.fault_rng.chance(plan.stall_per_s * dt) {
            if let Some((node, id)) = self.pick_live_conn() {
                let until =
                    self.now + Duration::from_nanos(self.fault_rng.range(1, plan.stall_max.max(1)));
                let down = self.fault_rng.chance(0.5);
                let conn = self.nodes[node.index()]
                    .conns
                    .get_mut(&id)
                    .expect("conn exists");
                conn.stalled = true;
                let pipe = if down { &mut conn.down } else { &mut conn.up };
                pipe.stalled_until = pipe.stalled_until.max(until);
                self.count_fault(Some(node), if down { "stall-down" } else { "stall-up" });
            }
        }
        // Rolled only when on, so scenarios without restarts draw as before.
        for (rate, power_loss) in [(plan.kill_per_s, false), (plan.power_loss_per_s, true)] {
            if rate > 0.0 && self.fault_rng.chance(rate * dt) {
                let node = self.fault_rng.below(self.nodes.len() as u64) as u32;
                self.restart_node(NodeId(node), power_loss);
            }
        }
        // Rolled only when on, as the restarts.
        self.route_faults(dt);
        // Each node's wall clock jumps on its own, rolled from the node's own
        // stream: adding a node moves neither the injector's other choices
        // nor another node's clock.
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            let id = node.id;
            if node.wall_rng.chance(plan.wall_jump_per_s * dt) {
                self.wall_jump(id);
            }
        }
        if !self.healed {
            self.schedule(
                self.now + Duration::from_nanos(FAULT_TICK),
                Event::FaultTick,
            );
        }
    }

    fn wall_jump(&mut self, node: NodeId) {
        let now = self.now;
        let target = &mut self.nodes[node.index()];
        let jump = target.wall_rng.range(0, 20 * SECOND) as i64 - 10 * SECOND as i64;
        target.wall_offset += jump;
        let wall = target.wall_time(now);
        target.server.set_wall_clock(now, wall);
        self.count_fault(Some(node), "wall-clock-jump");
        self.trace
            .record(now, Some(node), "wall-time", 0, wall.as_unix_nanos());
    }

    /// A connection open on both ends, any node's, drawn from the fault stream.
    fn pick_live_conn(&mut self) -> Option<(NodeId, ConnId)> {
        let live: Vec<(NodeId, ConnId)> = self
            .nodes
            .iter()
            .flat_map(|node| {
                node.conns
                    .iter()
                    .filter(|(_, c)| c.is_live())
                    .map(|(id, _)| (node.id, *id))
            })
            .collect();
        (!live.is_empty()).then(|| *self.fault_rng.pick(&live))
    }

    /// Both pipes die at once; the client knows at once, the server one
    /// latency later (its next read or write fails).
    pub(crate) fn reset(&mut self, node: NodeId, id: ConnId, kind: &'static str) {
        self.count_fault(Some(node), kind);
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        conn.up.kill();
        conn.down.kill();
        let delay = self.active_plan.latency(&mut conn.rng);
        self.client_loses(node, id);
        self.schedule(
            self.now + Duration::from_nanos(delay),
            Event::ServerSeesReset { node, conn: id },
        );
    }

    /// The client host is gone without a word: nothing more is sent or read,
    /// and the server learns of it only through its keepalive.
    pub(crate) fn half_open(&mut self, node: NodeId, id: ConnId, kind: &'static str) {
        self.count_fault(Some(node), kind);
        self.client_loses(node, id);
    }

    /// Faults stop, stalls end; the liveness phase begins.
    pub(crate) fn heal(&mut self) {
        self.healed = true;
        self.active_plan = self.plan.healed();
        let now = self.now;
        for conn in self.nodes.iter_mut().flat_map(|n| n.conns.values_mut()) {
            conn.up.stalled_until = conn.up.stalled_until.min(now);
            conn.down.stalled_until = conn.down.stalled_until.min(now);
        }
        self.heal_routes();
        self.trace.record(self.now, None, "healed", 0, 0);
    }
}
