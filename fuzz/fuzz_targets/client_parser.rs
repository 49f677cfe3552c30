//! Feeds arbitrary bytes to the client parser in arbitrary pieces.
//!
//! The first three input bytes choose the limits and the piece size. Checked:
//! no panic; after `Ok(None)` the buffer holds at most one partial frame
//! (bounded by the limits); and the ops parsed before any error are the same
//! whether the input arrives whole or in pieces.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rnats_core::protocol::{ClientOp, ClientParser, ParseError, ParserLimits};

fn run(limits: ParserLimits, input: &[u8], piece: usize) -> (Vec<ClientOp>, Option<ParseError>) {
    let retained_max = (limits.max_control_line + 1)
        .max(limits.max_payload + 1)
        .max(8);
    let mut parser = ClientParser::new(limits);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next_op(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(error) => return (ops, Some(error)),
            }
        }
        assert!(buf.len() <= retained_max, "{} bytes retained", buf.len());
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[control_line, payload, piece], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let limits = ParserLimits {
        max_control_line: usize::from(control_line) + 1,
        max_payload: usize::from(payload) * 4,
    };
    let (whole, whole_error) = run(limits, input, input.len());
    let (pieces, pieces_error) = run(limits, input, usize::from(piece));
    let common = whole.len().min(pieces.len());
    assert_eq!(whole[..common], pieces[..common]);
    if whole_error.is_none() && pieces_error.is_none() {
        assert_eq!(whole, pieces);
    }
    if let Some(error) = whole_error {
        assert!(error.closes_connection());
        let _ = error.wire_error();
    }
});
