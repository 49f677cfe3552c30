//! Simulated clients: each speaks the real client protocol to its node over
//! one connection at a time, runs its role's workload, reads and checks what
//! the server sends, vanishes (churn) and reconnects.
//!
//! A client writes frames into its connection's output and tells the model
//! about each one (publishes are registered when written); the model applies
//! them only once the node has handed them to the server. Everything a
//! client receives goes through the model's checks before it acts on it.
//!
//! Invariants:
//! - a client is connected to its own node only (`node`, fixed by the
//!   topology) and has at most one connection at a time (`conn`);
//! - every draw a client makes comes from its own stream, so one client's
//!   workload never moves another's;
//! - a client that is gone (`client_gone`) writes and reads nothing more on
//!   that connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rnats_core::protocol;
use rnats_core::runtime::ConnId;

use crate::conn::{Conn, Dir};
use crate::js_clients::JsPublisher;
use crate::js_consumers::JsConsumerClient;
use crate::model::{Frame, Model, MsgRecord};
use crate::node::NodeId;
use crate::rng::{stream, Rng};
use crate::scenario::{ClientSpec, Role, ServerSpec};
use crate::trace::Fnv64;
use crate::wire::{show, ServerOp};
use crate::world::{Event, World, MS, SECOND};

/// A simulated client: its role and what survives its reconnects.
pub(crate) struct SimClient {
    /// Index of its spec in the scenario's `clients`.
    pub(crate) spec: usize,
    pub(crate) role: Role,
    /// The node it always connects to.
    pub(crate) node: NodeId,
    pub(crate) rng: Rng,
    pub(crate) verbose: bool,
    pub(crate) pedantic: bool,
    pub(crate) conn: Option<ConnId>,
    pub(crate) next_sid: u64,
    pub(crate) next_inbox: u64,
    pub(crate) connects: u64,
    /// A JetStream publisher's record of its stream.
    pub(crate) js: Option<Box<JsPublisher>>,
    /// A JetStream consumer client's record of its stream and consumers.
    pub(crate) consumer: Option<Box<JsConsumerClient>>,
    /// The system client: the claims updates it went through on its
    /// current connection (sent, or processed before it opened).
    pub(crate) updates_done: usize,
}

impl SimClient {
    /// Client number `index` of the run seeded with `run_seed`.
    pub(crate) fn new(
        index: usize,
        spec_index: usize,
        spec: &ClientSpec,
        node: NodeId,
        run_seed: u64,
    ) -> SimClient {
        let mut rng = Rng::stream(run_seed, stream::CLIENT_BASE + index as u64);
        let verbose = rng.chance(spec.verbose_ratio);
        let pedantic = rng.chance(spec.pedantic_ratio);
        let js = (spec.role == Role::JsPublisher)
            .then(|| Box::new(JsPublisher::new(index, spec, &mut rng)));
        let consumer = (spec.role == Role::JsConsumer)
            .then(|| Box::new(JsConsumerClient::new(index, spec, &mut rng)));
        SimClient {
            spec: spec_index,
            role: spec.role,
            node,
            rng,
            verbose,
            pedantic,
            conn: None,
            next_sid: 1,
            next_inbox: 0,
            connects: 0,
            js,
            consumer,
            updates_done: 0,
        }
    }
}

impl World {
    /// The client opens a connection to its node: CONNECT, its
    /// subscriptions and a PING are written at once; the node accepts after
    /// one latency (the handshake).
    pub(crate) fn client_connect(&mut self, index: usize) {
        if self.clients[index].conn.is_some() {
            return;
        }
        let node = self.clients[index].node;
        let client = &mut self.clients[index];
        client.connects += 1;
        if client.rng.chance(self.active_plan.refuse) {
            self.count_fault(Some(node), "connect-refused");
            let retry = self.clients[index].rng.range(50 * MS, 500 * MS);
            self.schedule(
                self.now + Duration::from_nanos(retry),
                Event::ClientConnect {
                    node,
                    client: index,
                },
            );
            return;
        }
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let client = &mut self.clients[index];
        client.conn = Some(id);
        client.updates_done = 0;
        let mut conn = Conn::new(index, Rng::stream(self.seed, stream::CONN_BASE + id.0));
        let spec = self.scenario.clients[client.spec].clone();
        if spec.websocket {
            conn.ws = Some(Box::new(crate::ws::WsLink::new()));
        }
        let identity = spec.user.as_ref().and_then(|user| {
            self.scenario
                .security
                .as_ref()
                .and_then(|security| security.identity(user))
        });
        let responds = client.role == Role::Responder;
        self.model
            .open_conn(id, node, client.verbose, responds, identity);
        let credentials = match (&self.scenario.security, &spec.user) {
            (Some(security), Some(user)) => security.credentials(user),
            _ => String::new(),
        };
        write_opening(client, index, &mut conn, &spec, &credentials);
        if let Some(js) = client.js.as_mut() {
            let opening = js.on_connect(client.connects);
            conn.write_frame(&opening, None);
        }
        if let Some(consumer) = client.consumer.as_mut() {
            let opening = consumer.on_connect(client.connects);
            conn.write_frame(&opening, None);
        }
        conn.write_frame(b"PING\r\n", Some(Frame::Ping));
        let handshake = self.active_plan.latency(&mut conn.rng);
        let previous = self.nodes[node.index()].conns.insert(id, conn);
        assert!(previous.is_none(), "{id} opened twice");
        self.trace
            .record(self.now, Some(node), "connect", id.0, index as u64);
        self.schedule(
            self.now + Duration::from_nanos(handshake),
            Event::Accept { node, conn: id },
        );
        let first_tick = self.clients[index].rng.below(50 * MS);
        self.schedule(
            self.now + Duration::from_nanos(handshake + first_tick),
            Event::ClientTick {
                node,
                client: index,
                conn: id,
            },
        );
    }

    /// The client's clock: churn or one unit of workload, then the next tick.
    pub(crate) fn client_tick(&mut self, node: NodeId, index: usize, id: ConnId) {
        if self.clients[index].conn != Some(id) {
            return;
        }
        let Some(conn) = self.nodes[node.index()].conns.get(&id) else {
            return;
        };
        if !conn.accepted || conn.client_gone {
            return;
        }
        let spec = self.scenario.clients[self.clients[index].spec].clone();
        let interval = match spec.role {
            Role::Publisher | Role::Requester | Role::JsPublisher | Role::JsConsumer => {
                (SECOND as f64 / spec.rate_hz) as u64
            }
            _ => 100 * MS,
        };
        let dt = interval as f64 / SECOND as f64;
        if !self.healed {
            if self.clients[index].rng.chance(spec.churn_per_s * dt) {
                self.churn(node, index, id);
                return;
            }
            self.workload(node, index, id, &spec, dt);
        } else if spec.role == Role::JsConsumer {
            // Consumers drain and settle in the heal phase.
            self.consumer_workload(node, index, id);
        } else if spec.role == Role::System {
            // An update lost with a connection is sent again after the heal.
            self.send_claims_updates(node, index, id);
        }
        let next = self.clients[index]
            .rng
            .range(interval / 2, interval + interval / 2);
        self.schedule(
            self.now + Duration::from_nanos(next.max(1)),
            Event::ClientTick {
                node,
                client: index,
                conn: id,
            },
        );
        self.pump_client(node, id);
    }

    fn workload(&mut self, node: NodeId, index: usize, id: ConnId, spec: &ClientSpec, dt: f64) {
        let client = &mut self.clients[index];
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        match spec.role {
            Role::Publisher => {
                let subject = Bytes::from(client.rng.pick(&spec.subjects).clone());
                let reply = client.rng.chance(spec.reply_ratio).then(|| {
                    client.next_inbox += 1;
                    Bytes::from(format!("_INBOX.p{index}.{}", client.next_inbox))
                });
                let headers = client.rng.chance(spec.headers_ratio);
                let message = Publish {
                    subject,
                    reply,
                    with_headers: headers,
                    payload_max: spec.payload_max,
                    request: false,
                };
                publish(&mut self.model, client, conn, id, message);
            }
            Role::Requester => {
                let subject = Bytes::from(client.rng.pick(&spec.subjects).clone());
                client.next_inbox += 1;
                let inbox = conn.inbox.clone().expect("requesters have an inbox");
                let reply = Bytes::from(format!("{}.{}", show(&inbox), client.next_inbox));
                let headers = client.rng.chance(spec.headers_ratio);
                let message = Publish {
                    subject,
                    reply: Some(reply),
                    with_headers: headers,
                    payload_max: spec.payload_max,
                    request: true,
                };
                publish(&mut self.model, client, conn, id, message);
            }
            Role::Subscriber => {
                if client.rng.chance(spec.resubscribe_per_s * dt) && !conn.live_sids.is_empty() {
                    let which = client.rng.below(conn.live_sids.len() as u64) as usize;
                    let sid = conn.live_sids.swap_remove(which);
                    let mut line = BytesMut::new();
                    protocol::write_unsub(&mut line, &sid, None);
                    conn.write_frame(&line, Some(Frame::Unsub { sid }));
                    let subject = client.rng.pick(&spec.subjects).clone();
                    subscribe(client, conn, subject.as_bytes(), None);
                }
            }
            Role::SlowReader => {
                if !conn.paused && client.rng.chance(dt * 2.0) {
                    conn.paused = true;
                    self.model.set_paused(id);
                    let now = self.now;
                    let what = "client-stops-reading";
                    self.trace.record(now, Some(node), what, id.0, 0);
                }
            }
            Role::Malformed => {
                if conn.malformed_end.is_none() && client.rng.chance(dt * 2.0) {
                    let frame = malformed_frame(&mut client.rng, &self.scenario.server);
                    conn.write_frame(&frame, None);
                    conn.malformed_end = Some(conn.written);
                    *self.faults.entry("malformed-frame").or_default() += 1;
                }
            }
            Role::JsPublisher => self.js_workload(node, index, id),
            Role::JsConsumer => self.consumer_workload(node, index, id),
            Role::System => self.send_claims_updates(node, index, id),
            Role::QueueMember | Role::Responder => {}
        }
    }

    /// The system client publishes every claims update that is due and
    /// that the server has not processed yet (a connection lost with one
    /// in flight sends it again; the server takes the same JWT twice).
    fn send_claims_updates(&mut self, node: NodeId, index: usize, id: ConnId) {
        let security = self.scenario.security.as_ref().expect("jwt updates");
        let now_ms = self.now.0 / MS;
        let client = &mut self.clients[index];
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        while let Some(update) = security.jwt_updates.get(client.updates_done) {
            if update.at_ms > now_ms {
                break;
            }
            let number = client.updates_done;
            client.updates_done += 1;
            if self.model.updates_applied.contains(&number) {
                continue;
            }
            let (subject, jwt) = security.update_message(number);
            let mut frame = BytesMut::new();
            let reply = format!("_INBOX.sys.{number}");
            protocol::write_pub(
                &mut frame,
                subject.as_bytes(),
                Some(reply.as_bytes()),
                jwt.as_bytes(),
            );
            let revoke = security.revoked_through(number);
            conn.write_frame(
                &frame,
                Some(Frame::ClaimsUpdate {
                    update: number,
                    account: update.account.clone(),
                    revoke,
                    defaults: update.default_permissions.clone(),
                }),
            );
            self.trace
                .record(self.now, Some(node), "claims-update", id.0, number as u64);
        }
    }

    /// The client vanishes: a graceful close, a reset or a silent half-open.
    fn churn(&mut self, node: NodeId, index: usize, id: ConnId) {
        let how = self.clients[index].rng.below(3);
        match how {
            0 => {
                self.count_fault(Some(node), "client-close");
                let now = self.now;
                let plan = &self.active_plan;
                let conn = self.nodes[node.index()]
                    .conns
                    .get_mut(&id)
                    .expect("conn exists");
                // Flush whatever it wrote, then the FIN.
                let rest = conn.client_out.split().freeze();
                if !rest.is_empty() && !conn.up.dead {
                    conn.send(plan, Dir::Up, rest, now);
                }
                conn.send_fin(plan, Dir::Up, now);
                self.schedule_arrivals(node, id);
                self.client_loses(node, id);
            }
            1 => self.reset(node, id, "client-reset"),
            _ => self.half_open(node, id, "client-vanish"),
        }
    }

    /// One read: a random prefix of what arrived is parsed, and each
    /// complete server operation is checked and answered.
    pub(crate) fn client_read(&mut self, node: NodeId, id: ConnId) {
        let Some(conn) = self.nodes[node.index()].conns.get_mut(&id) else {
            return;
        };
        conn.client_read_pending = false;
        if conn.client_gone || conn.paused {
            return;
        }
        if conn.down.recv.is_empty() {
            if conn.down.eof {
                let now = self.now;
                let what = "client-sees-eof";
                self.trace.record(now, Some(node), what, id.0, 0);
                self.client_loses(node, id);
            }
            return;
        }
        let available = conn.down.recv.len();
        let take = if conn.rng.chance(self.active_plan.split) {
            conn.rng.range(1, available as u64) as usize
        } else {
            available.min(crate::node::READ_MAX)
        };
        let chunk = conn.down.recv.split_to(take);
        match conn.ws.as_mut() {
            Some(ws) => {
                if let Err(error) = ws.client_decode(&chunk, &mut conn.client_buf) {
                    self.fail(format!("{id}: {error}"));
                    return;
                }
                let (sent, received) = (ws.nats_sent, ws.nats_received);
                if let Err(error) = crate::invariants::websocket::check_received(id, sent, received)
                {
                    self.fail(error);
                    return;
                }
            }
            None => conn.client_buf.extend_from_slice(&chunk),
        }
        let more = !conn.down.recv.is_empty() || conn.down.eof;
        loop {
            let conn = self.nodes[node.index()]
                .conns
                .get_mut(&id)
                .expect("conn exists");
            let op = match conn.parser.next_op(&mut conn.client_buf) {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(error) => {
                    self.fail(format!("{id}: the server sent malformed output: {error}"));
                    return;
                }
            };
            self.client_handles(node, id, op);
            if self.failed() {
                return;
            }
            if self.nodes[node.index()].conns[&id].client_gone {
                // The client broke its own connection (an ack lost on purpose).
                return;
            }
        }
        if more {
            self.schedule_client_read(node, id);
        }
        self.pump_server(node, id);
        self.pump_client(node, id);
    }

    fn client_handles(&mut self, node: NodeId, id: ConnId, op: ServerOp) {
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        let index = conn.client;
        let role = self.clients[index].role;
        match op {
            ServerOp::Info(_) | ServerOp::Pong => {}
            ServerOp::Ping => conn.write_frame(b"PONG\r\n", None),
            ServerOp::Ok => {
                if let Err(error) = self.model.ok_received(id) {
                    self.fail(error);
                }
            }
            ServerOp::Err(text) => {
                let text_str = String::from_utf8_lossy(&text)
                    .trim_matches('\'')
                    .to_string();
                let revocation = matches!(
                    text_str.as_str(),
                    "User Authentication Revoked" | "Authorization Violation"
                ) && self.model.revoked(id);
                if revocation
                    || (self.scenario.security.is_some()
                        && text_str.starts_with("Permissions Violation"))
                {
                    if let Err(error) = self.model.error_received(id, &text_str) {
                        self.fail(error);
                    }
                } else if role != Role::Malformed {
                    self.fail(format!(
                        "{id}: a well-behaved client got -ERR {}",
                        show(&text)
                    ));
                }
            }
            ServerOp::Msg {
                subject, payload, ..
            } if role == Role::System => {
                if let Err(error) = crate::security::check_update_reply(&subject, &payload) {
                    self.fail(format!("{id}: {error}"));
                }
            }
            ServerOp::Msg {
                subject, payload, ..
            } if role == Role::JsPublisher => {
                self.js_client_receives(node, index, &subject, &payload);
            }
            ServerOp::Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } if role == Role::JsConsumer => {
                self.consumer_client_receives(
                    node,
                    id,
                    index,
                    (subject, sid, reply, headers, payload),
                );
            }
            ServerOp::Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => {
                let pattern = conn.sids.get(&sid).cloned();
                let result = self.model.received(
                    id,
                    &sid,
                    pattern.as_ref(),
                    &subject,
                    reply.as_ref(),
                    headers.as_ref(),
                    &payload,
                );
                let msg = match result {
                    Ok(msg) => msg,
                    Err(error) => {
                        self.fail(error);
                        return;
                    }
                };
                // Responders answer until the end, heal phase included:
                // requests sent before the heal still get their replies.
                if role == Role::Responder {
                    if let (Some(reply), Some(request)) = (reply, msg) {
                        let client = &mut self.clients[index];
                        let payload_max = self.scenario.clients[client.spec].payload_max;
                        let message = Publish {
                            subject: reply,
                            reply: None,
                            with_headers: false,
                            payload_max,
                            request: false,
                        };
                        let answer = publish(&mut self.model, client, conn, id, message);
                        self.model.msgs[answer as usize].in_reply_to = Some(request);
                    }
                }
            }
        }
    }

    pub(crate) fn schedule_client_read(&mut self, node: NodeId, id: ConnId) {
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        if !conn.client_read_pending {
            conn.client_read_pending = true;
            let delay = conn.rng.below(50_000);
            self.schedule(
                self.now + Duration::from_nanos(delay),
                Event::ClientRead { node, conn: id },
            );
        }
    }

    /// Move the client's written bytes into the pipe as far as the window allows.
    pub(crate) fn pump_client(&mut self, node: NodeId, id: ConnId) {
        let Some(conn) = self.nodes[node.index()].conns.get_mut(&id) else {
            return;
        };
        if !conn.accepted || conn.client_gone || conn.up.dead {
            return;
        }
        let room = conn.up.room().min(conn.client_out.len());
        if room == 0 {
            return;
        }
        let bytes = conn.client_out.split_to(room).freeze();
        self.trace.record_bytes(&bytes);
        conn.send(&self.active_plan, Dir::Up, bytes, self.now);
        self.schedule_arrivals(node, id);
    }

    /// The client side of `id` is finished; it reconnects after a pause.
    pub(crate) fn client_loses(&mut self, node: NodeId, id: ConnId) {
        let conn = self.nodes[node.index()]
            .conns
            .get_mut(&id)
            .expect("conn exists");
        if conn.client_gone {
            return;
        }
        conn.client_gone = true;
        conn.client_out.clear();
        let index = conn.client;
        self.model.client_gone(id);
        let client = &mut self.clients[index];
        debug_assert_eq!(client.node, node, "a client only uses its own node");
        if client.conn == Some(id) {
            client.conn = None;
            let pause = client.rng.range(50 * MS, 800 * MS);
            self.schedule(
                self.now + Duration::from_nanos(pause),
                Event::ClientConnect {
                    node,
                    client: index,
                },
            );
        }
    }
}

/// What a client writes the moment it connects: CONNECT (with
/// `credentials`, `SecuritySpec::credentials`) and its role's
/// subscriptions. The caller adds the PING that ends the handshake.
fn write_opening(
    client: &mut SimClient,
    index: usize,
    conn: &mut Conn,
    spec: &ClientSpec,
    credentials: &str,
) {
    assert_eq!(conn.written, 0, "the opening comes first");
    let connect = format!(
        "CONNECT {{{credentials}\"verbose\":{},\"pedantic\":{},\"echo\":true,\"headers\":true,\"protocol\":1,\"lang\":\"sim\",\"version\":\"0\",\"name\":\"c{index}\"}}\r\n",
        client.verbose, client.pedantic
    );
    conn.write_frame(connect.as_bytes(), Some(Frame::Connect));
    match spec.role {
        Role::Subscriber | Role::SlowReader => {
            for subject in &spec.subjects {
                subscribe(client, conn, subject.as_bytes(), None);
            }
        }
        Role::QueueMember | Role::Responder => {
            let group = spec.group.clone();
            for subject in &spec.subjects {
                subscribe(
                    client,
                    conn,
                    subject.as_bytes(),
                    group.as_deref().map(str::as_bytes),
                );
            }
        }
        Role::Requester => {
            let inbox = format!("_INBOX.c{index}.{}", client.connects);
            subscribe(client, conn, format!("{inbox}.*").as_bytes(), None);
            conn.inbox = Some(Bytes::from(inbox));
        }
        Role::Malformed => {
            subscribe(client, conn, format!("bad.{index}").as_bytes(), None);
        }
        Role::System => subscribe(client, conn, b"_INBOX.sys.*", None),
        Role::Publisher | Role::JsPublisher | Role::JsConsumer => {}
    }
}

fn subscribe(client: &mut SimClient, conn: &mut Conn, subject: &[u8], queue: Option<&[u8]>) {
    let sid = Bytes::from(client.next_sid.to_string());
    client.next_sid += 1;
    let mut line = BytesMut::new();
    protocol::write_sub(&mut line, subject, queue, &sid);
    let subject = Bytes::copy_from_slice(subject);
    let previous = conn.sids.insert(sid.clone(), subject.clone());
    assert!(previous.is_none(), "sid {sid:?} reused on one connection");
    conn.live_sids.push(sid.clone());
    let frame = Frame::Sub {
        sid,
        subject,
        queue: queue.map(Bytes::copy_from_slice),
    };
    conn.write_frame(&line, Some(frame));
}

/// One message a client is about to publish.
struct Publish {
    subject: Bytes,
    reply: Option<Bytes>,
    with_headers: bool,
    /// Largest random filler after the `m<id>;` payload prefix.
    payload_max: usize,
    /// A request: the publisher waits for a reply.
    request: bool,
}

/// Register `message` with the model and write it as PUB or HPUB; returns
/// its message number (the payload starts with `m<number>;`).
fn publish(
    model: &mut Model,
    client: &mut SimClient,
    conn: &mut Conn,
    id: ConnId,
    message: Publish,
) -> u64 {
    let next = model.msgs.len();
    let mut payload = format!("m{next};").into_bytes();
    let filler = client.rng.below(message.payload_max as u64 + 1) as usize;
    payload.extend((0..filler).map(|i| b'a' + ((i as u64 + next as u64) % 26) as u8));
    let headers = message
        .with_headers
        .then(|| Bytes::from(format!("NATS/1.0\r\nX-Sim: {next}\r\n\r\n")));
    let record = MsgRecord {
        subject: message.subject.clone(),
        reply: message.reply.clone(),
        headers: headers.clone(),
        payload_hash: Fnv64::of(&payload),
        publisher: id,
        request: message.request,
        in_reply_to: None,
        replied: false,
        processed: None,
        responders: Vec::new(),
    };
    let msg = model.register(record);
    assert_eq!(msg as usize, next, "message numbers are dense");
    let mut frame = BytesMut::new();
    let (subject, reply) = (&message.subject, message.reply.as_deref());
    match &headers {
        Some(headers) => protocol::write_hpub(&mut frame, subject, reply, headers, &payload),
        None => protocol::write_pub(&mut frame, subject, reply, &payload),
    }
    conn.write_frame(&frame, Some(Frame::Pub { msg }));
    msg
}

fn malformed_frame(rng: &mut Rng, server: &ServerSpec) -> Vec<u8> {
    match rng.below(8) {
        0 => b"FOO bar\r\n".to_vec(),
        1 => b"PUB bad.x notanumber\r\n".to_vec(),
        2 => b"PUB bad.x 3\r\nabcdef\r\n".to_vec(),
        3 => format!("PUB bad.x {}\r\n", server.max_payload + 1).into_bytes(),
        4 => {
            let mut line = b"SUB ".to_vec();
            line.extend(std::iter::repeat_n(b'x', server.max_control_line + 10));
            line.extend_from_slice(b" 1\r\n");
            line
        }
        5 => b"HPUB bad.x 10 5\r\nhello\r\n".to_vec(),
        6 => b"CONNECT {bad json\r\n".to_vec(),
        _ => b"\x00\x01garbage\r\n".to_vec(),
    }
}
