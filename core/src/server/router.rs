//! The router: which connections (and which internal routes) a message
//! reaches, in which accounts.
//!
//! Role: the [`Router`] owns the accounts (one Sublist each, the import
//! routes between them, subject mappings, response routes of service
//! imports) and walks a message through them. What it delivers goes to the
//! [`Connections`] in the [`RouteCx`] it is handed: the router never owns a
//! connection, and the connections never look at a Sublist.
//!
//! Routing of one message: the Sublist of its account is matched once
//! (cached); every plain subscription gets it; every queue group gets it
//! once, at a member drawn from the server's seeded stream (skipping members
//! that cannot receive); internal routes (stream and service imports,
//! response routes, system services) are followed after the account's own
//! subscribers, at most `MAX_ACCOUNT_HOPS` boundaries deep.
//!
//! Invariants:
//! - A delivery never reaches a closing client, a subscription past its
//!   auto-unsubscribe max, or a subscription whose deny list refuses the
//!   subject.
//! - The per-depth `crossings` lists are empty between messages.
//! - Every client subscription in a Sublist belongs to an open client in
//!   that account, once the step's retired subscriptions are filed out.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

use super::accounts::{AccountId, AccountStats, Accounts, SubTarget};
use super::client::MAX_NO_RTT_PING_BEFORE_FIRST_PONG;
use super::client::{SubKey, Subscription};
use super::config::ServerConfig;
use super::connections::Connections;
use super::jetstream_link::JetStreamLink;
use super::log::LogQueue;
use super::stats::ServerStats;
use super::system_inbox::System;
use super::trace::{self, MsgTrace};
#[cfg(feature = "planted-defects")]
use super::PlantedDefect;
use crate::auth::ResponseType;
use crate::jetstream::consumer::ack::ACK_PREFIX;
use crate::protocol;
use crate::runtime::ConnId;
use crate::time::Instant;

/// Account boundaries one message may cross (import chains; ends a cycle).
pub(super) const MAX_ACCOUNT_HOPS: usize = 8;

/// Reply subjects longer than this make a delivery measure the receiver's
/// round trip (the reference's `minReplyLen`).
const MIN_RTT_REPLY_LEN: usize = 15;

/// A message on its way through the router.
#[derive(Clone, Copy)]
pub(crate) struct Delivery<'a> {
    pub publisher: ConnId,
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The header block (HPUB), if any.
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The subject written in the MSG line when it is not the subject the
    /// message is routed by: a JetStream consumer's delivery is routed to
    /// its inbox or deliver subject but shows the stored message's subject.
    pub shown_subject: Option<&'a [u8]>,
}

/// What routing one message may touch besides the accounts: borrowed from
/// the server's other parts for the length of one `route` call.
pub(super) struct RouteCx<'a> {
    pub conns: &'a mut Connections,
    /// Queue-member, weighted-mapping and response-token draws.
    pub rng: &'a mut ChaCha8Rng,
    pub stats: &'a mut ServerStats,
    pub logs: &'a mut LogQueue,
    /// System service requests a match reached, answered at the end of the step.
    pub system: &'a mut System,
    /// Messages for JetStream, polled by the runtime.
    pub jetstream: &'a mut JetStreamLink,
    /// The trace of a traced message (egress events go here).
    pub trace: Option<&'a mut MsgTrace>,
    pub config: &'a ServerConfig,
    pub now: Instant,
    /// `now` and the wall time then (a shared request's client start time).
    pub clock: crate::time::Clock,
    /// Where the message came from: a route's message is delivered to
    /// local subscribers only, and to the queue groups it names.
    pub origin: Origin<'a>,
}

/// Who handed the router a message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin<'a> {
    /// A client or the server itself: routes get it too.
    Local,
    /// A route (RMSG): these queue groups chose a member on this server.
    Route { queues: &'a [Bytes] },
    /// Carried into the importer by a stream import: local plain
    /// subscribers only. The importer's queue groups are not drawn here:
    /// their shadows in the exporter were (`SubTarget::Shadow`), among the
    /// members on every server.
    Imported,
}

/// Names one interest: (account, subject, queue group).
pub(super) type InterestKey = (AccountId, Bytes, Option<Bytes>);

/// A change of local interest routes must hear about, in the order it
/// happened (drained at the end of the step by `route_ops.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InterestChange {
    pub account: AccountId,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    /// Local subscriptions left (for a queue group: its weight); 0 is RS-.
    pub count: u32,
}

/// Accounts, their Sublists and the routes between them.
pub struct Router {
    pub(crate) accounts: Accounts,
    /// Reused per-depth lists of internal routes a match reached.
    crossings: [Vec<SubTarget>; MAX_ACCOUNT_HOPS],
    /// Accounts whose client subscriptions changed during this step (for
    /// JetStream's interest watches; may repeat, cleared every step).
    pub(super) changed_accounts: Vec<AccountId>,
    /// With a cluster: local client interest by (account, subject, queue),
    /// counted, so routes hear of the first and the last subscription.
    pub(super) interest: Option<BTreeMap<InterestKey, u32>>,
    pub(super) interest_changes: Vec<InterestChange>,
    /// Routes one message goes to in the account being routed (reused):
    /// the route, the queue group it was chosen for, the interest matched.
    route_targets: Vec<(ConnId, Option<Bytes>, u64)>,
    /// The accounts' announced interest counted in `interest` (so a
    /// rebuild takes out what the new accounts no longer announce).
    announced: Vec<(AccountId, Bytes, Option<Bytes>)>,
    /// The shadows each importer subscription casts in its exporters
    /// (exporter, import, subject): counted in `interest` (routes send the
    /// exporter's messages only to servers with importing subscribers),
    /// and, for a queue subscription, filed as `SubTarget::Shadow`.
    shadows: BTreeMap<SubKey, Vec<(AccountId, u32, Bytes)>>,
    /// Importers' traffic through shadows while their exporter's match is
    /// borrowed (reused; empty between messages).
    shadow_sent: Vec<(AccountId, AccountStats)>,
}

impl Router {
    pub(super) fn new(accounts: Accounts) -> Self {
        Router {
            accounts,
            crossings: Default::default(),
            changed_accounts: Vec::new(),
            interest: None,
            interest_changes: Vec::new(),
            route_targets: Vec::new(),
            announced: Vec::new(),
            shadows: BTreeMap::new(),
            shadow_sent: Vec::new(),
        }
    }

    /// Replace the accounts (a reload), keeping traffic counters by name.
    pub(super) fn replace_accounts(&mut self, mut accounts: Accounts) {
        for old in &self.accounts.list {
            if let Some(id) = accounts.find(&old.name) {
                accounts.list[id].stats = old.stats;
            }
        }
        self.accounts = accounts;
    }

    /// Count the accounts' announced interest (`Accounts::announced`) in
    /// `interest` like client subscriptions, so routes hear of it at
    /// registration and of its changes after a rebuild. No-op without a
    /// cluster.
    pub(super) fn refresh_announced(&mut self) {
        if self.interest.is_none() {
            return;
        }
        let mut wanted = self.accounts.announced.clone();
        wanted.sort();
        wanted.dedup();
        let old = std::mem::take(&mut self.announced);
        for (account, subject, queue) in old.iter().filter(|entry| !wanted.contains(entry)) {
            self.remove_interest((*account, subject.clone(), queue.clone()));
        }
        for (account, subject, queue) in wanted.iter().filter(|entry| !old.contains(entry)) {
            self.add_interest((*account, subject.clone(), queue.clone()));
        }
        self.announced = wanted;
    }

    /// One more local subscriber of `key` (no-op without a cluster):
    /// routes hear of plain interest once, of a queue's weight every time.
    fn add_interest(&mut self, key: InterestKey) {
        let Some(interest) = &mut self.interest else {
            return;
        };
        let count = interest.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1 || key.2.is_some() {
            let (account, subject, queue) = key;
            let count = *count;
            self.interest_changes.push(InterestChange {
                account,
                subject,
                queue,
                count,
            });
        }
    }

    /// One subscriber of `key` fewer (no-op without a cluster); routes
    /// hear of the last plain one going, of a queue's weight every time.
    fn remove_interest(&mut self, key: InterestKey) {
        let Some(interest) = &mut self.interest else {
            return;
        };
        let Some(count) = interest.get_mut(&key) else {
            return;
        };
        assert!(*count > 0, "interest counts are positive");
        *count -= 1;
        let count = *count;
        if count == 0 {
            interest.remove(&key);
        }
        if count == 0 || key.2.is_some() {
            let (account, subject, queue) = key;
            self.interest_changes.push(InterestChange {
                account,
                subject,
                queue,
                count,
            });
        }
    }

    /// File the shadows `sub` (in the importer `account`) casts through
    /// its account's stream imports: the reference's shadow subscriptions.
    fn file_shadows(&mut self, account: AccountId, key: SubKey, sub: &Subscription) {
        if self.accounts.list[account].stream_imports.is_empty() {
            return;
        }
        let mut shadows = Vec::new();
        for &import in &self.accounts.list[account].stream_imports {
            let route = &self.accounts.stream_imports[import as usize];
            debug_assert_eq!(route.importer, account);
            if let Some(subject) = route.shadow_subject(&sub.subject) {
                shadows.push((route.exporter, import, subject));
            }
        }
        for (exporter, import, subject) in &shadows {
            if let Some(queue) = &sub.queue {
                let target = SubTarget::Shadow {
                    key,
                    import: *import,
                };
                let filed =
                    self.accounts.list[*exporter]
                        .sublist
                        .insert(subject, Some(queue), target);
                assert!(filed.is_ok(), "a shadow of a valid subscription is valid");
            }
            // The exporter's push consumers may now have a subscriber.
            if self.changed_accounts.last() != Some(exporter) {
                self.changed_accounts.push(*exporter);
            }
            self.add_interest((*exporter, subject.clone(), sub.queue.clone()));
        }
        if !shadows.is_empty() {
            self.shadows.insert(key, shadows);
        }
    }

    /// Take out what [`Router::file_shadows`] filed for `key`.
    fn unfile_shadows(&mut self, key: SubKey, sub: &Subscription) {
        let Some(shadows) = self.shadows.remove(&key) else {
            return;
        };
        for (exporter, import, subject) in shadows {
            if let Some(queue) = &sub.queue {
                let target = SubTarget::Shadow { key, import };
                let removed =
                    self.accounts.list[exporter]
                        .sublist
                        .remove(&subject, Some(queue), target);
                assert!(removed.is_ok(), "shadow {key:?} was filed");
            }
            if self.changed_accounts.last() != Some(&exporter) {
                self.changed_accounts.push(exporter);
            }
            self.remove_interest((exporter, subject, sub.queue.clone()));
        }
    }

    /// Apply `account`'s mappings to `subject`; true when `out` holds a new subject.
    pub(super) fn map_subject(
        &self,
        rng: &mut ChaCha8Rng,
        account: AccountId,
        subject: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        for mapping in &self.accounts.list[account].mappings {
            let draw = if mapping.is_weighted() {
                rng.next_u32() % 100
            } else {
                0
            };
            if let Some(changed) = mapping.apply(subject, draw, out) {
                return changed;
            }
        }
        false
    }

    /// File a client subscription into `account`'s Sublist; false when the
    /// subject is not a valid subscription subject.
    pub(super) fn file(&mut self, account: AccountId, key: SubKey, sub: &Subscription) -> bool {
        let key_account = account;
        if self.changed_accounts.last() != Some(&account) {
            self.changed_accounts.push(account);
        }
        let account = &mut self.accounts.list[account];
        let inserted =
            account
                .sublist
                .insert(&sub.subject, sub.queue.as_deref(), SubTarget::Client(key));
        if inserted.is_ok() {
            account.client_subs += 1;
            self.add_interest((key_account, sub.subject.clone(), sub.queue.clone()));
            self.file_shadows(key_account, key, sub);
        }
        inserted.is_ok()
    }

    /// File a route's interest into `account`'s Sublist.
    pub(super) fn file_remote(
        &mut self,
        account: AccountId,
        key: SubKey,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> bool {
        self.accounts.list[account]
            .sublist
            .insert(subject, queue, SubTarget::Route(key))
            .is_ok()
    }

    /// Take a route's interest out of `account`'s Sublist (it may never
    /// have gone in: an invalid subject is refused when filed).
    pub(super) fn unfile_remote(
        &mut self,
        account: AccountId,
        key: SubKey,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) {
        if let Some(account) = self.accounts.list.get_mut(account) {
            let _ = account
                .sublist
                .remove(subject, queue, SubTarget::Route(key));
        }
    }

    /// Take a client subscription out of `account`'s Sublist.
    pub(super) fn unfile(&mut self, account: AccountId, key: SubKey, sub: &Subscription) {
        self.remove_interest((account, sub.subject.clone(), sub.queue.clone()));
        self.unfile_shadows(key, sub);
        if self.changed_accounts.last() != Some(&account) {
            self.changed_accounts.push(account);
        }
        let account = &mut self.accounts.list[account];
        let removed =
            account
                .sublist
                .remove(&sub.subject, sub.queue.as_deref(), SubTarget::Client(key));
        assert!(
            removed.is_ok(),
            "subscription {key:?} was not in its account's Sublist"
        );
        assert!(account.client_subs > 0);
        account.client_subs -= 1;
    }

    /// The requester's own subscription on `reply` in `account`, if any:
    /// the one a no-responders status goes to.
    pub(super) fn own_reply_subscription(
        &mut self,
        account: AccountId,
        conn: ConnId,
        reply: &[u8],
    ) -> Option<SubKey> {
        let result = self.accounts.list[account].sublist.matches(reply);
        result.plain.iter().find_map(|target| match target {
            SubTarget::Client(key) if key.conn == conn => Some(*key),
            _ => None,
        })
    }

    /// Deliver to every match in `account`, following internal routes into
    /// other accounts; returns whether anyone got the message. `depth`
    /// counts the account boundaries crossed, so an import cycle ends.
    pub(super) fn route(
        &mut self,
        cx: &mut RouteCx<'_>,
        account: AccountId,
        msg: &Delivery<'_>,
        publisher_echo: bool,
        depth: u8,
    ) -> bool {
        let depth_index = usize::from(depth);
        assert!(depth_index < MAX_ACCOUNT_HOPS);
        let mut crossings = std::mem::take(&mut self.crossings[depth_index]);
        debug_assert!(crossings.is_empty());
        let routed_account = cx
            .trace
            .as_ref()
            .map(|_| self.accounts.list[account].name.clone());
        let routed_account = routed_account.as_deref().unwrap_or("");
        let sublist = &mut self.accounts.list[account].sublist;
        // Each JetStream ack names the delivery it acks: cached, it would
        // only push out the answers of subjects that repeat.
        let result = if msg.subject.starts_with(ACK_PREFIX.as_bytes()) {
            sublist.matches_once(msg.subject)
        } else {
            sublist.matches(msg.subject)
        };
        let mut delivered = false;
        let mut sent = AccountStats::default();
        for target in &result.plain {
            match *target {
                SubTarget::Client(key) => {
                    if key.conn == msg.publisher && !publisher_echo {
                        cx.trace_refusal(key, routed_account, trace::ERR_NO_ECHO);
                        continue;
                    }
                    delivered |= cx.deliver(key, msg, routed_account, &mut sent);
                }
                SubTarget::Route(key) => {
                    // A route's message never goes on to another route.
                    // (The export deny is checked in `forward`, where the
                    // route is looked up anyway.)
                    if cx.origin == Origin::Local {
                        self.route_targets.push((key.conn, None, key.index));
                    }
                }
                SubTarget::Shadow { .. } => {
                    debug_assert!(false, "shadows are filed in queue groups only");
                }
                other => crossings.push(other),
            }
        }
        for group in &result.queues {
            let members = &group.members;
            if members.is_empty() {
                continue;
            }
            let from_route = match cx.origin {
                Origin::Local => false,
                // Drawn in the exporter, among the group's shadows.
                Origin::Imported => continue,
                // Only the groups the sender picked this server for.
                Origin::Route { queues } => {
                    if !queues.contains(&group.name) {
                        continue;
                    }
                    true
                }
            };
            // Start at a random member (a route counts as many members as
            // its peer has) and take the first that can receive, so a
            // member on its way out does not swallow the message.
            let start = if self.interest.is_none() {
                // No cluster: every member weighs one, the same draw in O(1).
                (cx.rng.next_u64() % members.len() as u64) as usize
            } else {
                let weight = |target: &SubTarget| match target {
                    SubTarget::Route(key) => cx.conns.route(key.conn).map_or(1, |r| r.weight(*key)),
                    _ => 1,
                };
                let total: u64 = members.iter().map(|m| u64::from(weight(m))).sum();
                let mut draw = cx.rng.next_u64() % total.max(1);
                let mut start = 0;
                for (index, member) in members.iter().enumerate() {
                    let w = u64::from(weight(member));
                    if draw < w {
                        start = index;
                        break;
                    }
                    draw -= w;
                }
                start
            };
            for offset in 0..members.len() {
                let key =
                    match members[(start + offset) % members.len()] {
                        SubTarget::Client(key) => key,
                        SubTarget::Shadow { key, import } => {
                            let imports = &self.accounts.stream_imports;
                            let shadow_sent = &mut self.shadow_sent;
                            if deliver_shadow(imports, cx, key, import, msg, shadow_sent) {
                                delivered = true;
                                break;
                            }
                            continue;
                        }
                        SubTarget::Route(key) if !from_route => {
                            if cx.conns.route_mut(key.conn).is_some_and(|r| {
                                !r.is_closing() && r.may_send(key.index, msg.subject)
                            }) {
                                self.route_targets.push((
                                    key.conn,
                                    Some(group.name.clone()),
                                    key.index,
                                ));
                                delivered = true;
                                break;
                            }
                            continue;
                        }
                        SubTarget::System(service) => {
                            // A service answered by one server of the
                            // cluster (the pack responders): this one.
                            crossings.push(SubTarget::System(service));
                            delivered = true;
                            break;
                        }
                        _ => continue,
                    };
                if key.conn == msg.publisher && !publisher_echo {
                    continue;
                }
                if cx.deliver(key, msg, routed_account, &mut sent) {
                    delivered = true;
                    #[cfg(feature = "planted-defects")]
                    if offset == 0
                        && members.len() > 2
                        && cx.config.planted_defect == Some(PlantedDefect::QueueDoubleDelivery)
                    {
                        continue;
                    }
                    break;
                }
            }
        }
        for (importer, sent) in self.shadow_sent.drain(..) {
            let stats = &mut self.accounts.list[importer].stats;
            stats.sent_msgs += sent.sent_msgs;
            stats.sent_bytes += sent.sent_bytes;
            stats.slow_consumers += sent.slow_consumers;
        }
        if !self.route_targets.is_empty() {
            delivered |= self.forward(cx, account, msg);
        }
        let account_stats = &mut self.accounts.list[account].stats;
        account_stats.sent_msgs += sent.sent_msgs;
        account_stats.sent_bytes += sent.sent_bytes;
        account_stats.slow_consumers += sent.slow_consumers;
        for target in crossings.drain(..) {
            if depth_index + 1 < MAX_ACCOUNT_HOPS {
                delivered |= self.cross(cx, account, target, msg, depth + 1);
            }
        }
        self.crossings[depth_index] = crossings;
        delivered
    }

    /// One RMSG per route that wants `msg` in `account`, naming the queue
    /// groups it was chosen for; empties `route_targets`.
    fn forward(&mut self, cx: &mut RouteCx<'_>, account: AccountId, msg: &Delivery<'_>) -> bool {
        let mut targets = std::mem::take(&mut self.route_targets);
        targets.sort();
        let name = self.accounts.list[account].name.as_bytes();
        let mut sent_any = false;
        let mut queues: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        while at < targets.len() {
            let (conn, counted) = (targets[at].0, targets[at].2);
            let first = at;
            while at < targets.len() && targets[at].0 == conn {
                at += 1;
            }
            let Some((route, chunks, actions)) = cx.conns.route_parts(conn) else {
                continue;
            };
            if route.is_closing() {
                continue;
            }
            // A queue member was checked when chosen; plain interest passes
            // the export deny here (a wider wildcard the peer was allowed
            // may not carry a denied subject).
            queues.clear();
            let mut wanted = false;
            for (_, queue, index) in &targets[first..at] {
                match queue {
                    Some(queue) => {
                        wanted = true;
                        if !queues.contains(&&queue[..]) {
                            queues.push(queue);
                        }
                    }
                    None => wanted |= route.may_send(*index, msg.subject),
                }
            }
            if !wanted {
                continue;
            }
            let wire_account = route.account.is_none().then_some(name);
            // A traced message carries its hop to the next server, which
            // traces it on (a trace-only one is delivered nowhere there
            // either); this server records the route egress.
            let hop_headers;
            let headers = match (cx.trace.as_deref_mut(), msg.headers) {
                (Some(trace), Some(headers)) => {
                    let server = route.remote.as_ref().map_or("", |r| r.server_name.as_str());
                    let account_name = String::from_utf8_lossy(name);
                    let hop = trace.route_egress(conn, server, &account_name);
                    hop_headers = trace::with_hop(headers, &hop);
                    Some(&hop_headers[..])
                }
                (_, headers) => headers,
            };
            #[cfg(feature = "planted-defects")]
            let copies = 1 + usize::from(
                msg.reply.is_some()
                    && cx.config.planted_defect == Some(PlantedDefect::RouteDuplicateForward),
            );
            #[cfg(not(feature = "planted-defects"))]
            let copies = 1;
            for _ in 0..copies {
                crate::route::write_rmsg(
                    &mut route.outbound.sink(chunks),
                    wire_account,
                    msg.subject,
                    msg.reply,
                    &queues,
                    headers,
                    msg.payload,
                );
            }
            if let Some(sub) = route.subs.get_mut(&counted) {
                sub.msgs += 1;
            }
            let size = headers.map_or(0, <[u8]>::len) + msg.payload.len();
            route.stats.out_msgs += 1;
            route.stats.out_bytes += size as u64;
            cx.stats.out_msgs += 1;
            cx.stats.out_bytes += size as u64;
            if !route.transmit_queued {
                route.transmit_queued = true;
                actions.push_back(crate::runtime::Action::Transmit(conn));
            }
            sent_any = true;
            if route.pending_bytes() > cx.config.max_pending {
                // A peer that does not read is cut off like a client.
                cx.stats.slow_consumers += 1;
                cx.conns.close(
                    conn,
                    crate::runtime::CloseReason::SlowConsumerPendingBytes,
                    cx.logs,
                    cx.config.trace,
                );
            }
        }
        targets.clear();
        self.route_targets = targets;
        sent_any
    }

    /// Carry `msg` across an account boundary through an internal route.
    fn cross(
        &mut self,
        cx: &mut RouteCx<'_>,
        account: AccountId,
        target: SubTarget,
        msg: &Delivery<'_>,
        depth: u8,
    ) -> bool {
        let mut subject = Vec::new();
        match target {
            SubTarget::Client(_) | SubTarget::Route(_) | SubTarget::Shadow { .. } => {
                unreachable!("clients, routes and shadows are delivered to directly")
            }
            SubTarget::System(service) => {
                if service == super::system_inbox::SysService::UserInfo
                    && matches!(cx.origin, Origin::Route { .. })
                {
                    // Only the requester's own server knows its user.
                    return false;
                }
                let (subject, reply, payload) = (msg.subject, msg.reply, msg.payload);
                cx.system
                    .queue(service, msg.publisher, subject, reply, payload, cx.logs);
                true
            }
            SubTarget::JetStream(target) => {
                // Subscriptions that went earlier in this step went before
                // this message: JetStream hears of it first (a pull
                // request whose inbox is gone is not counted as waiting).
                cx.jetstream
                    .refresh_interest(&mut self.accounts, &mut self.changed_accounts);
                // A consumer's delivery is shown with its stored subject,
                // as to a client (an external mirror stores it so).
                cx.jetstream.queue(
                    msg.publisher,
                    &self.accounts.list[account].name,
                    target,
                    msg.shown_subject.unwrap_or(msg.subject),
                    msg.reply,
                    msg.headers,
                    msg.payload,
                    cx.logs,
                );
                true
            }
            SubTarget::StreamImport(index) => {
                let route = &self.accounts.stream_imports[index as usize];
                if !route.transform.apply(msg.subject, &mut subject) {
                    return false;
                }
                let importer = route.importer;
                if let Some(trace) = cx.trace.as_deref_mut() {
                    trace.stream_export(&self.accounts.list[importer].name, &subject);
                }
                let crossed = Delivery {
                    subject: &subject,
                    ..*msg
                };
                let origin = std::mem::replace(&mut cx.origin, Origin::Imported);
                let delivered = self.route(cx, importer, &crossed, true, depth);
                cx.origin = origin;
                delivered
            }
            SubTarget::ServiceImport(index) => {
                if matches!(cx.origin, Origin::Route { .. }) {
                    // The requester's server crossed it already and sent
                    // the request on in the exporter (as the reference).
                    return false;
                }
                let route = &self.accounts.service_imports[index as usize];
                if !route.transform.apply(msg.subject, &mut subject) {
                    return false;
                }
                let (exporter, share) = (route.exporter, route.share);
                if let Some(trace) = cx.trace.as_deref_mut() {
                    let name = &self.accounts.list[exporter].name;
                    trace.service_import(name, msg.subject, &subject);
                }
                let response = msg.reply.filter(|r| !r.is_empty()).map(|reply| {
                    let token = response_token(cx.rng);
                    let id = self.accounts.next_response;
                    (
                        id,
                        self.accounts.open_response(index, reply, &token, cx.now),
                    )
                });
                let info = request_info(cx, msg, &self.accounts, account, exporter, depth, share);
                let crossed = Delivery {
                    subject: &subject,
                    reply: response.as_ref().map(|(_, reply)| &reply[..]),
                    headers: info.as_deref().or(msg.headers),
                    ..*msg
                };
                let delivered = self.route(cx, exporter, &crossed, true, depth);
                if let (false, Some((id, _))) = (delivered, &response) {
                    self.accounts.close_response(*id);
                }
                delivered
            }
            SubTarget::Response(id) => {
                let Some(route) = self.accounts.responses.get(&id) else {
                    return false;
                };
                let (requester, responder) = (route.reply_account, route.subject_account);
                let reply = route.reply.clone();
                if route.response_type == ResponseType::Singleton {
                    self.accounts.close_response(id);
                }
                // A response's own reply crosses back as the reference's
                // does: `$JS.ACK.` subjects as they are (acks of a pull
                // consumer used through an import), others through a
                // `_R_.` route of their own into the responder's account.
                let back = match msg.reply.filter(|r| !r.is_empty()) {
                    Some(r) if r.starts_with(b"$JS.ACK.") => {
                        Some((None, Bytes::copy_from_slice(r)))
                    }
                    Some(r) => {
                        let token = response_token(cx.rng);
                        let back_id = self.accounts.next_response;
                        let expiry = (
                            ResponseType::Singleton,
                            crate::auth::DEFAULT_RESPONSE_THRESHOLD,
                        );
                        let subject = self
                            .accounts
                            .open_response_route(requester, responder, r, &token, expiry, cx.now);
                        Some((Some(back_id), subject))
                    }
                    None => None,
                };
                let crossed = Delivery {
                    subject: &reply,
                    reply: back.as_ref().map(|(_, subject)| &subject[..]),
                    ..*msg
                };
                let delivered = self.route(cx, requester, &crossed, true, depth);
                if let (false, Some((Some(back_id), _))) = (delivered, &back) {
                    self.accounts.close_response(*back_id);
                }
                delivered
            }
        }
    }
}

/// Deliver `msg` (in the exporter) to the importer's queue member `key`,
/// whose shadow through `import` was drawn; its traffic is counted in
/// `sent` for the importer, as a crossing counts it.
fn deliver_shadow(
    imports: &[super::accounts::StreamImportRoute],
    cx: &mut RouteCx<'_>,
    key: SubKey,
    import: u32,
    msg: &Delivery<'_>,
    sent: &mut Vec<(AccountId, AccountStats)>,
) -> bool {
    let route = &imports[import as usize];
    let mut subject = Vec::new();
    if !route.transform.apply(msg.subject, &mut subject) {
        return false;
    }
    if let Some(trace) = cx.trace.as_deref_mut() {
        trace.stream_export(&route.importer_name, &subject);
    }
    let crossed = Delivery {
        subject: &subject,
        ..*msg
    };
    let mut stats = AccountStats::default();
    let delivered = cx.deliver(key, &crossed, &route.importer_name, &mut stats);
    sent.push((route.importer, stats));
    delivered
}

/// The header block a request crossing a service import carries on: the
/// reference's `Nats-Request-Info` (its `ClientInfo`: the requester's
/// account and round trip; with the import's `share`, also its connection,
/// user, client library and JWT and this server's name and cluster; the
/// server and cluster too when the service is the system account's) set
/// in `msg`'s headers. `None` (the headers as they are) for a request the
/// server itself made. A request that crossed an import before keeps the
/// first requester's, with `svc` naming the account it crosses from now.
fn request_info(
    cx: &RouteCx<'_>,
    msg: &Delivery<'_>,
    accounts: &super::accounts::Accounts,
    requester: AccountId,
    exporter: AccountId,
    depth: u8,
    share: bool,
) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"Nats-Request-Info";
    let client = cx.conns.get(msg.publisher)?;
    let earlier = msg
        .headers
        .and_then(|h| protocol::headers::find_header(h, KEY))
        .filter(|_| depth > 1);
    if let Some(earlier) = earlier {
        // A second crossing: the first requester's info, naming the
        // account it crosses from now, as the reference. One it cannot
        // read is carried on as it is.
        let mut info: crate::monitor::events::EventClient = serde_json::from_slice(earlier).ok()?;
        info.svc = accounts.list[requester].name.clone();
        if (share || Some(exporter) == accounts.system) && info.server.is_empty() {
            set_server(&mut info, cx.config);
        }
        let json = serde_json::to_vec(&info).expect("a client info serializes");
        return Some(protocol::headers::with_header(msg.headers, KEY, &json));
    }
    let mut info = crate::monitor::events::EventClient {
        acc: accounts.list[requester].name.clone(),
        rtt: client
            .rtt
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        ..Default::default()
    };
    if share {
        info.share_details(msg.publisher, client, cx.clock);
    }
    if let Some(reply) = msg
        .reply
        .filter(|r| r.ends_with(crate::jetstream::fast_batch::SUFFIX))
    {
        info.reply = String::from_utf8_lossy(reply).into_owned();
    }
    if share || Some(exporter) == accounts.system {
        set_server(&mut info, cx.config);
    }
    let json = serde_json::to_vec(&info).expect("a client info serializes");
    Some(protocol::headers::with_header(msg.headers, KEY, &json))
}

/// This server's name and cluster in a request's client info.
fn set_server(info: &mut crate::monitor::events::EventClient, config: &ServerConfig) {
    info.server = config.effective_name().to_owned();
    info.cluster = config
        .cluster
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_default();
}

/// Random text for a `_R_.` reply subject.
fn response_token(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..12)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

impl RouteCx<'_> {
    /// Record in the trace (if any) that `key` did not get the message.
    fn trace_refusal(&mut self, key: SubKey, routed_account: &str, error: &'static str) {
        let Some(trace) = self.trace.as_deref_mut() else {
            return;
        };
        let Some(client) = self.conns.get(key.conn) else {
            return;
        };
        if let Some(sub) = client.subs.get(&key.index) {
            let name = client.options.name.as_deref();
            trace.egress(key.conn, name, sub, routed_account, error);
        }
    }

    /// Write one message to one subscription. Returns whether it was
    /// delivered (a slow consumer cut off by this very message counts: it
    /// was its turn, and a queue group must not hand the message on).
    fn deliver(
        &mut self,
        key: SubKey,
        msg: &Delivery<'_>,
        routed_account: &str,
        sent: &mut AccountStats,
    ) -> bool {
        // One lookup of the client for the whole delivery (the hot path).
        let Some((client, chunks, actions)) = self.conns.client_parts(key.conn) else {
            return false;
        };
        if client.is_closing() {
            self.trace_refusal(key, routed_account, trace::ERR_CLIENT_CLOSED);
            return false;
        }
        let Some(sub) = client.subs.get_mut(&key.index) else {
            return false;
        };
        if sub.max > 0 && sub.delivered >= sub.max {
            // Already due for removal at the end of this step.
            self.trace_refusal(key, routed_account, trace::ERR_AUTO_UNSUB);
            return false;
        }
        if let Some(permissions) = &mut client.permissions {
            #[cfg(feature = "planted-defects")]
            let check_deny =
                self.config.planted_defect != Some(PlantedDefect::DenyIgnoredOnDelivery);
            #[cfg(not(feature = "planted-defects"))]
            let check_deny = true;
            if check_deny
                && !permissions.may_receive(&sub.subject, sub.queue.as_deref(), msg.subject)
            {
                self.trace_refusal(key, routed_account, trace::ERR_SUB_DENY);
                return false;
            }
            if let (Some(permission), Some(reply)) = (permissions.response_permission(), msg.reply)
            {
                // The subscriber may answer this request even where its
                // publish permissions would not let it.
                if !reply.is_empty() && !permissions.may_publish(reply) {
                    client.responses.track(reply, self.now, permission);
                }
            }
        }
        if let Some(trace) = self.trace.as_deref_mut() {
            let name = client.options.name.as_deref();
            trace.egress(key.conn, name, sub, routed_account, "");
            if trace.only {
                // Traced, not delivered (`Nats-Trace-Only`).
                return true;
            }
        }
        sub.delivered += 1;
        let reached_max = sub.max > 0 && sub.delivered == sub.max;
        let sub = &*sub;
        if client.rtt.is_none() && msg.reply.is_some_and(|r| r.len() > MIN_RTT_REPLY_LEN) {
            // A responder's round trip is worth knowing: measure it now, as
            // the reference does, once the client is past its handshake.
            let settled = client.first_pong_sent
                || self.now - client.accepted_at > MAX_NO_RTT_PING_BEFORE_FIRST_PONG;
            if settled && client.rtt_start.is_none() {
                client.rtt_start = Some(self.now);
                client.pings_out += 1;
                protocol::write_ping(&mut client.outbound.sink(chunks));
            }
        }
        let size = match (msg.headers, client.options.headers) {
            (Some(headers), true) => {
                protocol::write_hmsg(
                    &mut client.outbound.sink(chunks),
                    msg.shown_subject.unwrap_or(msg.subject),
                    &sub.sid,
                    msg.reply,
                    headers,
                    msg.payload,
                );
                headers.len() + msg.payload.len()
            }
            // A subscriber that cannot take headers gets the payload alone.
            _ => {
                protocol::write_msg(
                    &mut client.outbound.sink(chunks),
                    msg.shown_subject.unwrap_or(msg.subject),
                    &sub.sid,
                    msg.reply,
                    msg.payload,
                );
                msg.payload.len()
            }
        };
        client.stats.out_msgs += 1;
        client.stats.out_bytes += size as u64;
        self.stats.out_msgs += 1;
        self.stats.out_bytes += size as u64;
        sent.sent_msgs += 1;
        sent.sent_bytes += size as u64;
        let max_pending = self.config.max_pending;
        let over_limit = client.pending_bytes() > max_pending;
        if !over_limit {
            Connections::queue_transmit_of(client, actions, key.conn);
        }
        if reached_max {
            self.conns.expired.push(key);
        }
        if over_limit {
            // Slow consumer: this connection alone is cut off; the publisher goes on.
            let cut =
                self.conns
                    .cut_slow_consumer(key.conn, max_pending, self.logs, self.config.trace);
            debug_assert!(cut.is_some());
            self.stats.slow_consumers += 1;
            sent.slow_consumers += 1;
        }
        true
    }
}
