//! rnats-runtime-sim: the deterministic simulator.
//!
//! The same `rnats_core::server::Server` that runs on tokio in production
//! runs here single-threaded on a virtual clock, a simulated network and
//! simulated clients, every choice drawn from one `u64` seed. A world has one
//! or more nodes (the scenario's topology), each its own `Server`:
//!
//! ```text
//!  seed ──► plan (swarm: which faults, what rates)
//!       ──► per-node (server, wall clock), per-client and per-connection
//!           ChaCha streams
//!
//!  event queue (virtual time, seq) ──► step ──► node n: Server::handle_*
//!                                         │        │
//!                                         │   actions ─► pipes (latency, splits,
//!                                         │               stalls, resets, half-open)
//!                                         ▼
//!                                  Model (oracle) ◄── client frames processed,
//!                                         │           messages received
//!                                   invariants after every step; liveness at the end
//! ```
//!
//! Every event and every byte on the network feed a rolling FNV-1a hash; the
//! same seed gives the same hash. Nothing is global: a run owns all its state.
//!
//! One concept per module: `world` (the event queue and stepping), `node` (a
//! server machine and its runtime half), `jetstream` (a node's JetStream
//! machine over its simulated disk, restarts), `conn` (one connection's two
//! ends), `clients` (simulated clients and their workloads), `js_clients`
//! (JetStream publishers), `js_consumers` (JetStream consumer clients), `faults` (the plan
//! drawn from the seed and the injector), `invariants/` (one file per
//! invariant), `model` (the delivery oracle), `net` (pipes), `wire` (the
//! client's parser of server output), `routes` (route links between nodes,
//! partitions) and `route_wire` (the simulator's parser of route streams), `trace`, `rng`, `scenario`, `security`.

#![forbid(unsafe_code)]

mod clients;
mod conn;
pub mod disk;
mod faults;
mod invariants;
mod jetstream;
mod js_clients;
mod js_consumers;
pub mod model;
pub mod net;
mod node;
pub mod raft;
pub mod rng;
mod route_wire;
pub mod routes;
pub mod scenario;
pub mod security;
pub mod trace;
pub mod wire;
mod world;
mod ws;

pub use node::NodeId;
pub use scenario::Scenario;
pub use world::{Failure, Outcome, RunOptions, World};

use rnats_core::server::ServerConfig;

/// Run `scenario` with `options`. A panic inside the server is a failure too.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Outcome, String> {
    let started = if let Some(spec) = &scenario.raft {
        let world = raft::RaftWorld::new(scenario, spec, options)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()))
    } else {
        let world = World::new(scenario, options)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()))
    };
    match started {
        Ok(outcome) => Ok(outcome),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Ok(Outcome {
                scenario: scenario.name.clone(),
                seed: options.seed,
                servers: scenario.topology.servers,
                virtual_time: rnats_core::time::Instant::ZERO,
                events: 0,
                faults: Default::default(),
                closes: Default::default(),
                published: 0,
                delivered: 0,
                checks: 0,
                trace_hash: 0,
                failure: Some(Failure {
                    message: format!("panic: {text}"),
                    at: rnats_core::time::Instant::ZERO,
                    recent: Vec::new(),
                }),
                jetstream: Default::default(),
                plan: String::new(),
            })
        }
    }
}

/// The planted defects a run may select (feature `planted-defects`).
pub fn defect_names() -> &'static [&'static str] {
    &[
        "drop-split-frame",
        "queue-double-delivery",
        "hpub-loses-reply",
        "slow-subscriber-blocks-publisher",
        "deny-ignored-on-delivery",
        "hpub-skips-publish-permissions",
        "ack-before-sync",
        "consumer-ack-lost-on-restart",
        "redelivery-timer-not-rearmed",
        "route-unsubscribe-lost",
        "route-duplicate-forward",
        "revocation-ignored-for-connected",
        "new-permissions-ignored-for-connected",
        "raft-vote-not-durable",
        "raft-ack-before-durable",
        "raft-commit-old-term",
    ]
}

#[cfg(feature = "planted-defects")]
pub(crate) fn apply_defect(config: &mut ServerConfig, name: &str) -> Result<(), String> {
    use rnats_core::server::PlantedDefect;
    let defect = match name {
        "drop-split-frame" => PlantedDefect::DropSplitFrame,
        "queue-double-delivery" => PlantedDefect::QueueDoubleDelivery,
        "hpub-loses-reply" => PlantedDefect::HpubLosesReply,
        "slow-subscriber-blocks-publisher" => PlantedDefect::SlowSubscriberBlocksPublisher,
        "deny-ignored-on-delivery" => PlantedDefect::DenyIgnoredOnDelivery,
        "hpub-skips-publish-permissions" => PlantedDefect::HpubSkipsPublishPermissions,
        "ack-before-sync" => PlantedDefect::AckBeforeSync,
        "consumer-ack-lost-on-restart" => PlantedDefect::ConsumerAckLostOnRestart,
        "redelivery-timer-not-rearmed" => PlantedDefect::RedeliveryTimerNotRearmed,
        "route-unsubscribe-lost" => PlantedDefect::RouteUnsubscribeLost,
        "route-duplicate-forward" => PlantedDefect::RouteDuplicateForward,
        "revocation-ignored-for-connected" => PlantedDefect::RevocationIgnoredForConnected,
        "new-permissions-ignored-for-connected" => PlantedDefect::NewPermissionsIgnoredForConnected,
        other => {
            return Err(format!(
                "unknown defect {other:?}; known: {:?}",
                defect_names()
            ))
        }
    };
    config.planted_defect = Some(defect);
    Ok(())
}

#[cfg(not(feature = "planted-defects"))]
pub(crate) fn apply_defect(_config: &mut ServerConfig, name: &str) -> Result<(), String> {
    Err(format!(
        "defect {name:?} needs the planted-defects feature (cargo run -p rnats-runtime-sim --features planted-defects)"
    ))
}
