//! `/varz`: the server's configuration, limits and lifetime counters.
//!
//! Role: one snapshot of `&Server` in nats-server v2.15.1's `Varz` shape
//! (field names, order, which empties are left out). Facts core cannot know
//! (memory, CPU, cores) come from the runtime's last [`super::HostStats`].
//!
//! Invariants:
//! - Every counter is read from the server at the moment of the request;
//!   nothing here keeps state.
//! - Sub-objects for features rnats does not have (cluster, gateway, leaf,
//!   mqtt, websocket, jetstream) are present and empty, as the reference
//!   prints them when those features are off.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Clock;
use crate::format::{rfc3339_nanos, uptime};
use crate::server::View;

/// The empty `{}` the reference prints for a feature that is off.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

/// `/varz`'s `websocket`: the reference's `WebsocketOptsVarz`, every member
/// left out when empty (so `{}` without a websocket listener).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VarzWebSocket {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub handshake_timeout: u64,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub no_tls: bool,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub same_origin: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub compression: bool,
}

impl VarzWebSocket {
    fn new(ws: Option<&crate::websocket::WebSocketConfig>) -> Self {
        let Some(ws) = ws else {
            return VarzWebSocket::default();
        };
        VarzWebSocket {
            host: ws.host.clone(),
            port: ws.port,
            advertise: ws.advertise.clone(),
            handshake_timeout: duration_nanos(ws.handshake_timeout),
            no_tls: ws.no_tls,
            same_origin: ws.same_origin,
            allowed_origins: ws.allowed_origins.clone(),
            compression: ws.compression,
        }
    }
}

fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

/// Counts of slow consumers (or stale connections) by connection kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KindCounts {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

/// Disk I/O semaphore contention (no JetStream yet: all zero).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DiskIoWaitStats {
    pub waiters: u64,
    pub waits: u64,
    pub wait_time: u64,
    pub max_wait_time: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    pub max_connections: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_subscriptions: usize,
    /// Nanoseconds (Go marshals a `time.Duration` as an integer).
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    /// Seconds.
    #[serde(serialize_with = "crate::format::go_float")]
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: super::cluster::ClusterVarz,
    pub gateway: Empty,
    pub leaf: Empty,
    pub mqtt: Empty,
    pub websocket: VarzWebSocket,
    /// Filled in by the runtime from the JetStream machine; `{}` when off.
    pub jetstream: crate::jetstream::monitor::VarzJetStream,
    /// Seconds.
    #[serde(serialize_with = "crate::format::go_float")]
    pub tls_timeout: f64,
    /// Nanoseconds.
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: u32,
    pub gomaxprocs: u32,
    #[serde(serialize_with = "crate::format::go_float")]
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: usize,
    pub remotes: usize,
    pub leafnodes: usize,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    /// Operator mode: the trusted operators' JWTs and their claims.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_operators_jwt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_operators_claim: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    pub slow_consumer_stats: KindCounts,
    pub stale_connection_stats: KindCounts,
    pub disk_io_wait_stats: DiskIoWaitStats,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

/// Builds `/varz` as of `clock`.
pub fn varz(server: &View<'_>, clock: Clock) -> Varz {
    let (cluster, routes, remotes) = super::cluster::cluster_varz(server, server.cluster_name());
    let config = server.config();
    let monitor = server.monitor_state();
    let stats = server.stats();
    let host = monitor.host;
    let settings = &config.monitoring;
    Varz {
        server_id: config.identity.server_id.clone(),
        server_name: config.effective_name().to_owned(),
        version: config.identity.version.clone(),
        proto: 1,
        git_commit: config.identity.git_commit.clone(),
        go: config.identity.toolchain.clone(),
        host: config.identity.host.clone(),
        port: config.identity.port,
        auth_required: config.auth.is_required(),
        tls_required: config.tls.required && !config.tls.allow_non_tls,
        tls_verify: config.tls.required && config.tls.verify,
        max_connections: config.max_connections,
        max_subscriptions: config.max_subscriptions,
        ping_interval: duration_nanos(config.ping_interval),
        ping_max: config.ping_max,
        http_host: settings.http_host.clone(),
        http_port: settings.http_port,
        http_base_path: settings.http_base_path.clone(),
        https_port: settings.https_port,
        auth_timeout: config.auth_timeout.as_secs_f64(),
        max_control_line: config.max_control_line,
        max_payload: config.max_payload,
        max_pending: config.max_pending,
        cluster,
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        websocket: VarzWebSocket::new(config.websocket.as_ref()),
        jetstream: Default::default(),
        tls_timeout: settings.tls_timeout.as_secs_f64(),
        write_deadline: duration_nanos(settings.write_deadline),
        start: rfc3339_nanos(monitor.started),
        now: rfc3339_nanos(clock.wall_now),
        uptime: uptime(
            clock
                .wall_now
                .as_unix_nanos()
                .saturating_sub(monitor.started.as_unix_nanos()),
        ),
        mem: host.mem,
        cores: host.cores,
        gomaxprocs: host.cores,
        cpu: host.cpu,
        connections: server.num_connections(),
        total_connections: stats.total_connections,
        routes,
        remotes,
        leafnodes: 0,
        in_msgs: stats.in_msgs,
        in_bytes: stats.in_bytes,
        in_client_msgs: stats.in_msgs,
        in_client_bytes: stats.in_bytes,
        out_msgs: stats.out_msgs,
        out_bytes: stats.out_bytes,
        out_client_msgs: stats.out_msgs,
        out_client_bytes: stats.out_bytes,
        slow_consumers: stats.slow_consumers,
        stale_connections: stats.stale_connections,
        stalled_clients: 0,
        subscriptions: server.total_subscriptions(),
        http_req_stats: monitor.http_requests.clone(),
        config_load_time: rfc3339_nanos(monitor.config_loaded),
        config_digest: config.config_digest.clone(),
        trusted_operators_jwt: config
            .auth
            .operator
            .as_ref()
            .map(|mode| mode.operator_tokens.clone())
            .unwrap_or_default(),
        trusted_operators_claim: config
            .auth
            .operator
            .iter()
            .flat_map(|mode| &mode.operator_tokens)
            .filter_map(|token| crate::auth::jwt::claims_json(token))
            .collect(),
        system_account: config.system_account.clone(),
        slow_consumer_stats: KindCounts {
            clients: stats.slow_consumers,
            ..KindCounts::default()
        },
        stale_connection_stats: KindCounts {
            clients: stats.stale_connections,
            ..KindCounts::default()
        },
        disk_io_wait_stats: DiskIoWaitStats::default(),
    }
}

fn duration_nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
