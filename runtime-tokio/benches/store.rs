//! Criterion benchmarks of the message stores (issue #14): FileStore on the
//! real disk (`RealDisk` over a directory under the system temp dir) and
//! MemStore.
//!
//! - `store/file/<policy>/<size>`: store throughput, 128 B and 16 KiB
//!   payloads. `sync_every_N`: `SyncPolicy::BeforeAck`; after every N
//!   messages the bench carries out the `Sync` the store asks for
//!   (`perform_sync`: fdatasync of the block, plus the directory when a block
//!   was created) and reports it with `handle_sync_done`, then takes the
//!   `Durable` (group commit of N messages per fsync; the fsync does not
//!   overlap with writing, as it does in the server). `interval`:
//!   `SyncPolicy::Interval`, no fsync in the loop (writes land in the page
//!   cache). Every sample starts from an empty store (only the store loop is
//!   timed), so the disk use stays bounded.
//! - `store/mem/<size>`: the same on MemStore.
//! - `load/file/...`: `load_msg` by sequence on a store of 50,000 128 B
//!   messages (3 blocks of 4 MiB): `random_warm` (all blocks in the store's
//!   block cache), `random_store_cold` (`FileBackend::drop_cache` before each
//!   load: one direct read from the OS page cache), `random_os_cold` (also
//!   `posix_fadvise(DONTNEED)` on every block file before each load, so the
//!   read goes to the device; the eviction is not timed), `scan_warm` and
//!   `scan_store_cold` (all 50,000 in order; cold drops the store's cache
//!   first, so every block is read and checked whole).
//! - `load/mem/random`.
//! - `disk/write_4k_fdatasync`: the physical bound: one 4 KiB write at the
//!   end of a file plus `fdatasync`.
//!
//! Run (about 5 minutes on 2 cores):
//! `cargo bench -p rnats-runtime-tokio --bench store -- --warm-up-time 1 --measurement-time 3`

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rnats_core::store::{
    perform_sync, FileStore, FileStoreConfig, MemStore, StoreAction, StoreConfig, SyncPolicy,
};
use rnats_core::time::WallTime;
use rnats_runtime_tokio::disk::RealDisk;

const SIZES: [(usize, &str); 2] = [(128, "128B"), (16 << 10, "16KiB")];
const LOAD_MSGS: u64 = 50_000;

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the temp dir (`RNATS_BENCH_DIR` overrides the
/// parent: put it on the disk you mean to measure).
fn scratch() -> PathBuf {
    let parent = std::env::var_os("RNATS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let dir = parent.join(format!("rnats-store-bench-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn subjects() -> Vec<Vec<u8>> {
    (0..100)
        .map(|n| format!("bench.{n}").into_bytes())
        .collect()
}

fn open_file_store(root: &Path, sync: SyncPolicy) -> FileStore<RealDisk> {
    let disk = RealDisk::new(root).expect("bench dir");
    let config = FileStoreConfig {
        dir: "stream".into(),
        sync,
        ..FileStoreConfig::default()
    };
    FileStore::open_on(disk, config, StoreConfig::default()).expect("open")
}

/// Carry out what the store asks (syncs on this thread); the last durable.
fn drain(store: &mut FileStore<RealDisk>) -> u64 {
    let mut durable = 0;
    while let Some(action) = store.poll_action() {
        match action {
            StoreAction::Sync { tag, files, dirs } => {
                let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
                store.handle_sync_done(tag, result);
            }
            StoreAction::Durable { through } => durable = through,
            StoreAction::Warning(text) => panic!("warning: {text}"),
        }
    }
    durable
}

fn store_throughput(c: &mut Criterion) {
    let subjects = subjects();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    for (size, size_name) in SIZES {
        let payload = vec![b'x'; size];
        let policies: [(Option<u64>, String); 4] = [
            (Some(1), "sync_every_1".into()),
            (Some(64), "sync_every_64".into()),
            (Some(1024), "sync_every_1024".into()),
            (None, "interval".into()),
        ];
        for (every, name) in policies {
            // One iteration is one batch of `batch` messages (and its fsync).
            let batch = every.unwrap_or(1024);
            group.throughput(Throughput::Elements(batch));
            group.bench_function(format!("file/{name}/{size_name}"), |b| {
                b.iter_custom(|iters| {
                    let root = scratch();
                    let sync = match every {
                        Some(_) => SyncPolicy::BeforeAck,
                        None => SyncPolicy::Interval(Duration::from_secs(3600)),
                    };
                    let mut store = open_file_store(&root, sync);
                    drain(&mut store);
                    let mut n = 0u64;
                    let start = StdInstant::now();
                    for _ in 0..iters {
                        for _ in 0..batch {
                            let subject = &subjects[(n % 100) as usize];
                            store
                                .store_msg(subject, b"", &payload, WallTime(n + 1), None)
                                .expect("store");
                            n += 1;
                        }
                        let durable = drain(&mut store);
                        debug_assert_eq!(durable, n);
                        black_box(durable);
                    }
                    let elapsed = start.elapsed();
                    drop(store);
                    let _ = fs::remove_dir_all(&root);
                    elapsed
                });
            });
        }
        group.throughput(Throughput::Elements(1024));
        group.bench_function(format!("mem/{size_name}"), |b| {
            b.iter_custom(|iters| {
                let mut store = MemStore::new(StoreConfig::default());
                let mut n = 0u64;
                let start = StdInstant::now();
                for _ in 0..iters {
                    for _ in 0..1024 {
                        let subject = &subjects[(n % 100) as usize];
                        store
                            .store_msg(subject, b"", &payload, WallTime(n + 1), None)
                            .expect("store");
                        n += 1;
                    }
                    while let Some(action) = store.poll_action() {
                        black_box(action);
                    }
                }
                let elapsed = start.elapsed();
                drop(store);
                elapsed
            });
        });
    }
    group.finish();
}

/// `posix_fadvise(DONTNEED)` on every block file: the next read of them
/// goes to the device (the pages are clean: the store synced them).
fn evict_os_cache(dir: &Path) {
    for entry in fs::read_dir(dir).expect("store dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "blk") {
            let file = fs::File::open(&path).expect("block");
            // SAFETY: a plain syscall on a descriptor we own.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0, "posix_fadvise");
        }
    }
}

/// A deterministic pseudo-random sequence in `1..=LOAD_MSGS`.
fn next_seq(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) % LOAD_MSGS + 1
}

fn load(c: &mut Criterion) {
    let subjects = subjects();
    let payload = vec![b'x'; 128];
    let root = scratch();
    let mut store = open_file_store(&root, SyncPolicy::BeforeAck);
    for n in 0..LOAD_MSGS {
        store
            .store_msg(
                &subjects[(n % 100) as usize],
                b"",
                &payload,
                WallTime(n + 1),
                None,
            )
            .expect("store");
    }
    assert_eq!(drain(&mut store), LOAD_MSGS);
    let blocks = store.backend().block_count();
    assert!(blocks <= 4, "the warm case needs every block cached");
    let stream_dir = root.join("stream");

    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    let mut rng = 1u64;

    // Fill the block cache with a scan, then load at random.
    for seq in 1..=LOAD_MSGS {
        black_box(store.load_msg(seq).expect("load"));
    }
    assert_eq!(store.backend().cached_blocks(), blocks);
    group.bench_function("file/random_warm", |b| {
        b.iter(|| black_box(store.load_msg(next_seq(&mut rng)).expect("load")))
    });

    group.bench_function("file/random_store_cold", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                store.backend_mut().drop_cache();
                let seq = next_seq(&mut rng);
                let start = StdInstant::now();
                black_box(store.load_msg(seq).expect("load"));
                total += start.elapsed();
            }
            total
        })
    });

    group.sample_size(10);
    group.bench_function("file/random_os_cold", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                store.backend_mut().drop_cache();
                evict_os_cache(&stream_dir);
                let seq = next_seq(&mut rng);
                let start = StdInstant::now();
                black_box(store.load_msg(seq).expect("load"));
                total += start.elapsed();
            }
            total
        })
    });

    group.throughput(Throughput::Elements(LOAD_MSGS));
    group.bench_function("file/scan_warm", |b| {
        b.iter(|| {
            for seq in 1..=LOAD_MSGS {
                black_box(store.load_msg(seq).expect("load"));
            }
        })
    });
    group.bench_function("file/scan_store_cold", |b| {
        b.iter(|| {
            store.backend_mut().drop_cache();
            for seq in 1..=LOAD_MSGS {
                black_box(store.load_msg(seq).expect("load"));
            }
        })
    });

    let mut mem = MemStore::new(StoreConfig::default());
    for n in 0..LOAD_MSGS {
        mem.store_msg(
            &subjects[(n % 100) as usize],
            b"",
            &payload,
            WallTime(n + 1),
            None,
        )
        .expect("store");
    }
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("mem/random", |b| {
        b.iter(|| black_box(mem.load_msg(next_seq(&mut rng)).expect("load")))
    });
    group.finish();
    drop(store);
    let _ = fs::remove_dir_all(&root);
}

fn fsync_latency(c: &mut Criterion) {
    let root = scratch();
    fs::create_dir_all(&root).expect("bench dir");
    let file = fs::File::create(root.join("fsync")).expect("file");
    let block = vec![0u8; 4096];
    let mut offset = 0u64;
    let mut group = c.benchmark_group("disk");
    group.sample_size(20);
    group.bench_function("write_4k_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(&block, offset).expect("write");
            file.sync_data().expect("fdatasync");
            offset += 4096;
        })
    });
    group.finish();
    drop(file);
    let _ = fs::remove_dir_all(&root);
}

criterion_group!(benches, fsync_latency, store_throughput, load);
criterion_main!(benches);
