//! The websocket scenario (`ws-pubsub`): one publisher and one subscriber,
//! both websocket clients, on a server started with a `websocket { }`
//! listener. Same checks as the TCP scenarios (every message, in order,
//! payload layout of `scenarios.rs`) and the same measures (messages per
//! second at the subscriber, server CPU per message).
//!
//! The client side: the HTTP upgrade, then the publisher's 64 KiB batches of
//! PUBs go out as one masked binary frame each, and core's frame decoder
//! takes the server's frames apart into NATS bytes for `wire.rs`'s parser.
//! The mask key is zero (legal, and XOR with it is a no-op), so the client
//! spends no CPU masking and the comparison measures the servers.
//!
//! Pacing: the publisher stays within a window of messages ahead of the
//! subscriber, so neither server builds a backlog or cuts the subscriber
//! off as a slow consumer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use rnats_core::protocol::{write_pub, write_sub};
use rnats_core::websocket::frame::{self, ControlEvent, FrameDecoder, Opcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::scenarios::{Metric, Params, PAYLOAD_MIN};
use crate::wire::{drain_frames, Frame, CONNECT};

/// The config given to a server for this scenario: a plain-text websocket
/// listener on a free port.
pub const CONFIG: &str = "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n";

/// Bytes of PUBs per frame.
const BATCH_BYTES: usize = 64 * 1024;
/// How far (payload + framing bytes) the publisher may run ahead.
const WINDOW_BYTES: u64 = 8 * 1024 * 1024;
const SUBJECT: &[u8] = b"bench.ws";

/// Writes [`CONFIG`] beside the system's temp files; returns its path.
pub fn config_file() -> Result<std::path::PathBuf, String> {
    let path = std::env::temp_dir().join(format!("rnats-bench-ws-{}.conf", std::process::id()));
    std::fs::write(&path, CONFIG).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// The websocket port in a server's "Listening for websocket clients on
/// ws://HOST:PORT" line.
pub fn listening_port(line: &str) -> Option<u16> {
    let (_, url) = line.split_once("Listening for websocket clients on ")?;
    url.trim().rsplit(':').next()?.parse().ok()
}

/// A websocket client connection.
struct WsConn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    decoder: FrameDecoder,
    raw: BytesMut,
    /// Decoded NATS bytes.
    inbuf: BytesMut,
}

impl WsConn {
    /// Upgrades, reads INFO, sends CONNECT.
    async fn connect(addr: SocketAddr) -> Result<WsConn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (reader, writer) = stream.into_split();
        let mut conn = WsConn {
            reader,
            writer,
            decoder: FrameDecoder::new(false, false),
            raw: BytesMut::with_capacity(256 * 1024),
            inbuf: BytesMut::with_capacity(256 * 1024),
        };
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.writer
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(i) = conn.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            conn.read_raw().await?;
        };
        let head = conn.raw.split_to(head_end);
        if !head.starts_with(b"HTTP/1.1 101 ") {
            return Err(format!(
                "upgrade refused: {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        while memchr::memchr(b'\n', &conn.inbuf).is_none() {
            conn.read_more().await?;
        }
        if !conn.inbuf.starts_with(b"INFO ") {
            return Err("expected INFO".into());
        }
        let end = memchr::memchr(b'\n', &conn.inbuf).expect("a line");
        let _ = conn.inbuf.split_to(end + 1);
        conn.send(CONNECT).await?;
        Ok(conn)
    }

    async fn read_raw(&mut self) -> Result<(), String> {
        if self.raw.capacity() - self.raw.len() < 64 * 1024 {
            self.raw.reserve(256 * 1024);
        }
        match self.reader.read_buf(&mut self.raw).await {
            Ok(0) => Err("server closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Reads until at least one more decoded NATS byte (or control frame);
    /// what an earlier read left undecoded (the bytes after the 101 head)
    /// is decoded first.
    async fn read_more(&mut self) -> Result<(), String> {
        let before = self.inbuf.len();
        loop {
            if self.raw.is_empty() {
                self.read_raw().await?;
            }
            let undecoded = self.raw.len();
            let events = self.decode()?;
            if let Some(ControlEvent::Close(payload)) = events.last() {
                return Err(format!(
                    "the server closed: {:?}",
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                ));
            }
            if self.inbuf.len() > before || !events.is_empty() {
                return Ok(());
            }
            if self.raw.len() == undecoded {
                // A partial frame header: it needs more bytes.
                self.read_raw().await?;
            }
        }
    }

    /// Decodes what `raw` holds into `inbuf`; returns the control frames.
    fn decode(&mut self) -> Result<Vec<ControlEvent>, String> {
        let mut events = Vec::new();
        while self
            .decoder
            .decode(&mut self.raw, &mut self.inbuf, &mut events)
            .map_err(|e| format!("bad frame from the server: {e}"))?
        {}
        Ok(events)
    }

    /// Sends `bytes` as one masked binary frame.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (mut header, used) = frame::frame_header(Opcode::Binary, true, bytes.len());
        header[1] |= 0x80;
        let mut out = Vec::with_capacity(used + 4 + bytes.len());
        out.extend_from_slice(&header[..used]);
        // A zero mask key: the payload goes as it is (see the module doc).
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(bytes);
        self.writer
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// PING, then read until its PONG (answering the server's PINGs).
    async fn ping_pong(&mut self) -> Result<(), String> {
        self.send(b"PING\r\n").await?;
        loop {
            let pongs = self
                .take_frames(|_| Err("unexpected MSG".to_string()))
                .await?;
            if pongs > 0 {
                return Ok(());
            }
            self.read_more().await?;
        }
    }

    /// Takes every whole NATS operation off `inbuf`: each MSG payload goes
    /// to `on_msg`, the server's PINGs are answered, `-ERR` is an error.
    /// Returns how many PONGs came.
    async fn take_frames(
        &mut self,
        mut on_msg: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<usize, String> {
        let (mut pongs, mut owed) = (0, 0);
        drain_frames(&mut self.inbuf, |frame| match frame {
            Frame::Msg { payload, .. } => on_msg(payload),
            Frame::Ping => {
                owed += 1;
                Ok(())
            }
            Frame::Pong => {
                pongs += 1;
                Ok(())
            }
            Frame::Ignored => Ok(()),
            Frame::Err(text) => Err(format!("-ERR {}", String::from_utf8_lossy(text))),
        })?;
        for _ in 0..owed {
            self.send(b"PONG\r\n").await?;
        }
        Ok(pongs)
    }
}

/// One publisher and one subscriber over websocket.
pub async fn pubsub(
    ws_addr: Option<SocketAddr>,
    pid: Option<u32>,
    payload: usize,
    messages: u64,
    params: &Params,
) -> Result<Vec<Metric>, String> {
    assert!(payload >= PAYLOAD_MIN);
    let addr = ws_addr.ok_or("ws-pubsub needs a server it starts itself (not --addr)")?;
    let mut subscriber = WsConn::connect(addr).await?;
    let mut sub = BytesMut::new();
    write_sub(&mut sub, SUBJECT, None, b"1");
    subscriber.send(&sub).await?;
    subscriber.ping_pong().await?;
    let mut publisher = WsConn::connect(addr).await?;
    publisher.ping_pong().await?;

    let per_message = (payload + 32) as u64;
    let window = (WINDOW_BYTES / per_message).max(16);
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let stall = params.stall;
    let cpu_before = pid.and_then(crate::server::cpu_ns);
    let start = Instant::now();

    let receiver = {
        let received = received.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            let mut last = start;
            while next < messages {
                let read = tokio::time::timeout(stall, subscriber.read_more()).await;
                read.map_err(|_| format!("subscriber stalled at {next} of {messages}"))??;
                subscriber
                    .take_frames(|data| {
                        let seq = check_payload(data, payload);
                        if seq != Some(next) {
                            return Err(format!("got {seq:?}, expected sequence {next}"));
                        }
                        next += 1;
                        Ok(())
                    })
                    .await?;
                last = Instant::now();
                received.store(next, Ordering::Release);
                progress.notify_one();
            }
            Ok::<_, String>(last)
        })
    };

    let mut batch = BytesMut::with_capacity(BATCH_BYTES + payload + 64);
    let mut body = vec![0u8; payload];
    for seq in 0..messages {
        body[4..12].copy_from_slice(&seq.to_le_bytes());
        write_pub(&mut batch, SUBJECT, None, &body);
        if batch.len() >= BATCH_BYTES || seq + 1 == messages {
            // Up to and including `seq` is published once this batch is out.
            while seq >= received.load(Ordering::Acquire) + window {
                let notified = progress.notified();
                if seq < received.load(Ordering::Acquire) + window {
                    break;
                }
                if tokio::time::timeout(stall, notified).await.is_err() {
                    return Err(format!("publisher stalled at {seq} of {messages}"));
                }
            }
            publisher.send(&batch).await?;
            batch.clear();
            // The server's PINGs to the publisher, answered between batches.
            let mut scratch = [0u8; 4096];
            while let Ok(n) = publisher.reader.try_read(&mut scratch) {
                if n == 0 {
                    return Err("the server closed the publisher".into());
                }
                publisher.raw.put_slice(&scratch[..n]);
                publisher.decode()?;
                publisher
                    .take_frames(|_| Err("unexpected MSG".to_string()))
                    .await?;
            }
        }
    }
    let last = receiver
        .await
        .map_err(|e| format!("subscriber panicked: {e}"))??;
    let cpu_after = pid.and_then(crate::server::cpu_ns);
    let seconds = last.duration_since(start).as_secs_f64().max(1e-9);
    let rate = messages as f64 / seconds;
    let mut metrics = vec![
        Metric {
            name: "msgs/s",
            value: rate,
            unit: "msg/s",
            higher_is_better: true,
        },
        Metric {
            name: "MB/s",
            value: rate * payload as f64 / 1e6,
            unit: "MB/s",
            higher_is_better: true,
        },
    ];
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        metrics.push(Metric {
            name: "server CPU/msg",
            value: after.saturating_sub(before) as f64 / messages as f64,
            unit: "ns",
            higher_is_better: false,
        });
    }
    Ok(metrics)
}

/// The sequence number of a payload of the expected size from publisher 0.
fn check_payload(data: &[u8], size: usize) -> Option<u64> {
    if data.len() != size || data[0..4] != [0; 4] {
        return None;
    }
    Some(u64::from_le_bytes(data[4..12].try_into().ok()?))
}

/// The arguments that give a server [`CONFIG`] (see `server.rs`).
pub fn config_args() -> Result<[String; 2], String> {
    let path = config_file()?;
    Ok(["-c".to_string(), path.display().to_string()])
}
