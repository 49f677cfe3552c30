//! FileStore on the simulated disk, over many seeds: random stores, removes,
//! compactions, sync completions held back and released, power losses and
//! process kills, with disk faults drawn from the seed (swarm).
//!
//! Checked after every reopen:
//! - every message acknowledged (`Durable` covered it) and not removed is
//!   recovered with exactly the bytes stored;
//! - every message the store serves is the one last stored under that
//!   sequence (never a wrong payload, never a message from nowhere);
//! - the last sequence is at least the highest acknowledged one, so an
//!   acknowledged sequence is never handed to another message.
//!
//! A quarter of the seeds run under `sync_interval` (ack first, sync on a
//! timer): there only what a completed sync covered is owed.
//!
//! Half the seeds run with compression on and compressible payloads, a
//! third with encryption at rest, so sealed records go through the same
//! crashes and faults.
//!
//! The store writes its full-state snapshot every 3,000 bytes, so most
//! reopens start from one (stale after a kill, or damaged by the faults).
//!
//! And a seed run twice gives the same outcome, bit for bit.
//!
//! Replay one seed: `STORE_SEED=<n> cargo test -p rnats-runtime-sim --test store_power_loss`.
//! Sweep more seeds: `STORE_SEEDS=<count>` (default 150).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rnats_core::store::{
    perform_sync, CipherKind, FileStore, FileStoreConfig, Filter, KeyRing, SnapshotUse,
    StoreAction, StoreConfig, StoreError, SyncPolicy,
};
use rnats_core::time::{Instant, WallTime};
use rnats_runtime_sim::disk::{SharedSimDisk, SimDisk, SimDiskFaults};
use rnats_runtime_sim::rng::Rng;

/// What the harness stored under one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    subject: Bytes,
    payload: Bytes,
}

struct Harness {
    seed: u64,
    rng: Rng,
    disk: SharedSimDisk,
    store: Option<FileStore<SharedSimDisk>>,
    held_sync: Option<(u64, Vec<String>, Vec<String>)>,
    /// The message last stored under each sequence (not yet known lost).
    stored: BTreeMap<u64, Sent>,
    /// Every message ever stored under each sequence (read-fault runs,
    /// where a record that read badly once may read well later).
    ever: BTreeMap<u64, Vec<Sent>>,
    acked: BTreeSet<u64>,
    removed: BTreeSet<u64>,
    /// Acknowledged messages below this were compacted away.
    floor: u64,
    clock: u64,
    /// Reads may return flipped bits: acknowledged data may read as damaged.
    read_faults: bool,
    /// `sync_interval` mode: acks come before syncs, so only what a
    /// completed sync covered is owed after a power loss.
    interval: bool,
    /// Compression on, payloads compressible.
    compress: bool,
    /// Encryption at rest on.
    encrypt: bool,
    /// The store's last sequence when the sync in flight was asked for.
    sync_through: Option<u64>,
    /// Everything up to here was covered by a completed sync.
    synced_through: u64,
    /// Syncs completed in interval mode (the mode is exercised).
    interval_syncs: u64,
    history: Vec<String>,
    reopens: u64,
    /// Reopens that started from the full-state snapshot.
    snapshot_opens: u64,
    outcome_hash: u64,
}

fn file_config(interval: bool, encrypt: bool, seed: u64) -> FileStoreConfig {
    FileStoreConfig {
        encryption: encrypt.then(|| KeyRing::new(CipherKind::Aes256Gcm, b"sim key", None)),
        seed,
        dir: "stream".to_string(),
        block_size: 2048,
        cache_blocks: 2,
        // A full-state snapshot every few blocks: reopens go through it
        // (and through the blocks written after it) under every fault.
        snapshot_every: 3000,
        sync: if interval {
            SyncPolicy::Interval(Duration::from_millis(5))
        } else {
            SyncPolicy::BeforeAck
        },
    }
}

impl Harness {
    fn new(seed: u64, read_faults: bool) -> Harness {
        let mut plan = Rng::stream(seed, 100);
        let mut faults = SimDiskFaults::draw(&mut plan, 0.03);
        if read_faults {
            faults.read_bit_flip = plan.unit() * 0.05;
        }
        let interval = !read_faults && plan.below(4) == 0;
        // Half the seeds store compressible payloads with compression on.
        let compress = plan.below(2) == 0;
        // A third of the seeds encrypt at rest.
        let encrypt = plan.below(3) == 0;
        let disk = SharedSimDisk::new(SimDisk::from_seed(seed, faults));
        let mut harness = Harness {
            seed,
            rng: Rng::stream(seed, 101),
            disk,
            store: None,
            held_sync: None,
            stored: BTreeMap::new(),
            ever: BTreeMap::new(),
            acked: BTreeSet::new(),
            removed: BTreeSet::new(),
            floor: 0,
            clock: 0,
            read_faults,
            interval,
            compress,
            encrypt,
            sync_through: None,
            synced_through: 0,
            interval_syncs: 0,
            history: Vec::new(),
            reopens: 0,
            snapshot_opens: 0,
            outcome_hash: 0xcbf2_9ce4_8422_2325,
        };
        harness.reopen(!read_faults);
        harness
    }

    fn note(&mut self, text: String) {
        for byte in text.as_bytes() {
            self.outcome_hash ^= u64::from(*byte);
            self.outcome_hash = self.outcome_hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.history.push(text);
        if self.history.len() > 40 {
            self.history.remove(0);
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: {what}\nreplay: STORE_SEED={} cargo test -p rnats-runtime-sim --test store_power_loss\nlast steps:\n  {}",
            self.seed,
            self.seed,
            self.history.join("\n  ")
        );
    }

    fn store(&mut self) -> &mut FileStore<SharedSimDisk> {
        self.store.as_mut().expect("store open")
    }

    /// Open the store (retrying transient faults) and check what it holds.
    fn reopen(&mut self, check_acked: bool) {
        self.store = None;
        self.held_sync = None;
        self.sync_through = None;
        self.reopens += 1;
        let mut attempts = 0;
        let store = loop {
            match FileStore::open_on(
                self.disk.clone(),
                file_config(self.interval, self.encrypt, self.seed ^ self.reopens),
                StoreConfig {
                    compress: self.compress,
                    ..StoreConfig::default()
                },
            ) {
                Ok(store) => break store,
                Err(error) => {
                    attempts += 1;
                    self.note(format!("open failed: {error}"));
                    if attempts > 200 {
                        self.fail(format!("cannot open after {attempts} attempts: {error}"));
                    }
                }
            }
        };
        let report = store.backend().recovery().clone();
        if report.snapshot == SnapshotUse::Used {
            self.snapshot_opens += 1;
        }
        self.note(format!(
            "opened: {:?} cut {} damaged {}",
            store.state(),
            report.tails_cut,
            report.damaged_records
        ));
        self.store = Some(store);
        self.check_contents(check_acked);
    }

    fn check_contents(&mut self, check_acked: bool) {
        let state = self.store().state();
        // Everything served is what was stored under that sequence.
        let mut present = BTreeSet::new();
        let mut cursor = 0;
        let mut disk_errors = 0;
        loop {
            match self.store().load_next(&Filter::All, cursor) {
                Ok(msg) => {
                    let sent = Sent {
                        subject: msg.subject.clone(),
                        payload: msg.payload.clone(),
                    };
                    let known = if check_acked {
                        self.stored.get(&msg.seq) == Some(&sent)
                    } else {
                        self.ever
                            .get(&msg.seq)
                            .is_some_and(|all| all.contains(&sent))
                    };
                    if !known {
                        self.fail(format!(
                            "seq {} served {:?}, stored {:?}",
                            msg.seq,
                            sent,
                            self.stored.get(&msg.seq)
                        ));
                    }
                    disk_errors = 0;
                    present.insert(msg.seq);
                    cursor = msg.seq + 1;
                }
                Err(StoreError::Eof) => break,
                Err(StoreError::Corrupt(_)) if !check_acked => {
                    // A read fault: nothing served, move past it.
                    cursor += 1;
                    if cursor > state.last_seq {
                        break;
                    }
                }
                Err(StoreError::Disk(error)) if disk_errors < 100 => {
                    // A transient read fault: try again.
                    disk_errors += 1;
                    self.note(format!("load_next({cursor}): {error}"));
                }
                Err(error) => self.fail(format!("load_next({cursor}): {error}")),
            }
        }
        if self.interval {
            // Acknowledged before any sync covered it: allowed to be lost.
            let synced = self.synced_through;
            self.acked
                .retain(|seq| *seq <= synced || present.contains(seq));
        }
        let max_acked = self.acked.iter().next_back().copied().unwrap_or(0);
        if state.last_seq < max_acked {
            self.fail(format!(
                "last sequence {} below acknowledged {max_acked}",
                state.last_seq
            ));
        }
        if check_acked {
            for &seq in &self.acked {
                if seq >= self.floor && !self.removed.contains(&seq) && !present.contains(&seq) {
                    self.fail(format!("acknowledged message {seq} lost"));
                }
            }
        }
        // Unacknowledged messages not recovered are gone for good.
        let acked = &self.acked;
        self.stored
            .retain(|seq, _| acked.contains(seq) || present.contains(seq));
    }

    fn drain_actions(&mut self) {
        let now = Instant::from_nanos(self.clock * 1_000_000);
        self.store().handle_timeout(now);
        while let Some(action) = self.store().poll_action() {
            match action {
                StoreAction::Sync { tag, files, dirs } => {
                    assert!(self.held_sync.is_none(), "two syncs in flight");
                    self.held_sync = Some((tag, files, dirs));
                    self.sync_through = Some(self.store().state().last_seq);
                }
                StoreAction::Durable { through } => {
                    let newly: Vec<u64> = self
                        .stored
                        .range(..=through)
                        .map(|(seq, _)| *seq)
                        .filter(|seq| !self.acked.contains(seq))
                        .collect();
                    self.acked.extend(newly);
                    self.note(format!("durable through {through}"));
                }
                StoreAction::Warning(text) => self.note(format!("warning: {text}")),
            }
        }
    }

    fn complete_sync(&mut self) {
        let Some((tag, files, dirs)) = self.held_sync.take() else {
            return;
        };
        let result = perform_sync(&mut self.disk.clone(), &files, &dirs);
        self.note(format!("sync {tag} done: {result:?}"));
        let through = self.sync_through.take().expect("a sync in flight");
        if result.is_ok() {
            self.synced_through = self.synced_through.max(through);
            if self.interval {
                self.interval_syncs += 1;
            }
        }
        self.store().handle_sync_done(tag, result);
    }

    fn store_one(&mut self) {
        self.clock += 1;
        let subject = format!("s.{}", self.rng.below(5));
        let len = self.rng.below(300) as usize;
        let payload: Vec<u8> = if self.compress {
            let base = self.rng.below(256) as u8;
            (0..len).map(|at| base ^ (at / 16) as u8).collect()
        } else {
            (0..len).map(|_| self.rng.below(256) as u8).collect()
        };
        let now = WallTime(self.clock);
        match self
            .store()
            .store_msg(subject.as_bytes(), b"", &payload, now, None)
        {
            Ok(seq) => {
                if self.acked.contains(&seq) {
                    self.fail(format!("acknowledged sequence {seq} handed out again"));
                }
                let sent = Sent {
                    subject: Bytes::from(subject),
                    payload: Bytes::from(payload),
                };
                self.ever.entry(seq).or_default().push(sent.clone());
                self.stored.insert(seq, sent);
                self.removed.remove(&seq);
                self.note(format!("stored {seq}"));
            }
            Err(error) => {
                self.note(format!("store failed: {error}"));
                if error == StoreError::Failed {
                    self.crash(false);
                }
            }
        }
    }

    fn crash(&mut self, power_loss: bool) {
        self.note(format!("crash (power loss: {power_loss})"));
        self.store = None;
        self.disk.with(|disk| {
            if power_loss {
                disk.power_loss();
            } else {
                disk.process_kill();
            }
        });
        self.reopen(!self.read_faults);
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=44 => self.store_one(),
            45..=54 => {
                let last = self.store().state().last_seq;
                let seq = self.rng.below(last + 2);
                match self.store().remove_msg(seq) {
                    Ok(true) => {
                        self.removed.insert(seq);
                        self.note(format!("removed {seq}"));
                    }
                    Ok(false) => {}
                    // A failed tombstone write may still reach the disk.
                    Err(error) => {
                        self.removed.insert(seq);
                        self.note(format!("remove {seq} failed: {error}"));
                    }
                }
            }
            55..=74 => self.drain_actions(),
            75..=92 => self.complete_sync(),
            93 => {
                let state = self.store().state();
                let seq = state.first_seq + self.rng.below(4);
                match self.store().compact(seq) {
                    Ok(_) => self.floor = self.floor.max(seq),
                    // Cut short: whatever reached the disk counts.
                    Err(_) => self.floor = self.floor.max(seq),
                }
                self.note(format!("compact {seq}"));
            }
            94 => self.truncate_some(),
            95 => {
                let now = WallTime(self.clock);
                let result = self.store().skip_msg(now);
                self.note(format!("skip: {result:?}"));
            }
            96 => {
                let subject = format!("s.{}", self.rng.below(5));
                let matching: Vec<u64> = self
                    .stored
                    .iter()
                    .filter(|(_, sent)| sent.subject.as_ref() == subject.as_bytes())
                    .map(|(seq, _)| *seq)
                    .collect();
                let result = self
                    .store()
                    .purge_ex(&Filter::subject(subject.as_bytes()), 0, 0);
                // Removals, durable once a later sync covers them.
                self.removed.extend(matching);
                self.note(format!("purge {subject}: {result:?}"));
            }
            97..=98 => self.crash(true),
            _ => self.crash(false),
        }
    }

    /// Truncate hands sequences out again on purpose (a replica dropping
    /// its tail): what was acknowledged above the cut is no longer owed.
    fn truncate_some(&mut self) {
        let last = self.store().state().last_seq;
        let seq = last.saturating_sub(self.rng.below(5));
        let result = self.store().truncate(seq);
        self.acked.retain(|&acked| acked <= seq);
        self.synced_through = self.synced_through.min(seq);
        self.sync_through = self.sync_through.map(|through| through.min(seq));
        self.note(format!("truncate {seq}: {result:?}"));
        if result.is_ok() {
            self.stored.retain(|&stored, _| stored <= seq);
        } else {
            // Cut short: what is left above `seq` is no longer owed; the
            // reopen's check forgets what did not survive.
            self.crash(false);
        }
    }
}

fn run(seed: u64, steps: usize) -> Outcome {
    let mut harness = Harness::new(seed, false);
    for _ in 0..steps {
        harness.step();
    }
    harness.drain_actions();
    harness.complete_sync();
    harness.drain_actions();
    harness.crash(true);
    let (disk_hash, stats) = harness.disk.with(|disk| (disk.trace_hash(), disk.stats()));
    Outcome {
        outcome_hash: harness.outcome_hash,
        disk_hash,
        reopens: harness.reopens,
        snapshot_opens: harness.snapshot_opens,
        acked: harness.acked.len(),
        torn_writes: stats.torn_writes,
        faults: stats.faults,
        interval_syncs: harness.interval_syncs,
    }
}

/// What one seed's run did (compared whole for determinism).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    outcome_hash: u64,
    disk_hash: u64,
    reopens: u64,
    snapshot_opens: u64,
    acked: usize,
    torn_writes: u64,
    faults: u64,
    interval_syncs: u64,
}

fn seeds() -> Vec<u64> {
    match std::env::var("STORE_SEED") {
        Ok(seed) => vec![seed.parse().expect("STORE_SEED is a number")],
        Err(_) => {
            let count = std::env::var("STORE_SEEDS")
                .map_or(150, |count| count.parse().expect("STORE_SEEDS is a number"));
            (0..count).collect()
        }
    }
}

#[test]
fn acknowledged_messages_survive_power_loss_over_many_seeds() {
    let (mut acked_total, mut reopens_total, mut torn_total, mut faults_total) = (0, 0, 0, 0);
    let (mut interval_syncs, mut snapshot_opens) = (0, 0);
    for seed in seeds() {
        let outcome = run(seed, 400);
        acked_total += outcome.acked;
        reopens_total += outcome.reopens;
        torn_total += outcome.torn_writes;
        faults_total += outcome.faults;
        interval_syncs += outcome.interval_syncs;
        snapshot_opens += outcome.snapshot_opens;
    }
    eprintln!(
        "acknowledged {acked_total}, reopens {reopens_total} ({snapshot_opens} from a snapshot), torn writes {torn_total}, faults {faults_total}, interval-mode syncs {interval_syncs}"
    );
    if std::env::var("STORE_SEED").is_ok() {
        return;
    }
    assert!(
        acked_total > 1000,
        "the workload acknowledged too little: {acked_total}"
    );
    assert!(reopens_total > 100, "too few crashes: {reopens_total}");
    assert!(
        snapshot_opens > 50,
        "too few reopens from a snapshot: {snapshot_opens}"
    );
    assert!(torn_total > 10, "too few torn writes: {torn_total}");
    assert!(faults_total > 100, "too few disk faults: {faults_total}");
    assert!(
        interval_syncs > 50,
        "sync_interval mode barely ran: {interval_syncs}"
    );
}

#[test]
fn recovery_is_deterministic() {
    for seed in [7, 8, 9] {
        assert_eq!(run(seed, 300), run(seed, 300), "seed {seed} diverged");
    }
    assert_ne!(run(7, 300).disk_hash, run(8, 300).disk_hash);
}

#[test]
fn read_faults_never_serve_a_wrong_payload() {
    for seed in 0..40 {
        let mut harness = Harness::new(seed, true);
        for _ in 0..200 {
            let roll = harness.rng.below(100);
            match roll {
                0..=59 => harness.store_one(),
                60..=79 => harness.drain_actions(),
                80..=94 => harness.complete_sync(),
                95..=97 => {
                    let flipped = harness.disk.with(|disk| disk.flip_bit_at_rest());
                    harness.note(format!("bit rot at {flipped:?}"));
                }
                _ => {
                    harness.crash(false);
                }
            }
        }
        harness.check_contents(false);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "seed {} panicked; replay: STORE_SEED={} cargo test -p rnats-runtime-sim --test store_power_loss\nlast steps:\n  {}",
                self.seed,
                self.seed,
                self.history.join("\n  ")
            );
        }
    }
}
