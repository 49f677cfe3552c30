//! What a client's operations do: CONNECT, PUB/HPUB, SUB, UNSUB, PING/PONG,
//! and the keepalive PINGs the server sends on its own.
//!
//! Role: the step driver's handlers for one client's parsed operations. They
//! change that client (through [`Connections`](super::Connections)), its
//! subscriptions in the router, and hand publishes to the router. Errors a
//! client earns are [`ServerError`]s, written with `Connections::write_err`.
//!
//! Invariants:
//! - A CONNECT is applied before the next operation of the same read is
//!   judged (the CONNECT + HPUB trap).
//! - Nothing after a fatal error in a read is looked at.
//! - A client's `sids` and `subs` change together, and each live
//!   subscription is filed in exactly its account's Sublist.

use std::collections::hash_map;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand_chacha::rand_core::RngCore;

use super::accounts::{AccountId, GLOBAL};
use super::client::{LoginWait, PendingLogin};
use super::client::{SubKey, Subscription};
use super::error::ServerError;
use super::log::{self, LogLevel};
use super::trace::{self, MsgTrace, TraceHeaders, TraceMessage};
#[cfg(feature = "planted-defects")]
use super::PlantedDefect;
use super::{protocol_trace, Delivery, Server, FIRST_PING_INTERVAL};
use crate::auth::{self as auth, AuthFailure, Login, PermissionChecker};
use crate::format::go_quote;
use crate::monitor::events::EventServer;
use crate::protocol::{self, ClientOp, ConnectOptions, ParserLimits};
use crate::runtime::{CloseReason, ConnId};
use crate::subject;
use crate::time::Instant;

/// Reply and subject prefixes a client may not publish with.
const GATEWAY_REPLY_PREFIX: &[u8] = b"_GR_.";

impl Server {
    /// Run every complete operation in `buf` for `conn`.
    pub(super) fn read_ops(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        #[cfg(feature = "planted-defects")]
        let mut drop_split = self.config.planted_defect == Some(PlantedDefect::DropSplitFrame)
            && !self.conns.get(conn).expect("known").parser.at_op_start();
        #[cfg(feature = "planted-defects")]
        if self.config.planted_defect == Some(PlantedDefect::SlowSubscriberBlocksPublisher)
            && self
                .conns
                .values()
                .any(|c| c.pending_bytes() > self.config.max_pending / 2)
        {
            return;
        }
        while let Some(client) = self.conns.get_mut(conn) {
            if client.is_closing() {
                // Nothing after a fatal error is looked at, as in the reference.
                buf.clear();
                break;
            }
            if client.pending_login.is_some() {
                // Nothing is parsed until the login is decided.
                self.park(conn, buf);
                break;
            }
            if self.config.auth.is_required()
                && !client.connect_received
                && client.parser.at_op_start()
                && buf.first().is_some_and(|b| !matches!(b, b'C' | b'c'))
            {
                // Before CONNECT, an auth-required server takes nothing but CONNECT.
                self.close_with_error(
                    conn,
                    &ServerError::AuthorizationViolation,
                    CloseReason::AuthenticationViolation,
                );
                buf.clear();
                break;
            }
            match client.parser.next_op(buf) {
                Ok(None) => break,
                Ok(Some(op)) => {
                    #[cfg(feature = "planted-defects")]
                    if std::mem::take(&mut drop_split)
                        && matches!(op, ClientOp::Pub { .. } | ClientOp::HPub { .. })
                    {
                        continue;
                    }
                    self.process_op(now, conn, op);
                    // Replies to a peer that does not read (a PING flood, say)
                    // are bounded like deliveries: past max_pending it is cut off.
                    self.enforce_pending_limit(conn);
                }
                Err(error) => {
                    // Every parse error closes the connection; some earn an
                    // -ERR first.
                    match ServerError::from_parse(&error) {
                        Some(wire) => self.close_with_error(conn, &wire, error.close_reason()),
                        None => self.close(conn, error.close_reason()),
                    }
                    buf.clear();
                    break;
                }
            }
        }
    }

    /// Keep what `conn` sent while its login is pending. A client that
    /// sends more than a frame or two before it knows whether it is logged
    /// in is not waiting for the answer: it is closed, so a parked
    /// connection holds a bounded amount.
    fn park(&mut self, conn: ConnId, buf: &mut BytesMut) {
        let bound = 2 * (self.config.max_control_line + self.config.max_payload);
        let client = self.conns.client(conn);
        client.parked.extend_from_slice(buf);
        buf.clear();
        if client.parked.len() > bound {
            client.parked.clear();
            self.conns.log(
                &mut self.logs,
                LogLevel::Error,
                conn,
                format!("Client sent over {bound} bytes before its login was decided"),
            );
            self.close(conn, CloseReason::ProtocolViolation);
        }
    }

    /// Parse what `conn` sent while its login was pending, then `buf`. A
    /// trailing partial frame is handed back in `buf`.
    pub(super) fn read_parked(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        let client = self.conns.client(conn);
        let mut pending = std::mem::take(&mut client.parked);
        pending.extend_from_slice(buf);
        buf.clear();
        self.read_ops(now, conn, &mut pending);
        match self.conns.get_mut(conn) {
            // Parked again (a second CONNECT with a new password): keep it there.
            Some(client) if client.pending_login.is_some() => {
                client.parked.extend_from_slice(&pending);
            }
            _ => buf.extend_from_slice(&pending),
        }
    }

    fn process_op(&mut self, now: Instant, conn: ConnId, op: ClientOp) {
        if self.config.trace {
            for line in protocol_trace::inbound(&op, self.config.max_traced_msg_len) {
                self.conns.log(&mut self.logs, LogLevel::Trace, conn, line);
            }
        }
        let client = self.conns.client(conn);
        if matches!(
            op,
            ClientOp::Pub { .. }
                | ClientOp::HPub { .. }
                | ClientOp::Sub { .. }
                | ClientOp::Unsub { .. }
                | ClientOp::Ping
        ) {
            // Activity the reference counts as proof of life (CONNECT and PONG are not).
            client.last_in = Some(now);
        }
        match op {
            ClientOp::Connect(json) => self.process_connect(now, conn, &json),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.process_pub(now, conn, &subject, reply.as_deref(), None, &payload),
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => {
                // The parser refuses HPUB until CONNECT enabled headers.
                debug_assert!(client.options.headers);
                // A zero-length header block is delivered as a plain message.
                let headers = (!headers.is_empty()).then_some(&headers[..]);
                #[cfg(feature = "planted-defects")]
                let reply = reply
                    .filter(|_| self.config.planted_defect != Some(PlantedDefect::HpubLosesReply));
                self.process_pub(now, conn, &subject, reply.as_deref(), headers, &payload)
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.process_sub(conn, subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.process_unsub(conn, &sid, max),
            ClientOp::Ping => self.process_ping(conn),
            ClientOp::Pong => {
                client.pings_out = 0;
                if let Some(start) = client.rtt_start.take() {
                    client.rtt = Some((now - start).max(Duration::from_nanos(1)));
                }
            }
            ClientOp::StrayHMsg => {
                // The reference takes a client's empty HMSG as a 0-byte message to nowhere.
                client.stats.in_msgs += 1;
                self.stats.in_msgs += 1;
                if client.options.verbose {
                    protocol::write_ok(&mut self.conns.sink(conn));
                    self.conns.queue_transmit(conn);
                }
            }
        }
    }

    fn process_ping(&mut self, conn: ConnId) {
        protocol::write_pong(&mut self.conns.sink(conn));
        let client = self.conns.client(conn);
        client.first_pong_sent |= client.connect_received;
        if client.connect_received && client.options.protocol >= 1 && !client.connect_info_sent {
            // nats-server follows the first PONG of a protocol-1 client
            // with an INFO confirming the connection's account.
            client.connect_info_sent = true;
            let peer = client.peer;
            let listener = client.listener;
            let account = client.account;
            let mut info = self.info_for(conn, &peer, listener);
            info.connect_info = true;
            info.remote_account = self.router.accounts.list[account].name.clone();
            info.acc_is_sys = self.router.accounts.system == Some(account);
            protocol::write_info(&mut self.conns.sink(conn), &info);
        }
        self.conns.queue_transmit(conn);
    }

    fn process_connect(&mut self, now: Instant, conn: ConnId, json: &[u8]) {
        let client = self.conns.client(conn);
        // A CONNECT is applied over the current options (the reference's
        // defaults, or an earlier CONNECT), field by field.
        let mut options = client.options.clone();
        if options.apply_json(json).is_err() {
            // The reference drops the connection without an -ERR on bad JSON.
            self.close(conn, CloseReason::ProtocolViolation);
            return;
        }
        self.log_in(now, conn, options);
    }

    /// Authenticate a CONNECT's options and, if they pass, bind the client.
    /// A bcrypt password not checked before is left to the runtime
    /// (`Action::CheckPassword`); the client waits, parked, until
    /// [`Server::handle_password_checked`] brings the answer.
    pub(super) fn log_in(&mut self, now: Instant, conn: ConnId, options: ConnectOptions) {
        if options.account.is_some() || options.new_account {
            self.auth_violation(conn, &options);
            return;
        }
        let mut options = options;
        if let Some(recheck) = self.conns.client(conn).callout_recheck.take() {
            // A new CONNECT is judged afresh; a reload's question is moot.
            self.forget_callout(&recheck.inbox);
        }
        let client = self.conns.client(conn);
        if let Some(cookies) = &client.cookies {
            cookies.fill(&mut options);
        }
        let cert_names = self
            .config
            .tls
            .map
            .then(|| client.cert_names.as_deref().unwrap_or(&[]));
        let authenticator = match (client.listener, &self.ws_authenticator) {
            (crate::runtime::ListenerKind::WebSocket, Some(authenticator)) => authenticator,
            _ => &self.authenticator,
        };
        let wall = self.monitor.wall.wall_at(now);
        let login = authenticator.authenticate_deferred(
            &options,
            client.nonce.as_bytes(),
            cert_names,
            wall,
        );
        if let Some(callout) = self.delegated_to_callout(&options, &login) {
            self.start_callout(now, conn, options, &callout);
            return;
        }
        let identity = match login {
            Ok(Login::Accepted(identity)) => identity,
            Ok(Login::NeedsPasswordCheck { check, .. }) => {
                self.conns.client(conn).pending_login = Some(Box::new(PendingLogin {
                    options,
                    wait: LoginWait::Password(check),
                }));
                self.conns.queue_password_check(conn);
                return;
            }
            Err(failure) => {
                // An account not held, or held expired: the resolver may
                // fetch it (again).
                if matches!(
                    failure,
                    auth::AuthFailure::AccountUnknown | auth::AuthFailure::AccountExpired
                ) {
                    if let Some(fetch) = self.account_to_fetch(&options, now) {
                        self.wait_for_account(now, conn, options, fetch);
                        return;
                    }
                }
                // The reference logs no more than `authentication error`.
                // Like it, the client keeps what its CONNECT said (events
                // and the closed-connection ring name the user it claimed).
                self.conns.client(conn).options = options.clone();
                self.auth_violation(conn, &options);
                return;
            }
        };
        self.admit(now, conn, options, identity);
    }

    /// Bind `conn` as `identity` (authenticated by the configuration, or
    /// by the auth callout service), once what only the server can check
    /// of the connection passes.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: ConnectOptions,
        mut identity: auth::Identity,
    ) {
        let Some(account) = self.admissible(conn, &options, &mut identity) else {
            return;
        };
        let mut jwt_deadline = (None, None);
        if let Some(restrictions) = &identity.restrictions {
            if let Some(max) = restrictions.account_max_connections {
                let connected = self
                    .conns
                    .values()
                    .filter(|other| {
                        other.account == account && other.connect_received && !other.is_closing()
                    })
                    .count();
                if connected >= max {
                    self.close_with_error(
                        conn,
                        &ServerError::MaxAccountConnectionsExceeded,
                        CloseReason::MaxAccountConnectionsExceeded,
                    );
                    return;
                }
            }
            jwt_deadline = self.jwt_deadlines(now, restrictions);
            self.apply_jwt_limits(conn, restrictions);
        }
        if !options.protocol_supported() {
            self.close_with_error(
                conn,
                &ServerError::InvalidClientProtocol,
                CloseReason::ProtocolViolation,
            );
            return;
        }
        if options.no_responders && !options.headers {
            self.close_with_error(
                conn,
                &ServerError::NoRespondersRequiresHeaders,
                CloseReason::ProtocolViolation,
            );
            return;
        }
        let listener = self.conns.client(conn).listener;
        let first_ping = FIRST_PING_INTERVAL.min(self.config.ping_interval_for(listener));
        let jitter_ceiling = u64::try_from(first_ping.as_nanos() / 5)
            .unwrap_or(u64::MAX)
            .max(1);
        let jitter = Duration::from_nanos(self.rng.next_u64() % jitter_ceiling);
        self.bind(conn, account, identity.user, identity.permissions.as_ref());
        let account_name = &self.router.accounts.list[account].name;
        let client = self.conns.client(conn);
        client.parser.set_headers_enabled(options.headers);
        let verbose = options.verbose;
        let already_connected = client.connect_received;
        if !already_connected {
            client.log_label = log::client_label(&options, account_name);
        }
        client.options = options;
        client.connect_received = true;
        client.auth_deadline = None;
        (client.jwt_deadline, client.account_deadline) = jwt_deadline;
        client.ping_deadline = now + first_ping + jitter;
        if verbose {
            protocol::write_ok(&mut self.conns.sink(conn));
            self.conns.queue_transmit(conn);
        }
        self.refile_timer(conn);
        if !already_connected {
            self.system.client_connected(conn);
        }
    }

    fn process_pub(
        &mut self,
        now: Instant,
        conn: ConnId,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        let client = self.conns.client(conn);
        let size = headers.map_or(0, <[u8]>::len) + payload.len();
        client.stats.in_msgs += 1;
        client.stats.in_bytes += size as u64;
        self.stats.in_msgs += 1;
        self.stats.in_bytes += size as u64;
        let account = client.account;
        let received = &mut self.router.accounts.list[account].stats;
        received.received_msgs += 1;
        received.received_bytes += size as u64;
        if subject.starts_with(GATEWAY_REPLY_PREFIX) {
            // Checked before mappings and permissions, as the reference does.
            self.publish_violation(conn, subject);
            return;
        }
        // Account mappings rewrite the subject before anything looks at it.
        let published = subject;
        let mut mapped = std::mem::take(&mut self.mapped_subject);
        let subject = if self
            .router
            .map_subject(&mut self.rng, account, subject, &mut mapped)
        {
            &mapped[..]
        } else {
            subject
        };
        self.publish_mapped(
            now, conn, account, published, subject, reply, headers, payload,
        );
        self.mapped_subject = mapped;
    }

    /// The rest of a publish, once account mappings gave its subject.
    #[allow(clippy::too_many_arguments)]
    fn publish_mapped(
        &mut self,
        now: Instant,
        conn: ConnId,
        account: AccountId,
        published: &[u8],
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        let client = self.conns.client(conn);
        #[cfg(feature = "planted-defects")]
        let skip_check = headers.is_some()
            && self.config.planted_defect == Some(PlantedDefect::HpubSkipsPublishPermissions);
        #[cfg(not(feature = "planted-defects"))]
        let skip_check = false;
        if let Some(permissions) = client.permissions.as_mut().filter(|_| !skip_check) {
            if !permissions.may_publish(subject) {
                let answered = permissions
                    .response_permission()
                    .is_some_and(|permission| client.responses.allow(subject, now, permission));
                if !answered {
                    self.publish_violation(conn, subject);
                    return;
                }
            }
        }
        let system = self.router.accounts.system == Some(account);
        if let Some(violation) = reserved_subject_violation(subject, reply, system) {
            self.conns.write_err(conn, &violation);
            return;
        }
        if let Some(headers) = headers {
            if let Some(wanted) = trace::TraceHeaders::find(headers) {
                let size = headers.len() + payload.len();
                if !self.start_trace(now, conn, wanted, published, subject, headers, size) {
                    return;
                }
            }
        }
        let options = &self.conns.client(conn).options;
        let (pedantic, verbose, echo, no_responders) = (
            options.pedantic,
            options.verbose,
            options.echo,
            options.no_responders,
        );
        if pedantic && !subject::is_valid_literal_subject(subject) {
            // Reported, yet still delivered: the reference does both.
            self.conns
                .write_err(conn, &ServerError::InvalidPublishSubject);
        }
        if verbose {
            protocol::write_ok(&mut self.conns.sink(conn));
            self.conns.queue_transmit(conn);
        }
        let delivery = Delivery {
            publisher: conn,
            subject,
            reply,
            headers,
            payload,
            shown_subject: None,
        };
        let delivered = self.route(now, account, &delivery, echo);
        if let Some(trace) = self.trace.take() {
            self.publish_trace(now, account, &trace);
        }
        if !delivered && no_responders {
            if let Some(reply) = reply.filter(|r| !r.is_empty()) {
                self.send_no_responders(conn, subject, reply);
            }
        }
    }

    pub(super) fn publish_violation(&mut self, conn: ConnId, subject: &[u8]) {
        self.conns.write_err(
            conn,
            &ServerError::PublishViolation {
                subject: subject.to_vec(),
            },
        );
        let subject = go_quote(subject);
        self.conns.log(
            &mut self.logs,
            LogLevel::Error,
            conn,
            format!("Publish Violation - Subject {subject}"),
        );
    }

    /// The reference answers a request nobody can serve with a 503 status
    /// message, sent only to the requester's own subscription on the reply subject.
    fn send_no_responders(&mut self, conn: ConnId, subject: &[u8], reply: &[u8]) {
        let account = self.conns.client(conn).account;
        let Some(key) = self.router.own_reply_subscription(account, conn, reply) else {
            return;
        };
        let Some((client, chunks)) = self.conns.client_and_chunks(conn) else {
            return;
        };
        let Some(sub) = client.subs.get(&key.index) else {
            return;
        };
        self.scratch.clear();
        self.scratch
            .extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        self.scratch.extend_from_slice(subject);
        self.scratch.extend_from_slice(b"\r\n\r\n");
        protocol::write_hmsg(
            &mut client.outbound.sink(chunks),
            reply,
            &sub.sid,
            None,
            &self.scratch,
            b"",
        );
        self.conns.queue_transmit(conn);
    }

    fn process_sub(&mut self, conn: ConnId, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        let max_subs = self.config.max_subscriptions;
        let client = self.conns.client(conn);
        if (max_subs > 0 && client.subs.len() >= max_subs)
            || client.max_subs.is_some_and(|max| client.subs.len() >= max)
        {
            self.conns
                .write_err(conn, &ServerError::MaxSubscriptionsExceeded);
            return;
        }
        let verbose = client.options.verbose;
        if let Some(permissions) = &mut client.permissions {
            if !permissions.may_subscribe(&subject, queue.as_deref()) {
                self.subscribe_violation(conn, &subject, queue.as_deref(), &sid);
                return;
            }
        }
        let client = self.conns.client(conn);
        let mut invalid = false;
        // One sid lookup: a repeated sid is ignored, as the reference does.
        if let hash_map::Entry::Vacant(slot) = client.sids.entry(sid.clone()) {
            // Queue names are not validated: the reference accepts any bytes there.
            let index = client.next_sub_index;
            let key = SubKey { conn, index };
            let sub = Subscription {
                subject,
                queue,
                sid,
                max: 0,
                delivered: 0,
            };
            if self.router.file(client.account, key, &sub) {
                client.next_sub_index += 1;
                slot.insert(index);
                client.subs.insert(index, sub);
            } else {
                invalid = true;
            }
        }
        if invalid {
            self.conns.write_err(conn, &ServerError::InvalidSubject);
            return;
        }
        if verbose {
            protocol::write_ok(&mut self.conns.sink(conn));
            self.conns.queue_transmit(conn);
        }
    }

    fn subscribe_violation(
        &mut self,
        conn: ConnId,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) {
        self.conns.write_err(
            conn,
            &ServerError::SubscribeViolation {
                subject: subject.to_vec(),
                queue: queue.map(<[u8]>::to_vec),
            },
        );
        let subject = go_quote(subject);
        let sid = String::from_utf8_lossy(sid);
        let log = match queue {
            Some(queue) => {
                let queue = go_quote(queue);
                format!("Subscription Violation - Subject {subject}, Queue: {queue}, SID {sid}")
            }
            None => format!("Subscription Violation - Subject {subject}, SID {sid}"),
        };
        self.conns.log(&mut self.logs, LogLevel::Error, conn, log);
    }

    fn process_unsub(&mut self, conn: ConnId, sid: &[u8], max: Option<u64>) {
        let client = self.conns.client(conn);
        let verbose = client.options.verbose;
        if let Some(&index) = client.sids.get(sid) {
            let sub = client
                .subs
                .get_mut(&index)
                .expect("sid maps to a live subscription");
            match max {
                Some(max) if max > 0 && max > sub.delivered => sub.max = max,
                _ => self.remove_subscription(SubKey { conn, index }),
            }
        }
        if verbose {
            protocol::write_ok(&mut self.conns.sink(conn));
            self.conns.queue_transmit(conn);
        }
    }

    fn remove_subscription(&mut self, key: SubKey) {
        let Some(client) = self.conns.get_mut(key.conn) else {
            return;
        };
        let Some(sub) = client.subs.remove(&key.index) else {
            return;
        };
        client.sids.remove(&sub.sid);
        self.router.unfile(client.account, key, &sub);
    }

    // ----- authentication and accounts -----

    /// Bind `conn` to `account` as `user` with `permissions`. Its existing
    /// subscriptions move with it; those the new permissions refuse are
    /// dropped with the reference's violation error.
    fn bind(
        &mut self,
        conn: ConnId,
        account: AccountId,
        user: Option<String>,
        permissions: Option<&auth::Permissions>,
    ) {
        self.unfile_all(conn);
        self.refile_all(conn, account, user, permissions, false);
    }

    /// Take every subscription of `conn` out of its account's Sublist; they
    /// stay in the client's own table.
    pub(super) fn unfile_all(&mut self, conn: ConnId) {
        let client = self.conns.client(conn);
        for (&index, sub) in &client.subs {
            self.router
                .unfile(client.account, SubKey { conn, index }, sub);
        }
    }

    /// File every subscription of `conn` under `account` and `permissions`
    /// (after [`Self::unfile_all`]). On a reload, refused subscriptions are
    /// reported with their sid, as the reference does.
    pub(super) fn refile_all(
        &mut self,
        conn: ConnId,
        account: AccountId,
        user: Option<String>,
        permissions: Option<&auth::Permissions>,
        reload: bool,
    ) {
        let client = self.conns.client(conn);
        client.user = user;
        client.account = account;
        client.permissions = permissions.map(PermissionChecker::new);
        let mut refused = Vec::new();
        let subs = std::mem::take(&mut client.subs);
        for (index, sub) in subs {
            let allowed = client
                .permissions
                .as_mut()
                .is_none_or(|p| p.may_subscribe(&sub.subject, sub.queue.as_deref()));
            if !allowed {
                client.sids.remove(&sub.sid);
                refused.push(sub);
                continue;
            }
            let filed = self.router.file(account, SubKey { conn, index }, &sub);
            assert!(filed, "a filed subscription is valid");
            client.subs.insert(index, sub);
        }
        for sub in refused {
            if reload {
                self.reload_removed_subscription(conn, &sub);
            } else {
                self.subscribe_violation(conn, &sub.subject, sub.queue.as_deref(), &sub.sid);
            }
        }
    }

    /// A user JWT's (and its account's) `subs` and `payload` limits, under
    /// the server's own.
    fn apply_jwt_limits(&mut self, conn: ConnId, restrictions: &auth::Restrictions) {
        let client = self.conns.client(conn);
        client.max_subs = restrictions.max_subs;
        if let Some(max) = restrictions.max_payload {
            client.parser.set_limits(ParserLimits {
                max_control_line: self.config.max_control_line,
                max_payload: max.min(self.config.max_payload),
            });
        }
    }

    /// A planted defect's re-authentication: `conn` keeps the account,
    /// user and permissions it had.
    #[cfg(feature = "planted-defects")]
    fn refile_as_before(&mut self, conn: ConnId) {
        let client = self.conns.client(conn);
        let (account, user) = (client.account, client.user.clone());
        let permissions = client.permissions.take();
        self.refile_all(conn, account, user, None, true);
        self.conns.client(conn).permissions = permissions;
    }

    /// After a reload: authenticate `conn` again under the new users and
    /// file its subscriptions under its (new) account and permissions; close
    /// it if its credentials no longer pass.
    pub(super) fn reauthenticate(&mut self, reload: Option<Instant>, conn: ConnId) {
        let limits = ParserLimits {
            max_control_line: self.config.max_control_line,
            max_payload: self.config.max_payload,
        };
        let client = self.conns.client(conn);
        if client.is_closing() {
            return;
        }
        client.parser.set_limits(limits);
        if !client.connect_received {
            self.refile_all(conn, GLOBAL, None, None, true);
            return;
        }
        let authenticator = match (client.listener, &self.ws_authenticator) {
            (crate::runtime::ListenerKind::WebSocket, Some(authenticator)) => authenticator,
            _ => &self.authenticator,
        };
        let identity = authenticator.authenticate(
            &client.options,
            client.nonce.as_bytes(),
            self.config
                .tls
                .map
                .then(|| client.cert_names.as_deref().unwrap_or(&[])),
            // A reload has no instant of its own: the latest reading.
            self.monitor.wall.wall_now,
        );
        let client = self
            .conns
            .get(conn)
            .expect("reauthenticated clients are open");
        match (reload, &self.authenticator.config().operator) {
            (Some(now), None) => {
                // A client the callout decides is asked again, as the reference.
                let login = identity.clone().map(Login::Accepted);
                if let Some(callout) = self.delegated_to_callout(&client.options, &login) {
                    self.recheck_with_callout(now, conn, callout);
                    return;
                }
            }
            (_, Some(_)) if client.by_callout => {
                self.operator_callout_client_rebuilt(conn, reload.is_some());
                return;
            }
            _ => {}
        }
        let identity =
            identity.map(|identity| (self.router.accounts.find(&identity.account), identity));
        match identity {
            #[cfg(feature = "planted-defects")]
            Ok((Some(_), _))
                if self.config.planted_defect
                    == Some(PlantedDefect::NewPermissionsIgnoredForConnected) =>
            {
                self.refile_as_before(conn)
            }
            Ok((Some(account), identity)) => {
                // A user JWT's limits hold across the reload too; new
                // account claims move (or drop) the account's expiry, as
                // the reference resets its timer.
                let mut account_deadline = None;
                if let Some(restrictions) = &identity.restrictions {
                    self.apply_jwt_limits(conn, restrictions);
                    account_deadline = self.jwt_deadlines(self.monitor.wall.now, restrictions).1;
                }
                self.conns.client(conn).account_deadline = account_deadline;
                self.refile_timer(conn);
                self.refile_all(
                    conn,
                    account,
                    identity.user,
                    identity.permissions.as_ref(),
                    true,
                )
            }
            #[cfg(feature = "planted-defects")]
            Err(AuthFailure::Revoked)
                if self.config.planted_defect
                    == Some(PlantedDefect::RevocationIgnoredForConnected) =>
            {
                self.refile_as_before(conn)
            }
            Err(AuthFailure::Revoked) => {
                // Its account revoked the user JWT (a claims update).
                self.conns.client(conn).subs.clear();
                self.conns.client(conn).sids.clear();
                self.close_with_error(
                    conn,
                    &ServerError::UserAuthenticationRevoked,
                    CloseReason::Revocation,
                );
            }
            Ok((None, _)) | Err(_) => self.refuse_rebuilt(conn),
        }
    }

    /// A client whose subscriptions a rebuild took out of the old Sublists
    /// is refused (`Authorization Violation`) before they are filed again.
    pub(super) fn refuse_rebuilt(&mut self, conn: ConnId) {
        let client = self.conns.client(conn);
        client.subs.clear();
        client.sids.clear();
        let options = client.options.clone();
        self.auth_violation(conn, &options);
    }

    /// File the subscriptions of `conn` (taken out by a reload) under
    /// `account` again, with the permissions it already has.
    pub(super) fn refile_keeping_permissions(&mut self, conn: ConnId, account: AccountId) {
        let client = self.conns.client(conn);
        let checker = client.permissions.take();
        let user = client.user.clone();
        // Without a checker nothing is refused: they all passed it before.
        self.refile_all(conn, account, user, None, true);
        self.conns.client(conn).permissions = checker;
    }

    /// The account `identity` places `conn` in, if it exists and the user
    /// JWT's connection types and source networks admit the connection
    /// (else the client is refused); callout-account users get the
    /// callout subject denied.
    fn admissible(
        &mut self,
        conn: ConnId,
        options: &ConnectOptions,
        identity: &mut auth::Identity,
    ) -> Option<AccountId> {
        self.deny_callout_subject(identity);
        let client = self.conns.get(conn).expect("an open client");
        let kind = match client.listener {
            crate::runtime::ListenerKind::WebSocket => "WEBSOCKET",
            _ => "STANDARD",
        };
        let allowed = identity
            .restrictions
            .as_ref()
            .is_none_or(|r| r.connection_type_allowed(kind) && r.source_allowed(client.peer.ip()));
        let account = self
            .router
            .accounts
            .find(&identity.account)
            .filter(|_| allowed);
        if account.is_none() {
            self.auth_violation(conn, options);
        }
        account
    }

    /// A user JWT's expiry (`jwt`) and its account's, as instants of the
    /// machine's clock.
    fn jwt_deadlines(
        &self,
        now: Instant,
        restrictions: &auth::Restrictions,
    ) -> (Option<Instant>, Option<Instant>) {
        let wall = self.monitor.wall.wall_at(now);
        let at = |expires: Option<crate::time::WallTime>| {
            expires.map(|expires| {
                let left = expires.as_unix_nanos().saturating_sub(wall.as_unix_nanos());
                now + Duration::from_nanos(left)
            })
        };
        (at(restrictions.expires), at(restrictions.account_expires))
    }

    /// A connected client the auth callout admitted again (after a reload):
    /// it takes the answer's account, permissions and expiry; subscriptions
    /// the new permissions refuse are removed as a reload removes them.
    pub(super) fn readmit(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: protocol::ConnectOptions,
        mut identity: auth::Identity,
    ) {
        let Some(account) = self.admissible(conn, &options, &mut identity) else {
            return;
        };
        let mut jwt_deadline = (None, None);
        if let Some(restrictions) = &identity.restrictions {
            jwt_deadline = self.jwt_deadlines(now, restrictions);
            self.apply_jwt_limits(conn, restrictions);
        }
        let client = self.conns.client(conn);
        client.options = options;
        (client.jwt_deadline, client.account_deadline) = jwt_deadline;
        self.unfile_all(conn);
        self.refile_all(
            conn,
            account,
            identity.user,
            identity.permissions.as_ref(),
            true,
        );
    }

    fn reload_removed_subscription(&mut self, conn: ConnId, sub: &Subscription) {
        self.conns.write_err(
            conn,
            &ServerError::SubscriptionRemoved {
                subject: sub.subject.to_vec(),
                queue: sub.queue.as_ref().map(|q| q.to_vec()),
                sid: sub.sid.to_vec(),
            },
        );
        let subject = go_quote(&sub.subject);
        let sid = go_quote(&sub.sid);
        // Named by the credentials it sent, as the reference names it.
        let client = self.conns.client(conn);
        let options = &client.options;
        let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let who = if let Some(nkey) = given(&options.nkey) {
            format!("Nkey \"{nkey}\"")
        } else if let Some(user) = given(&options.user) {
            format!("User \"{user}\"")
        } else if options.jwt.as_deref().is_some_and(|j| !j.is_empty()) {
            format!(
                "JWT User \"{}\"",
                client.user.as_deref().unwrap_or_default()
            )
        } else if given(&options.auth_token).is_some() {
            String::from("Token \"[REDACTED]\"")
        } else {
            String::from("User \"N/A\"")
        };
        let log = match &sub.queue {
            Some(queue) => {
                let queue = go_quote(queue);
                format!("Removed sub {subject} using queue {queue} (sid {sid}) for {who} - not authorized")
            }
            None => format!("Removed sub {subject} (sid {sid}) for {who} - not authorized"),
        };
        self.logs.push(LogLevel::Info, None, log);
    }

    pub(super) fn auth_violation(&mut self, conn: ConnId, options: &protocol::ConnectOptions) {
        let who = if let Some(nkey) = options.nkey.as_deref().filter(|n| !n.is_empty()) {
            format!(" - Nkey \"{nkey}\"")
        } else if let Some(user) = options.user.as_deref().filter(|u| !u.is_empty()) {
            format!(" - User \"{user}\"")
        } else if options.auth_token.as_deref().is_some_and(|t| !t.is_empty()) {
            String::from(" - Token \"[REDACTED]\"")
        } else {
            String::new()
        };
        self.conns.log(
            &mut self.logs,
            LogLevel::Error,
            conn,
            format!("authentication error{who}"),
        );
        self.close_with_error(
            conn,
            &ServerError::AuthorizationViolation,
            CloseReason::AuthenticationViolation,
        );
    }

    // ----- keepalive -----

    pub(super) fn ping_timer_fired(&mut self, now: Instant, conn: ConnId) {
        let ping_max = self.config.ping_max;
        let client = self.conns.client(conn);
        let ping_interval = self.config.ping_interval_for(client.listener);
        client.ping_deadline = now + ping_interval;
        // Traffic from the client within the interval proves it alive; skip
        // the PING, unless it is needed to measure the round trip.
        let needs_rtt = client.rtt.is_none();
        if !needs_rtt
            && client
                .last_in
                .is_some_and(|last| now.saturating_duration_since(last) < ping_interval)
        {
            return;
        }
        if client.pings_out + 1 > ping_max {
            self.stats.stale_connections += 1;
            self.close_with_error(
                conn,
                &ServerError::StaleConnection,
                CloseReason::StaleConnection,
            );
            return;
        }
        client.pings_out += 1;
        client.rtt_start = Some(now);
        protocol::write_ping(&mut self.conns.sink(conn));
        self.conns.queue_transmit(conn);
        self.enforce_pending_limit(conn);
    }
}

/// Subjects and reply subjects a client may not publish with, and the
/// reference's error for each: internal service replies, JetStream acks,
/// gateway-routed replies and RAFT traffic. RAFT subjects (`$NRG.`) are the
/// system account's own.
fn reserved_subject_violation(
    subject: &[u8],
    reply: Option<&[u8]>,
    system_account: bool,
) -> Option<ServerError> {
    if subject.starts_with(GATEWAY_REPLY_PREFIX)
        || (subject.starts_with(b"$NRG.") && !system_account)
    {
        return Some(ServerError::PublishViolation {
            subject: subject.to_vec(),
        });
    }
    let reply = reply?;
    let reserved = reply.starts_with(b"_R_.")
        || reply.starts_with(b"$JS.ACK.")
        || (reply.len() > GATEWAY_REPLY_PREFIX.len() && reply.starts_with(GATEWAY_REPLY_PREFIX));
    reserved.then(|| ServerError::PublishReplyViolation {
        reply: reply.to_vec(),
    })
}

impl Server {
    // ----- message tracing -----

    /// Begin tracing the message `conn` is publishing. False when the
    /// message must not be processed: the client may not publish to the
    /// trace destination (it gets the violation), or a trace-only message
    /// names an invalid destination.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_trace(
        &mut self,
        now: crate::time::Instant,
        conn: ConnId,
        wanted: TraceHeaders,
        published: &[u8],
        routed: &[u8],
        headers: &[u8],
        size: usize,
    ) -> bool {
        if !crate::subject::is_valid_publish_subject(&wanted.dest) {
            self.logs.push(
                super::LogLevel::Error,
                Some(conn),
                format!(
                    "Destination {:?} is not valid, won't be able to trace events",
                    String::from_utf8_lossy(&wanted.dest)
                ),
            );
            return !wanted.only;
        }
        let client = self.conns.client(conn);
        if let Some(permissions) = client.permissions.as_mut() {
            if !permissions.may_publish(&wanted.dest) {
                let dest = wanted.dest.clone();
                self.publish_violation(conn, &dest);
                return false;
            }
        }
        let name = client.options.name.clone().unwrap_or_default();
        let account = self.router.accounts.list[client.account].name.clone();
        let ts = crate::format::rfc3339_nanos(self.clock(now).wall_now);
        let mut trace = MsgTrace::new(
            wanted,
            ts,
            (trace::KIND_CLIENT, conn, &name),
            &account,
            published,
            headers,
            size,
        );
        if routed != published {
            trace.mapped(routed);
        }
        self.trace = Some(Box::new(trace));
        true
    }

    /// Publish the collected trace to its destination in `account`.
    pub(super) fn publish_trace(
        &mut self,
        now: crate::time::Instant,
        account: super::AccountId,
        trace: &MsgTrace,
    ) {
        debug_assert!(self.trace.is_none(), "a trace is never traced");
        let seq = self.system.next_seq();
        let message = TraceMessage {
            server: EventServer::new(&self.view(), seq, self.clock(now)),
            request: &trace.request,
            hops: trace.hops,
            events: &trace.events,
        };
        let body = serde_json::to_vec(&message).expect("trace events serialize");
        let delivery = super::Delivery {
            publisher: super::system::INTERNAL_CONN,
            subject: &trace.dest,
            reply: None,
            headers: None,
            payload: &body,
            shown_subject: None,
        };
        self.route(now, account, &delivery, true);
    }
}
