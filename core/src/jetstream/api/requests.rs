//! The request and response bodies of the stream half of `$JS.API`.
//!
//! Every response opens with its `type` (the constants in
//! [`response_type`]) and, on failure, an `error` member; what follows is
//! the reply's own body, left out on failure except where the reference
//! writes it regardless (the paging numbers of `STREAM.INFO`,
//! `STREAM.NAMES` and `STREAM.LIST`, the `purged` count).
//!
//! Invariants: a response built with `ok(..)` has no error; one built with
//! `error(..)` has no body beyond the members the reference always writes.
//!
//! What the reference answers, seen on a single server (v2.15.1): a
//! missing stream is `StreamNotFound` (404 10059) everywhere; `MSG.GET`
//! with none of `seq`/`last_by_subj`/`next_by_subj` is `BadRequest` (400
//! 10003), a sequence not stored `NoMessageFound` (404 10037); `MSG.DELETE`
//! of a sequence not stored is `StreamMsgDeleteFailed` with `{err}` =
//! `stream store EOF` (500 10057); `PURGE` answers `success` and
//! `purged`, also for an empty body; `CREATE` of an existing name with the
//! same config answers like a create (`did_create` true), with another
//! config `StreamNameExist` (400 10058). Replies go out through
//! [`super::to_wire_json`].

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::account::AccountInfo;
use super::info::StreamInfo;
use super::{is_false, is_zero_u64, is_zero_usize, null_as_default};
use crate::jetstream::errors::ApiError;
use crate::time::WallTime;

/// The `type` of each response.
pub mod response_type {
    pub const ACCOUNT_INFO: &str = "io.nats.jetstream.api.v1.account_info_response";
    pub const STREAM_CREATE: &str = "io.nats.jetstream.api.v1.stream_create_response";
    pub const STREAM_UPDATE: &str = "io.nats.jetstream.api.v1.stream_update_response";
    pub const STREAM_DELETE: &str = "io.nats.jetstream.api.v1.stream_delete_response";
    pub const STREAM_INFO: &str = "io.nats.jetstream.api.v1.stream_info_response";
    pub const STREAM_NAMES: &str = "io.nats.jetstream.api.v1.stream_names_response";
    pub const STREAM_LIST: &str = "io.nats.jetstream.api.v1.stream_list_response";
    pub const STREAM_PURGE: &str = "io.nats.jetstream.api.v1.stream_purge_response";
    pub const STREAM_MSG_GET: &str = "io.nats.jetstream.api.v1.stream_msg_get_response";
    pub const STREAM_MSG_DELETE: &str = "io.nats.jetstream.api.v1.stream_msg_delete_response";
}

/// Page sizes the reference uses (seen in its replies' `limit`).
pub mod page_limit {
    /// `STREAM.NAMES`.
    pub const STREAM_NAMES: usize = 1024;
    /// `STREAM.LIST`.
    pub const STREAM_LIST: usize = 256;
    /// `STREAM.INFO` with `subjects_filter`: subjects per page. Without a
    /// filter the reply's paging is all zeros.
    pub const STREAM_INFO_SUBJECTS: usize = 100_000;
}

/// Paging numbers of a reply; always written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiPaged {
    #[serde(default)]
    pub total: usize,
    #[serde(default)]
    pub offset: usize,
    #[serde(default)]
    pub limit: usize,
}

/// Declares a response: `type`, `error`, then the given body fields, with
/// `ok`/`error` constructors.
macro_rules! response {
    ($(#[$meta:meta])* $name:ident, $type_const:ident, { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            #[serde(rename = "type")]
            pub response_type: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub error: Option<ApiError>,
            $($body)*
        }

        impl $name {
            /// The `type` this response is written with.
            pub const TYPE: &'static str = response_type::$type_const;
        }
    };
}

response!(
    /// `$JS.API.INFO`.
    AccountInfoResponse, ACCOUNT_INFO, {
        #[serde(flatten)]
        pub info: Option<AccountInfo>,
    }
);

impl AccountInfoResponse {
    pub fn ok(info: AccountInfo) -> Self {
        AccountInfoResponse {
            response_type: Self::TYPE.into(),
            error: None,
            info: Some(info),
        }
    }

    pub fn error(error: ApiError) -> Self {
        AccountInfoResponse {
            response_type: Self::TYPE.into(),
            error: Some(error),
            info: None,
        }
    }
}

response!(
    /// `$JS.API.STREAM.CREATE.<stream>`.
    StreamCreateResponse, STREAM_CREATE, {
        #[serde(flatten)]
        pub info: Option<StreamInfo>,
        /// Set on a create, also when the same config already existed.
        #[serde(default, skip_serializing_if = "is_false")]
        pub did_create: bool,
    }
);

impl StreamCreateResponse {
    pub fn ok(info: StreamInfo, did_create: bool) -> Self {
        let response_type = Self::TYPE.into();
        StreamCreateResponse {
            response_type,
            error: None,
            info: Some(info),
            did_create,
        }
    }

    pub fn error(error: ApiError) -> Self {
        let response_type = Self::TYPE.into();
        StreamCreateResponse {
            response_type,
            error: Some(error),
            info: None,
            did_create: false,
        }
    }
}

response!(
    /// `$JS.API.STREAM.UPDATE.<stream>`.
    StreamUpdateResponse, STREAM_UPDATE, {
        #[serde(flatten)]
        pub info: Option<StreamInfo>,
    }
);

impl StreamUpdateResponse {
    pub fn ok(info: StreamInfo) -> Self {
        StreamUpdateResponse {
            response_type: Self::TYPE.into(),
            error: None,
            info: Some(info),
        }
    }

    pub fn error(error: ApiError) -> Self {
        StreamUpdateResponse {
            response_type: Self::TYPE.into(),
            error: Some(error),
            info: None,
        }
    }
}

response!(
    /// `$JS.API.STREAM.INFO.<stream>`: paging numbers (for the subjects
    /// detail) always, even beside an error.
    StreamInfoResponse, STREAM_INFO, {
        #[serde(flatten)]
        pub paged: ApiPaged,
        #[serde(flatten)]
        pub info: Option<StreamInfo>,
    }
);

impl StreamInfoResponse {
    pub fn ok(paged: ApiPaged, info: StreamInfo) -> Self {
        let response_type = Self::TYPE.into();
        StreamInfoResponse {
            response_type,
            error: None,
            paged,
            info: Some(info),
        }
    }

    pub fn error(error: ApiError) -> Self {
        let response_type = Self::TYPE.into();
        StreamInfoResponse {
            response_type,
            error: Some(error),
            paged: ApiPaged::default(),
            info: None,
        }
    }
}

response!(
    /// `$JS.API.STREAM.DELETE.<stream>`.
    StreamDeleteResponse, STREAM_DELETE, {
        #[serde(default, skip_serializing_if = "is_false")]
        pub success: bool,
    }
);

response!(
    /// `$JS.API.STREAM.NAMES`: `streams` is always written, `null` when
    /// none match.
    StreamNamesResponse, STREAM_NAMES, {
        #[serde(flatten)]
        pub paged: ApiPaged,
        #[serde(default)]
        pub streams: Option<Vec<String>>,
    }
);

response!(
    /// `$JS.API.STREAM.LIST`.
    StreamListResponse, STREAM_LIST, {
        #[serde(flatten)]
        pub paged: ApiPaged,
        #[serde(default)]
        pub streams: Option<Vec<StreamInfo>>,
        /// Streams that did not answer in time (clustered).
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub missing: Vec<String>,
        /// Streams that are offline, and why (clustered).
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        pub offline: std::collections::BTreeMap<String, String>,
    }
);

response!(
    /// `$JS.API.STREAM.PURGE.<stream>`: `purged` is always written.
    PurgeResponse, STREAM_PURGE, {
        #[serde(default, skip_serializing_if = "is_false")]
        pub success: bool,
        #[serde(default)]
        pub purged: u64,
    }
);

response!(
    /// `$JS.API.STREAM.MSG.GET.<stream>`.
    MsgGetResponse, STREAM_MSG_GET, {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<StoredMsg>,
    }
);

response!(
    /// `$JS.API.STREAM.MSG.DELETE.<stream>`.
    MsgDeleteResponse, STREAM_MSG_DELETE, {
        #[serde(default, skip_serializing_if = "is_false")]
        pub success: bool,
    }
);

/// Responses whose body is a flag or a count: `ok`/`error` constructors.
macro_rules! simple_constructors {
    ($name:ident { $($field:ident: $value:expr),* }) => {
        impl $name {
            /// The failure reply: the error and the members always written.
            pub fn error(error: ApiError) -> Self {
                $name { response_type: Self::TYPE.into(), error: Some(error), $($field: $value),* }
            }
        }
    };
}

simple_constructors!(StreamDeleteResponse { success: false });
simple_constructors!(StreamNamesResponse {
    paged: ApiPaged::default(),
    streams: None
});
simple_constructors!(StreamListResponse {
    paged: ApiPaged::default(),
    streams: None,
    missing: Vec::new(),
    offline: Default::default()
});
simple_constructors!(PurgeResponse {
    success: false,
    purged: 0
});
simple_constructors!(MsgGetResponse { message: None });
simple_constructors!(MsgDeleteResponse { success: false });

impl StreamDeleteResponse {
    pub fn ok() -> Self {
        StreamDeleteResponse {
            response_type: Self::TYPE.into(),
            error: None,
            success: true,
        }
    }
}

impl StreamNamesResponse {
    /// `names` empty is written as `"streams":null`, as the reference does.
    pub fn ok(paged: ApiPaged, names: Vec<String>) -> Self {
        let streams = if names.is_empty() { None } else { Some(names) };
        StreamNamesResponse {
            response_type: Self::TYPE.into(),
            error: None,
            paged,
            streams,
        }
    }
}

impl StreamListResponse {
    pub fn ok(paged: ApiPaged, infos: Vec<StreamInfo>) -> Self {
        StreamListResponse {
            response_type: Self::TYPE.into(),
            error: None,
            paged,
            streams: Some(infos),
            missing: Vec::new(),
            offline: Default::default(),
        }
    }
}

impl PurgeResponse {
    pub fn ok(purged: u64) -> Self {
        PurgeResponse {
            response_type: Self::TYPE.into(),
            error: None,
            success: true,
            purged,
        }
    }
}

impl MsgGetResponse {
    pub fn ok(message: StoredMsg) -> Self {
        MsgGetResponse {
            response_type: Self::TYPE.into(),
            error: None,
            message: Some(message),
        }
    }
}

impl MsgDeleteResponse {
    pub fn ok() -> Self {
        MsgDeleteResponse {
            response_type: Self::TYPE.into(),
            error: None,
            success: true,
        }
    }
}

/// Paging of `STREAM.NAMES`; `subject` keeps the streams whose subjects
/// overlap it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamNamesRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub offset: usize,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub subject: String,
}

/// Paging of `STREAM.LIST` (the same fields as `STREAM.NAMES`).
pub type StreamListRequest = StreamNamesRequest;

/// `STREAM.INFO` options: the deleted sequences, the per-subject counts of
/// subjects matching `subjects_filter`, paged from `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfoRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub offset: usize,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub deleted_details: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub subjects_filter: String,
}

/// `STREAM.PURGE` options: up to (not including) `seq`, only `filter`'s
/// subjects, keeping the last `keep`. An empty body purges everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub seq: u64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub filter: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub keep: u64,
}

/// `STREAM.MSG.DELETE`: remove `seq`, overwriting it unless `no_erase`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgDeleteRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub seq: u64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub no_erase: bool,
}

/// `STREAM.MSG.GET`: one of `seq`, `last_by_subj`, `next_by_subj` (with
/// `seq` as the start); the batch fields belong to direct get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgGetRequest {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub seq: u64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_by_subj: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub next_by_subj: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_usize"
    )]
    pub batch: usize,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_usize"
    )]
    pub max_bytes: usize,
    #[serde(
        default,
        with = "super::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<WallTime>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub multi_last: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub up_to_seq: u64,
    #[serde(
        default,
        with = "super::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub up_to_time: Option<WallTime>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub no_hdr: bool,
}

/// A stored message as `STREAM.MSG.GET` returns it: headers and payload in
/// standard base64, each left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMsg {
    pub subject: String,
    pub seq: u64,
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub hdrs: Vec<u8>,
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
    #[serde(with = "super::time::required")]
    pub time: WallTime,
}

/// Go's `[]byte` in JSON: standard base64 with padding.
mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
