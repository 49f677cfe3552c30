//! Liveness: the servers make progress on what healthy clients send.
//!
//! At the end (after the heal phase), on every node:
//! - a healthy connection's bytes written up to the mark (two seconds
//!   before the end) were all handed to the server (no stuck publisher:
//!   a lost wake-up or a read that never happens shows here);
//! - a client whose malformed frame the server was handed was closed, unless
//!   the client itself went first;
//! - every run-time claims update was processed.

use crate::world::World;

pub(crate) fn check(world: &World) -> Result<(), String> {
    if let Some(security) = &world.scenario.security {
        let due = security.jwt_updates.len();
        let applied = world.model.updates_applied.len();
        if applied != due {
            return Err(format!(
                "the server processed {applied} of the {due} claims updates"
            ));
        }
    }
    for node in &world.nodes {
        for (id, conn) in &node.conns {
            let malformed_seen = conn.malformed_end.is_some_and(|end| conn.handed >= end);
            if malformed_seen && !conn.server_closed && !conn.client_gone {
                return Err(format!(
                    "{id}: the server never closed a client that sent a malformed frame"
                ));
            }
            // Open on both ends and still reading: it must have kept up.
            if conn.is_live() && !conn.paused && conn.handed < conn.written_mark {
                return Err(format!(
                    "{id}: the server processed {} of the {} bytes its client wrote before the end (stuck)",
                    conn.handed, conn.written_mark
                ));
            }
        }
    }
    Ok(())
}
