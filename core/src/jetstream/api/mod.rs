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
//! `pub_ack.rs` (publish acknowledgements), `consumer.rs` (ConsumerConfig,
//! ConsumerInfo, the consumer requests and replies, the pull request body),
//! `decode.rs` (request bodies to types, strict mode's unknown-field
//! refusal).

mod account;
mod consumer;
pub mod decode;
mod info;
mod pub_ack;
mod requests;
mod stream;
pub mod time;

pub use account::{AccountInfo, AccountLimitsInfo, AccountTier, ApiStats};
pub use consumer::{
    consumer_page_limit, consumer_response_type, AckPolicy, ConsumerAction, ConsumerConfig,
    ConsumerCreateResponse, ConsumerDeleteResponse, ConsumerInfo, ConsumerInfoResponse,
    ConsumerLeaderStepdownResponse, ConsumerListRequest, ConsumerListResponse,
    ConsumerNamesRequest, ConsumerNamesResponse, ConsumerPauseRequest, ConsumerPauseResponse,
    ConsumerResetRequest, ConsumerResetResponse, ConsumerUnpinRequest, ConsumerUnpinResponse,
    CreateConsumerRequest, DeliverPolicy, NextRequest, PriorityGroupState, PriorityPolicy,
    ReplayPolicy, SequenceInfo,
};
pub use decode::{decode_request, RequestFields};
pub use info::{
    ClusterInfo, LostStreamData, PeerInfo, StreamAlternate, StreamInfo, StreamSourceInfo,
    StreamState,
};
pub use pub_ack::PubAck;
pub use requests::{
    page_limit, response_type, AccountInfoResponse, ApiPaged, MsgDeleteRequest, MsgDeleteResponse,
    MsgGetRequest, MsgGetResponse, PurgeRequest, PurgeResponse, StoredMsg, StreamCreateResponse,
    StreamDeleteResponse, StreamInfoRequest, StreamInfoResponse, StreamListRequest,
    StreamListResponse, StreamNamesRequest, StreamNamesResponse, StreamUpdateResponse,
};
pub use stream::{
    Compression, ConsumerLimits, DiscardPolicy, ExternalStream, PersistMode, Placement, Republish,
    RetentionPolicy, StorageType, StreamConfig, StreamConfigRequest, StreamConsumerSource,
    StreamSource, SubjectTransformConfig,
};

use serde::{Deserialize, Deserializer, Serialize};

/// `value` as the reference's `json.Marshal` writes it: compact, and with
/// Go's HTML-safe escapes (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`;
/// U+2028 and U+2029 escaped too). Subjects such as `orders.>` reach
/// clients as `orders.\u003e`; every JSON reply goes out through here.
pub fn to_wire_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoEscapes);
    // The types here have string keys and no fallible serializers.
    let written = value.serialize(&mut serializer);
    debug_assert!(written.is_ok());
    out
}

/// serde_json's compact formatter plus Go's extra string escapes.
struct GoEscapes;

impl serde_json::ser::Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

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
