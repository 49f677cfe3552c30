//! One simulated TCP connection between a client and a node: both pipes,
//! the node's runtime buffers for it, and the client's protocol state.
//!
//! A connection belongs to exactly one node (it lives in that node's table)
//! and one client (`client`). Its `ConnId` is unique in the whole world, so
//! the model and the trace can name it without its node.
//!
//! Invariants:
//! - `handed <= written`: the node never hands the server a byte the client
//!   did not write (`handed` counts bytes moved out of the up pipe);
//! - `frames` holds, in order, the end offsets of frames written and not yet
//!   handed to the server; each is applied to the model once `handed`
//!   reaches it;
//! - once `server_closed`, the server is never called about it again.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rnats_core::time::Instant;

use crate::faults::FaultPlan;
use crate::model::Frame;
use crate::net::Pipe;
use crate::rng::Rng;
use crate::wire::ServerOutputParser;
use crate::ws::WsLink;

/// Kernel buffering per direction (send plus receive buffer).
pub(crate) const WINDOW: usize = 256 * 1024;

/// A direction on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Both ends of one connection.
pub(crate) struct Conn {
    /// Index of the client that opened it.
    pub(crate) client: usize,
    /// Its own stream: split points, latencies, read sizes.
    pub(crate) rng: Rng,
    pub(crate) up: Pipe,
    pub(crate) down: Pipe,
    /// The node has called `handle_accept` for it.
    pub(crate) accepted: bool,
    /// The server closed it or learned it is gone; it is never called again.
    pub(crate) server_closed: bool,
    /// The client side is finished with it (closed, reset, vanished).
    pub(crate) client_gone: bool,
    /// The client deliberately stopped reading (a slow reader).
    pub(crate) paused: bool,
    /// A stall touched this connection: a slow-consumer or stale cut is excused.
    pub(crate) stalled: bool,
    /// The node's read buffer: what `handle_read` left unprocessed.
    pub(crate) server_buf: BytesMut,
    /// Taken from the server, not yet accepted by the pipe (the writer's buffer).
    pub(crate) server_out: BytesMut,
    pub(crate) server_read_pending: bool,
    pub(crate) client_read_pending: bool,
    /// Up-stream bytes handed to `handle_read`.
    pub(crate) handed: u64,
    /// Up-stream bytes the client wrote.
    pub(crate) written: u64,
    /// `written` at the mark two seconds before the end (the stuck check).
    pub(crate) written_mark: u64,
    /// Written by the client, not yet accepted by the up pipe.
    pub(crate) client_out: BytesMut,
    /// End offset and content of each frame not yet handed to the server.
    pub(crate) frames: VecDeque<(u64, Frame)>,
    pub(crate) parser: ServerOutputParser,
    pub(crate) client_buf: BytesMut,
    /// Every sid this connection ever used, with its subject.
    pub(crate) sids: BTreeMap<Bytes, Bytes>,
    pub(crate) live_sids: Vec<Bytes>,
    /// End offset of the malformed frame, once sent.
    pub(crate) malformed_end: Option<u64>,
    /// A requester's reply subject prefix.
    pub(crate) inbox: Option<Bytes>,
    /// Segments pushed into either pipe whose arrival is not yet scheduled.
    pub(crate) arrivals: Vec<(Instant, Dir)>,
    /// A websocket client's framing (`ws.rs`); None over plain TCP.
    pub(crate) ws: Option<Box<WsLink>>,
}

impl Conn {
    pub(crate) fn new(client: usize, rng: Rng) -> Conn {
        Conn {
            client,
            rng,
            up: Pipe::new(WINDOW),
            down: Pipe::new(WINDOW),
            accepted: false,
            server_closed: false,
            client_gone: false,
            paused: false,
            stalled: false,
            server_buf: BytesMut::new(),
            server_out: BytesMut::new(),
            server_read_pending: false,
            client_read_pending: false,
            handed: 0,
            written: 0,
            written_mark: 0,
            client_out: BytesMut::new(),
            frames: VecDeque::new(),
            parser: ServerOutputParser::default(),
            client_buf: BytesMut::new(),
            sids: BTreeMap::new(),
            live_sids: Vec::new(),
            malformed_end: None,
            inbox: None,
            arrivals: Vec::new(),
            ws: None,
        }
    }

    /// Open on both ends: the fault injector may pick it, and the server
    /// must keep processing what its client writes.
    pub(crate) fn is_live(&self) -> bool {
        self.accepted && !self.server_closed && !self.client_gone
    }

    /// Append a frame to the client's output, remembering where it ends.
    /// Over websocket the bytes go out as frames (offsets stay in NATS bytes).
    pub(crate) fn write_frame(&mut self, bytes: &[u8], frame: Option<Frame>) {
        if self.ws.is_some() {
            WsLink::client_frames(&mut self.rng, bytes, &mut self.client_out);
        } else {
            self.client_out.extend_from_slice(bytes);
        }
        self.written += bytes.len() as u64;
        if let Some(frame) = frame {
            debug_assert!(self
                .frames
                .back()
                .is_none_or(|(end, _)| *end < self.written));
            self.frames.push_back((self.written, frame));
        }
    }

    /// An outbound batch from the server into `server_out`: as it is over
    /// TCP, as one binary frame over websocket.
    pub(crate) fn take_batch<'a>(&mut self, slices: impl Iterator<Item = &'a [u8]>) {
        match self.ws.as_mut() {
            Some(ws) => {
                let batch: Vec<u8> = slices.flat_map(|s| s.iter().copied()).collect();
                ws.queue_batch(&mut self.server_out, &batch);
            }
            None => {
                for slice in slices {
                    self.server_out.extend_from_slice(slice);
                }
            }
        }
    }

    /// Write `bytes` into one pipe, cut at random boundaries under `plan`;
    /// each segment's arrival is queued in `arrivals` for the world to schedule.
    pub(crate) fn send(&mut self, plan: &FaultPlan, dir: Dir, mut bytes: Bytes, now: Instant) {
        while !bytes.is_empty() {
            let cut = if bytes.len() > 1 && self.rng.chance(plan.split) {
                self.rng.range(1, bytes.len() as u64 - 1) as usize
            } else {
                bytes.len()
            };
            let segment = bytes.split_to(cut);
            let arrival = now + Duration::from_nanos(plan.latency(&mut self.rng));
            let pipe = match dir {
                Dir::Up => &mut self.up,
                Dir::Down => &mut self.down,
            };
            let at = pipe.push(arrival, Some(segment));
            self.arrivals.push((at, dir));
        }
    }

    /// Send the FIN down `dir` after one latency, unless the pipe is dead or
    /// already finished.
    pub(crate) fn send_fin(&mut self, plan: &FaultPlan, dir: Dir, now: Instant) {
        let pipe = match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        };
        if pipe.dead || pipe.fin_sent {
            return;
        }
        let arrival = now + Duration::from_nanos(plan.latency(&mut self.rng));
        let pipe = match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        };
        let at = pipe.push(arrival, None);
        self.arrivals.push((at, dir));
    }
}
