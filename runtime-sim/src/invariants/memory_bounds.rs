//! Safety: the server stays inside its memory bounds.
//!
//! - Pending output: an open connection holds at most `max_pending` plus
//!   one frame's slack (a frame is appended whole before the limit is
//!   checked) plus one read's worth of fan-out; past that it must have been
//!   cut off as a slow consumer.
//! - Read buffer: after `handle_read` the server keeps at most one partial
//!   frame, so the runtime's buffer never grows with the input.

use rnats_core::runtime::ConnId;

use crate::scenario::ServerSpec;
use crate::world::World;

/// Slack over `max_pending` one connection may hold for a moment.
fn slack(server: &ServerSpec) -> usize {
    server.max_payload + server.max_control_line + 64 * 1024
}

/// Every node's open connections. Returns how many facts it checked.
pub(crate) fn check_pending(world: &World) -> Result<u64, String> {
    let server = &world.scenario.server;
    let slack = slack(server);
    let bound = server.max_pending + slack;
    let mut checked = 0u64;
    for node in &world.nodes {
        let mut total = 0usize;
        let mut open = 0usize;
        for id in node.conns.keys() {
            let Some(client) = node.server.client(*id) else {
                continue;
            };
            if client.is_closing() {
                continue;
            }
            open += 1;
            let pending = client.pending_bytes();
            total += pending;
            if pending > bound {
                return Err(format!(
                    "{id}: {pending} bytes pending at the server, over max_pending {} (+{slack} slack) and not cut off",
                    server.max_pending
                ));
            }
        }
        checked += 1 + open as u64;
        if total > open * bound {
            return Err(format!(
                "{}: the server holds {total} bytes for {open} connections",
                node.id
            ));
        }
    }
    Ok(checked)
}

/// What `handle_read` left in `id`'s read buffer: at most one partial frame.
pub(crate) fn check_read_buffer(world: &World, id: ConnId, held: usize) -> Result<(), String> {
    let server = &world.scenario.server;
    let max = server.max_payload.max(server.max_control_line) + 16;
    if held > max {
        return Err(format!(
            "{id}: the server left {held} bytes unprocessed in its read buffer (more than one partial frame)"
        ));
    }
    Ok(())
}
