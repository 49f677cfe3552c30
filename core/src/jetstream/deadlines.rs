//! When the JetStream machine next has work: each stream's earliest
//! deadline, cached.
//!
//! Role: [`JetStream::poll_timeout`] is asked after every batch of inputs,
//! and in production by the thread that handled a publish, so it must not
//! cost a walk of every stream and every consumer. Each stream's earliest
//! deadlines (its own timers and its consumers') are cached and computed
//! again only for the streams an input may have changed: every entry point
//! marks what it touches ([`JetStream::stream_touched`],
//! [`JetStream::all_streams_touched`]) and the cache is refreshed when the
//! runtime next polls for actions.
//!
//! Invariants:
//! - After a refresh, every stream with a deadline has its entry, equal to
//!   what a walk of the stream and its consumers gives (debug builds check
//!   it on every poll: the core, simulator and black-box tests all run
//!   with that check); streams without one have none.
//! - Wall-clock deadlines (expiry, dedupe windows, schedules, batches) are
//!   kept as wall-clock times and turned into instants at the poll, with
//!   the clocks of that moment.

use std::collections::BTreeMap;

use super::link::StreamId;
use super::machine::{JetStream, StreamEntry};
use crate::store::Disk;
use crate::time::{Instant, WallTime};

/// One stream's earliest deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamDeadlines {
    /// Its store's sync timer and its consumers' timers (redeliveries, pull
    /// request expiry, heartbeats, inactivity).
    instant: Option<Instant>,
    /// Message expiry, the dedupe window, schedules, open batches.
    wall: Option<WallTime>,
}

impl StreamDeadlines {
    fn of<D: Disk + Clone>(entry: &StreamEntry<D>) -> Option<StreamDeadlines> {
        let (timer, wall) = entry.stream.deadlines();
        let instant = timer.into_iter().chain(consumers_deadline(entry)).min();
        (instant.is_some() || wall.is_some()).then_some(StreamDeadlines { instant, wall })
    }
}

/// The earliest deadline among one stream's consumers (the state flush
/// aside).
fn consumers_deadline<D: Disk + Clone>(entry: &StreamEntry<D>) -> Option<Instant> {
    entry
        .consumers
        .values()
        .flat_map(|consumer| {
            let inactive = consumer
                .inactive_threshold
                .filter(|_| !consumer.consumer.has_interest())
                .map(|threshold| consumer.last_seen + threshold);
            consumer.consumer.poll_timeout().into_iter().chain(inactive)
        })
        .min()
}

/// Each stream's earliest deadlines, so that asking for the next timer
/// costs the streams an input changed, not every stream and consumer (with
/// thousands of consumers the walk after every batch was most of an API
/// request's time). Streams without deadlines have no entry.
#[derive(Debug)]
pub struct DeadlineCache {
    by_stream: BTreeMap<StreamId, StreamDeadlines>,
    /// The streams whose entries may be out of date (each once).
    stale: Vec<StreamId>,
    /// Every entry may be out of date.
    all_stale: bool,
}

impl Default for DeadlineCache {
    fn default() -> DeadlineCache {
        DeadlineCache {
            by_stream: BTreeMap::new(),
            stale: Vec::new(),
            all_stale: true,
        }
    }
}

impl<D: Disk + Clone> JetStream<D> {
    /// The earliest deadline of every stream and its consumers, from the
    /// cache, computed afresh for the streams marked since its refresh.
    pub(super) fn streams_deadline(&self) -> Option<Instant> {
        let cache = &self.deadlines;
        let fresh = |id: &StreamId| {
            self.streams
                .get(id)
                .and_then(|entry| StreamDeadlines::of(entry))
        };
        let earliest = if cache.all_stale {
            self.earliest(
                self.streams
                    .values()
                    .filter_map(|entry| StreamDeadlines::of(entry)),
            )
        } else {
            self.earliest(
                cache
                    .by_stream
                    .iter()
                    .filter(|(id, _)| !cache.stale.contains(id))
                    .map(|(_, deadlines)| *deadlines)
                    .chain(cache.stale.iter().filter_map(fresh)),
            )
        };
        debug_assert_eq!(
            earliest,
            self.earliest(
                self.streams
                    .values()
                    .filter_map(|entry| StreamDeadlines::of(entry))
            ),
            "a stream or its consumers changed without being marked"
        );
        earliest
    }

    /// The earliest of `all`, its wall-clock times turned into instants.
    fn earliest(&self, all: impl Iterator<Item = StreamDeadlines>) -> Option<Instant> {
        let (instant, wall) = all.fold((None, None), |(instant, wall), d| {
            (min_of(instant, d.instant), min_of(wall, d.wall))
        });
        min_of(instant, wall.map(|at| self.instant_of(at)))
    }

    /// Stream `stream` or its consumers may have changed: its cached
    /// deadlines are computed again. With feeds between streams, a change
    /// can reach any stream, so all are.
    pub(super) fn stream_touched(&mut self, stream: StreamId) {
        let cache = &mut self.deadlines;
        if !self.feeds.is_empty() {
            cache.all_stale = true;
        } else if !cache.all_stale && !cache.stale.contains(&stream) {
            // A short list whose room is kept: a publish allocates nothing.
            cache.stale.push(stream);
        }
    }

    /// Any stream or consumer may have changed.
    pub(super) fn all_streams_touched(&mut self) {
        self.deadlines.all_stale = true;
    }

    /// Compute the cached deadlines of the streams marked since the last
    /// refresh (the runtime polls for actions after every batch).
    pub(super) fn refresh_deadlines(&mut self) {
        let cache = &mut self.deadlines;
        if cache.all_stale {
            cache.all_stale = false;
            cache.stale.clear();
            cache.by_stream.clear();
            for (&id, entry) in &self.streams {
                if let Some(deadlines) = StreamDeadlines::of(entry) {
                    cache.by_stream.insert(id, deadlines);
                }
            }
            return;
        }
        for &id in &cache.stale {
            match self
                .streams
                .get(&id)
                .and_then(|entry| StreamDeadlines::of(entry))
            {
                Some(deadlines) => cache.by_stream.insert(id, deadlines),
                None => cache.by_stream.remove(&id),
            };
        }
        cache.stale.clear();
    }
}

/// The earlier of two optional times (`None` is never).
fn min_of<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
