//! The consumer machine on a memory store: what clients see on the wire.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::store::{MemDisk, MemStore, StoreConfig};

const SECOND: Duration = Duration::from_secs(1);

struct Rig {
    store: Store<MemDisk>,
    consumer: Consumer<MemDisk>,
    now: Instant,
    wall: WallTime,
    out: VecDeque<JsAction>,
}

fn rules(name: &str) -> ConsumerRules {
    ConsumerRules {
        account: "A".into(),
        stream: "S".into(),
        name: name.into(),
        filter: Filter::All,
        start: DeliverStart::All,
        ack: AckPolicy::Explicit,
        flow_control_acks: false,
        ack_wait: 30 * SECOND,
        backoff: Vec::new(),
        max_deliver: None,
        max_ack_pending: Some(1000),
        max_waiting: 512,
        push: None,
        headers_only: false,
        max_batch: None,
        max_expires: None,
        max_bytes: None,
        pause_until: None,
        priority_policy: PriorityPolicy::None,
        priority_groups: Vec::new(),
        pinned_ttl: Duration::ZERO,
        sample_percent: 0,
        replay_original: false,
        rate_limit: None,
    }
}

/// A stream holding `subjects` in order (sequence = index + 1).
fn stream(subjects: &[&str]) -> Store<MemDisk> {
    let mut store = Store::Memory(MemStore::new(StoreConfig::default()));
    for subject in subjects {
        publish(&mut store, subject, b"data");
    }
    store
}

fn publish(store: &mut Store<MemDisk>, subject: &str, payload: &[u8]) -> u64 {
    let Store::Memory(memory) = store else {
        unreachable!()
    };
    memory
        .store_msg(subject.as_bytes(), b"", payload, WallTime(1_000), None)
        .expect("stored")
}

impl Rig {
    fn new(rules: ConsumerRules, store: Store<MemDisk>) -> Rig {
        let mut store = store;
        let now = Instant::from_nanos(0);
        let wall = WallTime(5_000);
        let tracker = ConsumerTracker::new(rules.ack, rules.max_deliver.unwrap_or(0));
        let consumer = Consumer::new(
            ConsumerId(1),
            rules,
            ConsumerStore::Memory(tracker),
            &mut store,
            now,
            wall,
        );
        Rig {
            store,
            consumer,
            now,
            wall,
            out: VecDeque::new(),
        }
    }

    fn pull(&mut self, body: &str) {
        self.pull_to("_INBOX.r", body);
    }

    fn pull_to(&mut self, reply: &str, body: &str) {
        self.consumer.handle_pull(
            "A",
            reply.as_bytes(),
            body.as_bytes(),
            &mut self.store,
            self.now,
            &mut self.out,
        );
        self.pump();
    }

    /// A pump, and the ones a push consumer's burst limit asks for at
    /// once (its timer of this instant), as the runtime runs them.
    fn pump(&mut self) {
        self.consumer
            .pump(&mut self.store, self.now, self.wall, &mut self.out);
        while self.consumer.poll_timeout() == Some(self.now) {
            assert!(
                self.consumer.push.resume.is_some(),
                "only a resume is due now"
            );
            self.consumer
                .handle_timeout(self.now, self.wall, &mut self.out);
            self.consumer
                .pump(&mut self.store, self.now, self.wall, &mut self.out);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.wall = WallTime(self.wall.0 + by.as_nanos() as u64);
        self.consumer
            .handle_timeout(self.now, self.wall, &mut self.out);
        self.pump();
    }

    /// `(subject, ack reply)` of every delivery so far, and status lines.
    fn take(&mut self) -> Vec<String> {
        self.out
            .drain(..)
            .map(|action| match action {
                JsAction::Deliver {
                    to, subject, reply, ..
                } => format!(
                    "{} {} {}",
                    String::from_utf8_lossy(&to),
                    String::from_utf8_lossy(&subject),
                    String::from_utf8_lossy(&reply)
                ),
                JsAction::Publish {
                    subject, headers, ..
                } => {
                    let first = headers
                        .split(|&b| b == b'\r')
                        .next()
                        .map(|line| String::from_utf8_lossy(line).into_owned())
                        .unwrap_or_default();
                    format!("{} {first}", String::from_utf8_lossy(&subject))
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn ack(&mut self, reply: &str, body: &str) {
        let next = self.consumer.handle_ack(
            reply.split(' ').nth(2).unwrap_or(reply).as_bytes(),
            b"",
            body.as_bytes(),
            self.now,
            self.wall,
            &mut self.out,
        );
        assert!(next.is_none());
        self.pump();
    }
}

/// The ack subject of a delivery line from [`Rig::take`].
fn reply_of(line: &str) -> &str {
    line.split(' ').nth(2).expect("a delivery")
}

#[test]
fn a_batch_goes_out_in_order_with_the_reference_ack_subjects() {
    let mut rig = Rig::new(rules("C"), stream(&["s.0", "s.1", "s.2"]));
    rig.pull(r#"{"batch":2}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("_INBOX.r s.0 $JS.ACK.S.C.1.1.1.1000."));
    assert!(lines[0].ends_with(".2"), "{lines:?}");
    assert!(lines[1].ends_with(".1"), "{lines:?}");
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.num_ack_pending, 2);
    assert_eq!(numbers.num_pending, 1);
    assert_eq!(numbers.delivered.stream, 2);
    assert_eq!(numbers.num_waiting, 0);
}

#[test]
fn no_wait_delivers_what_there_is_then_404() {
    let mut rig = Rig::new(rules("C"), stream(&["s.0"]));
    rig.pull(r#"{"batch":5,"no_wait":true}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], "_INBOX.r NATS/1.0 404 No Messages");
    rig.pull(r#"{"batch":5,"no_wait":true}"#);
    assert_eq!(rig.take(), ["_INBOX.r NATS/1.0 404 No Messages"]);
}

#[test]
fn an_expiring_request_waits_then_times_out_with_pending_counts() {
    let mut rig = Rig::new(rules("C"), stream(&[]));
    rig.pull(r#"{"batch":3,"expires":2000000000,"idle_heartbeat":500000000}"#);
    assert!(rig.take().is_empty());
    rig.advance(SECOND / 2);
    assert_eq!(rig.take(), ["_INBOX.r NATS/1.0 100 Idle Heartbeat"]);
    publish(&mut rig.store, "s.9", b"late");
    rig.pump();
    assert_eq!(rig.take().len(), 1);
    rig.advance(2 * SECOND);
    let lines = rig.take();
    assert_eq!(lines, ["_INBOX.r NATS/1.0 408 Request Timeout"]);
}

#[test]
fn explicit_acks_move_the_floor_and_naks_redeliver_with_a_count() {
    let mut rig = Rig::new(rules("C"), stream(&["a", "b", "c"]));
    rig.pull(r#"{"batch":3}"#);
    let lines = rig.take();
    rig.ack(reply_of(&lines[0]), "+ACK");
    rig.ack(reply_of(&lines[2]), "+ACK");
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.ack_floor.stream, 1);
    assert_eq!(numbers.num_ack_pending, 1);
    rig.ack(reply_of(&lines[1]), "-NAK");
    rig.pull("1");
    let again = rig.take();
    assert_eq!(again.len(), 2, "{again:?}"); // the nak advisory and the redelivery
    let delivery = again
        .iter()
        .find(|line| line.starts_with("_INBOX.r b"))
        .unwrap();
    assert!(
        reply_of(delivery).starts_with("$JS.ACK.S.C.2.2.4."),
        "{delivery}"
    );
    rig.ack(reply_of(delivery), "");
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.ack_floor.stream, 3);
    assert_eq!(numbers.num_ack_pending, 0);
    assert_eq!(numbers.num_redelivered, 0);
}

#[test]
fn silence_past_ack_wait_redelivers_until_max_deliver() {
    let mut rules = rules("C");
    rules.max_deliver = Some(2);
    let mut rig = Rig::new(rules, stream(&["a"]));
    rig.pull(r#"{"batch":10,"expires":100000000000}"#);
    assert_eq!(rig.take().len(), 1);
    rig.advance(31 * SECOND);
    let lines = rig.take();
    assert_eq!(lines.len(), 1);
    assert!(reply_of(&lines[0]).starts_with("$JS.ACK.S.C.2.1.2."));
    rig.advance(31 * SECOND);
    let lines = rig.take();
    assert_eq!(lines.len(), 1, "only the advisory: {lines:?}");
    assert!(lines[0].starts_with("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C"));
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_ack_pending, 0);
}

#[test]
fn a_nak_at_max_deliver_gives_up_instead_of_sending_once_more() {
    // Found by the simulator (jetstream-consumers seed 1): the redelivery
    // went out a third time with max_deliver 2, and its ack timer was
    // armed for a message no longer pending.
    let mut rules = rules("C");
    rules.max_deliver = Some(2);
    let mut rig = Rig::new(rules, stream(&["a"]));
    rig.pull(r#"{"batch":10,"expires":100000000000}"#);
    let first = rig.take();
    rig.ack(reply_of(&first[0]), "-NAK");
    let second: Vec<String> = rig
        .take()
        .into_iter()
        .filter(|line| line.starts_with("_INBOX.r"))
        .collect();
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(reply_of(&second[0]).starts_with("$JS.ACK.S.C.2.1.2."));
    rig.ack(reply_of(&second[0]), "-NAK");
    let lines = rig.take();
    assert!(
        lines.iter().all(|line| !line.starts_with("_INBOX.r")),
        "sent a third time: {lines:?}"
    );
    assert!(lines
        .iter()
        .any(|line| line.starts_with("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C")));
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_ack_pending, 0);
    rig.advance(31 * SECOND);
    assert!(rig.take().is_empty());
}

#[test]
fn an_ack_with_a_consumer_sequence_from_before_a_restart_still_acks() {
    // Found by the simulator (jetstream-consumers seed 7): after a restart
    // the consumer numbers its deliveries anew, so a client acking a
    // delivery it got before the restart names a consumer sequence at or
    // below the new ack floor. The ack was ignored (yet an AckSync was
    // confirmed) and the message redelivered.
    let mut rig = Rig::new(rules("C"), stream(&["a", "b"]));
    rig.pull(r#"{"batch":2}"#);
    let lines = rig.take();
    rig.ack(reply_of(&lines[0]), "+ACK");
    assert_eq!(rig.consumer.numbers(&mut rig.store).ack_floor.consumer, 1);
    // Seq 2 as delivered before a restart, with consumer sequence 1.
    rig.ack("$JS.ACK.S.C.1.2.1.1000.0", "+ACK");
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.num_ack_pending, 0);
    assert_eq!(numbers.ack_floor.stream, 2);
    rig.advance(31 * SECOND);
    assert!(rig.take().is_empty(), "redelivered an acked message");
}

#[test]
fn an_ack_above_the_delivery_pointer_is_neither_applied_nor_confirmed() {
    // Found by the simulator (jetstream-consumers seed 32): a delivery made
    // just before a restart was not yet written, so the restarted consumer
    // delivers it again; the client's AckSync of the first delivery came
    // first, was confirmed, and the message was delivered once more.
    let mut rig = Rig::new(rules("C"), stream(&["a", "b"]));
    rig.pull(r#"{"batch":1}"#);
    assert_eq!(rig.take().len(), 1);
    let next = rig.consumer.handle_ack(
        b"$JS.ACK.S.C.1.2.2.1000.0",
        b"_INBOX.ack",
        b"+ACK",
        rig.now,
        rig.wall,
        &mut rig.out,
    );
    assert!(next.is_none());
    assert!(
        rig.take().is_empty(),
        "an ack nothing delivered was confirmed"
    );
    rig.pull(r#"{"batch":1}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(reply_of(&lines[0]).starts_with("$JS.ACK.S.C.1.2.2."));
}

#[test]
fn max_ack_pending_holds_new_messages_back() {
    let mut rules = rules("C");
    rules.max_ack_pending = Some(2);
    let mut rig = Rig::new(rules, stream(&["a", "b", "c", "d"]));
    rig.pull(r#"{"batch":4}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 2);
    rig.ack(reply_of(&lines[0]), "+ACK");
    let lines = rig.take();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("_INBOX.r c "));
}

#[test]
fn max_bytes_refuses_a_message_that_does_not_fit() {
    let mut rig = Rig::new(rules("C"), stream(&["a"]));
    rig.pull(r#"{"batch":3,"max_bytes":10,"expires":1000000000}"#);
    assert_eq!(
        rig.take(),
        ["_INBOX.r NATS/1.0 409 Message Size Exceeds MaxBytes"]
    );
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_pending, 1);
}

#[test]
fn last_per_subject_starts_with_each_subjects_last() {
    let mut rules = rules("C");
    rules.start = DeliverStart::LastPerSubject;
    let mut rig = Rig::new(rules, stream(&["a", "b", "a", "c", "b"]));
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_pending, 3);
    rig.pull(r#"{"batch":10,"expires":1000000000}"#);
    let subjects: Vec<String> = rig
        .take()
        .iter()
        .map(|line| line.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(subjects, ["a", "c", "b"]);
    publish(&mut rig.store, "a", b"new");
    rig.pull("1");
    assert_eq!(rig.take().len(), 1);
    assert_eq!(rig.consumer.numbers(&mut rig.store).delivered.stream, 6);
}

#[test]
fn filtered_consumers_count_and_deliver_only_their_subjects() {
    let mut rules = rules("C");
    rules.filter = Filter::subject(b"orders.*");
    let mut rig = Rig::new(rules, stream(&["orders.1", "other", "orders.2", "x.y"]));
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_pending, 2);
    rig.pull(r#"{"batch":1}"#);
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_pending, 1);
    rig.pull(r#"{"batch":5,"no_wait":true}"#);
    let lines = rig.take();
    assert!(lines[1].starts_with("_INBOX.r orders.2 "), "{lines:?}");
    assert_eq!(lines[2], "_INBOX.r NATS/1.0 404 No Messages");
}

#[test]
fn push_consumers_deliver_with_flow_control_and_heartbeats() {
    let mut rules = rules("P");
    rules.push = Some(PushRules {
        deliver_subject: Bytes::from_static(b"deliver.here"),
        flow_control: true,
        idle_heartbeat: Some(5 * SECOND),
    });
    let mut store = stream(&[]);
    // 4 MB: twice the first window (2 MiB).
    let big = vec![b'x'; 100 * 1024];
    for _ in 0..40 {
        publish(&mut store, "big", &big);
    }
    let mut rig = Rig::new(rules, store);
    rig.pump();
    assert!(
        rig.take().is_empty(),
        "nothing goes out without a subscriber"
    );
    rig.consumer.set_interest(true, rig.now);
    rig.pump();
    let lines = rig.take();
    let deliveries = lines
        .iter()
        .filter(|l| l.starts_with("deliver.here big"))
        .count();
    let fc: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("FlowControl Request"))
        .collect();
    assert_eq!(fc.len(), 1, "{lines:?}");
    // Asked past half the window (the 11th message), stopped past all of
    // it (the 21st).
    assert_eq!(deliveries, 21, "stalls until flow control is answered");
    let Some(fc_reply) = rig.consumer.push.outstanding.clone() else {
        panic!("a flow control request is outstanding");
    };
    assert!(fc_reply.starts_with("$JS.FC.S.P."));
    rig.advance(5 * SECOND);
    let beat = rig.take();
    assert_eq!(beat, ["deliver.here NATS/1.0 100 Idle Heartbeat"]);
    rig.consumer
        .handle_flow_control(fc_reply.as_bytes(), b"", rig.wall, &mut rig.out);
    rig.pump();
    let more = rig
        .take()
        .iter()
        .filter(|l| l.starts_with("deliver.here big"))
        .count();
    assert!(more > 0);
}

/// An ordered consumer's kind of push consumer (flow control, no acks) on
/// `deliver.here`, and an empty stream.
fn ordered_push(idle_heartbeat: Option<Duration>) -> (ConsumerRules, Store<MemDisk>) {
    let mut rules = rules("P");
    rules.ack = AckPolicy::None;
    rules.max_ack_pending = None;
    rules.push = Some(PushRules {
        deliver_subject: Bytes::from_static(b"deliver.here"),
        flow_control: true,
        idle_heartbeat,
    });
    (rules, stream(&[]))
}

#[test]
fn the_flow_control_window_grows_with_each_answer() {
    let (rules, mut store) = ordered_push(None);
    // 64 MiB in messages of 256 KiB.
    let big = vec![b'x'; 256 * 1024];
    let total = 256;
    for _ in 0..total {
        publish(&mut store, "big", &big);
    }
    let mut rig = Rig::new(rules, store);
    rig.consumer.set_interest(true, rig.now);
    // The client answers each request as soon as it is out.
    let (mut delivered, mut requests, mut rounds) = (0, 0, Vec::new());
    loop {
        rig.pump();
        let lines = rig.take();
        let round = lines
            .iter()
            .filter(|l| l.starts_with("deliver.here big"))
            .count();
        requests += lines
            .iter()
            .filter(|l| l.contains("FlowControl Request"))
            .count();
        delivered += round;
        rounds.push(round);
        let Some(fc) = rig.consumer.push.outstanding.clone() else {
            break;
        };
        let in_flight = rig.consumer.push.in_flight;
        assert!(
            in_flight <= rig.consumer.push.window + 300 * 1024,
            "at most one message past the window: {in_flight}"
        );
        rig.consumer
            .handle_flow_control(fc.as_bytes(), b"", rig.wall, &mut rig.out);
        assert!(rounds.len() < 100, "{rounds:?}");
    }
    assert_eq!(delivered, total, "{rounds:?}");
    // 2, 4, 8, 16 then 32 MiB: each answer lets more out than the one
    // before, and 64 MiB take a handful of requests, not one per 256 KiB.
    assert!(rounds[1] > rounds[0] && rounds[2] > rounds[1], "{rounds:?}");
    assert!(requests <= 8, "{requests} requests: {rounds:?}");
    assert_eq!(rig.consumer.push.window, FLOW_CONTROL_MAX);
}

#[test]
fn a_push_burst_stops_at_its_limit_and_goes_on_at_once() {
    let (rules, mut store) = ordered_push(Some(5 * SECOND));
    let payload = vec![b'x'; 1000];
    for _ in 0..3000 {
        publish(&mut store, "m", &payload);
    }
    let mut rig = Rig::new(rules, store);
    rig.consumer.set_interest(true, rig.now);
    rig.consumer
        .pump(&mut rig.store, rig.now, rig.wall, &mut rig.out);
    let first = rig.take().len();
    // About 256 KiB of 1 KB deliveries, not the whole first window.
    assert!((250..300).contains(&first), "{first}");
    assert_eq!(rig.consumer.poll_timeout(), Some(rig.now), "due at once");
    rig.pump();
    let rest = rig.take();
    let delivered = rest
        .iter()
        .filter(|l| l.starts_with("deliver.here m"))
        .count();
    // The rest of the first window (2 MiB): past half of it a request.
    assert!(first + delivered < 3000, "{first} + {delivered}");
    // Stopped right past the window.
    let in_flight = rig.consumer.push.in_flight;
    assert!(
        in_flight > FLOW_CONTROL_START && in_flight < FLOW_CONTROL_START + 1100,
        "{in_flight}"
    );
    assert_eq!(
        rest.iter()
            .filter(|l| l.contains("FlowControl Request"))
            .count(),
        1
    );
    // Nothing more until the answer; the next timer is the heartbeat.
    assert_eq!(rig.consumer.poll_timeout(), Some(rig.now + 5 * SECOND));
}

#[test]
fn a_deleted_consumer_answers_its_waiting_requests() {
    let mut rig = Rig::new(rules("C"), stream(&[]));
    rig.pull(r#"{"batch":1,"expires":5000000000}"#);
    rig.consumer.close(&mut rig.out);
    assert_eq!(rig.take(), ["_INBOX.r NATS/1.0 409 Consumer Deleted"]);
}

#[test]
fn a_purge_settles_what_was_pending_and_moves_the_consumer_up() {
    // As the reference: p.b at 1, 3, 5; p.a at 2, 4, 6.
    let mut rig = Rig::new(
        rules("C"),
        stream(&["p.b", "p.a", "p.b", "p.a", "p.b", "p.a"]),
    );
    rig.pull(r#"{"batch":3}"#);
    let lines = rig.take();
    rig.ack(reply_of(&lines[1]), "+ACK");
    let Store::Memory(memory) = &mut rig.store else {
        unreachable!()
    };
    memory.purge_ex(&Filter::subject(b"p.b"), 0, 0).unwrap();
    rig.consumer.stream_shrunk(&mut rig.store);
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.num_ack_pending, 0);
    assert_eq!(numbers.ack_floor, numbers.delivered);
    assert_eq!(numbers.delivered.stream, 3);
    assert_eq!(numbers.num_pending, 2);
    let Store::Memory(memory) = &mut rig.store else {
        unreachable!()
    };
    memory.purge().unwrap();
    rig.consumer.stream_shrunk(&mut rig.store);
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(numbers.delivered.stream, 6);
    assert_eq!(numbers.ack_floor.stream, 6);
    assert_eq!(numbers.delivered.consumer, 3);
    assert_eq!(numbers.num_pending, 0);
    publish(&mut rig.store, "p.a", b"y");
    rig.pull("1");
    let lines = rig.take();
    assert!(
        reply_of(&lines[0]).starts_with("$JS.ACK.S.C.1.7.4."),
        "{lines:?}"
    );
}

#[test]
fn a_paused_consumer_holds_messages_until_the_pause_ends() {
    let mut rules = rules("C");
    rules.pause_until = Some(WallTime(5_000 + 10 * SECOND.as_nanos() as u64));
    let mut rig = Rig::new(rules, stream(&["a"]));
    assert!(rig.consumer.is_paused());
    rig.pull(r#"{"batch":1,"expires":60000000000}"#);
    assert!(rig.take().is_empty(), "nothing while paused");
    rig.advance(10 * SECOND);
    assert!(!rig.consumer.is_paused());
    let lines = rig.take();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("_INBOX.r a "));
}

fn overflow_rules() -> ConsumerRules {
    let mut rules = rules("C");
    rules.priority_policy = PriorityPolicy::Overflow;
    rules.priority_groups = vec!["G".into()];
    rules
}

#[test]
fn priority_fields_are_checked_against_the_policy() {
    let mut plain = Rig::new(rules("C"), stream(&["a"]));
    plain.pull(r#"{"batch":1,"min_pending":2}"#);
    assert_eq!(
        plain.take(),
        ["_INBOX.r NATS/1.0 400 Bad Request - Not a Overflow Priority consumer"]
    );
    // A group on a consumer without priority groups is ignored.
    plain.pull(r#"{"batch":1,"group":"X"}"#);
    assert_eq!(plain.take().len(), 1);

    let mut rig = Rig::new(overflow_rules(), stream(&["a"]));
    for (body, text) in [
        (r#"{"batch":1}"#, "Priority Group missing"),
        (r#"{"batch":1,"group":"H"}"#, "Invalid Priority Group"),
        (
            r#"{"batch":1,"group":"G","id":"x"}"#,
            "Not a Pinned Client Priority consumer",
        ),
        (
            r#"{"batch":1,"group":"G","priority":10}"#,
            "Priority must be between 0 and 9",
        ),
    ] {
        rig.pull(body);
        assert_eq!(
            rig.take(),
            [format!("_INBOX.r NATS/1.0 400 Bad Request - {text}")],
            "{body}"
        );
    }
    // A bare batch size names no group and is served.
    rig.pull("1");
    assert_eq!(rig.take().len(), 1);
}

#[test]
fn overflow_serves_a_request_only_while_its_minimum_pending_holds() {
    let mut rig = Rig::new(overflow_rules(), stream(&["a", "b"]));
    rig.pull_to("_INBOX.min", r#"{"batch":5,"group":"G","min_pending":3}"#);
    assert!(rig.take().is_empty());
    assert_eq!(rig.consumer.num_waiting(), 1);
    publish(&mut rig.store, "c", b"data");
    rig.pump();
    // Three pending: the first goes out, then two are left, below the minimum.
    let lines = rig.take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("_INBOX.min a "), "{lines:?}");
    // A no_wait request while the waiting one still asks for more than is
    // pending gets nothing (checked against nats-server 2.15.1).
    rig.pull_to("_INBOX.any", r#"{"batch":5,"group":"G","no_wait":true}"#);
    assert_eq!(rig.take(), ["_INBOX.any NATS/1.0 408 Requests Pending"]);
    // One asking for no more than is pending is served past the waiting one.
    rig.pull_to(
        "_INBOX.few",
        r#"{"batch":2,"group":"G","expires":1000000000}"#,
    );
    let lines = rig.take();
    assert!(lines[0].starts_with("_INBOX.few b "), "{lines:?}");
    assert!(lines[1].starts_with("_INBOX.few c "), "{lines:?}");
    assert_eq!(rig.consumer.num_waiting(), 1);
}

#[test]
fn overflow_serves_a_request_once_enough_acks_are_outstanding() {
    let mut rig = Rig::new(overflow_rules(), stream(&["a", "b", "c", "d"]));
    rig.pull_to(
        "_INBOX.slow",
        r#"{"batch":4,"group":"G","min_ack_pending":2}"#,
    );
    assert!(rig.take().is_empty());
    rig.pull_to("_INBOX.main", r#"{"batch":2,"group":"G"}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("_INBOX.main a "), "{lines:?}");
    assert!(lines[1].starts_with("_INBOX.main b "), "{lines:?}");
    assert!(lines[2].starts_with("_INBOX.slow c "), "{lines:?}");
    assert!(lines[3].starts_with("_INBOX.slow d "), "{lines:?}");
}

/// The `Nats-Pin-Id` of each delivery waiting in `out`, and the subjects
/// of everything else published.
fn pins_and_publishes(out: &VecDeque<JsAction>) -> (Vec<String>, Vec<String>) {
    let mut pins = Vec::new();
    let mut published = Vec::new();
    for action in out {
        match action {
            JsAction::Deliver { headers, .. } => {
                let text = String::from_utf8_lossy(headers);
                let pin = text
                    .lines()
                    .find_map(|line| line.strip_prefix("Nats-Pin-Id: "))
                    .unwrap_or_default();
                pins.push(pin.to_string());
            }
            JsAction::Publish { subject, .. } => {
                published.push(String::from_utf8_lossy(subject).into_owned());
            }
            _ => {}
        }
    }
    (pins, published)
}

#[test]
fn a_pinned_client_gets_everything_until_its_pin_lapses_or_is_dropped() {
    let mut rules = rules("C");
    rules.priority_policy = PriorityPolicy::PinnedClient;
    rules.priority_groups = vec!["G".into()];
    rules.pinned_ttl = 10 * SECOND;
    let mut rig = Rig::new(rules, stream(&["a", "b", "c", "d"]));
    rig.pull_to("_INBOX.one", r#"{"batch":1,"group":"G"}"#);
    let (pins, published) = pins_and_publishes(&rig.out);
    assert_eq!(published, ["$JS.EVENT.ADVISORY.CONSUMER.PINNED.S.C"]);
    assert_eq!(pins.len(), 1);
    let pin = pins[0].clone();
    assert_eq!(pin.len(), 22);
    assert_eq!(
        rig.consumer.pin().map(|p| p.id.as_str()),
        Some(pin.as_str())
    );
    rig.take();
    // Another client without the pin waits; the pinned one is served.
    rig.pull_to(
        "_INBOX.two",
        r#"{"batch":1,"group":"G","expires":60000000000}"#,
    );
    assert!(rig.take().is_empty());
    rig.pull_to(
        "_INBOX.one",
        &format!(r#"{{"batch":1,"group":"G","id":"{pin}"}}"#),
    );
    assert_eq!(pins_and_publishes(&rig.out).0, std::slice::from_ref(&pin));
    assert!(rig.take()[0].starts_with("_INBOX.one b "));
    // A stale id is refused at once.
    rig.pull_to("_INBOX.old", r#"{"batch":1,"group":"G","id":"stale"}"#);
    assert_eq!(rig.take(), ["_INBOX.old NATS/1.0 423 Nats-Pin-Id mismatch"]);
    // Ten seconds without the pinned client: the pin lapses and the
    // waiting client gets a new one with the next message.
    rig.advance(10 * SECOND);
    let (pins, published) = pins_and_publishes(&rig.out);
    assert_eq!(
        published,
        [
            "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.S.C",
            "$JS.EVENT.ADVISORY.CONSUMER.PINNED.S.C"
        ]
    );
    assert_eq!(pins.len(), 1);
    assert_ne!(pins[0], pin);
    assert!(rig
        .take()
        .iter()
        .any(|line| line.starts_with("_INBOX.two c ")));
    // The old pin holder, asking with its lapsed id, is told so.
    rig.pull_to(
        "_INBOX.one",
        &format!(r#"{{"batch":1,"group":"G","id":"{pin}"}}"#),
    );
    assert_eq!(rig.take(), ["_INBOX.one NATS/1.0 423 Nats-Pin-Id mismatch"]);
    // UNPIN: the next request without an id is pinned anew.
    rig.consumer.unpin("admin", rig.wall, &mut rig.out);
    assert_eq!(
        pins_and_publishes(&rig.out).1,
        ["$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.S.C"]
    );
    rig.take();
    assert!(rig.consumer.pin().is_none());
    rig.pull_to("_INBOX.three", r#"{"batch":1,"group":"G"}"#);
    let (pins, _) = pins_and_publishes(&rig.out);
    assert_eq!(pins.len(), 1);
    assert!(rig
        .take()
        .iter()
        .any(|line| line.starts_with("_INBOX.three d ")));
}

#[test]
fn prioritized_requests_are_served_lowest_number_first_taking_turns() {
    let mut rules = rules("C");
    rules.priority_policy = PriorityPolicy::Prioritized;
    rules.priority_groups = vec!["G".into()];
    let mut rig = Rig::new(rules, stream(&[]));
    rig.pull_to("_INBOX.low", r#"{"batch":1,"group":"G","priority":5}"#);
    rig.pull_to("_INBOX.high1", r#"{"batch":2,"group":"G","priority":1}"#);
    rig.pull_to("_INBOX.high2", r#"{"batch":2,"group":"G","priority":1}"#);
    assert!(rig.take().is_empty());
    for subject in ["a", "b", "c", "d", "e"] {
        publish(&mut rig.store, subject, b"data");
    }
    rig.pump();
    let to: Vec<String> = rig
        .take()
        .iter()
        .map(|line| line.split(' ').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        to,
        [
            "_INBOX.high1",
            "_INBOX.high2",
            "_INBOX.high1",
            "_INBOX.high2",
            "_INBOX.low"
        ]
    );
}

#[test]
fn sampled_acks_are_reported_with_their_delay() {
    let mut rules = rules("C");
    rules.sample_percent = 100;
    let mut rig = Rig::new(rules, stream(&["a", "b"]));
    rig.pull(r#"{"batch":2}"#);
    let lines = rig.take();
    rig.advance(SECOND);
    rig.take();
    rig.ack(reply_of(&lines[1]), "+ACK");
    let metrics: Vec<serde_json::Value> = rig
        .out
        .iter()
        .filter_map(|action| match action {
            JsAction::Publish {
                subject, payload, ..
            } if &subject[..] == b"$JS.EVENT.METRIC.CONSUMER.ACK.S.C" => {
                serde_json::from_slice(payload).ok()
            }
            _ => None,
        })
        .collect();
    assert_eq!(metrics.len(), 1);
    assert_eq!(
        metrics[0]["type"],
        "io.nats.jetstream.metric.v1.consumer_ack"
    );
    assert_eq!(metrics[0]["stream_seq"], 2);
    assert_eq!(metrics[0]["consumer_seq"], 2);
    assert_eq!(metrics[0]["deliveries"], 1);
    assert_eq!(metrics[0]["ack_time"], 1_000_000_000);
    // Acked already: no second report.
    rig.out.clear();
    rig.ack(reply_of(&lines[1]), "+ACK");
    assert!(rig.out.is_empty());
}

/// A stream holding `subjects` stored at the given milliseconds.
fn timed_stream(messages: &[(&str, u64)]) -> Store<MemDisk> {
    let mut store = Store::Memory(MemStore::new(StoreConfig::default()));
    let Store::Memory(memory) = &mut store else {
        unreachable!()
    };
    for (subject, millis) in messages {
        memory
            .store_msg(
                subject.as_bytes(),
                b"",
                b"data",
                WallTime(millis * 1_000_000),
                None,
            )
            .expect("stored");
    }
    store
}

fn deliveries(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| line.contains("$JS.ACK."))
        .count()
}

#[test]
fn replay_original_keeps_the_stored_gaps_then_delivers_at_once() {
    let mut rules = rules("C");
    rules.replay_original = true;
    let store = timed_stream(&[("s.0", 1000), ("s.1", 1300), ("s.2", 1300), ("s.3", 2300)]);
    let mut rig = Rig::new(rules, store);
    rig.pull(r#"{"batch":10,"expires":60000000000}"#);
    // The first goes at once; the second waits its 300 ms gap.
    assert_eq!(deliveries(&rig.take()), 1);
    assert_eq!(
        rig.consumer.poll_timeout(),
        Some(rig.now + Duration::from_millis(300))
    );
    rig.advance(Duration::from_millis(299));
    assert_eq!(deliveries(&rig.take()), 0);
    // At 300 ms s.1 goes, and s.2 (same time) right after it.
    rig.advance(Duration::from_millis(1));
    assert_eq!(deliveries(&rig.take()), 2);
    rig.advance(Duration::from_millis(999));
    assert_eq!(deliveries(&rig.take()), 0);
    rig.advance(Duration::from_millis(1));
    assert_eq!(deliveries(&rig.take()), 1);
    // Caught up past the stream's last message of start-up: what is
    // published now goes at once, whatever its time.
    let Store::Memory(memory) = &mut rig.store else {
        unreachable!()
    };
    memory
        .store_msg(b"s.4", b"", b"late", WallTime(99_000 * 1_000_000), None)
        .expect("stored");
    rig.pump();
    assert_eq!(deliveries(&rig.take()), 1);
}

/// A push consumer with subscribers, limited to `limit` (bytes a second,
/// burst), over `count` messages of 400 bytes, pumped once.
fn rate_limited(limit: (u64, u64), idle_heartbeat: Option<Duration>, count: usize) -> Rig {
    let mut rules = rules("C");
    rules.push = Some(PushRules {
        deliver_subject: Bytes::from_static(b"deliver.here"),
        flow_control: false,
        idle_heartbeat,
    });
    rules.rate_limit = Some(limit);
    let mut store = stream(&[]);
    for _ in 0..count {
        publish(&mut store, "big", &[b'x'; 400]);
    }
    let mut rig = Rig::new(rules, store);
    rig.consumer.set_interest(true, rig.now);
    rig.pump();
    rig
}

#[test]
fn rate_limit_paces_a_push_consumer_after_its_burst() {
    // 1000 bytes a second, a burst of 1000 bytes.
    let mut rig = rate_limited((1000, 1000), None, 5);
    // Two fit in the burst; the third goes into debt and waits for it.
    assert_eq!(deliveries(&rig.take()), 2);
    let wait = rig.consumer.poll_timeout().expect("held") - rig.now;
    assert!(
        wait > Duration::from_millis(200) && wait < Duration::from_millis(600),
        "{wait:?}"
    );
    rig.advance(wait);
    assert_eq!(deliveries(&rig.take()), 1);
    rig.advance(Duration::from_millis(200));
    assert_eq!(deliveries(&rig.take()), 0);
    // Long after: the held one goes, and the last fits the refilled bucket.
    rig.advance(Duration::from_secs(2));
    assert_eq!(deliveries(&rig.take()), 2);
}

#[test]
fn a_delivery_larger_than_the_burst_stops_a_rate_limited_consumer() {
    let mut rig = rate_limited((1000, 100), Some(SECOND), 1);
    assert!(rig.take().is_empty());
    // Stopped for good, without a timer to spin on or heartbeats.
    assert_eq!(rig.consumer.poll_timeout(), None);
    rig.advance(Duration::from_secs(60));
    assert!(rig.take().is_empty());
}

#[test]
fn reset_starts_over_at_a_sequence_or_the_ack_floor() {
    let mut rig = Rig::new(rules("C"), stream(&["s.0", "s.1", "s.2", "s.3", "s.4"]));
    rig.pull(r#"{"batch":4}"#);
    let lines = rig.take();
    rig.ack(&lines[0], "+ACK");
    rig.ack(&lines[2], "+ACK");
    // Back to the floor (stream sequence 1 acked): 2 is next, with
    // consumer sequences from 1 again and nothing pending.
    assert_eq!(rig.consumer.reset(0, &mut rig.store), Ok(2));
    let numbers = rig.consumer.numbers(&mut rig.store);
    assert_eq!(
        numbers.delivered,
        SequencePair {
            consumer: 0,
            stream: 1
        }
    );
    assert_eq!(
        numbers.ack_floor,
        SequencePair {
            consumer: 0,
            stream: 1
        }
    );
    assert_eq!((numbers.num_ack_pending, numbers.num_pending), (0, 4));
    assert_eq!(numbers.last_delivery, None);
    assert_eq!(rig.consumer.poll_timeout(), None);
    rig.pull(r#"{"batch":1}"#);
    let lines = rig.take();
    assert!(
        lines[0].starts_with("_INBOX.r s.1 $JS.ACK.S.C.1.2.1."),
        "{lines:?}"
    );
    // Any sequence for deliver all, even past the end.
    assert_eq!(rig.consumer.reset(100, &mut rig.store), Ok(100));
    assert_eq!(rig.consumer.numbers(&mut rig.store).num_pending, 0);

    let mut by_seq = rules("Q");
    by_seq.start = DeliverStart::BySequence(3);
    let mut rig = Rig::new(by_seq, stream(&["s.0", "s.1", "s.2", "s.3"]));
    assert_eq!(
        rig.consumer.reset(2, &mut rig.store),
        Err("below start seq")
    );
    assert_eq!(rig.consumer.reset(4, &mut rig.store), Ok(4));

    let mut last = rules("L");
    last.start = DeliverStart::Last;
    let mut rig = Rig::new(last, stream(&["s.0", "s.1", "s.2"]));
    assert_eq!(rig.consumer.reset(1, &mut rig.store), Err("not allowed"));
    assert_eq!(rig.consumer.reset(0, &mut rig.store), Ok(3));
}

#[test]
fn replay_measures_each_gap_from_the_delivery_before_even_a_redelivery() {
    let mut rules = rules("C");
    rules.replay_original = true;
    let store = timed_stream(&[("s.0", 1000), ("s.1", 1300), ("s.2", 1400), ("s.3", 1500)]);
    let mut rig = Rig::new(rules, store);
    rig.pull(r#"{"batch":10,"expires":60000000000}"#);
    let first = rig.take();
    assert_eq!(deliveries(&first), 1);
    rig.advance(Duration::from_millis(300));
    assert_eq!(deliveries(&rig.take()), 1);
    // s.2 is held 100 ms; s.0, naked meanwhile, goes after it (the
    // reference had s.2 in hand), at once: its gap is negative.
    rig.ack(&first[0], "-NAK");
    rig.advance(Duration::from_millis(100));
    let lines: Vec<String> = rig
        .take()
        .into_iter()
        .filter(|line| line.contains("$JS.ACK."))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(" s.2 ") && lines[1].contains(" s.0 "),
        "{lines:?}"
    );
    // s.3 then waits its gap from s.0, 500 ms, as the reference measures
    // from the delivery before, whatever it was.
    assert_eq!(
        rig.consumer.poll_timeout(),
        Some(rig.now + Duration::from_millis(500))
    );
}

#[test]
fn waiting_replies_are_watched_while_waited_on_and_dropped_when_gone() {
    let mut rig = Rig::new(rules("C"), stream(&["a"]));
    // Served at once: never waits, never watched.
    rig.pull_to("_INBOX.one", r#"{"batch":1}"#);
    assert_eq!(rig.take().len(), 1);
    assert!(rig.consumer.take_reply_changes().is_empty());
    // Two requests on one inbox and one on another wait.
    rig.pull_to("_INBOX.x", r#"{"batch":1}"#);
    rig.pull_to("_INBOX.x", r#"{"batch":1}"#);
    rig.pull_to("_INBOX.y", r#"{"batch":3}"#);
    let watch = |reply: &str, on: bool| ("A".to_string(), Bytes::from(reply.to_string()), on);
    assert_eq!(
        rig.consumer.take_reply_changes(),
        [watch("_INBOX.x", true), watch("_INBOX.y", true)]
    );
    // The server found `_INBOX.x` gone: both its requests go, silently.
    rig.consumer.reply_gone("A", b"_INBOX.x");
    assert_eq!(rig.consumer.num_waiting(), 1);
    assert!(rig.take().is_empty());
    assert_eq!(
        rig.consumer.take_reply_changes(),
        [watch("_INBOX.x", false)]
    );
    // Another account's reply of the same name is not this one.
    rig.consumer.reply_gone("B", b"_INBOX.y");
    assert_eq!(rig.consumer.num_waiting(), 1);
    // Served in full: no longer waited on.
    for subject in ["b", "c", "d"] {
        publish(&mut rig.store, subject, b"data");
    }
    rig.pump();
    assert_eq!(rig.take().len(), 3);
    assert_eq!(
        rig.consumer.take_reply_changes(),
        [watch("_INBOX.y", false)]
    );
}

#[test]
fn a_deadline_already_past_times_out_at_once_and_zero_batches_show_as_asked() {
    let mut rig = Rig::new(rules("C"), stream(&["a"]));
    rig.pull(r#"{"batch":2,"expires":-1}"#);
    assert_eq!(rig.take(), ["_INBOX.r NATS/1.0 408 Request Timeout"]);
    let mut rig = Rig::new(rules("C"), stream(&[]));
    rig.pull(r#"{"batch":0,"expires":1000}"#);
    rig.advance(Duration::from_micros(1));
    let Some(JsAction::Publish { headers, .. }) = rig.out.pop_front() else {
        panic!("a status");
    };
    assert_eq!(
        &headers[..],
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: 0\r\n\r\n"
    );
}

/// A push consumer with `ack_policy: flow_control` (as the config checks
/// leave it: 1 s heartbeats, no ack wait, `max_ack_pending`).
fn flow_control_rules(max_ack_pending: u64) -> ConsumerRules {
    let mut rules = rules("F");
    rules.ack = AckPolicy::All;
    rules.flow_control_acks = true;
    rules.ack_wait = Duration::ZERO;
    rules.max_ack_pending = Some(max_ack_pending);
    rules.push = Some(PushRules {
        deliver_subject: Bytes::from_static(b"fc.in"),
        flow_control: true,
        idle_heartbeat: Some(SECOND),
    });
    rules
}

/// The answer a sourcing stream gives to a flow-control request.
fn fc_answer(last_consumer: u64, last_stream: u64) -> Vec<u8> {
    format!(
        "NATS/1.0\r\nNats-Last-Consumer: {last_consumer}\r\nNats-Last-Stream: {last_stream}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn flow_control_acks_stop_at_max_ack_pending_and_the_answer_moves_the_floor() {
    let mut rig = Rig::new(
        flow_control_rules(3),
        stream(&["a.1", "a.2", "a.3", "a.4", "a.5"]),
    );
    rig.consumer.set_interest(true, rig.now);
    rig.pump();
    let lines = rig.take();
    // Three messages, then a flow-control request: the window is full.
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[2].starts_with("fc.in a.3 $JS.ACK.S.F.1.3.3."));
    assert_eq!(lines[3], "fc.in NATS/1.0 100 FlowControl Request");
    let fc = rig.consumer.push.outstanding.clone().expect("asked");
    // A client's ack counts for nothing: acks come from flow control.
    rig.ack(reply_of(&lines[0]), "+ACK");
    assert_eq!(rig.consumer.state().ack_floor.stream, 0);
    // Nothing is redelivered, however long the wait.
    rig.advance(60 * SECOND);
    assert!(rig.take().iter().all(|l| !l.contains(" a.")));
    // An answer for another request is not the latest: ignored.
    rig.consumer
        .handle_flow_control(b"$JS.FC.S.F.zzzz", &fc_answer(2, 2), rig.wall, &mut rig.out);
    assert_eq!(rig.consumer.state().ack_floor.stream, 0);
    // The answer acks everything up to its stream sequence.
    rig.consumer
        .handle_flow_control(fc.as_bytes(), &fc_answer(2, 2), rig.wall, &mut rig.out);
    let state = rig.consumer.state().clone();
    assert_eq!((state.ack_floor.consumer, state.ack_floor.stream), (2, 2));
    assert_eq!(state.pending.len(), 1);
    assert_eq!(rig.consumer.take_settled(), [1, 2]);
    rig.pump();
    let lines = rig.take();
    // Two more fit: the window is full again, so another request.
    assert!(lines[0].starts_with("fc.in a.4 "), "{lines:?}");
    assert!(lines[1].starts_with("fc.in a.5 "), "{lines:?}");
    assert_eq!(lines[2], "fc.in NATS/1.0 100 FlowControl Request");
}

#[test]
fn flow_control_acks_ask_at_each_heartbeat_while_messages_are_pending() {
    let mut rig = Rig::new(flow_control_rules(1000), stream(&["a.1", "a.2"]));
    rig.consumer.set_interest(true, rig.now);
    rig.pump();
    assert_eq!(rig.take().len(), 2);
    assert!(rig.consumer.push.outstanding.is_none());
    rig.advance(SECOND);
    assert_eq!(
        rig.take(),
        [
            "fc.in NATS/1.0 100 Idle Heartbeat",
            "fc.in NATS/1.0 100 FlowControl Request"
        ]
    );
    let fc = rig.consumer.push.outstanding.clone().expect("asked");
    // An answer before any delivery (a zero delivery sequence) acks none.
    rig.consumer
        .handle_flow_control(fc.as_bytes(), &fc_answer(0, 2), rig.wall, &mut rig.out);
    assert_eq!(rig.consumer.state().pending.len(), 2);
    rig.advance(SECOND);
    assert_eq!(rig.take().len(), 2, "a heartbeat and a new request");
    let fc = rig.consumer.push.outstanding.clone().expect("asked again");
    // An answer past what was delivered acks what is pending.
    rig.consumer
        .handle_flow_control(fc.as_bytes(), &fc_answer(7, 9), rig.wall, &mut rig.out);
    let state = rig.consumer.state();
    assert!(state.pending.is_empty());
    assert_eq!((state.ack_floor.consumer, state.ack_floor.stream), (2, 2));
    // Nothing pending: heartbeats alone.
    rig.advance(SECOND);
    assert_eq!(rig.take(), ["fc.in NATS/1.0 100 Idle Heartbeat"]);
}

#[test]
fn a_termination_under_ack_all_settles_and_forgets_everything_below_it() {
    // Found by mutating the fuzz seeds: the messages below a terminated
    // one left the tracker's pending set but kept their redelivery timers.
    let mut rules = rules("A");
    rules.ack = AckPolicy::All;
    let mut rig = Rig::new(rules, stream(&["a.1", "a.2", "a.3"]));
    rig.pull(r#"{"batch":3}"#);
    let lines = rig.take();
    assert_eq!(lines.len(), 3);
    rig.ack(reply_of(&lines[1]), "+TERM");
    assert_eq!(
        rig.take(),
        ["$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.A "]
    );
    assert_eq!(rig.consumer.take_settled(), [1, 2]);
    let state = rig.consumer.state();
    assert_eq!(state.pending.keys().copied().collect::<Vec<_>>(), [3]);
    // Only the third comes back after its ack wait.
    rig.advance(31 * SECOND);
    let again = rig.take();
    assert!(again.is_empty(), "{again:?}");
    rig.pull(r#"{"batch":3,"no_wait":true}"#);
    let again = rig.take();
    assert!(
        again[0].starts_with("_INBOX.r a.3 $JS.ACK.S.A.2.3."),
        "{again:?}"
    );
}
