//! Atomic batch publish (`allow_atomic`, `Nats-Batch-Id`).
//!
//! Role: stage a stream's open batches until their commit, and decide, for
//! each message carrying a batch id, what the stream does with it, in the
//! order and with the errors of nats-server 2.15.1: refuse it, stage it
//! (the publisher gets an empty ack), or commit the whole batch. The
//! commit's consistency checks that differ from a single publish (a
//! message id seen twice, an expected sequence past the first message, a
//! rollup after the subject was written) are made here over the staged
//! messages before anything is stored ([`precheck`]); the stream then
//! stores them one after the other in one call, so nothing else runs in
//! between and a refusal leaves nothing stored.
//!
//! Invariants: a batch in `open` holds messages `1..=n` of its sequence
//! without a gap; at most [`MAX_INFLIGHT`] batches are open; one idle for
//! [`TIMEOUT`] is dropped (a `timeout` abandoned advisory). Staged
//! messages live in memory only: a restart forgets every open batch, as
//! the reference removes its staging directories at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::errors::ApiErrorKind as K;
use super::stream::PublishError;
use crate::protocol::find_header;
use crate::time::WallTime;

pub const BATCH_ID: &[u8] = b"Nats-Batch-Id";
pub const BATCH_SEQ: &[u8] = b"Nats-Batch-Sequence";
pub const BATCH_COMMIT: &[u8] = b"Nats-Batch-Commit";
const REQUIRED_API_LEVEL: &[u8] = b"Nats-Required-Api-Level";

/// Open batches per stream, as the reference's default.
pub const MAX_INFLIGHT: usize = 50;
/// Open batches on the whole server, as the reference's default.
pub const MAX_INFLIGHT_TOTAL: usize = 1000;
/// Messages per batch, the commit marker (`eob`) not counted.
pub const MAX_SIZE: u64 = 1000;
/// A batch with no message for this long is dropped.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest batch id (atomic or fast).
pub(super) const MAX_ID_LEN: usize = 64;

/// Why a batch was dropped, as the abandoned advisory words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    Timeout,
    Large,
    Incomplete,
    Unsupported,
}

impl Abandoned {
    pub fn reason(self) -> &'static str {
        match self {
            Abandoned::Timeout => "timeout",
            Abandoned::Large => "large",
            Abandoned::Incomplete => "incomplete",
            Abandoned::Unsupported => "unsupported",
        }
    }
}

/// One staged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

#[derive(Debug)]
struct Open {
    msgs: Vec<Staged>,
    /// Dropped when this passes without another message.
    deadline: WallTime,
}

/// What to do with one batch message.
#[derive(Debug)]
pub enum Step {
    /// Answer with this error; the batch (if it was open) is gone, with an
    /// advisory when `abandoned` says why.
    Refused {
        error: PublishError,
        abandoned: Option<Abandoned>,
    },
    /// Staged: answer with an empty ack.
    Staged,
    /// Commit these messages, in order (the commit message included, an
    /// `eob` marker left out and its header moved to the last one).
    Commit(Vec<Staged>),
}

/// A stream's open batches.
#[derive(Debug, Default)]
pub struct Batches {
    open: BTreeMap<Bytes, Open>,
    /// The server's `limits { batch { } }` (the reference's defaults
    /// unless set).
    pub limits: BatchLimits,
}

/// How many batches a stream may have open, how many messages one may
/// hold, and how long one may wait for its next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub inflight: usize,
    pub size: u64,
    pub timeout: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            inflight: MAX_INFLIGHT,
            size: MAX_SIZE,
            timeout: TIMEOUT,
        }
    }
}

impl Batches {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// How many batches are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// The earliest time an open batch times out.
    pub fn next_deadline(&self) -> Option<WallTime> {
        self.open.values().map(|open| open.deadline).min()
    }

    /// Drop the batches idle past their deadline; their ids.
    pub fn expire(&mut self, now: WallTime) -> Vec<Bytes> {
        let gone: Vec<Bytes> = self
            .open
            .iter()
            .filter(|(_, open)| open.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.open.remove(id);
        }
        gone
    }

    /// A message carrying batch id `id` (non-empty), on a stream with
    /// `allow_atomic` (`allowed`); `size` is its headers plus payload and
    /// `max_size` the stream's `max_msg_size`; `room` whether the server
    /// may open another batch ([`MAX_INFLIGHT_TOTAL`]). The caller has run
    /// [`Batches::expire`] for `now` first.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        id: &[u8],
        allowed: bool,
        room: bool,
        size: u64,
        max_size: Option<u64>,
        now: WallTime,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Step {
        let refuse =
            |error: PublishError, abandoned: Option<Abandoned>| Step::Refused { error, abandoned };
        let kind = |kind: K| PublishError::Rejected(kind);
        if max_size.is_some_and(|max| size > max) {
            return refuse(PublishError::TooLarge, None);
        }
        if !allowed {
            return refuse(kind(K::AtomicPublishDisabled), None);
        }
        if id.len() > MAX_ID_LEN {
            return refuse(kind(K::AtomicPublishInvalidBatchID), None);
        }
        let Some(seq) = find_header(headers, BATCH_SEQ).and_then(parse_u64) else {
            return refuse(kind(K::AtomicPublishMissingSeq), None);
        };
        let commit = find_header(headers, BATCH_COMMIT);
        let eob = commit == Some(b"eob");
        // Counted without an end-of-batch marker.
        let size = seq - u64::from(eob && seq > 0);
        if !self.open.contains_key(id) {
            if seq != 1 {
                if size > self.limits.size {
                    return refuse(PublishError::BatchTooLarge(self.limits.size), None);
                }
                return refuse(kind(K::AtomicPublishIncompleteBatch), None);
            }
            if self.open.len() >= self.limits.inflight || !room {
                return refuse(kind(K::AtomicPublishTooManyInflight), None);
            }
            self.open.insert(
                Bytes::copy_from_slice(id),
                Open {
                    msgs: Vec::new(),
                    deadline: now,
                },
            );
        }
        if commit.is_some_and(|value| value != b"1" && value != b"eob") {
            self.open.remove(id);
            return refuse(kind(K::AtomicPublishInvalidBatchCommit), None);
        }
        let headers = match strip_required_api_level(headers) {
            Ok(stripped) => stripped.unwrap_or_else(|| Bytes::copy_from_slice(headers)),
            Err(error) => {
                self.open.remove(id);
                return refuse(error, Some(Abandoned::Unsupported));
            }
        };
        let open = self.open.get_mut(id).expect("opened above");
        let timeout = u64::try_from(self.limits.timeout.as_nanos()).unwrap_or(u64::MAX);
        open.deadline = WallTime(now.0.saturating_add(timeout));
        let expected = open.msgs.len() as u64 + 1;
        if seq != expected || (seq == 1 && eob) {
            self.open.remove(id);
            return refuse(
                kind(K::AtomicPublishIncompleteBatch),
                Some(Abandoned::Incomplete),
            );
        }
        if size > self.limits.size {
            self.open.remove(id);
            return refuse(
                PublishError::BatchTooLarge(self.limits.size),
                Some(Abandoned::Large),
            );
        }
        let open = self.open.get_mut(id).expect("still open");
        if commit.is_none() {
            open.msgs.push(Staged {
                subject: Bytes::copy_from_slice(subject),
                headers,
                payload: Bytes::copy_from_slice(payload),
            });
            return Step::Staged;
        }
        let mut msgs = self.open.remove(id).expect("still open").msgs;
        if eob {
            // The last real message carries the commit instead.
            let last = msgs.last_mut().expect("an eob batch has a message");
            last.headers = add_header(&last.headers, BATCH_COMMIT, b"1");
        } else {
            msgs.push(Staged {
                subject: Bytes::copy_from_slice(subject),
                headers,
                payload: Bytes::copy_from_slice(payload),
            });
        }
        Step::Commit(msgs)
    }
}

/// What the stream knows for [`precheck`].
pub struct Known<'a> {
    pub stream: &'a str,
    /// The stream's last sequence before the batch.
    pub last_seq: u64,
    pub allow_rollup: bool,
    pub deny_purge: bool,
    /// Whether an id is in the duplicate window already.
    pub seen_id: &'a dyn Fn(&[u8]) -> bool,
    /// The last sequence of each subject [`checked_subjects`] named (0:
    /// none).
    pub last_of: &'a BTreeMap<Bytes, u64>,
}

/// The subjects whose last sequence [`precheck`] compares
/// (`Nats-Expected-Last-Subject-Sequence`), for the caller to look up.
pub fn checked_subjects(msgs: &[Staged], subjects: &[Bytes]) -> BTreeSet<Bytes> {
    msgs.iter()
        .zip(subjects)
        .filter(|(msg, _)| {
            find_header(&msg.headers, b"Nats-Expected-Last-Subject-Sequence").is_some()
        })
        .map(|(msg, subject)| {
            find_header(&msg.headers, b"Nats-Expected-Last-Subject-Sequence-Subject")
                .filter(|s| !s.is_empty())
                .map_or_else(|| subject.clone(), Bytes::copy_from_slice)
        })
        .collect()
}

/// The commit's checks that need the batch as a whole, message by message
/// in the reference's order, before anything is stored; `subjects` are the
/// messages' subjects after the stream's transform.
pub fn precheck(
    msgs: &[Staged],
    subjects: &[Bytes],
    known: &Known<'_>,
) -> Result<(), PublishError> {
    let mut ids: BTreeSet<&[u8]> = BTreeSet::new();
    let mut written: BTreeSet<&[u8]> = BTreeSet::new();
    let mut checked: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (index, (msg, subject)) in msgs.iter().zip(subjects).enumerate() {
        let headers = &msg.headers[..];
        if find_header(headers, b"Nats-Expected-Last-Msg-Id").is_some() {
            return Err(PublishError::BatchUnsupportedHeader(
                "Nats-Expected-Last-Msg-Id",
            ));
        }
        super::stream::check_expected_stream(headers, known.stream)?;
        if let Some(id) = find_header(headers, b"Nats-Msg-Id").filter(|id| !id.is_empty()) {
            if !ids.insert(id) || (known.seen_id)(id) {
                return Err(PublishError::Rejected(
                    K::AtomicPublishContainsDuplicateMessage,
                ));
            }
        }
        if let Some(expected) = find_header(headers, b"Nats-Expected-Last-Sequence") {
            let last = known.last_seq + index as u64;
            if parse_u64(expected) != Some(last) {
                return Err(PublishError::WrongLastSequence(last));
            }
            if index > 0 {
                return Err(PublishError::Rejected(K::StreamWrongLastSequenceConstant));
            }
        }
        if let Some(expected) = find_header(headers, b"Nats-Expected-Last-Subject-Sequence") {
            let on = find_header(headers, b"Nats-Expected-Last-Subject-Sequence-Subject")
                .filter(|s| !s.is_empty())
                .unwrap_or(subject);
            if written.contains(on) {
                return Err(PublishError::Rejected(K::StreamWrongLastSequenceConstant));
            }
            let last = *checked
                .entry(on.to_vec())
                .or_insert_with(|| known.last_of.get(on).copied().unwrap_or(0));
            if parse_u64(expected) != Some(last) {
                return Err(PublishError::WrongLastSequence(last));
            }
        }
        if let Some(rollup) = find_header(headers, b"Nats-Rollup") {
            if !known.allow_rollup || known.deny_purge {
                return Err(PublishError::RollupNotPermitted);
            }
            match rollup {
                b"sub" if written.contains(&subject[..]) => {
                    return Err(PublishError::RollupFailed("batch rollup sub invalid"))
                }
                b"all" if index > 0 => {
                    return Err(PublishError::RollupFailed("batch rollup all invalid"))
                }
                b"sub" | b"all" => {}
                other => {
                    return Err(PublishError::InvalidRollup(
                        String::from_utf8_lossy(other).into_owned(),
                    ))
                }
            }
        }
        written.insert(subject);
    }
    Ok(())
}

/// `Nats-Required-Api-Level` on a batch message: refused when it asks for
/// more than this server speaks (or is not a number); else the headers
/// without it (`None`: it was not there, the headers stay as they are).
pub(super) fn strip_required_api_level(headers: &[u8]) -> Result<Option<Bytes>, PublishError> {
    if find_header(headers, REQUIRED_API_LEVEL).is_none_or(|level| level.is_empty()) {
        return Ok(None);
    }
    if super::requests::required_level_unmet(headers) {
        return Err(PublishError::Rejected(K::RequiredApiLevel));
    }
    let stripped = remove_header(headers, REQUIRED_API_LEVEL);
    debug_assert!(find_header(&stripped, REQUIRED_API_LEVEL).is_none());
    Ok(Some(stripped))
}

/// How many batches are open, of each kind (on a stream, or on the
/// server: the machine sums the streams' counts for the server's limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenBatches {
    pub atomic: usize,
    pub fast: usize,
}

impl OpenBatches {
    /// This count after one stream's open batches went from `before` to
    /// `after` (the count includes `before`).
    pub fn moved(self, before: OpenBatches, after: OpenBatches) -> OpenBatches {
        let shift = |total: usize, before: usize, after: usize| {
            (total + after)
                .checked_sub(before)
                .expect("a stream's open batches are part of the total")
        };
        OpenBatches {
            atomic: shift(self.atomic, before.atomic, after.atomic),
            fast: shift(self.fast, before.fast, after.fast),
        }
    }
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `headers` without `name` (every occurrence).
fn remove_header(headers: &[u8], name: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(headers.len());
    for line in headers.split_inclusive(|&b| b == b'\n') {
        let is_it = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| line[..colon].eq_ignore_ascii_case(name));
        if !is_it {
            out.extend_from_slice(line);
        }
    }
    Bytes::from(out)
}

/// `headers` (a `NATS/1.0` block) with `name: value` added at the end.
fn add_header(headers: &[u8], name: &[u8], value: &[u8]) -> Bytes {
    let body = headers.strip_suffix(b"\r\n").unwrap_or(headers);
    let mut out = Vec::with_capacity(headers.len() + name.len() + value.len() + 4);
    out.extend_from_slice(body);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: WallTime = WallTime(1_000);

    fn headers(seq: &str, extra: &str) -> Vec<u8> {
        format!("NATS/1.0\r\nNats-Batch-Id: b\r\nNats-Batch-Sequence: {seq}\r\n{extra}\r\n")
            .into_bytes()
    }

    fn step(batches: &mut Batches, seq: &str, extra: &str) -> Step {
        let h = headers(seq, extra);
        batches.step(b"b", true, true, 10, None, NOW, b"s", &h, b"x")
    }

    #[test]
    fn a_batch_is_staged_then_committed_whole() {
        let mut batches = Batches::default();
        assert!(matches!(step(&mut batches, "1", ""), Step::Staged));
        assert!(matches!(step(&mut batches, "2", ""), Step::Staged));
        let Step::Commit(msgs) = step(&mut batches, "3", "Nats-Batch-Commit: 1\r\n") else {
            panic!("a commit")
        };
        assert_eq!(msgs.len(), 3);
        assert!(batches.is_empty());
    }

    #[test]
    fn an_end_of_batch_marker_is_not_stored_and_moves_the_commit() {
        let mut batches = Batches::default();
        assert!(matches!(step(&mut batches, "1", ""), Step::Staged));
        let Step::Commit(msgs) = step(&mut batches, "2", "Nats-Batch-Commit: eob\r\n") else {
            panic!("a commit")
        };
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            &msgs[0].headers[..],
            b"NATS/1.0\r\nNats-Batch-Id: b\r\nNats-Batch-Sequence: 1\r\nNats-Batch-Commit: 1\r\n\r\n"
        );
    }

    #[test]
    fn gaps_timeouts_and_limits_drop_the_batch() {
        let mut batches = Batches::default();
        step(&mut batches, "1", "");
        let Step::Refused { error, abandoned } = step(&mut batches, "3", "") else {
            panic!("refused")
        };
        assert_eq!(
            error,
            PublishError::Rejected(K::AtomicPublishIncompleteBatch)
        );
        assert_eq!(abandoned, Some(Abandoned::Incomplete));
        assert!(batches.is_empty());
        step(&mut batches, "1", "");
        assert_eq!(
            batches.next_deadline(),
            Some(WallTime(1_000 + 10_000_000_000))
        );
        assert_eq!(
            batches.expire(WallTime(20_000_000_000)),
            [Bytes::from_static(b"b")]
        );
        for n in 0..MAX_INFLIGHT {
            let h = headers("1", "");
            let id = format!("id{n}");
            batches.step(id.as_bytes(), true, true, 10, None, NOW, b"s", &h, b"x");
        }
        let Step::Refused { error, .. } = step(&mut batches, "1", "") else {
            panic!("refused")
        };
        assert_eq!(
            error,
            PublishError::Rejected(K::AtomicPublishTooManyInflight)
        );
    }

    #[test]
    fn the_required_api_level_header_is_checked_and_removed() {
        let mut batches = Batches::default();
        step(&mut batches, "1", "Nats-Required-Api-Level: 1\r\n");
        let Step::Commit(msgs) = step(&mut batches, "2", "Nats-Batch-Commit: 1\r\n") else {
            panic!("a commit")
        };
        assert_eq!(&msgs[0].headers[..], &headers("1", "")[..]);
        let mut batches = Batches::default();
        let Step::Refused { error, abandoned } =
            step(&mut batches, "1", "Nats-Required-Api-Level: 99\r\n")
        else {
            panic!("refused")
        };
        assert_eq!(error, PublishError::Rejected(K::RequiredApiLevel));
        assert_eq!(abandoned, Some(Abandoned::Unsupported));
    }
}
