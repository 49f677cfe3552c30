//! Fast batch publish (`allow_batched`) through async-nats, as a publisher
//! drives it (the client has no helper for it): each message is published
//! with a reply subject `<inbox>.<batch>.<flow>.<gap>.<seq>.<op>.$FI`, and
//! the publisher listens on `<inbox>.>` for the stream's flow acks, gap
//! reports, errors and the final PubAck. Then a transcript of fast batches,
//! good and bad, replayed against rnats and nats-server and compared reply
//! subject by reply subject.
//!
//! The first three tests also pass against the reference
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_fast_batch`).

mod common;

use std::time::Duration;

use common::{connect, js_api as api, js_server, within};
use futures::StreamExt;
use serde_json::{json, Value};

/// A publisher of fast batches: its inbox, and what it heard there.
struct Publisher {
    client: async_nats::Client,
    inbox: String,
    heard: async_nats::Subscriber,
}

impl Publisher {
    async fn new(client: &async_nats::Client) -> Publisher {
        let inbox = client.new_inbox();
        let heard = client.subscribe(format!("{inbox}.>")).await.unwrap();
        Publisher {
            client: client.clone(),
            inbox,
            heard,
        }
    }

    /// The reply subject of message `seq` of batch `id`.
    fn reply(&self, id: &str, flow: u16, gap: &str, seq: u64, op: u8) -> String {
        format!("{}.{id}.{flow}.{gap}.{seq}.{op}.$FI", self.inbox)
    }

    async fn send(&self, subject: &str, reply: String, headers: &[(&str, &str)], payload: &str) {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        self.client
            .publish_with_reply_and_headers(
                subject.to_string(),
                reply,
                map,
                payload.to_string().into(),
            )
            .await
            .unwrap();
    }

    /// Send `steps` on `subject`, noting each new reply subject (without
    /// the inbox) in `replies`; then every answer in the order it came,
    /// as (reply subject without the inbox, payload), once it is quiet.
    async fn play(
        &mut self,
        subject: &str,
        steps: &[Step],
        replies: &mut Vec<String>,
    ) -> Vec<(String, String)> {
        for step in steps {
            let reply = self.reply(step.id, step.flow, step.gap, step.seq, step.op);
            let short = reply[self.inbox.len() + 1..].to_string();
            if !replies.contains(&short) {
                replies.push(short);
            }
            let payload = format!("{}-{}", step.id, step.seq);
            self.send(subject, reply, step.headers, &payload).await;
        }
        // A scenario's answers come within moments; then it is quiet.
        let mut heard: Vec<(String, String)> = Vec::new();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_millis(400), self.heard.next()).await
        {
            let subject = msg.subject.as_str()[self.inbox.len() + 1..].to_string();
            heard.push((subject, String::from_utf8_lossy(&msg.payload).into_owned()));
        }
        heard
    }

    /// What the stream sent until (and including) the first answer that
    /// satisfies `last`, as (reply subject without the inbox, payload).
    async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
        let mut heard = Vec::new();
        loop {
            let msg = within("a fast batch answer", self.heard.next())
                .await
                .unwrap();
            let subject = msg.subject.as_str()[self.inbox.len() + 1..].to_string();
            let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
            let done = last(&payload);
            heard.push((subject, payload));
            if done {
                return heard;
            }
        }
    }
}

/// The final PubAck, or a refusal.
fn ends(answer: &Value) -> bool {
    answer.get("stream").is_some()
}

async fn fast_stream(client: &async_nats::Client, name: &str, allowed: bool) {
    let created = api(
        client,
        &format!("$JS.API.STREAM.CREATE.{name}"),
        json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())],
               "allow_batched": allowed}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    assert_eq!(
        created["config"]["allow_batched"].as_bool(),
        allowed.then_some(true)
    );
}

/// The stream's messages from sequence 1 on: (subject, payload).
async fn stored(client: &async_nats::Client, stream: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let info = api(client, &format!("$JS.API.STREAM.INFO.{stream}"), json!({})).await;
    let last = info["state"]["last_seq"].as_u64().unwrap();
    let mut messages = Vec::new();
    for seq in 1..=last {
        let got = api(
            client,
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            json!({"seq": seq}),
        )
        .await;
        let data = got["message"]["data"].as_str().unwrap_or_default();
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        messages.push((
            got["message"]["subject"].as_str().unwrap().to_string(),
            String::from_utf8(data).unwrap(),
        ));
    }
    messages
}

#[tokio::test]
async fn a_fast_batch_is_stored_in_order_with_flow_acks_and_one_pub_ack() {
    let (server, _dir) = js_server("fast-batch-order");
    let client = connect(&server.url()).await;
    fast_stream(&client, "EVENTS", true).await;
    let mut publisher = Publisher::new(&client).await;
    // Flow 2: an ack every two persisted messages.
    for seq in 1..=7u64 {
        let reply = publisher.reply("run1", 2, "fail", seq, u8::from(seq > 1));
        publisher
            .send("events.a", reply, &[], &seq.to_string())
            .await;
    }
    let reply = publisher.reply("run1", 2, "fail", 8, 2);
    publisher.send("events.b", reply, &[], "8").await;
    let heard = publisher.until(ends).await;
    let expected = [
        (
            "run1.2.fail.1.0.$FI",
            json!({"type": "ack", "seq": 0, "msgs": 2}),
        ),
        (
            "run1.2.fail.2.1.$FI",
            json!({"type": "ack", "seq": 2, "msgs": 2}),
        ),
        (
            "run1.2.fail.4.1.$FI",
            json!({"type": "ack", "seq": 4, "msgs": 2}),
        ),
        (
            "run1.2.fail.6.1.$FI",
            json!({"type": "ack", "seq": 6, "msgs": 2}),
        ),
        (
            "run1.2.fail.8.2.$FI",
            json!({"stream": "EVENTS", "seq": 8, "batch": "run1", "count": 8}),
        ),
    ]
    .map(|(subject, answer)| (subject.to_string(), answer));
    assert_eq!(heard, expected);
    let messages = stored(&client, "EVENTS").await;
    let expected: Vec<(String, String)> = (1..=8)
        .map(|n| {
            let subject = if n == 8 { "events.b" } else { "events.a" };
            (subject.to_string(), n.to_string())
        })
        .collect();
    assert_eq!(messages, expected);
    // An end-of-batch marker commits without being stored.
    let mut publisher = Publisher::new(&client).await;
    publisher
        .send(
            "events.c",
            publisher.reply("run2", 10, "fail", 1, 0),
            &[],
            "9",
        )
        .await;
    publisher
        .send(
            "events.c",
            publisher.reply("run2", 10, "fail", 2, 3),
            &[],
            "",
        )
        .await;
    let heard = publisher.until(ends).await;
    assert_eq!(
        heard[1].1,
        json!({"stream": "EVENTS", "seq": 9, "batch": "run2", "count": 1})
    );
    assert_eq!(stored(&client, "EVENTS").await.len(), 9);
}

#[tokio::test]
async fn a_gap_is_reported_and_ends_or_skips_as_the_batch_asked() {
    let (server, _dir) = js_server("fast-batch-gap");
    let client = connect(&server.url()).await;
    fast_stream(&client, "G", true).await;
    let mut publisher = Publisher::new(&client).await;
    // gap: fail: message 3 is lost, so the batch ends at 2.
    for (seq, op) in [(1, 0), (2, 1), (4, 1)] {
        let reply = publisher.reply("strict", 10, "fail", seq, op);
        publisher.send("g.a", reply, &[], &seq.to_string()).await;
    }
    let heard = publisher.until(ends).await;
    let answers: Vec<&Value> = heard.iter().map(|(_, answer)| answer).collect();
    assert_eq!(
        answers,
        [
            &json!({"type": "ack", "seq": 0, "msgs": 10}),
            &json!({"type": "gap", "last_seq": 3, "seq": 4}),
            &json!({"stream": "G", "seq": 2, "batch": "strict", "count": 2}),
        ]
    );
    // Its later messages find no batch.
    let reply = publisher.reply("strict", 10, "fail", 5, 2);
    publisher.send("g.a", reply, &[], "5").await;
    let heard = publisher.until(ends).await;
    assert_eq!(
        heard[0].1,
        json!({"error": {"code": 400, "err_code": 10208, "description": "batch publish ID unknown"},
               "stream": "G", "seq": 0})
    );
    // gap: ok: the lost message is reported and the batch goes on.
    for (seq, op) in [(1, 0), (3, 1), (4, 2)] {
        let reply = publisher.reply("loose", 10, "ok", seq, op);
        publisher.send("g.b", reply, &[], &seq.to_string()).await;
    }
    let heard = publisher.until(ends).await;
    let answers: Vec<&Value> = heard.iter().map(|(_, answer)| answer).collect();
    assert_eq!(
        answers,
        [
            &json!({"type": "ack", "seq": 0, "msgs": 10}),
            &json!({"type": "gap", "last_seq": 2, "seq": 3}),
            &json!({"stream": "G", "seq": 5, "batch": "loose", "count": 4}),
        ]
    );
    let messages = stored(&client, "G").await;
    let payloads: Vec<&str> = messages.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, ["1", "2", "1", "3", "4"]);
}

#[tokio::test]
async fn a_stream_without_allow_batched_refuses_fast_batches() {
    let (server, _dir) = js_server("fast-batch-off");
    let client = connect(&server.url()).await;
    fast_stream(&client, "PLAIN", false).await;
    let mut publisher = Publisher::new(&client).await;
    let reply = publisher.reply("b", 10, "fail", 1, 0);
    publisher.send("plain.a", reply, &[], "x").await;
    let heard = publisher.until(ends).await;
    assert_eq!(
        heard,
        [(
            "b.10.fail.1.0.$FI".to_string(),
            json!({"error": {"code": 400, "err_code": 10205, "description": "batch publish is disabled"},
                   "stream": "PLAIN", "seq": 0})
        )]
    );
    assert!(stored(&client, "PLAIN").await.is_empty());
    // A mirror may not allow them.
    let refused = api(
        &client,
        "$JS.API.STREAM.CREATE.M",
        json!({"name": "M", "mirror": {"name": "PLAIN"}, "allow_batched": true}),
    )
    .await;
    assert_eq!(
        refused["error"],
        json!({"code": 400, "err_code": 10209, "description": "stream mirrors can not also use batch publishing"})
    );
}

/// One message of the transcript: on `subject`, batch `id`, with headers.
struct Step {
    id: &'static str,
    flow: u16,
    gap: &'static str,
    seq: u64,
    op: u8,
    headers: &'static [(&'static str, &'static str)],
}

const fn s(id: &'static str, flow: u16, gap: &'static str, seq: u64, op: u8) -> Step {
    Step {
        flow,
        ..h(id, gap, seq, op, &[])
    }
}

const fn h(
    id: &'static str,
    gap: &'static str,
    seq: u64,
    op: u8,
    headers: &'static [(&'static str, &'static str)],
) -> Step {
    Step {
        id,
        flow: 10,
        gap,
        seq,
        op,
        headers,
    }
}

/// The transcript's scenarios, each sent whole before the next.
fn scenarios() -> Vec<Vec<Step>> {
    const WRONG_LAST: &[(&str, &str)] = &[("Nats-Expected-Last-Sequence", "1")];
    const M1: &[(&str, &str)] = &[("Nats-Msg-Id", "m1")];
    vec![
        vec![s("bad-gap", 10, "maybe", 1, 0)],
        vec![s("bad-op", 10, "fail", 1, 9)],
        vec![s("unknown", 10, "fail", 2, 1)],
        (1..=12)
            .map(|n| s("flow3", 3, "fail", n, u8::from(n > 1)))
            .chain([s("flow3", 3, "fail", 13, 2)])
            .collect(),
        vec![s("eob", 3, "fail", 1, 0), s("eob", 3, "fail", 2, 3)],
        vec![
            s("ok", 10, "ok", 1, 0),
            s("ok", 10, "ok", 3, 1),
            s("ok", 10, "ok", 4, 4),
            s("ok", 10, "ok", 6, 4),
            s("ok", 10, "ok", 7, 2),
        ],
        vec![h("first-refused", "fail", 1, 0, WRONG_LAST)],
        framed("later-ok", "ok", WRONG_LAST, 3),
        framed("later-fail", "fail", &[("Nats-TTL", "1s")], 1),
        vec![
            h("dup", "fail", 1, 0, M1),
            h("dup", "fail", 2, 1, M1),
            h("dup", "fail", 3, 2, M1),
        ],
        vec![h("dup-alone", "fail", 1, 2, M1)],
        vec![s("alone", 10, "fail", 1, 2)],
        vec![h(
            "api-level",
            "fail",
            1,
            0,
            &[("Nats-Required-Api-Level", "99")],
        )],
        vec![s("ping-unknown", 10, "fail", 1, 4)],
        vec![
            s("ping", 10, "fail", 1, 0),
            s("ping", 10, "fail", 1, 4),
            s("ping", 10, "fail", 3, 4),
        ],
        vec![
            s("back", 10, "fail", 1, 0),
            s("back", 10, "fail", 2, 1),
            s("back", 10, "fail", 2, 1),
        ],
        vec![s("ok-back", 10, "ok", 1, 0), s("ok-back", 10, "ok", 1, 2)],
        // A refused message under gap: ok, then a repeat: the batch waits
        // to commit and ignores what follows (still open below).
        vec![
            s("stuck", 10, "ok", 1, 0),
            h("stuck", "ok", 2, 1, &[("Nats-TTL", "1s")]),
            s("stuck", 10, "ok", 2, 1),
            s("stuck", 10, "ok", 3, 1),
            s("stuck", 10, "ok", 5, 4),
            s("stuck", 10, "ok", 6, 2),
        ],
        // The reply decides, not the atomic batch headers.
        vec![h(
            "headers",
            "fail",
            1,
            2,
            &[("Nats-Batch-Id", "zz"), ("Nats-Batch-Sequence", "1")],
        )],
        // One more batch left open: the next one starts at one ack per
        // message.
        vec![s("left-open", 0, "fail", 1, 0)],
        (1..=12)
            .map(|n| s("second", 65535, "fail", n, u8::from(n > 1)))
            .chain([s("second", 65535, "fail", 13, 2)])
            .collect(),
    ]
}

/// The transcript of [`scenarios`] on the server at `url`: every answer
/// on each message's reply subject, in the order of the messages (answers
/// to different messages may interleave differently on the wire: an ack
/// that waits for the disk leaves after the next message's gap report),
/// then the stored messages.
async fn transcript(url: String) -> Vec<String> {
    let client = connect(&url).await;
    fast_stream(&client, "F", true).await;
    let mut lines = Vec::new();
    for steps in scenarios() {
        let mut publisher = Publisher::new(&client).await;
        let mut replies: Vec<String> = Vec::new();
        let heard = publisher.play("f.x", &steps, &mut replies).await;
        for reply in replies {
            let answers: Vec<&str> = heard
                .iter()
                .filter(|(subject, _)| *subject == reply)
                .map(|(_, answer)| answer.as_str())
                .collect();
            lines.push(format!("{reply}: {}", answers.join(" | ")));
        }
        assert!(
            heard
                .iter()
                .all(|(subject, _)| lines.iter().any(|l| l.starts_with(subject.as_str()))),
            "an answer on a subject no message had: {heard:?}"
        );
    }
    for (subject, payload) in stored(&client, "F").await {
        lines.push(format!("stored {subject} {payload}"));
    }
    lines
}

#[tokio::test]
async fn fast_batches_match_the_reference() {
    let Some(reference) = rnats_tests::ServerProcess::start_reference(&[
        "-js",
        "-sd",
        common::store_dir("fast-batch-ref").to_str().unwrap(),
    ]) else {
        return;
    };
    let (server, _dir) = js_server("fast-batch-diff");
    let (ours, theirs) = tokio::join!(transcript(server.url()), transcript(reference.url()));
    let mut differences = Vec::new();
    for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a != b {
            differences.push(format!("line {index}\n  rnats:     {a}\n  reference: {b}"));
        }
    }
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The transcript is not empty of fast batch answers.
    assert!(ours
        .iter()
        .any(|l| l.contains(r#"{"type":"gap","last_seq":2,"seq":3}"#)));
}

/// A fast batch published into another account's stream through a
/// service import: the message crosses with the import's `_R_.` reply, the
/// stream reads the batch from the reply it had (carried in
/// `Nats-Request-Info`, as the reference does), and its answers come back
/// to the publisher's own reply subjects.
#[tokio::test]
async fn a_fast_batch_crosses_a_service_import() {
    let dir = common::store_dir("fast-batch-import");
    let conf = dir.with_extension("conf");
    let text = format!(
        r#"jetstream {{ store_dir: {:?} }}
accounts {{
  A {{ jetstream: enabled, users: [{{user: a, password: a}}],
      exports: [ {{service: "orders.>", response_type: stream}} ] }}
  B {{ users: [{{user: b, password: b}}],
      imports: [ {{service: {{account: A, subject: "orders.>"}}}} ] }}
}}
"#,
        dir.to_str().unwrap()
    );
    std::fs::write(&conf, text).unwrap();
    let server = rnats_tests::ServerProcess::start(&["-c", conf.to_str().unwrap()]);
    let login =
        |user: &str| async_nats::ConnectOptions::with_user_and_password(user.into(), user.into());
    let a = common::connect_with(&server.url(), login("a")).await;
    let b = common::connect_with(&server.url(), login("b")).await;
    fast_stream(&a, "ORDERS", true).await;
    let mut publisher = Publisher::new(&b).await;
    for seq in 1..=4u64 {
        let reply = publisher.reply("x1", 2, "fail", seq, u8::from(seq > 1));
        publisher
            .send("orders.new", reply, &[], &seq.to_string())
            .await;
    }
    let reply = publisher.reply("x1", 2, "fail", 5, 2);
    publisher.send("orders.new", reply, &[], "5").await;
    let heard = publisher.until(ends).await;
    let expected = [
        (
            "x1.2.fail.1.0.$FI",
            json!({"type": "ack", "seq": 0, "msgs": 2}),
        ),
        (
            "x1.2.fail.2.1.$FI",
            json!({"type": "ack", "seq": 2, "msgs": 2}),
        ),
        (
            "x1.2.fail.4.1.$FI",
            json!({"type": "ack", "seq": 4, "msgs": 2}),
        ),
        (
            "x1.2.fail.5.2.$FI",
            json!({"stream": "ORDERS", "seq": 5, "batch": "x1", "count": 5}),
        ),
    ]
    .map(|(subject, answer)| (subject.to_string(), answer));
    assert_eq!(heard, expected);
    let messages = stored(&a, "ORDERS").await;
    assert_eq!(messages.len(), 5, "{messages:?}");
    drop(server);
    let _ = std::fs::remove_file(&conf);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A batch of three: a start, a message with `headers`, and `last_op`.
fn framed(
    id: &'static str,
    gap: &'static str,
    headers: &'static [(&'static str, &'static str)],
    last_op: u8,
) -> Vec<Step> {
    vec![
        s(id, 10, gap, 1, 0),
        h(id, gap, 2, 1, headers),
        s(id, 10, gap, 3, last_op),
    ]
}

/// A batch of `last` messages acked one by one, the last its commit,
/// with headers on those `headers` names.
fn acked_each(
    id: &'static str,
    gap: &'static str,
    last: u64,
    headers: &[(u64, &'static [(&'static str, &'static str)])],
) -> Vec<Step> {
    (1..=last)
        .map(|seq| {
            let op = if seq == 1 {
                0
            } else if seq == last {
                2
            } else {
                1
            };
            let headers = headers.iter().find(|(at, _)| *at == seq);
            Step {
                flow: 1,
                ..h(id, gap, seq, op, headers.map_or(&[], |(_, h)| h))
            }
        })
        .collect()
}

/// Scenarios compared in the order the answers arrive (across the
/// messages' reply subjects), on a stream `O` taking messages of at most
/// 100 bytes, on servers whose batch timeout is one second: each is its
/// steps, then (after waiting past the timeout) more steps.
fn ordered_scenarios() -> Vec<(Vec<Step>, Vec<Step>)> {
    const SOURCE: &[(&str, &str)] = &[("Nats-Stream-Source", "X 1 o.x > o.x abc")];
    const WRONG_LAST: &[(&str, &str)] = &[("Nats-Expected-Last-Sequence", "1")];
    const LARGE: &[(&str, &str)] = &[(
        "X-Pad",
        concat!(
            "0123456789012345678901234567890123456789012345678901234567890123456789",
            "0123456789012345678901234567890123456789012345678901234567890123456789"
        ),
    )];
    const LAST_ID: &[(&str, &str)] = &[("Nats-Expected-Last-Msg-Id", "nope")];
    const TTL: &[(&str, &str)] = &[("Nats-TTL", "1s")];
    const LONG_ID: &str = "01234567890123456789012345678901234567890123456789012345678901234";
    const API_LEVEL: &[(&str, &str)] = &[("Nats-Required-Api-Level", "99"), ("Nats-TTL", "1s")];
    const LARGE_TTL: &[(&str, &str)] = &[
        ("Nats-TTL", "1s"),
        (
            "X-Pad",
            "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
        ),
    ];
    const ID_D1: &[(&str, &str)] = &[("Nats-Msg-Id", "d1")];
    const STREAM_DUP: &[(&str, &str)] = &[("Nats-Msg-Id", "d1"), ("Nats-Expected-Stream", "X")];
    const TTL_DUP: &[(&str, &str)] = &[("Nats-Msg-Id", "d1"), ("Nats-TTL", "1s")];
    const TTL_SOURCE: &[(&str, &str)] = &[
        ("Nats-Stream-Source", "X 1 o.x > o.x abc"),
        ("Nats-TTL", "1s"),
    ];
    const STREAM_TTL: &[(&str, &str)] = &[("Nats-TTL", "1s"), ("Nats-Expected-Stream", "X")];
    const TTL_LAST: &[(&str, &str)] = &[("Nats-Expected-Last-Sequence", "1"), ("Nats-TTL", "x")];
    const TTL_LAST_ID: &[(&str, &str)] =
        &[("Nats-Expected-Last-Msg-Id", "nope"), ("Nats-TTL", "1s")];
    const ROLLUP_LAST_ID: &[(&str, &str)] = &[
        ("Nats-Expected-Last-Msg-Id", "nope"),
        ("Nats-Rollup", "sub"),
    ];
    const INCR_STREAM_TTL: &[(&str, &str)] = &[
        ("Nats-TTL", "1s"),
        ("Nats-Expected-Stream", "X"),
        ("Nats-Incr", "1"),
    ];
    vec![
        // `Nats-Stream-Source` is the batch's error, after the first ack:
        // the first message refused as a publish is, a later one an error
        // report that ends a `gap: fail` batch or is skipped under `ok`.
        (vec![h("src-first", "fail", 1, 0, SOURCE)], vec![]),
        (framed("src-fail", "fail", SOURCE, 2), vec![]),
        (framed("src-ok", "ok", SOURCE, 2), vec![]),
        // An error or a refusal comes after the flow acks of the messages
        // before it, whenever the disk makes them durable.
        (
            acked_each("order-ok", "ok", 6, &[(3, WRONG_LAST), (5, LARGE)]),
            vec![],
        ),
        (acked_each("order-fail", "fail", 5, &[(3, LARGE)]), vec![]),
        // A message refused while storing (`Nats-Expected-Last-Msg-Id`) is
        // refused as a publish and never persists: an end marker then
        // leaves the batch committing for good.
        (
            framed("lost", "ok", LAST_ID, 3),
            vec![s("lost", 10, "ok", 3, 4)],
        ),
        // A refused message under gap: ok, then a repeat: committing for
        // good, past the timeout too (a start is ignored, pings answered).
        (
            vec![
                s("stuck", 10, "ok", 1, 0),
                h("stuck", "ok", 2, 1, TTL),
                s("stuck", 10, "ok", 2, 1),
            ],
            vec![
                s("stuck", 10, "ok", 1, 0),
                s("stuck", 10, "ok", 2, 4),
                s("stuck", 10, "ok", 9, 4),
                s("stuck", 10, "ok", 10, 2),
            ],
        ),
        // A commit refused while storing: no PubAck, ever.
        (
            vec![
                s("lost-commit", 10, "fail", 1, 0),
                h("lost-commit", "fail", 2, 2, LAST_ID),
            ],
            vec![s("lost-commit", 10, "fail", 3, 4)],
        ),
        // Messages with several faults are refused for the one the
        // reference checks first: the stream's (size) before the batch's
        // (an id over 64, an unknown batch, the API level), those before a
        // gap, then
        // `Nats-Incr`, `Nats-Expected-Stream` and `Nats-TTL` before a
        // duplicate, the source header, the expected sequences, a
        // roll-up and `Nats-Expected-Last-Msg-Id`.
        (
            vec![
                h("multi-large", "fail", 2, 1, LARGE_TTL),
                s(LONG_ID, 10, "fail", 2, 1),
                h("multi-unknown", "fail", 2, 1, API_LEVEL),
            ],
            vec![],
        ),
        (vec![h("multi-first", "fail", 1, 0, TTL_SOURCE)], vec![]),
        (vec![h("multi-first-ok", "ok", 1, 0, STREAM_TTL)], vec![]),
        (
            vec![
                s("multi-gap", 10, "fail", 1, 0),
                h("multi-gap", "fail", 3, 1, TTL_SOURCE),
            ],
            vec![],
        ),
        (
            acked_each(
                "multi-ok",
                "ok",
                10,
                &[
                    (1, ID_D1),
                    (2, STREAM_DUP),
                    (3, TTL_DUP),
                    (4, TTL_SOURCE),
                    (5, TTL_LAST),
                    (6, TTL_LAST_ID),
                    (7, INCR_STREAM_TTL),
                    (8, STREAM_TTL),
                    (9, ROLLUP_LAST_ID),
                ],
            ),
            vec![],
        ),
        (
            acked_each("multi-fail", "fail", 4, &[(3, TTL_LAST_ID)]),
            vec![],
        ),
        (
            acked_each("multi-commit", "fail", 3, &[(3, TTL_DUP)]),
            vec![],
        ),
        // The held batches still count: a new one starts at one ack per
        // message.
        (vec![s("after", 10, "fail", 1, 0)], vec![]),
    ]
}

/// The answers to [`ordered_scenarios`] on the server at `url`, in the
/// order they came, then the stored messages.
async fn ordered_transcript(url: String) -> Vec<String> {
    let client = connect(&url).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "allow_batched": true, "max_msg_size": 100}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    let mut lines = Vec::new();
    for (steps, later) in ordered_scenarios() {
        let mut publisher = Publisher::new(&client).await;
        let mut heard = publisher.play("o.x", &steps, &mut Vec::new()).await;
        if !later.is_empty() {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            heard.extend(publisher.play("o.x", &later, &mut Vec::new()).await);
        }
        lines.extend(heard.into_iter().map(|(s, p)| format!("{s}: {p}")));
        lines.push("--".to_string());
    }
    for (subject, payload) in stored(&client, "O").await {
        lines.push(format!("stored {subject} {payload}"));
    }
    lines
}

/// A server (rnats, or the reference when `reference`) with a one second
/// batch timeout.
fn short_timeout_server(name: &str, reference: bool) -> Option<rnats_tests::ServerProcess> {
    let dir = common::store_dir(name);
    let conf = dir.with_extension("conf");
    let text = format!(
        "jetstream {{ store_dir: {:?}, limits {{ batch {{ timeout: \"1s\" }} }} }}\n",
        dir.to_str().unwrap()
    );
    std::fs::write(&conf, text).unwrap();
    let args = ["-c", conf.to_str().unwrap()];
    match reference {
        true => rnats_tests::ServerProcess::start_reference(&args),
        false => Some(rnats_tests::ServerProcess::start(&args)),
    }
}

#[tokio::test]
async fn fast_batch_answers_come_in_the_reference_order() {
    let Some(reference) = short_timeout_server("fast-batch-order-ref", true) else {
        return;
    };
    let server = short_timeout_server("fast-batch-order", false).unwrap();
    let (ours, theirs) = tokio::join!(
        ordered_transcript(server.url()),
        ordered_transcript(reference.url())
    );
    assert_eq!(ours, theirs);
    // Not empty of what it checks.
    assert!(ours.iter().any(|l| l.contains("10227")), "{ours:#?}");
    assert!(ours.iter().any(|l| l.contains("10070")), "{ours:#?}");
    // The faults checked first in a message with several were answered.
    for code in ["10054", "10060", "10166", "10168", "10207", "10208"] {
        assert!(ours.iter().any(|l| l.contains(code)), "{code}: {ours:#?}");
    }
}
