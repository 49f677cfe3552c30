//! What a publisher gets back from a stream, on the wire.
//!
//! Role: turn the stream's outcome into the reference's bytes: the ack
//! ([`PubAck::encode`]) or the refusal with the API error the reference
//! answers it with (codes from the one table, [`super::errors`]).

use bytes::{BufMut, Bytes, BytesMut};

use super::api::PubAck;
use super::errors::{ApiError, ApiErrorKind};
use super::stream::PublishError;

/// A stream's acks of stored (or duplicate) messages, written back to back
/// into one buffer of which each ack is a shared slice: the publish path
/// allocates a buffer per [`AckArena::CHUNK`] bytes of acks, not one per
/// message. Each ack is byte for byte [`PubAck::encode_stored`]'s.
#[derive(Debug)]
pub struct AckArena {
    /// `{"stream":"S"[,"domain":"D"],"seq":`, rendered once.
    prefix: Box<[u8]>,
    buf: BytesMut,
}

impl AckArena {
    /// Bytes reserved at a time: many acks per allocation.
    const CHUNK: usize = 8 << 10;

    pub fn new(stream: &str, domain: &str) -> Self {
        AckArena {
            prefix: PubAck::prefix(stream, domain)
                .into_bytes()
                .into_boxed_slice(),
            buf: BytesMut::new(),
        }
    }

    /// `{"stream":"S"[,"domain":"D"],"seq":`: every ack's start.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The ack of a message stored at `seq` (or a duplicate of it).
    pub fn stored(&mut self, seq: u64, duplicate: bool) -> Bytes {
        let longest = self.prefix.len() + 20 + PubAck::DUPLICATE.len() + 1;
        if self.buf.capacity() < longest {
            // The acks still held keep the old buffer alive; this one is new.
            self.buf.reserve(Self::CHUNK.max(longest));
        }
        self.buf.put_slice(&self.prefix);
        // Into the room reserved above: no allocation.
        let _ = std::fmt::Write::write_fmt(&mut self.buf, format_args!("{seq}"));
        if duplicate {
            self.buf.put_slice(PubAck::DUPLICATE.as_bytes());
        }
        self.buf.put_u8(b'}');
        self.buf.split().freeze()
    }
}

/// The acknowledgement of a stored (or duplicate) message, with a counter
/// stream's new total.
pub fn pub_ack(
    stream: &str,
    domain: &str,
    seq: u64,
    duplicate: bool,
    total: Option<String>,
) -> Bytes {
    match total {
        None => Bytes::from(PubAck::encode_stored(stream, domain, seq, duplicate)),
        Some(value) => Bytes::from(
            PubAck {
                stream: stream.to_string(),
                domain: domain.to_string(),
                seq,
                duplicate,
                value,
                ..PubAck::default()
            }
            .encode(),
        ),
    }
}

/// The refusal of a publish.
pub fn publish_error(stream: &str, error: &PublishError) -> Bytes {
    Bytes::from(PubAck::encode_error(stream, &api_error(error)))
}

/// The API error a refused publish is answered with, as the reference
/// words it.
pub fn api_error(error: &PublishError) -> ApiError {
    use ApiErrorKind as K;
    match error {
        PublishError::WrongStream => ApiError::new(K::StreamNotMatch),
        PublishError::WrongLastSequence(seq) => {
            ApiError::with(K::StreamWrongLastSequence, &[("{seq}", &seq.to_string())])
        }
        PublishError::WrongLastMsgId(id) => {
            ApiError::with(K::StreamWrongLastMsgID, &[("{id}", id)])
        }
        PublishError::Sealed => ApiError::new(K::StreamSealed),
        PublishError::RollupNotPermitted => {
            ApiError::with(K::StreamRollupFailed, &[("{err}", "rollup not permitted")])
        }
        PublishError::InvalidRollup(value) => ApiError::with(
            K::StreamRollupFailed,
            &[("{err}", &format!("rollup value invalid: {value:?}"))],
        ),
        PublishError::TtlDisabled => ApiError::new(K::MessageTTLDisabled),
        PublishError::InvalidTtl => ApiError::new(K::MessageTTLInvalid),
        PublishError::TooLarge => ApiError::new(K::StreamMessageExceedsMaximum),
        PublishError::InsufficientResources => ApiError::new(K::InsufficientResources),
        PublishError::AccountResources => ApiError::new(K::AccountResourcesExceeded),
        PublishError::Rejected(kind) => ApiError::new(*kind),
        PublishError::SourceHeaderNotAllowed => ApiError::new(K::MessageSourceHdrNotAllowed),
        PublishError::BatchTooLarge(size) => ApiError::with(
            K::AtomicPublishTooLargeBatch,
            &[("{size}", &size.to_string())],
        ),
        PublishError::BatchUnsupportedHeader(header) => ApiError::with(
            K::AtomicPublishUnsupportedHeaderBatch,
            &[("{header}", header)],
        ),
        PublishError::RollupFailed(reason) => {
            ApiError::with(K::StreamRollupFailed, &[("{err}", reason)])
        }
        PublishError::Store(error) => {
            ApiError::with(K::StreamStoreFailed, &[("{err}", &error.to_string())])
        }
    }
}

#[cfg(test)]
mod arena_tests {
    use super::*;

    #[test]
    fn arena_acks_are_the_reference_acks() {
        for (stream, domain) in [("ORDERS", ""), ("S", "hub"), ("we\"ird", "d\\x")] {
            let mut arena = AckArena::new(stream, domain);
            for seq in [0, 1, 9, 10, 12_345, u64::MAX] {
                for duplicate in [false, true] {
                    assert_eq!(
                        arena.stored(seq, duplicate).as_ref(),
                        PubAck::encode_stored(stream, domain, seq, duplicate),
                        "{stream} {domain} {seq} {duplicate}"
                    );
                }
            }
        }
        // Many acks: each is its own slice, intact after the buffer moved on.
        let mut arena = AckArena::new("S", "");
        let acks: Vec<Bytes> = (1..=2_000).map(|seq| arena.stored(seq, false)).collect();
        for (seq, ack) in (1..=2_000u64).zip(&acks) {
            assert_eq!(ack.as_ref(), PubAck::encode_stored("S", "", seq, false));
        }
    }
}
