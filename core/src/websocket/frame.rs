//! WebSocket framing (RFC 6455 section 5): a decoder for what clients send
//! and the encoder of what the server sends, as nats-server v2.15.1 frames.
//!
//! Input: the raw bytes read from the connection, in pieces split anywhere.
//! Output: the NATS protocol bytes the data frames carry, appended to a
//! buffer the client parser reads (so a NATS operation may span frames and
//! a frame may hold many operations), plus the control events the runtime
//! answers (`Ping` -> pong, `Close` -> the close reply, then the end).
//!
//! Invariants:
//! - Memory is bounded whatever the input: data payloads stream through as
//!   they arrive (the client parser bounds what it keeps), and only a frame
//!   header with a control payload (at most 14 + 125 bytes) waits in the
//!   input for its remaining bytes.
//! - Client frames must be masked unless the client asked for no masking at
//!   the upgrade; server frames are never masked.
//! - The first violation ends decoding with a [`FrameError`] whose text is
//!   the reference's; after a close frame every further byte is ignored.

use bytes::{Buf, BytesMut};

use super::compress::Inflater;

/// The most bytes one `decode` call inflates from compressed messages
/// before returning (asking to be called again), so the client parser
/// sees a bomb's output piece by piece.
pub const INFLATE_BUDGET: usize = 256 * 1024;

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER: usize = 14;
/// The reference sends browsers frames of at most this many payload bytes
/// ("browsers behave better with limited frame size").
pub const BROWSER_FRAME_SIZE: usize = 4096;

const FINAL_BIT: u8 = 0x80;
/// Marks a compressed message's first frame (RFC 7692).
pub const RSV1_BIT: u8 = 0x40;
const MASK_BIT: u8 = 0x80;

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

/// Close status codes the server sends (RFC 6455 section 7.4.1).
pub mod status {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const NO_STATUS_RECEIVED: u16 = 1005;
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TLS_HANDSHAKE: u16 = 1015;
}

/// A control frame the runtime must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// The client closes: answer with this close payload (the reference
    /// echoes the status and body), then end the connection as closed by
    /// the client.
    Close(Vec<u8>),
}

/// A framing violation, with the reference's text (sent in the close frame
/// with status 1002 and logged).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("mask bit missing")]
    MaskMissing,
    #[error("control frame length bigger than maximum allowed of 125 bytes")]
    ControlTooLong,
    #[error("control frame does not have final bit set")]
    ControlFragmented,
    #[error("new message started before final frame for previous message was received")]
    MessageInterleaved,
    #[error("invalid continuation frame")]
    InvalidContinuation,
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// A compressed frame (RSV1) although compression was not negotiated.
    #[error("compressed frame received without negotiated compression")]
    CompressionNotNegotiated,
    /// A compressed message that does not inflate.
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// A 64-bit length with its most significant bit set (RFC 6455 5.2).
    #[error("invalid frame length")]
    InvalidLength,
    /// A close status a peer may not send (RFC 6455 7.4).
    #[error("invalid close status code {0}")]
    InvalidCloseStatus(u16),
    #[error("close frame payload cannot be 1 byte")]
    CloseOneByte,
}

impl FrameError {
    /// The payload of the close frame the server sends before closing.
    pub fn close_payload(&self) -> Vec<u8> {
        close_payload(status::PROTOCOL_ERROR, &self.to_string())
    }
}

/// Decodes client frames. See the module invariants.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// Unmasked client frames are refused (the default).
    require_mask: bool,
    /// Payload bytes of the current data frame still to come; 0 at a header.
    remaining: u64,
    /// The current data frame's mask and the key index of its next byte.
    mask: Option<[u8; 4]>,
    mask_index: usize,
    /// A data message has started and its final frame has not come yet.
    message_open: bool,
    /// A close frame was decoded: the stream is over.
    closed: bool,
    /// permessage-deflate was negotiated.
    compression: bool,
    /// The current message is compressed (its first frame had RSV1).
    message_compressed: bool,
    /// The current data frame is its message's last.
    final_frame: bool,
    /// Created at the first compressed message.
    inflater: Option<Box<Inflater>>,
    /// Unmasked compressed bytes handed to the inflater (reused).
    scratch: Vec<u8>,
}

impl FrameDecoder {
    /// `require_mask`: false only when the client asked for no masking;
    /// `compression`: permessage-deflate was negotiated at the upgrade.
    pub fn new(require_mask: bool, compression: bool) -> Self {
        FrameDecoder {
            require_mask,
            remaining: 0,
            mask: None,
            mask_index: 0,
            message_open: false,
            closed: false,
            compression,
            message_compressed: false,
            final_frame: false,
            inflater: None,
            scratch: Vec::new(),
        }
    }

    /// Whether a close frame has been decoded.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Consumes what it can of `input`: data payloads are appended to
    /// `data`, control frames become `events`. An incomplete header (or
    /// control frame) is left in `input` for the next call. Returns true
    /// when it stopped at [`INFLATE_BUDGET`]: hand `data` to the parser and
    /// call again (with the same `input`) before reading more.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        data: &mut BytesMut,
        events: &mut Vec<ControlEvent>,
    ) -> Result<bool, FrameError> {
        let mut budget = INFLATE_BUDGET;
        loop {
            if self.closed {
                input.clear();
                return Ok(false);
            }
            if self.remaining > 0 {
                if input.is_empty() {
                    return Ok(false);
                }
                if self.message_compressed {
                    if budget == 0 {
                        return Ok(true);
                    }
                    let before = data.len();
                    self.inflate_payload(input, data, budget)?;
                    budget -= (data.len() - before).min(budget);
                } else {
                    self.take_payload(input, data);
                }
                if self.remaining == 0 && self.final_frame && self.message_compressed {
                    self.end_compressed_message(data)?;
                }
                continue;
            }
            let before = input.len();
            if !self.decode_header(input, events)? {
                return Ok(false);
            }
            debug_assert!(input.len() < before, "a decoded header consumes input");
            // An empty last frame ends a compressed message at once.
            if self.remaining == 0 && self.final_frame && self.message_compressed {
                self.end_compressed_message(data)?;
            }
        }
    }

    /// Unmasks the available part of the current (compressed) payload and
    /// inflates what the budget allows of it.
    fn inflate_payload(
        &mut self,
        input: &mut BytesMut,
        data: &mut BytesMut,
        budget: usize,
    ) -> Result<(), FrameError> {
        let available = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        self.scratch.clear();
        self.scratch.extend_from_slice(&input[..available]);
        if let Some(key) = self.mask {
            unmask(&mut self.scratch, key, self.mask_index);
        }
        let inflater = self.inflater.get_or_insert_with(Default::default);
        let before = data.len();
        let used = inflater
            .inflate(&self.scratch, data, budget)
            .map_err(|_| FrameError::InvalidCompressedData)?;
        if used == 0 && data.len() == before {
            // No progress with input and room to write: not deflate data.
            return Err(FrameError::InvalidCompressedData);
        }
        input.advance(used);
        self.mask_index = (self.mask_index + used) & 3;
        self.remaining -= used as u64;
        Ok(())
    }

    fn end_compressed_message(&mut self, data: &mut BytesMut) -> Result<(), FrameError> {
        let inflater = self.inflater.get_or_insert_with(Default::default);
        inflater
            .finish(data)
            .map_err(|_| FrameError::InvalidCompressedData)?;
        self.message_compressed = false;
        Ok(())
    }

    /// Moves the available part of the current payload into `data`, unmasked.
    fn take_payload(&mut self, input: &mut BytesMut, data: &mut BytesMut) {
        let available = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        let start = data.len();
        data.extend_from_slice(&input[..available]);
        input.advance(available);
        if let Some(key) = self.mask {
            self.mask_index = unmask(&mut data[start..], key, self.mask_index);
        }
        self.remaining -= available as u64;
    }

    /// Decodes one header (and a control frame's payload) if complete;
    /// returns whether it did.
    fn decode_header(
        &mut self,
        input: &mut BytesMut,
        events: &mut Vec<ControlEvent>,
    ) -> Result<bool, FrameError> {
        let (Some(&b0), Some(&b1)) = (input.first(), input.get(1)) else {
            return Ok(false);
        };
        let final_frame = b0 & FINAL_BIT != 0;
        let compressed = b0 & RSV1_BIT != 0;
        let opcode = b0 & 0x0f;
        let masked = b1 & MASK_BIT != 0;
        if self.require_mask && !masked {
            return Err(FrameError::MaskMissing);
        }
        let short_length = b1 & 0x7f;
        let control = opcode >= Opcode::Close as u8;
        match opcode {
            8..=10 => {
                if usize::from(short_length) > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::ControlTooLong);
                }
                if !final_frame {
                    return Err(FrameError::ControlFragmented);
                }
            }
            1 | 2 => {
                if self.message_open {
                    return Err(FrameError::MessageInterleaved);
                }
                if compressed && !self.compression {
                    return Err(FrameError::CompressionNotNegotiated);
                }
            }
            0 => {
                if !self.message_open || compressed {
                    return Err(FrameError::InvalidContinuation);
                }
            }
            other => return Err(FrameError::UnknownOpcode(other)),
        }
        let length_bytes = match short_length {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask_bytes = if masked { 4 } else { 0 };
        let header_len = 2 + length_bytes + mask_bytes;
        if input.len() < header_len {
            return Ok(false);
        }
        let length = match length_bytes {
            2 => u64::from(u16::from_be_bytes([input[2], input[3]])),
            8 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&input[2..10]);
                let length = u64::from_be_bytes(raw);
                if length >> 63 != 0 {
                    return Err(FrameError::InvalidLength);
                }
                length
            }
            _ => u64::from(short_length),
        };
        let mask = masked.then(|| {
            let at = 2 + length_bytes;
            [input[at], input[at + 1], input[at + 2], input[at + 3]]
        });
        if control {
            // Wait for the whole control frame: at most 14 + 125 bytes.
            let total = header_len + length as usize;
            if input.len() < total {
                return Ok(false);
            }
            input.advance(header_len);
            let mut payload = input.split_to(length as usize).to_vec();
            if let Some(key) = mask {
                unmask(&mut payload, key, 0);
            }
            self.control(opcode, payload, events)?;
            return Ok(true);
        }
        input.advance(header_len);
        if opcode != Opcode::Continuation as u8 {
            self.message_compressed = compressed;
        }
        self.message_open = !final_frame;
        self.final_frame = final_frame;
        self.remaining = length;
        self.mask = mask;
        self.mask_index = 0;
        Ok(true)
    }

    fn control(
        &mut self,
        opcode: u8,
        payload: Vec<u8>,
        events: &mut Vec<ControlEvent>,
    ) -> Result<(), FrameError> {
        debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        if opcode == Opcode::Ping as u8 {
            events.push(ControlEvent::Ping(payload));
        } else if opcode == Opcode::Close as u8 {
            events.push(ControlEvent::Close(close_reply(&payload)?));
            self.closed = true;
        }
        Ok(())
    }
}

/// Whether a peer may send close status `code` (RFC 6455 7.4.1 and 7.4.2),
/// as the reference judges it.
/// XORs `bytes` with the mask `key`, the first byte with key byte `index`
/// (a payload arrives in pieces); returns the key index of the next byte.
/// Eight bytes at a time: client payloads are most of what a websocket
/// connection reads, and a byte-wise loop costs more than the rest of the
/// read path together.
fn unmask(bytes: &mut [u8], key: [u8; 4], index: usize) -> usize {
    let rotated: [u8; 8] = std::array::from_fn(|i| key[(index + i) & 3]);
    let word = u64::from_ne_bytes(rotated);
    let mut words = bytes.chunks_exact_mut(8);
    for chunk in &mut words {
        let masked = u64::from_ne_bytes(chunk.try_into().expect("eight bytes")) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    // The tail starts at a multiple of 8 from `index`, so at `rotated[0]`.
    for (byte, k) in words.into_remainder().iter_mut().zip(rotated) {
        *byte ^= k;
    }
    (index + bytes.len()) & 3
}

fn valid_close_status(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The reference's answer to a client's close payload: the same status and
/// body (nothing for an empty payload), or 1007 when the body is not
/// UTF-8; a one-byte payload or a status a peer may not send is a
/// violation.
fn close_reply(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    match payload.len() {
        0 => return Ok(Vec::new()),
        1 => return Err(FrameError::CloseOneByte),
        _ => {}
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    if !valid_close_status(code) {
        return Err(FrameError::InvalidCloseStatus(code));
    }
    Ok(match std::str::from_utf8(&payload[2..]) {
        Ok(body) => close_payload(code, body),
        Err(_) => close_payload(status::INVALID_PAYLOAD, "invalid utf8 body in close frame"),
    })
}

/// A close payload: the status, then the body cut to fit a control frame
/// (with "..." when cut, as the reference does).
pub fn close_payload(status: u16, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
    out.extend_from_slice(&status.to_be_bytes());
    if body.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut cut = MAX_CONTROL_PAYLOAD - 5;
        // The reference cuts bytes; cutting at a character boundary keeps
        // the body valid UTF-8, as RFC 6455 requires.
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        out.extend_from_slice(&body.as_bytes()[..cut]);
        out.extend_from_slice(b"...");
    } else {
        out.extend_from_slice(body.as_bytes());
    }
    debug_assert!(out.len() <= MAX_CONTROL_PAYLOAD);
    out
}

/// A server frame header (never masked) for a payload of `len` bytes.
/// Returns the bytes and how many of them are used.
pub fn frame_header(opcode: Opcode, final_frame: bool, len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = opcode as u8 | if final_frame { FINAL_BIT } else { 0 };
    let used = if len <= 125 {
        header[1] = len as u8;
        2
    } else if len < 65_536 {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (header, used)
}

/// Server frames carrying all of `payload` (consumed) in pieces of at most
/// `size` bytes, appended to `out`: one copy, from wherever the payload's
/// chunks lie. `compressed`: the pieces are fragments of one compressed
/// message (RSV1 on the first, continuations after, FIN on the last);
/// otherwise each piece is a whole binary message, as the reference frames
/// them for browsers.
pub fn frames_capped(mut payload: impl Buf, size: usize, compressed: bool, out: &mut Vec<u8>) {
    assert!(size > 0);
    let count = payload.remaining().div_ceil(size).max(1);
    out.reserve(payload.remaining() + count * 4);
    let mut first = true;
    while payload.has_remaining() {
        let piece = payload.remaining().min(size);
        let last = piece == payload.remaining();
        let (opcode, final_frame) = match (compressed, first) {
            (false, _) => (Opcode::Binary, true),
            (true, true) => (Opcode::Binary, last),
            (true, false) => (Opcode::Continuation, last),
        };
        let (mut header, used) = frame_header(opcode, final_frame, piece);
        if compressed && first {
            header[0] |= RSV1_BIT;
        }
        out.extend_from_slice(&header[..used]);
        let mut left = piece;
        while left > 0 {
            let chunk = payload.chunk();
            let take = chunk.len().min(left);
            out.extend_from_slice(&chunk[..take]);
            payload.advance(take);
            left -= take;
        }
        first = false;
    }
}

/// A whole control frame from the server.
pub fn control_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_CONTROL_PAYLOAD,
        "control payload too long"
    );
    assert!(matches!(
        opcode,
        Opcode::Close | Opcode::Ping | Opcode::Pong
    ));
    let (header, used) = frame_header(opcode, true, payload.len());
    let mut frame = Vec::with_capacity(used + payload.len());
    frame.extend_from_slice(&header[..used]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with `key` unless `key` is None.
    fn client_frame(b0: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![b0];
        let mask_bit = if key.is_some() { MASK_BIT } else { 0 };
        if payload.len() <= 125 {
            out.push(mask_bit | payload.len() as u8);
        } else if payload.len() < 65_536 {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        match key {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    fn decode_all(
        decoder: &mut FrameDecoder,
        bytes: &[u8],
        split: usize,
    ) -> (Vec<u8>, Vec<ControlEvent>, Result<(), FrameError>) {
        let mut input = BytesMut::new();
        let mut data = BytesMut::new();
        let mut events = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            input.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut input, &mut data, &mut events) {
                    Err(e) => return (data.to_vec(), events, Err(e)),
                    Ok(true) => continue,
                    Ok(false) => break,
                }
            }
            assert!(input.len() <= MAX_HEADER + MAX_CONTROL_PAYLOAD);
        }
        (data.to_vec(), events, Ok(()))
    }

    #[test]
    fn unmasking_by_words_matches_the_byte_rule() {
        let key = KEY.expect("a key");
        let plain: Vec<u8> = (0..=255u8).cycle().take(100).collect();
        for index in 0..4 {
            for len in 0..plain.len() {
                let mut bytes = plain[..len].to_vec();
                let next = unmask(&mut bytes, key, index);
                let expected: Vec<u8> = plain[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(index + i) & 3])
                    .collect();
                assert_eq!(bytes, expected, "index {index}, {len} bytes");
                assert_eq!(next, (index + len) & 3);
            }
        }
    }

    #[test]
    fn fragments_and_any_split_give_the_same_stream() {
        let mut wire = client_frame(0x02, b"PUB foo 5\r\nhel", KEY);
        wire.extend(client_frame(0x89, b"ping!", KEY));
        wire.extend(client_frame(0x00, b"lo\r\nPI", KEY));
        wire.extend(client_frame(0x80, b"NG\r\n", KEY));
        wire.extend(client_frame(0x82, &vec![b'x'; 70_000], KEY));
        wire.extend(client_frame(0x81, &vec![b'y'; 300], KEY));
        let mut expected = b"PUB foo 5\r\nhello\r\nPING\r\n".to_vec();
        expected.extend(vec![b'x'; 70_000]);
        expected.extend(vec![b'y'; 300]);
        for split in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let (data, events, result) =
                decode_all(&mut FrameDecoder::new(true, false), &wire, split);
            assert_eq!(result, Ok(()));
            assert_eq!(data, expected, "split {split}");
            assert_eq!(events, vec![ControlEvent::Ping(b"ping!".to_vec())]);
        }
    }

    #[test]
    fn violations_have_the_references_texts() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (client_frame(0x82, b"x", None), FrameError::MaskMissing),
            (
                client_frame(0x89, &[0; 126], KEY),
                FrameError::ControlTooLong,
            ),
            (client_frame(0x09, b"", KEY), FrameError::ControlFragmented),
            (
                [client_frame(0x02, b"a", KEY), client_frame(0x82, b"b", KEY)].concat(),
                FrameError::MessageInterleaved,
            ),
            (
                client_frame(0x80, b"a", KEY),
                FrameError::InvalidContinuation,
            ),
            (client_frame(0x83, b"a", KEY), FrameError::UnknownOpcode(3)),
            (
                client_frame(0xc2, b"a", KEY),
                FrameError::CompressionNotNegotiated,
            ),
            (
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                FrameError::InvalidLength,
            ),
        ];
        for (wire, error) in cases {
            let (_, _, result) = decode_all(&mut FrameDecoder::new(true, false), &wire, wire.len());
            assert_eq!(result, Err(error.clone()));
        }
        assert_eq!(
            FrameError::MaskMissing.close_payload(),
            b"\x03\xeamask bit missing".to_vec()
        );
        assert_eq!(FrameError::UnknownOpcode(3).to_string(), "unknown opcode 3");
        // A client that asked for no masking may send unmasked frames.
        let (data, _, result) = decode_all(
            &mut FrameDecoder::new(false, false),
            &client_frame(0x82, b"ok", None),
            1,
        );
        assert_eq!((data, result), (b"ok".to_vec(), Ok(())));
    }

    #[test]
    fn close_is_echoed_and_ends_the_stream() {
        let mut decoder = FrameDecoder::new(true, false);
        let mut wire = client_frame(0x88, b"\x03\xe8bye", KEY);
        wire.extend(client_frame(0x82, b"PING\r\n", KEY));
        let (data, events, result) = decode_all(&mut decoder, &wire, 1);
        assert_eq!(result, Ok(()));
        assert!(data.is_empty(), "nothing after close is read");
        assert_eq!(events, vec![ControlEvent::Close(b"\x03\xe8bye".to_vec())]);
        assert!(decoder.is_closed());
        for (payload, reply) in [
            (&b""[..], Vec::new()),
            (b"\x0f\xa0", b"\x0f\xa0".to_vec()),
            (b"\x03\xf6x", b"\x03\xf6x".to_vec()),
            (
                b"\x03\xe8\xff\xfe",
                [&b"\x03\xef"[..], b"invalid utf8 body in close frame"].concat(),
            ),
        ] {
            let (_, events, _) = decode_all(
                &mut FrameDecoder::new(true, false),
                &client_frame(0x88, payload, KEY),
                99,
            );
            assert_eq!(events, vec![ControlEvent::Close(reply)]);
        }
        for (payload, error) in [
            (&b"\x03"[..], FrameError::CloseOneByte),
            (b"\x00\x01x", FrameError::InvalidCloseStatus(1)),
            (b"\x03\xed", FrameError::InvalidCloseStatus(1005)),
            (b"\x03\xf7", FrameError::InvalidCloseStatus(1015)),
            (b"\x13\x88", FrameError::InvalidCloseStatus(5000)),
        ] {
            let (_, _, result) = decode_all(
                &mut FrameDecoder::new(true, false),
                &client_frame(0x88, payload, KEY),
                99,
            );
            assert_eq!(result, Err(error));
        }
    }

    #[test]
    fn compressed_messages_inflate_whatever_the_split() {
        use crate::websocket::compress::Deflater;
        let message = b"PUB a 5\r\nhello\r\n".repeat(40);
        let compressed = Deflater::new().deflate(&message[..]);
        let (first, second) = compressed.split_at(compressed.len() / 2);
        let mut wire = client_frame(0x42, first, KEY);
        wire.extend(client_frame(0x89, b"p", KEY));
        wire.extend(client_frame(0x80, second, KEY));
        wire.extend(client_frame(0x82, b"PING\r\n", KEY));
        wire.extend(client_frame(
            0xc2,
            &Deflater::new().deflate(&b"PONG\r\n"[..]),
            KEY,
        ));
        let mut expected = message.clone();
        expected.extend_from_slice(b"PING\r\nPONG\r\n");
        for split in [1, 5, 64, wire.len()] {
            let (data, events, result) =
                decode_all(&mut FrameDecoder::new(true, true), &wire, split);
            assert_eq!(result, Ok(()));
            assert_eq!(data, expected, "split {split}");
            assert_eq!(events, vec![ControlEvent::Ping(b"p".to_vec())]);
        }
        // Not negotiated, or not deflate: violations.
        let (_, _, result) = decode_all(&mut FrameDecoder::new(true, false), &wire, 99);
        assert_eq!(result, Err(FrameError::CompressionNotNegotiated));
        let junk = client_frame(0xc2, &[0xff; 20], KEY);
        let (_, _, result) = decode_all(&mut FrameDecoder::new(true, true), &junk, 99);
        assert_eq!(result, Err(FrameError::InvalidCompressedData));
    }

    #[test]
    fn a_compression_bomb_comes_out_in_budgets() {
        use crate::websocket::compress::Deflater;
        let bomb = Deflater::new().deflate(&vec![b'a'; 8 << 20][..]);
        let wire = client_frame(0xc2, &bomb, KEY);
        let mut decoder = FrameDecoder::new(true, true);
        let mut input = BytesMut::from(&wire[..]);
        let mut data = BytesMut::new();
        let mut events = Vec::new();
        let mut total = 0;
        let mut calls = 0;
        loop {
            let more = decoder.decode(&mut input, &mut data, &mut events).unwrap();
            assert!(data.len() <= INFLATE_BUDGET + 64 * 1024, "{}", data.len());
            total += data.len();
            data.clear();
            calls += 1;
            if !more {
                break;
            }
        }
        assert_eq!(total, 8 << 20);
        assert!(calls >= (8 << 20) / INFLATE_BUDGET);
    }

    #[test]
    fn browser_frames_are_capped() {
        let payload = vec![7u8; 10_000];
        let mut plain = Vec::new();
        frames_capped(&payload[..], BROWSER_FRAME_SIZE, false, &mut plain);
        let mut decoder = FrameDecoder::new(false, false);
        let (data, _, result) = decode_all(&mut decoder, &plain, 999);
        assert_eq!((data, result), (payload.clone(), Ok(())));
        assert_eq!(plain[0], 0x82);
        assert_eq!(plain[4 + 4096], 0x82, "each piece a whole message");
        let mut fragmented = Vec::new();
        frames_capped(&payload[..], BROWSER_FRAME_SIZE, true, &mut fragmented);
        assert_eq!(fragmented[0], 0x42, "RSV1, binary, not final");
        assert_eq!(fragmented[4 + 4096], 0x00, "a continuation");
        assert_eq!(fragmented[2 * (4 + 4096)], 0x80, "the final continuation");
        // A payload in chunks that straddle the pieces frames the same.
        let mut chunked = Vec::new();
        let pieces = Buf::chain(&payload[..1000], &payload[1000..5000]).chain(&payload[5000..]);
        frames_capped(pieces, BROWSER_FRAME_SIZE, false, &mut chunked);
        assert_eq!(chunked, plain);
        let mut none = Vec::new();
        frames_capped(&[][..], BROWSER_FRAME_SIZE, false, &mut none);
        assert!(none.is_empty(), "no payload, no frame");
    }

    #[test]
    fn server_frames() {
        assert_eq!(
            frame_header(Opcode::Binary, true, 5),
            ([0x82, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        assert_eq!(
            &frame_header(Opcode::Binary, true, 406).0[..4],
            &[0x82, 126, 1, 150]
        );
        assert_eq!(frame_header(Opcode::Binary, true, 65_536).1, 10);
        assert_eq!(
            control_frame(Opcode::Pong, b"hi"),
            vec![0x8a, 2, b'h', b'i']
        );
        let long = "é".repeat(100);
        let payload = close_payload(1000, &long);
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&payload[2..]).unwrap().ends_with("..."));
    }
}
