//! nats-server's RAFT ("NRG") messages, byte for byte.
//!
//! Role: encode and decode the payloads nats-server's RAFT groups exchange on
//! the `$NRG.*` subjects, so that an rnats node can one day sit in a group
//! with Go nodes. Learned from nats-server v2.15.1's behaviour and pinned by
//! frames captured from a real 3-node cluster (`testdata/nrg-frames.txt`).
//!
//! Layouts (all integers little-endian, peer ids 8 bytes):
//!
//! ```text
//! append entry     leader id | term u64 | commit u64 | prev term u64 | prev index u64 |
//!   ($NRG.AE.<g>)  entry count u16 | per entry: size u32 (1 + data) | type u8 | data |
//!                  then optionally the sender's term as a uvarint (0 or absent: same as term)
//! append response  term u64 | index u64 | peer id | success u8                     (25 bytes)
//!   (reply inbox)
//! vote request     term u64 | last term u64 | last index u64 | candidate id         (32 bytes)
//!   ($NRG.V.<g>)
//! vote response    term u64 | peer id | flags u8 (1 granted, 2 empty log)         (17 bytes)
//! peer state       cluster size u32 | peer count u32 | ids | domain ext u16 (entry data)
//! ```
//!
//! Invariants: decoding never panics and never allocates more than the input
//! holds; every malformed input is a typed [`WireError`]. Where nats-server
//! is lenient (an entry of an unknown type, a success byte other than 0/1)
//! this decoder refuses: a later issue that joins Go groups will relax a rule
//! only with a captured frame that needs it.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Length of a peer id on the wire (nats-server's hashed server name prefix).
pub const ID_LEN: usize = 8;
/// Fixed part of an append entry.
pub const APPEND_ENTRY_BASE_LEN: usize = ID_LEN + 4 * 8 + 2;
/// An append entry response is exactly this long.
pub const APPEND_RESPONSE_LEN: usize = 25;
/// A vote request is exactly this long.
pub const VOTE_REQUEST_LEN: usize = 32;
/// A vote response is exactly this long.
pub const VOTE_RESPONSE_LEN: usize = 17;
/// At most this many entries fit one append entry (the count is a u16).
pub const MAX_ENTRIES: usize = u16::MAX as usize;
/// An entry's data may not be longer (nats-server's own bound: i32::MAX).
pub const MAX_ENTRY_DATA: usize = i32::MAX as usize - 1;

/// A peer's id: 8 bytes, in nats-server a prefix of the hashed server name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId(pub [u8; ID_LEN]);

impl PeerId {
    /// The all-zero id nats-server writes for "no leader" / "no vote".
    pub const NONE: PeerId = PeerId([0; ID_LEN]);

    /// A peer id from exactly 8 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<PeerId, WireError> {
        let id: [u8; ID_LEN] = bytes.try_into().map_err(|_| WireError::BadPeerId)?;
        Ok(PeerId(id))
    }

    pub fn is_none(&self) -> bool {
        *self == PeerId::NONE
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            f.write_str(&String::from_utf8_lossy(&self.0))
        } else {
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

/// Why bytes are not a valid NRG message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message too short: {len} bytes, at least {min} needed")]
    TooShort { len: usize, min: usize },
    #[error("message length {len} is not the fixed {expected}")]
    BadLength { len: usize, expected: usize },
    #[error("entry {entry} runs past the end of the message")]
    EntryOverrun { entry: usize },
    #[error("entry {entry} has size 0 (no type byte)")]
    EmptyEntry { entry: usize },
    #[error("entry type {0} is unknown")]
    UnknownEntryType(u8),
    #[error("the leader term after the entries is not a valid uvarint")]
    BadLeaderTerm,
    #[error("flag byte {0:#04x} has unknown bits")]
    BadFlags(u8),
    #[error("a peer id is exactly 8 bytes")]
    BadPeerId,
    #[error("peer state lists {expected} peers but holds {found}")]
    PeerCount { expected: usize, found: usize },
}

/// An entry's type, as nats-server numbers them. (Its `EntryCatchup` is
/// internal and never on the wire.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EntryType {
    /// Data for the state machine above.
    Normal = 0,
    /// A snapshot in the pre-2.10 format.
    OldSnapshot = 1,
    /// The group's peers (a [`PeerState`]); a new leader appends one first.
    PeerState = 2,
    /// A peer joins (data: its id).
    AddPeer = 3,
    /// A peer leaves (data: its id).
    RemovePeer = 4,
    /// The leader hands over to the peer named in data.
    LeaderTransfer = 5,
    /// A snapshot of the state machine.
    Snapshot = 6,
}

impl EntryType {
    pub fn from_u8(byte: u8) -> Result<EntryType, WireError> {
        Ok(match byte {
            0 => EntryType::Normal,
            1 => EntryType::OldSnapshot,
            2 => EntryType::PeerState,
            3 => EntryType::AddPeer,
            4 => EntryType::RemovePeer,
            5 => EntryType::LeaderTransfer,
            6 => EntryType::Snapshot,
            other => return Err(WireError::UnknownEntryType(other)),
        })
    }
}

/// One log entry as carried by an append entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryType,
    pub data: Bytes,
}

impl Entry {
    pub fn new(kind: EntryType, data: impl Into<Bytes>) -> Entry {
        Entry {
            kind,
            data: data.into(),
        }
    }
}

/// `$NRG.AE.<group>`: entries (or none: a heartbeat) from a leader.
///
/// All entries of one message share `term`, the term they were created in;
/// `leader_term` is the sender's current term when it differs (catch-up of
/// older entries), 0 otherwise, as nats-server writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendEntry {
    pub leader: PeerId,
    pub term: u64,
    pub commit: u64,
    pub prev_term: u64,
    pub prev_index: u64,
    pub entries: Vec<Entry>,
    pub leader_term: u64,
}

impl AppendEntry {
    /// The sender's current term: what a receiver compares with its own.
    pub fn sender_term(&self) -> u64 {
        if self.leader_term == 0 {
            self.term
        } else {
            self.leader_term
        }
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        let entries: usize = self.entries.iter().map(|e| 4 + 1 + e.data.len()).sum();
        APPEND_ENTRY_BASE_LEN + entries + uvarint_len(self.leader_term)
    }

    pub fn encode(&self, out: &mut BytesMut) {
        assert!(self.entries.len() <= MAX_ENTRIES, "too many entries");
        let start = out.len();
        out.reserve(self.encoded_len());
        out.put_slice(&self.leader.0);
        out.put_u64_le(self.term);
        out.put_u64_le(self.commit);
        out.put_u64_le(self.prev_term);
        out.put_u64_le(self.prev_index);
        out.put_u16_le(self.entries.len() as u16);
        for entry in &self.entries {
            assert!(entry.data.len() <= MAX_ENTRY_DATA, "entry too large");
            out.put_u32_le(1 + entry.data.len() as u32);
            out.put_u8(entry.kind as u8);
            out.put_slice(&entry.data);
        }
        put_uvarint(out, self.leader_term);
        debug_assert_eq!(out.len() - start, self.encoded_len());
    }

    /// Decode; entry data shares `msg`'s buffer.
    pub fn decode(msg: &Bytes) -> Result<AppendEntry, WireError> {
        if msg.len() < APPEND_ENTRY_BASE_LEN {
            return Err(WireError::TooShort {
                len: msg.len(),
                min: APPEND_ENTRY_BASE_LEN,
            });
        }
        let leader = PeerId::from_slice(&msg[..ID_LEN])?;
        let count = usize::from(u16_at(msg, 40));
        // Each entry takes at least 5 bytes: bound the allocation by the input.
        let mut entries = Vec::with_capacity(count.min((msg.len() - APPEND_ENTRY_BASE_LEN) / 5));
        let mut at = APPEND_ENTRY_BASE_LEN;
        for entry in 0..count {
            if msg.len() - at < 4 {
                return Err(WireError::EntryOverrun { entry });
            }
            let size = u32_at(msg, at) as usize;
            at += 4;
            if size == 0 {
                return Err(WireError::EmptyEntry { entry });
            }
            if size > msg.len() - at {
                return Err(WireError::EntryOverrun { entry });
            }
            let kind = EntryType::from_u8(msg[at])?;
            entries.push(Entry {
                kind,
                data: msg.slice(at + 1..at + size),
            });
            at += size;
        }
        // Bytes after the uvarint are ignored, as by nats-server: a later
        // version may append fields there.
        let leader_term = if at == msg.len() {
            0
        } else {
            get_uvarint(&msg[at..]).ok_or(WireError::BadLeaderTerm)?
        };
        Ok(AppendEntry {
            leader,
            term: u64_at(msg, 8),
            commit: u64_at(msg, 16),
            prev_term: u64_at(msg, 24),
            prev_index: u64_at(msg, 32),
            entries,
            leader_term,
        })
    }
}

/// A follower's answer to an append entry, sent to the leader's reply inbox.
/// `index` is the last index known to match the leader's log on success, a
/// hint where to resume on failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendEntryResponse {
    pub term: u64,
    pub index: u64,
    pub peer: PeerId,
    pub success: bool,
}

impl AppendEntryResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.term);
        out.put_u64_le(self.index);
        out.put_slice(&self.peer.0);
        out.put_u8(u8::from(self.success));
    }

    pub fn decode(msg: &[u8]) -> Result<AppendEntryResponse, WireError> {
        fixed_len(msg, APPEND_RESPONSE_LEN)?;
        let success = match msg[24] {
            0 => false,
            1 => true,
            other => return Err(WireError::BadFlags(other)),
        };
        Ok(AppendEntryResponse {
            term: u64_at(msg, 0),
            index: u64_at(msg, 8),
            peer: PeerId::from_slice(&msg[16..24])?,
            success,
        })
    }
}

/// `$NRG.V.<group>`: a candidate asks for votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteRequest {
    pub term: u64,
    pub last_term: u64,
    pub last_index: u64,
    pub candidate: PeerId,
}

impl VoteRequest {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.term);
        out.put_u64_le(self.last_term);
        out.put_u64_le(self.last_index);
        out.put_slice(&self.candidate.0);
    }

    pub fn decode(msg: &[u8]) -> Result<VoteRequest, WireError> {
        fixed_len(msg, VOTE_REQUEST_LEN)?;
        Ok(VoteRequest {
            term: u64_at(msg, 0),
            last_term: u64_at(msg, 8),
            last_index: u64_at(msg, 16),
            candidate: PeerId::from_slice(&msg[24..32])?,
        })
    }
}

/// A vote, sent to the candidate's reply inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteResponse {
    pub term: u64,
    pub peer: PeerId,
    pub granted: bool,
    /// The voter's log is empty.
    pub empty: bool,
}

impl VoteResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.term);
        out.put_slice(&self.peer.0);
        out.put_u8(u8::from(self.granted) | (u8::from(self.empty) << 1));
    }

    pub fn decode(msg: &[u8]) -> Result<VoteResponse, WireError> {
        fixed_len(msg, VOTE_RESPONSE_LEN)?;
        let flags = msg[16];
        if flags & !3 != 0 {
            return Err(WireError::BadFlags(flags));
        }
        Ok(VoteResponse {
            term: u64_at(msg, 0),
            peer: PeerId::from_slice(&msg[8..16])?,
            granted: flags & 1 != 0,
            empty: flags & 2 != 0,
        })
    }
}

/// The data of an [`EntryType::PeerState`] entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub cluster_size: u32,
    pub peers: Vec<PeerId>,
    /// nats-server's JetStream domain extension state (0 undetermined).
    pub domain_ext: u16,
}

impl PeerState {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + ID_LEN * self.peers.len() + 2);
        out.put_u32_le(self.cluster_size);
        out.put_u32_le(self.peers.len() as u32);
        for peer in &self.peers {
            out.put_slice(&peer.0);
        }
        out.put_u16_le(self.domain_ext);
        out.freeze()
    }

    pub fn decode(buf: &[u8]) -> Result<PeerState, WireError> {
        if buf.len() < 8 {
            return Err(WireError::TooShort {
                len: buf.len(),
                min: 8,
            });
        }
        let expected = u32_at(buf, 4) as usize;
        let body = &buf[8..];
        let found = (body.len() / ID_LEN).min(expected);
        if found != expected {
            return Err(WireError::PeerCount { expected, found });
        }
        let peers = body[..found * ID_LEN]
            .chunks_exact(ID_LEN)
            .map(PeerId::from_slice)
            .collect::<Result<Vec<_>, _>>()?;
        let rest = &body[found * ID_LEN..];
        let domain_ext = if rest.len() >= 2 { u16_at(rest, 0) } else { 0 };
        Ok(PeerState {
            cluster_size: u32_at(buf, 0),
            peers,
            domain_ext,
        })
    }
}

/// The subjects of group `group`.
pub mod subjects {
    /// Every NRG subject (what the system account's internal client subscribes).
    pub const ALL: &str = "$NRG.>";

    pub fn vote(group: &str) -> String {
        format!("$NRG.V.{group}")
    }
    pub fn append(group: &str) -> String {
        format!("$NRG.AE.{group}")
    }
    /// Proposals forwarded to the leader (data: a normal entry's data).
    pub fn proposal(group: &str) -> String {
        format!("$NRG.P.{group}")
    }
    /// A forwarded remove-peer proposal (data: the 8-byte peer id).
    pub fn remove_peer(group: &str) -> String {
        format!("$NRG.RP.{group}")
    }
    /// A node's reply inbox, `token` drawn by the node.
    pub fn reply(token: &str) -> String {
        format!("$NRG.R.{token}")
    }
    /// A catch-up inbox a leader streams old entries to.
    pub fn catchup_reply(token: &str) -> String {
        format!("$NRG.CR.{token}")
    }
}

fn fixed_len(msg: &[u8], expected: usize) -> Result<(), WireError> {
    if msg.len() == expected {
        Ok(())
    } else {
        Err(WireError::BadLength {
            len: msg.len(),
            expected,
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A uvarint at the start of `b`; `None` if truncated or over 64 bits.
fn get_uvarint(b: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes from hex digits (also the transport's tests').
    pub(crate) fn hex(s: &str) -> Bytes {
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    fn id(s: &str) -> PeerId {
        PeerId::from_slice(s.as_bytes()).unwrap()
    }

    /// Frames captured from nats-server v2.15.1: three servers in one
    /// cluster with JetStream, an R3 stream created and five messages
    /// published, `$NRG.>` subscribed by the system account's user (see
    /// ARCHITECTURE.md, "RAFT"). One line per distinct payload:
    /// `<subject> <hex>`.
    const CAPTURED: &str = include_str!("testdata/nrg-frames.txt");

    #[test]
    fn every_captured_frame_decodes_and_reencodes_to_the_same_bytes() {
        let mut kinds = [0usize; 4];
        for line in CAPTURED.lines() {
            let (subject, data) = line.split_once(' ').unwrap();
            let msg = hex(data);
            let mut out = BytesMut::new();
            if subject.starts_with("$NRG.AE.") {
                AppendEntry::decode(&msg).unwrap().encode(&mut out);
                kinds[0] += 1;
            } else if subject.starts_with("$NRG.V.") {
                VoteRequest::decode(&msg).unwrap().encode(&mut out);
                kinds[1] += 1;
            } else if msg.len() == APPEND_RESPONSE_LEN {
                AppendEntryResponse::decode(&msg).unwrap().encode(&mut out);
                kinds[2] += 1;
            } else {
                VoteResponse::decode(&msg).unwrap().encode(&mut out);
                kinds[3] += 1;
            }
            assert_eq!(&out[..], &msg[..], "{subject}");
        }
        assert!(kinds.iter().all(|&n| n > 0), "{kinds:?}");
    }

    #[test]
    fn captured_first_append_of_a_new_group_carries_its_peer_state() {
        let msg = hex("666a4679456a6331010000000000000000000000000000000000000000000000000000000000000001002300000002030000000300000034346a7a6b563944666a4679456a63314258536372593969000000");
        let ae = AppendEntry::decode(&msg).unwrap();
        assert_eq!(ae.leader, id("fjFyEjc1"));
        assert_eq!(
            (ae.term, ae.commit, ae.prev_term, ae.prev_index),
            (1, 0, 0, 0)
        );
        assert_eq!(ae.leader_term, 0);
        assert_eq!(ae.sender_term(), 1);
        assert_eq!(ae.entries.len(), 1);
        assert_eq!(ae.entries[0].kind, EntryType::PeerState);
        let state = PeerState::decode(&ae.entries[0].data).unwrap();
        assert_eq!(
            state,
            PeerState {
                cluster_size: 3,
                peers: vec![id("44jzkV9D"), id("fjFyEjc1"), id("BXScrY9i")],
                domain_ext: 0,
            }
        );
        assert_eq!(state.encode(), ae.entries[0].data);
    }

    #[test]
    fn captured_heartbeat_vote_and_responses() {
        let hb = AppendEntry::decode(&hex("666a4679456a63310100000000000000060000000000000001000000000000000600000000000000000000")).unwrap();
        assert_eq!(
            (hb.term, hb.commit, hb.prev_term, hb.prev_index),
            (1, 6, 1, 6)
        );
        assert!(hb.entries.is_empty());

        let vote = VoteRequest::decode(&hex(
            "010000000000000000000000000000000000000000000000666a4679456a6331",
        ))
        .unwrap();
        assert_eq!(
            vote,
            VoteRequest {
                term: 1,
                last_term: 0,
                last_index: 0,
                candidate: id("fjFyEjc1")
            }
        );
        let granted = VoteResponse::decode(&hex("010000000000000034346a7a6b56394401")).unwrap();
        assert_eq!(
            granted,
            VoteResponse {
                term: 1,
                peer: id("44jzkV9D"),
                granted: true,
                empty: false
            }
        );
        let ack =
            AppendEntryResponse::decode(&hex("0100000000000000050000000000000034346a7a6b56394401"))
                .unwrap();
        assert_eq!(
            ack,
            AppendEntryResponse {
                term: 1,
                index: 5,
                peer: id("44jzkV9D"),
                success: true
            }
        );
    }

    #[test]
    fn exact_bytes_of_each_message() {
        let mut out = BytesMut::new();
        AppendEntry {
            leader: id("AAAAAAAA"),
            term: 3,
            commit: 2,
            prev_term: 2,
            prev_index: 7,
            entries: vec![
                Entry::new(EntryType::Normal, &b"xy"[..]),
                Entry::new(EntryType::AddPeer, &b"BBBBBBBB"[..]),
            ],
            leader_term: 300,
        }
        .encode(&mut out);
        let mut want = b"AAAAAAAA".to_vec();
        for v in [3u64, 2, 2, 7] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(&[2, 0]);
        want.extend_from_slice(&[3, 0, 0, 0, 0, b'x', b'y']);
        want.extend_from_slice(&[9, 0, 0, 0, 3]);
        want.extend_from_slice(b"BBBBBBBB");
        want.extend_from_slice(&[0xac, 0x02]); // 300 as a uvarint
        assert_eq!(&out[..], &want[..]);
        assert_eq!(
            AppendEntry::decode(&out.clone().freeze())
                .unwrap()
                .leader_term,
            300
        );

        let mut out = BytesMut::new();
        VoteResponse {
            term: 2,
            peer: id("CCCCCCCC"),
            granted: false,
            empty: true,
        }
        .encode(&mut out);
        assert_eq!(&out[..], b"\x02\0\0\0\0\0\0\0CCCCCCCC\x02");
    }

    #[test]
    fn membership_entries_carry_the_bare_peer_id_as_nats_server_proposes_them() {
        // nats-server's ProposeAddPeer/ProposeRemovePeer make an entry whose
        // data is the 8-byte peer id, nothing else.
        for (kind, byte) in [(EntryType::AddPeer, 3u8), (EntryType::RemovePeer, 4)] {
            let mut out = BytesMut::new();
            AppendEntry {
                leader: id("AAAAAAAA"),
                term: 1,
                commit: 1,
                prev_term: 1,
                prev_index: 1,
                entries: vec![Entry::new(kind, &b"DDDDDDDD"[..])],
                leader_term: 0,
            }
            .encode(&mut out);
            let entry = &out[APPEND_ENTRY_BASE_LEN..];
            assert_eq!(entry, [&[9, 0, 0, 0, byte][..], b"DDDDDDDD", &[0]].concat());
        }
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let base = hex("666a4679456a63310100000000000000060000000000000001000000000000000600000000000000000000");
        assert_eq!(
            AppendEntry::decode(&base.slice(..20)),
            Err(WireError::TooShort {
                len: 20,
                min: APPEND_ENTRY_BASE_LEN
            })
        );
        let mut claims_entries = base[..APPEND_ENTRY_BASE_LEN].to_vec();
        claims_entries[40] = 0xff;
        claims_entries[41] = 0xff;
        assert_eq!(
            AppendEntry::decode(&Bytes::from(claims_entries.clone())),
            Err(WireError::EntryOverrun { entry: 0 })
        );
        claims_entries.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            AppendEntry::decode(&Bytes::from(claims_entries.clone())),
            Err(WireError::EmptyEntry { entry: 0 })
        );
        let mut bad_type = base[..APPEND_ENTRY_BASE_LEN].to_vec();
        bad_type[40] = 1;
        bad_type.extend_from_slice(&[1, 0, 0, 0, 9]);
        assert_eq!(
            AppendEntry::decode(&Bytes::from(bad_type)),
            Err(WireError::UnknownEntryType(9))
        );
        let mut bad_varint = base[..APPEND_ENTRY_BASE_LEN].to_vec();
        bad_varint.push(0x80);
        assert_eq!(
            AppendEntry::decode(&Bytes::from(bad_varint)),
            Err(WireError::BadLeaderTerm)
        );
        assert_eq!(
            VoteRequest::decode(&[0; 31]),
            Err(WireError::BadLength {
                len: 31,
                expected: 32
            })
        );
        assert_eq!(VoteResponse::decode(&[4; 17]), Err(WireError::BadFlags(4)));
        assert_eq!(
            AppendEntryResponse::decode(&[2; 25]),
            Err(WireError::BadFlags(2))
        );
        assert_eq!(
            PeerState::decode(&[3, 0, 0, 0, 3, 0, 0, 0, b'a']),
            Err(WireError::PeerCount {
                expected: 3,
                found: 0
            })
        );
    }

    #[test]
    fn uvarint_round_trips_and_rejects_overflow() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = BytesMut::new();
            put_uvarint(&mut out, v);
            assert_eq!(out.len(), uvarint_len(v));
            assert_eq!(get_uvarint(&out), Some(v));
        }
        assert_eq!(get_uvarint(&[0xff; 10]), None);
        assert_eq!(get_uvarint(&[0xff, 0xff]), None);
    }

    #[test]
    fn subjects_are_nats_servers() {
        assert_eq!(subjects::vote("_meta_"), "$NRG.V._meta_");
        assert_eq!(subjects::append("S-R3F-Cd447tnX"), "$NRG.AE.S-R3F-Cd447tnX");
        assert_eq!(subjects::proposal("g"), "$NRG.P.g");
        assert_eq!(subjects::remove_peer("g"), "$NRG.RP.g");
        assert_eq!(subjects::reply("rE9bXCdC"), "$NRG.R.rE9bXCdC");
        assert_eq!(subjects::catchup_reply("x"), "$NRG.CR.x");
    }
}
