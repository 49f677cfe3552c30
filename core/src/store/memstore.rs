//! MemStore: every message in memory, in a `BTreeMap` by sequence.
//!
//! Role: the store of `storage: memory` streams, and the model FileStore is
//! tested against. Inputs and outputs are [`super::Engine`]'s. Nothing is
//! synced: a message is durable (as durable as memory gets) when stored, so
//! `poll_action` reports `Durable` for everything stored so far.
//!
//! Invariants: every key of `msgs` is in `floor..=last_seq`; the map holds
//! the messages present and nothing else.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::engine::{Backend, Engine, NewMsg};
use super::{DiskResult, StoreAction, StoreConfig, StoreResult, StoredMsg};
use crate::time::{Instant, WallTime};

/// A store kept in memory.
pub type MemStore = Engine<MemBackend>;

impl MemStore {
    /// An empty memory store with `config`'s limits.
    pub fn new(config: StoreConfig) -> MemStore {
        Engine::open(MemBackend::default(), config).expect("an empty memory store opens")
    }
}

/// The messages of a [`MemStore`].
#[derive(Debug, Clone, Default)]
pub struct MemBackend {
    msgs: BTreeMap<u64, StoredMsg>,
    floor: u64,
    last_seq: u64,
    last_ts: WallTime,
    /// The highest sequence reported `Durable`.
    reported: u64,
}

impl Backend for MemBackend {
    fn bounds(&self) -> (u64, u64, WallTime) {
        (self.floor, self.last_seq, self.last_ts)
    }

    fn append(&mut self, msg: &NewMsg<'_>) -> StoreResult<()> {
        assert!(msg.seq > self.last_seq, "append below the last sequence");
        self.last_seq = msg.seq;
        self.last_ts = msg.ts;
        let stored = StoredMsg {
            seq: msg.seq,
            subject: Bytes::copy_from_slice(msg.subject),
            headers: Bytes::copy_from_slice(msg.headers),
            payload: Bytes::copy_from_slice(msg.payload),
            ts: msg.ts,
            ttl: msg.ttl,
        };
        self.msgs.insert(msg.seq, stored);
        Ok(())
    }

    fn skip(&mut self, through: u64, ts: WallTime) -> StoreResult<()> {
        assert!(through > self.last_seq, "skip below the last sequence");
        self.last_seq = through;
        self.last_ts = ts;
        Ok(())
    }

    fn get(&mut self, seq: u64) -> StoreResult<Option<StoredMsg>> {
        Ok(self.msgs.get(&seq).cloned())
    }

    fn next_present(&mut self, seq: u64) -> Option<u64> {
        self.msgs.range(seq..).next().map(|(seq, _)| *seq)
    }

    fn prev_present(&mut self, seq: u64) -> Option<u64> {
        self.msgs.range(..=seq).next_back().map(|(seq, _)| *seq)
    }

    fn remove(&mut self, seq: u64, _erase: bool) -> StoreResult<bool> {
        Ok(self.msgs.remove(&seq).is_some())
    }

    fn compact(&mut self, floor: u64, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        assert!(floor <= last_seq + 1, "compact floor above last + 1");
        self.msgs = self.msgs.split_off(&floor);
        self.floor = floor;
        self.last_seq = last_seq;
        self.last_ts = last_ts;
        Ok(())
    }

    fn truncate(&mut self, last_seq: u64, last_ts: WallTime) -> StoreResult<()> {
        self.msgs.split_off(&(last_seq + 1));
        // Truncating to 0 makes the store fresh again.
        self.floor = if last_seq == 0 {
            0
        } else {
            self.floor.min(last_seq + 1)
        };
        self.last_seq = last_seq;
        self.last_ts = last_ts;
        self.reported = self.reported.min(last_seq);
        Ok(())
    }

    fn poll_action(&mut self, last_seq: u64) -> Option<StoreAction> {
        if last_seq > self.reported {
            self.reported = last_seq;
            return Some(StoreAction::Durable { through: last_seq });
        }
        None
    }

    fn handle_sync_done(&mut self, _tag: u64, _result: DiskResult<()>) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn failed(&self) -> bool {
        false
    }
}
