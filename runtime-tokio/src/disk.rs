//! The real-files disk: core's [`Disk`] over `std::fs`, under one root directory.
//!
//! Role: carry out a store's file operations in production. Every call
//! blocks (fsync above all), so a store using it must run on a dedicated
//! I/O thread ([`IoThread`] here) or in `tokio::task::spawn_blocking`,
//! never on a tokio worker.
//!
//! Inputs: `Disk` calls with paths relative to `root`.
//! Outputs: their results, with OS errors mapped to [`DiskError`]
//! (`NotFound`, `NoSpace` for ENOSPC, `Io` for the rest).
//!
//! Invariants: paths never climb out of `root` (`..` is refused); open
//! handles are cached per path and dropped on rename and remove, so a
//! cached handle always names the file at its path.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rnats_core::store::{Disk, DiskError, DiskResult};

/// At most this many files stay open; the oldest-opened is closed first.
const OPEN_FILES_MAX: usize = 64;

/// Real files under `root`.
#[derive(Debug)]
pub struct RealDisk {
    root: PathBuf,
    open: BTreeMap<String, File>,
}

/// Another handle on the same files: its own open-file cache, the same
/// root. A sync through any handle covers writes made through the others
/// (fsync applies to the file, not the descriptor).
impl Clone for RealDisk {
    fn clone(&self) -> Self {
        RealDisk {
            root: self.root.clone(),
            open: BTreeMap::new(),
        }
    }
}

impl RealDisk {
    /// A disk rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<RealDisk> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(RealDisk {
            root,
            open: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> DiskResult<PathBuf> {
        if path.split('/').any(|part| part == "..") {
            return Err(DiskError::Io(format!(
                "{path}: path climbs out of the store"
            )));
        }
        Ok(if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        })
    }

    fn handle(&mut self, path: &str, create: bool) -> DiskResult<&File> {
        if !self.open.contains_key(path) {
            let full = self.full(path)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(&full)
                .map_err(|error| map_error(path, error))?;
            if self.open.len() >= OPEN_FILES_MAX {
                let first = self.open.keys().next().cloned().expect("map is full");
                self.open.remove(&first);
            }
            self.open.insert(path.to_string(), file);
        }
        Ok(&self.open[path])
    }
}

fn map_error(path: &str, error: io::Error) -> DiskError {
    match error.kind() {
        io::ErrorKind::NotFound => DiskError::NotFound(path.to_string()),
        _ if error.raw_os_error() == Some(libc::ENOSPC) => DiskError::NoSpace(path.to_string()),
        _ => DiskError::Io(format!("{path}: {error}")),
    }
}

impl Disk for RealDisk {
    fn create_dir(&mut self, dir: &str) -> DiskResult<()> {
        let full = self.full(dir)?;
        fs::create_dir_all(full).map_err(|error| map_error(dir, error))
    }

    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        let full = self.full(dir)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(full).map_err(|error| map_error(dir, error))? {
            let entry = entry.map_err(|error| map_error(dir, error))?;
            let is_file = entry
                .file_type()
                .map_err(|error| map_error(dir, error))?
                .is_file();
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        let full = self.full(path)?;
        match fs::metadata(full) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(map_error(path, error)),
        }
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        let file = self.handle(path, false)?;
        loop {
            match file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(map_error(path, error)),
            }
        }
    }

    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        let file = self.handle(path, true)?;
        file.write_all_at(bytes, offset)
            .map_err(|error| map_error(path, error))
    }

    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        let file = self.handle(path, false)?;
        file.set_len(len).map_err(|error| map_error(path, error))
    }

    fn sync(&mut self, path: &str) -> DiskResult<()> {
        let file = self.handle(path, false)?;
        file.sync_data().map_err(|error| map_error(path, error))
    }

    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        let full = self.full(dir)?;
        let handle = File::open(full).map_err(|error| map_error(dir, error))?;
        handle.sync_all().map_err(|error| map_error(dir, error))
    }

    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        self.open.remove(from);
        self.open.remove(to);
        let (full_from, full_to) = (self.full(from)?, self.full(to)?);
        fs::rename(full_from, full_to).map_err(|error| map_error(from, error))
    }

    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.open.remove(path);
        let full = self.full(path)?;
        fs::remove_file(full).map_err(|error| map_error(path, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnats_core::store::{
        perform_sync, FileStore, FileStoreConfig, StoreAction, StoreConfig, SyncPolicy,
    };
    use rnats_core::time::WallTime;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rnats-disk-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn files_round_trip_and_climbing_is_refused() {
        let root = scratch_dir("basic");
        let mut disk = RealDisk::new(&root).unwrap();
        disk.create_dir("d").unwrap();
        disk.write_at("d/a", 0, b"hello").unwrap();
        disk.write_at("d/a", 5, b" world").unwrap();
        disk.sync("d/a").unwrap();
        disk.sync_dir("d").unwrap();
        assert_eq!(disk.read_all("d/a").unwrap().unwrap(), b"hello world");
        disk.write_atomic("d", "meta", b"m").unwrap();
        assert_eq!(disk.list("d").unwrap(), vec!["a", "meta"]);
        disk.truncate("d/a", 5).unwrap();
        assert_eq!(disk.len("d/a").unwrap(), Some(5));
        disk.remove("d/a").unwrap();
        assert_eq!(disk.len("d/a").unwrap(), None);
        assert!(matches!(disk.remove("d/a"), Err(DiskError::NotFound(_))));
        assert!(disk.write_at("../x", 0, b"x").is_err());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_file_store_on_real_files_reopens() {
        let root = scratch_dir("store");
        let config = FileStoreConfig {
            dir: "stream".into(),
            block_size: 1024,
            cache_blocks: 2,
            sync: SyncPolicy::BeforeAck,
            ..FileStoreConfig::default()
        };
        let disk = RealDisk::new(&root).unwrap();
        let mut store = FileStore::open_on(disk, config.clone(), StoreConfig::default()).unwrap();
        for i in 0..100u64 {
            let payload = format!("message {i}");
            store
                .store_msg(b"orders.new", b"", payload.as_bytes(), WallTime(i), None)
                .unwrap();
        }
        let mut durable = 0;
        while let Some(action) = store.poll_action() {
            match action {
                StoreAction::Sync { tag, files, dirs } => {
                    let result = perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
                    store.handle_sync_done(tag, result);
                }
                StoreAction::Durable { through } => durable = through,
                StoreAction::Warning(text) => panic!("unexpected warning {text}"),
            }
        }
        assert_eq!(durable, 100);
        drop(store);
        let disk = RealDisk::new(&root).unwrap();
        let mut store = FileStore::open_on(disk, config, StoreConfig::default()).unwrap();
        assert_eq!(store.state().msgs, 100);
        assert_eq!(store.load_msg(42).unwrap().payload, &b"message 41"[..]);
        fs::remove_dir_all(root).unwrap();
    }
}

/// A dedicated OS thread that owns a value (a store on a [`RealDisk`]) and
/// runs closures on it, so blocking file work and fsync never run on a
/// tokio worker. Calls run one at a time in the order sent.
///
/// Bound: at most `QUEUE_MAX` calls wait; `call` awaits room beyond that.
pub struct IoThread<S: Send + 'static> {
    sender: tokio::sync::mpsc::Sender<Job<S>>,
    thread: Option<std::thread::JoinHandle<S>>,
}

/// One call queued for an [`IoThread`].
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Calls waiting for an [`IoThread`] before `call` waits for room.
pub const QUEUE_MAX: usize = 1024;

impl<S: Send + 'static> IoThread<S> {
    /// Start a thread named `name` owning `state`.
    pub fn spawn(name: &str, mut state: S) -> io::Result<IoThread<S>> {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Job<S>>(QUEUE_MAX);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Some(job) = receiver.blocking_recv() {
                    job(&mut state);
                }
                state
            })?;
        Ok(IoThread {
            sender,
            thread: Some(thread),
        })
    }

    /// Run `job` on the thread and await its result. `None` if the thread
    /// is gone (a job panicked).
    pub async fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job<S> = Box::new(move |state: &mut S| {
            let _ = reply.send(job(state));
        });
        self.sender.send(job).await.ok()?;
        answer.await.ok()
    }

    /// Stop taking calls, wait for the queued ones, and hand the state back.
    pub fn shutdown(mut self) -> Option<S> {
        let thread = self.thread.take()?;
        drop(self.sender);
        thread.join().ok()
    }
}

#[cfg(test)]
mod io_thread_tests {
    use super::*;
    use rnats_core::store::{perform_sync, FileStore, FileStoreConfig, StoreAction, StoreConfig};
    use rnats_core::time::WallTime;

    #[tokio::test]
    async fn a_store_runs_on_its_io_thread() {
        let root = std::env::temp_dir().join(format!("rnats-io-thread-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let disk = RealDisk::new(&root).unwrap();
        let store =
            FileStore::open_on(disk, FileStoreConfig::default(), StoreConfig::default()).unwrap();
        let thread = IoThread::spawn("store-io", store).unwrap();
        let seq = thread
            .call(|store| store.store_msg(b"a", b"", b"hello", WallTime(1), None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seq, 1);
        // The sync is carried out on the I/O thread too; the ack follows it.
        let durable = thread
            .call(|store| {
                let mut durable = 0;
                while let Some(action) = store.poll_action() {
                    match action {
                        StoreAction::Sync { tag, files, dirs } => {
                            let result =
                                perform_sync(store.backend_mut().disk_mut(), &files, &dirs);
                            store.handle_sync_done(tag, result);
                        }
                        StoreAction::Durable { through } => durable = through,
                        StoreAction::Warning(_) => {}
                    }
                }
                durable
            })
            .await
            .unwrap();
        assert_eq!(durable, 1);
        let store = thread.shutdown().unwrap();
        assert_eq!(store.state().msgs, 1);
        fs::remove_dir_all(root).unwrap();
    }
}
