//! The websocket listener: TLS (for `wss`), the HTTP upgrade judged by
//! core's `websocket::handshake`, then an ordinary client of the machine
//! (`ListenerKind::WebSocket`) whose reads go through core's
//! `FrameDecoder` and whose writes go out as binary frames.
//!
//! Bounds: the upgrade must finish within the handshake timeout and its
//! request within `MAX_REQUEST_BYTES`; after it, a connection holds at most
//! one partial frame header beyond what the client parser bounds.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rnats_core::runtime::{CloseReason, ConnId, ListenerKind};
use rnats_core::server::OutboundBatch;
use rnats_core::websocket::compress::{Deflater, COMPRESS_THRESHOLD};
use rnats_core::websocket::frame::{self, ControlEvent, FrameDecoder, Opcode};
use rnats_core::websocket::handshake::{self, Refusal, UpgradePolicy, MAX_REQUEST_BYTES};
use rnats_core::websocket::{close_frame_for, WebSocketConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{wall_now, ConnIo, Reader, Runner, READ_CHUNK};
use crate::tls::{self, Tls};

/// How long an upgrade (TLS included) may take when `handshake_timeout` is
/// not set. The reference waits forever then; a bound keeps a silent client
/// from holding a socket.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound websocket listener and how to serve it.
pub struct WebSocketListener {
    pub listener: TcpListener,
    pub address: SocketAddr,
    pub config: WebSocketConfig,
    pub tls: Option<Tls>,
}

/// What every upgrade on the listener shares.
struct Upgrader {
    policy: UpgradePolicy,
    tls: Option<Tls>,
    timeout: Duration,
}

/// A socket both halves of which the connection's tasks use.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Frames a websocket connection's writer sends besides the machine's
/// bytes: pongs, and the close frame that ends the connection.
#[derive(Default)]
pub(super) struct WsOut {
    frames: Mutex<WsFrames>,
    /// With permessage-deflate: compresses each batch over the threshold.
    /// Only the connection's writer uses it.
    deflater: Option<Mutex<Deflater>>,
    /// A browser: frames capped at `BROWSER_FRAME_SIZE`, as the reference
    /// sends them (`whole_compressed`: Safari, whose compressed messages go
    /// unfragmented).
    browser: bool,
    whole_compressed: bool,
}

#[derive(Default)]
struct WsFrames {
    /// Pongs to send before the next data frame.
    control: Vec<u8>,
    /// The close frame; once set (the client's echo, a framing error, or
    /// the server's reason), the first one stays.
    close: Option<Vec<u8>>,
    /// The connection is cut without flushing (slow consumer): no close frame.
    abandoned: bool,
}

impl WsOut {
    fn lock(&self) -> std::sync::MutexGuard<'_, WsFrames> {
        self.frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new(upgrade: &handshake::Upgrade) -> Self {
        WsOut {
            frames: Mutex::default(),
            deflater: upgrade.compression.then(|| Mutex::new(Deflater::new())),
            browser: upgrade.browser,
            whole_compressed: upgrade.safari,
        }
    }

    /// What goes before `batch`: queued pongs and the binary frame header.
    /// With compression (and a batch over the threshold, as the reference
    /// decides) the whole compressed frame is returned instead and `batch`
    /// is consumed, so the writer sends only what this returns.
    pub(super) fn frame(&self, batch: &mut OutboundBatch) -> Bytes {
        let len = batch.len();
        let compressed = match &self.deflater {
            Some(deflater) if len > COMPRESS_THRESHOLD => {
                let mut deflater = deflater
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Some(deflater.deflate(&mut *batch))
            }
            _ => None,
        };
        let cap = if self.browser {
            frame::BROWSER_FRAME_SIZE
        } else {
            usize::MAX
        };
        let mut frames = self.lock();
        let mut out = std::mem::take(&mut frames.control);
        drop(frames);
        match compressed {
            Some(payload) => {
                let cap = if self.whole_compressed {
                    usize::MAX
                } else {
                    cap
                };
                frame::frames_capped(&payload[..], cap, true, &mut out);
            }
            None if len > cap => {
                // Browser frames: the batch is copied once, between headers.
                frame::frames_capped(&mut *batch, cap, false, &mut out);
            }
            None => {
                let (header, used) = frame::frame_header(Opcode::Binary, true, len);
                out.extend_from_slice(&header[..used]);
            }
        }
        Bytes::from(out)
    }

    /// Queued pongs, if any.
    pub(super) fn take_control(&self) -> Option<Bytes> {
        let control = std::mem::take(&mut self.lock().control);
        (!control.is_empty()).then(|| Bytes::from(control))
    }

    /// What is left to send when the connection ends.
    pub(super) fn take_final_frames(&self) -> Bytes {
        let mut frames = self.lock();
        let mut last = std::mem::take(&mut frames.control);
        if let Some(close) = frames.close.take().filter(|_| !frames.abandoned) {
            last.extend_from_slice(&close);
        }
        Bytes::from(last)
    }

    /// The machine closes the connection for `reason`.
    pub(super) fn closing_for(&self, reason: CloseReason) {
        let mut frames = self.lock();
        frames.abandoned |= reason.skips_flush();
        if frames.close.is_none() {
            frames.close = Some(close_frame_for(reason));
        }
    }

    fn push_pong(&self, payload: &[u8]) {
        let frame = frame::control_frame(Opcode::Pong, payload);
        let mut frames = self.lock();
        // A client that pings faster than it reads gets its pongs dropped
        // past this bound rather than growing the queue.
        if frames.control.len() < 64 * 1024 {
            frames.control.extend_from_slice(&frame);
        }
    }

    fn set_close(&self, payload: &[u8]) {
        let mut frames = self.lock();
        if frames.close.is_none() {
            frames.close = Some(frame::control_frame(Opcode::Close, payload));
        }
    }
}

impl Runner {
    /// Serve the websocket listener until the task is aborted.
    pub async fn serve_websocket(self: Arc<Self>, ws: WebSocketListener) {
        let timeout = if ws.config.handshake_timeout.is_zero() {
            DEFAULT_HANDSHAKE_TIMEOUT
        } else {
            ws.config.handshake_timeout
        };
        let upgrader = Arc::new(Upgrader {
            policy: ws.config.policy(),
            tls: ws.tls,
            timeout,
        });
        loop {
            match ws.listener.accept().await {
                Ok((stream, peer)) => {
                    if self.lame_duck.load(Ordering::Acquire) {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().upgrade(stream, peer, upgrader.clone()));
                }
                Err(error) => {
                    tracing::error!("Error accepting websocket connection: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// TLS, then the HTTP upgrade, within the handshake timeout; then the
    /// connection is the machine's.
    async fn upgrade(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        upgrader: Arc<Upgrader>,
    ) {
        let opened =
            tokio::time::timeout(upgrader.timeout, handshake(stream, peer, &upgrader)).await;
        let Ok(Some((stream, upgrade, names))) = opened else {
            return;
        };
        let ws = WsOut::new(&upgrade);
        let (conn, io) = self.open_from(
            peer,
            ListenerKind::WebSocket,
            Some(ws),
            Some(upgrade.session()),
        );
        if let Some(names) = names {
            self.lock().server.set_peer_certificate_names(conn, names);
        }
        let (reader, writer) = tokio::io::split(stream);
        let decoder = FrameDecoder::new(!upgrade.no_masking, upgrade.compression);
        tokio::spawn(
            self.clone()
                .ws_read_loop(conn, Box::new(reader), io.clone(), decoder),
        );
        tokio::spawn(self.write_loop(conn, Box::new(writer), io));
    }

    /// Like `read_loop`, with the frames removed before the machine reads.
    async fn ws_read_loop(
        self: Arc<Self>,
        conn: ConnId,
        mut socket: Reader,
        io: Arc<ConnIo>,
        mut decoder: FrameDecoder,
    ) {
        let ws = io.ws.as_ref().expect("a websocket connection");
        let mut raw = BytesMut::with_capacity(READ_CHUNK);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut events = Vec::new();
        loop {
            if raw.capacity() - raw.len() < READ_CHUNK / 2 {
                raw.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                read = socket.read_buf(&mut raw) => read,
                _ = io.stop_reader.notified() => return,
            };
            if matches!(read, Ok(0) | Err(_)) {
                let mut state = self.lock();
                if let Some(io) = state.report_closed(self.clock.now(), conn) {
                    io.closing.store(true, Ordering::Release);
                    io.wake.notify_one();
                }
                self.finish_step(state);
                return;
            }
            // A compressed message may inflate to more than one step's
            // budget: the machine reads each piece before the next.
            loop {
                let decoded = decoder.decode(&mut raw, &mut buf, &mut events);
                let mut pong = false;
                for event in events.drain(..) {
                    match event {
                        ControlEvent::Ping(payload) => {
                            ws.push_pong(&payload);
                            pong = true;
                        }
                        ControlEvent::Close(payload) => ws.set_close(&payload),
                    }
                }
                if let Err(error) = &decoded {
                    // Status 1002 and the violation, as the reference queues it
                    // (it may close before that frame leaves; rnats sends it).
                    ws.set_close(&error.close_payload());
                }
                let mut state = self.lock();
                if !buf.is_empty() {
                    state.server.handle_read(self.clock.now(), conn, &mut buf);
                }
                match &decoded {
                    Err(error) => state.server.handle_websocket_error(conn, error),
                    Ok(_) if decoder.is_closed() => state
                        .server
                        .close_connection(conn, CloseReason::ClientClosed),
                    Ok(_) => {}
                }
                self.finish_step(state);
                if pong {
                    io.wake.notify_one();
                }
                if io.closing.load(Ordering::Acquire) || decoded.is_err() || decoder.is_closed() {
                    return;
                }
                if decoded != Ok(true) {
                    break;
                }
            }
        }
    }
}

/// The upgrade of one connection: `None` when it ends here (answered with
/// the reference's refusal, or gone).
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    upgrader: &Upgrader,
) -> Option<(Box<dyn Stream>, handshake::Upgrade, Option<Vec<String>>)> {
    let (mut stream, names): (Box<dyn Stream>, _) = match &upgrader.tls {
        None => (Box::new(stream), None),
        Some(tls) => match tls.acceptor.accept(stream).await {
            Ok(stream) => {
                let names = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(tls::certificate_names);
                (Box::new(stream), names)
            }
            Err(error) => {
                tracing::debug!("{peer} - websocket TLS handshake error: {error}");
                return None;
            }
        },
    };
    let mut buf = BytesMut::with_capacity(4096);
    let (request, used) = loop {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        match handshake::parse_request(&buf) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {
                debug_assert!(buf.len() <= MAX_REQUEST_BYTES);
                continue;
            }
            Err(error) => {
                let _ = stream.write_all(&error.response()).await;
                let _ = stream.shutdown().await;
                return None;
            }
        }
    };
    let judged = handshake::upgrade(&request, &upgrader.policy).and_then(|upgrade| {
        if used < buf.len() {
            Err(Refusal::EarlyData)
        } else {
            Ok(upgrade)
        }
    });
    match judged {
        Ok(upgrade) => {
            stream
                .write_all(&upgrade.response(&upgrader.policy))
                .await
                .ok()?;
            Some((stream, upgrade, names))
        }
        Err(refusal) => {
            tracing::error!("{peer} - websocket handshake error: {refusal}");
            if let Some(response) = refusal.response(wall_now()) {
                let _ = stream.write_all(&response).await;
            }
            let _ = stream.shutdown().await;
            None
        }
    }
}
