//! The simulated disk: every outcome of every file operation drawn from a seed.
//!
//! Role: carry out core's [`Disk`] calls for stores under the simulator, with
//! the failure modes real disks have, deterministically.
//!
//! Inputs: `Disk` calls; `power_loss()` and `process_kill()` from the
//! harness; `flip_bit_at_rest()` to rot a stored bit.
//! Outputs: call results; `trace_hash()`, a rolling hash of every call and
//! its outcome (the same seed gives the same hash).
//!
//! The model:
//! - A write is pending until a `sync` of its file completes. A power loss
//!   keeps, per file, either none of the pending writes, a prefix of them,
//!   or a prefix whose last write is torn at a sector boundary.
//! - Creating, renaming and removing are pending until a `sync_dir` of the
//!   directory; a power loss keeps a prefix of those in the order made.
//! - A process kill keeps everything (the kernel has it).
//! - Faults, each with a probability from [`SimDiskFaults`]: EIO on read,
//!   write or sync (a failed write may leave a prefix of its bytes; a failed
//!   sync makes nothing durable), ENOSPC on write, short reads, a bit
//!   flipped in what a read returns.
//!
//! Invariants: nothing here reads the clock or an unseeded random source;
//! all maps are `BTreeMap`s, so iteration order is the call order's.

use std::collections::{BTreeMap, BTreeSet};

use rnats_core::store::disk::parent;
use rnats_core::store::{Disk, DiskError, DiskResult};

use crate::rng::Rng;

/// Fault probabilities, each per call of the kind named.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimDiskFaults {
    pub read_error: f64,
    pub short_read: f64,
    /// A bit flipped in the bytes a read returns (the stored bytes stay good).
    pub read_bit_flip: f64,
    pub write_error: f64,
    pub no_space: f64,
    pub sync_error: f64,
}

impl SimDiskFaults {
    /// Swarm draw: each fault on or off and at what rate, from `rng`.
    pub fn draw(rng: &mut Rng, max_rate: f64) -> SimDiskFaults {
        let rate = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                0.0
            } else {
                rng.unit() * max_rate
            }
        };
        SimDiskFaults {
            read_error: rate(rng),
            short_read: rate(rng),
            read_bit_flip: 0.0,
            write_error: rate(rng),
            no_space: rate(rng),
            sync_error: rate(rng),
        }
    }
}

/// What a power loss does to pending writes (per file, drawn each time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    All,
    Prefix,
    TornPrefix,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    Truncate { len: u64 },
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
    /// The disk-wide serial number of each pending operation, in order.
    serials: Vec<u64>,
}

#[derive(Debug, Clone)]
enum NameOp {
    Link {
        path: String,
        inode: u64,
        serial: u64,
    },
    Unlink {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        inode: u64,
    },
}

impl NameOp {
    fn dir(&self) -> &str {
        match self {
            NameOp::Link { path, .. } | NameOp::Unlink { path } => parent(path),
            NameOp::Rename { to, .. } => parent(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<String, u64>) {
        match self {
            NameOp::Link { path, inode, .. } => {
                names.insert(path.clone(), *inode);
            }
            NameOp::Unlink { path } => {
                names.remove(path);
            }
            NameOp::Rename { from, to, inode } => {
                names.remove(from);
                names.insert(to.clone(), *inode);
            }
        }
    }
}

/// Counts of what happened, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub calls: u64,
    pub syncs: u64,
    pub faults: u64,
    pub power_losses: u64,
    pub torn_writes: u64,
}

/// A deterministic simulated disk.
pub struct SimDisk {
    rng: Rng,
    faults: SimDiskFaults,
    sector: u64,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    name_log: Vec<NameOp>,
    files: BTreeMap<u64, SimFile>,
    dirs: BTreeSet<String>,
    next_inode: u64,
    /// Counts every write, truncate and file creation: the order in which
    /// they were made, for `unsynced_through`.
    serial: u64,
    stats: SimDiskStats,
    hash: u64,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("files", &self.names.len())
            .field("stats", &self.stats)
            .field("trace_hash", &self.hash)
            .finish()
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl SimDisk {
    /// A disk whose every choice comes from `rng`.
    pub fn new(rng: Rng, faults: SimDiskFaults) -> SimDisk {
        SimDisk {
            rng,
            faults,
            sector: 512,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            name_log: Vec::new(),
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            next_inode: 1,
            serial: 0,
            stats: SimDiskStats::default(),
            hash: FNV_OFFSET,
        }
    }

    /// A disk from a seed (the simulator's DISK stream).
    pub fn from_seed(seed: u64, faults: SimDiskFaults) -> SimDisk {
        SimDisk::new(Rng::stream(seed, DISK_STREAM), faults)
    }

    pub fn set_faults(&mut self, faults: SimDiskFaults) {
        self.faults = faults;
    }

    pub fn stats(&self) -> SimDiskStats {
        self.stats
    }

    /// A hash of every call and outcome so far.
    pub fn trace_hash(&self) -> u64 {
        self.hash
    }

    fn note(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    fn note_call(&mut self, what: &str, path: &str, detail: u64) {
        self.stats.calls += 1;
        self.note(what.as_bytes());
        self.note(path.as_bytes());
        self.note(&detail.to_le_bytes());
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.unit() < probability
    }

    fn fault(&mut self, probability: f64) -> bool {
        let hit = self.chance(probability);
        if hit {
            self.stats.faults += 1;
            self.note(b"fault");
        }
        hit
    }

    fn inode(&self, path: &str) -> DiskResult<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| DiskError::NotFound(path.to_string()))
    }

    /// A power loss: pending writes and name changes are lost, kept in part
    /// or torn, file by file, as the seed decides.
    pub fn power_loss(&mut self) {
        self.stats.power_losses += 1;
        self.note(b"power-loss");
        let kept_names = self.rng.below(self.name_log.len() as u64 + 1) as usize;
        for op in self.name_log.drain(..kept_names) {
            op.apply(&mut self.durable_names);
        }
        self.name_log.clear();
        self.names = self.durable_names.clone();
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.files.retain(|inode, _| live.contains(inode));
        let inodes: Vec<u64> = self.files.keys().copied().collect();
        for inode in inodes {
            let loss = match self.rng.below(3) {
                0 => Loss::All,
                1 => Loss::Prefix,
                _ => Loss::TornPrefix,
            };
            self.lose_pending(inode, loss);
        }
    }

    fn lose_pending(&mut self, inode: u64, loss: Loss) {
        let sector = self.sector;
        let file = self.files.get_mut(&inode).expect("listed inode");
        let pending = std::mem::take(&mut file.pending);
        file.serials.clear();
        let mut content = std::mem::take(&mut file.durable);
        let kept = match loss {
            Loss::All => 0,
            Loss::Prefix | Loss::TornPrefix => self.rng.below(pending.len() as u64 + 1) as usize,
        };
        for op in &pending[..kept] {
            apply(&mut content, op);
        }
        if loss == Loss::TornPrefix {
            if let Some(Pending::Write { offset, bytes }) = pending.get(kept) {
                // Sectors are written whole or not at all: keep the part of
                // this write that ends on a sector boundary chosen at random.
                let end = offset + bytes.len() as u64;
                let first_boundary = (offset / sector + 1) * sector;
                if first_boundary < end {
                    let boundaries = (end - first_boundary) / sector + 1;
                    let cut = first_boundary + self.rng.below(boundaries) * sector;
                    let keep = (cut - offset).min(bytes.len() as u64) as usize;
                    apply(
                        &mut content,
                        &Pending::Write {
                            offset: *offset,
                            bytes: bytes[..keep].to_vec(),
                        },
                    );
                    self.stats.torn_writes += 1;
                }
            }
        }
        let file = self.files.get_mut(&inode).expect("listed inode");
        file.durable = content.clone();
        file.current = content;
    }

    /// A process kill: the kernel keeps every write. Nothing changes.
    pub fn process_kill(&mut self) {
        self.note(b"process-kill");
    }

    /// Flip one stored bit of a random non-empty file, in what a power loss
    /// keeps and in what reads see. Returns the file and the byte offset.
    pub fn flip_bit_at_rest(&mut self) -> Option<(String, u64)> {
        let candidates: Vec<(String, u64)> = self
            .names
            .iter()
            .filter(|(_, inode)| !self.files[inode].current.is_empty())
            .map(|(path, inode)| (path.clone(), *inode))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, inode) = candidates[self.rng.below(candidates.len() as u64) as usize].clone();
        let file = self.files.get_mut(&inode).expect("named inode");
        let at = self.rng.below(file.current.len() as u64) as usize;
        let bit = 1u8 << self.rng.below(8);
        file.current[at] ^= bit;
        if at < file.durable.len() {
            file.durable[at] ^= bit;
        }
        self.note(b"bit-rot");
        Some((path, at as u64))
    }

    /// The serial number of the latest write, truncate or file creation.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// A file directly in `dir`, named now, that a power loss could still
    /// take back to before operation `serial`: one of its writes or
    /// truncates numbered `serial` or lower is pending, or its creation is.
    pub fn unsynced_through(&self, dir: &str, serial: u64) -> Option<String> {
        for (path, inode) in self.names.iter().filter(|(p, _)| parent(p) == dir) {
            if self.files[inode]
                .serials
                .first()
                .is_some_and(|s| *s <= serial)
            {
                return Some(path.clone());
            }
        }
        self.name_log.iter().find_map(|op| match op {
            NameOp::Link {
                path,
                inode,
                serial: made,
            } if *made <= serial && parent(path) == dir && self.names.get(path) == Some(inode) => {
                Some(path.clone())
            }
            _ => None,
        })
    }

    /// The current bytes of `path` (tests).
    pub fn contents(&self, path: &str) -> Option<&[u8]> {
        let inode = self.names.get(path)?;
        Some(&self.files[inode].current)
    }

    fn link_new(&mut self, path: &str) -> u64 {
        let inode = self.next_inode;
        self.next_inode += 1;
        self.files.insert(inode, SimFile::default());
        self.names.insert(path.to_string(), inode);
        self.serial += 1;
        self.name_log.push(NameOp::Link {
            path: path.to_string(),
            inode,
            serial: self.serial,
        });
        inode
    }
}

/// The simulator's stream number for disks (see `rng::stream`).
pub const DISK_STREAM: u64 = 5;

fn apply(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, bytes } => {
            let start = *offset as usize;
            if content.len() < start + bytes.len() {
                content.resize(start + bytes.len(), 0);
            }
            content[start..start + bytes.len()].copy_from_slice(bytes);
        }
        Pending::Truncate { len } => content.resize(*len as usize, 0),
    }
}

impl Disk for SimDisk {
    fn create_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.note_call("mkdir", dir, 0);
        self.dirs.insert(dir.to_string());
        Ok(())
    }

    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        self.note_call("list", dir, 0);
        if self.fault(self.faults.read_error) {
            return Err(DiskError::Io(dir.to_string()));
        }
        Ok(self
            .names
            .keys()
            .filter(|path| parent(path) == dir)
            .map(|path| path[dir.len() + usize::from(!dir.is_empty())..].to_string())
            .collect())
    }

    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        self.note_call("len", path, 0);
        Ok(self
            .names
            .get(path)
            .map(|inode| self.files[inode].current.len() as u64))
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        self.note_call("read", path, offset);
        let inode = self.inode(path)?;
        if self.fault(self.faults.read_error) {
            return Err(DiskError::Io(path.to_string()));
        }
        let content = &self.files[&inode].current;
        let start = offset as usize;
        if start >= content.len() {
            return Ok(0);
        }
        let mut n = buf.len().min(content.len() - start);
        buf[..n].copy_from_slice(&content[start..start + n]);
        if n > 1 && self.fault(self.faults.short_read) {
            n = 1 + self.rng.below(n as u64 - 1) as usize;
        }
        if n > 0 && self.fault(self.faults.read_bit_flip) {
            let at = self.rng.below(n as u64) as usize;
            buf[at] ^= 1 << self.rng.below(8);
        }
        self.note(&(n as u64).to_le_bytes());
        Ok(n)
    }

    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        self.note_call("write", path, offset);
        self.note(&(bytes.len() as u64).to_le_bytes());
        if self.fault(self.faults.no_space) {
            return Err(DiskError::NoSpace(path.to_string()));
        }
        let inode = match self.names.get(path) {
            Some(inode) => *inode,
            None => self.link_new(path),
        };
        let mut bytes = bytes;
        let failed = self.fault(self.faults.write_error);
        if failed {
            // Part of a failed write may have reached the page cache.
            let part = self.rng.below(bytes.len() as u64) as usize;
            bytes = &bytes[..part];
        }
        let op = Pending::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        self.serial += 1;
        let file = self.files.get_mut(&inode).expect("named inode");
        apply(&mut file.current, &op);
        file.pending.push(op);
        file.serials.push(self.serial);
        if failed {
            return Err(DiskError::Io(path.to_string()));
        }
        Ok(())
    }

    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        self.note_call("truncate", path, len);
        let inode = self.inode(path)?;
        if self.fault(self.faults.write_error) {
            return Err(DiskError::Io(path.to_string()));
        }
        let op = Pending::Truncate { len };
        self.serial += 1;
        let file = self.files.get_mut(&inode).expect("named inode");
        apply(&mut file.current, &op);
        file.pending.push(op);
        file.serials.push(self.serial);
        Ok(())
    }

    fn sync(&mut self, path: &str) -> DiskResult<()> {
        self.note_call("sync", path, 0);
        let inode = self.inode(path)?;
        self.stats.syncs += 1;
        if self.fault(self.faults.sync_error) {
            return Err(DiskError::Io(path.to_string()));
        }
        let file = self.files.get_mut(&inode).expect("named inode");
        file.durable = file.current.clone();
        file.pending.clear();
        file.serials.clear();
        Ok(())
    }

    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.note_call("sync-dir", dir, 0);
        self.stats.syncs += 1;
        if self.fault(self.faults.sync_error) {
            return Err(DiskError::Io(dir.to_string()));
        }
        let mut rest = Vec::new();
        for op in std::mem::take(&mut self.name_log) {
            if op.dir() == dir {
                op.apply(&mut self.durable_names);
            } else {
                rest.push(op);
            }
        }
        self.name_log = rest;
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        self.note_call("rename", from, 0);
        self.note(to.as_bytes());
        let inode = self.inode(from)?;
        if self.fault(self.faults.write_error) {
            return Err(DiskError::Io(from.to_string()));
        }
        self.names.remove(from);
        self.names.insert(to.to_string(), inode);
        self.name_log.push(NameOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
            inode,
        });
        Ok(())
    }

    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.note_call("remove", path, 0);
        self.inode(path)?;
        if self.fault(self.faults.write_error) {
            return Err(DiskError::Io(path.to_string()));
        }
        self.names.remove(path);
        self.name_log.push(NameOp::Unlink {
            path: path.to_string(),
        });
        Ok(())
    }
}

/// A [`SimDisk`] shared by several owners (stores, the harness) in one
/// single-threaded simulation.
pub type SharedSimDisk = rnats_core::store::SharedDisk<SimDisk>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_writes_survive_power_loss_and_pending_ones_may_not() {
        let mut disk = SimDisk::from_seed(1, SimDiskFaults::default());
        disk.write_at("d/a", 0, b"durable").unwrap();
        disk.sync("d/a").unwrap();
        disk.sync_dir("d").unwrap();
        disk.write_at("d/a", 7, &[b'x'; 2000]).unwrap();
        disk.power_loss();
        let content = disk.read_all("d/a").unwrap().unwrap();
        assert_eq!(&content[..7], b"durable");
        assert!(content.len() <= 2007);
        assert!(content[7..].iter().all(|byte| *byte == b'x'));
    }

    #[test]
    fn the_same_seed_gives_the_same_disk() {
        let run = |seed| {
            let faults = SimDiskFaults {
                write_error: 0.1,
                short_read: 0.2,
                ..SimDiskFaults::default()
            };
            let mut disk = SimDisk::from_seed(seed, faults);
            for i in 0..50u64 {
                let _ = disk.write_at("d/f", i * 100, &[i as u8; 300]);
                if i % 7 == 0 {
                    let _ = disk.sync("d/f");
                }
            }
            disk.power_loss();
            (disk.trace_hash(), disk.read_all("d/f").unwrap())
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).0, run(4).0);
    }

    #[test]
    fn power_loss_loses_unsynced_names() {
        let mut disk = SimDisk::from_seed(9, SimDiskFaults::default());
        disk.write_at("d/a", 0, b"a").unwrap();
        disk.sync("d/a").unwrap();
        disk.sync_dir("d").unwrap();
        disk.remove("d/a").unwrap();
        disk.sync_dir("d").unwrap();
        disk.power_loss();
        assert_eq!(disk.len("d/a").unwrap(), None);
    }
}
