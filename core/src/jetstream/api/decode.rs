//! Reading a `$JS.API` request body the way the reference's handlers do.
//!
//! Role: bytes to a request type, or the `invalid JSON` error
//! (`{"code":400,"err_code":10025,"description":"invalid JSON: ..."}`). An
//! empty body is the type's zero value (the reference's decoder stops at
//! end of input without error); a second JSON value after the first fills
//! the same request again; keys match fields without regard to case, as
//! Go's decoder matches them. In strict mode (the reference's default)
//! a field the type does not have is refused with Go's text,
//! `json: unknown field "bogus"`, at any depth; otherwise it is ignored.
//!
//! A value of the wrong JSON type is refused with Go's text too (`json:
//! cannot unmarshal string into Go struct field StreamConfigRequest.max_msgs
//! of type int64`), from the Go types in the schema.
//!
//! Invariant: every key a request type reads is listed in its [`Fields`]
//! schema (the tests check each schema against the type's own output).
//! Known differences: JSON syntax errors carry serde_json's text; when a
//! body has several faults the first in key order is reported, where Go
//! reports the first in document order; numbers are echoed as serde_json
//! prints them (`1e3` as `1000.0`).

use serde::de::DeserializeOwned;

use super::{
    ConsumerNamesRequest, ConsumerPauseRequest, ConsumerResetRequest, ConsumerUnpinRequest,
    CreateConsumerRequest, MsgDeleteRequest, MsgGetRequest, NextRequest, PurgeRequest,
    StreamConfigRequest, StreamInfoRequest, StreamNamesRequest,
};
use crate::jetstream::errors::{ApiError, ApiErrorKind};

/// The Go type of a request field, as the reference's type errors name it.
#[derive(Debug, Clone, Copy)]
pub enum GoType {
    String,
    Bool,
    /// Go's `int`.
    Int,
    Int32,
    Int64,
    Uint64,
    /// `time.Duration`: integer nanoseconds.
    Duration,
    /// `time.Time`: an RFC 3339 string (its own parser words its errors).
    Time,
    /// A string enum with its own unmarshaller (its own errors).
    Enum,
    /// `[]string`.
    Strings,
    /// `[]time.Duration`.
    Durations,
    /// `map[string]string`.
    StringMap,
    /// A nested struct (or pointer to one).
    Struct(&'static Fields),
    /// A list of nested structs.
    Structs(&'static Fields),
}

impl GoType {
    fn name(self) -> &'static str {
        match self {
            GoType::String | GoType::StringMap => "string",
            GoType::Bool => "bool",
            GoType::Int => "int",
            GoType::Int32 => "int32",
            GoType::Int64 => "int64",
            GoType::Uint64 => "uint64",
            GoType::Duration => "time.Duration",
            GoType::Strings => "[]string",
            GoType::Durations => "[]time.Duration",
            GoType::Time => "time.Time",
            GoType::Enum | GoType::Struct(_) | GoType::Structs(_) => "",
        }
    }
}

/// The fields of a JSON object a request type reads, with their Go types,
/// and the Go name of the type (`StreamConfigRequest`).
#[derive(Debug)]
pub struct Fields {
    pub go_name: &'static str,
    pub fields: &'static [(&'static str, GoType)],
}

impl Fields {
    fn get(&self, key: &str) -> Option<GoType> {
        self.fields
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, t)| *t)
    }
}

/// A request type with a known schema.
pub trait RequestFields {
    const FIELDS: &'static Fields;
}

use GoType::{
    Bool, Duration, Durations, Enum, Int, Int32, Int64, StringMap, Strings, Time, Uint64,
};

const TRANSFORM: Fields = Fields {
    go_name: "SubjectTransformConfig",
    fields: &[("src", GoType::String), ("dest", GoType::String)],
};

const REPUBLISH: Fields = Fields {
    go_name: "RePublish",
    fields: &[
        ("src", GoType::String),
        ("dest", GoType::String),
        ("headers_only", Bool),
    ],
};

const PLACEMENT: Fields = Fields {
    go_name: "Placement",
    fields: &[
        ("cluster", GoType::String),
        ("tags", Strings),
        ("preferred", GoType::String),
    ],
};

const CONSUMER_LIMITS: Fields = Fields {
    go_name: "StreamConsumerLimits",
    fields: &[("inactive_threshold", Duration), ("max_ack_pending", Int)],
};

const EXTERNAL: Fields = Fields {
    go_name: "ExternalStream",
    fields: &[("api", GoType::String), ("deliver", GoType::String)],
};

const SOURCE_CONSUMER: Fields = Fields {
    go_name: "StreamConsumerSource",
    fields: &[
        ("name", GoType::String),
        ("deliver_subject", GoType::String),
    ],
};

const SOURCE: Fields = Fields {
    go_name: "StreamSource",
    fields: &[
        ("name", GoType::String),
        ("opt_start_seq", Uint64),
        ("opt_start_time", Time),
        ("filter_subject", GoType::String),
        ("subject_transforms", GoType::Structs(&TRANSFORM)),
        ("external", GoType::Struct(&EXTERNAL)),
        ("consumer", GoType::Struct(&SOURCE_CONSUMER)),
    ],
};

pub(crate) const STREAM_CONFIG_REQUEST: Fields = Fields {
    go_name: "StreamConfigRequest",
    fields: &[
        ("name", GoType::String),
        ("description", GoType::String),
        ("subjects", Strings),
        ("retention", Enum),
        ("max_consumers", Int),
        ("max_msgs", Int64),
        ("max_bytes", Int64),
        ("max_age", Duration),
        ("max_msgs_per_subject", Int64),
        ("max_msg_size", Int32),
        ("discard", Enum),
        ("storage", Enum),
        ("num_replicas", Int),
        ("no_ack", Bool),
        ("duplicate_window", Duration),
        ("placement", GoType::Struct(&PLACEMENT)),
        ("mirror", GoType::Struct(&SOURCE)),
        ("sources", GoType::Structs(&SOURCE)),
        ("compression", Enum),
        ("first_seq", Uint64),
        ("subject_transform", GoType::Struct(&TRANSFORM)),
        ("republish", GoType::Struct(&REPUBLISH)),
        ("allow_direct", Bool),
        ("mirror_direct", Bool),
        ("discard_new_per_subject", Bool),
        ("sealed", Bool),
        ("deny_delete", Bool),
        ("deny_purge", Bool),
        ("allow_rollup_hdrs", Bool),
        ("consumer_limits", GoType::Struct(&CONSUMER_LIMITS)),
        ("allow_msg_ttl", Bool),
        ("subject_delete_marker_ttl", Duration),
        ("allow_msg_counter", Bool),
        ("allow_atomic", Bool),
        ("allow_msg_schedules", Bool),
        ("persist_mode", Enum),
        ("allow_batched", Bool),
        ("metadata", StringMap),
        ("pedantic", Bool),
    ],
};

impl RequestFields for StreamConfigRequest {
    const FIELDS: &'static Fields = &STREAM_CONFIG_REQUEST;
}

impl RequestFields for StreamInfoRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiStreamInfoRequest",
        fields: &[
            ("offset", Int),
            ("deleted_details", Bool),
            ("subjects_filter", GoType::String),
        ],
    };
}

impl RequestFields for StreamNamesRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiStreamNamesRequest",
        fields: &[("offset", Int), ("subject", GoType::String)],
    };
}

impl RequestFields for PurgeRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiStreamPurgeRequest",
        fields: &[
            ("seq", Uint64),
            ("filter", GoType::String),
            ("keep", Uint64),
        ],
    };
}

impl RequestFields for MsgDeleteRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiMsgDeleteRequest",
        fields: &[("seq", Uint64), ("no_erase", Bool)],
    };
}

impl RequestFields for MsgGetRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiMsgGetRequest",
        fields: &[
            ("seq", Uint64),
            ("last_by_subj", GoType::String),
            ("next_by_subj", GoType::String),
            ("batch", Int),
            ("max_bytes", Int),
            ("start_time", Time),
            ("multi_last", Strings),
            ("up_to_seq", Uint64),
            ("up_to_time", Time),
            ("no_hdr", Bool),
        ],
    };
}

const CONSUMER_CONFIG: Fields = Fields {
    go_name: "ConsumerConfig",
    fields: &[
        ("durable_name", GoType::String),
        ("name", GoType::String),
        ("description", GoType::String),
        ("deliver_policy", Enum),
        ("opt_start_seq", Uint64),
        ("opt_start_time", Time),
        ("ack_policy", Enum),
        ("ack_wait", Duration),
        ("max_deliver", Int),
        ("backoff", Durations),
        ("filter_subject", GoType::String),
        ("filter_subjects", Strings),
        ("replay_policy", Enum),
        ("rate_limit_bps", Uint64),
        ("sample_freq", GoType::String),
        ("max_waiting", Int),
        ("max_ack_pending", Int),
        ("flow_control", Bool),
        ("headers_only", Bool),
        ("max_batch", Int),
        ("max_expires", Duration),
        ("max_bytes", Int),
        ("deliver_subject", GoType::String),
        ("deliver_group", GoType::String),
        ("idle_heartbeat", Duration),
        ("inactive_threshold", Duration),
        ("num_replicas", Int),
        ("mem_storage", Bool),
        ("direct", Bool),
        ("sourcing", Bool),
        ("metadata", StringMap),
        ("pause_until", Time),
        ("priority_groups", Strings),
        ("priority_policy", Enum),
        ("priority_timeout", Duration),
    ],
};

const CREATE_CONSUMER_REQUEST: Fields = Fields {
    go_name: "CreateConsumerRequest",
    fields: &[
        ("stream_name", GoType::String),
        ("config", GoType::Struct(&CONSUMER_CONFIG)),
        ("action", Enum),
        ("pedantic", Bool),
    ],
};

impl RequestFields for CreateConsumerRequest {
    const FIELDS: &'static Fields = &CREATE_CONSUMER_REQUEST;
}

impl RequestFields for ConsumerNamesRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiConsumersRequest",
        fields: &[("offset", Int)],
    };
}

impl RequestFields for ConsumerPauseRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiConsumerPauseRequest",
        fields: &[("pause_until", Time)],
    };
}

impl RequestFields for ConsumerResetRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiConsumerResetRequest",
        fields: &[("seq", Uint64)],
    };
}

impl RequestFields for ConsumerUnpinRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiConsumerUnpinRequest",
        fields: &[("group", GoType::String)],
    };
}

impl RequestFields for NextRequest {
    // The reference decodes into a pointer to a pointer, so its type
    // errors name no struct (`Go struct field .batch of type int`).
    const FIELDS: &'static Fields = &Fields {
        go_name: "",
        fields: &[
            ("expires", Duration),
            ("batch", Int),
            ("max_bytes", Int),
            ("no_wait", Bool),
            ("idle_heartbeat", Duration),
            ("group", GoType::String),
            ("min_pending", Int64),
            ("min_ack_pending", Int64),
            ("id", GoType::String),
            ("priority", Int),
        ],
    };
}

/// How Go's type errors name a JSON value: its kind, and for a number
/// that does not fit an integer field, the number itself.
fn value_kind(value: &serde_json::Value, wanted: GoType) -> String {
    match value {
        serde_json::Value::String(_) => "string".to_owned(),
        serde_json::Value::Bool(_) => "bool".to_owned(),
        serde_json::Value::Array(_) => "array".to_owned(),
        serde_json::Value::Object(_) => "object".to_owned(),
        serde_json::Value::Null => "null".to_owned(),
        serde_json::Value::Number(number) => match wanted {
            Int | Int32 | Int64 | Uint64 | Duration => format!("number {number}"),
            _ => "number".to_owned(),
        },
    }
}

/// Whether a JSON number fits a Go integer type.
fn number_fits(number: &serde_json::Number, wanted: GoType) -> bool {
    match wanted {
        Uint64 => number.is_u64(),
        Int32 => number.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        _ => number.is_i64(),
    }
}

/// Whether `value` can fill a field of Go type `wanted` (null fills any).
fn fits(value: &serde_json::Value, wanted: GoType) -> bool {
    use serde_json::Value as V;
    match (value, wanted) {
        (V::Null, _) | (_, Enum) | (V::String(_), Time) => true,
        (V::String(_), GoType::String) | (V::Bool(_), Bool) => true,
        (V::Number(n), Int | Int32 | Int64 | Uint64 | Duration) => number_fits(n, wanted),
        (V::Array(_), Strings | Durations | GoType::Structs(_)) => true,
        (V::Object(_), StringMap | GoType::Struct(_)) => true,
        _ => false,
    }
}

/// The reference's text for the first value (in key order) whose JSON type
/// does not fit its field, naming the field by its dotted path from the
/// request (`StreamConfigRequest.sources.0.name`).
fn type_error(value: &serde_json::Value, fields: &Fields, path: &str) -> Option<String> {
    let object = value.as_object()?;
    for (key, inner) in object {
        let Some(wanted) = fields.get(key) else {
            continue;
        };
        let here = format!("{path}.{key}");
        let mismatch = |inner: &serde_json::Value, wanted: GoType, at: &str, field: bool| {
            let kind = value_kind(inner, wanted);
            let into = if field { "Go struct field " } else { "" };
            format!(
                "json: cannot unmarshal {kind} into {into}{at} of type {}",
                wanted.name()
            )
        };
        if !fits(inner, wanted) {
            return Some(mismatch(inner, wanted, &here, true));
        }
        let found = match (inner, wanted) {
            (serde_json::Value::Array(items), Strings | Durations) => {
                let element = if matches!(wanted, Strings) {
                    GoType::String
                } else {
                    Duration
                };
                items.iter().enumerate().find_map(|(i, item)| {
                    let at = format!("{here}.{i}");
                    (!fits(item, element)).then(|| mismatch(item, element, &at, false))
                })
            }
            (serde_json::Value::Object(map), StringMap) => map.iter().find_map(|(name, item)| {
                let at = format!("{here}.{name}");
                (!fits(item, GoType::String)).then(|| mismatch(item, GoType::String, &at, true))
            }),
            (serde_json::Value::Array(items), GoType::Structs(nested)) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| type_error(item, nested, &format!("{here}.{i}"))),
            (inner, GoType::Struct(nested)) => type_error(inner, nested, &here),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn invalid_json(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::InvalidJSON, &[("{err}", text)])
}

/// The first key of `value` (depth first, in document order) that `fields`
/// does not list.
fn unknown_key<'a>(value: &'a serde_json::Value, fields: &Fields) -> Option<&'a str> {
    let object = value.as_object()?;
    for (key, inner) in object {
        let found = match fields.get(key) {
            None => return Some(key),
            Some(GoType::Structs(nested)) => inner
                .as_array()
                .and_then(|items| items.iter().find_map(|item| unknown_key(item, nested))),
            Some(GoType::Struct(nested)) => unknown_key(inner, nested),
            Some(_) => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Renames, at every depth the schema describes, a key that matches a
/// field only without regard to ASCII case to that field's name, as Go's
/// decoder matches `"Name"` to `name` (an exact match wins).
fn fold_keys(value: &mut serde_json::Value, fields: &Fields) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    let folded: Vec<(String, &str)> = object
        .keys()
        .filter(|key| fields.get(key).is_none())
        .filter_map(|key| {
            let (field, _) = fields
                .fields
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(key))?;
            Some((key.clone(), *field))
        })
        .collect();
    for (key, field) in folded {
        if let Some(inner) = object.remove(&key) {
            object.insert(field.to_owned(), inner);
        }
    }
    for (name, wanted) in fields.fields {
        match (object.get_mut(*name), wanted) {
            (Some(serde_json::Value::Array(items)), GoType::Structs(nested)) => {
                items.iter_mut().for_each(|item| fold_keys(item, nested));
            }
            (Some(inner), GoType::Struct(nested)) => fold_keys(inner, nested),
            _ => {}
        }
    }
}

/// Lays `later` over `earlier` the way Go's decoder fills one struct from a
/// second JSON value: objects merge key by key, anything else is replaced.
fn merge(earlier: &mut serde_json::Value, later: serde_json::Value) {
    match (earlier, later) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Reads a request body: empty is the zero value; several JSON values in a
/// row fill the same request in turn (the reference decodes until the end
/// of input); keys match fields without regard to case; `strict` refuses
/// unknown fields.
pub fn decode_request<T>(body: &[u8], strict: bool) -> Result<T, ApiError>
where
    T: DeserializeOwned + Default + RequestFields,
{
    let mut merged: Option<serde_json::Value> = None;
    let values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for value in values {
        let mut value = value.map_err(|error| invalid_json(&error.to_string()))?;
        fold_keys(&mut value, T::FIELDS);
        if !value.is_object() && !value.is_null() {
            let kind = value_kind(&value, GoType::String);
            let go_name = T::FIELDS.go_name;
            let text =
                format!("json: cannot unmarshal {kind} into Go value of type server.{go_name}");
            return Err(invalid_json(&text));
        }
        if let Some(text) = type_error(&value, T::FIELDS, T::FIELDS.go_name) {
            return Err(invalid_json(&text));
        }
        if strict {
            if let Some(key) = unknown_key(&value, T::FIELDS) {
                let key = crate::format::go_quote(key.as_bytes());
                return Err(invalid_json(&format!("json: unknown field {key}")));
            }
        }
        // Go leaves the target untouched for `null` (async-nats sends it
        // for a bare STREAM.INFO).
        if value.is_null() {
            continue;
        }
        match merged.as_mut() {
            Some(earlier) => merge(earlier, value),
            None => merged = Some(value),
        }
    }
    let Some(value) = merged else {
        return Ok(T::default());
    };
    serde_json::from_value(value).map_err(|error| invalid_json(&error.to_string()))
}

/// Go's `quoteChar`: a character in single quotes, escaped as Go escapes.
fn go_quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c => {
            let mut buffer = [0_u8; 4];
            let quoted = crate::format::go_quote(c.encode_utf8(&mut buffer).as_bytes());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

/// Reads one JSON object the way Go's `json.Unmarshal` does where the
/// reference uses it rather than its API decoder (the pull request body):
/// exactly one value (none is `unexpected end of JSON input`), keys
/// without regard to case, unknown keys ignored.
/// The error is Go's text, without the API's `invalid JSON: ` prefix.
pub fn unmarshal_lenient<T>(body: &[u8]) -> Result<T, String>
where
    T: DeserializeOwned + RequestFields,
{
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    let mut value = match values.next() {
        Some(value) => value.map_err(|error| error.to_string())?,
        None => return Err("unexpected end of JSON input".to_owned()),
    };
    let rest = &body[values.byte_offset()..];
    if let Some(extra) = std::str::from_utf8(rest)
        .ok()
        .and_then(|rest| rest.trim_start().chars().next())
    {
        return Err(format!(
            "invalid character {} after top-level value",
            go_quote_char(extra)
        ));
    }
    fold_keys(&mut value, T::FIELDS);
    if !value.is_object() && !value.is_null() {
        let kind = value_kind(&value, GoType::String);
        let go_name = T::FIELDS.go_name;
        return Err(format!(
            "json: cannot unmarshal {kind} into Go value of type server.{go_name}"
        ));
    }
    if let Some(text) = type_error(&value, T::FIELDS, T::FIELDS.go_name) {
        return Err(text);
    }
    if value.is_null() {
        value = serde_json::Value::Object(serde_json::Map::new());
    }
    serde_json::from_value(value).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_is_the_zero_request() {
        let request = decode_request::<StreamInfoRequest>(b"null", true).unwrap();
        assert_eq!(request, StreamInfoRequest::default());
    }

    #[test]
    fn unknown_fields_in_strict_mode() {
        // Captured from nats-server v2.15.1 (strict by default).
        let error =
            decode_request::<StreamConfigRequest>(br#"{"name":"UF","bogus":1}"#, true).unwrap_err();
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"code":400,"err_code":10025,"description":"invalid JSON: json: unknown field \"bogus\""}"#
        );
        let nested = br#"{"name":"S","sources":[{"name":"A"},{"name":"B","extra":true}]}"#;
        let error = decode_request::<StreamConfigRequest>(nested, true).unwrap_err();
        assert_eq!(
            error.description,
            r#"invalid JSON: json: unknown field "extra""#
        );
        let lenient = decode_request::<StreamConfigRequest>(nested, false).unwrap();
        assert_eq!(lenient.config.sources.len(), 2);
    }

    /// Captured from nats-server v2.15.1: `{"Name":"CI","SUBJECTS":["ci"]}`
    /// creates CI on `ci`; `{"name":"CJ"} {"max_msgs":5}` creates CJ with
    /// `max_msgs` 5; a wrong nested key is refused in strict mode.
    #[test]
    fn keys_fold_and_values_follow_one_another() {
        let folded =
            decode_request::<StreamConfigRequest>(br#"{"Name":"CI","SUBJECTS":["ci"]}"#, true)
                .unwrap();
        assert_eq!(folded.config.name, "CI");
        assert_eq!(folded.config.subjects, vec!["ci".to_owned()]);
        let two = decode_request::<StreamConfigRequest>(br#"{"name":"CJ"} {"max_msgs":5}"#, true)
            .unwrap();
        assert_eq!((two.config.name.as_str(), two.config.max_msgs), ("CJ", 5));
        let nested = br#"{"name":"CM","placement":{"Cluster":"x","bogus":1}}"#;
        let error = decode_request::<StreamConfigRequest>(nested, true).unwrap_err();
        assert_eq!(
            error.description,
            r#"invalid JSON: json: unknown field "bogus""#
        );
        let lenient = decode_request::<StreamConfigRequest>(nested, false).unwrap();
        assert_eq!(lenient.config.placement.unwrap().cluster, "x");
        let error = decode_request::<StreamConfigRequest>(br#"{"name":"CK","max_msgs":"5"}"#, true)
            .unwrap_err();
        assert!(error.is(ApiErrorKind::InvalidJSON));
    }

    /// Each body sent to nats-server v2.15.1 and the description it
    /// answered with.
    #[test]
    fn type_errors_read_as_the_reference_writes_them() {
        let cases = [
            (r#"{"name":"T1","max_msgs":"5"}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.max_msgs of type int64"),
            (r#"{"name":5}"#, "json: cannot unmarshal number into Go struct field StreamConfigRequest.name of type string"),
            (r#"{"name":"T1","max_msgs":true}"#, "json: cannot unmarshal bool into Go struct field StreamConfigRequest.max_msgs of type int64"),
            (r#"{"name":"T1","placement":{"cluster":5}}"#, "json: cannot unmarshal number into Go struct field StreamConfigRequest.placement.cluster of type string"),
            (r#"{"name":"T1","sources":[{"name":5}]}"#, "json: cannot unmarshal number into Go struct field StreamConfigRequest.sources.0.name of type string"),
            (r#"{"name":"T1","max_msgs":1.5}"#, "json: cannot unmarshal number 1.5 into Go struct field StreamConfigRequest.max_msgs of type int64"),
            (r#"{"name":"T1","num_replicas":"x"}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.num_replicas of type int"),
            (r#"{"name":"T1","max_age":"1s"}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.max_age of type time.Duration"),
            (r#"{"name":"T1","subjects":"a"}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.subjects of type []string"),
            (r#"{"name":"T1","metadata":{"a":1}}"#, "json: cannot unmarshal number into Go struct field StreamConfigRequest.metadata.a of type string"),
            (r#"{"name":"T1","first_seq":-1}"#, "json: cannot unmarshal number -1 into Go struct field StreamConfigRequest.first_seq of type uint64"),
            (r#"{"name":"T1","max_msg_size":10000000000}"#, "json: cannot unmarshal number 10000000000 into Go struct field StreamConfigRequest.max_msg_size of type int32"),
            (r#"{"name":"T1","no_ack":"yes"}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.no_ack of type bool"),
            (r#"{"name":"T1","mirror":{"name":"x","opt_start_seq":"1"}}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.mirror.opt_start_seq of type uint64"),
            (r#"{"name":"T1","sources":[{"name":"x","external":{"api":1}}]}"#, "json: cannot unmarshal number into Go struct field StreamConfigRequest.sources.0.external.api of type string"),
            (r#"{"name":"T1","consumer_limits":{"max_ack_pending":"1"}}"#, "json: cannot unmarshal string into Go struct field StreamConfigRequest.consumer_limits.max_ack_pending of type int"),
            (r#"{"name":"T1","max_msgs":{}}"#, "json: cannot unmarshal object into Go struct field StreamConfigRequest.max_msgs of type int64"),
            (r#"{"name":"T1","max_msgs":[]}"#, "json: cannot unmarshal array into Go struct field StreamConfigRequest.max_msgs of type int64"),
            (r#"{"name":"T1","subjects":[1]}"#, "json: cannot unmarshal number into StreamConfigRequest.subjects.0 of type string"),
            (r#"{"name":"T1","retention":5}"#, r#"can not unmarshal "5""#),
            ("[1]", "json: cannot unmarshal array into Go value of type server.StreamConfigRequest"),
            (r#""x""#, "json: cannot unmarshal string into Go value of type server.StreamConfigRequest"),
        ];
        for (body, text) in cases {
            let error = decode_request::<StreamConfigRequest>(body.as_bytes(), true).unwrap_err();
            assert!(error.is(ApiErrorKind::InvalidJSON), "{body}");
            assert_eq!(error.description, format!("invalid JSON: {text}"), "{body}");
        }
        let null = decode_request::<StreamConfigRequest>(br#"{"name":"T1","max_msgs":null}"#, true);
        assert_eq!(null.unwrap().config.max_msgs, 0);
    }

    #[test]
    fn empty_body_is_the_zero_value() {
        let request = decode_request::<PurgeRequest>(b"", true).unwrap();
        assert_eq!(request, PurgeRequest::default());
        let request = decode_request::<StreamConfigRequest>(b" \r\n", true).unwrap();
        assert!(request.config.name.is_empty());
    }

    #[test]
    fn bad_json_is_invalid_json() {
        let error = decode_request::<StreamConfigRequest>(b"not json", true).unwrap_err();
        assert!(error.is(ApiErrorKind::InvalidJSON));
        assert!(error.description.starts_with("invalid JSON: "));
        let error =
            decode_request::<StreamConfigRequest>(br#"{"retention":"forever"}"#, true).unwrap_err();
        assert!(error.is(ApiErrorKind::InvalidJSON));
    }

    /// Texts captured from nats-server v2.15.1 for `CONSUMER.CREATE` bodies.
    #[test]
    fn consumer_create_refusals_read_as_the_reference_writes_them() {
        let cases = [
            (r#"{"stream_name":"S","config":{"bogus":true}}"#, r#"json: unknown field "bogus""#),
            (r#"{"stream_name":"S","config":{"backoff":["x"]}}"#, "json: cannot unmarshal string into CreateConsumerRequest.config.backoff.0 of type time.Duration"),
            (r#"{"stream_name":"S","config":{"filter_subjects":[1]}}"#, "json: cannot unmarshal number into CreateConsumerRequest.config.filter_subjects.0 of type string"),
            (r#"{"stream_name":"S","config":{"max_deliver":"x"}}"#, "json: cannot unmarshal string into Go struct field CreateConsumerRequest.config.max_deliver of type int"),
            (r#"{"stream_name":"S","config":{"metadata":{"a":1}}}"#, "json: cannot unmarshal number into Go struct field CreateConsumerRequest.config.metadata.a of type string"),
            (r#"{"stream_name":"S","config":{"deliver_policy":null}}"#, r#"can not unmarshal "null""#),
            (r#"{"stream_name":"S","config":{},"action":null}"#, "unknown consumer action: null"),
            (r#"{"stream_name":"S","config":{"opt_start_time":5}}"#, "json: cannot unmarshal number into Go struct field CreateConsumerRequest.config.opt_start_time of type time.Time"),
            (r#"{"stream_name":"S","config":{"backoff":[1.5]}}"#, "json: cannot unmarshal number 1.5 into CreateConsumerRequest.config.backoff.0 of type time.Duration"),
            (r#"{"stream_name":"S","config":{"backoff":5}}"#, "json: cannot unmarshal number into Go struct field CreateConsumerRequest.config.backoff of type []time.Duration"),
            (r#"{"stream_name":"S","config":{"priority_groups":"x"}}"#, "json: cannot unmarshal string into Go struct field CreateConsumerRequest.config.priority_groups of type []string"),
        ];
        for (body, text) in cases {
            let error = decode_request::<CreateConsumerRequest>(body.as_bytes(), true).unwrap_err();
            assert!(error.is(ApiErrorKind::InvalidJSON), "{body}");
            assert_eq!(error.description, format!("invalid JSON: {text}"), "{body}");
        }
        let pause = decode_request::<ConsumerPauseRequest>(br#"{"pause_until":5}"#, true);
        assert_eq!(
            pause.unwrap_err().description,
            "invalid JSON: json: cannot unmarshal number into Go struct field JSApiConsumerPauseRequest.pause_until of type time.Time"
        );
        let names = decode_request::<ConsumerNamesRequest>(br#"{"offset":"x"}"#, true);
        assert_eq!(
            names.unwrap_err().description,
            "invalid JSON: json: cannot unmarshal string into Go struct field JSApiConsumersRequest.offset of type int"
        );
        let unpin = decode_request::<ConsumerUnpinRequest>(br#"{"group":"G","x":1}"#, false);
        assert_eq!(unpin.unwrap().group, "G");
        let lenient = br#"{"stream_name":"S","config":{"Ack_Policy":"explicit","bogus":1}}"#;
        let request = decode_request::<CreateConsumerRequest>(lenient, false).unwrap();
        assert_eq!(
            request.config.ack_policy,
            crate::jetstream::api::AckPolicy::Explicit
        );
    }

    #[test]
    fn consumer_schema_covers_the_type() {
        let full = br#"{"stream_name":"S","config":{"durable_name":"D","name":"D","description":"d","deliver_policy":"by_start_time","opt_start_seq":1,"opt_start_time":"2026-01-01T00:00:00Z","ack_policy":"explicit","ack_wait":1,"max_deliver":3,"backoff":[1,2],"filter_subject":"a","filter_subjects":["b"],"replay_policy":"original","rate_limit_bps":8,"sample_freq":"50%","max_waiting":1,"max_ack_pending":1,"flow_control":true,"headers_only":true,"max_batch":1,"max_expires":1,"max_bytes":1,"deliver_subject":"x","deliver_group":"g","idle_heartbeat":1,"inactive_threshold":1,"num_replicas":1,"mem_storage":true,"direct":true,"sourcing":true,"metadata":{"a":"b"},"pause_until":"2030-01-01T00:00:00Z","priority_groups":["A"],"priority_policy":"pinned_client","priority_timeout":1},"action":"create","pedantic":true}"#;
        let request = decode_request::<CreateConsumerRequest>(full, true).unwrap();
        let written = serde_json::to_value(&request).unwrap();
        assert_eq!(unknown_key(&written, CreateConsumerRequest::FIELDS), None);
        assert_eq!(
            written["config"].as_object().unwrap().len(),
            CONSUMER_CONFIG.fields.len()
        );
        assert_eq!(
            written.as_object().unwrap().len(),
            CREATE_CONSUMER_REQUEST.fields.len()
        );
        let next = NextRequest {
            expires: 1,
            batch: 1,
            max_bytes: 1,
            no_wait: true,
            idle_heartbeat: 1,
            group: "g".into(),
            min_pending: 1,
            min_ack_pending: 1,
            id: "i".into(),
            priority: 1,
        };
        let written = serde_json::to_value(&next).unwrap();
        assert_eq!(
            written.as_object().unwrap().len(),
            NextRequest::FIELDS.fields.len()
        );
        assert_eq!(unknown_key(&written, NextRequest::FIELDS), None);
    }

    /// Every key a fully populated request writes is in its schema.
    #[test]
    fn schemas_cover_the_types() {
        let full = br#"{"name":"F","description":"d","subjects":["f.>"],"retention":"interest","max_consumers":3,"max_msgs":100,"max_bytes":1000,"max_age":3600000000000,"max_msgs_per_subject":2,"max_msg_size":1024,"discard":"new","storage":"memory","num_replicas":1,"no_ack":true,"duplicate_window":60000000000,"placement":{"cluster":"c","tags":["x"],"preferred":"p"},"sources":[{"name":"A","opt_start_seq":1,"opt_start_time":"2026-01-01T00:00:00Z","filter_subject":"a","subject_transforms":[{"src":"a","dest":"b"}],"external":{"api":"x","deliver":"y"},"consumer":{"name":"c","deliver_subject":"d"}}],"mirror":{"name":"M"},"compression":"s2","first_seq":5,"subject_transform":{"src":"f.>","dest":"g.>"},"republish":{"src":">","dest":"r.>","headers_only":true},"allow_direct":true,"mirror_direct":true,"discard_new_per_subject":true,"sealed":true,"deny_delete":true,"deny_purge":true,"allow_rollup_hdrs":true,"consumer_limits":{"inactive_threshold":1,"max_ack_pending":2},"allow_msg_ttl":true,"subject_delete_marker_ttl":5,"allow_msg_counter":true,"allow_atomic":true,"allow_msg_schedules":true,"persist_mode":"async","allow_batched":true,"metadata":{"a":"b"},"pedantic":true}"#;
        let request = decode_request::<StreamConfigRequest>(full, true).unwrap();
        let written = serde_json::to_value(&request).unwrap();
        assert_eq!(unknown_key(&written, StreamConfigRequest::FIELDS), None);
        let written_keys = written.as_object().unwrap().len();
        assert_eq!(written_keys, STREAM_CONFIG_REQUEST.fields.len());
        let get = MsgGetRequest {
            seq: 1,
            last_by_subj: "a".into(),
            next_by_subj: "b".into(),
            batch: 1,
            max_bytes: 1,
            start_time: Some(crate::time::WallTime(1)),
            multi_last: vec!["x".into()],
            up_to_seq: 1,
            up_to_time: Some(crate::time::WallTime(1)),
            no_hdr: true,
        };
        let written = serde_json::to_value(&get).unwrap();
        assert_eq!(
            written.as_object().unwrap().len(),
            MsgGetRequest::FIELDS.fields.len()
        );
        assert_eq!(unknown_key(&written, MsgGetRequest::FIELDS), None);
    }
}
