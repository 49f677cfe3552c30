//! Recovery time, peak memory and bytes on disk of a FileStore (issue #14).
//! Not a criterion bench (`harness = false`): one measurement per count.
//!
//! For each count N (default 1,000,000; pass others as arguments):
//! 1. write N messages (16 B payload, subject `bench.<n % 100>`, no
//!    headers) through a FileStore on `RealDisk` (`SyncPolicy::BeforeAck`,
//!    the sync asked for carried out every 65,536 messages and at the end);
//! 2. sum the sizes of the files in the store directory (bytes per message);
//! 3. open the store in a child process (this binary with `--open DIR`)
//!    twice: first after `posix_fadvise(DONTNEED)` on every file (the blocks
//!    come from the device), then again (page cache warm). The child reports
//!    the wall time of `FileStore::open_on` and its VmHWM (peak RSS) and
//!    VmRSS from /proc/self/status before and after the open, and what it
//!    did with the full-state snapshot;
//! 4. in three states: after a kill (the writer stopped without a final
//!    snapshot: the one the store wrote by itself every 64 MiB, if any,
//!    describes a prefix), after a clean stop (`write_snapshot`), and with
//!    no snapshot at all (every block read).
//!
//! It first prints the disk's fsync latency: the median of 100 times one
//! 4 KiB write at the end of a file plus `fdatasync`.
//!
//! Run: `cargo bench -p rnats-runtime-tokio --bench store_recovery -- 1000000 10000000`
//! (`RNATS_BENCH_DIR` picks the parent directory; default the temp dir).

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use rnats_core::store::{
    perform_sync, FileStore, FileStoreConfig, StoreAction, StoreConfig, SyncPolicy,
};
use rnats_core::time::WallTime;
use rnats_runtime_tokio::disk::RealDisk;

const PAYLOAD: usize = 16;
const SYNC_EVERY: u64 = 65_536;

fn parent_dir() -> PathBuf {
    std::env::var_os("RNATS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn file_config() -> FileStoreConfig {
    FileStoreConfig {
        dir: "stream".into(),
        ..FileStoreConfig::default()
    }
}

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

/// `(VmHWM, VmRSS)` of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The child: open the store under `root`, print one line of figures.
fn open_child(root: &Path) {
    let (hwm_before, rss_before) = memory_kib();
    let disk = RealDisk::new(root).expect("root");
    let start = StdInstant::now();
    let store = FileStore::open_on(disk, file_config(), StoreConfig::default()).expect("open");
    let elapsed = start.elapsed();
    let (hwm_after, rss_after) = memory_kib();
    let state = store.state();
    let report = store.backend().recovery();
    println!(
        "open_ms={:.1} msgs={} blocks={} blocks_read={} snapshot={:?} hwm_before_kib={hwm_before} rss_before_kib={rss_before} hwm_after_kib={hwm_after} rss_after_kib={rss_after}",
        elapsed.as_secs_f64() * 1e3,
        state.msgs,
        store.backend().block_count(),
        report.blocks,
        report.snapshot,
    );
}

fn evict_os_cache(dir: &Path) {
    for entry in fs::read_dir(dir).expect("store dir") {
        let file = fs::File::open(entry.expect("entry").path()).expect("file");
        // SAFETY: a plain syscall on a descriptor we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    }
}

fn fsync_median() -> Duration {
    let root = parent_dir().join(format!("rnats-fsync-{}", std::process::id()));
    fs::create_dir_all(&root).expect("dir");
    let file = fs::File::create(root.join("f")).expect("file");
    let block = vec![7u8; 4096];
    let mut times: Vec<Duration> = (0..100u64)
        .map(|i| {
            let start = StdInstant::now();
            file.write_all_at(&block, i * 4096).expect("write");
            file.sync_data().expect("fdatasync");
            start.elapsed()
        })
        .collect();
    times.sort();
    drop(file);
    let _ = fs::remove_dir_all(&root);
    println!(
        "fsync: 4 KiB write + fdatasync, 100 times: min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        times[0].as_secs_f64() * 1e3,
        times[50].as_secs_f64() * 1e3,
        times[90].as_secs_f64() * 1e3,
        times[99].as_secs_f64() * 1e3,
    );
    times[50]
}

fn measure(count: u64) {
    let root = parent_dir().join(format!("rnats-recovery-{}-{count}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let subjects: Vec<Vec<u8>> = (0..100)
        .map(|n| format!("bench.{n}").into_bytes())
        .collect();
    let payload = [b'x'; PAYLOAD];
    let disk = RealDisk::new(&root).expect("root");
    let config = FileStoreConfig {
        sync: SyncPolicy::BeforeAck,
        ..file_config()
    };
    let mut store = FileStore::open_on(disk, config, StoreConfig::default()).expect("open");
    let start = StdInstant::now();
    for n in 0..count {
        store
            .store_msg(
                &subjects[(n % 100) as usize],
                b"",
                &payload,
                WallTime(1_700_000_000_000_000_000 + n),
                None,
            )
            .expect("store");
        if (n + 1) % SYNC_EVERY == 0 {
            drain(&mut store);
        }
    }
    assert_eq!(drain(&mut store), count);
    let write = start.elapsed();
    // A kill: no snapshot at the end.
    drop(store);

    let stream_dir = root.join("stream");
    let mut bytes = 0u64;
    let mut files = 0u64;
    for entry in fs::read_dir(&stream_dir).expect("store dir") {
        bytes += entry.expect("entry").metadata().expect("metadata").len();
        files += 1;
    }
    println!(
        "{count} messages ({PAYLOAD} B payload, subject bench.<n % 100>): written in {:.2} s ({:.0} msgs/s, a sync every {SYNC_EVERY}); {bytes} bytes in {files} files = {:.2} bytes/message",
        write.as_secs_f64(),
        count as f64 / write.as_secs_f64(),
        bytes as f64 / count as f64,
    );

    let exe = std::env::current_exe().expect("current exe");
    for stop in ["after a kill", "after a clean stop", "without a snapshot"] {
        match stop {
            "after a clean stop" => {
                let disk = RealDisk::new(&root).expect("root");
                let mut store =
                    FileStore::open_on(disk, file_config(), StoreConfig::default()).expect("open");
                store.write_snapshot().expect("snapshot");
            }
            "without a snapshot" => {
                let _ = fs::remove_file(stream_dir.join("snapshot"));
            }
            _ => {}
        }
        for (label, evict) in [
            ("cold (fadvise DONTNEED)", true),
            ("warm page cache", false),
        ] {
            if evict {
                evict_os_cache(&stream_dir);
            }
            let output = Command::new(&exe)
                .arg("--open")
                .arg(&root)
                .output()
                .expect("child");
            assert!(output.status.success(), "child failed: {output:?}");
            print!(
                "  {stop}, open {label}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
    }
    let _ = fs::remove_dir_all(&root);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(index) = args.iter().position(|arg| arg == "--open") {
        open_child(Path::new(&args[index + 1]));
        return;
    }
    let counts: Vec<u64> = args
        .iter()
        .filter_map(|arg| arg.replace('_', "").parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000_000]
    } else {
        counts
    };
    println!("store dir parent: {}", parent_dir().display());
    fsync_median();
    for count in counts {
        measure(count);
    }
}
