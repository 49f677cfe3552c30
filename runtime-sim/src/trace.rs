//! The trace: a rolling FNV-1a 64 hash over every event and action, and a
//! ring of the most recent ones for failure reports.
//!
//! Each entry names its node (`None` for the world's own events: fault
//! ticks, the heal, the end, a failure), and the node feeds the hash too, so
//! two runs that did the same things on different nodes differ.
//!
//! FNV-1a is fixed (no per-process key), so the same run gives the same hash
//! in every process on every machine.

use std::collections::VecDeque;

use rnats_core::time::Instant;

use crate::node::NodeId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Events kept for the failure report.
const RECENT_MAX: usize = 64;

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(FNV_OFFSET)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub fn write_u64(&mut self, value: u64) {
        self.write(&value.to_le_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash of one byte string.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut hash = Fnv64::default();
        hash.write(bytes);
        hash.finish()
    }
}

/// One traced step, kept compact; rendered only when a failure is reported.
#[derive(Debug, Clone, Copy)]
pub struct TraceEntry {
    pub time: Instant,
    pub node: Option<NodeId>,
    pub what: &'static str,
    pub conn: u64,
    pub value: u64,
}

/// The rolling hash plus the recent entries.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    recent: VecDeque<TraceEntry>,
}

impl Trace {
    pub fn record(
        &mut self,
        time: Instant,
        node: Option<NodeId>,
        what: &'static str,
        conn: u64,
        value: u64,
    ) {
        self.hash.write_u64(time.as_nanos());
        self.hash
            .write_u64(node.map_or(u64::MAX, |node| u64::from(node.0)));
        self.hash.write(what.as_bytes());
        self.hash.write_u64(conn);
        self.hash.write_u64(value);
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(TraceEntry {
            time,
            node,
            what,
            conn,
            value,
        });
    }

    /// Bytes that crossed the network feed the hash too.
    pub fn record_bytes(&mut self, bytes: &[u8]) {
        self.hash.write(bytes);
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The recent entries, oldest first, one readable line each.
    pub fn recent_lines(&self) -> Vec<String> {
        self.recent
            .iter()
            .map(|e| {
                let node = e.node.map_or(String::from("--"), |node| node.to_string());
                format!(
                    "{:>14.6}s  {node:<3} {:<22} conn={:<5} {}",
                    e.time.as_nanos() as f64 / 1e9,
                    e.what,
                    e.conn,
                    e.value
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(Fnv64::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::of(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
