//! WebSocket connections in the simulator: both ends of the framing that
//! `runtime-tokio/src/runner/websocket.rs` runs around the server machine.
//!
//! The client's NATS bytes are what the model counts (`Conn::written`,
//! `Conn::handed` and the frame offsets stay in NATS bytes); on the wire
//! they travel as masked client frames, each write cut at random points into
//! a binary frame and continuations, now and then with a ping between the
//! pieces. The node decodes them with core's `FrameDecoder` before
//! `handle_read`, answers pings with pongs, and sends each outbound batch as
//! one binary frame, then the close frame for the server's reason, as the
//! runtime does. The client side reads the `101` answer first and then the
//! server's frames with a decoder of its own.
//!
//! The HTTP upgrade happens at accept, like the simulated TLS handshake:
//! the node judges the client's request with core's `handshake::upgrade` and
//! the `101` it answers is the first thing down the pipe.
//!
//! Invariants (checked in `invariants/websocket.rs`):
//! - what the node holds undecoded is at most one frame header with a
//!   control payload (the decoder streams data payloads through);
//! - every byte the server sends after the `101` is a well-formed frame,
//!   and the client decodes no more NATS bytes than the server framed.

use std::collections::VecDeque;

use bytes::BytesMut;
use rnats_core::websocket::frame::{self, ControlEvent, FrameDecoder, FrameError, Opcode};
use rnats_core::websocket::handshake;
use rnats_core::websocket::WebSocketConfig;

use crate::rng::Rng;

/// The client's upgrade request (the key is RFC 6455's example).
pub(crate) const UPGRADE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nUser-Agent: rnats-sim\r\n\r\n";

/// The websocket listener every simulated node has when a scenario has
/// websocket clients.
pub(crate) fn listener_config() -> WebSocketConfig {
    WebSocketConfig {
        host: "0.0.0.0".to_string(),
        port: 8080,
        no_tls: true,
        ..WebSocketConfig::default()
    }
}

/// The node's answer to [`UPGRADE_REQUEST`]: core parses and judges it.
pub(crate) fn upgrade_response(config: &WebSocketConfig) -> Result<Vec<u8>, String> {
    let (request, used) = handshake::parse_request(UPGRADE_REQUEST)
        .map_err(|error| format!("upgrade request refused: {error:?}"))?
        .ok_or("upgrade request incomplete")?;
    assert_eq!(used, UPGRADE_REQUEST.len());
    let policy = config.policy();
    let upgrade = handshake::upgrade(&request, &policy)
        .map_err(|refusal| format!("upgrade refused: {refusal:?}"))?;
    Ok(upgrade.response(&policy))
}

/// Both ends of one connection's framing.
pub(crate) struct WsLink {
    /// The node's decoder of client frames (masks required).
    pub(crate) server_decoder: FrameDecoder,
    /// Raw bytes read by the node, not yet decoded.
    pub(crate) server_raw: BytesMut,
    /// Framed bytes in `server_out` per outbound batch, in order, with the
    /// NATS bytes each carries: the server hears of a batch as written once
    /// its whole frame is in the pipe, as in the runtime.
    pub(crate) out_batches: VecDeque<(usize, usize)>,
    /// The client has not yet read the whole `101` answer.
    pub(crate) awaiting_101: bool,
    /// The client's decoder of server frames (unmasked).
    pub(crate) client_decoder: FrameDecoder,
    /// Raw bytes the client read, not yet decoded.
    pub(crate) client_raw: BytesMut,
    /// NATS bytes the server put into frames, and the client decoded.
    pub(crate) nats_sent: u64,
    pub(crate) nats_received: u64,
}

impl WsLink {
    pub(crate) fn new() -> WsLink {
        WsLink {
            server_decoder: FrameDecoder::new(true, false),
            server_raw: BytesMut::new(),
            out_batches: VecDeque::new(),
            awaiting_101: true,
            client_decoder: FrameDecoder::new(false, false),
            client_raw: BytesMut::new(),
            nats_sent: 0,
            nats_received: 0,
        }
    }

    /// The client's frames for one write of NATS bytes, appended to `out`.
    pub(crate) fn client_frames(rng: &mut Rng, bytes: &[u8], out: &mut BytesMut) {
        let mut rest = bytes;
        let mut first = true;
        loop {
            let cut = if rest.len() > 1 && rng.chance(0.3) {
                rng.range(1, rest.len() as u64 - 1) as usize
            } else {
                rest.len()
            };
            let (piece, after) = rest.split_at(cut);
            let opcode = if first {
                Opcode::Binary
            } else {
                Opcode::Continuation
            };
            masked_frame(rng, opcode, after.is_empty(), piece, out);
            rest = after;
            first = false;
            if rest.is_empty() {
                break;
            }
            if rng.chance(0.1) {
                // Control frames may come between a message's fragments.
                masked_frame(rng, Opcode::Ping, true, b"sim", out);
            }
        }
    }

    /// The node decodes what it read: NATS bytes go to `data`; pongs for the
    /// client's pings are queued into `server_out`.
    pub(crate) fn server_decode(
        &mut self,
        data: &mut BytesMut,
        server_out: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let mut events = Vec::new();
        while self
            .server_decoder
            .decode(&mut self.server_raw, data, &mut events)?
        {}
        for event in events {
            match event {
                ControlEvent::Ping(payload) => {
                    let pong = frame::control_frame(Opcode::Pong, &payload);
                    self.queue(server_out, &pong, 0);
                }
                // Simulated clients never close with a frame.
                ControlEvent::Close(_) => {}
            }
        }
        Ok(())
    }

    /// Queue `framed` bytes carrying `nats` NATS bytes into `server_out`.
    pub(crate) fn queue(&mut self, server_out: &mut BytesMut, framed: &[u8], nats: usize) {
        server_out.extend_from_slice(framed);
        self.out_batches.push_back((framed.len(), nats));
        self.nats_sent += nats as u64;
    }

    /// An outbound batch as one binary frame.
    pub(crate) fn queue_batch(&mut self, server_out: &mut BytesMut, batch: &[u8]) {
        let (header, used) = frame::frame_header(Opcode::Binary, true, batch.len());
        let mut framed = Vec::with_capacity(used + batch.len());
        framed.extend_from_slice(&header[..used]);
        framed.extend_from_slice(batch);
        self.queue(server_out, &framed, batch.len());
    }

    /// `sent` framed bytes left `server_out`: the NATS bytes of the batches
    /// now entirely sent.
    pub(crate) fn sent(&mut self, mut sent: usize) -> usize {
        let mut written = 0;
        while sent > 0 {
            let Some((framed, nats)) = self.out_batches.front_mut() else {
                break;
            };
            let step = sent.min(*framed);
            *framed -= step;
            sent -= step;
            if *framed == 0 {
                written += *nats;
                self.out_batches.pop_front();
            }
        }
        written
    }

    /// The NATS bytes of every batch not yet entirely sent (dropped).
    pub(crate) fn drop_unsent(&mut self) -> usize {
        self.out_batches.drain(..).map(|(_, nats)| nats).sum()
    }

    /// The client reads `chunk`: first the `101`, then frames, whose NATS
    /// bytes go to `data`.
    pub(crate) fn client_decode(
        &mut self,
        chunk: &[u8],
        data: &mut BytesMut,
    ) -> Result<(), String> {
        self.client_raw.extend_from_slice(chunk);
        if self.awaiting_101 {
            let Some(end) = self.client_raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            let head = self.client_raw.split_to(end + 4);
            if !head.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n") {
                return Err(format!(
                    "the upgrade was answered with {:?}",
                    String::from_utf8_lossy(&head)
                ));
            }
            self.awaiting_101 = false;
        }
        let before = data.len();
        let mut events = Vec::new();
        while self
            .client_decoder
            .decode(&mut self.client_raw, data, &mut events)
            .map_err(|error| format!("the server sent a bad frame: {error}"))?
        {}
        self.nats_received += (data.len() - before) as u64;
        Ok(())
    }
}

/// One masked client frame with a key from `rng`.
fn masked_frame(
    rng: &mut Rng,
    opcode: Opcode,
    final_frame: bool,
    payload: &[u8],
    out: &mut BytesMut,
) {
    let (mut header, used) = frame::frame_header(opcode, final_frame, payload.len());
    header[1] |= 0x80;
    let key = (rng.below(1 << 32) as u32).to_be_bytes();
    out.extend_from_slice(&header[..used]);
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}
