//! The JSON of the system account's events and request replies, in
//! nats-server v2.15.1's shapes: `client_connect`, `client_disconnect`,
//! `account_connections` advisories, the `statsz` heartbeat, and the
//! `{"server": ..., "data": ...}` envelope of `$SYS.REQ` replies; plus the
//! options a request may carry in its payload.
//!
//! Role: plain data and builders over `&Server`; the server machine
//! (`server/system.rs`) decides when to publish them.
//!
//! Invariant: nothing here reads a clock; every time comes from a [`Clock`].

use serde::{Deserialize, Serialize};

use super::accountz::{account_stat, AccountStat};
use super::Clock;
use crate::format::{go_float, rfc3339_nanos};
use crate::runtime::ConnId;
use crate::server::{ClientStats, View};

pub const CONNECT_EVENT_TYPE: &str = "io.nats.server.advisory.v1.client_connect";
pub const DISCONNECT_EVENT_TYPE: &str = "io.nats.server.advisory.v1.client_disconnect";
pub const ACCOUNT_CONNECTIONS_TYPE: &str = "io.nats.server.advisory.v1.account_connections";

/// Who sent an event or reply (`ServerInfo` in the reference's events).
#[derive(Debug, Clone, Serialize)]
pub struct EventServer {
    pub name: String,
    pub host: String,
    pub id: String,
    pub ver: String,
    pub jetstream: bool,
    pub flags: u64,
    pub seq: u64,
    pub time: String,
}

impl EventServer {
    pub fn new(server: &View<'_>, seq: u64, clock: Clock) -> Self {
        let config = server.config();
        EventServer {
            name: config.effective_name().to_owned(),
            host: config.identity.host.clone(),
            id: config.identity.server_id.clone(),
            ver: config.identity.version.clone(),
            jetstream: config.jetstream.is_some(),
            flags: 0,
            seq,
            time: rfc3339_nanos(clock.wall_now),
        }
    }
}

/// A client as events describe it (`ClientInfo`), in its field order;
/// empty fields are left out as the reference's `omitempty` does. Also
/// what a request crossing a service import carries in
/// `Nats-Request-Info` (read back when a request crosses a second import).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub acc: String,
    /// On a request that crossed more than one service import: the
    /// account it last crossed from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub svc: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ver: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub rtt: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_type: String,
    /// A fast batch message's own reply (`...$FI`), which a stream reached
    /// through a service import needs: the message carries a `_R_.` reply.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reply: String,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl EventClient {
    /// `conn` as it is now; `None` if the server does not know it.
    pub fn of(server: &View<'_>, conn: ConnId, clock: Clock) -> Option<Self> {
        let client = server.client(conn)?;
        let account = server.account_of(conn).unwrap_or("").to_owned();
        Some(EventClient {
            start: Some(rfc3339_nanos(clock.wall(client.accepted_at))),
            host: client.peer.ip().to_string(),
            id: conn.0,
            name_tag: account.clone(),
            acc: account,
            user: client.user.clone().unwrap_or_default(),
            name: client.options.name.clone().unwrap_or_default(),
            lang: client.options.lang.clone().unwrap_or_default(),
            ver: client.options.version.clone().unwrap_or_default(),
            rtt: client
                .rtt
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            stop: None,
            kind: "Client".into(),
            client_type: "nats".into(),
            ..Default::default()
        })
    }

    /// Add what a service import with `share` tells the service about its
    /// requester `conn` (the reference's `getClientInfo(true)`): the
    /// connection, the user it logged in as (nkey, user name, the user
    /// JWT's key, or a redacted token), its client library, and its user
    /// JWT with that JWT's issuer, name and tags. `acc` is already set.
    pub fn share_details(&mut self, conn: ConnId, client: &crate::server::Client, clock: Clock) {
        let options = &client.options;
        fn filled(value: &Option<String>) -> Option<&str> {
            value.as_deref().filter(|v| !v.is_empty())
        }
        let user_jwt = filled(&options.jwt).and_then(|t| crate::auth::jwt::decode_user(t).ok());
        self.start = Some(rfc3339_nanos(clock.wall(client.accepted_at)));
        self.host = client.peer.ip().to_string();
        self.id = conn.0;
        self.user = if let Some(nkey) = filled(&options.nkey) {
            nkey.to_owned()
        } else if let Some(user) = filled(&options.user) {
            user.to_owned()
        } else if let Some(jwt) = &user_jwt {
            jwt.claims.subject.clone()
        } else if filled(&options.auth_token).is_some() {
            "[REDACTED]".to_owned()
        } else {
            String::new()
        };
        self.name = options.name.clone().unwrap_or_default();
        self.lang = options.lang.clone().unwrap_or_default();
        self.ver = options.version.clone().unwrap_or_default();
        self.jwt = options.jwt.clone().unwrap_or_default();
        if let Some(jwt) = user_jwt {
            // Its signing key, else the account that issued it.
            self.issuer_key = jwt.claims.issuer;
            self.name_tag = jwt.claims.name;
            self.tags = jwt.nats.tags;
        } else if filled(&options.nkey).is_some() {
            self.issuer_key = self.acc.clone();
        }
        self.kind = "Client".into();
        self.client_type = match client.listener {
            crate::runtime::ListenerKind::WebSocket => "websocket",
            _ => "nats",
        }
        .into();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: EventServer,
    pub client: EventClient,
}

/// Messages and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MsgBytes {
    pub msgs: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DisconnectEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: EventServer,
    pub client: EventClient,
    /// What the server sent to the client (its `out` counters).
    pub sent: MsgBytes,
    /// What the client sent.
    pub received: MsgBytes,
    pub reason: &'static str,
}

impl DisconnectEvent {
    pub fn traffic(stats: &ClientStats) -> (MsgBytes, MsgBytes) {
        (
            MsgBytes {
                msgs: stats.out_msgs,
                bytes: stats.out_bytes,
            },
            MsgBytes {
                msgs: stats.in_msgs,
                bytes: stats.in_bytes,
            },
        )
    }
}

/// `$SYS.ACCOUNT.<acc>.SERVER.CONNS`: an account's connection count changed.
#[derive(Debug, Clone, Serialize)]
pub struct AccountConnectionsEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: EventServer,
    #[serde(flatten)]
    pub stat: AccountStat,
}

impl AccountConnectionsEvent {
    pub fn new(
        server: &View<'_>,
        account: crate::server::AccountId,
        id: String,
        header: EventServer,
        clock: Clock,
    ) -> Self {
        AccountConnectionsEvent {
            kind: ACCOUNT_CONNECTIONS_TYPE,
            id,
            timestamp: rfc3339_nanos(clock.wall_now),
            server: header,
            stat: account_stat(server, account),
        }
    }
}

/// The `statsz` heartbeat's body.
#[derive(Debug, Clone, Serialize)]
pub struct Statsz {
    pub start: String,
    pub mem: u64,
    pub cores: u32,
    #[serde(serialize_with = "go_float")]
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub active_accounts: usize,
    pub subscriptions: usize,
    pub sent: MsgBytes,
    pub sent_to_clients: MsgBytes,
    pub received: MsgBytes,
    pub received_from_clients: MsgBytes,
    pub slow_consumers: u64,
    pub active_servers: u32,
    pub gomaxprocs: u32,
}

impl Statsz {
    pub fn new(server: &View<'_>) -> Self {
        let stats = server.stats();
        let monitor = server.monitor_state();
        let sent = MsgBytes {
            msgs: stats.out_msgs,
            bytes: stats.out_bytes,
        };
        let received = MsgBytes {
            msgs: stats.in_msgs,
            bytes: stats.in_bytes,
        };
        let accounts = server.accounts();
        Statsz {
            start: rfc3339_nanos(monitor.started),
            mem: monitor.host.mem,
            cores: monitor.host.cores,
            cpu: monitor.host.cpu,
            connections: server.num_connections(),
            total_connections: stats.total_connections,
            active_accounts: accounts
                .by_name
                .values()
                .filter(|&&id| server.account_connections(id) > 0)
                .count(),
            subscriptions: server.total_subscriptions(),
            sent,
            sent_to_clients: sent,
            received,
            received_from_clients: received,
            slow_consumers: stats.slow_consumers,
            active_servers: 1,
            gomaxprocs: monitor.host.cores,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatszMessage {
    pub server: EventServer,
    pub statsz: Statsz,
}

/// An error in a `$SYS.REQ` reply.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub code: u16,
    pub description: String,
}

/// The envelope of every `$SYS.REQ` reply but IDZ and STATSZ.
#[derive(Debug, Clone, Serialize)]
pub struct ApiResponse<T, E = ApiError> {
    pub server: EventServer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<E>,
}

/// An account claims update's `data` (applied or skipped); a refusal is
/// its `error`, a [`ClaimsUpdateFailure`].
#[derive(Debug, Clone, Serialize)]
pub struct ClaimsUpdateStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    pub code: u16,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimsUpdateFailure {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    pub code: u16,
    pub description: String,
}

/// `$SYS.REQ.USER.INFO`: who the requesting connection is and what it may do.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub user: String,
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_name: String,
    /// Absent for a user without permissions (everything allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<UserPermissions>,
}

/// The reference's public `Permissions` shape.
#[derive(Debug, Clone, Serialize)]
pub struct UserPermissions {
    pub publish: UserSubjectPermission,
    pub subscribe: UserSubjectPermission,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responses: Option<UserResponsePermission>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UserSubjectPermission {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserResponsePermission {
    pub max: u64,
    /// Nanoseconds, as Go's `time.Duration` serializes.
    pub ttl: u64,
}

impl UserPermissions {
    pub fn new(permissions: &crate::auth::Permissions) -> Self {
        let side = |side: &Option<crate::auth::SubjectPermission>| {
            side.as_ref()
                .map(|side| UserSubjectPermission {
                    allow: side.allow.clone().unwrap_or_default(),
                    deny: side.deny.clone(),
                })
                .unwrap_or_default()
        };
        UserPermissions {
            publish: side(&permissions.publish),
            subscribe: side(&permissions.subscribe),
            responses: permissions.response.map(|r| UserResponsePermission {
                max: r.max_msgs,
                ttl: u64::try_from(r.expires.as_nanos()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// `$SYS.REQ.SERVER.PING.IDZ`.
#[derive(Debug, Clone, Serialize)]
pub struct Idz {
    pub name: String,
    pub host: String,
    pub id: String,
}

/// What any request may carry to pick servers (`EventFilterOptions`); a
/// server that does not match stays silent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    pub server_name: String,
    pub cluster: String,
    pub host: String,
    /// Name, host and cluster equal the filter's instead of containing it.
    pub exact_match: bool,
    pub tags: Vec<String>,
    pub domain: String,
}

impl EventFilter {
    pub fn matches(&self, server: &View<'_>) -> bool {
        let config = server.config();
        let fits = |wanted: &str, actual: &str| {
            wanted.is_empty()
                || if self.exact_match {
                    actual == wanted
                } else {
                    actual.contains(wanted)
                }
        };
        let domain = config
            .jetstream
            .as_ref()
            .and_then(|js| js.domain.as_deref())
            .unwrap_or("");
        fits(&self.server_name, config.effective_name())
            && fits(&self.host, &config.identity.host)
            && fits(&self.cluster, server.cluster_name())
            // rnats has no `server_tags`: any tag excludes it.
            && self.tags.is_empty()
            && (self.domain.is_empty() || self.domain == domain)
    }
}

/// `CONNZ` request options, as the reference's `ConnzEventOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnzRequest {
    pub sort: String,
    pub auth: bool,
    pub subscriptions: bool,
    pub subscriptions_detail: bool,
    pub offset: i64,
    pub limit: i64,
    pub cid: u64,
    pub state: Option<i64>,
    pub user: String,
    pub acc: String,
    pub filter_subject: String,
    #[serde(flatten)]
    pub filter: EventFilter,
}

/// `ROUTEZ` request options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoutezRequest {
    pub subscriptions: bool,
    pub subscriptions_detail: bool,
    #[serde(flatten)]
    pub filter: EventFilter,
}

/// `SUBSZ` request options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SubszRequest {
    pub subscriptions: bool,
    pub offset: i64,
    pub limit: i64,
    pub test: String,
    pub account: String,
    #[serde(flatten)]
    pub filter: EventFilter,
}

/// `ACCOUNTZ` request options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountzRequest {
    pub account: String,
    #[serde(flatten)]
    pub filter: EventFilter,
}

/// `$SYS.REQ.ACCOUNT.PING.STATZ` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatzRequest {
    pub accounts: Vec<String>,
    pub include_unused: bool,
    #[serde(flatten)]
    pub filter: EventFilter,
}
