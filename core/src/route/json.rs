//! The INFO and CONNECT a route exchanges, with nats-server's field names.
//! Unknown fields are ignored (a newer peer may send more).

use serde::{Deserialize, Serialize};

/// A route's INFO: who the peer is and what it supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteInfo {
    pub server_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_dynamic: bool,
    /// Client URLs of the peer (`host:port`), told to clients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Its websocket URLs, told to websocket clients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// The sender's pool size (absent: it does not pool).
    #[serde(skip_serializing_if = "is_zero")]
    pub route_pool_size: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub route_pool_idx: i64,
    /// Set on a pinned account's dedicated route.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_account: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// On a dialed route's first INFO: how the dialer learned of us
    /// ([`GossipMode`]), so we know whether to tell our peers about it.
    #[serde(skip_serializing_if = "is_zero_u8")]
    pub gossip_mode: u8,
    /// The sender's cluster `permissions`: what interest it announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<RoutePermission>,
    /// What interest it accepts (so what it sends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<RoutePermission>,
}

/// One side of a server's cluster permissions, as INFO and `/routez`
/// carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutePermission {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl From<&crate::auth::SubjectPermission> for RoutePermission {
    fn from(side: &crate::auth::SubjectPermission) -> Self {
        RoutePermission {
            allow: side.allow.clone().unwrap_or_default(),
            deny: side.deny.clone(),
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

/// The values of INFO's `gossip_mode` (wire values, as nats-server's).
pub struct GossipMode;

impl GossipMode {
    /// Gossip as usual.
    pub const DEFAULT: u8 = 0;
    /// The server that told the dialer about us had learned of us itself
    /// by accepting our route: nobody needs telling again.
    pub const DISABLED: u8 = 1;
    /// We were named by a configured route: tell our peers even though
    /// the dialer learned of us by gossip.
    pub const OVERRIDE: u8 = 2;
}

/// A route's CONNECT: the soliciting server's name and credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConnect {
    pub echo: bool,
    pub verbose: bool,
    pub pedantic: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pass: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_token: String,
    pub tls_required: bool,
    pub headers: bool,
    pub name: String,
    pub cluster: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dynamic: bool,
}
