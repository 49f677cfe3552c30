//! A minimal NATS client on the raw protocol: connect, write PUB/SUB/PING
//! frames, and take MSG/HMSG/PING/PONG/INFO/+OK/-ERR frames off a read buffer.
//!
//! The frame parser works on a byte slice and reports how much it consumed, so
//! a whole read buffer is taken apart with one `advance` at the end; a partial
//! frame stays in the buffer for the next read. It allocates nothing.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// What the bench client says in CONNECT.
pub const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";
/// Free space below which the read buffer grows before a read.
const READ_SPACE_MIN: usize = 64 * 1024;
/// How much the read buffer grows by.
const READ_GROW: usize = 256 * 1024;
/// Longest control line accepted from a server.
const LINE_MAX: usize = 64 * 1024;

/// One frame from the server. Slices borrow the read buffer.
#[derive(Debug)]
pub enum Frame<'a> {
    /// MSG or HMSG; `payload` excludes the header block, which HMSG has in
    /// `headers` (`NATS/1.0 ...` through the blank line).
    Msg {
        sid: u64,
        reply: Option<&'a [u8]>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    /// INFO, +OK: nothing to do.
    Ignored,
    /// `-ERR ...`: the text.
    Err(&'a [u8]),
}

/// A connection: both socket halves, a read buffer and a write buffer.
pub struct Conn {
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
    pub inbuf: BytesMut,
    pub out: BytesMut,
    /// PINGs sent whose PONG has not come back.
    pub pings_outstanding: usize,
}

impl Conn {
    /// Connects, waits for INFO and sends CONNECT (not yet acknowledged: call
    /// [`Conn::ping_pong`] to know the server took it).
    pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (reader, writer) = stream.into_split();
        let mut conn = Conn {
            reader,
            writer,
            inbuf: BytesMut::with_capacity(READ_GROW),
            out: BytesMut::with_capacity(READ_GROW),
            pings_outstanding: 0,
        };
        // The first frame is the server's INFO.
        loop {
            conn.read_more().await?;
            if let Some(end) = memchr::memchr(b'\n', &conn.inbuf) {
                if !conn.inbuf.starts_with(b"INFO ") {
                    return Err(format!(
                        "expected INFO, got {:?}",
                        String::from_utf8_lossy(&conn.inbuf[..end])
                    ));
                }
                conn.inbuf.advance(end + 1);
                break;
            }
        }
        conn.out.put_slice(CONNECT);
        Ok(conn)
    }

    /// Reads at least one byte more into `inbuf`; EOF is an error.
    pub async fn read_more(&mut self) -> Result<usize, String> {
        if self.inbuf.capacity() - self.inbuf.len() < READ_SPACE_MIN {
            self.inbuf.reserve(READ_GROW);
        }
        match self.reader.read_buf(&mut self.inbuf).await {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Writes everything in `out`.
    pub async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.writer.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|e| format!("write: {e}"))
    }

    /// Sends PING (after whatever `out` holds) and waits for its PONG,
    /// answering server PINGs. A MSG on the way is an error: use this only
    /// where none can arrive.
    pub async fn ping_pong(&mut self) -> Result<(), String> {
        self.queue_ping();
        self.flush().await?;
        self.await_pongs(0).await
    }

    /// Appends a PING to `out`; its PONG is then owed.
    pub fn queue_ping(&mut self) {
        self.out.put_slice(b"PING\r\n");
        self.pings_outstanding += 1;
    }

    /// Reads until at most `outstanding` PINGs await their PONG, answering
    /// server PINGs.
    pub async fn await_pongs(&mut self, outstanding: usize) -> Result<(), String> {
        loop {
            let mut owed = 0;
            let mut problem = None;
            let mut pongs = 0;
            drain_frames(&mut self.inbuf, |frame| {
                match frame {
                    Frame::Pong => pongs += 1,
                    Frame::Ping => owed += 1,
                    Frame::Ignored => {}
                    Frame::Err(text) => {
                        problem = Some(format!("-ERR {}", String::from_utf8_lossy(text)))
                    }
                    Frame::Msg { .. } => problem = Some("unexpected MSG".into()),
                }
                Ok(())
            })?;
            if let Some(problem) = problem {
                return Err(problem);
            }
            if pongs > self.pings_outstanding {
                return Err("PONG without a PING".into());
            }
            self.pings_outstanding -= pongs;
            for _ in 0..owed {
                self.out.put_slice(b"PONG\r\n");
            }
            self.flush().await?;
            if self.pings_outstanding <= outstanding {
                return Ok(());
            }
            self.read_more().await?;
        }
    }
}

/// Hands every complete frame at the front of `buf` to `handle`, then drops
/// them from `buf`. A partial frame stays.
pub fn drain_frames(
    buf: &mut BytesMut,
    mut handle: impl FnMut(Frame<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut pos = 0;
    while let Some((frame, used)) = parse_frame(&buf[pos..])? {
        handle(frame)?;
        pos += used;
    }
    buf.advance(pos);
    Ok(())
}

/// The frame at the front of `buf` and its length, or None when incomplete.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > LINE_MAX {
            return Err("control line too long".into());
        }
        return Ok(None);
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let body_start = nl + 1;
    match line.first() {
        Some(b'M') if line.starts_with(b"MSG ") => {
            let (sid, reply, sizes) = msg_args::<1>(&line[4..])?;
            let size = sizes[0];
            let end = body_start + size;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            let frame = Frame::Msg {
                sid,
                reply,
                headers: None,
                payload: &buf[body_start..end],
            };
            Ok(Some((frame, end + 2)))
        }
        Some(b'H') if line.starts_with(b"HMSG ") => {
            let (sid, reply, sizes) = msg_args::<2>(&line[5..])?;
            let (header_len, total) = (sizes[0], sizes[1]);
            if header_len > total {
                return Err("HMSG header size over total".into());
            }
            let end = body_start + total;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            let frame = Frame::Msg {
                sid,
                reply,
                headers: Some(&buf[body_start..body_start + header_len]),
                payload: &buf[body_start + header_len..end],
            };
            Ok(Some((frame, end + 2)))
        }
        Some(b'P') if line.starts_with(b"PING") => Ok(Some((Frame::Ping, body_start))),
        Some(b'P') if line.starts_with(b"PONG") => Ok(Some((Frame::Pong, body_start))),
        Some(b'I') if line.starts_with(b"INFO") => Ok(Some((Frame::Ignored, body_start))),
        Some(b'+') if line.starts_with(b"+OK") => Ok(Some((Frame::Ignored, body_start))),
        Some(b'-') if line.starts_with(b"-ERR") => {
            Ok(Some((Frame::Err(line[4..].trim_ascii()), body_start)))
        }
        _ => Err(format!(
            "unexpected frame {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        )),
    }
}

/// `<subject> <sid> [reply] <size>...`: the sid, the reply and `N` sizes.
/// A MSG/HMSG line's sid, reply and sizes.
type MsgArgs<'a, const N: usize> = (u64, Option<&'a [u8]>, [usize; N]);

fn msg_args<const N: usize>(args: &[u8]) -> Result<MsgArgs<'_, N>, String> {
    let mut words: [&[u8]; 6] = [&[]; 6];
    let mut count = 0;
    for word in args.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
        if count == words.len() {
            return Err("too many MSG arguments".into());
        }
        words[count] = word;
        count += 1;
    }
    let reply = match count {
        c if c == 2 + N => None,
        c if c == 3 + N => Some(words[2]),
        _ => return Err(format!("bad MSG arguments ({count})")),
    };
    let sid = parse_decimal(words[1]).ok_or("bad sid")? as u64;
    let mut sizes = [0usize; N];
    for (i, size) in sizes.iter_mut().enumerate() {
        *size = parse_decimal(words[count - N + i]).ok_or("bad size")?;
    }
    Ok((sid, reply, sizes))
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + usize::from(d - b'0');
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msg_hmsg_and_partials() {
        let wire = b"MSG a.b 7 5\r\nhello\r\nHMSG a 9 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\nMSG x 1 3\r\nab";
        let mut pos = 0;
        let mut frames = Vec::new();
        while let Some((frame, used)) = parse_frame(&wire[pos..]).unwrap() {
            frames.push(format!("{frame:?}"));
            pos += used;
        }
        assert_eq!(frames.len(), 3);
        assert!(frames[0].contains("sid: 7"));
        assert!(frames[1].contains("sid: 9"));
        assert!(frames[1].contains("[104, 105]"));
        assert_eq!(&wire[pos..], b"MSG x 1 3\r\nab");
    }
}
