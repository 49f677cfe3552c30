//! The JetStream scenarios (issue #16). Each run gets a server with a fresh
//! store directory, creates what it needs through the `$JS.API`, drives it
//! over the raw protocol and checks everything the server acknowledged or
//! delivered before it reports a number:
//!
//! - publish acks: no error, sequences increasing per publisher, and over the
//!   run exactly `1..=N`, each once; the stream's state agrees at the end;
//! - consumers: messages arrive in stream order, each once, each with the
//!   payload published at its sequence (one publisher fills the stream, so
//!   the payload's own counter is the stream sequence minus one);
//! - KV: every get returns the value of the key's last acknowledged put.
//!
//! A run is bounded by a message count and by time ([`JsParams::seconds`]): a
//! server that syncs every write (nats-server with `sync_interval: always`)
//! takes milliseconds per message, and the run then measures what it
//! acknowledged within the time, checked the same way.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BufMut;
use rnats_core::protocol::{write_pub, write_sub};
use tokio::task::JoinSet;

use crate::scenarios::{metric, payload_template, set_sequence, Metric, WRITE_BATCH_BYTES};
use crate::server::{self, Kind, ServerProcess};
use crate::wire::{drain_frames, Conn, Frame};

/// The stream every scenario but `js-kv` and `js-many` publishes into.
const STREAM: &str = "BENCH";
/// Its subjects; publisher `p` publishes on `bench.p<p>`.
const STREAM_SUBJECTS: &str = "bench.>";
/// The sid of the API replies on an API connection.
const API_SID: u64 = 1_000_000;
/// The sid of publish acks on a publisher's connection.
const ACK_SID: u64 = 1;
/// The sid of consumer deliveries.
const DELIVER_SID: u64 = 2;
/// How long an API request may take before the run fails.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// The in-flight window that fills a stream before a consume or restart run.
const FILL_WINDOW: usize = 4096;

/// The JetStream scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsScenario {
    /// Async publish with acks and a window of publishes in flight.
    Pub,
    /// One publisher waiting for each ack: latency.
    PubSync,
    /// Consuming a filled stream: pull, push with flow control, ordered.
    Consume,
    /// KV put and get.
    Kv,
    /// Start-up time and memory after a clean stop and after SIGKILL.
    Restart,
    /// Many streams and consumers: API latency and memory.
    Many,
}

impl JsScenario {
    pub const ALL: [JsScenario; 6] = [
        JsScenario::Pub,
        JsScenario::PubSync,
        JsScenario::Consume,
        JsScenario::Kv,
        JsScenario::Restart,
        JsScenario::Many,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JsScenario::Pub => "js-pub",
            JsScenario::PubSync => "js-pub-sync",
            JsScenario::Consume => "js-consume",
            JsScenario::Kv => "js-kv",
            JsScenario::Restart => "js-restart",
            JsScenario::Many => "js-many",
        }
    }

    pub fn from_name(name: &str) -> Option<JsScenario> {
        JsScenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the scenario's numbers depend on how the server syncs. Those
    /// that do not (start-up, the API) run with each server's default only.
    pub fn depends_on_sync(self) -> bool {
        !matches!(self, JsScenario::Restart | JsScenario::Many)
    }
}

/// How a stream stores its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Storage {
    File,
    Memory,
}

impl Storage {
    fn json(self) -> &'static str {
        match self {
            Storage::File => "file",
            Storage::Memory => "memory",
        }
    }
}

/// How a js-consume run reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsumeMode {
    /// A durable pull consumer, explicit acks, fetches of this many.
    Pull(u64),
    /// A push consumer with flow control and explicit acks.
    Push,
    /// An ordered consumer as the clients make it: push, flow control, no acks.
    Ordered,
}

/// One JetStream case: a scenario and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JsCase {
    pub scenario_index: usize,
    pub payload: usize,
    /// Publishers (js-pub) or clients (js-kv).
    pub clients: usize,
    /// Publishes in flight per publisher (js-pub).
    pub window: usize,
    pub storage: Storage,
    pub consume: ConsumeMode,
    /// Streams the publishers spread over (js-pub): publisher `i` publishes
    /// into stream `i % streams`.
    pub streams: usize,
}

impl JsCase {
    /// What sets this case apart from its scenario's others, for the table.
    pub fn shape(&self, scenario: JsScenario) -> String {
        let storage = match self.storage {
            Storage::File => "file",
            Storage::Memory => "mem",
        };
        let size = crate::size_label(self.payload);
        match scenario {
            JsScenario::Pub if self.streams > 1 => format!(
                "{size}, {} pub, window {}, {storage}, {} streams",
                self.clients, self.window, self.streams
            ),
            JsScenario::Pub => format!(
                "{size}, {} pub, window {}, {storage}",
                self.clients, self.window
            ),
            JsScenario::PubSync => format!("{size}, {storage}"),
            JsScenario::Consume => match self.consume {
                ConsumeMode::Pull(batch) => format!("{size}, pull batch {batch}"),
                ConsumeMode::Push => format!("{size}, push + flow control"),
                ConsumeMode::Ordered => format!("{size}, ordered"),
            },
            JsScenario::Kv => format!("{size}, {} client(s)", self.clients),
            JsScenario::Restart | JsScenario::Many => "-".into(),
        }
    }
}

/// The sizes of JetStream runs.
#[derive(Debug, Clone)]
pub struct JsParams {
    /// Messages per js-pub run (capped by `bytes_max`) and per js-pub-sync run.
    pub messages: u64,
    /// Messages a js-consume run fills the stream with.
    pub consume_messages: u64,
    /// Messages a js-restart run fills the stream with.
    pub restart_messages: u64,
    /// Payload bytes a run publishes at most.
    pub bytes_max: u64,
    /// Operations per client per phase in js-kv.
    pub kv_ops: u64,
    /// Keys per client in js-kv.
    pub kv_keys: u64,
    /// Streams in js-many, and consumers on each.
    pub many_streams: u64,
    pub many_consumers: u64,
    /// Time bound of one publishing or consuming phase.
    pub seconds: Duration,
    /// Where the fresh store directories go.
    pub store_parent: PathBuf,
}

impl JsParams {
    fn messages_for(&self, payload: usize, messages: u64) -> u64 {
        messages.min(self.bytes_max / payload as u64).max(1)
    }
}

/// How much a server syncs: its own default, or the other side's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// rnats: ack after the fsync that covers the message. nats-server: sync
    /// every 2 minutes, ack before.
    Default,
    /// rnats: `sync_interval: "2m"` (the reference's default trade-off).
    /// nats-server: `sync_interval: always`.
    Other,
}

impl Durability {
    pub fn label(self, kind: Kind) -> &'static str {
        match (kind, self) {
            (Kind::Rnats, Durability::Default) => "rnats durable",
            (Kind::Rnats, Durability::Other) => "rnats 2m",
            (Kind::Nats, Durability::Default) => "nats default",
            (Kind::Nats, Durability::Other) => "nats always",
        }
    }

    fn sync_line(self, kind: Kind) -> &'static str {
        match (kind, self) {
            (_, Durability::Default) => "",
            (Kind::Rnats, Durability::Other) => "sync_interval: \"2m\"",
            (Kind::Nats, Durability::Other) => "sync_interval: always",
        }
    }
}

/// A fresh store directory and the configuration file naming it; both are
/// removed when dropped.
pub struct StoreDir {
    root: PathBuf,
    config: PathBuf,
}

static STORE_DIRS: AtomicU64 = AtomicU64::new(0);

impl StoreDir {
    pub fn create(parent: &Path, kind: Kind, durability: Durability) -> Result<StoreDir, String> {
        let n = STORE_DIRS.fetch_add(1, Ordering::Relaxed);
        let root = parent.join(format!("rnats-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("store"))
            .map_err(|e| format!("create {}: {e}", root.display()))?;
        let config = root.join("js.conf");
        let text = format!(
            "jetstream {{\n  store_dir: \"{}\"\n  {}\n}}\n",
            root.join("store").display(),
            durability.sync_line(kind)
        );
        std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
        Ok(StoreDir { root, config })
    }

    pub fn args(&self) -> Vec<String> {
        vec!["-c".into(), self.config.display().to_string()]
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The server a run drives, with what it takes to start it again.
pub struct JsServer<'a> {
    pub process: &'a mut Option<ServerProcess>,
    pub binary: &'a Path,
    pub args: Vec<String>,
}

impl JsServer<'_> {
    fn addr(&self) -> std::net::SocketAddr {
        self.process.as_ref().expect("server running").addr
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("server running").pid()
    }
}

/// Runs one JetStream case.
pub async fn run(
    scenario: JsScenario,
    case: JsCase,
    server: JsServer<'_>,
    params: &JsParams,
) -> Result<Vec<Metric>, String> {
    match scenario {
        JsScenario::Pub => {
            let messages = params.messages_for(case.payload, params.messages);
            publish_run(&server, case, messages, case.clients, case.window, params).await
        }
        JsScenario::PubSync => {
            let messages = params.messages_for(case.payload, params.messages);
            publish_run(&server, case, messages, 1, 1, params).await
        }
        JsScenario::Consume => consume_run(&server, case, params).await,
        JsScenario::Kv => kv_run(&server, case, params).await,
        JsScenario::Restart => restart_run(server, case, params).await,
        JsScenario::Many => many_run(&server, params).await,
    }
}

// ----- the API -----

/// A connection for `$JS.API` requests, one at a time.
struct Api {
    conn: Conn,
    /// This connection's own reply subject.
    inbox: Vec<u8>,
}

static INBOXES: AtomicU64 = AtomicU64::new(0);

impl Api {
    async fn connect(addr: std::net::SocketAddr) -> Result<Api, String> {
        let mut conn = Conn::connect(addr).await?;
        let inbox = format!(
            "_INBOX.bench.api{}",
            INBOXES.fetch_add(1, Ordering::Relaxed)
        );
        write_sub(
            &mut conn.out,
            inbox.as_bytes(),
            None,
            API_SID.to_string().as_bytes(),
        );
        conn.ping_pong().await?;
        Ok(Api {
            conn,
            inbox: inbox.into_bytes(),
        })
    }

    /// Sends a request and returns the reply's payload; an API error (a JSON
    /// `error`) or no reply within [`API_TIMEOUT`] fails.
    async fn request(&mut self, subject: &str, body: &str) -> Result<Vec<u8>, String> {
        let reply = self.request_raw(subject, body.as_bytes()).await?.1;
        if memchr::memmem::find(&reply, b"\"error\"").is_some() {
            return Err(format!(
                "{subject}: {}",
                String::from_utf8_lossy(&reply[..reply.len().min(300)])
            ));
        }
        Ok(reply)
    }

    /// Sends a request; returns the reply's headers and payload as they came.
    async fn request_raw(
        &mut self,
        subject: &str,
        body: &[u8],
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), String> {
        write_pub(
            &mut self.conn.out,
            subject.as_bytes(),
            Some(&self.inbox),
            body,
        );
        self.conn.flush().await?;
        let deadline = tokio::time::Instant::now() + API_TIMEOUT;
        loop {
            let mut answer = None;
            let mut problem = None;
            let out = &mut self.conn.out;
            drain_frames(&mut self.conn.inbuf, |frame| {
                match frame {
                    Frame::Msg {
                        sid: API_SID,
                        headers,
                        payload,
                        ..
                    } if answer.is_none() => {
                        answer = Some((headers.map(<[u8]>::to_vec), payload.to_vec()))
                    }
                    other => problem = problem.take().or(routine_frame(&other, out)),
                }
                Ok(())
            })?;
            if let Some(problem) = problem {
                return Err(format!("{subject}: {problem}"));
            }
            self.conn.flush().await?;
            if let Some(answer) = answer {
                return Ok(answer);
            }
            match tokio::time::timeout_at(deadline, self.conn.read_more()).await {
                Ok(read) => {
                    read?;
                }
                Err(_) => return Err(format!("{subject}: no reply within {API_TIMEOUT:?}")),
            }
        }
    }

    async fn create_stream(&mut self, name: &str, config: &str) -> Result<(), String> {
        self.request(&format!("$JS.API.STREAM.CREATE.{name}"), config)
            .await
            .map(drop)
    }

    /// The stream's (messages, last sequence).
    async fn stream_state(&mut self, name: &str) -> Result<(u64, u64), String> {
        let reply = self
            .request(&format!("$JS.API.STREAM.INFO.{name}"), "")
            .await?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply).map_err(|e| format!("stream info: {e}"))?;
        let field = |name: &str| {
            info["state"][name]
                .as_u64()
                .ok_or(format!("stream info without state.{name}"))
        };
        Ok((field("messages")?, field("last_seq")?))
    }
}

/// What every read loop does with a frame that is not its data: answer a
/// PING, pass over PONG, INFO and +OK, and name anything else a problem.
fn routine_frame(frame: &Frame<'_>, out: &mut bytes::BytesMut) -> Option<String> {
    match frame {
        Frame::Msg { .. } => Some("an unexpected message".to_string()),
        Frame::Ping => {
            out.put_slice(b"PONG\r\n");
            None
        }
        Frame::Err(text) => Some(format!("-ERR {}", String::from_utf8_lossy(text))),
        Frame::Pong | Frame::Ignored => None,
    }
}

fn stream_config(storage: Storage) -> String {
    named_stream_config(STREAM, STREAM_SUBJECTS, storage)
}

fn named_stream_config(name: &str, subjects: &str, storage: Storage) -> String {
    format!(
        "{{\"name\":\"{name}\",\"subjects\":[\"{subjects}\"],\"storage\":\"{}\",\"num_replicas\":1}}",
        storage.json()
    )
}

/// The name and subjects of stream `index` of `streams` (js-pub): the one
/// stream is `BENCH` on `bench.>`, several are `BENCH<i>` on `bench<i>.>`.
fn pub_stream(index: usize, streams: usize) -> (String, String) {
    match streams {
        1 => (STREAM.to_string(), STREAM_SUBJECTS.to_string()),
        _ => (format!("{STREAM}{index}"), format!("bench{index}.>")),
    }
}

/// The sequence in a publish ack, or the error it carries.
fn ack_sequence(body: &[u8]) -> Result<u64, String> {
    let shown = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if memchr::memmem::find(body, b"\"error\"").is_some() {
        return Err(format!("publish refused: {}", shown()));
    }
    let at =
        memchr::memmem::find(body, b"\"seq\":").ok_or_else(|| format!("bad ack {}", shown()))?;
    let digits: &[u8] = &body[at + 6..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("bad ack {}", shown()))
}

// ----- publishing -----

/// What one publisher saw.
struct PubReport {
    publisher: u32,
    /// The acknowledged stream sequences, in the order the acks came.
    sequences: Vec<u64>,
    /// Publish-to-ack latency of each message, ns (only when asked for).
    latencies_ns: Vec<u64>,
    last_ack: Instant,
}

/// Publishes up to `count` messages on `subject`, at most `window` unacked,
/// until `deadline`; then waits for every outstanding ack.
#[allow(clippy::too_many_arguments)]
async fn js_publisher(
    mut conn: Conn,
    publisher: u32,
    subject: Vec<u8>,
    count: u64,
    payload_size: usize,
    window: usize,
    deadline: Instant,
    record_latency: bool,
) -> Result<PubReport, String> {
    let reply = format!("_INBOX.bench.ack.{publisher}").into_bytes();
    write_sub(&mut conn.out, &reply, None, ACK_SID.to_string().as_bytes());
    conn.ping_pong().await?;
    let mut payload = payload_template(payload_size, publisher);
    let mut sequences = Vec::with_capacity(count.min(1 << 24) as usize);
    let mut latencies_ns = Vec::new();
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut stop_at = count;
    let mut last_ack = Instant::now();
    loop {
        while sent < stop_at && sent - acked < window as u64 {
            if Instant::now() >= deadline {
                stop_at = sent;
                break;
            }
            set_sequence(&mut payload, sent);
            write_pub(&mut conn.out, &subject, Some(&reply), &payload);
            if record_latency {
                sent_at.push_back(Instant::now());
            }
            sent += 1;
            if conn.out.len() >= WRITE_BATCH_BYTES {
                conn.flush().await?;
            }
        }
        conn.flush().await?;
        if acked == sent && sent >= stop_at {
            break;
        }
        conn.read_more().await?;
        let now = Instant::now();
        let mut problem = None;
        let out = &mut conn.out;
        drain_frames(&mut conn.inbuf, |frame| {
            match frame {
                Frame::Msg {
                    sid: ACK_SID,
                    payload: body,
                    ..
                } => {
                    let seq = ack_sequence(body)?;
                    if let Some(&last) = sequences.last() {
                        if seq <= last {
                            return Err(format!(
                                "publisher {publisher}: ack for sequence {seq} after {last}"
                            ));
                        }
                    }
                    sequences.push(seq);
                    acked += 1;
                    if let Some(at) = sent_at.pop_front() {
                        latencies_ns.push(now.duration_since(at).as_nanos() as u64);
                    }
                }
                other => problem = problem.take().or(routine_frame(&other, out)),
            }
            Ok(())
        })?;
        if let Some(problem) = problem {
            return Err(format!("publisher {publisher}: {problem}"));
        }
        if acked > sent {
            return Err(format!(
                "publisher {publisher}: {acked} acks for {sent} publishes"
            ));
        }
        last_ack = now;
    }
    Ok(PubReport {
        publisher,
        sequences,
        latencies_ns,
        last_ack,
    })
}

/// Checks the acks of all publishers together: the sequences are exactly
/// `1..=total`, each once, and the stream holds them all. Returns `total`.
async fn check_acks(
    api: &mut Api,
    stream: &str,
    reports: &[&PubReport],
    already: u64,
) -> Result<u64, String> {
    let mut all: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.sequences.iter().copied())
        .collect();
    all.sort_unstable();
    for (i, &seq) in all.iter().enumerate() {
        let expected = already + i as u64 + 1;
        if seq != expected {
            return Err(format!(
                "acknowledged sequences: {seq} where {expected} was expected (a gap or a duplicate)"
            ));
        }
    }
    let total = already + all.len() as u64;
    let (messages, last_seq) = api.stream_state(stream).await?;
    if messages != total || last_seq != total {
        return Err(format!(
            "the stream holds {messages} messages up to {last_seq}, {total} were acknowledged"
        ));
    }
    Ok(all.len() as u64)
}

/// Publishes with `publishers` connections into a new stream; returns the
/// reports and when publishing started.
#[allow(clippy::too_many_arguments)]
async fn publish_phase(
    addr: std::net::SocketAddr,
    payload: usize,
    messages: u64,
    publishers: usize,
    streams: usize,
    window: usize,
    seconds: Duration,
    record_latency: bool,
) -> Result<(Vec<PubReport>, Instant), String> {
    let per_publisher = (messages / publishers as u64).max(1);
    let mut conns = Vec::new();
    for _ in 0..publishers {
        conns.push(Conn::connect(addr).await?);
    }
    let start = Instant::now();
    let deadline = start + seconds;
    let mut tasks = JoinSet::new();
    for (id, conn) in conns.into_iter().enumerate() {
        let subjects = pub_stream(id % streams, streams).1;
        let prefix = subjects.trim_end_matches(">");
        tasks.spawn(js_publisher(
            conn,
            id as u32,
            format!("{prefix}p{id}").into_bytes(),
            per_publisher,
            payload,
            window,
            deadline,
            record_latency,
        ));
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        reports.push(done.map_err(|e| format!("publisher panicked: {e}"))??);
    }
    reports.sort_by_key(|report| report.publisher);
    Ok((reports, start))
}

/// js-pub and js-pub-sync.
async fn publish_run(
    server: &JsServer<'_>,
    case: JsCase,
    messages: u64,
    publishers: usize,
    window: usize,
    params: &JsParams,
) -> Result<Vec<Metric>, String> {
    let mut api = Api::connect(server.addr()).await?;
    let streams = case.streams.clamp(1, publishers);
    for index in 0..streams {
        let (name, subjects) = pub_stream(index, streams);
        api.create_stream(&name, &named_stream_config(&name, &subjects, case.storage))
            .await?;
    }
    let cpu_before = server::cpu_ns(server.pid());
    let sync = window == 1;
    let (reports, start) = publish_phase(
        server.addr(),
        case.payload,
        messages,
        publishers,
        streams,
        window,
        params.seconds,
        sync,
    )
    .await?;
    let cpu_after = server::cpu_ns(server.pid());
    let mut total = 0;
    for index in 0..streams {
        let ours: Vec<&PubReport> = reports
            .iter()
            .filter(|report| report.publisher as usize % streams == index)
            .collect();
        total += check_acks(&mut api, &pub_stream(index, streams).0, &ours, 0).await?;
    }
    let end = reports.iter().map(|r| r.last_ack).max().unwrap_or(start);
    let rate = total as f64 / end.duration_since(start).as_secs_f64().max(1e-9);
    let mut metrics = vec![
        metric("msgs/s", rate, "msg/s", true),
        metric("MB/s", rate * case.payload as f64 / 1e6, "MB/s", true),
    ];
    if sync {
        let mut latencies: Vec<u64> = reports
            .iter()
            .flat_map(|r| r.latencies_ns.iter().copied())
            .collect();
        latencies.sort_unstable();
        metrics.extend(latency_metrics(&latencies));
    }
    metrics.extend(cpu_per("server CPU/msg", cpu_before, cpu_after, total));
    Ok(metrics)
}

/// The server's CPU time between two samples per operation, when both
/// samples were taken.
fn cpu_per(
    name: &'static str,
    before: Option<u64>,
    after: Option<u64>,
    operations: u64,
) -> Option<Metric> {
    let (before, after) = (before?, after?);
    let per = after.saturating_sub(before) as f64 / operations.max(1) as f64;
    Some(metric(name, per, "ns", false))
}

fn latency_metrics(sorted_ns: &[u64]) -> Vec<Metric> {
    let quantile = |q: f64| {
        if sorted_ns.is_empty() {
            return 0.0;
        }
        let index = ((sorted_ns.len() as f64 * q).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
        sorted_ns[index] as f64 / 1000.0
    };
    vec![
        metric("p50", quantile(0.50), "us", false),
        metric("p99", quantile(0.99), "us", false),
        metric("p99.9", quantile(0.999), "us", false),
    ]
}

/// Fills the stream (created here) with up to `messages` messages from one
/// publisher within the time bound; returns how many it holds.
async fn fill_stream(
    addr: std::net::SocketAddr,
    api: &mut Api,
    payload: usize,
    messages: u64,
    storage: Storage,
    seconds: Duration,
) -> Result<u64, String> {
    api.create_stream(STREAM, &stream_config(storage)).await?;
    let (reports, _) =
        publish_phase(addr, payload, messages, 1, 1, FILL_WINDOW, seconds, false).await?;
    let reports: Vec<&PubReport> = reports.iter().collect();
    check_acks(api, STREAM, &reports, 0).await
}

// ----- consuming -----

/// Checks consumed payloads: the publisher's counter runs 0, 1, 2, ... in
/// stream order (one publisher filled the stream).
struct ConsumeCheck {
    payload_size: usize,
    next: u64,
}

impl ConsumeCheck {
    fn check(&mut self, payload: &[u8]) -> Result<(), String> {
        if payload.len() != self.payload_size {
            return Err(format!(
                "a payload of {} bytes, {} expected",
                payload.len(),
                self.payload_size
            ));
        }
        let seq = u64::from_le_bytes(payload[4..12].try_into().expect("8 bytes"));
        if seq != self.next {
            return Err(format!(
                "message {seq} delivered where {} was expected (out of order, lost or duplicated)",
                self.next
            ));
        }
        self.next += 1;
        Ok(())
    }
}

/// The `Nats-Consumer-Stalled` subject in a heartbeat's headers: flow control
/// waits for an answer there.
fn stalled_subject(headers: &[u8]) -> Option<&[u8]> {
    let name = b"Nats-Consumer-Stalled:";
    let at = memchr::memmem::find(headers, name)?;
    let rest = &headers[at + name.len()..];
    let end = memchr::memchr(b'\r', rest).unwrap_or(rest.len());
    Some(rest[..end].trim_ascii())
}

async fn consume_run(
    server: &JsServer<'_>,
    case: JsCase,
    params: &JsParams,
) -> Result<Vec<Metric>, String> {
    let addr = server.addr();
    let mut api = Api::connect(addr).await?;
    let messages = params.messages_for(case.payload, params.consume_messages);
    let stored = fill_stream(
        addr,
        &mut api,
        case.payload,
        messages,
        Storage::File,
        params.seconds,
    )
    .await?;

    let mut conn = Conn::connect(addr).await?;
    let inbox = b"_INBOX.bench.deliver";
    write_sub(
        &mut conn.out,
        inbox,
        None,
        DELIVER_SID.to_string().as_bytes(),
    );
    conn.ping_pong().await?;
    let inbox = std::str::from_utf8(inbox).expect("ascii");
    let (create_subject, config) = match case.consume {
        ConsumeMode::Pull(_) => (
            format!("$JS.API.CONSUMER.CREATE.{STREAM}.PULL"),
            "{\"durable_name\":\"PULL\",\"ack_policy\":\"explicit\",\"deliver_policy\":\"all\"}"
                .to_string(),
        ),
        ConsumeMode::Push => (
            format!("$JS.API.CONSUMER.CREATE.{STREAM}.PUSH"),
            format!(
                "{{\"durable_name\":\"PUSH\",\"deliver_subject\":\"{inbox}\",\"ack_policy\":\"explicit\",\"deliver_policy\":\"all\",\"flow_control\":true,\"idle_heartbeat\":5000000000}}"
            ),
        ),
        ConsumeMode::Ordered => (
            format!("$JS.API.CONSUMER.CREATE.{STREAM}"),
            format!(
                "{{\"deliver_subject\":\"{inbox}\",\"ack_policy\":\"none\",\"deliver_policy\":\"all\",\"flow_control\":true,\"idle_heartbeat\":5000000000,\"max_deliver\":1,\"mem_storage\":true,\"num_replicas\":1,\"inactive_threshold\":300000000000}}"
            ),
        ),
    };
    let body = format!("{{\"stream_name\":\"{STREAM}\",\"config\":{config}}}");

    let cpu_before = server::cpu_ns(server.pid());
    let start = Instant::now();
    // A push consumer starts delivering as soon as it exists.
    api.request(&create_subject, &body).await?;
    let mut check = ConsumeCheck {
        payload_size: case.payload,
        next: 0,
    };
    let explicit_acks = !matches!(case.consume, ConsumeMode::Ordered);
    let mut asked = 0u64;
    // Flow-control requests answered, and heartbeats that found the
    // consumer stalled on one (push cases; both zero for pull).
    let (mut fc_requests, mut stalls) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while check.next < stored {
        if let ConsumeMode::Pull(batch) = case.consume {
            if asked == check.next {
                let batch = batch.min(stored - check.next);
                let request = format!("{{\"batch\":{batch},\"expires\":30000000000}}");
                write_pub(
                    &mut conn.out,
                    format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.PULL").as_bytes(),
                    Some(inbox.as_bytes()),
                    request.as_bytes(),
                );
                asked += batch;
            }
        }
        conn.flush().await?;
        match tokio::time::timeout(Duration::from_secs(10), conn.read_more()).await {
            Ok(read) => {
                read?;
            }
            Err(_) => return Err(format!("stalled at {} of {stored} messages", check.next)),
        }
        let before = check.next;
        let mut problem = None;
        let out = &mut conn.out;
        drain_frames(&mut conn.inbuf, |frame| {
            match frame {
                Frame::Msg {
                    sid: DELIVER_SID,
                    reply,
                    headers,
                    payload,
                } => {
                    if let (true, Some(headers)) = (payload.is_empty(), headers) {
                        // Status: flow control asks for an answer on its
                        // reply; a heartbeat of a stalled consumer names one.
                        if let Some(reply) = reply {
                            fc_requests += 1;
                            write_pub(out, reply, None, b"");
                        } else if let Some(subject) = stalled_subject(headers) {
                            stalls += 1;
                            write_pub(out, subject, None, b"");
                        } else if !headers.starts_with(b"NATS/1.0 100") {
                            problem = Some(format!(
                                "status {:?}",
                                String::from_utf8_lossy(&headers[..headers.len().min(60)])
                            ));
                        }
                        return Ok(());
                    }
                    check.check(payload)?;
                    if explicit_acks {
                        let reply = reply.ok_or("a message without an ack subject")?;
                        write_pub(out, reply, None, b"");
                    }
                }
                other => problem = problem.take().or(routine_frame(&other, out)),
            }
            Ok(())
        })?;
        if let Some(problem) = problem {
            return Err(problem);
        }
        if check.next > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(10) {
            return Err(format!("stalled at {} of {stored} messages", check.next));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    conn.ping_pong().await?;
    let cpu_after = server::cpu_ns(server.pid());
    let rate = stored as f64 / seconds.max(1e-9);
    let mut metrics = vec![
        metric("msgs/s", rate, "msg/s", true),
        metric("MB/s", rate * case.payload as f64 / 1e6, "MB/s", true),
        metric("messages", stored as f64, "msgs", true),
    ];
    if !matches!(case.consume, ConsumeMode::Pull(_)) {
        metrics.push(metric(
            "flow-control requests",
            fc_requests as f64,
            "requests",
            false,
        ));
        metrics.push(metric(
            "stalled heartbeats",
            stalls as f64,
            "heartbeats",
            false,
        ));
    }
    metrics.extend(cpu_per(
        "server CPU/msg",
        cpu_before,
        cpu_after,
        stored as u64,
    ));
    Ok(metrics)
}

// ----- KV -----

const KV_BUCKET: &str = "bench";

/// A KV client: puts then gets on keys of its own, one operation at a time,
/// as the clients' `put` and `get` do.
async fn kv_client(
    addr: std::net::SocketAddr,
    client: u32,
    payload_size: usize,
    ops: u64,
    keys: u64,
    seconds: Duration,
) -> Result<(u64, Duration, u64, Duration), String> {
    let mut api = Api::connect(addr).await?;
    let mut payload = payload_template(payload_size, client);
    // The counter of the last acknowledged put of each key.
    let mut last = vec![None::<u64>; keys as usize];
    let mut last_seq = 0;
    let start = Instant::now();
    let deadline = start + seconds;
    let mut puts = 0;
    while puts < ops && Instant::now() < deadline {
        let key = puts % keys;
        set_sequence(&mut payload, puts);
        let subject = format!("$KV.{KV_BUCKET}.c{client}.k{key}");
        let (_, reply) = api.request_raw(&subject, &payload).await?;
        let seq = ack_sequence(&reply)?;
        if seq <= last_seq {
            return Err(format!(
                "client {client}: put acked with {seq} after {last_seq}"
            ));
        }
        last_seq = seq;
        last[key as usize] = Some(puts);
        puts += 1;
    }
    let put_time = start.elapsed();
    let start = Instant::now();
    let mut gets = 0;
    let deadline = start + seconds;
    while gets < ops && Instant::now() < deadline {
        let key = gets % keys;
        let subject = format!("$JS.API.DIRECT.GET.KV_{KV_BUCKET}.$KV.{KV_BUCKET}.c{client}.k{key}");
        let (headers, value) = api.request_raw(&subject, b"").await?;
        match last[key as usize] {
            Some(counter) => {
                let got = value
                    .get(4..12)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                if value.len() != payload_size || got != Some(counter) {
                    return Err(format!(
                        "client {client}: get of key {key} returned {got:?} ({} bytes), the last put was {counter}",
                        value.len()
                    ));
                }
            }
            None => {
                let status = headers.as_deref().unwrap_or_default();
                if !status.starts_with(b"NATS/1.0 404") {
                    return Err(format!(
                        "client {client}: key {key} was never put but a get found it"
                    ));
                }
            }
        }
        gets += 1;
    }
    Ok((puts, put_time, gets, start.elapsed()))
}

async fn kv_run(
    server: &JsServer<'_>,
    case: JsCase,
    params: &JsParams,
) -> Result<Vec<Metric>, String> {
    let addr = server.addr();
    let mut api = Api::connect(addr).await?;
    // The stream the clients' `create_key_value` makes for a bucket.
    let config = format!(
        "{{\"name\":\"KV_{KV_BUCKET}\",\"subjects\":[\"$KV.{KV_BUCKET}.>\"],\"max_msgs_per_subject\":1,\"discard\":\"new\",\"allow_direct\":true,\"allow_rollup_hdrs\":true,\"deny_delete\":true,\"duplicate_window\":120000000000,\"storage\":\"file\",\"num_replicas\":1}}"
    );
    api.create_stream(&format!("KV_{KV_BUCKET}"), &config)
        .await?;
    let cpu_before = server::cpu_ns(server.pid());
    let mut tasks = JoinSet::new();
    for client in 0..case.clients {
        tasks.spawn(kv_client(
            addr,
            client as u32,
            case.payload,
            params.kv_ops,
            params.kv_keys,
            params.seconds,
        ));
    }
    let (mut puts, mut put_time, mut gets, mut get_time) = (0, Duration::ZERO, 0, Duration::ZERO);
    while let Some(done) = tasks.join_next().await {
        let (p, pt, g, gt) = done.map_err(|e| format!("KV client panicked: {e}"))??;
        puts += p;
        gets += g;
        put_time = put_time.max(pt);
        get_time = get_time.max(gt);
    }
    let cpu_after = server::cpu_ns(server.pid());
    let mut metrics = vec![
        metric(
            "puts/s",
            puts as f64 / put_time.as_secs_f64().max(1e-9),
            "op/s",
            true,
        ),
        metric(
            "gets/s",
            gets as f64 / get_time.as_secs_f64().max(1e-9),
            "op/s",
            true,
        ),
    ];
    metrics.extend(cpu_per("server CPU/op", cpu_before, cpu_after, puts + gets));
    Ok(metrics)
}

// ----- restart -----

/// Starts the server again on the same store and measures until the stream
/// answers with every message: (milliseconds, peak RSS in MiB).
async fn time_start(server: &mut JsServer<'_>, expected: u64) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let process = ServerProcess::start_with(server.binary, &server.args)?;
    *server.process = Some(process);
    let mut api = Api::connect(server.addr()).await?;
    loop {
        // Until JetStream has recovered, the API may answer with an error.
        if let Ok((messages, last)) = api.stream_state(STREAM).await {
            if messages == expected && last == expected {
                break;
            }
            if messages > expected || started.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "after restart the stream holds {messages} messages up to {last}, {expected} expected"
                ));
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the stream did not come back within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let peak = server::memory_kib(server.pid())
        .map(|(_, hwm)| hwm as f64 / 1024.0)
        .unwrap_or(0.0);
    Ok((millis, peak))
}

async fn restart_run(
    mut server: JsServer<'_>,
    case: JsCase,
    params: &JsParams,
) -> Result<Vec<Metric>, String> {
    let mut api = Api::connect(server.addr()).await?;
    let messages = params.messages_for(case.payload, params.restart_messages);
    let stored = fill_stream(
        server.addr(),
        &mut api,
        case.payload,
        messages,
        Storage::File,
        params.seconds,
    )
    .await?;
    drop(api);
    server
        .process
        .take()
        .expect("server running")
        .stop(Duration::from_secs(60))?;
    let (after_stop, rss_stop) = time_start(&mut server, stored).await?;
    server.process.take().expect("server running").kill();
    let (after_kill, rss_kill) = time_start(&mut server, stored).await?;
    Ok(vec![
        metric("start after stop", after_stop, "ms", false),
        metric("peak RSS after stop", rss_stop, "MiB", false),
        metric("start after SIGKILL", after_kill, "ms", false),
        metric("peak RSS after SIGKILL", rss_kill, "MiB", false),
        metric("messages", stored as f64, "msgs", true),
    ])
}

// ----- many streams and consumers -----

async fn many_run(server: &JsServer<'_>, params: &JsParams) -> Result<Vec<Metric>, String> {
    let mut api = Api::connect(server.addr()).await?;
    let rss_before = server::memory_kib(server.pid()).map(|(rss, _)| rss);
    let mut stream_ns = Vec::new();
    for s in 0..params.many_streams {
        let config = format!(
            "{{\"name\":\"M{s}\",\"subjects\":[\"many.{s}.>\"],\"storage\":\"file\",\"num_replicas\":1}}"
        );
        let at = Instant::now();
        api.create_stream(&format!("M{s}"), &config).await?;
        stream_ns.push(at.elapsed().as_nanos() as u64);
    }
    let mut consumer_ns = Vec::new();
    for s in 0..params.many_streams {
        for c in 0..params.many_consumers {
            let body = format!(
                "{{\"stream_name\":\"M{s}\",\"config\":{{\"durable_name\":\"C{c}\",\"ack_policy\":\"explicit\",\"filter_subject\":\"many.{s}.{c}\"}}}}"
            );
            let at = Instant::now();
            api.request(
                &format!("$JS.API.CONSUMER.CREATE.M{s}.C{c}.many.{s}.{c}"),
                &body,
            )
            .await?;
            consumer_ns.push(at.elapsed().as_nanos() as u64);
        }
    }
    // Every stream and consumer is there.
    let reply = api.request("$JS.API.STREAM.NAMES", "").await?;
    let names: serde_json::Value =
        serde_json::from_slice(&reply).map_err(|e| format!("stream names: {e}"))?;
    if names["total"].as_u64() != Some(params.many_streams) {
        return Err(format!(
            "STREAM.NAMES reports {} streams, {} created",
            names["total"], params.many_streams
        ));
    }
    let mut info_ns = Vec::new();
    for s in (0..params.many_streams).step_by(((params.many_streams / 100).max(1)) as usize) {
        let at = Instant::now();
        let reply = api
            .request(&format!("$JS.API.CONSUMER.INFO.M{s}.C0"), "")
            .await?;
        info_ns.push(at.elapsed().as_nanos() as u64);
        if memchr::memmem::find(&reply, b"\"num_pending\"").is_none() {
            return Err("consumer info without num_pending".into());
        }
    }
    let rss_after = server::memory_kib(server.pid()).map(|(rss, _)| rss);
    stream_ns.sort_unstable();
    consumer_ns.sort_unstable();
    info_ns.sort_unstable();
    let p50 = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;
    let p99 = |v: &[u64]| {
        v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let mut metrics = vec![
        metric("stream create p50", p50(&stream_ns), "us", false),
        metric("stream create p99", p99(&stream_ns), "us", false),
        metric("consumer create p50", p50(&consumer_ns), "us", false),
        metric("consumer create p99", p99(&consumer_ns), "us", false),
        metric("consumer info p50", p50(&info_ns), "us", false),
    ];
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let objects = params.many_streams * (1 + params.many_consumers);
        metrics.push(metric(
            "RSS growth",
            after.saturating_sub(before) as f64 / 1024.0,
            "MiB",
            false,
        ));
        metrics.push(metric(
            "RSS per stream or consumer",
            after.saturating_sub(before) as f64 * 1024.0 / objects.max(1) as f64,
            "B",
            false,
        ));
    }
    Ok(metrics)
}

/// The median latency of a 4 KiB append and fdatasync in `dir`: what one
/// group commit costs at least on this disk. Printed beside the js-pub rows.
pub fn fsync_latency(dir: &Path) -> Option<Duration> {
    use std::io::Write;
    let path = dir.join(format!("rnats-bench-fsync-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).ok()?;
    let block = [0u8; 4096];
    let mut samples = Vec::new();
    for _ in 0..50 {
        let at = Instant::now();
        file.write_all(&block).ok()?;
        file.sync_data().ok()?;
        samples.push(at.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    samples.sort();
    Some(samples[samples.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ack_sequences_and_errors() {
        assert_eq!(ack_sequence(br#"{"stream":"BENCH","seq":42}"#), Ok(42));
        assert_eq!(
            ack_sequence(br#"{"stream":"BENCH","domain":"d","seq":7,"duplicate":true}"#),
            Ok(7)
        );
        assert!(ack_sequence(br#"{"error":{"code":503,"description":"x"}}"#).is_err());
        assert!(ack_sequence(b"+OK").is_err());
    }

    #[test]
    fn finds_the_stalled_subject() {
        let headers = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Consumer-Stalled: $JS.FC.X.y.z\r\n\r\n";
        assert_eq!(stalled_subject(headers), Some(&b"$JS.FC.X.y.z"[..]));
        assert_eq!(
            stalled_subject(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"),
            None
        );
    }
}
