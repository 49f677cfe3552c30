//! SeqSet: a set of sequences kept as disjoint ranges.
//!
//! Role: a block's deleted sequences ([`super::filestore`]). A gap between
//! two messages of a block (skipped sequences, or a gap a damaged file
//! claims) is one range whatever its length, so the memory a block's index
//! takes is bounded by its records, not by the sequences they name.
//!
//! Inputs: inserts of single sequences or ranges; cuts below or above a
//! bound. Outputs: membership, the count of sequences, the nearest absent
//! sequence on either side.
//!
//! Invariants (checked by `check` in debug builds): the ranges are
//! non-empty, disjoint and not adjacent (touching ranges are merged), none
//! reaches `u64::MAX` (so `end + 1` never overflows), and `count` is the
//! number of sequences they hold.

use std::collections::BTreeMap;

/// Sequences as inclusive ranges `start ..= end`, keyed by `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SeqSet {
    ranges: BTreeMap<u64, u64>,
    count: u64,
}

impl SeqSet {
    /// How many sequences the set holds.
    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    /// How many ranges the set keeps (its memory, in entries).
    #[cfg(test)]
    pub(crate) fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The range holding `seq`, if any.
    fn range_of(&self, seq: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.ranges.range(..=seq).next_back()?;
        (seq <= end).then_some((start, end))
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.range_of(seq).is_some()
    }

    pub(crate) fn insert(&mut self, seq: u64) {
        self.insert_range(seq, seq);
    }

    /// Add every sequence of `low ..= high`.
    pub(crate) fn insert_range(&mut self, low: u64, high: u64) {
        assert!(low <= high, "empty range {low}..={high}");
        assert!(high < u64::MAX, "a range must end below u64::MAX");
        let (mut low, mut high) = (low, high);
        // A range before `low` that reaches it or touches it absorbs it.
        if let Some((&start, &end)) = self.ranges.range(..=low).next_back() {
            if end >= high {
                return;
            }
            if end + 1 >= low {
                self.take(start);
                low = start;
                high = high.max(end);
            }
        }
        // Ranges starting inside `low ..= high + 1` merge into it.
        while let Some((&start, _)) = self.ranges.range(low..=high + 1).next() {
            let end = self.take(start);
            high = high.max(end);
        }
        self.ranges.insert(low, high);
        self.count += high - low + 1;
        self.check();
    }

    /// Remove the range starting at `start`; returns its end.
    fn take(&mut self, start: u64) -> u64 {
        let end = self.ranges.remove(&start).expect("a range starts there");
        self.count -= end - start + 1;
        end
    }

    /// The smallest sequence `>= seq` not in the set.
    pub(crate) fn next_absent(&self, seq: u64) -> u64 {
        match self.range_of(seq) {
            Some((_, end)) => end + 1,
            None => seq,
        }
    }

    /// The largest sequence `<= seq` not in the set (`None` if all of
    /// `0 ..= seq` is in it).
    pub(crate) fn prev_absent(&self, seq: u64) -> Option<u64> {
        match self.range_of(seq) {
            Some((start, _)) => start.checked_sub(1),
            None => Some(seq),
        }
    }

    /// Drop every sequence below `floor`.
    pub(crate) fn remove_below(&mut self, floor: u64) {
        let mut kept = self.ranges.split_off(&floor);
        if let Some((_, &end)) = self.ranges.iter().next_back() {
            if end >= floor {
                kept.insert(floor, end);
            }
        }
        self.ranges = kept;
        self.recount();
    }

    /// Drop every sequence above `last`.
    pub(crate) fn remove_above(&mut self, last: u64) {
        if last == u64::MAX {
            return;
        }
        self.ranges.split_off(&(last + 1));
        if let Some((_, end)) = self.ranges.iter_mut().next_back() {
            *end = (*end).min(last);
        }
        self.recount();
    }

    /// The ranges `(start, end)`, inclusive, in increasing order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&start, &end)| (start, end))
    }

    pub(crate) fn clear(&mut self) {
        self.ranges.clear();
        self.count = 0;
    }

    fn recount(&mut self) {
        self.count = self.ranges.iter().map(|(start, end)| end - start + 1).sum();
        self.check();
    }

    fn check(&self) {
        if cfg!(debug_assertions) {
            let mut previous: Option<u64> = None;
            for (&start, &end) in &self.ranges {
                debug_assert!(start <= end, "empty range");
                debug_assert!(end < u64::MAX, "range reaches u64::MAX");
                if let Some(previous) = previous {
                    debug_assert!(start > previous + 1, "ranges overlap or touch");
                }
                previous = Some(end);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_huge_gap_is_one_range() {
        let mut set = SeqSet::default();
        set.insert_range(2, 1 << 40);
        set.insert(5);
        assert_eq!(set.range_count(), 1);
        assert_eq!(set.len(), (1 << 40) - 1);
        assert_eq!(set.next_absent(3), (1 << 40) + 1);
        assert_eq!(set.prev_absent(1 << 40), Some(1));
        set.insert(1);
        set.insert(0);
        assert_eq!(set.prev_absent(7), None);
    }

    proptest! {
        /// Every operation agrees with a `BTreeSet` of the same sequences.
        #[test]
        fn matches_a_plain_set(ops in proptest::collection::vec((0u8..4, 0u64..64, 0u64..8), 1..60)) {
            let mut set = SeqSet::default();
            let mut model = BTreeSet::new();
            for (op, at, width) in ops {
                match op {
                    0 | 1 => {
                        set.insert_range(at, at + width);
                        model.extend(at..=at + width);
                    }
                    2 => {
                        set.remove_below(at);
                        model = model.split_off(&at);
                    }
                    _ => {
                        set.remove_above(at);
                        model.retain(|&seq| seq <= at);
                    }
                }
                prop_assert_eq!(set.len(), model.len() as u64);
                for seq in 0..80 {
                    prop_assert_eq!(set.contains(seq), model.contains(&seq));
                    let next = (seq..).find(|s| !model.contains(s)).unwrap();
                    prop_assert_eq!(set.next_absent(seq), next);
                    let prev = (0..=seq).rev().find(|s| !model.contains(s));
                    prop_assert_eq!(set.prev_absent(seq), prev);
                }
            }
        }
    }
}
