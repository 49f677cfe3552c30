//! Fuzz target `raft_recovery`: opening a RAFT node ([`Node::open`]) on
//! arbitrary directory contents on core's in-memory [`MemDisk`].
//!
//! Input: 1 control byte, then parts separated by
//! [`store_recovery::SEPARATOR`](crate::store_recovery::SEPARATOR).
//! Control bit 0: the config says the id is fresh; bit 1: lazy sync; bit 2
//! picks the mode. Raw mode: the parts are the `id`, `tav`, `log` and
//! `snap` files as they are (an empty part: the file is absent). Built
//! mode, to get past the checksums: a valid identity and term/vote file,
//! and a log built from the first part read as records `term step u8 |
//! type u8 | len u8 | data`, with a sync mark after every third; bit 3 then
//! flips the bit the second part's first two bytes name.
//!
//! Invariants checked (beyond no panic / hang / OOM):
//! - opening succeeds or reports a typed [`RecoveryError`];
//! - on success the only actions are a `Restore`, the commit index is the
//!   log's base, and reopening the same disk as a restart (not fresh)
//!   gives the same log, term and vote, or `LazyRestart` for a lazy node;
//! - in built mode every recovered entry is the one built at its index
//!   (damage is never read as a different entry), and without damage the
//!   whole log is recovered.

use bytes::Bytes;
use rnats_core::raft::log::{
    encode_header, encode_mark, encode_record, write_identity, Base, LogEntry, RecoveryError,
};
use rnats_core::raft::node::{Action, Config, Node};
use rnats_core::raft::wire::{Entry, EntryType, PeerId};
use rnats_core::store::disk::{Disk, MemDisk, SharedDisk};
use rnats_core::time::Instant;

use crate::store_recovery::split;

/// The largest input the target reads.
pub const MAX_INPUT: usize = 64 << 10;

const A: PeerId = PeerId(*b"AAAAAAAA");
const B: PeerId = PeerId(*b"BBBBBBBB");
const C: PeerId = PeerId(*b"CCCCCCCC");

fn config(fresh: bool, lazy: bool) -> Config {
    Config {
        fresh,
        lazy_sync: lazy,
        ..Config::new(A, vec![A, B, C], 1)
    }
}

/// The entries and file bytes of a built log.
fn build_log(spec: &[u8]) -> (Vec<LogEntry>, Vec<u8>) {
    let mut file = encode_header(&Base {
        index: 0,
        term: 0,
        voters: vec![A, B, C],
    });
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut at = 0;
    while at + 3 <= spec.len() && entries.len() < 512 {
        let term = entries.last().map_or(1, |e| e.term) + u64::from(spec[at] % 3);
        let kind = EntryType::from_u8(spec[at + 1] % 7).expect("0..7 are types");
        let len = usize::from(spec[at + 2]).min(spec.len() - at - 3);
        let data = Bytes::copy_from_slice(&spec[at + 3..at + 3 + len]);
        // A message of one entry, or (high bit of the type byte) two: the
        // data split between them.
        let message = if spec[at + 1] & 0x80 == 0 {
            vec![Entry::new(kind, data)]
        } else {
            let half = data.len() / 2;
            vec![
                Entry::new(kind, data.slice(..half)),
                Entry::new(EntryType::Normal, data.slice(half..)),
            ]
        };
        at += 3 + len;
        let entry = LogEntry {
            index: entries.len() as u64 + 1,
            term,
            entries: message,
        };
        file.extend_from_slice(&encode_record(&entry));
        if entry.index.is_multiple_of(3) {
            file.extend_from_slice(&encode_mark(entry.index, entry.term));
        }
        entries.push(entry);
    }
    (entries, file)
}

fn put(disk: &SharedDisk<MemDisk>, name: &str, bytes: &[u8]) {
    disk.with(|d| {
        let path = format!("raft/{name}");
        d.write_at(&path, 0, bytes).expect("memory");
        d.sync(&path).expect("memory");
        d.sync_dir("raft").expect("memory");
    });
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_INPUT {
        return;
    }
    let (fresh, lazy, built, damage) = (
        control & 1 != 0,
        control & 2 != 0,
        control & 4 != 0,
        control & 8 != 0,
    );
    let parts = split(rest);
    let disk = SharedDisk::new(MemDisk::default());
    disk.with(|d| d.create_dir("raft")).expect("memory");
    let mut built_entries = None;
    if built {
        disk.with(|d| write_identity(d, "raft", A, false))
            .expect("memory");
        let (entries, mut file) = build_log(parts[0]);
        let flip = parts.get(1).filter(|p| p.len() >= 2);
        let damaged = match flip {
            Some(p) if damage => {
                let bit = usize::from(u16::from_le_bytes([p[0], p[1]])) % (file.len() * 8);
                file[bit / 8] ^= 1 << (bit % 8);
                true
            }
            _ => false,
        };
        put(&disk, "log", &file);
        // A term/vote file as a node that wrote these entries has it.
        let term = entries.last().map_or(0, |e| e.term);
        let mut tav = term.to_le_bytes().to_vec();
        tav.extend_from_slice(&[0; 8]);
        let crc = crc32fast::hash(&tav);
        tav.extend_from_slice(&crc.to_le_bytes());
        put(&disk, "tav", &tav);
        built_entries = Some((entries, damaged));
    } else {
        for (part, name) in parts.iter().zip(["id", "tav", "log", "snap"]) {
            if !part.is_empty() {
                put(&disk, name, part);
            }
        }
    }
    let mut node = match Node::open(config(fresh, lazy), disk.clone(), "raft", Instant::ZERO) {
        Ok(node) => node,
        Err(error) => {
            if let Some((_, false)) = &built_entries {
                panic!("an undamaged built log was refused: {error}");
            }
            return;
        }
    };
    while let Some(action) = node.poll_action() {
        assert!(
            matches!(action, Action::Restore(_)),
            "at open only a restore: {action:?}"
        );
    }
    let log = node.log();
    let base = log.base().index;
    assert_eq!(
        node.commit_index(),
        base,
        "nothing is known committed past the base"
    );
    let recovered: Vec<LogEntry> = log.slice(1, log.last_index()).to_vec();
    if let Some((entries, damaged)) = &built_entries {
        for entry in &recovered {
            assert_eq!(
                Some(entry),
                entries.get(entry.index as usize - 1),
                "a recovered entry is the one built at its index"
            );
        }
        if !damaged {
            assert_eq!(&recovered, entries, "an undamaged log is recovered whole");
        }
    }
    let (term, vote, last) = (node.term(), node.voted_for(), log.last_index());
    drop(node);
    match Node::open(config(false, lazy), disk, "raft", Instant::ZERO) {
        Ok(again) => {
            assert!(!lazy, "a lazy node's restart is a lost log");
            assert_eq!((again.term(), again.voted_for()), (term, vote));
            assert_eq!(again.log().last_index(), last, "recovery is idempotent");
            let again: Vec<LogEntry> = again.log().slice(1, last).to_vec();
            assert_eq!(again, recovered, "the same entries after a reopen");
        }
        Err(RecoveryError::LazyRestart) if lazy => {}
        Err(error) => panic!("a log that opened once is refused on reopen: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_recovery::SEPARATOR;

    /// Every single bit flip of a built log: never a panic, never a wrong
    /// entry, never a refused reopen.
    #[test]
    fn every_bit_flip_of_a_built_log_is_refused_or_cut_never_misread() {
        let mut spec = Vec::new();
        for i in 0..10u8 {
            spec.extend_from_slice(&[i % 2, i % 7, 3, b'o', b'p', b'0' + i]);
        }
        let bits = build_log(&spec).1.len() * 8;
        for bit in 0..bits {
            for control in [12u8, 14] {
                let mut input = vec![control];
                input.extend_from_slice(&spec);
                input.extend_from_slice(SEPARATOR);
                input.extend_from_slice(&(bit as u16).to_le_bytes());
                run(&input);
            }
        }
    }
}
