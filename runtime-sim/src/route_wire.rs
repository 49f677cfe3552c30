//! The simulator's own reading of the route protocol: what one server wrote
//! to a route, cut into frames with the stream offset where each ends.
//!
//! The world feeds it every byte a server hands to a route, in order; the
//! frames it yields wait until the peer's `handle_read` has taken their last
//! byte, and then go to the model (the peer has processed them). It is
//! written apart from core's `RouteParser` on purpose: the oracle must not
//! share the parser it judges. It only needs the frames the model acts on
//! (RS+, RS-, RMSG, HMSG); every other line is skipped whole.
//!
//! On a pinned account's dedicated route (the dialer's first INFO names
//! `route_account`; a later INFO naming one is gossip about another route), RS+, RS- and RMSG lines leave the account out; the
//! parser that reads that INFO pins itself and reports [`RouteFrame::Pinned`]
//! so the world pins the link's other direction too.
//!
//! Invariant: `offset` counts every byte fed, and a frame's end offset is
//! never beyond it; bytes that do not yet make a whole frame stay in `buf`.

use bytes::{Buf, Bytes, BytesMut};

/// A frame the model acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteFrame {
    /// `RS+ <account> <subject> [<queue> <weight>]`
    SubPlus {
        account: Bytes,
        subject: Bytes,
        queue: Option<(Bytes, u32)>,
    },
    /// `RS- <account> <subject> [<queue>]`
    SubMinus {
        account: Bytes,
        subject: Bytes,
        queue: Option<Bytes>,
    },
    /// `RMSG`/`HMSG`: a message the receiver delivers to its own clients.
    Msg {
        account: Bytes,
        subject: Bytes,
        reply: Option<Bytes>,
        queues: Vec<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    /// `-ERR '<text>'`: the sender is closing the route.
    Err,
    /// The handshake INFO naming the account this route is dedicated to.
    Pinned(Bytes),
    /// Any other INFO (only inside the parser).
    Info,
    /// INFO, CONNECT, PING, PONG, +OK and anything else the model ignores.
    Other,
}

/// One direction of a route, as the sender wrote it.
#[derive(Debug, Default)]
pub(crate) struct RouteStreamParser {
    buf: BytesMut,
    /// Bytes fed so far.
    offset: u64,
    /// Bytes of `offset` already cut into frames.
    consumed: u64,
    /// The account of a pinned route (its lines carry none).
    pinned: Option<Bytes>,
    /// The stream's first INFO (the handshake's) went by.
    handshake_seen: bool,
}

impl RouteStreamParser {
    /// Feed what the sender wrote next; returns every frame it completed,
    /// with the offset (in this stream) just past its last byte.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(u64, RouteFrame)>, String> {
        self.buf.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
        let mut frames = Vec::new();
        while let Some((len, frame)) = parse_one(&self.buf, self.pinned.as_ref())? {
            self.buf.advance(len);
            self.consumed += len as u64;
            let handshake = !self.handshake_seen;
            match frame {
                RouteFrame::Pinned(account) if handshake => {
                    self.handshake_seen = true;
                    self.pinned = Some(account.clone());
                    frames.push((self.consumed, RouteFrame::Pinned(account)));
                }
                RouteFrame::Pinned(_) => frames.push((self.consumed, RouteFrame::Other)),
                RouteFrame::Info => {
                    self.handshake_seen = true;
                    frames.push((self.consumed, RouteFrame::Other));
                }
                frame => frames.push((self.consumed, frame)),
            }
        }
        debug_assert!(self.consumed + self.buf.len() as u64 == self.offset);
        Ok(frames)
    }

    /// The other direction of this link is a pinned account's route.
    pub(crate) fn pin(&mut self, account: Bytes) {
        self.pinned = Some(account);
    }
}

/// One frame at the head of `buf`: its length and what it is; `None` when
/// it is not whole yet.
fn parse_one(buf: &[u8], pinned: Option<&Bytes>) -> Result<Option<(usize, RouteFrame)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(format!("route control line over 64 KiB: {:?}", show(buf)));
        }
        return Ok(None);
    };
    let line = &buf[..eol];
    let after_line = eol + 2;
    let mut tokens = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty());
    let op = tokens.next().unwrap_or_default().to_ascii_uppercase();
    let mut args: Vec<Bytes> = tokens.map(Bytes::copy_from_slice).collect();
    let bad = || format!("malformed route line {:?}", show(line));
    if let (Some(account), b"RS+" | b"RS-" | b"RMSG" | b"HMSG") = (pinned, op.as_slice()) {
        // The same shapes as on a shared route, the account put back.
        args.insert(0, account.clone());
    }
    match op.as_slice() {
        b"RS+" => {
            let queue = match args.len() {
                2 => None,
                4 => {
                    let weight = decimal(&args[3]).ok_or_else(bad)?;
                    Some((args[2].clone(), u32::try_from(weight).map_err(|_| bad())?))
                }
                _ => return Err(bad()),
            };
            Ok(Some((
                after_line,
                RouteFrame::SubPlus {
                    account: args[0].clone(),
                    subject: args[1].clone(),
                    queue,
                },
            )))
        }
        b"RS-" => {
            if !(2..=3).contains(&args.len()) {
                return Err(bad());
            }
            Ok(Some((
                after_line,
                RouteFrame::SubMinus {
                    account: args[0].clone(),
                    subject: args[1].clone(),
                    queue: args.get(2).cloned(),
                },
            )))
        }
        b"RMSG" | b"HMSG" => {
            let with_headers = op.as_slice() == b"HMSG";
            let sizes = if with_headers { 2 } else { 1 };
            if args.len() < 2 + sizes {
                return Err(bad());
            }
            let total = decimal(&args[args.len() - 1]).ok_or_else(bad)?;
            let header_len = if with_headers {
                decimal(&args[args.len() - 2]).ok_or_else(bad)?
            } else {
                0
            };
            if header_len > total {
                return Err(bad());
            }
            let middle = &args[2..args.len() - sizes];
            let (reply, queues) = match middle.first().map(|t| t.as_ref()) {
                None => (None, Vec::new()),
                Some(b"+") if middle.len() >= 2 => (Some(middle[1].clone()), middle[2..].to_vec()),
                Some(b"|") => (None, middle[1..].to_vec()),
                Some(_) if middle.len() == 1 => (Some(middle[0].clone()), Vec::new()),
                Some(_) => return Err(bad()),
            };
            let end = after_line + total as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(format!(
                    "route message body not followed by CRLF: {:?}",
                    show(line)
                ));
            }
            let body = &buf[after_line..end - 2];
            let headers =
                with_headers.then(|| Bytes::copy_from_slice(&body[..header_len as usize]));
            Ok(Some((
                end,
                RouteFrame::Msg {
                    account: args[0].clone(),
                    subject: args[1].clone(),
                    reply,
                    queues,
                    headers,
                    payload: Bytes::copy_from_slice(&body[header_len as usize..]),
                },
            )))
        }
        b"LMSG" => Err(format!("leaf message on a route: {:?}", show(line))),
        b"-ERR" => Ok(Some((after_line, RouteFrame::Err))),
        b"INFO" => {
            #[derive(serde::Deserialize)]
            struct Info {
                #[serde(default)]
                route_account: String,
            }
            let json = line.get(5..).unwrap_or_default();
            let info: Info = serde_json::from_slice(json)
                .map_err(|e| format!("route INFO does not parse ({e}): {:?}", show(line)))?;
            Ok(Some((
                after_line,
                match info.route_account.is_empty() {
                    true => RouteFrame::Info,
                    false => RouteFrame::Pinned(Bytes::from(info.route_account)),
                },
            )))
        }
        _ => Ok(Some((after_line, RouteFrame::Other))),
    }
}

fn decimal(token: &[u8]) -> Option<u64> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn frames_end_where_their_last_byte_is_whatever_the_cuts() {
        let stream: &[u8] = b"INFO {\"a\":1}\r\nRS+ $G foo\r\nRS+ $G bar q 3\r\nRMSG $G foo 5\r\nhello\r\nRMSG $G bar + r q 2\r\nhi\r\nHMSG $G x | q1 q2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nRS- $G bar q\r\nPING\r\n";
        let whole = RouteStreamParser::default().feed(stream).unwrap();
        for cut in 1..stream.len() {
            let mut parser = RouteStreamParser::default();
            let mut frames = parser.feed(&stream[..cut]).unwrap();
            frames.extend(parser.feed(&stream[cut..]).unwrap());
            assert_eq!(frames, whole, "cut at {cut}");
        }
        let kinds: Vec<_> = whole.iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(kinds[0], RouteFrame::Other);
        assert_eq!(
            kinds[2],
            RouteFrame::SubPlus {
                account: b("$G"),
                subject: b("bar"),
                queue: Some((b("q"), 3))
            }
        );
        assert_eq!(
            kinds[4],
            RouteFrame::Msg {
                account: b("$G"),
                subject: b("bar"),
                reply: Some(b("r")),
                queues: vec![b("q")],
                headers: None,
                payload: b("hi"),
            }
        );
        match &kinds[5] {
            RouteFrame::Msg {
                reply,
                queues,
                headers,
                payload,
                ..
            } => {
                assert_eq!(*reply, None);
                assert_eq!(queues, &vec![b("q1"), b("q2")]);
                assert_eq!(headers.as_deref(), Some(&b"NATS/1.0\r\n\r\n"[..]));
                assert_eq!(payload, &b("hi"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(whole.last().unwrap().0, stream.len() as u64);
    }

    #[test]
    fn only_the_handshake_info_pins_a_stream() {
        let mut pinned = RouteStreamParser::default();
        let frames = pinned
            .feed(b"INFO {\"route_account\":\"A\"}\r\nRS+ foo\r\nRMSG foo 2\r\nhi\r\n")
            .unwrap();
        assert_eq!(frames[0].1, RouteFrame::Pinned(b("A")));
        assert!(matches!(&frames[1].1, RouteFrame::SubPlus { account, .. } if account == "A"));
        assert!(matches!(&frames[2].1, RouteFrame::Msg { account, .. } if account == "A"));
        // Gossip about another server's pinned route does not pin a shared one.
        let mut shared = RouteStreamParser::default();
        let frames = shared
            .feed(b"INFO {}\r\nINFO {\"route_account\":\"A\"}\r\nRS+ $G foo\r\n")
            .unwrap();
        assert_eq!(frames[1].1, RouteFrame::Other);
        assert!(matches!(&frames[2].1, RouteFrame::SubPlus { account, .. } if account == "$G"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(RouteStreamParser::default().feed(b"RS+ $G\r\n").is_err());
        assert!(RouteStreamParser::default()
            .feed(b"RMSG $G a 2\r\nabc\r\n")
            .is_err());
    }
}
