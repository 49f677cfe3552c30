//! Atomic batch publish (`Nats-Batch-Id`): not built yet.
//!
//! Role: keep batches failing closed. No rnats stream can be created with
//! `allow_atomic` (refused by name), so every stream is one where the
//! reference answers a batch message with "atomic publish is disabled";
//! this module gives that answer, after the checks the reference makes
//! first on its batch path (a sealed stream, the message size), instead of
//! storing the message as an ordinary one.

use super::errors::ApiErrorKind;
use super::stream::PublishError;
use crate::protocol::find_header;

const BATCH_ID: &[u8] = b"Nats-Batch-Id";

/// The refusal of a message carrying a batch id (`None`: it carries none).
/// `size` is its headers plus payload, `max` the stream's `max_msg_size`.
pub(crate) fn refusal(headers: &[u8], size: u64, max: Option<u64>) -> Option<PublishError> {
    find_header(headers, BATCH_ID).filter(|id| !id.is_empty())?;
    if max.is_some_and(|max| size > max) {
        return Some(PublishError::TooLarge);
    }
    Some(PublishError::Rejected(ApiErrorKind::AtomicPublishDisabled))
}
