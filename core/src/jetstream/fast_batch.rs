//! Fast batch publish (`allow_batched`): a publisher streams messages into a
//! stream without waiting for an ack per message, as nats-server 2.15.1.
//!
//! Role: read the batch protocol from a publish's reply subject
//! ([`parse_reply`]) and keep each open batch's progress, deciding for each
//! message, before and after the stream stores it ([`FastBatches::begin`],
//! [`FastBatches::finish`]), what the publisher hears: flow acks
//! (`{"type":"ack"}`, every `msgs` persisted messages, ramped as the
//! reference does), gap reports (`{"type":"gap"}`), per-message errors
//! (`{"type":"err"}`), and the final PubAck with `batch` and `count`.
//! Unlike an atomic batch ([`super::batch`]) nothing is staged: each
//! message is stored as it comes, through the stream's ordinary checks.
//!
//! The reply subject is `<prefix>.<id>.<flow>.<gap>.<seq>.<op>.$FI`: the
//! publisher's inbox prefix (any tokens), the batch id, the flow it asks
//! for (acks at most every `flow` messages), `ok` or `fail` on a gap, the
//! batch sequence, and the operation (0 start, 1 append, 2 commit, 3
//! commit with an end-of-batch marker that is not stored, 4 ping).
//!
//! Invariants, for every open batch: `flowed <= persisted <= last`; the
//! flow step `ack_every` is at least 1; under `gap: fail` a batch at rest
//! has `persisted == last` (it ends at its first gap or error) unless it
//! lost a message. The reference stores a message through a proposal
//! queue and counts the ones pending; here the stream stores it within
//! the same call, so between two messages only the lost ones (refused
//! while storing, see `lost_in_store`) count, as they stay pending there
//! forever. Every answer naming
//! stored messages ([`Answer::Durable`]) leaves only once the stream
//! sequence it names is durable, like any publish ack. Batches live in
//! memory only; one idle for the batch timeout is dropped without a word
//! (the reference sends no advisory for fast batches), one committing
//! that cannot persist everything is held [`COMMITTING_HOLD`] timeouts
//! (the reference holds it forever).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;

use super::errors::{ApiError, ApiErrorKind as K};
use super::stream::PublishError;
use crate::time::WallTime;

/// What ends every fast batch reply subject.
pub const SUFFIX: &[u8] = b".$FI";
/// Open fast batches per stream, as the reference's default.
pub const MAX_INFLIGHT: usize = 1000;
/// Open fast batches on the whole server, as the reference's default.
pub const MAX_INFLIGHT_TOTAL: usize = 50_000;
/// The most messages between two flow acks the server asks for, shared
/// among a stream's open batches.
const FLOW_SHARE: u16 = 500;
/// The flow a reply asks for when its flow token is zero or not a number.
const DEFAULT_FLOW: u16 = 10;
/// A batch committing while some of its messages never persisted waits
/// this many batch timeouts (ten minutes by default) before it is
/// forgotten. The reference never forgets one (it waits for a store that
/// cannot come); here memory and the batch's inflight slot are bounded.
const COMMITTING_HOLD: u32 = 60;

/// What a fast batch message asks of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The first message (batch sequence 1).
    Start,
    /// A later message.
    Append,
    /// The last message, stored, then the PubAck.
    Commit,
    /// The end marker after the last message: not stored, the PubAck.
    CommitEob,
    /// Nothing to store: repeat the last flow ack (or report a gap).
    Ping,
}

/// A fast batch reply subject, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastReply<'a> {
    pub id: &'a [u8],
    /// The most messages between two flow acks the publisher allows (at
    /// least 1).
    pub flow: u16,
    /// `ok`: a lost or refused message does not end the batch.
    pub gap_ok: bool,
    /// The batch sequence, `1..u64::MAX`.
    pub seq: u64,
    pub op: Op,
}

impl FastReply<'_> {
    fn commits(&self) -> bool {
        matches!(self.op, Op::Commit | Op::CommitEob)
    }
}

/// A reply that ends in `.$FI` but does not follow the pattern (answered
/// with "batch publish pattern is invalid").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPattern;

/// Read a publish's reply subject: `None` when it is no fast batch reply
/// (it does not end in `.$FI` after something), else the batch it names or
/// why it is not one. Tokens are read from the right, as the reference
/// does, so the prefix may hold any number of tokens.
pub fn parse_reply(reply: &[u8]) -> Option<Result<FastReply<'_>, InvalidPattern>> {
    if reply.len() <= SUFFIX.len() || !reply.ends_with(SUFFIX) {
        return None;
    }
    let rest = &reply[..reply.len() - SUFFIX.len()];
    Some(parse_tokens(rest))
}

fn parse_tokens(rest: &[u8]) -> Result<FastReply<'_>, InvalidPattern> {
    let (rest, op) = split_last(rest)?;
    let op = match go_parse_int(op) {
        0 => Op::Start,
        1 => Op::Append,
        2 => Op::Commit,
        3 => Op::CommitEob,
        4 => Op::Ping,
        _ => return Err(InvalidPattern),
    };
    let (rest, seq) = split_last(rest)?;
    // u64::MAX is refused so that the next sequence cannot overflow.
    let seq = parse_u64(seq)
        .filter(|&seq| seq != 0 && seq != u64::MAX)
        .ok_or(InvalidPattern)?;
    let misplaced = match op {
        Op::Start => seq != 1,
        Op::Append => seq == 1,
        Op::CommitEob => seq == 1,
        Op::Commit | Op::Ping => false,
    };
    if misplaced {
        return Err(InvalidPattern);
    }
    let (rest, gap) = split_last(rest)?;
    let gap_ok = match gap {
        b"ok" => true,
        b"fail" => false,
        _ => return Err(InvalidPattern),
    };
    let (rest, flow) = split_last(rest)?;
    let flow = match go_parse_int(flow) {
        ..=0 => DEFAULT_FLOW,
        flow => u16::try_from(flow).unwrap_or(u16::MAX),
    };
    // The id must follow a prefix of at least an empty token.
    let (_, id) = split_last(rest)?;
    debug_assert!(flow >= 1 && seq >= 1);
    Ok(FastReply {
        id,
        flow,
        gap_ok,
        seq,
        op,
    })
}

/// `text` before and after its last `.`.
fn split_last(text: &[u8]) -> Result<(&[u8], &[u8]), InvalidPattern> {
    let dot = text
        .iter()
        .rposition(|&b| b == b'.')
        .ok_or(InvalidPattern)?;
    Ok((&text[..dot], &text[dot + 1..]))
}

/// The reference's lenient integer: -1 unless all ASCII digits (none is
/// -1 too), wrapping on overflow as Go's int64 arithmetic does.
fn go_parse_int(text: &[u8]) -> i64 {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return -1;
    }
    text.iter().fold(0i64, |n, &digit| {
        n.wrapping_mul(10).wrapping_add(i64::from(digit - b'0'))
    })
}

/// Decimal digits only, refused on overflow.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &digit| {
        n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// `{"type":"ack","seq":<seq>,"msgs":<every>}`: messages through batch
/// sequence `seq` are persisted (under `gap: ok`, some may be lost), the
/// next ack comes after `every` more.
pub fn flow_ack(seq: u64, every: u16) -> Bytes {
    Bytes::from(format!(r#"{{"type":"ack","seq":{seq},"msgs":{every}}}"#))
}

/// `{"type":"gap","last_seq":<expected>,"seq":<seq>}`: the messages from
/// `expected` up to (not including) `seq` never arrived.
pub fn gap_report(expected: u64, seq: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"gap","last_seq":{expected},"seq":{seq}}}"#
    ))
}

/// `{"type":"err","seq":<seq>,"error":{..}}`: message `seq` was refused.
pub fn error_report(seq: u64, error: &ApiError) -> Bytes {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        r#type: &'static str,
        seq: u64,
        error: &'a ApiError,
    }
    Bytes::from(super::api::to_wire_json(&Report {
        r#type: "err",
        seq,
        error,
    }))
}

/// The PubAck that ends a batch: `prefix` is the stream's ack start up to
/// its sequence (`{"stream":"S",["domain":"D",]"seq":`), `seq` the
/// stream sequence of its last stored message, `count` the batch
/// sequence it ended at. A duplicate names the message it duplicates.
pub fn commit_ack(prefix: &[u8], seq: u64, duplicate: bool, id: &[u8], count: u64) -> Bytes {
    debug_assert!(prefix.ends_with(b"\"seq\":"));
    let mut out = String::from_utf8_lossy(prefix).into_owned();
    let _ = write!(out, "{seq}");
    if duplicate {
        out.push_str(super::api::PubAck::DUPLICATE);
    }
    out.push_str(",\"batch\":");
    crate::format::push_go_quoted(&mut out, id);
    let _ = write!(out, ",\"count\":{count}}}");
    Bytes::from(out)
}

/// What the publisher hears, on the message's own reply subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send now: it names nothing stored (the first flow ack, gaps,
    /// errors).
    Now(Bytes),
    /// Send once the stream's messages through sequence `through` are
    /// durable (a flow ack, the PubAck).
    Durable { through: u64, payload: Bytes },
    /// The refusal of the message, as a refused publish is answered.
    Refused(PublishError),
}

/// Whether the stream refused `error` only while storing a message, where
/// the reference has already counted it pending in its batch (its other
/// checks come before): such a message is answered as a refused publish
/// and never persists.
fn lost_in_store(error: &PublishError) -> bool {
    matches!(error, PublishError::WrongLastMsgId(_))
}

/// The stream's settings [`check_headers`] reads.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRules<'a> {
    pub name: &'a str,
    pub allow_msg_counter: bool,
    pub allow_msg_ttl: bool,
}

/// The checks the reference makes of a fast batch message before any that
/// reads the stream's state, in its order: the counter's `Nats-Incr`,
/// `Nats-Expected-Stream`, `Nats-TTL`. The stream's publish path makes
/// them too, but later (a duplicate and the others that read the stream
/// come first there, and `Nats-TTL` after `Nats-Rollup` and
/// `Nats-Expected-Last-Msg-Id`), so the stream runs these first: a
/// message with several faults is refused for the one the reference
/// names.
pub fn check_headers(
    headers: &[u8],
    payload: &[u8],
    rules: &HeaderRules<'_>,
) -> Result<(), PublishError> {
    if headers.is_empty() {
        return Ok(());
    }
    super::counter::increment(headers, payload, rules.allow_msg_counter)
        .map_err(PublishError::Rejected)?;
    super::stream::check_expected_stream(headers, rules.name)?;
    match crate::protocol::find_header(headers, b"Nats-TTL") {
        Some(_) if !rules.allow_msg_ttl => Err(PublishError::TtlDisabled),
        Some(text) if super::stream::parse_ttl(text).is_none() => Err(PublishError::InvalidTtl),
        _ => Ok(()),
    }
}

/// How many fast batches a stream may have open and how long one may wait
/// for its next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastLimits {
    pub inflight: usize,
    pub timeout: Duration,
}

impl Default for FastLimits {
    fn default() -> Self {
        FastLimits {
            inflight: MAX_INFLIGHT,
            timeout: super::batch::TIMEOUT,
        }
    }
}

/// What the stream tells [`FastBatches::begin`] and
/// [`FastBatches::finish`].
pub struct Context<'a> {
    /// The stream's ack up to its sequence, for the PubAck.
    pub ack_prefix: &'a [u8],
    /// Whether the server may open another fast batch (its total limit).
    pub room: bool,
    /// `no_ack`: the first flow ack is not sent (the reference still sends
    /// the others).
    pub no_ack: bool,
}

/// What the stream does with a message after [`FastBatches::begin`].
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Refused before the batch took it (answered as a refused publish).
    Refused(PublishError),
    /// Nothing to store (a ping, an end marker, a gap ending the batch,
    /// a message of a batch that is committing).
    Done,
    /// Store it, with these headers instead of its own when given, then
    /// call [`FastBatches::finish`].
    Store { headers: Option<Bytes> },
}

/// What became of a message [`Begin::Store`] asked to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    At(u64),
    /// A duplicate (`Nats-Msg-Id`) of the message at this sequence.
    Duplicate(u64),
    Refused(&'a PublishError),
}

#[derive(Debug)]
struct Open {
    /// Dropped when this passes without another message.
    deadline: WallTime,
    /// The highest batch sequence taken (received in order, or skipped to
    /// under `gap: ok`).
    last: u64,
    /// The highest batch sequence persisted: stored, a duplicate, or
    /// (`gap: ok`) lost or refused. At most `last`.
    persisted: u64,
    /// The batch sequence the last flow ack named. At most `persisted`.
    flowed: u64,
    /// The stream sequence of the batch's last stored message (0: none).
    stream_seq: u64,
    /// A flow ack every this many persisted messages, at least 1.
    ack_every: u16,
    /// The publisher's `flow`: `ack_every` never passes it.
    ack_every_max: u16,
    gap_ok: bool,
    /// Messages the stream took but refused while storing them (the
    /// reference checks `Nats-Expected-Last-Msg-Id` only then, with the
    /// message already counted pending): they never persist, so while any
    /// is counted `persisted` moves only with a stored message.
    lost: u32,
    /// The commit came while messages were not all persisted; later
    /// messages are ignored, and the PubAck waits for the last one to
    /// persist (after a refused message under `gap: ok` followed by a
    /// repeat, or a lost message, it never does, as in the reference).
    committing: bool,
}

impl Open {
    /// The invariants, `pending` while the stream stores the last message
    /// taken.
    fn check(&self, pending: bool) {
        assert!(self.flowed <= self.persisted, "flow ack past persisted");
        assert!(self.persisted <= self.last, "persisted past taken");
        assert!(self.ack_every >= 1, "a flow step of zero");
        if !self.gap_ok && !self.committing && self.lost == 0 {
            let persisted = self.persisted + u64::from(pending);
            assert_eq!(persisted, self.last, "gap: fail batch behind");
        }
    }
}

/// A stream's open fast batches.
#[derive(Debug, Default)]
pub struct FastBatches {
    open: BTreeMap<Bytes, Open>,
    /// The server's `limits { batch { } }` as they apply to fast batches.
    pub limits: FastLimits,
}

impl FastBatches {
    /// How many batches are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Forget every batch (the stream no longer allows them).
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// The earliest time an open batch times out.
    pub fn next_deadline(&self) -> Option<WallTime> {
        self.open.values().map(|open| open.deadline).min()
    }

    /// Drop the batches idle past their deadline.
    pub fn expire(&mut self, now: WallTime) {
        self.open.retain(|_, open| open.deadline > now);
    }

    fn deadline(&self, now: WallTime) -> WallTime {
        let timeout = u64::try_from(self.limits.timeout.as_nanos()).unwrap_or(u64::MAX);
        WallTime(now.0.saturating_add(timeout))
    }

    /// A message with fast batch reply `reply`, on a stream that allows
    /// fast batches (the stream made its own checks first: sealed, size,
    /// disabled, pattern); `headers` are its own. The caller has run
    /// [`FastBatches::expire`] for `now` first.
    pub fn begin(
        &mut self,
        reply: &FastReply<'_>,
        headers: &[u8],
        now: WallTime,
        context: &Context<'_>,
        answers: &mut Vec<Answer>,
    ) -> Begin {
        let refused = |kind: K| Begin::Refused(PublishError::Rejected(kind));
        if reply.id.len() > super::batch::MAX_ID_LEN {
            return refused(K::BatchPublishInvalidBatchID);
        }
        if !self.open.contains_key(reply.id) {
            // 2.15.1 opens a batch only with its first message; a ping
            // on an unknown batch is refused too (checked against it).
            if reply.seq != 1 || reply.op == Op::Ping {
                return refused(K::BatchPublishUnknownBatchID);
            }
            if self.open.len() >= self.limits.inflight || !context.room {
                return refused(K::BatchPublishTooManyInflight);
            }
            let ack_every = match self.open.is_empty() {
                // Alone, the batch gets what it asks for; beside others it
                // starts at one and ramps up.
                true => reply.flow.min(FLOW_SHARE),
                false => 1,
            };
            let open = Open {
                deadline: now,
                last: 0,
                persisted: 0,
                flowed: 0,
                stream_seq: 0,
                ack_every,
                ack_every_max: reply.flow,
                gap_ok: reply.gap_ok,
                lost: 0,
                committing: false,
            };
            self.open.insert(Bytes::copy_from_slice(reply.id), open);
        }
        let stripped = match super::batch::strip_required_api_level(headers) {
            Ok(stripped) => stripped,
            Err(error) => {
                self.open.remove(reply.id);
                return Begin::Refused(error);
            }
        };
        let deadline = self.deadline(now);
        let open = self.open.get_mut(reply.id).expect("opened above");
        // A committing batch waits out its hold: no message extends it.
        if !open.committing {
            open.deadline = deadline;
        }
        let begin = if reply.op == Op::Ping {
            self.ping(reply, context, answers);
            Begin::Done
        } else {
            self.take(reply, stripped, context, answers)
        };
        if let Some(open) = self.open.get(reply.id) {
            open.check(matches!(begin, Begin::Store { .. }));
        }
        begin
    }

    /// A ping: report a gap up to the ping's sequence, else repeat the
    /// last flow ack.
    fn ping(&mut self, reply: &FastReply<'_>, context: &Context<'_>, answers: &mut Vec<Answer>) {
        let open = self.open.get_mut(reply.id).expect("the caller found it");
        if reply.seq > open.last {
            answers.push(Answer::Now(gap_report(open.last + 1, reply.seq + 1)));
            if open.gap_ok {
                open.last = reply.seq;
                if open.lost == 0 {
                    open.persisted = open.last;
                }
                if self.check_flow(reply.id, answers) {
                    return;
                }
            } else if self.commit(reply.id, context, answers) {
                return;
            }
        }
        let open = &self.open[reply.id];
        answers.push(Answer::Durable {
            through: open.stream_seq,
            payload: flow_ack(open.flowed, open.ack_every),
        });
    }

    /// A message to store, unless it is out of order or ends the batch.
    fn take(
        &mut self,
        reply: &FastReply<'_>,
        headers: Option<Bytes>,
        context: &Context<'_>,
        answers: &mut Vec<Answer>,
    ) -> Begin {
        let open = self.open.get_mut(reply.id).expect("the caller found it");
        if open.committing {
            // The publisher waits for the PubAck; later messages are moot.
            return Begin::Done;
        }
        let expected = open.last + 1;
        if reply.seq != expected {
            // 2.15.1 reports a repeated (backward) sequence as a gap too.
            answers.push(Answer::Now(gap_report(expected, reply.seq)));
            if !(open.gap_ok && reply.seq > expected) {
                // A repeat, or a gap the batch does not allow: it ends
                // with what it has.
                self.commit(reply.id, context, answers);
                return Begin::Done;
            }
        }
        open.last = reply.seq;
        if reply.op == Op::CommitEob {
            // The marker is not a message: the batch ends before it.
            open.last -= 1;
            if open.lost == 0 {
                open.persisted = open.last;
            }
            self.commit(reply.id, context, answers);
            return Begin::Done;
        }
        if reply.op == Op::Commit {
            // Not yet persisted: the PubAck follows the store.
            let done = self.commit(reply.id, context, answers);
            debug_assert!(!done, "a commit message is stored before the PubAck");
        }
        let open = &self.open[reply.id];
        if reply.seq == 1 && !reply.commits() && !context.no_ack {
            answers.push(Answer::Now(flow_ack(0, open.ack_every)));
        }
        Begin::Store { headers }
    }

    /// After [`Begin::Store`]: what became of the message.
    pub fn finish(
        &mut self,
        reply: &FastReply<'_>,
        stored: Stored<'_>,
        context: &Context<'_>,
        answers: &mut Vec<Answer>,
    ) {
        let open = self
            .open
            .get_mut(reply.id)
            .expect("a batch asked to store stays open until finished");
        assert_eq!(open.last, reply.seq, "finishing another message");
        match stored {
            Stored::At(seq) => {
                open.stream_seq = seq;
                open.persisted = open.last;
                if open.committing {
                    let done = self.commit(reply.id, context, answers);
                    debug_assert!(done, "every message persisted");
                } else {
                    self.check_flow(reply.id, answers);
                }
            }
            Stored::Duplicate(seq) => {
                if open.lost == 0 {
                    open.persisted = reply.seq;
                    self.check_flow(reply.id, answers);
                }
                if !reply.commits() {
                    return;
                }
                let open = &self.open[reply.id];
                if !open.gap_ok && open.last == 1 {
                    // A batch of one duplicate is acked as a duplicate.
                    self.open.remove(reply.id);
                    answers.push(Answer::Durable {
                        through: seq,
                        payload: commit_ack(context.ack_prefix, seq, true, reply.id, reply.seq),
                    });
                    return;
                }
                self.commit(reply.id, context, answers);
            }
            Stored::Refused(error) if lost_in_store(error) => {
                // Refused as a publish is, whatever the batch's mode; the
                // batch goes on, one message short of persisting forever.
                open.lost += 1;
                if !context.no_ack {
                    answers.push(Answer::Refused(error.clone()));
                }
            }
            Stored::Refused(error) => {
                if !open.gap_ok && open.last == 1 {
                    // Refused at once, as a single publish would be.
                    self.open.remove(reply.id);
                    answers.push(Answer::Refused(error.clone()));
                    return;
                }
                let api_error = super::wire::api_error(error);
                answers.push(Answer::Now(error_report(reply.seq, &api_error)));
                if open.gap_ok && !reply.commits() {
                    return;
                }
                open.last -= 1;
                if open.lost == 0 {
                    open.persisted = open.last;
                }
                self.commit(reply.id, context, answers);
            }
        }
        if let Some(open) = self.open.get(reply.id) {
            open.check(false);
        }
    }

    /// End batch `id`: with every message persisted, the PubAck now and
    /// the batch gone (returns true); else it waits, committing.
    fn commit(&mut self, id: &[u8], context: &Context<'_>, answers: &mut Vec<Answer>) -> bool {
        let open = self.open.get_mut(id).expect("committing an open batch");
        if open.last != open.persisted {
            if !open.committing {
                // The message being taken set the deadline to one timeout
                // from now: the hold counts from now too.
                let extra = self.limits.timeout.saturating_mul(COMMITTING_HOLD - 1);
                let extra = u64::try_from(extra.as_nanos()).unwrap_or(u64::MAX);
                open.deadline = WallTime(open.deadline.0.saturating_add(extra));
            }
            open.committing = true;
            return false;
        }
        let open = self.open.remove(id).expect("found above");
        answers.push(Answer::Durable {
            through: open.stream_seq,
            payload: commit_ack(context.ack_prefix, open.stream_seq, false, id, open.last),
        });
        true
    }

    /// A flow ack once `ack_every` more messages are persisted, naming
    /// the last whole step (several steps at once give one ack); the step
    /// doubles towards the batch's share of the stream's flow or halves
    /// back to it. Returns whether an ack was sent.
    fn check_flow(&mut self, id: &[u8], answers: &mut Vec<Answer>) -> bool {
        let batches = self.open.len();
        let open = self.open.get_mut(id).expect("an open batch");
        let every = u64::from(open.ack_every);
        if open.persisted < open.flowed + every {
            return false;
        }
        open.flowed += (open.persisted - open.flowed) / every * every;
        let share = u16::try_from(usize::from(FLOW_SHARE) / batches.max(1)).unwrap_or(1);
        let max = share.max(1).min(open.ack_every_max);
        if open.ack_every < max {
            open.ack_every = open.ack_every.saturating_mul(2).min(max);
        } else if open.ack_every > max {
            open.ack_every = (open.ack_every / 2).max(max);
        }
        answers.push(Answer::Durable {
            through: open.stream_seq,
            payload: flow_ack(open.flowed, open.ack_every),
        });
        true
    }
}

#[cfg(test)]
mod tests;
