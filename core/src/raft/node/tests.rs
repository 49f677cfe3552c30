//! The exact actions a node emits for each input (openraft engine style).

use super::*;
use crate::store::disk::{MemDisk, SharedDisk};

const A: PeerId = PeerId(*b"AAAAAAAA");
const B: PeerId = PeerId(*b"BBBBBBBB");
const C: PeerId = PeerId(*b"CCCCCCCC");
const MS: u64 = 1_000_000;

fn config(id: PeerId) -> Config {
    Config {
        id,
        peers: vec![A, B, C],
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(50),
        max_entries_per_append: 8,
        max_appends_in_flight: 8,
        seed: 1,
        fresh: true,
        lazy_sync: false,
        #[cfg(feature = "planted-defects")]
        planted_defect: None,
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * MS)
}

fn open(id: PeerId, disk: &SharedDisk<MemDisk>) -> Node<SharedDisk<MemDisk>> {
    Node::open(config(id), disk.clone(), "raft", at(0)).unwrap()
}

fn drain(node: &mut Node<SharedDisk<MemDisk>>) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

fn vote_request(term: u64, last_term: u64, last_index: u64, candidate: PeerId) -> Message {
    Message::Vote(VoteRequest {
        term,
        last_term,
        last_index,
        candidate,
    })
}

fn append(
    leader: PeerId,
    term: u64,
    commit: u64,
    prev: (u64, u64),
    data: &[&'static [u8]],
) -> Message {
    Message::Append(AppendEntry {
        leader,
        term,
        commit,
        prev_term: prev.0,
        prev_index: prev.1,
        entries: data
            .iter()
            .map(|d| Entry::new(EntryType::Normal, Bytes::from_static(d)))
            .collect(),
        leader_term: 0,
    })
}

/// One message per item of `data` (each one log index, all of `term`), the
/// first after `prev`.
fn messages(
    leader: PeerId,
    term: u64,
    commit: u64,
    prev: (u64, u64),
    data: &[&'static [u8]],
) -> Vec<Message> {
    data.iter()
        .enumerate()
        .map(|(i, d)| {
            let prev_term = if i == 0 { prev.0 } else { term };
            append(leader, term, commit, (prev_term, prev.1 + i as u64), &[d])
        })
        .collect()
}

fn deliver(node: &mut Node<SharedDisk<MemDisk>>, now: Instant, from: PeerId, msgs: Vec<Message>) {
    for message in msgs {
        node.handle_message(now, from, message);
    }
}

fn vote_response(term: u64, peer: PeerId, granted: bool, empty: bool) -> VoteResponse {
    VoteResponse {
        term,
        peer,
        granted,
        empty,
    }
}

fn ack(term: u64, index: u64, peer: PeerId, success: bool) -> Message {
    Message::AppendResponse(AppendEntryResponse {
        term,
        index,
        peer,
        success,
    })
}

/// The appends among `actions`: (to, previous index, entry count).
fn appends_sent(actions: Vec<Action>) -> Vec<(PeerId, u64, usize)> {
    actions
        .into_iter()
        .filter_map(|action| match action {
            Action::Send {
                to,
                message: Message::Append(ae),
            } => Some((to, ae.prev_index, ae.entries.len())),
            _ => None,
        })
        .collect()
}

fn send(to: PeerId, message: Message) -> Action {
    Action::Send { to, message }
}

/// A times out and gets B's vote for term 1: A and the actions of the win.
fn win_election(disk: &SharedDisk<MemDisk>) -> (Node<SharedDisk<MemDisk>>, Vec<Action>) {
    let mut a = open(A, disk);
    a.handle_timeout(a.poll_timeout());
    drain(&mut a);
    let granted = vote_response(1, B, true, true);
    a.handle_message(at(400), B, Message::VoteResponse(granted));
    assert_eq!(a.role(), Role::Leader);
    let actions = drain(&mut a);
    (a, actions)
}

/// Elect A leader of term 1 with B's vote; returns A with its actions drained.
fn elected_leader(disk: &SharedDisk<MemDisk>) -> Node<SharedDisk<MemDisk>> {
    win_election(disk).0
}

#[test]
fn election_timeout_makes_a_candidate_whose_vote_is_durable_before_it_asks() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = open(A, &disk);
    let deadline = a.poll_timeout();
    assert!(deadline >= at(150) && deadline < at(300), "{deadline:?}");
    a.handle_timeout(at(100));
    assert!(drain(&mut a).is_empty(), "nothing before the deadline");
    a.handle_timeout(deadline);
    assert_eq!(
        drain(&mut a),
        vec![
            send(B, vote_request(1, 0, 0, A)),
            send(C, vote_request(1, 0, 0, A))
        ]
    );
    assert_eq!(
        (a.role(), a.term(), a.voted_for()),
        (Role::Candidate, 1, Some(A))
    );
    // The term and vote survive a power loss that drops every unsynced write.
    disk.with(|d| d.power_loss());
    let reopened = open(A, &disk);
    assert_eq!((reopened.term(), reopened.voted_for()), (1, Some(A)));
}

#[test]
fn a_vote_is_granted_once_per_term_and_survives_power_loss() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, vote_request(1, 0, 0, A));
    let yes = vote_response(1, B, true, true);
    assert_eq!(drain(&mut b), vec![send(A, Message::VoteResponse(yes))]);
    disk.with(|d| d.power_loss());
    let mut b = open(B, &disk);
    b.handle_message(at(2), C, vote_request(1, 0, 0, C));
    let no = vote_response(1, B, false, true);
    assert_eq!(drain(&mut b), vec![send(C, Message::VoteResponse(no))]);
    // Asked again by the one it voted for (a lost response), it says yes again.
    b.handle_message(at(3), A, vote_request(1, 0, 0, A));
    assert_eq!(drain(&mut b), vec![send(A, Message::VoteResponse(yes))]);
}

#[test]
fn a_vote_is_refused_to_a_candidate_with_a_shorter_log() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    deliver(&mut b, at(1), A, messages(A, 1, 0, (0, 0), &[b"x", b"y"]));
    drain(&mut b);
    // Past the stickiness window, C (log ending at term 1 index 1) asks in term 2.
    b.handle_message(at(200), C, vote_request(2, 1, 1, C));
    let no = vote_response(2, B, false, false);
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 2,
                leader: None
            },
            send(C, Message::VoteResponse(no))
        ]
    );
    assert_eq!(b.voted_for(), None);
}

#[test]
fn a_follower_hearing_its_leader_ignores_vote_requests() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[]));
    drain(&mut b);
    b.handle_message(at(100), C, vote_request(2, 0, 0, C));
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.term(), 1);
}

#[test]
fn an_append_is_acknowledged_only_after_its_sync_completes() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    // One message of two entries: one log index.
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x", b"y"]));
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 1,
                leader: Some(A)
            },
            Action::Sync {
                tag: 1,
                path: "raft/log".into()
            },
        ]
    );
    assert_eq!((b.log().last_index(), b.log().last_term()), (1, 1));
    // Two more messages while the first sync is in flight: no new sync
    // yet, no acknowledgement.
    deliver(&mut b, at(2), A, messages(A, 1, 0, (1, 1), &[b"z", b"w"]));
    assert!(drain(&mut b).is_empty());
    disk.with(|d| d.sync("raft/log")).unwrap();
    b.handle_sync_done(at(3), 1, Ok(()));
    // The first sync covered message 1; 2 and 3 need the next one (group commit).
    assert_eq!(
        drain(&mut b),
        vec![
            Action::Sync {
                tag: 2,
                path: "raft/log".into()
            },
            send(A, ack(1, 1, B, true))
        ]
    );
    b.handle_sync_done(at(4), 2, Ok(()));
    assert_eq!(
        drain(&mut b),
        vec![send(A, ack(1, 2, B, true)), send(A, ack(1, 3, B, true))]
    );
    // The leader's commit index lets the follower apply: each message's
    // entries together, in order.
    b.handle_message(at(5), A, append(A, 1, 2, (1, 3), &[]));
    let applied: Vec<(u64, Vec<Bytes>)> = drain(&mut b)
        .into_iter()
        .filter_map(|a| match a {
            Action::Apply(e) => Some((e.index, e.entries.into_iter().map(|e| e.data).collect())),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        vec![
            (1, vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")]),
            (2, vec![Bytes::from_static(b"z")])
        ]
    );
}

#[test]
fn a_conflicting_suffix_is_truncated_and_its_pending_ack_dropped() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x"]));
    b.handle_sync_done(at(1), 1, Ok(()));
    drain(&mut b);
    // Messages 2 and 3; the sync asked after 2 is in flight.
    deliver(&mut b, at(1), A, messages(A, 1, 0, (1, 1), &[b"y", b"z"]));
    drain(&mut b);
    // C, leader of term 2, has a different message 2.
    b.handle_message(at(2), C, append(C, 2, 0, (1, 1), &[b"w"]));
    assert_eq!(
        drain(&mut b),
        vec![Action::LeaderChanged {
            term: 2,
            leader: Some(C)
        }]
    );
    assert_eq!(b.log().last_index(), 2);
    assert_eq!(b.log().term_at(2), Some(2));
    disk.with(|d| d.sync("raft/log")).unwrap();
    // The sync asked before the truncation covers only the kept message 1.
    b.handle_sync_done(at(3), 2, Ok(()));
    assert_eq!(b.durable_index(), 1);
    assert_eq!(
        drain(&mut b),
        vec![Action::Sync {
            tag: 3,
            path: "raft/log".into()
        }]
    );
    b.handle_sync_done(at(4), 3, Ok(()));
    assert_eq!(drain(&mut b), vec![send(C, ack(2, 2, B, true))]);
}

#[test]
fn a_missing_previous_entry_is_refused_with_a_hint() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (1, 5), &[b"x"]));
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 1,
                leader: Some(A)
            },
            send(A, ack(1, 0, B, false))
        ]
    );
}

#[test]
fn a_stale_leader_is_told_the_newer_term() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), C, vote_request(3, 0, 0, C));
    drain(&mut b);
    b.handle_message(at(2), A, append(A, 2, 0, (0, 0), &[]));
    assert_eq!(drain(&mut b), vec![send(A, ack(3, 0, B, false))]);
}

#[test]
fn a_new_leader_appends_its_peer_state_and_commits_only_when_durable_on_a_majority() {
    let disk = SharedDisk::new(MemDisk::default());
    let (mut a, won) = win_election(&disk);
    let peer_state = PeerState {
        cluster_size: 3,
        peers: vec![A, B, C],
        domain_ext: 0,
    }
    .encode();
    let first = Message::Append(AppendEntry {
        leader: A,
        term: 1,
        commit: 0,
        prev_term: 0,
        prev_index: 0,
        entries: vec![Entry::new(EntryType::PeerState, peer_state)],
        leader_term: 0,
    });
    assert_eq!(
        won,
        vec![
            Action::LeaderChanged {
                term: 1,
                leader: Some(A)
            },
            send(B, first.clone()),
            send(C, first),
            Action::Sync {
                tag: 1,
                path: "raft/log".into()
            },
        ]
    );
    // B's ack alone is not a majority while A's own write is not durable.
    a.handle_message(at(401), B, ack(1, 1, B, true));
    assert_eq!(a.commit_index(), 0);
    assert!(drain(&mut a).is_empty());
    a.handle_sync_done(at(402), 1, Ok(()));
    assert_eq!(a.commit_index(), 1);
    // Both followers were sent every entry: each hears the new commit at
    // once in an empty append, not at the next heartbeat.
    let announce = append(A, 1, 1, (1, 1), &[]);
    let actions = drain(&mut a);
    assert_eq!(actions[..2], [send(B, announce.clone()), send(C, announce)]);
    assert!(matches!(&actions[2..], [Action::Apply(e)] if e.index == 1));
}

#[test]
fn a_commit_is_announced_once_to_each_follower_sent_every_entry() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = committed_leader(&disk);
    a.propose(at(410), Bytes::from_static(b"x")).unwrap();
    assert_eq!(
        drain(&mut a),
        vec![
            send(B, append(A, 1, 1, (1, 1), &[b"x"])),
            send(C, append(A, 1, 1, (1, 1), &[b"x"])),
            Action::Sync {
                tag: 2,
                path: "raft/log".into()
            },
        ]
    );
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(411), 2, Ok(()));
    assert!(drain(&mut a).is_empty(), "A alone is no majority");
    // B's acknowledgement commits entry 2: B and C (whose copy is still in
    // flight) are told at once, before the leader applies.
    a.handle_message(at(412), B, ack(1, 2, B, true));
    let announce = append(A, 1, 2, (1, 2), &[]);
    let actions = drain(&mut a);
    assert_eq!(actions[..2], [send(B, announce.clone()), send(C, announce)]);
    assert_eq!(applied_indexes(&actions[2..]), vec![2]);
    assert_eq!(actions.len(), 3);
    // No advance, no announcement: a duplicate or C's late ack sends nothing.
    a.handle_message(at(413), B, ack(1, 2, B, true));
    a.handle_message(at(413), C, ack(1, 2, C, true));
    assert!(drain(&mut a).is_empty());
}

/// A, holding `entries` of term 1 from an earlier leader (B), reopened and
/// a candidate of term 2 (its vote requests drained).
fn candidate_holding(
    disk: &SharedDisk<MemDisk>,
    entries: &[&'static [u8]],
) -> Node<SharedDisk<MemDisk>> {
    {
        let mut a = open(A, disk);
        deliver(&mut a, at(1), B, messages(B, 1, 0, (0, 0), entries));
        drain(&mut a);
    }
    disk.with(|d| d.sync("raft/log")).unwrap();
    let mut a = open(A, disk);
    a.handle_timeout(a.poll_timeout());
    assert_eq!(a.term(), 2);
    drain(&mut a);
    a
}

#[test]
fn a_follower_still_owed_entries_learns_the_commit_from_them() {
    let disk = SharedDisk::new(MemDisk::default());
    let old: [&'static [u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    // A holds entries 1-10 of term 1 from an earlier leader (B).
    let mut a = candidate_holding(&disk, &old);
    let granted = vote_response(2, C, true, false);
    a.handle_message(at(400), C, Message::VoteResponse(granted));
    assert_eq!(a.role(), Role::Leader);
    drain(&mut a);
    // C's log is empty: it is sent messages 1-8 (the window), one append
    // entry each.
    a.handle_message(at(401), C, ack(2, 0, C, false));
    let actions = drain(&mut a);
    let catch_up: Vec<(u64, u64, usize, u64)> = actions
        .iter()
        .map(|action| match action {
            Action::Send {
                to: C,
                message: Message::Append(ae),
            } => (
                ae.prev_index,
                ae.prev_term,
                ae.entries.len(),
                ae.leader_term,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<_> = (0..8).map(|i| (i, u64::from(i > 0), 1, 2)).collect();
    assert_eq!(catch_up, want);
    // B holds everything; with A's own sync entry 11 (this term's peer
    // state) commits. Only B, sent every entry, gets the empty append.
    a.handle_message(at(402), B, ack(2, 11, B, true));
    drain(&mut a);
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(403), 1, Ok(()));
    assert_eq!(a.commit_index(), 11);
    let actions = drain(&mut a);
    assert_eq!(actions[0], send(B, append(A, 2, 11, (2, 11), &[])));
    assert_eq!(applied_indexes(&actions[1..]), (1..=11).collect::<Vec<_>>());
    assert_eq!(actions.len(), 12);
    // C's next messages carry the commit: 9 and 10 of term 1, 11 of term 2.
    a.handle_message(at(404), C, ack(2, 8, C, true));
    let mut next = messages(A, 1, 11, (1, 8), &[b"8", b"9"]);
    for message in &mut next {
        if let Message::Append(m) = message {
            m.leader_term = 2;
        }
    }
    let actions = drain(&mut a);
    assert_eq!(actions.len(), 3);
    assert_eq!(
        actions[..2],
        next.into_iter().map(|m| send(C, m)).collect::<Vec<_>>()
    );
    let Action::Send {
        message: Message::Append(last),
        ..
    } = &actions[2]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (
            last.term,
            last.commit,
            last.prev_term,
            last.prev_index,
            last.leader_term
        ),
        (2, 11, 1, 10, 0)
    );
    assert_eq!(last.entries[0].kind, EntryType::PeerState);
}

#[test]
fn an_entry_of_an_earlier_term_is_not_committed_by_counting() {
    let disk = SharedDisk::new(MemDisk::default());
    // A holds entry 1 of term 1 from an earlier leader (B).
    let mut a = candidate_holding(&disk, &[b"old"]);
    a.handle_message(
        at(400),
        C,
        Message::VoteResponse(vote_response(2, C, true, true)),
    );
    drain(&mut a);
    a.handle_sync_done(at(401), 1, Ok(()));
    // C stores the old entry only: entry 1 is on a majority but of term 1.
    a.handle_message(at(402), C, ack(2, 1, C, true));
    assert_eq!(a.commit_index(), 0);
    // Once C stores this term's entry 2, both commit.
    a.handle_message(at(403), C, ack(2, 2, C, true));
    assert_eq!(a.commit_index(), 2);
}

#[test]
fn a_leader_that_hears_no_majority_steps_down() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = elected_leader(&disk);
    a.handle_message(at(410), B, ack(1, 0, B, false));
    drain(&mut a);
    a.handle_timeout(at(400 + 300));
    assert_eq!(a.role(), Role::Leader, "B was heard");
    drain(&mut a);
    a.handle_timeout(at(400 + 600));
    assert_eq!(a.role(), Role::Follower);
    assert!(drain(&mut a).contains(&Action::LeaderChanged {
        term: 1,
        leader: None
    }));
}

#[test]
fn heartbeats_resend_from_the_follower_s_next_index() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = elected_leader(&disk);
    a.propose(at(401), Bytes::from_static(b"p")).unwrap();
    let sends: Vec<_> = drain(&mut a)
        .into_iter()
        .filter(|x| matches!(x, Action::Send { .. }))
        .collect();
    assert_eq!(sends.len(), 2, "only the new message goes out: {sends:?}");
    a.handle_timeout(at(400 + 50));
    let resent = appends_sent(drain(&mut a));
    assert_eq!(
        resent,
        vec![(B, 0, 1), (B, 1, 1), (C, 0, 1), (C, 1, 1)],
        "lost messages are resent"
    );
    assert_eq!(a.propose(at(451), Bytes::new()), Ok(3));
    let mut b = open(B, &SharedDisk::new(MemDisk::default()));
    assert_eq!(
        b.propose(at(1), Bytes::new()),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn malformed_appends_are_dropped_without_panicking() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (5, 0), &[b"x"]));
    b.handle_message(at(1), A, append(A, 1, 0, (2, 3), &[b"x"]));
    b.handle_message(at(1), C, append(A, 1, 0, (0, 0), &[b"x"]));
    assert!(drain(&mut b).is_empty());
    b.handle_message(at(1), A, ack(9, u64::MAX, A, false));
    assert_eq!(b.term(), 9);
}

#[test]
fn the_group_state_shows_the_leader_s_view_of_its_followers() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = elected_leader(&disk);
    a.handle_sync_done(at(401), 1, Ok(()));
    a.handle_message(at(402), C, ack(1, 1, C, true));
    drain(&mut a);
    assert_eq!(
        a.state(),
        GroupState {
            id: A,
            role: Role::Leader,
            term: 1,
            leader: Some(A),
            last_index: 1,
            last_term: 1,
            commit: 1,
            applied: 1,
            durable: 1,
            followers: vec![(B, 0), (C, 1)],
            peers: vec![A, B, C],
            snapshot: 0,
            needs_snapshot: false,
            poisoned: false,
        }
    );
}

const D: PeerId = PeerId(*b"DDDDDDDD");

fn change(kind: EntryType, peer: PeerId) -> Entry {
    Entry::new(kind, Bytes::copy_from_slice(&peer.0))
}

/// `message` (an append) with `entry` added at its end.
fn plus(mut message: Message, entry: Entry) -> Message {
    if let Message::Append(m) = &mut message {
        m.entries.push(entry);
    }
    message
}

/// A leader of term 1 over {A, B, C} whose peer state (entry 1) committed.
fn committed_leader(disk: &SharedDisk<MemDisk>) -> Node<SharedDisk<MemDisk>> {
    let mut a = elected_leader(disk);
    commit_peer_state(&mut a, disk);
    a
}

/// B acknowledges A's entry 1 and A's own sync of it completes.
fn commit_peer_state(a: &mut Node<SharedDisk<MemDisk>>, disk: &SharedDisk<MemDisk>) {
    a.handle_message(at(401), B, ack(1, 1, B, true));
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(402), 1, Ok(()));
    drain(a);
    assert_eq!(a.commit_index(), 1);
}

#[test]
fn an_added_peer_counts_from_its_append_and_a_second_change_waits_for_its_commit() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = elected_leader(&disk);
    // The new leader's peer state (entry 1) is a configuration entry: no
    // change before it commits.
    assert_eq!(
        a.propose_add_peer(at(401), D),
        Err(ProposeError::MembershipChanging)
    );
    commit_peer_state(&mut a, &disk);
    assert_eq!(
        a.propose_add_peer(at(403), A),
        Err(ProposeError::PeerExists)
    );
    assert_eq!(a.propose_add_peer(at(403), D), Ok(2));
    let add = |prev_index| {
        Message::Append(AppendEntry {
            leader: A,
            term: 1,
            commit: 1,
            prev_term: 1,
            prev_index,
            entries: vec![change(EntryType::AddPeer, D)],
            leader_term: 0,
        })
    };
    assert_eq!(
        drain(&mut a),
        vec![
            send(B, add(1)),
            send(C, add(1)),
            send(D, add(1)),
            Action::Sync {
                tag: 2,
                path: "raft/log".into()
            },
        ]
    );
    assert_eq!(a.voters(), &[A, B, C, D]);
    assert_eq!(a.state().peers, vec![A, B, C, D]);
    assert_eq!(
        a.propose_remove_peer(at(404), B),
        Err(ProposeError::MembershipChanging)
    );
    // Four voters: A and B are not a quorum of entry 2 any more.
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(405), 2, Ok(()));
    a.handle_message(at(405), B, ack(1, 2, B, true));
    assert_eq!(a.commit_index(), 1);
    drain(&mut a);
    a.handle_message(at(406), D, ack(1, 2, D, true));
    assert_eq!(a.commit_index(), 2);
    // Every voter, D included, hears the commit at once.
    let announce = append(A, 1, 2, (1, 2), &[]);
    let actions = drain(&mut a);
    assert_eq!(
        actions[..3],
        [
            send(B, announce.clone()),
            send(C, announce.clone()),
            send(D, announce)
        ]
    );
    assert!(
        matches!(&actions[3..], [Action::Apply(e)] if e.index == 2 && e.entries[0].kind == EntryType::AddPeer)
    );
    assert_eq!(
        a.propose_remove_peer(at(407), PeerId(*b"ZZZZZZZZ")),
        Err(ProposeError::PeerNotFound)
    );
    assert_eq!(a.propose_remove_peer(at(407), B), Ok(3));
}

#[test]
fn a_follower_takes_a_change_when_appended_and_drops_it_when_truncated() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    // Message 2 holds a normal entry and the change: the change is the
    // message's, at index 2.
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x"]));
    let with_add = plus(
        append(A, 1, 0, (1, 1), &[b"y"]),
        change(EntryType::AddPeer, D),
    );
    b.handle_message(at(1), A, with_add);
    drain(&mut b);
    assert_eq!(b.voters(), &[A, B, C, D]);
    assert_eq!(b.config_index(), 2);
    // C leads term 2 without the change: the truncation undoes it.
    b.handle_message(at(2), C, append(C, 2, 0, (1, 1), &[b"w"]));
    drain(&mut b);
    assert_eq!(b.voters(), &[A, B, C]);
    assert_eq!(b.config_index(), 0);
    // And a reopened node rebuilds its configuration from the log.
    let with_remove = plus(
        append(C, 2, 0, (2, 2), &[]),
        change(EntryType::RemovePeer, A),
    );
    b.handle_message(at(3), C, with_remove);
    drain(&mut b);
    disk.with(|d| d.sync("raft/log")).unwrap();
    let b = open(B, &disk);
    assert_eq!(b.voters(), &[B, C]);
    assert_eq!(b.config_index(), 3);
}

#[test]
fn a_node_outside_the_configuration_never_campaigns_until_added() {
    let disk = SharedDisk::new(MemDisk::default());
    // D joins {A, B, C}: its configuration lists the group without it.
    let mut d = Node::open(config(D), disk.clone(), "raft", at(0)).unwrap();
    for _ in 0..5 {
        let deadline = d.poll_timeout();
        d.handle_timeout(deadline);
        assert!(
            drain(&mut d).is_empty(),
            "no vote request from a non-member"
        );
        assert_eq!(d.role(), Role::Follower);
        assert_eq!(d.term(), 0);
    }
    // A leader's append with the add reaches it: it is a member, and
    // campaigns once that leader goes quiet.
    let add = plus(append(A, 1, 0, (0, 0), &[]), change(EntryType::AddPeer, D));
    d.handle_message(at(2000), A, add);
    drain(&mut d);
    assert_eq!(d.voters(), &[A, B, C, D]);
    let deadline = d.poll_timeout();
    d.handle_timeout(deadline);
    let asked: Vec<PeerId> = drain(&mut d)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                message: Message::Vote(_),
            } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![A, B, C]);
}

#[test]
fn a_leader_that_removes_itself_leads_without_counting_itself_then_steps_down() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = committed_leader(&disk);
    assert_eq!(a.propose_remove_peer(at(410), A), Ok(2));
    let remove = Message::Append(AppendEntry {
        leader: A,
        term: 1,
        commit: 1,
        prev_term: 1,
        prev_index: 1,
        entries: vec![change(EntryType::RemovePeer, A)],
        leader_term: 0,
    });
    assert_eq!(
        drain(&mut a),
        vec![
            send(B, remove.clone()),
            send(C, remove),
            Action::Sync {
                tag: 2,
                path: "raft/log".into()
            },
        ]
    );
    assert_eq!(a.voters(), &[B, C]);
    // A's own durable copy and B's ack are not a quorum of {B, C}.
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(411), 2, Ok(()));
    a.handle_message(at(411), B, ack(1, 2, B, true));
    assert_eq!(a.commit_index(), 1);
    assert_eq!(a.role(), Role::Leader);
    assert!(drain(&mut a).is_empty());
    a.handle_message(at(412), C, ack(1, 2, C, true));
    assert_eq!(a.commit_index(), 2);
    let actions = drain(&mut a);
    assert_eq!(a.role(), Role::Follower);
    // Before stepping down it tells B and C their removal of it committed.
    let announce = append(A, 1, 2, (1, 2), &[]);
    assert_eq!(actions[..2], [send(B, announce.clone()), send(C, announce)]);
    assert_eq!(
        actions[2],
        Action::LeaderChanged {
            term: 1,
            leader: None
        }
    );
    assert!(matches!(&actions[3], Action::Apply(e) if e.index == 2));
    // Removed, it never campaigns again.
    let deadline = a.poll_timeout();
    a.handle_timeout(deadline);
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.term(), 1);
}

#[test]
fn the_last_member_cannot_be_removed() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut solo_config = config(A);
    solo_config.peers = vec![A];
    let mut a = Node::open(solo_config, disk.clone(), "raft", at(0)).unwrap();
    let deadline = a.poll_timeout();
    a.handle_timeout(deadline);
    assert_eq!(a.role(), Role::Leader);
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(400), 1, Ok(()));
    drain(&mut a);
    assert_eq!(
        a.propose_remove_peer(at(401), A),
        Err(ProposeError::RemoveLastPeer)
    );
}

fn applied_indexes(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply(e) => Some(e.index),
            _ => None,
        })
        .collect()
}

/// A leads term 1 with entries 1 (peer state) to 3 committed and applied.
fn leader_with_three(disk: &SharedDisk<MemDisk>) -> Node<SharedDisk<MemDisk>> {
    let mut a = committed_leader(disk);
    a.propose(at(410), Bytes::from_static(b"x")).unwrap();
    a.propose(at(410), Bytes::from_static(b"y")).unwrap();
    drain(&mut a);
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(411), 2, Ok(()));
    a.handle_sync_done(at(411), 3, Ok(()));
    a.handle_message(at(411), B, ack(1, 3, B, true));
    assert_eq!(applied_indexes(&drain(&mut a)), vec![2, 3]);
    a
}

fn install(term: u64, commit: u64, index_term: (u64, u64), data: &'static [u8]) -> Message {
    let state = PeerState {
        cluster_size: 3,
        peers: vec![A, B, C],
        domain_ext: 0,
    };
    Message::Append(AppendEntry {
        leader: A,
        term,
        commit,
        prev_term: index_term.0,
        prev_index: index_term.1,
        entries: vec![
            Entry::new(EntryType::Snapshot, Bytes::from_static(data)),
            Entry::new(EntryType::PeerState, state.encode()),
        ],
        leader_term: 0,
    })
}

#[test]
fn a_snapshot_compacts_the_log_and_a_follower_behind_it_is_sent_the_snapshot() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = leader_with_three(&disk);
    assert_eq!(
        a.snapshot(at(412), 4, Bytes::from_static(b"kv")),
        Err(SnapshotError::NotApplied { index: 4 })
    );
    a.snapshot(at(412), 3, Bytes::from_static(b"kv")).unwrap();
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.state().snapshot, 3);
    assert_eq!(a.log().slice(1, 9), &[]);
    assert_eq!(
        a.snapshot(at(412), 3, Bytes::from_static(b"kv")),
        Err(SnapshotError::Stale { base: 3 })
    );
    // C never answered: its refusal (it holds nothing) meets a compacted log.
    a.handle_message(at(413), C, ack(1, 0, C, false));
    assert_eq!(drain(&mut a), vec![send(C, install(1, 3, (1, 3), b"kv"))]);
    // Reopened, the node restores the snapshot before anything else.
    disk.with(|d| d.power_loss());
    let mut again = open(A, &disk);
    assert_eq!(again.applied_index(), 3);
    assert_eq!(again.commit_index(), 3);
    assert_eq!(
        drain(&mut again),
        vec![Action::Restore(Snapshot {
            index: 3,
            term: 1,
            voters: vec![A, B, C],
            data: Bytes::from_static(b"kv"),
        })]
    );
}

#[test]
fn a_follower_installs_a_leader_s_snapshot_and_acknowledges_it() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, install(1, 5, (1, 3), b"kv"));
    let snap = Snapshot {
        index: 3,
        term: 1,
        voters: vec![A, B, C],
        data: Bytes::from_static(b"kv"),
    };
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 1,
                leader: Some(A)
            },
            Action::Restore(snap.clone()),
            send(A, ack(1, 3, B, true)),
        ]
    );
    assert_eq!((b.commit_index(), b.applied_index()), (3, 3));
    // The next entries follow the snapshot.
    b.handle_message(at(2), A, append(A, 1, 4, (1, 3), &[b"d"]));
    disk.with(|d| d.sync("raft/log")).unwrap();
    b.handle_sync_done(at(3), 1, Ok(()));
    let actions = drain(&mut b);
    assert_eq!(applied_indexes(&actions), vec![4]);
    // Power loss: the snapshot and the entry after it are both there.
    disk.with(|d| d.power_loss());
    let mut b = open(B, &disk);
    assert_eq!(drain(&mut b), vec![Action::Restore(snap)]);
    assert_eq!((b.log().last_index(), b.log().last_term()), (4, 1));
}

#[test]
fn a_damaged_snapshot_is_never_trusted_and_the_node_catches_up_from_the_leader() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, install(1, 3, (1, 3), b"kv"));
    b.handle_message(at(2), A, append(A, 1, 3, (1, 3), &[b"d"]));
    disk.with(|d| d.sync("raft/log")).unwrap();
    b.handle_sync_done(at(3), 1, Ok(()));
    drain(&mut b);
    disk.with(|d| {
        let snap = d.bytes_mut("raft/snap").unwrap();
        snap[30] ^= 0x01;
    });
    let mut b = open(B, &disk);
    // Nothing restored, nothing applied; its log and vote stand.
    assert!(drain(&mut b).is_empty());
    let state = b.state();
    assert!(state.needs_snapshot);
    assert_eq!((state.applied, state.last_index), (0, 4));
    // It never campaigns while it cannot apply.
    let deadline = b.poll_timeout();
    b.handle_timeout(deadline);
    assert!(drain(&mut b).is_empty());
    // It refuses appends from the start until a snapshot comes.
    b.handle_message(at(500), A, append(A, 2, 4, (1, 4), &[]));
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 2,
                leader: Some(A)
            },
            send(A, ack(2, 0, B, false))
        ]
    );
    // A snapshot older than its log's base is refused too.
    b.handle_message(at(501), A, install(2, 4, (1, 2), b"old"));
    assert_eq!(drain(&mut b), vec![send(A, ack(2, 0, B, false))]);
    // One at its base is installed; the log after it stays, and applies
    // once the leader says it matches and is committed.
    b.handle_message(at(502), A, install(2, 4, (1, 3), b"kv"));
    let actions = drain(&mut b);
    assert_eq!(
        actions[0],
        Action::Restore(Snapshot {
            index: 3,
            term: 1,
            voters: vec![A, B, C],
            data: Bytes::from_static(b"kv"),
        })
    );
    assert_eq!(actions[1], send(A, ack(2, 3, B, true)));
    b.handle_message(at(503), A, append(A, 2, 4, (1, 4), &[]));
    assert_eq!(applied_indexes(&drain(&mut b)), vec![4]);
    assert!(!b.state().needs_snapshot);
    assert_eq!(b.log().last_index(), 4);
}

#[test]
fn a_leader_asks_its_state_machine_for_a_snapshot_when_a_follower_lost_its_state() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = leader_with_three(&disk);
    // B had acknowledged 3, now refuses from the start: it needs a snapshot
    // and A has none yet.
    a.handle_message(at(420), B, ack(1, 0, B, false));
    assert_eq!(drain(&mut a), vec![Action::SnapshotWanted]);
    a.snapshot(at(421), 3, Bytes::from_static(b"kv")).unwrap();
    a.handle_message(at(422), B, ack(1, 0, B, false));
    assert_eq!(drain(&mut a), vec![send(B, install(1, 3, (1, 3), b"kv"))]);
}

fn open_with(
    config: Config,
    disk: &SharedDisk<MemDisk>,
) -> Result<Node<SharedDisk<MemDisk>>, RecoveryError> {
    Node::open(config, disk.clone(), "raft", at(0))
}

#[test]
fn a_wiped_voter_cannot_reopen_under_its_old_id_and_rejoins_under_a_new_one() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x"]));
    drop(b);
    // The disk is wiped; the runtime reopens the node under its id.
    let disk = SharedDisk::new(MemDisk::default());
    let reopen = Config {
        fresh: false,
        ..config(B)
    };
    assert_eq!(
        open_with(reopen, &disk).unwrap_err(),
        RecoveryError::Wiped { id: B }
    );
    // Under a new id that the group does not list, the node is a new member:
    // it never campaigns and votes for nobody until an add-peer reaches it.
    const D: PeerId = PeerId(*b"DDDDDDDD");
    disk.with(|d| crate::raft::log::clear(d, "raft")).unwrap();
    let mut d = open_with(
        Config {
            fresh: true,
            ..config(D)
        },
        &disk,
    )
    .unwrap();
    d.handle_timeout(at(1000));
    assert!(drain(&mut d).is_empty(), "a non-member never campaigns");
    assert_eq!(d.role(), Role::Follower);
    d.handle_message(at(1001), C, vote_request(1, 0, 0, C));
    assert_eq!(
        drain(&mut d),
        vec![send(
            C,
            Message::VoteResponse(vote_response(1, D, true, true))
        )],
        "it may answer, but a candidate counts votes only from voters"
    );
    // Reopening under the new id afterwards is a plain restart.
    drop(d);
    let d = open_with(
        Config {
            fresh: false,
            ..config(D)
        },
        &disk,
    )
    .unwrap();
    assert_eq!(d.term(), 1);
}

#[test]
fn state_without_its_identity_or_under_another_id_is_a_lost_log() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x"]));
    drop(b);
    assert_eq!(
        open_with(config(C), &disk).unwrap_err(),
        RecoveryError::IdentityMismatch { found: B }
    );
    disk.with(|d| d.remove("raft/id")).unwrap();
    let error = open_with(config(B), &disk).unwrap_err();
    assert_eq!(error, RecoveryError::IdentityMissing);
    assert!(error.is_lost_log());
}

#[test]
fn a_lazy_follower_acknowledges_before_its_sync_and_every_restart_is_a_lost_log() {
    let disk = SharedDisk::new(MemDisk::default());
    let lazy = Config {
        lazy_sync: true,
        ..config(B)
    };
    let mut b = open_with(lazy.clone(), &disk).unwrap();
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x", b"y"]));
    assert_eq!(
        drain(&mut b),
        vec![
            Action::LeaderChanged {
                term: 1,
                leader: Some(A)
            },
            Action::Sync {
                tag: 1,
                path: "raft/log".into()
            },
            send(A, ack(1, 1, B, true)),
        ],
        "acknowledged with the sync still in flight"
    );
    drop(b);
    // Even a kill (nothing lost) cannot be told from a power loss that lost
    // the acknowledged entries: the node must come back as a new member.
    assert_eq!(
        open_with(lazy, &disk).unwrap_err(),
        RecoveryError::LazyRestart
    );
}

#[test]
fn a_flipped_bit_in_the_last_synced_entry_is_damage_not_a_torn_tail() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    b.handle_message(at(1), A, append(A, 1, 0, (0, 0), &[b"x"]));
    b.handle_message(at(1), A, append(A, 1, 0, (1, 1), &[b"yy", b"z"]));
    drain(&mut b);
    disk.with(|d| d.sync("raft/log")).unwrap();
    b.handle_sync_done(at(2), 1, Ok(()));
    drain(&mut b);
    b.handle_sync_done(at(2), 2, Ok(()));
    assert_eq!(drain(&mut b), vec![send(A, ack(1, 2, B, true))]);
    drop(b);
    // The sync mark after message 2 makes a flip inside it detectable.
    let mut bytes = disk.with(|d| d.read_all("raft/log")).unwrap().unwrap();
    let mark = crate::raft::log::encode_mark(2, 1);
    let in_last_entry = bytes.len() - mark.len() - 6;
    bytes[in_last_entry] ^= 0x20;
    disk.with(|d| d.write_at("raft/log", 0, &bytes)).unwrap();
    let error = open_with(config(B), &disk).unwrap_err();
    assert!(
        matches!(error, RecoveryError::DamagedLog { .. }),
        "{error:?}"
    );
    assert!(error.is_lost_log());
}

#[test]
fn an_identity_without_its_log_or_term_vote_file_is_a_lost_log() {
    for file in ["log", "tav"] {
        let disk = SharedDisk::new(MemDisk::default());
        let mut b = open(B, &disk);
        b.handle_message(at(1), A, vote_request(1, 0, 0, A));
        drop(b);
        disk.with(|d| d.remove(&format!("raft/{file}"))).unwrap();
        assert_eq!(
            open_with(config(B), &disk).unwrap_err(),
            RecoveryError::StateMissing { file },
            "the vote for A in term 1 is gone with {file}"
        );
    }
}

#[test]
fn a_leader_steps_down_naming_a_caught_up_successor() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = committed_leader(&disk);
    // C never acknowledged entry 1: preferred, but not fit; B is.
    assert_eq!(a.step_down(at(410), Some(C)), Ok(Some(B)));
    let handover = plus(
        append(A, 1, 1, (1, 1), &[]),
        change(EntryType::LeaderTransfer, B),
    );
    assert_eq!(
        drain(&mut a),
        vec![
            send(B, handover.clone()),
            send(C, handover),
            Action::LeaderChanged {
                term: 1,
                leader: None
            },
            Action::Sync {
                tag: 2,
                path: "raft/log".into()
            },
        ]
    );
    assert_eq!((a.role(), a.term()), (Role::Follower, 1));
    assert_eq!(
        a.step_down(at(411), None),
        Err(StepDownError::NotLeader { leader: None })
    );
    assert_eq!(
        a.propose(at(411), Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn a_leader_with_no_fit_successor_only_steps_down() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = elected_leader(&disk);
    assert_eq!(a.step_down(at(410), Some(B)), Ok(None));
    assert_eq!(
        drain(&mut a),
        vec![Action::LeaderChanged {
            term: 1,
            leader: None
        }]
    );
    assert_eq!(a.log().last_index(), 1, "no transfer entry");

    // B holds every committed entry but was last heard over three
    // heartbeats ago: not named either.
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = committed_leader(&disk);
    assert_eq!(a.step_down(at(401 + 150), None), Ok(None));
}

#[test]
fn the_named_successor_campaigns_at_once_and_only_it_passes_stickiness() {
    let handover = plus(
        append(A, 1, 1, (1, 1), &[]),
        change(EntryType::LeaderTransfer, B),
    );
    let first = append(A, 1, 0, (0, 0), &[b"x"]);
    let disk_b = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk_b);
    b.handle_message(at(1), A, first.clone());
    b.handle_message(at(2), A, handover.clone());
    drain(&mut b);
    assert_eq!(b.poll_timeout(), at(2), "campaigns at once");
    b.handle_timeout(at(2));
    let actions = drain(&mut b);
    assert!(
        actions.contains(&send(A, vote_request(2, 1, 2, B)))
            && actions.contains(&send(C, vote_request(2, 1, 2, B))),
        "{actions:?}"
    );

    let disk_c = SharedDisk::new(MemDisk::default());
    let mut c = open(C, &disk_c);
    c.handle_message(at(1), A, first);
    c.handle_message(at(2), A, handover);
    drain(&mut c);
    // C heard its leader 1 ms ago: anyone else is ignored...
    c.handle_message(at(3), A, vote_request(2, 1, 2, A));
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.term(), 1);
    // ...but the successor it was told of gets its vote.
    c.handle_message(at(3), B, vote_request(2, 1, 2, B));
    let yes = vote_response(2, C, true, false);
    assert_eq!(
        drain(&mut c),
        vec![
            Action::LeaderChanged {
                term: 2,
                leader: None
            },
            send(B, Message::VoteResponse(yes))
        ]
    );
    assert_eq!((c.term(), c.voted_for()), (2, Some(B)));
}

#[test]
fn a_transfer_entry_of_an_earlier_term_is_only_a_log_entry() {
    // Caught up later, under a newer leader: B does not campaign for it.
    let disk = SharedDisk::new(MemDisk::default());
    let mut b = open(B, &disk);
    let old = Message::Append(AppendEntry {
        leader: C,
        term: 1,
        commit: 0,
        prev_term: 0,
        prev_index: 0,
        entries: vec![change(EntryType::LeaderTransfer, B)],
        leader_term: 2,
    });
    b.handle_message(at(5), C, old);
    drain(&mut b);
    assert_eq!((b.term(), b.log().last_index()), (2, 1));
    assert!(b.poll_timeout() >= at(155), "no early campaign");
    b.handle_message(at(6), A, vote_request(3, 1, 1, A));
    assert!(drain(&mut b).is_empty(), "stickiness holds for others");
}

#[test]
fn a_batch_is_one_message_at_one_index_and_commits_and_applies_as_one() {
    let disk = SharedDisk::new(MemDisk::default());
    let mut a = committed_leader(&disk);
    let batch = vec![Bytes::from_static(b"p"), Bytes::from_static(b"q")];
    assert_eq!(a.propose_batch(at(420), batch), Ok(2));
    let sends = appends_sent(drain(&mut a));
    assert_eq!(sends, vec![(B, 1, 2), (C, 1, 2)]);
    assert_eq!(a.propose(at(421), Bytes::from_static(b"r")), Ok(3));
    assert_eq!(
        a.propose_batch(at(421), vec![]),
        Err(ProposeError::EmptyBatch)
    );
    let nine = vec![Bytes::new(); 9];
    assert_eq!(a.propose_batch(at(421), nine), Err(ProposeError::TooLarge));
    drain(&mut a);
    disk.with(|d| d.sync("raft/log")).unwrap();
    a.handle_sync_done(at(422), 2, Ok(()));
    a.handle_sync_done(at(422), 3, Ok(()));
    a.handle_message(at(423), B, ack(1, 3, B, true));
    assert_eq!(a.commit_index(), 3);
    let applied: Vec<(u64, usize)> = drain(&mut a)
        .into_iter()
        .filter_map(|action| match action {
            Action::Apply(e) => Some((e.index, e.entries.len())),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![(2, 2), (3, 1)]);
}
