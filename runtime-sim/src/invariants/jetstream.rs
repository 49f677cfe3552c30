//! Safety and liveness of JetStream, as its publishers and its disk see it.
//!
//! Safety, checked when the fact appears:
//! - durable before acknowledged (node side, on every acknowledgement
//!   JetStream releases): every write and file creation the stream made in
//!   its directory up to storing the acknowledged sequence is synced, so a
//!   power loss at that instant keeps it (the simulated disk numbers its
//!   operations and knows which are pending);
//! - sequences (client side): a non-duplicate acknowledgement names a
//!   sequence no other message was acknowledged with, higher than the
//!   previous one on the same connection; with `Nats-Expected-Last-Sequence:
//!   E` it is `E + 1`; a message acknowledged twice (a retried msg id) gets
//!   the same sequence, unless its node restarted and the first copy may
//!   have been removed (limits, purge), so the id was forgotten with it;
//! - read-back: MSG.GET of an acknowledged sequence returns exactly that
//!   message (subject and payload), or "no message found" only when the
//!   client's own record says a purge or the stream's limits may have
//!   removed it; whatever it returns was sent by this client;
//! - STREAM.INFO: `messages` within `max_msgs` and `max_msgs_per_subject`
//!   times `num_subjects`; `last_seq` at least every sequence acknowledged.
//!
//! Liveness, at the end: a publisher that stayed connected through the heal
//! got an answer to every publish it sent on that connection before the mark.

use serde_json::Value;

use crate::js_clients::{AckRecord, JsPublisher, Waiting};
use crate::node::NodeId;
use crate::world::{World, SECOND};

/// An acknowledgement JetStream released: its stream and sequence.
#[derive(Debug, Clone)]
pub(crate) struct ReleasedAck {
    pub(crate) stream: String,
    pub(crate) seq: u64,
}

/// `{"stream":"S","seq":N}` (perhaps with `"duplicate":true`), not an error.
pub(crate) fn parse_ack(payload: &[u8]) -> Option<ReleasedAck> {
    if !payload.starts_with(b"{\"stream\"") {
        return None;
    }
    let value: Value = serde_json::from_slice(payload).ok()?;
    if value.get("error").is_some() {
        return None;
    }
    Some(ReleasedAck {
        stream: value.get("stream")?.as_str()?.to_string(),
        seq: value.get("seq")?.as_u64()?,
    })
}

/// Every acknowledgement released in one step names a sequence whose
/// store left nothing a power loss could take back: every write and file
/// creation in the stream's directory up to the moment it was stored is
/// synced.
pub(crate) fn check_ack_durable(
    world: &mut World,
    node: NodeId,
    acks: &[(String, ReleasedAck)],
) -> Result<(), String> {
    let Some(js) = world.nodes[node.index()].js.as_mut() else {
        return Ok(());
    };
    for (account, ack) in acks {
        let id = js
            .machine
            .streams()
            .find(|e| e.meta.account == *account && e.meta.config.name == ack.stream)
            .map(|e| e.stream.id);
        let Some(id) = id else {
            continue;
        };
        let Some(queue) = js.stored.get_mut(&id) else {
            continue;
        };
        // Acks are released in sequence order; a duplicate's older
        // sequence was checked with its first ack.
        let mut found = None;
        while queue.front().is_some_and(|(seq, _)| *seq <= ack.seq) {
            let (seq, serial) = queue.pop_front().expect("front exists");
            if seq == ack.seq {
                found = Some(serial);
            }
        }
        let Some(serial) = found else {
            continue;
        };
        js.acks_checked += 1;
        let dir = format!("streams/{}", id.0);
        if let Some(path) = js.disk.with(|disk| disk.unsynced_through(&dir, serial)) {
            return Err(format!(
                "{node}: stream {} acknowledged seq {} while {path}, written before it was stored, was not synced",
                ack.stream, ack.seq
            ));
        }
    }
    Ok(())
}

/// A reply to a publish. Returns the sequence stored, if this publish
/// stored one (not for a refusal or a duplicate).
pub(crate) fn on_pub_ack(
    js: &mut JsPublisher,
    msg: usize,
    expected_last: Option<u64>,
    value: &Value,
    restarts: u64,
) -> Result<Option<u64>, String> {
    let stream = js.stream.clone();
    if let Some(error) = value.get("error") {
        // The only refusal a well-behaved publisher can get: its guess of
        // the last sequence was wrong.
        let code = error.get("err_code").and_then(Value::as_u64);
        if expected_last.is_some() && code == Some(10071) {
            js.count("wrong-last-seq");
            return Ok(None);
        }
        return Err(format!("{stream}: message {msg} refused: {value}"));
    }
    if value.get("stream").and_then(Value::as_str) != Some(stream.as_str()) {
        return Err(format!("{stream}: ack names another stream: {value}"));
    }
    let seq = value
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|seq| *seq > 0)
        .ok_or_else(|| format!("{stream}: ack without a sequence: {value}"))?;
    let duplicate = value.get("duplicate").and_then(Value::as_bool) == Some(true);
    if duplicate && js.sent[msg].msg_id.is_none() {
        return Err(format!(
            "{stream}: message {msg} has no msg id but was acked as a duplicate of {seq}"
        ));
    }
    if let Some(&before) = js.seq_of.get(&msg) {
        if before != seq {
            let restarted = js.acked.get(&before).is_some_and(|a| a.restarts < restarts);
            if !(restarted && may_be_removed(js, msg, before)) {
                return Err(format!(
                    "{stream}: message {msg} (id {:?}) acked as seq {before}, then as seq {seq} (duplicate: {duplicate})",
                    js.sent[msg].msg_id
                ));
            }
        }
    }
    if let Some(other) = js.acked.get(&seq) {
        if other.msg != msg {
            return Err(format!(
                "{stream}: seq {seq} acked for message {} and again for message {msg} (duplicate: {duplicate})",
                other.msg
            ));
        }
    }
    if !duplicate {
        if let Some(expected) = expected_last {
            if seq != expected + 1 {
                return Err(format!(
                    "{stream}: message {msg} sent expecting last seq {expected} was stored as seq {seq}"
                ));
            }
        }
        if js.last_on_conn.is_some_and(|last| seq <= last) {
            return Err(format!(
                "{stream}: seq {seq} acked after seq {} on the same connection",
                js.last_on_conn.unwrap_or_default()
            ));
        }
        js.last_on_conn = Some(seq);
    }
    js.count(if duplicate {
        "acked-duplicate"
    } else {
        "acked"
    });
    if expected_last.is_some() && !duplicate {
        js.count("acked-expected-last");
    }
    js.acked.insert(seq, AckRecord { msg, restarts });
    js.seq_of.insert(msg, seq);
    Ok((!duplicate).then_some(seq))
}

/// Whether message `msg`, acknowledged as `seq`, may have been removed by
/// a purge or by the stream's limits, as far as the client can know: a
/// purge whose reply had not come before `msg` was first sent, or at least
/// `max_msgs` (per subject: `max_msgs_per_subject`) other messages that
/// may have been stored after it.
pub(crate) fn may_be_removed(js: &JsPublisher, msg: usize, seq: u64) -> bool {
    if js
        .purges
        .iter()
        .any(|p| p.done_at.is_none_or(|done| msg < done))
    {
        return true;
    }
    let subject = &js.sent[msg].subject;
    let later = |same_subject: bool| {
        (0..js.sent.len())
            .filter(|&other| other != msg)
            .filter(|&other| !same_subject || js.sent[other].subject == *subject)
            .filter(|other| js.seq_of.get(other).is_none_or(|s| *s > seq))
            .count() as u64
    };
    js.limits.max_msgs.is_some_and(|max| later(false) >= max)
        || js.limits.per_subject.is_some_and(|max| later(true) >= max)
}

/// A MSG.GET reply for `seq`.
pub(crate) fn on_msg_get(js: &mut JsPublisher, seq: u64, value: &Value) -> Result<(), String> {
    let stream = js.stream.clone();
    if let Some(error) = value.get("error") {
        let code = error.get("err_code").and_then(Value::as_u64);
        if code != Some(10037) {
            return Err(format!("{stream}: MSG.GET {seq} failed: {value}"));
        }
        js.count("msg-get-removed");
        let Some(acked) = js.acked.get(&seq) else {
            return Ok(());
        };
        if js.seq_of.get(&acked.msg) != Some(&seq) || may_be_removed(js, acked.msg, seq) {
            return Ok(());
        }
        return Err(format!(
            "{stream}: seq {seq} (message {}) was acknowledged and nothing removed it, but MSG.GET finds no message",
            acked.msg
        ));
    }
    let message = value
        .get("message")
        .ok_or_else(|| format!("{stream}: MSG.GET {seq} answered {value}"))?;
    let subject = message.get("subject").and_then(Value::as_str).unwrap_or("");
    let data = message
        .get("data")
        .and_then(Value::as_str)
        .map(base64_decode)
        .unwrap_or(Some(Vec::new()))
        .ok_or_else(|| format!("{stream}: MSG.GET {seq}: data is not base64"))?;
    if message.get("seq").and_then(Value::as_u64) != Some(seq) {
        return Err(format!("{stream}: MSG.GET {seq} returned {message}"));
    }
    let sent_index = sent_index_of(js.index, &data)
        .filter(|n| *n < js.sent.len())
        .ok_or_else(|| {
            format!(
                "{stream}: MSG.GET {seq} returned a payload this client never sent: {:?}",
                String::from_utf8_lossy(&data)
            )
        })?;
    js.count("msg-get-found");
    let sent = &js.sent[sent_index];
    if sent.payload.as_ref() != data.as_slice() || sent.subject != subject {
        return Err(format!(
            "{stream}: MSG.GET {seq} returned message {sent_index} damaged: {subject} {:?}",
            String::from_utf8_lossy(&data)
        ));
    }
    if let Some(acked) = js.acked.get(&seq) {
        if acked.msg != sent_index {
            return Err(format!(
                "{stream}: seq {seq} was acknowledged for message {}, MSG.GET returns message {sent_index}",
                acked.msg
            ));
        }
    }
    Ok(())
}

/// A STREAM.INFO reply: limits kept, no acknowledged sequence forgotten.
pub(crate) fn on_info(js: &JsPublisher, value: &Value) -> Result<(), String> {
    let stream = js.stream.clone();
    let state = value
        .get("state")
        .ok_or_else(|| format!("{stream}: STREAM.INFO answered {value}"))?;
    let number = |name: &str| state.get(name).and_then(Value::as_u64).unwrap_or(0);
    let messages = number("messages");
    let last_seq = number("last_seq");
    let first_seq = number("first_seq");
    if let Some(max) = js.limits.max_msgs {
        if messages > max {
            return Err(format!(
                "{stream}: {messages} messages, max_msgs {max}: {state}"
            ));
        }
    }
    if let Some(max) = js.limits.per_subject {
        let subjects = number("num_subjects");
        if messages > max * subjects {
            return Err(format!(
                "{stream}: {messages} messages on {subjects} subjects, max_msgs_per_subject {max}: {state}"
            ));
        }
    }
    if messages > 0 && messages > last_seq + 1 - first_seq.max(1) {
        return Err(format!("{stream}: more messages than sequences: {state}"));
    }
    if let Some((&acked, _)) = js.acked.last_key_value() {
        if last_seq < acked {
            return Err(format!(
                "{stream}: seq {acked} was acknowledged, STREAM.INFO says last_seq {last_seq}"
            ));
        }
    }
    Ok(())
}

/// At the end: every publish a still-connected publisher sent on its
/// current connection before the mark was answered.
pub(crate) fn check_liveness(world: &World) -> Result<(), String> {
    let mark = world.now.as_nanos().saturating_sub(3 * SECOND);
    for client in &world.clients {
        let (Some(js), Some(conn)) = (client.js.as_ref(), client.conn) else {
            continue;
        };
        let live = world.nodes[client.node.index()]
            .conns
            .get(&conn)
            .is_some_and(|c| c.is_live() && !c.stalled);
        if !live {
            continue;
        }
        for waiting in js.waiting.values() {
            if let Waiting::Publish {
                msg,
                sent_at,
                conn: on,
                ..
            } = waiting
            {
                if *on == conn && sent_at.as_nanos() < mark {
                    return Err(format!(
                        "{}: message {msg} published on {conn} at {sent_at:?} never got an answer",
                        js.stream
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `j<client>.<n>;...`: the message number, when it is this client's.
fn sent_index_of(client: usize, payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix(&format!("j{client}."))?;
    rest.split(';').next()?.parse().ok()
}

/// Standard base64 with padding (Go's `[]byte` in JSON).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_what_go_writes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a!==").is_none());
    }

    #[test]
    fn acks_parse_and_errors_do_not() {
        let ack = parse_ack(br#"{"stream":"S1","seq":7}"#).unwrap();
        assert_eq!((ack.stream.as_str(), ack.seq), ("S1", 7));
        assert!(parse_ack(br#"{"error":{"code":400},"stream":"S1","seq":0}"#).is_none());
        assert!(parse_ack(br#"{"type":"x"}"#).is_none());
    }
}
