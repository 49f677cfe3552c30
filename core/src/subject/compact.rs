//! Small-first containers for the Sublist's trie.
//!
//! Most trie nodes have one child and most subjects one subscriber. A
//! `Vec` grown by `push`/`insert` reserves four slots for its first entry,
//! and a `BTreeMap`/`BTreeSet` a whole eleven-slot leaf, so both waste most
//! of their allocation on sparse tries. These keep up to [`SMALL`] entries
//! in an exactly sized boxed slice (reallocated on every change, which is
//! cheap at that size) and switch to a bigger structure beyond that, so a
//! sparse trie costs one tight allocation per node while a hot node with
//! thousands of children keeps cheap inserts and lookups.
//!
//! Invariants:
//! - [`SmallSet`]: the slice form is sorted with no duplicates, holds at most
//!   `SMALL` values and iterates in the same (ascending) order as the B-tree
//!   form, so which form is in use never shows: match results list a node's
//!   subscribers in this order.
//! - [`SmallMap`]: keys are unique; the slice form holds at most `SMALL`
//!   entries. Its iteration order (slice: insertion order with swap-removes;
//!   wide: hash order with a fixed seed) is deterministic but arbitrary, and
//!   the trie only ever looks children up or counts them, so it reaches no
//!   output.
//! - [`Token`]s of at most [`INLINE`] bytes are stored inline, zero-padded,
//!   so equal tokens have equal representations.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use super::hash::FixedMap;

/// Entries kept in a boxed slice before switching to a B-tree or hash map.
pub const SMALL: usize = 8;

/// Longest token stored without a heap allocation (a `Token` is 24 bytes,
/// the size of the `Box<[u8]>` + tag it replaces).
pub const INLINE: usize = 22;

/// One subject token as a trie key.
#[derive(Clone)]
pub enum Token {
    /// `bytes[len..]` are zero.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<[u8]>),
}

impl Token {
    /// The inline form of `token`, or `None` if it is too long for one.
    #[inline]
    fn inline(token: &[u8]) -> Option<Token> {
        if token.len() > INLINE {
            return None;
        }
        let mut bytes = [0u8; INLINE];
        bytes[..token.len()].copy_from_slice(token);
        Some(Token::Inline {
            len: token.len() as u8,
            bytes,
        })
    }

    fn new(token: &[u8]) -> Token {
        Token::inline(token).unwrap_or_else(|| Token::Heap(token.into()))
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Token::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Token::Heap(bytes) => bytes,
        }
    }

    /// Equality against a probe built by [`Token::inline`] (or, for long
    /// keys, the raw bytes). Inline against inline compares fixed-size
    /// arrays, which compiles to a few word compares instead of a `memcmp`
    /// call: the point of this type on the hot path.
    #[inline]
    fn eq_probe(&self, probe: &Probe<'_>) -> bool {
        match (self, probe) {
            (
                Token::Inline { len, bytes },
                Probe::Inline(Token::Inline {
                    len: probe_len,
                    bytes: probe_bytes,
                }),
            ) => len == probe_len && bytes == probe_bytes,
            (Token::Heap(bytes), Probe::Long(key)) => **bytes == **key,
            // An inline token is never equal to a long key, nor the reverse.
            _ => false,
        }
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Token {}

/// Hashes exactly as the `[u8]` it holds, as `Borrow<[u8]>` requires.
impl Hash for Token {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Token {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A lookup key prepared once per lookup.
enum Probe<'k> {
    Inline(Token),
    Long(&'k [u8]),
}

impl<'k> Probe<'k> {
    #[inline]
    fn new(key: &'k [u8]) -> Self {
        match Token::inline(key) {
            Some(token) => Probe::Inline(token),
            None => Probe::Long(key),
        }
    }
}

/// A sorted set of `Copy` values.
#[derive(Debug)]
pub enum SmallSet<V> {
    Few(Box<[V]>),
    // Boxed on purpose: the set is rare, and boxing keeps the enum 16 bytes
    // (an inline `BTreeSet` would make every node's set 32).
    #[allow(clippy::box_collection)]
    Many(Box<BTreeSet<V>>),
}

impl<V> Default for SmallSet<V> {
    fn default() -> Self {
        SmallSet::Few(Box::new([]))
    }
}

impl<V: Copy + Ord> SmallSet<V> {
    pub fn is_empty(&self) -> bool {
        match self {
            SmallSet::Few(values) => values.is_empty(),
            SmallSet::Many(values) => values.is_empty(),
        }
    }

    /// False if `value` was already there.
    pub fn insert(&mut self, value: V) -> bool {
        match self {
            SmallSet::Few(values) => match values.binary_search(&value) {
                Ok(_) => false,
                Err(at) if values.len() < SMALL => {
                    // Exactly sized: one allocation of len + 1 values.
                    let mut grown = Vec::with_capacity(values.len() + 1);
                    grown.extend_from_slice(&values[..at]);
                    grown.push(value);
                    grown.extend_from_slice(&values[at..]);
                    debug_assert!(grown.len() == grown.capacity());
                    *values = grown.into_boxed_slice();
                    true
                }
                Err(_) => {
                    let mut set: BTreeSet<V> = values.iter().copied().collect();
                    set.insert(value);
                    *self = SmallSet::Many(Box::new(set));
                    true
                }
            },
            SmallSet::Many(values) => values.insert(value),
        }
    }

    /// False if `value` was not there.
    pub fn remove(&mut self, value: &V) -> bool {
        match self {
            SmallSet::Few(values) => match values.binary_search(value) {
                Ok(at) => {
                    // Rebuilt exactly sized; an emptied set holds no allocation.
                    let mut shrunk = Vec::with_capacity(values.len() - 1);
                    shrunk.extend_from_slice(&values[..at]);
                    shrunk.extend_from_slice(&values[at + 1..]);
                    *values = shrunk.into_boxed_slice();
                    true
                }
                Err(_) => false,
            },
            SmallSet::Many(values) => values.remove(value),
        }
    }

    /// Ascending.
    pub fn iter(&self) -> impl Iterator<Item = &V> + '_ {
        let (few, many) = match self {
            SmallSet::Few(values) => (Some(values.iter()), None),
            SmallSet::Many(values) => (None, Some(values.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// A map from subject tokens; see the module documentation for its order.
#[derive(Debug)]
pub enum SmallMap<T> {
    Few(Box<[(Token, T)]>),
    Many(Box<FixedMap<Token, T>>),
}

impl<T> Default for SmallMap<T> {
    fn default() -> Self {
        SmallMap::Few(Box::new([]))
    }
}

impl<T> SmallMap<T> {
    pub fn is_empty(&self) -> bool {
        match self {
            SmallMap::Few(entries) => entries.is_empty(),
            SmallMap::Many(entries) => entries.is_empty(),
        }
    }

    /// Position of `key` in the slice form: a linear scan, since at most
    /// `SMALL` inline compares beat a binary search's `memcmp`s.
    #[inline]
    fn position(entries: &[(Token, T)], key: &[u8]) -> Option<usize> {
        let probe = Probe::new(key);
        entries.iter().position(|(token, _)| token.eq_probe(&probe))
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&T> {
        match self {
            SmallMap::Few(entries) => Self::position(entries, key).map(|at| &entries[at].1),
            SmallMap::Many(entries) => entries.get(key),
        }
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        match self {
            SmallMap::Few(entries) => Self::position(entries, key).map(|at| &mut entries[at].1),
            SmallMap::Many(entries) => entries.get_mut(key),
        }
    }

    /// The entry for `key`, created with `make` if absent.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> T) -> &mut T {
        if let SmallMap::Few(entries) = self {
            if entries.len() >= SMALL && Self::position(entries, key).is_none() {
                // The ninth key: move to the hash map, then insert below.
                let mut map = FixedMap::with_capacity_and_hasher(SMALL + 1, Default::default());
                map.extend(std::mem::take(entries).into_vec());
                *self = SmallMap::Many(Box::new(map));
            }
        }
        match self {
            SmallMap::Few(entries) => {
                let at = match Self::position(entries, key) {
                    Some(at) => at,
                    None => {
                        debug_assert!(entries.len() < SMALL);
                        // `into_vec` and `into_boxed_slice` keep the
                        // allocation; `reserve_exact` grows it by one entry.
                        let mut grown = std::mem::take(entries).into_vec();
                        grown.reserve_exact(1);
                        grown.push((Token::new(key), make()));
                        *entries = grown.into_boxed_slice();
                        entries.len() - 1
                    }
                };
                &mut entries[at].1
            }
            SmallMap::Many(entries) => {
                // Two lookups when absent; the key is built only when new.
                if entries.contains_key(key) {
                    entries.get_mut(key).expect("present")
                } else {
                    entries.entry(Token::new(key)).or_insert_with(make)
                }
            }
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        match self {
            SmallMap::Few(entries) => {
                let at = Self::position(entries, key)?;
                let mut shrunk = std::mem::take(entries).into_vec();
                let (_, value) = shrunk.swap_remove(at);
                shrunk.shrink_to_fit();
                *entries = shrunk.into_boxed_slice();
                Some(value)
            }
            SmallMap::Many(entries) => {
                let value = entries.remove(key);
                // A wide level that empties out gives its table back; one
                // that only shrinks keeps it (it may well grow again).
                if entries.is_empty() {
                    *self = SmallMap::default();
                }
                value
            }
        }
    }

    /// In no particular (but deterministic) order: for counting only.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        let (few, many) = match self {
            SmallMap::Few(entries) => (Some(entries.iter().map(|(_, v)| v)), None),
            SmallMap::Many(entries) => (None, Some(entries.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn sizes_stay_small() {
        // The niche in the boxed slice's pointer holds the tag.
        assert_eq!(std::mem::size_of::<Token>(), 24);
        assert_eq!(std::mem::size_of::<SmallSet<u64>>(), 16);
        assert_eq!(std::mem::size_of::<SmallMap<u64>>(), 16);
    }

    #[test]
    fn long_and_short_tokens_never_collide() {
        let mut map: SmallMap<u32> = SmallMap::default();
        let long = [b'a'; INLINE + 1];
        *map.get_or_insert_with(&long, || 1) += 0;
        *map.get_or_insert_with(&long[..INLINE], || 2) += 0;
        *map.get_or_insert_with(b"", || 3) += 0;
        assert_eq!(map.get(&long), Some(&1));
        assert_eq!(map.get(&long[..INLINE]), Some(&2));
        assert_eq!(map.get(b""), Some(&3));
        assert_eq!(map.get(b"a\0"), None);
    }

    /// Keys of every length class: empty, inline, the inline limit, long,
    /// and ones equal up to zero padding.
    fn key(n: u8) -> Vec<u8> {
        match n % 6 {
            0 => vec![b'k', n],
            1 => vec![n; INLINE],
            2 => vec![n; INLINE + 1 + usize::from(n % 3)],
            3 => vec![b'k', n, 0],
            4 => Vec::new(),
            _ => vec![n],
        }
    }

    proptest! {
        /// Both containers behave exactly like their B-tree models, across
        /// the switch from the small form (and back to empty).
        #[test]
        fn like_the_btree_models(ops in proptest::collection::vec((any::<bool>(), 0u8..40), 0..300)) {
            let mut set = SmallSet::default();
            let mut set_model = BTreeSet::new();
            let mut map: SmallMap<u8> = SmallMap::default();
            let mut map_model: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
            for (insert, n) in ops {
                let key = key(n);
                if insert {
                    prop_assert_eq!(set.insert(n), set_model.insert(n));
                    *map.get_or_insert_with(&key, || 0) += 1;
                    *map_model.entry(key.clone()).or_insert(0) += 1;
                } else {
                    prop_assert_eq!(set.remove(&n), set_model.remove(&n));
                    prop_assert_eq!(map.remove(&key), map_model.remove(&key));
                }
                prop_assert!(set.iter().copied().eq(set_model.iter().copied()));
                let mut values: Vec<u8> = map.values().copied().collect();
                values.sort_unstable();
                let mut model_values: Vec<u8> = map_model.values().copied().collect();
                model_values.sort_unstable();
                prop_assert_eq!(values, model_values);
                prop_assert_eq!(set.is_empty(), set_model.is_empty());
                prop_assert_eq!(map.is_empty(), map_model.is_empty());
                for probe in [key.clone(), self::key(n.wrapping_add(1)), self::key(n.wrapping_add(6))] {
                    prop_assert_eq!(map.get(&probe).copied(), map_model.get(&probe).copied());
                }
            }
        }
    }
}
