//! `/routez` (the registered routes), and `/gatewayz` and `/leafz`, which
//! rnats does not have yet: the reference's shapes with nothing connected,
//! as nats-server answers when gateways and leaf nodes are not configured.
//!
//! Invariant: `num_routes` is the length of `routes`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::query::RoutezOptions;
use super::varz::Empty;
use super::Clock;
use super::SubDetail;
use crate::format::{rfc3339_nanos, rtt_text, uptime};
use crate::route::RoutePermission;
use crate::runtime::ConnId;
use crate::server::{RouteConn, View};

#[derive(Debug, Clone, Serialize)]
pub struct Routez {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    /// This server's cluster `permissions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<RoutePermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<RoutePermission>,
    pub num_routes: usize,
    pub routes: Vec<RouteInfo>,
}

/// One route, with the reference's field names (the subscription lists
/// with `subs=1` / `subs=detail` only, omitted when empty as the
/// reference omits them).
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    pub rid: u64,
    pub remote_id: String,
    pub remote_name: String,
    pub did_solicit: bool,
    pub is_configured: bool,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    /// The last round trip of a route PING (`0s` before the first PONG).
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    /// The peer's cluster permissions, from its INFO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<RoutePermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<RoutePermission>,
    pub pending_size: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubDetail>,
    /// The pinned account of a dedicated route.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    pub compression: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gatewayz {
    pub server_id: String,
    pub now: String,
    pub outbound_gateways: BTreeMap<String, Empty>,
    pub inbound_gateways: BTreeMap<String, Empty>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Leafz {
    pub server_id: String,
    pub now: String,
    pub leafnodes: usize,
    pub leafs: Vec<Empty>,
}

pub fn routez(server: &View<'_>, opts: RoutezOptions, clock: Clock) -> Routez {
    let now = clock.wall_now.as_unix_nanos();
    let permissions = server
        .config()
        .cluster
        .as_ref()
        .and_then(|c| c.permissions.as_ref());
    let routes: Vec<RouteInfo> = server
        .connections()
        .routes()
        .filter(|(_, route)| !route.is_closing())
        .filter_map(|(conn, route)| {
            let remote = route.remote.as_ref()?;
            let start = clock.wall(route.accepted_at);
            let (subscriptions_list, subscriptions_list_detail) =
                route_subs(server, conn, route, opts);
            let last = clock.wall(route.last_in.unwrap_or(route.accepted_at));
            Some(RouteInfo {
                rid: conn.0,
                remote_id: remote.server_id.clone(),
                remote_name: remote.server_name.clone(),
                did_solicit: route.dial.is_some(),
                is_configured: route.configured,
                ip: route.peer.ip().to_string(),
                port: route.peer.port(),
                start: rfc3339_nanos(start),
                last_activity: rfc3339_nanos(last),
                rtt: rtt_text(route.rtt),
                uptime: uptime(now.saturating_sub(start.as_unix_nanos())),
                idle: uptime(now.saturating_sub(last.as_unix_nanos())),
                import: remote.import.clone(),
                export: remote.export.clone(),
                pending_size: route.pending_bytes(),
                in_msgs: route.stats.in_msgs,
                out_msgs: route.stats.out_msgs,
                in_bytes: route.stats.in_bytes,
                out_bytes: route.stats.out_bytes,
                subscriptions: route.subs.len(),
                subscriptions_list,
                subscriptions_list_detail,
                account: route.account.clone().unwrap_or_default(),
                compression: "off",
            })
        })
        .collect();
    Routez {
        server_id: server.config().identity.server_id.clone(),
        server_name: server.config().effective_name().to_owned(),
        now: rfc3339_nanos(clock.wall_now),
        import: permissions.and_then(|p| p.publish.as_ref()).map(Into::into),
        export: permissions
            .and_then(|p| p.subscribe.as_ref())
            .map(Into::into),
        num_routes: routes.len(),
        routes,
    }
}

/// A route's interest as `/routez` lists it: subjects (`subs=1`) or
/// details (`subs=detail`) whose `sid` is the reference's key of a remote
/// subscription (`R [<account> ]<subject>[ <queue>]`, the account left out
/// on a pinned account's route) and whose `cid` is the route's.
fn route_subs(
    server: &View<'_>,
    conn: &ConnId,
    route: &RouteConn,
    opts: RoutezOptions,
) -> (Vec<String>, Vec<SubDetail>) {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if opts.subscriptions {
        let subjects = route.subs.values().map(|sub| text(&sub.subject)).collect();
        return (subjects, Vec::new());
    }
    if !opts.subscriptions_detail {
        return (Vec::new(), Vec::new());
    }
    let accounts = server.accounts();
    let details = route
        .subs
        .values()
        .map(|sub| {
            let mut sid = String::from("R ");
            if route.account.is_none() {
                sid.push_str(&accounts.list[sub.account].name);
                sid.push(' ');
            }
            sid.push_str(&text(&sub.subject));
            if let Some(queue) = &sub.queue {
                sid.push(' ');
                sid.push_str(&text(queue));
            }
            SubDetail {
                account: String::new(),
                account_tag: String::new(),
                subject: text(&sub.subject),
                qgroup: sub.queue.as_deref().map(text),
                sid,
                msgs: sub.msgs,
                max: 0,
                cid: conn.0,
            }
        })
        .collect();
    (Vec::new(), details)
}

/// `/varz` `cluster`: the route listener as configured (empty without one).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub cluster_port: u16,
    #[serde(
        skip_serializing_if = "is_zero_f64",
        serialize_with = "crate::format::go_float"
    )]
    pub auth_timeout: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(
        skip_serializing_if = "is_zero_f64",
        serialize_with = "crate::format::go_float"
    )]
    pub tls_timeout: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// As configured after defaulting (3), -1 when unpooled.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub pool_size: i64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

/// The `/varz` `cluster` section, the number of registered route
/// connections (pooled and pinned ones each count) and of servers routed to.
pub fn cluster_varz(server: &View<'_>, cluster_name: &str) -> (ClusterVarz, usize, usize) {
    let registered: Vec<&str> = server
        .connections()
        .routes()
        .filter(|(_, route)| !route.is_closing())
        .filter_map(|(_, route)| route.remote_id())
        .collect();
    let routes = registered.len();
    let remotes = registered
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let Some(cluster) = &server.config().cluster else {
        return (ClusterVarz::default(), routes, remotes);
    };
    let varz = ClusterVarz {
        name: cluster_name.to_string(),
        addr: cluster.host.clone(),
        cluster_port: cluster.port,
        auth_timeout: cluster
            .auth_timeout
            .unwrap_or(crate::server::DEFAULT_ROUTE_AUTH_TIMEOUT)
            .as_secs_f64(),
        urls: cluster.routes.iter().map(|url| url.address()).collect(),
        tls_timeout: cluster
            .tls
            .as_ref()
            .map_or(server.config().monitoring.tls_timeout, |tls| tls.timeout)
            .as_secs_f64(),
        tls_required: cluster.tls.is_some(),
        tls_verify: cluster.tls.is_some(),
        pool_size: cluster.pool_size,
    };
    (varz, routes, remotes)
}

pub fn gatewayz(server: &View<'_>, clock: Clock) -> Gatewayz {
    Gatewayz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        outbound_gateways: BTreeMap::new(),
        inbound_gateways: BTreeMap::new(),
    }
}

pub fn leafz(server: &View<'_>, clock: Clock) -> Leafz {
    Leafz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        leafnodes: 0,
        leafs: Vec::new(),
    }
}
