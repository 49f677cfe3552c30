//! Fuzz target `raft_wire`: the decoders of nats-server's RAFT messages
//! (`core/src/raft/wire.rs`) and the scan that recovers a RAFT log file
//! (`core/src/raft/log.rs`), over arbitrary bytes.
//!
//! Input: 1 control byte, then the bytes. Control bits 0-2 pick what reads
//! them: 0 append entry, 1 append entry response, 2 vote request, 3 vote
//! response, 4 peer state, 5 log records (under a fixed header, base 0),
//! 6 a whole log file (its header too), 7 a snapshot file. With bit 3 set,
//! the `$NRG` transport (`core/src/raft/transport.rs`) reads them instead,
//! as a message on the subscription bits 4-7 pick (past the last: a foreign
//! subject), with a reply when bit 4 is set.
//!
//! Invariants checked (beyond no panic / hang / OOM):
//! - a fixed-length message that decodes re-encodes to exactly its input;
//! - an append entry that decodes re-encodes to bytes no longer than its
//!   input that decode to the same message (the input may carry bytes after
//!   the leader term, or a longer uvarint, which nats-server also accepts);
//!   its entries' data lie inside the input;
//! - a peer state that decodes survives encode/decode unchanged;
//! - a log scan either refuses (a damaged header, or damage at an offset
//!   inside the input) or returns entries numbered from the header's base
//!   on with terms never decreasing, each re-encoding to the bytes at its
//!   offset, the header, records and sync marks tiling the valid prefix
//!   exactly;
//! - a snapshot file decodes (checked) only if it re-encodes to exactly its
//!   input;
//! - the transport maps a message to an input only if its payload decodes,
//!   a fixed-length one re-encoding to exactly its input, and never maps a
//!   foreign subject or hands the node its own echo.

use bytes::{Bytes, BytesMut};
use rnats_core::raft::log::{
    decode_snapshot, encode_header, encode_mark, encode_record, encode_snapshot, scan_log, Base,
    RecoveryError,
};
use rnats_core::raft::transport::{encode, Inbound, Transport, TransportError};
use rnats_core::raft::wire::{
    AppendEntry, AppendEntryResponse, PeerId, PeerState, VoteRequest, VoteResponse,
};
use rnats_core::raft::Message;

/// The largest input the target reads.
pub const MAX_INPUT: usize = 64 << 10;

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_INPUT {
        return;
    }
    if control & 8 != 0 {
        return transport(control >> 4, rest);
    }
    match control & 7 {
        0 => append_entry(rest),
        1 => fixed(rest, AppendEntryResponse::decode, |m, out| m.encode(out)),
        2 => fixed(rest, VoteRequest::decode, |m, out| m.encode(out)),
        3 => fixed(rest, VoteResponse::decode, |m, out| m.encode(out)),
        4 => {
            if let Ok(state) = PeerState::decode(rest) {
                let again = PeerState::decode(&state.encode()).expect("own encoding decodes");
                assert_eq!(again, state, "peer state round trip");
            }
        }
        5 => {
            let mut file = encode_header(&Base::default());
            file.extend_from_slice(rest);
            log_scan(&file);
        }
        6 => log_scan(rest),
        _ => {
            let _ = decode_snapshot(rest, false);
            if let Some(snapshot) = decode_snapshot(rest, true) {
                assert_eq!(encode_snapshot(&snapshot), rest, "snapshot round trip");
            }
        }
    }
}

fn transport(pick: u8, bytes: &[u8]) {
    let me = PeerId(*b"fuzzfuzz");
    let mut end = Transport::new("fuzz", me, 1);
    let subject = end
        .subscriptions()
        .get(usize::from(pick >> 1))
        .map_or("$NRG.AE.other".to_string(), |s| s.to_string());
    let reply = (pick & 1 == 1).then_some("$NRG.R.abcdefgh");
    let payload = Bytes::copy_from_slice(bytes);
    match end.inbound(&subject, reply, &payload) {
        Ok(Inbound::Message { from, message }) => {
            assert_ne!(from, me, "own echo handed to the node");
            let out = encode(&message);
            if !matches!(message, Message::Append(_)) {
                assert_eq!(&out[..], bytes, "fixed-length message round trip");
            }
        }
        Ok(Inbound::RemovePeer(peer)) => assert_eq!(&peer.0[..], bytes),
        Ok(Inbound::Proposal(data)) => assert_eq!(&data[..], bytes),
        Ok(Inbound::Own) => {}
        Err(TransportError::NotOurs(s)) => assert_eq!(s, subject),
        Err(TransportError::Wire(_)) => {}
    }
}

fn fixed<M, E>(bytes: &[u8], decode: fn(&[u8]) -> Result<M, E>, encode: fn(&M, &mut BytesMut)) {
    if let Ok(message) = decode(bytes) {
        let mut out = BytesMut::new();
        encode(&message, &mut out);
        assert_eq!(&out[..], bytes, "fixed-length message round trip");
    }
}

fn append_entry(bytes: &[u8]) {
    let input = Bytes::copy_from_slice(bytes);
    let Ok(message) = AppendEntry::decode(&input) else {
        return;
    };
    let data: usize = message.entries.iter().map(|e| e.data.len() + 5).sum();
    assert!(data <= bytes.len(), "entries larger than the input");
    let mut out = BytesMut::new();
    message.encode(&mut out);
    assert_eq!(out.len(), message.encoded_len());
    assert!(
        out.len() <= bytes.len() + 1,
        "encoding longer than the input"
    );
    let again = AppendEntry::decode(&out.freeze()).expect("own encoding decodes");
    assert_eq!(again, message, "append entry round trip");
}

fn log_scan(bytes: &[u8]) {
    let scan = match scan_log(bytes) {
        Ok(scan) => scan,
        Err(RecoveryError::DamagedLog { offset }) => {
            assert!((offset as usize) < bytes.len(), "damage past the end");
            return;
        }
        Err(RecoveryError::DamagedLogHeader) => return,
        Err(other) => panic!("a scan fails only with damage, not {other:?}"),
    };
    assert_eq!(scan.entries.len(), scan.offsets.len());
    let mut at = encode_header(&scan.base).len();
    assert_eq!(
        &bytes[..at],
        &encode_header(&scan.base)[..],
        "header round trip"
    );
    let mut last = (scan.base.index, scan.base.term);
    for (i, (entry, &offset)) in scan.entries.iter().zip(&scan.offsets).enumerate() {
        assert_eq!(entry.index, scan.base.index + i as u64 + 1, "dense indexes");
        // Between records only sync marks of the entry before.
        let mark = encode_mark(last.0, last.1);
        while at < offset as usize && bytes[at..].starts_with(&mark) {
            at += mark.len();
        }
        last = (entry.index, entry.term);
        if i > 0 {
            assert!(
                entry.term >= scan.entries[i - 1].term,
                "terms never decrease"
            );
        }
        assert_eq!(offset as usize, at, "records tile the valid prefix");
        let record = encode_record(entry);
        assert_eq!(
            &bytes[at..at + record.len()],
            &record[..],
            "record round trip"
        );
        at += record.len();
    }
    let mark = encode_mark(last.0, last.1);
    while at < scan.valid_len as usize && bytes[at..].starts_with(&mark) {
        at += mark.len();
    }
    assert_eq!(
        at as u64, scan.valid_len,
        "valid prefix = the records and marks"
    );
}
