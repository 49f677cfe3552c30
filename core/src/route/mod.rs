//! The route protocol: what two servers of one cluster say to each other.
//!
//! Role: the codec only (bytes <-> [`RouteOp`], the INFO and CONNECT JSON).
//! What a route does with them (handshake, interest, forwarding) is the
//! server's route part (`server/routes.rs`, driven from `server/route_ops.rs`).
//!
//! Wire forms (as nats-server v2.15.1 speaks them; on a pinned account's
//! dedicated route the `<account>` field is left out, see
//! [`RouteParser::pin`]):
//!
//! ```text
//! INFO {json}            CONNECT {json}          PING  PONG  +OK  -ERR 'text'
//! RS+ <account> <subject> [<queue> <weight>]     interest appears / changes weight
//! RS- <account> <subject> [<queue>]              interest gone
//! RMSG <account> <subject> [<reply>] <size>
//! RMSG <account> <subject> (+ <reply> | '|') <queue>... <size>
//! HMSG <account> <subject> ... <hdr_size> <total_size>   the same with headers
//! ```
//!
//! Invariants: the parser never holds more than one control line
//! (`max_control_line`) plus one message (`max_payload`) of input; bad input
//! is an error, never a panic.

pub mod encoder;
pub mod json;
pub mod parser;

pub use encoder::{
    write_rmsg, write_route_connect, write_route_info, write_rs_minus, write_rs_plus,
};
pub use json::{GossipMode, RouteConnect, RouteInfo, RoutePermission};
pub use parser::{RouteOp, RouteParseError, RouteParser, RoutedMsg};
