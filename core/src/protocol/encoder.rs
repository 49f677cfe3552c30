//! Frames written straight into a caller-owned outbound buffer.
//!
//! Input: the parts of one frame as borrowed bytes; output: the frame appended
//! to `out`, any [`FrameSink`]: a plain `BytesMut` (clients, tests) or a
//! connection's chunked outbound queue. Each function announces the frame's
//! exact length once and writes decimal sizes from a stack buffer, so
//! steady-state delivery allocates nothing. Only [`write_info`] goes through
//! serde (INFO is sent once per connection).
//!
//! Invariant: every frame ends in `\r\n`, and a MSG/HMSG size is the exact
//! number of body bytes that follow its control line.

use bytes::BytesMut;

use super::json::ServerInfo;

/// Where frames are appended.
pub trait FrameSink {
    /// Append `bytes` after everything written so far.
    fn put(&mut self, bytes: &[u8]);

    /// Bytes held so far (frames check their length against it).
    fn written(&self) -> usize;

    /// A frame of `len` bytes follows; a sink that can make room in one go does.
    #[inline]
    fn expect(&mut self, len: usize) {
        let _ = len;
    }
}

impl FrameSink for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn written(&self) -> usize {
        self.len()
    }

    #[inline]
    fn expect(&mut self, len: usize) {
        self.reserve(len);
    }
}

/// Longest decimal rendering of a `usize`.
const DECIMAL_DIGITS_MAX: usize = 20;

/// `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n`
pub fn write_msg(
    out: &mut impl FrameSink,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    write_message_frame(out, b"MSG ", subject, Some(sid), reply, None, payload);
}

/// `HMSG <subject> <sid> [reply] <hdr_len> <total_len>\r\n<headers><payload>\r\n`
pub fn write_hmsg(
    out: &mut impl FrameSink,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    write_message_frame(
        out,
        b"HMSG ",
        subject,
        Some(sid),
        reply,
        Some(headers),
        payload,
    );
}

/// The one shape behind MSG, HMSG, PUB and HPUB:
/// `<verb><subject> [sid] [reply] [hdr_len] <total_len>\r\n[headers]<payload>\r\n`.
/// Reserves the exact frame length once, so it never reallocates mid-frame.
fn write_message_frame(
    out: &mut impl FrameSink,
    verb: &[u8],
    subject: &[u8],
    sid: Option<&[u8]>,
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let header_size = headers.map(|headers| Decimal::new(headers.len()));
    let headers = headers.unwrap_or_default();
    let total_size = Decimal::new(headers.len() + payload.len());
    let head = verb.len()
        + subject.len()
        + 1
        + word_len(sid)
        + word_len(reply)
        + header_size.as_ref().map_or(0, |size| size.len() + 1)
        + total_size.len()
        + 2;
    let frame = head + headers.len() + payload.len() + 2;
    out.expect(frame);
    let start = out.written();
    out.put(verb);
    out.put(subject);
    out.put(b" ");
    for word in [sid, reply].into_iter().flatten() {
        out.put(word);
        out.put(b" ");
    }
    if let Some(header_size) = &header_size {
        out.put(header_size.as_bytes());
        out.put(b" ");
    }
    out.put(total_size.as_bytes());
    out.put(b"\r\n");
    out.put(headers);
    out.put(payload);
    out.put(b"\r\n");
    debug_assert_eq!(out.written() - start, frame);
}

/// `INFO <json> \r\n`: the reference puts a blank between the JSON and the CRLF.
pub fn write_info(out: &mut impl FrameSink, info: &ServerInfo) {
    let mut json = BytesMut::with_capacity(512);
    info.write_json(&mut json);
    out.expect(b"INFO  \r\n".len() + json.len());
    out.put(b"INFO ");
    out.put(&json);
    out.put(b" \r\n");
}

/// `+OK\r\n`
pub fn write_ok(out: &mut impl FrameSink) {
    out.put(b"+OK\r\n");
}

/// `-ERR '<text>'\r\n`
pub fn write_err(out: &mut impl FrameSink, text: &str) {
    debug_assert!(!text.contains(['\r', '\n']), "an -ERR text is one line");
    out.expect(b"-ERR ''\r\n".len() + text.len());
    out.put(b"-ERR '");
    out.put(text.as_bytes());
    out.put(b"'\r\n");
}

/// `PING\r\n`
pub fn write_ping(out: &mut impl FrameSink) {
    out.put(b"PING\r\n");
}

/// `PONG\r\n`
pub fn write_pong(out: &mut impl FrameSink) {
    out.put(b"PONG\r\n");
}

/// `PUB <subject> [reply] <size>\r\n<payload>\r\n`: for test clients and the simulator.
pub fn write_pub(out: &mut impl FrameSink, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    write_message_frame(out, b"PUB ", subject, None, reply, None, payload);
}

/// `HPUB <subject> [reply] <hdr_len> <total_len>\r\n<headers><payload>\r\n`: for test clients.
pub fn write_hpub(
    out: &mut impl FrameSink,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    write_message_frame(out, b"HPUB ", subject, None, reply, Some(headers), payload);
}

/// `SUB <subject> [queue] <sid>\r\n`: for test clients.
pub fn write_sub(out: &mut impl FrameSink, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    out.expect(b"SUB ".len() + subject.len() + 1 + word_len(queue) + sid.len() + 2);
    out.put(b"SUB ");
    out.put(subject);
    out.put(b" ");
    if let Some(queue) = queue {
        out.put(queue);
        out.put(b" ");
    }
    out.put(sid);
    out.put(b"\r\n");
}

/// `UNSUB <sid> [max]\r\n`: for test clients.
pub fn write_unsub(out: &mut impl FrameSink, sid: &[u8], max: Option<u64>) {
    out.put(b"UNSUB ");
    out.put(sid);
    if let Some(max) = max {
        out.put(b" ");
        out.put(Decimal::new(max as usize).as_bytes());
    }
    out.put(b"\r\n");
}

/// Bytes an optional word takes, its separating blank included.
fn word_len(word: Option<&[u8]>) -> usize {
    word.map_or(0, |word| word.len() + 1)
}

/// A number's decimal digits, rendered on the stack.
pub(crate) struct Decimal {
    digits: [u8; DECIMAL_DIGITS_MAX],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(value: usize) -> Self {
        Decimal::of_u64(value as u64)
    }

    pub(crate) fn of_u64(mut value: u64) -> Self {
        let mut decimal = Decimal {
            digits: [b'0'; DECIMAL_DIGITS_MAX],
            start: DECIMAL_DIGITS_MAX,
        };
        loop {
            decimal.start -= 1;
            decimal.digits[decimal.start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        decimal
    }

    fn len(&self) -> usize {
        DECIMAL_DIGITS_MAX - self.start
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(write: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        write(&mut out);
        String::from_utf8(out.to_vec()).expect("frames here are ASCII")
    }

    #[test]
    fn decimal_renders_like_display() {
        for value in [
            0usize,
            1,
            9,
            10,
            99,
            100,
            1_048_576,
            999_999_999,
            usize::MAX,
        ] {
            assert_eq!(Decimal::new(value).as_bytes(), value.to_string().as_bytes());
        }
    }

    #[test]
    fn msg_without_and_with_reply() {
        assert_eq!(
            render(|out| write_msg(out, b"foo", b"1", None, b"abc")),
            "MSG foo 1 3\r\nabc\r\n"
        );
        assert_eq!(
            render(|out| write_msg(out, b"foo.bar", b"22", Some(b"_INBOX.x"), b"")),
            "MSG foo.bar 22 _INBOX.x 0\r\n\r\n"
        );
    }

    #[test]
    fn no_responders_hmsg_matches_the_reference() {
        // Captured from nats-server v2.15.1.
        let block = crate::protocol::no_responders_block(b"nobody");
        let frame = render(|out| write_hmsg(out, b"_INBOX.x", b"1", None, &block, b""));
        assert_eq!(
            frame,
            "HMSG _INBOX.x 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n"
        );
    }

    #[test]
    fn control_frames() {
        assert_eq!(render(write_ok), "+OK\r\n");
        assert_eq!(render(write_ping), "PING\r\n");
        assert_eq!(render(write_pong), "PONG\r\n");
        assert_eq!(
            render(|out| write_err(out, "Unknown Protocol Operation")),
            "-ERR 'Unknown Protocol Operation'\r\n"
        );
    }

    #[test]
    fn snapshot_of_every_frame() {
        let mut out = BytesMut::new();
        write_msg(&mut out, b"orders.new", b"7", Some(b"_INBOX.abc"), b"hello");
        write_hmsg(
            &mut out,
            b"orders.new",
            b"7",
            None,
            b"NATS/1.0\r\nA: b\r\n\r\n",
            b"hi",
        );
        write_hmsg(
            &mut out,
            b"orders.new",
            b"8",
            Some(b"r"),
            b"NATS/1.0\r\n\r\n",
            b"",
        );
        write_ok(&mut out);
        write_err(&mut out, "Maximum Payload Violation");
        write_ping(&mut out);
        write_pong(&mut out);
        write_pub(&mut out, b"a", Some(b"b"), b"xyz");
        write_hpub(&mut out, b"a", None, b"NATS/1.0\r\n\r\n", b"xyz");
        write_sub(&mut out, b"a.*", Some(b"q"), b"1");
        write_unsub(&mut out, b"1", Some(5));
        let text = String::from_utf8(out.to_vec()).expect("ASCII");
        insta::assert_snapshot!(text.replace("\r\n", "\\r\\n\n"));
    }

    #[test]
    fn one_reservation_per_frame_does_not_reallocate() {
        let mut out = BytesMut::with_capacity(64);
        write_msg(&mut out, b"s", b"1", None, &[b'x'; 1000]);
        let capacity = out.capacity();
        out.clear();
        // Once grown, the same buffer takes the same frame without growing.
        write_msg(&mut out, b"s", b"1", None, &[b'x'; 1000]);
        assert_eq!(out.capacity(), capacity);
    }
}
