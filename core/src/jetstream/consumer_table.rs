//! The consumers of every stream: where they live, how messages reach
//! them, and how durable ones survive a restart.
//!
//! Role: each stream owns its consumers ([`StreamEntry::consumers`], by
//! name); this module adds and removes them, routes their acks and
//! flow-control replies (`JsTarget::Consumer`), pumps them after anything
//! that may let a message go out (a publish, a pull request, an ack, a
//! timer), and keeps their definitions and state on disk.
//!
//! Disk layout, for the consumers of file streams (ephemeral ones too):
//! `streams/<stream id>.consumers/<name>.meta` (the definition: a crc32
//! line, then JSON, written atomically; listing these finds the consumers)
//! and `streams/<stream id>.consumers/<name>/state` (the
//! [`crate::store::ConsumerFileStore`]). `mem_storage` and `direct`
//! consumers and the consumers of memory streams live in memory only.
//!
//! Durability: a consumer's state is written (atomically, synced) before
//! any reply that reveals it (consumer info, an acknowledged ack) and at
//! least every [`FLUSH_INTERVAL`] while it changes. So an ack a client saw
//! confirmed, or saw reported in consumer info, survives a kill; an ack
//! sent without a reply may be lost in the last interval before a kill,
//! and its message is then delivered again (at least once, never lost).
//!
//! Invariants:
//! - every consumer in a stream's table is in `consumer_index` under its
//!   id, and the server has been asked to route its ack subjects to it;
//! - consumer ids are never reused within a run.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::api::ConsumerConfig;
use super::config::{open_definition, seal_definition};
use super::consumer::{Consumer, ConsumerRules, ConsumerStore, DeliverStart, PushRules};
use super::link::{ConsumerId, JsAction, JsInbound, JsTarget, ReplyWatch, StreamId, Watcher};
use super::machine::JetStream;
use super::stream::Storage;
use crate::server::LogLevel;
use crate::store::{AckPolicy, ConsumerFileStore, ConsumerTracker, Disk, DiskError, Filter};
use crate::time::{Instant, WallTime};

/// How long a changed consumer state may stay unwritten.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer and what the API reports about it.
pub struct ConsumerEntry<D: Disk> {
    pub consumer: Consumer<D>,
    pub config: ConsumerConfig,
    pub created: WallTime,
    /// Kept on disk (a durable consumer of a file stream).
    pub persisted: bool,
    /// An ephemeral consumer is deleted after this long without a client
    /// asking for messages or acking.
    pub inactive_threshold: Option<Duration>,
    pub last_seen: Instant,
}

/// What is kept on disk per consumer besides its state.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConsumerMeta {
    config: ConsumerConfig,
    /// Unix nanoseconds.
    created: u64,
}

/// Without a stream `max_msg_size`, a rate-limited consumer's burst is the
/// largest payload: nats-server's default `max_payload` (the reference
/// takes the account's or the server's configured one).
const RATE_LIMIT_BURST: u64 = 1024 * 1024;

/// The rules consumer `name` with `config` runs by, in a stream whose
/// `max_msg_size` is `stream_max_msg_size`.
pub fn consumer_rules(
    account: &str,
    stream: &str,
    name: &str,
    config: &ConsumerConfig,
    stream_max_msg_size: i32,
) -> ConsumerRules {
    use super::api::{AckPolicy as WireAck, DeliverPolicy};
    let positive = |value: i64| u64::try_from(value).ok().filter(|&v| v > 0);
    let nanos = |value: i64| Duration::from_nanos(u64::try_from(value).unwrap_or(0));
    let filter = if !config.filter_subjects.is_empty() {
        if config.filter_subjects.iter().any(|s| s == ">") {
            Filter::All
        } else {
            Filter::Subjects(
                config
                    .filter_subjects
                    .iter()
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .collect(),
            )
        }
    } else {
        Filter::subject(config.filter_subject.as_bytes())
    };
    ConsumerRules {
        account: account.to_string(),
        stream: stream.to_string(),
        name: name.to_string(),
        filter,
        start: match config.deliver_policy {
            DeliverPolicy::All => DeliverStart::All,
            DeliverPolicy::Last => DeliverStart::Last,
            DeliverPolicy::New => DeliverStart::New,
            DeliverPolicy::ByStartSequence => DeliverStart::BySequence(config.opt_start_seq),
            DeliverPolicy::ByStartTime => DeliverStart::ByTime(
                config
                    .opt_start_time
                    .and_then(|time| time.wall_time())
                    .unwrap_or_default(),
            ),
            DeliverPolicy::LastPerSubject => DeliverStart::LastPerSubject,
        },
        ack: match config.ack_policy {
            WireAck::None => AckPolicy::None,
            WireAck::Explicit => AckPolicy::Explicit,
            WireAck::All | WireAck::FlowControl => AckPolicy::All,
        },
        flow_control_acks: config.ack_policy == WireAck::FlowControl,
        ack_wait: nanos(config.ack_wait),
        backoff: config.backoff.iter().map(|&d| nanos(d)).collect(),
        max_deliver: positive(config.max_deliver),
        max_ack_pending: positive(config.max_ack_pending),
        max_waiting: usize::try_from(config.max_waiting).unwrap_or(0),
        push: (!config.deliver_subject.is_empty()).then(|| PushRules {
            deliver_subject: Bytes::copy_from_slice(config.deliver_subject.as_bytes()),
            flow_control: config.flow_control,
            idle_heartbeat: positive(config.idle_heartbeat).map(Duration::from_nanos),
        }),
        headers_only: config.headers_only,
        max_batch: positive(config.max_batch),
        max_expires: positive(config.max_expires).map(Duration::from_nanos),
        max_bytes: positive(config.max_bytes),
        pause_until: config.pause_until.and_then(|until| until.wall_time()),
        priority_policy: config.priority_policy,
        priority_groups: config.priority_groups.clone(),
        pinned_ttl: nanos(config.priority_timeout),
        // Checked at create: digits with an optional `%`.
        sample_percent: config
            .sample_freq
            .trim_end_matches('%')
            .parse::<i64>()
            .ok()
            .and_then(|percent| u32::try_from(percent).ok())
            .unwrap_or(0),
        replay_original: config.replay_policy == super::api::ReplayPolicy::Original,
        // Bits a second to bytes, rounded down as the reference does.
        rate_limit: (config.rate_limit_bps > 0).then(|| {
            let burst = u64::try_from(stream_max_msg_size)
                .ok()
                .filter(|&size| size > 0)
                .unwrap_or(RATE_LIMIT_BURST);
            (config.rate_limit_bps / 8, burst)
        }),
    }
}

/// How long a pull consumer may still be working on what it was given:
/// until the last of its unacknowledged messages' ack wait (by its backoff
/// step) plus the inactive threshold has passed since its delivery (the
/// reference counts an idle pull consumer's threshold from there). `None`
/// when every such time has passed.
fn awaited_acks<D: Disk>(
    consumer: &super::consumer::Consumer<D>,
    threshold: Option<Duration>,
    wall: WallTime,
) -> Option<Duration> {
    let rules = consumer.rules();
    let threshold = threshold.unwrap_or_default();
    let state = consumer.state();
    let latest = state
        .pending
        .iter()
        .map(|(seq, pending)| {
            let wait = if rules.backoff.is_empty() {
                rules.ack_wait
            } else {
                let step = state.redelivered.get(seq).copied().unwrap_or(0);
                let step = usize::try_from(step).unwrap_or(usize::MAX);
                rules.backoff[step.min(rules.backoff.len() - 1)]
            };
            let nanos = u64::try_from((wait + threshold).as_nanos()).unwrap_or(u64::MAX);
            pending.ts.0.saturating_add(nanos)
        })
        .max()?;
    (latest > wall.0).then(|| Duration::from_nanos(latest - wall.0))
}

fn consumers_dir(stream: StreamId) -> String {
    format!("streams/{}.consumers", stream.0)
}

fn consumer_dir(stream: StreamId, name: &str) -> String {
    format!("{}/{name}", consumers_dir(stream))
}

/// What a sealed consumer definition is bound to.
fn meta_purpose(stream: StreamId, name: &str) -> String {
    format!("consumer definition {}/{name}", stream.0)
}

fn meta_name(name: &str) -> String {
    format!("{name}.meta")
}

/// The subjects a consumer's acks and flow-control replies arrive on, as
/// the reference subscribes them: acks (unless the consumer takes none) in
/// the short form with exactly five tokens after the names and in the long
/// form (domain, `_` without one, and account hash in front) with five or
/// more; flow-control replies only for a consumer with flow control. An
/// ack on any other subject finds no subscriber (`503` to a requester).
fn consumer_subjects(
    domain: Option<&str>,
    account: &str,
    stream: &str,
    name: &str,
    config: &ConsumerConfig,
) -> Vec<String> {
    use super::consumer::ack::{ACK_PREFIX, FC_PREFIX};
    let domain = domain.unwrap_or("_");
    let hash = crate::format::short_hash(account.as_bytes());
    let mut subjects = Vec::new();
    // A `flow_control` ack policy takes its acks from flow control only.
    if !matches!(
        config.ack_policy,
        super::api::AckPolicy::None | super::api::AckPolicy::FlowControl
    ) {
        subjects.push(format!("{ACK_PREFIX}{stream}.{name}.*.*.*.*.*"));
        subjects.push(format!(
            "{ACK_PREFIX}{domain}.{hash}.{stream}.{name}.*.*.*.*.>"
        ));
    }
    if config.flow_control {
        subjects.push(format!("{FC_PREFIX}{stream}.{name}.*"));
        subjects.push(format!("{FC_PREFIX}{domain}.{hash}.{stream}.{name}.*"));
    }
    subjects
}

impl<D: Disk + Clone> JetStream<D> {
    /// An ack or flow-control reply for a consumer.
    pub(super) fn consumer_inbound(&mut self, stream: StreamId, id: ConsumerId, msg: &JsInbound) {
        let Some((_, name)) = self.consumer_index.get(&id).cloned() else {
            return;
        };
        let (now, wall) = (self.now, self.wall);
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(consumer) = entry.consumers.get_mut(&name) else {
            return;
        };
        consumer.last_seen = now;
        if msg
            .subject
            .starts_with(super::consumer::ack::FC_PREFIX.as_bytes())
        {
            consumer.consumer.handle_flow_control(
                &msg.subject,
                &msg.headers,
                wall,
                &mut self.actions,
            );
            if consumer.persisted {
                // A floor a flow-control answer moved is written soon, as
                // a client's ack.
                self.flush_due.get_or_insert(now + FLUSH_INTERVAL);
            }
        } else {
            let next = consumer.consumer.handle_ack(
                &msg.subject,
                &msg.reply,
                &msg.payload,
                now,
                wall,
                &mut self.actions,
            );
            if let Some(request) = next {
                let store = entry.stream.store_mut();
                consumer.consumer.handle_pull(
                    &msg.account,
                    &msg.reply,
                    &request,
                    store,
                    now,
                    &mut self.actions,
                );
            }
            if !msg.reply.is_empty() {
                // The client waits for this ack's confirmation: make it
                // durable first (queued actions go out after we return).
                self.flush_consumer(stream, &name);
            } else {
                self.flush_due.get_or_insert(now + FLUSH_INTERVAL);
            }
        }
        self.pump_consumer(stream, &name);
    }

    /// Apply interest or work-queue retention to what consumer `name` of
    /// `stream` settled: a work queue drops a message once its consumer
    /// is done with it; an interest stream once no consumer needs it.
    pub(super) fn settle(&mut self, stream: StreamId, name: &str) {
        use super::api::RetentionPolicy;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(consumer) = entry.consumers.get_mut(name) else {
            return;
        };
        let settled = consumer.consumer.take_settled();
        let retention = entry.meta.config.retention;
        if settled.is_empty() || retention == RetentionPolicy::Limits {
            return;
        }
        let mut removed = false;
        for seq in settled {
            let gone = match retention {
                RetentionPolicy::WorkQueue => true,
                _ => match entry.stream.store_mut().load_msg(seq) {
                    Ok(msg) => !entry
                        .consumers
                        .values()
                        .any(|other| other.consumer.needs(seq, &msg.subject)),
                    Err(_) => false,
                },
            };
            if gone {
                removed |= entry
                    .stream
                    .remove(seq, false, &mut self.actions)
                    .unwrap_or(false);
            }
        }
        if removed {
            self.recount(stream);
        }
    }

    /// An interest stream keeps only what some consumer needs: check the
    /// messages from `from` on (after a publish, or a consumer leaving).
    pub(super) fn drop_unwanted(&mut self, stream: StreamId, from: u64) {
        use super::api::RetentionPolicy;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.meta.config.retention != RetentionPolicy::Interest {
            return;
        }
        let mut seq = from;
        let mut removed = false;
        while let Ok(msg) = entry.stream.store_mut().load_next(&Filter::All, seq) {
            seq = msg.seq + 1;
            let wanted = entry
                .consumers
                .values()
                .any(|consumer| consumer.consumer.needs(msg.seq, &msg.subject));
            if !wanted {
                removed |= entry
                    .stream
                    .remove(msg.seq, false, &mut self.actions)
                    .unwrap_or(false);
            }
        }
        if removed {
            self.recount(stream);
        }
    }

    /// A consumer by its id: its name and entry (`None` once it is gone).
    fn consumer_by_id(
        &mut self,
        stream: StreamId,
        id: ConsumerId,
    ) -> Option<(String, &mut ConsumerEntry<D>)> {
        let (_, name) = self.consumer_index.get(&id).cloned()?;
        let consumer = self.streams.get_mut(&stream)?.consumers.get_mut(&name)?;
        Some((name, consumer))
    }

    /// The server reports whether a push consumer's deliver subject has
    /// subscribers.
    pub(super) fn consumer_interest(&mut self, stream: StreamId, id: ConsumerId, interest: bool) {
        let now = self.now;
        let Some((name, consumer)) = self.consumer_by_id(stream, id) else {
            return;
        };
        if consumer.consumer.has_interest() != interest {
            // Inactivity of a push consumer counts from losing interest.
            consumer.last_seen = now;
        }
        consumer.consumer.set_interest(interest, now);
        self.pump_consumer(stream, &name);
    }

    /// Ask the server to follow (or stop following) the reply subjects a
    /// consumer's pull requests started (stopped) waiting on.
    fn watch_replies(
        &mut self,
        stream: StreamId,
        consumer: ConsumerId,
        changes: Vec<(String, Bytes, bool)>,
    ) {
        if changes.is_empty() {
            return;
        }
        let changes = changes
            .into_iter()
            .map(|(account, reply, watch)| ReplyWatch {
                account,
                reply,
                watch,
            })
            .collect();
        self.actions.push_back(JsAction::WatchReplies {
            stream,
            consumer,
            changes,
        });
    }

    /// The server found no subscriber left on a pull request's reply.
    pub(super) fn consumer_reply_gone(
        &mut self,
        stream: StreamId,
        id: ConsumerId,
        msg: &JsInbound,
    ) {
        let Some((name, consumer)) = self.consumer_by_id(stream, id) else {
            return;
        };
        consumer.consumer.reply_gone(&msg.account, &msg.subject);
        self.pump_consumer(stream, &name);
    }

    /// A pull request for `name` of `stream`.
    pub(super) fn consumer_pull(&mut self, stream: StreamId, name: &str, msg: &JsInbound) {
        let now = self.now;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(consumer) = entry.consumers.get_mut(name) else {
            return;
        };
        consumer.last_seen = now;
        let store = entry.stream.store_mut();
        consumer.consumer.handle_pull(
            &msg.account,
            &msg.reply,
            &msg.payload,
            store,
            now,
            &mut self.actions,
        );
        self.pump_consumer(stream, name);
    }

    /// Let one consumer send what it can.
    pub(super) fn pump_consumer(&mut self, stream: StreamId, name: &str) {
        let (now, wall) = (self.now, self.wall);
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Some(consumer) = entry.consumers.get_mut(name) {
            let before = consumer.consumer.state().delivered.consumer;
            consumer
                .consumer
                .pump(entry.stream.store_mut(), now, wall, &mut self.actions);
            if consumer.persisted && consumer.consumer.state().delivered.consumer != before {
                self.flush_due.get_or_insert(now + FLUSH_INTERVAL);
            }
            let (id, changes) = (consumer.consumer.id, consumer.consumer.take_reply_changes());
            self.watch_replies(stream, id, changes);
        }
        // Acks (handled before a pump) and deliveries without acks settle
        // messages.
        self.settle(stream, name);
    }

    /// Let every consumer of `stream` send what it can (after a publish
    /// that stored `seq`, which an interest stream keeps only if wanted).
    pub(super) fn pump_stream(&mut self, stream: StreamId, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.drop_unwanted(stream, seq);
        }
        // Only consumers someone waits on can send; with thousands of idle
        // ones a publish must not visit more than it needs.
        let names: Vec<String> = match self.streams.get(&stream) {
            Some(entry) => entry
                .consumers
                .iter()
                .filter(|(_, consumer)| consumer.consumer.is_hungry())
                .map(|(name, _)| name.clone())
                .collect(),
            None => return,
        };
        for name in names {
            self.pump_consumer(stream, &name);
        }
    }

    /// Run every consumer's timers, delete inactive ephemerals, flush.
    pub(super) fn consumer_timeouts(&mut self) {
        let (now, wall) = (self.now, self.wall);
        let mut inactive = Vec::new();
        let mut pumps = Vec::new();
        for (&id, entry) in self.streams.iter_mut() {
            for (name, consumer) in entry.consumers.iter_mut() {
                if consumer.consumer.poll_timeout().is_some_and(|at| at <= now) {
                    consumer
                        .consumer
                        .handle_timeout(now, wall, &mut self.actions);
                    pumps.push((id, name.clone()));
                }
                let idle = consumer
                    .inactive_threshold
                    .is_some_and(|threshold| consumer.last_seen + threshold <= now);
                let in_use = if consumer.consumer.is_push() {
                    consumer.consumer.has_interest()
                } else {
                    consumer.consumer.num_waiting() > 0
                };
                let acks_due = if idle && !consumer.consumer.is_push() {
                    awaited_acks(&consumer.consumer, consumer.inactive_threshold, wall)
                } else {
                    None
                };
                if let (Some(due), Some(threshold)) = (acks_due, consumer.inactive_threshold) {
                    // Idle from the last ack deadline on: its threshold
                    // now ends there.
                    let ends = now
                        .0
                        .saturating_add(u64::try_from(due.as_nanos()).unwrap_or(u64::MAX));
                    let threshold = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
                    consumer.last_seen =
                        Instant(ends.saturating_sub(threshold).max(consumer.last_seen.0));
                    debug_assert!(consumer.last_seen.0.saturating_add(threshold) > now.0);
                } else if idle && !in_use {
                    inactive.push((id, name.clone()));
                }
            }
        }
        for (stream, name) in pumps {
            self.pump_consumer(stream, &name);
        }
        for (stream, name) in inactive {
            let account = self.streams[&stream].meta.account.clone();
            let stream_name = self.streams[&stream].meta.config.name.clone();
            if self.retire_consumer(stream, &name).is_ok() {
                self.advise_consumer(&account, &stream_name, &name, "delete");
            }
        }
        if self.flush_due.is_some_and(|at| at <= now) {
            self.flush_consumers();
        }
    }

    /// Write every changed consumer state.
    pub fn flush_consumers(&mut self) {
        self.all_streams_touched();
        self.flush_due = None;
        let mut names = Vec::new();
        for (&id, entry) in &self.streams {
            for (name, consumer) in &entry.consumers {
                if consumer.persisted {
                    names.push((id, name.clone()));
                }
            }
        }
        for (stream, name) in names {
            self.flush_consumer(stream, &name);
        }
    }

    /// Write one consumer's state if it changed.
    pub(super) fn flush_consumer(&mut self, stream: StreamId, name: &str) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let account = entry.meta.account.clone();
        let stream_name = entry.meta.config.name.clone();
        let Some(consumer) = entry.consumers.get_mut(name) else {
            return;
        };
        if let Err(error) = consumer.consumer.consumer_store_mut().flush() {
            self.log(
                LogLevel::Error,
                format!("JetStream consumer '{account} > {stream_name} > {name}': writing its state failed: {error}"),
            );
        }
    }

    /// Add a consumer (validated by the caller) to `stream` and route its
    /// acks to it.
    /// It starts from `initial` when given (a restored consumer's state),
    /// else from the config's starting point.
    pub(super) fn add_consumer_with(
        &mut self,
        stream: StreamId,
        name: &str,
        config: ConsumerConfig,
        created: WallTime,
        initial: Option<crate::store::ConsumerState>,
    ) -> Result<ConsumerId, String> {
        let entry = &self.streams[&stream];
        let account = entry.meta.account.clone();
        let stream_name = entry.meta.config.name.clone();
        let name = name.to_string();
        // Every consumer of a file stream keeps its state in files, the
        // ephemeral ones too (they come back after a restart and go once
        // inactive, as in the reference), but `mem_storage` ones and the
        // hidden `direct` ones a feed makes, which the reference gives no
        // store.
        let persisted =
            !config.direct && entry.stream.rules().storage == Storage::File && !config.mem_storage;
        let max_msg_size = entry.meta.config.max_msg_size;
        let rules = consumer_rules(&account, &stream_name, &name, &config, max_msg_size);
        let state = if persisted {
            let dir = consumer_dir(stream, &name);
            let meta = ConsumerMeta {
                config: config.clone(),
                created: created.0,
            };
            let bytes = self.seal_meta(stream, &name, &meta);
            let mut disk = self.disk.clone();
            disk.create_dir(&consumers_dir(stream))
                .and_then(|()| disk.write_atomic(&consumers_dir(stream), &meta_name(&name), &bytes))
                .map_err(|error| error.to_string())?;
            let keys = self.config.encryption.as_ref().map(|e| e.key_ring());
            let seed = self.next_seed();
            let file = ConsumerFileStore::open_encrypted(
                disk,
                &dir,
                rules.ack,
                rules.max_deliver.unwrap_or(0),
                keys,
                seed,
            )
            .map_err(|error| error.to_string())?;
            ConsumerStore::File(file)
        } else {
            ConsumerStore::Memory(ConsumerTracker::new(
                rules.ack,
                rules.max_deliver.unwrap_or(0),
            ))
        };
        let mut state = state;
        if let Some(mut initial) = initial {
            if rules.ack == crate::store::AckPolicy::None {
                // Nothing waits for an ack: what was delivered is the floor.
                initial.pending.clear();
                initial.ack_floor = initial.delivered;
            }
            state
                .tracker_mut()
                .update(initial, true)
                .map_err(|error| error.to_string())?;
        }
        Ok(self.install_consumer(stream, config, rules, state, created, persisted))
    }

    fn install_consumer(
        &mut self,
        stream: StreamId,
        config: ConsumerConfig,
        rules: ConsumerRules,
        state: ConsumerStore<D>,
        created: WallTime,
        persisted: bool,
    ) -> ConsumerId {
        let id = ConsumerId(self.next_consumer);
        self.next_consumer += 1;
        let (now, wall) = (self.now, self.wall);
        let name = rules.name.clone();
        let entry = self.streams.get_mut(&stream).expect("the stream exists");
        let account = entry.meta.account.clone();
        let stream_name = entry.meta.config.name.clone();
        let consumer = Consumer::new(id, rules, state, entry.stream.store_mut(), now, wall);
        let inactive_threshold = (!config.is_durable())
            .then(|| u64::try_from(config.inactive_threshold).ok())
            .flatten()
            .filter(|&nanos| nanos > 0)
            .map(Duration::from_nanos);
        let previous = entry.consumers.insert(
            name.clone(),
            ConsumerEntry {
                consumer,
                config,
                created,
                persisted,
                inactive_threshold,
                last_seen: now,
            },
        );
        assert!(previous.is_none(), "two consumers named {name}");
        self.consumer_index.insert(id, (stream, name.clone()));
        let deliver_subject = entry.consumers[&name]
            .consumer
            .rules()
            .push
            .as_ref()
            .map(|push| push.deliver_subject.clone());
        self.actions.push_back(JsAction::Listen {
            account: account.clone(),
            target: JsTarget::Consumer(stream, id),
            subjects: consumer_subjects(
                self.config.domain.as_deref(),
                &account,
                &stream_name,
                &name,
                &entry.consumers[&name].config,
            ),
        });
        if deliver_subject.is_some() {
            self.actions.push_back(JsAction::WatchInterest {
                account,
                watcher: Watcher::Consumer(stream, id),
                subject: deliver_subject,
            });
        }
        if persisted {
            // A new consumer's starting point is part of its state.
            self.flush_consumer(stream, &name);
        }
        self.pump_consumer(stream, &name);
        id
    }

    /// Replace a consumer's configuration (validated by the caller).
    pub(super) fn update_consumer(
        &mut self,
        stream: StreamId,
        name: &str,
        config: ConsumerConfig,
    ) -> Result<(), String> {
        let (now, wall) = (self.now, self.wall);
        let name = name.to_string();
        let existing = &self.streams[&stream].consumers[&name];
        if existing.persisted {
            let meta = ConsumerMeta {
                config: config.clone(),
                created: existing.created.0,
            };
            let bytes = self.seal_meta(stream, &name, &meta);
            self.disk
                .clone()
                .write_atomic(&consumers_dir(stream), &meta_name(&name), &bytes)
                .map_err(|error| error.to_string())?;
        }
        let entry = self.streams.get_mut(&stream).expect("the stream exists");
        let account = entry.meta.account.clone();
        let stream_name = entry.meta.config.name.clone();
        let consumer = entry
            .consumers
            .get_mut(&name)
            .expect("updating a consumer that exists");
        let max_msg_size = entry.meta.config.max_msg_size;
        let rules = consumer_rules(&account, &stream_name, &name, &config, max_msg_size);
        let deliver =
            |rules: &ConsumerRules| rules.push.as_ref().map(|p| p.deliver_subject.clone());
        let moved = deliver(consumer.consumer.rules()) != deliver(&rules);
        let subject = deliver(&rules);
        consumer.consumer.update(rules, now, wall);
        consumer.config = config;
        let id = consumer.consumer.id;
        if moved {
            consumer.consumer.set_interest(false, now);
            self.actions.push_back(JsAction::WatchInterest {
                account,
                watcher: Watcher::Consumer(stream, id),
                subject,
            });
        }
        self.pump_consumer(stream, &name);
        Ok(())
    }

    /// Remove a consumer: its waiting requests are told, its routes and
    /// files go.
    pub(super) fn remove_consumer(&mut self, stream: StreamId, name: &str) -> Result<(), String> {
        let Some(mut consumer) = self.detach_consumer(stream, name) else {
            return Err(format!("consumer {name} not found"));
        };
        consumer.consumer.close(&mut self.actions);
        self.unroute_consumer(stream, &mut consumer);
        if consumer.persisted {
            remove_consumer_files(&mut self.disk.clone(), stream, name)
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Take consumer `name` out of its stream's table and the index.
    fn detach_consumer(&mut self, stream: StreamId, name: &str) -> Option<ConsumerEntry<D>> {
        let entry = self.streams.get_mut(&stream).expect("the stream exists");
        let consumer = entry.consumers.remove(name)?;
        let indexed = self.consumer_index.remove(&consumer.consumer.id);
        assert!(indexed.is_some(), "a consumer missing from the index");
        Some(consumer)
    }

    /// Ask the server to stop routing to a detached consumer: its ack
    /// subjects, its deliver subject's interest, its requests' replies.
    fn unroute_consumer(&mut self, stream: StreamId, consumer: &mut ConsumerEntry<D>) {
        let account = self.streams[&stream].meta.account.clone();
        let id = consumer.consumer.id;
        self.watch_replies(stream, id, consumer.consumer.take_reply_changes());
        self.actions.push_back(JsAction::Listen {
            account: account.clone(),
            target: JsTarget::Consumer(stream, id),
            subjects: Vec::new(),
        });
        if consumer.consumer.is_push() {
            self.actions.push_back(JsAction::WatchInterest {
                account,
                watcher: Watcher::Consumer(stream, id),
                subject: None,
            });
        }
    }

    /// Stop every consumer of a stream that stops without being deleted
    /// (its account's JetStream was turned off): each durable one writes
    /// its state, then its routes go; its files stay for when the stream
    /// is recovered again ([`Self::recover_consumers`]). In-memory ones
    /// (`mem_storage`, `direct`, of memory streams) are gone, as after a
    /// restart.
    pub(super) fn stop_all_consumers(&mut self, stream: StreamId) {
        let names: Vec<String> = self.streams[&stream].consumers.keys().cloned().collect();
        for name in names {
            if self.streams[&stream].consumers[&name].persisted {
                self.flush_consumer(stream, &name);
            }
            let mut consumer = self.detach_consumer(stream, &name).expect("listed above");
            consumer.consumer.stop();
            self.unroute_consumer(stream, &mut consumer);
        }
        assert!(self.streams[&stream].consumers.is_empty());
    }

    /// The stream dropped messages (purge, delete): every consumer settles
    /// what it had pending among them.
    pub(super) fn stream_shrunk(&mut self, stream: StreamId) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let store = entry.stream.store_mut();
        for consumer in entry.consumers.values_mut() {
            consumer.consumer.stream_shrunk(store);
            consumer.consumer.take_settled();
        }
        self.flush_due.get_or_insert(self.now + FLUSH_INTERVAL);
    }

    /// Remove a consumer on request; an interest stream then drops what
    /// no consumer needs any more.
    pub(super) fn retire_consumer(&mut self, stream: StreamId, name: &str) -> Result<(), String> {
        self.remove_consumer(stream, name)?;
        self.drop_unwanted(stream, 0);
        Ok(())
    }

    /// Remove every consumer of a stream being deleted, files included.
    pub(super) fn remove_all_consumers(&mut self, stream: StreamId) {
        let names: Vec<String> = self.streams[&stream].consumers.keys().cloned().collect();
        for name in names {
            let _ = self.remove_consumer(stream, &name);
        }
        let mut disk = self.disk.clone();
        if let Ok(files) = disk.list(&consumers_dir(stream)) {
            // Leftovers of consumers whose definitions did not load.
            for name in files.iter().filter_map(|file| file.strip_suffix(".meta")) {
                let _ = remove_consumer_files(&mut disk, stream, name);
            }
        }
    }

    /// Bring back the durable consumers of a recovered stream.
    pub(super) fn recover_consumers(&mut self, stream: StreamId) {
        let mut disk = self.disk.clone();
        let files = match disk.list(&consumers_dir(stream)) {
            Ok(files) => files,
            Err(DiskError::NotFound(_)) => return,
            Err(error) => {
                self.log(
                    LogLevel::Error,
                    format!(
                        "JetStream: listing consumers of stream {} failed: {error}",
                        stream.0
                    ),
                );
                return;
            }
        };
        let account = self.streams[&stream].meta.account.clone();
        let stream_name = self.streams[&stream].meta.config.name.clone();
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|file| file.strip_suffix(".meta"))
            .map(str::to_string)
            .collect();
        names.sort();
        if !names.is_empty() {
            self.log(
                LogLevel::Info,
                format!(
                    "  Recovering {} consumers for stream - '{account} > {stream_name}'",
                    names.len()
                ),
            );
        }
        for name in names {
            let dir = consumer_dir(stream, &name);
            let meta_path = format!("{}/{}", consumers_dir(stream), meta_name(&name));
            let encryption = self.config.encryption.as_ref();
            let purpose = meta_purpose(stream, &name);
            let (meta, rewrite) = match disk.read_all(&meta_path) {
                Ok(Some(bytes)) => match open_definition(encryption, &purpose, &bytes) {
                    Ok((plain, rewrite)) => (
                        super::machine::decode_checked_json::<ConsumerMeta>(&plain),
                        rewrite,
                    ),
                    Err(_) => (None, false),
                },
                _ => (None, false),
            };
            let Some(meta) = meta else {
                self.log(
                    LogLevel::Error,
                    format!("JetStream consumer '{account} > {stream_name} > {name}': its definition is missing or damaged; left on disk"),
                );
                continue;
            };
            if rewrite {
                // Sealed again under the configured key.
                let bytes = self.seal_meta(stream, &name, &meta);
                let _ = disk.write_atomic(&consumers_dir(stream), &meta_name(&name), &bytes);
            }
            let max_msg_size = self.streams[&stream].meta.config.max_msg_size;
            let rules = consumer_rules(&account, &stream_name, &name, &meta.config, max_msg_size);
            let keys = self.config.encryption.as_ref().map(|e| e.key_ring());
            let seed = self.next_seed();
            match ConsumerFileStore::open_encrypted(
                disk.clone(),
                &dir,
                rules.ack,
                rules.max_deliver.unwrap_or(0),
                keys,
                seed,
            ) {
                Ok(mut file) => {
                    if let Some(warning) = file.take_warning() {
                        self.log(
                            LogLevel::Warn,
                            format!("JetStream consumer '{account} > {stream_name} > {name}': {warning}"),
                        );
                    }
                    self.install_consumer(
                        stream,
                        meta.config,
                        rules,
                        ConsumerStore::File(file),
                        WallTime(meta.created),
                        true,
                    );
                }
                Err(error) => self.log(
                    LogLevel::Error,
                    format!("JetStream consumer '{account} > {stream_name} > {name}' could not be opened: {error}"),
                ),
            }
        }
    }

    /// A consumer definition's bytes, sealed when encryption is on.
    fn seal_meta(&mut self, stream: StreamId, name: &str, meta: &ConsumerMeta) -> Vec<u8> {
        let bytes = super::machine::encode_checked_json(meta);
        let seed = self.next_seed();
        let encryption = self.config.encryption.as_ref();
        seal_definition(encryption, &meta_purpose(stream, name), bytes, seed)
    }

    /// The consumer-action advisory (`create`, `delete`).
    pub(super) fn advise_consumer(
        &mut self,
        account: &str,
        stream: &str,
        consumer: &str,
        action: &'static str,
    ) {
        let kind = if action == "create" {
            "CREATED"
        } else {
            "DELETED"
        };
        let domain = self.config.domain.clone().unwrap_or_default();
        let mut body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.consumer_action",
            "id": self.next_id(),
            "timestamp": crate::format::rfc3339_nanos(self.wall),
            "stream": stream,
            "consumer": consumer,
            "action": action,
        });
        if !domain.is_empty() {
            body["domain"] = serde_json::Value::String(domain);
        }
        self.publish(
            account,
            format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.{consumer}"),
            body.to_string().into_bytes(),
        );
    }
}

fn remove_consumer_files<D: Disk>(
    disk: &mut D,
    stream: StreamId,
    name: &str,
) -> Result<(), DiskError> {
    // The definition goes first: a crash midway leaves an orphaned state
    // file, never a consumer without its state.
    match disk.remove(&format!("{}/{}", consumers_dir(stream), meta_name(name))) {
        Ok(()) | Err(DiskError::NotFound(_)) => {}
        Err(error) => return Err(error),
    }
    disk.sync_dir(&consumers_dir(stream))?;
    let dir = consumer_dir(stream, name);
    match disk.list(&dir) {
        Ok(files) => {
            for file in files {
                match disk.remove(&format!("{dir}/{file}")) {
                    Ok(()) | Err(DiskError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            disk.sync_dir(&dir)
        }
        Err(DiskError::NotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

impl<D: Disk> super::consumer_config::ConsumerLookup for BTreeMap<String, ConsumerEntry<D>> {
    fn consumer_config(&self, name: &str) -> Option<&ConsumerConfig> {
        self.get(name).map(|entry| &entry.config)
    }

    fn each_consumer(&self, visit: &mut dyn FnMut(&str, &ConsumerConfig)) {
        for (name, entry) in self {
            visit(name, &entry.config);
        }
    }
}
