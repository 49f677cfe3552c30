//! Message tracing: a message published with a `Nats-Trace-Dest: <subject>`
//! header makes the server report what it did with it (ingress, subject
//! mapping, stream exports, service imports, one egress per delivery or
//! refusal) as one JSON event published to that subject in the publisher's
//! account, in nats-server v2.15.1's `MsgTraceEvent` shape. With
//! `Nats-Trace-Only: true` the message is traced but not delivered.
//! A message going on over a route carries `Nats-Trace-Hop`; the next
//! server traces it from its route ingress and publishes its own event.
//!
//! Invariants:
//! - A trace lives for one published message: created before routing,
//!   published right after, never carried into another message (the trace
//!   event itself is published without headers, so it is never traced).
//! - Messages without headers never reach this module (one `Option` check
//!   on the hot path, in `Outbox::deliver`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::monitor::events::EventServer;
use crate::protocol::find_header;
use crate::runtime::ConnId;

pub const TRACE_DEST_HEADER: &[u8] = b"Nats-Trace-Dest";
pub const TRACE_ONLY_HEADER: &[u8] = b"Nats-Trace-Only";

/// nats-server's connection kind numbers (`CLIENT`, `ROUTER`).
pub const KIND_CLIENT: u8 = 0;
pub const KIND_ROUTER: u8 = 1;

/// The header naming a traced message's hop: `1`, `2`, ... for the
/// routes the first server sent it on, `1.1` for the next server's, ...
pub const TRACE_HOP_HEADER: &[u8] = b"Nats-Trace-Hop";

pub const ERR_NO_ECHO: &str = "Not delivered because of no echo";
pub const ERR_SUB_DENY: &str = "Not delivered because subscription denies this subject";
pub const ERR_AUTO_UNSUB: &str = "Not delivered because auto-unsubscribe exceeded";
pub const ERR_CLIENT_CLOSED: &str = "Not delivered because client is closed";

/// One step of a traced message's journey.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum TraceEvent {
    #[serde(rename = "in")]
    Ingress {
        ts: String,
        kind: u8,
        cid: u64,
        #[serde(skip_serializing_if = "String::is_empty")]
        name: String,
        acc: String,
        subj: String,
    },
    #[serde(rename = "sm")]
    SubjectMapping { ts: String, to: String },
    #[serde(rename = "se")]
    StreamExport { ts: String, acc: String, to: String },
    #[serde(rename = "si")]
    ServiceImport {
        ts: String,
        acc: String,
        from: String,
        to: String,
    },
    #[serde(rename = "eg")]
    Egress {
        ts: String,
        kind: u8,
        cid: u64,
        #[serde(skip_serializing_if = "String::is_empty")]
        name: String,
        /// The hop a route egress gave the message.
        #[serde(skip_serializing_if = "String::is_empty")]
        hop: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        acc: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        sub: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        queue: String,
        #[serde(skip_serializing_if = "str::is_empty")]
        error: &'static str,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceRequest {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub msgsize: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

/// The published trace (`MsgTraceEvent`).
#[derive(Debug, Clone, Serialize)]
pub struct TraceMessage<'a> {
    pub server: EventServer,
    pub request: &'a TraceRequest,
    /// Routes this server sent the message on.
    #[serde(skip_serializing_if = "is_zero")]
    pub hops: usize,
    pub events: &'a [TraceEvent],
}

/// What the headers ask for, before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    pub dest: Bytes,
    pub only: bool,
}

impl TraceHeaders {
    /// `None` when the message carries no `Nats-Trace-Dest` (or an empty one).
    pub fn find(headers: &[u8]) -> Option<TraceHeaders> {
        let dest = find_header(headers, TRACE_DEST_HEADER).filter(|d| !d.is_empty())?;
        let only = find_header(headers, TRACE_ONLY_HEADER).is_some_and(|value| {
            let value = value.to_ascii_lowercase();
            matches!(&value[..], b"1" | b"true" | b"on")
        });
        Some(TraceHeaders {
            dest: Bytes::copy_from_slice(dest),
            only,
        })
    }
}

/// A trace being collected while its message is routed.
#[derive(Debug)]
pub struct MsgTrace {
    pub dest: Bytes,
    pub only: bool,
    /// Events are stamped with the step's time: one step routes the message.
    pub ts: String,
    /// The publisher's account: egress to another account names it.
    pub ingress_account: String,
    pub request: TraceRequest,
    pub events: Vec<TraceEvent>,
    /// The hop this server got the message as (`Nats-Trace-Hop`; empty at
    /// the publisher's server).
    pub hop: String,
    /// Routes the message went on from here.
    pub hops: usize,
}

impl MsgTrace {
    pub fn new(
        wanted: TraceHeaders,
        ts: String,
        publisher: (u8, ConnId, &str),
        account: &str,
        subject: &[u8],
        headers: &[u8],
        size: usize,
    ) -> MsgTrace {
        let ingress = TraceEvent::Ingress {
            ts: ts.clone(),
            kind: publisher.0,
            cid: publisher.1 .0,
            name: publisher.2.to_owned(),
            acc: account.to_owned(),
            subj: String::from_utf8_lossy(subject).into_owned(),
        };
        MsgTrace {
            dest: wanted.dest,
            only: wanted.only,
            ts,
            ingress_account: account.to_owned(),
            request: TraceRequest {
                header: header_map(headers),
                msgsize: size,
            },
            events: vec![ingress],
            hop: find_header(headers, TRACE_HOP_HEADER)
                .map(|hop| String::from_utf8_lossy(hop).into_owned())
                .unwrap_or_default(),
            hops: 0,
        }
    }

    /// The message goes on over route `conn` to the server `name`, in
    /// `account`: records the egress and returns the hop it carries there.
    pub fn route_egress(&mut self, conn: ConnId, name: &str, account: &str) -> String {
        self.hops += 1;
        let hop = if self.hop.is_empty() {
            self.hops.to_string()
        } else {
            format!("{}.{}", self.hop, self.hops)
        };
        let acc = self.egress_account(account);
        self.events.push(TraceEvent::Egress {
            ts: self.ts.clone(),
            kind: KIND_ROUTER,
            cid: conn.0,
            name: name.to_owned(),
            hop: hop.clone(),
            acc,
            sub: String::new(),
            queue: String::new(),
            error: "",
        });
        hop
    }

    /// An egress names its account only when it is not the ingress one.
    fn egress_account(&self, account: &str) -> String {
        if account == self.ingress_account {
            String::new()
        } else {
            account.to_owned()
        }
    }

    pub fn mapped(&mut self, to: &[u8]) {
        self.events.push(TraceEvent::SubjectMapping {
            ts: self.ts.clone(),
            to: String::from_utf8_lossy(to).into_owned(),
        });
    }

    pub fn stream_export(&mut self, importer: &str, to: &[u8]) {
        self.events.push(TraceEvent::StreamExport {
            ts: self.ts.clone(),
            acc: importer.to_owned(),
            to: String::from_utf8_lossy(to).into_owned(),
        });
    }

    pub fn service_import(&mut self, exporter: &str, from: &[u8], to: &[u8]) {
        self.events.push(TraceEvent::ServiceImport {
            ts: self.ts.clone(),
            acc: exporter.to_owned(),
            from: String::from_utf8_lossy(from).into_owned(),
            to: String::from_utf8_lossy(to).into_owned(),
        });
    }

    /// A delivery to (or, with `error`, a refusal of) the subscription `sub`
    /// of the client `conn` (named `name`), in `account`.
    pub fn egress(
        &mut self,
        conn: ConnId,
        name: Option<&str>,
        sub: &super::Subscription,
        account: &str,
        error: &'static str,
    ) {
        let acc = self.egress_account(account);
        self.events.push(TraceEvent::Egress {
            ts: self.ts.clone(),
            kind: KIND_CLIENT,
            cid: conn.0,
            name: name.unwrap_or_default().to_owned(),
            hop: String::new(),
            acc,
            sub: String::from_utf8_lossy(&sub.subject).into_owned(),
            queue: sub
                .queue
                .as_deref()
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .unwrap_or_default(),
            error,
        });
    }
}

/// `block` with `Nats-Trace-Hop: <hop>`: the header's value replaced, or
/// the header added last, as the reference sets it.
pub fn with_hop(block: &[u8], hop: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + TRACE_HOP_HEADER.len() + hop.len() + 4);
    let body = block.strip_suffix(b"\r\n\r\n").unwrap_or(block);
    let mut replaced = false;
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if index > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let is_hop = line
            .split(|b| *b == b':')
            .next()
            .is_some_and(|name| index > 0 && name.eq_ignore_ascii_case(TRACE_HOP_HEADER));
        if is_hop && !replaced {
            replaced = true;
            out.extend_from_slice(TRACE_HOP_HEADER);
            out.extend_from_slice(b": ");
            out.extend_from_slice(hop.as_bytes());
        } else {
            out.extend_from_slice(line);
        }
    }
    if !replaced {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(TRACE_HOP_HEADER);
        out.extend_from_slice(b": ");
        out.extend_from_slice(hop.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// The header block as the reference reports it: name → values, names as
/// written (case kept), the status line left out.
fn header_map(block: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let text = String::from_utf8_lossy(block);
    for line in text.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            map.entry(name.to_owned())
                .or_default()
                .push(value.trim_start().to_owned());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_are_found_and_only_takes_go_truths() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\nNats-Trace-Only: ON\r\n\r\n";
        let wanted = TraceHeaders::find(block).unwrap();
        assert_eq!(&wanted.dest[..], b"t.x");
        assert!(wanted.only);
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\nNats-Trace-Only: yes\r\n\r\n";
        assert!(!TraceHeaders::find(block).unwrap().only);
        assert_eq!(TraceHeaders::find(b"NATS/1.0\r\nOther: 1\r\n\r\n"), None);
    }

    #[test]
    fn the_hop_header_is_added_or_replaced() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\n\r\n";
        assert_eq!(
            with_hop(block, "1"),
            b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\nNats-Trace-Hop: 1\r\n\r\n"
        );
        let block = b"NATS/1.0\r\nNats-Trace-Hop: 1\r\nA: b\r\n\r\n";
        assert_eq!(
            with_hop(block, "1.2"),
            b"NATS/1.0\r\nNats-Trace-Hop: 1.2\r\nA: b\r\n\r\n"
        );
    }

    #[test]
    fn header_map_keeps_names_and_repeats() {
        let map = header_map(b"NATS/1.0\r\nA: 1\r\nA: 2\r\nb-c: x\r\n\r\n");
        assert_eq!(map["A"], vec!["1", "2"]);
        assert_eq!(map["b-c"], vec!["x"]);
    }
}
