//! The server machine driven by a script of events on up to four
//! connections at once: bytes read in arbitrary pieces, timers, partial
//! writes, peer closes, stalled writes and lame-duck mode.
//!
//! Input: four config bytes, then events (see [`decode_config`] and
//! [`Harness::step`]). The harness plays a runtime: after every event it
//! drains `poll_action`, takes the outbound bytes of each `Transmit` and
//! holds them "in flight" until a write event reports them written (or
//! writes them at once for a connection accepted as a fast reader); a fast
//! reader's `Close` is finished with `handle_closed` at once.
//!
//! Checked after every event: no panic; the runtime contract of core's
//! `ContractCheck` (at most one outstanding `Transmit` per connection, none
//! after its `Close`, each closed at most once); a connection's pending
//! output (outbound plus in flight) never exceeds `max_pending` plus one
//! frame, whatever it was sent (replies count as much as messages, as in
//! nats-server; fuzz/RESULTS.md finding 1); a closing connection holds no
//! subscriptions, and the Sublist holds exactly the open connections'
//! subscriptions; no timer is left due after `handle_timeout(now)`; the
//! read buffer keeps at most one partial frame. With JetStream in the
//! config (byte 2 bit 5) a JetStream machine runs beside the server and
//! the harness carries messages between them after every event. At the end, after
//! `handle_closed` for every connection: no subscription, no connection, no
//! timer.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use rnats_core::auth::{
    AccountConfig, Export, Import, ImportKind, MappingDestination, Permissions, ResponsePermission,
    SubjectMapping, SubjectPermission, User,
};
use rnats_core::jetstream::config::{enabled_accounts, JetStreamConfig};
use rnats_core::jetstream::link::JsAction;
use rnats_core::jetstream::machine::JetStream;
use rnats_core::runtime::{Action, ConnId, ContractCheck, ListenerKind};
use rnats_core::server::{AuthConfig, Server, ServerConfig};
use rnats_core::store::MemDisk;
use rnats_core::time::{Instant, WallTime};

/// Connections the script can name (slot = byte % SLOTS).
pub const SLOTS: usize = 4;
/// Events one input may run: bounds the work per input.
const EVENTS_MAX: usize = 4096;
/// The time step of an `Advance` event.
const TICK: Duration = Duration::from_millis(10);

/// Event tags (the low three bits of an event's first byte).
pub mod tag {
    /// `[0, slot | 0x80 if fast reader]`: accept a connection in the slot.
    pub const ACCEPT: u8 = 0;
    /// `[1, slot, len_lo, len_hi, bytes...]`: the peer sent `len` bytes.
    pub const READ: u8 = 1;
    /// `[2, ticks_lo, ticks_hi]`: time passes (10 ms ticks); due timers run.
    pub const ADVANCE: u8 = 2;
    /// `[3, slot]`: everything in flight was written.
    pub const WRITE_ALL: u8 = 3;
    /// `[4, slot, n_lo, n_hi]`: `n` bytes in flight were written.
    pub const WRITE_SOME: u8 = 4;
    /// `[5, slot]`: the connection is closed (peer gone or close finished).
    pub const CLOSED: u8 = 5;
    /// `[6, slot]`: the runtime's write deadline passed.
    pub const WRITE_STALLED: u8 = 6;
    /// `[7]`: lame-duck mode.
    pub const LAME_DUCK: u8 = 7;
}

/// Builds the server configuration from the four leading bytes.
///
/// - byte 0: `max_pending = 256 << (b % 13)` (256 B to 1 MiB);
/// - byte 1: bits 0-2 `max_payload` (64 KiB, 16, 32, 64, 128, 512, 1024,
///   4096), bits 3-5 `max_control_line` (4096, 32, 64, ..., 2048), bits 6-7
///   `max_subscriptions` (none, 1, 2, 16);
/// - byte 2: bits 0-1 auth (none, token `tok`, user `a` password `b`, or
///   [`accounts_config`]), bits 2-3 `max_connections` (65536, 1, 2, 3), bit 4
///   protocol tracing, bit 5 JetStream ([`jetstream_config`]);
/// - byte 3: bits 0-2 `ping_interval` (120, 1, 2, 3, 5, 10, 30, 60 s), bits
///   3-4 `ping_max` (1 + n % 3), bits 5-7 `auth_timeout` (2 s, 10 ms, 100 ms,
///   500 ms, 1 s, 3 s, 5 s, 60 s).
pub fn decode_config(bytes: [u8; 4]) -> ServerConfig {
    const PAYLOADS: [usize; 8] = [65536, 16, 32, 64, 128, 512, 1024, 4096];
    const CONTROL_LINES: [usize; 8] = [4096, 32, 64, 128, 256, 512, 1024, 2048];
    const SUBSCRIPTIONS: [usize; 4] = [0, 1, 2, 16];
    const CONNECTIONS: [usize; 4] = [65536, 1, 2, 3];
    const PINGS_S: [u64; 8] = [120, 1, 2, 3, 5, 10, 30, 60];
    const AUTH_TIMEOUTS_MS: [u64; 8] = [2000, 10, 100, 500, 1000, 3000, 5000, 60000];
    let [pending, limits, access, timing] = bytes;
    let (auth, accounts) = match access & 3 {
        0 => (AuthConfig::default(), Vec::new()),
        1 => (AuthConfig::token(String::from("tok")), Vec::new()),
        2 => (
            AuthConfig::single_user(String::from("a"), String::from("b")),
            Vec::new(),
        ),
        _ => accounts_config(),
    };
    ServerConfig {
        accounts,
        max_pending: 256 << (pending % 13),
        max_payload: PAYLOADS[usize::from(limits & 7)],
        max_control_line: CONTROL_LINES[usize::from((limits >> 3) & 7)],
        max_subscriptions: SUBSCRIPTIONS[usize::from(limits >> 6)],
        auth,
        max_connections: CONNECTIONS[usize::from((access >> 2) & 3)],
        ping_interval: Duration::from_secs(PINGS_S[usize::from(timing & 7)]),
        ping_max: 1 + u32::from((timing >> 3) & 3) % 3,
        auth_timeout: Duration::from_millis(AUTH_TIMEOUTS_MS[usize::from(timing >> 5)]),
        // Protocol tracing formats (and redacts) every operation.
        trace: access & 0x10 != 0,
        jetstream: (access & 0x20 != 0).then(jetstream_config),
        ..ServerConfig::default()
    }
}

/// JetStream on, file streams over an in-memory disk whose syncs complete
/// at once.
pub fn jetstream_config() -> JetStreamConfig {
    JetStreamConfig {
        domain: Some(String::from("hub")),
        ..JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
    }
}

/// Users in two accounts with permissions, a stream and a service import,
/// weighted and plain mappings, and `no_auth_user`: every branch of the
/// account router and the permission checks is reachable from CONNECTs
/// naming `a`/`b` (account A, restricted) or `c`/`d` (account B), or none.
pub fn accounts_config() -> (AuthConfig, Vec<AccountConfig>) {
    let list = |subjects: &[&str]| subjects.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let restricted = Permissions {
        publish: Some(SubjectPermission {
            allow: Some(list(&["foo.>", "svc.*", "_INBOX.>", "m.*"])),
            deny: list(&["foo.no"]),
        }),
        subscribe: Some(SubjectPermission {
            allow: Some(list(&["foo.*", "q.> w", "svc.*", "_INBOX.>", "n.>"])),
            deny: list(&["foo.secret", "q.x w"]),
        }),
        response: Some(ResponsePermission {
            max_msgs: 2,
            expires: Duration::from_secs(1),
        }),
    };
    let user = |name: &str, password: &str, account: &str, permissions: Option<Permissions>| User {
        username: name.into(),
        password: password.into(),
        permissions,
        account: account.into(),
    };
    let mut a = AccountConfig::new("A");
    a.exports = vec![Export::stream("foo.>"), Export::service("svc.*")];
    a.mappings = vec![SubjectMapping {
        source: String::from("m.*"),
        destinations: vec![
            MappingDestination {
                subject: String::from("n.$1"),
                weight: 60,
            },
            MappingDestination {
                subject: String::from("n.other.$1"),
                weight: 30,
            },
        ],
    }];
    let mut b = AccountConfig::new("B");
    b.imports = vec![
        Import {
            kind: ImportKind::Stream,
            account: String::from("A"),
            subject: String::from("foo.>"),
            to: Some(String::from("imp.foo.>")),
            share: false,
        },
        Import {
            kind: ImportKind::Service,
            account: String::from("A"),
            subject: String::from("svc.*"),
            to: Some(String::from("call.*")),
            // The detailed `Nats-Request-Info` path gets fuzzed too.
            share: true,
        },
    ];
    let auth = AuthConfig {
        users: vec![
            user("a", "b", "A", Some(restricted)),
            user("c", "d", "B", None),
        ],
        no_auth_user: Some(String::from("c")),
        ..AuthConfig::default()
    };
    (auth, vec![a, b])
}

/// The runtime's view of one connection.
struct Slot {
    conn: ConnId,
    /// Writes everything at once and finishes a close at once.
    fast: bool,
    /// Bytes read and not yet consumed by the server (a partial frame).
    read_buf: BytesMut,
    /// Taken with `take_outbound`, not yet reported written.
    in_flight: usize,
}

/// A runtime around one `Server`, checking invariants as it goes.
pub struct Harness {
    server: Server,
    now: Instant,
    slots: [Option<Slot>; SLOTS],
    next_conn: u64,
    /// Most bytes one frame (a MSG/HMSG, an INFO, an -ERR) may add.
    frame_max: usize,
    /// Most bytes the parser may keep between reads.
    retained_max: usize,
    contract: ContractCheck,
    /// The JetStream machine beside the server, when the config has it.
    jetstream: Option<JetStream<MemDisk>>,
}

/// The wall clock at the harness's monotonic zero.
const WALL_ORIGIN: u64 = 1_763_818_200_000_000_000;

impl Harness {
    pub fn new(config: ServerConfig, seed: u64) -> Self {
        let frame_max = config.max_payload + 2 * config.max_control_line + 1024;
        let retained_max = (config.max_control_line + 1)
            .max(config.max_payload + 1)
            .max(8);
        let now = Instant::from_nanos(1_000_000_000);
        let jetstream = config.jetstream.clone().map(|js_config| {
            JetStream::open(
                String::from("fuzz"),
                js_config,
                enabled_accounts(&config),
                MemDisk::new(),
                now,
                WallTime(WALL_ORIGIN + now.as_nanos()),
            )
        });
        let mut server = Server::new(config, seed);
        // Starts the statsz heartbeat: system events are part of the machine.
        server.set_wall_clock(
            now,
            rnats_core::time::WallTime::from_unix_nanos(WALL_ORIGIN),
        );
        let mut harness = Harness {
            server,
            now,
            slots: [None, None, None, None],
            next_conn: 1,
            frame_max,
            retained_max,
            contract: ContractCheck::default(),
            jetstream,
        };
        // Recovered streams listen from the start.
        harness.drain_actions();
        harness
    }

    /// Runs one event from the front of `input`; returns the rest, or `None`
    /// when the input is used up.
    pub fn step<'a>(&mut self, input: &'a [u8]) -> Option<&'a [u8]> {
        let (&head, mut rest) = input.split_first()?;
        let mut byte = || -> u8 {
            let (&b, after) = rest.split_first().unwrap_or((&0, &[]));
            rest = after;
            b
        };
        match head & 7 {
            tag::ACCEPT => {
                let b = byte();
                self.accept(usize::from(b) % SLOTS, b & 0x80 != 0);
            }
            tag::READ => {
                let slot = usize::from(byte()) % SLOTS;
                let len = usize::from(u16::from_le_bytes([byte(), byte()]));
                let (bytes, after) = rest.split_at(len.min(rest.len()));
                rest = after;
                self.read(slot, bytes);
            }
            tag::ADVANCE => {
                let ticks = u32::from(u16::from_le_bytes([byte(), byte()]));
                self.advance(TICK * ticks);
            }
            tag::WRITE_ALL => {
                let slot = usize::from(byte()) % SLOTS;
                self.written(slot, usize::MAX);
            }
            tag::WRITE_SOME => {
                let slot = usize::from(byte()) % SLOTS;
                let n = usize::from(u16::from_le_bytes([byte(), byte()]));
                self.written(slot, n);
            }
            tag::CLOSED => {
                let slot = usize::from(byte()) % SLOTS;
                self.closed(slot);
            }
            tag::WRITE_STALLED => {
                let slot = usize::from(byte()) % SLOTS;
                if let Some(state) = &self.slots[slot] {
                    let n = usize::from(byte());
                    self.server.handle_write_stalled(state.conn, n);
                }
            }
            _ => self.server.enter_lame_duck_mode(),
        }
        self.drain_actions();
        self.check();
        Some(rest)
    }

    fn accept(&mut self, slot: usize, fast: bool) {
        if self.slots[slot].is_some() {
            return;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000 + slot as u16);
        self.contract.accepted(conn);
        self.server
            .handle_accept(self.now, conn, peer, ListenerKind::Client);
        self.slots[slot] = Some(Slot {
            conn,
            fast,
            read_buf: BytesMut::new(),
            in_flight: 0,
        });
    }

    fn read(&mut self, slot: usize, bytes: &[u8]) {
        let Some(state) = &mut self.slots[slot] else {
            return;
        };
        state.read_buf.extend_from_slice(bytes);
        self.server
            .handle_read(self.now, state.conn, &mut state.read_buf);
        assert!(
            state.read_buf.len() <= self.retained_max,
            "{}: {} bytes left in the read buffer",
            state.conn,
            state.read_buf.len()
        );
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        if self
            .server
            .poll_timeout()
            .is_some_and(|due| due <= self.now)
        {
            self.server.handle_timeout(self.now);
        }
        if let Some(due) = self.server.poll_timeout() {
            assert!(due > self.now, "a timer is still due after handle_timeout");
        }
    }

    fn written(&mut self, slot: usize, n: usize) {
        let Some(state) = &mut self.slots[slot] else {
            return;
        };
        let n = n.min(state.in_flight);
        state.in_flight -= n;
        self.server.handle_written(state.conn, n);
    }

    fn closed(&mut self, slot: usize) {
        if let Some(state) = self.slots[slot].take() {
            self.contract.closed(state.conn);
            self.server.handle_closed(self.now, state.conn);
            assert!(self.server.client(state.conn).is_none());
        }
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.conn == conn))
    }

    /// Carry out the server's actions, and carry messages between the
    /// server and JetStream until both are quiet (bounded).
    fn drain_actions(&mut self) {
        for _ in 0..16 {
            self.drain_server_actions();
            if !self.pump_jetstream() {
                return;
            }
        }
        self.drain_server_actions();
    }

    /// One round between the server and JetStream; whether anything moved.
    fn pump_jetstream(&mut self) -> bool {
        let Some(js) = self.jetstream.as_mut() else {
            return false;
        };
        let wall = WallTime(WALL_ORIGIN + self.now.as_nanos());
        let mut moved = false;
        while let Some(msg) = self.server.poll_jetstream() {
            js.handle_inbound(self.now, wall, msg);
            moved = true;
        }
        while let Some(action) = js.poll_action() {
            moved = true;
            match action {
                // The in-memory disk has nothing to lose: the sync is done.
                JsAction::Sync { stream, tag, .. } => js.handle_sync_done(stream, tag, Ok(())),
                other => self.server.handle_jetstream(self.now, other),
            }
        }
        moved
    }

    fn drain_server_actions(&mut self) {
        let mut finished: Vec<usize> = Vec::new();
        while let Some(action) = self.server.poll_action() {
            self.contract.action(&action);
            match action {
                Action::Transmit(conn) => {
                    let slot = self
                        .slot_of(conn)
                        .expect("Transmit for an unknown connection");
                    let state = self.slots[slot].as_mut().expect("slot is open");
                    self.contract.taken(conn);
                    if let Some(batch) = self.server.take_outbound(conn) {
                        state.in_flight += batch.len();
                        if state.fast {
                            self.server.handle_written(conn, batch.len());
                            state.in_flight -= batch.len();
                        }
                        self.server.recycle_outbound(batch);
                    }
                }
                Action::CheckPassword(conn) => {
                    // A runtime runs bcrypt off the lock; here at once.
                    if let Some(check) = self.server.take_password_check(conn) {
                        let passed = check.run();
                        self.server.handle_password_checked(self.now, conn, passed);
                    }
                }
                Action::Close { conn, .. } => {
                    let Some(slot) = self.slot_of(conn) else {
                        // handle_closed already forgot it (a peer close of an open connection).
                        continue;
                    };
                    let state = self.slots[slot].as_mut().expect("slot is open");
                    // The runtime flushes what is left, unless told not to.
                    self.contract.taken(conn);
                    if let Some(bytes) = self.server.take_outbound(conn) {
                        state.in_flight += bytes.len();
                    }
                    if state.fast {
                        finished.push(slot);
                    }
                }
            }
        }
        for slot in finished {
            self.closed(slot);
        }
    }

    fn check(&self) {
        let config = self.server.config();
        let mut subscriptions = 0;
        for state in self.slots.iter().flatten() {
            let client = self
                .server
                .client(state.conn)
                .expect("an open connection is known to the server");
            assert_eq!(
                client.bytes_in_flight, state.in_flight,
                "{}: in-flight bytes",
                state.conn
            );
            assert!(
                client.pending_bytes() <= config.max_pending + self.frame_max,
                "{}: {} bytes pending, max_pending {}, closing {:?}, outbound {}",
                state.conn,
                client.pending_bytes(),
                config.max_pending,
                client.closing,
                client.outbound.len()
            );
            assert_eq!(client.sids.len(), client.subs.len());
            if client.is_closing() {
                assert!(
                    client.subs.is_empty(),
                    "{}: closing with subscriptions",
                    state.conn
                );
            }
            if self.contract.close_seen(state.conn) {
                assert!(client.is_closing());
            }
            subscriptions += client.subs.len();
        }
        assert_eq!(self.server.num_subscriptions(), subscriptions);
    }

    /// Closes every connection and checks that nothing is left behind.
    pub fn finish(mut self) {
        for slot in 0..SLOTS {
            self.closed(slot);
        }
        while self.server.poll_action().is_some() {}
        assert_eq!(self.server.num_subscriptions(), 0);
        assert_eq!(self.server.num_connections(), 0);
        // Only the statsz heartbeat may still be pending.
        assert_eq!(self.server.poll_timeout(), self.server.heartbeat_deadline());
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&config, mut script)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut harness = Harness::new(decode_config(config), u64::from(u32::from_le_bytes(config)));
    for _ in 0..EVENTS_MAX {
        match harness.step(script) {
            Some(rest) => script = rest,
            None => break,
        }
    }
    harness.finish();
}
