//! Fuzz target `store_recovery`: opening a [`FileStore`] on arbitrary
//! directory contents (a `meta` file and a few block files) on core's
//! in-memory [`MemDisk`].
//!
//! Input: 1 control byte, then the files, separated by [`SEPARATOR`]:
//! the first part is `meta` (absent when the part is empty), each further
//! part (at most [`MAX_BLOCKS`]) is a block file whose first byte is its
//! number (`s/00000000NN.blk`; a repeated number overwrites) and whose rest
//! is its content. At most [`MAX_INPUT`] bytes.
//! Control byte: bit 0 rewrites the crc32 of `meta` (when it has `meta`'s
//! length) and of every record reached by the length fields of each block
//! ([`store_record::fix_checksums`]), so the fuzzer gets past the
//! checksums; bits 1-2 give `cache_blocks` (1 to 4); bit 3 picks a small
//! `block_size` (256, so the new message may start a new block) or 1 MiB;
//! bit 4 opens with compression on (`StoreConfig::compress`); bit 5
//! damages the snapshot written after the first open. Sealed
//! (compressed) records are read whatever bit 4 says; scenario 5 of the
//! seeds holds them.
//!
//! Invariants checked (beyond no panic / hang / OOM):
//! - opening succeeds or reports `StoreError::Corrupt`, never another error;
//! - every message the store says it has (walking `load_next` from
//!   `first_seq`) loads, equal through `load_msg`, within
//!   `first_seq..=last_seq`; their count and summed size are `state()`'s;
//! - every served message re-encodes to a checksum-valid record found
//!   verbatim in one of the block files given (a valid payload, never one
//!   that was not in the input);
//! - `last_seq >= ` every sequence named by a checksum-valid message record
//!   at the start of a block file, i.e. at least every loaded one (unless
//!   it is above `SEQ_MAX`: recovery refuses such a record as corrupt);
//! - reopening the disk the first open left gives the same `state()` and the
//!   same messages (recovery is deterministic and idempotent), and reports
//!   no cut tail (the first open cut them);
//! - the full-state snapshot written after the first open reopens the
//!   store with the same `state()` and messages, used as it is; with one
//!   bit flipped it is refused (never used) and the blocks give the same;
//! - storing a new message (after settling the syncs) gets
//!   `last_seq + 1`, above every recovered sequence, and a third open finds
//!   it (the snapshot, now describing a prefix, is used for that prefix
//!   or refused), with `last_seq` equal to it. (A recovered `last_seq` of `SEQ_MAX`
//!   has no successor: storing must be refused with `InvalidSequence`.)

use std::time::Duration;

use rnats_core::store::{
    perform_sync, Disk, FileStore, MemDisk, SnapshotUse, StoreAction, StoreConfig, StoreError,
    StoredMsg, SEQ_MAX,
};
use rnats_core::time::WallTime;

use crate::store_record::{self, file_config, served_messages, DIR};

/// Separates the files of one input.
pub const SEPARATOR: &[u8] = b"\n#F#\n";
/// The most block files one input makes.
pub const MAX_BLOCKS: usize = 6;
/// The largest input run (bounds recovery's work per input).
pub const MAX_INPUT: usize = 32 << 10;

/// The files of an input: `meta` (if any), then `(number, bytes)` blocks.
pub struct Files {
    pub meta: Option<Vec<u8>>,
    pub blocks: Vec<(u64, Vec<u8>)>,
}

/// The parts of `data` between [`SEPARATOR`]s.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at + SEPARATOR.len() <= data.len() {
        if &data[at..at + SEPARATOR.len()] == SEPARATOR {
            parts.push(&data[start..at]);
            at += SEPARATOR.len();
            start = at;
        } else {
            at += 1;
        }
    }
    parts.push(&data[start..]);
    parts
}

/// Decode the files of an input (after the control byte).
pub fn decode_files(data: &[u8], fix: bool) -> Files {
    let parts = split(data);
    let mut meta = (!parts[0].is_empty()).then(|| parts[0].to_vec());
    if fix {
        if let Some(meta) = meta.as_mut().filter(|meta| meta.len() == 36) {
            let crc = crc32fast::hash(&meta[..32]);
            meta[32..].copy_from_slice(&crc.to_le_bytes());
        }
    }
    // A repeated number replaces the earlier part, as writing it would.
    let blocks: std::collections::BTreeMap<u64, Vec<u8>> = parts[1..]
        .iter()
        .filter_map(|part| part.split_first())
        .take(MAX_BLOCKS)
        .map(|(&number, content)| {
            let mut content = content.to_vec();
            if fix {
                store_record::fix_checksums(&mut content);
            }
            (u64::from(number), content)
        })
        .collect();
    let blocks = blocks.into_iter().collect();
    Files { meta, blocks }
}

/// Encode files into an input (for seeds).
pub fn encode_files(control: u8, meta: Option<&[u8]>, blocks: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![control];
    out.extend_from_slice(meta.unwrap_or_default());
    for (number, content) in blocks {
        out.extend_from_slice(SEPARATOR);
        out.push(*number);
        out.extend_from_slice(content);
    }
    out
}

/// Carry out every sync the store asks for.
fn settle(store: &mut FileStore<MemDisk>) {
    while let Some(action) = store.poll_action() {
        if let StoreAction::Sync { tag, files, dirs } = action {
            let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
            store.handle_sync_done(tag, result);
        }
    }
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_INPUT {
        return;
    }
    let files = decode_files(rest, control & 1 == 1);
    let cache_blocks = usize::from((control >> 1) & 3) + 1;
    let block_size = if control & 8 == 8 { 256 } else { 1 << 20 };
    let config = file_config(cache_blocks, block_size);
    let store_config = StoreConfig {
        compress: control & 16 == 16,
        ..StoreConfig::default()
    };

    let mut disk = MemDisk::new();
    if let Some(meta) = &files.meta {
        disk.write_at(&format!("{DIR}/meta"), 0, meta)
            .expect("MemDisk writes");
    }
    for (number, content) in &files.blocks {
        let path = format!("{DIR}/{number:010}.blk");
        disk.write_at(&path, 0, content).expect("MemDisk writes");
    }
    disk.sync_everything();

    let open = |disk: MemDisk| match FileStore::open_on(disk, config.clone(), store_config.clone())
    {
        Ok(store) => Some(store),
        Err(StoreError::Corrupt(_)) => None,
        Err(error) => panic!("open failed with {error:?}"),
    };

    let Some(mut store) = open(disk) else {
        return;
    };
    let state = store.state();
    let msgs = served_messages(&mut store);

    // Every served message is a valid record of one of the given blocks.
    for msg in &msgs {
        assert!(
            files
                .blocks
                .iter()
                .any(|(_, content)| store_record::record_of(content, msg, 0).is_some()),
            "message {} served but its record is in no block given",
            msg.seq
        );
    }
    // last_seq covers every message record that starts a block.
    for (_, content) in &files.blocks {
        if let Some(record) = store_record::ref_decode(content) {
            let message = record.kind == store_record::MESSAGE
                || (record.kind == store_record::SEALED
                    && store_record::ref_message(&record).is_some());
            if message && record.seq <= SEQ_MAX {
                assert!(
                    state.last_seq >= record.seq,
                    "last_seq {} below the recorded message {}",
                    state.last_seq,
                    record.seq
                );
            }
        }
    }
    settle(&mut store);

    // Reopening what the first open left gives the same store.
    let disk = store.backend().disk().clone();
    let mut again = open(disk).expect("a store that opened once reopens");
    assert_eq!(again.state(), state, "reopen changed state()");
    assert_eq!(again.backend().recovery().tails_cut, 0, "reopen cut a tail");
    let msgs_again: Vec<StoredMsg> = served_messages(&mut again);
    assert_eq!(msgs_again, msgs, "reopen changed the messages");
    drop(again);

    // The full-state snapshot of what recovery found opens the same store
    // without reading the blocks; damaged (one flipped bit where the input
    // says), it is refused and the blocks give the same store.
    store
        .write_snapshot()
        .expect("a recovered store writes its snapshot");
    let mut disk = store.backend().disk().clone();
    let damage = control & 32 == 32;
    if damage {
        let bytes = disk
            .bytes_mut(&format!("{DIR}/snapshot"))
            .expect("the snapshot was written");
        let at = data.iter().map(|&byte| usize::from(byte)).sum::<usize>() % bytes.len();
        bytes[at] ^= 1 << (data.len() % 8);
    }
    let mut snapped = open(disk).expect("a store with a snapshot reopens");
    let used = snapped.backend().recovery().snapshot == SnapshotUse::Used;
    assert_eq!(used, !damage, "{:?}", snapped.backend().recovery().snapshot);
    assert_eq!(snapped.state(), state, "the snapshot changed state()");
    assert_eq!(
        served_messages(&mut snapped),
        msgs,
        "the snapshot changed the messages"
    );
    drop(snapped);

    // A new message goes above everything recovered.
    assert!(state.last_seq <= SEQ_MAX, "last_seq above SEQ_MAX");
    let ts = WallTime(state.last_ts.0.saturating_add(1));
    if state.last_seq == SEQ_MAX {
        let refused = store.store_msg(b"fuzz.new", b"", b"new", ts, None::<Duration>);
        assert_eq!(refused, Err(StoreError::InvalidSequence), "past SEQ_MAX");
        return;
    }
    match store.store_msg(b"fuzz.new", b"", b"new", ts, None::<Duration>) {
        Ok(seq) => {
            assert_eq!(seq, state.last_seq + 1, "new message sequence");
            settle(&mut store);
            let disk = store.into_backend().into_disk();
            let mut plain = disk.clone();
            if plain
                .len(&format!("{DIR}/snapshot"))
                .expect("MemDisk")
                .is_some()
            {
                plain.remove(&format!("{DIR}/snapshot")).expect("MemDisk");
            }
            let mut third = open(disk).expect("a store written to reopens");
            assert_eq!(third.state().last_seq, seq, "the new message's sequence");
            let msg = third.load_msg(seq).expect("the new message loads");
            assert_eq!(&msg.payload[..], b"new", "the new message's payload");
            // With or without the snapshot: the same store.
            let mut without = open(plain).expect("reopens without the snapshot");
            assert_eq!(
                third.state(),
                without.state(),
                "snapshot vs blocks: state()"
            );
            assert_eq!(
                served_messages(&mut third),
                served_messages(&mut without),
                "snapshot vs blocks: messages"
            );
        }
        Err(error) => panic!("storing after recovery failed: {error:?}"),
    }
}

/// The files of a store the real [`FileStore`] wrote: `meta`, then the
/// blocks by number. `scenario` picks what was done to it.
pub fn real_store_files(scenario: u8) -> Files {
    let block_size = if scenario.is_multiple_of(2) {
        256
    } else {
        1 << 20
    };
    // Scenario 5: compression on, payloads it shrinks (sealed records).
    let compress = scenario == 5;
    let config = StoreConfig {
        compress,
        ..StoreConfig::default()
    };
    let mut store = FileStore::open_on(MemDisk::new(), file_config(2, block_size), config)
        .expect("a fresh store opens");
    let mut ts = 1_000_000_000;
    let payload = if compress {
        b"hello ".repeat(12)
    } else {
        b"hello".to_vec()
    };
    let mut put = |store: &mut FileStore<MemDisk>, subject: &[u8], headers: &[u8], ttl| {
        ts += 1_000;
        store
            .store_msg(subject, headers, &payload, WallTime(ts), ttl)
            .expect("stores")
    };
    match scenario {
        5 => {
            for n in 0..5 {
                let subject = format!("orders.{n}");
                put(&mut store, subject.as_bytes(), b"", None);
            }
            store.remove_msg(2).expect("removes");
        }
        0 | 1 => {
            for n in 0..6 {
                let subject = format!("orders.{n}");
                put(&mut store, subject.as_bytes(), b"", None);
            }
        }
        2 => {
            put(&mut store, b"a", b"NATS/1.0\r\nK: v\r\n\r\n", None);
            put(&mut store, b"b", b"", Some(Duration::from_secs(60)));
            put(&mut store, b"c", b"", None);
            store.remove_msg(2).expect("removes");
            store.erase_msg(1).expect("erases");
            put(&mut store, b"d", b"", None);
        }
        3 => {
            for _ in 0..4 {
                put(&mut store, b"x.y", b"", None);
            }
            store.compact(3).expect("compacts");
            store
                .skip_msgs(5, 2000, WallTime(2_000_000_000))
                .expect("skips");
            put(&mut store, b"x.z", b"", None);
        }
        _ => {
            for _ in 0..3 {
                put(&mut store, b"p", b"", None);
            }
            store.purge().expect("purges");
            put(&mut store, b"q", b"", None);
        }
    }
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    let meta = disk.read_all(&format!("{DIR}/meta")).expect("reads");
    let mut blocks = Vec::new();
    for name in disk.list(DIR).expect("lists") {
        if let Some(digits) = name.strip_suffix(".blk") {
            let number = digits.parse().expect("a block number");
            let content = disk
                .read_all(&format!("{DIR}/{name}"))
                .expect("reads")
                .expect("listed");
            blocks.push((number, content));
        }
    }
    blocks.sort();
    Files { meta, blocks }
}

/// The seed corpora: `(target, file name, input)`, from stores the real
/// FileStore wrote (`cargo test -p rnats-fuzz-targets -- --ignored
/// write_store_seeds` writes them into `fuzz/corpus/`).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for scenario in 0..6u8 {
        let Files { meta, blocks } = real_store_files(scenario);
        for (index, (_, content)) in blocks.iter().enumerate().take(2) {
            let mut input = vec![scenario & 1];
            input.extend_from_slice(content);
            seeds.push((
                "store_scan",
                format!("seed-s{scenario}-b{index}"),
                input.clone(),
            ));
            seeds.push(("store_record", format!("seed-s{scenario}-b{index}"), input));
        }
        let numbered: Vec<(u8, &[u8])> = blocks
            .iter()
            .map(|(number, content)| (*number as u8, content.as_slice()))
            .collect();
        let control = ((scenario << 1) & 0b1110) | if scenario == 5 { 16 } else { 0 };
        seeds.push((
            "store_recovery",
            format!("seed-s{scenario}"),
            encode_files(control, meta.as_deref(), &numbered),
        ));
        if scenario == 2 {
            // The same store, its snapshot damaged after the first open.
            seeds.push((
                "store_recovery",
                "seed-s2-damaged-snapshot".to_string(),
                encode_files(control | 32, meta.as_deref(), &numbered),
            ));
        }
        if scenario == 0 {
            // The same store with meta lost and its last block torn.
            let mut torn = numbered.clone();
            let last = torn.len() - 1;
            let cut = torn[last].1.len() - 3;
            torn[last].1 = &torn[last].1[..cut];
            seeds.push((
                "store_recovery",
                "seed-s0-torn-no-meta".to_string(),
                encode_files(control, None, &torn),
            ));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_their_targets() {
        let seeds = seeds();
        assert!(seeds.len() >= 10);
        for (target, name, input) in seeds {
            let run = crate::TARGETS
                .iter()
                .find(|(candidate, _)| *candidate == target)
                .expect("a registered target")
                .1;
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{target}/{name} fails");
        }
    }

    #[test]
    fn seed_blocks_are_clean_runs_of_records() {
        for scenario in 0..6 {
            let blocks = real_store_files(scenario).blocks;
            assert!(!blocks.is_empty());
            for (_, content) in blocks {
                assert!(store_record::clean_records(&content).is_some());
            }
        }
    }

    /// Store finding 4 (fixed): a tombstone for 2 survives while the
    /// records that named 2 are damaged; recovery now counts the tombstone,
    /// so the last sequence is 2 and a new message gets 3.
    #[test]
    fn a_tombstone_above_the_messages_keeps_its_sequence() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/store_recovery/tombstone-above-last");
        let data = std::fs::read(path).expect("the reproducer");
        let files = decode_files(&data[1..], data[0] & 1 == 1);
        let mut disk = MemDisk::new();
        for (number, content) in &files.blocks {
            disk.write_at(&format!("{DIR}/{number:010}.blk"), 0, content)
                .expect("writes");
        }
        if let Some(meta) = &files.meta {
            disk.write_at(&format!("{DIR}/meta"), 0, meta)
                .expect("writes");
        }
        let store = FileStore::open_on(disk, file_config(1, 1 << 20), StoreConfig::default())
            .expect("opens");
        assert_eq!(store.state().last_seq, 2);
        run(&data);
    }

    #[test]
    #[ignore = "writes fuzz/corpus/store_*; run by hand after a format change"]
    fn write_store_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, name, input) in seeds() {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(name), input).expect("write seed");
        }
    }
}
