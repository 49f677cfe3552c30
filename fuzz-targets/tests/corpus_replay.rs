//! Replays every checked-in fuzz corpus file through its target's function,
//! on stable Rust, so a regression fails `cargo test --workspace` without a
//! fuzzing toolchain.
//!
//! Inputs: `fuzz/corpus/<target>/*` (seeds and inputs libFuzzer found worth
//! keeping) and `fuzz/regressions/<target>/*` (inputs that once broke an
//! invariant). A failure names the file; reproduce it with
//! `cargo fuzz run <target> <file>` in `fuzz/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rnats_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str, minimum_per_target: usize) {
    for (name, run) in TARGETS {
        let dir = fuzz_dir().join(kind).join(name);
        let files = files(&dir);
        assert!(
            files.len() >= minimum_per_target,
            "{}: {} files, expected at least {minimum_per_target}",
            dir.display(),
            files.len()
        );
        let started = Instant::now();
        for file in &files {
            let data = std::fs::read(file).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
        eprintln!(
            "{kind}/{name}: {} files in {:?}",
            files.len(),
            started.elapsed()
        );
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    replay("corpus", 1);
}

#[test]
fn every_regression_input_passes_its_target() {
    replay("regressions", 0);
}

/// Finding 1: PINGs from a client that reads nothing piled PONGs up past
/// `max_pending` (it was checked only on delivery). Fixed: every queued reply
/// counts, and such a peer is closed as a slow consumer, as nats-server does.
/// The inputs live in `fuzz/regressions/server_machine/` and also run in
/// `every_regression_input_passes_its_target`; the harness checks the bound
/// on every byte the server queues.
#[test]
fn ping_flood_is_a_slow_consumer() {
    for file in files(&fuzz_dir().join("regressions/server_machine")) {
        let data = std::fs::read(&file).expect("readable finding");
        rnats_fuzz_targets::server_machine::run(&data);
    }
}
