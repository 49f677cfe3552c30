//! The disk interface: every file operation a store makes goes through [`Disk`].
//!
//! Role: the one seam between the passive stores in core and a real or
//! simulated disk. The runtime implements [`Disk`] (`runtime-tokio`: std::fs on
//! an I/O thread; `runtime-sim`: a seeded simulated disk that decides the
//! outcome of every single call). Stores are generic over it (`impl<D: Disk>`),
//! never `dyn`, so the hot path is monomorphic.
//!
//! Inputs/outputs: calls are synchronous and return a [`DiskResult`]. Writes
//! are *not* durable when the call returns: they are durable only once a
//! [`Disk::sync`] of that file has completed. Creating, renaming and removing
//! a file are durable once a [`Disk::sync_dir`] of its directory completed.
//! A store never calls `sync` for message data itself: it asks for the sync
//! with a [`super::StoreAction::Sync`] output and learns of its completion
//! through `handle_sync_done`, so a runtime can batch and schedule syncs and a
//! test can see them (see `super`). Rare bulk operations (purge, compact,
//! truncate, metadata writes) call `sync`/`sync_dir` inline.
//!
//! Invariants of every implementation: paths are relative '/'-separated names
//! without `..`; `list` returns names sorted bytewise (deterministic); a read
//! never returns bytes beyond the file's current length.
//!
//! [`MemDisk`] is a small in-memory implementation for core's own tests: it
//! models pending (unsynced) writes and a power loss that drops them, but has
//! no faults; the simulator's disk adds those.

use std::collections::BTreeMap;
use std::fmt;

/// Why a disk operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskError {
    /// The file or directory does not exist.
    NotFound(String),
    /// The device reported an I/O error (EIO).
    Io(String),
    /// The device is full (ENOSPC).
    NoSpace(String),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NotFound(path) => write!(f, "{path}: no such file or directory"),
            DiskError::Io(path) => write!(f, "{path}: input/output error"),
            DiskError::NoSpace(path) => write!(f, "{path}: no space left on device"),
        }
    }
}

impl std::error::Error for DiskError {}

/// The result of one disk operation.
pub type DiskResult<T> = Result<T, DiskError>;

/// A disk as a store sees it. Every call may fail; the implementation (the
/// simulator above all) decides each outcome.
pub trait Disk {
    /// Create directory `dir` (and its parents) if missing.
    fn create_dir(&mut self, dir: &str) -> DiskResult<()>;
    /// The names of the files directly inside `dir`, sorted bytewise.
    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>>;
    /// The current length of `path`, `None` if it does not exist.
    fn len(&mut self, path: &str) -> DiskResult<Option<u64>>;
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read
    /// (fewer at the end of the file, or on a short read).
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize>;
    /// Write `bytes` at `offset`, creating the file if missing and extending
    /// it if needed. Not durable until a `sync` of `path` completes.
    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()>;
    /// Cut `path` to `len` bytes (or extend it with zeros).
    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()>;
    /// Make everything written to `path` durable.
    fn sync(&mut self, path: &str) -> DiskResult<()>;
    /// Make creations, renames and removals inside `dir` durable.
    fn sync_dir(&mut self, dir: &str) -> DiskResult<()>;
    /// Rename `from` to `to`, replacing `to` atomically if it exists.
    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()>;
    /// Remove `path`. Removing a missing file is `NotFound`.
    fn remove(&mut self, path: &str) -> DiskResult<()>;

    /// Read the whole of `path` (`None` if missing). Loops over short reads.
    fn read_all(&mut self, path: &str) -> DiskResult<Option<Vec<u8>>> {
        let Some(len) = self.len(path)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| DiskError::Io(path.to_string()))?;
        let mut buf = vec![0u8; len];
        let mut filled = 0usize;
        while filled < len {
            let n = self.read_at(path, filled as u64, &mut buf[filled..])?;
            if n == 0 {
                // The file shrank under us or the device returned nothing:
                // hand back what exists.
                buf.truncate(filled);
                break;
            }
            filled += n;
        }
        assert!(
            buf.len() <= len,
            "read_all returned more than the file held"
        );
        Ok(Some(buf))
    }

    /// Write `bytes` as the whole new content of `path` atomically: write a
    /// temporary file, sync it, rename it over `path`, sync the directory.
    fn write_atomic(&mut self, dir: &str, name: &str, bytes: &[u8]) -> DiskResult<()> {
        let path = join(dir, name);
        let temp = join(dir, &format!("{name}.tmp"));
        if self.len(&temp)?.is_some() {
            self.remove(&temp)?;
        }
        self.write_at(&temp, 0, bytes)?;
        self.sync(&temp)?;
        self.rename(&temp, &path)?;
        self.sync_dir(dir)
    }
}

/// One disk shared by several owners (each stream's store, the machine's
/// own metadata, a test harness) in one single-threaded driver: the
/// simulator, core's tests, the fuzzers. Every call borrows the disk for
/// that call only. (runtime-tokio shares real files by cloning `RealDisk`
/// handles instead.)
#[derive(Debug, Default)]
pub struct SharedDisk<D>(pub std::rc::Rc<std::cell::RefCell<D>>);

impl<D> Clone for SharedDisk<D> {
    fn clone(&self) -> Self {
        SharedDisk(self.0.clone())
    }
}

impl<D> SharedDisk<D> {
    pub fn new(disk: D) -> SharedDisk<D> {
        SharedDisk(std::rc::Rc::new(std::cell::RefCell::new(disk)))
    }

    /// Borrow the disk (power loss, bit rot, stats).
    pub fn with<T>(&self, f: impl FnOnce(&mut D) -> T) -> T {
        f(&mut self.0.borrow_mut())
    }
}

impl<D: Disk> Disk for SharedDisk<D> {
    fn create_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.0.borrow_mut().create_dir(dir)
    }
    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        self.0.borrow_mut().list(dir)
    }
    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        self.0.borrow_mut().len(path)
    }
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        self.0.borrow_mut().read_at(path, offset, buf)
    }
    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        self.0.borrow_mut().write_at(path, offset, bytes)
    }
    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        self.0.borrow_mut().truncate(path, len)
    }
    fn sync(&mut self, path: &str) -> DiskResult<()> {
        self.0.borrow_mut().sync(path)
    }
    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.0.borrow_mut().sync_dir(dir)
    }
    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        self.0.borrow_mut().rename(from, to)
    }
    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.0.borrow_mut().remove(path)
    }
}

/// Carry out a [`super::StoreAction::Sync`]: sync each file, then each
/// directory. A file removed since the sync was asked for is skipped (its
/// removal is what the directory sync makes durable).
pub fn perform_sync<D: Disk + ?Sized>(
    disk: &mut D,
    files: &[String],
    dirs: &[String],
) -> DiskResult<()> {
    for file in files {
        match disk.sync(file) {
            Ok(()) | Err(DiskError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    for dir in dirs {
        disk.sync_dir(dir)?;
    }
    Ok(())
}

/// `dir/name`, or `name` when `dir` is empty.
pub fn join(dir: &str, name: &str) -> String {
    debug_assert!(!name.contains(".."), "path component {name:?} climbs");
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory part of `path` ("" for a bare name).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(index) => &path[..index],
        None => "",
    }
}

/// One file of a [`MemDisk`]: what is on the platter and what is not yet.
#[derive(Debug, Clone, Default)]
struct MemFile {
    /// The content readers see.
    current: Vec<u8>,
    /// The content a power loss falls back to (as of the last `sync`).
    durable: Vec<u8>,
}

/// An in-memory disk without faults, for core's tests. Writes are pending
/// until `sync`; names are pending until `sync_dir`; [`MemDisk::power_loss`]
/// drops everything pending, [`MemDisk::process_kill`] nothing.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    /// Inode number by path, as readers see it.
    names: BTreeMap<String, u64>,
    /// Inode number by path as of the last `sync_dir` of each directory.
    durable_names: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, MemFile>,
    next_inode: u64,
    /// Operations carried out, for tests that count syncs.
    pub syncs: u64,
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    /// A power loss: every file falls back to its last synced content, every
    /// directory to its last synced entries.
    pub fn power_loss(&mut self) {
        self.names = self.durable_names.clone();
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|inode, _| live.contains(inode));
        for file in self.inodes.values_mut() {
            file.current = file.durable.clone();
        }
    }

    /// A process kill: the kernel keeps everything written. Nothing changes.
    pub fn process_kill(&mut self) {}

    /// Direct access for corruption tests: the current bytes of `path`.
    pub fn bytes_mut(&mut self, path: &str) -> Option<&mut Vec<u8>> {
        let inode = *self.names.get(path)?;
        let file = self.inodes.get_mut(&inode)?;
        Some(&mut file.current)
    }

    /// Make the current state of every file and name durable (tests only).
    pub fn sync_everything(&mut self) {
        for file in self.inodes.values_mut() {
            file.durable = file.current.clone();
        }
        self.durable_names = self.names.clone();
    }

    fn file(&self, path: &str) -> DiskResult<&MemFile> {
        let inode = self
            .names
            .get(path)
            .ok_or_else(|| DiskError::NotFound(path.to_string()))?;
        Ok(&self.inodes[inode])
    }

    fn file_mut_or_create(&mut self, path: &str) -> &mut MemFile {
        let inode = match self.names.get(path) {
            Some(inode) => *inode,
            None => {
                self.next_inode += 1;
                let inode = self.next_inode;
                self.names.insert(path.to_string(), inode);
                self.inodes.insert(inode, MemFile::default());
                inode
            }
        };
        self.inodes.get_mut(&inode).expect("named inode exists")
    }
}

impl Disk for MemDisk {
    fn create_dir(&mut self, _dir: &str) -> DiskResult<()> {
        Ok(())
    }

    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Ok(self
            .names
            .keys()
            .filter_map(|path| path.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        Ok(self.file(path).ok().map(|file| file.current.len() as u64))
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        let file = self.file(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= file.current.len() {
            return Ok(0);
        }
        let n = buf.len().min(file.current.len() - start);
        buf[..n].copy_from_slice(&file.current[start..start + n]);
        Ok(n)
    }

    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        let file = self.file_mut_or_create(path);
        let start = usize::try_from(offset).map_err(|_| DiskError::NoSpace(path.to_string()))?;
        if file.current.len() < start + bytes.len() {
            file.current.resize(start + bytes.len(), 0);
        }
        file.current[start..start + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        self.file(path)?;
        let file = self.file_mut_or_create(path);
        file.current
            .resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn sync(&mut self, path: &str) -> DiskResult<()> {
        self.file(path)?;
        self.syncs += 1;
        let file = self.file_mut_or_create(path);
        file.durable = file.current.clone();
        Ok(())
    }

    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.syncs += 1;
        let in_dir = |path: &String| parent(path) == dir;
        self.durable_names.retain(|path, _| !in_dir(path));
        for (path, inode) in &self.names {
            if in_dir(path) {
                self.durable_names.insert(path.clone(), *inode);
            }
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        let inode = self
            .names
            .remove(from)
            .ok_or_else(|| DiskError::NotFound(from.to_string()))?;
        self.names.insert(to.to_string(), inode);
        Ok(())
    }

    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| DiskError::NotFound(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_lost_on_power_loss_until_synced() {
        let mut disk = MemDisk::new();
        disk.write_at("d/a", 0, b"hello").unwrap();
        disk.sync("d/a").unwrap();
        disk.sync_dir("d").unwrap();
        disk.write_at("d/a", 5, b" world").unwrap();
        assert_eq!(disk.read_all("d/a").unwrap().unwrap(), b"hello world");
        disk.power_loss();
        assert_eq!(disk.read_all("d/a").unwrap().unwrap(), b"hello");
    }

    #[test]
    fn a_file_not_in_a_synced_directory_vanishes() {
        let mut disk = MemDisk::new();
        disk.write_at("d/a", 0, b"x").unwrap();
        disk.sync("d/a").unwrap();
        disk.power_loss();
        assert_eq!(disk.len("d/a").unwrap(), None);
    }

    #[test]
    fn atomic_write_replaces_whole_content() {
        let mut disk = MemDisk::new();
        disk.write_atomic("d", "meta", b"one").unwrap();
        disk.write_atomic("d", "meta", b"two!").unwrap();
        disk.power_loss();
        assert_eq!(disk.read_all("d/meta").unwrap().unwrap(), b"two!");
        assert_eq!(disk.list("d").unwrap(), vec!["meta".to_string()]);
    }
}
