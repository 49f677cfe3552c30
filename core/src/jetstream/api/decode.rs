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
//! Invariant: every key a request type reads is listed in its [`Fields`]
//! schema (the tests check each schema against the type's own output).
//! Errors other than unknown fields carry serde_json's text, not Go's.

use serde::de::DeserializeOwned;

use super::{
    MsgDeleteRequest, MsgGetRequest, PurgeRequest, StreamConfigRequest, StreamInfoRequest,
    StreamNamesRequest,
};
use crate::jetstream::errors::{ApiError, ApiErrorKind};

/// The keys of a JSON object a type reads, and the schema of those whose
/// values are objects (or lists of objects) in turn.
pub struct Fields {
    pub keys: &'static [&'static str],
    pub nested: &'static [(&'static str, &'static Fields)],
}

/// A request type with a known schema.
pub trait RequestFields {
    const FIELDS: &'static Fields;
}

const NO_NESTED: &[(&str, &Fields)] = &[];

const TRANSFORM: Fields = Fields {
    keys: &["src", "dest"],
    nested: NO_NESTED,
};

const REPUBLISH: Fields = Fields {
    keys: &["src", "dest", "headers_only"],
    nested: NO_NESTED,
};

const PLACEMENT: Fields = Fields {
    keys: &["cluster", "tags", "preferred"],
    nested: NO_NESTED,
};

const CONSUMER_LIMITS: Fields = Fields {
    keys: &["inactive_threshold", "max_ack_pending"],
    nested: NO_NESTED,
};

const EXTERNAL: Fields = Fields {
    keys: &["api", "deliver"],
    nested: NO_NESTED,
};

const SOURCE_CONSUMER: Fields = Fields {
    keys: &["name", "deliver_subject"],
    nested: NO_NESTED,
};

const SOURCE: Fields = Fields {
    keys: &[
        "name",
        "opt_start_seq",
        "opt_start_time",
        "filter_subject",
        "subject_transforms",
        "external",
        "consumer",
    ],
    nested: &[
        ("subject_transforms", &TRANSFORM),
        ("external", &EXTERNAL),
        ("consumer", &SOURCE_CONSUMER),
    ],
};

const STREAM_CONFIG_REQUEST: Fields = Fields {
    keys: &[
        "name",
        "description",
        "subjects",
        "retention",
        "max_consumers",
        "max_msgs",
        "max_bytes",
        "max_age",
        "max_msgs_per_subject",
        "max_msg_size",
        "discard",
        "storage",
        "num_replicas",
        "no_ack",
        "duplicate_window",
        "placement",
        "mirror",
        "sources",
        "compression",
        "first_seq",
        "subject_transform",
        "republish",
        "allow_direct",
        "mirror_direct",
        "discard_new_per_subject",
        "sealed",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
        "consumer_limits",
        "allow_msg_ttl",
        "subject_delete_marker_ttl",
        "allow_msg_counter",
        "allow_atomic",
        "allow_msg_schedules",
        "persist_mode",
        "allow_batched",
        "metadata",
        "pedantic",
    ],
    nested: &[
        ("placement", &PLACEMENT),
        ("mirror", &SOURCE),
        ("sources", &SOURCE),
        ("subject_transform", &TRANSFORM),
        ("republish", &REPUBLISH),
        ("consumer_limits", &CONSUMER_LIMITS),
    ],
};

impl RequestFields for StreamConfigRequest {
    const FIELDS: &'static Fields = &STREAM_CONFIG_REQUEST;
}

impl RequestFields for StreamInfoRequest {
    const FIELDS: &'static Fields = &Fields {
        keys: &["offset", "deleted_details", "subjects_filter"],
        nested: NO_NESTED,
    };
}

impl RequestFields for StreamNamesRequest {
    const FIELDS: &'static Fields = &Fields {
        keys: &["offset", "subject"],
        nested: NO_NESTED,
    };
}

impl RequestFields for PurgeRequest {
    const FIELDS: &'static Fields = &Fields {
        keys: &["seq", "filter", "keep"],
        nested: NO_NESTED,
    };
}

impl RequestFields for MsgDeleteRequest {
    const FIELDS: &'static Fields = &Fields {
        keys: &["seq", "no_erase"],
        nested: NO_NESTED,
    };
}

impl RequestFields for MsgGetRequest {
    const FIELDS: &'static Fields = &Fields {
        keys: &[
            "seq",
            "last_by_subj",
            "next_by_subj",
            "batch",
            "max_bytes",
            "start_time",
            "multi_last",
            "up_to_seq",
            "up_to_time",
            "no_hdr",
        ],
        nested: NO_NESTED,
    };
}

fn invalid_json(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::InvalidJSON, &[("{err}", text)])
}

/// The first key of `value` (depth first, in document order) that `fields`
/// does not list.
fn unknown_key<'a>(value: &'a serde_json::Value, fields: &Fields) -> Option<&'a str> {
    let object = value.as_object()?;
    for (key, inner) in object {
        if !fields.keys.contains(&key.as_str()) {
            return Some(key);
        }
        let Some((_, nested)) = fields.nested.iter().find(|(name, _)| name == key) else {
            continue;
        };
        let found = match inner {
            serde_json::Value::Array(items) => {
                items.iter().find_map(|item| unknown_key(item, nested))
            }
            other => unknown_key(other, nested),
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
        .filter(|key| !fields.keys.contains(&key.as_str()))
        .filter_map(|key| {
            let field = fields.keys.iter().find(|f| f.eq_ignore_ascii_case(key))?;
            Some((key.clone(), *field))
        })
        .collect();
    for (key, field) in folded {
        if let Some(inner) = object.remove(&key) {
            object.insert(field.to_owned(), inner);
        }
    }
    for (name, nested) in fields.nested {
        match object.get_mut(*name) {
            Some(serde_json::Value::Array(items)) => {
                items.iter_mut().for_each(|item| fold_keys(item, nested));
            }
            Some(inner) => fold_keys(inner, nested),
            None => {}
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
        if strict {
            if let Some(key) = unknown_key(&value, T::FIELDS) {
                let key = crate::format::go_quote(key.as_bytes());
                return Err(invalid_json(&format!("json: unknown field {key}")));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Every key a fully populated request writes is in its schema.
    #[test]
    fn schemas_cover_the_types() {
        let full = br#"{"name":"F","description":"d","subjects":["f.>"],"retention":"interest","max_consumers":3,"max_msgs":100,"max_bytes":1000,"max_age":3600000000000,"max_msgs_per_subject":2,"max_msg_size":1024,"discard":"new","storage":"memory","num_replicas":1,"no_ack":true,"duplicate_window":60000000000,"placement":{"cluster":"c","tags":["x"],"preferred":"p"},"sources":[{"name":"A","opt_start_seq":1,"opt_start_time":"2026-01-01T00:00:00Z","filter_subject":"a","subject_transforms":[{"src":"a","dest":"b"}],"external":{"api":"x","deliver":"y"},"consumer":{"name":"c","deliver_subject":"d"}}],"mirror":{"name":"M"},"compression":"s2","first_seq":5,"subject_transform":{"src":"f.>","dest":"g.>"},"republish":{"src":">","dest":"r.>","headers_only":true},"allow_direct":true,"mirror_direct":true,"discard_new_per_subject":true,"sealed":true,"deny_delete":true,"deny_purge":true,"allow_rollup_hdrs":true,"consumer_limits":{"inactive_threshold":1,"max_ack_pending":2},"allow_msg_ttl":true,"subject_delete_marker_ttl":5,"allow_msg_counter":true,"allow_atomic":true,"allow_msg_schedules":true,"persist_mode":"async","allow_batched":true,"metadata":{"a":"b"},"pedantic":true}"#;
        let request = decode_request::<StreamConfigRequest>(full, true).unwrap();
        let written = serde_json::to_value(&request).unwrap();
        assert_eq!(unknown_key(&written, StreamConfigRequest::FIELDS), None);
        let written_keys = written.as_object().unwrap().len();
        assert_eq!(written_keys, STREAM_CONFIG_REQUEST.keys.len());
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
            MsgGetRequest::FIELDS.keys.len()
        );
        assert_eq!(unknown_key(&written, MsgGetRequest::FIELDS), None);
    }
}
