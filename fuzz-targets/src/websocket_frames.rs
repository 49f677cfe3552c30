//! Arbitrary bytes as what a websocket client sends after the upgrade.
//!
//! Input: 1 control byte (bit 0: masking required; bit 1: compression
//! negotiated; the rest seeds the piece sizes), then the client's bytes.
//!
//! Checked: no panic; the bytes decoded whole and in pieces give the same
//! NATS stream, the same control events and the same error (with
//! compression, streams of which one is a prefix of the other: an inflater
//! may hold back a few decoded bytes until more input comes); between calls
//! the decoder keeps at most one header and a control payload
//! (`MAX_HEADER + MAX_CONTROL_PAYLOAD` bytes); one call inflates at most
//! its budget; without compression the NATS stream is never longer than the
//! input; nothing follows a close event, and a close reply fits a control
//! frame.

use bytes::BytesMut;
use rnats_core::websocket::frame::{
    ControlEvent, FrameDecoder, FrameError, INFLATE_BUDGET, MAX_CONTROL_PAYLOAD, MAX_HEADER,
};

/// Deflate expands at most about 1032 times (RFC 1951's longest match per
/// few bits); anything beyond means bytes came from nowhere.
const MAX_EXPANSION: usize = 1100;

type Outcome = (Vec<u8>, Vec<ControlEvent>, Result<(), FrameError>);

fn decode(
    require_mask: bool,
    compression: bool,
    data: &[u8],
    mut piece: impl FnMut() -> usize,
) -> Outcome {
    let mut decoder = FrameDecoder::new(require_mask, compression);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let take = piece().clamp(1, rest.len());
        input.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            let before = out.len();
            match decoder.decode(&mut input, &mut out, &mut events) {
                Err(error) => return (out.to_vec(), events, Err(error)),
                Ok(true) => {
                    // Stopped at the inflate budget: the caller hands the
                    // output on before asking for more.
                    assert!(out.len() - before <= INFLATE_BUDGET + 64 * 1024);
                    assert!(out.len() <= MAX_EXPANSION * data.len() + 64);
                }
                Ok(false) => break,
            }
        }
        assert!(input.len() <= MAX_HEADER + MAX_CONTROL_PAYLOAD);
        if decoder.is_closed() {
            assert!(input.is_empty(), "nothing is kept after a close");
        }
    }
    (out.to_vec(), events, Ok(()))
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let require_mask = control & 1 == 1;
    let compression = control & 2 == 2;
    let whole = decode(require_mask, compression, bytes, || usize::MAX);
    let mut seed = u32::from(control >> 2) | 1;
    let pieces = decode(require_mask, compression, bytes, || {
        // xorshift: piece sizes from 1 to 16 bytes, reproducible per input.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 16 + 1) as usize
    });
    if compression {
        // The inflater may hold back the last few bytes it decoded until
        // more input (or the message's end) arrives, and on corrupt data
        // how much it emits before noticing depends on how much input it
        // had at once: the outputs agree as far as the shorter goes. (Whole
        // messages split anywhere inflate identically: the unit tests.)
        let shorter = whole.0.len().min(pieces.0.len());
        assert_eq!(whole.0[..shorter], pieces.0[..shorter]);
        assert_eq!(whole.1, pieces.1);
        assert_eq!(whole.2, pieces.2);
    } else {
        assert_eq!(whole, pieces);
    }
    let (stream, events, _) = whole;
    if !compression {
        assert!(stream.len() <= bytes.len());
    }
    let closes = events
        .iter()
        .filter(|e| matches!(e, ControlEvent::Close(_)))
        .count();
    assert!(closes <= 1);
    if closes == 1 {
        assert!(matches!(events.last(), Some(ControlEvent::Close(_))));
    }
    for event in &events {
        match event {
            ControlEvent::Ping(payload) | ControlEvent::Close(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD)
            }
        }
    }
}
