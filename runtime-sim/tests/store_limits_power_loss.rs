//! A FileStore with `max_msgs_per_subject` (discard old) keeps its limit
//! across a power loss: after any reopen, no subject holds more messages
//! than the limit. (Found by the `jetstream-restarts` scenario, e.g. seed 57:
//! STREAM.INFO reported 17 messages on 4 subjects with a limit of 4.)
//!
//! Each seed stores on 4 subjects with the limit drawn from 1..=4, syncs now
//! and then (completing the store's own Sync requests), and loses power at a
//! random point; the reopened store must be within its limits.

use rnats_core::store::{
    perform_sync, FileStore, FileStoreConfig, Filter, StoreAction, StoreConfig, SyncPolicy,
};
use rnats_core::time::WallTime;
use rnats_runtime_sim::disk::{SharedSimDisk, SimDisk, SimDiskFaults};
use rnats_runtime_sim::rng::Rng;

fn config(per_subject: u64) -> StoreConfig {
    StoreConfig {
        max_msgs_per_subject: Some(per_subject),
        ..StoreConfig::default()
    }
}

fn file_config() -> FileStoreConfig {
    FileStoreConfig {
        dir: "stream".to_string(),
        sync: SyncPolicy::BeforeAck,
        ..FileStoreConfig::default()
    }
}

/// The first seed's description of a violation, if any.
fn run(seed: u64) -> Option<String> {
    let mut rng = Rng::stream(seed, 200);
    let per_subject = rng.range(1, 4);
    let disk = SharedSimDisk::new(SimDisk::from_seed(seed, SimDiskFaults::default()));
    let mut store = FileStore::open_on(disk.clone(), file_config(), config(per_subject)).ok()?;
    let count = rng.range(5, 60);
    for i in 0..count {
        let subject = format!("s.{}", rng.below(4));
        store
            .store_msg(subject.as_bytes(), b"", b"payload", WallTime(i + 1), None)
            .ok()?;
        while let Some(action) = store.poll_action() {
            if let StoreAction::Sync { tag, files, dirs } = action {
                if rng.chance(0.5) {
                    let result = perform_sync(&mut disk.clone(), &files, &dirs);
                    store.handle_sync_done(tag, result);
                }
            }
        }
    }
    drop(store);
    disk.with(|d| d.power_loss());
    let store = FileStore::open_on(disk.clone(), file_config(), config(per_subject)).ok()?;
    let over: Vec<_> = store
        .subjects_state(&Filter::All)
        .into_iter()
        .filter(|(_, state)| state.msgs > per_subject)
        .collect();
    (!over.is_empty()).then(|| {
        format!(
            "seed {seed}: limit {per_subject} per subject, after power loss {:?} (state {:?})",
            over,
            store.state()
        )
    })
}

#[test]
fn per_subject_limit_holds_after_power_loss() {
    let failures: Vec<String> = (0..200).filter_map(run).collect();
    assert!(
        failures.is_empty(),
        "{} seeds: {}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}
