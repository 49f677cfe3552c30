//! Route frames written into any [`FrameSink`].

use crate::protocol::encoder::Decimal;
use crate::protocol::FrameSink;

use super::json::{RouteConnect, RouteInfo};

/// `INFO {json}\r\n`
pub fn write_route_info(out: &mut impl FrameSink, info: &RouteInfo) {
    let json = serde_json::to_vec(info).expect("a route INFO always serializes");
    out.put(b"INFO ");
    out.put(&json);
    out.put(b"\r\n");
}

/// `CONNECT {json}\r\n`
pub fn write_route_connect(out: &mut impl FrameSink, connect: &RouteConnect) {
    let json = serde_json::to_vec(connect).expect("a route CONNECT always serializes");
    out.put(b"CONNECT ");
    out.put(&json);
    out.put(b"\r\n");
}

/// `<account> ` unless the route is the account's own (pinned: `None`).
fn put_account(out: &mut impl FrameSink, account: Option<&[u8]>) {
    if let Some(account) = account {
        out.put(account);
        out.put(b" ");
    }
}

/// `RS+ [<account>] <subject> [<queue> <weight>]\r\n`
pub fn write_rs_plus(
    out: &mut impl FrameSink,
    account: Option<&[u8]>,
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    out.put(b"RS+ ");
    put_account(out, account);
    out.put(subject);
    if let Some((queue, weight)) = queue {
        out.put(b" ");
        out.put(queue);
        out.put(b" ");
        out.put(Decimal::new(weight as usize).as_bytes());
    }
    out.put(b"\r\n");
}

/// `RS- [<account>] <subject> [<queue>]\r\n`
pub fn write_rs_minus(
    out: &mut impl FrameSink,
    account: Option<&[u8]>,
    subject: &[u8],
    queue: Option<&[u8]>,
) {
    out.put(b"RS- ");
    put_account(out, account);
    out.put(subject);
    if let Some(queue) = queue {
        out.put(b" ");
        out.put(queue);
    }
    out.put(b"\r\n");
}

/// `RMSG`/`HMSG` with its account, reply and the queue groups chosen on the
/// receiving server, then the payload (no account on a pinned route).
pub fn write_rmsg(
    out: &mut impl FrameSink,
    account: Option<&[u8]>,
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let total = headers.map_or(0, <[u8]>::len) + payload.len();
    out.expect(
        64 + account.map_or(0, <[u8]>::len) + subject.len() + reply.map_or(0, <[u8]>::len) + total,
    );
    out.put(if headers.is_some() {
        b"HMSG "
    } else {
        b"RMSG "
    });
    put_account(out, account);
    out.put(subject);
    match (reply, queues.is_empty()) {
        (Some(reply), true) => {
            out.put(b" ");
            out.put(reply);
        }
        (Some(reply), false) => {
            out.put(b" + ");
            out.put(reply);
        }
        (None, false) => out.put(b" |"),
        (None, true) => {}
    }
    for queue in queues {
        out.put(b" ");
        out.put(queue);
    }
    if let Some(headers) = headers {
        out.put(b" ");
        out.put(Decimal::new(headers.len()).as_bytes());
    }
    out.put(b" ");
    out.put(Decimal::new(total).as_bytes());
    out.put(b"\r\n");
    if let Some(headers) = headers {
        out.put(headers);
    }
    out.put(payload);
    out.put(b"\r\n");
}
