//! What a publisher gets back from a stream, on the wire.
//!
//! Role: turn the stream's outcome into the reference's bytes: the ack
//! ([`PubAck::encode`]) or the refusal with the API error the reference
//! answers it with (codes from the one table, [`super::errors`]).

use bytes::Bytes;

use super::api::PubAck;
use super::errors::{ApiError, ApiErrorKind};
use super::stream::PublishError;

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
