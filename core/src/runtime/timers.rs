//! A table of named deadlines: what every machine's `poll_timeout` reads.
//!
//! Role: a machine files each timer under a typed [`TimerKey`] (one per
//! connection, the statsz heartbeat, later consumer and RAFT timers); the
//! table answers the earliest deadline and hands back the keys that are due.
//! Filing a key again moves it; a key is filed at most once.
//!
//! Invariants: `by_deadline` and `deadlines` describe the same set of
//! `(deadline, key)` pairs; ties between equal deadlines break by key order,
//! so two timers due together always fire in the same order (the simulator's
//! traces depend on it).

use std::collections::{BTreeMap, BTreeSet};

use super::ConnId;
use crate::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A connection's next auth timeout or keepalive PING.
    Connection(ConnId),
    /// The `$SYS.SERVER.<id>.STATSZ` heartbeat (the one timer that outlives
    /// every connection).
    Heartbeat,
    /// The next dial of a route (`server/routes.rs`): a retry's backoff.
    RouteDial(u64),
    /// The directory resolver's exchanges with its peers
    /// (`server/resolver_peers.rs`): sync, lookup timeouts, cache expiry.
    Resolver,
}

/// Deadlines by key, ordered by time.
#[derive(Debug, Default)]
pub struct TimerTable {
    by_deadline: BTreeSet<(Instant, TimerKey)>,
    deadlines: BTreeMap<TimerKey, Instant>,
}

impl TimerTable {
    /// File `key` at `deadline`, replacing an earlier filing of the same key.
    pub fn set(&mut self, key: TimerKey, deadline: Instant) {
        // The driver refiles the heartbeat at the end of every step, almost
        // always unchanged: that costs one lookup, not a remove and insert.
        if self.deadlines.get(&key) == Some(&deadline) {
            return;
        }
        if let Some(old) = self.deadlines.insert(key, deadline) {
            let removed = self.by_deadline.remove(&(old, key));
            debug_assert!(removed, "{key:?} filed in one index only");
        }
        self.by_deadline.insert((deadline, key));
        debug_assert_eq!(self.by_deadline.len(), self.deadlines.len());
    }

    /// File `key` at `deadline`, or take it out when there is none.
    pub fn set_or_cancel(&mut self, key: TimerKey, deadline: Option<Instant>) {
        match deadline {
            Some(deadline) => self.set(key, deadline),
            None => self.cancel(key),
        }
    }

    /// Take `key` out; nothing happens if it is not filed.
    pub fn cancel(&mut self, key: TimerKey) {
        if let Some(old) = self.deadlines.remove(&key) {
            let removed = self.by_deadline.remove(&(old, key));
            debug_assert!(removed, "{key:?} filed in one index only");
        }
        debug_assert_eq!(self.by_deadline.len(), self.deadlines.len());
    }

    /// When `key` is due, if it is filed.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.deadlines.get(&key).copied()
    }

    /// The earliest deadline of all.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    /// Take out and return the earliest key due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let &(deadline, key) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.pop_first();
        let removed = self.deadlines.remove(&key);
        debug_assert_eq!(removed, Some(deadline));
        Some(key)
    }

    /// Filed timers.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_and_fire_in_deadline_then_key_order() {
        let mut timers = TimerTable::default();
        let a = TimerKey::Connection(ConnId(2));
        let b = TimerKey::Connection(ConnId(1));
        timers.set(a, Instant(10));
        timers.set(b, Instant(10));
        timers.set(TimerKey::Heartbeat, Instant(30));
        timers.set(a, Instant(5));
        timers.set(a, Instant(5));
        assert_eq!(timers.len(), 3);
        assert_eq!(timers.next_deadline(), Some(Instant(5)));
        assert_eq!(timers.pop_due(Instant(4)), None);
        assert_eq!(timers.pop_due(Instant(10)), Some(a));
        assert_eq!(timers.pop_due(Instant(10)), Some(b));
        assert_eq!(timers.pop_due(Instant(10)), None);
        timers.cancel(TimerKey::Heartbeat);
        timers.cancel(TimerKey::Heartbeat);
        assert!(timers.is_empty());
        timers.set_or_cancel(b, Some(Instant(1)));
        assert_eq!(timers.deadline(b), Some(Instant(1)));
        timers.set_or_cancel(b, None);
        assert_eq!(timers.next_deadline(), None);
    }
}
