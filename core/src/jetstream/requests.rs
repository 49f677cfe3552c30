//! The `$JS.API` handler: one request in, one reply out.
//!
//! Role: decode a request by its subject and body, check it against the
//! account and the stream table, carry it out on the [`JetStream`] machine
//! and answer with the reference's JSON (types in [`super::api`], errors
//! from [`super::errors`]). Requests on subjects the reference does not
//! serve get no reply, as from the reference (its catch-all listens and
//! stays silent).
//!
//! Invariants: every request with a reply subject on a known API subject
//! gets exactly one reply; `api_total` counts them and `api_errors` the
//! ones that carried an error.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{
    AccountInfo, AccountInfoResponse, AccountLimitsInfo, AccountTier, ApiPaged, ApiStats,
    ClusterInfo, Compression, DiscardPolicy, MsgDeleteRequest, MsgDeleteResponse, MsgGetRequest,
    MsgGetResponse, PurgeRequest, PurgeResponse, StorageType, StoredMsg, StreamConfig,
    StreamConfigRequest, StreamCreateResponse, StreamDeleteResponse, StreamInfo, StreamInfoRequest,
    StreamInfoResponse, StreamListResponse, StreamNamesRequest, StreamNamesResponse, StreamState,
    StreamUpdateResponse,
};
use super::api::{
    ConsumerCreateResponse, ConsumerDeleteResponse, ConsumerInfoResponse,
    ConsumerLeaderStepdownResponse, ConsumerListResponse, ConsumerNamesResponse,
    ConsumerPauseResponse, ConsumerUnpinResponse,
};
use super::errors::{ApiError, ApiErrorKind as K};
use super::link::{JsAction, JsInbound, StreamId};
use super::machine::JetStream;
use super::stream::{RepublishRule, Storage, StreamRules};
use super::stream_config::{check_create, check_update, with_dynamic_metadata, CheckContext};
use crate::server::LogLevel;
use crate::store::{Discard, Disk, Filter, Sizing, StoreConfig, StoreError};
use crate::subject::SubjectTransform;

/// Where the API listens, without a domain.
pub const API_PREFIX: &str = "$JS.API.";

/// The JetStream API level this server speaks (`api.level`, `_nats.level`).
pub const API_LEVEL: u32 = 5;

/// `STREAM.NAMES` pages hold this many names.
const NAMES_PAGE: usize = 1024;
/// `STREAM.LIST` pages hold this many infos.
const LIST_PAGE: usize = 256;

/// The stream half of the API, by subject.
enum Request<'a> {
    Info,
    Create(&'a str),
    Update(&'a str),
    Delete(&'a str),
    StreamInfo(&'a str),
    Names,
    List,
    Purge(&'a str),
    MsgGet(&'a str),
    MsgDelete(&'a str),
    /// `STREAM.SNAPSHOT.<stream>` and `STREAM.RESTORE.<stream>`
    /// ([`super::snapshot`]).
    Snapshot(&'a str),
    Restore(&'a str),
    /// `DIRECT.GET.<stream>[.<subject>]`: answered by streams with
    /// `allow_direct`, as a message rather than JSON.
    DirectGet(&'a str, Option<&'a str>),
    /// `CONSUMER.CREATE...` and `CONSUMER.DURABLE.CREATE...`: the subject
    /// after `API.`.
    ConsumerCreate(&'a str),
    ConsumerInfo(&'a str, &'a str),
    ConsumerDelete(&'a str, &'a str),
    ConsumerNames(&'a str),
    ConsumerList(&'a str),
    ConsumerPause(&'a str, &'a str),
    ConsumerUnpin(&'a str, &'a str),
    /// `CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>`.
    ConsumerStepdown,
    /// `CONSUMER.MSG.NEXT.<stream>.<consumer>`: answered by the consumer
    /// with messages and status headers.
    ConsumerNext(&'a str, &'a str),
    /// `CONSUMER.RESET.<stream>.<consumer>`: answered by the consumer,
    /// outside the API's counts.
    ConsumerReset(&'a str, &'a str),
}

impl<'a> Request<'a> {
    /// The request on `subject`: `$JS.API.<...>`, or `$JS.<domain>.API.<...>`
    /// with this server's domain.
    fn parse(subject: &'a str, domain: Option<&str>) -> Option<Request<'a>> {
        let in_domain = domain.and_then(|domain| {
            subject
                .strip_prefix("$JS.")?
                .strip_prefix(domain)?
                .strip_prefix(".API.")
        });
        let rest = match in_domain {
            Some(rest) => rest,
            None => subject.strip_prefix(API_PREFIX)?,
        };
        let tokens: Vec<&str> = rest.split('.').collect();
        Some(match tokens.as_slice() {
            ["INFO"] => Request::Info,
            ["STREAM", "CREATE", name] => Request::Create(name),
            ["STREAM", "UPDATE", name] => Request::Update(name),
            ["STREAM", "DELETE", name] => Request::Delete(name),
            ["STREAM", "INFO", name] => Request::StreamInfo(name),
            ["STREAM", "NAMES"] => Request::Names,
            ["STREAM", "LIST"] => Request::List,
            ["STREAM", "PURGE", name] => Request::Purge(name),
            ["STREAM", "MSG", "GET", name] => Request::MsgGet(name),
            ["STREAM", "MSG", "DELETE", name] => Request::MsgDelete(name),
            ["STREAM", "SNAPSHOT", name] => Request::Snapshot(name),
            ["STREAM", "RESTORE", name] => Request::Restore(name),
            // The reference listens on `DURABLE.CREATE.*.*` only: another
            // length finds no handler, gets no reply and is not counted.
            ["CONSUMER", "CREATE", _, ..] | ["CONSUMER", "DURABLE", "CREATE", _, _] => {
                Request::ConsumerCreate(rest)
            }
            ["CONSUMER", "INFO", stream, name] => Request::ConsumerInfo(stream, name),
            ["CONSUMER", "DELETE", stream, name] => Request::ConsumerDelete(stream, name),
            ["CONSUMER", "NAMES", stream] => Request::ConsumerNames(stream),
            ["CONSUMER", "PAUSE", stream, name] => Request::ConsumerPause(stream, name),
            ["CONSUMER", "UNPIN", stream, name] => Request::ConsumerUnpin(stream, name),
            ["CONSUMER", "LEADER", "STEPDOWN", _, _] => Request::ConsumerStepdown,
            ["CONSUMER", "LIST", stream] => Request::ConsumerList(stream),
            ["CONSUMER", "MSG", "NEXT", stream, name] => Request::ConsumerNext(stream, name),
            ["CONSUMER", "RESET", stream, name] => Request::ConsumerReset(stream, name),
            ["DIRECT", "GET", name] => Request::DirectGet(name, None),
            ["DIRECT", "GET", name, ..] => {
                let skip = "DIRECT.GET.".len() + name.len() + 1;
                Request::DirectGet(name, Some(&rest[skip..]))
            }
            _ => return None,
        })
    }
}

/// The rules a stream runs by, from its (normalized) configuration.
pub(super) fn rules(config: &StreamConfig) -> StreamRules {
    let limit = |value: i64| u64::try_from(value).ok().filter(|&v| v > 0);
    StreamRules {
        name: config.name.clone(),
        storage: match config.storage {
            StorageType::Memory => Storage::Memory,
            StorageType::File => Storage::File,
        },
        limits: StoreConfig {
            max_msgs: limit(config.max_msgs),
            max_bytes: limit(config.max_bytes),
            max_age: u64::try_from(config.max_age)
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_nanos),
            max_msgs_per_subject: limit(config.max_msgs_per_subject),
            // Checked by the stream on headers and payload, as the reference does.
            max_msg_size: None,
            discard: match config.discard {
                DiscardPolicy::New => Discard::New,
                DiscardPolicy::Old => Discard::Old,
            },
            discard_new_per_subject: config.discard_new_per_subject,
            sizing: match config.storage {
                StorageType::Memory => Sizing::Memory,
                StorageType::File => Sizing::File,
            },
            compress: config.compression == Compression::S2,
        },
        max_msg_size: limit(i64::from(config.max_msg_size)),
        duplicate_window: Duration::from_nanos(u64::try_from(config.duplicate_window).unwrap_or(0)),
        sealed: config.sealed,
        deny_delete: config.deny_delete,
        deny_purge: config.deny_purge,
        allow_rollup: config.allow_rollup_hdrs,
        allow_msg_ttl: config.allow_msg_ttl,
        allow_msg_counter: config.allow_msg_counter,
        allow_msg_schedules: config.allow_msg_schedules,
        allow_atomic: config.allow_atomic,
        allow_batched: config.allow_batched,
        subjects: config.subjects.clone(),
        no_ack: config.no_ack,
        domain: String::new(),
        delete_marker_ttl: u64::try_from(config.subject_delete_marker_ttl / 1_000_000_000)
            .ok()
            .filter(|&seconds| seconds > 0),
        subject_transform: config
            .subject_transform
            .as_ref()
            .and_then(|t| transform(&t.src, &t.dest)),
        republish: config.republish.as_ref().and_then(|r| {
            Some(RepublishRule {
                transform: transform(&r.src, &r.dest)?,
                headers_only: r.headers_only,
            })
        }),
    }
}

/// A stream's transform, from a config already checked: an empty `src`
/// is `>`, an empty `dest` maps nothing (as the reference has it).
fn transform(src: &str, dest: &str) -> Option<SubjectTransform> {
    if dest.is_empty() {
        return None;
    }
    let src = if src.is_empty() { ">" } else { src };
    let built = SubjectTransform::new(src, dest);
    assert!(built.is_ok(), "a checked stream transform builds");
    built.ok()
}

/// A reply and whether it reports an error.
struct Reply {
    body: Vec<u8>,
    error: bool,
    /// A header block for the reply (empty: none).
    headers: Bytes,
}

fn reply<T: Serialize>(value: &T, error: bool) -> Reply {
    Reply {
        body: super::api::to_wire_json(value),
        error,
        headers: Bytes::new(),
    }
}

/// Decode a request body as the reference does (see [`super::api::decode_request`]).
fn decode<T>(payload: &[u8], strict: bool) -> Result<T, ApiError>
where
    T: DeserializeOwned + Default + super::api::RequestFields,
{
    super::api::decode_request(payload, strict)
}

impl<D: Disk + Clone> JetStream<D> {
    /// An API request routed to JetStream.
    pub(super) fn handle_api(&mut self, msg: &JsInbound) {
        let Ok(subject) = std::str::from_utf8(&msg.subject) else {
            return;
        };
        let Some(request) = Request::parse(subject, self.config.domain.as_deref()) else {
            return;
        };
        // What the request may change among consumers: the named stream's
        // for the reads and a pull request, any stream's otherwise.
        match request {
            Request::StreamInfo(stream)
            | Request::MsgGet(stream)
            | Request::DirectGet(stream, _)
            | Request::ConsumerInfo(stream, _)
            | Request::ConsumerNames(stream)
            | Request::ConsumerList(stream)
            | Request::ConsumerNext(stream, _) => {
                if let Some(id) = self.stream_by_name(&msg.account, stream) {
                    self.stream_touched(id);
                }
            }
            Request::Info | Request::Names | Request::List => {}
            _ => self.all_streams_touched(),
        }
        if msg.reply.is_empty() {
            // Nobody to answer; the reference ignores such requests.
            return;
        }
        if let Request::DirectGet(name, subject) = request {
            self.direct_get(msg, name, subject);
            return;
        }
        if let Request::ConsumerNext(stream, name) = request {
            // Answered "no responders" without the consumer, and so
            // without JetStream for the account (its consumers stopped).
            self.consumer_next(msg, stream, name);
            return;
        }
        if let Request::ConsumerReset(stream, name) = request {
            if self.enabled_for(&msg.account) {
                self.consumer_reset(msg, stream, name);
            }
            return;
        }
        // The reference checks the level first on a single server (the
        // step-down answers "clustered only" before it looks).
        let level_unmet =
            !matches!(request, Request::ConsumerStepdown) && required_level_unmet(&msg.headers);
        let answer = if level_unmet {
            error_reply(&request, ApiError::new(K::RequiredApiLevel))
        } else if !self.enabled_for(&msg.account) {
            self.not_enabled(&request)
        } else {
            self.answer(&msg.account, &request, msg)
        };
        // As the reference counts: a successful STREAM.MSG.GET is left out
        // of the total.
        let counted = answer.error || !matches!(request, Request::MsgGet(_));
        if let Some(account) = self.accounts.get_mut(&msg.account) {
            account.api_total += u64::from(counted);
            account.api_errors += u64::from(answer.error);
        }
        if answer.error {
            self.log(
                LogLevel::Debug,
                format!(
                    "JetStream request '{} > {subject}' failed: {}",
                    msg.account,
                    String::from_utf8_lossy(&answer.body)
                ),
            );
        }
        // Purges, deletes and updates change what the streams hold.
        self.refresh_usage();
        self.audit(msg, subject, &answer.body);
        if answer.headers.is_empty() {
            self.reply(&msg.account, &msg.reply, answer.body);
        } else {
            self.actions.push_back(JsAction::Publish {
                account: msg.account.as_str().into(),
                subject: msg.reply.clone(),
                reply: Bytes::new(),
                headers: answer.headers,
                payload: Bytes::from(answer.body),
            });
        }
    }

    /// The API audit advisory of one request and its reply.
    fn audit(&mut self, msg: &JsInbound, subject: &str, response: &[u8]) {
        let client = std::str::from_utf8(&msg.context)
            .ok()
            .and_then(|json| serde_json::from_str::<&serde_json::value::RawValue>(json).ok());
        let domain = self.config.domain.clone().unwrap_or_default();
        let audit = super::advisory::ApiAudit {
            kind: super::advisory::API_AUDIT_TYPE,
            id: self.next_id(),
            timestamp: crate::format::rfc3339_nanos(self.wall),
            server: &self.server_name,
            client,
            subject,
            request: &String::from_utf8_lossy(&msg.payload),
            response: &String::from_utf8_lossy(response),
            domain: &domain,
        };
        let body = serde_json::to_vec(&audit).expect("advisories serialize");
        self.publish(&msg.account, super::advisory::API_AUDIT.to_string(), body);
    }

    fn not_enabled(&self, request: &Request<'_>) -> Reply {
        let error = ApiError::new(K::NotEnabledForAccount);
        error_reply(request, error)
    }

    fn answer(&mut self, account: &str, request: &Request<'_>, msg: &JsInbound) -> Reply {
        let (payload, context) = (&msg.payload[..], &msg.context);
        let result = match *request {
            Request::Info => Ok(reply(
                &AccountInfoResponse::ok(self.account_info(account)),
                false,
            )),
            Request::Create(name) => self.create(account, name, payload),
            Request::Update(name) => self.update(account, name, payload),
            Request::Delete(name) => self.delete(account, name),
            Request::StreamInfo(name) => self.info(account, name, payload),
            Request::Names => self.names(account, payload),
            Request::List => self.list(account, payload),
            Request::Purge(name) => self.purge_request(account, name, payload),
            Request::MsgGet(name) => self.msg_get(account, name, payload),
            Request::MsgDelete(name) => self.msg_delete(account, name, payload),
            Request::Snapshot(name) => self
                .snapshot_request(account, name, payload, context)
                .map(|body| reply(&body, false)),
            Request::Restore(name) => self
                .restore_request(account, name, payload, context)
                .map(|body| reply(&body, false)),
            Request::ConsumerCreate(rest) => self
                .consumer_create(account, rest, payload, &msg.headers)
                .map(|(response, identity)| Reply {
                    headers: identity.map_or_else(Bytes::new, |identity| {
                        Bytes::from(format!(
                            "NATS/1.0\r\nNats-Stream-Identity: {identity}\r\n\r\n"
                        ))
                    }),
                    ..reply(&response, false)
                }),
            Request::ConsumerInfo(stream, name) => self
                .consumer_info_request(account, stream, name)
                .map(|response| reply(&response, false)),
            Request::ConsumerDelete(stream, name) => self
                .consumer_delete(account, stream, name)
                .map(|response| reply(&response, false)),
            Request::ConsumerNames(stream) => self
                .consumer_names(account, stream, payload)
                .map(|response| reply(&response, false)),
            Request::ConsumerList(stream) => self
                .consumer_list(account, stream, payload)
                .map(|response| reply(&response, false)),
            Request::ConsumerPause(stream, name) => self
                .consumer_pause(account, stream, name, payload)
                .map(|response| reply(&response, false)),
            Request::ConsumerUnpin(stream, name) => self
                .consumer_unpin(account, stream, name, payload)
                .map(|response| reply(&response, false)),
            // A single server has no consumer leaders to move.
            Request::ConsumerStepdown => Err(ApiError::new(K::ClusterRequired)),
            Request::DirectGet(..) | Request::ConsumerNext(..) | Request::ConsumerReset(..) => {
                unreachable!("answered before")
            }
        };
        result.unwrap_or_else(|error| error_reply(request, error))
    }

    fn account_info(&self, account: &str) -> AccountInfo {
        let acc = &self.accounts[account];
        let mut totals = AccountTier {
            limits: limits_info(&acc.limits),
            ..AccountTier::default()
        };
        for id in acc.by_name.values() {
            let entry = &self.streams[id];
            let bytes = entry.stream.state().bytes;
            // A stream's max_bytes is reserved from the account's storage.
            let reserved = u64::try_from(entry.meta.config.max_bytes).unwrap_or(0);
            match entry.meta.config.storage {
                StorageType::Memory => {
                    totals.memory += bytes;
                    totals.reserved_memory += reserved;
                }
                StorageType::File => {
                    totals.storage += bytes;
                    totals.reserved_storage += reserved;
                }
            }
            totals.streams += 1;
            totals.consumers += entry.consumers.len();
        }
        let mut tiers = BTreeMap::new();
        if let Some(tiered) = &acc.limits.tiers {
            // Tiered: no account-wide limits (zeros, as the reference
            // writes an absent default tier); every stream here is R1, so
            // R1 carries the usage, listed even without limits of its own.
            totals.limits = AccountLimitsInfo::zero();
            for (name, limits) in tiered {
                let tier = AccountTier {
                    limits: limits_info(limits),
                    ..AccountTier::default()
                };
                tiers.insert(name.clone(), tier);
            }
            if totals.streams > 0 || tiered.contains_key("R1") {
                let limits = tiers
                    .get("R1")
                    .map_or_else(AccountLimitsInfo::zero, |tier| tier.limits.clone());
                let usage = AccountTier {
                    limits,
                    ..totals.clone()
                };
                tiers.insert(String::from("R1"), usage);
            }
        }
        AccountInfo {
            totals,
            tiers,
            domain: self.config.domain.clone().unwrap_or_default(),
            api: ApiStats {
                level: API_LEVEL,
                total: acc.api_total,
                errors: acc.api_errors,
                ..ApiStats::default()
            },
        }
    }

    fn find(&self, account: &str, name: &str) -> Result<StreamId, ApiError> {
        self.stream_by_name(account, name)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))
    }

    /// A new stream's config as a create checks it (a restore too).
    pub(super) fn check_new_stream(
        &self,
        account: &str,
        name: &str,
        request: &StreamConfigRequest,
    ) -> Result<StreamConfig, ApiError> {
        let limits = &self.accounts[account].limits;
        // The tier is chosen before the config is checked (a replicas
        // count naming no tier is refused as such, not as unclustered).
        if !limits.has_tier_for(request.config.num_replicas) {
            return Err(ApiError::new(K::NoLimits));
        }
        let others = self.account_configs(account, None);
        let context = CheckContext {
            clustered: false,
            duplicate_window_limit: Some(self.config.limits.duplicate_window),
            account: limits,
            streams: &others,
        };
        let config = check_create(name, request, &context)?;
        Ok(config)
    }

    /// Whether `account` may have one more stream.
    pub(super) fn check_stream_count(&self, account: &str) -> Result<(), ApiError> {
        let acc = &self.accounts[account];
        match acc.limits.max_streams {
            Some(max) if acc.by_name.len() as u64 >= max => {
                Err(ApiError::new(K::MaximumStreamsLimit))
            }
            _ => Ok(()),
        }
    }

    fn create(&mut self, account: &str, name: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let request: StreamConfigRequest = decode(payload, self.config.strict)?;
        let config = self.check_new_stream(account, name, &request)?;
        if let Some(id) = self.stream_by_name(account, name) {
            let existing = &self.streams[&id].meta.config;
            if existing == &config {
                let info = self.stream_info(id, None);
                return Ok(reply(&StreamCreateResponse::ok(info, true), false));
            }
            return Err(ApiError::new(K::StreamNameExist));
        }
        self.check_overlap(account, None, &config)?;
        self.check_reservation(account, &config)?;
        self.check_stream_count(account)?;
        let id = self
            .create_stream(account, config)
            .map_err(|error| ApiError::with(K::StreamCreate, &[("{err}", &error)]))?;
        self.advise_stream(account, name, "create");
        // Fed after the reply is made, as the reference's feeds start
        // after its reply: it shows the stream empty and not yet active.
        self.install_feeds(id);
        let info = self.stream_info(id, None);
        self.setup_feeds(id);
        self.feed_followers(id);
        Ok(reply(&StreamCreateResponse::ok(info, true), false))
    }

    /// The configurations of `account`'s streams but `except`, by name.
    fn account_configs(
        &self,
        account: &str,
        except: Option<StreamId>,
    ) -> BTreeMap<String, StreamConfig> {
        self.accounts[account]
            .by_name
            .iter()
            .filter(|(_, id)| Some(**id) != except)
            .map(|(name, id)| (name.clone(), self.streams[id].meta.config.clone()))
            .collect()
    }

    fn update(&mut self, account: &str, name: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let request: StreamConfigRequest = decode(payload, self.config.strict)?;
        let id = self.find(account, name)?;
        let current = self.streams[&id].meta.config.clone();
        let others = self.account_configs(account, Some(id));
        let limits = self.accounts[account].limits.clone();
        let context = CheckContext {
            clustered: false,
            duplicate_window_limit: Some(self.config.limits.duplicate_window),
            account: &limits,
            streams: &others,
        };
        let config = check_update(name, &current, &request, &context)?;
        self.check_overlap(account, Some(id), &config)?;
        self.update_stream(id, config)
            .map_err(|error| ApiError::with(K::StreamUpdate, &[("{err}", &error)]))?;
        self.advise_stream(account, name, "modify");
        self.setup_feeds(id);
        let info = self.stream_info(id, None);
        Ok(reply(&StreamUpdateResponse::ok(info), false))
    }

    /// A stream's `max_bytes` is reserved from the server's and the
    /// account's storage of its type: refused when it does not fit.
    pub(super) fn check_reservation(
        &self,
        account: &str,
        config: &StreamConfig,
    ) -> Result<(), ApiError> {
        let Ok(wanted) = u64::try_from(config.max_bytes) else {
            return Ok(());
        };
        let memory = config.storage == StorageType::Memory;
        let reserved: u64 = self
            .streams
            .values()
            .filter(|entry| (entry.meta.config.storage == StorageType::Memory) == memory)
            .filter_map(|entry| u64::try_from(entry.meta.config.max_bytes).ok())
            .sum();
        let acc = &self.accounts[account].limits;
        let (server_max, account_max, kind) = if memory {
            (
                self.config.max_memory,
                acc.max_memory,
                K::MemoryResourcesExceeded,
            )
        } else {
            (
                self.config.max_store,
                acc.max_store,
                K::StorageResourcesExceeded,
            )
        };
        let over_server = reserved.saturating_add(wanted) > server_max;
        let over_account = account_max.is_some_and(|max| wanted > max);
        if over_server || over_account {
            return Err(ApiError::new(kind));
        }
        Ok(())
    }

    fn check_overlap(
        &self,
        account: &str,
        except: Option<StreamId>,
        config: &StreamConfig,
    ) -> Result<(), ApiError> {
        for (&id, entry) in &self.streams {
            if Some(id) == except || entry.meta.account != account {
                continue;
            }
            if crate::subject::subjects_overlap(&entry.meta.config.subjects, &config.subjects) {
                return Err(ApiError::new(K::StreamSubjectOverlap));
            }
        }
        Ok(())
    }

    fn delete(&mut self, account: &str, name: &str) -> Result<Reply, ApiError> {
        let id = self.find(account, name)?;
        self.delete_stream(id)
            .map_err(|error| ApiError::with(K::StreamGeneralError, &[("{err}", &error)]))?;
        self.advise_stream(account, name, "delete");
        Ok(reply(&StreamDeleteResponse::ok(), false))
    }

    fn info(&mut self, account: &str, name: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        // The reference ignores a body that is not JSON at all, but refuses
        // JSON with fields of the wrong type.
        let request: StreamInfoRequest =
            if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
                decode(payload, self.config.strict)?
            } else {
                StreamInfoRequest::default()
            };
        let id = self.find(account, name)?;
        let mut info = self.stream_info(id, Some(&request));
        // A single server leads every stream; the reference says so in
        // STREAM.INFO (and /jsz) only.
        info.cluster = Some(self.leader());
        let mut response = StreamInfoResponse::ok(ApiPaged::default(), info);
        let subjects = response
            .info
            .as_ref()
            .map_or(0, |info| info.state.subjects.len());
        if !request.subjects_filter.is_empty() {
            // The reference pages subjects 100,000 at a time, and reports a
            // limit of 0 when nothing matched.
            response.paged = ApiPaged {
                total: subjects,
                offset: request.offset,
                limit: if subjects > 0 { 100_000 } else { 0 },
            };
        }
        Ok(reply(&response, false))
    }

    /// This server as the leader of a stream.
    pub(super) fn leader(&self) -> ClusterInfo {
        ClusterInfo {
            leader: self.server_name.clone(),
            ..ClusterInfo::default()
        }
    }

    /// The info the API reports for stream `id`.
    pub(super) fn stream_info(
        &mut self,
        id: StreamId,
        request: Option<&StreamInfoRequest>,
    ) -> StreamInfo {
        let wall = self.wall;
        let (mirror, sources) = self.feed_info(id);
        let entry = self
            .streams
            .get_mut(&id)
            .expect("info of a stream that exists");
        let state = entry.stream.state();
        // Direct consumers (a mirror's or source's on this origin) are not
        // the stream's to count, as the reference's store does not know them.
        let consumer_count = entry
            .consumers
            .values()
            .filter(|c| !c.config.direct)
            .count();
        let store = entry.stream.store_mut();
        let deleted = match request {
            Some(request) if request.deleted_details => store.deleted(),
            _ => Vec::new(),
        };
        let subjects = match request {
            Some(request) if !request.subjects_filter.is_empty() => store
                .subjects_state(&Filter::subject(request.subjects_filter.as_bytes()))
                .into_iter()
                .map(|(subject, state)| {
                    (String::from_utf8_lossy(&subject).into_owned(), state.msgs)
                })
                .collect(),
            _ => Default::default(),
        };
        StreamInfo {
            config: with_dynamic_metadata(&entry.meta.config),
            created: crate::time::WallTime(entry.meta.created),
            state: StreamState {
                messages: state.msgs,
                bytes: state.bytes,
                first_seq: state.first_seq,
                first_ts: (state.msgs > 0).then_some(state.first_ts),
                last_seq: state.last_seq,
                last_ts: (state.last_ts.0 > 0).then_some(state.last_ts),
                num_subjects: state.num_subjects as usize,
                subjects,
                num_deleted: state.num_deleted as usize,
                deleted,
                lost: None,
                consumer_count,
            },
            ts: wall,
            mirror,
            sources,
            ..StreamInfo::default()
        }
    }

    /// The account's stream names in order, filtered by `subject`.
    fn sorted_names(&self, account: &str, subject: &str) -> Vec<(String, StreamId)> {
        let Some(acc) = self.accounts.get(account) else {
            return Vec::new();
        };
        acc.by_name
            .iter()
            .filter(|(_, id)| {
                subject.is_empty()
                    || self.streams[*id].meta.config.subjects.iter().any(|s| {
                        crate::subject::subjects_overlap(
                            std::slice::from_ref(s),
                            std::slice::from_ref(&subject.to_string()),
                        )
                    })
            })
            .map(|(name, id)| (name.clone(), *id))
            .collect()
    }

    /// One page of the account's streams (by name, filtered by subject) as
    /// NAMES and LIST ask for it, with its paging numbers.
    fn page(
        &self,
        account: &str,
        payload: &[u8],
        size: usize,
    ) -> Result<(Vec<(String, StreamId)>, ApiPaged), ApiError> {
        let request: StreamNamesRequest = decode(payload, self.config.strict)?;
        let all = self.sorted_names(account, &request.subject);
        let total = all.len();
        // An offset past the end reads as the end, as the reference's does.
        let offset = request.offset.min(total);
        let page = all.into_iter().skip(offset).take(size).collect();
        let paged = ApiPaged {
            total,
            offset,
            limit: size,
        };
        Ok((page, paged))
    }

    fn names(&mut self, account: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let (page, paged) = self.page(account, payload, NAMES_PAGE)?;
        let names = page.into_iter().map(|(name, _)| name).collect();
        Ok(reply(&StreamNamesResponse::ok(paged, names), false))
    }

    fn list(&mut self, account: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let (page, paged) = self.page(account, payload, LIST_PAGE)?;
        let infos: Vec<StreamInfo> = page
            .into_iter()
            .map(|(_, id)| {
                // Listed configs carry no dynamic metadata.
                let mut info = self.stream_info(id, None);
                info.config = self.streams[&id].meta.config.clone();
                info
            })
            .collect();
        Ok(reply(&StreamListResponse::ok(paged, infos), false))
    }

    fn purge_request(
        &mut self,
        account: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<Reply, ApiError> {
        let request: PurgeRequest = decode(payload, self.config.strict)?;
        let id = self.find(account, name)?;
        let entry = self.streams.get_mut(&id).expect("found");
        if entry.stream.rules().sealed {
            return Err(ApiError::new(K::StreamSealed));
        }
        if entry.stream.rules().deny_purge {
            return Err(ApiError::with(
                K::StreamPurgeFailed,
                &[("{err}", "stream purge not permitted")],
            ));
        }
        if request.seq > 0 && request.keep > 0 {
            return Err(ApiError::new(K::BadRequest));
        }
        let filter = Filter::subject(request.filter.as_bytes());
        let purged = entry
            .stream
            .purge(&filter, request.seq, request.keep, &mut self.actions)
            .map_err(|error| purge_error(&error))?;
        self.stream_shrunk(id);
        Ok(reply(&PurgeResponse::ok(purged), false))
    }

    fn msg_get(&mut self, account: &str, name: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let request: MsgGetRequest = decode(payload, self.config.strict)?;
        let id = self.find(account, name)?;
        let store = self.streams.get_mut(&id).expect("found").stream.store_mut();
        let Some(found) = load_requested(store, &request) else {
            return Err(ApiError::new(K::BadRequest));
        };
        let msg = found.map_err(|error| match error {
            StoreError::NotFound | StoreError::Eof => ApiError::new(K::NoMessageFound),
            other => ApiError::with(K::StreamGeneralError, &[("{err}", &other.to_string())]),
        })?;
        let stored = StoredMsg {
            subject: String::from_utf8_lossy(&msg.subject).into_owned(),
            seq: msg.seq,
            hdrs: msg.headers.to_vec(),
            data: msg.payload.to_vec(),
            time: msg.ts,
        };
        Ok(reply(&MsgGetResponse::ok(stored), false))
    }

    fn msg_delete(&mut self, account: &str, name: &str, payload: &[u8]) -> Result<Reply, ApiError> {
        let request: MsgDeleteRequest = decode(payload, self.config.strict)?;
        let id = self.find(account, name)?;
        let entry = self.streams.get_mut(&id).expect("found");
        if entry.stream.rules().sealed {
            return Err(ApiError::new(K::StreamSealed));
        }
        if entry.stream.rules().deny_delete {
            return Err(ApiError::with(
                K::StreamMsgDeleteFailed,
                &[("{err}", "message delete not permitted")],
            ));
        }
        // A sequence that is not there is answered with an error the
        // reference does not count among the API's errors.
        let uncounted = |error: ApiError| Ok(reply(&MsgDeleteResponse::error(error), false));
        if request.seq > entry.stream.state().last_seq {
            return uncounted(ApiError::with(
                K::StreamMsgDeleteFailed,
                &[("{err}", &StoreError::Eof.to_string())],
            ));
        }
        let removed = entry
            .stream
            .remove(request.seq, !request.no_erase, &mut self.actions)
            .map_err(|error| {
                ApiError::with(K::StreamMsgDeleteFailed, &[("{err}", &error.to_string())])
            })?;
        if !removed {
            return uncounted(ApiError::with(
                K::SequenceNotFound,
                &[("{seq}", &request.seq.to_string())],
            ));
        }
        self.stream_shrunk(id);
        Ok(reply(&MsgDeleteResponse::ok(), false))
    }
}

impl<D: Disk + Clone> JetStream<D> {
    /// A direct get: the stored message itself, its headers followed by
    /// `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
    /// `Nats-Time-Stamp`, or a status-only reply (404 not found, 408 for a
    /// bad request). Only streams with `allow_direct` answer; the others
    /// stay silent, as the reference has no subscription for them.
    fn direct_get(&mut self, msg: &JsInbound, name: &str, subject: Option<&str>) {
        // Only a stream with allow_direct listens for direct gets; for any
        // other the requester hears what no listener gives: no responders.
        let direct = self
            .stream_by_name(&msg.account, name)
            .filter(|id| self.streams[id].meta.config.allow_direct);
        let Some(id) = direct else {
            self.actions.push_back(super::link::JsAction::Publish {
                account: msg.account.as_str().into(),
                subject: msg.reply.clone(),
                reply: Bytes::new(),
                headers: crate::protocol::no_responders_block(&msg.subject),
                payload: Bytes::new(),
            });
            return;
        };
        let entry = self.streams.get_mut(&id).expect("found");
        let body_empty = msg.payload.iter().all(u8::is_ascii_whitespace);
        let request: Result<MsgGetRequest, &str> = match subject {
            Some(subject) if body_empty => Ok(MsgGetRequest {
                last_by_subj: subject.to_string(),
                ..MsgGetRequest::default()
            }),
            _ if body_empty => Err("Empty Request"),
            _ => serde_json::from_slice(&msg.payload).map_err(|_| "Malformed Request"),
        };
        let store = entry.stream.store_mut();
        let (headers, payload) = match request {
            Err(why) => (
                crate::protocol::status_only_block(408, Some(why)),
                Bytes::new(),
            ),
            Ok(request) => {
                let empty = request.seq == 0
                    && request.last_by_subj.is_empty()
                    && request.next_by_subj.is_empty();
                match load_requested(store, &request) {
                    Some(Ok(stored)) => (direct_headers(name, &stored), stored.payload),
                    Some(Err(_)) => (
                        crate::protocol::status_only_block(404, Some("Message Not Found")),
                        Bytes::new(),
                    ),
                    None => {
                        let why = if empty {
                            "Empty Request"
                        } else {
                            "Bad Request"
                        };
                        (
                            crate::protocol::status_only_block(408, Some(why)),
                            Bytes::new(),
                        )
                    }
                }
            }
        };
        self.actions.push_back(super::link::JsAction::Publish {
            account: msg.account.as_str().into(),
            subject: msg.reply.clone(),
            reply: Bytes::new(),
            headers,
            payload,
        });
    }
}

/// The message a get asks for: the last on a subject, the next on a
/// subject at or after `seq`, or the one at `seq`. `None` when the request
/// names none of them or a combination the reference refuses (a sequence
/// with `last_by_subj`, both subject forms).
fn load_requested<D: Disk>(
    store: &mut super::stream::Store<D>,
    request: &MsgGetRequest,
) -> Option<crate::store::StoreResult<crate::store::StoredMsg>> {
    let last = !request.last_by_subj.is_empty();
    let next = !request.next_by_subj.is_empty();
    if last && (request.seq > 0 || next) {
        return None;
    }
    Some(if last {
        store.load_last(&Filter::subject(request.last_by_subj.as_bytes()))
    } else if !request.next_by_subj.is_empty() {
        store.load_next(
            &Filter::subject(request.next_by_subj.as_bytes()),
            request.seq,
        )
    } else if request.seq > 0 {
        store.load_msg(request.seq)
    } else {
        return None;
    })
}

/// The header block of a direct get reply: the message's own headers, then
/// the stream's facts about it.
fn direct_headers(stream: &str, msg: &crate::store::StoredMsg) -> Bytes {
    let mut block = Vec::with_capacity(msg.headers.len() + 128);
    if msg.headers.is_empty() {
        block.extend_from_slice(b"NATS/1.0\r\n");
    } else {
        // Everything but the final blank line.
        let own = msg.headers.strip_suffix(b"\r\n").unwrap_or(&msg.headers);
        block.extend_from_slice(own);
    }
    let time = crate::format::rfc3339_nanos(msg.ts);
    let subject = String::from_utf8_lossy(&msg.subject);
    block.extend_from_slice(
        format!(
            "Nats-Stream: {stream}\r\nNats-Subject: {subject}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {time}\r\n\r\n",
            msg.seq
        )
        .as_bytes(),
    );
    Bytes::from(block)
}

fn purge_error(error: &StoreError) -> ApiError {
    ApiError::with(K::StreamPurgeFailed, &[("{err}", &error.to_string())])
}

fn limits_info(limits: &super::config::AccountLimits) -> AccountLimitsInfo {
    let signed = |value: Option<u64>| value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    AccountLimitsInfo {
        max_memory: signed(limits.max_memory),
        max_storage: signed(limits.max_store),
        max_streams: signed(limits.max_streams),
        max_consumers: signed(limits.max_consumers),
        max_ack_pending: signed(limits.max_ack_pending),
        memory_max_stream_bytes: signed(limits.memory_max_stream_bytes),
        storage_max_stream_bytes: signed(limits.store_max_stream_bytes),
        max_bytes_required: limits.max_bytes_required,
    }
}

/// The error reply of `request`, in the response type it would have had.
/// Whether a request's `Nats-Required-Api-Level` asks for more than this
/// server's API level (or is not a number), as the reference reads it.
pub(super) fn required_level_unmet(headers: &[u8]) -> bool {
    let level =
        crate::protocol::find_header(headers, b"Nats-Required-Api-Level").unwrap_or_default();
    !level.is_empty()
        && std::str::from_utf8(level)
            .ok()
            .and_then(|level| level.parse::<i64>().ok())
            .is_none_or(|level| level > i64::from(API_LEVEL))
}

fn error_reply(request: &Request<'_>, error: ApiError) -> Reply {
    match request {
        Request::Info => reply(&AccountInfoResponse::error(error), true),
        Request::Create(_) => reply(&StreamCreateResponse::error(error), true),
        Request::Update(_) => reply(&StreamUpdateResponse::error(error), true),
        Request::Delete(_) => reply(&StreamDeleteResponse::error(error), true),
        Request::StreamInfo(_) => reply(&StreamInfoResponse::error(error), true),
        Request::Names => reply(&StreamNamesResponse::error(error), true),
        Request::List => reply(&StreamListResponse::error(error), true),
        Request::Purge(_) => reply(&PurgeResponse::error(error), true),
        Request::MsgGet(_) => reply(&MsgGetResponse::error(error), true),
        Request::MsgDelete(_) => reply(&MsgDeleteResponse::error(error), true),
        Request::Snapshot(_) => reply(&super::snapshot::SnapshotResponse::error(error), true),
        Request::Restore(_) => reply(&super::snapshot::RestoreResponse::error(error), true),
        Request::ConsumerCreate(..) => reply(&ConsumerCreateResponse::error(error), true),
        Request::ConsumerInfo(..) => reply(&ConsumerInfoResponse::error(error), true),
        Request::ConsumerDelete(..) => reply(&ConsumerDeleteResponse::error(error), true),
        Request::ConsumerNames(_) => reply(&ConsumerNamesResponse::error(error), true),
        Request::ConsumerList(_) => reply(&ConsumerListResponse::error(error), true),
        Request::ConsumerPause(..) => reply(&ConsumerPauseResponse::error(error), true),
        Request::ConsumerUnpin(..) => reply(&ConsumerUnpinResponse::error(error), true),
        Request::ConsumerStepdown => reply(&ConsumerLeaderStepdownResponse::error(error), true),
        Request::DirectGet(..) | Request::ConsumerNext(..) | Request::ConsumerReset(..) => {
            unreachable!("answered by the stream or the consumer")
        }
    }
}
