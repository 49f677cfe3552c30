//! The client protocol parser fed the same bytes whole and in arbitrary pieces.
//!
//! Input: three control bytes, then the bytes a client sends.
//! - byte 0: `max_control_line = (b + 1) * 4` (4 to 1024);
//! - byte 1: `max_payload = b * 16` (0 to 4080);
//! - byte 2: bit 7 enables headers (HPUB); bits 0-6 seed the piece sizes
//!   (0 delivers one byte at a time, `s` pieces of 1 to `s + 1` bytes).
//!
//! Checked: no panic; both deliveries give the same operations and the same
//! error (the parse does not depend on how reads split the stream; only
//! `MaxControlLine::len`, a diagnostic, may differ); after
//! `Ok(None)` the buffer holds at most one partial frame, bounded by the
//! limits; every operation respects the limits; and every error closes the
//! connection.

use bytes::BytesMut;
use rnats_core::protocol::{ClientOp, ClientParser, ParseError, ParserLimits};

/// What one delivery of the input produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse {
    pub ops: Vec<ClientOp>,
    pub error: Option<ParseError>,
}

/// Parses `input` delivered in pieces whose sizes `piece_size` draws.
pub fn parse_in_pieces(
    limits: ParserLimits,
    headers_enabled: bool,
    input: &[u8],
    mut piece_size: impl FnMut() -> usize,
) -> Parse {
    let retained_max = (limits.max_control_line + 1)
        .max(limits.max_payload + 1)
        .max(8);
    let mut parser = ClientParser::new(limits);
    parser.set_headers_enabled(headers_enabled);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = piece_size().clamp(1, rest.len());
        let (piece, after) = rest.split_at(size);
        rest = after;
        buf.extend_from_slice(piece);
        loop {
            match parser.next_op(&mut buf) {
                Ok(Some(op)) => {
                    check_op(&op, limits, headers_enabled);
                    ops.push(op);
                }
                Ok(None) => break,
                Err(error) => {
                    return Parse {
                        ops,
                        error: Some(error),
                    }
                }
            }
        }
        assert!(buf.len() <= retained_max, "{} bytes retained", buf.len());
    }
    Parse { ops, error: None }
}

fn check_op(op: &ClientOp, limits: ParserLimits, headers_enabled: bool) {
    match op {
        ClientOp::Pub { payload, .. } => assert!(payload.len() <= limits.max_payload),
        ClientOp::HPub {
            headers, payload, ..
        } => {
            assert!(headers_enabled, "HPUB parsed with headers disabled");
            assert!(headers.len() + payload.len() <= limits.max_payload);
        }
        ClientOp::Sub { subject, sid, .. } => {
            assert!(!subject.is_empty());
            assert!(!sid.is_empty());
        }
        ClientOp::Unsub { sid, .. } => assert!(!sid.is_empty()),
        ClientOp::Connect(_) | ClientOp::Ping | ClientOp::Pong | ClientOp::StrayHMsg => {}
    }
}

/// The parse with the one field that depends on read boundaries erased:
/// `MaxControlLine::len` counts the bytes seen when the limit was noticed,
/// which is the whole line when it arrives at once and fewer when it arrives
/// in pieces. Both must still exceed the limit.
fn comparable(parse: &Parse) -> (&[ClientOp], Option<ParseError>) {
    let error = parse.error.clone().map(|error| match error {
        ParseError::MaxControlLine { len, max } => {
            assert!(len > max, "MaxControlLine with {len} <= {max}");
            ParseError::MaxControlLine { len: 0, max }
        }
        other => other,
    });
    (&parse.ops, error)
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&[control_line, payload, piece], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let limits = ParserLimits {
        max_control_line: (usize::from(control_line) + 1) * 4,
        max_payload: usize::from(payload) * 16,
    };
    let headers_enabled = piece & 0x80 != 0;
    let spread = u64::from(piece & 0x7f) + 1;
    let whole = parse_in_pieces(limits, headers_enabled, input, || input.len());
    // xorshift64: cheap, deterministic piece sizes from 1 to `spread`.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ spread;
    let pieces = parse_in_pieces(limits, headers_enabled, input, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % spread).unwrap_or(0) + 1
    });
    assert_eq!(
        comparable(&whole),
        comparable(&pieces),
        "whole and piecewise parses differ"
    );
    if let Some(error) = &whole.error {
        // Whatever earns an -ERR says it on one line.
        if let Some(text) = error.wire_error() {
            assert!(!text.contains(['\r', '\n']), "{text:?}");
        }
        let _ = error.close_reason();
    }
}
