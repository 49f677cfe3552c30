//! The scenarios: each drives a server over real connections, checks that every
//! subscriber got every message it should (count, and order per publisher),
//! and returns its measurements, or a failure saying what went wrong.
//!
//! Payload layout (every scenario): bytes 0..4 the publisher id, 4..12 the
//! sequence number (both little-endian), the rest filler.
//!
//! Pacing: a publisher writes in 64 KiB batches, follows every 256 KiB with a
//! PING and keeps at most [`PINGS_OUTSTANDING_MAX`] unanswered, so the server's
//! input backlog is bounded; and it waits while the slowest subscriber group is
//! more than a window of bytes behind, so no subscriber's backlog grows past the
//! window (and none is cut off as a slow consumer). Throughput is measured at
//! the subscribers: messages received / (last receipt - start).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BufMut;
use rnats_core::protocol::{write_pub, write_sub};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::wire::{drain_frames, Conn, Frame};

/// Bytes of PUB frames per write.
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A PING follows this many bytes of PUBs.
const PING_EVERY_BYTES: usize = 256 * 1024;
/// Unanswered PINGs a publisher allows before it waits for a PONG.
const PINGS_OUTSTANDING_MAX: usize = 2;
/// How far (payload + framing bytes) the publishers may run ahead of the
/// slowest subscriber group.
const FLOW_WINDOW_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest payload: publisher id and sequence number.
pub const PAYLOAD_MIN: usize = 12;

/// Every scenario the tool knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One publisher, no subscribers.
    Pub,
    /// One publisher, one subscriber.
    PubSub,
    /// One publisher, four subscribers on the subject.
    FanOut,
    /// One publisher, a queue group of four.
    Queue,
    /// Several publishers, one subscriber.
    FanIn,
    /// Request/reply through a responder, one request at a time.
    ReqRep,
    /// Many idle connections.
    Idle,
    /// 100,000 subscriptions with wildcards.
    Subs,
    /// One publisher, one subscriber, both over websocket (`ws.rs`).
    WsPubSub,
    /// Two servers routed together: the publisher on one, the subscriber
    /// on the other (`cluster.rs`).
    ClusterPubSub,
    /// Three servers: the publisher on the first, one subscriber on each.
    ClusterFanOut,
    /// Three servers, a 3-node RAFT group of clients over them (`raft.rs`).
    RaftLoopback,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Scenario::Pub,
        Scenario::PubSub,
        Scenario::FanOut,
        Scenario::Queue,
        Scenario::FanIn,
        Scenario::ReqRep,
        Scenario::Idle,
        Scenario::Subs,
        Scenario::WsPubSub,
        Scenario::ClusterPubSub,
        Scenario::ClusterFanOut,
        Scenario::RaftLoopback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pub => "pub",
            Scenario::PubSub => "pubsub",
            Scenario::FanOut => "fanout",
            Scenario::Queue => "queue",
            Scenario::FanIn => "fanin",
            Scenario::ReqRep => "reqrep",
            Scenario::Idle => "idle",
            Scenario::Subs => "subs",
            Scenario::WsPubSub => "ws-pubsub",
            Scenario::ClusterPubSub => "cluster-pubsub",
            Scenario::ClusterFanOut => "cluster-fanout",
            Scenario::RaftLoopback => "raft-loopback",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the server needs a websocket listener for it.
    pub fn uses_websocket(self) -> bool {
        self == Scenario::WsPubSub
    }

    /// How many servers it runs on (routed together when more than one).
    pub fn servers(self) -> usize {
        match self {
            Scenario::ClusterPubSub => 2,
            Scenario::ClusterFanOut | Scenario::RaftLoopback => 3,
            _ => 1,
        }
    }

    /// Whether the scenario runs once per payload size.
    pub fn uses_payloads(self) -> bool {
        !matches!(
            self,
            Scenario::Idle | Scenario::Subs | Scenario::RaftLoopback
        )
    }
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Messages published per run (split among publishers), before the cap by bytes.
    pub messages: u64,
    /// Payload bytes one run publishes at most (caps `messages` for big payloads).
    pub bytes_max: u64,
    pub fanin_publishers: usize,
    pub requests: u64,
    pub connections: usize,
    pub subscriptions: usize,
    /// A run that makes no progress for this long fails.
    pub stall: Duration,
}

impl Params {
    fn messages_for(&self, payload: usize) -> u64 {
        self.messages.min(self.bytes_max / payload as u64).max(1)
    }
}

/// One measured quantity.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

pub fn metric(name: &'static str, value: f64, unit: &'static str, higher: bool) -> Metric {
    Metric {
        name,
        value,
        unit,
        higher_is_better: higher,
    }
}

/// Where the server is; `pid` enables memory measurements.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    /// The websocket listener, when the server was started with one.
    pub ws_addr: Option<SocketAddr>,
    /// The other servers of a cluster scenario (client addresses, pids).
    pub peers: Vec<(SocketAddr, u32)>,
}

/// Where each connection of a throughput run goes, and which server
/// processes' CPU it counts.
struct Layout {
    publishers: Vec<SocketAddr>,
    /// Per group, each member's server (a group of one is a plain subscriber).
    groups: Vec<Vec<SocketAddr>>,
    pids: Vec<u32>,
}

impl Layout {
    /// Everyone on one server.
    fn single(addr: SocketAddr, pid: Option<u32>, publishers: usize, groups: &[usize]) -> Layout {
        Layout {
            publishers: vec![addr; publishers],
            groups: groups.iter().map(|&members| vec![addr; members]).collect(),
            pids: pid.into_iter().collect(),
        }
    }

    /// The publisher on the first server, one subscriber on each of `on`.
    fn across(target: &Target, on: &[usize]) -> Result<Layout, String> {
        let mut servers = vec![target.addr];
        servers.extend(target.peers.iter().map(|(addr, _)| *addr));
        let mut pids: Vec<u32> = target.pid.into_iter().collect();
        pids.extend(target.peers.iter().map(|(_, pid)| *pid));
        let groups = on
            .iter()
            .map(|&index| {
                servers
                    .get(index)
                    .map(|addr| vec![*addr])
                    .ok_or_else(|| format!("the scenario needs server {index} of a cluster"))
            })
            .collect::<Result<_, String>>()?;
        Ok(Layout {
            publishers: vec![target.addr],
            groups,
            pids,
        })
    }
}

fn cpu_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| crate::server::cpu_ns(*pid)).sum()
}

/// Runs one scenario at one payload size.
pub async fn run(
    scenario: Scenario,
    payload: usize,
    target: Target,
    params: &Params,
) -> Result<Vec<Metric>, String> {
    assert!(payload >= PAYLOAD_MIN);
    let addr = target.addr;
    let pid = target.pid;
    let messages = params.messages_for(payload);
    let single = |publishers, groups: &[usize]| Layout::single(addr, pid, publishers, groups);
    match scenario {
        Scenario::Pub => throughput(single(1, &[]), payload, messages, params).await,
        Scenario::PubSub => throughput(single(1, &[1]), payload, messages, params).await,
        Scenario::FanOut => throughput(single(1, &[1, 1, 1, 1]), payload, messages, params).await,
        Scenario::Queue => throughput(single(1, &[4]), payload, messages, params).await,
        Scenario::FanIn => {
            let layout = single(params.fanin_publishers, &[1]);
            throughput(layout, payload, messages, params).await
        }
        Scenario::ClusterPubSub => {
            throughput(Layout::across(&target, &[1])?, payload, messages, params).await
        }
        Scenario::ClusterFanOut => {
            let layout = Layout::across(&target, &[0, 1, 2])?;
            throughput(layout, payload, messages, params).await
        }
        Scenario::ReqRep => request_reply(addr, pid, payload, params).await,
        Scenario::Idle => idle_connections(target, params).await,
        Scenario::Subs => many_subscriptions(target, params).await,
        Scenario::RaftLoopback => crate::raft::run(target, params).await,
        Scenario::WsPubSub => {
            crate::ws::pubsub(target.ws_addr, pid, payload, messages, params).await
        }
    }
}

// ----- verification -----

/// Checks one subscriber's stream of payloads.
struct Verifier {
    payload_size: usize,
    /// Next sequence expected per publisher (contiguous mode), or one past the
    /// last seen (queue member mode).
    next: Vec<u64>,
    /// Queue members: a bit per (publisher, sequence) seen, merged by the group.
    seen: Option<Vec<Vec<u64>>>,
    received: u64,
    error: Option<String>,
}

impl Verifier {
    fn new(publishers: usize, per_publisher: u64, payload_size: usize, queue_member: bool) -> Self {
        let words = per_publisher.div_ceil(64) as usize;
        Verifier {
            payload_size,
            next: vec![0; publishers],
            seen: queue_member.then(|| vec![vec![0u64; words]; publishers]),
            received: 0,
            error: None,
        }
    }

    fn check(&mut self, payload: &[u8]) {
        self.received += 1;
        if self.error.is_some() {
            return;
        }
        if payload.len() != self.payload_size {
            self.error = Some(format!(
                "payload of {} bytes, expected {}",
                payload.len(),
                self.payload_size
            ));
            return;
        }
        let publisher = u32::from_le_bytes(payload[0..4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap());
        let Some(next) = self.next.get_mut(publisher) else {
            self.error = Some(format!("unknown publisher {publisher}"));
            return;
        };
        match &mut self.seen {
            None => {
                if seq != *next {
                    self.error = Some(format!(
                        "publisher {publisher}: got sequence {seq}, expected {next}"
                    ));
                    return;
                }
                *next += 1;
            }
            Some(seen) => {
                if seq < *next {
                    self.error = Some(format!(
                        "publisher {publisher}: sequence {seq} after {} (out of order)",
                        *next - 1
                    ));
                    return;
                }
                *next = seq + 1;
                let Some(word) = seen[publisher].get_mut((seq / 64) as usize) else {
                    self.error = Some(format!("publisher {publisher}: sequence {seq} too big"));
                    return;
                };
                *word |= 1 << (seq % 64);
            }
        }
    }
}

/// Checks a group's verifiers together: every (publisher, sequence) exactly once.
fn check_group(members: &[Verifier], publishers: usize, per_publisher: u64) -> Result<u64, String> {
    let received: u64 = members.iter().map(|v| v.received).sum();
    if let Some(error) = members.iter().find_map(|v| v.error.clone()) {
        return Err(error);
    }
    let expected = publishers as u64 * per_publisher;
    if received != expected {
        return Err(format!("received {received} messages, expected {expected}"));
    }
    if members.len() > 1 {
        for publisher in 0..publishers {
            let mut count = 0u64;
            let words = per_publisher.div_ceil(64) as usize;
            for word in 0..words {
                let mut union = 0u64;
                for member in members {
                    let bits = member.seen.as_ref().expect("queue member")[publisher][word];
                    if union & bits != 0 {
                        return Err(format!("publisher {publisher}: a message delivered twice"));
                    }
                    union |= bits;
                }
                count += u64::from(union.count_ones());
            }
            if count != per_publisher {
                return Err(format!(
                    "publisher {publisher}: {count} distinct messages of {per_publisher}"
                ));
            }
        }
    }
    Ok(received)
}

// ----- flow control -----

/// Keeps the publishers within a window of the slowest subscriber group.
struct Flow {
    /// Messages the publishers have written (each counted once).
    published: AtomicU64,
    /// Messages each group received (a plain subscriber is a group of one).
    groups: Vec<AtomicU64>,
    window_messages: u64,
    waiting: AtomicBool,
    notify: Notify,
}

impl Flow {
    fn new(groups: usize, window_messages: u64) -> Self {
        Flow {
            published: AtomicU64::new(0),
            groups: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            window_messages,
            waiting: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn has_room(&self) -> bool {
        let published = self.published.load(Ordering::SeqCst);
        let slowest = self
            .groups
            .iter()
            .map(|g| g.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        published.saturating_sub(slowest) <= self.window_messages
    }

    async fn wait_for_room(&self) {
        loop {
            if self.has_room() {
                return;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    fn received(&self, group: usize, messages: u64) {
        self.groups[group].fetch_add(messages, Ordering::SeqCst);
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }
}

pub fn payload_template(size: usize, publisher: u32) -> Vec<u8> {
    let mut payload = vec![b'x'; size];
    payload[0..4].copy_from_slice(&publisher.to_le_bytes());
    payload
}

pub fn set_sequence(payload: &mut [u8], seq: u64) {
    payload[4..12].copy_from_slice(&seq.to_le_bytes());
}

// ----- publishers and subscribers -----

/// Publishes `count` messages to `subjects` (cycled) and waits until the
/// server acknowledged all of them with a PONG. Returns when that PONG came.
async fn publish(
    mut conn: Conn,
    publisher: u32,
    subjects: Arc<Vec<Vec<u8>>>,
    count: u64,
    payload_size: usize,
    flow: Arc<Flow>,
) -> Result<Instant, String> {
    let mut payload = payload_template(payload_size, publisher);
    let mut since_ping = 0usize;
    let mut batch_messages = 0u64;
    assert!(!subjects.is_empty());
    for seq in 0..count {
        set_sequence(&mut payload, seq);
        let subject = &subjects[(seq % subjects.len() as u64) as usize];
        write_pub(&mut conn.out, subject, None, &payload);
        batch_messages += 1;
        if conn.out.len() < WRITE_BATCH_BYTES {
            continue;
        }
        since_ping += conn.out.len();
        if since_ping >= PING_EVERY_BYTES {
            conn.queue_ping();
            since_ping = 0;
        }
        conn.flush().await?;
        flow.published.fetch_add(batch_messages, Ordering::SeqCst);
        batch_messages = 0;
        if conn.pings_outstanding > PINGS_OUTSTANDING_MAX {
            conn.await_pongs(PINGS_OUTSTANDING_MAX).await?;
        }
        flow.wait_for_room().await;
    }
    conn.queue_ping();
    conn.flush().await?;
    flow.published.fetch_add(batch_messages, Ordering::SeqCst);
    conn.await_pongs(0).await?;
    Ok(Instant::now())
}

/// What a subscriber saw.
struct SubscriberReport {
    group: usize,
    verifier: Verifier,
    last_receipt: Option<Instant>,
}

/// Reads MSGs until told to stop, verifying each and reporting progress.
async fn subscribe_loop(
    mut conn: Conn,
    group: usize,
    mut verifier: Verifier,
    flow: Arc<Flow>,
    mut done: watch::Receiver<bool>,
) -> Result<SubscriberReport, String> {
    let mut last_receipt = None;
    loop {
        tokio::select! {
            biased;
            read = conn.read_more() => { read?; }
            _ = done.changed() => break,
        }
        let mut messages = 0u64;
        let mut owed_pongs = 0;
        let mut problem = None;
        drain_frames(&mut conn.inbuf, |frame| {
            match frame {
                Frame::Msg { payload, .. } => {
                    verifier.check(payload);
                    messages += 1;
                }
                Frame::Ping => owed_pongs += 1,
                Frame::Err(text) => {
                    problem = Some(format!("-ERR {}", String::from_utf8_lossy(text)))
                }
                Frame::Pong | Frame::Ignored => {}
            }
            Ok(())
        })?;
        if let Some(problem) = problem {
            return Err(problem);
        }
        if messages > 0 {
            last_receipt = Some(Instant::now());
            flow.received(group, messages);
        }
        for _ in 0..owed_pongs {
            conn.out.put_slice(b"PONG\r\n");
        }
        conn.flush().await?;
    }
    Ok(SubscriberReport {
        group,
        verifier,
        last_receipt,
    })
}

/// Connects, subscribes to each `(subject, queue, sid)` and waits for the
/// server to confirm with a PONG.
/// One subscription to make: subject, queue group, sid.
type SubSpec<'a> = (Vec<u8>, Option<&'a [u8]>, u64);

async fn subscriber(addr: SocketAddr, subs: &[SubSpec<'_>]) -> Result<Conn, String> {
    let mut conn = Conn::connect(addr).await?;
    for (subject, queue, sid) in subs {
        write_sub(&mut conn.out, subject, *queue, sid.to_string().as_bytes());
        if conn.out.len() >= WRITE_BATCH_BYTES {
            conn.flush().await?;
        }
    }
    conn.ping_pong().await?;
    Ok(conn)
}

/// Waits until every group got `expected` messages; fails on a stall.
async fn await_delivery(
    flow: &Flow,
    expected: u64,
    publishers: &mut JoinSet<Result<Instant, String>>,
    stall: Duration,
) -> Result<(), String> {
    let mut last_total = 0;
    let mut last_change = Instant::now();
    loop {
        while let Some(done) = publishers.try_join_next() {
            done.map_err(|e| format!("publisher panicked: {e}"))??;
        }
        let counts: Vec<u64> = flow
            .groups
            .iter()
            .map(|g| g.load(Ordering::SeqCst))
            .collect();
        if counts.iter().all(|&c| c >= expected) {
            return Ok(());
        }
        let total: u64 = counts.iter().sum::<u64>() + flow.published.load(Ordering::SeqCst);
        if total != last_total {
            last_total = total;
            last_change = Instant::now();
        } else if last_change.elapsed() > stall {
            return Err(format!(
                "stalled: groups received {counts:?} of {expected} (published {})",
                flow.published.load(Ordering::SeqCst)
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `publishers` publishers on one subject; `groups[i]` subscribers in group i
/// (1 = a plain subscriber, more = a queue group).
async fn throughput(
    layout: Layout,
    payload: usize,
    messages: u64,
    params: &Params,
) -> Result<Vec<Metric>, String> {
    let publishers = layout.publishers.len();
    let groups = &layout.groups;
    let per_publisher = (messages / publishers as u64).max(1);
    let total = per_publisher * publishers as u64;
    let frame_bytes = (payload + 40) as u64;
    let flow = Arc::new(Flow::new(
        groups.len(),
        (FLOW_WINDOW_BYTES / frame_bytes).max(64),
    ));
    let (done_tx, done_rx) = watch::channel(false);

    let mut subscribers = JoinSet::new();
    // A prober on the publisher's server, for subscribers elsewhere.
    let mut prober = None;
    for (group, members) in groups.iter().enumerate() {
        let queue: Option<&[u8]> = (members.len() > 1).then_some(b"workers");
        for &addr in members {
            let remote = addr != layout.publishers[0];
            let mut subs = vec![(b"bench.subject".to_vec(), queue, 1)];
            if remote {
                subs.push(crate::cluster::probe_subscription());
            }
            let mut conn = subscriber(addr, &subs).await?;
            if remote {
                if prober.is_none() {
                    prober = Some(Conn::connect(layout.publishers[0]).await?);
                }
                let prober = prober.as_mut().expect("just made");
                crate::cluster::await_interest(prober, &mut conn, params.stall).await?;
            }
            let verifier = Verifier::new(publishers, per_publisher, payload, members.len() > 1);
            subscribers.spawn(subscribe_loop(
                conn,
                group,
                verifier,
                flow.clone(),
                done_rx.clone(),
            ));
        }
    }
    drop(prober);
    let mut publisher_conns = Vec::new();
    for &addr in &layout.publishers {
        let mut conn = Conn::connect(addr).await?;
        conn.ping_pong().await?;
        publisher_conns.push(conn);
    }

    let cpu_before = cpu_all(&layout.pids);
    let start = Instant::now();
    let subject = Arc::new(vec![b"bench.subject".to_vec()]);
    let mut publisher_tasks = JoinSet::new();
    for (id, conn) in publisher_conns.into_iter().enumerate() {
        publisher_tasks.spawn(publish(
            conn,
            id as u32,
            subject.clone(),
            per_publisher,
            payload,
            flow.clone(),
        ));
    }

    let mut end = start;
    if groups.is_empty() {
        while let Some(done) = publisher_tasks.join_next().await {
            let finished = done.map_err(|e| format!("publisher panicked: {e}"))??;
            end = end.max(finished);
        }
    } else {
        let outcome = await_delivery(&flow, total, &mut publisher_tasks, params.stall).await;
        let _ = done_tx.send(true);
        outcome?;
        while let Some(done) = publisher_tasks.join_next().await {
            done.map_err(|e| format!("publisher panicked: {e}"))??;
        }
    }
    let _ = done_tx.send(true);
    let cpu_after = cpu_all(&layout.pids);
    let mut reports: Vec<Vec<Verifier>> = groups.iter().map(|_| Vec::new()).collect();
    while let Some(report) = subscribers.join_next().await {
        let report = report.map_err(|e| format!("subscriber panicked: {e}"))??;
        if let Some(at) = report.last_receipt {
            end = end.max(at);
        }
        reports[report.group].push(report.verifier);
    }
    let mut received = 0;
    for (group, members) in reports.iter().enumerate() {
        received += check_group(members, publishers, per_publisher)
            .map_err(|e| format!("group {group}: {e}"))?;
    }
    let seconds = end.duration_since(start).as_secs_f64().max(1e-9);
    let counted = if groups.is_empty() { total } else { received };
    let rate = counted as f64 / seconds;
    let mut metrics = vec![
        metric("msgs/s", rate, "msg/s", true),
        metric("MB/s", rate * payload as f64 / 1e6, "MB/s", true),
    ];
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let per_message = after.saturating_sub(before) as f64 / counted as f64;
        metrics.push(metric("server CPU/msg", per_message, "ns", false));
    }
    Ok(metrics)
}

// ----- request/reply -----

async fn request_reply(
    addr: SocketAddr,
    pid: Option<u32>,
    payload_size: usize,
    params: &Params,
) -> Result<Vec<Metric>, String> {
    let responder = subscriber(addr, &[(b"bench.request".to_vec(), None, 1)]).await?;
    let (done_tx, done_rx) = watch::channel(false);
    let responder_task = tokio::spawn(respond_loop(responder, done_rx));
    let mut requester = subscriber(addr, &[(b"bench.reply".to_vec(), None, 1)]).await?;

    let warmup = (params.requests / 10).min(1000);
    let mut payload = payload_template(payload_size, 0);
    let mut latencies_ns = Vec::with_capacity(params.requests as usize);
    let mut start = Instant::now();
    let mut cpu_before = None;
    for seq in 0..warmup + params.requests {
        if seq == warmup {
            start = Instant::now();
            cpu_before = pid.and_then(crate::server::cpu_ns);
        }
        set_sequence(&mut payload, seq);
        write_pub(
            &mut requester.out,
            b"bench.request",
            Some(b"bench.reply"),
            &payload,
        );
        let sent = Instant::now();
        requester.flush().await?;
        let mut replied = false;
        while !replied {
            requester.read_more().await?;
            let mut problem = None;
            let out = &mut requester.out;
            drain_frames(&mut requester.inbuf, |frame| {
                match frame {
                    Frame::Msg { payload: reply, .. } => {
                        if replied || reply.get(4..12) != Some(&payload[4..12]) {
                            problem = Some(format!("request {seq}: wrong or extra reply"));
                        }
                        replied = true;
                    }
                    Frame::Err(text) => {
                        problem = Some(format!("-ERR {}", String::from_utf8_lossy(text)))
                    }
                    // Answered with the next request.
                    Frame::Ping => out.put_slice(b"PONG\r\n"),
                    Frame::Pong | Frame::Ignored => {}
                }
                Ok(())
            })?;
            if let Some(problem) = problem {
                let _ = done_tx.send(true);
                return Err(problem);
            }
        }
        if seq >= warmup {
            latencies_ns.push(sent.elapsed().as_nanos() as u64);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(crate::server::cpu_ns);
    let _ = done_tx.send(true);
    let answered = responder_task
        .await
        .map_err(|e| format!("responder panicked: {e}"))??;
    if answered != warmup + params.requests {
        return Err(format!(
            "responder answered {answered} of {}",
            warmup + params.requests
        ));
    }
    latencies_ns.sort_unstable();
    let quantile = |q: f64| {
        let index =
            ((latencies_ns.len() as f64 * q).ceil() as usize).clamp(1, latencies_ns.len()) - 1;
        latencies_ns[index] as f64 / 1000.0
    };
    let mut metrics = vec![
        metric("req/s", params.requests as f64 / seconds, "req/s", true),
        metric("p50", quantile(0.50), "us", false),
        metric("p90", quantile(0.90), "us", false),
        metric("p99", quantile(0.99), "us", false),
        metric("p99.9", quantile(0.999), "us", false),
        metric("max", quantile(1.0), "us", false),
    ];
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let per_request = after.saturating_sub(before) as f64 / params.requests as f64;
        metrics.push(metric("server CPU/req", per_request, "ns", false));
    }
    Ok(metrics)
}

/// Answers every request with its own payload; returns how many it answered.
async fn respond_loop(mut conn: Conn, mut done: watch::Receiver<bool>) -> Result<u64, String> {
    let mut answered = 0;
    loop {
        tokio::select! {
            biased;
            read = conn.read_more() => { read?; }
            _ = done.changed() => return Ok(answered),
        }
        let out = &mut conn.out;
        drain_frames(&mut conn.inbuf, |frame| {
            match frame {
                Frame::Msg {
                    reply: Some(reply),
                    payload,
                    ..
                } => {
                    write_pub(out, reply, None, payload);
                    answered += 1;
                }
                Frame::Msg { reply: None, .. } => {
                    return Err("request without reply subject".into())
                }
                Frame::Ping => out.put_slice(b"PONG\r\n"),
                Frame::Err(text) => return Err(format!("-ERR {}", String::from_utf8_lossy(text))),
                Frame::Pong | Frame::Ignored => {}
            }
            Ok(())
        })?;
        conn.flush().await?;
    }
}

// ----- idle connections -----

async fn idle_connections(target: Target, params: &Params) -> Result<Vec<Metric>, String> {
    const CONCURRENT: usize = 50;
    let before = target.pid.and_then(crate::server::memory_kib);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(params.connections);
    while conns.len() < params.connections {
        let mut set = JoinSet::new();
        for _ in 0..CONCURRENT.min(params.connections - conns.len()) {
            set.spawn(async move {
                let mut conn = Conn::connect(target.addr).await?;
                conn.ping_pong().await?;
                Ok::<Conn, String>(conn)
            });
        }
        while let Some(conn) = set.join_next().await {
            conns.push(conn.map_err(|e| format!("connect task panicked: {e}"))??);
        }
    }
    let connect_seconds = start.elapsed().as_secs_f64();
    // Let the server settle (Go's runtime grows stacks and buffers lazily).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = target.pid.and_then(crate::server::memory_kib);
    // Every connection must still be alive and answering.
    for chunk in conns.chunks_mut(CONCURRENT) {
        for conn in chunk.iter_mut() {
            conn.queue_ping();
            conn.flush().await?;
        }
        for conn in chunk.iter_mut() {
            conn.await_pongs(0).await?;
        }
    }
    let n = params.connections as f64;
    let mut metrics = vec![metric("connect/s", n / connect_seconds, "conn/s", true)];
    if let (Some((rss_before, _)), Some((rss_after, _))) = (before, after) {
        metrics.push(metric("RSS", rss_after as f64 / 1024.0, "MiB", false));
        let delta = rss_after.saturating_sub(rss_before) as f64;
        metrics.push(metric("RSS/conn", delta / n, "KiB", false));
    }
    Ok(metrics)
}

// ----- many subscriptions -----

/// The subscription set of the `subs` scenario for `total` subscriptions (a
/// multiple of 1,000). Published subjects are `t.<a>.<b>.x` (a < total/100,
/// b < 100); each matches exactly two subscriptions: one of class A (the
/// literal `t.<a>.<b>.x` for a < 0.9*total/100, else `t.<a>.>`) and one of
/// class B (`t.<a>.*.x`). The rest (`t.<a>.*.w<k>`) match nothing.
/// Returns the (subject, sid) list; class A sids are below [`CLASS_B_SID`].
fn subscription_set(total: usize) -> Vec<(Vec<u8>, u64)> {
    let a_max = total / 100;
    let a_literal = a_max * 9 / 10;
    let mut subs = Vec::with_capacity(total);
    for a in 0..a_literal {
        for b in 0..100 {
            subs.push((format!("t.{a}.{b}.x").into_bytes(), subs.len() as u64 + 1));
        }
    }
    for a in a_literal..a_max {
        subs.push((format!("t.{a}.>").into_bytes(), subs.len() as u64 + 1));
    }
    let mut sid = CLASS_B_SID;
    for a in 0..a_max {
        subs.push((format!("t.{a}.*.x").into_bytes(), sid));
        sid += 1;
    }
    'fill: for k in 1.. {
        for a in 0..a_max {
            if subs.len() >= total {
                break 'fill;
            }
            subs.push((format!("t.{a}.*.w{k}").into_bytes(), sid));
            sid += 1;
        }
    }
    subs
}

const CLASS_B_SID: u64 = 10_000_000;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

async fn many_subscriptions(target: Target, params: &Params) -> Result<Vec<Metric>, String> {
    let total = params.subscriptions / 1000 * 1000;
    if total == 0 {
        return Err("--subscriptions must be at least 1000".into());
    }
    let set = subscription_set(total);
    let a_max = (total / 100) as u64;
    let before = target.pid.and_then(crate::server::memory_kib);
    let start = Instant::now();
    let entries: Vec<SubSpec<'_>> = set
        .into_iter()
        .map(|(subject, sid)| (subject, None, sid))
        .collect();
    let sub_conn = subscriber(target.addr, &entries).await?;
    let subscribe_seconds = start.elapsed().as_secs_f64();
    let after = target.pid.and_then(crate::server::memory_kib);

    let messages = params.messages_for(16).min(200_000);
    let flow = Arc::new(Flow::new(1, (FLOW_WINDOW_BYTES / 60).max(64)));
    let (done_tx, done_rx) = watch::channel(false);
    let payload = 16;
    let verifier = Verifier::new(2, messages, payload, false);
    // Class A and class B deliveries are checked as two "publishers"'s streams:
    // the subscriber maps the sid class onto the publisher id.
    let sub_task = tokio::spawn(subs_subscribe_loop(
        sub_conn,
        verifier,
        flow.clone(),
        done_rx,
    ));
    let mut pub_conn = Conn::connect(target.addr).await?;
    pub_conn.ping_pong().await?;
    // Every subject once, in a scattered order, so the match cache misses.
    let space = a_max * 100;
    let stride = (1..space)
        .rev()
        .find(|s| gcd(*s, space) == 1 && *s < space * 2 / 3)
        .unwrap_or(1);
    let subjects: Vec<Vec<u8>> = (0..space)
        .map(|i| i * stride % space)
        .map(|k| format!("t.{}.{}.x", k / 100, k % 100).into_bytes())
        .collect();
    let subjects = Arc::new(subjects);
    let begin = Instant::now();
    let mut publishers = JoinSet::new();
    publishers.spawn(publish(
        pub_conn,
        0,
        subjects,
        messages,
        payload,
        flow.clone(),
    ));
    let outcome = await_delivery(&flow, messages, &mut publishers, params.stall).await;
    let _ = done_tx.send(true);
    outcome?;
    while let Some(done) = publishers.join_next().await {
        done.map_err(|e| format!("publisher panicked: {e}"))??;
    }
    let report = sub_task
        .await
        .map_err(|e| format!("subscriber panicked: {e}"))??;
    let end = report.last_receipt.unwrap_or(begin);
    if let Some(error) = report.verifier.error {
        return Err(error);
    }
    for (class, &next) in report.verifier.next.iter().enumerate() {
        if next != messages {
            return Err(format!("class {class}: {next} of {messages} messages"));
        }
    }
    let mut metrics = vec![
        metric(
            "subscribe/s",
            total as f64 / subscribe_seconds,
            "sub/s",
            true,
        ),
        metric(
            "match msgs/s",
            messages as f64 / end.duration_since(begin).as_secs_f64(),
            "msg/s",
            true,
        ),
    ];
    if let (Some((rss_before, _)), Some((rss_after, _))) = (before, after) {
        metrics.push(metric("RSS", rss_after as f64 / 1024.0, "MiB", false));
        let delta = rss_after.saturating_sub(rss_before) as f64;
        metrics.push(metric(
            "bytes/sub",
            delta * 1024.0 / total as f64,
            "B",
            false,
        ));
    }
    Ok(metrics)
}

/// The `subs` subscriber: every MSG's sid class (A or B) stands in for the
/// publisher id, so each class must see sequences 0, 1, 2, ... in order.
async fn subs_subscribe_loop(
    mut conn: Conn,
    mut verifier: Verifier,
    flow: Arc<Flow>,
    mut done: watch::Receiver<bool>,
) -> Result<SubscriberReport, String> {
    let mut last_receipt = None;
    let mut rewritten = vec![0u8; verifier.payload_size];
    loop {
        tokio::select! {
            biased;
            read = conn.read_more() => { read?; }
            _ = done.changed() => break,
        }
        let mut messages = 0;
        let mut any = false;
        let mut owed_pongs = 0;
        drain_frames(&mut conn.inbuf, |frame| {
            match frame {
                Frame::Msg { sid, payload, .. } => {
                    let class: u32 = if sid >= CLASS_B_SID { 1 } else { 0 };
                    messages += u64::from(class);
                    any = true;
                    if payload.len() == rewritten.len() {
                        rewritten.copy_from_slice(payload);
                        rewritten[0..4].copy_from_slice(&class.to_le_bytes());
                        verifier.check(&rewritten);
                    } else {
                        verifier.check(payload);
                    }
                }
                Frame::Ping => owed_pongs += 1,
                Frame::Err(text) => return Err(format!("-ERR {}", String::from_utf8_lossy(text))),
                Frame::Pong | Frame::Ignored => {}
            }
            Ok(())
        })?;
        if any {
            last_receipt = Some(Instant::now());
        }
        if messages > 0 {
            // Progress in published messages: the class B deliveries.
            flow.received(0, messages);
        }
        for _ in 0..owed_pongs {
            conn.out.put_slice(b"PONG\r\n");
        }
        conn.flush().await?;
    }
    Ok(SubscriberReport {
        group: 0,
        verifier,
        last_receipt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnats_core::subject::Sublist;

    #[test]
    fn every_published_subject_matches_exactly_one_of_each_class() {
        let set = subscription_set(2000);
        assert_eq!(set.len(), 2000);
        let mut sublist = Sublist::new();
        for (subject, sid) in &set {
            sublist.insert(subject, None, *sid).unwrap();
        }
        for a in 0..20 {
            for b in 0..100 {
                let result = sublist.matches(format!("t.{a}.{b}.x").as_bytes());
                let classes: Vec<bool> =
                    result.plain.iter().map(|&sid| sid >= CLASS_B_SID).collect();
                assert_eq!(classes.len(), 2, "t.{a}.{b}.x");
                assert_eq!(classes.iter().filter(|&&b| b).count(), 1);
            }
        }
    }
}
