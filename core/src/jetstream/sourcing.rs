//! Mirrors and sources between the streams of one server.
//!
//! Role: feed a stream with `mirror` or `sources` from its origin streams'
//! stores. The reference reads each origin through an internal push
//! consumer with flow control; inside one machine the origin's store is at
//! hand, so a feed reads it directly, from the sequence after the last one
//! it took, whenever an origin grows (a publish, an expiry marker, another
//! feed), when the feed is set up (create, update, start-up), and when an
//! origin it waits for is created.
//!
//! A mirror keeps the origin's sequences and times: it skips the sequences
//! the origin removed or its filter passed by, and its progress is its own
//! last sequence. A source appends through the stream's publish path
//! (transform, dedupe, limits) with a `Nats-Stream-Source` header naming the
//! origin, its sequence, the source's filter and destination, the original
//! subject and the origin's identity, as the reference writes it; at start
//! the progress of each source is found again from the last such header in
//! the stream (the reference's fallback, when its store keeps none).
//!
//! Invariants:
//! - A feed never takes an origin sequence at or below one it took: `next`
//!   only grows while the feed lives.
//! - Feeding never recurses without bound: the streams fed in one round
//!   are at most the streams there are times over (the config checks
//!   forbid cycles; the bound keeps a missed one from hanging the machine).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::api::{StreamConfig, StreamSource, StreamSourceInfo, SubjectTransformConfig};
use super::errors::{ApiError, ApiErrorKind};
use super::link::StreamId;
use super::machine::JetStream;
use super::stream::{append_headers, Publish, PublishError, Published};
use crate::protocol::{find_header, without_headers};
use crate::server::LogLevel;
use crate::store::{Disk, Filter, StoredMsg};
use crate::subject::SubjectTransform;
use crate::time::WallTime;

/// The header a sourced message carries.
const STREAM_SOURCE: &[u8] = b"Nats-Stream-Source";

/// Messages taken between two drains of the fed stream's store: bounds
/// what a long catch-up buffers before it is written, and how stale the
/// byte counts the resource checks read get.
const DRAIN_EVERY: u64 = 1024;

/// One mirror or source of a stream.
#[derive(Debug)]
pub struct Feed {
    /// The origin as configured.
    pub source: StreamSource,
    filter: Filter,
    /// `(source, transform)` of each subject transform, in order.
    transforms: Vec<(String, Option<SubjectTransform>)>,
    /// The next origin sequence to read; 0 until the start is decided.
    pub(super) next: u64,
    /// The origin sequence last taken (0: none).
    pub last_taken: u64,
    /// The identity of the origin `next` counts in (empty: not known): a
    /// source whose origin was deleted and created again starts over.
    pub(super) ident: String,
    pub lag: u64,
    /// When the feed last took a message or was set up.
    pub last_heard: Option<WallTime>,
    pub error: Option<ApiError>,
    /// For an `external` origin, or one read through a durable
    /// `consumer`: the link to its consumer there
    /// ([`super::remote_feed`]); such a feed never reads a store here.
    pub(super) remote: Option<super::remote_feed::Remote>,
}

/// A stream's mirror, or its sources.
#[derive(Debug, Default)]
pub struct Feeds {
    pub mirror: bool,
    pub feeds: Vec<Feed>,
}

impl Feed {
    fn new(source: &StreamSource) -> Feed {
        let transforms: Vec<(String, Option<SubjectTransform>)> = source
            .subject_transforms
            .iter()
            .map(|t| {
                let src = if t.src.is_empty() { ">" } else { &t.src };
                let transform = (!t.dest.is_empty())
                    .then(|| SubjectTransform::new(src, &t.dest).ok())
                    .flatten();
                (src.to_string(), transform)
            })
            .collect();
        let filter = if transforms.is_empty() {
            Filter::subject(source.filter_subject.as_bytes())
        } else if transforms.iter().any(|(src, _)| src == ">") {
            Filter::All
        } else {
            Filter::Subjects(
                transforms
                    .iter()
                    .map(|(src, _)| Bytes::copy_from_slice(src.as_bytes()))
                    .collect(),
            )
        };
        Feed {
            source: source.clone(),
            filter,
            transforms,
            next: 0,
            last_taken: 0,
            ident: String::new(),
            lag: 0,
            last_heard: None,
            error: None,
            remote: None,
        }
    }

    /// The subject a message of the origin is stored under: the first
    /// transform whose source matches it maps it.
    fn subject_for(&self, subject: &Bytes) -> Bytes {
        for (_, transform) in &self.transforms {
            let Some(transform) = transform else {
                continue;
            };
            let mut mapped = Vec::new();
            if transform.apply(subject, &mut mapped) {
                return Bytes::from(mapped);
            }
        }
        subject.clone()
    }

    /// The reference's index name split in its three parts: origin (with
    /// `:<hash of the api prefix>` when external, then `:C=<hash of the
    /// name>` when read through a durable consumer), the filters, the
    /// destinations (several joined by form feeds).
    pub(super) fn index_parts(&self) -> (String, String, String) {
        let mut head = self.source.name.clone();
        if let Some(external) = &self.source.external {
            head.push(':');
            head.push_str(&crate::format::short_hash(external.api.as_bytes()));
        }
        if let Some(durable) = &self.source.consumer {
            head.push_str(":C=");
            head.push_str(&crate::format::short_hash(durable.name.as_bytes()));
        }
        let or_all = |text: &str| {
            if text.is_empty() {
                ">".to_string()
            } else {
                text.to_string()
            }
        };
        if self.source.subject_transforms.is_empty() {
            return (head, or_all(&self.source.filter_subject), ">".to_string());
        }
        let joined = |side: fn(&SubjectTransformConfig) -> &str| {
            let parts: Vec<String> = self
                .source
                .subject_transforms
                .iter()
                .map(|t| or_all(side(t)))
                .collect();
            parts.join("\u{c}")
        };
        (head, joined(|t| &t.src), joined(|t| &t.dest))
    }

    fn info(&self, wall: WallTime, mirror: bool) -> StreamSourceInfo {
        StreamSourceInfo {
            name: self.source.name.clone(),
            external: self.source.external.clone(),
            lag: self.lag,
            seq: if mirror { 0 } else { self.last_taken },
            active: self.last_heard.map_or(-1, |at| {
                i64::try_from(wall.0.saturating_sub(at.0)).unwrap_or(i64::MAX)
            }),
            error: self.error.clone(),
            filter_subject: self.source.filter_subject.clone(),
            subject_transforms: self.source.subject_transforms.clone(),
        }
    }
}

/// The reference's stream identity: an 8-character hash of its creation
/// time (RFC 3339 with nanoseconds), telling a recreated origin apart.
pub fn stream_identity(created: WallTime) -> String {
    crate::format::short_hash(crate::format::rfc3339_nanos(created).as_bytes())
}

/// A client's publish may not carry a (non-empty) `Nats-Stream-Source`:
/// only a source writes it.
pub fn check_client_headers(headers: &[u8]) -> Result<(), PublishError> {
    match find_header(headers, STREAM_SOURCE) {
        Some(value) if !value.is_empty() => Err(PublishError::SourceHeaderNotAllowed),
        _ => Ok(()),
    }
}

/// `headers` without the lines whose key starts with any of `prefixes`;
/// empty when no header is left.
fn strip_headers(headers: &[u8], prefixes: &[&[u8]]) -> Vec<u8> {
    without_headers(headers, |key| prefixes.iter().any(|p| key.starts_with(p)))
}

/// The index name, origin sequence and origin identity in a
/// `Nats-Stream-Source` value.
fn parse_source_header(value: &[u8]) -> Option<(String, u64, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let name = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let filter = parts.next()?;
    let dest = parts.next()?;
    let ident = parts.nth(1).unwrap_or_default().to_string();
    Some((format!("{name} {filter} {dest}"), seq, ident))
}

impl<D: Disk + Clone> JetStream<D> {
    /// (Re)build the feeds of stream `id` from its configuration, keeping
    /// the progress of feeds that stay, and feed it.
    pub(super) fn setup_feeds(&mut self, id: StreamId) {
        self.install_feeds(id);
        self.feed_round(vec![id]);
    }

    /// (Re)build the feeds of stream `id`, not feeding it yet.
    pub(super) fn install_feeds(&mut self, id: StreamId) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        let config: &StreamConfig = &entry.meta.config;
        let mirror = config.mirror.is_some();
        let wanted: Vec<StreamSource> = config
            .mirror
            .iter()
            .chain(config.sources.iter())
            .cloned()
            .collect();
        let account = entry.meta.account.clone();
        if wanted.is_empty() {
            if let Some(old) = self.feeds.remove(&id) {
                self.drop_feeds(id, &account, old);
            }
            return;
        }
        let mut old = self.feeds.remove(&id).unwrap_or_default();
        let mut feeds = Vec::new();
        let mut unknown = Vec::new();
        for source in &wanted {
            match old.feeds.iter().position(|f| &f.source == source) {
                Some(at) => feeds.push(old.feeds.remove(at)),
                None => {
                    unknown.push(feeds.len());
                    feeds.push(Feed::new(source));
                }
            }
        }
        if !mirror && !unknown.is_empty() {
            // Where each new source left off, from the stream's own
            // messages (newest first).
            let mut missing: BTreeMap<String, usize> = unknown
                .iter()
                .map(|&i| {
                    let (a, b, c) = feeds[i].index_parts();
                    (format!("{a} {b} {c}"), i)
                })
                .collect();
            let store = entry.stream.store_mut();
            let state = store.state();
            let mut seq = state.last_seq;
            while seq >= state.first_seq.max(1) && !missing.is_empty() {
                if let Ok(msg) = store.load_msg(seq) {
                    if let Some((iname, origin_seq, ident)) =
                        find_header(&msg.headers, STREAM_SOURCE).and_then(parse_source_header)
                    {
                        if let Some(i) = missing.remove(&iname) {
                            feeds[i].next = origin_seq + 1;
                            feeds[i].last_taken = origin_seq;
                            feeds[i].ident = ident;
                        }
                    }
                }
                seq -= 1;
            }
        }
        self.drop_feeds(id, &account, old);
        for &i in &unknown {
            // Through the API: an origin out of reach, or a durable
            // consumer the user made there (whose acks must count).
            if feeds[i].source.external.is_some() || feeds[i].source.consumer.is_some() {
                feeds[i].remote = Some(self.new_remote(mirror));
            }
        }
        self.feeds.insert(id, Feeds { mirror, feeds });
    }

    /// Feeds of stream `id` that are gone (a stream deleted or updated):
    /// remote ones stop listening.
    pub(super) fn drop_feeds(&mut self, id: StreamId, account: &str, feeds: Feeds) {
        for feed in feeds.feeds {
            if let Some(remote) = &feed.remote {
                self.drop_remote(id, account, remote);
            }
        }
    }

    /// Stream `origin` grew (or was created): feed every stream reading it,
    /// and the streams reading those.
    pub(super) fn feed_followers(&mut self, origin: StreamId) {
        if self.feeds.is_empty() {
            return;
        }
        let followers = self.followers_of(origin);
        if !followers.is_empty() {
            self.feed_round(followers);
        }
    }

    pub(super) fn followers_of(&self, origin: StreamId) -> Vec<StreamId> {
        let Some(entry) = self.streams.get(&origin) else {
            return Vec::new();
        };
        let (account, name) = (&entry.meta.account, &entry.meta.config.name);
        self.feeds
            .iter()
            .filter(|(id, feeds)| {
                self.streams
                    .get(id)
                    .is_some_and(|e| &e.meta.account == account)
                    && feeds
                        .feeds
                        .iter()
                        .any(|f| f.remote.is_none() && &f.source.name == name)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn feed_round(&mut self, start: Vec<StreamId>) {
        let mut work: VecDeque<StreamId> = start.into();
        let mut budget = (self.streams.len() + 1).saturating_mul(self.streams.len() + 1);
        while let Some(id) = work.pop_front() {
            if budget == 0 {
                self.log(
                    LogLevel::Warn,
                    "JetStream: mirrors and sources feed each other in a loop; stopped".into(),
                );
                return;
            }
            budget -= 1;
            let first_new = self.streams.get(&id).map(|e| e.stream.state().last_seq + 1);
            if self.feed(id) {
                self.pump_stream(id, first_new);
                for follower in self.followers_of(id) {
                    if !work.contains(&follower) {
                        work.push_back(follower);
                    }
                }
            }
        }
    }

    /// Take what the origins of stream `id` hold past each feed's
    /// progress. Returns whether the stream grew.
    fn feed(&mut self, id: StreamId) -> bool {
        let Some(mut feeds) = self.feeds.remove(&id) else {
            return false;
        };
        let mut grew = false;
        for feed in &mut feeds.feeds {
            grew |= self.feed_one(id, feeds.mirror, feed);
        }
        self.feeds.insert(id, feeds);
        if grew {
            self.undrained.insert(id);
            self.recount(id);
        }
        grew
    }

    fn feed_one(&mut self, id: StreamId, mirror: bool, feed: &mut Feed) -> bool {
        if feed.remote.is_some() {
            // Fed by its consumer on the origin, as messages arrive.
            return false;
        }
        let Some(account) = self.streams.get(&id).map(|e| e.meta.account.clone()) else {
            return false;
        };
        let Some(origin) = self.stream_by_name(&account, &feed.source.name) else {
            feed.error = Some(ApiError::new(ApiErrorKind::StreamNotFound));
            return false;
        };
        feed.error = None;
        if feed.last_heard.is_none() {
            feed.last_heard = Some(self.wall);
        }
        let ident = stream_identity(WallTime(self.streams[&origin].meta.created));
        if !mirror && !feed.ident.is_empty() && feed.ident != ident {
            // The origin was created again: its sequences start over.
            feed.next = 1;
            feed.last_taken = 0;
        }
        feed.ident.clone_from(&ident);
        if feed.next == 0 {
            feed.next = self.start_of(id, origin, mirror, feed);
        }
        let (head, filters, dests) = feed.index_parts();
        let mut grew = false;
        let mut taken = 0u64;
        loop {
            let next = {
                let store = self.streams.get_mut(&origin).expect("found by name");
                store.stream.store_mut().load_next(&feed.filter, feed.next)
            };
            let Ok(msg) = next else {
                feed.lag = 0;
                break;
            };
            let stored = if mirror {
                self.take_mirrored(id, feed, msg.clone())
            } else {
                self.take_sourced(
                    id,
                    feed,
                    &msg,
                    &format!("{head} {} {filters} {dests}", msg.seq),
                    &ident,
                )
            };
            if !stored {
                let origin_store = self.streams.get_mut(&origin).expect("found by name");
                feed.lag = origin_store
                    .stream
                    .store_mut()
                    .count_from(&feed.filter, feed.next)
                    .unwrap_or(0);
                break;
            }
            grew = true;
            feed.next = msg.seq + 1;
            feed.last_taken = msg.seq;
            feed.last_heard = Some(self.wall);
            taken += 1;
            if taken.is_multiple_of(DRAIN_EVERY) {
                let entry = self.streams.get_mut(&id).expect("fed stream exists");
                entry.stream.drain_store(&mut self.actions);
                // The resource checks read the counts: a long catch-up
                // overshoots the limits by one drain's worth at most.
                self.recount(id);
            }
        }
        grew
    }

    /// The first origin sequence a feed without progress reads, as the
    /// reference starts its consumer.
    fn start_of(&mut self, id: StreamId, origin: StreamId, mirror: bool, feed: &Feed) -> u64 {
        let state = self.streams[&id].stream.state();
        if mirror && state.last_seq > 0 {
            return state.last_seq + 1;
        }
        // From the stream's last message time (the reference's guess when
        // a source's progress is lost, as when the stream was purged):
        // strictly after it, since every origin message stored up to then
        // was offered to this feed as it was stored.
        let (at, after) = if feed.source.opt_start_seq > 0 {
            return feed.source.opt_start_seq;
        } else if let Some(time) = feed.source.opt_start_time {
            if !mirror && state.last_ts.0 > 0 && time < state.last_ts {
                (state.last_ts, true)
            } else {
                (time, false)
            }
        } else if !mirror && state.first_seq > 1 && state.last_ts.0 > 0 {
            (state.last_ts, true)
        } else {
            return 1;
        };
        let store = self.streams.get_mut(&origin).expect("origin exists");
        let store = store.stream.store_mut();
        let mut seq = 1;
        loop {
            match store.load_next(&feed.filter, seq) {
                Ok(msg) if msg.ts > at || (msg.ts == at && !after) => return msg.seq,
                Ok(msg) => seq = msg.seq + 1,
                Err(_) => return store.state().last_seq + 1,
            }
        }
    }

    /// Store one origin message in mirror `id`; false when it was not.
    pub(super) fn take_mirrored(&mut self, id: StreamId, feed: &Feed, mut msg: StoredMsg) -> bool {
        msg.subject = feed.subject_for(&msg.subject);
        msg.headers = Bytes::from(strip_headers(
            &msg.headers,
            &[b"Nats-Expected-", b"Nats-Batch-"],
        ));
        let entry = &self.streams[&id];
        let storage = entry.stream.rules().storage;
        let size =
            entry
                .stream
                .rules()
                .limits
                .sizing
                .size(&msg.subject, &msg.headers, &msg.payload);
        let account = entry.meta.account.clone();
        // A mirror's message is judged by the limits as a publish is.
        let refused = self.resources_for(&account, storage).check(size).err();
        let entry = self.streams.get_mut(&id).expect("fed stream exists");
        let result = match refused {
            Some(error) => Err(error),
            None => entry.stream.store_mirrored(&msg),
        };
        match result {
            Ok(_) => true,
            Err(error) => {
                let text = format!(
                    "Error processing inbound mirror message for '{} > {}': {error:?}",
                    account, entry.meta.config.name
                );
                self.log(LogLevel::Warn, text);
                false
            }
        }
    }

    /// Append one origin message to stream `id` through its publish path,
    /// marked with where it came from; false when it was refused (a
    /// duplicate counts as taken, as the reference skips it).
    pub(super) fn take_sourced(
        &mut self,
        id: StreamId,
        feed: &Feed,
        msg: &StoredMsg,
        marker: &str,
        ident: &str,
    ) -> bool {
        let subject = feed.subject_for(&msg.subject);
        let mut headers = strip_headers(
            &msg.headers,
            &[STREAM_SOURCE, b"Nats-Expected-", b"Nats-Batch-"],
        );
        append_headers(
            &mut headers,
            &format!(
                "Nats-Stream-Source: {marker} {} {ident}\r\n",
                String::from_utf8_lossy(&msg.subject)
            ),
        );
        let entry = &self.streams[&id];
        let account = entry.meta.account.clone();
        let storage = entry.stream.rules().storage;
        let publish = Publish {
            account: &account,
            subject: &subject,
            reply: &super::stream::NO_REPLY,
            headers: &headers,
            payload: &msg.payload,
        };
        let name = entry.meta.config.name.clone();
        let wall = self.wall;
        // The limits are judged by the stream among its publish checks,
        // as the reference judges a sourced message's.
        let room = self.resources_for(&account, storage);
        let entry = self.streams.get_mut(&id).expect("fed stream exists");
        entry.stream.set_inbound(room, false);
        let refused = match entry
            .stream
            .publish_in_batch(wall, &publish, &mut self.actions)
        {
            // A sourced message is never staged (it carries
            // Nats-Stream-Source), so Staged does not happen.
            Published::Stored { .. } | Published::Duplicate { .. } | Published::Staged => {
                return true
            }
            Published::Refused(error) => error,
        };
        self.log(
            LogLevel::Warn,
            format!(
                "Error processing inbound source {:?} for '{account} > {name}': {refused:?}",
                feed.source.name
            ),
        );
        false
    }

    /// The `mirror` and `sources` sections of stream `id`'s info.
    pub(super) fn feed_info(
        &self,
        id: StreamId,
    ) -> (Option<StreamSourceInfo>, Vec<StreamSourceInfo>) {
        let Some(feeds) = self.feeds.get(&id) else {
            return (None, Vec::new());
        };
        let account = self.streams.get(&id).map(|e| e.meta.account.as_str());
        let infos = feeds.feeds.iter().map(|feed| {
            let mut info = feed.info(self.wall, feeds.mirror);
            // An origin deleted since the feed last ran: reported as the
            // reference reports it once its consumer is gone (a feed that
            // never ran yet, like one just created, reports nothing).
            let gone = feed.remote.is_none()
                && account.is_some_and(|a| self.stream_by_name(a, &feed.source.name).is_none());
            if gone && feed.last_heard.is_some() {
                info.error = Some(ApiError::new(ApiErrorKind::StreamNotFound));
            }
            info
        });
        if feeds.mirror {
            (infos.into_iter().next(), Vec::new())
        } else {
            (None, infos.collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_source_header, stream_identity, strip_headers};
    use crate::time::WallTime;

    #[test]
    fn identity_is_the_references_hash_of_the_creation_time() {
        // 2026-12-06T18:10:18.305721167Z, as nats-server named it.
        let created = WallTime(1_796_580_618_305_721_167);
        assert_eq!(
            crate::format::rfc3339_nanos(created),
            "2026-12-06T18:10:18.305721167Z"
        );
        assert_eq!(stream_identity(created), "5GVrImp4");
    }

    #[test]
    fn expected_headers_go_and_an_empty_block_goes_whole() {
        let block = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 1\r\n\r\n";
        assert!(strip_headers(block, &[b"Nats-Expected-"]).is_empty());
        let block = b"NATS/1.0\r\nA: 1\r\nNats-Batch-Id: x\r\n\r\n";
        assert_eq!(
            strip_headers(block, &[b"Nats-Batch-"]),
            b"NATS/1.0\r\nA: 1\r\n\r\n"
        );
    }

    #[test]
    fn the_source_header_gives_index_name_and_sequence() {
        let parsed = parse_source_header(b"O 2 o.1 > o.1 5GVrImp4");
        assert_eq!(
            parsed,
            Some(("O o.1 >".to_string(), 2, "5GVrImp4".to_string()))
        );
    }
}
