//! Rough FileStore throughput on the simulated disk (no faults): store,
//! group commit, sequential and random loads. Ignored by default; run:
//!
//! `cargo test --release -p rnats-runtime-sim --test store_throughput -- --ignored --nocapture`
//!
//! The numbers measure the store's CPU cost (encoding, checksums, block
//! bookkeeping, cache); the simulated disk is memory, so no device time.

use std::time::Instant;

use rnats_core::store::{
    perform_sync, FileStore, FileStoreConfig, StoreAction, StoreConfig, SyncPolicy,
};
use rnats_core::time::WallTime;
use rnats_runtime_sim::disk::{SharedSimDisk, SimDisk, SimDiskFaults};
use rnats_runtime_sim::rng::Rng;

fn settle(store: &mut FileStore<SharedSimDisk>, disk: &SharedSimDisk) -> u64 {
    let mut syncs = 0;
    while let Some(action) = store.poll_action() {
        if let StoreAction::Sync { tag, files, dirs } = action {
            let result = perform_sync(&mut disk.clone(), &files, &dirs);
            store.handle_sync_done(tag, result);
            syncs += 1;
        }
    }
    syncs
}

#[test]
#[ignore]
fn file_store_throughput() {
    let count: u64 = 200_000;
    let payload = vec![b'x'; 128];
    let disk = SharedSimDisk::new(SimDisk::from_seed(1, SimDiskFaults::default()));
    let config = FileStoreConfig {
        dir: "bench".into(),
        block_size: 4 << 20,
        cache_blocks: 4,
        sync: SyncPolicy::BeforeAck,
        ..FileStoreConfig::default()
    };
    let mut store =
        FileStore::open_on(disk.clone(), config.clone(), StoreConfig::default()).unwrap();
    let subjects: Vec<String> = (0..16).map(|i| format!("orders.{i}")).collect();
    let started = Instant::now();
    let mut syncs = 0;
    for i in 0..count {
        let subject = &subjects[(i % 16) as usize];
        store
            .store_msg(subject.as_bytes(), b"", &payload, WallTime(i), None)
            .unwrap();
        if i % 256 == 255 {
            syncs += settle(&mut store, &disk);
        }
    }
    syncs += settle(&mut store, &disk);
    let store_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for seq in 1..=count {
        assert_eq!(store.load_msg(seq).unwrap().payload.len(), 128);
    }
    let sequential_secs = started.elapsed().as_secs_f64();

    let mut rng = Rng::stream(1, 2);
    let started = Instant::now();
    for _ in 0..20_000 {
        let seq = 1 + rng.below(count);
        store.load_msg(seq).unwrap();
    }
    let random_secs = started.elapsed().as_secs_f64();

    let blocks = store.backend().block_count();
    let cached = store.backend().cached_blocks();
    drop(store);
    let started = Instant::now();
    let store = FileStore::open_on(disk.clone(), config, StoreConfig::default()).unwrap();
    let open_secs = started.elapsed().as_secs_f64();
    assert_eq!(store.state().msgs, count);
    println!(
        "store {count} x 128 B: {:.0} msgs/s ({syncs} syncs, batches of 256); \
         sequential load {:.0} msgs/s; random load {:.0} msgs/s; \
         reopen (check every record) {:.2} s; {blocks} blocks, {cached} cached",
        count as f64 / store_secs,
        count as f64 / sequential_secs,
        20_000.0 / random_secs,
        open_secs
    );
}
