//! What monitoring reports about JetStream: the `jetstream` section of
//! `/varz` and the `/jsz` page, as pure functions of the machine's state.
//!
//! Role: JetStream's state lives in its own machine (another thread in
//! production), so the monitoring pages the server builds from its own
//! view get this part from the JetStream machine: the runtime asks it
//! ([`JetStream::varz_section`], [`JetStream::jsz`]) and puts the answer in
//! place. Field names, order and omission rules are the reference's.
//!
//! Invariants: totals are sums over the streams at the moment of the call;
//! nothing here changes the machine.

use std::time::Duration;

use serde::Serialize;

use super::api::{ClusterInfo, StorageType, StreamConfig, StreamState};
use super::config::JetStreamConfig;
use super::machine::JetStream;
use super::requests::API_LEVEL;
use crate::store::{Disk, SyncPolicy};
use crate::time::WallTime;

/// The reference's default for consumers per stream, reported in `limits`.
const DEFAULT_MAX_CONSUMERS: u64 = 1000;

/// JetStream's settings as monitoring shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigReport {
    pub max_memory: u64,
    pub max_storage: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub store_dir: String,
    /// Nanoseconds between flushes under `sync_interval: <duration>`.
    #[serde(skip_serializing_if = "is_zero")]
    pub sync_interval: u64,
    /// Every acknowledged message was synced first (rnats's default and
    /// `sync_interval: always`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_always: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// API counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApiReport {
    pub level: u32,
    pub total: u64,
    pub errors: u64,
}

/// Usage totals (server-wide, or one account's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: ApiReport,
}

/// Limits monitoring reports: the configured `limits { }`, then the
/// default consumers per stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LimitsReport {
    #[serde(flatten)]
    pub configured: super::config::ServerLimits,
    pub default_max_consumers: u64,
}

/// `/varz`'s `jetstream` section; `{}` when JetStream is off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VarzJetStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsReport>,
}

/// What `/jsz` asks for (`?accounts=true&streams=true&config=true&acc=A`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JszOptions {
    pub account: Option<String>,
    pub accounts: bool,
    pub streams: bool,
    pub config: bool,
    pub offset: usize,
    pub limit: usize,
}

impl JszOptions {
    /// From the query string; a flag is on when its value is `true` or `1`.
    pub fn from_query(query: &str) -> JszOptions {
        let flag = |key: &str| {
            let value = crate::monitor::query::param(query, key);
            value == "true" || value == "1"
        };
        let number = |key: &str| {
            crate::monitor::query::param(query, key)
                .parse()
                .unwrap_or(0)
        };
        let account = crate::monitor::query::param(query, "acc");
        let streams = flag("streams") || flag("consumers");
        JszOptions {
            account: (!account.is_empty()).then_some(account),
            accounts: flag("accounts") || streams,
            streams,
            config: flag("config"),
            offset: number("offset"),
            limit: number("limit"),
        }
    }
}

/// One stream in `/jsz`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamDetail {
    pub name: String,
    #[serde(with = "super::api::time::required")]
    pub created: WallTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<StreamConfig>,
    pub state: StreamState,
}

/// One account in `/jsz`.
#[derive(Debug, Clone, Serialize)]
pub struct AccountDetail {
    pub name: String,
    pub id: String,
    #[serde(flatten)]
    pub stats: StatsReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stream_detail: Vec<StreamDetail>,
}

/// The `/jsz` page.
#[derive(Debug, Clone, Serialize)]
pub struct Jsz {
    #[serde(flatten)]
    pub stats: StatsReport,
    pub server_id: String,
    #[serde(with = "super::api::time::required")]
    pub now: WallTime,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    pub config: ConfigReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsReport>,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_details: Vec<AccountDetail>,
    pub total: u64,
}

impl Jsz {
    /// The page of a server without JetStream.
    pub fn disabled(server_id: &str, now: WallTime) -> Jsz {
        Jsz {
            stats: StatsReport::default(),
            server_id: server_id.to_string(),
            now,
            disabled: true,
            config: ConfigReport::default(),
            limits: None,
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            account_details: Vec::new(),
            total: 0,
        }
    }
}

/// JetStream's settings as reported.
pub fn config_report(config: &JetStreamConfig) -> ConfigReport {
    let (sync_interval, sync_always) = match config.sync {
        SyncPolicy::Interval(every) => (nanos(every), false),
        SyncPolicy::BeforeAck => (0, true),
    };
    ConfigReport {
        max_memory: config.max_memory,
        max_storage: config.max_store,
        store_dir: config.store_dir.clone(),
        sync_interval,
        sync_always,
        domain: config.domain.clone().unwrap_or_default(),
        strict: config.strict,
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl<D: Disk + Clone> JetStream<D> {
    /// `/varz`'s `jetstream` section.
    pub fn varz_section(&mut self) -> VarzJetStream {
        self.all_streams_touched();
        VarzJetStream {
            config: Some(config_report(&self.config)),
            stats: Some(self.totals().0),
            limits: Some(LimitsReport {
                configured: self.config.limits,
                default_max_consumers: DEFAULT_MAX_CONSUMERS,
            }),
        }
    }

    /// Server-wide stats plus (streams, messages, bytes).
    fn totals(&self) -> (StatsReport, u64, u64, u64, u64) {
        let mut stats = StatsReport {
            accounts: self.accounts.len() as u64,
            api: ApiReport {
                level: API_LEVEL,
                ..ApiReport::default()
            },
            ..StatsReport::default()
        };
        let (mut messages, mut bytes, mut consumers) = (0, 0, 0);
        for account in self.accounts.values() {
            stats.api.total += account.api_total;
            stats.api.errors += account.api_errors;
        }
        for entry in self.streams.values() {
            let state = entry.stream.state();
            match entry.meta.config.storage {
                StorageType::Memory => stats.memory += state.bytes,
                StorageType::File => stats.storage += state.bytes,
            }
            messages += state.msgs;
            bytes += state.bytes;
            consumers += entry.consumers.len() as u64;
        }
        (stats, self.streams.len() as u64, consumers, messages, bytes)
    }

    /// The `/jsz` page for this server (`server_id`) at `now`.
    pub fn jsz(&mut self, server_id: &str, now: WallTime, options: &JszOptions) -> Jsz {
        self.all_streams_touched();
        let (stats, streams, consumers, messages, bytes) = self.totals();
        let mut details = Vec::new();
        if options.accounts || options.account.is_some() {
            let names: Vec<String> = self
                .accounts
                .keys()
                .filter(|name| options.account.as_ref().is_none_or(|only| only == *name))
                .cloned()
                .collect();
            for name in names {
                details.push(self.account_detail(&name, options));
            }
        }
        let skip = options.offset.min(details.len());
        details.drain(..skip);
        if options.limit > 0 {
            details.truncate(options.limit);
        }
        Jsz {
            stats,
            server_id: server_id.to_string(),
            now,
            disabled: false,
            config: config_report(&self.config),
            limits: Some(LimitsReport {
                configured: self.config.limits,
                default_max_consumers: DEFAULT_MAX_CONSUMERS,
            }),
            streams,
            consumers,
            messages,
            bytes,
            account_details: details,
            total: self.accounts.len() as u64,
        }
    }

    fn account_detail(&mut self, name: &str, options: &JszOptions) -> AccountDetail {
        let account = &self.accounts[name];
        let ids: Vec<_> = account.by_name.values().copied().collect();
        let mut stats = StatsReport {
            // The reference reports an account's unlimited reservation as
            // -1 read as an unsigned number.
            reserved_memory: u64::MAX,
            reserved_storage: u64::MAX,
            api: ApiReport {
                level: 0,
                total: account.api_total,
                errors: account.api_errors,
            },
            ..StatsReport::default()
        };
        let mut stream_detail = Vec::new();
        for id in ids {
            let mut info = self.stream_info(id, None);
            info.config = self.streams[&id].meta.config.clone();
            match info.config.storage {
                StorageType::Memory => stats.memory += info.state.bytes,
                StorageType::File => stats.storage += info.state.bytes,
            }
            if options.streams {
                stream_detail.push(StreamDetail {
                    name: info.config.name.clone(),
                    created: info.created,
                    cluster: Some(self.leader()),
                    config: options.config.then_some(info.config),
                    state: info.state,
                });
            }
        }
        AccountDetail {
            name: name.to_string(),
            id: name.to_string(),
            stats,
            stream_detail,
        }
    }
}

/// The body of a `$SYS` JSZ request (the HTTP query's options as JSON).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
struct JszRequest {
    accounts: bool,
    streams: bool,
    consumer: bool,
    config: bool,
    #[serde(rename = "acc")]
    account: String,
    offset: usize,
    limit: usize,
}

/// The reply to a `$SYS` request: the server, then the data.
#[derive(Serialize)]
struct SystemReply<'a, T: Serialize> {
    server: &'a serde_json::value::RawValue,
    data: &'a T,
}

impl<D: Disk + Clone> JetStream<D> {
    /// `$SYS.REQ.SERVER.PING.JSZ`, `$SYS.REQ.SERVER.<id>.JSZ` and
    /// `$SYS.REQ.ACCOUNT.<account>.JSZ`, answered in the system account with
    /// the server member the server machine attached to the request.
    pub(super) fn handle_system(&mut self, msg: &super::link::JsInbound) {
        if msg.reply.is_empty() {
            return;
        }
        let Ok(subject) = std::str::from_utf8(&msg.subject) else {
            return;
        };
        let request: JszRequest = if msg.payload.iter().all(u8::is_ascii_whitespace) {
            JszRequest::default()
        } else {
            match serde_json::from_slice(&msg.payload) {
                Ok(request) => request,
                // The reference answers a bad filter with nothing useful
                // either; the requester times out.
                Err(_) => return,
            }
        };
        let options = JszOptions {
            account: (!request.account.is_empty()).then_some(request.account),
            accounts: request.accounts || request.streams || request.consumer,
            streams: request.streams || request.consumer,
            config: request.config,
            offset: request.offset,
            limit: request.limit,
        };
        let Ok(server) = serde_json::from_slice::<&serde_json::value::RawValue>(&msg.context)
        else {
            return;
        };
        let tokens: Vec<&str> = subject.split('.').collect();
        // An account's JSZ is that account's detail, as the reference answers.
        let body = if let ["$SYS", "REQ", "ACCOUNT", account, "JSZ"] = tokens.as_slice() {
            if !self.accounts.contains_key(*account) {
                return;
            }
            let detail = self.account_detail(account, &options);
            serde_json::to_vec(&SystemReply {
                server,
                data: &detail,
            })
        } else {
            let server_id = serde_json::from_slice::<serde_json::Value>(&msg.context)
                .ok()
                .and_then(|value| value["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            let jsz = self.jsz(&server_id, self.wall, &options);
            serde_json::to_vec(&SystemReply { server, data: &jsz })
        }
        .expect("system replies serialize");
        self.reply(&msg.account, &msg.reply, body);
    }
}
