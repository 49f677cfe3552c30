//! The NATS client protocol on the wire: bytes in, typed operations out, and
//! typed replies back to bytes.
//!
//! ```text
//!   read buffer ──► ClientParser::next_op ──► ClientOp / ParseError
//!   ServerInfo, MSG/HMSG, +OK/-ERR, PING/PONG ──► encoder::write_* ──► outbound buffer
//! ```
//!
//! - [`parser`]: the client-connection parser, byte-for-byte the reactions of
//!   nats-server v2.15.1 (which errors send which `-ERR`, which close).
//! - [`encoder`]: server-to-client frames written straight into a caller-owned
//!   `BytesMut`, one reservation per frame and no allocation.
//! - [`headers`]: reading and writing the `NATS/1.0` header block.
//! - [`json`]: CONNECT options decoded with the reference's JSON rules, and the
//!   INFO document serialized with its field names, order and escaping.
//!
//! Invariant shared by all of them: nothing here decides policy (auth,
//! permissions, pedantic subject checks); it only says what was on the wire,
//! and the exact wire text of each error is produced in this module alone.

pub mod encoder;
pub mod headers;
pub mod json;
pub mod parser;

pub use encoder::{
    write_err, write_hmsg, write_hpub, write_info, write_msg, write_ok, write_ping, write_pong,
    write_pub, write_sub, write_unsub, FrameSink,
};
pub use headers::{
    find_header, no_responders_block, status_only_block, without_headers,
    write_no_responders_block, write_status_block, HeaderError, HeaderView,
};
pub use json::{validate_info, ConnectJsonError, ConnectOptions, ServerInfo};
pub use parser::{ArgumentProblem, ClientOp, ClientParser, Operation, ParseError, ParserLimits};
