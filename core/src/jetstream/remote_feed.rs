//! External mirrors and sources: fed through a consumer on the origin.
//!
//! Role: a mirror or source with `external` reads a stream this machine
//! cannot see directly (another account, reached through the account's
//! service import of the origin's `$JS.API`). As the reference does, the
//! feed asks for a consumer on the origin with a `CONSUMER.CREATE` request
//! sent in the sourcing stream's account on `<api>.CONSUMER.CREATE.<origin>`
//! (a direct, sourcing push consumer: ack none, flow control, 1 s
//! heartbeats, 10 s inactivity), and takes the deliveries as a subscriber:
//! the server routes the reply inbox and the deliver subject to
//! [`JsTarget::Feed`], so the response and the messages cross the
//! accounts' imports as a client's would. The origin's sequence, delivery
//! count, time and pending count come from each delivery's `$JS.ACK`
//! reply subject. An origin with interest or work-queue retention makes
//! that consumer a durable acked by flow control: the feed's answers to
//! flow-control requests (its last delivery and origin sequence) ack it.
//!
//! A feed through a durable consumer the user made (`consumer`, external
//! or in the same account) creates nothing: it asks for a
//! `CONSUMER.RESET` of that consumer to its ack floor and takes the
//! deliveries on the consumer's own deliver subject; a consumer not acked
//! by flow control is refused (the feed's error). When the reset goes
//! unanswered (no such consumer, or the answer lost), the feed listens on
//! that deliver subject while it backs off, as the reference's probe
//! subscription: a heartbeat or message there shows the consumer alive,
//! the failures are forgotten and the reset is asked again after only the
//! throttle and the jitter.
//!
//! A gap in the delivery sequence (a lost message, a heartbeat naming a
//! later delivery), 10 s without a message or heartbeat, 30 s without an
//! answer to the create, or a message the stream refuses drop the consumer
//! (the origin removes it after its inactivity threshold) and ask for a new
//! one from the sequence after the last one taken: no sooner than 2 s after
//! the previous request, later after failures (5 s times twice the
//! failures, at most 2 min), with 100-200 ms of jitter, as the reference.
//!
//! Progress after a restart is what [`super::sourcing`] finds for every
//! feed: a mirror's last sequence, a source's last `Nats-Stream-Source`
//! header (whose index name is `<origin>:<hash of the api prefix>`).
//!
//! Invariants:
//! - A feed listens (`JsAction::Listen` on its own target) only while it
//!   has a request out, a consumer running or (a durable's feed backing
//!   off after an unanswered reset) a probe; a dropped feed stops.
//! - The origin sequence last taken only grows while the consumer lives; a
//!   message at or below it is never stored again.

use std::time::Duration;

use bytes::Bytes;

use super::api::time::GoTime;
use super::api::{AckPolicy, ConsumerConfig, ConsumerCreateResponse, CreateConsumerRequest};
use super::api::{DeliverPolicy, StreamSource};
use super::errors::{ApiError, ApiErrorKind};
use super::link::{JsAction, JsInbound, JsTarget, StreamId};
use super::machine::JetStream;
use super::sourcing::Feed;
use crate::protocol::find_header;
use crate::server::LogLevel;
use crate::store::{Disk, StoredMsg};
use crate::time::{Instant, WallTime};

/// The consumer's idle heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the consumer is made again; also its inactivity
/// threshold on the origin.
const STALLED: Duration = Duration::from_secs(10);
/// Requests for a feed's consumer go out at least this far apart.
const RETRY_THRESHOLD: Duration = Duration::from_secs(2);
/// How long a create request waits for its answer.
const CREATE_WAIT: Duration = Duration::from_secs(30);
/// How long a durable consumer's reset request waits for its answer (the
/// consumer exists or it does not: no reply means it does not).
const RESET_WAIT: Duration = Duration::from_secs(5);
/// What the origin's consumer waits for an ack (it takes none).
const ACK_WAIT: Duration = Duration::from_secs(22 * 3600);

/// A feed's link to its consumer on the origin.
#[derive(Debug)]
pub struct Remote {
    /// This feed's subscription target ([`JsTarget::Feed`]).
    key: u64,
    phase: Phase,
    /// When the last create request went out.
    last_request: Option<Instant>,
    /// Failed requests in a row (the retry backoff).
    fails: u32,
    /// When the next request goes out, if one is due.
    retry_at: Option<Instant>,
    /// When the consumer was last heard from (a message or a heartbeat).
    heard_at: Instant,
    /// The consumer's delivery sequence last seen.
    dseq: u64,
    /// The origin answered that its identity changed: progress restarts.
    recreated: bool,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// A create (or, for a durable, reset) request is out, answered on
    /// `reply` until `sent + wait`.
    Asking {
        reply: Bytes,
        sent: Instant,
        wait: Duration,
    },
    Running {
        consumer: String,
    },
    /// Backing off after a durable's reset went unanswered, listening on
    /// the durable's deliver subject: anything arriving there (a
    /// heartbeat, a message) shows the consumer alive, so the backoff is
    /// cut short (the reference's probe subscription).
    Probing,
}

impl Remote {
    pub(super) fn new(key: u64, first_at: Instant) -> Remote {
        Remote {
            key,
            phase: Phase::Idle,
            last_request: None,
            fails: 0,
            retry_at: Some(first_at),
            heard_at: first_at,
            dseq: 0,
            recreated: false,
        }
    }

    /// Schedule the next request: no sooner than the throttle after the
    /// last one, later by the failures' backoff, plus `jitter`.
    fn schedule(&mut self, now: Instant, jitter: Duration) {
        let since = self
            .last_request
            .map_or(RETRY_THRESHOLD, |at| now.saturating_duration_since(at));
        let wait = RETRY_THRESHOLD.saturating_sub(since) + backoff(self.fails) + jitter;
        self.retry_at = Some(now + wait);
    }

    /// The instant this feed has work, if any.
    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            _ if self.retry_at.is_some() => self.retry_at,
            Phase::Idle | Phase::Probing => None,
            Phase::Asking { sent, wait, .. } => Some(*sent + *wait),
            Phase::Running { .. } => Some(self.heard_at + STALLED),
        }
    }
}

/// A request a feed sends for its consumer on the origin.
struct Outgoing {
    subject: String,
    reply: String,
    /// Where the consumer delivers (routed to the feed with the reply).
    deliver: String,
    headers: String,
    payload: Vec<u8>,
    /// How long the answer is waited for.
    wait: Duration,
}

/// A source's request headers: the API level of durable sourcing and
/// stream identities, and the origin's identity it knows (maybe none).
fn source_headers(ident: &str) -> String {
    format!("NATS/1.0\r\nNats-Required-Api-Level: 5\r\nNats-Stream-Identity: {ident}\r\n\r\n")
}

/// The reference's retry backoff after `fails` failures.
fn backoff(fails: u32) -> Duration {
    Duration::from_secs(10 * u64::from(fails)).min(Duration::from_secs(120))
}

/// The numbers in a delivery's `$JS.ACK` reply: consumer name, delivery
/// count, origin sequence, delivery sequence, stored time, pending.
#[derive(Debug, PartialEq, Eq)]
struct AckReply<'a> {
    consumer: &'a str,
    delivered: u64,
    stream_seq: u64,
    consumer_seq: u64,
    ts: u64,
    pending: u64,
}

fn parse_ack_reply(reply: &[u8]) -> Option<AckReply<'_>> {
    let text = std::str::from_utf8(reply).ok()?;
    let tokens: Vec<&str> = text.split('.').collect();
    if tokens.len() < 2 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    // Short: $JS.ACK.<stream>.<consumer>.<5 numbers>; long: with domain
    // and account hash after ACK, maybe a random token at the end.
    let at = match tokens.len() {
        9 => 3,
        n if n >= 11 => 5,
        _ => return None,
    };
    let number = |i: usize| tokens[at + i].parse::<u64>().ok();
    Some(AckReply {
        consumer: tokens[at],
        delivered: number(1)?,
        stream_seq: number(2)?,
        consumer_seq: number(3)?,
        ts: number(4)?,
        pending: number(5)?,
    })
}

/// A heartbeat or flow-control request: no payload, a `100` status.
fn is_control(msg: &JsInbound) -> bool {
    msg.payload.is_empty() && msg.headers.starts_with(b"NATS/1.0 100 ")
}

fn header_number(headers: &[u8], key: &[u8]) -> u64 {
    find_header(headers, key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl<D: Disk + Clone> JetStream<D> {
    /// A new remote link for a feed of stream `id`: a mirror asks at once,
    /// a source after the reference's 100-200 ms of jitter.
    pub(super) fn new_remote(&mut self, mirror: bool) -> Remote {
        self.next_feed_key += 1;
        let first = if mirror {
            self.now
        } else {
            self.now + self.jitter()
        };
        Remote::new(self.next_feed_key, first)
    }

    fn jitter(&mut self) -> Duration {
        Duration::from_millis(100 + self.next_seed() % 100)
    }

    /// Stop routing to a feed that is dropped.
    pub(super) fn drop_remote(&mut self, id: StreamId, account: &str, remote: &Remote) {
        self.actions.push_back(JsAction::Listen {
            account: account.to_string(),
            target: JsTarget::Feed(id, remote.key),
            subjects: Vec::new(),
        });
    }

    /// The earliest instant a remote feed has work.
    pub(super) fn remote_deadline(&self) -> Option<Instant> {
        self.feeds
            .values()
            .flat_map(|feeds| feeds.feeds.iter())
            .filter_map(|feed| feed.remote.as_ref()?.deadline())
            .min()
    }

    /// Time passed: send due requests, give up on unanswered ones, make
    /// stalled consumers again.
    pub(super) fn remote_timeouts(&mut self) {
        let now = self.now;
        let ids: Vec<StreamId> = self.feeds.keys().copied().collect();
        for id in ids {
            let Some(mut feeds) = self.feeds.remove(&id) else {
                continue;
            };
            let mirror = feeds.mirror;
            let names: Vec<String> = feeds.feeds.iter().map(|f| f.source.name.clone()).collect();
            for feed in &mut feeds.feeds {
                let Some(remote) = feed.remote.as_mut() else {
                    continue;
                };
                if remote.deadline().is_none_or(|at| at > now) {
                    continue;
                }
                if remote.retry_at.is_some() {
                    remote.retry_at = None;
                    self.ask(id, mirror, feed, &names);
                    continue;
                }
                match &remote.phase {
                    Phase::Asking { .. } => {
                        remote.fails += 1;
                        self.retry(id, feed);
                        self.probe(id, feed);
                    }
                    Phase::Running { .. } => {
                        self.log(
                            LogLevel::Debug,
                            format!(
                                "Retrying {} consumer for stream {:?}: stalled",
                                if mirror { "mirror" } else { "source" },
                                feed.source.name
                            ),
                        );
                        self.retry(id, feed);
                    }
                    Phase::Idle | Phase::Probing => {}
                }
            }
            self.feeds.insert(id, feeds);
        }
    }

    /// Drop the feed's consumer and schedule a new request, throttled and
    /// backed off as the reference.
    fn retry(&mut self, id: StreamId, feed: &mut Feed) {
        let now = self.now;
        let jitter = self.jitter();
        let Some(account) = self.streams.get(&id).map(|e| e.meta.account.clone()) else {
            return;
        };
        let remote = feed.remote.as_mut().expect("a remote feed");
        remote.phase = Phase::Idle;
        remote.dseq = 0;
        remote.schedule(now, jitter);
        let key = remote.key;
        self.actions.push_back(JsAction::Listen {
            account,
            target: JsTarget::Feed(id, key),
            subjects: Vec::new(),
        });
    }

    /// After a durable's reset went unanswered (the feed just scheduled
    /// its retry): listen on the durable's deliver subject until the
    /// next request goes out, as the reference's probe subscription. The
    /// listening counts as interest, so a consumer that exists (or is
    /// made meanwhile) pushes to it, and [`Self::probed`] asks again
    /// without the backoff.
    fn probe(&mut self, id: StreamId, feed: &mut Feed) {
        let Some(durable) = &feed.source.consumer else {
            return;
        };
        let Some(entry) = self.streams.get(&id) else {
            return;
        };
        let remote = feed.remote.as_mut().expect("a remote feed");
        if durable.deliver_subject.is_empty() || remote.retry_at.is_none() {
            return;
        }
        remote.phase = Phase::Probing;
        self.actions.push_back(JsAction::Listen {
            account: entry.meta.account.clone(),
            target: JsTarget::Feed(id, remote.key),
            subjects: vec![durable.deliver_subject.clone()],
        });
    }

    /// Something arrived on a probing feed's deliver subject: the
    /// durable is alive, so the failures that drive the backoff are
    /// forgotten and the request is rescheduled with only the throttle
    /// and the jitter. Once forgotten, later arrivals change nothing (the
    /// reference's probe acts only while failures count).
    fn probed(&mut self, feed: &mut Feed) {
        let now = self.now;
        let remote = feed.remote.as_mut().expect("a remote feed");
        if remote.fails == 0 || remote.retry_at.is_none() {
            return;
        }
        remote.fails = 0;
        let jitter = self.jitter();
        let remote = feed.remote.as_mut().expect("a remote feed");
        remote.schedule(now, jitter);
    }

    /// Send the create request for `feed`'s consumer on its origin (or,
    /// with a durable consumer named, its reset).
    fn ask(&mut self, id: StreamId, mirror: bool, feed: &mut Feed, names: &[String]) {
        if feed.source.consumer.is_some() {
            return self.ask_durable(id, mirror, feed);
        }
        let Some(entry) = self.streams.get(&id) else {
            return;
        };
        let account = entry.meta.account.clone();
        let stream = entry.meta.config.name.clone();
        let state = entry.stream.state();
        let source: StreamSource = feed.source.clone();
        let Some(external) = source.external.clone() else {
            return;
        };
        let domain = self.config.domain.clone().unwrap_or_default();
        let mut stable = format!("{stream} {account}");
        if !domain.is_empty() {
            stable.push_str(&format!(" {domain}"));
        }
        let stable = crate::format::short_hash(stable.as_bytes());
        let name = if mirror {
            format!("JS_MIRROR_{stable}")
        } else {
            // The same origin twice: the index name tells them apart.
            let id = if names.iter().filter(|n| **n == source.name).count() > 1 {
                let (a, b, c) = feed.index_parts();
                format!("{stable} {a} {b} {c}")
            } else {
                stable
            };
            format!("JS_SRC_{}", crate::format::short_hash(id.as_bytes()))
        };
        let token = self.next_id()[..8].to_string();
        let kind = if mirror { "M" } else { "S" };
        let deliver = if external.deliver.is_empty() {
            format!("$JS.{kind}.{token}")
        } else {
            format!("{}.{kind}.{token}", external.deliver).replace("..", ".")
        };
        let reply = format!("$JSC.R.{}", &self.next_id()[..8]);
        let mut metadata = std::collections::BTreeMap::new();
        let role = if mirror { "mirror" } else { "src" };
        metadata.insert(format!("_nats.{role}.stream"), stream.clone());
        metadata.insert(format!("_nats.{role}.acc"), account.clone());
        if !domain.is_empty() {
            metadata.insert(format!("_nats.{role}.domain"), domain.clone());
        }
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let mut config = ConsumerConfig {
            name,
            deliver_subject: deliver.clone(),
            ack_policy: AckPolicy::None,
            ack_wait: nanos(ACK_WAIT),
            max_deliver: 1,
            idle_heartbeat: nanos(HEARTBEAT),
            flow_control: true,
            direct: true,
            sourcing: true,
            inactive_threshold: nanos(STALLED),
            metadata,
            ..ConsumerConfig::default()
        };
        let remote = feed.remote.as_mut().expect("a remote feed");
        let start_time = |time: WallTime| Some(GoTime::from_wall(time));
        if mirror {
            if state.msgs == 0 && state.last_seq == 0 {
                if source.opt_start_seq > 0 {
                    config.deliver_policy = DeliverPolicy::ByStartSequence;
                    config.opt_start_seq = source.opt_start_seq;
                } else if let Some(time) = source.opt_start_time {
                    config.deliver_policy = DeliverPolicy::ByStartTime;
                    config.opt_start_time = start_time(time);
                }
            } else {
                config.deliver_policy = DeliverPolicy::ByStartSequence;
                config.opt_start_seq = state.last_seq + 1;
            }
        } else {
            let seq = if remote.recreated {
                0
            } else {
                feed.last_taken + 1
            };
            if seq > 1 {
                config.deliver_policy = DeliverPolicy::ByStartSequence;
                config.opt_start_seq = seq;
            } else if source.opt_start_seq > 0 {
                config.deliver_policy = DeliverPolicy::ByStartSequence;
                config.opt_start_seq = source.opt_start_seq;
            } else if let Some(time) = source.opt_start_time {
                let time = if state.last_ts.0 > 0 && time < state.last_ts {
                    state.last_ts
                } else {
                    time
                };
                config.deliver_policy = DeliverPolicy::ByStartTime;
                config.opt_start_time = start_time(time);
            } else if state.first_seq > 1 && state.last_ts.0 > 0 && !remote.recreated {
                config.deliver_policy = DeliverPolicy::ByStartTime;
                config.opt_start_time = start_time(state.last_ts);
            }
        }
        let sources: Vec<String> = source
            .subject_transforms
            .iter()
            .map(|t| t.src.clone())
            .collect();
        config.filter_subject = source.filter_subject.clone();
        if config.filter_subject.is_empty() && sources.len() == 1 {
            config.filter_subject = sources[0].clone();
        } else {
            config.filter_subjects = sources;
        }
        let mut subject = format!("$JS.API.CONSUMER.CREATE.{}", source.name);
        if !config.filter_subject.is_empty() {
            subject = format!("{subject}.{}.{}", config.name, config.filter_subject);
        }
        let subject = subject
            .replacen("$JS.API", &external.api, 1)
            .replace("..", ".");
        let headers = if mirror {
            "NATS/1.0\r\nNats-Required-Api-Level: 4\r\n\r\n".to_string()
        } else {
            source_headers(if remote.recreated { "" } else { &feed.ident })
        };
        let request = CreateConsumerRequest {
            stream_name: source.name.clone(),
            config,
            ..CreateConsumerRequest::default()
        };
        let request = Outgoing {
            subject,
            reply,
            deliver,
            headers,
            payload: super::api::to_wire_json(&request),
            wait: CREATE_WAIT,
        };
        self.send_request(id, account, remote, request);
    }

    /// Send `request` for a feed of stream `id` in `account`, the feed's
    /// link then waiting for its answer. Deliveries may follow the answer
    /// at once: the reply inbox and the deliver subject are both routed
    /// here before the request leaves.
    fn send_request(
        &mut self,
        id: StreamId,
        account: String,
        remote: &mut Remote,
        request: Outgoing,
    ) {
        debug_assert!(request.reply.starts_with("$JSC.R."));
        let now = self.now;
        remote.last_request = Some(now);
        remote.phase = Phase::Asking {
            reply: Bytes::from(request.reply.clone()),
            sent: now,
            wait: request.wait,
        };
        self.actions.push_back(JsAction::Listen {
            account: account.clone(),
            target: JsTarget::Feed(id, remote.key),
            subjects: vec![request.reply.clone(), request.deliver],
        });
        self.actions.push_back(JsAction::Publish {
            account: account.into(),
            subject: Bytes::from(request.subject),
            reply: Bytes::from(request.reply),
            headers: Bytes::from(request.headers),
            payload: Bytes::from(request.payload),
        });
    }

    /// A feed through a durable consumer the user made on the origin
    /// (`consumer`): as the reference, the feed does not create it but
    /// asks for a `CONSUMER.RESET` to its ack floor (empty body) on
    /// `<api>.CONSUMER.RESET.<origin>.<name>` (`$JS.API` for an origin in
    /// the same account), then takes what the consumer delivers on its
    /// own deliver subject; the flow-control answers ack it.
    fn ask_durable(&mut self, id: StreamId, mirror: bool, feed: &mut Feed) {
        let Some(entry) = self.streams.get(&id) else {
            return;
        };
        let account = entry.meta.account.clone();
        let Some(durable) = feed.source.consumer.clone() else {
            return;
        };
        let api = feed
            .source
            .external
            .as_ref()
            .map_or("$JS.API", |external| external.api.as_str());
        let subject = format!("{api}.CONSUMER.RESET.{}.{}", feed.source.name, durable.name)
            .replace("..", ".");
        // A source names the API level of durable sourcing and the
        // identity it knows (maybe none); a mirror sends no headers.
        let headers = if mirror {
            String::new()
        } else {
            source_headers(&feed.ident)
        };
        let reply = format!("$JSC.R.{}", &self.next_id()[..8]);
        let remote = feed.remote.as_mut().expect("a remote feed");
        let request = Outgoing {
            subject,
            reply,
            deliver: durable.deliver_subject,
            headers,
            payload: Vec::new(),
            wait: RESET_WAIT,
        };
        self.send_request(id, account, remote, request);
    }

    /// A message for a remote feed of stream `id`: the create's answer, a
    /// delivery, a heartbeat or a flow-control request.
    pub(super) fn feed_inbound(&mut self, id: StreamId, key: u64, msg: &JsInbound) {
        let Some(mut feeds) = self.feeds.remove(&id) else {
            return;
        };
        let mirror = feeds.mirror;
        if let Some(feed) = feeds
            .feeds
            .iter_mut()
            .find(|f| f.remote.as_ref().is_some_and(|r| r.key == key))
        {
            let remote = feed.remote.as_mut().expect("found by its remote");
            remote.heard_at = self.now;
            match &remote.phase {
                Phase::Asking { reply, .. } if *reply == msg.subject => {
                    self.answered(id, mirror, feed, msg);
                }
                Phase::Running { .. } => self.delivered(id, mirror, feed, msg),
                Phase::Probing => self.probed(feed),
                _ => {}
            }
        }
        self.feeds.insert(id, feeds);
    }

    /// The answer to a create request.
    fn answered(&mut self, id: StreamId, mirror: bool, feed: &mut Feed, msg: &JsInbound) {
        let response: Option<ConsumerCreateResponse> = serde_json::from_slice(&msg.payload).ok();
        let info = response.as_ref().and_then(|r| r.info.as_ref());
        let error = response.as_ref().and_then(|r| r.error.clone());
        let Some(info) = info.filter(|i| i.config.is_some() && error.is_none()) else {
            let error = error.unwrap_or_else(|| {
                ApiError::with(
                    if mirror {
                        ApiErrorKind::MirrorConsumerSetupFailed
                    } else {
                        ApiErrorKind::SourceConsumerSetupFailed
                    },
                    &[("{err}", "invalid consumer create response")],
                )
            });
            let remote = feed.remote.as_mut().expect("a remote feed");
            if error.err_code == ApiErrorKind::ConsumerStreamIdentityMismatch.err_code() {
                // The origin was created again: start over there.
                remote.recreated = true;
                feed.ident.clear();
                feed.last_taken = 0;
            } else {
                remote.fails += 1;
                self.log(
                    LogLevel::Warn,
                    format!(
                        "JetStream error response for stream {} create {} consumer {}: {error:?}",
                        self.streams.get(&id).map_or("", |e| &e.meta.config.name),
                        if mirror { "mirror" } else { "source" },
                        feed.source.name
                    ),
                );
                feed.error = Some(error);
            }
            self.retry(id, feed);
            return;
        };
        let consumer = info.name.clone();
        let delivered = info.delivered.stream_seq;
        let config = info.config.as_ref().expect("checked above");
        let deliver = match &feed.source.consumer {
            // Only a consumer acked by this feed's flow-control answers
            // may feed it: others would never let the origin go.
            Some(_) if config.ack_policy != AckPolicy::FlowControl => {
                feed.error = Some(ApiError::new(if mirror {
                    ApiErrorKind::MirrorConsumerRequiresAckFC
                } else {
                    ApiErrorKind::SourceConsumerRequiresAckFC
                }));
                let remote = feed.remote.as_mut().expect("a remote feed");
                remote.fails += 1;
                self.retry(id, feed);
                return;
            }
            Some(durable) => durable.deliver_subject.clone(),
            None => config.deliver_subject.clone(),
        };
        feed.error = None;
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        let account = entry.meta.account.clone();
        if mirror {
            let last = entry.stream.state().last_seq;
            if delivered > last {
                // The origin starts past what the mirror holds (removed
                // messages): the sequences between are skipped.
                let wall = self.wall;
                if let Err(error) = entry.stream.store_mut().skip_through(delivered, wall) {
                    self.log(
                        LogLevel::Warn,
                        format!("JetStream mirror could not skip to {delivered}: {error}"),
                    );
                    self.retry(id, feed);
                    return;
                }
                self.undrained.insert(id);
            }
            feed.last_taken = delivered.max(last);
        } else {
            let ident = find_header(&msg.headers, b"Nats-Stream-Identity")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let remote = feed.remote.as_ref().expect("a remote feed");
            if remote.recreated
                || (!ident.is_empty() && !feed.ident.is_empty() && feed.ident != ident)
            {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "JetStream source stream {:?} for stream '{account} > {}' was recreated, resetting source state",
                        feed.source.name,
                        self.streams[&id].meta.config.name
                    ),
                );
                feed.last_taken = 0;
            }
            feed.ident = ident;
            feed.last_taken = feed.last_taken.max(delivered);
        }
        feed.last_heard = Some(self.wall);
        let remote = feed.remote.as_mut().expect("a remote feed");
        remote.recreated = false;
        remote.fails = 0;
        remote.dseq = 0;
        remote.phase = Phase::Running { consumer };
        let key = remote.key;
        self.actions.push_back(JsAction::Listen {
            account,
            target: JsTarget::Feed(id, key),
            subjects: vec![deliver],
        });
    }

    /// A message from the running consumer.
    fn delivered(&mut self, id: StreamId, mirror: bool, feed: &mut Feed, msg: &JsInbound) {
        let Some(account) = self.streams.get(&id).map(|e| e.meta.account.clone()) else {
            return;
        };
        feed.last_heard = Some(self.wall);
        let remote = feed.remote.as_mut().expect("a remote feed");
        if is_control(msg) {
            if !msg.reply.is_empty() {
                // Flow control: answered with where the feed stands.
                let headers = format!(
                    "NATS/1.0\r\nNats-Last-Consumer: {}\r\nNats-Last-Stream: {}\r\n\r\n",
                    remote.dseq, feed.last_taken
                );
                self.send_status(&account, msg.reply.clone(), Bytes::from(headers));
                return;
            }
            let last = header_number(&msg.headers, b"Nats-Last-Consumer");
            if last > 0 && last != remote.dseq {
                // A delivery was missed.
                self.retry(id, feed);
            } else if let Some(fc) = find_header(&msg.headers, b"Nats-Consumer-Stalled") {
                let fc = Bytes::copy_from_slice(fc);
                self.send_status(&account, fc, Bytes::new());
            }
            return;
        }
        let Some(ack) = parse_ack_reply(&msg.reply) else {
            return;
        };
        let Phase::Running { consumer } = &remote.phase else {
            return;
        };
        if ack.consumer != consumer || ack.delivered > 1 {
            return;
        }
        let sseq = feed.last_taken;
        if ack.stream_seq <= sseq {
            // Older than what was taken.
            if ack.consumer_seq == remote.dseq + 1 {
                remote.dseq += 1;
            }
            return;
        }
        // The next in the origin (a mirror), or the next delivery: taken;
        // anything else but an old delivery is a gap, and the consumer is
        // made again after the last taken.
        let next_delivery = ack.consumer_seq == remote.dseq + 1;
        if !(next_delivery || mirror && ack.stream_seq == sseq + 1) {
            if mirror || ack.consumer_seq > remote.dseq {
                self.retry(id, feed);
            }
            return;
        }
        feed.lag = ack.pending.saturating_sub(1);
        let first_new = self.streams.get(&id).map(|e| e.stream.state().last_seq + 1);
        let stored = StoredMsg {
            seq: ack.stream_seq,
            subject: msg.subject.clone(),
            headers: msg.headers.clone(),
            payload: msg.payload.clone(),
            ts: WallTime(ack.ts),
            ttl: None,
        };
        let stored = if mirror {
            self.take_mirrored(id, feed, stored)
        } else {
            let (head, filters, dests) = feed.index_parts();
            let marker = format!("{head} {} {filters} {dests}", ack.stream_seq);
            let ident = feed.ident.clone();
            self.take_sourced(id, feed, &stored, &marker, &ident)
        };
        if !stored {
            self.retry(id, feed);
            return;
        }
        let remote = feed.remote.as_mut().expect("a remote feed");
        remote.dseq = ack.consumer_seq;
        feed.last_taken = ack.stream_seq;
        feed.next = ack.stream_seq + 1;
        self.undrained.insert(id);
        self.recount(id);
        self.pump_stream(id, first_new);
        self.feed_followers(id);
    }

    /// Publish an empty message with `headers` on `subject` in `account`.
    fn send_status(&mut self, account: &str, subject: Bytes, headers: Bytes) {
        self.actions.push_back(JsAction::Publish {
            account: account.into(),
            subject,
            reply: Bytes::new(),
            headers,
            payload: Bytes::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff, parse_ack_reply, AckReply};
    use crate::jetstream::config::{AccountLimits, JetStreamConfig};
    use crate::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
    use crate::jetstream::machine::JetStream;
    use crate::store::{MemDisk, SharedDisk};
    use crate::time::{Instant, WallTime};
    use bytes::Bytes;
    use serde_json::{json, Value};
    use std::time::Duration;

    type Machine = JetStream<SharedDisk<MemDisk>>;

    /// A machine with accounts A and B, and in B the memory mirror `M` of
    /// A's `O` through the API prefix `JS.A.API`.
    fn machine_with_mirror() -> (Machine, StreamId) {
        let accounts = ["A", "B"]
            .into_iter()
            .map(|a| (a.to_string(), AccountLimits::default()))
            .collect();
        let mut js = JetStream::open(
            "srv".into(),
            JetStreamConfig::with_bounds("", 1 << 30, 1 << 30),
            accounts,
            SharedDisk::default(),
            Instant::ZERO,
            WallTime(1_000_000_000),
        );
        let config = json!({"name": "M", "storage": "memory", "mirror": {"name": "O",
            "external": {"api": "JS.A.API", "deliver": "deliver.b"}}});
        inbound(
            &mut js,
            0,
            JsTarget::Api,
            "$JS.API.STREAM.CREATE.M",
            "r",
            b"",
            config.to_string().as_bytes(),
        );
        drain(&mut js);
        let id = js.stream_by_name("B", "M").unwrap();
        (js, id)
    }

    fn inbound(
        js: &mut Machine,
        at_ms: u64,
        target: JsTarget,
        subject: &str,
        reply: &str,
        headers: &[u8],
        payload: &[u8],
    ) {
        let now = Instant::from_nanos(at_ms * 1_000_000);
        let msg = JsInbound {
            account: "B".into(),
            target,
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            reply: Bytes::copy_from_slice(reply.as_bytes()),
            headers: Bytes::copy_from_slice(headers),
            payload: Bytes::copy_from_slice(payload),
            context: Bytes::new(),
        };
        js.handle_inbound(now, WallTime(1_000_000_000 + now.as_nanos()), msg);
    }

    fn tick(js: &mut Machine, at_ms: u64) -> Vec<JsAction> {
        let now = Instant::from_nanos(at_ms * 1_000_000);
        js.handle_timeout(now, WallTime(1_000_000_000 + now.as_nanos()));
        drain(js)
    }

    fn drain(js: &mut Machine) -> Vec<JsAction> {
        std::iter::from_fn(|| js.poll_action()).collect()
    }

    /// The create request among `actions`: its target, reply, deliver
    /// subject and body.
    fn request(actions: &[JsAction]) -> Option<(JsTarget, String, String, Value)> {
        let (target, deliver) = actions.iter().find_map(|a| match a {
            JsAction::Listen {
                target: target @ JsTarget::Feed(..),
                subjects,
                ..
            } if subjects.len() == 2 => Some((*target, subjects[1].clone())),
            _ => None,
        })?;
        actions.iter().find_map(|a| match a {
            JsAction::Publish {
                account,
                subject,
                reply,
                headers,
                payload,
            } if subject.starts_with(b"JS.A.API.") => {
                assert_eq!(&**account, "B");
                assert_eq!(&subject[..], b"JS.A.API.CONSUMER.CREATE.O");
                assert_eq!(
                    &headers[..],
                    b"NATS/1.0\r\nNats-Required-Api-Level: 4\r\n\r\n"
                );
                let body: Value = serde_json::from_slice(payload).unwrap();
                Some((
                    target,
                    String::from_utf8(reply.to_vec()).unwrap(),
                    deliver.clone(),
                    body,
                ))
            }
            _ => None,
        })
    }

    fn answer(
        js: &mut Machine,
        at_ms: u64,
        target: JsTarget,
        reply: &str,
        deliver: &str,
        delivered: u64,
    ) {
        answer_as(
            js,
            at_ms,
            target,
            reply,
            ("C-1", deliver, "none"),
            delivered,
        );
    }

    /// The origin's answer for consumer `name` delivering to `deliver`
    /// with `ack_policy`, `delivered` up to that stream sequence.
    fn answer_as(
        js: &mut Machine,
        at_ms: u64,
        target: JsTarget,
        reply: &str,
        (name, deliver, ack_policy): (&str, &str, &str),
        delivered: u64,
    ) {
        let body = json!({"type": "io.nats.jetstream.api.v1.consumer_create_response",
            "stream_name": "O", "name": name, "created": "2026-12-06T11:06:15.562445691Z",
            "config": {"deliver_subject": deliver, "ack_policy": ack_policy},
            "delivered": {"consumer_seq": 0, "stream_seq": delivered},
            "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
            "num_ack_pending": 0, "num_redelivered": 0, "num_waiting": 0, "num_pending": 0,
            "ts": "2026-12-06T11:06:15.563199196Z"});
        inbound(
            js,
            at_ms,
            target,
            reply,
            "",
            b"",
            body.to_string().as_bytes(),
        );
    }

    fn deliver(js: &mut Machine, at_ms: u64, target: JsTarget, seq: u64, dseq: u64) {
        let reply = format!("$JS.ACK.O.C-1.1.{seq}.{dseq}.{}.0", 1_000 + seq);
        inbound(
            js,
            at_ms,
            target,
            &format!("o.{seq}"),
            &reply,
            b"",
            seq.to_string().as_bytes(),
        );
    }

    #[test]
    fn a_mirror_asks_the_origin_for_a_consumer_and_stores_what_it_delivers() {
        let (mut js, _) = machine_with_mirror();
        let (target, reply, deliver_to, body) = request(&tick(&mut js, 1)).expect("asked at once");
        assert!(deliver_to.starts_with("deliver.b.M."), "{deliver_to}");
        let config = &body["config"];
        assert_eq!(body["stream_name"], "O");
        for (key, value) in [
            ("direct", json!(true)),
            ("sourcing", json!(true)),
            ("flow_control", json!(true)),
            ("ack_policy", json!("none")),
            ("idle_heartbeat", json!(1_000_000_000)),
            ("inactive_threshold", json!(10_000_000_000u64)),
            ("max_deliver", json!(1)),
            ("deliver_subject", json!(deliver_to)),
        ] {
            assert_eq!(config[key], value, "{key}: {body}");
        }
        assert!(
            config["name"].as_str().unwrap().starts_with("JS_MIRROR_"),
            "{body}"
        );

        // The consumer starts at 2 (the origin removed 1): skipped.
        answer(&mut js, 2, target, &reply, &deliver_to, 1);
        deliver(&mut js, 3, target, 2, 1);
        deliver(&mut js, 4, target, 4, 2);
        let state = js.streams().next().unwrap().stream.state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (2, 2, 4));
        // An old delivery is not stored again.
        deliver(&mut js, 5, target, 4, 3);
        assert_eq!(js.streams().next().unwrap().stream.state().msgs, 2);
        drain(&mut js);

        // Flow control is answered with where the mirror stands.
        inbound(
            &mut js,
            6,
            target,
            &deliver_to,
            "$JS.FC.O.C-1.x",
            b"NATS/1.0 100 FlowControl Request\r\n\r\n",
            b"",
        );
        let answered = drain(&mut js).into_iter().any(|a| matches!(a, JsAction::Publish { subject, headers, .. }
            if &subject[..] == b"$JS.FC.O.C-1.x"
                && &headers[..] == b"NATS/1.0\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 4\r\n\r\n"));
        assert!(answered);

        // A gap in the deliveries drops the consumer; a new one is asked
        // for from the next sequence, no sooner than 2 s after the last
        // request.
        deliver(&mut js, 7, target, 6, 5);
        assert_eq!(js.streams().next().unwrap().stream.state().last_seq, 4);
        assert!(request(&tick(&mut js, 1_900)).is_none());
        let (target2, reply2, deliver2, body) =
            request(&tick(&mut js, 2_300)).expect("asked again");
        assert_eq!(target2, target);
        assert_ne!(deliver2, deliver_to);
        assert_eq!(
            body["config"]["deliver_policy"], "by_start_sequence",
            "{body}"
        );
        assert_eq!(body["config"]["opt_start_seq"], 5, "{body}");

        // Ten seconds of silence: asked again.
        answer(&mut js, 2_400, target, &reply2, &deliver2, 4);
        assert!(request(&tick(&mut js, 12_000)).is_none());
        // Found stalled at 12.4 s, asked 100-200 ms later.
        assert!(request(&tick(&mut js, 12_450)).is_none());
        assert!(request(&tick(&mut js, 12_700)).is_some());
    }

    /// The first request in `actions` on a `CONSUMER.RESET` subject: its
    /// subject, reply, headers and the subjects listened to for it.
    fn reset_request(actions: &[JsAction]) -> Option<(String, String, String, Vec<String>)> {
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
        let (subject, reply, headers) = actions.iter().find_map(|a| match a {
            JsAction::Publish {
                subject,
                reply,
                headers,
                payload,
                ..
            } if subject.starts_with(b"$JS.API.CONSUMER.RESET.") => {
                assert!(payload.is_empty(), "a reset to the ack floor");
                Some((text(subject), text(reply), text(headers)))
            }
            _ => None,
        })?;
        let listened = actions.iter().find_map(|a| match a {
            JsAction::Listen {
                target: JsTarget::Feed(..),
                subjects,
                ..
            } if subjects.first() == Some(&reply) => Some(subjects.clone()),
            _ => None,
        })?;
        Some((subject, reply, headers, listened))
    }

    /// Beside the mirror, the stream `S` in B sourcing `O` through the
    /// durable `C` that pushes to `dc.O`: its id and its feed's target.
    fn machine_with_durable_source() -> (Machine, StreamId, JsTarget) {
        let (mut js, _) = machine_with_mirror();
        let config = json!({"name": "S", "storage": "memory", "sources": [{"name": "O",
            "consumer": {"name": "C", "deliver_subject": "dc.O"}}]});
        inbound(
            &mut js,
            0,
            JsTarget::Api,
            "$JS.API.STREAM.CREATE.S",
            "r",
            b"",
            config.to_string().as_bytes(),
        );
        drain(&mut js);
        let id = js.stream_by_name("B", "S").unwrap();
        (js, id, JsTarget::Feed(id, 2))
    }

    #[test]
    fn a_durable_source_resets_its_consumer_and_needs_flow_control_acks() {
        let (mut js, id, target) = machine_with_durable_source();
        // The source asks after its jitter: a reset, not a create, in its
        // own account's API, listening on the consumer's deliver subject.
        let (subject, reply, headers, listened) =
            reset_request(&tick(&mut js, 250)).expect("asked");
        assert_eq!(subject, "$JS.API.CONSUMER.RESET.O.C");
        assert_eq!(
            headers,
            "NATS/1.0\r\nNats-Required-Api-Level: 5\r\nNats-Stream-Identity: \r\n\r\n"
        );
        assert_eq!(listened, [reply.clone(), "dc.O".to_string()]);
        let answer = |js: &mut Machine, at_ms: u64, reply: &str, ack_policy: &str| {
            answer_as(js, at_ms, target, reply, ("C", "dc.O", ack_policy), 0);
        };
        // A consumer acked otherwise is refused, shown as the feed's error.
        answer(&mut js, 260, &reply, "explicit");
        let (_, sources) = js.feed_info(id);
        let error = sources[0].error.clone().expect("refused");
        assert_eq!(error.err_code, 10217, "{error:?}");
        // Asked again after the throttle and one failure's backoff.
        assert!(reset_request(&tick(&mut js, 2_000)).is_none());
        let (_, reply, _, _) = reset_request(&tick(&mut js, 12_500)).expect("asked again");
        answer(&mut js, 12_510, &reply, "flow_control");
        assert!(js.feed_info(id).1[0].error.is_none());
        // Deliveries on the durable's subject are stored with the
        // consumer's hash in the index name.
        inbound(
            &mut js,
            12_520,
            target,
            "o.1",
            "$JS.ACK.O.C.1.1.1.1001.0",
            b"",
            b"1",
        );
        let entry = js.streams().find(|e| e.meta.config.name == "S").unwrap();
        assert_eq!(entry.stream.state().msgs, 1);
        drain(&mut js);
        // Flow control is answered with where the source stands: that
        // acks the origin's consumer.
        inbound(
            &mut js,
            12_530,
            target,
            "dc.O",
            "$JS.FC.O.C.0001",
            b"NATS/1.0 100 FlowControl Request\r\n\r\n",
            b"",
        );
        let answered = drain(&mut js).into_iter().any(|a| matches!(a, JsAction::Publish { subject, headers, .. }
            if &subject[..] == b"$JS.FC.O.C.0001"
                && &headers[..] == b"NATS/1.0\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n"));
        assert!(answered);
    }

    #[test]
    fn an_unanswered_reset_probes_the_deliver_subject_until_the_consumer_shows_up() {
        let (mut js, id, target) = machine_with_durable_source();
        let listen = |subjects: &[&str]| JsAction::Listen {
            account: "B".into(),
            target,
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
        };
        let (_, reply, _, _) = reset_request(&tick(&mut js, 250)).expect("asked");
        // The reset waits 5 s for its answer (sent by 250 ms).
        assert!(tick(&mut js, 5_000).is_empty());
        // Unanswered: the feed stops listening for the answer and backs
        // off (one failure: 10 s), probing the durable's deliver subject.
        assert_eq!(tick(&mut js, 5_300), [listen(&[]), listen(&["dc.O"])]);
        // A late answer on the old reply is no longer routed here; the
        // probe hears nothing until the consumer is alive.
        assert!(tick(&mut js, 6_000).is_empty());
        // A heartbeat on the deliver subject: alive. The failure is
        // forgotten, the reset asked again after the jitter only.
        inbound(
            &mut js,
            6_000,
            target,
            "dc.O",
            "",
            b"NATS/1.0 100 Idle Heartbeat\r\n\r\n",
            b"",
        );
        assert!(drain(&mut js).is_empty());
        assert!(tick(&mut js, 6_099).is_empty());
        // A message on the probe changes nothing more: it is not stored,
        // nor is the request put off.
        inbound(
            &mut js,
            6_099,
            target,
            "o.1",
            "$JS.ACK.O.C.1.1.1.1001.0",
            b"",
            b"1",
        );
        assert!(drain(&mut js).is_empty());
        let entry = js.streams().find(|e| e.meta.config.name == "S").unwrap();
        assert_eq!(entry.stream.state().msgs, 0);
        let actions = tick(&mut js, 6_200);
        let (subject, reply2, _, listened) = reset_request(&actions).expect("asked again");
        assert_eq!(subject, "$JS.API.CONSUMER.RESET.O.C");
        assert_ne!(reply2, reply);
        // The request replaces the probe: its reply and the deliver
        // subject, then the request itself.
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert_eq!(actions[0], listen(&[&reply2, "dc.O"]));
        assert_eq!(listened, [reply2.clone(), "dc.O".to_string()]);

        // Unanswered again: one failure again (not two), probing again.
        assert_eq!(tick(&mut js, 11_300), [listen(&[]), listen(&["dc.O"])]);
        // No heartbeat: the backoff runs its course (2 s throttle passed,
        // 10 s, 100-200 ms of jitter).
        assert!(tick(&mut js, 21_300).is_empty());
        let (_, reply3, _, _) = reset_request(&tick(&mut js, 21_500)).expect("after backoff");
        // An answer that refuses the consumer is a failure but no probe:
        // the consumer answered.
        answer_as(
            &mut js,
            21_510,
            target,
            &reply3,
            ("C", "dc.O", "explicit"),
            0,
        );
        assert_eq!(drain(&mut js), [listen(&[])]);
        assert_eq!(
            js.feed_info(id).1[0].error.as_ref().unwrap().err_code,
            10217
        );

        // Two failures now: 20 s of backoff. A feed dropped while
        // probing stops listening.
        let (_, reply4, _, _) = reset_request(&tick(&mut js, 43_800)).expect("asked");
        assert!(!reply4.is_empty());
        assert_eq!(tick(&mut js, 48_900), [listen(&[]), listen(&["dc.O"])]);
        inbound(
            &mut js,
            49_000,
            JsTarget::Api,
            "$JS.API.STREAM.DELETE.S",
            "r",
            b"",
            b"",
        );
        assert!(drain(&mut js).contains(&listen(&[])));
    }

    #[test]
    fn ack_replies_in_both_forms_give_their_numbers() {
        let short = parse_ack_reply(b"$JS.ACK.O.C-1.1.5.3.1700000000000000000.2").unwrap();
        assert_eq!(
            short,
            AckReply {
                consumer: "C-1",
                delivered: 1,
                stream_seq: 5,
                consumer_seq: 3,
                ts: 1_700_000_000_000_000_000,
                pending: 2,
            }
        );
        let long = parse_ack_reply(b"$JS.ACK.hub.HASH.O.C.2.7.4.9.0.rand").unwrap();
        assert_eq!(
            (long.consumer, long.stream_seq, long.delivered),
            ("C", 7, 2)
        );
        assert!(parse_ack_reply(b"$JS.ACK.O.C.1.x.3.4.5").is_none());
        assert!(parse_ack_reply(b"other").is_none());
    }

    #[test]
    fn retries_back_off_to_two_minutes() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(30), Duration::from_secs(120));
    }
}
