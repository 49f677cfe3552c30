//! The server's end of the JetStream link (see [`crate::jetstream::link`]).
//!
//! Role: keep JetStream's internal subscriptions filed in the accounts'
//! Sublists, queue the messages that match them for the runtime, and
//! publish what JetStream hands back. The JetStream machine itself lives
//! elsewhere (its own thread in production); this part only knows which
//! subjects it listens to.
//!
//! Invariants:
//! - With JetStream enabled, every account but the system account has one
//!   `$JS.API.>` entry for [`JsTarget::Api`]; JetStream answers accounts
//!   without JetStream itself ("JetStream not enabled for account").
//! - `listening` is what JetStream asked for last; after every accounts
//!   rebuild (a reload) exactly those entries are in the Sublists.
//! - Every watched deliver subject's last reported interest is what the
//!   Sublist says at the end of the step that last changed its account's
//!   client subscriptions.
//! - Every watched pull-request reply subject that has no subscriber at the
//!   end of such a step (or when it is watched) has been reported gone,
//!   once; JetStream then unwatches it.
//! - The inbound queue holds at most [`MAX_QUEUED`] messages between two
//!   polls by the runtime; more are dropped with a warning (the publisher
//!   gets no ack and retries, as after any lost message).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::accounts::{AccountId, Accounts, SubTarget};
use super::log::{LogLevel, LogQueue};
use crate::jetstream::config::AccountLimits;
use crate::jetstream::link::{ConsumerId, JsInbound, JsTarget, ReplyWatch, StreamId, Watcher};
use crate::runtime::ConnId;

/// Where every JetStream API request is published.
pub const API_SUBJECTS: &str = "$JS.API.>";

/// Messages queued for JetStream between two polls of the runtime.
const MAX_QUEUED: usize = 1 << 20;

/// The server's half of the link.
#[derive(Default)]
pub(crate) struct JetStreamLink {
    /// Whether JetStream is enabled on this server at all.
    enabled: bool,
    /// JetStream ran and was turned off by a reload: its API subjects stay
    /// filed (requests go unanswered, as the reference's), nothing else.
    api_kept: bool,
    /// `$JS.<domain>.API.>`, when JetStream has a domain: the same API.
    domain_api: Option<String>,
    /// Subjects JetStream listens to, per account (by name) and target.
    listening: BTreeMap<(String, JsTarget), Vec<String>>,
    /// Each with the connection that published it.
    inbound: VecDeque<(JsInbound, ConnId)>,
    dropped: u64,
    /// Push consumers' deliver subjects whose interest JetStream follows.
    watches: BTreeMap<Watcher, InterestWatch>,
    /// The accounts' limits, when they changed while running (a claims
    /// update), for the runtime to hand to JetStream.
    changed_accounts: Option<BTreeMap<String, AccountLimits>>,
    /// Pull consumers' waiting reply subjects, per account (by name), and
    /// whether each was reported gone.
    replies: BTreeMap<String, BTreeMap<(StreamId, ConsumerId, Bytes), bool>>,
}

/// A deliver subject JetStream follows, and what it was told last.
struct InterestWatch {
    account: String,
    subject: Bytes,
    interested: bool,
}

impl JetStreamLink {
    pub fn new(jetstream: Option<&crate::jetstream::config::JetStreamConfig>) -> Self {
        JetStreamLink {
            enabled: jetstream.is_some(),
            domain_api: jetstream
                .and_then(|config| config.domain.as_deref())
                .map(|domain| format!("$JS.{domain}.API.>")),
            ..JetStreamLink::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A reload turned JetStream on (`Some`) or off. Off, everything
    /// JetStream listened to, watched or had queued is forgotten, and
    /// whatever its machine still asks of the link is ignored; the next
    /// accounts rebuild files the subscriptions anew.
    pub fn switch(&mut self, jetstream: Option<&crate::jetstream::config::JetStreamConfig>) {
        let api_kept = self.enabled || self.api_kept;
        *self = JetStreamLink::new(jetstream);
        self.api_kept = jetstream.is_none() && api_kept;
    }

    /// The accounts JetStream serves, and their limits, changed.
    pub fn accounts_changed(&mut self, accounts: BTreeMap<String, AccountLimits>) {
        if self.enabled {
            self.changed_accounts = Some(accounts);
        }
    }

    pub fn take_changed_accounts(&mut self) -> Option<BTreeMap<String, AccountLimits>> {
        self.changed_accounts.take()
    }

    /// File JetStream's subscriptions into freshly built accounts.
    pub fn install(&self, accounts: &mut Accounts, server_id: &str) {
        if !self.enabled && !self.api_kept {
            return;
        }
        if let (Some(system), true) = (accounts.system, self.enabled) {
            for subject in [
                String::from("$SYS.REQ.SERVER.PING.JSZ"),
                format!("$SYS.REQ.SERVER.{server_id}.JSZ"),
                String::from("$SYS.REQ.ACCOUNT.*.JSZ"),
            ] {
                let inserted = accounts.list[system].sublist.insert(
                    subject.as_bytes(),
                    None,
                    SubTarget::JetStream(JsTarget::System),
                );
                debug_assert!(inserted.is_ok(), "{subject} is a valid subject");
            }
        }
        let names: Vec<(AccountId, String)> = accounts
            .by_name
            .iter()
            .filter(|(_, &id)| Some(id) != accounts.system)
            .map(|(name, &id)| (id, name.clone()))
            .collect();
        let api_subjects = std::iter::once(API_SUBJECTS).chain(self.domain_api.as_deref());
        for subject in api_subjects {
            for (id, _) in &names {
                let inserted = accounts.list[*id].sublist.insert(
                    subject.as_bytes(),
                    None,
                    SubTarget::JetStream(JsTarget::Api),
                );
                // The domain was validated with the configuration.
                debug_assert!(inserted.is_ok(), "the API subject {subject} is valid");
            }
        }
        for ((account, target), subjects) in &self.listening {
            let Some(&id) = accounts.by_name.get(account) else {
                continue;
            };
            for subject in subjects {
                // Validated by JetStream before it asked.
                let _ = accounts.list[id].sublist.insert(
                    subject.as_bytes(),
                    None,
                    SubTarget::JetStream(*target),
                );
            }
        }
    }

    /// JetStream now listens to `subjects` for `target` in `account`.
    pub fn listen(
        &mut self,
        accounts: &mut Accounts,
        account: &str,
        target: JsTarget,
        subjects: Vec<String>,
    ) {
        let key = (account.to_string(), target);
        let old = self.listening.remove(&key).unwrap_or_default();
        let Some(&id) = accounts.by_name.get(account) else {
            return;
        };
        let sublist = &mut accounts.list[id].sublist;
        for subject in &old {
            let _ = sublist.remove(subject.as_bytes(), None, SubTarget::JetStream(target));
        }
        for subject in &subjects {
            let _ = sublist.insert(subject.as_bytes(), None, SubTarget::JetStream(target));
        }
        if !subjects.is_empty() {
            self.listening.insert(key, subjects);
        }
    }

    /// A message matched a JetStream entry in `account`.
    #[allow(clippy::too_many_arguments)]
    pub fn queue(
        &mut self,
        publisher: ConnId,
        account: &str,
        target: JsTarget,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        logs: &mut LogQueue,
    ) {
        if !self.enabled {
            // Turned off by a reload: API requests go unanswered.
            return;
        }
        if self.inbound.len() >= MAX_QUEUED {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                logs.push(
                    LogLevel::Warn,
                    None,
                    format!(
                        "JetStream inbound queue full: {} messages dropped",
                        self.dropped
                    ),
                );
            }
            return;
        }
        // A stream stores no `Nats-Request-Info` (a request's identity
        // picked up crossing a service import), as the reference strips it.
        let original = headers;
        let headers = match headers {
            Some(block)
                if matches!(target, JsTarget::Stream(_))
                    && crate::protocol::headers::find_header(block, b"Nats-Request-Info")
                        .is_some() =>
            {
                Bytes::from(crate::protocol::headers::without_headers(block, |key| {
                    key == b"Nats-Request-Info"
                }))
            }
            headers => Bytes::copy_from_slice(headers.unwrap_or_default()),
        };
        let context = match (target, reply) {
            (JsTarget::Stream(_), Some(reply)) => crossed_fast_batch_reply(reply, original),
            _ => Bytes::new(),
        };
        let msg = JsInbound {
            account: account.to_string(),
            target,
            subject: Bytes::copy_from_slice(subject),
            reply: Bytes::copy_from_slice(reply.unwrap_or_default()),
            headers,
            payload: Bytes::copy_from_slice(payload),
            context,
        };
        self.inbound.push_back((msg, publisher));
        debug_assert!(self.inbound.len() <= MAX_QUEUED);
    }

    pub fn poll(&mut self) -> Option<(JsInbound, ConnId)> {
        self.inbound.pop_front()
    }

    /// Follow (or stop following) a push consumer's deliver subject; the
    /// current state is reported at once.
    pub fn watch(
        &mut self,
        accounts: &mut Accounts,
        account: String,
        key: Watcher,
        subject: Option<Bytes>,
    ) {
        let Some(subject) = subject else {
            self.watches.remove(&key);
            return;
        };
        let id = accounts.by_name.get(&account).copied();
        let interested = id.is_some_and(|id| watched_interest(accounts, id, key, &subject));
        self.report(&account, key, &subject, interested);
        self.watches.insert(
            key,
            InterestWatch {
                account,
                subject,
                interested,
            },
        );
    }

    /// Follow (or stop following) pull requests' reply subjects; one
    /// without subscribers is reported gone at once.
    pub fn watch_replies(
        &mut self,
        accounts: &mut Accounts,
        stream: StreamId,
        consumer: ConsumerId,
        changes: Vec<ReplyWatch>,
    ) {
        for change in changes {
            let key = (stream, consumer, change.reply);
            if !change.watch {
                if let Some(watched) = self.replies.get_mut(&change.account) {
                    watched.remove(&key);
                    if watched.is_empty() {
                        self.replies.remove(&change.account);
                    }
                }
                continue;
            }
            let id = accounts.by_name.get(&change.account).copied();
            let gone = !id.is_some_and(|id| has_any_interest(accounts, id, &key.2));
            if gone {
                self.report_gone(&change.account, &key);
            }
            self.replies
                .entry(change.account)
                .or_default()
                .insert(key, gone);
        }
    }

    /// At the end of a step: report watched subjects whose interest
    /// changed in the accounts whose subscriptions changed.
    pub fn refresh_interest(&mut self, accounts: &mut Accounts, changed: &mut Vec<AccountId>) {
        if changed.is_empty() {
            return;
        }
        if self.watches.is_empty() && self.replies.is_empty() {
            changed.clear();
            return;
        }
        changed.sort_unstable();
        changed.dedup();
        let mut gone = Vec::new();
        for (account, watched) in &mut self.replies {
            let Some(&id) = accounts.by_name.get(account) else {
                continue;
            };
            if changed.binary_search(&id).is_err() {
                continue;
            }
            for (key, reported) in watched.iter_mut() {
                if !*reported && !has_any_interest(accounts, id, &key.2) {
                    *reported = true;
                    gone.push((account.clone(), key.clone()));
                }
            }
        }
        for (account, key) in gone {
            self.report_gone(&account, &key);
        }
        let mut reports = Vec::new();
        for (key, watch) in &mut self.watches {
            let Some(&id) = accounts.by_name.get(&watch.account) else {
                continue;
            };
            if changed.binary_search(&id).is_err() {
                continue;
            }
            let interested = watched_interest(accounts, id, *key, &watch.subject);
            if interested != watch.interested {
                watch.interested = interested;
                reports.push((
                    watch.account.clone(),
                    *key,
                    watch.subject.clone(),
                    interested,
                ));
            }
        }
        for (account, key, subject, interested) in reports {
            self.report(&account, key, &subject, interested);
        }
        changed.clear();
    }

    fn report(&mut self, account: &str, key: Watcher, subject: &Bytes, yes: bool) {
        let msg = JsInbound {
            account: account.to_string(),
            target: JsTarget::Interest(key),
            subject: subject.clone(),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::from_static(if yes { b"1" } else { b"0" }),
            context: Bytes::new(),
        };
        self.inbound.push_back((msg, super::system::INTERNAL_CONN));
    }
}

impl JetStreamLink {
    fn report_gone(&mut self, account: &str, key: &(StreamId, ConsumerId, Bytes)) {
        let msg = JsInbound {
            account: account.to_string(),
            target: JsTarget::ReplyGone(key.0, key.1),
            subject: key.2.clone(),
            reply: Bytes::new(),
            headers: Bytes::new(),
            payload: Bytes::new(),
            context: Bytes::new(),
        };
        self.inbound.push_back((msg, super::system::INTERNAL_CONN));
    }
}

/// The interest `watcher` follows: a push consumer's deliver subject counts
/// any client interest; a snapshot's counts only a client subscription on
/// exactly that subject, as the reference's notification does (so a
/// request mux's wildcard inbox is no interest: jsm.go subscribes to the
/// deliver subject only after it has read the reply).
fn watched_interest(
    accounts: &mut Accounts,
    id: AccountId,
    watcher: Watcher,
    subject: &[u8],
) -> bool {
    match watcher {
        Watcher::Consumer(..) => has_client_interest(accounts, id, subject),
        Watcher::Snapshot(_) => accounts.list[id]
            .sublist
            .exact_plain(subject)
            .any(|target| matches!(target, SubTarget::Client(_))),
    }
}

/// Whether anything subscribes to `subject` in account `id`: a client, or
/// an import's response route (the reference's interest test for a pull
/// request's reply).
fn has_any_interest(accounts: &mut Accounts, id: AccountId, subject: &[u8]) -> bool {
    let result = accounts.list[id].sublist.matches(subject);
    !result.plain.is_empty() || result.queues.iter().any(|group| !group.members.is_empty())
}

/// Whether a client subscribes to `subject` in account `id`: directly, as
/// a queue member through a stream import (its shadow), or as a plain
/// subscriber of an importing account (the reference's shadow counts as
/// interest in the exporter). An external mirror or source taking the
/// deliveries ([`JsTarget::Feed`]) is a subscriber too, as the reference's
/// internal subscription is.
fn has_client_interest(accounts: &mut Accounts, id: AccountId, subject: &[u8]) -> bool {
    let result = accounts.list[id].sublist.matches(subject);
    let client = |target: &SubTarget| {
        matches!(
            target,
            SubTarget::Client(_)
                | SubTarget::Shadow { .. }
                | SubTarget::JetStream(JsTarget::Feed(..))
        )
    };
    if result.plain.iter().any(client)
        || result
            .queues
            .iter()
            .any(|group| group.members.iter().any(client))
    {
        return true;
    }
    let imports: Vec<u32> = result
        .plain
        .iter()
        .filter_map(|target| match target {
            SubTarget::StreamImport(index) => Some(*index),
            _ => None,
        })
        .collect();
    let mut local = Vec::new();
    imports.into_iter().any(|index| {
        let route = &accounts.stream_imports[index as usize];
        let importer = route.importer;
        route.transform.apply(subject, &mut local)
            && accounts.list[importer]
                .sublist
                .matches(&local)
                .plain
                .iter()
                .any(|target| {
                    matches!(
                        target,
                        SubTarget::Client(_) | SubTarget::JetStream(JsTarget::Feed(..))
                    )
                })
    })
}

impl super::Server {
    /// The next message for JetStream, oldest first. The runtime drains
    /// this after every step and hands each to its JetStream machine.
    pub fn poll_jetstream(&mut self) -> Option<JsInbound> {
        let (mut msg, publisher) = loop {
            let (msg, publisher) = self.jetstream.poll()?;
            // A JSZ request whose server filters exclude this server gets
            // no answer (a payload that is no filter is JetStream's to judge).
            let excluded = msg.target == JsTarget::System
                && serde_json::from_slice::<crate::monitor::events::EventFilter>(&msg.payload)
                    .is_ok_and(|filter| !filter.matches(&self.view()));
            if !excluded {
                break (msg, publisher);
            }
        };
        let clock = self.monitor.wall;
        match msg.target {
            JsTarget::Api => {
                let client =
                    crate::monitor::events::EventClient::of(&self.view(), publisher, clock);
                if let Some(client) = client {
                    msg.context =
                        Bytes::from(serde_json::to_vec(&client).expect("client info serializes"));
                }
            }
            JsTarget::System => {
                let seq = self.system.next_seq();
                let server = crate::monitor::events::EventServer::new(&self.view(), seq, clock);
                msg.context =
                    Bytes::from(serde_json::to_vec(&server).expect("server info serializes"));
            }
            JsTarget::Stream(_)
            | JsTarget::Consumer(..)
            | JsTarget::Interest(..)
            | JsTarget::ReplyGone(..)
            | JsTarget::Snapshot(_)
            | JsTarget::Feed(..) => {}
        }
        Some(msg)
    }

    /// Carry out what JetStream asked of the routing side: publish a
    /// message from the server itself, change what it listens to, or log
    /// a line (so JetStream's lines join the server's, in order). Syncs
    /// are the runtime's, not for here.
    pub fn handle_jetstream(
        &mut self,
        now: crate::time::Instant,
        action: crate::jetstream::link::JsAction,
    ) {
        use crate::jetstream::link::JsAction;
        let subscribes = matches!(
            action,
            JsAction::Listen { .. }
                | JsAction::WatchInterest { .. }
                | JsAction::WatchReplies { .. }
        );
        if subscribes && !self.jetstream.enabled() {
            // From a machine a reload has shut down (or is shutting down).
            return;
        }
        match action {
            JsAction::Publish {
                account,
                subject,
                reply,
                headers,
                payload,
            } => {
                if let Some(id) = self.router.accounts.find(&account) {
                    let delivery = super::Delivery {
                        publisher: super::system::INTERNAL_CONN,
                        subject: &subject,
                        reply: (!reply.is_empty()).then_some(&reply[..]),
                        headers: (!headers.is_empty()).then_some(&headers[..]),
                        payload: &payload,
                        shown_subject: None,
                    };
                    self.route(now, id, &delivery, true);
                }
            }
            JsAction::Deliver {
                account,
                to,
                subject,
                reply,
                headers,
                payload,
            } => {
                if let Some(id) = self.router.accounts.find(&account) {
                    let delivery = super::Delivery {
                        publisher: super::system::INTERNAL_CONN,
                        subject: &to,
                        reply: (!reply.is_empty()).then_some(&reply[..]),
                        headers: (!headers.is_empty()).then_some(&headers[..]),
                        payload: &payload,
                        shown_subject: Some(&subject),
                    };
                    self.route(now, id, &delivery, true);
                }
            }
            JsAction::Listen {
                account,
                target,
                subjects,
            } => {
                // A feed's route counts as interest in a push consumer's
                // deliver subject (a durable one made before the feed
                // listens): the watches of its account are looked at again.
                if matches!(target, crate::jetstream::link::JsTarget::Feed(..)) {
                    if let Some(id) = self.router.accounts.find(&account) {
                        self.router.changed_accounts.push(id);
                    }
                }
                self.jetstream
                    .listen(&mut self.router.accounts, &account, target, subjects);
            }
            JsAction::WatchInterest {
                account,
                watcher,
                subject,
            } => {
                self.jetstream
                    .watch(&mut self.router.accounts, account, watcher, subject);
            }
            JsAction::WatchReplies {
                stream,
                consumer,
                changes,
            } => {
                self.jetstream
                    .watch_replies(&mut self.router.accounts, stream, consumer, changes);
            }
            JsAction::Log { level, text } => self.logs.push(level, None, text),
            JsAction::Sync { .. } => {
                debug_assert!(false, "the runtime carries out {action:?}");
            }
        }
        self.finish_step(now);
    }
}

/// The fast batch reply (`...$FI`) a stream's message had before it crossed
/// a service import, read from its `Nats-Request-Info` (the reference's
/// client info `reply`); empty for any other message. Only a `_R_.` reply
/// is looked into, so an ordinary publish parses no JSON.
fn crossed_fast_batch_reply(reply: &[u8], headers: Option<&[u8]>) -> Bytes {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(default)]
        reply: String,
    }
    if !reply.starts_with(b"_R_.") {
        return Bytes::new();
    }
    let Some(info) = headers
        .and_then(|block| crate::protocol::headers::find_header(block, b"Nats-Request-Info"))
    else {
        return Bytes::new();
    };
    match serde_json::from_slice::<Info>(info) {
        Ok(info)
            if info
                .reply
                .as_bytes()
                .ends_with(crate::jetstream::fast_batch::SUFFIX) =>
        {
            Bytes::from(info.reply)
        }
        _ => Bytes::new(),
    }
}
