//! Message tracing: a message published with a `Nats-Trace-Dest: <subject>`
//! header makes the server report what it did with it (ingress, subject
//! mapping, stream exports, service imports, one egress per delivery or
//! refusal) as one JSON event published to that subject in the publisher's
//! account, in nats-server v2.15.1's `MsgTraceEvent` shape. With
//! `Nats-Trace-Only: true` the message is traced but not delivered.
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

/// nats-server's connection kind number for clients (`CLIENT`).
const KIND_CLIENT: u8 = 0;

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
}

impl MsgTrace {
    pub fn new(
        wanted: TraceHeaders,
        ts: String,
        publisher: (ConnId, &str),
        account: &str,
        subject: &[u8],
        headers: &[u8],
        size: usize,
    ) -> MsgTrace {
        let ingress = TraceEvent::Ingress {
            ts: ts.clone(),
            kind: KIND_CLIENT,
            cid: publisher.0 .0,
            name: publisher.1.to_owned(),
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
        let acc = if account == self.ingress_account {
            String::new()
        } else {
            account.to_owned()
        };
        self.events.push(TraceEvent::Egress {
            ts: self.ts.clone(),
            kind: KIND_CLIENT,
            cid: conn.0,
            name: name.unwrap_or_default().to_owned(),
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
    fn header_map_keeps_names_and_repeats() {
        let map = header_map(b"NATS/1.0\r\nA: 1\r\nA: 2\r\nb-c: x\r\n\r\n");
        assert_eq!(map["A"], vec!["1", "2"]);
        assert_eq!(map["b-c"], vec!["x"]);
    }
}
