//! Pull requests: what a pull consumer's clients asked for and are still
//! waiting on.
//!
//! Role: hold the waiting pull requests (`CONSUMER.MSG.NEXT`, parsed by
//! [`crate::jetstream::api::NextRequest::parse`]) in arrival order, and
//! build the status messages a requester gets (`100 Idle Heartbeat`, `404 No Messages`,
//! `408 Request Timeout`, `409 ...`).
//!
//! Invariants: every request in the queue still wants at least one
//! message (`batch_left > 0`); the queue never holds more than the
//! consumer's `max_waiting` requests; `replies` counts the queued requests
//! per (account, reply subject), and `changed` holds, for each reply that
//! entered or left the queue since the last [`WaitQueue::take_reply_changes`],
//! whether it was in the queue then (so the server watches exactly the
//! replies someone waits on, to tell when their subscribers are gone).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::time::Instant;

/// A request waiting for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Where its messages and status go.
    pub reply: Bytes,
    /// The account the request came from.
    pub account: String,
    pub batch_left: u64,
    /// The batch the request asked for (zero or less is served as one).
    pub batch_asked: i64,
    /// Zero: no byte limit.
    pub bytes_left: u64,
    pub has_max_bytes: bool,
    pub no_wait: bool,
    pub expires: Option<Instant>,
    pub heartbeat: Option<Duration>,
    /// When the next heartbeat is due (pushed back by every delivery).
    pub next_heartbeat: Option<Instant>,
    /// Messages delivered to it so far.
    pub delivered: u64,
    /// Overflow policy: served only once this many messages are pending
    /// (zero: no such minimum).
    pub min_pending: u64,
    /// Overflow policy: served only once this many acks are outstanding
    /// (zero: no such minimum).
    pub min_ack_pending: u64,
    /// `pinned_client`: the pin id the request carries or was given
    /// (empty: none).
    pub pin_id: String,
    /// `prioritized`: lower is served first (`i64::MAX`: a request that
    /// named no group).
    pub priority: i64,
}

type ReplyKey = (String, Bytes);

impl Waiting {
    /// Messages still owed, as the reference counts them in status headers
    /// and in what waiting requests asked for: the batch asked until the
    /// first delivery (so zero or less shows as such), then what is left.
    pub fn pending_batch(&self) -> i64 {
        if self.delivered == 0 {
            self.batch_asked
        } else {
            i64::try_from(self.batch_left).unwrap_or(i64::MAX)
        }
    }
}

/// The waiting requests, oldest first.
#[derive(Debug, Default)]
pub struct WaitQueue {
    queue: VecDeque<Waiting>,
    replies: BTreeMap<ReplyKey, usize>,
    changed: BTreeMap<ReplyKey, bool>,
}

impl WaitQueue {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, request: Waiting) {
        assert!(request.batch_left > 0, "a request that wants nothing");
        self.entered(&request);
        self.queue.push_back(request);
    }

    pub fn front(&self) -> Option<&Waiting> {
        self.queue.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut Waiting> {
        self.queue.front_mut()
    }

    /// `prioritized`: after every request of the same or a lower priority
    /// number, so each level is served in arrival order.
    pub fn insert_by_priority(&mut self, request: Waiting) {
        assert!(request.batch_left > 0, "a request that wants nothing");
        self.entered(&request);
        let at = self
            .queue
            .iter()
            .position(|waiting| waiting.priority > request.priority)
            .unwrap_or(self.queue.len());
        self.queue.insert(at, request);
    }

    /// Move the oldest request to the back.
    pub fn cycle(&mut self) {
        if let Some(request) = self.queue.pop_front() {
            self.queue.push_back(request);
        }
    }

    pub fn pop_front(&mut self) -> Option<Waiting> {
        let request = self.queue.pop_front()?;
        self.left(&request);
        Some(request)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Waiting> {
        self.queue.iter()
    }

    /// Take out every request for which `done` says so, keeping the order
    /// of the rest.
    pub fn take_where(&mut self, mut done: impl FnMut(&mut Waiting) -> bool) -> Vec<Waiting> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for mut request in std::mem::take(&mut self.queue) {
            if done(&mut request) {
                taken.push(request);
            } else {
                kept.push_back(request);
            }
        }
        self.queue = kept;
        for request in &taken {
            self.left(request);
        }
        taken
    }

    /// The reply subjects that started (`true`) or stopped being waited
    /// on since the last call, as (account, reply, waited on).
    pub fn take_reply_changes(&mut self) -> Vec<(String, Bytes, bool)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|(key, was)| {
                let now = self.replies.contains_key(&key);
                (now != was).then_some((key.0, key.1, now))
            })
            .collect()
    }

    fn entered(&mut self, request: &Waiting) {
        let key = (request.account.clone(), request.reply.clone());
        let count = self.replies.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.changed.entry(key).or_insert(false);
        }
    }

    fn left(&mut self, request: &Waiting) {
        let key = (request.account.clone(), request.reply.clone());
        let count = self
            .replies
            .get_mut(&key)
            .expect("a queued request's reply is counted");
        *count -= 1;
        if *count == 0 {
            self.replies.remove(&key);
            self.changed.entry(key).or_insert(true);
        }
    }

    /// The earliest expiry or heartbeat among the requests.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .flat_map(|request| request.expires.into_iter().chain(request.next_heartbeat))
            .min()
    }
}

/// A status message's header block: `NATS/1.0 <code> <text>` and headers.
pub fn status(code: u16, text: &str, headers: &[(&str, String)]) -> Bytes {
    let mut block = format!("NATS/1.0 {code} {text}\r\n");
    for (name, value) in headers {
        block.push_str(name);
        block.push_str(": ");
        block.push_str(value);
        block.push_str("\r\n");
    }
    block.push_str("\r\n");
    Bytes::from(block)
}

/// The pending-counts headers of a `408`/`409` for `request`.
pub fn pending_headers(request: &Waiting) -> [(&'static str, String); 2] {
    [
        ("Nats-Pending-Messages", request.pending_batch().to_string()),
        ("Nats-Pending-Bytes", request.bytes_left.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_blocks() {
        assert_eq!(
            &status(404, "No Messages", &[])[..],
            b"NATS/1.0 404 No Messages\r\n\r\n"
        );
        assert_eq!(
            &status(
                408,
                "Request Timeout",
                &[
                    ("Nats-Pending-Messages", "3".into()),
                    ("Nats-Pending-Bytes", "0".into())
                ]
            )[..],
            b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 0\r\n\r\n"
        );
    }
}
