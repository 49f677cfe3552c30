//! RAFT, as nats-server's groups speak it, as a passive machine.
//!
//! Role: replicate a log of entries among a fixed group of peers and hand
//! the entries a majority stored durably, in order, to the state machine
//! above. `wire` is nats-server's encoding of the `$NRG.*` messages; `log`
//! is this node's own checksummed log file and term/vote file behind the
//! [`crate::store::disk::Disk`] trait; `node` is the algorithm: inputs in
//! (messages, timer expiry, proposals, sync completions), actions out.
//! See ARCHITECTURE.md, "RAFT", for every rule that differs from nats-server's.

pub mod log;
pub mod node;
pub mod transport;
pub mod wire;

pub use log::Snapshot;
pub use node::{
    Action, Config, GroupState, Message, Node, ProposeError, Role, SnapshotError, StepDownError,
};
pub use transport::{Inbound, Outbound, Transport, TransportError};
pub use wire::{EntryType, PeerId};
