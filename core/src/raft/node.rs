//! One RAFT node: the algorithm, as a passive machine.
//!
//! Inputs (each a method carrying the time): [`Node::handle_message`] (a
//! message from a peer), [`Node::handle_timeout`] (election, heartbeat and
//! check-quorum deadlines, [`Node::poll_timeout`] says when),
//! [`Node::propose`], [`Node::handle_sync_done`] (a log sync the node asked
//! for completed). Outputs: [`Node::poll_action`] hands out [`Action`]s in
//! order: messages to peers, log syncs to perform, committed entries to
//! apply, leader changes. Randomness (election timeouts) comes only from
//! the seed in [`Config`].
//!
//! Numbering, as nats-server's: one log index is one append-entry message
//! (its entries share the index and term; a heartbeat is never stored).
//! Commit, apply, acknowledgements and vote requests count messages, and
//! [`Action::Apply`] hands the state machine a message's entries together.
//!
//! Safety rules, each visible in the actions:
//! - the term and vote are durable (the term/vote file written and synced
//!   inline) before any message that depends on them is queued;
//! - a follower acknowledges an append only once a sync covering the
//!   appended entries completed; one sync covers every entry written before
//!   it was asked for (group commit, at most one in flight);
//! - a leader counts itself only for entries its own completed sync covers,
//!   and commits by counting only entries of its current term;
//! - a conflicting suffix is truncated, never a committed entry;
//! - a leader that has not heard from a majority within an election timeout
//!   steps down (check-quorum); a follower that heard from its leader within
//!   the minimum election timeout ignores vote requests (leader
//!   stickiness: nats-server's wire has no pre-vote message, see
//!   ARCHITECTURE.md).
//!
//! Leader transfer ([`Node::step_down`]): the leader appends a
//! leader-transfer entry naming a caught-up voter, sends it, and becomes a
//! follower. The named node campaigns as soon as it stores the entry, and
//! every node that stored it waives stickiness for that one candidate in
//! the next term; the entry changes nothing else, so the transfer is only
//! ever a hint: any node may still win, by the usual rules.
//!
//! Membership (the dissertation's single-server changes, §4.1): the voters
//! are the configuration of the latest configuration entry in the log
//! (peer state, add peer, remove peer), in effect as soon as it is appended
//! and undone if it is truncated; before any, [`Config::peers`]. A leader
//! refuses a change while the latest configuration entry is uncommitted
//! (its own first entry, the peer state, is one, so a new leader also
//! commits an entry of its term before changing anything). Quorums count
//! the current voters only; a leader removed from them keeps leading, not
//! counting itself, until the removal commits, then steps down; a node that
//! is not a voter never campaigns.
//!
//! Snapshots: the state machine hands one at an applied index
//! ([`Node::snapshot`]); the node saves it (checksummed, atomically) and
//! compacts its log to it. A leader that must send a follower entries it
//! compacted sends its snapshot instead, as nats-server does: an append
//! whose previous index and term are the snapshot's and whose entries are
//! the snapshot and the peer state. A snapshot that fails its checksum at
//! open is never trusted and never deleted: the node keeps its log and its
//! term and vote (so its acknowledgements and votes still stand), applies
//! nothing, never campaigns and refuses appends (hint 0) until a leader's
//! snapshot at or past its log's base is installed ([`Action::Restore`]);
//! a leader refused from the start of its log again asks its state machine
//! for a snapshot ([`Action::SnapshotWanted`]) if its own
//! is older than what it applied.
//!
//! A disk error poisons the node: it stops sending and applying until it is
//! reopened, because it can no longer tell what is durable.
//!
//! Lost logs: [`Node::open`] refuses state it cannot trust as `Config::id`'s
//! (an empty directory for an id that is not `fresh`, a missing, damaged or
//! foreign identity file, damaged synced data, a lazy-sync node's restart)
//! with an error whose `is_lost_log()` is true; the runtime then clears the
//! directory and opens the node under a new id, as a new member.

use super::log::{
    message_len, Base, HardState, Identity, LogEntry, RaftLog, RecoveryError, Snapshot,
    SnapshotFile, MAX_MESSAGE_LEN,
};
use super::wire::{
    AppendEntry, AppendEntryResponse, Entry, EntryType, PeerId, PeerState, VoteRequest,
    VoteResponse,
};
use crate::store::disk::Disk;
use crate::time::Instant;
use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// A node's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: PeerId,
    /// The group's voters while the log holds no configuration entry. A
    /// founding member lists itself; a node that joins an existing group
    /// lists the group without itself, and waits (never campaigning) until a
    /// leader's add-peer entry reaches its log.
    pub peers: Vec<PeerId>,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    pub heartbeat_interval: Duration,
    /// At most this many entries in one message a leader makes
    /// ([`Node::propose_batch`]); one message is one log index.
    pub max_entries_per_append: usize,
    /// A leader sends a follower at most this many messages past the first
    /// one not known to match there (pipelining and catch-up).
    pub max_appends_in_flight: usize,
    /// Seeds the election timeouts.
    pub seed: u64,
    /// `id` is new: it never had state anywhere (the runtime creates the
    /// group now, or minted the id for a node that joins it). Without it,
    /// an empty directory is a node whose state was wiped
    /// ([`RecoveryError::Wiped`]): it may have voted and acknowledged
    /// entries under `id`, so it must rejoin under a new id.
    pub fresh: bool,
    /// Acknowledge appends once written, before their sync (nats-server's
    /// default `sync_interval`). Opt-in: such a node may lose acknowledged
    /// entries in a power loss, so every restart of it is a lost log
    /// ([`RecoveryError::LazyRestart`]) and it rejoins under a new id.
    pub lazy_sync: bool,
    /// A bug planted on purpose (simulator proof only).
    #[cfg(feature = "planted-defects")]
    pub planted_defect: Option<RaftDefect>,
}

impl Config {
    /// A founding member's settings with nats-server's default timings
    /// scaled for tests: elections after 150-300 ms, heartbeats every 50 ms.
    pub fn new(id: PeerId, peers: Vec<PeerId>, seed: u64) -> Config {
        Config {
            id,
            peers,
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            max_entries_per_append: 64,
            max_appends_in_flight: 64,
            seed,
            fresh: true,
            lazy_sync: false,
            #[cfg(feature = "planted-defects")]
            planted_defect: None,
        }
    }
}

/// Bugs the simulator's tests plant in a node (feature `planted-defects`).
#[cfg(feature = "planted-defects")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftDefect {
    /// The term and vote are kept in memory only, never written: after a
    /// crash the node may vote again in a term it already voted in.
    VoteNotDurable,
    /// Appends are acknowledged (and the leader counts itself) before the
    /// sync that makes them durable.
    AckBeforeDurable,
    /// The leader commits an entry of an earlier term by counting replicas.
    CommitOldTermByCounting,
    /// A leader accepts a membership change while another is uncommitted.
    ConcurrentConfigChanges,
    /// A snapshot that fails its checksum at open is used anyway.
    TrustDamagedSnapshot,
    /// A node whose log was lost (wiped, damaged, or lazily synced before a
    /// crash) reopens empty under its old id and votes as its old self.
    WipedNodeVotes,
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// A message between peers (the `$NRG.*` payloads of `wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Append(AppendEntry),
    AppendResponse(AppendEntryResponse),
    Vote(VoteRequest),
    VoteResponse(VoteResponse),
}

/// What the node asks its runtime to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver `message` to peer `to`.
    Send { to: PeerId, message: Message },
    /// Sync file `path` of the node's disk, then call `handle_sync_done(tag, ..)`.
    Sync { tag: u64, path: String },
    /// Message `index` is committed: apply its entries to the state
    /// machine, in order (messages in index order).
    Apply(LogEntry),
    /// The node's view of the leader changed.
    LeaderChanged { term: u64, leader: Option<PeerId> },
    /// Replace the state machine with `snapshot` (at open, or installed
    /// from the leader); `Apply` resumes after its index.
    Restore(Snapshot),
    /// A follower needs a snapshot newer than this node's: call
    /// [`Node::snapshot`] at the state machine's applied index.
    SnapshotWanted,
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("index {index} is not applied yet")]
    NotApplied { index: u64 },
    #[error("the log is already compacted through index {base}")]
    Stale { base: u64 },
    #[error("the node's disk failed; it must be reopened")]
    Poisoned,
}

/// Why a step-down was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepDownError {
    #[error("not the leader")]
    NotLeader { leader: Option<PeerId> },
    #[error("the node's disk failed; it must be reopened")]
    Poisoned,
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader")]
    NotLeader { leader: Option<PeerId> },
    #[error("the node's disk failed; it must be reopened")]
    Poisoned,
    #[error("entry data over the bound")]
    TooLarge,
    #[error("a message needs at least one entry")]
    EmptyBatch,
    #[error("a membership change is in progress")]
    MembershipChanging,
    #[error("peer is already a member")]
    PeerExists,
    #[error("peer is not a member")]
    PeerNotFound,
    #[error("cannot remove the last member")]
    RemoveLastPeer,
}

/// A node's state as monitoring shows it (the base of a `/jsz` group entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub id: PeerId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<PeerId>,
    pub last_index: u64,
    pub last_term: u64,
    pub commit: u64,
    pub applied: u64,
    pub durable: u64,
    /// On a leader: each follower and the highest index known stored there.
    pub followers: Vec<(PeerId, u64)>,
    /// The current voters (the latest configuration in the log).
    pub peers: Vec<PeerId>,
    /// The index the log is compacted to (the snapshot's).
    pub snapshot: u64,
    /// The snapshot was damaged; waiting for a leader's.
    pub needs_snapshot: bool,
    pub poisoned: bool,
}

/// What a leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The first index not known to match the follower's log.
    next: u64,
    /// The highest index known to match and be durable there.
    matched: u64,
    /// The highest index sent since `next` was last set (pipelining).
    sent: u64,
    /// Heard from since the last check-quorum.
    active: bool,
    /// When it last answered (a step-down names only a follower heard
    /// from lately).
    heard: Option<Instant>,
}

/// An acknowledgement waiting for the sync that makes its entries durable.
#[derive(Debug, Clone, Copy)]
struct PendingAck {
    to: PeerId,
    index: u64,
}

/// One RAFT node over its disk `D`.
#[derive(Debug)]
pub struct Node<D> {
    config: Config,
    log: RaftLog<D>,
    hard: HardState,
    role: Role,
    leader: Option<PeerId>,
    /// Highest index known committed. Always `<= log.last_index()` on a leader.
    commit: u64,
    /// Highest index handed out as `Apply`; `applied <= commit`.
    applied: u64,
    /// The log is durable through this index (clipped by truncation).
    durable: u64,
    /// The sync in flight: its tag and the index it will make durable.
    sync_in_flight: Option<(u64, u64)>,
    /// Appends or truncations not yet covered by a requested sync.
    dirty: bool,
    next_tag: u64,
    pending_acks: Vec<PendingAck>,
    votes: BTreeSet<PeerId>,
    /// Each configuration in the log: the index of the entry that set it
    /// (0: `Config::peers`) and its voters, sorted. Never empty; the last is
    /// in effect.
    configs: Vec<(u64, Vec<PeerId>)>,
    /// On a leader: every current voter but itself.
    progress: BTreeMap<PeerId, Progress>,
    election_deadline: Instant,
    heartbeat_deadline: Instant,
    last_leader_contact: Option<Instant>,
    rng: ChaCha8Rng,
    actions: VecDeque<Action>,
    poisoned: bool,
    /// The latest trusted snapshot (what a leader sends a lagging follower).
    snapshot: Option<Snapshot>,
    /// The snapshot was damaged: nothing applies until one is installed.
    needs_snapshot: bool,
    /// A `SnapshotWanted` is out and not yet answered.
    snapshot_wanted: bool,
    /// The latest leader-transfer entry stored in the term it was written
    /// in: that term and the successor it names. Waives stickiness for the
    /// successor's vote request of the next term.
    transfer: Option<(u64, PeerId)>,
    /// This node was just named successor: campaign at once.
    transfer_to_me: bool,
    /// Follower: messages of its current leader that arrived before the
    /// one they follow, by previous index (see `hold_early`).
    early: BTreeMap<u64, AppendEntry>,
}

impl<D: Disk> Node<D> {
    /// Open the node's state in `dir` of `disk` and start as a follower.
    pub fn open(
        config: Config,
        disk: D,
        dir: &str,
        now: Instant,
    ) -> Result<Node<D>, RecoveryError> {
        assert!(!config.peers.is_empty(), "a group has a member");
        assert!(!config.id.is_none(), "the zero id means none");
        assert!(config.election_timeout_min < config.election_timeout_max);
        assert!(config.heartbeat_interval < config.election_timeout_min);
        assert!(
            (1..=super::wire::MAX_ENTRIES).contains(&config.max_entries_per_append),
            "a message carries 1 to u16::MAX entries"
        );
        assert!(config.max_appends_in_flight > 0);
        let mut founding = config.peers.clone();
        founding.sort();
        founding.dedup();
        let mut disk = disk;
        let (mut log, hard) = match Self::recover(&config, &mut disk, dir, &founding) {
            Ok(()) => RaftLog::open(disk, dir, &founding)?,
            #[cfg(feature = "planted-defects")]
            Err(error)
                if error.is_lost_log()
                    && config.planted_defect == Some(RaftDefect::WipedNodeVotes) =>
            {
                // The defect: start over empty under the old id.
                super::log::clear(&mut disk, dir)?;
                super::log::create(&mut disk, dir, config.id, config.lazy_sync, &founding)?;
                RaftLog::open(disk, dir, &founding)?
            }
            Err(error) => return Err(error),
        };
        let mut snapshot = match log.load_snapshot()? {
            SnapshotFile::Valid(snapshot) => Some(snapshot),
            SnapshotFile::None => None,
            SnapshotFile::Damaged => {
                #[cfg(feature = "planted-defects")]
                let trusted = if config.planted_defect == Some(RaftDefect::TrustDamagedSnapshot) {
                    log.load_snapshot_unchecked()?
                } else {
                    None
                };
                #[cfg(not(feature = "planted-defects"))]
                let trusted = None;
                trusted
            }
        };
        let base = log.base().index;
        if let Some(snap) = &snapshot {
            if snap.index > base {
                // Saved, then a crash before the log was compacted to it.
                log.compact(Base {
                    index: snap.index,
                    term: snap.term,
                    voters: snap.voters.clone(),
                })?;
            } else if snap.index < base {
                // Older than the log's base: it cannot rebuild the state.
                snapshot = None;
            }
        }
        let base = log.base().index;
        let needs_snapshot = base > 0 && snapshot.is_none();
        let durable = log.last_index();
        let mut node = Node {
            configs: Vec::new(),
            snapshot: snapshot.clone(),
            needs_snapshot,
            snapshot_wanted: false,
            transfer: None,
            transfer_to_me: false,
            early: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            log,
            hard,
            role: Role::Follower,
            leader: None,
            commit: base,
            applied: if needs_snapshot { 0 } else { base },
            durable,
            sync_in_flight: None,
            dirty: false,
            next_tag: 1,
            pending_acks: Vec::new(),
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            election_deadline: now,
            heartbeat_deadline: now,
            last_leader_contact: None,
            actions: VecDeque::new(),
            poisoned: false,
        };
        node.rebuild_configs(if base == 0 {
            founding
        } else {
            node.log.base().voters.clone()
        });
        if let Some(snap) = snapshot {
            node.actions.push_back(Action::Restore(snap));
        }
        node.reset_election_deadline(now);
        Ok(node)
    }

    /// Whether `dir` may be trusted as `config.id`'s state; a new directory
    /// gets its identity file here, before anything else is written.
    fn recover(
        config: &Config,
        disk: &mut D,
        dir: &str,
        founding: &[PeerId],
    ) -> Result<(), RecoveryError> {
        disk.create_dir(dir)?;
        match super::log::read_identity(disk, dir)? {
            Identity::Valid { id, .. } if id != config.id => {
                Err(RecoveryError::IdentityMismatch { found: id })
            }
            Identity::Valid { lazy: true, .. } => Err(RecoveryError::LazyRestart),
            Identity::Valid { .. } => {
                // Created before the identity, removed only after it: if
                // either is gone (or the log cut to nothing), so is what
                // the node promised.
                for file in ["log", "tav"] {
                    let path = crate::store::disk::join(dir, file);
                    if disk.len(&path)?.is_none_or(|len| len == 0) {
                        return Err(RecoveryError::StateMissing { file });
                    }
                }
                if config.lazy_sync {
                    // From now on a restart cannot trust the log.
                    super::log::write_identity(disk, dir, config.id, true)?;
                }
                Ok(())
            }
            Identity::Damaged => Err(RecoveryError::IdentityDamaged),
            Identity::Absent if super::log::has_state(disk, dir)? => {
                Err(RecoveryError::IdentityMissing)
            }
            Identity::Absent if !config.fresh => Err(RecoveryError::Wiped { id: config.id }),
            Identity::Absent => {
                super::log::create(disk, dir, config.id, config.lazy_sync, founding)?;
                Ok(())
            }
        }
    }

    /// The configurations from `at_base` (the voters at the log's base)
    /// through every configuration entry the log holds.
    fn rebuild_configs(&mut self, at_base: Vec<PeerId>) {
        let mut configs = vec![(self.log.base().index, at_base)];
        for message in self.log.slice(1, self.log.last_index()) {
            let current = &configs.last().expect("never empty").1;
            if let Some(next) = message_config(current, &message.entries) {
                configs.push((message.index, next));
            }
        }
        self.configs = configs;
    }

    /// The voters as of entry `index` (at least the log's base).
    fn voters_at(&self, index: u64) -> Vec<PeerId> {
        self.configs
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .expect("the base configuration is at or below every index held")
            .1
            .clone()
    }

    /// The state machine's snapshot through `index` (applied): saved, then
    /// the log compacted to it.
    pub fn snapshot(&mut self, now: Instant, index: u64, data: Bytes) -> Result<(), SnapshotError> {
        if self.poisoned {
            return Err(SnapshotError::Poisoned);
        }
        if self.needs_snapshot || index > self.applied {
            return Err(SnapshotError::NotApplied { index });
        }
        let base = self.log.base().index;
        if index <= base {
            return Err(SnapshotError::Stale { base });
        }
        let term = self
            .log
            .term_at(index)
            .expect("applied entries are in the log");
        let voters = self.voters_at(index);
        let snap = Snapshot {
            index,
            term,
            voters: voters.clone(),
            data,
        };
        if !self.install_locally(snap) {
            return Err(SnapshotError::Poisoned);
        }
        self.snapshot_wanted = false;
        self.finish(now);
        Ok(())
    }

    /// Save `snap` and compact the log to it; false (and poisoned) on a
    /// disk error. Whatever the log keeps is durable afterwards.
    fn install_locally(&mut self, snap: Snapshot) -> bool {
        if self.log.save_snapshot(&snap).is_err() {
            self.poisoned = true;
            return false;
        }
        if snap.index > self.log.base().index {
            let base = Base {
                index: snap.index,
                term: snap.term,
                voters: snap.voters.clone(),
            };
            if self.log.compact(base).is_err() {
                self.poisoned = true;
                return false;
            }
        }
        let last = self.log.last_index();
        self.durable = last;
        if let Some((_, through)) = &mut self.sync_in_flight {
            *through = (*through).min(last);
        }
        self.pending_acks.retain(|ack| ack.index <= last);
        self.rebuild_configs(snap.voters.clone());
        self.snapshot = Some(snap);
        true
    }

    pub fn id(&self) -> PeerId {
        self.config.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.hard.term
    }
    pub fn voted_for(&self) -> Option<PeerId> {
        (!self.hard.vote.is_none()).then_some(self.hard.vote)
    }
    pub fn leader(&self) -> Option<PeerId> {
        self.leader
    }
    pub fn commit_index(&self) -> u64 {
        self.commit
    }
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    pub fn durable_index(&self) -> u64 {
        self.durable
    }
    pub fn log(&self) -> &RaftLog<D> {
        &self.log
    }
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The node's state for monitoring.
    pub fn state(&self) -> GroupState {
        let followers = self
            .progress
            .iter()
            .map(|(peer, p)| (*peer, p.matched))
            .collect();
        GroupState {
            id: self.config.id,
            role: self.role,
            term: self.hard.term,
            leader: self.leader,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            commit: self.commit,
            applied: self.applied,
            durable: self.durable,
            followers,
            peers: self.voters().to_vec(),
            snapshot: self.log.base().index,
            needs_snapshot: self.needs_snapshot,
            poisoned: self.poisoned,
        }
    }

    /// The next action, in the order the node decided them.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Instant {
        if self.role == Role::Leader {
            self.heartbeat_deadline.min(self.election_deadline)
        } else {
            self.election_deadline
        }
    }

    /// Propose `data` as a normal entry, a message of its own; the
    /// message's index if this node leads.
    pub fn propose(&mut self, now: Instant, data: Bytes) -> Result<u64, ProposeError> {
        self.propose_batch(now, vec![data])
    }

    /// Propose `batch` as normal entries of one message (nats-server's
    /// leader packs the proposals it has queued the same way); the index
    /// they share if this node leads. At most `max_entries_per_append`
    /// entries, and the message within a log record's bound.
    pub fn propose_batch(&mut self, now: Instant, batch: Vec<Bytes>) -> Result<u64, ProposeError> {
        if self.poisoned {
            return Err(ProposeError::Poisoned);
        }
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if batch.is_empty() {
            return Err(ProposeError::EmptyBatch);
        }
        let entries: Vec<Entry> = batch
            .into_iter()
            .map(|data| Entry::new(EntryType::Normal, data))
            .collect();
        if entries.len() > self.config.max_entries_per_append
            || message_len(&entries) > MAX_MESSAGE_LEN
        {
            return Err(ProposeError::TooLarge);
        }
        let index = self.log.last_index() + 1;
        self.append_own(entries);
        self.replicate_new();
        self.finish(now);
        Ok(index)
    }

    /// Propose adding `peer` to the voters; the index of the change. It
    /// counts in quorums from this moment on (once appended).
    pub fn propose_add_peer(&mut self, now: Instant, peer: PeerId) -> Result<u64, ProposeError> {
        self.propose_change(now, EntryType::AddPeer, peer)
    }

    /// Propose removing `peer` (this node too) from the voters.
    pub fn propose_remove_peer(&mut self, now: Instant, peer: PeerId) -> Result<u64, ProposeError> {
        self.propose_change(now, EntryType::RemovePeer, peer)
    }

    fn propose_change(
        &mut self,
        now: Instant,
        kind: EntryType,
        peer: PeerId,
    ) -> Result<u64, ProposeError> {
        if self.poisoned {
            return Err(ProposeError::Poisoned);
        }
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.commit < self.config_index() && !self.defect(3) {
            return Err(ProposeError::MembershipChanging);
        }
        let member = self.voters().contains(&peer);
        match kind {
            EntryType::AddPeer if member => return Err(ProposeError::PeerExists),
            EntryType::AddPeer if peer.is_none() => return Err(ProposeError::PeerNotFound),
            EntryType::RemovePeer if !member => return Err(ProposeError::PeerNotFound),
            EntryType::RemovePeer if self.voters().len() == 1 => {
                return Err(ProposeError::RemoveLastPeer)
            }
            _ => {}
        }
        let index = self.log.last_index() + 1;
        self.append_own(vec![Entry::new(kind, Bytes::copy_from_slice(&peer.0))]);
        self.replicate_new();
        self.finish(now);
        Ok(index)
    }

    /// Leader: stop leading, handing leadership to a successor if one is
    /// fit: a follower that answered within three heartbeats (nats-server's
    /// test of health) and holds every committed entry. `preferred` if it
    /// is fit, else the fit follower holding the most (nats-server falls
    /// back to any healthy peer too). The successor is named in a
    /// leader-transfer entry sent after everything it was sent, so once it
    /// stores it its log is the leader's; it then campaigns. Without a fit
    /// follower the node only steps down, and the next election picks.
    /// Returns the successor named, if any.
    pub fn step_down(
        &mut self,
        now: Instant,
        preferred: Option<PeerId>,
    ) -> Result<Option<PeerId>, StepDownError> {
        if self.poisoned {
            return Err(StepDownError::Poisoned);
        }
        if self.role != Role::Leader {
            return Err(StepDownError::NotLeader {
                leader: self.leader,
            });
        }
        let lately = self.config.heartbeat_interval * 3;
        let commit = self.commit;
        let fit = |p: &Progress| {
            p.matched >= commit && p.matched > 0 && p.heard.is_some_and(|t| now < t + lately)
        };
        let successor = preferred
            .filter(|peer| self.progress.get(peer).is_some_and(fit))
            .or_else(|| {
                // The most caught up; ties to the lowest id.
                let best = self.progress.iter().filter(|(_, p)| fit(p));
                best.max_by_key(|(peer, p)| (p.matched, std::cmp::Reverse(**peer)))
                    .map(|(peer, _)| *peer)
            });
        if let Some(successor) = successor {
            debug_assert_ne!(successor, self.config.id, "progress holds only followers");
            self.append_own(vec![Entry::new(
                EntryType::LeaderTransfer,
                Bytes::copy_from_slice(&successor.0),
            )]);
            self.replicate_new();
        }
        let term = self.hard.term;
        self.become_follower(now, term, None);
        self.finish(now);
        Ok(successor)
    }

    /// The current voters.
    pub fn voters(&self) -> &[PeerId] {
        &self.configs.last().expect("never empty").1
    }

    /// The index of the message that set the current voters (0: none did).
    pub fn config_index(&self) -> u64 {
        self.configs.last().expect("never empty").0
    }

    fn is_voter(&self) -> bool {
        self.voters().contains(&self.config.id)
    }

    /// After the log gained message `index` (its `entries`): its
    /// configuration takes effect now.
    fn note_config(&mut self, index: u64, entries: &[Entry]) {
        if let Some(next) = message_config(self.voters(), entries) {
            self.configs.push((index, next));
            if self.role == Role::Leader {
                self.track_voters();
            }
        }
    }

    /// Leader: follow exactly the current voters but itself.
    fn track_voters(&mut self) {
        let me = self.config.id;
        let voters = self.voters().to_vec();
        self.progress.retain(|peer, _| voters.contains(peer));
        let last = self.log.last_index();
        for peer in voters.into_iter().filter(|p| *p != me) {
            // A new peer is sent the latest entry first; its refusal moves
            // `next` back to where its log ends.
            self.progress.entry(peer).or_insert(Progress {
                next: last,
                matched: 0,
                sent: last.saturating_sub(1),
                active: false,
                heard: None,
            });
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poisoned {
            return;
        }
        match self.role {
            Role::Leader => {
                if now >= self.election_deadline {
                    self.check_quorum(now);
                }
                if self.role == Role::Leader && now >= self.heartbeat_deadline {
                    self.heartbeat_deadline = now + self.config.heartbeat_interval;
                    let peers: Vec<PeerId> = self.progress.keys().copied().collect();
                    for peer in peers {
                        self.send_append_from_next(peer);
                    }
                }
            }
            Role::Follower | Role::Candidate => {
                if now >= self.election_deadline {
                    if self.is_voter() && !self.needs_snapshot {
                        self.start_election(now);
                    } else {
                        // Not a member: wait to be added, never campaign.
                        self.reset_election_deadline(now);
                    }
                }
            }
        }
        self.finish(now);
    }

    /// A message from peer `from`.
    pub fn handle_message(&mut self, now: Instant, from: PeerId, message: Message) {
        // Senders outside the current voters are heard: a leader this node
        // has not yet learned was added must be able to reach it.
        if self.poisoned || from == self.config.id || from.is_none() {
            return;
        }
        match message {
            Message::Vote(request) => self.on_vote_request(now, from, request),
            Message::VoteResponse(response) => self.on_vote_response(now, response),
            Message::Append(append) => self.on_append(now, from, append),
            Message::AppendResponse(response) => self.on_append_response(now, from, response),
        }
        self.finish(now);
    }

    /// The sync asked for with `tag` completed.
    pub fn handle_sync_done(
        &mut self,
        now: Instant,
        tag: u64,
        result: Result<(), crate::store::disk::DiskError>,
    ) {
        let Some((in_flight, through)) = self.sync_in_flight else {
            panic!("sync {tag} completed but none is in flight");
        };
        assert_eq!(in_flight, tag, "syncs complete in the order asked");
        self.sync_in_flight = None;
        if result.is_err() {
            self.poisoned = true;
            return;
        }
        assert!(
            through <= self.log.last_index(),
            "truncation clips the sync in flight"
        );
        self.durable = self.durable.max(through);
        if self.role == Role::Leader {
            self.advance_commit();
        }
        self.finish(now);
    }

    fn quorum(&self) -> usize {
        self.voters().len() / 2 + 1
    }

    fn defect(&self, _which: u8) -> bool {
        #[cfg(feature = "planted-defects")]
        {
            let wanted = match _which {
                0 => RaftDefect::VoteNotDurable,
                1 => RaftDefect::AckBeforeDurable,
                2 => RaftDefect::CommitOldTermByCounting,
                3 => RaftDefect::ConcurrentConfigChanges,
                4 => RaftDefect::TrustDamagedSnapshot,
                _ => RaftDefect::WipedNodeVotes,
            };
            self.config.planted_defect == Some(wanted)
        }
        #[cfg(not(feature = "planted-defects"))]
        false
    }

    fn reset_election_deadline(&mut self, now: Instant) {
        let min = self.config.election_timeout_min.as_nanos() as u64;
        let spread = self.config.election_timeout_max.as_nanos() as u64 - min;
        let drawn = min + self.rng.next_u64() % spread;
        self.election_deadline = now + Duration::from_nanos(drawn);
    }

    /// Make `hard` the durable term and vote; false (and poisoned) on a disk error.
    fn persist_hard(&mut self, hard: HardState) -> bool {
        assert!(hard.term >= self.hard.term, "terms never go back");
        if hard.term == self.hard.term && !self.hard.vote.is_none() {
            assert_eq!(hard.vote, self.hard.vote, "one vote per term");
        }
        #[cfg(feature = "planted-defects")]
        let result = if self.defect(0) {
            // The term and vote stay in memory only.
            Ok(())
        } else {
            self.log.save_hard_state(hard)
        };
        #[cfg(not(feature = "planted-defects"))]
        let result = self.log.save_hard_state(hard);
        if result.is_err() {
            self.poisoned = true;
            return false;
        }
        self.hard = hard;
        true
    }

    fn set_leader(&mut self, leader: Option<PeerId>) {
        if self.leader != leader {
            self.leader = leader;
            self.actions.push_back(Action::LeaderChanged {
                term: self.hard.term,
                leader,
            });
        }
    }

    /// Become a follower in `term` (at least the current one).
    fn become_follower(&mut self, now: Instant, term: u64, leader: Option<PeerId>) {
        assert!(term >= self.hard.term);
        if term > self.hard.term || leader != self.leader {
            // Held messages are the old leader's.
            self.early.clear();
        }
        if term > self.hard.term {
            if !self.persist_hard(HardState {
                term,
                vote: PeerId::NONE,
            }) {
                return;
            }
            self.pending_acks.clear();
        }
        self.role = Role::Follower;
        self.votes.clear();
        self.progress.clear();
        self.set_leader(leader);
        self.reset_election_deadline(now);
    }

    fn start_election(&mut self, now: Instant) {
        let term = self.hard.term + 1;
        if !self.persist_hard(HardState {
            term,
            vote: self.config.id,
        }) {
            return;
        }
        self.role = Role::Candidate;
        self.pending_acks.clear();
        self.early.clear();
        self.progress.clear();
        self.set_leader(None);
        self.votes.clear();
        self.votes.insert(self.config.id);
        self.reset_election_deadline(now);
        let request = VoteRequest {
            term,
            last_term: self.log.last_term(),
            last_index: self.log.last_index(),
            candidate: self.config.id,
        };
        for peer in self.other_peers() {
            self.send(peer, Message::Vote(request));
        }
        if self.vote_count() >= self.quorum() {
            self.become_leader(now);
        }
    }

    /// Votes from current voters (the configuration may change mid-election).
    fn vote_count(&self) -> usize {
        let voters = self.voters();
        self.votes.iter().filter(|v| voters.contains(v)).count()
    }

    fn other_peers(&self) -> Vec<PeerId> {
        let me = self.config.id;
        self.voters().iter().copied().filter(|p| *p != me).collect()
    }

    fn send(&mut self, to: PeerId, message: Message) {
        debug_assert_ne!(to, self.config.id);
        self.actions.push_back(Action::Send { to, message });
    }

    fn on_vote_request(&mut self, now: Instant, from: PeerId, request: VoteRequest) {
        if request.candidate != from {
            return;
        }
        // Leader stickiness (in place of pre-vote, which the wire lacks): a
        // live leader is not deposed by a node that merely stopped hearing it.
        let leader_live = self.role == Role::Leader
            || (self.leader.is_some()
                && self
                    .last_leader_contact
                    .is_some_and(|t| now < t + self.config.election_timeout_min));
        // ...unless the leader handed over to this very candidate.
        let handed_over = request.term == self.hard.term + 1
            && self.transfer == Some((self.hard.term, request.candidate));
        if leader_live && request.term > self.hard.term && !handed_over {
            return;
        }
        if request.term > self.hard.term {
            self.become_follower(now, request.term, None);
            if self.poisoned {
                return;
            }
        }
        let up_to_date = (request.last_term, request.last_index)
            >= (self.log.last_term(), self.log.last_index());
        let free = self.hard.vote.is_none() || self.hard.vote == request.candidate;
        let grant =
            request.term == self.hard.term && self.role == Role::Follower && free && up_to_date;
        if grant && self.hard.vote.is_none() {
            if !self.persist_hard(HardState {
                term: self.hard.term,
                vote: request.candidate,
            }) {
                return;
            }
            self.reset_election_deadline(now);
        }
        let response = VoteResponse {
            term: self.hard.term,
            peer: self.config.id,
            granted: grant,
            empty: self.log.last_index() == 0,
        };
        self.send(from, Message::VoteResponse(response));
    }

    fn on_vote_response(&mut self, now: Instant, response: VoteResponse) {
        if response.term > self.hard.term {
            self.become_follower(now, response.term, None);
            return;
        }
        if self.role != Role::Candidate || response.term != self.hard.term || !response.granted {
            return;
        }
        if !self.voters().contains(&response.peer) {
            return;
        }
        self.votes.insert(response.peer);
        if self.vote_count() >= self.quorum() {
            self.become_leader(now);
        }
    }

    fn become_leader(&mut self, now: Instant) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.hard.vote, self.config.id, "a leader voted for itself");
        self.role = Role::Leader;
        self.votes.clear();
        let last = self.log.last_index();
        for peer in self.other_peers() {
            let progress = Progress {
                next: last + 1,
                matched: 0,
                sent: last,
                active: false,
                heard: None,
            };
            self.progress.insert(peer, progress);
        }
        self.set_leader(Some(self.config.id));
        let voters = self.voters().to_vec();
        // As nats-server does, a new leader's first entry is the peer state:
        // it also lets entries of earlier terms commit under this term.
        let state = PeerState {
            cluster_size: voters.len() as u32,
            peers: voters,
            domain_ext: 0,
        };
        self.append_own(vec![Entry::new(EntryType::PeerState, state.encode())]);
        self.replicate_new();
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        self.election_deadline = now + self.config.election_timeout_max;
    }

    /// Leader: step down unless a majority was heard from since the last check.
    fn check_quorum(&mut self, now: Instant) {
        let heard =
            usize::from(self.is_voter()) + self.progress.values().filter(|p| p.active).count();
        for progress in self.progress.values_mut() {
            progress.active = false;
        }
        if heard >= self.quorum() {
            self.election_deadline = now + self.config.election_timeout_max;
        } else {
            let term = self.hard.term;
            self.become_follower(now, term, None);
        }
    }

    /// Leader: append one message of `entries` at the next index.
    fn append_own(&mut self, entries: Vec<Entry>) {
        assert_eq!(self.role, Role::Leader);
        let entry = LogEntry {
            index: self.log.last_index() + 1,
            term: self.hard.term,
            entries,
        };
        if !self.write_entry(entry) {
            return;
        }
        if self.progress.is_empty() {
            self.advance_commit();
        }
    }

    /// Send each follower what it was not sent yet, within its window.
    fn replicate_new(&mut self) {
        let peers: Vec<PeerId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.pump(peer);
        }
    }

    /// Send `peer` the messages after the last one sent, while fewer than
    /// `max_appends_in_flight` are past its `next` (a sliding window: each
    /// acknowledgement lets more go, so catch-up is pipelined but bounded).
    fn pump(&mut self, peer: PeerId) {
        let progress = self.progress[&peer];
        let window_end =
            (progress.next - 1).saturating_add(self.config.max_appends_in_flight as u64);
        if progress.sent < self.log.last_index() && progress.sent < window_end {
            self.send_appends(peer, progress.sent + 1, window_end);
        }
    }

    /// A burst from `peer`'s next index (the heartbeat and refusal path).
    fn send_append_from_next(&mut self, peer: PeerId) {
        let next = self.progress[&peer].next;
        self.send_append(peer, next);
    }

    /// Up to a window's worth of messages to `peer` from index `from`, or a
    /// heartbeat when `from` is past the end.
    fn send_append(&mut self, peer: PeerId, from: u64) {
        let to = (from - 1).saturating_add(self.config.max_appends_in_flight as u64);
        self.send_appends(peer, from, to);
    }

    /// Messages `from..=to` (clamped to the log) to `peer`, one append
    /// entry each, as nats-server sends its stored messages: each names the
    /// message before it as its previous index and term, so each is one
    /// log index on the follower. Past the end: a heartbeat (no entries).
    /// Below the log's base: the snapshot.
    fn send_appends(&mut self, peer: PeerId, from: u64, to: u64) {
        if from <= self.log.base().index {
            return self.send_snapshot(peer);
        }
        let last = self.log.last_index();
        assert!(from >= 1 && from <= last + 1);
        if from > last {
            let heartbeat = AppendEntry {
                leader: self.config.id,
                term: self.hard.term,
                commit: self.commit,
                prev_term: self.log.last_term(),
                prev_index: last,
                entries: Vec::new(),
                leader_term: 0,
            };
            return self.send(peer, Message::Append(heartbeat));
        }
        let to = to.clamp(from, last);
        let mut prev_term = self.log.term_at(from - 1).expect("prev is in the log");
        let mut appends = Vec::with_capacity((to - from + 1) as usize);
        for message in self.log.slice(from, to) {
            appends.push(AppendEntry {
                leader: self.config.id,
                term: message.term,
                commit: self.commit,
                prev_term,
                prev_index: message.index - 1,
                entries: message.entries.clone(),
                leader_term: if message.term == self.hard.term {
                    0
                } else {
                    self.hard.term
                },
            });
            prev_term = message.term;
        }
        let progress = self.progress.get_mut(&peer).expect("a follower");
        progress.sent = progress.sent.max(to);
        for append in appends {
            debug_assert!(append.sender_term() == self.hard.term);
            self.send(peer, Message::Append(append));
        }
    }

    /// The entries `peer` needs are compacted: send the snapshot (with the
    /// peer state, as nats-server's catch-up does).
    fn send_snapshot(&mut self, peer: PeerId) {
        let snap = self
            .snapshot
            .clone()
            .expect("a compacted leader holds its snapshot");
        let state = PeerState {
            cluster_size: snap.voters.len() as u32,
            peers: snap.voters.clone(),
            domain_ext: 0,
        };
        let append = AppendEntry {
            leader: self.config.id,
            term: self.hard.term,
            commit: self.commit,
            prev_term: snap.term,
            prev_index: snap.index,
            entries: vec![
                Entry::new(EntryType::Snapshot, snap.data),
                Entry::new(EntryType::PeerState, state.encode()),
            ],
            leader_term: 0,
        };
        let progress = self.progress.get_mut(&peer).expect("a follower");
        progress.sent = progress.sent.max(snap.index);
        self.send(peer, Message::Append(append));
    }

    fn refuse(&mut self, to: PeerId, hint: u64) {
        let response = AppendEntryResponse {
            term: self.hard.term,
            index: hint,
            peer: self.config.id,
            success: false,
        };
        self.send(to, Message::AppendResponse(response));
    }

    /// A leader's snapshot (see `send_snapshot`).
    fn on_install(&mut self, from: PeerId, append: AppendEntry) {
        let (index, term) = (append.prev_index, append.prev_term);
        let Some(voters) = next_config(&[], EntryType::PeerState, &append.entries[1].data) else {
            return;
        };
        let base = self.log.base().index;
        if !self.needs_snapshot && (index <= base || self.log.term_at(index) == Some(term)) {
            // Already held: committed there, as the leader says.
            self.commit = self.commit.max(index.min(self.log.last_index()));
            self.pending_acks.push(PendingAck { to: from, index });
            return;
        }
        if index < base || (index == base && term != self.log.base().term) {
            // Older than what this node compacted: wait for a newer one.
            return self.refuse(from, 0);
        }
        debug_assert!(self.needs_snapshot || index > self.commit);
        let snap = Snapshot {
            index,
            term,
            voters,
            data: append.entries[0].data.clone(),
        };
        if !self.install_locally(snap.clone()) {
            return;
        }
        self.needs_snapshot = false;
        self.commit = self.commit.max(index);
        self.applied = index;
        self.actions.push_back(Action::Restore(snap));
        self.pending_acks.push(PendingAck { to: from, index });
    }

    fn on_append(&mut self, now: Instant, from: PeerId, append: AppendEntry) {
        let mut next = Some(append);
        while let Some(append) = next.take() {
            let Some(matched) = self.take_append(now, from, append) else {
                return;
            };
            // The gap before a held message is filled: take it now.
            self.early.retain(|&prev, _| prev >= matched);
            next = self.early.remove(&matched);
        }
    }

    /// One append entry from the leader `from`: the index it leaves
    /// matched (to be acknowledged once durable), `None` if it was refused,
    /// held or dropped.
    fn take_append(&mut self, now: Instant, from: PeerId, append: AppendEntry) -> Option<u64> {
        let sender_term = append.sender_term();
        // Malformed: an entry's term above its sender's, or a previous
        // entry that cannot exist.
        if append.leader != from
            || append.term > sender_term
            || append.prev_term > append.term
            || (append.prev_index == 0 && append.prev_term != 0)
        {
            return None;
        }
        if sender_term < self.hard.term {
            let response = AppendEntryResponse {
                term: self.hard.term,
                index: self.log.last_index(),
                peer: self.config.id,
                success: false,
            };
            self.send(from, Message::AppendResponse(response));
            return None;
        }
        #[cfg(not(feature = "planted-defects"))]
        assert!(
            !(self.role == Role::Leader && sender_term == self.hard.term),
            "two leaders in term {sender_term}"
        );
        self.become_follower(now, sender_term, Some(from));
        if self.poisoned {
            return None;
        }
        self.last_leader_contact = Some(now);
        let install = append.entries.len() == 2
            && append.entries[0].kind == EntryType::Snapshot
            && append.entries[1].kind == EntryType::PeerState;
        if install {
            self.on_install(from, append);
            return None;
        }
        if self.needs_snapshot {
            self.refuse(from, 0);
            return None;
        }
        if message_len(&append.entries) > MAX_MESSAGE_LEN {
            // More than one log record holds: dropped unacknowledged (the
            // wire allows it, no rnats leader makes one).
            return None;
        }
        // A message is one log index, the one after its previous; a
        // heartbeat (no entries) names only its previous.
        let through = append.prev_index + u64::from(!append.entries.is_empty());
        if append.prev_index < self.log.base().index {
            // At or below the base: committed, and identical to the
            // leader's there.
            self.pending_acks.push(PendingAck {
                to: from,
                index: through,
            });
            return None;
        }
        let last = self.log.last_index();
        let prev_matches = self.log.term_at(append.prev_index) == Some(append.prev_term);
        if !prev_matches {
            if append.prev_index > last {
                // The first message past a gap is refused, so the leader
                // learns where this log ends; so is a resend of one held
                // (what fills the gap was lost). The rest of a burst waits.
                let quiet = !self.early.is_empty() && !self.early.contains_key(&append.prev_index);
                if self.hold_early(from, &append) && quiet {
                    return None;
                }
            }
            let hint = if append.prev_index > last {
                last
            } else {
                append.prev_index - 1
            };
            assert!(
                append.prev_index > self.commit,
                "a committed entry never conflicts"
            );
            let response = AppendEntryResponse {
                term: self.hard.term,
                index: hint,
                peer: self.config.id,
                success: false,
            };
            self.send(from, Message::AppendResponse(response));
            return None;
        }
        let matched = through;
        if !append.entries.is_empty() {
            let index = through;
            match self.log.term_at(index) {
                // Held already: one index in one term is one message.
                Some(term) if term == append.term => {}
                held => {
                    if held.is_some() {
                        assert!(index > self.commit, "a committed entry is never truncated");
                        if !self.truncate_after(index - 1) {
                            return None;
                        }
                    }
                    let message = LogEntry {
                        index,
                        term: append.term,
                        entries: append.entries,
                    };
                    if !self.write_entry(message) {
                        return None;
                    }
                }
            }
        }
        let commit = append.commit.min(matched);
        if commit > self.commit {
            self.commit = commit;
        }
        self.pending_acks.push(PendingAck {
            to: from,
            index: matched,
        });
        if std::mem::take(&mut self.transfer_to_me) && self.is_voter() {
            // Named successor (nats-server's node campaigns after 10 ms):
            // the next `handle_timeout` starts the election.
            self.election_deadline = now;
        }
        Some(matched)
    }

    /// Keep `append` of the current leader, which arrived ahead of a
    /// message this node lacks, until that gap fills (a reordering link
    /// otherwise turns a pipelined catch-up into refusals, each moving the
    /// leader back). Bounded by the catch-up window in count and by two
    /// messages' worth in bytes. Every held message is later taken through
    /// the same checks as any. False if it was not held.
    fn hold_early(&mut self, from: PeerId, append: &AppendEntry) -> bool {
        let window = self.config.max_appends_in_flight as u64;
        let held: usize = self.early.values().map(|a| message_len(&a.entries)).sum();
        let fits = held + message_len(&append.entries) <= 2 * MAX_MESSAGE_LEN;
        if append.entries.is_empty()
            || self.leader != Some(from)
            || append.prev_index - self.log.last_index() >= window
            || (self.early.len() as u64) >= window
            || !fits
        {
            return false;
        }
        self.early.insert(append.prev_index, append.clone());
        true
    }

    /// Write message `entry` after the last; false (and poisoned) on a
    /// disk error. Not durable until a sync covers it (`dirty` asks for one).
    fn write_entry(&mut self, entry: LogEntry) -> bool {
        let (index, term) = (entry.index, entry.term);
        // The message's last leader-transfer entry names the successor.
        let successor = entry
            .entries
            .iter()
            .rev()
            .find(|e| e.kind == EntryType::LeaderTransfer)
            .map(|e| PeerId::from_slice(&e.data));
        let config = entry
            .entries
            .iter()
            .any(|e| {
                matches!(
                    e.kind,
                    EntryType::PeerState | EntryType::AddPeer | EntryType::RemovePeer
                )
            })
            .then(|| entry.entries.clone());
        if self.log.append(entry).is_err() {
            self.poisoned = true;
            return false;
        }
        if let Some(entries) = config {
            self.note_config(index, &entries);
        }
        if term == self.hard.term {
            if let Some(Ok(successor)) = successor {
                self.transfer = Some((term, successor));
                self.transfer_to_me |= successor == self.config.id && self.role != Role::Leader;
            }
        }
        self.dirty = true;
        if self.defect(1) || self.config.lazy_sync {
            self.durable = self.log.last_index();
        }
        true
    }

    fn truncate_after(&mut self, index: u64) -> bool {
        if self.log.truncate_after(index).is_err() {
            self.poisoned = true;
            return false;
        }
        self.dirty = true;
        self.durable = self.durable.min(index);
        // A configuration truncated away is undone.
        while self.configs.last().expect("never empty").0 > index {
            self.configs.pop();
        }
        if let Some((_, through)) = &mut self.sync_in_flight {
            *through = (*through).min(index);
        }
        self.pending_acks.retain(|ack| ack.index <= index);
        true
    }

    fn on_append_response(&mut self, now: Instant, from: PeerId, response: AppendEntryResponse) {
        if response.term > self.hard.term {
            // A peer is in a later term: this leader's term is over.
            self.become_follower(now, response.term, None);
            return;
        }
        if self.role != Role::Leader || response.term < self.hard.term || response.peer != from {
            return;
        }
        let last = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.active = true;
        progress.heard = Some(now);
        if response.success {
            if response.index > last {
                return;
            }
            progress.matched = progress.matched.max(response.index);
            progress.next = progress.next.max(progress.matched + 1);
            progress.sent = progress.sent.max(progress.matched);
            self.advance_commit();
            self.pump(from);
        } else {
            let next = response
                .index
                .saturating_add(1)
                .min(progress.next.saturating_sub(1))
                .max(progress.matched + 1);
            let next = next.min(last + 1);
            // Only a refusal that moves `next` back is answered at once: a
            // duplicated or stale refusal waits for the heartbeat, so
            // duplicates cannot multiply into a storm.
            if next < progress.next {
                progress.next = next;
                progress.sent = next - 1;
                self.send_append_from_next(from);
            } else if response.index == 0 {
                // Refused again from the start of the log: the follower
                // cannot take entries (its snapshot was damaged) and needs
                // a snapshot. (A duplicated refusal of an empty follower
                // looks the same; it only costs a snapshot.)
                if self.applied > self.log.base().index && !self.snapshot_wanted {
                    self.snapshot_wanted = true;
                    self.actions.push_back(Action::SnapshotWanted);
                }
                if self.log.base().index > 0 {
                    self.send_snapshot(from);
                }
            }
        }
    }

    fn advance_commit(&mut self) {
        assert_eq!(self.role, Role::Leader);
        let last = self.log.last_index();
        let mut candidate = last;
        while candidate > self.commit {
            let term = self.log.term_at(candidate).expect("in the log");
            if term != self.hard.term && !self.defect(2) {
                break;
            }
            let own = usize::from(self.durable >= candidate && self.is_voter());
            let replicas = own
                + self
                    .progress
                    .values()
                    .filter(|p| p.matched >= candidate)
                    .count();
            if replicas >= self.quorum() {
                self.commit = candidate;
                self.announce_commit();
                break;
            }
            candidate -= 1;
        }
        debug_assert!(self.commit <= last);
    }

    /// The commit index just advanced: a follower that has been sent every
    /// entry gets an empty append carrying it at once, so it applies
    /// without waiting for the next heartbeat (nats-server's leader sends a
    /// heartbeat after a commit when no proposal is queued). A follower
    /// still owed entries learns the commit from them. Bounded: at most one
    /// message per follower per commit advance, and a refusal of it is
    /// answered only if it moves `next` back, as any refusal.
    fn announce_commit(&mut self) {
        let last = self.log.last_index();
        let caught_up: Vec<PeerId> = self
            .progress
            .iter()
            .filter(|(_, p)| p.sent >= last)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in caught_up {
            self.send_append(peer, last + 1);
        }
    }

    /// End of every input: ask for a sync, release durable acks, apply.
    fn finish(&mut self, now: Instant) {
        if self.poisoned {
            self.actions
                .retain(|a| !matches!(a, Action::Send { .. } | Action::Apply(_)));
            return;
        }
        if self.role == Role::Leader && !self.is_voter() && self.commit >= self.config_index() {
            // Its own removal committed: the group goes on without it.
            let term = self.hard.term;
            self.become_follower(now, term, None);
        }
        if self.dirty && self.sync_in_flight.is_none() {
            // The mark makes damage to any entry this sync covers
            // detectable at open (a valid record follows it).
            if self.log.mark().is_err() {
                self.poisoned = true;
                self.actions
                    .retain(|a| !matches!(a, Action::Send { .. } | Action::Apply(_)));
                return;
            }
            let tag = self.next_tag;
            self.next_tag += 1;
            self.dirty = false;
            self.sync_in_flight = Some((tag, self.log.last_index()));
            self.actions.push_back(Action::Sync {
                tag,
                path: self.log.log_path(),
            });
        }
        let durable = self.durable;
        let mut ready = Vec::new();
        self.pending_acks.retain(|ack| {
            if ack.index <= durable {
                ready.push(*ack);
                false
            } else {
                true
            }
        });
        for ack in ready {
            let response = AppendEntryResponse {
                term: self.hard.term,
                index: ack.index,
                peer: self.config.id,
                success: true,
            };
            self.send(ack.to, Message::AppendResponse(response));
        }
        let applicable = if self.needs_snapshot {
            0
        } else {
            self.commit.min(self.log.last_index())
        };
        while self.applied < applicable {
            self.applied += 1;
            let entry = self
                .log
                .entry(self.applied)
                .expect("committed entries are in the log")
                .clone();
            self.actions.push_back(Action::Apply(entry));
        }
        debug_assert!(self.applied <= self.commit);
        debug_assert!(self.durable <= self.log.last_index());
        debug_assert!(self.role != Role::Leader || self.leader == Some(self.config.id));
    }
}

/// The voters after a message of `entries`, each change taken in order
/// (`None` if none changes them).
fn message_config(current: &[PeerId], entries: &[Entry]) -> Option<Vec<PeerId>> {
    let mut voters: Option<Vec<PeerId>> = None;
    for entry in entries {
        let now = voters.as_deref().unwrap_or(current);
        if let Some(next) = next_config(now, entry.kind, &entry.data) {
            voters = Some(next);
        }
    }
    voters
}

/// The voters after `entry` if it changes them (`None` if it does not or
/// its data is malformed: a damaged change is no change).
fn next_config(current: &[PeerId], kind: EntryType, data: &[u8]) -> Option<Vec<PeerId>> {
    let mut next = current.to_vec();
    match kind {
        EntryType::PeerState => {
            next = PeerState::decode(data).ok()?.peers;
            next.retain(|p| !p.is_none());
        }
        EntryType::AddPeer => {
            let peer = PeerId::from_slice(data).ok().filter(|p| !p.is_none())?;
            next.push(peer);
        }
        EntryType::RemovePeer => {
            let peer = PeerId::from_slice(data).ok()?;
            next.retain(|p| *p != peer);
        }
        _ => return None,
    }
    next.sort();
    next.dedup();
    (!next.is_empty()).then_some(next)
}

#[cfg(test)]
mod tests;
