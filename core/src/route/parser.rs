//! [`RouteParser`]: bytes from a route -> [`RouteOp`]s.
//!
//! Each call looks at the front of the buffer: a whole operation is split
//! off and returned, a partial one is left for the next read (its control
//! line is at most `max_control_line` long, its payload at most
//! `max_payload`, so what waits is bounded).

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::ParserLimits;

/// A message routed from another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedMsg {
    pub account: Bytes,
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// Queue groups the sender chose this server's members of.
    pub queues: Vec<Bytes>,
    /// The header block (HMSG), if any.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// One operation from a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    Info(Bytes),
    Connect(Bytes),
    Ping,
    Pong,
    Ok,
    Err(Bytes),
    Sub {
        account: Bytes,
        subject: Bytes,
        /// The queue group and its weight (members on the sender).
        queue: Option<(Bytes, u32)>,
    },
    Unsub {
        account: Bytes,
        subject: Bytes,
        queue: Option<Bytes>,
    },
    Msg(RoutedMsg),
}

/// Input no route may send; the route is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteParseError {
    #[error("unknown protocol operation")]
    UnknownOperation,
    #[error("maximum control line exceeded")]
    MaxControlLine,
    #[error("maximum payload exceeded")]
    MaxPayload,
    #[error("{op}: bad arguments")]
    InvalidArguments { op: &'static str },
}

/// The route protocol parser of one connection.
#[derive(Debug, Clone)]
pub struct RouteParser {
    limits: ParserLimits,
    /// A pinned account's dedicated route: its RS+/RS-/RMSG/HMSG lines
    /// leave the account out (it is this one).
    account: Option<Bytes>,
}

impl RouteParser {
    pub fn new(limits: ParserLimits) -> Self {
        RouteParser {
            limits,
            account: None,
        }
    }

    /// From now on the connection is `account`'s dedicated route.
    pub fn pin(&mut self, account: Bytes) {
        self.account = Some(account);
    }

    /// The next whole operation at the front of `buf` (removed from it), or
    /// `None` when more bytes are needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<RouteOp>, RouteParseError> {
        // A control line is an operation name, blanks and its arguments.
        let bound = self.limits.max_control_line.saturating_add(16);
        let window = &buf[..buf.len().min(bound + 2)];
        let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > bound {
                return Err(RouteParseError::MaxControlLine);
            }
            return Ok(None);
        };
        let line = &buf[..end];
        let (name, args_at) = split_name(line);
        let args = &line[args_at..];
        let op = name.to_ascii_uppercase();
        let parsed = match op.as_slice() {
            b"PING" => Some(RouteOp::Ping),
            b"PONG" => Some(RouteOp::Pong),
            b"+OK" => Some(RouteOp::Ok),
            b"-ERR" => Some(RouteOp::Err(Bytes::copy_from_slice(args))),
            b"INFO" => Some(RouteOp::Info(Bytes::copy_from_slice(args))),
            b"CONNECT" => Some(RouteOp::Connect(Bytes::copy_from_slice(args))),
            b"RS+" => Some(parse_sub(args, self.account.as_ref())?),
            b"RS-" => Some(parse_unsub(args, self.account.as_ref())?),
            b"RMSG" | b"HMSG" => None,
            _ => return Err(RouteParseError::UnknownOperation),
        };
        if let Some(parsed) = parsed {
            buf.advance(end + 2);
            return Ok(Some(parsed));
        }
        let headers = op.as_slice() == b"HMSG";
        let head = parse_msg_args(args, args_at, headers, self.account.is_some())?;
        if head.total > self.limits.max_payload {
            return Err(RouteParseError::MaxPayload);
        }
        let frame = end + 2 + head.total + 2;
        if buf.len() < frame {
            buf.reserve(frame - buf.len());
            return Ok(None);
        }
        if &buf[frame - 2..frame] != b"\r\n" {
            return Err(RouteParseError::UnknownOperation);
        }
        let line = buf.split_to(end + 2).freeze();
        let mut body = buf.split_to(head.total + 2).freeze();
        body.truncate(head.total);
        let field = |(start, len): (usize, usize)| line.slice(start..start + len);
        let headers = head.header_len.map(|len| body.split_to(len));
        let account = match (&self.account, head.account) {
            (Some(pinned), _) => pinned.clone(),
            (None, Some(at)) => field(at),
            (None, None) => return Err(RouteParseError::InvalidArguments { op: "RMSG" }),
        };
        Ok(Some(RouteOp::Msg(RoutedMsg {
            account,
            subject: field(head.subject),
            reply: head.reply.map(field),
            queues: head.queues.into_iter().map(field).collect(),
            headers,
            payload: body,
        })))
    }
}

/// The operation name and where its arguments start (after its blanks).
fn split_name(line: &[u8]) -> (&[u8], usize) {
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => {
            let start = line[at..]
                .iter()
                .position(|b| *b != b' ' && *b != b'\t')
                .map_or(line.len(), |n| at + n);
            (&line[..at], start)
        }
        None => (line, line.len()),
    }
}

/// Whitespace-separated arguments as (offset, len) pairs into `args`.
fn fields(args: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in args.iter().enumerate() {
        let blank = *b == b' ' || *b == b'\t';
        match (blank, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, args.len() - s));
    }
    out
}

/// The account of an interest line and the fields after it.
fn account_and_rest(
    args: &[u8],
    f: &[(usize, usize)],
    pinned: Option<&Bytes>,
) -> Option<(Bytes, Vec<Bytes>)> {
    let get = |(s, l): (usize, usize)| Bytes::copy_from_slice(&args[s..s + l]);
    let mut rest = f.iter().map(|at| get(*at));
    let account = match pinned {
        Some(account) => account.clone(),
        None => rest.next()?,
    };
    Some((account, rest.collect()))
}

fn parse_sub(args: &[u8], pinned: Option<&Bytes>) -> Result<RouteOp, RouteParseError> {
    let bad = RouteParseError::InvalidArguments { op: "RS+" };
    let f = fields(args);
    let (account, mut rest) = account_and_rest(args, &f, pinned).ok_or(bad.clone())?;
    match rest.len() {
        1 => Ok(RouteOp::Sub {
            account,
            subject: rest.remove(0),
            queue: None,
        }),
        3 => {
            let weight = parse_size(&rest[2]).ok_or(bad.clone())?;
            let weight = u32::try_from(weight).map_err(|_| bad)?;
            let queue = rest.remove(1);
            Ok(RouteOp::Sub {
                account,
                subject: rest.remove(0),
                queue: Some((queue, weight)),
            })
        }
        _ => Err(bad),
    }
}

fn parse_unsub(args: &[u8], pinned: Option<&Bytes>) -> Result<RouteOp, RouteParseError> {
    let bad = RouteParseError::InvalidArguments { op: "RS-" };
    let f = fields(args);
    let (account, mut rest) = account_and_rest(args, &f, pinned).ok_or(bad.clone())?;
    match rest.len() {
        1 | 2 => Ok(RouteOp::Unsub {
            account,
            subject: rest.remove(0),
            queue: (!rest.is_empty()).then(|| rest.remove(0)),
        }),
        _ => Err(bad),
    }
}

/// An RMSG/HMSG control line: (offset, len) of each field, offsets counted
/// from the start of the whole line (the operation name included).
struct MsgHead {
    /// `None` on a pinned account's route (the line has no account).
    account: Option<(usize, usize)>,
    subject: (usize, usize),
    reply: Option<(usize, usize)>,
    queues: Vec<(usize, usize)>,
    header_len: Option<usize>,
    total: usize,
}

fn parse_msg_args(
    args: &[u8],
    base: usize,
    headers: bool,
    pinned: bool,
) -> Result<MsgHead, RouteParseError> {
    let op = if headers { "HMSG" } else { "RMSG" };
    let bad = RouteParseError::InvalidArguments { op };
    let mut f: Vec<(usize, usize)> = fields(args);
    let sizes = if headers { 2 } else { 1 };
    let account = if pinned || f.is_empty() {
        None
    } else {
        Some(f.remove(0))
    };
    if f.len() < 1 + sizes {
        return Err(bad);
    }
    let text = |(s, l): (usize, usize)| &args[s..s + l];
    let (rest, size_fields) = f.split_at(f.len() - sizes);
    let total = parse_size(text(size_fields[sizes - 1])).ok_or(bad.clone())?;
    let header_len = if headers {
        let len = parse_size(text(size_fields[0])).ok_or(bad.clone())?;
        if len > total {
            return Err(bad);
        }
        Some(len)
    } else {
        None
    };
    let shift = |(s, l): (usize, usize)| (base + s, l);
    let mut head = MsgHead {
        account: account.map(shift),
        subject: shift(rest[0]),
        reply: None,
        queues: Vec::new(),
        header_len,
        total,
    };
    match rest.len() {
        1 => {}
        2 => head.reply = Some(shift(rest[1])),
        _ => match text(rest[1]) {
            b"+" => {
                head.reply = Some(shift(rest[2]));
                head.queues = rest[3..].iter().map(|q| shift(*q)).collect();
            }
            b"|" => head.queues = rest[2..].iter().map(|q| shift(*q)).collect(),
            _ => return Err(bad),
        },
    }
    Ok(head)
}

/// A decimal size as the reference reads one (digits only, no sign).
fn parse_size(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 12 {
        return None;
    }
    text.iter().try_fold(0usize, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::encoder;

    fn parser() -> RouteParser {
        RouteParser::new(ParserLimits {
            max_control_line: 4096,
            max_payload: 1024,
        })
    }

    fn all(input: &[u8]) -> Vec<RouteOp> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        let mut p = parser();
        while let Some(op) = p.next(&mut buf).unwrap() {
            out.push(op);
        }
        assert!(buf.is_empty());
        out
    }

    fn msg(op: &RouteOp) -> &RoutedMsg {
        match op {
            RouteOp::Msg(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn the_reference_lines() {
        let ops = all(
            b"RS+ $G foo\r\nRS+ $G bar q1 3\r\nRS- $G bar q1\r\nRS- $G foo\r\nPING\r\npong\r\n",
        );
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[1],
            RouteOp::Sub {
                account: Bytes::from_static(b"$G"),
                subject: Bytes::from_static(b"bar"),
                queue: Some((Bytes::from_static(b"q1"), 3)),
            }
        );
        let ops = all(b"RMSG $G foo rep 2\r\nhi\r\nHMSG $G bar | q1 q2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nRMSG $G x + r q 0\r\n\r\nRMSG $G y 1\r\nz\r\n");
        let m = msg(&ops[0]);
        assert_eq!(
            (&m.subject[..], m.reply.as_deref(), &m.payload[..]),
            (&b"foo"[..], Some(&b"rep"[..]), &b"hi"[..])
        );
        let m = msg(&ops[1]);
        assert_eq!(
            m.queues,
            vec![Bytes::from_static(b"q1"), Bytes::from_static(b"q2")]
        );
        assert_eq!(m.headers.as_deref(), Some(&b"NATS/1.0\r\n\r\n"[..]));
        assert_eq!(&m.payload[..], b"hi");
        assert_eq!(m.reply, None);
        let m = msg(&ops[2]);
        assert_eq!((m.reply.as_deref(), m.queues.len()), (Some(&b"r"[..]), 1));
        assert_eq!(msg(&ops[3]).reply, None);
    }

    #[test]
    fn encoder_round_trips() {
        let mut out = BytesMut::new();
        encoder::write_rmsg(
            &mut out,
            Some(b"A"),
            b"s",
            Some(b"r"),
            &[b"q1"],
            Some(b"NATS/1.0\r\n\r\n"),
            b"x",
        );
        encoder::write_rmsg(&mut out, Some(b"A"), b"s", None, &[b"q1"], None, b"x");
        encoder::write_rmsg(&mut out, Some(b"A"), b"s", Some(b"r"), &[], None, b"");
        encoder::write_rs_plus(&mut out, Some(b"A"), b"s", Some((b"q", 7)));
        encoder::write_rs_minus(&mut out, Some(b"A"), b"s", None);
        let ops = all(&out);
        assert_eq!(ops.len(), 5);
        assert_eq!(msg(&ops[0]).queues.len(), 1);
        assert_eq!(msg(&ops[1]).reply, None);
        assert_eq!(msg(&ops[2]).reply.as_deref(), Some(&b"r"[..]));
    }

    #[test]
    fn a_pinned_route_leaves_the_account_out() {
        let mut out = BytesMut::new();
        encoder::write_rs_plus(&mut out, None, b"s", Some((b"q", 2)));
        encoder::write_rs_minus(&mut out, None, b"s", Some(b"q"));
        encoder::write_rmsg(&mut out, None, b"s", Some(b"r"), &[b"q"], None, b"x");
        encoder::write_rmsg(
            &mut out,
            None,
            b"s",
            None,
            &[],
            Some(b"NATS/1.0\r\n\r\n"),
            b"y",
        );
        assert!(out.starts_with(b"RS+ s q 2\r\nRS- s q\r\nRMSG s + r q 1\r\n"));
        let mut p = parser();
        p.pin(Bytes::from_static(b"ACC"));
        let mut ops = Vec::new();
        while let Some(op) = p.next(&mut out).unwrap() {
            ops.push(op);
        }
        assert_eq!(
            ops[0],
            RouteOp::Sub {
                account: Bytes::from_static(b"ACC"),
                subject: Bytes::from_static(b"s"),
                queue: Some((Bytes::from_static(b"q"), 2)),
            }
        );
        assert!(
            matches!(&ops[1], RouteOp::Unsub { account, queue: Some(_), .. } if account == "ACC")
        );
        assert_eq!(
            (&msg(&ops[2]).account[..], msg(&ops[2]).queues.len()),
            (&b"ACC"[..], 1)
        );
        assert_eq!(&msg(&ops[3]).payload[..], b"y");
        // The same lines with an account are too long for a pinned route.
        let mut buf = BytesMut::from(&b"RS+ ACC s q 2 3\r\n"[..]);
        assert!(p.next(&mut buf).is_err());
    }

    #[test]
    fn partial_and_bad_input() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"RMSG $G foo 5\r\nhel"[..]);
        assert_eq!(p.next(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"lo\r\n");
        assert!(p.next(&mut buf).unwrap().is_some());
        for bad in [
            &b"RMSG $G foo 2000\r\n"[..],
            b"BOGUS\r\n",
            b"RS+ $G\r\n",
            b"RMSG $G f x q 1\r\n",
            b"HMSG $G f 5 2\r\n",
            b"RMSG $G f 1\r\nxyz\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parser().next(&mut buf).is_err(), "{bad:?}");
        }
        let mut buf = BytesMut::from(&[b'x'; 5000][..]);
        assert_eq!(
            parser().next(&mut buf),
            Err(RouteParseError::MaxControlLine)
        );
    }
}
