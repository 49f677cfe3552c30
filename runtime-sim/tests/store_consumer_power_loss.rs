//! Consumer state on the simulated disk: deliveries and acks, flushes that
//! may fail (EIO, ENOSPC, failed syncs), power losses. After every reopen
//! the state is exactly one that a flush wrote — the last that succeeded or
//! one whose flush failed after it — and the file is never found damaged:
//! the atomic write (temp, sync, rename, sync dir) holds under torn writes.
//!
//! Replay one seed: `STORE_SEED=<n> cargo test -p rnats-runtime-sim --test store_consumer_power_loss`.

use rnats_core::store::consumer::{AckPolicy, ConsumerFileStore, ConsumerState};
use rnats_core::time::WallTime;
use rnats_runtime_sim::disk::{SharedSimDisk, SimDisk, SimDiskFaults};
use rnats_runtime_sim::rng::Rng;

fn open(disk: &SharedSimDisk) -> ConsumerFileStore<SharedSimDisk> {
    for _ in 0..200 {
        if let Ok(store) = ConsumerFileStore::open(disk.clone(), "consumer", AckPolicy::Explicit, 5)
        {
            return store;
        }
    }
    panic!("cannot open the consumer store");
}

fn run(seed: u64) -> (u64, u64) {
    let mut plan = Rng::stream(seed, 200);
    let faults = SimDiskFaults::draw(&mut plan, 0.05);
    let disk = SharedSimDisk::new(SimDisk::from_seed(seed, faults));
    let mut rng = Rng::stream(seed, 201);
    let mut store = open(&disk);
    // The states a reopen may find: the last flushed, then any whose flush failed.
    let mut candidates: Vec<ConsumerState> = vec![ConsumerState::default()];
    let (mut delivered, mut flushes) = (0u64, 0u64);
    for step in 0..300u64 {
        match rng.below(100) {
            0..=44 => {
                delivered += 1;
                let stream = delivered * 2;
                store
                    .tracker_mut()
                    .update_delivered(delivered, stream, 1, WallTime(step))
                    .unwrap();
            }
            45..=54 => {
                // A redelivery of something pending.
                let pending: Vec<(u64, u64)> = store
                    .state()
                    .pending
                    .iter()
                    .map(|(stream, pending)| (*stream, pending.sequence))
                    .collect();
                if let Some(&(stream, _)) =
                    pending.get(rng.below(pending.len() as u64 + 1) as usize)
                {
                    delivered += 1;
                    let count = 2 + rng.below(5);
                    store
                        .tracker_mut()
                        .update_delivered(delivered, stream, count, WallTime(step))
                        .unwrap();
                }
            }
            55..=79 => {
                let pending: Vec<(u64, u64)> = store
                    .state()
                    .pending
                    .iter()
                    .map(|(stream, pending)| (*stream, pending.sequence))
                    .collect();
                if let Some(&(stream, consumer)) =
                    pending.get(rng.below(pending.len() as u64 + 1) as usize)
                {
                    store.tracker_mut().update_acks(consumer, stream).unwrap();
                }
            }
            80..=93 => {
                let state = store.state().clone();
                match store.flush() {
                    Ok(true) => {
                        flushes += 1;
                        candidates = vec![state];
                    }
                    Ok(false) => {}
                    Err(_) => candidates.push(state),
                }
            }
            _ => {
                drop(store);
                disk.with(|disk| disk.power_loss());
                store = open(&disk);
                assert_eq!(
                    store.take_warning(),
                    None,
                    "seed {seed}: the state file was damaged"
                );
                assert!(
                    candidates.contains(store.state()),
                    "seed {seed} step {step}: reopened {:?}, expected one of {candidates:?}",
                    store.state()
                );
                candidates = vec![store.state().clone()];
                delivered = delivered.max(store.state().delivered.consumer);
            }
        }
    }
    (flushes, disk.with(|disk| disk.trace_hash()))
}

#[test]
fn consumer_state_is_one_that_was_flushed_after_power_loss() {
    let seeds: Vec<u64> = match std::env::var("STORE_SEED") {
        Ok(seed) => vec![seed.parse().expect("STORE_SEED is a number")],
        Err(_) => (0..200).collect(),
    };
    let mut flushes = 0;
    for &seed in &seeds {
        flushes += run(seed).0;
    }
    if seeds.len() > 1 {
        assert!(flushes > 1000, "too few successful flushes: {flushes}");
        assert_eq!(run(5), run(5), "the same seed must give the same run");
    }
}
