//! The Sublist: a trie of subject tokens that finds every subscription a
//! published subject reaches, with a bounded cache of recent answers.
//!
//! Input: `insert`/`remove` of `(subject, queue, value)` entries and `matches`
//! of published subjects. Output: a [`MatchResult`] listing plain values and
//! queue groups. The value `V` is a small `Copy` key the server chooses
//! (typically naming a connection and a subscription id).
//!
//! Matching follows nats-server: `*` matches exactly one token, `>` one or more
//! trailing tokens (`foo.>` does not match `foo`), and a published subject with
//! an empty token (or the empty subject) matches nothing. A published subject
//! is taken literally: `foo.*` reaches subscriptions on `foo.*`, `foo.>` and
//! `>`, but not `foo.bar`.
//!
//! Invariants:
//! - every trie node other than the root holds a subscription or a child, so
//!   removing the last subscription under a path frees the whole path;
//! - `len()` is the number of entries stored, each `(subject, queue, value)`
//!   at most once;
//! - every cached result equals what a fresh walk of the trie would produce:
//!   insert and remove drop exactly the cache entries the changed pattern
//!   matches;
//! - the cache holds at most its capacity ([`CACHE_CAPACITY`] by default)
//!   and evicts with a deterministic clock sweep.

use std::collections::BTreeMap;

use super::compact::{SmallMap, SmallSet};
use super::hash::FixedMap;

use bytes::Bytes;

use super::validate::{
    is_valid_queue_name, is_valid_subscribe_subject, subject_is_literal, tokens, FULL_WILDCARD,
    PARTIAL_WILDCARD, TOKEN_SEPARATOR,
};

/// The most match results the cache keeps (the reference's bound too).
pub const CACHE_CAPACITY: usize = 1024;

/// Why the Sublist refused an insert or a remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SublistError {
    /// The subject has an empty token or a token after `>`
    /// (see [`is_valid_subscribe_subject`]). The server answers
    /// `-ERR 'Invalid Subject'`.
    #[error("invalid subject")]
    InvalidSubject,
    /// The queue name is empty or holds protocol whitespace
    /// (see [`is_valid_queue_name`]).
    #[error("invalid queue name")]
    InvalidQueueName,
    /// This exact `(subject, queue, value)` entry is already stored.
    #[error("subscription already present")]
    AlreadyPresent,
    /// No such `(subject, queue, value)` entry is stored.
    #[error("subscription not found")]
    NotFound,
}

/// Everything a published subject reaches.
///
/// Order: `plain` follows nats-server's trie walk, so a connection with several
/// matching subscriptions sees its MSGs in the reference's order: at each level
/// the `>` subscriptions first, then the `*` branch, and at the last token the
/// literal node before the `*` node; within one node ascending by value.
/// `queues` is sorted by group name (bytewise) and each group's `members`
/// ascending by value. A value
/// stored under several matching subjects appears once per subject. A group
/// name appears once, merging members from every matching subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult<V> {
    /// Subscriptions without a queue group: each gets the message.
    pub plain: Vec<V>,
    /// Queue groups: each group gets the message once, through one member the
    /// server picks.
    pub queues: Vec<QueueGroup<V>>,
}

/// The members of one queue group that a subject reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGroup<V> {
    /// The group name as given on `SUB`.
    pub name: Bytes,
    /// Never empty; sorted ascending.
    pub members: Vec<V>,
}

impl<V> MatchResult<V> {
    /// An empty result; does not allocate.
    pub const fn new() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    /// Whether nothing is reached.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// Empties the result but keeps `plain`'s buffer for the next fill.
    fn clear(&mut self) {
        self.plain.clear();
        self.queues.clear();
    }
}

impl<V> Default for MatchResult<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SublistStats {
    /// Entries stored.
    pub subscriptions: usize,
    /// Results cached.
    pub cache_entries: usize,
    /// Successful inserts since creation.
    pub inserts: u64,
    /// Successful removes since creation.
    pub removes: u64,
    /// Calls to [`Sublist::matches`].
    pub matches: u64,
    /// Of those, answered from the cache.
    pub cache_hits: u64,
}

/// The subscriptions stored at one subject.
#[derive(Debug)]
struct Subscribers<V> {
    plain: SmallSet<V>,
    /// Boxed because few subjects have queue subscribers: an empty
    /// `BTreeMap` would cost every node 24 bytes, `None` costs 8.
    /// Never `Some` of an empty map, never holds an empty set.
    #[allow(clippy::box_collection)]
    queues: Option<Box<BTreeMap<Bytes, SmallSet<V>>>>,
}

impl<V> Default for Subscribers<V> {
    fn default() -> Self {
        Self {
            plain: SmallSet::default(),
            queues: None,
        }
    }
}

impl<V: Copy + Ord> Subscribers<V> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_none()
    }

    /// Returns false if the entry was already there.
    fn insert(&mut self, queue: Option<&[u8]>, value: V) -> bool {
        let Some(name) = queue else {
            return self.plain.insert(value);
        };
        let queues = self.queues.get_or_insert_with(Box::default);
        match queues.get_mut(name) {
            Some(members) => members.insert(value),
            None => {
                let mut members = SmallSet::default();
                members.insert(value);
                queues.insert(Bytes::copy_from_slice(name), members);
                true
            }
        }
    }

    /// Returns false if the entry was not there.
    fn remove(&mut self, queue: Option<&[u8]>, value: V) -> bool {
        let Some(name) = queue else {
            return self.plain.remove(&value);
        };
        let Some(queues) = self.queues.as_mut() else {
            return false;
        };
        let Some(members) = queues.get_mut(name) else {
            return false;
        };
        let removed = members.remove(&value);
        if members.is_empty() {
            queues.remove(name);
            if queues.is_empty() {
                self.queues = None;
            }
        }
        removed
    }

    /// Appends this subject's subscriptions; groups may repeat across subjects
    /// until [`normalize`] merges them.
    fn append_to(&self, out: &mut MatchResult<V>) {
        out.plain.extend(self.plain.iter().copied());
        for (name, members) in self.queues.iter().flat_map(|queues| queues.iter()) {
            debug_assert!(!members.is_empty());
            out.queues.push(QueueGroup {
                name: name.clone(),
                members: members.iter().copied().collect(),
            });
        }
    }
}

/// Puts a freshly collected result into the documented order.
fn normalize<V: Copy + Ord>(result: &mut MatchResult<V>) {
    // `plain` keeps the walk order (see `MatchResult`); each subscription is
    // reached once, since every subscription lives in exactly one node.
    if result.queues.len() > 1 {
        // Stable, so members of one group keep arriving in walk order before
        // the final sort; merging is then a single adjacent pass.
        result.queues.sort_by(|a, b| a.name.cmp(&b.name));
        result.queues.dedup_by(|later, earlier| {
            if later.name != earlier.name {
                return false;
            }
            earlier.members.append(&mut later.members);
            true
        });
    }
    for group in &mut result.queues {
        debug_assert!(!group.members.is_empty());
        group.members.sort_unstable();
    }
}

/// One trie node: the subscriptions whose subject ends here and the next
/// level. The root holds no subscriptions (subjects are never empty).
#[derive(Debug)]
struct Node<V> {
    subscribers: Subscribers<V>,
    literal: SmallMap<Node<V>>,
    partial: Option<Box<Node<V>>>,
    /// `>` is always the last token, so its node needs no next level.
    full: Option<Box<Subscribers<V>>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            subscribers: Subscribers::default(),
            literal: SmallMap::default(),
            partial: None,
            full: None,
        }
    }
}

impl<V: Copy + Ord> Node<V> {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
            && self.literal.is_empty()
            && self.partial.is_none()
            && self.full.is_none()
    }

    /// Nodes below this one; a `>` entry counts as one node.
    fn descendant_count(&self) -> usize {
        let literal: usize = self
            .literal
            .values()
            .map(|n| 1 + n.descendant_count())
            .sum();
        let partial = self
            .partial
            .as_ref()
            .map_or(0, |n| 1 + n.descendant_count());
        literal + partial + usize::from(self.full.is_some())
    }

    /// Walks (creating nodes as needed) to the subscribers of a subject that
    /// already passed [`is_valid_subscribe_subject`].
    fn subscribers_mut(&mut self, subject: &[u8]) -> &mut Subscribers<V> {
        let mut node = self;
        let mut remaining = tokens(subject).peekable();
        while let Some(token) = remaining.next() {
            assert!(!token.is_empty());
            if token == FULL_WILDCARD {
                assert!(remaining.peek().is_none(), "`>` must be the last token");
                return node.full.get_or_insert_with(Box::default);
            }
            node = if token == PARTIAL_WILDCARD {
                node.partial.get_or_insert_with(Box::default)
            } else {
                node.literal.get_or_insert_with(token, Node::default)
            };
        }
        &mut node.subscribers
    }

    /// Removes one entry below this node, pruning every node it leaves empty.
    /// Returns whether the entry was found.
    fn remove_below<'s>(
        &mut self,
        mut remaining: impl Iterator<Item = &'s [u8]>,
        queue: Option<&[u8]>,
        value: V,
    ) -> bool {
        let Some(token) = remaining.next() else {
            return self.subscribers.remove(queue, value);
        };
        if token == FULL_WILDCARD {
            let Some(full) = self.full.as_mut() else {
                return false;
            };
            let found = full.remove(queue, value);
            if full.is_empty() {
                self.full = None;
            }
            return found;
        }
        if token == PARTIAL_WILDCARD {
            let Some(child) = self.partial.as_mut() else {
                return false;
            };
            let found = child.remove_below(remaining, queue, value);
            if child.is_empty() {
                self.partial = None;
            }
            return found;
        }
        let Some(child) = self.literal.get_mut(token) else {
            return false;
        };
        let found = child.remove_below(remaining, queue, value);
        if child.is_empty() {
            self.literal.remove(token);
        }
        found
    }
}

/// Appends every subscription reached by the tokens `ranges` of `subject`,
/// starting at `level`. Loops along literal children and recurses only into
/// `*` branches, so the stack depth is the number of `*` nodes on the way.
fn collect_matches<V: Copy + Ord>(
    mut level: &Node<V>,
    subject: &[u8],
    ranges: &[(usize, usize)],
    out: &mut MatchResult<V>,
) {
    for (index, &(start, end)) in ranges.iter().enumerate() {
        let rest = &ranges[index + 1..];
        if let Some(full) = &level.full {
            full.append_to(out);
        }
        if rest.is_empty() {
            // Last token: the literal node before the `*` node, as the reference.
            if let Some(next) = level.literal.get(&subject[start..end]) {
                next.subscribers.append_to(out);
            }
            if let Some(partial) = &level.partial {
                partial.subscribers.append_to(out);
            }
            return;
        }
        if let Some(partial) = &level.partial {
            collect_matches(partial, subject, rest, out);
        }
        let Some(next) = level.literal.get(&subject[start..end]) else {
            return;
        };
        level = next;
    }
}

/// Splits a published subject into token ranges. Returns false (it can match
/// nothing) for the empty subject or any empty token.
fn tokenize(subject: &[u8], ranges: &mut Vec<(usize, usize)>) -> bool {
    ranges.clear();
    let mut start = 0;
    for (index, &byte) in subject.iter().enumerate() {
        if byte == TOKEN_SEPARATOR {
            if index == start {
                return false;
            }
            ranges.push((start, index));
            start = index + 1;
        }
    }
    if start >= subject.len() {
        return false;
    }
    ranges.push((start, subject.len()));
    true
}

/// Whether the published subject `subject` (taken literally) is reached by a
/// subscription on `pattern`, by the Sublist's rules. A subject with an empty
/// token is reached by nothing.
pub fn subject_matches_pattern(pattern: &[u8], subject: &[u8]) -> bool {
    let mut pattern_tokens = tokens(pattern);
    let mut subject_tokens = tokens(subject);
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (None, None) => return true,
            (Some(pattern_token), Some(subject_token)) => {
                if subject_token.is_empty() || pattern_token.is_empty() {
                    return false;
                }
                if pattern_token == FULL_WILDCARD {
                    return pattern_tokens.next().is_none()
                        && subject_tokens.all(|token| !token.is_empty());
                }
                if pattern_token != PARTIAL_WILDCARD && pattern_token != subject_token {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// One cache line. Free when `subject` is `None`.
#[derive(Debug)]
struct CacheSlot<V> {
    subject: Option<Bytes>,
    /// Set on every hit, cleared as the clock hand passes: a slot survives one
    /// sweep per hit.
    referenced: bool,
    result: MatchResult<V>,
}

/// A bounded map from published subject to match result, in a slab so that a
/// lookup yields an index (no borrow held) and freed results keep their
/// buffers for the next miss.
#[derive(Debug)]
struct MatchCache<V> {
    /// Hashed, not ordered: a B-tree of 1,024 subjects cost ten `memcmp`s per
    /// lookup and per miss. Its order shows only in which slot `invalidate`
    /// frees first, which changes no answer.
    index: FixedMap<Bytes, u32>,
    /// At most `capacity` long.
    slots: Vec<CacheSlot<V>>,
    /// Free slot numbers; `index.len() + free.len() == slots.len()`.
    free: Vec<u32>,
    /// The clock hand; only moves when every slot is live.
    hand: usize,
    /// The most live slots; at least 1.
    capacity: usize,
    /// The slot that answered last. A publisher usually repeats its subject,
    /// and comparing against one slot's subject is cheaper than hashing.
    /// Never trusted blindly: a hit requires that slot to hold the subject
    /// now, so freeing or reusing the slot needs no bookkeeping.
    last: usize,
}

impl<V> MatchCache<V> {
    fn new(capacity: usize) -> Self {
        assert!(capacity >= 1);
        Self {
            index: FixedMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            capacity,
            last: 0,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn lookup(&mut self, subject: &[u8]) -> Option<usize> {
        let slot = match self.slots.get(self.last) {
            Some(line) if line.subject.as_deref() == Some(subject) => self.last,
            _ => *self.index.get(subject)? as usize,
        };
        let line = &mut self.slots[slot];
        debug_assert!(line.subject.as_deref() == Some(subject));
        debug_assert!(self.index.get(subject) == Some(&(slot as u32)));
        line.referenced = true;
        self.last = slot;
        Some(slot)
    }

    /// Takes a slot for `subject` (absent from the cache), evicting if full.
    /// The slot's result is empty on return.
    fn claim(&mut self, subject: &[u8]) -> usize {
        debug_assert!(self.index.len() + self.free.len() == self.slots.len());
        let slot = if let Some(slot) = self.free.pop() {
            slot as usize
        } else if self.slots.len() < self.capacity {
            self.slots.push(CacheSlot {
                subject: None,
                referenced: false,
                result: MatchResult::new(),
            });
            self.slots.len() - 1
        } else {
            self.evict_one()
        };
        let key = Bytes::copy_from_slice(subject);
        let previous = self.index.insert(key.clone(), slot as u32);
        assert!(previous.is_none(), "claimed a subject already cached");
        let line = &mut self.slots[slot];
        assert!(line.subject.is_none());
        line.subject = Some(key);
        line.referenced = false;
        line.result.clear();
        assert!(self.index.len() <= self.capacity);
        self.last = slot;
        slot
    }

    /// Second-chance clock: skip (and unmark) referenced slots, evict the
    /// first unreferenced one. Ends within two turns.
    fn evict_one(&mut self) -> usize {
        assert!(self.free.is_empty() && self.slots.len() == self.capacity);
        loop {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let line = &mut self.slots[slot];
            if line.referenced {
                line.referenced = false;
                continue;
            }
            let subject = line.subject.take().expect("a full cache has no free slot");
            let removed = self.index.remove(&subject);
            assert!(removed == Some(slot as u32));
            return slot;
        }
    }

    /// Drops every cached result a subscription on `pattern` could change.
    fn invalidate(&mut self, pattern: &[u8]) {
        let Self {
            index, slots, free, ..
        } = self;
        let mut release = |slot: u32| {
            let line = &mut slots[slot as usize];
            line.subject = None;
            line.referenced = false;
            line.result.clear();
            free.push(slot);
        };
        if subject_is_literal(pattern) {
            // A literal pattern reaches exactly the byte-equal subject.
            if let Some(slot) = index.remove(pattern) {
                release(slot);
            }
        } else {
            index.retain(|subject, slot| {
                let stale = subject_matches_pattern(pattern, subject);
                if stale {
                    release(*slot);
                }
                !stale
            });
        }
        debug_assert!(index.len() + free.len() == slots.len());
    }
}

/// Subscriptions indexed by subject; see the module documentation.
#[derive(Debug)]
pub struct Sublist<V> {
    root: Node<V>,
    count: usize,
    cache: MatchCache<V>,
    /// Returned for subjects that can match nothing, without touching the cache.
    empty: MatchResult<V>,
    /// The answer of the last [`Sublist::matches_once`], kept for its buffers.
    once: MatchResult<V>,
    /// Reused token ranges of the subject being matched.
    ranges: Vec<(usize, usize)>,
    stats: SublistStats,
}

impl<V: Copy + Ord + core::fmt::Debug> Default for Sublist<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + Ord + core::fmt::Debug> Sublist<V> {
    /// An empty Sublist caching up to [`CACHE_CAPACITY`] results; does not
    /// allocate.
    pub fn new() -> Self {
        Self::with_cache_capacity(CACHE_CAPACITY)
    }

    /// An empty Sublist caching up to `capacity` (at least 1) results.
    pub fn with_cache_capacity(capacity: usize) -> Self {
        Self {
            root: Node::default(),
            count: 0,
            cache: MatchCache::new(capacity),
            empty: MatchResult::new(),
            once: MatchResult::new(),
            ranges: Vec::new(),
            stats: SublistStats::default(),
        }
    }

    /// Stores `value` as a subscription on `subject`, in queue group `queue`
    /// if given. Wildcard tokens are allowed. Refuses an invalid subject or
    /// queue name, or an entry already stored; nothing changes on error.
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: V,
    ) -> Result<(), SublistError> {
        if !is_valid_subscribe_subject(subject) {
            return Err(SublistError::InvalidSubject);
        }
        if queue.is_some_and(|name| !is_valid_queue_name(name)) {
            return Err(SublistError::InvalidQueueName);
        }
        // An existing entry means the path exists, so a refused duplicate
        // creates no node.
        if !self.root.subscribers_mut(subject).insert(queue, value) {
            return Err(SublistError::AlreadyPresent);
        }
        self.count += 1;
        self.stats.inserts += 1;
        self.cache.invalidate(subject);
        Ok(())
    }

    /// Removes the entry stored by the matching [`insert`](Self::insert), and
    /// every trie node it leaves empty.
    pub fn remove(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: V,
    ) -> Result<(), SublistError> {
        if !is_valid_subscribe_subject(subject) {
            return Err(SublistError::InvalidSubject);
        }
        if !self.root.remove_below(tokens(subject), queue, value) {
            return Err(SublistError::NotFound);
        }
        assert!(self.count > 0);
        self.count -= 1;
        self.stats.removes += 1;
        self.cache.invalidate(subject);
        if self.count == 0 {
            assert!(self.root.is_empty(), "no entries left but nodes remain");
        }
        Ok(())
    }

    /// The plain values stored under exactly `subject`, taken literally (a
    /// `*` or `>` token is the wildcard subscription itself): what the
    /// reference's interest notifications count, where a wildcard
    /// subscription that matches `subject` does not.
    pub fn exact_plain(&self, subject: &[u8]) -> impl Iterator<Item = &V> + '_ {
        let mut node = Some(&self.root);
        let mut full = None;
        let mut remaining = tokens(subject).peekable();
        while let (Some(at), Some(token)) = (node, remaining.next()) {
            node = if token == FULL_WILDCARD && remaining.peek().is_none() {
                full = at.full.as_deref();
                None
            } else if token == PARTIAL_WILDCARD {
                at.partial.as_deref()
            } else {
                at.literal.get(token)
            };
        }
        let subscribers = full.or(node.map(|node| &node.subscribers));
        subscribers.into_iter().flat_map(|found| found.plain.iter())
    }

    /// Everything `subject` (a published subject, taken literally) reaches,
    /// in the order documented on [`MatchResult`]. Answers from the cache
    /// without allocating when it can; otherwise walks the trie and caches the
    /// answer. Subjects with an empty token match nothing and are not cached.
    pub fn matches(&mut self, subject: &[u8]) -> &MatchResult<V> {
        self.stats.matches += 1;
        if self.count == 0 {
            return &self.empty;
        }
        if let Some(slot) = self.cache.lookup(subject) {
            self.stats.cache_hits += 1;
            return &self.cache.slots[slot].result;
        }
        if !tokenize(subject, &mut self.ranges) {
            return &self.empty;
        }
        let slot = self.cache.claim(subject);
        let result = &mut self.cache.slots[slot].result;
        debug_assert!(result.is_empty());
        collect_matches(&self.root, subject, &self.ranges, result);
        normalize(result);
        result
    }

    /// [`matches`](Self::matches) for a subject published once (a
    /// JetStream ack names the delivery it acks): walks the trie without
    /// reading or filling the cache, where such a subject would only evict
    /// the answers of subjects that repeat.
    pub fn matches_once(&mut self, subject: &[u8]) -> &MatchResult<V> {
        self.stats.matches += 1;
        if self.count == 0 || !tokenize(subject, &mut self.ranges) {
            return &self.empty;
        }
        self.once.clear();
        collect_matches(&self.root, subject, &self.ranges, &mut self.once);
        normalize(&mut self.once);
        &self.once
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of cached match results (at most the cache capacity).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Number of trie nodes besides the root; zero whenever `is_empty()`.
    /// Walks the whole trie: for statistics and tests, not the hot path.
    pub fn node_count(&self) -> usize {
        self.root.descendant_count()
    }

    /// Counters for monitoring.
    pub fn stats(&self) -> SublistStats {
        SublistStats {
            subscriptions: self.count,
            cache_entries: self.cache.len(),
            ..self.stats
        }
    }

    /// (largest, total) fan-out over the cached results: what nats-server
    /// reports as `max_fanout` and, divided by the cache size, `avg_fanout`.
    /// Walks the cache (bounded by its capacity): for monitoring only.
    pub fn cache_fanout(&self) -> (usize, usize) {
        self.cache
            .slots
            .iter()
            .filter(|slot| slot.subject.is_some())
            .map(|slot| slot.result.plain.len() + slot.result.queues.len())
            .fold((0, 0), |(max, total), fanout| {
                (max.max(fanout), total + fanout)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain matches as a sorted set (the walk order is tested on its own).
    fn plain(list: &mut Sublist<u32>, subject: &str) -> Vec<u32> {
        let mut plain = list.matches(subject.as_bytes()).plain.clone();
        plain.sort_unstable();
        plain
    }

    #[test]
    fn plain_matches_follow_the_reference_walk_order() {
        // The order nats-server delivers to one connection's subscriptions.
        let mut list = Sublist::new();
        for (subject, value) in [
            ("foo.*.>", 1),
            ("*", 2),
            ("foo*", 3),
            ("foo.x.y", 4),
            ("foo.>", 5),
            ("*.x.*", 6),
        ] {
            add(&mut list, subject, value);
        }
        assert_eq!(list.matches(b"foo.x.y").plain, [6, 5, 1, 4]);
        assert_eq!(list.matches(b"foo*").plain, [3, 2]);
    }

    fn add(list: &mut Sublist<u32>, subject: &str, value: u32) {
        list.insert(subject.as_bytes(), None, value).unwrap();
    }

    #[test]
    fn exact_entries_ignore_wildcards_that_match() {
        let mut list = Sublist::new();
        for (subject, value) in [
            ("_INBOX.a.*", 1),
            ("_INBOX.a.b", 2),
            ("_INBOX.>", 3),
            ("_INBOX.a.b", 4),
        ] {
            add(&mut list, subject, value);
        }
        add_queue(&mut list, "_INBOX.a.b", "q", 5);
        let exact = |list: &Sublist<u32>, subject: &str| {
            list.exact_plain(subject.as_bytes())
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(exact(&list, "_INBOX.a.b"), [2, 4]);
        assert_eq!(exact(&list, "_INBOX.a.c"), Vec::<u32>::new());
        assert_eq!(exact(&list, "_INBOX.a.*"), [1]);
        assert_eq!(exact(&list, "_INBOX.>"), [3]);
        assert_eq!(exact(&list, "_INBOX"), Vec::<u32>::new());
        assert_eq!(exact(&list, ""), Vec::<u32>::new());
    }

    fn add_queue(list: &mut Sublist<u32>, subject: &str, queue: &str, value: u32) {
        list.insert(subject.as_bytes(), Some(queue.as_bytes()), value)
            .unwrap();
    }

    fn groups(list: &mut Sublist<u32>, subject: &str) -> Vec<(String, Vec<u32>)> {
        list.matches(subject.as_bytes())
            .queues
            .iter()
            .map(|g| {
                (
                    String::from_utf8(g.name.to_vec()).unwrap(),
                    g.members.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn literal_and_multi_token() {
        let mut list = Sublist::new();
        add(&mut list, "foo", 1);
        add(&mut list, "foo.bar.baz", 2);
        assert_eq!(plain(&mut list, "foo"), [1]);
        assert_eq!(plain(&mut list, "foo.bar.baz"), [2]);
        // Reference bug report #18: a longer subject does not reach `foo`.
        assert!(plain(&mut list, "foo.bar").is_empty());
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn partial_and_full_wildcards() {
        let mut list = Sublist::new();
        add(&mut list, "a.b.c", 1);
        add(&mut list, "a.*.c", 2);
        add(&mut list, "a.b.*", 3);
        add(&mut list, "a.>", 4);
        add(&mut list, ">", 5);
        add(&mut list, "*.*.*", 6);
        assert_eq!(plain(&mut list, "a.b.c"), [1, 2, 3, 4, 5, 6]);
        assert_eq!(plain(&mut list, "a.x.c"), [2, 4, 5, 6]);
        assert_eq!(plain(&mut list, "a.b"), [4, 5]);
        // `a.>` needs at least one token after `a`.
        assert_eq!(plain(&mut list, "a"), [5]);
        assert_eq!(plain(&mut list, "a.b.c.d"), [4, 5]);
        // A published `a.>` is taken literally: only wildcard subscriptions
        // that cover it reach it.
        assert_eq!(plain(&mut list, "a.>"), [4, 5]);
        assert_eq!(plain(&mut list, "a.*.c"), [2, 4, 5, 6]);
    }

    #[test]
    fn wildcard_characters_inside_tokens_are_literal() {
        let mut list = Sublist::new();
        add(&mut list, "foo.*-", 1);
        add(&mut list, "foo.>-", 2);
        assert!(plain(&mut list, "foo.bar").is_empty());
        assert_eq!(plain(&mut list, "foo.*-"), [1]);
        assert_eq!(plain(&mut list, "foo.>-"), [2]);
        assert_eq!(
            list.remove(b"foo.bar", None, 1),
            Err(SublistError::NotFound)
        );
        assert_eq!(list.len(), 2);
        list.remove(b"foo.*-", None, 1).unwrap();
        list.remove(b"foo.>-", None, 2).unwrap();
        assert!(list.is_empty());
        assert_eq!(list.node_count(), 0);
    }

    #[test]
    fn empty_tokens_match_nothing() {
        let mut list = Sublist::new();
        add(&mut list, ">", 1);
        add_queue(&mut list, ">", "queue", 2);
        for subject in [
            "",
            ".",
            ".foo",
            "..foo",
            "foo..",
            "foo.",
            "foo..bar",
            "foo...bar",
        ] {
            assert!(list.matches(subject.as_bytes()).is_empty(), "{subject:?}");
        }
        assert_eq!(list.cache_len(), 0);
    }

    #[test]
    fn invalid_subjects_are_refused_without_side_effects() {
        let mut list = Sublist::new();
        for bad in [
            "",
            ".",
            "foo..bar",
            ".foo",
            "foo.",
            "foo.>.bar",
            ">.foo",
            "a.b..d",
        ] {
            assert_eq!(
                list.insert(bad.as_bytes(), None, 1),
                Err(SublistError::InvalidSubject),
                "{bad:?}"
            );
            assert_eq!(
                list.remove(bad.as_bytes(), None, 1),
                Err(SublistError::InvalidSubject)
            );
        }
        assert_eq!(
            list.insert(b"foo", Some(b""), 1),
            Err(SublistError::InvalidQueueName)
        );
        assert_eq!(
            list.insert(b"foo", Some(b"a b"), 1),
            Err(SublistError::InvalidQueueName)
        );
        assert!(list.is_empty());
        assert_eq!(list.node_count(), 0);
    }

    #[test]
    fn duplicates_and_missing_entries() {
        let mut list = Sublist::new();
        add(&mut list, "foo.*", 7);
        assert_eq!(
            list.insert(b"foo.*", None, 7),
            Err(SublistError::AlreadyPresent)
        );
        // The same value in a queue group is a different entry.
        add_queue(&mut list, "foo.*", "q", 7);
        assert_eq!(list.len(), 2);
        assert_eq!(list.remove(b"foo.*", None, 8), Err(SublistError::NotFound));
        assert_eq!(
            list.remove(b"foo.*", Some(b"r"), 7),
            Err(SublistError::NotFound)
        );
        assert_eq!(list.remove(b"foo.>", None, 7), Err(SublistError::NotFound));
        assert_eq!(list.remove(b"bar", None, 7), Err(SublistError::NotFound));
        list.remove(b"foo.*", Some(b"q"), 7).unwrap();
        list.remove(b"foo.*", None, 7).unwrap();
        assert_eq!(list.node_count(), 0);
    }

    // Follows the reference's testSublistBasicQueueResults.
    #[test]
    fn basic_queue_results() {
        let mut list = Sublist::new();
        add_queue(&mut list, "foo", "bar", 1);
        assert!(plain(&mut list, "foo").is_empty());
        assert_eq!(groups(&mut list, "foo"), [("bar".into(), vec![1])]);
        add_queue(&mut list, "foo", "baz", 2);
        add(&mut list, "foo", 10);
        assert_eq!(plain(&mut list, "foo"), [10]);
        assert_eq!(
            groups(&mut list, "foo"),
            [("bar".into(), vec![1]), ("baz".into(), vec![2])]
        );
        add_queue(&mut list, "foo", "bar", 3);
        add_queue(&mut list, "foo", "baz", 4);
        assert_eq!(
            groups(&mut list, "foo"),
            [("bar".into(), vec![1, 3]), ("baz".into(), vec![2, 4])]
        );
        list.remove(b"foo", None, 10).unwrap();
        list.remove(b"foo", Some(b"bar"), 1).unwrap();
        assert!(plain(&mut list, "foo").is_empty());
        assert_eq!(
            groups(&mut list, "foo"),
            [("bar".into(), vec![3]), ("baz".into(), vec![2, 4])]
        );
        list.remove(b"foo", Some(b"bar"), 3).unwrap();
        assert_eq!(groups(&mut list, "foo"), [("baz".into(), vec![2, 4])]);
        list.remove(b"foo", Some(b"baz"), 2).unwrap();
        list.remove(b"foo", Some(b"baz"), 4).unwrap();
        assert!(list.matches(b"foo").is_empty());
        assert_eq!(list.node_count(), 0);
    }

    #[test]
    fn wide_levels_switch_and_drain() {
        // Past `compact::SMALL` children a level becomes a hash map; long
        // tokens live on the heap. Matches must not notice either.
        let mut list = Sublist::new();
        let token = |i: u32| {
            if i.is_multiple_of(2) {
                format!("t{i}")
            } else {
                format!("a-token-longer-than-the-inline-limit-{i}")
            }
        };
        for i in 0..40u32 {
            add(&mut list, &format!("w.{}.x", token(i)), i);
            add(&mut list, &format!("w.{}", token(i)), 100 + i);
        }
        add(&mut list, "w.*.x", 1000);
        for i in 0..40u32 {
            assert_eq!(plain(&mut list, &format!("w.{}.x", token(i))), [i, 1000]);
            assert_eq!(plain(&mut list, &format!("w.{}", token(i))), [100 + i]);
        }
        for i in 0..40u32 {
            list.remove(format!("w.{}.x", token(i)).as_bytes(), None, i)
                .unwrap();
            list.remove(format!("w.{}", token(i)).as_bytes(), None, 100 + i)
                .unwrap();
            if i + 1 < 40 {
                assert_eq!(
                    plain(&mut list, &format!("w.{}.x", token(i + 1))),
                    [i + 1, 1000]
                );
            }
        }
        assert_eq!(plain(&mut list, "w.t0.x"), [1000]);
        list.remove(b"w.*.x", None, 1000).unwrap();
        assert_eq!(list.node_count(), 0);
    }

    #[test]
    fn nodes_stay_small() {
        // Two nodes per literal subscription in a typical trie: every field
        // here is paid 100,000 times in the `subs` benchmark.
        assert_eq!(std::mem::size_of::<Node<u64>>(), 56);
    }

    #[test]
    fn queue_groups_merge_across_subjects() {
        let mut list = Sublist::new();
        add_queue(&mut list, "a.b", "workers", 5);
        add_queue(&mut list, "a.*", "workers", 3);
        add_queue(&mut list, "a.>", "workers", 9);
        add_queue(&mut list, ">", "audit", 1);
        add_queue(&mut list, "a.*", "zeta", 2);
        assert_eq!(
            groups(&mut list, "a.b"),
            [
                ("audit".into(), vec![1]),
                ("workers".into(), vec![3, 5, 9]),
                ("zeta".into(), vec![2]),
            ]
        );
    }

    // Follows the reference's TestSublistCache.
    #[test]
    fn cache_follows_changes() {
        let mut list = Sublist::new();
        add(&mut list, "a.b.c.d", 1);
        assert_eq!(plain(&mut list, "a.b.c.d"), [1]);
        add(&mut list, "a.b.*.d", 2);
        add(&mut list, "a.b.>", 3);
        assert_eq!(plain(&mut list, "a.b.c.d"), [1, 2, 3]);
        list.remove(b"a.b.c.d", None, 1).unwrap();
        assert_eq!(plain(&mut list, "a.b.c.d"), [2, 3]);
        list.remove(b"a.b.>", None, 3).unwrap();
        assert_eq!(plain(&mut list, "a.b.c.d"), [2]);
        list.remove(b"a.b.*.d", None, 2).unwrap();
        assert_eq!(list.cache_len(), 0);
        assert!(list.matches(b"a.b.c.d").is_empty());

        add(&mut list, "keep", 1);
        for i in 0..2 * CACHE_CAPACITY {
            let _ = list.matches(format!("foo-{i}").as_bytes());
            assert!(list.cache_len() <= CACHE_CAPACITY);
        }
        assert_eq!(list.cache_len(), CACHE_CAPACITY);

        let mut list = Sublist::new();
        add(&mut list, "foo.*", 1);
        add(&mut list, "foo.bar", 2);
        assert_eq!(plain(&mut list, "foo.baz"), [1]);
        assert_eq!(plain(&mut list, "foo.bar"), [1, 2]);
        add(&mut list, "foo.>", 3);
        assert_eq!(plain(&mut list, "foo.bar"), [1, 2, 3]);
        assert_eq!(plain(&mut list, "foo.baz"), [1, 3]);
    }

    #[test]
    fn invalidation_is_surgical() {
        let mut list = Sublist::new();
        add(&mut list, ">", 1);
        for subject in ["a.x", "a.y", "b.x", "c"] {
            let _ = list.matches(subject.as_bytes());
        }
        assert_eq!(list.cache_len(), 4);
        add(&mut list, "a.*", 2);
        assert_eq!(list.cache_len(), 2);
        add(&mut list, "c", 3);
        assert_eq!(list.cache_len(), 1);
        add(&mut list, "zzz.>", 4);
        assert_eq!(list.cache_len(), 1);
        assert_eq!(plain(&mut list, "b.x"), [1]);
        assert_eq!(plain(&mut list, "a.x"), [1, 2]);
    }

    #[test]
    fn hot_entries_survive_eviction() {
        let mut list = Sublist::new();
        add(&mut list, "hot", 1);
        let _ = list.matches(b"hot");
        for i in 0..CACHE_CAPACITY * 3 {
            // Keep `hot` referenced between sweeps.
            let _ = list.matches(b"hot");
            let _ = list.matches(format!("cold.{i}").as_bytes());
        }
        let hits_before = list.stats().cache_hits;
        let _ = list.matches(b"hot");
        assert_eq!(list.stats().cache_hits, hits_before + 1);
    }

    #[test]
    fn churn_of_ten_thousand_leaves_no_nodes() {
        let mut list = Sublist::new();
        let subject = |i: u32| match i % 4 {
            0 => format!("svc.{}.req.{}", i % 97, i),
            1 => format!("svc.*.evt.{}", i),
            2 => format!("_INBOX.{}.>", i),
            _ => format!("*.{}.*", i % 13),
        };
        for i in 0..10_000u32 {
            let queue = (i % 3 == 0).then(|| format!("q{}", i % 5));
            list.insert(
                subject(i).as_bytes(),
                queue.as_deref().map(str::as_bytes),
                i,
            )
            .unwrap();
            if i % 50 == 0 {
                let _ = list.matches(format!("svc.{}.req.{}", i % 97, i).as_bytes());
            }
        }
        assert_eq!(list.len(), 10_000);
        assert!(list.node_count() > 10_000);
        for i in (0..10_000u32).rev() {
            let queue = (i % 3 == 0).then(|| format!("q{}", i % 5));
            list.remove(
                subject(i).as_bytes(),
                queue.as_deref().map(str::as_bytes),
                i,
            )
            .unwrap();
        }
        assert!(list.is_empty());
        assert_eq!(list.node_count(), 0);
        assert!(list.root.is_empty());
        // Cached answers for subjects nobody was removed from stay cached,
        // and must all be empty now.
        assert!(list.matches(b"svc.0.req.0").is_empty());
    }

    #[test]
    fn pattern_matching_matches_reference() {
        // From the reference's TestSublistMatchLiterals (literal, pattern).
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "bar", false),
            ("foo", "*", true),
            ("foo", ">", true),
            ("foo.bar", ">", true),
            ("foo.bar", "foo.>", true),
            ("foo.bar", "bar.>", false),
            ("stats.test.22", "stats.>", true),
            ("stats.test.22", "stats.*.*", true),
            ("foo.bar", "foo", false),
            ("stats.test.foos", "stats.test.foos", true),
            ("stats.test.foos", "stats.test.foo", false),
            ("stats.test", "stats.test.*", false),
            ("stats.test.foos", "stats.*", false),
            ("stats.test.foos", "stats.*.*.foos", false),
            ("*bar", "*bar", true),
            ("foo*", "foo*", true),
            ("foo*bar", "foo*bar", true),
            ("foo.***.bar", "foo.***.bar", true),
            (">bar", ">bar", true),
            ("foo>", "foo>", true),
            ("foo>bar", "foo>bar", true),
            ("foo.>>>.bar", "foo.>>>.bar", true),
            ("foo", "foo.>", false),
            ("foo..bar", ">", false),
        ];
        for &(subject, pattern, expected) in cases {
            assert_eq!(
                subject_matches_pattern(pattern.as_bytes(), subject.as_bytes()),
                expected,
                "{subject:?} vs {pattern:?}"
            );
        }
    }

    // ---- model-based property test ----

    /// The naive model: every entry in a Vec, matched token by token.
    #[derive(Default)]
    struct Model {
        entries: Vec<(Vec<u8>, Option<Vec<u8>>, u32)>,
    }

    fn model_token_match(pattern: &[&[u8]], subject: &[&[u8]]) -> bool {
        match (pattern.split_first(), subject.split_first()) {
            (None, None) => true,
            (Some((&b">", rest)), Some(_)) => rest.is_empty(),
            (Some((p, prest)), Some((s, srest))) => {
                (*p == b"*" || p == s) && model_token_match(prest, srest)
            }
            _ => false,
        }
    }

    type Answer = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);

    impl Model {
        fn matches(&self, subject: &[u8]) -> Answer {
            let subject_tokens: Vec<&[u8]> = subject.split(|b| *b == b'.').collect();
            let mut plain = Vec::new();
            let mut queues: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
            if subject_tokens.iter().any(|t| t.is_empty()) {
                return (plain, Vec::new());
            }
            for (pattern, queue, value) in &self.entries {
                let pattern_tokens: Vec<&[u8]> = pattern.split(|b| *b == b'.').collect();
                if !model_token_match(&pattern_tokens, &subject_tokens) {
                    continue;
                }
                match queue {
                    None => plain.push(*value),
                    Some(name) => queues.entry(name.clone()).or_default().push(*value),
                }
            }
            plain.sort_unstable();
            let queues = queues
                .into_iter()
                .map(|(name, mut members)| {
                    members.sort_unstable();
                    (name, members)
                })
                .collect();
            (plain, queues)
        }
    }

    fn answer(result: &MatchResult<u32>) -> Answer {
        let mut plain = result.plain.clone();
        plain.sort_unstable();
        (
            plain,
            result
                .queues
                .iter()
                .map(|g| (g.name.to_vec(), g.members.clone()))
                .collect(),
        )
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, Option<Vec<u8>>, u32),
        /// Removes the n-th stored entry (modulo), or a made-up one.
        RemoveExisting(usize),
        RemoveArbitrary(Vec<u8>, Option<Vec<u8>>, u32),
        Match(Vec<u8>),
    }

    fn token() -> impl Strategy<Value = &'static [u8]> + Clone {
        prop::sample::select(vec![&b"a"[..], b"b", b"c", b"*", b">", b"", b"a*"])
    }

    /// More literal tokens than a level keeps in its small form (so levels
    /// switch to the hash map and back), of every storage class: one byte,
    /// exactly the inline limit, longer, and a prefix of a longer one.
    fn wide_token() -> impl Strategy<Value = &'static [u8]> + Clone {
        prop::sample::select(vec![
            &b"a"[..],
            b"b",
            b"c",
            b"d",
            b"e",
            b"f",
            b"g",
            b"h",
            b"i",
            b"j",
            b"k",
            b"*",
            b">",
            b"twenty-two-bytes-token",
            b"twenty-two-bytes-token-and-more",
            b"twenty-two-bytes-toke",
        ])
    }

    fn subject() -> impl Strategy<Value = Vec<u8>> + Clone {
        prop::collection::vec(token(), 1..5).prop_map(|tokens| tokens.join(&b'.'))
    }

    fn wide_subject() -> impl Strategy<Value = Vec<u8>> + Clone {
        prop::collection::vec(wide_token(), 1..4).prop_map(|tokens| tokens.join(&b'.'))
    }

    fn queue() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![b"q1".to_vec(), b"q2".to_vec()]),
        )
    }

    fn op() -> impl Strategy<Value = Op> {
        ops_over(subject())
    }

    fn ops_over(subject: impl Strategy<Value = Vec<u8>> + Clone) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (subject.clone(), queue(), 0u32..6).prop_map(|(s, q, v)| Op::Insert(s, q, v)),
            2 => any::<usize>().prop_map(Op::RemoveExisting),
            1 => (subject.clone(), queue(), 0u32..6).prop_map(|(s, q, v)| Op::RemoveArbitrary(s, q, v)),
            6 => subject.prop_map(Op::Match),
        ]
    }

    /// Literal subjects to probe after every change, so cached answers are
    /// checked against the model (wildcard characters included: a published
    /// subject is taken literally).
    const PROBES: &[&[u8]] = &[
        b"a", b"b", b"a.b", b"a.a", b"b.c", b"a.b.c", b"a.*", b"*", b">", b"a.>", b"c.b.a.a",
        b"a*", b"a..b",
    ];

    fn run_ops(ops: Vec<Op>, cache_capacity: usize) -> Result<(), TestCaseError> {
        let mut list: Sublist<u32> = Sublist::with_cache_capacity(cache_capacity);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Insert(subject, queue, value) => {
                    let outcome = list.insert(&subject, queue.as_deref(), value);
                    let valid = is_valid_subscribe_subject(&subject);
                    let present = model
                        .entries
                        .iter()
                        .any(|e| e.0 == subject && e.1 == queue && e.2 == value);
                    let expected = if !valid {
                        Err(SublistError::InvalidSubject)
                    } else if present {
                        Err(SublistError::AlreadyPresent)
                    } else {
                        model.entries.push((subject, queue, value));
                        Ok(())
                    };
                    prop_assert_eq!(outcome, expected);
                }
                Op::RemoveExisting(n) => {
                    if model.entries.is_empty() {
                        continue;
                    }
                    let (subject, queue, value) = model.entries.remove(n % model.entries.len());
                    prop_assert_eq!(list.remove(&subject, queue.as_deref(), value), Ok(()));
                }
                Op::RemoveArbitrary(subject, queue, value) => {
                    let outcome = list.remove(&subject, queue.as_deref(), value);
                    let position = model
                        .entries
                        .iter()
                        .position(|e| e.0 == subject && e.1 == queue && e.2 == value);
                    let expected = if !is_valid_subscribe_subject(&subject) {
                        Err(SublistError::InvalidSubject)
                    } else if let Some(position) = position {
                        model.entries.remove(position);
                        Ok(())
                    } else {
                        Err(SublistError::NotFound)
                    };
                    prop_assert_eq!(outcome, expected);
                }
                Op::Match(subject) => {
                    // Twice: the second answer comes from the cache. Once
                    // past it too, leaving the cache as it was.
                    let cached = list.cache_len();
                    prop_assert_eq!(answer(list.matches_once(&subject)), model.matches(&subject));
                    prop_assert_eq!(list.cache_len(), cached);
                    for _ in 0..2 {
                        prop_assert_eq!(answer(list.matches(&subject)), model.matches(&subject));
                    }
                }
            }
            prop_assert_eq!(list.len(), model.entries.len());
            prop_assert!(list.cache_len() <= cache_capacity);
            for probe in PROBES {
                prop_assert_eq!(answer(list.matches(probe)), model.matches(probe));
            }
            if list.is_empty() {
                prop_assert_eq!(list.node_count(), 0);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn sublist_agrees_with_linear_model(
            ops in prop::collection::vec(op(), 1..80),
            // Small capacities keep the eviction clock turning.
            cache_capacity in prop::sample::select(vec![1usize, 3, 8, CACHE_CAPACITY]),
        ) {
            run_ops(ops, cache_capacity)?;
        }

        #[test]
        fn wide_levels_agree_with_linear_model(
            ops in prop::collection::vec(ops_over(wide_subject()), 1..200),
            cache_capacity in prop::sample::select(vec![1usize, 8, CACHE_CAPACITY]),
        ) {
            run_ops(ops, cache_capacity)?;
        }

        #[test]
        fn draining_leaves_no_nodes(
            entries in prop::collection::vec((subject(), queue(), 0u32..50), 1..60)
        ) {
            let mut list: Sublist<u32> = Sublist::new();
            let mut stored = Vec::new();
            for (subject, queue, value) in entries {
                if list.insert(&subject, queue.as_deref(), value).is_ok() {
                    stored.push((subject, queue, value));
                }
                let _ = list.matches(b"a.b");
            }
            for (subject, queue, value) in stored {
                prop_assert_eq!(list.remove(&subject, queue.as_deref(), value), Ok(()));
                let _ = list.matches(b"a.b");
            }
            prop_assert!(list.is_empty());
            prop_assert_eq!(list.node_count(), 0);
            prop_assert!(list.matches(b"a.b").is_empty());
        }
    }
}
