//! `StreamConfig` and its parts, as clients send them and the reference
//! writes them back.
//!
//! Invariants: field order is the reference's (clients and snapshot tests
//! see the same bytes); a field marked "always" is written even at its zero
//! value, every other one is left out at zero. Limits use -1 for unlimited
//! once normalized ([`crate::jetstream::stream_config`]); as read they may
//! be 0 or any negative number.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{is_false, is_zero_i64, is_zero_u64, null_as_default};
use crate::time::WallTime;

/// A stream's configuration (`config` in stream replies, the body of
/// `STREAM.CREATE` and `STREAM.UPDATE`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subjects: Vec<String>,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retention: RetentionPolicy,
    /// Always written; -1 is unlimited.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_consumers: i64,
    /// Always written; -1 is unlimited.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_msgs: i64,
    /// Always written; -1 is unlimited.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_bytes: i64,
    /// Nanoseconds, always written; 0 is unlimited.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_age: i64,
    /// Always written; -1 is unlimited.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_msgs_per_subject: i64,
    /// -1 is unlimited (Go's `int32`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_i32"
    )]
    pub max_msg_size: i32,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub discard: DiscardPolicy,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage: StorageType,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub num_replicas: i64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub no_ack: bool,
    /// Nanoseconds.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_i64"
    )]
    pub duplicate_window: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<StreamSource>,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub compression: Compression,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub first_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_direct: bool,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mirror_direct: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub discard_new_per_subject: bool,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sealed: bool,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deny_delete: bool,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deny_purge: bool,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_rollup_hdrs: bool,
    /// Always written (as `{}` when empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub consumer_limits: ConsumerLimits,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_msg_ttl: bool,
    /// Nanoseconds.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_i64"
    )]
    pub subject_delete_marker_ttl: i64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub allow_msg_counter: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub allow_atomic: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub allow_msg_schedules: bool,
    /// Written only when not the default.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "PersistMode::is_default"
    )]
    pub persist_mode: PersistMode,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub allow_batched: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub metadata: BTreeMap<String, String>,
}

fn is_zero_i32(value: &i32) -> bool {
    *value == 0
}

/// The body of `STREAM.CREATE` / `STREAM.UPDATE`: the config and the
/// request-scoped `pedantic` flag (refuse instead of adjusting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfigRequest {
    #[serde(flatten)]
    pub config: StreamConfig,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub pedantic: bool,
}

/// Defaults for the consumers of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerLimits {
    /// Nanoseconds.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_i64"
    )]
    pub inactive_threshold: i64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_i64"
    )]
    pub max_ack_pending: i64,
}

/// Where a clustered stream's replicas may be placed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub preferred: String,
}

impl Placement {
    /// Whether nothing is set (the reference then drops the placement).
    pub fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.tags.is_empty() && self.preferred.is_empty()
    }
}

/// A mirror or a source: the stream messages are copied from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSource {
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub opt_start_seq: u64,
    #[serde(
        default,
        with = "super::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub opt_start_time: Option<WallTime>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub filter_subject: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<StreamConsumerSource>,
}

/// A durable consumer a source or mirror reads through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConsumerSource {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub deliver_subject: String,
}

/// A stream in another account or domain: its API and delivery prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalStream {
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub api: String,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deliver: String,
}

/// A subject mapping (`src` to `dest`), both always written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectTransformConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub src: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dest: String,
}

/// Republish stored messages to `dest` (mapped from `src`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Republish {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub src: String,
    /// Always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dest: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub headers_only: bool,
}

/// The reference's text for an enum value it does not know: its
/// unmarshallers quote the raw JSON (`can not unmarshal "\"forever\""`),
/// compression's names the algorithm.
fn refusal_text(what: &str, raw: &serde_json::Value) -> String {
    if what == "compression" {
        return "unknown compression algorithm".to_owned();
    }
    let raw_json = raw.to_string();
    format!(
        "can not unmarshal {}",
        crate::format::go_quote(raw_json.as_bytes())
    )
}

/// Declares a unit-variant enum written as a fixed JSON string, reading only
/// the listed strings (and, where given, matching them without case).
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, ignore_case = $ignore_case:expr,
     { $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The JSON string (without quotes).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // Any JSON value: the reference's unmarshallers quote what
                // they do not know, strings or not.
                let raw = serde_json::Value::deserialize(deserializer)?;
                let serde_json::Value::String(text) = raw else {
                    return Err(serde::de::Error::custom(refusal_text($what, &raw)));
                };
                let wanted = if $ignore_case { text.to_ascii_lowercase() } else { text.clone() };
                $(
                    if wanted == $text $(|| wanted == $alias)* {
                        return Ok($name::$variant);
                    }
                )+
                Err(serde::de::Error::custom(refusal_text($what, &serde_json::Value::String(text))))
            }
        }
    };
}

wire_enum!(
    /// How messages leave a stream besides its limits.
    RetentionPolicy, "retention", ignore_case = false, {
        #[default]
        Limits = "limits",
        Interest = "interest",
        WorkQueue = "workqueue",
    }
);

wire_enum!(
    /// What a full stream does with a new message.
    DiscardPolicy, "discard", ignore_case = true, {
        #[default]
        Old = "old",
        New = "new",
    }
);

wire_enum!(
    /// Where a stream keeps its messages.
    StorageType, "storage", ignore_case = false, {
        #[default]
        File = "file",
        Memory = "memory",
    }
);

wire_enum!(
    /// Compression of a file store's blocks.
    Compression, "compression", ignore_case = false, {
        #[default]
        None = "none",
        S2 = "s2",
    }
);

wire_enum!(
    /// When a write counts as persisted (`async`: acked before the flush).
    PersistMode, "persist_mode", ignore_case = false, {
        #[default]
        Default = "default" | "",
        Async = "async",
    }
);

impl PersistMode {
    fn is_default(&self) -> bool {
        *self == PersistMode::Default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_request_reads_as_zero_values() {
        let config: StreamConfig = serde_json::from_str(r#"{"name":"S"}"#).unwrap();
        assert_eq!(config.name, "S");
        assert_eq!(config.max_msgs, 0);
        assert_eq!(config.storage, StorageType::File);
        assert_eq!(config.retention, RetentionPolicy::Limits);
        let config: StreamConfig =
            serde_json::from_str(r#"{"name":"S","subjects":null,"metadata":null,"discard":"NEW"}"#)
                .unwrap();
        assert!(config.subjects.is_empty());
        assert_eq!(config.discard, DiscardPolicy::New);
    }

    #[test]
    fn enum_refusals_read_as_the_reference_writes_them() {
        // Captured: {"retention":"forever"} -> invalid JSON: can not unmarshal "\"forever\""
        let error =
            serde_json::from_value::<StreamConfig>(serde_json::json!({"retention":"forever"}))
                .unwrap_err();
        assert_eq!(error.to_string(), r#"can not unmarshal "\"forever\"""#);
    }

    #[test]
    fn enums_refuse_unknown_text() {
        assert!(serde_json::from_str::<StreamConfig>(r#"{"retention":"forever"}"#).is_err());
        assert!(serde_json::from_str::<StreamConfig>(r#"{"storage":"Memory"}"#).is_err());
        assert!(serde_json::from_str::<StreamConfig>(r#"{"compression":"gzip"}"#).is_err());
        let config: StreamConfig = serde_json::from_str(r#"{"persist_mode":""}"#).unwrap();
        assert_eq!(config.persist_mode, PersistMode::Default);
    }

    #[test]
    fn request_carries_pedantic_beside_the_config() {
        let request: StreamConfigRequest =
            serde_json::from_str(r#"{"name":"S","max_age":-1,"pedantic":true}"#).unwrap();
        assert!(request.pedantic);
        assert_eq!(request.config.max_age, -1);
    }

    #[test]
    fn sources_round_trip() {
        let text = r#"{"name":"A","opt_start_seq":5,"opt_start_time":"2026-12-06T08:00:00.5Z","subject_transforms":[{"src":"a.>","dest":"b.>"}],"external":{"api":"$JS.hub.API","deliver":""},"consumer":{"name":"c"}}"#;
        let source: StreamSource = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&source).unwrap(), text);
    }
}
