//! The per-stream ingest limits (`jetstream { max_buffered_msgs,
//! max_buffered_size }`).
//!
//! Role: the reference queues every publish for a stream on that stream's
//! own queue and refuses the publish (`429 Too Many Requests`, API error
//! 10167 in the ack) when the queue already holds `max_buffered_msgs`
//! messages or the message would take it past `max_buffered_size` bytes
//! (subject, reply, headers and payload). rnats's equivalent is the span
//! between the server routing a publish to JetStream and the JetStream
//! machine taking it: [`IngestQueue`] counts, per stream, the publishes in
//! that span. The runtime owns one (it owns the span: the channel to the
//! JetStream thread), asks [`IngestQueue::admit`] before it hands a
//! publish over and tells [`IngestQueue::taken`] when the machine takes it
//! out; a refused publish is handed over without its headers and payload
//! and answered by [`JetStream::refuse_ingest`] (only the machine knows the
//! stream's name), so what waits in the span stays bounded.
//!
//! A runtime that hands every message over in the step that routed it
//! (the simulator) never has one waiting, so it needs no queue.
//!
//! Invariants: a stream's count is the sum of what was admitted and not yet
//! taken; an admitted message never takes it past either limit. A stream
//! keeps its (zero) entry once it has one: one small entry per stream.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::config::JetStreamConfig;
use super::errors::{ApiError, ApiErrorKind};
use super::link::{JsAction, JsInbound, JsTarget, StreamId};
use super::machine::JetStream;
use crate::server::LogLevel;
use crate::store::Disk;
use crate::time::{Instant, WallTime};

/// The reference's defaults when the settings are absent (or 0).
const DEFAULT_MAX_MSGS: u64 = 100_000;
const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// The status line of a refused publish's ack.
const TOO_MANY_REQUESTS: &[u8] = b"NATS/1.0 429 Too Many Requests\r\n\r\n";

/// Which limit refused a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IngestFull {
    Msgs,
    Bytes,
}

impl IngestFull {
    fn text(self) -> &'static str {
        match self {
            IngestFull::Msgs => "queued message limit reached",
            IngestFull::Bytes => "queued byte limit reached",
        }
    }
}

/// A publish the queue did not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestRefusal {
    pub full: IngestFull,
    /// Whether this is the first refusal of its kind for the stream: the
    /// warning is logged once, as the reference rate-limits it.
    pub warn: bool,
}

/// Publishes routed to each stream and not yet taken by the machine.
#[derive(Debug)]
pub struct IngestQueue {
    max_msgs: u64,
    max_bytes: u64,
    /// Per stream: messages, bytes.
    queued: BTreeMap<StreamId, (u64, u64)>,
    warned: BTreeSet<(StreamId, IngestFull)>,
}

/// What a publish counts for in the queue, as the reference sizes it.
fn size(msg: &JsInbound) -> u64 {
    (msg.subject.len() + msg.reply.len() + msg.headers.len() + msg.payload.len()) as u64
}

impl IngestQueue {
    pub fn new(config: &JetStreamConfig) -> IngestQueue {
        let or_default = |value: Option<u64>, default| value.filter(|&v| v > 0).unwrap_or(default);
        IngestQueue {
            max_msgs: or_default(config.max_buffered_msgs, DEFAULT_MAX_MSGS),
            max_bytes: or_default(config.max_buffered_size, DEFAULT_MAX_BYTES),
            queued: BTreeMap::new(),
            warned: BTreeSet::new(),
        }
    }

    /// Count `msg` in when it is a publish to a stream with room for it;
    /// anything else passes uncounted.
    pub fn admit(&mut self, msg: &JsInbound) -> Result<(), IngestRefusal> {
        let JsTarget::Stream(id) = msg.target else {
            return Ok(());
        };
        let size = size(msg);
        let (msgs, bytes) = self.queued.entry(id).or_default();
        let full = if *msgs >= self.max_msgs {
            Some(IngestFull::Msgs)
        } else if bytes.saturating_add(size) > self.max_bytes {
            Some(IngestFull::Bytes)
        } else {
            None
        };
        if let Some(full) = full {
            let warn = self.warned.insert((id, full));
            return Err(IngestRefusal { full, warn });
        }
        *msgs += 1;
        *bytes += size;
        debug_assert!(*msgs <= self.max_msgs && *bytes <= self.max_bytes);
        Ok(())
    }

    /// The machine took `msg` (admitted before) out of the queue.
    pub fn taken(&mut self, msg: &JsInbound) {
        let JsTarget::Stream(id) = msg.target else {
            return;
        };
        let Some((msgs, bytes)) = self.queued.get_mut(&id) else {
            debug_assert!(false, "a publish taken that was never admitted");
            return;
        };
        assert!(*msgs > 0, "the ingest count of a stream went below zero");
        *msgs -= 1;
        *bytes = bytes.saturating_sub(size(msg));
        // The stream's entry stays at zero: taking it out and putting it
        // back would allocate for every publish of an idle stream.
    }

    /// `msg` as it crosses when refused: what the refusal needs (the
    /// stream, the account and the reply), not what it carried.
    pub fn stripped(msg: JsInbound) -> JsInbound {
        JsInbound {
            headers: Bytes::new(),
            payload: Bytes::new(),
            ..msg
        }
    }
}

impl<D: Disk + Clone> JetStream<D> {
    /// Answer a publish the ingest queue refused: `429 Too Many Requests`
    /// with the API error in the ack (sent even to a `no_ack` stream, as
    /// the reference's queue answers before it looks at the stream).
    pub fn refuse_ingest(
        &mut self,
        now: Instant,
        wall: WallTime,
        msg: JsInbound,
        refusal: IngestRefusal,
    ) {
        self.tick(now, wall);
        let JsTarget::Stream(id) = msg.target else {
            return;
        };
        assert!(!self.lent.contains(&id), "a refusal for lent {id:?}");
        self.stream_touched(id);
        let Some(name) = self.streams.get(&id).map(|e| e.meta.config.name.clone()) else {
            return;
        };
        if refusal.warn {
            self.log(
                LogLevel::Warn,
                format!(
                    "Dropping messages due to excessive stream ingest rate on '{}' > '{name}': {}",
                    msg.account,
                    refusal.full.text()
                ),
            );
        }
        if msg.reply.is_empty() {
            return;
        }
        let error = ApiError::new(ApiErrorKind::StreamTooManyRequests);
        self.actions.push_back(JsAction::Publish {
            account: msg.account.into(),
            subject: msg.reply,
            reply: Bytes::new(),
            headers: Bytes::from_static(TOO_MANY_REQUESTS),
            payload: Bytes::from(super::api::PubAck::encode_error(&name, &error)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(stream: u64, payload: &'static [u8]) -> JsInbound {
        JsInbound {
            account: "A".into(),
            target: JsTarget::Stream(StreamId(stream)),
            subject: Bytes::from_static(b"s"),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from_static(payload),
            context: Bytes::new(),
        }
    }

    fn queue(msgs: Option<u64>, bytes: Option<u64>) -> IngestQueue {
        IngestQueue::new(&JetStreamConfig {
            max_buffered_msgs: msgs,
            max_buffered_size: bytes,
            ..JetStreamConfig::with_bounds("", 0, 0)
        })
    }

    #[test]
    fn the_message_limit_refuses_past_it_per_stream_until_taken() {
        let mut q = queue(Some(2), None);
        let m = publish(1, b"x");
        assert!(q.admit(&m).is_ok());
        assert!(q.admit(&m).is_ok());
        let refused = q.admit(&m).unwrap_err();
        assert_eq!((refused.full, refused.warn), (IngestFull::Msgs, true));
        assert!(!q.admit(&m).unwrap_err().warn, "warned once");
        assert!(q.admit(&publish(2, b"x")).is_ok(), "another stream");
        q.taken(&m);
        assert!(q.admit(&m).is_ok());
    }

    #[test]
    fn the_byte_limit_counts_subject_reply_headers_and_payload() {
        let mut q = queue(None, Some(6));
        let m = publish(1, b"abcd");
        assert!(q.admit(&m).is_ok(), "5 bytes");
        assert_eq!(q.admit(&m).unwrap_err().full, IngestFull::Bytes);
        q.taken(&m);
        assert_eq!(q.queued[&StreamId(1)], (0, 0));
    }

    #[test]
    fn absent_or_zero_settings_are_the_references_defaults() {
        let q = queue(Some(0), None);
        assert_eq!((q.max_msgs, q.max_bytes), (100_000, 128 * 1024 * 1024));
    }
}
