//! Websocket framing (`crate::ws`), checked at every read of either end:
//! - the node's frame decoder holds back at most one frame header with a
//!   control payload: data payloads stream through to the client parser,
//!   so a client cannot make the node buffer more by splitting frames;
//! - the client never decodes more NATS bytes than the server put into
//!   frames (a frame header read as data, or a payload decoded twice).
//!
//! That every frame is well formed both ways is checked where the bytes are
//! decoded (a decoder error fails the run).

use rnats_core::runtime::ConnId;
use rnats_core::websocket::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER};

/// After the node decoded what it read: `undecoded` bytes wait for the rest
/// of a header or control frame.
pub(crate) fn check_undecoded(id: ConnId, undecoded: usize) -> Result<(), String> {
    if undecoded > MAX_HEADER + MAX_CONTROL_PAYLOAD {
        return Err(format!(
            "{id}: the websocket decoder holds {undecoded} undecoded bytes (at most {} allowed)",
            MAX_HEADER + MAX_CONTROL_PAYLOAD
        ));
    }
    Ok(())
}

/// After the client decoded what it read.
pub(crate) fn check_received(id: ConnId, sent: u64, received: u64) -> Result<(), String> {
    if received > sent {
        return Err(format!(
            "{id}: the websocket client decoded {received} NATS bytes, the server framed {sent}"
        ));
    }
    Ok(())
}
