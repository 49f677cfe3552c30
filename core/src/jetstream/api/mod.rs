//! The JSON of the `$JS.API` wire for streams, as nats-server v2.15.1 writes
//! and reads it.
//!
//! Role: serde types only, no behaviour. Each type's field names, order and
//! omission rules follow the reference's marshalling (Go's `omitempty`
//! leaves out zero numbers, `false`, empty strings, empty lists and maps and
//! absent objects); the comments on fields say where a field is always
//! written. Times are RFC 3339 with nanoseconds in UTC, Go's zero time
//! (`0001-01-01T00:00:00Z`) standing for "none"; durations are integer
//! nanoseconds (`i64`, as Go's `time.Duration`, so a negative value a client
//! sends survives to validation).
//!
//! Reading is lenient the way the reference's is: missing fields take their
//! zero value and `null` reads as the zero value too. Unknown fields are
//! accepted by the types; [`decode_request`] refuses them in `strict` mode.
//!
//! Files: `stream.rs` (StreamConfig and its parts), `info.rs` (StreamInfo,
//! StreamState, cluster and source info), `account.rs` (`$JS.API.INFO`),
//! `requests.rs` (the request and response bodies of the stream API),
//! `pub_ack.rs` (publish acknowledgements), `decode.rs` (request bodies
//! to types, strict mode's unknown-field refusal).

mod account;
pub mod decode;
mod info;
mod pub_ack;
mod requests;
mod stream;
pub mod time;

pub use account::{AccountInfo, AccountLimitsInfo, AccountTier, ApiStats};
pub use decode::{decode_request, RequestFields};
pub use info::{
    ClusterInfo, LostStreamData, PeerInfo, StreamAlternate, StreamInfo, StreamSourceInfo,
    StreamState,
};
pub use pub_ack::PubAck;
pub use requests::{
    response_type, AccountInfoResponse, ApiPaged, MsgDeleteRequest, MsgDeleteResponse,
    MsgGetRequest, MsgGetResponse, PurgeRequest, PurgeResponse, StoredMsg, StreamCreateResponse,
    StreamDeleteResponse, StreamInfoRequest, StreamInfoResponse, StreamListRequest,
    StreamListResponse, StreamNamesRequest, StreamNamesResponse, StreamUpdateResponse,
};
pub use stream::{
    Compression, ConsumerLimits, DiscardPolicy, ExternalStream, PersistMode, Placement, Republish,
    RetentionPolicy, StorageType, StreamConfig, StreamConfigRequest, StreamConsumerSource,
    StreamSource, SubjectTransformConfig,
};

use serde::{Deserialize, Deserializer};

/// Reads `null` as the type's default, as Go's decoder leaves the zero value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

pub(crate) fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

pub(crate) fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

pub(crate) fn is_zero_usize(value: &usize) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests;
