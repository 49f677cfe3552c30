//! A fixed-seed hasher for the maps on the subscription paths (wide trie
//! levels, the match cache index, per-client sids).
//!
//! Role: lookups by short byte strings, where a B-tree pays one `memcmp` per
//! level and `std`'s default hasher is randomly seeded (forbidden in core).
//! The mixing is FxHash-style (rotate, xor, multiply per 8-byte word) with a
//! final avalanche, because hashbrown takes the bucket from the *low* bits
//! and a plain Fx product leaves them blind to the top bytes of the last
//! word (`t.1.2.x8` and `t.1.2.x9` would share a bucket).
//!
//! Invariants: no seed, no address, no state besides the bytes written, so
//! a map's layout depends only on the sequence of calls. Even so, nothing
//! may let a hash map's iteration order reach output: users only look up,
//! count, or visit in an order that does not show (see each use).
//!
//! Hash flooding: with a known key a client could craft colliding subjects
//! or sids and slow an account's trie level to linear probing. The
//! production runtime therefore sets a random process key
//! ([`set_process_key`]) before it builds anything; without one (the
//! simulator, tests, the fuzzer) the key is 0 and layouts stay reproducible.
//! The key never changes an answer, only which bucket a key lands in.

use core::hash::{BuildHasher, Hasher};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The process's hash key; see the module documentation.
static PROCESS_KEY: AtomicU64 = AtomicU64::new(0);
/// Set by the first hash: a key set later would misplace existing entries.
static HASHED: AtomicBool = AtomicBool::new(false);

/// Key every map's hashes with `key`. Call once, before any map exists (the
/// runtime does it first thing); a later call would strand the entries of
/// maps already built, so it panics instead.
pub fn set_process_key(key: u64) {
    assert!(
        !HASHED.load(Ordering::Acquire),
        "the hash key must be set before any map is used"
    );
    PROCESS_KEY.store(key, Ordering::Release);
}

/// Builds [`FixedHasher`]s keyed with the process key; zero-sized, so a map
/// pays nothing for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = FixedHasher;

    #[inline]
    fn build_hasher(&self) -> FixedHasher {
        if !HASHED.load(Ordering::Relaxed) {
            HASHED.store(true, Ordering::Release);
        }
        FixedHasher {
            hash: PROCESS_KEY.load(Ordering::Relaxed),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct FixedHasher {
    hash: u64,
}

/// The 64-bit FxHash multiplier (from the golden ratio).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FixedHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FixedHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if !bytes.is_empty() {
            // The tail, zero-padded; the length is hashed separately (slices
            // write it first), so "a" and "a\0" still differ.
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Avalanche (the fmix64 finalizer) so every input bit reaches the low
        // bits hashbrown indexes with and the high bits it tags with.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A `HashMap` with [`FixedState`]: deterministic layout, no random seed.
pub type FixedMap<K, V> = std::collections::HashMap<K, V, FixedState>;

#[cfg(test)]
mod tests {
    use super::*;
    fn hash(bytes: &[u8]) -> u64 {
        FixedState.hash_one(bytes)
    }

    #[test]
    fn fixed_and_sensitive_to_every_byte() {
        assert_eq!(hash(b"t.1.2.x"), hash(b"t.1.2.x"));
        assert_ne!(hash(b"a"), hash(b"a\0"));
        // Subjects differing only in the top byte of the last word must land
        // in different low-bit buckets.
        let low = |h: u64| h & 0xffff;
        assert_ne!(low(hash(b"t.1.2.x8")), low(hash(b"t.1.2.x9")));
        let mut buckets = std::collections::BTreeSet::new();
        for i in 0..1000 {
            buckets.insert(hash(format!("t.{i}.7.x").as_bytes()) & 4095);
        }
        // 1000 keys into 4096 buckets: a decent hash leaves few collisions.
        assert!(buckets.len() > 850, "{} distinct buckets", buckets.len());
    }
}
