//! Store tests: MemStore semantics (the reference's memstore behaviour),
//! FileStore against the same expectations, durability ordering, recovery
//! from each class of damage, and a property test of FileStore (with crashes)
//! against MemStore as the model.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::time::WallTime;

fn ts(n: u64) -> WallTime {
    WallTime(n * 1_000_000_000)
}

fn put<B: Backend>(store: &mut Engine<B>, subject: &str, payload: &str, at: u64) -> u64 {
    store
        .store_msg(subject.as_bytes(), b"", payload.as_bytes(), ts(at), None)
        .unwrap()
}

fn file_config(block_size: u64) -> FileStoreConfig {
    FileStoreConfig {
        dir: "s".to_string(),
        block_size,
        cache_blocks: 2,
        sync: SyncPolicy::BeforeAck,
        ..FileStoreConfig::default()
    }
}

/// A test ring: `key` now, `prev` before.
fn ring(key: &str, prev: Option<&str>) -> KeyRing {
    KeyRing::new(
        CipherKind::ChaCha20Poly1305,
        key.as_bytes(),
        prev.map(str::as_bytes),
    )
}

fn keyed_config(block_size: u64, encryption: Option<KeyRing>) -> FileStoreConfig {
    FileStoreConfig {
        encryption,
        seed: 42,
        ..file_config(block_size)
    }
}

fn open_file(disk: MemDisk, block_size: u64, config: StoreConfig) -> FileStore<MemDisk> {
    FileStore::open_on(disk, file_config(block_size), config).unwrap()
}

/// Carry out every sync at once; return the other actions.
fn settle<D: Disk>(store: &mut FileStore<D>) -> Vec<StoreAction> {
    let mut other = Vec::new();
    while let Some(action) = store.poll_action() {
        match action {
            StoreAction::Sync { tag, files, dirs } => {
                let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
                store.handle_sync_done(tag, result);
            }
            action => other.push(action),
        }
    }
    other
}

/// Both stores, so each semantic test runs on each.
fn both(config: StoreConfig, test: impl Fn(&mut dyn FnMut() -> Box<dyn StoreUnderTest>)) {
    let mem_config = config.clone();
    test(&mut || Box::new(MemStore::new(mem_config.clone())));
    let file_config = config;
    test(&mut || Box::new(open_file(MemDisk::new(), 256, file_config.clone())));
}

/// The calls the semantic tests make, object-safe for `both`.
trait StoreUnderTest {
    fn put(&mut self, subject: &str, payload: &str, at: u64) -> StoreResult<u64>;
    fn put_ttl(&mut self, subject: &str, at: u64, ttl: Duration) -> StoreResult<u64>;
    fn inner_state(&self) -> StoreState;
    fn load(&mut self, seq: u64) -> StoreResult<StoredMsg>;
    fn next(&mut self, filter: &Filter, start: u64) -> StoreResult<StoredMsg>;
    fn last(&mut self, filter: &Filter) -> StoreResult<StoredMsg>;
    fn remove(&mut self, seq: u64) -> StoreResult<bool>;
    fn erase(&mut self, seq: u64) -> StoreResult<bool>;
    fn purge_all(&mut self) -> StoreResult<u64>;
    fn purge_filtered(&mut self, filter: &Filter, seq: u64, keep: u64) -> StoreResult<u64>;
    fn compact_to(&mut self, seq: u64) -> StoreResult<u64>;
    fn truncate_to(&mut self, seq: u64) -> StoreResult<()>;
    fn skip(&mut self, at: u64) -> StoreResult<u64>;
    fn expire_at(&mut self, at: WallTime) -> StoreResult<u64>;
    fn expire_reporting(&mut self, at: WallTime) -> StoreResult<Expired>;
    fn put_full(
        &mut self,
        subject: &str,
        headers: &[u8],
        at: u64,
        ttl: Option<Duration>,
    ) -> StoreResult<u64>;
    fn expiry_next(&self) -> Option<WallTime>;
    fn deleted_list(&mut self) -> Vec<u64>;
    fn subjects(&self, filter: &Filter) -> Vec<(String, SubjectState)>;
}

impl<B: Backend> StoreUnderTest for Engine<B> {
    fn put(&mut self, subject: &str, payload: &str, at: u64) -> StoreResult<u64> {
        self.store_msg(subject.as_bytes(), b"", payload.as_bytes(), ts(at), None)
    }
    fn put_ttl(&mut self, subject: &str, at: u64, ttl: Duration) -> StoreResult<u64> {
        self.store_msg(subject.as_bytes(), b"", b"x", ts(at), Some(ttl))
    }
    fn inner_state(&self) -> StoreState {
        self.state()
    }
    fn load(&mut self, seq: u64) -> StoreResult<StoredMsg> {
        self.load_msg(seq)
    }
    fn next(&mut self, filter: &Filter, start: u64) -> StoreResult<StoredMsg> {
        self.load_next(filter, start)
    }
    fn last(&mut self, filter: &Filter) -> StoreResult<StoredMsg> {
        self.load_last(filter)
    }
    fn remove(&mut self, seq: u64) -> StoreResult<bool> {
        self.remove_msg(seq)
    }
    fn erase(&mut self, seq: u64) -> StoreResult<bool> {
        self.erase_msg(seq)
    }
    fn purge_all(&mut self) -> StoreResult<u64> {
        self.purge()
    }
    fn purge_filtered(&mut self, filter: &Filter, seq: u64, keep: u64) -> StoreResult<u64> {
        self.purge_ex(filter, seq, keep)
    }
    fn compact_to(&mut self, seq: u64) -> StoreResult<u64> {
        self.compact(seq)
    }
    fn truncate_to(&mut self, seq: u64) -> StoreResult<()> {
        self.truncate(seq)
    }
    fn skip(&mut self, at: u64) -> StoreResult<u64> {
        self.skip_msg(ts(at))
    }
    fn expire_reporting(&mut self, at: WallTime) -> StoreResult<Expired> {
        self.expire_report(at)
    }
    fn put_full(
        &mut self,
        subject: &str,
        headers: &[u8],
        at: u64,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        self.store_msg(subject.as_bytes(), headers, b"x", ts(at), ttl)
    }
    fn expiry_next(&self) -> Option<WallTime> {
        self.next_expiry()
    }
    fn expire_at(&mut self, at: WallTime) -> StoreResult<u64> {
        self.expire(at)
    }
    fn deleted_list(&mut self) -> Vec<u64> {
        self.deleted().collect()
    }
    fn subjects(&self, filter: &Filter) -> Vec<(String, SubjectState)> {
        self.subjects_state(filter)
            .into_iter()
            .map(|(subject, state)| (String::from_utf8_lossy(&subject).into_owned(), state))
            .collect()
    }
}

fn payload_of(msg: &StoredMsg) -> &[u8] {
    &msg.payload
}

#[test]
fn store_and_load_by_sequence() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        assert_eq!(store.put("foo", "a", 1).unwrap(), 1);
        assert_eq!(store.put("bar", "bb", 2).unwrap(), 2);
        let msg = store.load(2).unwrap();
        assert_eq!(
            (msg.seq, &msg.subject[..], payload_of(&msg)),
            (2, &b"bar"[..], &b"bb"[..])
        );
        assert_eq!(msg.ts, ts(2));
        assert_eq!(store.load(3), Err(StoreError::Eof));
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (2, 1, 2));
        assert_eq!(
            state.bytes,
            msg_size(b"foo", b"", b"a") + msg_size(b"bar", b"", b"bb")
        );
        assert_eq!((state.first_ts, state.last_ts), (ts(1), ts(2)));
        assert_eq!(state.num_subjects, 2);
    });
}

#[test]
fn remove_moves_first_and_counts_deleted() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        for i in 1..=5 {
            store.put("foo", "x", i).unwrap();
        }
        assert!(store.remove(1).unwrap());
        assert!(!store.remove(1).unwrap());
        assert!(store.remove(3).unwrap());
        assert_eq!(store.load(3), Err(StoreError::NotFound));
        assert_eq!(store.load(1), Err(StoreError::NotFound));
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq, state.first_ts), (3, 2, ts(2)));
        assert_eq!(state.num_deleted, 1);
        assert_eq!(store.deleted_list(), vec![3]);
        assert!(store.erase(5).unwrap());
        assert_eq!(store.load(5), Err(StoreError::NotFound));
        assert_eq!(
            store.subjects(&Filter::All)[0].1,
            SubjectState {
                msgs: 2,
                first_seq: 2,
                last_seq: 4
            }
        );
    });
}

#[test]
fn load_next_and_last_with_filters() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        store.put("a.1", "1", 1).unwrap();
        store.put("b.1", "2", 1).unwrap();
        store.put("a.2", "3", 1).unwrap();
        store.put("c", "4", 1).unwrap();
        assert_eq!(store.next(&Filter::subject(b"a.*"), 2).unwrap().seq, 3);
        assert_eq!(store.next(&Filter::subject(b"b.1"), 1).unwrap().seq, 2);
        assert_eq!(
            store.next(&Filter::subject(b"b.1"), 3),
            Err(StoreError::Eof)
        );
        assert_eq!(store.next(&Filter::All, 0).unwrap().seq, 1);
        let multi = Filter::Subjects(vec![Bytes::from_static(b"c"), Bytes::from_static(b"b.>")]);
        assert_eq!(store.next(&multi, 1).unwrap().seq, 2);
        assert_eq!(store.next(&multi, 3).unwrap().seq, 4);
        assert_eq!(store.last(&Filter::subject(b"a.>")).unwrap().seq, 3);
        assert_eq!(store.last(&Filter::All).unwrap().seq, 4);
        assert_eq!(
            store.last(&Filter::subject(b"zz")),
            Err(StoreError::NotFound)
        );
        store.remove(3).unwrap();
        assert_eq!(store.last(&Filter::subject(b"a.*")).unwrap().seq, 1);
    });
}

#[test]
fn filtered_loads_with_many_subjects() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        for i in 0..600u64 {
            store
                .put(&format!("kv.k{}", i % 300), &i.to_string(), i)
                .unwrap();
        }
        store.put("other", "x", 700).unwrap();
        let wildcard = Filter::subject(b"kv.*");
        assert_eq!(store.next(&wildcard, 1).unwrap().seq, 1);
        assert_eq!(store.next(&wildcard, 600).unwrap().seq, 600);
        assert_eq!(store.next(&wildcard, 601), Err(StoreError::Eof));
        let literals = Filter::Subjects(vec![
            Bytes::from_static(b"kv.k7"),
            Bytes::from_static(b"other"),
        ]);
        assert_eq!(store.next(&literals, 9).unwrap().seq, 308);
        assert_eq!(store.next(&literals, 309).unwrap().seq, 601);
        assert_eq!(store.last(&wildcard).unwrap().seq, 600);
        assert_eq!(store.last(&Filter::subject(b"kv.k0")).unwrap().seq, 301);
    });
}

#[test]
fn purge_compact_truncate() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        for i in 1..=10 {
            store
                .put(if i % 2 == 0 { "even" } else { "odd" }, "x", i)
                .unwrap();
        }
        assert_eq!(
            store
                .purge_filtered(&Filter::subject(b"even"), 0, 2)
                .unwrap(),
            3
        );
        assert_eq!(store.subjects(&Filter::subject(b"even"))[0].1.first_seq, 8);
        assert_eq!(
            store
                .purge_filtered(&Filter::subject(b"odd"), 5, 0)
                .unwrap(),
            2
        );
        assert_eq!(store.compact_to(6).unwrap(), 1);
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq), (4, 7));
        store.truncate_to(8).unwrap();
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (2, 7, 8));
        assert_eq!(store.put("odd", "y", 20).unwrap(), 9);
        assert_eq!(store.purge_all().unwrap(), 3);
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (0, 10, 9));
        assert_eq!(store.put("odd", "y", 21).unwrap(), 10);
        assert_eq!(store.compact_to(20).unwrap(), 1);
        let state = store.inner_state();
        assert_eq!((state.first_seq, state.last_seq), (20, 19));
    });
}

#[test]
fn skipped_sequences_are_never_reused() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        assert_eq!(store.skip(1).unwrap(), 1);
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (0, 2, 1));
        assert_eq!(store.put("a", "x", 2).unwrap(), 2);
        assert_eq!(store.skip(3).unwrap(), 3);
        assert_eq!(store.put("a", "x", 4).unwrap(), 4);
        assert_eq!(store.deleted_list(), vec![3]);
    });
}

#[test]
fn limits_discard_old() {
    let config = StoreConfig {
        max_msgs: Some(3),
        max_msgs_per_subject: Some(2),
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        for i in 1..=3 {
            store.put("a", "x", i).unwrap();
        }
        assert_eq!(
            store.inner_state().first_seq,
            2,
            "per-subject limit dropped seq 1"
        );
        store.put("b", "x", 4).unwrap();
        store.put("c", "x", 5).unwrap();
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq), (3, 3));
    });
    let config = StoreConfig {
        max_bytes: Some(msg_size(b"a", b"", b"x") * 2),
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        for i in 1..=5 {
            store.put("a", "x", i).unwrap();
        }
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq), (2, 4));
    });
}

#[test]
fn limits_discard_new() {
    let config = StoreConfig {
        max_msgs: Some(2),
        max_msgs_per_subject: Some(1),
        discard: Discard::New,
        discard_new_per_subject: true,
        max_msg_size: Some(100),
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        store.put("a", "x", 1).unwrap();
        assert_eq!(store.put("a", "x", 2), Err(StoreError::MaxMsgsPerSubject));
        store.put("b", "x", 3).unwrap();
        assert_eq!(store.put("c", "x", 4), Err(StoreError::MaxMsgs));
        assert_eq!(
            store.put("d", &"z".repeat(200), 5),
            Err(StoreError::MsgTooLarge)
        );
        assert_eq!(store.inner_state().last_seq, 2);
    });
}

#[test]
fn max_age_and_ttl_expire() {
    let config = StoreConfig {
        max_age: Some(Duration::from_secs(10)),
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        store.put("a", "x", 1).unwrap();
        store.put("a", "x", 5).unwrap();
        store.put_ttl("b", 6, Duration::from_secs(1)).unwrap();
        assert_eq!(store.expire_at(ts(7)).unwrap(), 1, "ttl of seq 3");
        assert_eq!(store.expire_at(ts(11)).unwrap(), 1, "age of seq 1");
        let state = store.inner_state();
        assert_eq!((state.msgs, state.first_seq), (1, 2));
        assert_eq!(store.expire_at(ts(15)).unwrap(), 1);
        assert_eq!(store.inner_state().msgs, 0);
    });
}

/// `expire_report` names each subject expiry emptied, with the last
/// message's sequence and headers and the cause, in the order they emptied.
#[test]
fn expiry_names_the_subjects_it_empties() {
    let config = StoreConfig {
        max_age: Some(Duration::from_secs(10)),
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        let marker = b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\n\r\n";
        store.put_full("a", b"", 1, None).unwrap();
        store.put_full("a", marker, 2, None).unwrap();
        store.put_full("b", b"", 3, None).unwrap();
        store
            .put_full("c", b"", 4, Some(Duration::from_secs(1)))
            .unwrap();
        store
            .put_full("b", b"", 5, Some(Duration::from_secs(2)))
            .unwrap();
        let expired = store.expire_reporting(ts(6)).unwrap();
        assert_eq!(expired.removed, 1, "c's own TTL; b keeps seq 3");
        let c = SubjectEmptied {
            subject: Bytes::from_static(b"c"),
            seq: 4,
            headers: Bytes::new(),
            cause: ExpiryCause::Ttl,
        };
        assert_eq!(expired.subjects_emptied, vec![c]);
        assert_eq!(store.expiry_next(), Some(ts(7)), "b's TTL");
        let expired = store.expire_reporting(ts(12)).unwrap();
        assert_eq!(expired.removed, 3, "a 1, a 2 by age; b 5 by TTL");
        let a = SubjectEmptied {
            subject: Bytes::from_static(b"a"),
            seq: 2,
            headers: Bytes::from_static(marker),
            cause: ExpiryCause::MaxAge,
        };
        assert_eq!(expired.subjects_emptied, vec![a], "b still has seq 3");
        let expired = store.expire_reporting(ts(13)).unwrap();
        assert_eq!(expired.removed, 1);
        assert_eq!(expired.subjects_emptied[0].subject, &b"b"[..]);
        assert_eq!(expired.subjects_emptied[0].cause, ExpiryCause::MaxAge);
        assert_eq!(store.inner_state().msgs, 0);
        assert_eq!(store.expire_reporting(ts(99)).unwrap(), Expired::default());
    });
}

/// A FileStore keeps each message's TTL in its record: after a restart the
/// deadlines are the same and expiry removes the same messages.
#[test]
fn per_message_ttl_survives_a_restart() {
    let mut store = open_file(MemDisk::new(), 256, StoreConfig::default());
    for (subject, at, ttl) in [
        ("a", 1, Some(5)),
        ("b", 2, Some(2)),
        ("b", 3, None),
        ("c", 4, Some(10)),
    ] {
        store
            .store_msg(
                subject.as_bytes(),
                b"",
                b"x",
                ts(at),
                ttl.map(Duration::from_secs),
            )
            .unwrap();
    }
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    let mut store = open_file(disk, 256, StoreConfig::default());
    assert_eq!(store.next_expiry(), Some(ts(4)), "b's 2 s from 2");
    assert_eq!(store.load_msg(3).unwrap().ttl, None);
    assert_eq!(
        store.load_msg(4).unwrap().ttl,
        Some(Duration::from_secs(10))
    );
    let expired = store.expire_report(ts(6)).unwrap();
    assert_eq!(expired.removed, 2, "b 2 at 4 s, a 1 at 6 s");
    let emptied: Vec<&[u8]> = expired
        .subjects_emptied
        .iter()
        .map(|e| &e.subject[..])
        .collect();
    assert_eq!(emptied, vec![&b"a"[..]]);
    assert_eq!(store.next_expiry(), Some(ts(14)));
    settle(&mut store);
    let mut store = open_file(
        store.into_backend().into_disk(),
        256,
        StoreConfig::default(),
    );
    assert_eq!(
        store.next_expiry(),
        Some(ts(14)),
        "the removals survive too"
    );
    assert_eq!(store.expire(ts(13)).unwrap(), 0);
    assert_eq!(store.expire(ts(14)).unwrap(), 1);
    assert_eq!(store.state().msgs, 1, "b 3 has no TTL");
    assert_eq!(store.next_expiry(), None);
}

#[test]
fn memstore_next_expiry() {
    let mut store = MemStore::new(StoreConfig {
        max_age: Some(Duration::from_secs(10)),
        ..StoreConfig::default()
    });
    assert_eq!(store.next_expiry(), None);
    put(&mut store, "a", "x", 3);
    store
        .store_msg(b"b", b"", b"", ts(4), Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(store.next_expiry(), Some(ts(6)));
}

#[test]
fn reference_edge_semantics() {
    both(StoreConfig::default(), |new| {
        let mut store = new();
        let state = store.inner_state();
        assert_eq!(
            (state.first_seq, state.last_seq),
            (0, 0),
            "a fresh store reports first 0"
        );
        for i in 1..=4 {
            store.put("a", "x", i).unwrap();
        }
        assert_eq!(
            store.purge_filtered(&Filter::subject(b"a"), 1, 0).unwrap(),
            0,
            "below 1 is nothing"
        );
        assert_eq!(
            store.purge_filtered(&Filter::All, 3, 1).unwrap(),
            2,
            "all + seq compacts"
        );
        assert_eq!(store.compact_to(0).unwrap(), 2, "compact 0 purges");
        assert_eq!(store.inner_state().first_seq, 5);
        store.truncate_to(0).unwrap();
        let state = store.inner_state();
        assert_eq!(
            (state.first_seq, state.last_seq),
            (0, 0),
            "truncate 0 resets"
        );
        assert_eq!(store.put("a", "x", 9).unwrap(), 1);
    });
    let size = msg_size(b"a", b"", b"x");
    let config = StoreConfig {
        max_bytes: Some(size * 2),
        max_msgs: Some(2),
        max_msgs_per_subject: Some(1),
        discard: Discard::New,
        ..StoreConfig::default()
    };
    both(config, |new| {
        let mut store = new();
        store.put("a", "x", 1).unwrap();
        assert_eq!(
            store.put("b", "x", 2),
            Err(StoreError::MaxBytes),
            "bytes + size reaching the limit refuses"
        );
        assert_eq!(
            store.put("a", "x", 3).unwrap(),
            2,
            "replacing the subject's oldest is allowed"
        );
        assert_eq!(
            store.put("a", "xx", 4),
            Err(StoreError::MaxBytes),
            "unless the oldest is smaller"
        );
        assert_eq!(store.inner_state().msgs, 1);
    });
}

// ---- FileStore: durability ordering ----

#[test]
fn no_durable_before_the_covering_sync_completes() {
    let mut store = open_file(MemDisk::new(), 1 << 20, StoreConfig::default());
    settle(&mut store);
    put(&mut store, "a", "1", 1);
    put(&mut store, "a", "2", 1);
    let Some(StoreAction::Sync { tag, files, dirs }) = store.poll_action() else {
        panic!("a sync must be asked for");
    };
    assert_eq!(files, vec!["s/0000000001.blk".to_string()]);
    assert_eq!(dirs, vec!["s".to_string()]);
    // Group commit: more messages while the sync is in flight ride the next one.
    put(&mut store, "a", "3", 1);
    assert_eq!(
        store.poll_action(),
        None,
        "nothing durable, one sync in flight"
    );
    let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
    store.handle_sync_done(tag, result);
    assert_eq!(
        store.poll_action(),
        Some(StoreAction::Durable { through: 2 })
    );
    let Some(StoreAction::Sync { tag, files, dirs }) = store.poll_action() else {
        panic!("the third message needs its own sync");
    };
    assert!(dirs.is_empty());
    let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
    store.handle_sync_done(tag, result);
    assert_eq!(
        store.poll_action(),
        Some(StoreAction::Durable { through: 3 })
    );
    assert_eq!(store.poll_action(), None);
}

#[test]
fn a_sync_in_flight_across_a_truncate_covers_nothing_written_after_it() {
    // Found by the power-loss simulation (seed 73): the sync asked for
    // through 4 completed after truncate(2) and two new messages, and
    // reported them durable.
    let mut store = open_file(MemDisk::new(), 1 << 20, StoreConfig::default());
    settle(&mut store);
    for i in 1..=4 {
        put(&mut store, "a", "old", i);
    }
    let Some(StoreAction::Sync { tag, files, dirs }) = store.poll_action() else {
        panic!("a sync must be asked for");
    };
    store.truncate(2).unwrap();
    assert_eq!(put(&mut store, "a", "new", 5), 3);
    assert_eq!(put(&mut store, "a", "new", 6), 4);
    let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
    store.handle_sync_done(tag, result);
    assert_eq!(
        store.poll_action(),
        Some(StoreAction::Durable { through: 2 })
    );
    assert!(matches!(
        store.poll_action(),
        Some(StoreAction::Sync { .. })
    ));
}

#[test]
fn a_failed_sync_poisons_the_store() {
    let mut store = open_file(MemDisk::new(), 1 << 20, StoreConfig::default());
    settle(&mut store);
    put(&mut store, "a", "1", 1);
    let Some(StoreAction::Sync { tag, .. }) = store.poll_action() else {
        panic!("a sync must be asked for");
    };
    store.handle_sync_done(tag, Err(DiskError::Io("s/0000000001.blk".into())));
    assert!(matches!(store.poll_action(), Some(StoreAction::Warning(_))));
    assert_eq!(store.poll_action(), None, "never durable");
    assert_eq!(
        store.store_msg(b"a", b"", b"", ts(1), None),
        Err(StoreError::Failed)
    );
}

#[test]
fn interval_policy_acks_first_and_syncs_on_the_timer() {
    let mut config = file_config(1 << 20);
    config.sync = SyncPolicy::Interval(Duration::from_secs(1));
    let mut store = FileStore::open_on(MemDisk::new(), config, StoreConfig::default()).unwrap();
    put(&mut store, "a", "1", 1);
    assert_eq!(
        store.poll_action(),
        Some(StoreAction::Durable { through: 1 })
    );
    assert_eq!(store.poll_action(), None);
    let start = crate::time::Instant::from_nanos(0);
    store.handle_timeout(start);
    assert_eq!(store.poll_timeout(), Some(start + Duration::from_secs(1)));
    store.handle_timeout(start + Duration::from_secs(1));
    assert!(matches!(
        store.poll_action(),
        Some(StoreAction::Sync { .. })
    ));
}

#[test]
fn deleted_sequences_are_found_lazily_however_many() {
    let config = StoreConfig::default();
    let mut mem = MemStore::new(config.clone());
    let mut file = open_file(MemDisk::new(), 256, config);
    for store in [&mut mem as &mut dyn StoreUnderTest, &mut file] {
        for i in 1..=5 {
            store.put("a", "x", i).unwrap();
        }
        store.remove(2).unwrap();
        store.remove(4).unwrap();
    }
    // A gap of a trillion sequences: listing it whole would not fit in memory.
    mem.skip_msgs(6, 1_000_000_000_000, ts(6)).unwrap();
    file.skip_msgs(6, 1_000_000_000_000, ts(6)).unwrap();
    let after = put(&mut mem, "a", "y", 7);
    assert_eq!(put(&mut file, "a", "y", 7), after);
    assert_eq!(after, 1_000_000_000_006);
    for deleted in [
        mem.deleted().take(5).collect::<Vec<_>>(),
        file.deleted().take(5).collect(),
    ] {
        assert_eq!(deleted, vec![2, 4, 6, 7, 8]);
    }
    // Index 0 and 1 are 2 and 4; the gap starts at index 2 with 6.
    assert_eq!(mem.deleted().nth(1_000), Some(1_004));
    assert_eq!(file.deleted().nth(1_000), Some(1_004));
    assert_eq!(file.state().num_deleted, 1_000_000_000_002);
    // Up to the last sequence, past the last message (as `num_deleted`).
    let mut small = open_file(MemDisk::new(), 256, StoreConfig::default());
    for i in 1..=4 {
        put(&mut small, "a", "x", i);
    }
    small.remove_msg(3).unwrap();
    assert_eq!(small.deleted().collect::<Vec<_>>(), vec![3]);
    small.remove_msg(4).unwrap();
    assert_eq!(small.deleted().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(small.state().num_deleted, 2);
}

// ---- FileStore: recovery ----

fn filled(count: u64, block_size: u64) -> MemDisk {
    let mut store = open_file(MemDisk::new(), block_size, StoreConfig::default());
    for i in 1..=count {
        put(
            &mut store,
            &format!("s.{}", i % 3),
            &format!("payload-{i}"),
            i,
        );
    }
    settle(&mut store);
    store.into_backend().into_disk()
}

fn block_bytes(disk: &mut MemDisk, number: u64) -> &mut Vec<u8> {
    disk.bytes_mut(&format!("s/{number:010}.blk")).unwrap()
}

fn record_len(i: u64) -> usize {
    record::encoded_len(3, 0, format!("payload-{i}").len())
}

#[test]
fn reopen_recovers_everything() {
    let mut disk = filled(50, 300);
    disk.power_loss();
    let mut store = open_file(disk, 300, StoreConfig::default());
    assert_eq!(store.state().msgs, 50);
    for i in 1..=50 {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            format!("payload-{i}").as_bytes()
        );
    }
    assert!(store.backend().block_count() > 5);
    assert!(store.backend().cached_blocks() <= 2, "cache bounded");
    store.backend_mut().drop_cache();
    assert_eq!(store.load_msg(37).unwrap().payload, &b"payload-37"[..]);
    assert_eq!(store.load_msg(12).unwrap().payload, &b"payload-12"[..]);
    assert_eq!(
        store.backend().cached_blocks(),
        0,
        "a random read loads no block"
    );
    assert_eq!(store.load_msg(13).unwrap().payload, &b"payload-13"[..]);
    assert_eq!(
        store.backend().cached_blocks(),
        1,
        "a sequential read loads the block"
    );
    assert_eq!(put(&mut store, "x", "y", 99), 51);
}

#[test]
fn torn_tail_is_cut_and_named() {
    let mut disk = filled(5, 1 << 20);
    let block = block_bytes(&mut disk, 1);
    let tail_offset: usize = (1..=4).map(record_len).sum();
    block.truncate(block.len() - 3);
    disk.sync_everything();
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(report.tails_cut, 1);
    assert!(
        report.warnings[0].contains(&format!(
            "s/0000000001.blk: damaged tail cut at offset {tail_offset}"
        )),
        "{:?}",
        report.warnings
    );
    assert!(report.warnings[0].contains("1 record(s) lost"));
    let state = store.state();
    assert_eq!(state.msgs, 4);
    assert_eq!(
        state.last_seq, 5,
        "the lost record's sequence is not handed out again"
    );
    assert_eq!(put(&mut store, "a", "b", 9), 6);
    assert!(matches!(settle(&mut store)[0], StoreAction::Warning(_)));
}

/// Fuzz finding 10 (`fuzz/regressions/store_recovery/snapshot-vs-blocks`):
/// a damaged record whose length points past the block's good records is
/// read by resyncing, but had an append made its length land on a good
/// record, the next open would have trusted the length and dropped a
/// message this open served. A damaged last block takes no more appends.
#[test]
fn a_damaged_block_is_read_the_same_after_appends() {
    let mut disk = filled(4, 1 << 20);
    let block = block_bytes(&mut disk, 1);
    let second = record_len(1);
    let fourth = second + record_len(2) + record_len(3);
    // Record 2's length now ends where record 4 starts; record 4 is torn.
    let damaged_len = (record_len(2) + record_len(3)) as u32;
    block[second..second + 4].copy_from_slice(&damaged_len.to_le_bytes());
    block.truncate(block.len() - 3);
    disk.sync_everything();
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
    assert_eq!(store.load_msg(3).unwrap().payload, &b"payload-3"[..]);
    assert_eq!(
        store.backend().block_count(),
        2,
        "appends go to a new block"
    );
    let seq = put(&mut store, "a", "after", 9);
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    assert_eq!(
        block_bytes(&mut disk, 1).len(),
        fourth,
        "block 1 was cut at its torn record and took no append"
    );
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    assert_eq!(store.load_msg(3).unwrap().payload, &b"payload-3"[..]);
    assert_eq!(store.load_msg(seq).unwrap().payload, &b"after"[..]);
    assert_eq!(store.state().msgs, 3);
}

#[test]
fn flipped_payload_bit_costs_exactly_that_record() {
    let mut disk = filled(5, 1 << 20);
    let offset: usize = (1..=2).map(record_len).sum();
    block_bytes(&mut disk, 1)[offset + record::HEADER_LEN + 5] ^= 0x08;
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(report.damaged_records, 1);
    assert!(report.warnings[0].contains(&format!("damaged record at offset {offset}")));
    assert_eq!(store.load_msg(3), Err(StoreError::NotFound));
    for i in [1, 2, 4, 5] {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            format!("payload-{i}").as_bytes()
        );
    }
    assert_eq!(store.state().msgs, 4);
}

#[test]
fn flipped_length_bit_costs_exactly_that_record() {
    let mut disk = filled(5, 1 << 20);
    let offset: usize = (1..=1).map(record_len).sum();
    block_bytes(&mut disk, 1)[offset + 1] ^= 0x01;
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    assert_eq!(store.backend().recovery().damaged_records, 1);
    assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
    assert_eq!(store.state().msgs, 4);
    assert_eq!(store.load_msg(3).unwrap().payload, &b"payload-3"[..]);
}

#[test]
fn damage_in_a_sealed_block_costs_only_its_records() {
    let mut disk = filled(30, 300);
    // Block 2 is sealed (later blocks exist): cut its tail and flip a bit
    // in its first record.
    let block = block_bytes(&mut disk, 2);
    let len = block.len();
    block.truncate(len - 5);
    block[record::HEADER_LEN + 1] ^= 0x10;
    let mut store = open_file(disk, 300, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(
        (report.tails_cut, report.damaged_records),
        (1, 1),
        "{report:?}"
    );
    assert!(report
        .warnings
        .iter()
        .all(|warning| warning.starts_with("s/0000000002.blk")));
    let state = store.state();
    assert_eq!(state.last_seq, 30);
    let lost: Vec<u64> = (1..=30)
        .filter(|seq| store.load_msg(*seq).is_err())
        .collect();
    assert_eq!(lost.len(), 2, "exactly the two damaged records: {lost:?}");
    assert_eq!(state.msgs, 28);
    for seq in (1..=30).filter(|seq| !lost.contains(seq)) {
        assert_eq!(
            store.load_msg(seq).unwrap().payload,
            format!("payload-{seq}").as_bytes()
        );
    }
}

/// A MemDisk that counts the bytes read from block files.
#[derive(Debug)]
struct CountingDisk {
    inner: MemDisk,
    block_bytes_read: usize,
}

impl Disk for CountingDisk {
    fn create_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.inner.create_dir(dir)
    }
    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        self.inner.list(dir)
    }
    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        self.inner.len(path)
    }
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        let n = self.inner.read_at(path, offset, buf)?;
        if path.ends_with(".blk") {
            self.block_bytes_read += n;
        }
        Ok(n)
    }
    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        self.inner.write_at(path, offset, bytes)
    }
    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        self.inner.truncate(path, len)
    }
    fn sync(&mut self, path: &str) -> DiskResult<()> {
        self.inner.sync(path)
    }
    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.inner.sync_dir(dir)
    }
    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        self.inner.rename(from, to)
    }
    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.inner.remove(path)
    }
}

#[test]
fn opening_reads_each_block_once_and_counts_on_the_way() {
    for compress in [false, true] {
        let config = StoreConfig {
            compress,
            ..StoreConfig::default()
        };
        let mut store = open_file(MemDisk::new(), 600, config.clone());
        for i in 1..=60 {
            let ttl = (i % 7 == 0).then(|| Duration::from_secs(100));
            store
                .store_msg(
                    format!("s.{}", i % 4).as_bytes(),
                    b"",
                    compressible(i).as_bytes(),
                    ts(i),
                    ttl,
                )
                .unwrap();
        }
        for seq in [3, 17, 18, 40] {
            store.remove_msg(seq).unwrap();
        }
        settle(&mut store);
        let expected = store.state();
        let subjects = store.subjects_state(&Filter::All);
        let mut disk = store.into_backend().into_disk();
        let on_disk = block_files_len(&mut disk);
        let counting = CountingDisk {
            inner: disk,
            block_bytes_read: 0,
        };
        let mut backend = FileBackend::open(counting, file_config(600), &config).unwrap();
        assert!(backend.block_count() > 3);
        assert_eq!(
            backend.disk().block_bytes_read,
            on_disk,
            "every block read exactly once"
        );
        assert!(
            backend.take_tally().is_some(),
            "recovery counted the messages"
        );
        // What the engine builds from it is what the store had.
        let backend = FileBackend::open(backend.into_disk(), file_config(600), &config).unwrap();
        let before = backend.disk().block_bytes_read;
        let mut store = Engine::open(backend, config.clone()).unwrap();
        assert_eq!(store.state(), expected);
        assert_eq!(store.subjects_state(&Filter::All), subjects);
        assert_eq!(
            store.next_expiry(),
            Some(WallTime(ts(7).0 + 100_000_000_000))
        );
        if !cfg!(debug_assertions) {
            // (Debug builds count again by loading every message.)
            assert_eq!(store.backend_mut().disk().block_bytes_read, before);
        }
    }
}

// ---- FileStore: compression ----

/// A payload snappy shrinks (the message's number repeated).
fn compressible(i: u64) -> String {
    format!("payload-{i};").repeat(24)
}

fn compressed_config() -> StoreConfig {
    StoreConfig {
        compress: true,
        sizing: Sizing::File,
        ..StoreConfig::default()
    }
}

/// `count` compressible messages in a store with compression on.
fn filled_compressed(count: u64, block_size: u64) -> MemDisk {
    let mut store = open_file(MemDisk::new(), block_size, compressed_config());
    for i in 1..=count {
        put(&mut store, &format!("s.{}", i % 3), &compressible(i), i);
    }
    settle(&mut store);
    store.into_backend().into_disk()
}

fn block_files_len(disk: &mut MemDisk) -> usize {
    let names = disk.list("s").unwrap();
    names
        .iter()
        .filter(|name| name.ends_with(".blk"))
        .map(|name| disk.read_all(&format!("s/{name}")).unwrap().unwrap().len())
        .sum()
}

#[test]
fn compressed_records_recover_and_count_uncompressed_bytes() {
    let mut disk = filled_compressed(40, 4096);
    let mut plain = open_file(
        MemDisk::new(),
        4096,
        StoreConfig {
            compress: false,
            ..compressed_config()
        },
    );
    for i in 1..=40 {
        put(&mut plain, &format!("s.{}", i % 3), &compressible(i), i);
    }
    settle(&mut plain);
    let plain_state = plain.state();
    let mut plain_disk = plain.into_backend().into_disk();
    let (compressed_len, plain_len) =
        (block_files_len(&mut disk), block_files_len(&mut plain_disk));
    assert!(
        compressed_len * 4 < plain_len,
        "compressed {compressed_len} bytes on disk, plain {plain_len}"
    );
    let block = disk.read_all("s/0000000001.blk").unwrap().unwrap();
    let scan = record::scan(&block);
    assert!(scan
        .good
        .iter()
        .all(|&at| record::decode(&block[at..]).unwrap().kind == record::Kind::Sealed));
    disk.power_loss();
    let mut store = open_file(disk, 4096, compressed_config());
    // The reference counts stored bytes uncompressed, whatever is on disk.
    assert_eq!(store.state(), plain_state);
    store.backend_mut().drop_cache();
    for i in (1..=40).rev() {
        let msg = store.load_msg(i).unwrap();
        assert_eq!(
            msg.payload,
            compressible(i).as_bytes(),
            "direct read of {i}"
        );
        assert_eq!(msg.subject, format!("s.{}", i % 3).as_bytes());
    }
    for i in 1..=40 {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            compressible(i).as_bytes()
        );
    }
}

#[test]
fn compression_can_be_turned_off_and_old_records_stay_readable() {
    let disk = filled_compressed(5, 1 << 20);
    let mut store = open_file(
        disk,
        1 << 20,
        StoreConfig {
            compress: false,
            ..compressed_config()
        },
    );
    put(&mut store, "s.1", &compressible(6), 6);
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    let block = disk.read_all("s/0000000001.blk").unwrap().unwrap();
    let kinds: Vec<_> = record::scan(&block)
        .good
        .iter()
        .map(|&at| record::decode(&block[at..]).unwrap().kind)
        .collect();
    assert_eq!(kinds.last(), Some(&record::Kind::Message), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == record::Kind::Sealed).count(),
        5
    );
    disk.power_loss();
    let mut store = open_file(disk, 1 << 20, compressed_config());
    for i in 1..=6 {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            compressible(i).as_bytes()
        );
    }
}

#[test]
fn a_flipped_byte_in_a_compressed_record_costs_exactly_that_record() {
    let mut disk = filled_compressed(5, 1 << 20);
    let offsets = record::scan(disk.read_all("s/0000000001.blk").unwrap().as_ref().unwrap()).good;
    assert_eq!(offsets.len(), 5);
    let offset = offsets[2];
    block_bytes(&mut disk, 1)[offset + record::HEADER_LEN + 9] ^= 0x08;
    let mut store = open_file(disk, 1 << 20, compressed_config());
    let report = store.backend().recovery().clone();
    assert_eq!(report.damaged_records, 1, "{report:?}");
    assert!(
        report.warnings[0].contains(&format!(
            "s/0000000001.blk: damaged record at offset {offset}"
        )),
        "{:?}",
        report.warnings
    );
    assert_eq!(store.load_msg(3), Err(StoreError::NotFound));
    for i in [1, 2, 4, 5] {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            compressible(i).as_bytes()
        );
    }
    assert_eq!(store.state().msgs, 4);
}

#[test]
fn a_torn_compressed_tail_is_cut_and_its_sequence_not_reused() {
    let mut disk = filled_compressed(5, 1 << 20);
    let offsets = record::scan(disk.read_all("s/0000000001.blk").unwrap().as_ref().unwrap()).good;
    let block = block_bytes(&mut disk, 1);
    block.truncate(block.len() - 3);
    disk.sync_everything();
    let mut store = open_file(disk, 1 << 20, compressed_config());
    let report = store.backend().recovery().clone();
    assert_eq!(report.tails_cut, 1);
    assert!(report.warnings[0].contains(&format!(
        "s/0000000001.blk: damaged tail cut at offset {}",
        offsets[4]
    )));
    assert_eq!((store.state().msgs, store.state().last_seq), (4, 5));
    assert_eq!(put(&mut store, "a", &compressible(6), 9), 6);
}

// ---- FileStore: encryption at rest ----

fn open_keyed(
    disk: MemDisk,
    encryption: Option<KeyRing>,
    config: StoreConfig,
) -> StoreResult<FileStore<MemDisk>> {
    FileStore::open_on(disk, keyed_config(1 << 20, encryption), config)
}

/// Every file of the store directory, by name.
fn snapshot(disk: &mut MemDisk) -> Vec<(String, Vec<u8>)> {
    let names = disk.list("s").unwrap();
    names
        .into_iter()
        .map(|name| {
            let bytes = disk.read_all(&format!("s/{name}")).unwrap().unwrap();
            (name, bytes)
        })
        .collect()
}

fn filled_encrypted(count: u64, config: StoreConfig) -> MemDisk {
    let mut store = open_keyed(MemDisk::new(), Some(ring("key-one", None)), config).unwrap();
    for i in 1..=count {
        put(&mut store, &format!("s.{}", i % 3), &compressible(i), i);
    }
    settle(&mut store);
    store.into_backend().into_disk()
}

#[test]
fn encrypted_records_hold_nothing_in_clear_and_reopen_with_the_key() {
    for compress in [false, true] {
        let config = StoreConfig {
            compress,
            ..StoreConfig::default()
        };
        let mut disk = filled_encrypted(20, config.clone());
        for (name, bytes) in snapshot(&mut disk) {
            assert!(
                !bytes.windows(8).any(|w| w == b"payload-"),
                "{name} holds a payload in clear"
            );
            assert!(
                !bytes.windows(2).any(|w| w == b"s."),
                "{name} holds a subject in clear"
            );
        }
        disk.power_loss();
        let mut store = open_keyed(disk, Some(ring("key-one", None)), config.clone()).unwrap();
        assert_eq!(store.state().msgs, 20);
        store.backend_mut().drop_cache();
        for i in (1..=20).rev() {
            let msg = store.load_msg(i).unwrap();
            assert_eq!(msg.payload, compressible(i).as_bytes());
            assert_eq!(msg.subject, format!("s.{}", i % 3).as_bytes());
        }
    }
}

#[test]
fn a_wrong_or_missing_key_refuses_the_store_and_changes_nothing() {
    let mut disk = filled_encrypted(5, StoreConfig::default());
    let before = snapshot(&mut disk);
    for (keys, expected) in [
        (Some(ring("key-two", None)), KeyError::Unrecoverable),
        (
            Some(ring("key-two", Some("key-three"))),
            KeyError::Unrecoverable,
        ),
        (None, KeyError::NotConfigured),
    ] {
        let refused = open_keyed(disk.clone(), keys, StoreConfig::default());
        let Err(error) = refused else {
            panic!("opened with the wrong key");
        };
        assert_eq!(error, StoreError::Key(expected));
        assert_eq!(snapshot(&mut disk), before, "files changed");
    }
    assert_eq!(
        StoreError::Key(KeyError::Unrecoverable).to_string(),
        "encrypted store: unable to recover keys"
    );
    let store = open_keyed(disk, Some(ring("key-one", None)), StoreConfig::default()).unwrap();
    assert_eq!(store.state().msgs, 5);
}

#[test]
fn the_previous_key_opens_a_store_once_and_the_new_key_from_then_on() {
    let disk = filled_encrypted(6, StoreConfig::default());
    let mut store = open_keyed(
        disk,
        Some(ring("key-two", Some("key-one"))),
        StoreConfig::default(),
    )
    .unwrap();
    assert!(store
        .backend()
        .recovery()
        .warnings
        .iter()
        .any(|text| text.contains("s/key: opened with the previous key")));
    put(&mut store, "s.9", &compressible(7), 7);
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    // The old key alone no longer opens it; the new one alone does.
    assert_eq!(
        open_keyed(
            disk.clone(),
            Some(ring("key-one", None)),
            StoreConfig::default()
        )
        .err(),
        Some(StoreError::Key(KeyError::Unrecoverable))
    );
    let mut store = open_keyed(disk, Some(ring("key-two", None)), StoreConfig::default()).unwrap();
    for i in 1..=7 {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            compressible(i).as_bytes()
        );
    }
}

#[test]
fn a_damaged_key_file_is_rebuilt_and_a_destroyed_one_refuses_the_store() {
    let mut disk = filled_encrypted(4, StoreConfig::default());
    let good = disk.read_all("s/key").unwrap().unwrap();
    assert_eq!(good.len(), 3 * codec::KEY_FILE_LEN);
    assert_eq!(disk.read_all("s/key.2").unwrap().unwrap(), good);
    // Rot in every copy of `key` (different bytes) and one copy of `key.2`.
    let bytes = disk.bytes_mut("s/key").unwrap();
    bytes[7] ^= 1;
    bytes[codec::KEY_FILE_LEN + 50] ^= 1;
    bytes[2 * codec::KEY_FILE_LEN + 90] ^= 1;
    disk.bytes_mut("s/key.2").unwrap()[60] ^= 4;
    disk.sync_everything();
    let store = open_keyed(disk, Some(ring("key-one", None)), StoreConfig::default()).unwrap();
    assert_eq!(store.state().msgs, 4);
    assert!(store
        .backend()
        .recovery()
        .warnings
        .iter()
        .any(|text| text.contains("s/key.2: missing or damaged; written again")));
    let mut disk = store.into_backend().into_disk();
    assert_eq!(disk.read_all("s/key").unwrap().unwrap(), good, "rebuilt");
    assert_eq!(disk.read_all("s/key.2").unwrap().unwrap(), good, "rebuilt");
    // Every copy destroyed: refused as damaged, nothing written.
    for name in ["s/key", "s/key.2"] {
        disk.bytes_mut(name).unwrap().fill(0x55);
    }
    disk.sync_everything();
    let before = snapshot(&mut disk);
    let refused = open_keyed(
        disk.clone(),
        Some(ring("key-one", None)),
        StoreConfig::default(),
    );
    assert_eq!(refused.err(), Some(StoreError::Key(KeyError::Damaged)));
    assert_eq!(snapshot(&mut disk), before);
}

#[test]
fn a_flipped_byte_in_an_encrypted_record_costs_exactly_that_record() {
    let mut disk = filled_encrypted(5, StoreConfig::default());
    let offsets = record::scan(disk.read_all("s/0000000001.blk").unwrap().as_ref().unwrap()).good;
    block_bytes(&mut disk, 1)[offsets[1] + record::HEADER_LEN + 20] ^= 0x01;
    let mut store = open_keyed(disk, Some(ring("key-one", None)), StoreConfig::default()).unwrap();
    let report = store.backend().recovery().clone();
    assert_eq!(report.damaged_records, 1);
    assert!(report.warnings[0].contains(&format!("damaged record at offset {}", offsets[1])));
    assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
    for i in [1, 3, 4, 5] {
        assert_eq!(
            store.load_msg(i).unwrap().payload,
            compressible(i).as_bytes()
        );
    }
}

#[test]
fn an_encrypted_record_that_passes_its_checksum_but_not_its_tag_is_refused() {
    // Damage with the crc32 fixed up (what only a deliberate change does):
    // the AEAD tag still refuses it, and only it.
    let mut disk = filled_encrypted(3, StoreConfig::default());
    let offsets = record::scan(disk.read_all("s/0000000001.blk").unwrap().as_ref().unwrap()).good;
    let block = block_bytes(&mut disk, 1);
    let (start, end) = (offsets[1], offsets[2]);
    block[start + record::HEADER_LEN + 20] ^= 0x01;
    let crc = crc32fast::hash(&block[start..end - 4]);
    block[end - 4..end].copy_from_slice(&crc.to_le_bytes());
    let mut store = open_keyed(disk, Some(ring("key-one", None)), StoreConfig::default()).unwrap();
    let report = store.backend().recovery().clone();
    assert_eq!(report.records_refused, 1, "{report:?}");
    assert!(report
        .warnings
        .iter()
        .any(|text| text.contains("encrypted record fails authentication")));
    assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
    assert_eq!(store.state().msgs, 2);
}

#[test]
fn an_unsynced_tail_is_lost_but_never_half_served() {
    let mut store = open_file(MemDisk::new(), 1 << 20, StoreConfig::default());
    for i in 1..=3 {
        put(&mut store, "a", &format!("payload-{i}"), i);
    }
    settle(&mut store);
    for i in 4..=6 {
        put(&mut store, "a", &format!("payload-{i}"), i);
    }
    // A power loss before the sync of 4..=6 was even asked for.
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    assert_eq!(store.state().msgs, 3);
    assert_eq!(store.load_msg(3).unwrap().payload, &b"payload-3"[..]);
    assert_eq!(put(&mut store, "a", "new", 7), 4);
}

#[test]
fn damaged_or_missing_meta_never_deletes_the_stream() {
    let mut disk = filled(8, 200);
    {
        let mut store = open_file(disk, 200, StoreConfig::default());
        store.compact(3).unwrap();
        disk = store.into_backend().into_disk();
    }
    disk.bytes_mut("s/meta").unwrap()[10] ^= 0xFF;
    let store = open_file(disk, 200, StoreConfig::default());
    assert!(store.backend().recovery().meta_rebuilt);
    assert_eq!((store.state().msgs, store.state().first_seq), (6, 3));
    let mut disk = store.into_backend().into_disk();
    disk.remove("s/meta").unwrap();
    let store = open_file(disk, 200, StoreConfig::default());
    assert_eq!((store.state().msgs, store.state().first_seq), (6, 3));
}

/// Fuzz finding (`store_recovery`, RESULTS.md store finding 4): a removed
/// message's record damaged, its tombstone intact, `meta` older than both.
/// The tombstone still names a handed-out sequence: it must not be handed
/// out again (and then hidden by that tombstone on the next open).
#[test]
fn a_tombstone_keeps_its_sequence_handed_out() {
    let mut store = open_file(MemDisk::new(), 4096, StoreConfig::default());
    for i in 1..=3 {
        put(&mut store, "s.1", &format!("payload-{i}"), i);
    }
    assert!(store.remove_msg(3).unwrap());
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    let third = record_len(1) + record_len(2);
    block_bytes(&mut disk, 1)[third + 40] ^= 0xFF; // message 3's payload
    let mut store = open_file(disk, 4096, StoreConfig::default());
    assert_eq!(store.backend().recovery().damaged_records, 1);
    assert_eq!(store.state().last_seq, 3, "sequence 3 was handed out");
    assert_eq!(put(&mut store, "s.1", "new", 4), 4);
    settle(&mut store);
    let mut store = open_file(
        store.into_backend().into_disk(),
        4096,
        StoreConfig::default(),
    );
    assert_eq!(store.load_msg(4).unwrap().payload, &b"new"[..]);
    assert_eq!(store.state().msgs, 3);
}

#[test]
fn purge_survives_power_loss_and_sequences_continue() {
    let mut store = open_file(MemDisk::new(), 200, StoreConfig::default());
    for i in 1..=10 {
        put(&mut store, "a", "x", i);
    }
    settle(&mut store);
    store.purge().unwrap();
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    let mut store = open_file(disk, 200, StoreConfig::default());
    let state = store.state();
    assert_eq!((state.msgs, state.first_seq, state.last_seq), (0, 11, 10));
    assert_eq!(put(&mut store, "a", "x", 11), 11);
}

#[test]
fn bit_rot_after_open_is_never_served() {
    let disk = filled(5, 1 << 20);
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    store.backend_mut().drop_cache();
    let offset: usize = (1..=3).map(record_len).sum();
    block_bytes(store.backend_mut().disk_mut(), 1)[offset + record::HEADER_LEN + 2] ^= 0x01;
    assert!(matches!(store.load_msg(4), Err(StoreError::Corrupt(_))));
    assert_eq!(store.load_msg(5).unwrap().payload, &b"payload-5"[..]);
}

/// A block file made of these records, written as the only block of an
/// otherwise empty store directory.
fn disk_with_block(records: &[(record::Kind, u64, &[u8])]) -> (MemDisk, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for &(kind, seq, payload) in records {
        offsets.push(bytes.len());
        let subject: &[u8] = if kind == record::Kind::Message {
            b"a.b"
        } else {
            b""
        };
        record::encode(&mut bytes, kind, seq, seq, 0, subject, b"", payload);
    }
    let mut disk = MemDisk::new();
    disk.write_at("s/0000000001.blk", 0, &bytes).unwrap();
    disk.sync_everything();
    (disk, offsets)
}

/// Fuzz-found bug (RESULTS.md store finding 1, `known-decreasing`,
/// `known-dup`): checksum-valid messages out of order inside one block hit
/// an assertion on open. They are refused as corrupt, counted and named.
#[test]
fn messages_out_of_order_in_a_block_are_refused_not_a_panic() {
    use record::Kind::Message;
    let (disk, offsets) = disk_with_block(&[
        (Message, 1, b"one"),
        (Message, 3, b"three"),
        (Message, 2, b"two"),
        (Message, 3, b"again"),
        (Message, 4, b"four"),
    ]);
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!((report.records, report.records_refused), (5, 2));
    assert_eq!(report.damaged_records, 0);
    for (warning, (offset, what)) in report.warnings.iter().zip([
        (offsets[2], "message 2 does not follow message 3"),
        (offsets[3], "message 3 does not follow message 3"),
    ]) {
        assert!(
            warning.contains(&format!(
                "s/0000000001.blk: record at offset {offset} refused as corrupt: {what}"
            )),
            "{warning}"
        );
    }
    let state = store.state();
    assert_eq!((state.msgs, state.first_seq, state.last_seq), (3, 1, 4));
    assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
    assert_eq!(store.load_msg(3).unwrap().payload, &b"three"[..]);
    // Through a whole-block load too (an erase loads the block).
    store.backend_mut().drop_cache();
    assert!(store.erase_msg(4).unwrap());
    assert_eq!(store.backend().cached_blocks(), 1);
    assert_eq!(store.load_msg(3).unwrap().payload, &b"three"[..]);
    let warnings = settle(&mut store);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(matches!(&warnings[0], StoreAction::Warning(text) if text.contains("refused")));
    assert_eq!(put(&mut store, "a.b", "five", 5), 5);
}

/// Fuzz-found bug (RESULTS.md store finding 2, `known-gap`): a gap of 2^40
/// between two messages of one block put every missing sequence in the
/// block's deleted set. A gap is one range now: memory follows the records.
#[test]
fn a_huge_gap_in_a_block_costs_one_range() {
    use record::Kind::{Message, Tombstone};
    let far = 1u64 << 40;
    let (disk, _) = disk_with_block(&[
        (Message, 1, b"one"),
        (Message, 5, b"five"),
        (Message, far, b"far"),
        (Tombstone, 5, b""),
    ]);
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    let block = &store.backend().blocks[0];
    // The gaps 2..=4 and 6..far and the tombstone of 5: one range.
    assert_eq!(block.deleted.range_count(), 1);
    assert_eq!(block.deleted.len(), far - 2);
    let state = store.state();
    assert_eq!(
        (state.msgs, state.last_seq, state.num_deleted),
        (2, far, far - 2)
    );
    assert_eq!(store.load_next(&Filter::All, 2).unwrap().seq, far);
    assert_eq!(store.load_last(&Filter::All).unwrap().seq, far);
    assert_eq!(store.load_msg(5), Err(StoreError::NotFound));
    assert!(store.remove_msg(1).unwrap());
    assert_eq!(store.state().first_seq, far);
    assert_eq!(put(&mut store, "a.b", "next", 9), far + 1);
    settle(&mut store);
    let mut store = open_file(
        store.into_backend().into_disk(),
        1 << 20,
        StoreConfig::default(),
    );
    assert_eq!((store.state().msgs, store.state().first_seq), (2, far));
    store.truncate(far).unwrap();
    assert_eq!(store.load_msg(far).unwrap().payload, &b"far"[..]);
}

/// Fuzz-found bug (`fuzz/regressions/store_recovery/tally-second`): block
/// 2 began with a checksum-valid message record numbered 0 and later held
/// a tombstone for message 2 of block 1 (damage: the writer puts a
/// tombstone in its message's block). The 0 made recovery's one-pass count
/// take block 2's first message as 0, so it did not see that the tombstone
/// named an earlier block's counted message: it counted message 2, which
/// the store (rightly) does not serve. A message numbered 0 is refused now,
/// and any removal naming a message counted in an earlier block makes the
/// count doubtful (the engine counts by loading).
#[test]
fn a_removal_after_a_message_numbered_0_keeps_the_count_exact() {
    use record::Kind::{Message, Tombstone};
    for zero_first in [true, false] {
        let mut first = Vec::new();
        record::encode(&mut first, Message, 1, 1, 0, b"a", b"", b"one");
        record::encode(&mut first, Message, 2, 2, 0, b"b", b"", b"two");
        let mut second = Vec::new();
        if zero_first {
            record::encode(&mut second, Message, 0, 3, 0, b"z", b"", b"zero");
        }
        record::encode(&mut second, Tombstone, 2, 4, 0, b"", b"", b"");
        let mut disk = MemDisk::new();
        disk.write_at("s/0000000001.blk", 0, &first).unwrap();
        disk.write_at("s/0000000002.blk", 0, &second).unwrap();
        disk.sync_everything();
        let config = StoreConfig::default();
        let mut backend = FileBackend::open(disk, file_config(1 << 20), &config).unwrap();
        let refused = backend.recovery().records_refused;
        assert_eq!(refused, u64::from(zero_first), "zero first: {zero_first}");
        assert_eq!(backend.take_tally(), None, "the count is doubtful");
        let backend =
            FileBackend::open(backend.into_disk(), file_config(1 << 20), &config).unwrap();
        let mut store = Engine::open(backend, config).unwrap();
        let state = store.state();
        assert_eq!((state.msgs, state.first_seq, state.last_seq), (1, 1, 2));
        assert_eq!(store.load_msg(2), Err(StoreError::NotFound));
        assert_eq!(store.load_msg(1).unwrap().payload, &b"one"[..]);
        assert_eq!(store.subjects_state(&Filter::All).len(), 1);
        assert_eq!(put(&mut store, "c", "three", 5), 3);
    }
}

/// A `meta` file saying these things, checksum and all.
fn meta_bytes(floor: u64, last: u64, last_ts: u64) -> Vec<u8> {
    let mut bytes = b"RNSM".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    for word in [floor, last, last_ts] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Fuzz-found bug (RESULTS.md store finding 3, `known-maxseq`,
/// `known-maxseq_torn`): sequences near `u64::MAX` overflowed `last + 1`
/// and `last + lost`. Anything above `SEQ_MAX` on disk is refused as
/// corrupt; a store at `SEQ_MAX` refuses new sequences.
#[test]
fn sequences_near_u64_max_are_refused_as_corrupt() {
    use record::Kind::{Floor, Message, Skip};
    let (mut disk, _) = disk_with_block(&[
        (Message, 1, b"one"),
        (Message, u64::MAX, b"top"),
        (Skip, SEQ_MAX + 1, b""),
        (Floor, 1, &u64::MAX.to_le_bytes()),
        (Floor, u64::MAX, &2u64.to_le_bytes()),
    ]);
    disk.write_at("s/meta", 0, &meta_bytes(0, u64::MAX, 0))
        .unwrap();
    disk.sync_everything();
    let store = open_file(disk, 1 << 20, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(report.records_refused, 4);
    assert!(report.meta_rebuilt, "a meta past SEQ_MAX is damaged");
    let state = store.state();
    assert_eq!((state.msgs, state.first_seq, state.last_seq), (1, 1, 1));

    // A message at SEQ_MAX with a torn record after it: the lost-record
    // estimate stops at SEQ_MAX, and the full store refuses new messages.
    let mut bytes = Vec::new();
    record::encode(&mut bytes, Message, SEQ_MAX, 1, 0, b"a", b"", b"x");
    record::encode(&mut bytes, Message, 7, 1, 0, b"a", b"", b"torn");
    bytes.truncate(bytes.len() - 2);
    let mut disk = MemDisk::new();
    disk.write_at("s/0000000001.blk", 0, &bytes).unwrap();
    disk.sync_everything();
    let mut store = open_file(disk, 1 << 20, StoreConfig::default());
    assert_eq!(store.backend().recovery().tails_cut, 1);
    assert_eq!(store.state().last_seq, SEQ_MAX);
    assert_eq!(
        store.store_msg(b"a", b"", b"y", ts(2), None),
        Err(StoreError::InvalidSequence)
    );
    assert_eq!(store.skip_msg(ts(2)), Err(StoreError::InvalidSequence));
    assert!(!store.failed(), "a refusal is not a failure");

    // The same limits on a memory store, through the API.
    let mut store = MemStore::new(StoreConfig::default());
    put(&mut store, "a", "x", 1);
    assert_eq!(
        store.skip_msgs(2, u64::MAX, ts(1)),
        Err(StoreError::InvalidSequence)
    );
    assert_eq!(store.compact(u64::MAX), Err(StoreError::InvalidSequence));
    store.skip_msgs(2, SEQ_MAX - 1, ts(1)).unwrap();
    assert_eq!(store.state().last_seq, SEQ_MAX);
    assert_eq!(
        store.store_msg(b"a", b"", b"y", ts(2), None),
        Err(StoreError::InvalidSequence)
    );
    assert_eq!(store.compact(SEQ_MAX + 1).unwrap(), 1);
    assert_eq!(store.state().first_seq, SEQ_MAX + 1);
}

/// The message sequences in block file `number`, in file order.
fn block_messages(disk: &mut MemDisk, number: u64) -> Vec<u64> {
    let bytes = block_bytes(disk, number).clone();
    let scan = record::scan(&bytes);
    scan.good
        .iter()
        .map(|&offset| record::decode(&bytes[offset..]).unwrap())
        .filter(|record| record.kind == record::Kind::Message)
        .map(|record| record.seq)
        .collect()
}

/// A lost middle block file (blocks 1, 2, 3; 2 deleted) is found on
/// recovery, named with the sequences it held, and those sequences are
/// never handed out again.
#[test]
fn a_missing_middle_block_is_named_and_its_sequences_never_reused() {
    let mut disk = filled(12, 300);
    let second = block_messages(&mut disk, 2);
    let third = block_messages(&mut disk, 3);
    assert!(!second.is_empty() && !third.is_empty());
    let (first_lost, last_lost) = (second[0], *second.last().unwrap());
    disk.remove("s/0000000002.blk").unwrap();
    disk.sync_everything();
    let mut store = open_file(disk, 300, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(report.missing_sequences, vec![(first_lost, last_lost)]);
    let expected = format!(
        "s: sequences {first_lost}..={last_lost} are in no block before s/0000000003.blk: \
         block file 0000000002.blk is missing"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|text| text.starts_with(&expected)),
        "{:?}",
        report.warnings
    );
    let warnings = settle(&mut store);
    assert!(warnings
        .iter()
        .any(|action| matches!(action, StoreAction::Warning(text) if text.starts_with(&expected))));
    for seq in first_lost..=last_lost {
        assert_eq!(store.load_msg(seq), Err(StoreError::NotFound));
    }
    let state = store.state();
    assert_eq!(state.last_seq, 12);
    assert_eq!(state.msgs, 12 - second.len() as u64);
    assert_eq!(put(&mut store, "x", "y", 20), 13);
    settle(&mut store);
    // The next open finds the same hole, and nothing else.
    let store = open_file(
        store.into_backend().into_disk(),
        300,
        StoreConfig::default(),
    );
    assert_eq!(
        store.backend().recovery().missing_sequences,
        vec![(first_lost, last_lost)]
    );
    assert_eq!(store.state().last_seq, 13);
}

/// A lost first block is found the same way: nothing (no floor) accounts
/// for the sequences below the first surviving block.
#[test]
fn a_missing_last_block_is_named_and_its_sequences_never_reused() {
    let mut disk = filled(12, 300);
    let names = disk.list("s").unwrap();
    let last_name = names
        .iter()
        .filter(|name| name.ends_with(".blk"))
        .max()
        .unwrap()
        .clone();
    let last_number: u64 = last_name.trim_end_matches(".blk").parse().unwrap();
    let lost = block_messages(&mut disk, last_number);
    assert_eq!(lost.last(), Some(&12));
    disk.remove(&format!("s/{last_name}")).unwrap();
    disk.sync_everything();
    let mut store = open_file(disk, 300, StoreConfig::default());
    let report = store.backend().recovery().clone();
    assert_eq!(report.missing_last_blocks, vec![last_number]);
    assert!(report.has_findings());
    let per_block = 300 / record::MIN_RECORD as u64;
    let through = lost[0] - 1 + per_block;
    assert!(
        report.warnings.iter().any(|text| text.contains(&format!(
            "s: block file {last_name} is missing (meta names block {last_number} as the last written): their messages are lost; sequences up to {through} are not handed out again"
        ))),
        "{:?}",
        report.warnings
    );
    let state = store.state();
    assert_eq!(state.msgs, 12 - lost.len() as u64);
    assert_eq!(state.last_seq, through);
    // Acknowledged sequences 1..=12 are never given to another message.
    let next = put(&mut store, "x", "new", 99);
    assert!(next > 12, "sequence {next} handed out again");
    settle(&mut store);
    // The finding is kept: a second open does not lower the last sequence.
    let disk = store.into_backend().into_disk();
    let store = open_file(disk, 300, StoreConfig::default());
    assert_eq!(store.state().last_seq, next);
    assert!(store.backend().recovery().missing_last_blocks.is_empty());
}

#[test]
fn a_bulk_skip_survives_the_loss_of_the_last_block() {
    let mut store = open_file(MemDisk::new(), 300, StoreConfig::default());
    for i in 1..=3 {
        put(&mut store, "a", "x", i);
    }
    store.skip_msgs(4, 100_000, ts(4)).unwrap();
    let after = put(&mut store, "a", "y", 5);
    assert_eq!(after, 100_004);
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    let names = disk.list("s").unwrap();
    let last = names
        .iter()
        .filter(|name| name.ends_with(".blk"))
        .max()
        .unwrap()
        .clone();
    disk.remove(&format!("s/{last}")).unwrap();
    disk.sync_everything();
    let mut store = open_file(disk, 300, StoreConfig::default());
    assert!(!store.backend().recovery().missing_last_blocks.is_empty());
    assert!(store.state().last_seq >= 100_004);
    assert!(put(&mut store, "a", "z", 6) > 100_004);
}

#[test]
fn a_missing_first_block_is_named() {
    let mut disk = filled(12, 300);
    let first = block_messages(&mut disk, 1);
    disk.remove("s/0000000001.blk").unwrap();
    disk.sync_everything();
    let store = open_file(disk, 300, StoreConfig::default());
    let report = store.backend().recovery();
    let lost = (1, *first.last().unwrap());
    assert_eq!(report.missing_sequences, vec![lost]);
    assert!(
        report.warnings.iter().any(|text| text.contains(&format!(
            "sequences 1..={} are in no block before s/0000000002.blk: block file 0000000001.blk is missing",
            lost.1
        ))),
        "{:?}",
        report.warnings
    );
    assert_eq!(store.state().first_seq, lost.1 + 1);
    assert_eq!(store.state().last_seq, 12);
}

/// A block emptied by removals is deleted by the store itself: that leaves
/// a record behind (a skip in the block before, a floor for the first
/// block), so recovery does not report it as lost.
#[test]
fn a_block_emptied_and_removed_is_not_reported_missing() {
    let mut disk = filled(16, 300);
    let first = block_messages(&mut disk, 1);
    let second = block_messages(&mut disk, 2);
    let mut store = open_file(disk, 300, StoreConfig::default());
    let blocks = store.backend().block_count();
    for &seq in second.iter().chain(&first) {
        assert!(store.remove_msg(seq).unwrap());
    }
    settle(&mut store);
    assert_eq!(store.backend().block_count(), blocks - 2);
    let state = store.state();
    let mut store = open_file(
        store.into_backend().into_disk(),
        300,
        StoreConfig::default(),
    );
    let report = store.backend().recovery().clone();
    assert!(report.missing_sequences.is_empty(), "{:?}", report.warnings);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(store.state(), state);
    assert_eq!(put(&mut store, "x", "y", 20), 17);
}

// ---- FileStore against MemStore ----

#[derive(Debug, Clone)]
enum Op {
    Store {
        subject: u8,
        payload: u8,
        ttl: bool,
    },
    Remove(u8),
    Erase(u8),
    PurgeSubject {
        subject: u8,
        keep: u8,
    },
    Compact(u8),
    Truncate(u8),
    Skip,
    Expire(u8),
    PowerLoss,
    ProcessKill,
    /// Write the full-state snapshot (the next reopen may use it).
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..4, any::<u8>(), proptest::bool::weighted(0.1))
            .prop_map(|(subject, payload, ttl)| Op::Store { subject, payload, ttl }),
        3 => any::<u8>().prop_map(Op::Remove),
        1 => any::<u8>().prop_map(Op::Erase),
        1 => (0u8..4, 0u8..3).prop_map(|(subject, keep)| Op::PurgeSubject { subject, keep }),
        1 => any::<u8>().prop_map(Op::Compact),
        1 => any::<u8>().prop_map(Op::Truncate),
        1 => Just(Op::Skip),
        1 => any::<u8>().prop_map(Op::Expire),
        1 => Just(Op::PowerLoss),
        1 => Just(Op::ProcessKill),
        1 => Just(Op::Snapshot),
    ]
}

/// A sequence near the store's range, from a random byte.
fn pick(state: &StoreState, byte: u8) -> u64 {
    let span = state.last_seq + 2;
    u64::from(byte) % span.max(1)
}

fn apply<B: Backend>(store: &mut Engine<B>, op: &Op, clock: u64) -> String {
    let state = store.state();
    match *op {
        Op::Store {
            subject,
            payload,
            ttl,
        } => {
            let body = vec![payload; usize::from(payload % 40)];
            let ttl = ttl.then(|| Duration::from_secs(u64::from(payload % 5) + 1));
            format!(
                "{:?}",
                store.store_msg(
                    format!("sub.{subject}").as_bytes(),
                    b"h",
                    &body,
                    ts(clock),
                    ttl
                )
            )
        }
        Op::Remove(byte) => format!("{:?}", store.remove_msg(pick(&state, byte))),
        Op::Erase(byte) => format!("{:?}", store.erase_msg(pick(&state, byte))),
        Op::PurgeSubject { subject, keep } => format!(
            "{:?}",
            store.purge_ex(
                &Filter::subject(format!("sub.{subject}").as_bytes()),
                0,
                u64::from(keep)
            )
        ),
        Op::Compact(byte) => format!("{:?}", store.compact(pick(&state, byte).max(1))),
        Op::Truncate(byte) => format!("{:?}", store.truncate(pick(&state, byte))),
        Op::Skip => format!("{:?}", store.skip_msg(ts(clock))),
        Op::Expire(byte) => format!("{:?}", store.expire(ts(clock + u64::from(byte % 8)))),
        Op::Snapshot => format!("{:?}", store.write_snapshot()),
        Op::PowerLoss | Op::ProcessKill => String::new(),
    }
}

fn compare(file: &mut FileStore<MemDisk>, model: &mut MemStore) -> Result<(), TestCaseError> {
    prop_assert_eq!(file.state(), model.state());
    prop_assert_eq!(
        file.subjects_state(&Filter::All),
        model.subjects_state(&Filter::All)
    );
    prop_assert_eq!(
        file.deleted().collect::<Vec<_>>(),
        model.deleted().collect::<Vec<_>>()
    );
    let state = model.state();
    for seq in state.first_seq.saturating_sub(1)..=state.last_seq + 1 {
        prop_assert_eq!(file.load_msg(seq), model.load_msg(seq), "seq {}", seq);
    }
    // Backwards from cold: every load reads one record directly.
    file.backend_mut().drop_cache();
    for seq in (state.first_seq..=state.last_seq).rev() {
        prop_assert_eq!(
            file.load_msg(seq),
            model.load_msg(seq),
            "seq {} (direct)",
            seq
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn filestore_matches_memstore(
        ops in proptest::collection::vec(op(), 1..80),
        sealing in 0u8..4,
    ) {
        // Sealing bit 0: compression (payloads of repeated bytes shrink);
        // bit 1: encryption at rest.
        let keys = (sealing & 2 == 2).then(|| ring("k", None));
        let config = StoreConfig {
            max_msgs_per_subject: Some(6),
            max_age: Some(Duration::from_secs(30)),
            compress: sealing & 1 == 1,
            ..StoreConfig::default()
        };
        let mut model = MemStore::new(config.clone());
        let mut file = FileStore::open_on(MemDisk::new(), keyed_config(160, keys.clone()), config.clone()).unwrap();
        for (step, op) in ops.iter().enumerate() {
            let clock = step as u64;
            match op {
                Op::PowerLoss | Op::ProcessKill => {
                    let mut disk = file.into_backend().into_disk();
                    if matches!(op, Op::PowerLoss) {
                        disk.power_loss();
                    } else {
                        disk.process_kill();
                    }
                    file = FileStore::open_on(disk, keyed_config(160, keys.clone()), config.clone()).unwrap();
                    // Everything was synced: no block can be missing, and
                    // no removal may look like a lost block.
                    let report = file.backend().recovery();
                    prop_assert!(report.missing_sequences.is_empty(), "{:?}", report.warnings);
                    prop_assert!(report.missing_last_blocks.is_empty(), "{:?}", report.warnings);
                    settle(&mut file);
                }
                op => {
                    let expected = apply(&mut model, op, clock);
                    let got = apply(&mut file, op, clock);
                    prop_assert_eq!(got, expected, "op {:?}", op);
                    // Sync always: every action carried out at once.
                    settle(&mut file);
                }
            }
            compare(&mut file, &mut model)?;
        }
    }
}

// ---- Damage anywhere: recovery never panics and never serves a wrong message ----

#[derive(Debug, Clone)]
enum Damage {
    Flip { file: u8, at: u16, bit: u8 },
    Cut { file: u8, keep: u16 },
    Garbage { file: u8, at: u16, bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<u8>(), any::<u16>(), 0u8..8).prop_map(|(file, at, bit)| Damage::Flip {
            file,
            at,
            bit
        }),
        (any::<u8>(), any::<u16>()).prop_map(|(file, keep)| Damage::Cut { file, keep }),
        (
            any::<u8>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(file, at, bytes)| Damage::Garbage { file, at, bytes }),
    ]
}

fn apply_damage(disk: &mut MemDisk, damage: &Damage) {
    let files = disk.list("s").unwrap();
    let pick = |file: u8| files[usize::from(file) % files.len()].clone();
    match damage {
        Damage::Flip { file, at, bit } => {
            let bytes = disk.bytes_mut(&format!("s/{}", pick(*file))).unwrap();
            if !bytes.is_empty() {
                let at = usize::from(*at) % bytes.len();
                bytes[at] ^= 1 << bit;
            }
        }
        Damage::Cut { file, keep } => {
            let bytes = disk.bytes_mut(&format!("s/{}", pick(*file))).unwrap();
            let keep = usize::from(*keep) % (bytes.len() + 1);
            bytes.truncate(keep);
        }
        Damage::Garbage {
            file,
            at,
            bytes: garbage,
        } => {
            let bytes = disk.bytes_mut(&format!("s/{}", pick(*file))).unwrap();
            let at = usize::from(*at) % (bytes.len() + 1);
            let end = (at + garbage.len()).min(bytes.len());
            bytes.splice(at..end, garbage.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_never_panic_recovery_or_serve_a_wrong_message(
        count in 1u64..60,
        removes in proptest::collection::vec(any::<u8>(), 0..8),
        damages in proptest::collection::vec(damage(), 1..6),
        sealing in 0u8..4,
        snapshot in any::<bool>(),
    ) {
        let (compress, keys) = (sealing & 1 == 1, (sealing & 2 == 2).then(|| ring("k", None)));
        let config = StoreConfig { compress, ..StoreConfig::default() };
        let payload_of = |seq: u64| if sealing > 0 { compressible(seq) } else { format!("payload-{seq}") };
        let block_size = if sealing > 0 { 512 } else { 256 };
        let mut store = FileStore::open_on(MemDisk::new(), keyed_config(block_size, keys.clone()), config.clone()).unwrap();
        for i in 1..=count {
            put(&mut store, &format!("s.{}", i % 4), &payload_of(i), i);
        }
        for byte in removes {
            let _ = store.remove_msg(u64::from(byte) % (count + 1));
        }
        settle(&mut store);
        if snapshot {
            // Damage may then hit the snapshot or a block it describes.
            store.write_snapshot().unwrap();
        }
        let mut disk = store.into_backend().into_disk();
        for damage in &damages {
            apply_damage(&mut disk, damage);
        }
        disk.sync_everything();
        let Ok(mut store) = FileStore::open_on(disk, keyed_config(block_size, keys), config) else {
            // Refusing to open is allowed (e.g. overlapping blocks); panicking is not.
            return Ok(());
        };
        let state = store.state();
        prop_assert!(state.last_seq >= count || state.last_seq + 1 >= state.first_seq);
        let mut served = 0;
        for seq in 0..=state.last_seq + 1 {
            match store.load_msg(seq) {
                Ok(msg) => {
                    served += 1;
                    prop_assert_eq!(msg.seq, seq);
                    let (payload, subject) = (payload_of(seq), format!("s.{}", seq % 4));
                    prop_assert_eq!(&msg.payload[..], payload.as_bytes());
                    prop_assert_eq!(&msg.subject[..], subject.as_bytes());
                }
                Err(StoreError::NotFound | StoreError::Eof | StoreError::Corrupt(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
        prop_assert!(served <= state.msgs);
        // The store still takes messages after recovery, above every sequence seen.
        let next = store.store_msg(b"after", b"", b"x", ts(1000), None).unwrap();
        prop_assert!(next > state.last_seq);
    }
}

// ---- FileStore: the full-state snapshot ----

/// Blocks several times larger than the bytes a snapshot checks at their end.
const SNAP_BLOCK: u64 = 1500;

fn snapshot_config(block_size: u64) -> FileStoreConfig {
    FileStoreConfig {
        // Only the snapshots a test asks for.
        snapshot_every: 0,
        ..file_config(block_size)
    }
}

/// A store of `count` messages (subjects `s.0`..`s.2`, every 5th with a
/// TTL, 7 and 8 removed), snapshot written if `snapshot`; its disk, state
/// and messages.
fn snapshotted(count: u64, snapshot: bool) -> (MemDisk, StoreState, Vec<StoredMsg>) {
    let mut store = FileStore::open_on(
        MemDisk::new(),
        snapshot_config(SNAP_BLOCK),
        StoreConfig::default(),
    )
    .unwrap();
    for i in 1..=count {
        let ttl = (i % 5 == 0).then(|| Duration::from_secs(100));
        store
            .store_msg(
                format!("s.{}", i % 3).as_bytes(),
                b"",
                format!("payload-{i}").as_bytes(),
                ts(i),
                ttl,
            )
            .unwrap();
    }
    store.remove_msg(7).unwrap();
    store.remove_msg(8).unwrap();
    settle(&mut store);
    if snapshot {
        store.write_snapshot().unwrap();
    }
    let (state, msgs) = contents(&mut store);
    (store.into_backend().into_disk(), state, msgs)
}

fn contents<D: Disk>(store: &mut FileStore<D>) -> (StoreState, Vec<StoredMsg>) {
    let state = store.state();
    let msgs = (state.first_seq..=state.last_seq)
        .filter_map(|seq| store.load_msg(seq).ok())
        .collect();
    (state, msgs)
}

/// Open on a disk that counts block bytes read: the store, and how many
/// bytes of blocks its backend's open read (debug builds' engine then
/// reads every message again to check the count, so that is not counted).
fn open_counting(disk: MemDisk) -> (FileStore<CountingDisk>, usize) {
    let disk = CountingDisk {
        inner: disk,
        block_bytes_read: 0,
    };
    let config = StoreConfig::default();
    let backend = FileBackend::open(disk, snapshot_config(SNAP_BLOCK), &config).unwrap();
    let read = backend.disk().block_bytes_read;
    (Engine::open(backend, config).unwrap(), read)
}

#[test]
fn a_snapshot_opens_the_store_without_reading_its_blocks() {
    let (disk, state, msgs) = snapshotted(200, true);
    let (mut store, read) = open_counting(disk);
    let report = store.backend().recovery().clone();
    assert_eq!(report.snapshot, SnapshotUse::Used);
    assert!(report.snapshot_blocks > 5, "{report:?}");
    assert_eq!(report.blocks, 0, "no block scanned");
    // Only the last bytes of each block, to check them against it.
    assert!(
        read as u64 <= report.snapshot_blocks * snapshot::TAIL_CHECK,
        "{read} bytes read"
    );
    assert_eq!(contents(&mut store), (state.clone(), msgs.clone()));
    assert_eq!(
        store.next_expiry(),
        Some(WallTime(ts(5).0 + 100_000_000_000))
    );
    assert_eq!(store.subjects_state(&Filter::All).len(), 3);
    // The store goes on from there, and opens the same without it.
    assert_eq!(put(&mut store, "s.9", "more", 999), 201);
    settle(&mut store);
    let mut disk = store.into_backend().into_disk().inner;
    disk.remove("s/snapshot").unwrap();
    let mut again = open_file(disk, SNAP_BLOCK, StoreConfig::default());
    assert_eq!(again.backend().recovery().snapshot, SnapshotUse::Missing);
    assert_eq!(again.state().msgs, state.msgs + 1);
    assert_eq!(again.load_msg(201).unwrap().payload, &b"more"[..]);
}

/// Blocks written after the snapshot (a kill, no fresh snapshot): the
/// snapshot still describes the blocks before, which are not read; the
/// rest is read from where it stopped.
#[test]
fn a_stale_snapshot_is_used_for_what_it_describes_and_the_rest_is_read() {
    let (disk, _, _) = snapshotted(200, true);
    let mut store = open_file(disk, SNAP_BLOCK, StoreConfig::default());
    for i in 201..=230 {
        put(
            &mut store,
            &format!("s.{}", i % 3),
            &format!("payload-{i}"),
            i,
        );
    }
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    disk.process_kill();
    let (expected_state, expected) = {
        let mut copy = disk.clone();
        copy.remove("s/snapshot").unwrap();
        contents(&mut open_file(copy, SNAP_BLOCK, StoreConfig::default()))
    };
    let (mut store, read) = open_counting(disk.clone());
    let report = store.backend().recovery().clone();
    assert_eq!(report.snapshot, SnapshotUse::Used);
    assert!(report.blocks >= 1, "the blocks after it are read");
    assert!(report.snapshot_blocks >= 4);
    assert_eq!(contents(&mut store), (expected_state, expected));
    assert_eq!(put(&mut store, "x", "y", 999), 231);
    // Fewer bytes than the blocks hold.
    let full = block_files_len(&mut disk);
    assert!(read < full / 2, "{read} of {full}: {report:?}");
}

/// A removal after the snapshot: written to a block the snapshot describes
/// (a described block changed) or to the one it left open (the count it
/// holds is wrong): either way it is not used, and nothing is lost.
#[test]
fn a_snapshot_older_than_a_removal_is_rebuilt_from_the_blocks() {
    for seq in [3, 40] {
        let (disk, _, _) = snapshotted(40, true);
        let mut store = open_file(disk, SNAP_BLOCK, StoreConfig::default());
        assert!(store.remove_msg(seq).unwrap());
        settle(&mut store);
        let (state, msgs) = contents(&mut store);
        let mut disk = store.into_backend().into_disk();
        disk.process_kill();
        let mut store = open_file(disk.clone(), SNAP_BLOCK, StoreConfig::default());
        assert!(
            matches!(store.backend().recovery().snapshot, SnapshotUse::Rebuilt(_)),
            "removed {seq}: {:?}",
            store.backend().recovery().snapshot
        );
        assert_eq!(contents(&mut store), (state, msgs));
        assert_eq!(store.load_msg(seq), Err(StoreError::NotFound));
        settle(&mut store);
        let mut disk = store.into_backend().into_disk();
        assert!(
            disk.len("s/snapshot").unwrap().is_none(),
            "removed once not used"
        );
    }
}

#[test]
fn a_missing_snapshot_is_rebuilt_from_the_blocks() {
    let (mut disk, state, msgs) = snapshotted(40, true);
    disk.remove("s/snapshot").unwrap();
    let mut store = open_file(disk, SNAP_BLOCK, StoreConfig::default());
    assert_eq!(store.backend().recovery().snapshot, SnapshotUse::Missing);
    assert!(store.backend().recovery().blocks > 1);
    assert_eq!(contents(&mut store), (state, msgs));
}

/// Every flipped byte and every truncation of the snapshot (its block
/// index included) is found, named, and costs nothing: the store comes up
/// from its blocks with every message.
#[test]
fn a_damaged_or_truncated_snapshot_never_loses_a_message() {
    let (disk, state, msgs) = snapshotted(25, true);
    let snapshot_bytes = disk.clone().read_all("s/snapshot").unwrap().unwrap();
    let len = snapshot_bytes.len();
    let flips = (0..len).step_by(7).map(|at| (at, None));
    let cuts = [0, 3, 19, 20, len / 2, len - 1]
        .into_iter()
        .map(|keep| (keep, Some(keep)));
    for (at, cut) in flips.chain(cuts) {
        let mut damaged = disk.clone();
        let bytes = damaged.bytes_mut("s/snapshot").unwrap();
        match cut {
            Some(keep) => bytes.truncate(keep),
            None => bytes[at] ^= 0x10,
        }
        let mut store = open_file(damaged, SNAP_BLOCK, StoreConfig::default());
        let report = store.backend().recovery().clone();
        assert!(
            matches!(&report.snapshot, SnapshotUse::Rebuilt(why) if why.starts_with("damaged")),
            "at {at} cut {cut:?}: {:?}",
            report.snapshot
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|text| text.starts_with("s/snapshot: damaged")),
            "{:?}",
            report.warnings
        );
        assert_eq!(contents(&mut store), (state.clone(), msgs.clone()));
    }
}

/// A block cut short after the snapshot (its tail lost) or changed in its
/// last bytes: the snapshot no longer describes it and is not used.
#[test]
fn a_snapshot_whose_blocks_changed_is_not_believed() {
    let (disk, _, _) = snapshotted(40, true);
    for damage in ["cut", "flip"] {
        let mut changed = disk.clone();
        let block = block_bytes(&mut changed, 2);
        match damage {
            "cut" => {
                let len = block.len();
                block.truncate(len - 5);
            }
            _ => {
                let len = block.len();
                block[len - 10] ^= 1;
            }
        }
        let mut expected_disk = changed.clone();
        expected_disk.remove("s/snapshot").unwrap();
        let expected = contents(&mut open_file(
            expected_disk,
            SNAP_BLOCK,
            StoreConfig::default(),
        ));
        let mut store = open_file(changed, SNAP_BLOCK, StoreConfig::default());
        assert!(
            matches!(&store.backend().recovery().snapshot, SnapshotUse::Rebuilt(why) if why.contains("0000000002.blk")),
            "{damage}: {:?}",
            store.backend().recovery().snapshot
        );
        assert!(
            store.backend().recovery().tails_cut + store.backend().recovery().damaged_records > 0
        );
        assert_eq!(contents(&mut store), expected);
    }
}

/// An erase overwrites a record in place (same length): the snapshot goes
/// first, durably, so a power loss cannot bring it back over the change.
#[test]
fn an_erase_removes_the_snapshot_first() {
    let (disk, _, _) = snapshotted(30, true);
    let mut store = open_file(disk, SNAP_BLOCK, StoreConfig::default());
    assert!(store.erase_msg(4).unwrap());
    settle(&mut store);
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    assert!(disk.len("s/snapshot").unwrap().is_none());
    let mut store = open_file(disk, SNAP_BLOCK, StoreConfig::default());
    assert_eq!(store.load_msg(4), Err(StoreError::NotFound));
    assert_eq!(store.state().msgs, 27);
}

/// The store writes a snapshot by itself every `snapshot_every` bytes; a
/// power loss right after keeps one that opens the store.
#[test]
fn snapshots_are_written_periodically_and_survive_power_loss() {
    let config = FileStoreConfig {
        snapshot_every: 2000,
        ..file_config(300)
    };
    let mut store =
        FileStore::open_on(MemDisk::new(), config.clone(), StoreConfig::default()).unwrap();
    for i in 1..=80 {
        put(
            &mut store,
            &format!("s.{}", i % 3),
            &format!("payload-{i}"),
            i,
        );
        settle(&mut store);
    }
    assert!(store
        .backend()
        .disk()
        .clone()
        .len("s/snapshot")
        .unwrap()
        .is_some());
    let (state, msgs) = contents(&mut store);
    let mut disk = store.into_backend().into_disk();
    disk.power_loss();
    let mut store = FileStore::open_on(disk, config, StoreConfig::default()).unwrap();
    assert_eq!(store.backend().recovery().snapshot, SnapshotUse::Used);
    assert_eq!(contents(&mut store), (state, msgs));
}

/// Under encryption at rest the snapshot is sealed: no subject in clear;
/// it opens with the key, and without the right key the store is refused
/// as before (the key file decides), never opened from a snapshot.
#[test]
fn an_encrypted_store_seals_its_snapshot() {
    let config = keyed_config(300, Some(ring("k", None)));
    let config = FileStoreConfig {
        snapshot_every: 0,
        ..config
    };
    let mut store =
        FileStore::open_on(MemDisk::new(), config.clone(), StoreConfig::default()).unwrap();
    for i in 1..=30 {
        put(&mut store, "secret.subject", &format!("payload-{i}"), i);
    }
    settle(&mut store);
    store.write_snapshot().unwrap();
    let (state, msgs) = contents(&mut store);
    let mut disk = store.into_backend().into_disk();
    let bytes = disk.read_all("s/snapshot").unwrap().unwrap();
    assert!(!bytes.windows(6).any(|window| window == b"secret"));
    let mut store = FileStore::open_on(disk, config, StoreConfig::default()).unwrap();
    assert_eq!(store.backend().recovery().snapshot, SnapshotUse::Used);
    assert_eq!(contents(&mut store), (state, msgs));
}
