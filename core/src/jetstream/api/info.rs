//! `StreamInfo` and `StreamState`: what `STREAM.INFO`, `STREAM.LIST`,
//! `STREAM.CREATE` and `STREAM.UPDATE` reply with.
//!
//! Invariants: times with no value (an empty stream's `first_ts`) are
//! written as Go's zero time; `consumer_count` and the sequence fields are
//! always written, the subject and deleted details only when asked for and
//! not empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stream::{ExternalStream, StreamConfig, SubjectTransformConfig};
use super::{is_false, is_zero_u64, is_zero_usize, null_as_default};
use crate::jetstream::errors::ApiError;
use crate::time::WallTime;

/// A stream's configuration and state at a moment.
///
/// As the reference fills it on a single server: `config` shows the
/// version metadata (`_nats.ver`, `_nats.level`; see
/// [`crate::jetstream::stream_config::with_dynamic_metadata`]) in `CREATE`,
/// `UPDATE` and `INFO` replies but not in `LIST`; `cluster` is
/// `{"leader":<server name>}` in `INFO` replies only; `mirror`/`sources`
/// info appears for streams that copy (`active` -1 until a message came).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub config: StreamConfig,
    #[serde(default, with = "super::time::required")]
    pub created: WallTime,
    pub state: StreamState,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSourceInfo>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<StreamSourceInfo>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub alternates: Vec<StreamAlternate>,
    /// When the info was gathered.
    #[serde(default, with = "super::time::required")]
    pub ts: WallTime,
}

/// The numbers of a stream's store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    /// `None` (Go's zero time) when the stream is empty.
    #[serde(default, with = "super::time::optional")]
    pub first_ts: Option<WallTime>,
    pub last_seq: u64,
    /// `None` (Go's zero time) when nothing was ever stored.
    #[serde(default, with = "super::time::optional")]
    pub last_ts: Option<WallTime>,
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub num_subjects: usize,
    /// Messages per subject, when `subjects_filter` asked for them.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub subjects: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub num_deleted: usize,
    /// Deleted sequences, when `deleted_details` asked for them.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub deleted: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostStreamData>,
    /// Always written.
    #[serde(default)]
    pub consumer_count: usize,
}

/// Messages a store found damaged and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostStreamData {
    /// Always written (`null` when empty, as Go writes a nil slice).
    #[serde(default, deserialize_with = "null_as_default")]
    pub msgs: Option<Vec<u64>>,
    pub bytes: u64,
}

/// The RAFT group behind a stream. A single server writes only `leader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
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
    pub raft_group: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub leader: String,
    #[serde(
        default,
        with = "super::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub leader_since: Option<WallTime>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub system_account: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub traffic_account: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub replicas: Vec<PeerInfo>,
    /// The placement a migration is moving to; carried as is (clustering
    /// is not modelled here yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Value>,
}

/// One replica of a RAFT group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: String,
    pub current: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub offline: bool,
    /// Nanoseconds since it was last heard from.
    pub active: i64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub lag: u64,
    pub peer: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
}

/// How a mirror or source is keeping up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSourceInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    pub lag: u64,
    /// The origin sequence last taken (a source's; omitted when none).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub seq: u64,
    /// Nanoseconds since the last message (-1 when never active).
    pub active: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
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
}

/// Another copy of the stream (a mirror) a client may read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAlternate {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    pub cluster: String,
}
