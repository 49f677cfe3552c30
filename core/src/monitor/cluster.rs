//! `/routez`, `/gatewayz` and `/leafz`: rnats has no clustering yet, so these
//! are the reference's shapes with nothing connected, as nats-server answers
//! when routes, gateways and leaf nodes are not configured.
//!
//! Invariant: the counts and the lists agree (both empty) until clustering
//! lands; then these views read the real connections.

use std::collections::BTreeMap;

use serde::Serialize;

use super::varz::Empty;
use super::Clock;
use crate::format::rfc3339_nanos;
use crate::server::View;

#[derive(Debug, Clone, Serialize)]
pub struct Routez {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<Empty>,
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

pub fn routez(server: &View<'_>, clock: Clock) -> Routez {
    Routez {
        server_id: server.config().identity.server_id.clone(),
        server_name: server.config().effective_name().to_owned(),
        now: rfc3339_nanos(clock.wall_now),
        num_routes: 0,
        routes: Vec::new(),
    }
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
