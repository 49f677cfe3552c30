//! One client connection's state inside the server machine.
//!
//! A `Client` owns its protocol parser, the options its CONNECT set, its
//! subscriptions and its outbound buffer. It does no routing itself: the
//! [`Server`](super::Server) reads and writes these fields while it routes.
//!
//! Invariants:
//! - `bytes_in_flight` counts bytes handed to the runtime and not yet reported
//!   written; `pending_bytes()` (outbound + in flight) is what the slow-consumer
//!   limit is measured against.
//! - `sids` and `subs` describe the same set: every sid maps to a live index.
//! - Once `closing` is set, nothing more is queued and nothing more is parsed.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;

use super::accounts::{AccountId, GLOBAL};
use crate::auth::{PermissionChecker, ResponseTracker};
use crate::protocol::{ClientParser, ConnectOptions, ParserLimits};
use crate::runtime::CloseReason;
use crate::time::Instant;

/// Names one subscription in the Sublist: the connection and a per-connection index.
/// (A sid is client-chosen bytes; an index is small, `Copy` and never reused.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubKey {
    pub conn: crate::runtime::ConnId,
    pub index: u64,
}

/// A subscription as its owner made it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    pub sid: Bytes,
    /// Auto-unsubscribe after this many deliveries; 0 means no limit.
    pub max: u64,
    /// Messages delivered so far.
    pub delivered: u64,
}

/// Counters reported by monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

pub struct Client {
    pub peer: SocketAddr,
    pub parser: ClientParser,
    /// What the client said in CONNECT, merged over the reference's defaults
    /// (verbose, pedantic and echo on) and over any earlier CONNECT.
    pub options: ConnectOptions,
    pub connect_received: bool,
    /// The account the client is bound to: `$G` until CONNECT says otherwise.
    pub account: AccountId,
    /// The user it logged in as (name or nkey), for logs; never a secret.
    pub user: Option<String>,
    /// `None`: no restrictions.
    pub permissions: Option<PermissionChecker>,
    /// Reply subjects it may answer under `allow_responses`.
    pub responses: ResponseTracker,
    /// The nonce its INFO carried (nkey users sign it); empty if none.
    pub nonce: String,
    /// Names from its verified TLS client certificate (`verify_and_map`).
    pub cert_names: Option<Vec<String>>,
    /// The one extra INFO (with `connect_info`) a protocol-1 client gets after
    /// its first PONG has been sent.
    pub connect_info_sent: bool,
    /// Bytes queued for the peer and not yet taken by the runtime.
    pub outbound: BytesMut,
    /// Bytes taken by the runtime and not yet reported written.
    pub bytes_in_flight: usize,
    /// A `Transmit` action for this connection is queued and not yet served.
    pub transmit_queued: bool,
    /// Set when the server decided to close; the entry lives on until the runtime
    /// reports the socket closed, so the last bytes (an -ERR) can still be taken.
    pub closing: Option<CloseReason>,
    pub sids: BTreeMap<Bytes, u64>,
    pub subs: BTreeMap<u64, Subscription>,
    pub next_sub_index: u64,
    pub stats: ClientStats,
    pub accepted_at: Instant,
    /// Last time the client published, changed interest or pinged: proof it is
    /// alive, so the server skips its own PING. None until then.
    pub last_in: Option<Instant>,
    /// PINGs sent without a PONG back.
    pub pings_out: u32,
    pub auth_deadline: Option<Instant>,
    pub ping_deadline: Instant,
    /// The deadline under which this client is filed in the server's timer set.
    pub filed_deadline: Option<Instant>,
    /// The subjects it was subscribed to when it started closing (its
    /// subscriptions are gone by then); `/connz?state=closed&subs=1` lists them.
    pub closed_subjects: Vec<Bytes>,
    /// What its first CONNECT adds to its log prefix (see `log::client_label`).
    pub log_label: String,
    /// The last measured round trip (PING sent to PONG received).
    pub rtt: Option<core::time::Duration>,
    /// When the PING whose PONG measures `rtt` was sent.
    pub rtt_start: Option<Instant>,
    /// The server answered a PING after CONNECT: the client is past its
    /// handshake, so an unsolicited PING will not confuse it.
    pub first_pong_sent: bool,
}

impl Client {
    pub fn new(peer: SocketAddr, limits: ParserLimits, now: Instant) -> Self {
        Client {
            peer,
            parser: {
                let mut parser = ClientParser::new(limits);
                // HPUB is refused until a CONNECT asks for headers.
                parser.set_headers_enabled(false);
                parser
            },
            options: ConnectOptions::default(),
            connect_received: false,
            account: GLOBAL,
            user: None,
            permissions: None,
            responses: ResponseTracker::default(),
            nonce: String::new(),
            cert_names: None,
            connect_info_sent: false,
            outbound: BytesMut::with_capacity(4096),
            bytes_in_flight: 0,
            transmit_queued: false,
            closing: None,
            sids: BTreeMap::new(),
            subs: BTreeMap::new(),
            next_sub_index: 0,
            stats: ClientStats::default(),
            accepted_at: now,
            last_in: None,
            pings_out: 0,
            auth_deadline: None,
            ping_deadline: now,
            filed_deadline: None,
            closed_subjects: Vec::new(),
            log_label: String::new(),
            rtt: None,
            rtt_start: None,
            first_pong_sent: false,
        }
    }

    /// Bytes written by the server and not yet on the wire.
    pub fn pending_bytes(&self) -> usize {
        self.outbound.len() + self.bytes_in_flight
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// The earliest moment this client needs the server's attention.
    pub fn next_deadline(&self) -> Instant {
        match self.auth_deadline {
            Some(auth) => auth.min(self.ping_deadline),
            None => self.ping_deadline,
        }
    }
}
