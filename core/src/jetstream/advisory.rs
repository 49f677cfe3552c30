//! JetStream's advisories: what it announces on `$JS.EVENT.ADVISORY.>`.
//!
//! Role: the reference publishes an advisory in the stream's account when
//! a stream is created, updated or deleted, and an audit record of every
//! API request with its response. Same subjects, same JSON here; ids are
//! 22-character nuid-like strings from the machine's seeded stream.

use serde::Serialize;
use serde_json::value::RawValue;

/// Where the stream actions go: `…CREATED.<stream>` and so on.
pub const STREAM_CREATED: &str = "$JS.EVENT.ADVISORY.STREAM.CREATED";
pub const STREAM_UPDATED: &str = "$JS.EVENT.ADVISORY.STREAM.UPDATED";
pub const STREAM_DELETED: &str = "$JS.EVENT.ADVISORY.STREAM.DELETED";
/// Where a dropped atomic batch is announced: `…BATCH_ABANDONED.<stream>`.
pub const BATCH_ABANDONED: &str = "$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED";
/// Where every API request is audited.
pub const API_AUDIT: &str = "$JS.EVENT.ADVISORY.API";

/// A stream was created (`create`), updated (`modify`) or deleted (`delete`).
#[derive(Serialize)]
pub struct StreamAction<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub stream: &'a str,
    pub action: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub domain: &'a str,
}

pub const STREAM_ACTION_TYPE: &str = "io.nats.jetstream.advisory.v1.stream_action";
pub const BATCH_ABANDONED_TYPE: &str = "io.nats.jetstream.advisory.v1.stream_batch_abandoned";

/// An atomic batch was dropped (`timeout`, `large`, `incomplete`,
/// `unsupported`).
#[derive(Serialize)]
pub struct BatchAbandoned<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub stream: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub domain: &'a str,
    pub batch: &'a str,
    pub reason: &'static str,
}
pub const API_AUDIT_TYPE: &str = "io.nats.jetstream.advisory.v1.api_audit";

/// One API request and the reply it got.
#[derive(Serialize)]
pub struct ApiAudit<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a RawValue>,
    pub subject: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub request: &'a str,
    pub response: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub domain: &'a str,
}
