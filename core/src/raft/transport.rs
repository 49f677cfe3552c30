//! The `$NRG.*` addressing: a node's sends as NATS messages, NATS messages
//! as node inputs.
//!
//! Role: the node names a peer in every `Action::Send`; NATS names
//! subjects. This machine maps one onto the other the way nats-server's
//! groups address each other, so that a runtime with any NATS connection
//! (a client of a clustered server, the server's own internal client) can
//! carry a group over routes:
//!
//! ```text
//! $NRG.V.<group>    vote requests, broadcast; reply: the candidate's vote inbox
//! $NRG.AE.<group>   append entries every follower gets, broadcast; reply: the leader's append inbox
//! $NRG.R.<token>    a node's inboxes: vote responses (one), append responses (another)
//! $NRG.CR.<token>   a follower's catch-up inbox: append entries for it alone
//!                   (it names it as the reply of its append responses)
//! $NRG.P.<group>    a proposal forwarded to the leader (data: the entry's data)
//! $NRG.RP.<group>   a peer removal forwarded to the leader (data: the 8-byte id)
//! ```
//!
//! Replies are learned from what arrives: a vote request's reply is where
//! the vote goes, an append's reply is where its response goes, and an
//! append response's reply is that follower's catch-up inbox. An append the
//! node addresses to every other voter alike (new entries, heartbeats of an
//! up-to-date group) is published once on the group subject, as nats-server
//! does; one addressed to some peers only (catch-up, a lagging follower) goes
//! to each one's catch-up inbox, or, before that inbox is known, on the group
//! subject (any follower may safely receive any append of a live leader).
//!
//! Invariants: decoding never panics (typed [`TransportError`]); a message
//! the node itself published (NATS echoes broadcasts) is never handed back
//! to it; nothing here decides anything RAFT's safety depends on: the node
//! is proven safe under loss, duplication and reordering, and the worst this
//! mapping can do is deliver an append to a follower it was not meant for.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::node::Message;
use super::wire::{
    subjects, AppendEntry, AppendEntryResponse, PeerId, VoteRequest, VoteResponse, WireError,
    ID_LEN,
};

/// Length of an inbox token, as nats-server draws them (`replySuffixLen`).
pub const TOKEN_LEN: usize = 8;

/// A NATS message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Bytes,
}

/// What a received `$NRG` message asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Hand to `Node::handle_message`.
    Message { from: PeerId, message: Message },
    /// A follower's proposal: the leader's runtime hands it to `Node::propose`.
    Proposal(Bytes),
    /// A peer removal: the leader's runtime hands it to `Node::propose_remove_peer`.
    RemovePeer(PeerId),
    /// The node's own broadcast, echoed back by NATS: nothing to do.
    Own,
}

/// Why a received message is no input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("subject {0} is not one of this node's")]
    NotOurs(String),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Reply subjects learned from a peer's messages.
#[derive(Debug, Clone, Default)]
struct Routes {
    /// Where this peer, as a candidate, takes votes.
    vote_reply: Option<String>,
    /// Where this peer, as a leader, takes append responses.
    append_reply: Option<String>,
    /// The highest term this peer sent an append in (see `response_reply`).
    append_term: u64,
    /// This peer's catch-up inbox, as a follower.
    catchup: Option<String>,
    /// Appends sent to `catchup` since this peer last answered one.
    unanswered: u32,
}

/// A catch-up inbox that this many appends in a row went to unanswered is
/// forgotten (appends for its peer go on the group subject again): the
/// peer may have restarted with new inboxes without campaigning (it heard
/// another candidate, or a leader on the group subject). Above the
/// messages a follower may hold silently (one window) and a few heartbeats'
/// worth, so a live follower keeps its inbox.
const UNANSWERED_MAX: u32 = 512;

/// One node's end of a group's subjects.
#[derive(Debug, Clone)]
pub struct Transport {
    id: PeerId,
    vote: String,
    append: String,
    proposal: String,
    remove_peer: String,
    vote_inbox: String,
    append_inbox: String,
    catchup_inbox: String,
    routes: BTreeMap<PeerId, Routes>,
    unroutable: u64,
}

impl Transport {
    /// Node `id`'s end of group `group` (a subject token: no dots, spaces or
    /// wildcards). Its three inbox tokens are drawn from `seed`, which the
    /// runtime draws at random (two nodes must not share one).
    pub fn new(group: &str, id: PeerId, seed: u64) -> Transport {
        assert!(
            !group.is_empty()
                && !group
                    .bytes()
                    .any(|b| matches!(b, b'.' | b'*' | b'>' | b' ' | b'\t' | b'\r' | b'\n')),
            "a group name is one subject token"
        );
        let mut state = seed;
        Transport {
            id,
            vote: subjects::vote(group),
            append: subjects::append(group),
            proposal: subjects::proposal(group),
            remove_peer: subjects::remove_peer(group),
            vote_inbox: subjects::reply(&token(&mut state)),
            append_inbox: subjects::reply(&token(&mut state)),
            catchup_inbox: subjects::catchup_reply(&token(&mut state)),
            routes: BTreeMap::new(),
            unroutable: 0,
        }
    }

    /// Every subject the node's connection subscribes to, for its whole life.
    /// (nats-server's leader alone subscribes to the proposal subjects; a
    /// follower here receives them too and its runtime's `propose` refuses.)
    pub fn subscriptions(&self) -> [&str; 7] {
        [
            &self.vote,
            &self.append,
            &self.vote_inbox,
            &self.append_inbox,
            &self.catchup_inbox,
            &self.proposal,
            &self.remove_peer,
        ]
    }

    /// Responses not sent because the peer's reply subject was never learned
    /// (a response to a request that never arrived cannot happen; counted so
    /// a test can assert it stays 0).
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// The messages for the node's sends, drained from its actions in order
    /// after one input. `voters` is `Node::voters()`: an append addressed
    /// alike to every voter but this node is broadcast once, at the place of
    /// its last send (so each peer still gets its messages in order).
    pub fn outbound(&mut self, sends: &[(PeerId, Message)], voters: &[PeerId]) -> Vec<Outbound> {
        let others: Vec<PeerId> = voters.iter().copied().filter(|p| *p != self.id).collect();
        let encoded: Vec<Bytes> = sends.iter().map(|(_, m)| encode(m)).collect();
        // For each append payload: who it goes to and its last position.
        let mut groups: BTreeMap<&[u8], (Vec<PeerId>, usize)> = BTreeMap::new();
        for (i, ((to, message), payload)) in sends.iter().zip(&encoded).enumerate() {
            if matches!(message, Message::Append(_)) {
                let group = groups.entry(payload).or_default();
                group.0.push(*to);
                group.1 = i;
            }
        }
        let broadcast = |payload: &[u8]| {
            groups.get(payload).is_some_and(|(targets, _)| {
                !others.is_empty() && others.iter().all(|p| targets.contains(p))
            })
        };
        let mut out: Vec<Outbound> = Vec::new();
        for (i, ((to, message), payload)) in sends.iter().zip(&encoded).enumerate() {
            let publish = match message {
                Message::Append(_) if broadcast(payload) => {
                    (groups[&payload[..]].1 == i).then(|| (self.append.clone(), &self.append_inbox))
                }
                Message::Append(_) => {
                    let inbox = self.routes.get_mut(to).and_then(|r| {
                        r.unanswered += 1;
                        if r.unanswered > UNANSWERED_MAX {
                            r.catchup = None;
                        }
                        r.catchup.clone()
                    });
                    Some((
                        inbox.unwrap_or_else(|| self.append.clone()),
                        &self.append_inbox,
                    ))
                }
                Message::Vote(_) => Some((self.vote.clone(), &self.vote_inbox)),
                Message::VoteResponse(_) => {
                    match self.routes.get(to).and_then(|r| r.vote_reply.clone()) {
                        Some(subject) => {
                            out.push(Outbound {
                                subject,
                                reply: None,
                                payload: payload.clone(),
                            });
                        }
                        None => self.unroutable += 1,
                    }
                    None
                }
                Message::AppendResponse(response) => {
                    let routes = self.routes.get(to);
                    match routes.and_then(|r| r.append_reply.clone()) {
                        Some(subject) => {
                            let reply = self.response_reply(response, routes);
                            out.push(Outbound {
                                subject,
                                reply,
                                payload: payload.clone(),
                            });
                        }
                        None => self.unroutable += 1,
                    }
                    None
                }
            };
            if let Some((subject, reply)) = publish {
                let message = Outbound {
                    subject,
                    reply: Some(reply.clone()),
                    payload: payload.clone(),
                };
                // A broadcast in place of an unknown inbox goes once, however
                // many peers it was meant for.
                if !out.contains(&message) {
                    out.push(message);
                }
            }
        }
        out
    }

    /// An append response names this node's catch-up inbox as its reply,
    /// except a refusal of a leader whose term is behind: nats-server's
    /// leader reads a refusal with a reply as "catch me up" and one without
    /// as "a newer term exists", and must step down on the latter.
    fn response_reply(
        &self,
        response: &AppendEntryResponse,
        routes: Option<&Routes>,
    ) -> Option<String> {
        let leader_term = routes.map_or(0, |r| r.append_term);
        if !response.success && response.term > leader_term {
            None
        } else {
            Some(self.catchup_inbox.clone())
        }
    }

    /// A proposal for the leader, from a follower (nats-server's
    /// `ForwardProposal`: no reply, the proposer learns the outcome from the
    /// log).
    pub fn forward_proposal(&self, data: Bytes) -> Outbound {
        Outbound {
            subject: self.proposal.clone(),
            reply: None,
            payload: data,
        }
    }

    /// A request that the leader remove `peer` (nats-server's
    /// `ProposeRemovePeer` on a follower). A node that lost its log and
    /// rejoined under a new id sends it for its old id itself.
    pub fn forward_remove_peer(&self, peer: PeerId) -> Outbound {
        Outbound {
            subject: self.remove_peer.clone(),
            reply: None,
            payload: Bytes::copy_from_slice(&peer.0),
        }
    }

    /// What a message received on one of [`Transport::subscriptions`] asks of
    /// the node; learns the reply subjects it carries.
    pub fn inbound(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &Bytes,
    ) -> Result<Inbound, TransportError> {
        let reply = reply.filter(|r| !r.is_empty()).map(str::to_string);
        if subject == self.append || subject == self.catchup_inbox {
            let append = AppendEntry::decode(payload)?;
            if append.leader == self.id {
                return Ok(Inbound::Own);
            }
            let routes = self.routes.entry(append.leader).or_default();
            if reply.is_some() {
                routes.append_reply = reply;
            }
            routes.append_term = routes.append_term.max(append.sender_term());
            let from = append.leader;
            return Ok(Inbound::Message {
                from,
                message: Message::Append(append),
            });
        }
        if subject == self.vote {
            let request = VoteRequest::decode(payload)?;
            if request.candidate == self.id {
                return Ok(Inbound::Own);
            }
            let routes = self.routes.entry(request.candidate).or_default();
            if reply.is_some() {
                routes.vote_reply = reply;
            }
            // A candidate is not hearing its leader: the catch-up inbox it
            // named may be a past incarnation's (a restart subscribes new
            // ones), so appends for it go on the group subject until it
            // answers again. Found by the simulator: a restarted follower
            // behind the others was sent only to its dead inbox, forever.
            routes.catchup = None;
            return Ok(Inbound::Message {
                from: request.candidate,
                message: Message::Vote(request),
            });
        }
        if subject == self.vote_inbox {
            let response = VoteResponse::decode(payload)?;
            return Ok(Inbound::Message {
                from: response.peer,
                message: Message::VoteResponse(response),
            });
        }
        if subject == self.append_inbox {
            let response = AppendEntryResponse::decode(payload)?;
            let routes = self.routes.entry(response.peer).or_default();
            routes.unanswered = 0;
            if reply.is_some() {
                routes.catchup = reply;
            }
            return Ok(Inbound::Message {
                from: response.peer,
                message: Message::AppendResponse(response),
            });
        }
        if subject == self.proposal {
            return Ok(Inbound::Proposal(payload.clone()));
        }
        if subject == self.remove_peer {
            if payload.len() != ID_LEN {
                return Err(WireError::BadPeerId.into());
            }
            return Ok(Inbound::RemovePeer(PeerId::from_slice(payload)?));
        }
        Err(TransportError::NotOurs(subject.to_string()))
    }
}

/// A message's payload as nats-server encodes it.
pub fn encode(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    match message {
        Message::Append(m) => m.encode(&mut out),
        Message::AppendResponse(m) => m.encode(&mut out),
        Message::Vote(m) => m.encode(&mut out),
        Message::VoteResponse(m) => m.encode(&mut out),
    }
    out.freeze()
}

/// An inbox token: `TOKEN_LEN` base-62 digits, as nats-server's `newInbox`
/// writes them, from a splitmix64 step of `state`.
fn token(state: &mut u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (0..TOKEN_LEN)
        .map(|_| {
            let digit = DIGITS[(z % 62) as usize];
            z /= 62;
            char::from(digit)
        })
        .collect()
}

#[cfg(test)]
mod tests;
