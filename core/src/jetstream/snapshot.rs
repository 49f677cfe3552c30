//! `$JS.API.STREAM.SNAPSHOT.<stream>` and `$JS.API.STREAM.RESTORE.<stream>`:
//! a stream (messages, sequences, gaps, consumers) sent to a client as a
//! backup archive ([`super::archive`]) and rebuilt from one.
//!
//! Role: the API half (request checks, replies, advisories) and the two
//! flows, as sessions of the JetStream machine ([`Sessions`]) driven by
//! inbound messages ([`JsTarget::Snapshot`]) and the machine's clock.
//!
//! Snapshot, as the reference does it: the reply carries the stream's
//! config and state; the archive then goes to the request's
//! `deliver_subject` in chunks of `chunk_size` bytes (default 128 KiB,
//! clamped to 1 KiB..1 MiB), each full chunk with a reply subject
//! `$JS.SNAPSHOT.ACK.<stream>.<id>.<len>.<index>`; at most
//! `window_size / chunk_size` chunks are unacknowledged (window default 8 MiB,
//! clamped to 1 KiB..32 MiB). The last, shorter chunk has no reply; an empty
//! message ends the snapshot, with the header `NATS/1.0 204` when at least
//! one full chunk went out (as the reference's), `408 No Flow Response` when
//! no ack came for 5 s, `500 <error>` when the stream could not be read.
//! Chunks are made as acks make room (bounded memory: one chunk plus one
//! message), from the messages up to the last sequence at the request; the
//! stream keeps taking messages meanwhile. The first chunk waits, as the
//! reference's, until a client subscribes to exactly the deliver subject
//! (the server's link watches it: [`Watcher::Snapshot`]) or 2 s pass:
//! jsm.go (the `nats` CLI) subscribes only when it has read the reply, and
//! its inbox is otherwise served by its request mux's wildcard, which drops
//! what it does not expect and is no interest here. Once chunks flow, a
//! change of that interest (the receiver gone) ends the snapshot with
//! `408 No Interest`.
//!
//! Restore: the request's config is checked as a create's; the reply names
//! `$JS.SNAPSHOT.RESTORE.<stream>.<id>`, where the client sends chunks as
//! requests (each answered with an empty message) and then an empty
//! message, answered with a `stream_create_response` carrying the restored
//! stream's info or the error. Messages go straight into a new store
//! (bounded memory: the reader holds one frame and one entry) that is not
//! a stream until the end: no definition is written and no subject routed
//! before then, so a failed, refused or abandoned restore (no chunk for
//! 5 s) leaves nothing, and its staged files are removed. A chunk that
//! fails the restore is answered with the error. Consumers are created at
//! the end, each starting from its restored state.
//!
//! Known differences from the reference: it ends a snapshot with `408 No
//! Interest` when the deliver subject loses its subscribers; rnats notices
//! only by the missing acks (408 No Flow Response). The `jsck` health
//! check is accepted and has nothing to do (every read is checksummed).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::decode::{Fields, GoType, STREAM_CONFIG_REQUEST};
use super::api::{ConsumerConfig, RequestFields, StreamConfig, StreamConfigRequest, StreamState};
use super::archive::{ArchiveReader, ArchiveWriter, Entry, Framing};
use super::errors::{ApiError, ApiErrorKind as K};
use super::link::{JsAction, JsInbound, JsTarget, StreamId, Watcher};
use super::machine::{JetStream, StreamMeta};
use super::stream::{Storage, Store};
use crate::server::LogLevel;
use crate::store::{ConsumerState, Disk, Filter, Pending, SequencePair, StoreError, StoredMsg};
use crate::time::{Instant, WallTime};

const SNAPSHOT_TYPE: &str = "io.nats.jetstream.api.v1.stream_snapshot_response";
const RESTORE_TYPE: &str = "io.nats.jetstream.api.v1.stream_restore_response";
const DEFAULT_CHUNK: i64 = 128 * 1024;
const DEFAULT_WINDOW: i64 = 8 * 1024 * 1024;
/// No ack for this long after the last chunk ends a snapshot.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// No chunk for this long abandons a restore.
const RESTORE_IDLE: Duration = Duration::from_secs(5);
/// The longest the first chunk waits for the receiver to subscribe (see
/// the module comment).
const INTEREST_WAIT: Duration = Duration::from_secs(2);
/// The largest archive entry a restore takes: a message can be no larger
/// than the largest `max_payload`.
const MAX_ENTRY: u64 = 64 * 1024 * 1024;

const SNAPSHOT_CREATE: &str = "$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_CREATE";
const SNAPSHOT_COMPLETE: &str = "$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_COMPLETE";
const RESTORE_CREATE: &str = "$JS.EVENT.ADVISORY.STREAM.RESTORE_CREATE";
const RESTORE_COMPLETE: &str = "$JS.EVENT.ADVISORY.STREAM.RESTORE_COMPLETE";

/// `JSApiStreamSnapshotRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SnapshotRequest {
    deliver_subject: String,
    no_consumers: bool,
    chunk_size: i64,
    window_size: i64,
    jsck: bool,
}

impl RequestFields for SnapshotRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiStreamSnapshotRequest",
        fields: &[
            ("deliver_subject", GoType::String),
            ("no_consumers", GoType::Bool),
            ("chunk_size", GoType::Int),
            ("window_size", GoType::Int),
            ("jsck", GoType::Bool),
        ],
    };
}

/// `JSApiStreamRestoreRequest`: the config to restore as, and the state
/// the backup was made at (informational; the archive carries its own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RestoreRequest {
    config: StreamConfigRequest,
}

const STREAM_STATE: Fields = Fields {
    go_name: "StreamState",
    fields: &[
        ("messages", GoType::Uint64),
        ("bytes", GoType::Uint64),
        ("first_seq", GoType::Uint64),
        ("first_ts", GoType::Time),
        ("last_seq", GoType::Uint64),
        ("last_ts", GoType::Time),
        ("num_subjects", GoType::Int),
        // A map of numbers, a list of numbers and an object: read by their
        // own types, as the reference's are.
        ("subjects", GoType::Enum),
        ("num_deleted", GoType::Int),
        ("deleted", GoType::Enum),
        ("lost", GoType::Enum),
        ("consumer_count", GoType::Int),
    ],
};

impl RequestFields for RestoreRequest {
    const FIELDS: &'static Fields = &Fields {
        go_name: "JSApiStreamRestoreRequest",
        fields: &[
            ("config", GoType::Struct(&STREAM_CONFIG_REQUEST)),
            ("state", GoType::Struct(&STREAM_STATE)),
        ],
    };
}

/// `JSApiStreamSnapshotResponse`.
#[derive(Debug, Serialize)]
pub struct SnapshotResponse {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<StreamConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<StreamState>,
}

impl SnapshotResponse {
    pub fn error(error: ApiError) -> Self {
        SnapshotResponse {
            kind: SNAPSHOT_TYPE,
            error: Some(error),
            config: None,
            state: None,
        }
    }
}

/// `JSApiStreamRestoreResponse`: `deliver_subject` always written.
#[derive(Debug, Serialize)]
pub struct RestoreResponse {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    deliver_subject: String,
}

impl RestoreResponse {
    pub fn error(error: ApiError) -> Self {
        RestoreResponse {
            kind: RESTORE_TYPE,
            error: Some(error),
            deliver_subject: String::new(),
        }
    }
}

/// A consumer in the archive (`SnapshotConsumerState`).
#[derive(Debug, Serialize, Deserialize)]
struct ArchivedConsumer {
    #[serde(default)]
    config: Option<ConsumerConfig>,
    #[serde(default)]
    state: Option<ArchivedState>,
}

/// The reference's `ConsumerState` JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ArchivedState {
    #[serde(default)]
    delivered: ArchivedPair,
    #[serde(default)]
    ack_floor: ArchivedPair,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pending: BTreeMap<u64, ArchivedPending>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    redelivered: BTreeMap<u64, u64>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct ArchivedPair {
    #[serde(default)]
    consumer_seq: u64,
    #[serde(default)]
    stream_seq: u64,
}

/// Go's `Pending` has no JSON tags: its field names are the keys.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct ArchivedPending {
    #[serde(rename = "Sequence", default)]
    sequence: u64,
    #[serde(rename = "Timestamp", default)]
    timestamp: i64,
}

impl ArchivedState {
    /// `state` as the archive keeps it, bounded by the snapshot's last
    /// sequence as the reference bounds it.
    fn of(state: &ConsumerState, last: u64) -> Self {
        let pair = |p: SequencePair| ArchivedPair {
            consumer_seq: p.consumer,
            stream_seq: p.stream.min(last),
        };
        ArchivedState {
            delivered: pair(state.delivered),
            ack_floor: pair(state.ack_floor),
            pending: state
                .pending
                .range(..=last)
                .map(|(&seq, p)| {
                    let timestamp = i64::try_from(p.ts.0).unwrap_or(i64::MAX);
                    let pending = ArchivedPending {
                        sequence: p.sequence,
                        timestamp,
                    };
                    (seq, pending)
                })
                .collect(),
            redelivered: state
                .redelivered
                .range(..=last)
                .map(|(&seq, &count)| (seq, count))
                .collect(),
        }
    }

    fn into_state(self) -> ConsumerState {
        let pair = |p: ArchivedPair| SequencePair {
            consumer: p.consumer_seq,
            stream: p.stream_seq,
        };
        ConsumerState {
            delivered: pair(self.delivered),
            ack_floor: pair(self.ack_floor),
            pending: self
                .pending
                .into_iter()
                .map(|(seq, p)| {
                    let ts = WallTime(u64::try_from(p.timestamp).unwrap_or(0));
                    let pending = Pending {
                        sequence: p.sequence,
                        ts,
                    };
                    (seq, pending)
                })
                .collect(),
            redelivered: self.redelivered,
        }
    }
}

/// The sessions under way.
pub(super) struct Sessions<D: Disk> {
    next: u64,
    outgoing: BTreeMap<u64, Outgoing>,
    incoming: BTreeMap<u64, Incoming<D>>,
}

impl<D: Disk> Default for Sessions<D> {
    fn default() -> Self {
        Sessions {
            next: 1,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
        }
    }
}

/// Who asked and when, for the advisories.
struct Origin {
    account: String,
    stream: String,
    client: Bytes,
    start: WallTime,
}

/// A snapshot being sent.
struct Outgoing {
    origin: Origin,
    id: StreamId,
    deliver: Bytes,
    ack_prefix: String,
    chunk: usize,
    window: usize,
    inflight: usize,
    /// The next chunk's number (from 1).
    index: u64,
    writer: ArchiveWriter,
    /// The next message to read, and the last one the snapshot holds.
    next_seq: u64,
    last_seq: u64,
    /// Every message is in `writer` (and the end entry).
    written: bool,
    /// Chunks flow from this instant: when the receiver subscribed, else
    /// [`INTEREST_WAIT`] after the request.
    start_at: Instant,
    last_sent: Instant,
    /// The server reported the deliver subject's interest at least once.
    watched: bool,
}

/// Where a restore is in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    State,
    Consumers(usize),
    Messages,
    Done,
}

/// A restore being received.
struct Incoming<D: Disk> {
    origin: Origin,
    config: StreamConfig,
    reader: ArchiveReader,
    phase: Phase,
    /// The stream's state in the archive.
    state: StreamState,
    /// The new store, once the archive's state was read.
    staged: Option<(StreamId, Store<D>)>,
    consumers: Vec<(String, ConsumerConfig, ConsumerState)>,
    /// The last sequence taken from the archive.
    last_seq: u64,
    idle_at: Instant,
}

/// Why a restore failed: an API error as is, or the text of a
/// `restore failed: ...` error.
enum Failure {
    Api(ApiError),
    Text(String),
}

impl From<String> for Failure {
    fn from(text: String) -> Self {
        Failure::Text(text)
    }
}

impl Failure {
    fn into_api(self) -> ApiError {
        match self {
            Failure::Api(error) => error,
            Failure::Text(text) => ApiError::with(K::StreamRestore, &[("{err}", &text)]),
        }
    }
}

/// The reference's `isEmptyRequest`: no body, or a JSON object without
/// members.
fn is_empty_request(payload: &[u8]) -> bool {
    payload.is_empty()
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
            .is_ok_and(|map| map.is_empty())
}

fn clamp(value: i64, default: i64, min: i64, max: i64) -> usize {
    let value = if value == 0 { default } else { value };
    usize::try_from(value.clamp(min, max)).expect("clamped to a positive range")
}

#[derive(Serialize)]
struct SnapshotCreateAdvisory<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    stream: &'a str,
    state: &'a StreamState,
    client: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "str::is_empty")]
    domain: &'a str,
}

#[derive(Serialize)]
struct CompleteAdvisory<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    stream: &'a str,
    start: String,
    end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    client: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "str::is_empty")]
    domain: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
}

#[derive(Serialize)]
struct RestoreCreateAdvisory<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    stream: &'a str,
    client: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "str::is_empty")]
    domain: &'a str,
}

fn client_json(context: &Bytes) -> Option<&RawValue> {
    std::str::from_utf8(context)
        .ok()
        .and_then(|json| serde_json::from_str::<&RawValue>(json).ok())
}

impl<D: Disk + Clone> JetStream<D> {
    fn new_session(&mut self) -> u64 {
        let id = self.snapshots.next;
        self.snapshots.next += 1;
        id
    }

    fn domain(&self) -> String {
        self.config.domain.clone().unwrap_or_default()
    }

    /// A restore known to be under way.
    fn incoming_mut(&mut self, session: u64) -> &mut Incoming<D> {
        self.snapshots
            .incoming
            .get_mut(&session)
            .expect("a restore under way")
    }

    // ----- snapshot -----

    /// `STREAM.SNAPSHOT.<name>`: the reply, and the session that sends
    /// the archive.
    pub(super) fn snapshot_request(
        &mut self,
        account: &str,
        name: &str,
        payload: &[u8],
        client: &Bytes,
    ) -> Result<SnapshotResponse, ApiError> {
        if is_empty_request(payload) {
            return Err(ApiError::new(K::BadRequest));
        }
        let id = self
            .stream_by_name(account, name)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        let request: SnapshotRequest = super::api::decode_request(payload, self.config.strict)?;
        if !crate::subject::is_valid_publish_subject(request.deliver_subject.as_bytes()) {
            return Err(ApiError::new(K::SnapshotDeliverSubjectInvalid));
        }
        let chunk = clamp(request.chunk_size, DEFAULT_CHUNK, 1024, 1024 * 1024);
        let window = clamp(request.window_size, DEFAULT_WINDOW, 1024, 32 * 1024 * 1024).max(chunk);
        let info = self.stream_info(id, None);
        let mut state = info.state;
        let entry = &self.streams[&id];
        let config = entry.meta.config.clone();
        let mut writer = ArchiveWriter::new();
        let consumers: Vec<(String, Vec<u8>)> = if request.no_consumers {
            Vec::new()
        } else {
            entry
                .consumers
                .iter()
                // A direct consumer keeps no state of its own to back up.
                .filter(|(_, consumer)| !consumer.config.direct)
                .map(|(name, consumer)| {
                    let archived = ArchivedConsumer {
                        config: Some(consumer.config.clone()),
                        state: Some(ArchivedState::of(consumer.consumer.state(), state.last_seq)),
                    };
                    (name.clone(), super::api::to_wire_json(&archived))
                })
                .collect()
        };
        // The archive's state counts the consumers it holds; the reply's
        // counts the stream's.
        let mut archived_state = state.clone();
        archived_state.consumer_count = consumers.len();
        let ts = i64::try_from(self.wall.0).unwrap_or(i64::MAX);
        writer.entry(
            b"state.json",
            ts,
            0,
            b"",
            &super::api::to_wire_json(&archived_state),
        );
        for (name, json) in &consumers {
            writer.entry(format!("consumers/{name}").as_bytes(), ts, 0, b"", json);
        }
        state.subjects.clear();
        let session = self.new_session();
        let ack_prefix = format!("$JS.SNAPSHOT.ACK.{name}.{}", self.next_id());
        self.actions.push_back(JsAction::Listen {
            account: account.to_string(),
            target: JsTarget::Snapshot(session),
            subjects: vec![format!("{ack_prefix}.>")],
        });
        let now = self.now;
        let outgoing = Outgoing {
            origin: Origin {
                account: account.to_string(),
                stream: name.to_string(),
                client: client.clone(),
                start: self.wall,
            },
            id,
            deliver: Bytes::from(request.deliver_subject),
            ack_prefix,
            chunk,
            window: window / chunk,
            inflight: 0,
            index: 1,
            writer,
            next_seq: state.first_seq.max(1),
            last_seq: state.last_seq,
            written: false,
            start_at: now + INTEREST_WAIT,
            last_sent: now + INTEREST_WAIT,
            watched: false,
        };
        self.actions.push_back(JsAction::WatchInterest {
            account: account.to_string(),
            watcher: Watcher::Snapshot(session),
            subject: Some(outgoing.deliver.clone()),
        });
        self.snapshots.outgoing.insert(session, outgoing);
        let mode = if request.jsck {
            "health check and snapshot"
        } else {
            "snapshot"
        };
        self.log(
            LogLevel::Info,
            format!("Starting {mode} for stream '{account} > {name}'"),
        );
        // The reply goes out after this returns; the advisory follows it in
        // the reference.
        self.advise_snapshot_create(account, name, &state, client);
        Ok(SnapshotResponse {
            kind: SNAPSHOT_TYPE,
            error: None,
            config: Some(config),
            state: Some(state),
        })
    }

    fn advise_snapshot_create(
        &mut self,
        account: &str,
        name: &str,
        state: &StreamState,
        client: &Bytes,
    ) {
        let domain = self.domain();
        let advisory = SnapshotCreateAdvisory {
            kind: "io.nats.jetstream.advisory.v1.snapshot_create",
            id: self.next_id(),
            timestamp: crate::format::rfc3339_nanos(self.wall),
            stream: name,
            state,
            client: client_json(client),
            domain: &domain,
        };
        let body = serde_json::to_vec(&advisory).expect("advisories serialize");
        self.publish(account, format!("{SNAPSHOT_CREATE}.{name}"), body);
    }

    /// Send what the window has room for; end the snapshot once all of
    /// it went out.
    fn pump_snapshot(&mut self, session: u64) {
        let now = self.now;
        loop {
            let Some(out) = self.snapshots.outgoing.get_mut(&session) else {
                return;
            };
            if now < out.start_at || out.inflight >= out.window {
                return;
            }
            while out.writer.ready() < out.chunk && !out.written {
                let Some(entry) = self.streams.get_mut(&out.id) else {
                    let error = format!(
                        "couldn't load next message after seq {}: stream closed",
                        out.next_seq
                    );
                    self.end_snapshot(session, Some(error));
                    return;
                };
                match entry
                    .stream
                    .store_mut()
                    .load_next(&Filter::All, out.next_seq)
                {
                    Ok(msg) if msg.seq <= out.last_seq => {
                        let ts = i64::try_from(msg.ts.0).unwrap_or(i64::MAX);
                        out.writer
                            .entry(&msg.subject, ts, msg.seq, &msg.headers, &msg.payload);
                        out.next_seq = msg.seq + 1;
                    }
                    Ok(_) | Err(StoreError::Eof) => {
                        out.writer.finish();
                        out.written = true;
                    }
                    Err(error) => {
                        let error = format!(
                            "couldn't load next message after seq {}: {error}",
                            out.next_seq
                        );
                        self.end_snapshot(session, Some(error));
                        return;
                    }
                }
            }
            if out.writer.ready() >= out.chunk {
                let chunk = out.writer.take(out.chunk);
                let reply = format!("{}.{}.{}", out.ack_prefix, chunk.len(), out.index);
                out.index += 1;
                out.inflight += 1;
                out.last_sent = now;
                let account = out.origin.account.clone();
                let to = out.deliver.clone();
                self.send(account, to, Bytes::from(reply), Bytes::new(), chunk);
                continue;
            }
            // All written and less than a chunk left: the rest, without a
            // reply, then the end.
            let rest = out.writer.take(usize::MAX);
            if !rest.is_empty() {
                let account = out.origin.account.clone();
                let to = out.deliver.clone();
                self.send(account, to, Bytes::new(), Bytes::new(), rest);
            }
            self.end_snapshot(session, None);
            return;
        }
    }

    /// The server reported whether the snapshot's receiver subscribes to
    /// its deliver subject: before chunks flow, a subscriber starts them;
    /// after, any change means the receiver went away.
    pub(super) fn snapshot_interest(&mut self, session: u64, yes: bool) {
        let now = self.now;
        let Some(out) = self.snapshots.outgoing.get_mut(&session) else {
            return;
        };
        let first = !out.watched;
        out.watched = true;
        if now < out.start_at {
            if yes {
                out.start_at = now;
                out.last_sent = now;
                self.pump_snapshot(session);
            }
            return;
        }
        if first {
            // The state when the watch began, reported after the wait ran out.
            return;
        }
        let out = self.snapshots.outgoing.remove(&session).expect("there");
        let status = "NATS/1.0 408 No Interest\r\n\r\n".to_string();
        self.finish_snapshot(session, out, status, "no interest".to_string());
    }

    fn send(&mut self, account: String, to: Bytes, reply: Bytes, headers: Bytes, payload: Vec<u8>) {
        self.actions.push_back(JsAction::Publish {
            account: account.into(),
            subject: to,
            reply,
            headers,
            payload: Bytes::from(payload),
        });
    }

    /// The end-of-snapshot message, the complete advisory, and the
    /// session gone. `error` is a stream read that failed.
    fn end_snapshot(&mut self, session: u64, error: Option<String>) {
        let Some(out) = self.snapshots.outgoing.remove(&session) else {
            return;
        };
        let (status, error) = match error {
            Some(error) => (format!("NATS/1.0 500 {error}\r\n\r\n"), error),
            None if out.index > 1 => ("NATS/1.0 204\r\n\r\n".to_string(), String::new()),
            None => (String::new(), String::new()),
        };
        self.finish_snapshot(session, out, status, error);
    }

    fn finish_snapshot(&mut self, session: u64, out: Outgoing, status: String, error: String) {
        let Origin {
            account,
            stream,
            client,
            start,
        } = out.origin;
        self.send(
            account.clone(),
            out.deliver,
            Bytes::new(),
            Bytes::from(status),
            Vec::new(),
        );
        self.actions.push_back(JsAction::WatchInterest {
            account: account.clone(),
            watcher: Watcher::Snapshot(session),
            subject: None,
        });
        self.stop_listening(session, &account);
        self.advise_complete(
            &account,
            &stream,
            SNAPSHOT_COMPLETE,
            start,
            None,
            &client,
            &error,
        );
        let line = if error.is_empty() {
            (
                LogLevel::Info,
                format!("Completed snapshot for stream '{account} > {stream}'"),
            )
        } else {
            (
                LogLevel::Warn,
                format!("Snapshot for stream '{account} > {stream}' failed: {error}"),
            )
        };
        self.log(line.0, line.1);
    }

    #[allow(clippy::too_many_arguments)]
    fn advise_complete(
        &mut self,
        account: &str,
        stream: &str,
        subject: &str,
        start: WallTime,
        bytes: Option<u64>,
        client: &Bytes,
        error: &str,
    ) {
        let domain = self.domain();
        let restore = subject == RESTORE_COMPLETE;
        let advisory = CompleteAdvisory {
            kind: if restore {
                "io.nats.jetstream.advisory.v1.restore_complete"
            } else {
                "io.nats.jetstream.advisory.v1.snapshot_complete"
            },
            id: self.next_id(),
            timestamp: crate::format::rfc3339_nanos(self.wall),
            stream,
            start: crate::format::rfc3339_nanos(start),
            end: crate::format::rfc3339_nanos(self.wall),
            bytes,
            client: client_json(client),
            domain: &domain,
            error,
        };
        let body = serde_json::to_vec(&advisory).expect("advisories serialize");
        self.publish(account, format!("{subject}.{stream}"), body);
    }

    // ----- restore -----

    /// `STREAM.RESTORE.<name>`: checked as a create, then the session that
    /// takes the chunks.
    pub(super) fn restore_request(
        &mut self,
        account: &str,
        name: &str,
        payload: &[u8],
        client: &Bytes,
    ) -> Result<RestoreResponse, ApiError> {
        if is_empty_request(payload) {
            return Err(ApiError::new(K::BadRequest));
        }
        let mut request: RestoreRequest = super::api::decode_request(payload, self.config.strict)?;
        if request.config.config.name.is_empty() {
            request.config.config.name = name.to_string();
        }
        if request.config.config.name != name {
            return Err(ApiError::new(K::StreamMismatch));
        }
        if name.contains(['/', '\\']) {
            return Err(ApiError::new(K::StreamNameContainsPathSeparators));
        }
        let config = self.check_new_stream(account, name, &request.config)?;
        self.check_reservation(account, &config)?;
        self.check_stream_count(account)?;
        if self.stream_by_name(account, name).is_some() {
            return Err(ApiError::new(K::StreamNameExistRestoreFailed));
        }
        self.log(
            LogLevel::Info,
            format!("Starting restore for stream '{account} > {name}'"),
        );
        let domain = self.domain();
        let advisory = RestoreCreateAdvisory {
            kind: "io.nats.jetstream.advisory.v1.restore_create",
            id: self.next_id(),
            timestamp: crate::format::rfc3339_nanos(self.wall),
            stream: name,
            client: client_json(client),
            domain: &domain,
        };
        let body = serde_json::to_vec(&advisory).expect("advisories serialize");
        self.publish(account, format!("{RESTORE_CREATE}.{name}"), body);
        let session = self.new_session();
        let subject = format!("$JS.SNAPSHOT.RESTORE.{name}.{}", self.next_id());
        self.actions.push_back(JsAction::Listen {
            account: account.to_string(),
            target: JsTarget::Snapshot(session),
            subjects: vec![subject.clone()],
        });
        let incoming = Incoming {
            origin: Origin {
                account: account.to_string(),
                stream: name.to_string(),
                client: client.clone(),
                start: self.wall,
            },
            config,
            reader: ArchiveReader::new(MAX_ENTRY),
            phase: Phase::State,
            state: StreamState::default(),
            staged: None,
            consumers: Vec::new(),
            last_seq: 0,
            idle_at: self.now + RESTORE_IDLE,
        };
        self.snapshots.incoming.insert(session, incoming);
        Ok(RestoreResponse {
            kind: RESTORE_TYPE,
            error: None,
            deliver_subject: subject,
        })
    }

    /// A message for a session: a snapshot's ack or a restore's chunk.
    pub(super) fn snapshot_inbound(&mut self, session: u64, msg: &JsInbound) {
        if let Some(out) = self.snapshots.outgoing.get_mut(&session) {
            if out.origin.account == msg.account {
                out.inflight = out.inflight.saturating_sub(1);
                self.pump_snapshot(session);
            }
            return;
        }
        let Some(incoming) = self.snapshots.incoming.get_mut(&session) else {
            return;
        };
        if incoming.origin.account != msg.account {
            return;
        }
        if msg.reply.is_empty() {
            let error = format!(
                "restore for stream '{} > {}' requires reply subject for each chunk",
                incoming.origin.account, incoming.origin.stream
            );
            self.abandon_restore(session, Failure::Text(error), None);
            return;
        }
        incoming.idle_at = self.now + RESTORE_IDLE;
        if msg.payload.is_empty() {
            self.complete_restore(session, &msg.reply);
            return;
        }
        match self.restore_chunk(session, &msg.payload) {
            Ok(()) => {
                let account = msg.account.clone();
                self.reply(&account, &msg.reply, Vec::new());
            }
            Err(failure) => self.abandon_restore(session, failure, Some(&msg.reply)),
        }
    }

    /// Take one chunk: every whole entry in it goes where it belongs.
    fn restore_chunk(&mut self, session: u64, chunk: &[u8]) -> Result<(), Failure> {
        let incoming = self.incoming_mut(session);
        if incoming.phase == Phase::Done {
            // The reference ignores what follows the end of the backup.
            return Ok(());
        }
        incoming
            .reader
            .push(chunk)
            .map_err(|error| error.to_string())?;
        loop {
            let incoming = self.incoming_mut(session);
            if incoming.phase == Phase::Done {
                return Ok(());
            }
            let Some(entry) = incoming.reader.next_entry().map_err(|e| e.to_string())? else {
                return Ok(());
            };
            match incoming.phase {
                Phase::State => self.restore_state(session, &entry)?,
                Phase::Consumers(left) => {
                    let incoming = self.incoming_mut(session);
                    incoming.consumers.push(archived_consumer(&entry)?);
                    incoming.phase = if left > 1 {
                        Phase::Consumers(left - 1)
                    } else {
                        Phase::Messages
                    };
                }
                Phase::Messages => self.restore_message(session, &entry)?,
                Phase::Done => unreachable!("returned above"),
            }
        }
    }

    /// The archive's `state.json`: the new store starts at its first
    /// sequence.
    fn restore_state(&mut self, session: u64, entry: &Entry) -> Result<(), Failure> {
        if entry.name != b"state.json" {
            return Err("expected state.json first".to_string().into());
        }
        let state: StreamState = serde_json::from_slice(entry.payload())
            .map_err(|error| format!("error in state.json: {error}"))?;
        if state.last_seq >= crate::store::SEQ_MAX
            || state.first_seq > state.last_seq.saturating_add(1)
        {
            return Err(format!(
                "error in state.json: sequences {}..{} impossible",
                state.first_seq, state.last_seq
            )
            .into());
        }
        let incoming = &self.snapshots.incoming[&session];
        let meta = StreamMeta {
            account: incoming.origin.account.clone(),
            config: incoming.config.clone(),
            created: self.wall.0,
        };
        let id = self.allocate_stream_id();
        // Nothing may be left of an earlier use of the directory.
        let staged = self
            .remove_store_files(id)
            .map_err(|e| e.to_string())
            .and_then(|()| self.open_store(id, &meta).map_err(|e| e.to_string()));
        let mut store = staged.map_err(|error| format!("error adding stream: {error}"))?;
        let wall = self.wall;
        let skipped = store.skip_through(state.first_seq.saturating_sub(1), wall);
        let incoming = self.incoming_mut(session);
        incoming.staged = Some((id, store));
        skipped.map_err(|error| format!("error purging stream: {error}"))?;
        incoming.last_seq = state.first_seq.saturating_sub(1);
        incoming.phase = match state.consumer_count {
            0 => Phase::Messages,
            n => Phase::Consumers(n),
        };
        incoming.state = state;
        Ok(())
    }

    /// One message (or the end of the backup) into the new store.
    fn restore_message(&mut self, session: u64, entry: &Entry) -> Result<(), Failure> {
        let wall = self.wall;
        let incoming = &self.snapshots.incoming[&session];
        let seq = entry.sequence;
        if seq == 0 {
            if entry.is_end() {
                let incoming = self.incoming_mut(session);
                incoming.phase = Phase::Done;
                return Ok(());
            }
            return Err("expected message sequence".to_string().into());
        }
        if seq <= incoming.last_seq || seq >= crate::store::SEQ_MAX {
            return Err(format!("message sequence {seq} out of order").into());
        }
        // Delivered on the wire later: it must be a subject a client could
        // have published on.
        if !crate::subject::is_valid_publish_subject(&entry.name) {
            return Err(format!("message sequence {seq} has an invalid subject").into());
        }
        let size = (entry.name.len() + entry.data.len()) as u64;
        if let Ok(max) = usize::try_from(incoming.config.max_msg_size) {
            if entry.data.len() > max {
                return Err(format!("message sequence {seq} exceeds maximum message size").into());
            }
        }
        let storage = match incoming.config.storage {
            super::api::StorageType::Memory => Storage::Memory,
            super::api::StorageType::File => Storage::File,
        };
        let (_, store) = incoming.staged.as_ref().expect("staged with the state");
        let held = store.state().bytes;
        if !self
            .resources_for(&incoming.origin.account, storage)
            .holds(held.saturating_add(size))
        {
            let kind = match storage {
                Storage::Memory => K::MemoryResourcesExceeded,
                Storage::File => K::StorageResourcesExceeded,
            };
            return Err(Failure::Api(ApiError::new(kind)));
        }
        let ts = WallTime(u64::try_from(entry.timestamp).unwrap_or(0));
        let headers = entry.header();
        let ttl = crate::protocol::find_header(headers, b"Nats-TTL")
            .and_then(super::stream::parse_ttl)
            .flatten();
        let expired = ttl.is_some_and(|ttl| {
            ts.0.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)) < wall.0
        });
        let incoming = self.incoming_mut(session);
        let (_, store) = incoming.staged.as_mut().expect("staged with the state");
        let stored = if expired {
            // Gone already: only its sequence is kept.
            store.skip_through(seq, ts)
        } else {
            let msg = StoredMsg {
                seq,
                subject: Bytes::copy_from_slice(&entry.name),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(entry.payload()),
                ts,
                ttl,
            };
            store.store_at(&msg).map(|_| ())
        };
        stored.map_err(|error| format!("failed to store message sequence {seq}: {error}"))?;
        incoming.last_seq = seq;
        Ok(())
    }

    /// The client's end marker: the stream and its consumers come to be,
    /// or the restore fails whole.
    fn complete_restore(&mut self, session: u64, reply: &Bytes) {
        let incoming = &self.snapshots.incoming[&session];
        if incoming.phase != Phase::Done {
            // Cut at an entry's boundary reads as the end of input, as the
            // reference's reader says; inside one, as a broken archive.
            let (frames, plain) = incoming.reader.held();
            let error = if frames == 0 && plain == 0 {
                "EOF"
            } else if frames > 0 && incoming.reader.framing() == Some(Framing::S2) {
                // Cut inside an S2 frame: the reference's S2 reader's word.
                "s2: corrupt input"
            } else {
                "archive: invalid archive stream"
            };
            self.abandon_restore(session, Failure::Text(error.to_string()), Some(reply));
            return;
        }
        let incoming = self.snapshots.incoming.remove(&session).expect("there");
        self.stop_listening(session, &incoming.origin.account);
        let Incoming {
            origin,
            config,
            reader,
            state,
            staged,
            consumers,
            ..
        } = incoming;
        let (id, mut store) = staged.expect("a finished archive had its state");
        let result = (|| -> Result<StreamId, Failure> {
            // The account's JetStream was turned off while the archive
            // came in: nothing to install the stream into.
            if !self.enabled_for(&origin.account) {
                return Err(Failure::Api(ApiError::new(K::NotEnabledForAccount)));
            }
            if self
                .stream_by_name(&origin.account, &origin.stream)
                .is_some()
            {
                return Err(Failure::Api(ApiError::new(K::StreamNameExistRestoreFailed)));
            }
            // Deleted messages after the last one keep their sequences
            // (and the stream its last time).
            let last_ts = state.last_ts.unwrap_or(self.wall);
            store
                .skip_through(state.last_seq, last_ts)
                .map_err(|error| format!("failed to process trailing gap: {error}"))?;
            let meta = StreamMeta {
                account: origin.account.clone(),
                config,
                created: self.wall.0,
            };
            self.write_meta(id, &meta)
                .map_err(|error| format!("error adding stream: {error}"))?;
            self.install(id, meta, store);
            self.undrained.insert(id);
            for (name, config, state) in consumers {
                if let Err(error) = self.restore_consumer(&origin, &name, config, state) {
                    let _ = self.delete_stream(id);
                    let text = format!(
                        "error restoring consumer [{}]: {}",
                        crate::format::go_quote(name.as_bytes()),
                        error.description
                    );
                    return Err(Failure::Text(text));
                }
            }
            // A mirror or sources carry on from what was restored; streams
            // waiting for this one as their origin start.
            self.setup_feeds(id);
            self.feed_followers(id);
            Ok(id)
        })();
        self.refresh_usage();
        let response = match result {
            Ok(id) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "Completed restore of {} bytes for stream '{} > {}'",
                        reader.received, origin.account, origin.stream
                    ),
                );
                let info = self.stream_info(id, None);
                super::api::StreamCreateResponse::ok(info, false)
            }
            Err(failure) => {
                // A store never installed is still staged: remove its files.
                if !self.streams.contains_key(&id) {
                    let _ = self.remove_store_files(id);
                }
                self.log(
                    LogLevel::Warn,
                    format!(
                        "Restore failed for stream '{} > {}'",
                        origin.account, origin.stream
                    ),
                );
                super::api::StreamCreateResponse::error(failure.into_api())
            }
        };
        self.advise_complete(
            &origin.account,
            &origin.stream,
            RESTORE_COMPLETE,
            origin.start,
            Some(reader.received),
            &origin.client,
            "",
        );
        let body = super::api::to_wire_json(&response);
        self.reply(&origin.account, reply, body);
    }

    /// A consumer from the archive, through the API's own checks.
    fn restore_consumer(
        &mut self,
        origin: &Origin,
        name: &str,
        mut config: ConsumerConfig,
        state: ConsumerState,
    ) -> Result<(), ApiError> {
        if config.name.is_empty() {
            config.name = name.to_string();
        }
        let body = serde_json::json!({ "stream_name": origin.stream, "config": config });
        let body = serde_json::to_vec(&body).expect("a consumer config serializes");
        let rest = format!("CONSUMER.CREATE.{}.{name}", origin.stream);
        self.consumer_create_with(&origin.account, &rest, &body, Some(state), None)
            .map(|_| ())
    }

    fn stop_listening(&mut self, session: u64, account: &str) {
        self.actions.push_back(JsAction::Listen {
            account: account.to_string(),
            target: JsTarget::Snapshot(session),
            subjects: Vec::new(),
        });
    }

    /// Give up a restore: its staged files removed, the error answered on
    /// `reply` (when there is one), the complete advisory.
    fn abandon_restore(&mut self, session: u64, failure: Failure, reply: Option<&Bytes>) {
        let Some(incoming) = self.snapshots.incoming.remove(&session) else {
            return;
        };
        self.stop_listening(session, &incoming.origin.account);
        if let Some((id, store)) = incoming.staged {
            drop(store);
            let _ = self.remove_store_files(id);
        }
        let origin = incoming.origin;
        let error = failure.into_api();
        self.log(
            LogLevel::Warn,
            format!(
                "Restore failed for stream '{} > {}': {}",
                origin.account, origin.stream, error.description
            ),
        );
        if let Some(reply) = reply {
            let response = super::api::StreamCreateResponse::error(error);
            self.reply(&origin.account, reply, super::api::to_wire_json(&response));
        }
        self.advise_complete(
            &origin.account,
            &origin.stream,
            RESTORE_COMPLETE,
            origin.start,
            Some(incoming.reader.received),
            &origin.client,
            "",
        );
    }

    // ----- time -----

    /// When a session next needs the clock.
    pub(super) fn snapshot_deadline(&self) -> Option<Instant> {
        let outgoing = self.snapshots.outgoing.values().map(|out| {
            if out.inflight >= out.window {
                out.last_sent + ACK_TIMEOUT
            } else {
                out.start_at
            }
        });
        let incoming = self.snapshots.incoming.values().map(|inc| inc.idle_at);
        outgoing.chain(incoming).min()
    }

    /// Start snapshots whose delay passed, end those whose acks stopped,
    /// abandon restores whose chunks stopped.
    pub(super) fn snapshot_timeouts(&mut self) {
        let now = self.now;
        let sessions: Vec<u64> = self.snapshots.outgoing.keys().copied().collect();
        for session in sessions {
            let out = &self.snapshots.outgoing[&session];
            if out.inflight >= out.window && now >= out.last_sent + ACK_TIMEOUT {
                let out = self.snapshots.outgoing.remove(&session).expect("there");
                let status = "NATS/1.0 408 No Flow Response\r\n\r\n".to_string();
                self.finish_snapshot(session, out, status, "no flow response".to_string());
            } else if now >= out.start_at {
                self.pump_snapshot(session);
            }
        }
        let stalled: Vec<u64> = self
            .snapshots
            .incoming
            .iter()
            .filter(|(_, inc)| now >= inc.idle_at)
            .map(|(&session, _)| session)
            .collect();
        for session in stalled {
            // The reference answers no one: the client stopped sending.
            let incoming = self.snapshots.incoming.remove(&session).expect("there");
            self.stop_listening(session, &incoming.origin.account);
            if let Some((id, store)) = incoming.staged {
                drop(store);
                let _ = self.remove_store_files(id);
            }
            self.log(
                LogLevel::Warn,
                format!(
                    "restore for stream '{} > {}' is stalled",
                    incoming.origin.account, incoming.origin.stream
                ),
            );
        }
    }
}

/// A `consumers/<name>` entry.
fn archived_consumer(entry: &Entry) -> Result<(String, ConsumerConfig, ConsumerState), Failure> {
    let name = entry.name.strip_prefix(b"consumers/").ok_or_else(|| {
        format!(
            "expected consumer, found {}",
            crate::format::go_quote(&entry.name)
        )
    })?;
    let name = String::from_utf8_lossy(name).into_owned();
    let archived: ArchivedConsumer = serde_json::from_slice(entry.payload()).map_err(|error| {
        format!(
            "failed to decode consumer {} state: {error}",
            crate::format::go_quote(name.as_bytes())
        )
    })?;
    let quoted = crate::format::go_quote(name.as_bytes());
    let config = archived
        .config
        .ok_or_else(|| format!("consumer {quoted} is missing config"))?;
    let state = archived
        .state
        .ok_or_else(|| format!("consumer {quoted} is missing state"))?;
    Ok((name, config, state.into_state()))
}
