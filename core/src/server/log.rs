//! Log lines the server machine wants written, in nats-server's wording.
//!
//! Core never writes a log itself: it queues records and the runtime drains
//! them with [`Server::take_logs`](super::Server::take_logs) and formats them
//! like the reference (`[ERR] 127.0.0.1:5555 - cid:3 - Publish Violation ...`).
//!
//! Invariant: the queue holds at most `MAX_QUEUED` records; a runtime that
//! never drains it (the fuzzer, say) loses the oldest, not memory.

use std::collections::VecDeque;

use crate::runtime::ConnId;

const MAX_QUEUED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The connection the line is about; the runtime prefixes its address.
    pub conn: Option<ConnId>,
    /// Never holds a secret: callers name users, never passwords or tokens.
    pub text: String,
}

#[derive(Debug, Default)]
pub struct LogQueue {
    records: VecDeque<LogRecord>,
    dropped: u64,
}

impl LogQueue {
    pub fn push(&mut self, level: LogLevel, conn: Option<ConnId>, text: String) {
        if self.records.len() == MAX_QUEUED {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(LogRecord { level, conn, text });
        debug_assert!(self.records.len() <= MAX_QUEUED);
    }

    pub fn drain(&mut self) -> impl Iterator<Item = LogRecord> + '_ {
        self.records.drain(..)
    }
}
