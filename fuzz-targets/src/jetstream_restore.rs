//! A stream restore fed arbitrary backups: the archive reader
//! (`jetstream::archive`, over `jetstream::framing`) alone, and the
//! JetStream machine's whole `STREAM.RESTORE` flow over it.
//!
//! Input: 1 control byte, then the backup. Bit 7 of the control byte says
//! the rest is the archive's content before compression (the target
//! compresses it, so mutations reach the entry parser and the restore
//! rather than stopping at a frame checksum); bit 6 then picks S2's
//! framing (as nats-server writes, blocks cut at sizes the content's first
//! byte picks, each compressed when that is shorter) over Snappy's (as
//! rnats writes). Without bit 7 it is the compressed stream as a client
//! would send it (seeds: real nats-server backups). The low 6 bits pick
//! the chunk size (64 to 4096 bytes).
//!
//! Checked: no panic; the reader gives the same entries and the same error
//! whole and in chunks; every entry written again reads back as itself; the
//! reader never holds more than one frame of compressed input (and one
//! frame's data beyond a partial entry); the machine
//! answers every chunk (an empty ack, or the error that ends the restore)
//! and the end marker with one `stream_create_response`; a restore that
//! fails leaves no stream (info says not found) and no definition on disk;
//! one that succeeds has a stream whose state holds at most the archive's
//! messages, and a stream named `R`.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use rnats_core::jetstream::archive::{
    ArchiveReader, ArchiveWriter, Entry, Framing, MAX_FRAME, MAX_S2_DATA,
};
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{Disk, MemDisk, SharedDisk};
use rnats_core::time::{Instant, WallTime};

/// Entries no larger than this in the reader-only check.
const MAX_ENTRY: u64 = 1 << 20;

/// Read `data` in pieces of `piece`: the entries, and the error if any.
fn read(data: &[u8], piece: usize) -> (Vec<Entry>, Option<String>) {
    let mut reader = ArchiveReader::new(MAX_ENTRY);
    let mut entries = Vec::new();
    for chunk in data.chunks(piece) {
        if let Err(error) = reader.push(chunk) {
            return (entries, Some(error.to_string()));
        }
        let (compressed, plain) = reader.held();
        assert!(compressed < 4 + MAX_FRAME, "at most one frame held");
        // One frame's data on top of a partial entry (name and data).
        let frame_data = match reader.framing() {
            Some(Framing::S2) => MAX_S2_DATA,
            _ => 1 << 16,
        };
        assert!(plain <= frame_data + 2 * (1 << 20) + MAX_ENTRY as usize + 64);
        loop {
            match reader.next_entry() {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => break,
                Err(error) => return (entries, Some(error.to_string())),
            }
        }
    }
    (entries, None)
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let piece = (usize::from(control & 0x3f) + 1) * 64;
    let backup = match control & 0xc0 {
        0xc0 => s2_framed(rest),
        0x80 => {
            let mut encoder = snap::write::FrameEncoder::new(Vec::new());
            encoder.write_all(rest).expect("writing into memory");
            encoder.into_inner().expect("flushing into memory")
        }
        _ => rest.to_vec(),
    };

    let whole = read(&backup, backup.len().max(1));
    let pieces = read(&backup, piece);
    // An error in a later frame stops the whole read before an entry error
    // in an earlier one that the read in pieces meets first: both fail, and
    // the entries agree as far as both went.
    assert_eq!(
        whole.1.is_some(),
        pieces.1.is_some(),
        "{whole:?} / {pieces:?}"
    );
    let shorter = whole.0.len().min(pieces.0.len());
    assert_eq!(whole.0[..shorter], pieces.0[..shorter]);
    if whole.1.is_none() {
        assert_eq!(whole.0, pieces.0, "the same whole and in pieces of {piece}");
    }
    let again = write_again(&whole.0);
    let (reread, error) = read(&again, again.len());
    assert_eq!(error, None);
    assert_eq!(reread.len(), whole.0.len() + 1);
    assert_eq!(
        reread[..whole.0.len()],
        whole.0,
        "entries written again read as themselves"
    );
    assert!(reread[whole.0.len()].is_end());

    restore(
        &backup,
        piece,
        whole.0.iter().filter(|e| e.sequence > 0).count(),
    );
}

/// `entries` in an archive as rnats writes it, with its end entry.
fn write_again(entries: &[Entry]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new();
    for entry in entries {
        writer.entry(
            &entry.name,
            entry.timestamp,
            entry.sequence,
            entry.header(),
            entry.payload(),
        );
    }
    writer.finish();
    writer.take(usize::MAX)
}

/// `plain` in S2's framing as nats-server's writer frames it: blocks of
/// 1 to 256 KiB (by `plain`'s first byte), each compressed when that is
/// shorter, with the masked CRC-32C of its data.
fn s2_framed(plain: &[u8]) -> Vec<u8> {
    let block = (usize::from(plain.first().copied().unwrap_or(0)) + 1) * 1024;
    let mut out = b"\xff\x06\x00\x00S2sTwO".to_vec();
    for data in plain.chunks(block) {
        let compressed = minlz::s2::encode(data);
        let (kind, body) = if compressed.len() < data.len() {
            (0x00, compressed.as_slice())
        } else {
            (0x01, data)
        };
        let len = body.len() + 4;
        out.extend_from_slice(&[kind, len as u8, (len >> 8) as u8, (len >> 16) as u8]);
        out.extend_from_slice(&minlz::crc::crc(data).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// The machine's restore of `backup`, in chunks of `piece`: the outcome
/// and the restored stream's info (or the info request's error).
fn restore(backup: &[u8], piece: usize, messages: usize) -> (serde_json::Value, serde_json::Value) {
    let mut accounts = BTreeMap::new();
    accounts.insert("A".to_string(), AccountLimits::default());
    let config = JetStreamConfig::with_bounds("", 1 << 26, 1 << 26);
    let disk = SharedDisk::new(MemDisk::new());
    let mut js = JetStream::open(
        "fuzz".into(),
        config,
        accounts,
        disk.clone(),
        Instant::ZERO,
        WallTime(1),
    );
    let mut clock = 1_000_000u64;
    let mut send =
        |js: &mut JetStream<SharedDisk<MemDisk>>, subject: &str, reply: &str, payload: &[u8]| {
            clock += 1_000_000;
            js.handle_inbound(
                Instant::from_nanos(clock),
                WallTime(clock),
                JsInbound {
                    account: "A".into(),
                    target: if subject.starts_with("$JS.API") {
                        JsTarget::Api
                    } else {
                        JsTarget::Snapshot(1)
                    },
                    subject: Bytes::copy_from_slice(subject.as_bytes()),
                    reply: Bytes::copy_from_slice(reply.as_bytes()),
                    headers: Bytes::new(),
                    payload: Bytes::copy_from_slice(payload),
                    context: Bytes::new(),
                },
            );
            replies(js)
        };
    let body = br#"{"config":{"name":"R","subjects":["r.>"]},"state":{}}"#;
    let reply = send(&mut js, "$JS.API.STREAM.RESTORE.R", "_INBOX.api", body);
    let reply: serde_json::Value =
        serde_json::from_slice(&reply["_INBOX.api"][0]).expect("JSON reply");
    let deliver = reply["deliver_subject"]
        .as_str()
        .expect("a deliver subject")
        .to_string();
    let mut outcome = None;
    for chunk in backup.chunks(piece) {
        let answers = send(&mut js, &deliver, "_INBOX.chunk", chunk);
        let answer = &answers["_INBOX.chunk"];
        assert_eq!(answer.len(), 1, "every chunk is answered once");
        if !answer[0].is_empty() {
            outcome = Some(answer[0].clone());
            break;
        }
    }
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => {
            let answers = send(&mut js, &deliver, "_INBOX.end", b"");
            assert_eq!(answers["_INBOX.end"].len(), 1, "the end is answered once");
            answers["_INBOX.end"][0].clone()
        }
    };
    let outcome: serde_json::Value = serde_json::from_slice(&outcome).expect("JSON outcome");
    assert_eq!(
        outcome["type"],
        "io.nats.jetstream.api.v1.stream_create_response"
    );
    let info = send(&mut js, "$JS.API.STREAM.INFO.R", "_INBOX.api", b"");
    let info: serde_json::Value = serde_json::from_slice(&info["_INBOX.api"][0]).expect("JSON");
    if outcome.get("error").is_some() {
        assert_eq!(
            info["error"]["err_code"], 10059,
            "a failed restore leaves no stream"
        );
        let mut disk = disk;
        let definitions = disk.list("streams").unwrap_or_default();
        assert!(
            definitions.iter().all(|name| !name.ends_with(".meta")),
            "no definition left: {definitions:?}"
        );
    } else {
        assert!(info.get("error").is_none(), "{info}");
        assert_eq!(info["config"]["name"], "R");
        let held = info["state"]["messages"].as_u64().expect("a count");
        assert!(held <= messages as u64, "{held} > {messages}");
    }
    (outcome, info)
}

/// The machine's replies to client inboxes, by subject.
fn replies(js: &mut JetStream<SharedDisk<MemDisk>>) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    while let Some(action) = js.poll_action() {
        if let JsAction::Publish {
            subject, payload, ..
        } = action
        {
            if subject.starts_with(b"_INBOX.") {
                let subject = String::from_utf8_lossy(&subject).into_owned();
                out.entry(subject).or_default().push(payload.to_vec());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup as a client sends it restores whole: gaps, the trailing
    /// deleted sequence, headers, the consumer.
    #[test]
    fn a_backup_restores_with_its_gaps_and_consumer() {
        let mut writer = ArchiveWriter::new();
        let state = br#"{"messages":3,"bytes":90,"first_seq":2,"last_seq":9,"consumer_count":1}"#;
        writer.entry(b"state.json", 5, 0, b"", state);
        let consumer = br#"{"config":{"durable_name":"C","name":"C","ack_policy":"explicit","deliver_policy":"all","replay_policy":"instant"},"state":{"delivered":{"consumer_seq":2,"stream_seq":3},"ack_floor":{"consumer_seq":1,"stream_seq":2},"pending":{"3":{"Sequence":2,"Timestamp":5}}}}"#;
        writer.entry(b"consumers/C", 5, 0, b"", consumer);
        writer.entry(b"r.a", 10, 2, b"", b"one");
        writer.entry(b"r.b", 11, 3, b"NATS/1.0\r\nA: b\r\n\r\n", b"two");
        writer.entry(b"r.c", 12, 5, b"NATS/1.0\r\nNats-TTL: 1h\r\n\r\n", b"ttl");
        writer.entry(b"r.d", 13, 7, b"", b"four");
        writer.finish();
        let backup = writer.take(usize::MAX);
        let (outcome, info) = restore(&backup, 100, 4);
        assert!(outcome.get("error").is_none(), "{outcome}");
        let state = &info["state"];
        assert_eq!(state["messages"], 4, "{info}");
        assert_eq!(state["first_seq"], 2);
        assert_eq!(state["last_seq"], 9);
        assert_eq!(state["num_deleted"], 4, "4, 6, 8 and the trailing 9");
        assert_eq!(state["last_ts"], "1970-01-01T00:00:00.007Z");
        assert_eq!(state["consumer_count"], 1);
    }

    /// Backups nats-server made (S2-framed; file and memory streams,
    /// `core/src/jetstream/testdata/`) restore through the machine with
    /// their gaps and consumer; the same archive framed by this target
    /// reads alike; damaged, each is refused and leaves nothing.
    #[test]
    fn the_reference_backups_restore() {
        for backup in [
            &include_bytes!("../../core/src/jetstream/testdata/nats-server-file-stream.backup")[..],
            &include_bytes!("../../core/src/jetstream/testdata/nats-server-memory-stream.backup")[..],
        ] {
            for piece in [64, 4096] {
                let (outcome, info) = restore(backup, piece, 9);
                assert!(outcome.get("error").is_none(), "{outcome}");
                let state = &info["state"];
                assert_eq!(state["messages"], 9, "{info}");
                assert_eq!(state["first_seq"], 1);
                assert_eq!(state["last_seq"], 12);
                assert_eq!(state["num_deleted"], 3, "2, 5 and the trailing 12");
                assert_eq!(state["consumer_count"], 1);
            }
            let (entries, error) = read(backup, backup.len());
            assert_eq!(error, None);
            let snappy = write_again(&entries[..entries.len() - 1]);
            assert_eq!(read(&snappy, 100).0, entries, "Snappy-framed again");
            let mut damaged = backup.to_vec();
            let at = damaged.len() / 2;
            damaged[at] ^= 1;
            let (outcome, _) = restore(&damaged, 128, 9);
            assert!(outcome.get("error").is_some(), "{outcome}");
        }
    }
}
