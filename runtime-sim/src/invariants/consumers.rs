//! Safety and liveness of JetStream consumers, as their clients see them
//! (`crate::js_consumers`).
//!
//! Safety, checked when the fact appears:
//! - a delivery is one of the client's own messages, intact, on its
//!   subject; at a sequence the client saw acknowledged, exactly that
//!   message; its ack subject names the stream and the consumer;
//! - delivery counts run from 1 to `max_deliver`;
//! - first deliveries (count 1) of one consumer strictly increase in
//!   stream sequence within one server process; after a restart they start
//!   above what the server had shown durable (an AckSync confirmation or
//!   consumer info is only sent once the state is on disk);
//! - a message whose ack the server confirmed (AckSync reply, `+TERM` with
//!   a reply, or at or below the ack floor in consumer info) is never
//!   delivered again, restarts included;
//! - consumer info: `ack_floor <= delivered`, `num_ack_pending` within
//!   `max_ack_pending` and the floor..delivered window, `num_pending` at
//!   least the acknowledged messages not yet delivered.
//!
//! Liveness, at the end (the heal phase acks everything with AckSync and
//! keeps pulling): each consumer of a client still connected became quiet
//! (no delivery for longer than its ack wait, and for the pull consumer an
//! empty pull since), and consumer info then showed nothing pending,
//! nothing waiting for an ack, the floor at what was delivered and every
//! acknowledged message delivered; without `max_deliver`, the client saw
//! every acknowledged message delivered at least once.

use rnats_core::time::Instant;
use serde_json::Value;

use crate::js_consumers::{JsConsumerClient, Wait};
use crate::world::World;

/// The numbers of a delivery's ack subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) count: u64,
    pub(crate) stream_seq: u64,
    pub(crate) consumer_seq: u64,
}

/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
/// parsed here without core's parser.
fn parse_ack_subject(subject: &str) -> Option<(&str, &str, Delivered)> {
    let tokens: Vec<&str> = subject.strip_prefix("$JS.ACK.")?.split('.').collect();
    if tokens.len() != 7 {
        return None;
    }
    let number = |i: usize| tokens[i].parse::<u64>().ok();
    number(5)?;
    number(6)?;
    Some((
        tokens[0],
        tokens[1],
        Delivered {
            count: number(2)?,
            stream_seq: number(3)?,
            consumer_seq: number(4)?,
        },
    ))
}

/// `k<client>.<n>;...`: the message number, when it is this client's.
fn sent_index_of(client: usize, payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix(&format!("k{client}."))?;
    rest.split(';').next()?.parse().ok()
}

/// A publish acknowledgement: the sequence is the message's from now on.
pub(crate) fn on_pub_ack(
    client: &mut JsConsumerClient,
    msg: usize,
    value: &Value,
) -> Result<(), String> {
    let stream = client.stream.clone();
    if value.get("error").is_some() || value.get("stream").and_then(Value::as_str) != Some(&stream)
    {
        return Err(format!("{stream}: message {msg} refused: {value}"));
    }
    let seq = value
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|seq| *seq > 0)
        .ok_or_else(|| format!("{stream}: ack without a sequence: {value}"))?;
    if let Some(&other) = client.stored.get(&seq) {
        if other != msg {
            return Err(format!(
                "{stream}: seq {seq} acknowledged for message {other} and for message {msg}"
            ));
        }
    }
    client.stored.insert(seq, msg);
    client.count("c-published-acked");
    Ok(())
}

/// A delivery from consumer `which`, checked before the client answers it.
pub(crate) fn on_delivery(
    client: &mut JsConsumerClient,
    which: usize,
    subject: &[u8],
    ack_subject: &[u8],
    payload: &[u8],
    now: Instant,
    restarts: u64,
) -> Result<Delivered, String> {
    let stream = client.stream.clone();
    let name = client.consumers[which].name;
    let ack_text = String::from_utf8_lossy(ack_subject);
    let (ack_stream, ack_consumer, delivered) = parse_ack_subject(&ack_text)
        .ok_or_else(|| format!("{stream} > {name}: bad ack subject {ack_text}"))?;
    if ack_stream != stream || ack_consumer != name {
        return Err(format!(
            "{stream} > {name}: a delivery with the ack subject of another consumer: {ack_text}"
        ));
    }
    let seq = delivered.stream_seq;
    let msg = sent_index_of(client.index, payload)
        .filter(|n| *n < client.sent.len())
        .ok_or_else(|| {
            format!(
                "{stream} > {name}: seq {seq} delivered a payload the client never sent: {:?}",
                String::from_utf8_lossy(payload)
            )
        })?;
    let sent = &client.sent[msg];
    if sent.payload.as_ref() != payload || sent.subject.as_bytes() != subject {
        return Err(format!(
            "{stream} > {name}: seq {seq} delivered message {msg} damaged: {} {:?}",
            String::from_utf8_lossy(subject),
            String::from_utf8_lossy(payload)
        ));
    }
    if let Some(&acked) = client.stored.get(&seq) {
        if acked != msg {
            return Err(format!(
                "{stream} > {name}: seq {seq} was acknowledged for message {acked}, delivered as message {msg}"
            ));
        }
    }
    let model = &mut client.consumers[which];
    if delivered.count == 0 || model.max_deliver.is_some_and(|max| delivered.count > max) {
        return Err(format!(
            "{stream} > {name}: seq {seq} delivered with count {} (max_deliver {:?})",
            delivered.count, model.max_deliver
        ));
    }
    if let Some(why) = model.confirmed.get(&seq) {
        return Err(format!(
            "{stream} > {name}: seq {seq} delivered again (count {}) after its ack was confirmed ({why})",
            delivered.count
        ));
    }
    if seq <= model.floor {
        return Err(format!(
            "{stream} > {name}: seq {seq} delivered again (count {}) below the ack floor {} consumer info showed",
            delivered.count, model.floor
        ));
    }
    if model.generation != restarts {
        model.generation = restarts;
        model.last_new = 0;
    }
    if delivered.count == 1 {
        if seq <= model.last_new {
            return Err(format!(
                "{stream} > {name}: first delivery of seq {seq} after seq {} (stream sequences must increase except redeliveries)",
                model.last_new
            ));
        }
        if seq <= model.durable_delivered {
            return Err(format!(
                "{stream} > {name}: first delivery of seq {seq}, but the server had shown seq {} delivered and durable",
                model.durable_delivered
            ));
        }
        model.last_new = seq;
    }
    let seen = model.seen.entry(seq).or_default();
    *seen = (*seen).max(delivered.count);
    model.last_received = now;
    client.count(if delivered.count == 1 {
        "c-delivered"
    } else {
        "c-redelivered"
    });
    Ok(delivered)
}

/// The server confirmed an ack (AckSync) of `seq`: the consumer's state,
/// with every delivery the client received before, is on disk.
pub(crate) fn on_ack_confirmed(
    client: &mut JsConsumerClient,
    which: usize,
    seq: u64,
    restarts: u64,
) {
    let model = &mut client.consumers[which];
    model.confirmed.insert(seq, "AckSync");
    if model.generation == restarts {
        model.durable_delivered = model.durable_delivered.max(model.last_new);
    }
}

/// A CONSUMER.INFO reply; `quiet`: asked once the consumer settled in the
/// heal phase.
pub(crate) fn on_info(
    client: &mut JsConsumerClient,
    which: usize,
    quiet: bool,
    value: &Value,
) -> Result<(), String> {
    let stream = client.stream.clone();
    let name = client.consumers[which].name;
    if value.get("error").is_some() {
        return Err(format!("{stream} > {name}: CONSUMER.INFO failed: {value}"));
    }
    let number = |path: &[&str]| {
        let mut at = value;
        for key in path {
            at = at.get(*key)?;
        }
        at.as_u64()
    };
    let field = |path: &[&str]| {
        number(path).ok_or_else(|| format!("{stream} > {name}: info without {path:?}: {value}"))
    };
    let delivered = field(&["delivered", "stream_seq"])?;
    let floor = field(&["ack_floor", "stream_seq"])?;
    let ack_pending = field(&["num_ack_pending"])?;
    let pending = field(&["num_pending"])?;
    let shown = format!(
        "delivered {delivered}, ack floor {floor}, num_ack_pending {ack_pending}, num_pending {pending}"
    );
    if floor > delivered || ack_pending > delivered - floor {
        return Err(format!("{stream} > {name}: info inconsistent: {shown}"));
    }
    let model = &mut client.consumers[which];
    if let Some(max) = model.max_ack_pending {
        if ack_pending > max {
            return Err(format!(
                "{stream} > {name}: {ack_pending} acks pending, max_ack_pending {max}: {shown}"
            ));
        }
    }
    if let Some(seq) = model.confirmed.keys().find(|seq| **seq > delivered) {
        return Err(format!(
            "{stream} > {name}: seq {seq} was confirmed acked, info shows only {delivered} delivered"
        ));
    }
    model.floor = model.floor.max(floor);
    model.durable_delivered = model.durable_delivered.max(delivered);
    let undelivered = client.stored.range(delivered + 1..).count() as u64;
    if pending < undelivered {
        return Err(format!(
            "{stream} > {name}: {undelivered} acknowledged messages above seq {delivered} not delivered, info shows num_pending {pending}"
        ));
    }
    if !quiet {
        return Ok(());
    }
    let last_stored = client.stored.last_key_value().map_or(0, |(seq, _)| *seq);
    if pending != 0 || ack_pending != 0 || floor != delivered || delivered < last_stored {
        return Err(format!(
            "{stream} > {name}: quiet for longer than its ack wait, yet {shown} (last acknowledged publish {last_stored})"
        ));
    }
    client.consumers[which].quiet_checked = true;
    client.count("c-quiet-checked");
    Ok(())
}

/// At the end: every consumer of a client still connected settled with
/// nothing left, and saw every acknowledged message.
pub(crate) fn check_liveness(world: &World) -> Result<(), String> {
    for client in &world.clients {
        let (Some(consumer), Some(conn)) = (client.consumer.as_ref(), client.conn) else {
            continue;
        };
        let live = world.nodes[client.node.index()]
            .conns
            .get(&conn)
            .is_some_and(|c| c.is_live() && !c.stalled);
        if !live || !consumer.ready {
            continue;
        }
        for model in &consumer.consumers {
            if !model.quiet_checked {
                let waiting: Vec<&Wait> = consumer.waiting.values().collect();
                return Err(format!(
                    "{} > {}: never settled in the heal phase (last delivery at {:?}, last empty pull sent at {:?}, pull out {:?}, waiting {waiting:?})",
                    consumer.stream,
                    model.name,
                    model.last_received,
                    consumer.last_empty_pull,
                    consumer.pull,
                ));
            }
            if model.max_deliver.is_some() {
                continue;
            }
            if let Some((seq, msg)) = consumer
                .stored
                .iter()
                .find(|(seq, _)| !model.seen.contains_key(seq))
            {
                return Err(format!(
                    "{} > {}: message {msg}, acknowledged as seq {seq}, was never delivered",
                    consumer.stream, model.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_parse_in_the_short_form_only() {
        let (stream, consumer, numbers) =
            parse_ack_subject("$JS.ACK.K1.pull.2.17.30.1700000000000000000.4").unwrap();
        assert_eq!((stream, consumer), ("K1", "pull"));
        assert_eq!(
            numbers,
            Delivered {
                count: 2,
                stream_seq: 17,
                consumer_seq: 30
            }
        );
        assert!(parse_ack_subject("$JS.ACK.K1.pull.2.17.30").is_none());
        assert!(parse_ack_subject("_INBOX.x.1").is_none());
    }
}
