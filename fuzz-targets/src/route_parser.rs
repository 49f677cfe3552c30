//! The route protocol parser, fed the same bytes whole and in pieces.
//!
//! Input: 1 control byte (bit 7: the route is a pinned account's, whose
//! lines leave the account out; bits 0-6: the piece size, 0 = whole), then
//! what a route sends. Checked: no panic; the buffer never holds more than
//! one control line plus one message past what was fed; splitting the
//! input gives the same operations (and the same error) as feeding it
//! whole; a parsed message re-encoded parses to itself.

use bytes::{Bytes, BytesMut};
use rnats_core::protocol::ParserLimits;
use rnats_core::route::{write_rmsg, RouteOp, RouteParser};

const LIMITS: ParserLimits = ParserLimits {
    max_control_line: 512,
    max_payload: 2048,
};

fn parse(data: &[u8], piece: usize, pinned: bool) -> (Vec<RouteOp>, bool) {
    let mut parser = RouteParser::new(LIMITS);
    if pinned {
        parser.pin(Bytes::from_static(b"ACC"));
    }
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(_) => return (ops, true),
            }
        }
        assert!(buf.len() <= LIMITS.max_control_line + 18 + LIMITS.max_payload + 2 + chunk.len());
    }
    (ops, false)
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let pinned = control & 0x80 != 0;
    let piece = usize::from(control & 0x7f);
    let whole = parse(input, input.len(), pinned);
    if piece != 0 {
        let pieces = parse(input, piece, pinned);
        assert_eq!(whole, pieces);
    }
    for op in &whole.0 {
        if let RouteOp::Msg(msg) = op {
            let mut out = BytesMut::new();
            let queues: Vec<&[u8]> = msg.queues.iter().map(|q| &q[..]).collect();
            write_rmsg(
                &mut out,
                (!pinned).then_some(&msg.account[..]),
                &msg.subject,
                msg.reply.as_deref(),
                &queues,
                msg.headers.as_deref(),
                &msg.payload,
            );
            let (again, failed) = parse(&out, out.len(), pinned);
            assert!(!failed);
            assert_eq!(again.as_slice(), std::slice::from_ref(op));
        }
    }
}
