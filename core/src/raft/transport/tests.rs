//! The exact subjects, replies and payloads of the `$NRG` mapping.

use super::*;
use crate::raft::wire::tests::hex;
use crate::raft::wire::{Entry, EntryType};

const A: PeerId = PeerId(*b"AAAAAAAA");
const B: PeerId = PeerId(*b"BBBBBBBB");
const C: PeerId = PeerId(*b"CCCCCCCC");
const GROUP: &str = "S-R3F-Cd447tnX";

fn append(prev_index: u64, data: &'static [u8]) -> AppendEntry {
    AppendEntry {
        leader: A,
        term: 2,
        commit: 1,
        prev_term: 2,
        prev_index,
        entries: vec![Entry::new(EntryType::Normal, Bytes::from_static(data))],
        leader_term: 0,
    }
}

/// Three ends of one group, each with its own seed.
fn group() -> (Transport, Transport, Transport) {
    (
        Transport::new(GROUP, A, 1),
        Transport::new(GROUP, B, 2),
        Transport::new(GROUP, C, 3),
    )
}

fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[test]
fn subscriptions_are_the_group_subjects_and_three_inboxes() {
    let a = Transport::new(GROUP, A, 1);
    let subs = a.subscriptions();
    assert_eq!(subs[0], "$NRG.V.S-R3F-Cd447tnX");
    assert_eq!(subs[1], "$NRG.AE.S-R3F-Cd447tnX");
    assert!(is_token(subs[2].strip_prefix("$NRG.R.").unwrap()));
    assert!(is_token(subs[3].strip_prefix("$NRG.R.").unwrap()));
    assert!(is_token(subs[4].strip_prefix("$NRG.CR.").unwrap()));
    assert_ne!(subs[2], subs[3]);
    assert_eq!(subs[5], "$NRG.P.S-R3F-Cd447tnX");
    assert_eq!(subs[6], "$NRG.RP.S-R3F-Cd447tnX");
    // Deterministic per seed, different across seeds.
    assert_eq!(Transport::new(GROUP, A, 1).subscriptions(), subs);
    assert_ne!(Transport::new(GROUP, A, 2).subscriptions()[2], subs[2]);
}

#[test]
#[should_panic(expected = "one subject token")]
fn a_group_name_with_a_dot_is_refused() {
    Transport::new("a.b", A, 1);
}

#[test]
fn a_vote_is_broadcast_and_answered_on_the_candidate_inbox() {
    let (mut a, mut b, _) = group();
    let request = VoteRequest {
        term: 1,
        last_term: 0,
        last_index: 0,
        candidate: A,
    };
    let sends = [(B, Message::Vote(request)), (C, Message::Vote(request))];
    let out = a.outbound(&sends, &[A, B, C]);
    let a_vote_inbox = a.subscriptions()[2].to_string();
    assert_eq!(
        out,
        [Outbound {
            subject: "$NRG.V.S-R3F-Cd447tnX".into(),
            reply: Some(a_vote_inbox.clone()),
            // The layout of a vote request captured from nats-server.
            payload: hex(concat!(
                "0100000000000000",
                "0000000000000000",
                "0000000000000000",
                "4141414141414141"
            )),
        }]
    );
    let got = b
        .inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload)
        .unwrap();
    assert_eq!(
        got,
        Inbound::Message {
            from: A,
            message: Message::Vote(request)
        }
    );
    let vote = VoteResponse {
        term: 1,
        peer: B,
        granted: true,
        empty: true,
    };
    let out = b.outbound(&[(A, Message::VoteResponse(vote))], &[A, B, C]);
    assert_eq!(
        out,
        [Outbound {
            subject: a_vote_inbox.clone(),
            reply: None,
            payload: hex("0100000000000000424242424242424203"),
        }]
    );
    let got = a.inbound(&a_vote_inbox, None, &out[0].payload).unwrap();
    assert_eq!(
        got,
        Inbound::Message {
            from: B,
            message: Message::VoteResponse(vote)
        }
    );
    // NATS echoes the broadcast to its sender: not an input.
    let echo = encode(&Message::Vote(request));
    assert_eq!(
        a.inbound("$NRG.V.S-R3F-Cd447tnX", Some(&a_vote_inbox), &echo),
        Ok(Inbound::Own)
    );
    assert_eq!(a.unroutable(), 0);
    assert_eq!(b.unroutable(), 0);
}

#[test]
fn new_entries_for_every_follower_are_one_broadcast() {
    let (mut a, mut b, mut c) = group();
    let ae = append(1, b"x");
    let sends = [
        (B, Message::Append(ae.clone())),
        (C, Message::Append(ae.clone())),
    ];
    let out = a.outbound(&sends, &[A, B, C]);
    let a_append_inbox = a.subscriptions()[3].to_string();
    assert_eq!(
        out,
        [Outbound {
            subject: "$NRG.AE.S-R3F-Cd447tnX".into(),
            reply: Some(a_append_inbox.clone()),
            payload: hex(concat!(
                "4141414141414141",
                "0200000000000000",
                "0100000000000000",
                "0200000000000000",
                "0100000000000000",
                "0100",
                "02000000",
                "00",
                "78",
                "00"
            )),
        }]
    );
    for node in [&mut b, &mut c] {
        assert_eq!(
            node.inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload),
            Ok(Inbound::Message {
                from: A,
                message: Message::Append(ae.clone())
            })
        );
    }
    // The echo to the leader itself is dropped.
    assert_eq!(
        a.inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload),
        Ok(Inbound::Own)
    );
    // A follower's success goes to the leader's append inbox and names its
    // catch-up inbox.
    let ack = AppendEntryResponse {
        term: 2,
        index: 2,
        peer: B,
        success: true,
    };
    let out = b.outbound(&[(A, Message::AppendResponse(ack))], &[A, B, C]);
    let b_catchup = b.subscriptions()[4].to_string();
    assert_eq!(
        out,
        [Outbound {
            subject: a_append_inbox.clone(),
            reply: Some(b_catchup.clone()),
            payload: hex("02000000000000000200000000000000424242424242424201"),
        }]
    );
    assert_eq!(
        a.inbound(&a_append_inbox, out[0].reply.as_deref(), &out[0].payload),
        Ok(Inbound::Message {
            from: B,
            message: Message::AppendResponse(ack)
        })
    );

    // Different appends: B's goes to its catch-up inbox, C's (inbox not yet
    // known) on the group subject.
    let (to_b, to_c) = (append(1, b"y"), append(0, b"z"));
    let sends = [
        (B, Message::Append(to_b.clone())),
        (C, Message::Append(to_c.clone())),
    ];
    let out = a.outbound(&sends, &[A, B, C]);
    assert_eq!(
        out,
        [
            Outbound {
                subject: b_catchup.clone(),
                reply: Some(a_append_inbox.clone()),
                payload: encode(&Message::Append(to_b.clone())),
            },
            Outbound {
                subject: "$NRG.AE.S-R3F-Cd447tnX".into(),
                reply: Some(a_append_inbox.clone()),
                payload: encode(&Message::Append(to_c)),
            },
        ]
    );
    // B takes its catch-up inbox's appends like the group's.
    assert_eq!(
        b.inbound(&b_catchup, Some(&a_append_inbox), &out[0].payload),
        Ok(Inbound::Message {
            from: A,
            message: Message::Append(to_b)
        })
    );
    assert_eq!(a.unroutable() + b.unroutable() + c.unroutable(), 0);

    // B campaigns (a restart subscribes new inboxes): its catch-up inbox
    // is forgotten, and A's next append for B alone goes on the group
    // subject, where any incarnation of B hears it.
    let request = VoteRequest {
        term: 3,
        last_term: 2,
        last_index: 1,
        candidate: B,
    };
    let mut b2 = Transport::new(GROUP, B, 22);
    let vote = b2.outbound(&[(A, Message::Vote(request))], &[A, B, C]);
    a.inbound(&vote[0].subject, vote[0].reply.as_deref(), &vote[0].payload)
        .unwrap();
    let out = a.outbound(&[(B, Message::Append(append(2, b"w")))], &[A, B, C]);
    assert_eq!(out[0].subject, "$NRG.AE.S-R3F-Cd447tnX");
}

#[test]
fn a_broadcast_goes_at_its_last_send_so_each_peer_keeps_its_order() {
    let (mut a, _, _) = group();
    let (old, new) = (append(0, b"o"), append(1, b"n"));
    // C is sent an older entry first, then both get the new one.
    let sends = [
        (C, Message::Append(old.clone())),
        (B, Message::Append(new.clone())),
        (C, Message::Append(new.clone())),
    ];
    let out = a.outbound(&sends, &[A, B, C]);
    let subjects: Vec<&str> = out.iter().map(|o| o.subject.as_str()).collect();
    assert_eq!(subjects, ["$NRG.AE.S-R3F-Cd447tnX"; 2]);
    assert_eq!(out[0].payload, encode(&Message::Append(old)));
    assert_eq!(out[1].payload, encode(&Message::Append(new.clone())));
    // The same append to only some voters is no broadcast: sent once on the
    // group subject while no inbox is known, not twice.
    let out = a.outbound(
        &[(B, Message::Append(new.clone())), (C, Message::Append(new))],
        &[A, B, C, PeerId(*b"DDDDDDDD")],
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn a_refusal_names_the_catchup_inbox_unless_the_leader_is_behind() {
    let (mut a, mut b, _) = group();
    let ae = append(5, b"x");
    let out = a.outbound(&[(B, Message::Append(ae))], &[A, B]);
    assert_eq!(out[0].subject, "$NRG.AE.S-R3F-Cd447tnX");
    b.inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload)
        .unwrap();
    // Behind: nats-server's leader streams a catch-up to the reply.
    let behind = AppendEntryResponse {
        term: 2,
        index: 3,
        peer: B,
        success: false,
    };
    let out = b.outbound(&[(A, Message::AppendResponse(behind))], &[A, B]);
    assert_eq!(out[0].reply.as_deref(), Some(b.subscriptions()[4]));
    assert_eq!(
        out[0].payload,
        hex("02000000000000000300000000000000424242424242424200")
    );
    // A newer term: no reply, so nats-server's leader steps down.
    let newer = AppendEntryResponse {
        term: 3,
        index: 6,
        peer: B,
        success: false,
    };
    let out = b.outbound(&[(A, Message::AppendResponse(newer))], &[A, B]);
    assert_eq!(out[0].subject, a.subscriptions()[3]);
    assert_eq!(out[0].reply, None);
}

#[test]
fn a_response_to_a_peer_never_heard_from_is_counted_not_sent() {
    let (_, mut b, _) = group();
    let vote = VoteResponse {
        term: 1,
        peer: B,
        granted: false,
        empty: true,
    };
    assert!(b
        .outbound(&[(A, Message::VoteResponse(vote))], &[A, B])
        .is_empty());
    assert_eq!(b.unroutable(), 1);
}

#[test]
fn forwarded_proposals_and_removals_as_nats_server_sends_them() {
    let (mut a, b, _) = group();
    let proposal = b.forward_proposal(Bytes::from_static(b"put k v"));
    assert_eq!(
        proposal,
        Outbound {
            subject: "$NRG.P.S-R3F-Cd447tnX".into(),
            reply: None,
            payload: Bytes::from_static(b"put k v"),
        }
    );
    assert_eq!(
        a.inbound(&proposal.subject, None, &proposal.payload),
        Ok(Inbound::Proposal(Bytes::from_static(b"put k v")))
    );
    let remove = b.forward_remove_peer(C);
    assert_eq!(
        remove,
        Outbound {
            subject: "$NRG.RP.S-R3F-Cd447tnX".into(),
            reply: None,
            payload: Bytes::from_static(b"CCCCCCCC"),
        }
    );
    assert_eq!(
        a.inbound(&remove.subject, None, &remove.payload),
        Ok(Inbound::RemovePeer(C))
    );
    // nats-server ignores a removal whose data is not one id; refused here.
    assert_eq!(
        a.inbound(&remove.subject, None, &Bytes::from_static(b"CCCC")),
        Err(TransportError::Wire(WireError::BadPeerId))
    );
}

#[test]
fn foreign_subjects_and_malformed_payloads_are_typed_errors() {
    let (mut a, _, _) = group();
    assert_eq!(
        a.inbound("$NRG.AE.other", None, &Bytes::new()),
        Err(TransportError::NotOurs("$NRG.AE.other".into()))
    );
    let vote_inbox = a.subscriptions()[2].to_string();
    assert!(matches!(
        a.inbound(&vote_inbox, None, &Bytes::from_static(b"short")),
        Err(TransportError::Wire(WireError::BadLength { .. }))
    ));
}

/// Frames captured from nats-server v2.15.1 (`testdata/nrg-frames.txt`):
/// the group's appends arrive on `$NRG.AE.<group>` from the leader, the
/// votes on `$NRG.V.<group>`, the responses on 8-token `$NRG.R.` inboxes,
/// and each maps to the input the node expects.
#[test]
fn captured_frames_map_to_node_inputs() {
    const CAPTURED: &str = include_str!("../testdata/nrg-frames.txt");
    let me = PeerId(*b"zzzzzzzz");
    let mut end = Transport::new(GROUP, me, 9);
    let (mut appends, mut votes) = (0, 0);
    for line in CAPTURED.lines().filter(|l| !l.starts_with('#')) {
        let (subject, payload) = line.split_once(' ').unwrap();
        let payload = hex(payload);
        if let Some(token) = subject.strip_prefix("$NRG.R.") {
            assert!(is_token(token), "{subject}");
            continue;
        }
        if !subject.ends_with(GROUP) {
            continue;
        }
        match end
            .inbound(subject, Some("$NRG.R.2W7Nzx2z"), &payload)
            .unwrap()
        {
            Inbound::Message {
                from,
                message: Message::Append(ae),
            } => {
                assert_eq!(from, ae.leader);
                appends += 1;
            }
            Inbound::Message {
                from,
                message: Message::Vote(v),
            } => {
                assert_eq!(from, v.candidate);
                votes += 1;
            }
            other => panic!("{subject}: {other:?}"),
        }
    }
    assert!(
        appends >= 5 && votes >= 1,
        "{appends} appends, {votes} votes"
    );
}

#[test]
fn a_catchup_inbox_that_never_answers_is_forgotten() {
    let (mut a, mut b, _) = group();
    // B answers once: A learns its catch-up inbox.
    let ack = AppendEntryResponse {
        term: 2,
        index: 1,
        peer: B,
        success: true,
    };
    let setup = a.outbound(&[(B, Message::Append(append(0, b"x")))], &[A, B, C]);
    b.inbound(
        &setup[0].subject,
        setup[0].reply.as_deref(),
        &setup[0].payload,
    )
    .unwrap();
    let out = b.outbound(&[(A, Message::AppendResponse(ack))], &[A, B, C]);
    a.inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload)
        .unwrap();
    let b_catchup = b.subscriptions()[4].to_string();
    let to_b = |a: &mut Transport| a.outbound(&[(B, Message::Append(append(1, b"y")))], &[A, B, C]);
    for _ in 0..UNANSWERED_MAX {
        assert_eq!(to_b(&mut a)[0].subject, b_catchup);
    }
    // Silence past the bound (B restarted with new inboxes): the group
    // subject, which any incarnation of B hears.
    assert_eq!(to_b(&mut a)[0].subject, "$NRG.AE.S-R3F-Cd447tnX");
    // An answer names the inbox again.
    a.inbound(&out[0].subject, out[0].reply.as_deref(), &out[0].payload)
        .unwrap();
    assert_eq!(to_b(&mut a)[0].subject, b_catchup);
}
