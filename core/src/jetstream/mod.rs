//! JetStream: persistent streams on top of core NATS, as machines of their own.
//!
//! Role: the `$JS.API` handler and the streams it creates. They sit beside
//! the client-routing machine ([`crate::server::Server`]), not inside it:
//! the server routes messages that match JetStream's internal subscriptions
//! out to JetStream, and publishes what JetStream hands back (API replies,
//! publish acknowledgements). Storage is [`crate::store`].
//!
//! Invariants: see each module.

pub mod advisory;
pub mod api;
pub mod archive;
pub mod banner;
mod batch;
pub mod config;
pub mod consumer;
mod consumer_requests;
pub mod consumer_table;
mod counter;
mod cron;
mod deadlines;
pub mod errors;
pub mod fast_batch;
mod framing;
pub mod ingest;
pub mod link;
pub mod loan;
pub mod machine;
pub mod monitor;
mod remote_feed;
mod requests;
pub mod room;
mod schedule;
mod snapshot;
mod sourcing;
pub mod stream;
pub mod stream_config;
// Out of alphabetical order: kept beside its stream counterpart.
pub mod consumer_config;
#[cfg(test)]
mod tests;
pub mod wire;
