//! The oracle: a model of what the server must deliver, fed with the frames
//! the server is known to have processed, and checked against what every
//! simulated client receives.
//!
//! The simulator knows exactly which client frames a `handle_read` completed
//! (it wrote them), so after each step the model applies them in the order the
//! server did. A PUB then yields, per matching subscription, an expectation on
//! the subscriber's connection:
//! - plain subscription: mandatory: the message must arrive, in processing
//!   order, unless the connection dies first;
//! - queue group: optional per member, but at most one member may get it, and
//!   exactly one must when every member present at publish time is still
//!   connected and healthy at the end.
//!
//! Because the server appends to a connection's output in processing order
//! and a stream never reorders, the messages a connection receives must be
//! its expectations in order, minus optional ones: a mandatory expectation
//! skipped is a lost message, a message with no expectation is a wrong or
//! duplicate delivery.
//!
//! Frames whose read ended with the server closing the publisher are
//! uncertain (the server may have stopped halfway): their expectations are
//! optional.
//!
//! The model knows each connection's node. A PUB is routed at once to the
//! subscribers on the publisher's own node. With routes (`routed`), the
//! model also keeps, per route end, the interest that end's node learned
//! from its peer (the RS+/RS- frames the node has processed, as the
//! simulator read them off the wire), so when a node processes a PUB the
//! model knows which peers it must forward it to: each such peer owes the
//! model the routed message (RMSG), in order, unless the route breaks
//! first. When the peer processes the RMSG, its own matching subscribers
//! get expectations exactly as for a local PUB, and queue groups named in
//! it may deliver to one member. A queue group is one token cluster-wide,
//! so at most one member anywhere gets a message; exactly one is required
//! only when no route could have carried it. At the end, every open route
//! end's learned interest must equal its peer's real interest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rnats_core::runtime::ConnId;

use crate::node::NodeId;
use crate::route_wire::RouteFrame;
use crate::security::{Identity, PermissionSpec};
use crate::trace::Fnv64;

/// What a client wrote, as the model needs it.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A frame the server answers with `+OK` when verbose (CONNECT).
    Connect,
    Sub {
        sid: Bytes,
        subject: Bytes,
        queue: Option<Bytes>,
    },
    Unsub {
        sid: Bytes,
    },
    Pub {
        msg: u64,
    },
    Ping,
    /// The system client's publish of account claims update number
    /// `update`, revoking `revoke` (user names; every earlier revocation
    /// of the account included).
    ClaimsUpdate {
        update: usize,
        account: String,
        revoke: Vec<String>,
        defaults: Option<PermissionSpec>,
    },
}

/// A published message as the publisher wrote it.
#[derive(Debug, Clone)]
pub struct MsgRecord {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub headers: Option<Bytes>,
    pub payload_hash: u64,
    pub publisher: ConnId,
    /// Set for a request: the client that waits for its reply.
    pub request: bool,
    /// For a reply: the request it answers.
    pub in_reply_to: Option<u64>,
    /// A reply to this request has reached the requester.
    pub replied: bool,
    /// `None` until processed; then whether the processing was certain.
    pub processed: Option<bool>,
    /// Responders whose subscriptions matched it when it was processed.
    pub responders: Vec<ConnId>,
}

#[derive(Debug, Clone)]
struct Expect {
    msg: u64,
    sid: Bytes,
    /// The subject it must arrive on (an import rewrites it).
    subject: Bytes,
    mandatory: bool,
    group: Option<usize>,
}

#[derive(Debug, Clone)]
struct SubModel {
    subject: Bytes,
    queue: Option<Bytes>,
}

#[derive(Debug)]
struct ConnModel {
    /// The node it is connected to.
    node: NodeId,
    /// The server still routes to it (it has not closed it).
    server_open: bool,
    /// The client side still reads it and answers.
    client_alive: bool,
    /// The client deliberately stopped reading.
    paused: bool,
    expects: VecDeque<Expect>,
    received: BTreeSet<(u64, Bytes)>,
    /// Per publisher connection, the last message received, per sid.
    last_from: BTreeMap<(Bytes, ConnId), u64>,
    verbose: bool,
    /// The client answers requests.
    responds: bool,
    ok_due: u64,
    ok_received: u64,
    /// Account and permissions, when the scenario has users.
    identity: Option<Identity>,
    /// Permission errors owed, by exact text, and not yet received:
    /// (certainly owed, perhaps owed: processed while faults blurred it).
    errors_due: BTreeMap<String, (u64, u64)>,
    /// Its user was revoked while it was open (or before its CONNECT was
    /// processed): the server must close it or refuse it, and routes
    /// nothing more to it.
    revoked: bool,
}

#[derive(Debug)]
struct GroupToken {
    msg: u64,
    members: Vec<ConnId>,
    deliveries: u32,
    /// A route could have taken the message to a member elsewhere (the
    /// publisher's node knew remote interest in the queue, or a peer got it).
    remote: bool,
}

/// What one node learned from a peer over one route end.
#[derive(Debug)]
struct RouteView {
    node: NodeId,
    peer: NodeId,
    /// The other end of the link.
    peer_conn: ConnId,
    open: bool,
    /// (account, subject, queue) -> weight (1 for plain interest).
    interest: BTreeMap<(Bytes, Bytes, Option<Bytes>), u32>,
    /// Routed messages this end must still process, in the order its peer
    /// forwarded them.
    owed: VecDeque<u64>,
}

/// What the checks counted, for the run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelStats {
    pub published: u64,
    pub delivered: u64,
    pub checks: u64,
}

#[derive(Debug, Default)]
pub struct Model {
    /// Stream imports: (exporter, subject pattern, importer, prefix).
    pub imports: Vec<(String, String, String, String)>,
    pub msgs: Vec<MsgRecord>,
    subs: BTreeMap<(ConnId, Bytes), SubModel>,
    conns: BTreeMap<ConnId, ConnModel>,
    groups: Vec<GroupToken>,
    /// (msg, published subject, queue) -> its token in `groups`.
    group_index: BTreeMap<(u64, Bytes, Bytes), usize>,
    pub stats: ModelStats,
    /// The nodes are joined by routes.
    pub routed: bool,
    routes: BTreeMap<ConnId, RouteView>,
    /// Route links that broke so far.
    route_breaks: u64,
    /// `route_breaks` when each message was processed (with routes).
    breaks_at: BTreeMap<u64, u64>,
    /// (node, msg): a routed message a node processed.
    routed_seen: BTreeSet<(NodeId, u64)>,
    /// Users revoked by the claims updates the server processed so far.
    revoked_users: BTreeSet<String>,
    /// The claims updates the server processed (numbers), at least once.
    pub updates_applied: BTreeSet<usize>,
    /// Accounts' default permissions as the latest processed update of
    /// each set them (absent: never updated, none).
    account_defaults: BTreeMap<String, Option<PermissionSpec>>,
}

impl Model {
    /// A client opened `conn` to `node`.
    pub fn open_conn(
        &mut self,
        conn: ConnId,
        node: NodeId,
        verbose: bool,
        responds: bool,
        identity: Option<Identity>,
    ) {
        let model = ConnModel {
            node,
            server_open: true,
            client_alive: true,
            paused: false,
            expects: VecDeque::new(),
            received: BTreeSet::new(),
            last_from: BTreeMap::new(),
            verbose,
            responds,
            ok_due: 0,
            ok_received: 0,
            identity,
            errors_due: BTreeMap::new(),
            revoked: false,
        };
        assert!(
            self.conns.insert(conn, model).is_none(),
            "{conn} opened twice"
        );
    }

    /// The server closed `conn` (or forgot it): it gets nothing more.
    /// A revoked connection keeps its (optional) expectations: the server
    /// flushes what it routed there before the update.
    pub fn server_closed(&mut self, conn: ConnId) {
        if let Some(model) = self.conns.get_mut(&conn) {
            model.server_open = false;
            if !model.revoked {
                model.expects.clear();
            }
        }
        self.subs.retain(|(c, _), _| *c != conn);
    }

    /// The client side stopped reading for good (closed, reset, vanished).
    pub fn client_gone(&mut self, conn: ConnId) {
        if let Some(model) = self.conns.get_mut(&conn) {
            model.client_alive = false;
        }
    }

    pub fn set_paused(&mut self, conn: ConnId) {
        if let Some(model) = self.conns.get_mut(&conn) {
            model.paused = true;
        }
    }

    pub fn register(&mut self, record: MsgRecord) -> u64 {
        self.msgs.push(record);
        self.stats.published += 1;
        (self.msgs.len() - 1) as u64
    }

    /// Whether `conn`'s user was revoked while it was open or before the
    /// server processed its CONNECT.
    pub fn revoked(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.revoked)
    }

    /// From now on `conn` gets nothing new; what was routed to it before
    /// may still arrive (ahead of the close), or not.
    fn revoke(&mut self, conn: ConnId) {
        let model = self.conns.get_mut(&conn).expect("known conn");
        model.revoked = true;
        model.server_open = false;
        for expect in &mut model.expects {
            expect.mandatory = false;
        }
        self.subs.retain(|(c, _), _| *c != conn);
    }

    /// The server processed a claims update: every open connection of a
    /// user it revokes is revoked now; the account's users without
    /// permissions of their own take its new defaults, and lose the
    /// subscriptions those no longer allow (each with the reference's
    /// `-ERR`).
    fn claims_updated(
        &mut self,
        update: usize,
        account: &str,
        revoke: &[String],
        defaults: &Option<PermissionSpec>,
    ) {
        self.updates_applied.insert(update);
        self.account_defaults
            .insert(account.to_string(), defaults.clone());
        for model in self.conns.values_mut() {
            if let Some(identity) = model.identity.as_mut().filter(|i| i.account == account) {
                identity.take_defaults(defaults.as_ref());
            }
        }
        let mut removed = Vec::new();
        for ((conn, sid), sub) in &self.subs {
            let identity = self.conns.get(conn).and_then(|c| c.identity.as_ref());
            if identity.is_some_and(|i| !i.may_subscribe(&sub.subject)) {
                removed.push((*conn, sid.clone()));
            }
        }
        for (conn, sid) in removed {
            let sub = self.subs.remove(&(conn, sid.clone())).expect("listed");
            let subject = String::from_utf8_lossy(&sub.subject);
            let sid = String::from_utf8_lossy(&sid);
            let error = match &sub.queue {
                Some(queue) => format!(
                    "Permissions Violation for Subscription to \"{subject}\" using queue \"{}\" (sid \"{sid}\")",
                    String::from_utf8_lossy(queue)
                ),
                None => format!("Permissions Violation for Subscription to \"{subject}\" (sid \"{sid}\")"),
            };
            let model = self.conns.get_mut(&conn).expect("known conn");
            model.errors_due.entry(error).or_default().0 += 1;
        }
        self.revoked_users.extend(revoke.iter().cloned());
        let revoked: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.server_open
                    && c.identity
                        .as_ref()
                        .is_some_and(|i| self.revoked_users.contains(&i.user))
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in revoked {
            self.revoke(conn);
        }
    }

    /// Apply one frame the server processed from `conn`, in order.
    pub fn apply(&mut self, conn: ConnId, frame: &Frame, certain: bool) {
        if self.revoked(conn) {
            // Closed or refused: the server acts on nothing more from it.
            if let Frame::Pub { msg } = frame {
                let record = &mut self.msgs[*msg as usize];
                assert!(record.processed.is_none(), "message {msg} processed twice");
                record.processed = Some(false);
            }
            return;
        }
        if let Frame::ClaimsUpdate {
            update,
            account,
            revoke,
            defaults,
        } = frame
        {
            // Applied at the end of the step that processed it, before any
            // other connection's frames are read.
            self.claims_updated(*update, account, revoke, defaults);
            return;
        }
        if matches!(frame, Frame::Connect) {
            let user = self.conns.get(&conn).and_then(|c| c.identity.as_ref());
            if user.is_some_and(|i| self.revoked_users.contains(&i.user)) {
                // Its JWT is revoked: the server refuses the login.
                self.revoke(conn);
                return;
            }
            let model = self.conns.get_mut(&conn).expect("known conn");
            if let Some(identity) = model.identity.as_mut() {
                if let Some(defaults) = self.account_defaults.get(&identity.account) {
                    // Logged in under its account's current claims.
                    identity.take_defaults(defaults.as_ref());
                }
            }
        }
        if let Some(error) = self.violation(conn, frame) {
            // Answered with -ERR instead of +OK; nothing else happens.
            if let Frame::Pub { msg } = frame {
                let record = &mut self.msgs[*msg as usize];
                assert!(record.processed.is_none(), "message {msg} processed twice");
                record.processed = Some(certain);
            }
            let model = self.conns.get_mut(&conn).expect("known conn");
            let (due, maybe) = model.errors_due.entry(error).or_default();
            if certain {
                *due += 1;
            } else {
                *maybe += 1;
            }
            return;
        }
        let verbose = self.conns.get(&conn).is_some_and(|c| c.verbose);
        if verbose && certain && !matches!(frame, Frame::Ping) {
            self.conns.get_mut(&conn).expect("known conn").ok_due += 1;
        }
        match frame {
            Frame::Connect | Frame::Ping | Frame::ClaimsUpdate { .. } => {}
            Frame::Sub {
                sid,
                subject,
                queue,
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.server_open) {
                    let sub = SubModel {
                        subject: subject.clone(),
                        queue: queue.clone(),
                    };
                    self.subs.entry((conn, sid.clone())).or_insert(sub);
                }
            }
            Frame::Unsub { sid } => {
                self.subs.remove(&(conn, sid.clone()));
            }
            Frame::Pub { msg } => self.route(*msg, certain),
        }
    }

    /// The exact error the server owes `conn` for `frame`, if its
    /// permissions forbid it.
    fn violation(&self, conn: ConnId, frame: &Frame) -> Option<String> {
        let identity = self.conns.get(&conn)?.identity.as_ref()?;
        match frame {
            Frame::Sub { subject, queue, .. } if !identity.may_subscribe(subject) => {
                let subject = String::from_utf8_lossy(subject);
                Some(match queue {
                    Some(queue) => format!(
                        "Permissions Violation for Subscription to \"{subject}\" using queue \"{}\"",
                        String::from_utf8_lossy(queue)
                    ),
                    None => format!("Permissions Violation for Subscription to \"{subject}\""),
                })
            }
            Frame::Pub { msg } => {
                let subject = &self.msgs[*msg as usize].subject;
                (!identity.may_publish(subject)).then(|| {
                    format!(
                        "Permissions Violation for Publish to \"{}\"",
                        String::from_utf8_lossy(subject)
                    )
                })
            }
            _ => None,
        }
    }

    /// Whether a message published on node `from` can reach a subscriber on
    /// node `to`: its own node always, another only over routes.
    pub fn reaches(&self, from: NodeId, to: NodeId) -> bool {
        self.routed || from == to
    }

    /// The account a connection's messages live in.
    fn account_name(&self, conn: ConnId) -> Bytes {
        self.conns
            .get(&conn)
            .and_then(|c| c.identity.as_ref())
            .map_or(Bytes::from_static(b"$G"), |i| {
                Bytes::from(i.account.clone())
            })
    }

    /// The subject `subscriber` sees a message published by `publisher` on
    /// `subject` under, if the publisher's node routes it there directly
    /// (the same node, and the same account or a stream import), and its
    /// permissions let it receive that.
    fn routed_subject(
        &self,
        publisher: ConnId,
        subscriber: ConnId,
        subject: &Bytes,
    ) -> Option<Bytes> {
        let node = |conn: ConnId| self.conns.get(&conn).map(|c| c.node);
        if node(publisher)? != node(subscriber)? {
            return None;
        }
        let account = |conn: ConnId| {
            self.conns
                .get(&conn)
                .and_then(|c| c.identity.as_ref())
                .map(|i| i.account.clone())
        };
        let from = account(publisher);
        let to = account(subscriber);
        let delivered = if from == to {
            subject.clone()
        } else {
            let (from, to) = (from?, to?);
            let (_, _, _, prefix) =
                self.imports
                    .iter()
                    .find(|(exporter, pattern, importer, _)| {
                        *exporter == from
                            && *importer == to
                            && subject_matches(pattern.as_bytes(), subject)
                    })?;
            let mut rewritten = prefix.as_bytes().to_vec();
            rewritten.push(b'.');
            rewritten.extend_from_slice(subject);
            Bytes::from(rewritten)
        };
        let receiver = self.conns.get(&subscriber)?.identity.as_ref();
        receiver
            .is_none_or(|identity| identity.may_receive(&delivered))
            .then_some(delivered)
    }

    fn route(&mut self, msg: u64, certain: bool) {
        let record = &mut self.msgs[msg as usize];
        assert!(record.processed.is_none(), "message {msg} processed twice");
        record.processed = Some(certain);
        let subject = record.subject.clone();
        let publisher = record.publisher;
        // A queue group is named by its queue name alone: members subscribed
        // with different subjects that both match share one group (nats-server
        // merges them per match).
        // (published subject, queue) -> members as (conn, sid, delivered subject)
        type Groups = BTreeMap<(Bytes, Bytes), Vec<(ConnId, Bytes, Bytes)>>;
        let mut groups: Groups = BTreeMap::new();
        let mut responders = Vec::new();
        let mut routed = Vec::new();
        for ((conn, sid), sub) in &self.subs {
            let Some(delivered) = self.routed_subject(publisher, *conn, &subject) else {
                continue;
            };
            if subject_matches(&sub.subject, &delivered) {
                routed.push((*conn, sid.clone(), delivered));
            }
        }
        for (conn, sid, delivered) in routed {
            let sub = &self.subs[&(conn, sid.clone())];
            let conn = &conn;
            let model = self.conns.get_mut(conn).expect("sub on a known conn");
            if !model.server_open {
                continue;
            }
            if model.responds {
                responders.push(*conn);
            }
            match &sub.queue {
                None => model.expects.push_back(Expect {
                    msg,
                    sid: sid.clone(),
                    subject: delivered,
                    mandatory: certain,
                    group: None,
                }),
                // Keyed by the published subject: an importer's member joins
                // the exporter's group of its name (nats-server files it
                // there as a shadow subscription), and no other account
                // can receive this message.
                Some(queue) => groups
                    .entry((subject.clone(), queue.clone()))
                    .or_default()
                    .push((*conn, sid.clone(), delivered)),
            }
        }
        for ((published, group_queue), members) in groups {
            let token = self.groups.len();
            self.groups.push(GroupToken {
                msg,
                members: members.iter().map(|(c, _, _)| *c).collect(),
                deliveries: 0,
                remote: false,
            });
            self.group_index
                .insert((msg, published, group_queue.clone()), token);
            for (conn, sid, delivered) in members {
                let model = self.conns.get_mut(&conn).expect("known conn");
                model.expects.push_back(Expect {
                    msg,
                    sid,
                    subject: delivered,
                    mandatory: false,
                    group: Some(token),
                });
            }
        }
        self.msgs[msg as usize].responders = responders;
        if self.routed {
            self.forward(msg, publisher, &subject);
        }
    }

    /// With routes: the peers the publisher's node must forward `msg` to
    /// (those whose plain interest it has learned) owe the model its RMSG;
    /// a queue it knows remote interest in may go elsewhere.
    fn forward(&mut self, msg: u64, publisher: ConnId, subject: &Bytes) {
        self.breaks_at.insert(msg, self.route_breaks);
        let Some(node) = self.conns.get(&publisher).map(|c| c.node) else {
            return;
        };
        let account = self.account_name(publisher);
        let mut owed_by = Vec::new();
        let mut remote_queues = BTreeSet::new();
        for view in self.routes.values().filter(|v| v.open && v.node == node) {
            for (acc, pattern, queue) in view.interest.keys() {
                if *acc != account || !subject_matches(pattern, subject) {
                    continue;
                }
                match queue {
                    None => owed_by.push(view.peer_conn),
                    Some(queue) => {
                        remote_queues.insert(queue.clone());
                    }
                }
            }
        }
        owed_by.dedup();
        for conn in owed_by {
            if let Some(peer) = self.routes.get_mut(&conn).filter(|v| v.open) {
                peer.owed.push_back(msg);
            }
        }
        for ((m, _, queue), token) in self.group_index.range((msg, Bytes::new(), Bytes::new())..) {
            if *m != msg {
                break;
            }
            if remote_queues.contains(queue) {
                self.groups[*token].remote = true;
            }
        }
    }

    /// A route link opened: end `a` on node `a_node`, end `b` on `b_node`.
    pub fn route_opened(&mut self, a: ConnId, a_node: NodeId, b: ConnId, b_node: NodeId) {
        assert_ne!(a_node, b_node, "a route joins two nodes");
        for (conn, node, peer_conn, peer) in [(a, a_node, b, b_node), (b, b_node, a, a_node)] {
            let view = RouteView {
                node,
                peer,
                peer_conn,
                open: true,
                interest: BTreeMap::new(),
                owed: VecDeque::new(),
            };
            assert!(
                self.routes.insert(conn, view).is_none(),
                "{conn} opened twice"
            );
        }
    }

    /// Route end `conn` is closed (its node forgot what it learned there);
    /// `first`: the first end of its link to close, so what the link still
    /// carried is owed no more.
    pub fn route_end_closed(&mut self, conn: ConnId, first: bool) {
        let Some(view) = self.routes.get_mut(&conn) else {
            return;
        };
        view.open = false;
        view.interest.clear();
        view.owed.clear();
        let peer = view.peer_conn;
        if first {
            self.route_breaks += 1;
            if let Some(peer) = self.routes.get_mut(&peer) {
                peer.owed.clear();
            }
        }
    }

    /// The node at route end `conn` processed `frame` from its peer.
    pub(crate) fn route_frame(
        &mut self,
        conn: ConnId,
        frame: &RouteFrame,
        certain: bool,
    ) -> Result<(), String> {
        let view = self
            .routes
            .get_mut(&conn)
            .ok_or_else(|| format!("{conn}: a route frame on an unknown route end"))?;
        if !view.open {
            return Ok(());
        }
        self.stats.checks += 1;
        match frame {
            RouteFrame::SubPlus {
                account,
                subject,
                queue,
            } => {
                let (queue, weight) = match queue {
                    Some((queue, weight)) => (Some(queue.clone()), *weight),
                    None => (None, 1),
                };
                view.interest
                    .insert((account.clone(), subject.clone(), queue), weight);
            }
            RouteFrame::SubMinus {
                account,
                subject,
                queue,
            } => {
                view.interest
                    .remove(&(account.clone(), subject.clone(), queue.clone()));
            }
            RouteFrame::Msg {
                account,
                subject,
                reply,
                queues,
                headers,
                payload,
            } => {
                let routed = Routed {
                    account,
                    subject,
                    reply: reply.as_ref(),
                    queues,
                    headers: headers.as_ref(),
                    payload,
                };
                self.routed_msg(conn, routed, certain)?;
            }
            RouteFrame::Err | RouteFrame::Pinned(_) | RouteFrame::Info | RouteFrame::Other => {}
        }
        Ok(())
    }

    /// The node at route end `conn` processed a routed message: it must be
    /// one a client published, intact, not routed to this node before, and
    /// not behind one this end was owed first; the node's own subscribers
    /// then get it as from a local PUB.
    fn routed_msg(
        &mut self,
        conn: ConnId,
        routed: Routed<'_>,
        certain: bool,
    ) -> Result<(), String> {
        let view = &self.routes[&conn];
        let (node, peer) = (view.node, view.peer);
        let msg = message_id(routed.payload)
            .filter(|id| (*id as usize) < self.msgs.len())
            .ok_or_else(|| {
                format!("{conn} on {node}: routed payload names no published message")
            })?;
        let record = &self.msgs[msg as usize];
        if record.subject != routed.subject
            || record.reply.as_ref() != routed.reply
            || record.payload_hash != Fnv64::of(routed.payload)
            || (record.headers.is_some() && record.headers.as_ref() != routed.headers)
        {
            return Err(format!(
                "{conn} on {node}: message {msg} from {peer} arrived altered over the route"
            ));
        }
        if record.processed.is_none() {
            return Err(format!(
                "{conn} on {node}: message {msg} routed before its PUB was processed"
            ));
        }
        if !self.routed_seen.insert((node, msg)) {
            return Err(format!(
                "message {msg} routed to {node} twice (the second time from {peer} on {conn})"
            ));
        }
        let view = self.routes.get_mut(&conn).expect("view exists");
        if let Some(position) = view.owed.iter().position(|m| *m == msg) {
            if position > 0 {
                return Err(format!(
                    "message {} owed to {node} over {conn} was lost: message {msg} came first",
                    view.owed[0]
                ));
            }
            view.owed.pop_front();
        }
        let mut responders = Vec::new();
        let mut expects = Vec::new();
        for ((sub_conn, sid), sub) in &self.subs {
            let Some(model) = self.conns.get(sub_conn) else {
                continue;
            };
            if model.node != node || !model.server_open {
                continue;
            }
            if self.account_name(*sub_conn) != *routed.account
                || !subject_matches(&sub.subject, routed.subject)
            {
                continue;
            }
            match &sub.queue {
                None => expects.push((*sub_conn, sid.clone(), None)),
                Some(queue) if routed.queues.contains(queue) => {
                    expects.push((*sub_conn, sid.clone(), Some(queue.clone())))
                }
                Some(_) => continue,
            }
            if model.responds {
                responders.push(*sub_conn);
            }
        }
        for (sub_conn, sid, queue) in expects {
            let group = queue.map(|queue| {
                let key = (msg, routed.subject.clone(), queue);
                let token = *self.group_index.entry(key).or_insert_with(|| {
                    self.groups.push(GroupToken {
                        msg,
                        members: Vec::new(),
                        deliveries: 0,
                        remote: true,
                    });
                    self.groups.len() - 1
                });
                let group = &mut self.groups[token];
                group.remote = true;
                group.members.push(sub_conn);
                token
            });
            let model = self.conns.get_mut(&sub_conn).expect("known conn");
            model.expects.push_back(Expect {
                msg,
                sid,
                subject: routed.subject.clone(),
                mandatory: certain && group.is_none(),
                group,
            });
        }
        self.msgs[msg as usize].responders.extend(responders);
        Ok(())
    }

    /// At the end: what each node learned from each peer, over all the open
    /// route ends between them (a pool, pinned routes), is exactly the
    /// peer's interest in the accounts clients use (RS+ and RS- were neither
    /// lost nor stale, queue weights count the peer's members), no interest
    /// was learned over two routes at once, and no routed message is still
    /// owed over a route that stayed open.
    pub fn check_route_interest(&mut self) -> Result<(), String> {
        type Key = (Bytes, Bytes, Option<Bytes>);
        let accounts: BTreeSet<Bytes> = self.conns.keys().map(|c| self.account_name(*c)).collect();
        let mut learned: BTreeMap<(NodeId, NodeId), BTreeMap<Key, u32>> = BTreeMap::new();
        for (conn, view) in self.routes.iter().filter(|(_, v)| v.open) {
            if let Some(msg) = view.owed.front() {
                return Err(format!(
                    "message {msg} owed to {} over {conn} never arrived though the route stayed open",
                    view.node
                ));
            }
            let pair = learned.entry((view.node, view.peer)).or_default();
            for (key, weight) in view
                .interest
                .iter()
                .filter(|(k, _)| accounts.contains(&k.0))
            {
                if pair.insert(key.clone(), *weight).is_some() {
                    return Err(format!(
                        "{} learned {key:?} from {} over two routes at once",
                        view.node, view.peer
                    ));
                }
            }
        }
        let nodes: BTreeSet<NodeId> = self
            .routes
            .values()
            .filter(|v| v.open)
            .map(|v| v.node)
            .collect();
        for &node in &nodes {
            for &peer in nodes.iter().filter(|p| **p != node) {
                let mut real: BTreeMap<Key, u32> = BTreeMap::new();
                for ((sub_conn, _), sub) in &self.subs {
                    let on_peer = self
                        .conns
                        .get(sub_conn)
                        .is_some_and(|c| c.node == peer && c.server_open);
                    if on_peer {
                        let key = (
                            self.account_name(*sub_conn),
                            sub.subject.clone(),
                            sub.queue.clone(),
                        );
                        let weight = real.entry(key).or_default();
                        *weight = if sub.queue.is_some() { *weight + 1 } else { 1 };
                    }
                }
                let known = learned.remove(&(node, peer)).unwrap_or_default();
                self.stats.checks += 1;
                if known != real {
                    let missing: Vec<_> = real
                        .iter()
                        .filter(|(k, w)| known.get(*k) != Some(w))
                        .collect();
                    let stale: Vec<_> = known
                        .iter()
                        .filter(|(k, w)| real.get(*k) != Some(w))
                        .collect();
                    return Err(format!(
                        "after the heal {node} learned an interest of {peer} that is not the real one: missing or wrong {missing:?}, stale {stale:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `conn` received a message. `sub_pattern` is the subject its sid was
    /// subscribed with (None: the client never had that sid).
    #[allow(clippy::too_many_arguments)]
    pub fn received(
        &mut self,
        conn: ConnId,
        sid: &Bytes,
        sub_pattern: Option<&Bytes>,
        subject: &Bytes,
        reply: Option<&Bytes>,
        headers: Option<&Bytes>,
        payload: &Bytes,
    ) -> Result<Option<u64>, String> {
        self.stats.delivered += 1;
        self.stats.checks += 6;

        let pattern = sub_pattern.ok_or_else(|| {
            format!("{conn}: delivery on sid {sid:?} the client never subscribed")
        })?;
        if !subject_matches(pattern, subject) {
            return Err(format!(
                "{conn}: message on {subject:?} delivered to sid {sid:?} subscribed to {pattern:?}"
            ));
        }
        let msg = message_id(payload)
            .filter(|id| (*id as usize) < self.msgs.len())
            .ok_or_else(|| format!("{conn}: payload names no published message: {payload:?}"))?;
        let record = &self.msgs[msg as usize];
        if record.reply.as_ref() != reply {
            return Err(format!(
                "{conn}: message {msg} published with reply {:?} arrived with reply {reply:?}",
                record.reply
            ));
        }
        if record.payload_hash != Fnv64::of(payload) {
            return Err(format!("{conn}: message {msg} payload corrupted"));
        }
        if record.headers.is_some() && record.headers.as_ref() != headers {
            return Err(format!(
                "{conn}: message {msg} headers {:?} arrived as {headers:?}",
                record.headers
            ));
        }
        let publisher = record.publisher;
        if record.processed.is_none() {
            return Err(format!(
                "{conn}: message {msg} delivered before the server processed its PUB"
            ));
        }
        let node = |c: ConnId| self.conns.get(&c).map(|m| m.node);
        let (from, to) = (node(publisher), node(conn).expect("known conn"));
        if let Some(from) = from.filter(|from| !self.reaches(*from, to)) {
            return Err(format!(
                "{conn} on {to}: message {msg} published on {from} crossed to a node it cannot reach"
            ));
        }
        let model = self.conns.get_mut(&conn).expect("known conn");
        if !model.received.insert((msg, sid.clone())) {
            return Err(format!(
                "{conn}: message {msg} delivered twice to sid {sid:?}"
            ));
        }
        if let Some(last) = model.last_from.insert((sid.clone(), publisher), msg) {
            if last > msg {
                return Err(format!(
                    "{conn}: sid {sid:?} got message {msg} after {last}, both from {publisher}"
                ));
            }
        }
        let Some(index) = model
            .expects
            .iter()
            .position(|e| e.msg == msg && e.sid == sid)
        else {
            return Err(format!(
                "{conn}: message {msg} on {subject:?} delivered to sid {sid:?}, which the model says was not subscribed when it was published"
            ));
        };
        let mut kept = VecDeque::new();
        for _ in 0..index {
            let skipped = model.expects.pop_front().expect("index in range");
            if skipped.msg == msg {
                kept.push_back(skipped);
            } else if skipped.mandatory {
                return Err(format!(
                    "{conn}: message {} (sid {:?}) was lost: message {msg} processed after it arrived first",
                    skipped.msg, skipped.sid
                ));
            }
        }
        let found = model.expects.pop_front().expect("index in range");
        if found.subject != subject {
            return Err(format!(
                "{conn}: message {msg} published on {:?} arrived on {subject:?}, expected {:?}",
                self.msgs[msg as usize].subject, found.subject
            ));
        }
        while let Some(entry) = kept.pop_back() {
            model.expects.push_front(entry);
        }
        if let Some(token) = found.group {
            let group = &mut self.groups[token];
            group.deliveries += 1;
            if group.deliveries > 1 {
                return Err(format!(
                    "message {msg} delivered to {} members of one queue group (the latest {conn} sid {:?})",
                    group.deliveries, found.sid
                ));
            }
        }
        let answers = self.msgs[msg as usize].in_reply_to;
        if let Some(request) = answers {
            self.msgs[request as usize].replied = true;
        }
        Ok(Some(msg))
    }

    /// `conn` received `-ERR 'text'`: it must be a permission error the
    /// model owes it, or the close or refusal of a revoked user.
    pub fn error_received(&mut self, conn: ConnId, text: &str) -> Result<(), String> {
        let model = self.conns.get_mut(&conn).expect("known conn");
        self.stats.checks += 1;
        if model.revoked
            && matches!(
                text,
                "User Authentication Revoked" | "Authorization Violation"
            )
        {
            return Ok(());
        }
        match model.errors_due.get_mut(text) {
            Some((due, _)) if *due > 0 => {
                *due -= 1;
                Ok(())
            }
            Some((_, maybe)) if *maybe > 0 => {
                *maybe -= 1;
                Ok(())
            }
            _ => Err(format!("{conn}: unexpected -ERR '{text}'")),
        }
    }

    pub fn ok_received(&mut self, conn: ConnId) -> Result<(), String> {
        let model = self.conns.get_mut(&conn).expect("known conn");
        model.ok_received += 1;
        self.stats.checks += 1;
        if !model.verbose || model.ok_received > model.ok_due {
            return Err(format!(
                "{conn}: +OK number {} but only {} ops owed one (verbose: {})",
                model.ok_received, model.ok_due, model.verbose
            ));
        }
        Ok(())
    }

    fn healthy(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.server_open && c.client_alive && !c.paused)
    }

    /// The liveness checks, once faults have healed and the system settled.
    pub fn check_converged(&mut self) -> Result<(), String> {
        for (conn, model) in &self.conns {
            if !(model.server_open && model.client_alive && !model.paused) {
                continue;
            }
            self.stats.checks += 1;
            if let Some(lost) = model.expects.iter().find(|e| e.mandatory) {
                return Err(format!(
                    "{conn}: message {} (sid {:?}) never arrived after the faults healed",
                    lost.msg, lost.sid
                ));
            }
            if let Some((text, _)) = model.errors_due.iter().find(|(_, (due, _))| *due > 0) {
                return Err(format!("{conn}: never got the -ERR '{text}' it was owed"));
            }
            if model.verbose && model.ok_received != model.ok_due {
                return Err(format!(
                    "{conn}: {} +OK received for {} verbose ops",
                    model.ok_received, model.ok_due
                ));
            }
        }
        for group in &self.groups {
            self.stats.checks += 1;
            let certain = self.msgs[group.msg as usize].processed == Some(true);
            let all_healthy = group.members.iter().all(|m| self.healthy(*m));
            if certain && all_healthy && !group.remote && group.deliveries != 1 {
                let record = &self.msgs[group.msg as usize];
                return Err(format!(
                    "message {} on {:?} from {} reached {} members of a queue group whose members all stayed connected: {:?}",
                    group.msg, record.subject, record.publisher, group.deliveries, group.members
                ));
            }
        }
        for (id, record) in self.msgs.iter().enumerate() {
            if !record.request || record.processed != Some(true) || record.replied {
                continue;
            }
            if self
                .breaks_at
                .get(&(id as u64))
                .is_some_and(|at| *at != self.route_breaks)
            {
                // A route broke since: the request or its reply may have
                // been on it.
                continue;
            }
            self.stats.checks += 1;
            let requester_ok = self.healthy(record.publisher);
            let served =
                !record.responders.is_empty() && record.responders.iter().all(|r| self.healthy(*r));
            if requester_ok && served {
                return Err(format!(
                    "request {id} on {:?} from {} never got its reply though requester and responders {:?} stayed up",
                    record.subject, record.publisher, record.responders
                ));
            }
        }
        Ok(())
    }
}

/// A routed message as the receiving node read it.
struct Routed<'a> {
    account: &'a Bytes,
    subject: &'a Bytes,
    reply: Option<&'a Bytes>,
    queues: &'a [Bytes],
    headers: Option<&'a Bytes>,
    payload: &'a Bytes,
}

/// NATS subject matching: `*` matches one token, `>` one or more at the end.
pub fn subject_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut pattern_tokens = pattern.split(|b| *b == b'.');
    let mut subject_tokens = subject.split(|b| *b == b'.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(p), Some(s)) if p == b"*" || p == s => {}
            _ => return false,
        }
    }
}

/// Payloads start with `m<id>;`.
pub fn message_id(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(b"m")?;
    let end = rest.iter().position(|b| *b == b';')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_nats_rules() {
        assert!(subject_matches(b"a.*", b"a.b"));
        assert!(!subject_matches(b"a.*", b"a.b.c"));
        assert!(subject_matches(b"a.>", b"a.b.c"));
        assert!(!subject_matches(b"a.>", b"a"));
        assert!(subject_matches(b">", b"a"));
        assert!(subject_matches(b"*.b", b"a.b"));
        assert!(!subject_matches(b"a.b", b"a.c"));
    }

    fn record(subject: &'static [u8], publisher: ConnId) -> MsgRecord {
        MsgRecord {
            subject: Bytes::from_static(subject),
            reply: None,
            headers: None,
            payload_hash: Fnv64::of(b"m0;"),
            publisher,
            request: false,
            in_reply_to: None,
            replied: false,
            processed: None,
            responders: Vec::new(),
        }
    }

    #[test]
    fn without_routes_a_message_stays_on_its_publishers_node() {
        let mut model = Model::default();
        let (publisher, near, far) = (ConnId(1), ConnId(2), ConnId(3));
        model.open_conn(publisher, NodeId(0), false, false, None);
        model.open_conn(near, NodeId(0), false, false, None);
        model.open_conn(far, NodeId(1), false, false, None);
        for conn in [near, far] {
            let sub = Frame::Sub {
                sid: Bytes::from_static(b"1"),
                subject: Bytes::from_static(b"a.>"),
                queue: None,
            };
            model.apply(conn, &sub, true);
        }
        let msg = model.register(record(b"a.b", publisher));
        model.apply(publisher, &Frame::Pub { msg }, true);
        let sid = Bytes::from_static(b"1");
        let subject = Bytes::from_static(b"a.b");
        let payload = Bytes::from_static(b"m0;");
        let crossed = model.received(far, &sid, Some(&subject), &subject, None, None, &payload);
        assert!(crossed.unwrap_err().contains("cannot reach"));
        let local = model.received(near, &sid, Some(&subject), &subject, None, None, &payload);
        assert_eq!(local, Ok(Some(msg)));
        model
            .check_converged()
            .expect("the far subscriber is owed nothing");
    }

    #[test]
    fn message_ids_round_trip() {
        assert_eq!(message_id(b"m42;xyz"), Some(42));
        assert_eq!(message_id(b"x42;"), None);
    }
}
