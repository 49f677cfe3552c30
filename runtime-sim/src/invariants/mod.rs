//! The invariants, one file each (openraft's turmoil style), checked in two
//! phases:
//!
//! Safety, after every step (a violation fails the run at once):
//! - `close_reasons`: the server closes a healthy client only as it asked
//!   (a graceful close), never as a slow consumer or stale connection unless
//!   it stopped reading, vanished or sat behind a stall, and never otherwise
//!   unless it sent a malformed frame;
//! - `memory_bounds`: every open connection's pending output stays within
//!   `max_pending` plus one frame's slack, and after `handle_read` the read
//!   buffer holds at most one partial frame;
//! - delivery (the oracle, `crate::model`): subjects, replies, headers and
//!   payloads as published; no duplicate; per-publisher order; nothing a
//!   subscriber was owed skipped; queue groups at most once; `+OK` and `-ERR`
//!   exactly as owed;
//! - the server's output always parses (`crate::wire`), it never panics, and
//!   the virtual clock never goes back (`crate::world`).
//!
//! - `jetstream`: acknowledgements only once durable, sequences unique and
//!   increasing, duplicates acked with the original sequence, acknowledged
//!   messages read back intact after restarts, limits kept in STREAM.INFO;
//! - `consumers`: deliveries intact, counts within `max_deliver`, first
//!   deliveries increasing per server process and above what was shown
//!   durable, nothing redelivered after its ack was confirmed, consumer
//!   info consistent with what the client saw;
//! - `websocket`: the node's frame decoder holds back at most a header and
//!   a control payload; the client decodes no more than the server framed;
//!
//! Liveness, at the end, after the heal phase:
//! - `progress`: every healthy client's bytes written up to the mark (two
//!   seconds before the end) were processed, and every client that sent a
//!   malformed frame was closed;
//! - convergence (the oracle, `Model::check_converged`): every owed message,
//!   queue-group delivery, reply, `+OK` and `-ERR` arrived;
//! - `jetstream`: every publish of a JetStream publisher still connected was
//!   answered;
//! - `consumers`: every consumer settled in the heal phase with nothing
//!   pending and every acknowledged message delivered;
//! - routes (`crate::routes`, `Model::check_route_interest`): every pair of
//!   nodes joined by exactly one open route, each end's learned interest
//!   equal to its peer's real interest, no routed message still owed.
//!
//! Each check reads the world and returns the failure text; the world
//! records it (and the trace marks it).

pub(crate) mod close_reasons;
pub(crate) mod consumers;
pub(crate) mod jetstream;
pub(crate) mod memory_bounds;
pub(crate) mod progress;
pub(crate) mod websocket;

use crate::world::World;

/// After every step that did not already fail. Returns how many facts it checked.
pub(crate) fn check_safety(world: &World) -> Result<u64, String> {
    memory_bounds::check_pending(world)
}

/// At the end: the world's own progress first, then the oracle's convergence.
pub(crate) fn check_liveness(world: &mut World) -> Result<(), String> {
    progress::check(world)?;
    jetstream::check_liveness(world)?;
    consumers::check_liveness(world)?;
    world.check_routes_converged()?;
    world.model.check_converged()
}
