//! A [`Disk`] in front of another that joins appends into one write.
//!
//! Role: a file store appends one record per message; handed to the OS one
//! by one, that is one system call per message, which cost about half of the
//! JetStream thread's time under load (issue #16's profile). `WriteBehind`
//! keeps a run of contiguous appends to one file in memory and writes it as
//! one call when anything else happens.
//!
//! Invariant: the sequence of operations that reaches the inner disk is the
//! one the caller made, with contiguous appends joined; nothing is reordered.
//! Every operation other than an append that continues the held run writes
//! the run first, so reads, lengths, syncs, renames and removes always see
//! what was written before them. The owner calls [`WriteBehind::flush`]
//! before it reports anything durable or asks for a sync (a sync made
//! through another handle would not see held bytes); until then, held bytes
//! are what a process crash loses, like a write the OS never received.
//!
//! A failed write of held bytes is sticky: the caller may already have
//! built on them (a later message's durability), so from then on every
//! write, sync, rename and remove fails; reads still work, and checksums
//! find what is missing. The owner reopens the store to recover.

use super::disk::{Disk, DiskError, DiskResult};

/// Appends held for one file: `bytes` go at `offset` of `path`.
#[derive(Debug, Default)]
struct Held {
    path: String,
    offset: u64,
    bytes: Vec<u8>,
}

/// Writes that continue the held run are joined up to this many bytes.
const HELD_MAX: usize = 1024 * 1024;

#[derive(Debug)]
pub struct WriteBehind<D: Disk> {
    inner: D,
    held: Held,
    /// Why held bytes could not be written, once they could not.
    failure: Option<DiskError>,
}

impl<D: Disk> WriteBehind<D> {
    pub fn new(inner: D) -> Self {
        WriteBehind {
            inner,
            held: Held::default(),
            failure: None,
        }
    }

    /// Why an earlier write of held bytes failed, if one did.
    pub fn failure(&self) -> Option<&DiskError> {
        self.failure.as_ref()
    }

    /// Fails once held bytes were lost; else writes what is held.
    fn ready_to_change(&mut self) -> DiskResult<()> {
        self.flush()?;
        match &self.failure {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Write what is held. On an error the held bytes are dropped: the
    /// caller must treat the file as damaged from `offset` on.
    pub fn flush(&mut self) -> DiskResult<()> {
        if self.held.bytes.is_empty() {
            return Ok(());
        }
        let result = self
            .inner
            .write_at(&self.held.path, self.held.offset, &self.held.bytes);
        self.held.bytes.clear();
        if let Err(error) = &result {
            self.failure.get_or_insert_with(|| error.clone());
        }
        result
    }

    /// Whether bytes wait to be written.
    pub fn holds(&self) -> bool {
        !self.held.bytes.is_empty()
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The inner disk, after writing what is held (an error is left for
    /// the next sync to find: the bytes are not there).
    pub fn inner_mut(&mut self) -> &mut D {
        let _ = self.flush();
        &mut self.inner
    }

    /// As [`WriteBehind::inner_mut`], by value.
    pub fn into_inner(mut self) -> D {
        let _ = self.flush();
        self.inner
    }
}

impl<D: Disk> Disk for WriteBehind<D> {
    fn create_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.create_dir(dir)
    }

    fn list(&mut self, dir: &str) -> DiskResult<Vec<String>> {
        self.flush()?;
        self.inner.list(dir)
    }

    fn len(&mut self, path: &str) -> DiskResult<Option<u64>> {
        self.flush()?;
        self.inner.len(path)
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> DiskResult<usize> {
        self.flush()?;
        self.inner.read_at(path, offset, buf)
    }

    fn write_at(&mut self, path: &str, offset: u64, bytes: &[u8]) -> DiskResult<()> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        let held = &mut self.held;
        let continues = !held.bytes.is_empty()
            && held.path == path
            && held.offset + held.bytes.len() as u64 == offset
            && held.bytes.len() + bytes.len() <= HELD_MAX;
        if continues {
            held.bytes.extend_from_slice(bytes);
            return Ok(());
        }
        self.ready_to_change()?;
        if bytes.is_empty() {
            // Creates the file: not an append to hold.
            return self.inner.write_at(path, offset, bytes);
        }
        let held = &mut self.held;
        held.path.clear();
        held.path.push_str(path);
        held.offset = offset;
        held.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, path: &str, len: u64) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.truncate(path, len)
    }

    fn sync(&mut self, path: &str) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.sync(path)
    }

    fn sync_dir(&mut self, dir: &str) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.sync_dir(dir)
    }

    fn rename(&mut self, from: &str, to: &str) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.rename(from, to)
    }

    fn remove(&mut self, path: &str) -> DiskResult<()> {
        self.ready_to_change()?;
        self.inner.remove(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemDisk;

    #[test]
    fn joins_contiguous_appends_and_writes_before_anything_else() {
        let mut disk = WriteBehind::new(MemDisk::default());
        disk.write_at("a", 0, b"").unwrap();
        disk.write_at("a", 0, b"hello ").unwrap();
        disk.write_at("a", 6, b"world").unwrap();
        assert!(disk.holds());
        // A read sees what was written before it.
        assert_eq!(disk.len("a").unwrap(), Some(11));
        assert!(!disk.holds());
        disk.write_at("a", 11, b"!").unwrap();
        // An append elsewhere writes the held run first.
        disk.write_at("b", 0, b"x").unwrap();
        disk.write_at("a", 3, b"L").unwrap();
        disk.flush().unwrap();
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"helLo world!");
        assert_eq!(disk.read_all("b").unwrap().unwrap(), b"x");
    }
}
