//! `raft-loopback`: a 3-node RAFT group over real routes and real disks.
//!
//! Three routed servers on loopback (started as the cluster scenarios start
//! them); in this process three `rnats_core::raft::Node`s, each a NATS
//! client of a different server, exchanging nats-server's `$NRG.*` messages
//! through `rnats_core::raft::Transport`, each with its log under its own
//! directory of a real disk (runtime-tokio's `RealDisk`: one fsync per
//! group commit, off the event loop). Closed-loop proposers (64, then 256)
//! hand entries to the leader; an entry is acknowledged when the leader
//! applies it (a majority holds it durably). Then 64 propose through a
//! follower, which forwards each on `$NRG.P.` and acknowledges it when it
//! applies it. Measured: acknowledged entries per second and the
//! propose-to-acknowledge latency (p50, p99). Last, a follower asks on
//! `$NRG.RP.` that the leader remove the other follower, and the leader's
//! voters must become the two.
//!
//! Checked before any number is reported: all three nodes applied the same
//! entries in the same order, and each proposer's entries appear exactly
//! once each, in the order it proposed them, every one acknowledged (as
//! many applied as acknowledged). Reported beside: the log syncs' own
//! latency (p50, p99) and entries per sync (group commit), the bound on
//! commit latency, and a 4 KiB fdatasync in the same directory. A
//! leader change during a run fails it (the proposers would not know which
//! in-flight entries survived).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use bytes::{BufMut, Bytes, BytesMut};
use rnats_core::protocol::{write_pub, write_sub};
use rnats_core::raft::wire::EntryType;
use rnats_core::raft::{Action, Config, Inbound, Message, Node, PeerId, Transport};
use rnats_core::store::{Disk, DiskResult};
use rnats_core::time::Instant;
use rnats_runtime_tokio::disk::RealDisk;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::scenarios::{metric, Metric, Params, Target};
use crate::wire::{drain_frames, Conn, Frame};

const GROUP: &str = "BENCH";
/// Only the system account's clients may publish on `$NRG.` (as in
/// nats-server): each server gets one, and the nodes connect as its user.
const CONFIG: &str =
    "accounts { SYS { users: [{user: raft, password: raft}] } }\nsystem_account: SYS\n";
const CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"raft\",\"pass\":\"raft\"}\r\n";

/// The arguments that give each server [`CONFIG`].
pub fn config_args() -> Result<Vec<String>, String> {
    let path = std::env::temp_dir().join(format!("rnats-bench-raft-{}.conf", std::process::id()));
    std::fs::write(&path, CONFIG).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(vec!["-c".to_string(), path.display().to_string()])
}
/// The measured phases: proposers, whether they propose through a follower
/// (`$NRG.P.`, forwarded to the leader), and the metric names.
const PHASES: [(usize, bool, [&str; 3]); 3] = [
    (64, false, ["entries/s@64", "p50@64", "p99@64"]),
    (256, false, ["entries/s@256", "p50@256", "p99@256"]),
    (
        64,
        true,
        [
            "forwarded entries/s@64",
            "forwarded p50@64",
            "forwarded p99@64",
        ],
    ),
];
/// An entry: proposer id u32, sequence u64 (little-endian).
const ENTRY_LEN: usize = 12;

/// What a node's task takes in.
enum Input {
    Msg {
        sid: u64,
        reply: Option<String>,
        payload: Bytes,
    },
    Ping,
    Propose {
        data: Bytes,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// A follower forwards the proposal on `$NRG.P.`; acknowledged when the
    /// follower applies it.
    Forward {
        data: Bytes,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// A follower asks the leader on `$NRG.RP.` to remove a peer.
    ForwardRemove(PeerId),
    /// The node's voters.
    Voters(oneshot::Sender<Vec<PeerId>>),
    SyncDone {
        tag: u64,
        result: DiskResult<()>,
    },
    /// The node's applied entries (normal ones) and its commit index.
    Applied(oneshot::Sender<(Vec<Bytes>, u64)>),
}

/// What every node's task reports: who it thinks leads, and any failure.
#[derive(Default)]
struct Shared {
    leaders: Vec<Option<PeerId>>,
    failure: Option<String>,
    /// How long each node's log sync took, seconds.
    syncs: Vec<f64>,
}

pub async fn run(target: Target, params: &Params) -> Result<Vec<Metric>, String> {
    let addrs: Vec<SocketAddr> = std::iter::once(target.addr)
        .chain(target.peers.iter().map(|(addr, _)| *addr))
        .collect();
    if addrs.len() != 3 {
        return Err("raft-loopback runs on three servers".into());
    }
    let root = std::env::temp_dir().join(format!(
        "rnats-bench-raft-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _cleanup = RemoveOnDrop(root.clone());
    let outcome = measure(&addrs, &root, params).await;
    outcome.map(|mut metrics| {
        if let Some(latency) = crate::js::fsync_latency(&root) {
            metrics.push(metric(
                "fdatasync",
                latency.as_secs_f64() * 1e3,
                "ms",
                false,
            ));
        }
        metrics
    })
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn measure(
    addrs: &[SocketAddr],
    root: &std::path::Path,
    params: &Params,
) -> Result<Vec<Metric>, String> {
    let ids: Vec<PeerId> = (0..3u8)
        .map(|i| PeerId(*b"benchN0\0").with_last(b'a' + i))
        .collect();
    let shared = Arc::new(Mutex::new(Shared {
        leaders: vec![None; 3],
        failure: None,
        syncs: Vec::new(),
    }));
    let base = StdInstant::now();
    let mut inputs = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, addr) in addrs.iter().enumerate() {
        let disk = RealDisk::new(root.join(format!("node-{i}")))
            .map_err(|e| format!("node {i} directory: {e}"))?;
        let mut config = Config::new(ids[i], ids.clone(), 0x5eed + i as u64);
        // Three processes' worth of work on few cores: nats-server-like
        // slack, so a busy machine does not look like a dead leader.
        config.election_timeout_min = Duration::from_millis(1000);
        config.election_timeout_max = Duration::from_millis(2000);
        config.heartbeat_interval = Duration::from_millis(200);
        config.max_entries_per_append = 256;
        // Every proposer's message in flight at once (each proposal is a
        // message, one log index): a window under the proposer count would
        // be the bound instead of the log's sync.
        config.max_appends_in_flight = 1024;
        let node = Node::open(config, disk.clone(), "raft", now(base))
            .map_err(|e| format!("node {i} open: {e}"))?;
        let transport = Transport::new(GROUP, ids[i], 0x1000 + i as u64);
        let mut conn = Conn::connect(*addr).await?;
        conn.out.clear();
        conn.out.put_slice(CONNECT);
        for (sid, subject) in transport.subscriptions().iter().enumerate() {
            let sid = (sid + 1).to_string();
            write_sub(&mut conn.out, subject.as_bytes(), None, sid.as_bytes());
        }
        conn.ping_pong().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let Conn {
            mut reader,
            writer,
            mut inbuf,
            ..
        } = conn;
        let reader_tx = tx.clone();
        let reader_shared = shared.clone();
        tasks.spawn(async move {
            loop {
                use tokio::io::AsyncReadExt;
                inbuf.reserve(64 * 1024);
                match reader.read_buf(&mut inbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let sent = drain_frames(&mut inbuf, |frame| {
                    let input = match frame {
                        Frame::Msg {
                            sid,
                            reply,
                            payload,
                            ..
                        } => Input::Msg {
                            sid,
                            reply: reply.map(|r| String::from_utf8_lossy(r).into_owned()),
                            payload: Bytes::copy_from_slice(payload),
                        },
                        Frame::Ping => Input::Ping,
                        Frame::Err(text) => {
                            return Err(format!("-ERR {}", String::from_utf8_lossy(text)))
                        }
                        _ => return Ok(()),
                    };
                    reader_tx.send(input).map_err(|_| "node gone".to_string())
                });
                if let Err(e) = sent {
                    let mut shared = reader_shared.lock().expect("shared");
                    shared.failure.get_or_insert(format!("node {i}: {e}"));
                    return;
                }
            }
        });
        let driver = Driver {
            index: i,
            node,
            disk,
            transport,
            writer,
            out: BytesMut::new(),
            tx: tx.clone(),
            base,
            applied: Vec::new(),
            pending: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            shared: shared.clone(),
        };
        tasks.spawn(driver.run(rx));
        inputs.push(tx);
    }

    let leader = await_leader(&shared, &ids, Duration::from_secs(30)).await?;
    let mut metrics = Vec::new();
    let mut proposer_base = 0u32;
    let mut entries_total = 0u64;
    for (proposers, forwarded, names) in PHASES {
        // Forwarded: a follower applies (and so acknowledges) an entry only
        // once it hears the commit, from the next append or heartbeat; a
        // fixed small count keeps the phase short.
        let entries = if forwarded {
            proposers as u64 * 8
        } else {
            (params.messages / 20).max(proposers as u64 * 8)
        };
        entries_total += entries;
        let node = if forwarded {
            &inputs[(leader + 1) % 3]
        } else {
            &inputs[leader]
        };
        let (rate, p50, p99) =
            closed_loop(node, forwarded, proposers, proposer_base, entries).await?;
        metrics.push(metric(names[0], rate, "/s", true));
        metrics.push(metric(names[1], p50 * 1e3, "ms", false));
        metrics.push(metric(names[2], p99 * 1e3, "ms", false));
        proposer_base += proposers as u32;
        if let Some(failure) = shared.lock().expect("shared").failure.clone() {
            return Err(failure);
        }
    }
    verify(&inputs, &shared, entries_total).await?;
    forwarded_removal(&inputs, leader, &ids).await?;
    tasks.abort_all();
    let mut syncs = std::mem::take(&mut shared.lock().expect("shared").syncs);
    if !syncs.is_empty() {
        syncs.sort_by(f64::total_cmp);
        let at = |q: f64| syncs[((syncs.len() - 1) as f64 * q) as usize] * 1e3;
        metrics.push(metric("log sync p50", at(0.5), "ms", false));
        metrics.push(metric("log sync p99", at(0.99), "ms", false));
        metrics.push(metric(
            "entries/sync",
            entries_total as f64 * 3.0 / syncs.len() as f64,
            "",
            true,
        ));
    }
    Ok(metrics)
}

trait WithLast {
    fn with_last(self, byte: u8) -> PeerId;
}

impl WithLast for PeerId {
    fn with_last(mut self, byte: u8) -> PeerId {
        self.0[7] = byte;
        self
    }
}

fn now(base: StdInstant) -> Instant {
    Instant::from_nanos(base.elapsed().as_nanos() as u64)
}

/// Until all three nodes name the same leader.
async fn await_leader(
    shared: &Mutex<Shared>,
    ids: &[PeerId],
    limit: Duration,
) -> Result<usize, String> {
    let start = StdInstant::now();
    while start.elapsed() < limit {
        {
            let shared = shared.lock().expect("shared");
            if let Some(failure) = &shared.failure {
                return Err(failure.clone());
            }
            let first = shared.leaders[0];
            if let Some(leader) = first.filter(|_| shared.leaders.iter().all(|l| *l == first)) {
                return Ok(ids.iter().position(|id| *id == leader).expect("a member"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no leader elected within {limit:?}"))
}

/// `proposers` closed loops until `entries` are acknowledged: rate, p50, p99
/// (seconds).
async fn closed_loop(
    leader: &mpsc::UnboundedSender<Input>,
    forwarded: bool,
    proposers: usize,
    first_id: u32,
    entries: u64,
) -> Result<(f64, f64, f64), String> {
    let left = Arc::new(AtomicU64::new(entries));
    let start = StdInstant::now();
    let mut loops = JoinSet::new();
    for p in 0..proposers {
        let (leader, left) = (leader.clone(), left.clone());
        let id = first_id + p as u32;
        loops.spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0u64;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                seq += 1;
                let mut data = BytesMut::with_capacity(ENTRY_LEN);
                data.put_u32_le(id);
                data.put_u64_le(seq);
                let (done, acked) = oneshot::channel();
                let sent = StdInstant::now();
                let data = data.freeze();
                leader
                    .send(if forwarded {
                        Input::Forward { data, done }
                    } else {
                        Input::Propose { data, done }
                    })
                    .map_err(|_| "leader task gone".to_string())?;
                acked.await.map_err(|_| "leader task gone".to_string())??;
                latencies.push(sent.elapsed().as_secs_f64());
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(result) = loops.join_next().await {
        latencies.extend(result.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if latencies.len() as u64 != entries {
        return Err(format!("{} of {entries} acknowledged", latencies.len()));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok((entries as f64 / elapsed, at(0.5), at(0.99)))
}

/// Every node applied the same entries in the same order; each proposer's
/// entries are 1, 2, ... in order, once each.
async fn verify(
    inputs: &[mpsc::UnboundedSender<Input>],
    shared: &Mutex<Shared>,
    acknowledged: u64,
) -> Result<(), String> {
    let start = StdInstant::now();
    loop {
        let mut logs = Vec::new();
        for input in inputs {
            let (tx, rx) = oneshot::channel();
            input
                .send(Input::Applied(tx))
                .map_err(|_| "node task gone".to_string())?;
            logs.push(rx.await.map_err(|_| "node task gone".to_string())?);
        }
        if let Some(failure) = &shared.lock().expect("shared").failure {
            return Err(failure.clone());
        }
        let longest = logs.iter().map(|(log, _)| log.len()).max().unwrap_or(0);
        if logs.iter().any(|(log, _)| log.len() < longest) {
            // Followers learn the last commit from the next append.
            if start.elapsed() > Duration::from_secs(10) {
                return Err("followers did not apply the leader's entries within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let reference = &logs[0].0;
        if logs.iter().any(|(log, _)| log != reference) {
            return Err("nodes applied different entries".into());
        }
        // With each proposer's entries 1, 2, ... below, as many applied as
        // acknowledged means every acknowledged one (each was applied on the
        // leader before its acknowledgement) and nothing else.
        if reference.len() as u64 != acknowledged {
            return Err(format!(
                "{} entries applied, {acknowledged} acknowledged",
                reference.len()
            ));
        }
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for data in reference {
            if data.len() != ENTRY_LEN {
                return Err(format!("an applied entry of {} bytes", data.len()));
            }
            let id = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(data[4..].try_into().expect("8 bytes"));
            let expected = next.entry(id).or_insert(1);
            if seq != *expected {
                return Err(format!(
                    "proposer {id}: entry {seq} applied where {expected} was next"
                ));
            }
            *expected += 1;
        }
        return Ok(());
    }
}

/// A follower asks, on `$NRG.RP.`, that the leader remove the other
/// follower; the leader's voters must become the other two.
async fn forwarded_removal(
    inputs: &[mpsc::UnboundedSender<Input>],
    leader: usize,
    ids: &[PeerId],
) -> Result<(), String> {
    let (asker, removed) = ((leader + 1) % 3, (leader + 2) % 3);
    inputs[asker]
        .send(Input::ForwardRemove(ids[removed]))
        .map_err(|_| "node task gone".to_string())?;
    let start = StdInstant::now();
    loop {
        let (tx, rx) = oneshot::channel();
        inputs[leader]
            .send(Input::Voters(tx))
            .map_err(|_| "node task gone".to_string())?;
        let voters = rx.await.map_err(|_| "node task gone".to_string())?;
        if !voters.contains(&ids[removed]) {
            return if voters.len() == 2 {
                Ok(())
            } else {
                Err(format!(
                    "after the forwarded removal the voters are {voters:?}"
                ))
            };
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("a forwarded removal was not applied within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node: its machine, its connection's write half, its disk.
struct Driver {
    index: usize,
    node: Node<RealDisk>,
    disk: RealDisk,
    transport: Transport,
    writer: OwnedWriteHalf,
    out: BytesMut,
    tx: mpsc::UnboundedSender<Input>,
    base: StdInstant,
    /// Normal entries applied, in order.
    applied: Vec<Bytes>,
    /// Proposals awaiting their apply: index -> (data, acknowledgement).
    pending: BTreeMap<u64, (Bytes, oneshot::Sender<Result<(), String>>)>,
    /// Forwarded proposals awaiting their apply here, by data (unique:
    /// proposer and sequence).
    forwarded: BTreeMap<Bytes, oneshot::Sender<Result<(), String>>>,
    shared: Arc<Mutex<Shared>>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            let deadline = self.base + Duration::from_nanos(self.node.poll_timeout().as_nanos());
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.input(input),
                    None => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.node.handle_timeout(now(self.base));
                }
            }
            // Take whatever else is queued before writing: one flush per burst.
            while let Ok(input) = rx.try_recv() {
                self.input(input);
                self.perform();
            }
            self.perform();
            if !self.out.is_empty() {
                if let Err(e) = self.writer.write_all(&self.out).await {
                    self.fail(format!("node {}: write: {e}", self.index));
                    return;
                }
                self.out.clear();
            }
        }
    }

    fn fail(&self, failure: String) {
        let mut shared = self.shared.lock().expect("shared");
        shared.failure.get_or_insert(failure);
    }

    fn input(&mut self, input: Input) {
        let at = now(self.base);
        match input {
            Input::Msg {
                sid,
                reply,
                payload,
            } => {
                let subjects = self.transport.subscriptions();
                let Some(subject) = subjects.get(sid as usize - 1).map(|s| s.to_string()) else {
                    return self.fail(format!("node {}: message on sid {sid}", self.index));
                };
                match self.transport.inbound(&subject, reply.as_deref(), &payload) {
                    Ok(Inbound::Message { from, message }) => {
                        self.node.handle_message(at, from, message)
                    }
                    Ok(Inbound::Own) => {}
                    // As nats-server's leader: a forwarded proposal or
                    // removal that cannot be taken is dropped (the
                    // follower's proposer then times out).
                    Ok(Inbound::Proposal(data)) => {
                        let _ = self.node.propose(at, data);
                    }
                    Ok(Inbound::RemovePeer(peer)) => {
                        let _ = self.node.propose_remove_peer(at, peer);
                    }
                    Err(e) => self.fail(format!("node {}: {subject}: {e}", self.index)),
                }
            }
            Input::Ping => self.out.put_slice(b"PONG\r\n"),
            Input::Propose { data, done } => match self.node.propose(at, data.clone()) {
                Ok(index) => {
                    self.pending.insert(index, (data, done));
                }
                Err(e) => {
                    let _ = done.send(Err(format!("propose: {e:?}")));
                }
            },
            Input::Forward { data, done } => {
                let out = self.transport.forward_proposal(data.clone());
                write_pub(&mut self.out, out.subject.as_bytes(), None, &out.payload);
                self.forwarded.insert(data, done);
            }
            Input::ForwardRemove(peer) => {
                let out = self.transport.forward_remove_peer(peer);
                write_pub(&mut self.out, out.subject.as_bytes(), None, &out.payload);
            }
            Input::Voters(reply) => {
                let _ = reply.send(self.node.voters().to_vec());
            }
            Input::SyncDone { tag, result } => self.node.handle_sync_done(at, tag, result),
            Input::Applied(reply) => {
                let _ = reply.send((self.applied.clone(), self.node.commit_index()));
            }
        }
    }

    /// Carries out the node's actions; sends go out through the transport.
    fn perform(&mut self) {
        let mut sends: Vec<(PeerId, Message)> = Vec::new();
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send { to, message } => sends.push((to, message)),
                Action::Sync { tag, path } => {
                    let mut disk = self.disk.clone();
                    let (tx, shared) = (self.tx.clone(), self.shared.clone());
                    tokio::task::spawn_blocking(move || {
                        let started = StdInstant::now();
                        let result = disk.sync(&path);
                        let took = started.elapsed().as_secs_f64();
                        shared.lock().expect("shared").syncs.push(took);
                        let _ = tx.send(Input::SyncDone { tag, result });
                    });
                }
                Action::Apply(message) => {
                    // One message, one index: its entries in order (each
                    // proposal here is a message of its own).
                    let normal = message
                        .entries
                        .iter()
                        .filter(|e| e.kind == EntryType::Normal);
                    for entry in normal {
                        self.applied.push(entry.data.clone());
                        if let Some(done) = self.forwarded.remove(&entry.data) {
                            let _ = done.send(Ok(()));
                        }
                    }
                    if let Some((data, done)) = self.pending.remove(&message.index) {
                        let result =
                            if message.entries.len() == 1 && message.entries[0].data == data {
                                Ok(())
                            } else {
                                Err(format!("message {} replaced", message.index))
                            };
                        let _ = done.send(result);
                    }
                }
                Action::LeaderChanged { leader, .. } => {
                    let mut shared = self.shared.lock().expect("shared");
                    let before = shared.leaders[self.index];
                    shared.leaders[self.index] = leader;
                    if before.is_some() && before != leader {
                        shared
                            .failure
                            .get_or_insert(format!("node {}: leadership changed", self.index));
                    }
                }
                Action::Restore(_) | Action::SnapshotWanted => self.fail(format!(
                    "node {}: snapshot action without snapshots",
                    self.index
                )),
            }
        }
        if sends.is_empty() {
            return;
        }
        for out in self.transport.outbound(&sends, self.node.voters()) {
            write_pub(
                &mut self.out,
                out.subject.as_bytes(),
                out.reply.as_deref().map(str::as_bytes),
                &out.payload,
            );
        }
        if self.transport.unroutable() > 0 {
            self.fail(format!(
                "node {}: a response with no reply subject",
                self.index
            ));
        }
    }
}
