//! Small-first containers for the Sublist's trie.
//!
//! Most trie nodes have one child and most subjects one subscriber, and a
//! `BTreeMap`/`BTreeSet` allocates a whole B-tree leaf (room for eleven
//! entries) for even one. These keep up to [`SMALL`] entries in a sorted
//! `Vec` and switch to the B-tree beyond that, so a sparse trie costs a few
//! dozen bytes per entry while a hot node with thousands of children keeps
//! logarithmic inserts.
//!
//! Invariants: the `Vec` forms are sorted by key with no duplicates, hold at
//! most `SMALL` entries, and iterate in the same (ascending) order as the
//! B-tree forms, so which form is in use never shows in any output.

use std::collections::{BTreeMap, BTreeSet};

/// Entries kept in a sorted `Vec` before switching to a B-tree.
pub const SMALL: usize = 8;

/// A sorted set of `Copy` values.
#[derive(Debug)]
pub enum SmallSet<V> {
    Few(Vec<V>),
    Many(BTreeSet<V>),
}

impl<V> Default for SmallSet<V> {
    fn default() -> Self {
        SmallSet::Few(Vec::new())
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
                    values.insert(at, value);
                    true
                }
                Err(_) => {
                    let mut set: BTreeSet<V> = values.drain(..).collect();
                    set.insert(value);
                    *self = SmallSet::Many(set);
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
                    values.remove(at);
                    if values.is_empty() {
                        // Give the allocation back: empty nodes are pruned
                        // anyway, but a set emptied and kept costs nothing.
                        *values = Vec::new();
                    }
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

/// A sorted map from byte-string keys.
#[derive(Debug)]
pub enum SmallMap<T> {
    Few(Vec<(Box<[u8]>, T)>),
    Many(BTreeMap<Box<[u8]>, T>),
}

impl<T> Default for SmallMap<T> {
    fn default() -> Self {
        SmallMap::Few(Vec::new())
    }
}

impl<T> SmallMap<T> {
    pub fn is_empty(&self) -> bool {
        match self {
            SmallMap::Few(entries) => entries.is_empty(),
            SmallMap::Many(entries) => entries.is_empty(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        match self {
            SmallMap::Few(entries) => entries
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|at| &entries[at].1),
            SmallMap::Many(entries) => entries.get(key),
        }
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        match self {
            SmallMap::Few(entries) => entries
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|at| &mut entries[at].1),
            SmallMap::Many(entries) => entries.get_mut(key),
        }
    }

    /// The entry for `key`, created with `make` if absent.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> T) -> &mut T {
        if let SmallMap::Few(entries) = self {
            if let Err(at) = entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
                if entries.len() < SMALL {
                    entries.insert(at, (key.into(), make()));
                } else {
                    let map: BTreeMap<Box<[u8]>, T> = entries.drain(..).collect();
                    *self = SmallMap::Many(map);
                    return self.get_or_insert_with(key, make);
                }
            }
            return self.get_mut(key).expect("present or just inserted");
        }
        let SmallMap::Many(entries) = self else {
            unreachable!("the Few form returned above");
        };
        // Two lookups either way; the key is boxed only when it is new.
        if entries.contains_key(key) {
            entries.get_mut(key).expect("present")
        } else {
            entries.entry(key.into()).or_insert_with(make)
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        match self {
            SmallMap::Few(entries) => {
                let at = entries
                    .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                    .ok()?;
                let (_, value) = entries.remove(at);
                if entries.is_empty() {
                    *entries = Vec::new();
                }
                Some(value)
            }
            SmallMap::Many(entries) => entries.remove(key),
        }
    }

    /// In ascending key order.
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

    proptest! {
        /// Both containers behave exactly like their B-tree models, across
        /// the switch from the small form.
        #[test]
        fn like_the_btree_models(ops in proptest::collection::vec((any::<bool>(), 0u8..24), 0..200)) {
            let mut set = SmallSet::default();
            let mut set_model = BTreeSet::new();
            let mut map: SmallMap<u8> = SmallMap::default();
            let mut map_model: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
            for (insert, n) in ops {
                let key = vec![n];
                if insert {
                    prop_assert_eq!(set.insert(n), set_model.insert(n));
                    *map.get_or_insert_with(&key, || 0) += 1;
                    *map_model.entry(key.clone()).or_insert(0) += 1;
                } else {
                    prop_assert_eq!(set.remove(&n), set_model.remove(&n));
                    prop_assert_eq!(map.remove(&key), map_model.remove(&key));
                }
                prop_assert!(set.iter().copied().eq(set_model.iter().copied()));
                prop_assert!(map.values().copied().eq(map_model.values().copied()));
                prop_assert_eq!(set.is_empty(), set_model.is_empty());
                prop_assert_eq!(map.is_empty(), map_model.is_empty());
                prop_assert_eq!(map.get(&key).copied(), map_model.get(&key).copied());
            }
        }
    }
}
