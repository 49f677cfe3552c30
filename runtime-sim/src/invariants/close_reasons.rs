//! Safety: the server closes a connection only for a reason its client gave.
//!
//! A healthy client (reading, connected, not stalled) may be closed only
//! because it closed first (`Client Closed`). A slow-consumer or stale
//! connection cut is excused when the client stopped reading, vanished, or
//! a stall touched the connection. A revoked user's connection may be
//! closed for the revocation or its refused login. Any other reason (a protocol error, a
//! parse error, ...) is allowed only for a client that sends malformed frames.

use rnats_core::runtime::{CloseReason, ConnId};

use crate::node::NodeId;
use crate::scenario::Role;
use crate::world::World;

/// Whether `node` may close `id` for `reason` now.
pub(crate) fn check(
    world: &World,
    node: NodeId,
    id: ConnId,
    reason: CloseReason,
) -> Result<(), String> {
    let Some(conn) = world.nodes[node.index()].conns.get(&id) else {
        // The server closes only connections it was handed; the node never
        // forgets one.
        return Err(format!(
            "{node}: the server closed {id}, which it never accepted"
        ));
    };
    let role = world.clients[conn.client].role;
    let excused = conn.client_gone || conn.paused || conn.stalled;
    let allowed = match reason {
        CloseReason::SlowConsumerPendingBytes
        | CloseReason::SlowConsumerWriteDeadline
        | CloseReason::StaleConnection => excused,
        CloseReason::ClientClosed => true,
        // A claims update revoked its user: closed when it was open,
        // refused when its CONNECT came after.
        CloseReason::Revocation | CloseReason::AuthenticationViolation
            if world.model.revoked(id) =>
        {
            true
        }
        _ => role == Role::Malformed,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "{id} ({role:?}, healthy) was closed by the server: {}",
            reason.as_str()
        ))
    }
}
