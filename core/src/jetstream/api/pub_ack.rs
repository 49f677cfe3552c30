//! Publish acknowledgements: the reply a stream sends to a publish.
//!
//! Role: the exact bytes. The reference writes a successful ack by hand
//! from a per-stream prefix (`{"stream":"S","domain":"D","seq":`), then the
//! sequence and the extras, and a refused publish with its JSON marshaller
//! (`{"error":{..},"stream":"S","seq":0}`); the two differ in field order
//! and in a space (`"duplicate": true`), and clients see both, so
//! [`PubAck::encode`] and [`PubAck::encode_error`] reproduce each.
//!
//! Invariants: the output is one JSON object; stream names and batch ids
//! are quoted as Go's `%q` quotes them.

use serde::{Deserialize, Serialize};

use super::{is_false, is_zero_u64, null_as_default};
use std::fmt::Write as _;

use crate::format::push_go_quoted;
use crate::jetstream::errors::ApiError;

/// A publish acknowledgement. Reading accepts both forms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stream: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub seq: u64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub duplicate: bool,
    /// A counter stream's new total.
    #[serde(
        default,
        rename = "val",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub value: String,
    /// The batch a batched publish committed, and how many it held.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub batch: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub count: u64,
}

impl PubAck {
    /// The ack of a stored (or duplicate) message, byte for byte as the
    /// reference writes it.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.error.is_none());
        let mut out = Self::head(&self.stream, &self.domain, self.seq, self.duplicate);
        if !self.batch.is_empty() {
            out.push_str(",\"batch\":");
            push_go_quoted(&mut out, self.batch.as_bytes());
            let _ = write!(out, ",\"count\":{}", self.count);
        } else if !self.value.is_empty() {
            out.push_str(",\"val\":");
            push_go_quoted(&mut out, self.value.as_bytes());
        }
        out.push('}');
        out.into_bytes()
    }

    /// [`PubAck::encode`] of the ack of a stored message (no batch, no
    /// counter) without building a `PubAck`: one allocation, on the
    /// publish path of every message.
    pub fn encode_stored(stream: &str, domain: &str, seq: u64, duplicate: bool) -> Vec<u8> {
        let mut out = Self::head(stream, domain, seq, duplicate);
        out.push('}');
        debug_assert!(Self::stored_len(stream, domain, seq, duplicate)
            .is_none_or(|len| len == out.len() && len == out.capacity()));
        out.into_bytes()
    }

    /// The exact length of [`PubAck::encode_stored`]'s output when neither
    /// name needs escaping (else `None`), so the buffer can be made to
    /// measure: `Bytes` takes a full `Vec` without another allocation.
    fn stored_len(stream: &str, domain: &str, seq: u64, duplicate: bool) -> Option<usize> {
        let plain = |name: &str| {
            name.bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        };
        if !plain(stream) || !plain(domain) {
            return None;
        }
        let digits = seq.checked_ilog10().map_or(1, |log| log as usize + 1);
        Some(
            "{\"stream\":\"\"".len()
                + stream.len()
                + if domain.is_empty() {
                    0
                } else {
                    ",\"domain\":\"\"".len() + domain.len()
                }
                + ",\"seq\":".len()
                + digits
                + if duplicate {
                    ",\"duplicate\": true".len()
                } else {
                    0
                }
                + 1,
        )
    }

    /// Everything up to the optional batch or counter members.
    fn head(stream: &str, domain: &str, seq: u64, duplicate: bool) -> String {
        debug_assert!(!stream.is_empty());
        let capacity = Self::stored_len(stream, domain, seq, duplicate)
            .unwrap_or(64 + 2 * (stream.len() + domain.len()));
        let mut out = String::with_capacity(capacity);
        Self::push_prefix(&mut out, stream, domain);
        let _ = write!(out, "{seq}");
        if duplicate {
            out.push_str(Self::DUPLICATE);
        }
        out
    }

    /// What follows the sequence in the ack of a duplicate.
    pub const DUPLICATE: &'static str = ",\"duplicate\": true";

    /// The ack's start, up to its sequence: `{"stream":"S"[,"domain":"D"],"seq":`.
    pub fn prefix(stream: &str, domain: &str) -> String {
        let mut out = String::new();
        Self::push_prefix(&mut out, stream, domain);
        out
    }

    fn push_prefix(out: &mut String, stream: &str, domain: &str) {
        out.push_str("{\"stream\":");
        push_go_quoted(out, stream.as_bytes());
        if !domain.is_empty() {
            out.push_str(",\"domain\":");
            push_go_quoted(out, domain.as_bytes());
        }
        out.push_str(",\"seq\":");
    }

    /// The reply to a refused publish: `{"error":{..},"stream":"S","seq":0}`.
    pub fn encode_error(stream: &str, error: &ApiError) -> Vec<u8> {
        let refused = PubAck {
            error: Some(error.clone()),
            stream: stream.to_owned(),
            ..PubAck::default()
        };
        let bytes = super::to_wire_json(&refused);
        debug_assert!(bytes.starts_with(b"{\"error\":"));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::errors::ApiErrorKind;

    fn ack(stream: &str, seq: u64) -> PubAck {
        PubAck {
            stream: stream.into(),
            seq,
            ..PubAck::default()
        }
    }

    #[test]
    fn success_bytes_match_the_reference() {
        // Captured from nats-server v2.15.1.
        assert_eq!(ack("S1", 1).encode(), br#"{"stream":"S1","seq":1}"#);
        let duplicate = PubAck {
            duplicate: true,
            ..ack("S1", 2)
        };
        assert_eq!(
            duplicate.encode(),
            br#"{"stream":"S1","seq":2,"duplicate": true}"#
        );
        let domain = PubAck {
            domain: "hub".into(),
            ..ack("S1", 3)
        };
        assert_eq!(
            domain.encode(),
            br#"{"stream":"S1","domain":"hub","seq":3}"#
        );
        let batch = PubAck {
            batch: "b1".into(),
            count: 4,
            ..ack("S1", 7)
        };
        assert_eq!(
            batch.encode(),
            br#"{"stream":"S1","seq":7,"batch":"b1","count":4}"#
        );
        let counter = PubAck {
            value: "12".into(),
            ..ack("C", 2)
        };
        assert_eq!(counter.encode(), br#"{"stream":"C","seq":2,"val":"12"}"#);
    }

    #[test]
    fn refusal_bytes_match_the_reference() {
        let error = ApiError::with(ApiErrorKind::StreamWrongLastSequence, &[("{seq}", "2")]);
        assert_eq!(
            PubAck::encode_error("S1", &error),
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 2"},"stream":"S1","seq":0}"#
        );
    }

    #[test]
    fn both_forms_read_back() {
        let read: PubAck =
            serde_json::from_slice(br#"{"stream":"S1","seq":2,"duplicate": true}"#).unwrap();
        assert!(read.duplicate);
        let read: PubAck = serde_json::from_slice(&PubAck::encode_error(
            "S1",
            &ApiError::new(ApiErrorKind::StreamNotFound),
        ))
        .unwrap();
        assert!(read.error.unwrap().is(ApiErrorKind::StreamNotFound));
    }
}
