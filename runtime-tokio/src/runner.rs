//! Runs the core [`Server`] machine on tokio sockets.
//!
//! Shape: one accept task, one reader and one writer task per connection, and
//! one timer task. The machine lives under a single mutex; every step (a read
//! batch, a timer, a write completion) takes the lock once, runs to
//! completion, drains the machine's actions and releases it. That is the same
//! one-step-at-a-time discipline the simulator drives, so the interleavings
//! the simulator explores cover production's.
//!
//! Writers never hold the lock while writing: they take the connection's whole
//! outbound batch (vectored writes over its chunks, however many messages it
//! holds); after the write one lock reports progress, hands the chunks back for
//! reuse and takes the next batch. Log lines are written after the lock is
//! released, in the order the machine queued them. A
//! publisher therefore never waits on a subscriber's socket; the machine cuts
//! off a subscriber whose pending bytes pass `max_pending`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use rnats_core::auth::PasswordCheck;
#[cfg(debug_assertions)]
use rnats_core::runtime::ContractCheck;
use rnats_core::runtime::{Action, CloseReason, ConnId, ListenerKind};
use rnats_core::server::{LogLevel, LogRecord, OutboundBatch, Server, ServerConfig};
use rnats_core::time::{Instant, WallTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::tls::{self, Tls};

mod routes;
pub use routes::RouteTlsIo;
mod websocket;

pub use websocket::WebSocketListener;
use websocket::WsOut;

/// A connection's read side: a TCP half or a TLS half.
type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// A connection's write side.
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The content type of a TLS handshake record, the first byte a TLS client sends.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// The monotonic clock core sees: nanoseconds since the runner started.
#[derive(Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    fn until(&self, deadline: Instant) -> Duration {
        let now = self.now();
        Duration::from_nanos(deadline.as_nanos().saturating_sub(now.as_nanos()))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// One connection's wake-up line to its writer task.
struct ConnIo {
    /// Set when the writer has bytes to take or a close to carry out.
    wake: Notify,
    /// The machine asked to close this connection.
    closing: AtomicBool,
    /// Tells the reader to stop (the writer closed the socket).
    stop_reader: Notify,
    /// Tells the writer to abandon a write in progress (slow consumer).
    abort_write: Notify,
    /// A websocket connection's framing of what the writer sends.
    ws: Option<WsOut>,
    /// A route (its writes have the cluster's deadline).
    route: bool,
}

/// The machine plus the runtime's table of live connections, under one lock.
struct State {
    server: Server,
    conns: HashMap<ConnId, Arc<ConnIo>>,
    /// Where messages for JetStream go while it runs (`crate::jetstream`);
    /// under the machine's lock, so a reload can stop and start it.
    jetstream: Option<crate::jetstream::JsSender>,
    /// This step queued messages for JetStream: the step's thread hands
    /// them to it once the lock is released ([`Runner::finish_step`]).
    jetstream_queued: bool,
    /// Debug builds (every black-box test) hold the machine to core's
    /// runtime contract.
    #[cfg(debug_assertions)]
    contract: ContractCheck,
}

impl State {
    fn accept(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        listener: ListenerKind,
        io: Arc<ConnIo>,
        session: Option<rnats_core::websocket::ClientSession>,
    ) {
        self.conns.insert(conn, io);
        #[cfg(debug_assertions)]
        self.contract.accepted(conn);
        match session {
            Some(session) => self
                .server
                .handle_accept_websocket(now, conn, peer, session),
            None => self.server.handle_accept(now, conn, peer, listener),
        }
    }

    /// Everything queued for `conn` (serving its `Transmit`, or a flush before close).
    fn take_outbound(&mut self, conn: ConnId) -> Option<OutboundBatch> {
        #[cfg(debug_assertions)]
        self.contract.taken(conn);
        self.server.take_outbound(conn)
    }

    /// Tell the machine `conn` is gone, once (the reader and the writer may
    /// both find out); returns its I/O handle the first time.
    fn report_closed(&mut self, now: Instant, conn: ConnId) -> Option<Arc<ConnIo>> {
        let io = self.conns.remove(&conn)?;
        #[cfg(debug_assertions)]
        self.contract.closed(conn);
        self.server.handle_closed(now, conn);
        Some(io)
    }
}

/// What all tasks share.
pub struct Runner {
    state: Mutex<State>,
    clock: Clock,
    next_conn: AtomicU64,
    /// The deadline the timer task sleeps toward (nanoseconds; u64::MAX = none).
    timer_target: AtomicU64,
    timer_wake: Notify,
    shutdown: Notify,
    /// In lame-duck mode new connections are refused at accept.
    lame_duck: AtomicBool,
    /// Set when clients must speak TLS.
    tls: Option<Arc<Tls>>,
    /// Password checks the machine asked for (`Action::CheckPassword`),
    /// run by `password_check_loop` on the blocking pool, never under the lock.
    password_checks: mpsc::UnboundedSender<(ConnId, PasswordCheck)>,
    password_check_queue: Mutex<Option<mpsc::UnboundedReceiver<(ConnId, PasswordCheck)>>>,
    /// `write_deadline` in nanoseconds: a write to a client that takes longer
    /// marks it a slow consumer. Read from the machine's configuration at
    /// start and on every reload.
    write_deadline_nanos: AtomicU64,
    /// The same for routes: the cluster's `write_deadline`, else the above.
    route_write_deadline_nanos: AtomicU64,
    /// Held from before a step releases the machine's lock until its log
    /// lines are written, so lines leave in the order the machine queued them.
    log_order: Mutex<()>,
    /// Route dials the machine asked for (`Server::poll_dial`), carried out
    /// by `dial_loop` (`runner/routes.rs`).
    dials: mpsc::UnboundedSender<rnats_core::server::DialRequest>,
    dial_queue: Mutex<Option<mpsc::UnboundedReceiver<rnats_core::server::DialRequest>>>,
    /// The directory resolver's file changes, made in order by
    /// `resolver_write_loop` on the blocking pool, never under the lock.
    resolver_writes: mpsc::UnboundedSender<(u64, rnats_core::auth::ResolverWrite)>,
    resolver_write_queue:
        Mutex<Option<mpsc::UnboundedReceiver<(u64, rnats_core::auth::ResolverWrite)>>>,
    /// The URL resolver's fetches, each run as a task of its own by
    /// `account_fetch_loop`, never under the lock.
    account_fetches: mpsc::UnboundedSender<rnats_core::auth::AccountFetch>,
    account_fetch_queue: Mutex<Option<mpsc::UnboundedReceiver<rnats_core::auth::AccountFetch>>>,
}

/// The system's wall clock, as core's `WallTime`.
pub fn wall_now() -> WallTime {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    WallTime::from_unix_nanos(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
}

impl Runner {
    pub fn new(mut server: Server, clock: Clock, tls: Option<Tls>) -> Arc<Self> {
        server.set_wall_clock(clock.now(), wall_now());
        let (password_checks, queue) = mpsc::unbounded_channel();
        let (dials, dial_queue) = mpsc::unbounded_channel();
        let route_write_deadline_nanos =
            AtomicU64::new(write_deadline_nanos(server.config(), true));
        let write_deadline_nanos = AtomicU64::new(write_deadline_nanos(server.config(), false));
        let (resolver_writes, resolver_write_queue) = mpsc::unbounded_channel();
        for write in server.take_resolver_writes() {
            let _ = resolver_writes.send(write);
        }
        let (account_fetches, account_fetch_queue) = mpsc::unbounded_channel();
        Arc::new(Runner {
            account_fetches,
            account_fetch_queue: Mutex::new(Some(account_fetch_queue)),
            resolver_writes,
            resolver_write_queue: Mutex::new(Some(resolver_write_queue)),
            password_checks,
            password_check_queue: Mutex::new(Some(queue)),
            dials,
            dial_queue: Mutex::new(Some(dial_queue)),
            write_deadline_nanos,
            route_write_deadline_nanos,
            log_order: Mutex::new(()),
            state: Mutex::new(State {
                server,
                conns: HashMap::new(),
                jetstream: None,
                jetstream_queued: false,
                #[cfg(debug_assertions)]
                contract: ContractCheck::default(),
            }),
            clock,
            next_conn: AtomicU64::new(1),
            timer_target: AtomicU64::new(u64::MAX),
            timer_wake: Notify::new(),
            shutdown: Notify::new(),
            lame_duck: AtomicBool::new(false),
            tls: tls.map(Arc::new),
        })
    }

    /// The machine's monotonic clock now.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// From now on, hand the machine's JetStream messages to `sender`.
    pub fn connect_jetstream(&self, sender: crate::jetstream::JsSender) {
        let mut state = self.lock();
        assert!(state.jetstream.is_none(), "JetStream connected twice");
        state.jetstream = Some(sender);
        // What was queued for it meanwhile goes now.
        self.finish_step(state);
    }

    /// JetStream was turned off (a reload): nothing more is handed to the
    /// machine; the caller stops it through the returned sender.
    pub fn disconnect_jetstream(&self) -> Option<crate::jetstream::JsSender> {
        self.lock().jetstream.take()
    }

    /// Ask the JetStream machine `f` on its thread; `None` when JetStream
    /// is not running.
    pub async fn query_jetstream<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rnats_core::jetstream::machine::JetStream<crate::disk::RealDisk>) -> R
            + Send
            + 'static,
    ) -> Option<R> {
        let sender = self.lock().jetstream.clone()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let query: crate::jetstream::JsQuery = Box::new(move |js| {
            let _ = reply.send(f(js));
        });
        sender.send(crate::jetstream::JsEvent::Query(query)).ok()?;
        answer.await.ok()
    }

    /// Run `f` on the machine under the lock, at the current instant, and
    /// carry out whatever it queued (monitoring reads queue nothing).
    pub fn with_server<R>(&self, f: impl FnOnce(&mut Server, Instant) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state.server, self.clock.now());
        self.finish_step(state);
        result
    }

    /// Hand the machine the wall clock and the process's memory and CPU use,
    /// now and every second (monitoring dates, `/varz` `mem` and `cpu`).
    pub async fn sample_host(self: Arc<Self>) {
        let mut sampler = crate::host::HostSampler::new();
        loop {
            let host = sampler.sample();
            self.with_server(|server, now| {
                server.set_wall_clock(now, wall_now());
                server.set_host_stats(host);
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in core; keep serving the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serve `listener` until [`Runner::shutdown`] is called.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let timer = tokio::spawn(self.clone().timer_loop());
        let checks = tokio::spawn(self.clone().password_check_loop());
        // Not aborted at shutdown: a write in progress finishes.
        tokio::spawn(self.clone().resolver_write_loop());
        let fetches = tokio::spawn(self.clone().account_fetch_loop());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if self.lame_duck.load(Ordering::Acquire) {
                            drop(stream);
                        } else {
                            self.clone().start_connection(stream, peer);
                        }
                    }
                    Err(error) => {
                        tracing::error!("Error accepting client connection: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = self.shutdown.notified() => break,
            }
        }
        timer.abort();
        checks.abort();
        fetches.abort();
        let mut state = self.lock();
        state.server.shutdown();
        self.finish_step(state);
    }

    /// Stop accepting and close every connection.
    pub fn shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Apply a configuration built from the current one; returns what changed.
    pub fn reload(&self, build: impl FnOnce(&ServerConfig) -> ServerConfig) -> Vec<String> {
        let mut state = self.lock();
        let new = build(state.server.config());
        let changes = state.server.config().changes_to(&new);
        self.write_deadline_nanos
            .store(write_deadline_nanos(&new, false), Ordering::Release);
        self.route_write_deadline_nanos
            .store(write_deadline_nanos(&new, true), Ordering::Release);
        state.server.reload_at(self.clock.now(), new);
        self.finish_step(state);
        changes
    }

    /// Lame-duck mode: stop accepting new clients and tell connected ones
    /// (INFO with `ldm: true`) so they move elsewhere before the shutdown.
    pub fn enter_lame_duck_mode(&self) {
        self.lame_duck.store(true, Ordering::Release);
        let mut state = self.lock();
        state.server.enter_lame_duck_mode();
        self.finish_step(state);
    }

    /// nats-server's lame duck mode: refuse new clients and tell the
    /// connected ones (INFO `ldm`), wait `grace`, then close the remaining
    /// clients spread over what is left of `duration` (at most one second
    /// apart; in batches when there are more clients than nanoseconds).
    /// Returns when every client has been closed; the caller shuts down.
    pub async fn lame_duck(&self, grace: Duration, duration: Duration) {
        self.enter_lame_duck_mode();
        let clients = self.lock().server.open_connections();
        if clients.is_empty() {
            return;
        }
        let spread = duration.saturating_sub(grace).max(Duration::from_secs(1));
        let count = clients.len() as u128;
        let mut interval = spread.as_nanos() / count;
        let mut batch = 1usize;
        if interval < 1 {
            interval = 1;
            batch = usize::try_from(count / spread.as_nanos().max(1))
                .unwrap_or(usize::MAX)
                .max(1);
        }
        let interval = Duration::from_nanos(
            u64::try_from(interval)
                .unwrap_or(u64::MAX)
                .min(1_000_000_000),
        );
        tokio::time::sleep(grace).await;
        tracing::info!("Closing existing clients");
        for (i, conn) in clients.iter().enumerate() {
            {
                let mut state = self.lock();
                state
                    .server
                    .close_connection(*conn, CloseReason::ServerShutdown);
                self.finish_step(state);
            }
            if i + 1 < clients.len() && i % batch == 0 {
                tokio::time::sleep(interval).await;
            }
        }
    }

    fn start_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            None => {
                let (conn, io) = self.open(peer);
                let (reader, writer) = stream.into_split();
                self.run_io(conn, io, Box::new(reader), Box::new(writer));
            }
            Some(tls) => {
                tokio::spawn(self.start_tls(stream, peer, tls));
            }
        }
    }

    /// Register a new connection with the machine (which queues its INFO).
    fn open(&self, peer: SocketAddr) -> (ConnId, Arc<ConnIo>) {
        self.open_from(peer, ListenerKind::Client, None, None)
    }

    /// Register a connection accepted by `listener`; `ws` frames what its
    /// writer sends.
    fn open_from(
        &self,
        peer: SocketAddr,
        listener: ListenerKind,
        ws: Option<WsOut>,
        session: Option<rnats_core::websocket::ClientSession>,
    ) -> (ConnId, Arc<ConnIo>) {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let io = Self::new_io(ws, listener == ListenerKind::Route);
        {
            let mut state = self.lock();
            state.accept(self.clock.now(), conn, peer, listener, io.clone(), session);
            self.finish_step(state);
        }
        (conn, io)
    }

    fn new_io(ws: Option<WsOut>, route: bool) -> Arc<ConnIo> {
        Arc::new(ConnIo {
            route,
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            stop_reader: Notify::new(),
            abort_write: Notify::new(),
            ws,
        })
    }

    fn run_io(self: Arc<Self>, conn: ConnId, io: Arc<ConnIo>, reader: Reader, writer: Writer) {
        tokio::spawn(self.clone().read_loop(conn, reader, io.clone()));
        tokio::spawn(self.write_loop(conn, writer, io));
    }

    /// A TLS client: INFO in plain text then the handshake, or (with
    /// `handshake_first`) the handshake first; either within the timeout.
    /// With a fallback delay, a client that sends nothing for that long gets
    /// INFO in plain text and goes on as without `handshake_first`; with
    /// `allow_non_tls`, one whose first byte after INFO is not a handshake
    /// record (or that sends nothing within the timeout) is served in plain
    /// text, as the reference does.
    async fn start_tls(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, tls: Arc<Tls>) {
        let settings = &tls.settings;
        let deadline = settings.timeout;
        let mut handshake_first = settings.handshake_first;
        if let (true, Some(delay)) = (handshake_first, settings.handshake_first_fallback) {
            handshake_first = first_byte(&stream, delay).await.is_some();
        }
        let opened = if handshake_first {
            None
        } else {
            let Some(opened) = self.send_plain_info(&mut stream, peer).await else {
                return;
            };
            Some(opened)
        };
        let first = first_byte(&stream, deadline).await;
        if let (Some((conn, io)), true) = (&opened, settings.plain_text_allowed()) {
            if first != Some(TLS_HANDSHAKE_RECORD) {
                // Nothing was read: the parser gets every byte the client sent.
                let (reader, writer) = stream.into_split();
                self.clone()
                    .run_io(*conn, io.clone(), Box::new(reader), Box::new(writer));
                return;
            }
        }
        // A client that does not start a handshake (its first byte is not a
        // TLS handshake record) is dropped without a TLS alert, as the
        // reference's Go TLS stack does.
        if first != Some(TLS_HANDSHAKE_RECORD) {
            tracing::debug!(
                "{peer} - TLS handshake error: first record does not look like a TLS handshake"
            );
            self.handshake_failed(opened);
            return;
        }
        let accepted = tokio::time::timeout(deadline, tls.acceptor.accept(stream)).await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!("{peer} - TLS handshake error: {error}");
                self.handshake_failed(opened);
                return;
            }
            Err(_) => {
                tracing::debug!("{peer} - TLS handshake timeout");
                self.handshake_failed(opened);
                return;
            }
        };
        let (conn, io) = match opened {
            Some(opened) => opened,
            None => self.open(peer),
        };
        let names = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(tls::certificate_names);
        if let Some(names) = names {
            let mut state = self.lock();
            state.server.set_peer_certificate_names(conn, names);
        }
        let (reader, writer) = tokio::io::split(stream);
        self.run_io(conn, io, Box::new(reader), Box::new(writer));
    }

    /// Registers the connection and writes its INFO in plain text, before
    /// any TLS. `None` if the client went away meanwhile (then forgotten).
    async fn send_plain_info(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Option<(ConnId, Arc<ConnIo>)> {
        let (conn, io) = self.open(peer);
        let info = self.lock().take_outbound(conn);
        if let Some(mut info) = info {
            let len = info.len();
            if stream.write_all_buf(&mut info).await.is_err() {
                self.forget(conn);
                return None;
            }
            let mut state = self.lock();
            state.server.handle_written(conn, len);
            state.server.recycle_outbound(info);
        }
        Some((conn, io))
    }

    /// The TLS handshake of a connection the machine knows (it got INFO)
    /// failed: it closes as `TLS Handshake Failure`, as in the reference.
    fn handshake_failed(&self, opened: Option<(ConnId, Arc<ConnIo>)>) {
        if let Some((conn, _)) = opened {
            {
                let mut state = self.lock();
                state
                    .server
                    .close_connection(conn, CloseReason::TlsHandshakeFailure);
            }
            self.forget(conn);
        }
    }

    /// A connection that never got its reader and writer.
    fn forget(&self, conn: ConnId) {
        let mut state = self.lock();
        state.report_closed(self.clock.now(), conn);
        self.finish_step(state);
    }

    async fn read_loop(self: Arc<Self>, conn: ConnId, mut socket: Reader, io: Arc<ConnIo>) {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                buf.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                read = socket.read_buf(&mut buf) => read,
                _ = io.stop_reader.notified() => return,
            };
            match read {
                Ok(0) | Err(_) => {
                    // The peer went away. Let the writer finish and forget the connection.
                    let mut state = self.lock();
                    if let Some(io) = state.report_closed(self.clock.now(), conn) {
                        io.closing.store(true, Ordering::Release);
                        io.wake.notify_one();
                    }
                    self.finish_step(state);
                    return;
                }
                Ok(_) => {
                    let mut state = self.lock();
                    state.server.handle_read(self.clock.now(), conn, &mut buf);
                    self.finish_step(state);
                    if io.closing.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        }
    }

    /// Writes the connection's outbound batches. Each write costs one step
    /// of the machine: after it completes, one lock reports it written,
    /// hands its chunks back and takes the batch queued meanwhile. Only when
    /// nothing was queued does the writer wait to be woken.
    async fn write_loop(self: Arc<Self>, conn: ConnId, mut socket: Writer, io: Arc<ConnIo>) {
        let mut next = None;
        loop {
            let batch = match next.take() {
                Some(batch) => batch,
                None => {
                    io.wake.notified().await;
                    let (outbound, closing) = {
                        let mut state = self.lock();
                        let outbound = state.take_outbound(conn);
                        // Read under the lock: a close comes after its last bytes.
                        let closing = io.closing.load(Ordering::Acquire);
                        // Protocol trace lines (`-V`) about what is written now.
                        self.release(state);
                        (outbound, closing)
                    };
                    match outbound {
                        Some(batch) => batch,
                        None if closing => {
                            self.finish_close(conn, socket, &io).await;
                            return;
                        }
                        None => {
                            // A websocket pong has no machine bytes to ride with.
                            if let Some(mut control) = io.ws.as_ref().and_then(WsOut::take_control)
                            {
                                if socket.write_all_buf(&mut control).await.is_err() {
                                    self.finish_close(conn, socket, &io).await;
                                    return;
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            let len = batch.len();
            let deadline = if io.route {
                &self.route_write_deadline_nanos
            } else {
                &self.write_deadline_nanos
            };
            let deadline = Duration::from_nanos(deadline.load(Ordering::Acquire));
            // A websocket connection's batch goes out as one binary frame
            // (compressed, it replaces the batch), after any pong queued
            // meanwhile; for TCP the prefix is empty.
            let mut batch = batch;
            let prefix = io
                .ws
                .as_ref()
                .map(|ws| ws.frame(&mut batch))
                .unwrap_or_default();
            let mut framed = bytes::Buf::chain(prefix, batch);
            let total = bytes::Buf::remaining(&framed);
            loop {
                // Vectored writes over the batch's chunks (for TCP; a TLS
                // stream takes them one record at a time).
                let written = tokio::select! {
                    written = tokio::time::timeout(deadline, socket.write_all_buf(&mut framed)) => written,
                    _ = io.abort_write.notified() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
                };
                match written {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => {
                        self.finish_close(conn, socket, &io).await;
                        return;
                    }
                    Err(_deadline) => {
                        let done = total - bytes::Buf::remaining(&framed);
                        // A route the machine keeps goes on with the rest.
                        let go_on = {
                            let mut state = self.lock();
                            let go_on = state.server.handle_write_stalled(conn, done);
                            self.finish_step(state);
                            go_on
                        };
                        if !go_on {
                            self.finish_close(conn, socket, &io).await;
                            return;
                        }
                    }
                }
            }
            let (_, batch) = framed.into_inner();
            let closing = {
                let mut state = self.lock();
                state.server.handle_written(conn, len);
                state.server.recycle_outbound(batch);
                next = state.take_outbound(conn);
                let closing = io.closing.load(Ordering::Acquire);
                self.release(state);
                closing
            };
            if next.is_none() && closing {
                self.finish_close(conn, socket, &io).await;
                return;
            }
        }
    }

    async fn finish_close(&self, conn: ConnId, mut socket: Writer, io: &ConnIo) {
        if let Some(ws) = &io.ws {
            // Pongs still queued, then the close frame: the last frame sent.
            let mut last = ws.take_final_frames();
            if !last.is_empty() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), socket.write_all_buf(&mut last))
                        .await;
            }
        }
        let _ = socket.shutdown().await;
        io.stop_reader.notify_one();
        let mut state = self.lock();
        state.report_closed(self.clock.now(), conn);
        self.finish_step(state);
    }

    /// Ends a step: carries out the actions it queued, releases the lock,
    /// then writes the log lines it queued. Writing (to a file, maybe) never
    /// holds up the other tasks; `log_order`, taken before the machine's lock
    /// is released, keeps lines in the order the machine queued them across
    /// tasks. A step that logged nothing allocates nothing here. Messages
    /// the step routed to JetStream are then handed to it by this thread
    /// (`crate::jetstream`: a stream's publish is stored where it is read).
    fn finish_step(&self, mut state: MutexGuard<'_, State>) {
        self.carry_out_actions(&mut state);
        let jetstream = match std::mem::take(&mut state.jetstream_queued) {
            true => state.jetstream.clone(),
            false => None,
        };
        self.release(state);
        if let Some(jetstream) = jetstream {
            jetstream.run_inline(self);
        }
    }

    /// Releases the machine's lock, then writes the log lines queued under
    /// it (see [`Runner::finish_step`]).
    fn release(&self, mut state: MutexGuard<'_, State>) {
        let records: Vec<LogRecord> = state.server.take_logs().collect();
        if records.is_empty() {
            return;
        }
        let order = self
            .log_order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(state);
        emit_logs(records);
        drop(order);
    }

    /// Drain the machine's actions. Called with the lock held after every step.
    fn carry_out_actions(&self, state: &mut State) {
        for write in state.server.take_resolver_writes() {
            // Only fails once the writer is gone (shutdown).
            let _ = self.resolver_writes.send(write);
        }
        for fetch in state.server.take_account_fetches() {
            // Only fails once the loop is gone (shutdown).
            let _ = self.account_fetches.send(fetch);
        }
        while let Some(action) = state.server.poll_action() {
            #[cfg(debug_assertions)]
            state.contract.action(&action);
            match action {
                Action::Transmit(conn) => {
                    if let Some(io) = state.conns.get(&conn) {
                        io.wake.notify_one();
                    }
                }
                Action::CheckPassword(conn) => {
                    if let Some(check) = state.server.take_password_check(conn) {
                        // Only fails once the loop is gone (shutdown).
                        let _ = self.password_checks.send((conn, check));
                    }
                }
                Action::Close { conn, reason } => {
                    if let Some(io) = state.conns.get(&conn) {
                        io.closing.store(true, Ordering::Release);
                        if let Some(ws) = &io.ws {
                            ws.closing_for(reason);
                        }
                        if reason.skips_flush() {
                            io.abort_write.notify_one();
                        }
                        io.wake.notify_one();
                    }
                }
            }
        }
        if let Some(accounts) = state.server.take_jetstream_accounts() {
            if let Some(jetstream) = &state.jetstream {
                // Before the messages routed after the change.
                let _ = jetstream.send(crate::jetstream::JsEvent::Accounts(accounts));
            }
        }
        while let Some(dial) = state.server.poll_dial() {
            // Fails only once the dial loop is gone (no cluster, shutdown).
            let _ = self.dials.send(dial);
        }
        if let Some(jetstream) = &state.jetstream {
            // Until JetStream is connected its messages wait in the machine.
            while let Some(msg) = state.server.poll_jetstream() {
                // Fails only once JetStream stopped (a reload).
                let _ = jetstream.send(crate::jetstream::JsEvent::Inbound(msg));
                state.jetstream_queued = true;
            }
        }
        if let Some(deadline) = state.server.poll_timeout() {
            let nanos = deadline.as_nanos();
            if nanos < self.timer_target.load(Ordering::Acquire) {
                self.timer_target.store(nanos, Ordering::Release);
                self.timer_wake.notify_one();
            }
        }
    }

    /// Run each password check (bcrypt: tens of milliseconds) on the
    /// blocking pool, at most one per core at a time, and hand the answer to
    /// the machine: a login storm costs CPU, never the lock.
    async fn password_check_loop(self: Arc<Self>) {
        let Some(mut queue) = self
            .password_check_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let slots = Arc::new(Semaphore::new(cores));
        while let Some((conn, check)) = queue.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let runner = self.clone();
            tokio::spawn(async move {
                let passed = tokio::task::spawn_blocking(move || check.run())
                    .await
                    .unwrap_or(false);
                drop(slot);
                let mut state = runner.lock();
                state
                    .server
                    .handle_password_checked(runner.clock.now(), conn, passed);
                runner.finish_step(state);
            });
        }
    }

    /// Make the directory resolver's file changes one at a time, in order,
    /// on the blocking pool, and tell the machine each one is done.
    async fn resolver_write_loop(self: Arc<Self>) {
        let Some(mut queue) = self
            .resolver_write_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        while let Some((id, write)) = queue.recv().await {
            let result = tokio::task::spawn_blocking(move || crate::resolver_files::apply(&write))
                .await
                .map_err(|error| error.to_string())
                .and_then(|result| result.map_err(|error| error.to_string()));
            let mut state = self.lock();
            state
                .server
                .handle_resolver_written(self.clock.now(), id, result);
            self.finish_step(state);
        }
    }

    /// Run each account fetch the machine asked for as a task of its own
    /// (each bounded by the fetch timeout) and hand the answer over.
    async fn account_fetch_loop(self: Arc<Self>) {
        let Some(mut queue) = self
            .account_fetch_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        while let Some(fetch) = queue.recv().await {
            let runner = self.clone();
            tokio::spawn(async move {
                let result = crate::account_fetch::fetch(&fetch).await;
                let mut state = runner.lock();
                state
                    .server
                    .handle_account_fetched(runner.clock.now(), &fetch.account, result);
                runner.finish_step(state);
            });
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            let target = self.timer_target.load(Ordering::Acquire);
            let sleep = if target == u64::MAX {
                Duration::from_secs(3600)
            } else {
                self.clock.until(Instant::from_nanos(target))
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.timer_wake.notified() => continue,
            }
            let mut state = self.lock();
            state.server.handle_timeout(self.clock.now());
            let next = state
                .server
                .poll_timeout()
                .map_or(u64::MAX, Instant::as_nanos);
            self.timer_target.store(next, Ordering::Release);
            self.finish_step(state);
        }
    }
}

/// A write deadline of `config` (`ServerConfig::write_deadline`) in
/// nanoseconds, for the writers' atomics.
fn write_deadline_nanos(config: &ServerConfig, route: bool) -> u64 {
    u64::try_from(config.write_deadline(route).as_nanos()).unwrap_or(u64::MAX)
}

/// The first byte the client sent, left unread, if one arrives within `wait`
/// (`None` also when the client closed without sending anything).
async fn first_byte(stream: &TcpStream, wait: Duration) -> Option<u8> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

/// Write the machine's log records the way nats-server prints them:
/// `127.0.0.1:5555 - cid:3 - "$G/user:a" - Publish Violation - Subject "x"`.
fn emit_logs(records: Vec<LogRecord>) {
    for record in records {
        let LogRecord {
            level,
            prefix,
            text,
            ..
        } = record;
        match level {
            LogLevel::Error => tracing::error!("{prefix}{text}"),
            LogLevel::Warn => tracing::warn!("{prefix}{text}"),
            LogLevel::Info => tracing::info!("{prefix}{text}"),
            LogLevel::Debug => tracing::debug!("{prefix}{text}"),
            LogLevel::Trace => tracing::trace!("{prefix}{text}"),
        }
    }
}
