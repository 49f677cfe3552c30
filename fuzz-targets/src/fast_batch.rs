//! Fast batch reply subjects (`<prefix>.<id>.<flow>.<gap>.<seq>.<op>.$FI`)
//! and the batch machine they drive.
//!
//! Input: records split at NUL, at most 256; each record is one control
//! byte (low 2 bits: the message is stored, a duplicate or refused; bit 2:
//! the clock passes the batch timeout first; bit 3: the server is full)
//! and a reply subject.
//!
//! The PubAck quotes the batch id as Go's `%q` (as the reference's), which
//! is not JSON for control bytes, so it is checked by shape.
//!
//! Checked: `parse_reply` equals a naive token model (split on `.`, read
//! from the right) on every record; each parsed reply then goes through
//! `FastBatches::begin` / `finish` as the stream drives them, whose own
//! invariants are asserts (flow ack ≤ persisted ≤ taken, a flow step of at
//! least 1, a `gap: fail` batch never behind); beyond them: open batches
//! never pass the limit, a full server opens none, an answer waiting for
//! the store names a sequence stored already, flow acks, gap
//! reports and errors are JSON of the reference's shape.

use std::time::Duration;

use rnats_core::jetstream::fast_batch::{
    parse_reply, Answer, Begin, Context, FastBatches, FastLimits, FastReply, InvalidPattern, Op,
    Stored,
};
use rnats_core::jetstream::stream::PublishError;
use rnats_core::time::WallTime;

const PREFIX: &[u8] = br#"{"stream":"F","seq":"#;
const LIMITS: FastLimits = FastLimits {
    inflight: 4,
    timeout: Duration::from_secs(10),
};

/// The target body.
pub fn run(data: &[u8]) {
    let mut batches = FastBatches::default();
    batches.limits = LIMITS;
    let mut now = WallTime(1);
    let mut last_seq = 0u64;
    let refusal = PublishError::Sealed;
    for (control, reply) in crate::op_records(data, 256) {
        let parsed = parse_reply(reply);
        assert_eq!(parsed, model(reply), "{:?}", String::from_utf8_lossy(reply));
        let Some(Ok(reply)) = parsed else { continue };
        if control & 4 != 0 {
            now = WallTime(now.0 + 10_000_000_001);
        }
        let context = Context {
            ack_prefix: PREFIX,
            room: control & 8 == 0,
            no_ack: false,
        };
        let open_before = batches.len();
        let mut answers = Vec::new();
        batches.expire(now);
        let begun = batches.begin(&reply, b"", now, &context, &mut answers);
        assert!(batches.len() <= LIMITS.inflight);
        if !context.room {
            assert!(batches.len() <= open_before);
        }
        if let Begin::Store { .. } = begun {
            let stored = match control & 3 {
                0 | 3 => {
                    last_seq += 1;
                    Stored::At(last_seq)
                }
                1 => Stored::Duplicate(last_seq),
                _ => Stored::Refused(&refusal),
            };
            batches.finish(&reply, stored, &context, &mut answers);
        }
        for answer in answers {
            check(answer, last_seq);
        }
    }
}

fn check(answer: Answer, last_seq: u64) {
    match answer {
        Answer::Now(payload) => {
            let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert!(matches!(
                value["type"].as_str(),
                Some("ack" | "gap" | "err")
            ));
        }
        Answer::Durable { through, payload } => {
            assert!(through <= last_seq, "an ack for a sequence not stored");
            if payload.starts_with(PREFIX) {
                // The batch id is quoted as Go's %q does, as the
                // reference's: not always JSON (`\x01`), so read by shape.
                let text = String::from_utf8_lossy(&payload);
                assert!(text.contains(",\"batch\":\"") && text.ends_with('}'));
                let count = text.rsplit(",\"count\":").next().unwrap();
                assert!(count.trim_end_matches('}').parse::<u64>().is_ok(), "{text}");
            } else {
                let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(value["type"], "ack");
            }
        }
        Answer::Refused(_) => {}
    }
}

/// The reply read the plain way: all tokens split at once.
fn model(reply: &[u8]) -> Option<Result<FastReply<'_>, InvalidPattern>> {
    let body = reply.strip_suffix(b".$FI".as_slice())?;
    if reply.len() <= 4 {
        return None;
    }
    let tokens: Vec<&[u8]> = body.split(|&b| b == b'.').collect();
    if tokens.len() < 6 {
        return Some(Err(InvalidPattern));
    }
    let n = tokens.len();
    let (id, flow, gap, seq, op) = (
        tokens[n - 5],
        tokens[n - 4],
        tokens[n - 3],
        tokens[n - 2],
        tokens[n - 1],
    );
    let digits = |t: &[u8]| !t.is_empty() && t.iter().all(u8::is_ascii_digit);
    let wrapping = |t: &[u8]| {
        t.iter().fold(0i64, |n, &d| {
            n.wrapping_mul(10).wrapping_add(i64::from(d - b'0'))
        })
    };
    let op = match digits(op).then(|| wrapping(op)) {
        Some(0) => Op::Start,
        Some(1) => Op::Append,
        Some(2) => Op::Commit,
        Some(3) => Op::CommitEob,
        Some(4) => Op::Ping,
        _ => return Some(Err(InvalidPattern)),
    };
    let seq = match std::str::from_utf8(seq).ok().filter(|_| digits(seq)) {
        Some(text) => text.parse::<u64>().ok(),
        None => None,
    };
    let Some(seq) = seq.filter(|&s| s != 0 && s != u64::MAX) else {
        return Some(Err(InvalidPattern));
    };
    let placed = match op {
        Op::Start => seq == 1,
        Op::Append | Op::CommitEob => seq > 1,
        Op::Commit | Op::Ping => true,
    };
    let gap_ok = match gap {
        b"ok" => true,
        b"fail" => false,
        _ => return Some(Err(InvalidPattern)),
    };
    if !placed {
        return Some(Err(InvalidPattern));
    }
    let flow = match digits(flow).then(|| wrapping(flow)) {
        Some(f) if f > 0 => u16::try_from(f).unwrap_or(u16::MAX),
        _ => 10,
    };
    Some(Ok(FastReply {
        id,
        flow,
        gap_ok,
        seq,
        op,
    }))
}
