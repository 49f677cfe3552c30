//! The reply parser against the reference's rules, and the batch machine
//! against transcripts recorded from nats-server 2.15.1 (a memory stream
//! `F`, each message stored at the next stream sequence unless the step
//! says it is refused or a duplicate).

use super::*;

const PREFIX: &[u8] = br#"{"stream":"F","seq":"#;
/// The stream `F` with room for more batches.
const ROOM: Context<'static> = Context {
    ack_prefix: PREFIX,
    room: true,
    no_ack: false,
};

fn reply(text: &str) -> Option<Result<FastReply<'_>, InvalidPattern>> {
    parse_reply(text.as_bytes())
}

#[test]
fn the_reply_is_read_from_the_right() {
    let parsed = reply("_INBOX.a.b.uuid.25.ok.7.1.$FI").unwrap().unwrap();
    assert_eq!(
        parsed,
        FastReply {
            id: b"uuid",
            flow: 25,
            gap_ok: true,
            seq: 7,
            op: Op::Append
        }
    );
    // An empty prefix and an empty id still follow the pattern.
    let parsed = reply(".x.1.fail.1.0.$FI").unwrap().unwrap();
    assert_eq!((parsed.id, parsed.op), (&b"x"[..], Op::Start));
    let parsed = reply("p..1.fail.1.0.$FI").unwrap().unwrap();
    assert_eq!(parsed.id, b"");
}

#[test]
fn only_replies_ending_in_the_suffix_are_fast_batches() {
    for other in [
        "",
        ".$FI",
        "$FI",
        "_INBOX.x",
        "a.b.10.fail.1.0.$FIX",
        "a.$fi",
    ] {
        assert_eq!(reply(other), None, "{other:?}");
    }
}

#[test]
fn malformed_replies_are_invalid_patterns() {
    for bad in [
        "x.$FI",
        "a.b.10.fail.1.5.$FI",                    // no such operation
        "a.b.10.fail.1.-1.$FI",                   // not digits
        "a.b.10.fail.2.0.$FI",                    // a start past 1
        "a.b.10.fail.1.1.$FI",                    // an append at 1
        "a.b.10.fail.1.3.$FI",                    // an end marker first
        "a.b.10.fail.0.2.$FI",                    // sequence 0
        "a.b.10.maybe.1.0.$FI",                   // gap mode
        "a.b.10.fail.x.2.$FI",                    // sequence not a number
        "b.10.fail.1.0.$FI",                      // no prefix before the id
        "10.fail.1.0.$FI",                        // no id
        "a.b.10.fail.18446744073709551615.2.$FI", // u64::MAX
        "a.b.10.fail.18446744073709551616.2.$FI", // past u64
    ] {
        assert_eq!(reply(bad), Some(Err(InvalidPattern)), "{bad:?}");
    }
    // Commits and pings may come at any sequence.
    assert!(reply("a.b.10.fail.1.2.$FI").unwrap().is_ok());
    assert!(reply("a.b.10.fail.1.4.$FI").unwrap().is_ok());
    assert!(reply("a.b.10.fail.18446744073709551614.4.$FI")
        .unwrap()
        .is_ok());
}

#[test]
fn the_flow_is_ten_unless_positive_and_at_most_u16() {
    let flow = |token: &str| {
        let text = format!("a.b.{token}.fail.1.0.$FI");
        parse_reply(text.as_bytes()).unwrap().unwrap().flow
    };
    assert_eq!(flow("0"), 10);
    assert_eq!(flow("x"), 10);
    assert_eq!(flow(""), 10);
    assert_eq!(flow("1"), 1);
    assert_eq!(flow("65535"), 65535);
    assert_eq!(flow("99999"), 65535);
    // Go's int64 wraps: 2^63 is negative there, so the default.
    assert_eq!(flow("9223372036854775808"), 10);
    // Operations wrap the same way: 2^64 + 1 reads as 1.
    let wrapped = reply("a.b.10.fail.2.18446744073709551617.$FI").unwrap();
    assert_eq!(wrapped.unwrap().op, Op::Append);
}

/// What a step does with a message the batch asks to store.
#[derive(Clone, Copy)]
enum Outcome {
    Store,
    Duplicate(u64),
    Refuse,
    /// Refused while storing (`Nats-Expected-Last-Msg-Id`).
    Lose,
}

/// A stream's fast batches and a stand-in for its store.
struct Driver {
    batches: FastBatches,
    last_seq: u64,
    now: WallTime,
}

impl Driver {
    fn new() -> Self {
        Driver {
            batches: FastBatches::default(),
            last_seq: 0,
            now: WallTime(1_000),
        }
    }

    /// One message; every answer as text (`durable@N` for those that wait
    /// for the store).
    fn send(&mut self, subject: &str, outcome: Outcome) -> Vec<String> {
        self.send_with(subject, b"", outcome)
    }

    fn send_with(&mut self, subject: &str, headers: &[u8], outcome: Outcome) -> Vec<String> {
        let reply = parse_reply(subject.as_bytes()).unwrap().unwrap();
        let context = ROOM;
        let mut answers = Vec::new();
        self.batches.expire(self.now);
        let begun = self
            .batches
            .begin(&reply, headers, self.now, &context, &mut answers);
        let refusal = PublishError::WrongLastSequence(self.last_seq);
        let lost = PublishError::WrongLastMsgId(String::new());
        match begun {
            Begin::Refused(error) => answers.push(Answer::Refused(error)),
            Begin::Done => {}
            Begin::Store { .. } => {
                let stored = match outcome {
                    Outcome::Store => {
                        self.last_seq += 1;
                        Stored::At(self.last_seq)
                    }
                    Outcome::Duplicate(seq) => Stored::Duplicate(seq),
                    Outcome::Refuse => Stored::Refused(&refusal),
                    Outcome::Lose => Stored::Refused(&lost),
                };
                self.batches.finish(&reply, stored, &context, &mut answers);
            }
        }
        answers.into_iter().map(show).collect()
    }
}

fn show(answer: Answer) -> String {
    match answer {
        Answer::Now(payload) => String::from_utf8(payload.to_vec()).unwrap(),
        Answer::Durable { through, payload } => {
            format!("durable@{through} {}", String::from_utf8_lossy(&payload))
        }
        Answer::Refused(error) => {
            let wire = super::super::wire::publish_error("F", &error);
            String::from_utf8(wire.to_vec()).unwrap()
        }
    }
}

fn r(id: &str, flow: u16, gap: &str, seq: u64, op: u8) -> String {
    format!("fb.{id}.{flow}.{gap}.{seq}.{op}.$FI")
}

#[test]
fn flow_acks_come_every_flow_messages_and_the_commit_acks_the_batch() {
    let mut d = Driver::new();
    let mut heard = Vec::new();
    for seq in 1..=7 {
        heard.extend(d.send(&r("b1", 2, "fail", seq, u8::from(seq > 1)), Outcome::Store));
    }
    heard.extend(d.send(&r("b1", 2, "fail", 8, 2), Outcome::Store));
    assert_eq!(
        heard,
        [
            r#"{"type":"ack","seq":0,"msgs":2}"#,
            r#"durable@2 {"type":"ack","seq":2,"msgs":2}"#,
            r#"durable@4 {"type":"ack","seq":4,"msgs":2}"#,
            r#"durable@6 {"type":"ack","seq":6,"msgs":2}"#,
            r#"durable@8 {"stream":"F","seq":8,"batch":"b1","count":8}"#,
        ]
    );
    assert_eq!(d.batches.len(), 0);
    // An end marker is not stored; the PubAck names the last message.
    assert_eq!(
        d.send(&r("b2", 3, "fail", 1, 0), Outcome::Store),
        [r#"{"type":"ack","seq":0,"msgs":3}"#]
    );
    assert_eq!(
        d.send(&r("b2", 3, "fail", 2, 3), Outcome::Store),
        [r#"durable@9 {"stream":"F","seq":9,"batch":"b2","count":1}"#]
    );
    assert_eq!(d.last_seq, 9);
}

#[test]
fn a_gap_ends_a_gap_fail_batch_and_is_skipped_under_gap_ok() {
    let mut d = Driver::new();
    d.last_seq = 9;
    d.send(&r("b3", 10, "fail", 1, 0), Outcome::Store);
    d.send(&r("b3", 10, "fail", 2, 1), Outcome::Store);
    assert_eq!(
        d.send(&r("b3", 10, "fail", 4, 1), Outcome::Store),
        [
            r#"{"type":"gap","last_seq":3,"seq":4}"#,
            r#"durable@11 {"stream":"F","seq":11,"batch":"b3","count":2}"#,
        ]
    );
    assert_eq!(
        d.send(&r("b3", 10, "fail", 5, 2), Outcome::Store),
        [
            r#"{"error":{"code":400,"err_code":10208,"description":"batch publish ID unknown"},"stream":"F","seq":0}"#
        ]
    );
    let mut heard = Vec::new();
    heard.extend(d.send(&r("b4", 10, "ok", 1, 0), Outcome::Store));
    heard.extend(d.send(&r("b4", 10, "ok", 3, 1), Outcome::Store));
    heard.extend(d.send(&r("b4", 10, "ok", 4, 4), Outcome::Store));
    heard.extend(d.send(&r("b4", 10, "ok", 6, 4), Outcome::Store));
    heard.extend(d.send(&r("b4", 10, "ok", 7, 2), Outcome::Store));
    assert_eq!(
        heard,
        [
            r#"{"type":"ack","seq":0,"msgs":10}"#,
            r#"{"type":"gap","last_seq":2,"seq":3}"#,
            r#"{"type":"gap","last_seq":4,"seq":5}"#,
            r#"durable@13 {"type":"ack","seq":0,"msgs":10}"#,
            r#"{"type":"gap","last_seq":5,"seq":7}"#,
            r#"durable@13 {"type":"ack","seq":0,"msgs":10}"#,
            r#"durable@14 {"stream":"F","seq":14,"batch":"b4","count":7}"#,
        ]
    );
}

#[test]
fn a_repeated_message_is_reported_and_ends_the_batch() {
    let mut d = Driver::new();
    d.last_seq = 22;
    d.send(&r("back", 10, "fail", 1, 0), Outcome::Store);
    d.send(&r("back", 10, "fail", 2, 1), Outcome::Store);
    assert_eq!(
        d.send(&r("back", 10, "fail", 2, 1), Outcome::Store),
        [
            r#"{"type":"gap","last_seq":3,"seq":2}"#,
            r#"durable@24 {"stream":"F","seq":24,"batch":"back","count":2}"#,
        ]
    );
    // Under gap: ok too.
    d.send(&r("again", 10, "ok", 1, 0), Outcome::Store);
    assert_eq!(
        d.send(&r("again", 10, "ok", 1, 2), Outcome::Store),
        [
            r#"{"type":"gap","last_seq":2,"seq":1}"#,
            r#"durable@25 {"stream":"F","seq":25,"batch":"again","count":1}"#,
        ]
    );
}

#[test]
fn refused_messages_end_or_skip_as_the_gap_mode_says() {
    let mut d = Driver::new();
    d.last_seq = 14;
    // The first message refused under gap: fail: refused as a publish.
    assert_eq!(
        d.send(&r("b5", 10, "fail", 1, 0), Outcome::Refuse),
        [
            r#"{"type":"ack","seq":0,"msgs":10}"#,
            r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 14"},"stream":"F","seq":0}"#,
        ]
    );
    assert_eq!(d.batches.len(), 0);
    // Under gap: ok an error report, and the batch goes on.
    d.send(&r("b6", 10, "ok", 1, 0), Outcome::Store);
    assert_eq!(
        d.send(&r("b6", 10, "ok", 2, 1), Outcome::Refuse),
        [
            r#"{"type":"err","seq":2,"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 15"}}"#
        ]
    );
    assert_eq!(
        d.send(&r("b6", 10, "ok", 3, 3), Outcome::Store),
        [r#"durable@15 {"stream":"F","seq":15,"batch":"b6","count":2}"#]
    );
    // Under gap: fail a later refusal ends the batch with what it has.
    d.send(&r("b7", 10, "fail", 1, 0), Outcome::Store);
    assert_eq!(
        d.send(&r("b7", 10, "fail", 2, 1), Outcome::Refuse),
        [
            r#"{"type":"err","seq":2,"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 16"}}"#,
            r#"durable@16 {"stream":"F","seq":16,"batch":"b7","count":1}"#,
        ]
    );
}

#[test]
fn duplicates_count_as_persisted_without_a_word() {
    let mut d = Driver::new();
    d.last_seq = 16;
    d.send(&r("b8", 10, "fail", 1, 0), Outcome::Store);
    assert!(d
        .send(&r("b8", 10, "fail", 2, 1), Outcome::Duplicate(17))
        .is_empty());
    assert_eq!(
        d.send(&r("b8", 10, "fail", 3, 2), Outcome::Duplicate(17)),
        [r#"durable@17 {"stream":"F","seq":17,"batch":"b8","count":3}"#]
    );
    // A batch of one duplicate commit is acked as a duplicate.
    assert_eq!(
        d.send(&r("b9", 10, "fail", 1, 2), Outcome::Duplicate(17)),
        [r#"durable@17 {"stream":"F","seq":17,"duplicate": true,"batch":"b9","count":1}"#]
    );
    assert_eq!(
        d.send(&r("b10", 10, "fail", 1, 2), Outcome::Store),
        [r#"durable@18 {"stream":"F","seq":18,"batch":"b10","count":1}"#]
    );
}

#[test]
fn pings_repeat_the_flow_ack_or_report_the_gap() {
    let mut d = Driver::new();
    d.last_seq = 18;
    assert_eq!(
        d.send(&r("b12", 10, "fail", 1, 4), Outcome::Store),
        [
            r#"{"error":{"code":400,"err_code":10208,"description":"batch publish ID unknown"},"stream":"F","seq":0}"#
        ]
    );
    d.send(&r("b13", 10, "fail", 1, 0), Outcome::Store);
    assert_eq!(
        d.send(&r("b13", 10, "fail", 1, 4), Outcome::Store),
        [r#"durable@19 {"type":"ack","seq":0,"msgs":10}"#]
    );
    assert_eq!(
        d.send(&r("b13", 10, "fail", 3, 4), Outcome::Store),
        [
            r#"{"type":"gap","last_seq":2,"seq":4}"#,
            r#"durable@19 {"stream":"F","seq":19,"batch":"b13","count":1}"#,
        ]
    );
}

#[test]
fn a_second_batch_starts_at_one_and_ramps_up() {
    let mut d = Driver::new();
    d.last_seq = 19;
    assert_eq!(
        d.send(&r("b14", 0, "fail", 1, 0), Outcome::Store),
        [r#"{"type":"ack","seq":0,"msgs":10}"#]
    );
    let mut heard = d.send(&r("b15", 65535, "fail", 1, 0), Outcome::Store);
    for seq in 2..=12 {
        heard.extend(d.send(&r("b15", 65535, "fail", seq, 1), Outcome::Store));
    }
    assert_eq!(
        heard,
        [
            r#"{"type":"ack","seq":0,"msgs":1}"#,
            r#"durable@21 {"type":"ack","seq":1,"msgs":2}"#,
            r#"durable@23 {"type":"ack","seq":3,"msgs":4}"#,
            r#"durable@27 {"type":"ack","seq":7,"msgs":8}"#,
        ]
    );
}

#[test]
fn refusals_before_the_batch_takes_the_message() {
    let mut d = Driver::new();
    let long = "x".repeat(65);
    let refused = d.send(&r(&long, 10, "fail", 1, 0), Outcome::Store);
    assert!(refused[0].contains("10207"), "{refused:?}");
    let level = b"NATS/1.0\r\nNats-Required-Api-Level: 99\r\n\r\n";
    let refused = d.send_with(&r("b11", 10, "fail", 1, 0), level, Outcome::Store);
    assert_eq!(
        refused,
        [
            r#"{"error":{"code":412,"err_code":10185,"description":"JetStream minimum api level required"},"stream":"F","seq":0}"#
        ]
    );
    assert_eq!(d.batches.len(), 0, "the refused batch is not kept");
    // An acceptable level is removed before storing.
    let reply = parse_reply(b"fb.b.10.fail.1.0.$FI").unwrap().unwrap();
    let context = ROOM;
    let headers = b"NATS/1.0\r\nNats-Required-Api-Level: 1\r\nA: b\r\n\r\n";
    let begun = d
        .batches
        .begin(&reply, headers, d.now, &context, &mut Vec::new());
    assert_eq!(
        begun,
        Begin::Store {
            headers: Some(Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n"))
        }
    );
}

#[test]
fn open_batches_are_limited_and_time_out() {
    let mut d = Driver::new();
    d.batches.limits.inflight = 2;
    d.send(&r("a", 10, "fail", 1, 0), Outcome::Store);
    d.send(&r("b", 10, "fail", 1, 0), Outcome::Store);
    let refused = d.send(&r("c", 10, "fail", 1, 0), Outcome::Store);
    assert!(refused[0].contains("10211"), "{refused:?}");
    assert_eq!(
        d.batches.next_deadline(),
        Some(WallTime(1_000 + 10_000_000_000))
    );
    // Idle past the timeout: gone, and its next message is unknown.
    d.now = WallTime(1_000 + 10_000_000_000);
    let unknown = d.send(&r("a", 10, "fail", 2, 1), Outcome::Store);
    assert!(unknown[0].contains("10208"), "{unknown:?}");
    assert_eq!(d.batches.len(), 0);
    // The server's total is the caller's to count.
    let reply = parse_reply(b"fb.z.10.fail.1.0.$FI").unwrap().unwrap();
    let full = Context {
        room: false,
        ..ROOM
    };
    let begun = d.batches.begin(&reply, b"", d.now, &full, &mut Vec::new());
    assert_eq!(
        begun,
        Begin::Refused(PublishError::Rejected(K::BatchPublishTooManyInflight))
    );
}

#[test]
fn the_answers_are_the_reference_json() {
    assert_eq!(&flow_ack(3, 7)[..], br#"{"type":"ack","seq":3,"msgs":7}"#);
    assert_eq!(
        &gap_report(2, 5)[..],
        br#"{"type":"gap","last_seq":2,"seq":5}"#
    );
    let error = ApiError::new(K::MessageTTLDisabled);
    assert_eq!(
        &error_report(2, &error)[..],
        br#"{"type":"err","seq":2,"error":{"code":400,"err_code":10166,"description":"per-message TTL is disabled"}}"#
    );
    let prefix = br#"{"stream":"S","domain":"hub","seq":"#;
    assert_eq!(
        &commit_ack(prefix, 0, false, b"", 0)[..],
        br#"{"stream":"S","domain":"hub","seq":0,"batch":"","count":0}"#
    );
    assert_eq!(
        &commit_ack(prefix, 4, false, b"q\"\n", 2)[..],
        br#"{"stream":"S","domain":"hub","seq":4,"batch":"q\"\n","count":2}"#
    );
}

#[test]
fn a_no_ack_stream_skips_only_the_first_flow_ack() {
    // As 2.15.1 on a `no_ack` stream: the later acks and the PubAck come.
    let mut batches = FastBatches::default();
    let quiet = Context {
        no_ack: true,
        ..ROOM
    };
    let mut heard = Vec::new();
    for (seq, op) in [(1, 0), (2, 1), (3, 2)] {
        let text = r("q", 2, "fail", seq, op);
        let reply = parse_reply(text.as_bytes()).unwrap().unwrap();
        let mut answers = Vec::new();
        let begun = batches.begin(&reply, b"", WallTime(1), &quiet, &mut answers);
        assert!(matches!(begun, Begin::Store { .. }));
        batches.finish(&reply, Stored::At(seq), &quiet, &mut answers);
        heard.extend(answers.into_iter().map(show));
    }
    assert_eq!(
        heard,
        [
            r#"durable@2 {"type":"ack","seq":2,"msgs":2}"#,
            r#"durable@3 {"stream":"F","seq":3,"batch":"q","count":3}"#,
        ]
    );
}

#[test]
fn a_committing_batch_that_cannot_persist_is_held_not_timed_out() {
    // As 2.15.1: a message refused while storing is answered as a refused
    // publish and stays pending, so an end marker finds the batch short of
    // it and the batch waits for good, answering pings, ignoring messages.
    let mut d = Driver::new();
    d.send(&r("l", 10, "fail", 1, 0), Outcome::Store);
    let lost = d.send(&r("l", 10, "fail", 2, 1), Outcome::Lose);
    assert_eq!(
        lost,
        [
            r#"{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID: "},"stream":"F","seq":0}"#
        ]
    );
    assert!(d.send(&r("l", 10, "fail", 3, 3), Outcome::Store).is_empty());
    // Past the batch timeout it is still there: a start is ignored.
    d.now = WallTime(1_000 + 20_000_000_000);
    assert!(d.send(&r("l", 10, "fail", 1, 0), Outcome::Store).is_empty());
    assert_eq!(
        d.send(&r("l", 10, "fail", 2, 4), Outcome::Store),
        [r#"durable@1 {"type":"ack","seq":0,"msgs":10}"#]
    );
    assert_eq!(d.batches.len(), 1);
    // Held sixty timeouts from its commit, then forgotten (the reference
    // never forgets it).
    assert_eq!(
        d.batches.next_deadline(),
        Some(WallTime(1_000 + 600_000_000_000))
    );
    d.now = WallTime(1_000 + 600_000_000_000);
    d.batches.expire(d.now);
    assert_eq!(d.batches.len(), 0);
    // A lost message in the middle only delays the flow: the next stored
    // message persists the batch up to it.
    let mut heard = Vec::new();
    for (seq, op, outcome) in [
        (1, 0, Outcome::Store),
        (2, 1, Outcome::Lose),
        (3, 1, Outcome::Duplicate(1)),
        (4, 2, Outcome::Store),
    ] {
        heard.extend(d.send(&r("m", 2, "ok", seq, op), outcome));
    }
    assert_eq!(heard[0], r#"{"type":"ack","seq":0,"msgs":2}"#);
    assert!(heard[1].contains("10070"), "{heard:?}");
    assert_eq!(
        heard[2..],
        [r#"durable@3 {"stream":"F","seq":3,"batch":"m","count":4}"#]
    );
}

/// Headers from `lines`, as a client sends them.
fn headers(lines: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"NATS/1.0\r\n".to_vec();
    for (key, value) in lines {
        out.extend_from_slice(format!("{key}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn header_faults_are_found_in_the_references_order() {
    let plain = HeaderRules {
        name: "F",
        allow_msg_counter: false,
        allow_msg_ttl: false,
    };
    let check = |lines: &[(&str, &str)], payload: &[u8], rules: &HeaderRules<'_>| {
        check_headers(&headers(lines), payload, rules)
    };
    let incr = ("Nats-Incr", "1");
    let stream = ("Nats-Expected-Stream", "X");
    let ttl = ("Nats-TTL", "1s");
    // Each fault with those after it: the first in the reference's order
    // (the increment, the expected stream, the TTL) is the answer.
    assert_eq!(
        check(&[ttl, stream, incr], b"", &plain),
        Err(PublishError::Rejected(K::MessageIncrDisabled))
    );
    assert_eq!(
        check(&[ttl, stream], b"", &plain),
        Err(PublishError::WrongStream)
    );
    assert_eq!(check(&[ttl], b"", &plain), Err(PublishError::TtlDisabled));
    // On a counter stream with TTLs: a payload beside an increment, then
    // a TTL that does not parse.
    let counter = HeaderRules {
        allow_msg_counter: true,
        allow_msg_ttl: true,
        ..plain
    };
    assert_eq!(
        check(&[("Nats-TTL", "soon"), incr], b"x", &counter),
        Err(PublishError::Rejected(K::MessageIncrPayload))
    );
    assert_eq!(
        check(&[("Nats-TTL", "soon"), incr], b"", &counter),
        Err(PublishError::InvalidTtl)
    );
    // What these checks leave to the stream passes: the right stream, an
    // empty expected stream, other headers, no headers.
    let fine = [("Nats-Expected-Stream", "F"), ("Nats-Msg-Id", "m"), ttl];
    assert_eq!(check(&fine, b"x", &counter), Ok(()));
    assert_eq!(check(&[("Nats-Expected-Stream", "")], b"", &plain), Ok(()));
    assert_eq!(check_headers(b"", b"x", &plain), Ok(()));
}
