//! rnats-core: every piece of rnats's NATS server logic as sans-I/O state machines.
//!
//! Nothing in this crate touches the OS. Time, randomness, the network and
//! (later) the disk reach a machine as inputs; what a machine wants done comes
//! out as actions the runtime carries out. The same code therefore runs in
//! production (`rnats-runtime-tokio`) and under the deterministic simulator
//! (`rnats-runtime-sim`).
//!
//! ```text
//!   bytes read ──► ClientParser ──► ClientOp ──► Server ──► Sublist match
//!                                                  │
//!         Action::Transmit / Close ◄── outbound buffers per connection
//! ```
#![forbid(unsafe_code)]

pub mod auth;
pub mod conf;
pub mod format;
pub mod jetstream;
pub mod monitor;
pub mod protocol;
pub mod raft;
pub mod route;
pub mod runtime;
pub mod server;
pub mod store;
pub mod subject;
pub mod time;
pub mod websocket;
