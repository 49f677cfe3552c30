//! The parser for what a client sends: `CONNECT`, `PUB`, `HPUB`, `SUB`,
//! `UNSUB`, `PING`, `PONG`, plus the server-to-server words a client may
//! still legally send (`INFO`, `+OK`, `-ERR`, and the odd `HMSG`).
//!
//! Input: the connection's read buffer, handed over whole; output: one
//! [`ClientOp`] per call, its subject, reply, headers and payload split out of
//! that buffer with `split_to(..).freeze()`, so no bytes are copied.
//!
//! Invariants:
//! - After `Ok(None)` the buffer holds at most one partial frame: an operation
//!   name (under 8 bytes), an argument line no longer than
//!   `max_control_line + 1`, or a payload no longer than `max_payload + 1`.
//!   Runs of blanks and the tail of a `PING`/`PONG`/`+OK` line are consumed as
//!   they arrive, so they take no memory at all.
//! - The parser's own state is a small enum; a pending message holds only
//!   reference-counted views into the read buffer.
//!
//! Where the reference reads its input in a way that depends on how TCP split
//! it (a `\r` in the middle of a control line, see [`ClientParser::next_op`]),
//! this parser always behaves as the reference does when the line arrived in
//! one read.

use bytes::{Buf, Bytes, BytesMut};

use crate::runtime::CloseReason;

/// The reference's default `max_control_line`.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// The reference's default `max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// The reference reads at most nine digits in a size; longer is "bad size".
const SIZE_DIGITS_MAX: usize = 9;

/// Per-connection limits the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest argument of a control line, in bytes: everything after the
    /// operation name and its blanks, without the line's final `\r`.
    pub max_control_line: usize,
    /// Largest PUB payload, or HPUB headers plus payload, in bytes.
    pub max_payload: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// One complete operation from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT <json>`: the raw JSON argument (may be empty or invalid;
    /// decode it with [`ConnectOptions`](super::ConnectOptions), and on a
    /// decoding error close without an -ERR, as the reference does).
    Connect(Bytes),
    /// `PUB <subject> [reply] <size>`: the payload without its CRLF.
    Pub {
        subject: Bytes,
        reply: Option<Bytes>,
        payload: Bytes,
    },
    /// `HPUB <subject> [reply] <hdr_len> <total_len>`: `headers` is the first
    /// `hdr_len` bytes exactly as sent (normally `NATS/1.0...\r\n\r\n`; the
    /// reference does not check it, and `hdr_len` 0 gives an empty block, which
    /// the reference then delivers as a plain MSG), `payload` the rest.
    HPub {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Bytes,
        payload: Bytes,
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    /// `UNSUB <sid> [max]`. `max` is `None` when absent or not a valid size
    /// (the reference then unsubscribes at once, as it does for `Some(0)`).
    Unsub { sid: Bytes, max: Option<u64> },
    /// `PING` (anything after it on the line is ignored).
    Ping,
    /// `PONG` (anything after it on the line is ignored).
    Pong,
    /// `HMSG <anything>\r\n\r\n` from a client. The reference ignores the
    /// arguments and processes an empty message with no subject: it counts one
    /// inbound message of zero bytes and answers `+OK` when verbose, nothing else.
    StrayHMsg,
}

/// The operation whose arguments were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pub,
    HPub,
    Sub,
    Unsub,
}

impl core::fmt::Display for Operation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Operation::Pub => "PUB",
            Operation::HPub => "HPUB",
            Operation::Sub => "SUB",
            Operation::Unsub => "UNSUB",
        })
    }
}

/// What was wrong with an operation's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentProblem {
    #[error("wrong number of arguments ({0})")]
    WrongCount(usize),
    /// Not 1 to 9 decimal digits.
    #[error("bad or missing size")]
    BadSize,
    #[error("bad or missing header size")]
    BadHeaderSize,
    #[error("header size larger than total size")]
    HeaderLargerThanTotal,
}

/// A frame the reference rejects. Every one of them closes the connection;
/// [`ParseError::wire_error`] says whether an `-ERR` goes out first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// An unknown operation name, a missing blank after `PUB`/`HPUB`/`SUB`/
    /// `UNSUB`/`HMSG`/`-ERR`, or a payload not followed by `\r\n`.
    #[error("unknown protocol operation")]
    UnknownOperation,
    /// A control line argument longer than `max_control_line`.
    #[error("maximum control line exceeded ({len} > {max})")]
    MaxControlLine { len: usize, max: usize },
    /// A PUB/HPUB size larger than `max_payload`.
    #[error("maximum payload exceeded ({size} > {max})")]
    MaxPayload { size: usize, max: usize },
    /// Arguments the reference cannot parse: closes without an -ERR.
    #[error("{op}: {problem}")]
    InvalidArguments {
        op: Operation,
        problem: ArgumentProblem,
    },
    /// HPUB on a connection whose CONNECT did not ask for headers: closes
    /// without an -ERR.
    #[error("message headers not supported")]
    HeadersNotSupported,
    /// An INFO whose JSON the reference cannot decode: closes without an -ERR.
    #[error("invalid INFO: {0}")]
    InvalidInfo(String),
    /// The client sent `-ERR <text>`: the reference logs it and closes without
    /// replying (its close reason is "Parse Error").
    #[error("client sent -ERR {text:?}")]
    PeerError { text: Bytes },
}

impl ParseError {
    /// The text the reference sends inside `-ERR '...'`, or `None` when it
    /// closes without one.
    pub fn wire_error(&self) -> Option<&'static str> {
        match self {
            ParseError::UnknownOperation => Some("Unknown Protocol Operation"),
            ParseError::MaxControlLine { .. } => Some("maximum control line exceeded"),
            ParseError::MaxPayload { .. } => Some("Maximum Payload Violation"),
            ParseError::InvalidArguments { .. }
            | ParseError::HeadersNotSupported
            | ParseError::InvalidInfo(_)
            | ParseError::PeerError { .. } => None,
        }
    }

    /// The close reason the reference records for this error.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            ParseError::MaxControlLine { .. } => CloseReason::MaxControlLineExceeded,
            ParseError::MaxPayload { .. } => CloseReason::MaxPayloadExceeded,
            // The reference says "Parse Error" for PeerError; ours has no such reason.
            _ => CloseReason::ProtocolViolation,
        }
    }
}

/// An operation whose argument runs to the end of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineOp {
    Pub,
    HPub,
    Sub,
    Unsub,
    Connect,
    Info,
    Err,
    HMsg,
}

/// An operation whose line is read and thrown away up to its `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiscardOp {
    Ping,
    Pong,
    Ok,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingKind {
    Pub,
    HPub { header_len: usize },
    StrayHMsg,
}

/// A message whose control line is consumed and whose body is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingMsg {
    kind: PendingKind,
    subject: Bytes,
    reply: Option<Bytes>,
    /// Bytes of headers plus payload, without the closing CRLF; at most `max_payload`.
    total_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The buffer starts at the first byte of an operation name.
    Start,
    /// The name (and its mandatory blank) is consumed; blanks are skipped.
    SkipBlanks(LineOp),
    /// The buffer starts at the first argument byte; the line's `\n` is awaited.
    Arg(LineOp),
    /// The name is consumed; everything up to `\n` is dropped.
    Discard(DiscardOp),
    /// The control line is consumed; the body and its CRLF are awaited.
    Body(PendingMsg),
}

/// The per-connection protocol parser. See the module docs.
#[derive(Debug, Clone)]
pub struct ClientParser {
    limits: ParserLimits,
    headers_enabled: bool,
    state: State,
}

impl ClientParser {
    pub fn new(limits: ParserLimits) -> Self {
        ClientParser {
            limits,
            headers_enabled: true,
            state: State::Start,
        }
    }

    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// New limits apply from the next control line on.
    pub fn set_limits(&mut self, limits: ParserLimits) {
        self.limits = limits;
    }

    /// Whether HPUB is accepted. The reference accepts it only once a CONNECT
    /// asked for `"headers":true` (and rejects it before any CONNECT), so the
    /// server sets this to `false` at accept and to the CONNECT's `headers`
    /// after each CONNECT. It starts `true` so a server that never calls this
    /// is lenient rather than broken.
    pub fn set_headers_enabled(&mut self, enabled: bool) {
        self.headers_enabled = enabled;
    }

    pub fn headers_enabled(&self) -> bool {
        self.headers_enabled
    }

    /// Whether the parser sits between operations, so the next byte of the
    /// buffer is the first byte of an operation name. The reference judges a
    /// connection that still owes its CONNECT on that very byte (anything but
    /// `C`/`c` is an authorization violation), before the line is complete.
    pub fn at_op_start(&self) -> bool {
        self.state == State::Start
    }

    /// Takes the next complete operation off the front of `buf`, consuming its bytes.
    /// Ok(None): needs more bytes (a partial frame stays in `buf` or in parser state).
    /// Err: the connection must get the error's reply and (if the reference does) be closed.
    ///
    /// Call it again with the same buffer, more bytes appended, to continue.
    /// `+OK` lines and valid `INFO` lines are consumed without producing an
    /// operation, as the reference ignores them on a client connection.
    ///
    /// Lines end at `\n`; the argument is what follows the operation name and
    /// its blanks, its first byte taken whatever it is, and when a `\r` occurs
    /// in the line after that first byte the byte before the `\n` is dropped
    /// (for a well-formed `...\r\n` line, the `\r`).
    pub fn next_op(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        loop {
            let state = core::mem::replace(&mut self.state, State::Start);
            match state {
                State::Start => {
                    if !self.read_op_name(buf)? {
                        return Ok(None);
                    }
                }
                State::SkipBlanks(op) => {
                    let blanks = buf.iter().take_while(|b| is_blank(**b)).count();
                    buf.advance(blanks);
                    if buf.is_empty() {
                        self.state = State::SkipBlanks(op);
                        return Ok(None);
                    }
                    self.state = State::Arg(op);
                }
                State::Arg(op) => {
                    let Some(line) = self.take_line(buf)? else {
                        self.state = State::Arg(op);
                        return Ok(None);
                    };
                    if let Some(op) = self.process_line(op, line)? {
                        return Ok(Some(op));
                    }
                }
                State::Discard(op) => match buf.iter().position(|b| *b == b'\n') {
                    None => {
                        buf.clear();
                        self.state = State::Discard(op);
                        return Ok(None);
                    }
                    Some(newline) => {
                        buf.advance(newline + 1);
                        match op {
                            DiscardOp::Ping => return Ok(Some(ClientOp::Ping)),
                            DiscardOp::Pong => return Ok(Some(ClientOp::Pong)),
                            DiscardOp::Ok => {}
                        }
                    }
                },
                State::Body(pending) => {
                    let total = pending.total_len;
                    if buf.len() > total && buf[total] != b'\r' {
                        return Err(ParseError::UnknownOperation);
                    }
                    if buf.len() > total + 1 && buf[total + 1] != b'\n' {
                        return Err(ParseError::UnknownOperation);
                    }
                    if buf.len() < total + 2 {
                        debug_assert!(buf.len() <= self.limits.max_payload.max(total) + 1);
                        self.state = State::Body(pending);
                        return Ok(None);
                    }
                    let mut body = buf.split_to(total + 2).freeze();
                    body.truncate(total);
                    return Ok(Some(pending.complete(body)));
                }
            }
        }
    }

    /// Recognizes the operation name at the front of `buf`, case-insensitively,
    /// and moves to the state that reads the rest. Returns false when more
    /// bytes are needed to decide.
    fn read_op_name(&mut self, buf: &mut BytesMut) -> Result<bool, ParseError> {
        debug_assert_eq!(self.state, State::Start);
        let Some(first) = buf.first() else {
            return Ok(false);
        };
        let (name, next): (&[u8], State) = match first.to_ascii_uppercase() {
            b'P' => match buf.get(1).map(u8::to_ascii_uppercase) {
                None => return Ok(false),
                Some(b'U') => (b"PUB ", State::SkipBlanks(LineOp::Pub)),
                Some(b'I') => (b"PING", State::Discard(DiscardOp::Ping)),
                Some(b'O') => (b"PONG", State::Discard(DiscardOp::Pong)),
                Some(_) => return Err(ParseError::UnknownOperation),
            },
            b'H' => match buf.get(1).map(u8::to_ascii_uppercase) {
                None => return Ok(false),
                Some(b'P') => (b"HPUB ", State::SkipBlanks(LineOp::HPub)),
                Some(b'M') => (b"HMSG ", State::SkipBlanks(LineOp::HMsg)),
                Some(_) => return Err(ParseError::UnknownOperation),
            },
            b'S' => (b"SUB ", State::SkipBlanks(LineOp::Sub)),
            b'U' => (b"UNSUB ", State::SkipBlanks(LineOp::Unsub)),
            b'C' => (b"CONNECT", State::SkipBlanks(LineOp::Connect)),
            b'I' => (b"INFO", State::SkipBlanks(LineOp::Info)),
            b'+' => (b"+OK", State::Discard(DiscardOp::Ok)),
            b'-' => (b"-ERR ", State::SkipBlanks(LineOp::Err)),
            _ => return Err(ParseError::UnknownOperation),
        };
        // A trailing ' ' in `name` stands for the one mandatory blank (space or tab).
        for (index, expected) in name.iter().enumerate() {
            let Some(&got) = buf.get(index) else {
                return Ok(false);
            };
            let matches = if *expected == b' ' {
                is_blank(got)
            } else {
                got.to_ascii_uppercase() == *expected
            };
            if !matches {
                return Err(ParseError::UnknownOperation);
            }
        }
        buf.advance(name.len());
        self.state = next;
        Ok(true)
    }

    /// Splits off the argument line at the front of `buf` once its `\n` is
    /// there, enforcing `max_control_line` on complete and partial lines alike.
    fn take_line(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ParseError> {
        debug_assert!(
            !buf.is_empty(),
            "an argument starts with the byte that ended the blanks"
        );
        let max = self.limits.max_control_line;
        let rest = &buf[1..];
        match rest.iter().position(|b| *b == b'\n') {
            None => {
                let seen_cr = rest.contains(&b'\r');
                let len = buf.len() - usize::from(seen_cr);
                if len > max {
                    return Err(ParseError::MaxControlLine { len, max });
                }
                Ok(None)
            }
            Some(offset) => {
                let newline = offset + 1;
                // Nearly every line ends in "\r\n", which settles it without a scan.
                let seen_cr =
                    (newline >= 2 && buf[newline - 1] == b'\r') || buf[1..newline].contains(&b'\r');
                let len = newline - usize::from(seen_cr);
                if len > max {
                    return Err(ParseError::MaxControlLine { len, max });
                }
                let mut line = buf.split_to(newline + 1).freeze();
                line.truncate(len);
                Ok(Some(line))
            }
        }
    }

    /// Acts on one complete argument line. `Ok(None)` means the line produced
    /// no operation yet (a message body is awaited, or the line is ignored).
    fn process_line(&mut self, op: LineOp, arg: Bytes) -> Result<Option<ClientOp>, ParseError> {
        debug_assert_eq!(self.state, State::Start);
        match op {
            LineOp::Pub => {
                self.state = State::Body(self.pub_args(&arg)?);
                Ok(None)
            }
            LineOp::HPub => {
                if !self.headers_enabled {
                    return Err(ParseError::HeadersNotSupported);
                }
                self.state = State::Body(self.hpub_args(&arg)?);
                Ok(None)
            }
            LineOp::HMsg => {
                let pending = PendingMsg {
                    kind: PendingKind::StrayHMsg,
                    subject: Bytes::new(),
                    reply: None,
                    total_len: 0,
                };
                self.state = State::Body(pending);
                Ok(None)
            }
            // A subscription outlives the read buffer; a view would pin all of it.
            LineOp::Sub => sub_args(&Bytes::copy_from_slice(&arg)).map(Some),
            LineOp::Unsub => unsub_args(&arg).map(Some),
            LineOp::Connect => Ok(Some(ClientOp::Connect(arg))),
            LineOp::Info => {
                super::json::validate_info(&arg).map_err(ParseError::InvalidInfo)?;
                Ok(None)
            }
            LineOp::Err => Err(ParseError::PeerError { text: arg }),
        }
    }

    fn pub_args(&self, arg: &Bytes) -> Result<PendingMsg, ParseError> {
        let tokens = Tokens::<3>::split(arg, PUB_SEPARATORS);
        let invalid = |problem| ParseError::InvalidArguments {
            op: Operation::Pub,
            problem,
        };
        let (subject, reply, size) = match tokens.count {
            2 => (tokens.get(arg, 0), None, tokens.get(arg, 1)),
            3 => (
                tokens.get(arg, 0),
                Some(tokens.get(arg, 1)),
                tokens.get(arg, 2),
            ),
            count => return Err(invalid(ArgumentProblem::WrongCount(count))),
        };
        let total_len = parse_size(&size).ok_or(invalid(ArgumentProblem::BadSize))?;
        self.check_payload(total_len)?;
        Ok(PendingMsg {
            kind: PendingKind::Pub,
            subject,
            reply,
            total_len,
        })
    }

    fn hpub_args(&self, arg: &Bytes) -> Result<PendingMsg, ParseError> {
        let tokens = Tokens::<4>::split(arg, PUB_SEPARATORS);
        let invalid = |problem| ParseError::InvalidArguments {
            op: Operation::HPub,
            problem,
        };
        let (subject, reply, header_size, total_size) = match tokens.count {
            3 => (
                tokens.get(arg, 0),
                None,
                tokens.get(arg, 1),
                tokens.get(arg, 2),
            ),
            4 => (
                tokens.get(arg, 0),
                Some(tokens.get(arg, 1)),
                tokens.get(arg, 2),
                tokens.get(arg, 3),
            ),
            count => return Err(invalid(ArgumentProblem::WrongCount(count))),
        };
        let header_len = parse_size(&header_size).ok_or(invalid(ArgumentProblem::BadHeaderSize))?;
        let total_len = parse_size(&total_size).ok_or(invalid(ArgumentProblem::BadSize))?;
        if header_len > total_len {
            return Err(invalid(ArgumentProblem::HeaderLargerThanTotal));
        }
        self.check_payload(total_len)?;
        Ok(PendingMsg {
            kind: PendingKind::HPub { header_len },
            subject,
            reply,
            total_len,
        })
    }

    fn check_payload(&self, size: usize) -> Result<(), ParseError> {
        let max = self.limits.max_payload;
        if size > max {
            return Err(ParseError::MaxPayload { size, max });
        }
        Ok(())
    }
}

impl PendingMsg {
    fn complete(self, body: Bytes) -> ClientOp {
        debug_assert_eq!(body.len(), self.total_len);
        match self.kind {
            PendingKind::Pub => ClientOp::Pub {
                subject: self.subject,
                reply: self.reply,
                payload: body,
            },
            PendingKind::HPub { header_len } => {
                let mut headers = body;
                let payload = headers.split_off(header_len);
                ClientOp::HPub {
                    subject: self.subject,
                    reply: self.reply,
                    headers,
                    payload,
                }
            }
            PendingKind::StrayHMsg => ClientOp::StrayHMsg,
        }
    }
}

fn sub_args(arg: &Bytes) -> Result<ClientOp, ParseError> {
    let tokens = Tokens::<3>::split(arg, SUB_SEPARATORS);
    match tokens.count {
        2 => Ok(ClientOp::Sub {
            subject: tokens.get(arg, 0),
            queue: None,
            sid: tokens.get(arg, 1),
        }),
        3 => Ok(ClientOp::Sub {
            subject: tokens.get(arg, 0),
            queue: Some(tokens.get(arg, 1)),
            sid: tokens.get(arg, 2),
        }),
        count => Err(ParseError::InvalidArguments {
            op: Operation::Sub,
            problem: ArgumentProblem::WrongCount(count),
        }),
    }
}

fn unsub_args(arg: &Bytes) -> Result<ClientOp, ParseError> {
    let tokens = Tokens::<2>::split(arg, SUB_SEPARATORS);
    match tokens.count {
        1 => Ok(ClientOp::Unsub {
            sid: tokens.get(arg, 0),
            max: None,
        }),
        2 => {
            let max = parse_size(&tokens.get(arg, 1)).map(|max| max as u64);
            Ok(ClientOp::Unsub {
                sid: tokens.get(arg, 0),
                max,
            })
        }
        count => Err(ParseError::InvalidArguments {
            op: Operation::Unsub,
            problem: ArgumentProblem::WrongCount(count),
        }),
    }
}

/// PUB and HPUB split their arguments on blanks only, so a stray `\r` stays
/// inside a token; SUB and UNSUB also split on `\r` and `\n`.
const PUB_SEPARATORS: &[u8] = b" \t";
const SUB_SEPARATORS: &[u8] = b" \t\r\n";

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The positions of up to `N` tokens of a line, and how many there were in all.
struct Tokens<const N: usize> {
    ranges: [(usize, usize); N],
    count: usize,
}

impl<const N: usize> Tokens<N> {
    fn split(line: &[u8], separators: &[u8]) -> Self {
        let mut tokens = Tokens {
            ranges: [(0, 0); N],
            count: 0,
        };
        let mut start = None;
        for (index, byte) in line.iter().enumerate() {
            match (separators.contains(byte), start) {
                (true, Some(from)) => {
                    tokens.push(from, index);
                    start = None;
                }
                (false, None) => start = Some(index),
                _ => {}
            }
        }
        if let Some(from) = start {
            tokens.push(from, line.len());
        }
        tokens
    }

    fn push(&mut self, from: usize, to: usize) {
        debug_assert!(from < to);
        if let Some(slot) = self.ranges.get_mut(self.count) {
            *slot = (from, to);
        }
        self.count += 1;
    }

    /// Token `index` as a view of `line`; `index` must be below `min(count, N)`.
    fn get(&self, line: &Bytes, index: usize) -> Bytes {
        debug_assert!(index < self.count.min(N));
        let (from, to) = self.ranges[index];
        line.slice(from..to)
    }
}

/// 1 to 9 ASCII digits, as the reference accepts for sizes; anything else is None.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > SIZE_DIGITS_MAX {
        return None;
    }
    digits.iter().try_fold(0usize, |value, digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encoder::{write_hpub, write_pub, write_sub, write_unsub};
    use proptest::prelude::*;

    /// Every op parsed from `input` in one chunk, the error that stopped the
    /// parse (if any), and the bytes left in the buffer.
    fn parse_with(
        parser: &mut ClientParser,
        input: &[u8],
    ) -> (Vec<ClientOp>, Option<ParseError>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        loop {
            match parser.next_op(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => return (ops, None, buf),
                Err(error) => return (ops, Some(error), buf),
            }
        }
    }

    fn parse(input: &[u8]) -> (Vec<ClientOp>, Option<ParseError>) {
        let (ops, error, _) = parse_with(&mut ClientParser::new(ParserLimits::default()), input);
        (ops, error)
    }

    fn ops(input: &[u8]) -> Vec<ClientOp> {
        let (ops, error) = parse(input);
        assert_eq!(
            error,
            None,
            "unexpected error for {:?}",
            String::from_utf8_lossy(input)
        );
        ops
    }

    fn error(input: &[u8]) -> ParseError {
        parse(input)
            .1
            .unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
    }

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn publish(subject: &str, reply: Option<&str>, payload: &str) -> ClientOp {
        ClientOp::Pub {
            subject: b(subject),
            reply: reply.map(b),
            payload: b(payload),
        }
    }

    #[test]
    fn ping_pong_in_any_case_and_with_trailing_junk() {
        assert_eq!(ops(b"PING\r\n"), vec![ClientOp::Ping]);
        assert_eq!(ops(b"ping\n"), vec![ClientOp::Ping]);
        assert_eq!(ops(b"PiNg junk\r\n"), vec![ClientOp::Ping]);
        // The reference ignores everything after PING up to the newline.
        assert_eq!(ops(b"PINGPONG\r\n"), vec![ClientOp::Ping]);
        assert_eq!(
            ops(b"PONG\r\npong\r\n"),
            vec![ClientOp::Pong, ClientOp::Pong]
        );
    }

    #[test]
    fn pub_forms() {
        assert_eq!(
            ops(b"PUB foo 3\r\nabc\r\n"),
            vec![publish("foo", None, "abc")]
        );
        assert_eq!(
            ops(b"pub foo.bar _INBOX.1 0\r\n\r\n"),
            vec![publish("foo.bar", Some("_INBOX.1"), "")]
        );
        assert_eq!(
            ops(b"PUB\tfoo\t \t3 \t\r\nabc\r\n"),
            vec![publish("foo", None, "abc")]
        );
        // A bare \n ends the control line, but the payload must end in \r\n.
        assert_eq!(
            ops(b"PUB foo 3\nabc\r\n"),
            vec![publish("foo", None, "abc")]
        );
        // The payload is opaque: CRLFs inside it are data.
        assert_eq!(
            ops(b"PUB foo 4\r\n\r\n\r\n\r\n"),
            vec![publish("foo", None, "\r\n\r\n")]
        );
        // With a \r earlier in the line, the reference drops only the byte
        // before the \n, so "foo\r" is the subject.
        assert_eq!(
            ops(b"PUB foo\r 3\r\nabc\r\n"),
            vec![publish("foo\r", None, "abc")]
        );
    }

    #[test]
    fn hpub_forms() {
        let expected = ClientOp::HPub {
            subject: b("foo"),
            reply: Some(b("r")),
            headers: b("NATS/1.0\r\n\r\n"),
            payload: b("hi"),
        };
        assert_eq!(
            ops(b"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            vec![expected]
        );
        // The reference does not look inside the header block.
        let opaque = ClientOp::HPub {
            subject: b("foo"),
            reply: None,
            headers: b("abc"),
            payload: b(""),
        };
        assert_eq!(ops(b"hpub foo 3 3\r\nabc\r\n"), vec![opaque]);
        let empty = ClientOp::HPub {
            subject: b("foo"),
            reply: None,
            headers: b(""),
            payload: b("abc"),
        };
        assert_eq!(ops(b"HPUB foo 0 3\r\nabc\r\n"), vec![empty]);
    }

    #[test]
    fn sub_and_unsub_forms() {
        let sub = |subject: &str, queue: Option<&str>, sid: &str| ClientOp::Sub {
            subject: b(subject),
            queue: queue.map(b),
            sid: b(sid),
        };
        assert_eq!(ops(b"SUB foo 1\r\n"), vec![sub("foo", None, "1")]);
        assert_eq!(ops(b"sub foo\tq  1\r\n"), vec![sub("foo", Some("q"), "1")]);
        // SUB also splits on \r, so a stray \r separates arguments.
        assert_eq!(ops(b"SUB foo\rq 1\r\n"), vec![sub("foo", Some("q"), "1")]);
        let unsub = |sid: &str, max: Option<u64>| ClientOp::Unsub { sid: b(sid), max };
        assert_eq!(ops(b"UNSUB 1\r\n"), vec![unsub("1", None)]);
        assert_eq!(ops(b"unsub 1 5\r\n"), vec![unsub("1", Some(5))]);
        assert_eq!(ops(b"UNSUB 1 0\r\n"), vec![unsub("1", Some(0))]);
        // An unreadable max is no max: the reference unsubscribes at once.
        assert_eq!(ops(b"UNSUB 1 abc\r\n"), vec![unsub("1", None)]);
        assert_eq!(ops(b"UNSUB 1 1234567890\r\n"), vec![unsub("1", None)]);
    }

    #[test]
    fn connect_takes_the_raw_argument() {
        assert_eq!(
            ops(b"CONNECT {\"verbose\":false}\r\n"),
            vec![ClientOp::Connect(b("{\"verbose\":false}"))]
        );
        // No blank is needed after CONNECT, and trailing blanks stay in the argument.
        assert_eq!(
            ops(b"connect{} \t\r\n"),
            vec![ClientOp::Connect(b("{} \t"))]
        );
        // The byte that ends the blanks always starts the argument, even a \r.
        assert_eq!(ops(b"CONNECT\r\n"), vec![ClientOp::Connect(b("\r"))]);
        assert_eq!(ops(b"CONNECT \n{}\r\n"), vec![ClientOp::Connect(b("\n{}"))]);
    }

    #[test]
    fn ok_and_valid_info_are_ignored() {
        assert_eq!(
            ops(b"+OK\r\n+okjunk\r\nINFO {}\r\nINFO null\r\ninfo {\"port\":1}\r\nPING\r\n"),
            vec![ClientOp::Ping]
        );
        assert!(matches!(
            error(b"INFO {bad\r\n"),
            ParseError::InvalidInfo(_)
        ));
        assert!(matches!(
            error(b"INFO {\"port\":\"x\"}\r\n"),
            ParseError::InvalidInfo(_)
        ));
    }

    #[test]
    fn client_err_closes_without_reply() {
        let failure = error(b"-ERR 'boom'\r\n");
        assert_eq!(failure, ParseError::PeerError { text: b("'boom'") });
        assert_eq!(failure.wire_error(), None);
        // Without its blank, -ERR is not an operation at all.
        assert_eq!(error(b"-ERR\r\n"), ParseError::UnknownOperation);
    }

    #[test]
    fn stray_hmsg_is_an_empty_message() {
        assert_eq!(
            ops(b"HMSG foo 1 0 0\r\n\r\nPING\r\n"),
            vec![ClientOp::StrayHMsg, ClientOp::Ping]
        );
        assert_eq!(
            error(b"HMSG foo 1 2 2\r\nab\r\n"),
            ParseError::UnknownOperation
        );
    }

    #[test]
    fn unknown_operations() {
        for input in [
            &b"XYZ\r\n"[..],
            b"PX",
            b"PUB\r\n",
            b"PUBX foo 1\r\n",
            b"MSG foo 1 0\r\n",
            b"RS+ foo\r\n",
            b"LS+ foo\r\n",
            b"A+ foo\r\n",
            b"UNSUB\r\n",
            b"SUB\r\n",
            b"CONNEXT {}\r\n",
            b"\r\n",
            b" PING\r\n",
        ] {
            let failure = error(input);
            assert_eq!(
                failure,
                ParseError::UnknownOperation,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(failure.wire_error(), Some("Unknown Protocol Operation"));
        }
    }

    #[test]
    fn payload_must_be_followed_by_crlf() {
        assert_eq!(
            error(b"PUB foo 3\r\nabcX\r\n"),
            ParseError::UnknownOperation
        );
        assert_eq!(error(b"PUB foo 3\r\nabc\rX"), ParseError::UnknownOperation);
        assert_eq!(error(b"PUB foo 3\r\nabc\n"), ParseError::UnknownOperation);
        // Detected as soon as the wrong byte arrives, before any more data.
        assert_eq!(error(b"PUB foo 0\r\nX"), ParseError::UnknownOperation);
    }

    #[test]
    fn bad_arguments_close_without_reply() {
        let invalid = |op, problem| ParseError::InvalidArguments { op, problem };
        use ArgumentProblem::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"PUB \r\n", invalid(Operation::Pub, WrongCount(1))),
            (b"PUB foo\r\n", invalid(Operation::Pub, WrongCount(1))),
            (b"PUB  3\r\n", invalid(Operation::Pub, WrongCount(1))),
            (
                b"PUB foo bar baz 3\r\n",
                invalid(Operation::Pub, WrongCount(4)),
            ),
            (b"PUB foo -1\r\n", invalid(Operation::Pub, BadSize)),
            (b"PUB foo x\r\n", invalid(Operation::Pub, BadSize)),
            (b"PUB foo 1234567890\r\n", invalid(Operation::Pub, BadSize)),
            (b"PUB foo 3\r\r\n", invalid(Operation::Pub, BadSize)),
            (b"HPUB foo 3\r\n", invalid(Operation::HPub, WrongCount(2))),
            (
                b"HPUB foo a b 12 14\r\n",
                invalid(Operation::HPub, WrongCount(5)),
            ),
            (b"HPUB foo x 3\r\n", invalid(Operation::HPub, BadHeaderSize)),
            (b"HPUB foo 3 x\r\n", invalid(Operation::HPub, BadSize)),
            (
                b"HPUB foo 5 3\r\n",
                invalid(Operation::HPub, HeaderLargerThanTotal),
            ),
            (b"SUB foo\r\n", invalid(Operation::Sub, WrongCount(1))),
            (b"SUB a b c d\r\n", invalid(Operation::Sub, WrongCount(4))),
            (b"UNSUB \r\n", invalid(Operation::Unsub, WrongCount(0))),
            (b"UNSUB 1 2 3\r\n", invalid(Operation::Unsub, WrongCount(3))),
        ];
        for (input, expected) in cases {
            let failure = error(input);
            assert_eq!(&failure, expected, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(failure.wire_error(), None);
            assert_eq!(failure.close_reason(), CloseReason::ProtocolViolation);
        }
    }

    #[test]
    fn hpub_needs_headers_enabled() {
        let mut parser = ClientParser::new(ParserLimits::default());
        parser.set_headers_enabled(false);
        let (_, failure, _) = parse_with(&mut parser, b"HPUB foo 3 5\r\nabchi\r\n");
        assert_eq!(failure, Some(ParseError::HeadersNotSupported));
        assert_eq!(ParseError::HeadersNotSupported.wire_error(), None);
        // Checked after the control line length, as the reference does.
        let long = format!("HPUB {} 0 0\r\n", "a".repeat(5000));
        let (_, failure, _) = parse_with(&mut parser, long.as_bytes());
        assert!(matches!(failure, Some(ParseError::MaxControlLine { .. })));
    }

    #[test]
    fn max_payload() {
        let failure = error(b"PUB foo 2000000\r\n");
        assert_eq!(
            failure,
            ParseError::MaxPayload {
                size: 2_000_000,
                max: DEFAULT_MAX_PAYLOAD
            }
        );
        assert_eq!(failure.wire_error(), Some("Maximum Payload Violation"));
        assert_eq!(failure.close_reason(), CloseReason::MaxPayloadExceeded);
        assert!(matches!(
            error(b"HPUB foo 2 2000000\r\n"),
            ParseError::MaxPayload { .. }
        ));
        assert_eq!(
            ops(format!("PUB foo {DEFAULT_MAX_PAYLOAD}\r\n").as_bytes()),
            vec![]
        );
    }

    #[test]
    fn max_control_line_counts_the_argument() {
        let mut line = format!("SUB {} 1", "a".repeat(4094));
        assert_eq!(line.len() - 4, 4096);
        assert_eq!(ops(format!("{line}\r\n").as_bytes()).len(), 1);
        line.insert(5, 'a');
        let failure = error(format!("{line}\r\n").as_bytes());
        assert_eq!(
            failure,
            ParseError::MaxControlLine {
                len: 4097,
                max: 4096
            }
        );
        assert_eq!(failure.wire_error(), Some("maximum control line exceeded"));
        assert_eq!(failure.close_reason(), CloseReason::MaxControlLineExceeded);
        // A partial line is judged as it grows, so it never outgrows the limit.
        let partial = format!("SUB {}", "a".repeat(4097));
        assert!(matches!(
            error(partial.as_bytes()),
            ParseError::MaxControlLine { len: 4097, .. }
        ));
        let partial = format!("SUB {}", "a".repeat(4096));
        assert_eq!(parse(partial.as_bytes()), (vec![], None));
        // CONNECT is bound by it too.
        let connect = format!("CONNECT {{\"name\":\"{}\"}}\r\n", "a".repeat(5000));
        assert!(matches!(
            error(connect.as_bytes()),
            ParseError::MaxControlLine { .. }
        ));
    }

    #[test]
    fn discarded_and_skipped_bytes_take_no_memory() {
        let mut parser = ClientParser::new(ParserLimits::default());
        let mut buf = BytesMut::from(&b"PING"[..]);
        buf.extend_from_slice(&[b'x'; 100_000]);
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert!(!parser.at_op_start());
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parser.next_op(&mut buf), Ok(Some(ClientOp::Ping)));
        assert!(parser.at_op_start());
        let mut buf = BytesMut::from(&b"PUB"[..]);
        buf.extend_from_slice(&[b' '; 100_000]);
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"foo 1\r\nx\r\n");
        assert_eq!(
            parser.next_op(&mut buf),
            Ok(Some(publish("foo", None, "x")))
        );
    }

    #[test]
    fn op_start_tracks_partial_frames() {
        let mut parser = ClientParser::new(ParserLimits::default());
        let mut buf = BytesMut::from(&b"PU"[..]);
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        // The name is left in the buffer until it is complete.
        assert!(parser.at_op_start());
        assert_eq!(&buf[..], b"PU");
        buf.extend_from_slice(b"B foo 3\r\nab");
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        assert!(!parser.at_op_start());
        assert_eq!(&buf[..], b"ab");
        buf.extend_from_slice(b"c\r\nPI");
        assert_eq!(
            parser.next_op(&mut buf),
            Ok(Some(publish("foo", None, "abc")))
        );
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        assert!(parser.at_op_start());
    }

    #[test]
    fn payload_is_a_view_of_the_read_buffer() {
        let mut parser = ClientParser::new(ParserLimits::default());
        let mut buf = BytesMut::from(&b"PUB foo 5\r\nhello\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let Ok(Some(ClientOp::Pub {
            payload, subject, ..
        })) = parser.next_op(&mut buf)
        else {
            panic!("expected a PUB")
        };
        assert_eq!(
            payload.as_ptr() as usize,
            base + 11,
            "no copy of the payload"
        );
        assert_eq!(
            subject.as_ptr() as usize,
            base + 4,
            "no copy of the subject"
        );
    }

    #[test]
    fn limits_can_change() {
        let mut parser = ClientParser::new(ParserLimits::default());
        let tight = ParserLimits {
            max_control_line: 8,
            max_payload: 2,
        };
        parser.set_limits(tight);
        assert_eq!(parser.limits(), tight);
        let (_, failure, _) = parse_with(&mut parser, b"PUB foo 3\r\n");
        assert_eq!(failure, Some(ParseError::MaxPayload { size: 3, max: 2 }));
    }

    // ----- property tests -----

    /// A frame the encoder can write, the op it must parse to (None for the
    /// lines the parser swallows), and its bytes.
    fn frame() -> impl Strategy<Value = (Option<ClientOp>, Vec<u8>)> {
        let token = "[a-zA-Z0-9_.$*>-]{1,12}";
        let payload = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (token, proptest::option::of(token), payload.clone()).prop_map(
                |(subject, reply, payload)| {
                    let mut out = BytesMut::new();
                    write_pub(
                        &mut out,
                        subject.as_bytes(),
                        reply.as_deref().map(str::as_bytes),
                        &payload,
                    );
                    let op = ClientOp::Pub {
                        subject: Bytes::from(subject),
                        reply: reply.map(Bytes::from),
                        payload: Bytes::from(payload),
                    };
                    (Some(op), out.to_vec())
                }
            ),
            (token, proptest::option::of(token), payload.clone(), payload).prop_map(
                |(subject, reply, headers, payload)| {
                    let mut out = BytesMut::new();
                    write_hpub(
                        &mut out,
                        subject.as_bytes(),
                        reply.as_deref().map(str::as_bytes),
                        &headers,
                        &payload,
                    );
                    let op = ClientOp::HPub {
                        subject: Bytes::from(subject),
                        reply: reply.map(Bytes::from),
                        headers: Bytes::from(headers),
                        payload: Bytes::from(payload),
                    };
                    (Some(op), out.to_vec())
                }
            ),
            (token, proptest::option::of(token), token).prop_map(|(subject, queue, sid)| {
                let mut out = BytesMut::new();
                write_sub(
                    &mut out,
                    subject.as_bytes(),
                    queue.as_deref().map(str::as_bytes),
                    sid.as_bytes(),
                );
                let op = ClientOp::Sub {
                    subject: Bytes::from(subject),
                    queue: queue.map(Bytes::from),
                    sid: Bytes::from(sid),
                };
                (Some(op), out.to_vec())
            }),
            (token, proptest::option::of(0u64..1_000_000)).prop_map(|(sid, max)| {
                let mut out = BytesMut::new();
                write_unsub(&mut out, sid.as_bytes(), max);
                (
                    Some(ClientOp::Unsub {
                        sid: Bytes::from(sid),
                        max,
                    }),
                    out.to_vec(),
                )
            }),
            Just((Some(ClientOp::Ping), b"PING\r\n".to_vec())),
            Just((Some(ClientOp::Pong), b"pong\r\n".to_vec())),
            Just((
                Some(ClientOp::Connect(Bytes::from_static(
                    b"{\"verbose\":false}"
                ))),
                b"CONNECT {\"verbose\":false}\r\n".to_vec()
            )),
            Just((None, b"+OK\r\n".to_vec())),
            Just((None, b"INFO {\"port\":4222}\r\n".to_vec())),
            Just((Some(ClientOp::StrayHMsg), b"HMSG x 1 0 0\r\n\r\n".to_vec())),
        ]
    }

    /// Feeds `input` in pieces of the given sizes (cycled), collecting ops;
    /// checks the bound on what stays buffered after each `Ok(None)`.
    fn parse_in_chunks(
        limits: ParserLimits,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<ClientOp>, Option<ParseError>) {
        let retained_max = (limits.max_control_line + 1)
            .max(limits.max_payload + 1)
            .max(8);
        let mut parser = ClientParser::new(limits);
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        let mut rest = input;
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let take = (*cut.next().expect("cuts are not empty")).clamp(1, rest.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            loop {
                match parser.next_op(&mut buf) {
                    Ok(Some(op)) => ops.push(op),
                    Ok(None) => break,
                    Err(error) => return (ops, Some(error)),
                }
            }
            assert!(
                buf.len() <= retained_max,
                "{} bytes retained, bound {retained_max}",
                buf.len()
            );
        }
        (ops, None)
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_ops(
            frames in proptest::collection::vec(frame(), 0..24),
            cuts in proptest::collection::vec(1usize..40, 1..16),
        ) {
            let input: Vec<u8> = frames.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
            let expected: Vec<ClientOp> = frames.into_iter().filter_map(|(op, _)| op).collect();
            let (whole, error) = parse_in_chunks(ParserLimits::default(), &input, &[input.len().max(1)]);
            prop_assert_eq!(error, None);
            prop_assert_eq!(&whole, &expected);
            let (chunked, error) = parse_in_chunks(ParserLimits::default(), &input, &cuts);
            prop_assert_eq!(error, None);
            prop_assert_eq!(chunked, expected);
        }

        #[test]
        fn garbage_never_panics_and_stays_bounded(
            pieces in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..32),
                    frame().prop_map(|(_, bytes)| bytes),
                    Just(b"PUB a 20\r\n".to_vec()),
                    Just(b"SUB ".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(vec![b'a'; 40]),
                ],
                0..16,
            ),
            cuts in proptest::collection::vec(1usize..50, 1..8),
            max_control_line in 1usize..64,
            max_payload in 0usize..48,
        ) {
            let input: Vec<u8> = pieces.concat();
            let limits = ParserLimits { max_control_line, max_payload };
            let (whole, whole_error) = parse_in_chunks(limits, &input, &[input.len().max(1)]);
            let (chunked, chunked_error) = parse_in_chunks(limits, &input, &cuts);
            // The split changes nothing but how far into an over-long line
            // the limit is noticed.
            prop_assert_eq!(whole, chunked);
            let forget_len = |error: Option<ParseError>| match error {
                Some(ParseError::MaxControlLine { max, .. }) => Some(ParseError::MaxControlLine { len: 0, max }),
                other => other,
            };
            prop_assert_eq!(forget_len(whole_error), forget_len(chunked_error));
        }
    }
}
