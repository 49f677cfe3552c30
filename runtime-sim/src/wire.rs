//! An incremental parser for what the server sends a client: `INFO`, `MSG`,
//! `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`.
//!
//! Written independently of core's encoder so that it checks the server's
//! output rather than agreeing with it by construction. Input: a client's
//! receive buffer; output: one [`ServerOp`] per call, or a description of
//! malformed output (which the simulator reports as a server bug).

use bytes::{Bytes, BytesMut};

/// The longest control line the parser accepts from the server.
const CONTROL_LINE_MAX: usize = 64 * 1024;

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Info(Bytes),
    Msg {
        subject: Bytes,
        sid: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Ping,
    Pong,
    Ok,
    Err(Bytes),
}

/// A pending message body: the parsed control line, waiting for its bytes.
#[derive(Debug, Clone)]
struct PendingBody {
    subject: Bytes,
    sid: Bytes,
    reply: Option<Bytes>,
    header_len: Option<usize>,
    total_len: usize,
}

#[derive(Debug, Default)]
pub struct ServerOutputParser {
    pending: Option<PendingBody>,
}

impl ServerOutputParser {
    /// The next complete frame at the front of `buf`, consuming it.
    pub fn next_op(&mut self, buf: &mut BytesMut) -> Result<Option<ServerOp>, String> {
        if let Some(body) = self.pending.take() {
            return self.finish_body(body, buf);
        }
        let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
            if buf.len() > CONTROL_LINE_MAX {
                return Err(format!("control line longer than {CONTROL_LINE_MAX}"));
            }
            return Ok(None);
        };
        if newline == 0 || buf[newline - 1] != b'\r' {
            return Err(format!(
                "line not ended by CRLF: {:?}",
                show(&buf[..newline])
            ));
        }
        let line = buf.split_to(newline + 1).freeze().slice(..newline - 1);
        let (verb, rest) = match line.iter().position(|b| *b == b' ') {
            Some(space) => (line.slice(..space), line.slice(space + 1..)),
            None => (line.clone(), Bytes::new()),
        };
        match &verb[..] {
            b"PING" if rest.is_empty() => Ok(Some(ServerOp::Ping)),
            b"PONG" if rest.is_empty() => Ok(Some(ServerOp::Pong)),
            b"+OK" if rest.is_empty() => Ok(Some(ServerOp::Ok)),
            b"-ERR" => Ok(Some(ServerOp::Err(rest))),
            b"INFO" if rest.first() == Some(&b'{') => Ok(Some(ServerOp::Info(rest))),
            b"MSG" | b"HMSG" => {
                let body = parse_msg_line(&rest, verb.len() == 4)
                    .ok_or_else(|| format!("bad message line {:?}", show(&line)))?;
                self.finish_body(body, buf)
            }
            _ => Err(format!("unknown server frame {:?}", show(&line))),
        }
    }

    fn finish_body(
        &mut self,
        body: PendingBody,
        buf: &mut BytesMut,
    ) -> Result<Option<ServerOp>, String> {
        let total = body.total_len;
        if buf.len() < total + 2 {
            self.pending = Some(body);
            return Ok(None);
        }
        if &buf[total..total + 2] != b"\r\n" {
            return Err(String::from("message body not followed by CRLF"));
        }
        let mut payload = buf.split_to(total + 2).freeze();
        payload.truncate(total);
        let headers = body.header_len.map(|len| payload.split_to(len));
        Ok(Some(ServerOp::Msg {
            subject: body.subject,
            sid: body.sid,
            reply: body.reply,
            headers,
            payload,
        }))
    }
}

/// `subject sid [reply] [hdr_len] total_len`
fn parse_msg_line(rest: &Bytes, with_headers: bool) -> Option<PendingBody> {
    let words: Vec<Bytes> = rest
        .split(|b| *b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| rest.slice_ref(w))
        .collect();
    let sizes = if with_headers { 2 } else { 1 };
    let reply = match words.len().checked_sub(sizes)? {
        2 => None,
        3 => Some(words[2].clone()),
        _ => return None,
    };
    let total_len = parse_number(words.last()?)?;
    let header_len = if with_headers {
        let len = parse_number(&words[words.len() - 2])?;
        (len <= total_len).then_some(len)?;
        Some(len)
    } else {
        None
    };
    Some(PendingBody {
        subject: words[0].clone(),
        sid: words[1].clone(),
        reply,
        header_len,
        total_len,
    })
}

fn parse_number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Bytes as a short readable string for reports.
pub fn show(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    if bytes.len() > 80 {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnats_core::protocol;

    fn parse_all(input: &[u8], chunk: usize) -> Vec<ServerOp> {
        let mut parser = ServerOutputParser::default();
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(op) = parser.next_op(&mut buf).expect("valid output") {
                ops.push(op);
            }
        }
        assert!(buf.is_empty());
        ops
    }

    #[test]
    fn parses_core_encoder_output_at_every_split() {
        let mut out = BytesMut::new();
        protocol::write_msg(&mut out, b"a.b", b"1", Some(b"r.x"), b"hello");
        protocol::write_hmsg(&mut out, b"c", b"22", None, b"NATS/1.0\r\n\r\n", b"xy");
        protocol::write_ping(&mut out);
        protocol::write_ok(&mut out);
        protocol::write_err(&mut out, "Unknown Protocol Operation");
        let whole = parse_all(&out, out.len());
        assert_eq!(whole.len(), 5);
        assert_eq!(
            whole[0],
            ServerOp::Msg {
                subject: Bytes::from_static(b"a.b"),
                sid: Bytes::from_static(b"1"),
                reply: Some(Bytes::from_static(b"r.x")),
                headers: None,
                payload: Bytes::from_static(b"hello"),
            }
        );
        for chunk in 1..8 {
            assert_eq!(parse_all(&out, chunk), whole);
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut parser = ServerOutputParser::default();
        let mut buf = BytesMut::from(&b"MSG a 1 x\r\n"[..]);
        assert!(parser.next_op(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"HELLO\r\n"[..]);
        assert!(parser.next_op(&mut buf).is_err());
    }
}
