//! The JetStream machine: the API handler and every stream of one server.
//!
//! Role: own the streams (each a [`Stream`] over its store), answer
//! `$JS.API` requests ([`super::requests`]), and keep the streams'
//! definitions on disk so they come back after a restart. It is one
//! sans-I/O machine: the runtime feeds it [`JsInbound`] messages (routed by
//! the server), sync completions and timer ticks, and carries out the
//! [`JsAction`]s it queues.
//!
//! The seam for clustering: a request that changes the set of streams
//! (create, update, delete) is decided here and applied with
//! [`JetStream::apply`]-style calls on the stream table; with RAFT, the
//! decision is proposed to the meta group and applied when committed. Today
//! both happen in one step.
//!
//! Disk layout under the JetStream root (the runtime's disk is rooted at
//! `<store_dir>/jetstream`):
//! - `streams/<id>.meta`: the stream's account, configuration and creation
//!   time as JSON, preceded by a line with the crc32 of the JSON in hex;
//!   written atomically, the previous copy kept as `streams/<id>.prev`.
//! - `streams/<id>/`: the stream's FileStore (see [`crate::store::filestore`]).
//!
//! Invariants:
//! - Every stream in `streams` is listed in its account's `by_name` (so
//!   its account has JetStream), and the server has been asked
//!   (`JsAction::Listen`) to route its subjects. An account whose
//!   JetStream is turned off ([`JetStream::set_accounts`]) has its streams
//!   stopped, not deleted: their definitions and stores stay on disk until
//!   it is turned on again.
//! - A sync completion reaches a store only if that store asked for it: one
//!   asked by a stopped stream's store is counted in `syncs_orphaned` and
//!   dropped, even once the stream runs again under the same id.
//! - Stream ids are never reused: `next_id` is above every id on disk.
//! - No two streams of one account have overlapping subjects.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::api::StreamConfig;
use super::config::{open_definition, seal_definition, AccountLimits, JetStreamConfig};
use super::consumer_table::ConsumerEntry;
use super::link::{ConsumerId, JsAction, JsInbound, JsTarget, StreamId, Watcher};
use super::stream::{Publish, Storage, Store, Stream};
use crate::server::LogLevel;
use crate::store::{Disk, DiskResult, FileStore, FileStoreConfig, MemStore, SyncPolicy};
use crate::time::{Instant, WallTime};

/// The directory of stream definitions and stores.
const STREAMS_DIR: &str = "streams";

/// One account's JetStream.
#[derive(Debug, Default)]
pub struct JsAccount {
    pub limits: AccountLimits,
    /// Its streams by name.
    pub by_name: BTreeMap<String, StreamId>,
    /// API requests answered, and how many were errors (`$JS.API.INFO`).
    pub api_total: u64,
    pub api_errors: u64,
    /// Bytes its streams hold: memory, file.
    pub usage: Usage,
}

/// Bytes held, by storage type (as the streams count them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory: u64,
    pub file: u64,
}

impl Usage {
    fn of(&mut self, storage: Storage) -> &mut u64 {
        match storage {
            Storage::Memory => &mut self.memory,
            Storage::File => &mut self.file,
        }
    }
}

/// What is persisted per stream.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StreamMeta {
    pub account: String,
    pub config: StreamConfig,
    /// Creation time, unix nanoseconds.
    pub created: u64,
}

/// A stream, its consumers, and what the API reports about it.
pub struct StreamEntry<D: Disk> {
    pub stream: Stream<D>,
    pub meta: StreamMeta,
    /// Its consumers by name ([`super::consumer_table`]).
    pub consumers: BTreeMap<String, ConsumerEntry<D>>,
    /// The bytes of this stream counted in its account's and the server's
    /// usage ([`JetStream::recount`]).
    pub(super) counted: u64,
}

/// The JetStream machine.
pub struct JetStream<D: Disk + Clone> {
    pub(super) config: JetStreamConfig,
    pub(super) disk: D,
    pub(super) accounts: BTreeMap<String, JsAccount>,
    pub(super) streams: BTreeMap<StreamId, Box<StreamEntry<D>>>,
    /// Every consumer by id: its stream and name.
    pub(super) consumer_index: BTreeMap<ConsumerId, (StreamId, String)>,
    pub(super) next_consumer: u64,
    /// When changed consumer states must be written at the latest.
    pub(super) flush_due: Option<Instant>,
    /// Each stream's earliest deadlines ([`super::deadlines`]), refreshed
    /// for the streams the entry points mark touched.
    pub(super) deadlines: super::deadlines::DeadlineCache,
    /// Bytes all streams hold (`max_memory_store` / `max_file_store`).
    pub(super) usage: Usage,
    pub(super) next_id: u64,
    pub(super) actions: VecDeque<JsAction>,
    /// Streams that stored messages since their store last reported: they
    /// report (and write, and ask for a sync) when the runtime first polls
    /// for actions, once per batch of inbound messages.
    pub(super) undrained: BTreeSet<StreamId>,
    /// Batches open on all streams, of each kind (the server's limits).
    pub(super) open_batches: super::batch::OpenBatches,
    /// Syncs handed to the runtime and not yet reported done: how many
    /// per stream and tag.
    pub(super) syncs_out: BTreeMap<(StreamId, u64), usize>,
    /// Syncs still out for stores of streams that stopped: their
    /// completions are not for the store that may have reopened under the
    /// same id since. Matched by tag, so completions may come in any
    /// order; when an old and a new sync share a tag, whichever completes
    /// first is taken for the old one, and the store hears of its own
    /// only once both are done, which is never early.
    pub(super) syncs_orphaned: BTreeMap<(StreamId, u64), usize>,
    /// The mirror or sources of each stream that has them
    /// ([`super::sourcing`]).
    pub(super) feeds: BTreeMap<StreamId, super::sourcing::Feeds>,
    /// The last key given to an external feed ([`JsTarget::Feed`]).
    pub(super) next_feed_key: u64,
    /// Snapshots being sent and restores being received
    /// ([`super::snapshot`]).
    pub(super) snapshots: super::snapshot::Sessions<D>,
    /// The latest times handed in: converts wall-clock expiry deadlines to
    /// the monotonic timer.
    pub(super) now: Instant,
    pub(super) wall: WallTime,
    /// Reported as the leader of every stream (`cluster.leader`).
    pub(super) server_name: String,
    /// Advisory ids. Seeded from the server's name and the wall clock at
    /// open: ids need to be unique, not secret, and the simulator's are
    /// reproducible.
    pub(super) ids: ChaCha8Rng,
    /// Streams out on loan ([`super::loan`]).
    pub(super) lent: BTreeSet<StreamId>,
    /// A defect planted on purpose so the simulator can prove it finds bugs.
    #[cfg(feature = "planted-defects")]
    pub(super) planted_defect: Option<crate::server::PlantedDefect>,
}

impl<D: Disk + Clone> JetStream<D> {
    /// Open JetStream over `disk` (rooted at the store directory) with
    /// `accounts` enabled, recovering every stream found.
    pub fn open(
        server_name: String,
        config: JetStreamConfig,
        accounts: BTreeMap<String, AccountLimits>,
        disk: D,
        now: Instant,
        wall: WallTime,
    ) -> Self {
        let mut js = JetStream {
            config,
            disk,
            accounts: accounts
                .into_iter()
                .map(|(name, limits)| {
                    (
                        name,
                        JsAccount {
                            limits,
                            ..JsAccount::default()
                        },
                    )
                })
                .collect(),
            streams: BTreeMap::new(),
            consumer_index: BTreeMap::new(),
            next_consumer: 1,
            flush_due: None,
            deadlines: Default::default(),
            usage: Usage::default(),
            next_id: 1,
            actions: VecDeque::new(),
            undrained: BTreeSet::new(),
            open_batches: Default::default(),
            syncs_out: BTreeMap::new(),
            syncs_orphaned: BTreeMap::new(),
            feeds: BTreeMap::new(),
            next_feed_key: 0,
            snapshots: super::snapshot::Sessions::default(),
            now,
            wall,
            ids: ChaCha8Rng::seed_from_u64(
                u64::from(crc32fast::hash(server_name.as_bytes())) ^ wall.0,
            ),
            server_name,
            lent: BTreeSet::new(),
            #[cfg(feature = "planted-defects")]
            planted_defect: None,
        };
        js.recover_streams(None);
        js
    }

    /// Bring back the streams on disk (of `account` only, when given),
    /// their consumers, then their mirrors' and sources' feeds.
    fn recover_streams(&mut self, account: Option<&str>) {
        let recovered = self.recover(account);
        self.refresh_usage();
        for id in recovered {
            let config = &self.streams[&id].meta.config;
            if config.mirror.is_some() || !config.sources.is_empty() {
                self.setup_feeds(id);
            }
        }
    }

    /// Recount the bytes every stream holds (after a change of the set of
    /// streams or of several at once).
    pub(super) fn refresh_usage(&mut self) {
        self.usage = Usage::default();
        for account in self.accounts.values_mut() {
            account.usage = Usage::default();
        }
        for entry in self.streams.values_mut() {
            let storage = entry.stream.rules().storage;
            let bytes = entry.stream.state().bytes;
            entry.counted = bytes;
            *self.usage.of(storage) += bytes;
            if let Some(account) = self.accounts.get_mut(&entry.meta.account) {
                *account.usage.of(storage) += bytes;
            }
        }
    }

    /// Bring the counts up to what stream `id` holds now, after a change
    /// of that stream alone (a publish, a retention removal, a feed),
    /// without a walk of every stream.
    pub(super) fn recount(&mut self, id: StreamId) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        let bytes = entry.stream.state().bytes;
        let counted = std::mem::replace(&mut entry.counted, bytes);
        let storage = entry.stream.rules().storage;
        let account = self.accounts.get_mut(&entry.meta.account);
        for usage in [Some(&mut self.usage), account.map(|a| &mut a.usage)]
            .into_iter()
            .flatten()
        {
            let held = usage.of(storage);
            *held = (*held + bytes).saturating_sub(counted);
        }
    }

    /// What the server's and the account's limits for `storage` leave
    /// `account` now (judged by [`super::room::Room`]).
    pub(super) fn resources_for(&self, account: &str, storage: Storage) -> super::room::Room {
        use super::room::{Held, Room};
        let (max, used) = match storage {
            Storage::Memory => (self.config.max_memory, self.usage.memory),
            Storage::File => (self.config.max_store, self.usage.file),
        };
        let account = self.accounts.get(account).and_then(|acc| {
            let (max, used) = match storage {
                Storage::Memory => (acc.limits.max_memory, acc.usage.memory),
                Storage::File => (acc.limits.max_store, acc.usage.file),
            };
            max.map(|max| Held { used, max })
        });
        Room {
            server: Held { used, max },
            account,
        }
    }

    /// Plant `defect` in this machine and every stream it has or creates
    /// (feature `planted-defects`, for the simulator's tests).
    #[cfg(feature = "planted-defects")]
    pub fn plant(&mut self, defect: crate::server::PlantedDefect) {
        self.all_streams_touched();
        self.planted_defect = Some(defect);
        for entry in self.streams.values_mut() {
            entry.stream.ack_before_sync = defect == crate::server::PlantedDefect::AckBeforeSync;
            for consumer in entry.consumers.values_mut() {
                consumer.consumer.plant(defect);
            }
        }
    }

    /// Whether `account` has JetStream.
    pub fn enabled_for(&self, account: &str) -> bool {
        self.accounts.contains_key(account)
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// A reload raised the server's storage limits or changed its
    /// `limits { }`: what the running machine may change (the reference
    /// refuses every other JetStream change while it runs, and so does the
    /// runtime before it gets here).
    pub fn reconfigure(&mut self, config: JetStreamConfig) {
        self.all_streams_touched();
        assert!(
            config.store_dir == self.config.store_dir
                && config.domain == self.config.domain
                && config.strict == self.config.strict
                && config.sync == self.config.sync
                && config.encryption == self.config.encryption,
            "only the limits of a running JetStream change"
        );
        self.config = config;
    }

    /// Every stream, by id.
    pub fn streams(&self) -> impl Iterator<Item = &StreamEntry<D>> {
        self.streams.values().map(|entry| &**entry)
    }

    /// The next thing for the server or the runtime to do.
    pub fn poll_action(&mut self) -> Option<JsAction> {
        self.refresh_deadlines();
        for id in std::mem::take(&mut self.undrained) {
            if let Some(entry) = self.streams.get_mut(&id) {
                entry.stream.drain_store(&mut self.actions);
            }
        }
        let action = self.actions.pop_front();
        if let Some(JsAction::Sync { stream, tag, .. }) = &action {
            *self.syncs_out.entry((*stream, *tag)).or_default() += 1;
        }
        action
    }

    /// The accounts JetStream serves, and their limits, from now on (an
    /// account claims update), as the reference's account update does:
    /// - an account no longer listed has its JetStream turned off: its
    ///   streams and consumers stop, everything they hold stays on disk,
    ///   their subjects are no longer routed here, and its API requests
    ///   are answered "JetStream not enabled for account" (10039);
    /// - an account listed anew has it turned on: its streams and
    ///   consumers on disk are recovered as at start-up;
    /// - the others take their new limits. Limits lowered below what an
    ///   account holds keep what it has, and refuse new streams, consumers
    ///   and messages beyond them.
    pub fn set_accounts(&mut self, accounts: BTreeMap<String, AccountLimits>) {
        self.assert_whole();
        self.all_streams_touched();
        let gone: Vec<String> = self
            .accounts
            .keys()
            .filter(|name| !accounts.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.disable_account(&name);
        }
        for (name, limits) in accounts {
            match self.accounts.get_mut(&name) {
                Some(account) => account.limits = limits,
                None => self.enable_account(name, limits),
            }
        }
    }

    /// Turn JetStream on for `name`: its streams come back from the store.
    fn enable_account(&mut self, name: String, limits: AccountLimits) {
        let account = JsAccount {
            limits,
            ..JsAccount::default()
        };
        let previous = self.accounts.insert(name.clone(), account);
        assert!(previous.is_none(), "enabling an enabled account");
        self.recover_streams(Some(&name));
    }

    /// Turn JetStream off for `name`: its streams stop, deleting nothing.
    /// Its API counters go with it, as the reference's do.
    fn disable_account(&mut self, name: &str) {
        let account = self
            .accounts
            .remove(name)
            .expect("disabling an enabled account");
        for id in account.by_name.into_values() {
            self.stop_stream(id);
        }
        self.refresh_usage();
        assert!(self.streams.values().all(|e| e.meta.account != name));
    }

    /// Stop stream `id` without deleting it (its account's JetStream was
    /// turned off): its consumers stop, its feeds go, the server stops
    /// routing its subjects; what it stored is written and synced, and
    /// the publishers waiting for that are acknowledged. No advisory, as
    /// the reference's stop sends none. A file stream's definition and
    /// files stay, so [`Self::recover`] brings it back; a memory stream is
    /// gone, as in the reference.
    fn stop_stream(&mut self, id: StreamId) {
        self.stop_all_consumers(id);
        if let Some(feeds) = self.feeds.remove(&id) {
            let account = self.streams[&id].meta.account.clone();
            self.drop_feeds(id, &account, feeds);
        }
        let mut entry = self
            .streams
            .remove(&id)
            .expect("stopping a stream that runs");
        self.open_batches = self
            .open_batches
            .moved(entry.stream.open_batches(), Default::default());
        self.undrained.remove(&id);
        // Syncs of this store not handed out yet are not needed: the stop
        // syncs everything; those handed out are ignored when done.
        self.actions
            .retain(|action| !matches!(action, JsAction::Sync { stream, .. } if *stream == id));
        let out: Vec<(StreamId, u64)> = self
            .syncs_out
            .range((id, 0)..=(id, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in out {
            let count = self.syncs_out.remove(&key).expect("listed above");
            *self.syncs_orphaned.entry(key).or_default() += count;
        }
        if let Err(error) = entry.stream.stop(&mut self.actions) {
            self.log(
                LogLevel::Error,
                format!(
                    "JetStream: stream '{} > {}' could not write what it stored as it stopped: {error}",
                    entry.meta.account, entry.meta.config.name
                ),
            );
        }
        self.actions.push_back(JsAction::Listen {
            account: entry.meta.account.clone(),
            target: JsTarget::Stream(id),
            subjects: Vec::new(),
        });
        if entry.stream.rules().storage == Storage::Memory {
            // The reference keeps no definition of a memory stream on
            // disk, so it does not come back; its consumers live in
            // memory only.
            drop(entry);
            if let Err(error) = self.remove_stream_files(id) {
                self.log(
                    LogLevel::Error,
                    format!(
                        "JetStream: removing stopped memory stream {}: {error}",
                        id.0
                    ),
                );
            }
        }
    }

    /// A message the server routed to JetStream.
    pub fn handle_inbound(&mut self, now: Instant, wall: WallTime, msg: JsInbound) {
        match msg.target.lendable_stream() {
            Some(id) => assert!(!self.lent.contains(&id), "an input for lent {id:?}"),
            None => self.assert_whole(),
        }
        self.tick(now, wall);
        match msg.target {
            // The API marks what each request may change.
            JsTarget::Api => {}
            JsTarget::Consumer(stream, _)
            | JsTarget::Interest(Watcher::Consumer(stream, _))
            | JsTarget::ReplyGone(stream, _)
            | JsTarget::Stream(stream) => self.stream_touched(stream),
            _ => self.all_streams_touched(),
        }
        match msg.target {
            JsTarget::Api => self.handle_api(&msg),
            JsTarget::System => self.handle_system(&msg),
            JsTarget::Consumer(stream, consumer) => self.consumer_inbound(stream, consumer, &msg),
            JsTarget::Interest(Watcher::Consumer(stream, consumer)) => {
                self.consumer_interest(stream, consumer, msg.payload.as_ref() == b"1")
            }
            JsTarget::Interest(Watcher::Snapshot(session)) => {
                self.snapshot_interest(session, msg.payload.as_ref() == b"1")
            }
            JsTarget::ReplyGone(stream, consumer) => {
                self.consumer_reply_gone(stream, consumer, &msg)
            }
            JsTarget::Snapshot(session) => self.snapshot_inbound(session, &msg),
            JsTarget::Feed(stream, key) => self.feed_inbound(stream, key, &msg),
            JsTarget::Stream(id) => {
                let Some(entry) = self.streams.get_mut(&id) else {
                    // Deleted while the message was on its way.
                    return;
                };
                if *entry.stream.account != *msg.account {
                    return;
                }
                let publish = Publish {
                    account: &msg.account,
                    subject: &msg.subject,
                    reply: &msg.reply,
                    headers: &msg.headers,
                    payload: &msg.payload,
                };
                // The stream judges the server's and the account's limits
                // among its own checks, where the reference does.
                let storage = entry.stream.rules().storage;
                let room = self.resources_for(&msg.account, storage);
                let entry = self.streams.get_mut(&id).expect("found above");
                entry.stream.set_inbound(room, true);
                debug_assert_eq!(
                    entry.counted,
                    entry.stream.state().bytes,
                    "a stream's bytes changed without a recount"
                );
                let last_before = entry.stream.state().last_seq;
                let open_before = entry.stream.open_batches();
                let limits = self.config.limits;
                let batch_limits = super::batch::BatchLimits {
                    inflight: limits.batch_inflight_per_stream(),
                    size: limits.batch_size(),
                    timeout: limits.batch_timeout(),
                };
                entry.stream.set_batch_room(
                    self.open_batches.atomic < limits.batch_inflight_total(),
                    batch_limits,
                );
                entry.stream.set_fast_batch_room(
                    self.open_batches.fast < limits.fast_batch_inflight_total(),
                    super::fast_batch::FastLimits {
                        inflight: limits.fast_batch_inflight_per_stream(),
                        timeout: limits.batch_timeout(),
                    },
                );
                let published =
                    entry
                        .stream
                        .publish_crossed(wall, &publish, &msg.context, &mut self.actions);
                self.open_batches = self
                    .open_batches
                    .moved(open_before, entry.stream.open_batches());
                self.undrained.insert(id);
                // Bytes held change by what was stored minus what the
                // limits (or a rollup) removed.
                self.recount(id);
                let stored = match published {
                    super::stream::Published::Stored { seq } => Some(seq),
                    _ => None,
                };
                self.advise_abandoned(id);
                // An atomic batch stores several at once: an interest
                // stream keeps each only if wanted.
                self.pump_stream(id, stored.map(|last| last.min(last_before + 1)));
                if stored.is_some() {
                    self.feed_followers(id);
                }
            }
        }
    }

    /// A clean shutdown: every file stream writes its full-state snapshot,
    /// so the next start need not read its blocks. Returns the streams
    /// whose snapshot was not written (`account > stream`), with why
    /// (they open by reading their blocks).
    pub fn write_snapshots(&mut self) -> Vec<(String, crate::store::StoreError)> {
        self.assert_whole();
        self.all_streams_touched();
        self.streams
            .values_mut()
            .filter_map(|entry| {
                let error = entry.stream.write_snapshot().err()?;
                let name = format!("{} > {}", entry.meta.account, entry.meta.config.name);
                Some((name, error))
            })
            .collect()
    }

    /// A sync asked for with [`JsAction::Sync`] finished.
    pub fn handle_sync_done(&mut self, stream: StreamId, tag: u64, result: DiskResult<()>) {
        assert!(!self.lent.contains(&stream), "a sync of lent {stream:?}");
        self.stream_touched(stream);
        if take_one(&mut self.syncs_orphaned, (stream, tag)) {
            // A store that stopped asked for it.
            return;
        }
        take_one(&mut self.syncs_out, (stream, tag));
        if let Some(entry) = self.streams.get_mut(&stream) {
            entry
                .stream
                .handle_sync_done(tag, result, &mut self.actions);
        }
    }

    /// The earliest instant [`JetStream::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams_deadline()
            .into_iter()
            .chain(self.flush_due)
            .chain(self.snapshot_deadline())
            .chain(self.remote_deadline())
            .min()
    }

    /// Time passed: sync timers, message expiry, dedupe windows.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallTime) {
        self.assert_whole();
        self.all_streams_touched();
        self.tick(now, wall);
        let mut grown = Vec::new();
        for (&id, entry) in self.streams.iter_mut() {
            let last = entry.stream.state().last_seq;
            let open_before = entry.stream.open_batches();
            entry.stream.handle_timeout(now, wall, &mut self.actions);
            self.open_batches = self
                .open_batches
                .moved(open_before, entry.stream.open_batches());
            // Expiry may have stored subject delete markers.
            if entry.stream.state().last_seq != last {
                grown.push((id, last + 1));
            }
        }
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.advise_abandoned(id);
        }
        // Expiry may have removed messages.
        self.refresh_usage();
        for (id, first_new) in grown {
            self.pump_stream(id, Some(first_new));
            self.feed_followers(id);
        }
        self.consumer_timeouts();
        self.snapshot_timeouts();
        self.remote_timeouts();
    }

    pub(super) fn tick(&mut self, now: Instant, wall: WallTime) {
        self.now = self.now.max(now);
        self.wall = wall;
        // Consumers created since the last input get the planted defect too.
        #[cfg(feature = "planted-defects")]
        if let Some(defect) = self.planted_defect {
            self.plant(defect);
        }
    }

    /// The monotonic instant at which the wall clock reads `at`.
    pub(super) fn instant_of(&self, at: WallTime) -> Instant {
        let ahead = at.0.saturating_sub(self.wall.0);
        Instant::from_nanos(self.now.as_nanos().saturating_add(ahead))
    }

    pub(super) fn log(&mut self, level: LogLevel, text: String) {
        self.actions.push_back(JsAction::Log { level, text });
    }

    // ----- the stream table -----

    /// Create a stream (validated by the caller) and start routing to it.
    pub(super) fn create_stream(
        &mut self,
        account: &str,
        config: StreamConfig,
    ) -> Result<StreamId, String> {
        let id = self.allocate_stream_id();
        let meta = StreamMeta {
            account: account.to_string(),
            config,
            created: self.wall.0,
        };
        // Ids come from the definitions on disk: files a crash left behind
        // without one (a delete or a restore midway) must not become this
        // stream's messages.
        self.remove_store_files(id).map_err(|e| e.to_string())?;
        self.write_meta(id, &meta).map_err(|e| e.to_string())?;
        let store = self.open_store(id, &meta).map_err(|e| e.to_string())?;
        self.install(id, meta, store);
        Ok(id)
    }

    /// Replace a stream's configuration (validated by the caller).
    pub(super) fn update_stream(
        &mut self,
        id: StreamId,
        config: StreamConfig,
    ) -> Result<(), String> {
        let mut meta = self.streams[&id].meta.clone();
        meta.config = config;
        self.write_meta(id, &meta).map_err(|e| e.to_string())?;
        let rules = self.rules(&meta.config);
        let entry = self
            .streams
            .get_mut(&id)
            .expect("updating a stream that exists");
        let open_before = entry.stream.open_batches();
        let updated = entry.stream.update(rules, &mut self.actions);
        // Fast batches are forgotten when the update turns them off.
        self.open_batches = self
            .open_batches
            .moved(open_before, entry.stream.open_batches());
        updated.map_err(|e| e.to_string())?;
        entry.meta = meta;
        self.listen(id);
        Ok(())
    }

    /// Delete a stream: stop routing to it, forget it, remove its files.
    pub(super) fn delete_stream(&mut self, id: StreamId) -> Result<(), String> {
        self.remove_all_consumers(id);
        if let Some(feeds) = self.feeds.remove(&id) {
            let account = self.streams[&id].meta.account.clone();
            self.drop_feeds(id, &account, feeds);
        }
        let entry = self
            .streams
            .remove(&id)
            .expect("deleting a stream that exists");
        self.open_batches = self
            .open_batches
            .moved(entry.stream.open_batches(), Default::default());
        let account = entry.meta.account.clone();
        if let Some(acc) = self.accounts.get_mut(&account) {
            acc.by_name.remove(&entry.meta.config.name);
        }
        self.actions.push_back(JsAction::Listen {
            account,
            target: JsTarget::Stream(id),
            subjects: Vec::new(),
        });
        drop(entry);
        self.remove_stream_files(id).map_err(|e| e.to_string())
    }

    /// Remove the definition and store of stream `id`, no longer running.
    /// The definition goes first: a crash midway leaves orphaned message
    /// files, never a stream without its messages.
    fn remove_stream_files(&mut self, id: StreamId) -> DiskResult<()> {
        assert!(!self.streams.contains_key(&id), "removing a running stream");
        let mut disk = self.disk.clone();
        for path in [meta_path(id), prev_path(id)] {
            match disk.remove(&path) {
                Ok(()) | Err(crate::store::DiskError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        disk.sync_dir(STREAMS_DIR)?;
        self.remove_store_files(id)
    }

    /// Remove the files of stream `id`'s store directory (a deleted
    /// stream, an abandoned restore, leftovers of either before reuse).
    pub(super) fn remove_store_files(&mut self, id: StreamId) -> DiskResult<()> {
        let dir = store_dir(id);
        let mut disk = self.disk.clone();
        match disk.list(&dir) {
            Ok(files) if !files.is_empty() => {
                for file in files {
                    let _ = disk.remove(&format!("{dir}/{file}"));
                }
                disk.sync_dir(&dir)
            }
            _ => Ok(()),
        }
    }

    /// A new stream id (never reused).
    pub(super) fn allocate_stream_id(&mut self) -> StreamId {
        let id = StreamId(self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn install(&mut self, id: StreamId, meta: StreamMeta, store: Store<D>) {
        let rules = self.rules(&meta.config);
        #[allow(unused_mut)]
        let mut stream = Stream::new(id, meta.account.clone(), rules, store);
        #[cfg(feature = "planted-defects")]
        {
            stream.ack_before_sync =
                self.planted_defect == Some(crate::server::PlantedDefect::AckBeforeSync);
        }
        let account = self
            .accounts
            .get_mut(&meta.account)
            .expect("streams run only in accounts with JetStream");
        let previous = account.by_name.insert(meta.config.name.clone(), id);
        assert!(previous.is_none(), "two streams named {}", meta.config.name);
        self.streams.insert(
            id,
            Box::new(StreamEntry {
                stream,
                meta,
                consumers: BTreeMap::new(),
                // Counted by the caller's recount (a new stream is empty).
                counted: 0,
            }),
        );
        self.listen(id);
    }

    /// Ask the server to route the stream's subjects to it.
    fn listen(&mut self, id: StreamId) {
        let entry = &self.streams[&id];
        self.actions.push_back(JsAction::Listen {
            account: entry.meta.account.clone(),
            target: JsTarget::Stream(id),
            subjects: entry.meta.config.subjects.clone(),
        });
    }

    pub(super) fn open_store(
        &mut self,
        id: StreamId,
        meta: &StreamMeta,
    ) -> crate::store::StoreResult<Store<D>> {
        let rules = self.rules(&meta.config);
        match rules.storage {
            Storage::Memory => Ok(Store::Memory(MemStore::new(rules.limits))),
            Storage::File => {
                let file_config = FileStoreConfig {
                    dir: store_dir(id),
                    sync: stream_sync(self.config.sync, meta.config.persist_mode),
                    encryption: self.config.encryption.as_ref().map(|e| e.key_ring()),
                    seed: self.ids.next_u64(),
                    ..FileStoreConfig::default()
                };
                FileStore::open_on(self.disk.clone(), file_config, rules.limits).map(Store::File)
            }
        }
    }

    // ----- definitions on disk -----

    pub(super) fn write_meta(&mut self, id: StreamId, meta: &StreamMeta) -> DiskResult<()> {
        let bytes = encode_checked_json(meta);
        let encryption = self.config.encryption.as_ref();
        let bytes = seal_definition(encryption, &purpose(id), bytes, self.ids.next_u64());
        self.disk.create_dir(STREAMS_DIR)?;
        let name = format!("{}.meta", id.0);
        // Keep the current good copy before replacing it.
        if let Some(current) = self.disk.read_all(&meta_path(id))? {
            let readable = open_definition(encryption, &purpose(id), &current)
                .is_ok_and(|(plain, _)| decode_checked_json::<StreamMeta>(&plain).is_some());
            if readable {
                self.disk
                    .write_atomic(STREAMS_DIR, &format!("{}.prev", id.0), &current)?;
            }
        }
        self.disk.write_atomic(STREAMS_DIR, &name, &bytes)
    }

    /// Bring back every stream whose definition is on disk and that is not
    /// running (of `only` when given: an account whose JetStream was
    /// turned on); the ids brought back.
    fn recover(&mut self, only: Option<&str>) -> Vec<StreamId> {
        let names = match self.disk.list(STREAMS_DIR) {
            Ok(names) => names,
            Err(crate::store::DiskError::NotFound(_)) => Vec::new(),
            Err(error) => {
                self.log(
                    LogLevel::Error,
                    format!("JetStream: listing stream definitions failed: {error}"),
                );
                return Vec::new();
            }
        };
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|name| {
                let (id, ext) = name.split_once('.')?;
                matches!(ext, "meta" | "prev").then(|| id.parse().ok())?
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut recovered = Vec::new();
        for raw in ids {
            let id = StreamId(raw);
            self.next_id = self.next_id.max(raw + 1);
            if self.streams.contains_key(&id) {
                continue;
            }
            let Some(meta) = self.read_meta(id) else {
                continue;
            };
            if only.is_some_and(|only| only != meta.account) {
                continue;
            }
            if !self.accounts.contains_key(&meta.account) {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "JetStream: stream '{} > {}' belongs to an account without JetStream; not loaded",
                        meta.account, meta.config.name
                    ),
                );
                continue;
            }
            self.log(
                LogLevel::Info,
                format!(
                    "  Starting restore for stream '{} > {}'",
                    meta.account, meta.config.name
                ),
            );
            // The reference adds "in <duration>"; core reads no clock, and the
            // runtime logs how long the whole start took.
            match self.open_store(id, &meta) {
                Ok(mut store) => {
                    let state = store.state();
                    self.log(
                        LogLevel::Info,
                        format!(
                            "  Restored {} messages for stream '{} > {}'",
                            state.msgs, meta.account, meta.config.name
                        ),
                    );
                    if let Store::File(file) = &mut store {
                        let report = file.backend().recovery().clone();
                        if report.has_findings() {
                            self.log(
                                LogLevel::Warn,
                                format!(
                                    "Stream '{} > {}' recovered with findings: {report:?}",
                                    meta.account, meta.config.name
                                ),
                            );
                        }
                    }
                    self.install(id, meta, store);
                    self.recover_consumers(id);
                    recovered.push(id);
                }
                Err(error) => self.log(
                    LogLevel::Error,
                    format!(
                        "JetStream: stream '{} > {}' could not be opened, left on disk untouched: {error}",
                        meta.account, meta.config.name
                    ),
                ),
            }
        }
        recovered
    }

    /// A stream's definition, from its current copy or else its previous
    /// one; damage is logged, and a stream with neither is left on disk.
    fn read_meta(&mut self, id: StreamId) -> Option<StreamMeta> {
        for path in [meta_path(id), prev_path(id)] {
            let opened = self.disk.read_all(&path).map(|bytes| {
                bytes.map(|bytes| {
                    open_definition(self.config.encryption.as_ref(), &purpose(id), &bytes)
                })
            });
            match opened {
                Ok(Some(Ok((bytes, rewrite)))) => match decode_checked_json::<StreamMeta>(&bytes) {
                    Some(meta) => {
                        if rewrite {
                            // Sealed again under the configured key (twice:
                            // the previous copy too).
                            let rewritten = self
                                .write_meta(id, &meta)
                                .and_then(|()| self.write_meta(id, &meta));
                            if let Err(error) = rewritten {
                                self.log(
                                    LogLevel::Error,
                                    format!("JetStream: sealing stream definition {path} again failed: {error}"),
                                );
                            }
                        }
                        return Some(meta);
                    }
                    None => self.log(
                        LogLevel::Error,
                        format!("JetStream: stream definition {path} is damaged"),
                    ),
                },
                Ok(Some(Err(error))) => self.log(
                    LogLevel::Error,
                    format!("JetStream: error decrypting stream definition {path}: {error}"),
                ),
                Ok(None) => {}
                Err(error) => self.log(
                    LogLevel::Error,
                    format!("JetStream: reading stream definition {path} failed: {error}"),
                ),
            }
        }
        self.log(
            LogLevel::Error,
            format!(
                "JetStream: stream {} has no readable definition; its files are left on disk for an operator",
                id.0
            ),
        );
        None
    }

    /// The rules a stream with `config` runs by on this server.
    fn rules(&self, config: &StreamConfig) -> super::stream::StreamRules {
        let mut rules = super::requests::rules(config);
        rules.domain = self.config.domain.clone().unwrap_or_default();
        rules
    }

    /// A fresh seed from the machine's generator (nonces of sealed files).
    pub(super) fn next_seed(&mut self) -> u64 {
        self.ids.next_u64()
    }

    /// A 22-character id like the reference's nuids.
    pub(super) fn next_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..22)
            .map(|_| ALPHABET[(self.ids.next_u32() as usize) % ALPHABET.len()] as char)
            .collect()
    }

    /// Publish `body` on `subject` in `account`, from the server.
    pub(super) fn publish(&mut self, account: &str, subject: String, body: Vec<u8>) {
        self.actions.push_back(JsAction::Publish {
            account: account.into(),
            subject: Bytes::from(subject),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from(body),
        });
    }

    /// The stream-action advisory for `stream` in `account`.
    pub(super) fn advise_stream(&mut self, account: &str, stream: &str, action: &'static str) {
        let subject = match action {
            "create" => super::advisory::STREAM_CREATED,
            "modify" => super::advisory::STREAM_UPDATED,
            _ => super::advisory::STREAM_DELETED,
        };
        let domain = self.config.domain.clone().unwrap_or_default();
        let advisory = super::advisory::StreamAction {
            kind: super::advisory::STREAM_ACTION_TYPE,
            id: self.next_id(),
            timestamp: crate::format::rfc3339_nanos(self.wall),
            stream,
            action,
            domain: &domain,
        };
        let body = serde_json::to_vec(&advisory).expect("advisories serialize");
        self.publish(account, format!("{subject}.{stream}"), body);
    }

    /// The abandoned advisory of each atomic batch stream `id` dropped.
    fn advise_abandoned(&mut self, id: StreamId) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        let abandoned = entry.stream.take_abandoned();
        if abandoned.is_empty() {
            return;
        }
        let account = entry.meta.account.clone();
        let stream = entry.meta.config.name.clone();
        let domain = self.config.domain.clone().unwrap_or_default();
        for (batch, reason) in abandoned {
            let advisory = super::advisory::BatchAbandoned {
                kind: super::advisory::BATCH_ABANDONED_TYPE,
                id: self.next_id(),
                timestamp: crate::format::rfc3339_nanos(self.wall),
                stream: &stream,
                domain: &domain,
                batch: &String::from_utf8_lossy(&batch),
                reason: reason.reason(),
            };
            let body = serde_json::to_vec(&advisory).expect("advisories serialize");
            let subject = format!("{}.{stream}", super::advisory::BATCH_ABANDONED);
            self.publish(&account, subject, body);
        }
    }

    pub(super) fn stream_by_name(&self, account: &str, name: &str) -> Option<StreamId> {
        self.accounts.get(account)?.by_name.get(name).copied()
    }

    /// A stream's inbound message for the API (published as the server).
    pub(super) fn reply(&mut self, account: &str, subject: &[u8], payload: Vec<u8>) {
        if subject.is_empty() {
            return;
        }
        self.actions.push_back(JsAction::Publish {
            account: account.into(),
            subject: Bytes::copy_from_slice(subject),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from(payload),
        });
    }
}

/// Count one of `key` off `counts`; whether there was one.
fn take_one(counts: &mut BTreeMap<(StreamId, u64), usize>, key: (StreamId, u64)) -> bool {
    let Some(count) = counts.get_mut(&key) else {
        return false;
    };
    assert!(*count > 0, "a zero count is removed");
    *count -= 1;
    if *count == 0 {
        counts.remove(&key);
    }
    true
}

/// What a stream's sealed definition is sealed for (both of its copies).
fn purpose(id: StreamId) -> String {
    format!("stream definition {}", id.0)
}

fn meta_path(id: StreamId) -> String {
    format!("{STREAMS_DIR}/{}.meta", id.0)
}

fn prev_path(id: StreamId) -> String {
    format!("{STREAMS_DIR}/{}.prev", id.0)
}

fn store_dir(id: StreamId) -> String {
    format!("{STREAMS_DIR}/{}", id.0)
}

/// A definition file's bytes: a line with the crc32 of the JSON in hex,
/// then the JSON.
pub(super) fn encode_checked_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("definitions serialize");
    let mut bytes = format!("{:08x}\n", crc32fast::hash(&json)).into_bytes();
    bytes.extend_from_slice(&json);
    bytes
}

/// A definition file's JSON, if its checksum holds and it parses.
pub(super) fn decode_checked_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let crc = u32::from_str_radix(std::str::from_utf8(&bytes[..newline]).ok()?, 16).ok()?;
    let json = &bytes[newline + 1..];
    if crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// How long an asynchronously persisted stream's writes may wait for
/// their sync when the server syncs before every ack (the reference's
/// default `sync_interval`).
const ASYNC_PERSIST_SYNC: std::time::Duration = std::time::Duration::from_secs(120);

/// A stream's sync policy: the server's, except that `persist_mode: async`
/// acknowledges once a message is written, not once it is synced (the
/// reference flushes such a stream's writes in the background and syncs
/// on its interval). A server already syncing on an interval keeps it.
fn stream_sync(server: SyncPolicy, mode: super::api::PersistMode) -> SyncPolicy {
    match (mode, server) {
        (super::api::PersistMode::Async, SyncPolicy::BeforeAck) => {
            SyncPolicy::Interval(ASYNC_PERSIST_SYNC)
        }
        _ => server,
    }
}
