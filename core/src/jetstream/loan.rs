//! A stream lent out of the JetStream machine, to run on its own.
//!
//! Role: each stream's own traffic (its publishes, its consumers' acks and
//! flow-control replies, their interest and pull-reply reports, its
//! store's syncs) needs only that stream and a little shared state: the
//! account's and the server's storage usage, the server's limits and the
//! count of batches open on the server. [`JetStream::lend`] takes a stream
//! out of the machine as a [`StreamLoan`]: a machine of its own holding
//! just that stream, its consumers and a copy of the shared state, which
//! runs those inputs through exactly the code the whole machine runs.
//! [`JetStream::restore`] puts it back and carries its effect on the shared
//! state over: the bytes it now holds (usage), its open batches, the
//! consumer-state flush it needs, its syncs still out, and whatever actions
//! it has not handed out yet. Streams that mirror or source another stream
//! of this server, or are mirrored or sourced by one, are not lent: feeding
//! needs both ends, so they run in the machine.
//!
//! So a runtime can run two streams at once (runtime-tokio lends a stream to
//! the worker that read its traffic and takes the machine's lock only to
//! lend and restore), while the simulator lends and restores in its one
//! event loop, deterministically.
//!
//! What crosses between loans is the shared state, copied at lend: two
//! streams of one account lent at once each check the account's limits
//! against what it held when they were lent, plus their own growth. A
//! publish races the other stream's the same way in the reference, whose
//! streams check the account's usage without holding each other back.
//!
//! Invariants (asserted):
//! - a lent stream is not in the machine: no input for it reaches the
//!   machine until it is restored, and inputs that may touch every stream
//!   (API requests, timers, account changes) reach the machine only while
//!   nothing is lent;
//! - a loan handles only its own stream's inputs, and neither creates nor
//!   removes streams or consumers;
//! - restoring leaves the machine's counts exactly as if the loan's inputs
//!   had been handed to the machine itself (the property test in
//!   `jetstream::tests` compares the two).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::batch::OpenBatches;
use super::link::{JsAction, JsInbound, JsTarget, StreamId, Watcher};
use super::machine::{JetStream, JsAccount};
use crate::store::{Disk, DiskResult};
use crate::time::{Instant, WallTime};

/// One stream out of the machine, with what it needs to run alone.
pub struct StreamLoan<D: Disk + Clone> {
    id: StreamId,
    /// A machine holding only this stream (and its consumers), its
    /// account and copies of the shared counts (boxed: a loan moves
    /// between threads and in and out of queues).
    machine: Box<JetStream<D>>,
    /// What the machine counted for the stream when it was lent.
    counted: u64,
    batches: OpenBatches,
}

impl JsTarget {
    /// The stream whose own state alone this input reaches, when it is one
    /// a [`StreamLoan`] can take; `None` for inputs that may reach
    /// several streams or the machine's own tables (API requests, system
    /// requests, snapshots, feeds).
    pub fn lendable_stream(&self) -> Option<StreamId> {
        match *self {
            JsTarget::Stream(id)
            | JsTarget::Consumer(id, _)
            | JsTarget::ReplyGone(id, _)
            | JsTarget::Interest(Watcher::Consumer(id, _)) => Some(id),
            JsTarget::Api
            | JsTarget::System
            | JsTarget::Snapshot(_)
            | JsTarget::Feed(..)
            | JsTarget::Interest(Watcher::Snapshot(_)) => None,
        }
    }
}

impl<D: Disk + Clone> JetStream<D> {
    /// Take stream `id` out to run on its own. Its pending store drain and
    /// syncs go with it. `None`: no such stream, or one that mirrors or
    /// sources another of this server or is mirrored or sourced by one:
    /// feeding a stream needs both ends in the machine, so these run in it.
    pub fn lend(&mut self, id: StreamId) -> Option<StreamLoan<D>> {
        assert!(!self.lent.contains(&id), "stream {id:?} lent twice");
        if !self.feeds.is_empty()
            && (self.feeds.contains_key(&id) || !self.followers_of(id).is_empty())
        {
            return None;
        }
        let entry = self.streams.remove(&id)?;
        self.lent.insert(id);
        // Its deadlines leave the machine's with it, and come back at restore.
        self.stream_touched(id);
        self.refresh_deadlines();
        let counted = entry.counted;
        let batches = entry.stream.open_batches();
        let account = entry.meta.account.clone();
        let consumer_index: BTreeMap<_, _> = entry
            .consumers
            .values()
            .map(|consumer| {
                let id = consumer.consumer.id;
                let known = self.consumer_index.remove(&id);
                debug_assert!(known.is_some(), "a consumer missing from the index");
                (id, known.expect("every consumer is indexed"))
            })
            .collect();
        let mut accounts = BTreeMap::new();
        if let Some(held) = self.accounts.get(&account) {
            accounts.insert(
                account,
                JsAccount {
                    limits: held.limits.clone(),
                    usage: held.usage,
                    ..JsAccount::default()
                },
            );
        }
        let undrained = match self.undrained.remove(&id) {
            true => BTreeSet::from([id]),
            false => BTreeSet::new(),
        };
        let machine = Box::new(JetStream {
            config: self.config.clone(),
            disk: self.disk.clone(),
            accounts,
            streams: BTreeMap::from([(id, entry)]),
            consumer_index,
            next_consumer: self.next_consumer,
            flush_due: None,
            deadlines: Default::default(),
            usage: self.usage,
            next_id: self.next_id,
            actions: VecDeque::new(),
            undrained,
            open_batches: self.open_batches,
            syncs_out: take_range(&mut self.syncs_out, id),
            syncs_orphaned: take_range(&mut self.syncs_orphaned, id),
            feeds: BTreeMap::new(),
            next_feed_key: self.next_feed_key,
            snapshots: Default::default(),
            now: self.now,
            wall: self.wall,
            server_name: self.server_name.clone(),
            ids: ChaCha8Rng::seed_from_u64(self.ids.next_u64()),
            lent: BTreeSet::new(),
            #[cfg(feature = "planted-defects")]
            planted_defect: self.planted_defect,
        });
        Some(StreamLoan {
            id,
            machine,
            counted,
            batches,
        })
    }

    /// Put a lent stream back. Actions it has not handed out join the back
    /// of the machine's queue.
    pub fn restore(&mut self, loan: StreamLoan<D>) {
        let StreamLoan {
            id,
            machine: mut alone,
            counted,
            batches,
        } = loan;
        assert!(self.lent.remove(&id), "restoring a stream not lent");
        let mut entry = alone.streams.remove(&id).expect("a loan keeps its stream");
        assert!(alone.streams.is_empty() && alone.feeds.is_empty());
        assert_eq!(
            alone.consumer_index.len(),
            entry.consumers.len(),
            "a loan neither creates nor removes consumers"
        );
        assert_eq!(alone.next_id, self.next_id, "a loan creates no stream");
        // One by one: `append` would rebuild the whole index (thousands of
        // consumers) to add a stream's few.
        for (consumer, name) in std::mem::take(&mut alone.consumer_index) {
            self.consumer_index.insert(consumer, name);
        }
        self.now = self.now.max(alone.now);
        self.wall = self.wall.max(alone.wall);
        if let Some(due) = alone.flush_due {
            self.flush_due = Some(self.flush_due.map_or(due, |at| at.min(due)));
        }
        for (key, count) in std::mem::take(&mut alone.syncs_out) {
            *self.syncs_out.entry(key).or_default() += count;
        }
        for (key, count) in std::mem::take(&mut alone.syncs_orphaned) {
            *self.syncs_orphaned.entry(key).or_default() += count;
        }
        if alone.undrained.contains(&id) {
            self.undrained.insert(id);
        }
        self.actions.append(&mut alone.actions);
        self.open_batches = self
            .open_batches
            .moved(batches, entry.stream.open_batches());
        // Counted again from what the machine counted at lend: the loan's
        // own recounts changed only its copies.
        entry.counted = counted;
        self.streams.insert(id, entry);
        self.recount(id);
        self.stream_touched(id);
        self.refresh_deadlines();
        // Neither fed nor feeding (see `lend`): nothing to pass on.
        debug_assert!(self.followers_of(id).is_empty() && !self.feeds.contains_key(&id));
    }

    /// Whether any stream is out on loan.
    pub fn has_loans(&self) -> bool {
        !self.lent.is_empty()
    }

    /// An input that may reach every stream: nothing may be out on loan.
    pub(super) fn assert_whole(&self) {
        assert!(
            self.lent.is_empty(),
            "streams {:?} are out on loan while the whole machine is used",
            self.lent
        );
    }
}

impl<D: Disk + Clone> StreamLoan<D> {
    /// The stream lent.
    pub fn stream(&self) -> StreamId {
        self.id
    }

    /// One of the stream's own inputs (see [`JsTarget::lendable_stream`]).
    pub fn handle_inbound(&mut self, now: Instant, wall: WallTime, msg: JsInbound) {
        assert_eq!(
            msg.target.lendable_stream(),
            Some(self.id),
            "an input for another stream handed to a loan"
        );
        self.machine.handle_inbound(now, wall, msg);
    }

    /// A publish the runtime's ingest queue refused
    /// ([`JetStream::refuse_ingest`]).
    pub fn refuse_ingest(
        &mut self,
        now: Instant,
        wall: WallTime,
        msg: JsInbound,
        refusal: super::ingest::IngestRefusal,
    ) {
        assert_eq!(msg.target, JsTarget::Stream(self.id));
        self.machine.refuse_ingest(now, wall, msg, refusal);
    }

    /// A sync of the stream's store finished
    /// ([`JetStream::handle_sync_done`]).
    pub fn handle_sync_done(&mut self, tag: u64, result: DiskResult<()>) {
        self.machine.handle_sync_done(self.id, tag, result);
    }

    /// The next thing for the server or the runtime to do.
    pub fn poll_action(&mut self) -> Option<JsAction> {
        self.machine.poll_action()
    }
}

/// Take the entries of stream `id` out of a map keyed by (stream, tag).
fn take_range(
    map: &mut BTreeMap<(StreamId, u64), usize>,
    id: StreamId,
) -> BTreeMap<(StreamId, u64), usize> {
    let keys: Vec<(StreamId, u64)> = map
        .range((id, 0)..=(id, u64::MAX))
        .map(|(key, _)| *key)
        .collect();
    keys.into_iter()
        .map(|key| (key, map.remove(&key).expect("listed above")))
        .collect()
}

#[cfg(test)]
mod tests;
