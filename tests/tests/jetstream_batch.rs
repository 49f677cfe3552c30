//! Atomic batch publish (`allow_atomic`, `Nats-Batch-Id`,
//! `Nats-Batch-Sequence`, `Nats-Batch-Commit`) through async-nats requests
//! with headers, as a user drives it (the client has no helper for it):
//! staged messages are invisible until the commit, a refused commit stores
//! nothing, a restart forgets what was staged. Then a transcript of batch
//! publishes, good and bad, replayed against rnats and nats-server and
//! compared line by line: acks, every refusal, the stored messages and
//! headers, the abandoned advisories (`timeout` included).
//!
//! The first three tests also pass against the reference
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_batch`).

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use common::{connect, js_api as api, js_server, publish_with_headers as publish, within};
use futures::StreamExt;
use serde_json::{json, Value};

/// The headers of message `seq` of a batch `id`, plus `extra`.
fn batch<'a>(id: &'a str, seq: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("Nats-Batch-Id", id), ("Nats-Batch-Sequence", seq)];
    headers.extend_from_slice(extra);
    headers
}

const COMMIT: (&str, &str) = ("Nats-Batch-Commit", "1");

async fn atomic_stream(client: &async_nats::Client, name: &str, storage: &str) {
    let created = api(
        client,
        &format!("$JS.API.STREAM.CREATE.{name}"),
        json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())],
               "allow_atomic": true, "storage": storage}),
    )
    .await;
    assert_eq!(created["config"]["allow_atomic"], true, "{created}");
}

async fn messages(client: &async_nats::Client, stream: &str) -> u64 {
    let info = api(client, &format!("$JS.API.STREAM.INFO.{stream}"), json!({})).await;
    info["state"]["messages"].as_u64().unwrap()
}

#[tokio::test]
async fn a_batch_is_invisible_until_its_commit_stores_it_whole() {
    let (server, _dir) = js_server("batch-commit");
    let client = connect(&server.url()).await;
    atomic_stream(&client, "ORDERS", "file").await;
    let js = jetstream::new(client.clone());
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("READER".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Each staged message gets an empty ack and is not in the stream.
    for (seq, subject) in [("1", "orders.new"), ("2", "orders.paid")] {
        let reply = publish(&client, subject, &batch("order-1", seq, &[]), seq).await;
        assert_eq!(reply, "");
    }
    assert_eq!(messages(&client, "ORDERS").await, 0);
    let mut none = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .unwrap();
    assert!(within("an empty fetch", none.next()).await.is_none());
    // The commit stores all three and acks with the batch and its size.
    let ack = publish(
        &client,
        "orders.shipped",
        &batch("order-1", "3", &[COMMIT]),
        "3",
    )
    .await;
    assert_eq!(
        ack,
        r#"{"stream":"ORDERS","seq":3,"batch":"order-1","count":3}"#
    );
    let mut fetched = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(message) = within("a fetched message", fetched.next()).await {
        let message = message.unwrap();
        let headers = message.headers.clone().unwrap_or_default();
        got.push((
            message.subject.to_string(),
            String::from_utf8_lossy(&message.payload).into_owned(),
            headers
                .get("Nats-Batch-Sequence")
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ));
    }
    let expected = [
        ("orders.new", "1", "1"),
        ("orders.paid", "2", "2"),
        ("orders.shipped", "3", "3"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, expected);
    // An end-of-batch marker commits without being stored.
    publish(&client, "orders.a", &batch("order-2", "1", &[]), "a").await;
    let ack = publish(
        &client,
        "orders.eob",
        &batch("order-2", "2", &[("Nats-Batch-Commit", "eob")]),
        "",
    )
    .await;
    assert_eq!(
        ack,
        r#"{"stream":"ORDERS","seq":4,"batch":"order-2","count":1}"#
    );
    assert_eq!(messages(&client, "ORDERS").await, 4);
}

#[tokio::test]
async fn a_refused_commit_stores_nothing_of_the_batch() {
    let (server, _dir) = js_server("batch-refused");
    let client = connect(&server.url()).await;
    atomic_stream(&client, "PAY", "memory").await;
    publish(&client, "pay.x", &[], "before").await;
    // The first message expects the stream's last sequence; another
    // publish lands in between, so the commit finds it changed.
    let first = batch("p1", "1", &[("Nats-Expected-Last-Sequence", "1")]);
    assert_eq!(publish(&client, "pay.a", &first, "a").await, "");
    publish(&client, "pay.x", &[], "between").await;
    let refused = publish(&client, "pay.b", &batch("p1", "2", &[COMMIT]), "b").await;
    assert_eq!(
        refused,
        r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 2"},"stream":"PAY","seq":0}"#
    );
    // The same message id twice in one batch.
    let id = [("Nats-Msg-Id", "m1")];
    publish(&client, "pay.a", &batch("p2", "1", &id), "a").await;
    let refused = publish(&client, "pay.b", &batch("p2", "2", &[id[0], COMMIT]), "b").await;
    assert_eq!(
        refused,
        r#"{"error":{"code":400,"err_code":10201,"description":"atomic publish batch contains duplicate message id"},"stream":"PAY","seq":0}"#
    );
    // A gap drops the batch: its later messages find none.
    publish(&client, "pay.a", &batch("p3", "1", &[]), "a").await;
    let incomplete = r#"{"error":{"code":400,"err_code":10176,"description":"atomic publish batch is incomplete"},"stream":"PAY","seq":0}"#;
    assert_eq!(
        publish(&client, "pay.a", &batch("p3", "3", &[]), "c").await,
        incomplete
    );
    assert_eq!(
        publish(&client, "pay.a", &batch("p3", "4", &[COMMIT]), "d").await,
        incomplete
    );
    assert_eq!(messages(&client, "PAY").await, 2);
}

#[tokio::test]
async fn a_restart_forgets_staged_messages_and_keeps_committed_ones() {
    let (mut server, _dir) = js_server("batch-restart");
    {
        let client = connect(&server.url()).await;
        atomic_stream(&client, "KEEP", "file").await;
        publish(&client, "keep.a", &batch("done", "1", &[]), "1").await;
        let ack = publish(&client, "keep.b", &batch("done", "2", &[COMMIT]), "2").await;
        assert_eq!(ack, r#"{"stream":"KEEP","seq":2,"batch":"done","count":2}"#);
        publish(&client, "keep.c", &batch("open", "1", &[]), "3").await;
        publish(&client, "keep.d", &batch("open", "2", &[]), "4").await;
    }
    server.restart();
    let client = connect(&server.url()).await;
    assert_eq!(messages(&client, "KEEP").await, 2);
    let refused = publish(&client, "keep.e", &batch("open", "3", &[COMMIT]), "5").await;
    assert_eq!(
        refused,
        r#"{"error":{"code":400,"err_code":10176,"description":"atomic publish batch is incomplete"},"stream":"KEEP","seq":0}"#
    );
    assert_eq!(messages(&client, "KEEP").await, 2);
}

/// One step of the transcript: a publish with headers on a subject.
struct Step {
    label: &'static str,
    subject: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn step(
    label: &'static str,
    subject: &'static str,
    headers: &[(&'static str, &'static str)],
) -> Step {
    Step {
        label,
        subject,
        headers: headers.to_vec(),
    }
}

fn b(
    label: &'static str,
    subject: &'static str,
    id: &'static str,
    seq: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Step {
    step(label, subject, &batch(id, seq, extra))
}

fn steps() -> Vec<Step> {
    let commit = [COMMIT];
    vec![
        b("disabled", "n.a", "x", "1", &[]),
        b("missing-seq", "b.a", "x", "", &[]),
        step(
            "bad-seq",
            "b.a",
            &[("Nats-Batch-Id", "x"), ("Nats-Batch-Sequence", "abc")],
        ),
        step(
            "long-id",
            "b.a",
            &[
                (
                    "Nats-Batch-Id",
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                ),
                ("Nats-Batch-Sequence", "1"),
            ],
        ),
        b("start-at-2", "b.a", "y", "2", &[]),
        b("start-at-2000", "b.a", "y", "2000", &[]),
        b("seq-0", "b.a", "y", "0", &[]),
        step(
            "empty-id",
            "b.e",
            &[("Nats-Batch-Id", ""), ("Nats-Batch-Sequence", "1")],
        ),
        b("b1-1", "b.a", "b1", "1", &[]),
        b("b1-2", "b.b", "b1", "2", &[("Nats-Msg-Id", "m1")]),
        b("b1-3", "b.c", "b1", "3", &commit),
        b("gap-1", "b.a", "gap", "1", &[]),
        b("gap-3", "b.a", "gap", "3", &[]),
        b("gap-4", "b.a", "gap", "4", &commit),
        b("bad-commit-1", "b.a", "bc", "1", &[]),
        b(
            "bad-commit-2",
            "b.a",
            "bc",
            "2",
            &[("Nats-Batch-Commit", "yes")],
        ),
        b("dup-window-1", "b.a", "dw", "1", &[("Nats-Msg-Id", "m1")]),
        b("dup-window-2", "b.a", "dw", "2", &commit),
        b(
            "expect-1",
            "b.a",
            "ex",
            "1",
            &[("Nats-Expected-Last-Sequence", "3")],
        ),
        b(
            "expect-2",
            "b.a",
            "ex",
            "2",
            &[("Nats-Expected-Last-Sequence", "4")],
        ),
        b("expect-3", "b.a", "ex", "3", &commit),
        b(
            "last-msg-id-1",
            "b.a",
            "lm",
            "1",
            &[("Nats-Expected-Last-Msg-Id", "m1")],
        ),
        b("last-msg-id-2", "b.a", "lm", "2", &commit),
        b(
            "eob-1",
            "b.a",
            "eob",
            "1",
            &[("Nats-Expected-Last-Sequence", "3")],
        ),
        b("eob-2", "b.z", "eob", "2", &[("Nats-Batch-Commit", "eob")]),
        b(
            "eob-first",
            "b.z",
            "eob1",
            "1",
            &[("Nats-Batch-Commit", "eob")],
        ),
        b(
            "subject-expect-1",
            "b.s",
            "se",
            "1",
            &[("Nats-Expected-Last-Subject-Sequence", "0")],
        ),
        b(
            "subject-expect-2",
            "b.s",
            "se",
            "2",
            &[("Nats-Expected-Last-Subject-Sequence", "0"), COMMIT],
        ),
        b("rollup-off-1", "b.s", "ro", "1", &[("Nats-Rollup", "all")]),
        b("rollup-off-2", "b.s", "ro", "2", &commit),
        b(
            "expected-stream-1",
            "b.s",
            "es",
            "1",
            &[("Nats-Expected-Stream", "OTHER")],
        ),
        b("expected-stream-2", "b.s", "es", "2", &commit),
        b("commit-only", "b.s", "co", "1", &commit),
        b(
            "api-level-high",
            "b.s",
            "al",
            "1",
            &[("Nats-Required-Api-Level", "99")],
        ),
        b(
            "api-level-ok-1",
            "b.s",
            "ak",
            "1",
            &[("Nats-Required-Api-Level", "1")],
        ),
        b("api-level-ok-2", "b.s", "ak", "2", &commit),
        b("ttl-off-1", "b.t", "tt", "1", &[("Nats-TTL", "5s")]),
        b("ttl-off-2", "b.t", "tt", "2", &commit),
        // On R (rollups allowed).
        step("r-plain", "r.x", &[]),
        b("rollup-sub-after-1", "r.a", "r1", "1", &[]),
        b(
            "rollup-sub-after-2",
            "r.a",
            "r1",
            "2",
            &[("Nats-Rollup", "sub"), COMMIT],
        ),
        b("rollup-all-second-1", "r.a", "r2", "1", &[]),
        b(
            "rollup-all-second-2",
            "r.b",
            "r2",
            "2",
            &[("Nats-Rollup", "all"), COMMIT],
        ),
        b(
            "rollup-sub-first-1",
            "r.x",
            "r3",
            "1",
            &[("Nats-Rollup", "sub")],
        ),
        b("rollup-sub-first-2", "r.y", "r3", "2", &commit),
        b(
            "rollup-bogus",
            "r.x",
            "r4",
            "1",
            &[("Nats-Rollup", "bogus"), COMMIT],
        ),
        // On D (discard new, max_msgs 3).
        step("d-plain-1", "d.a", &[]),
        step("d-plain-2", "d.a", &[]),
        b("d-over-1", "d.a", "d1", "1", &[]),
        b("d-over-2", "d.a", "d1", "2", &commit),
        b("d-fits", "d.a", "d2", "1", &commit),
        // On C (counters).
        b("counter-1", "c.a", "c1", "1", &[("Nats-Incr", "5")]),
        b("counter-2", "c.a", "c1", "2", &[("Nats-Incr", "7"), COMMIT]),
        b("counter-missing", "c.a", "c2", "1", &commit),
    ]
}

/// The transcript of [`steps`] on the server at `url`, one line each.
async fn transcript(url: String) -> Vec<String> {
    let client = connect(&url).await;
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.>")
        .await
        .unwrap();
    for config in [
        json!({"name": "B", "subjects": ["b.>"], "allow_atomic": true}),
        json!({"name": "N", "subjects": ["n.>"]}),
        json!({"name": "R", "subjects": ["r.>"], "allow_atomic": true, "allow_rollup_hdrs": true}),
        json!({"name": "D", "subjects": ["d.>"], "allow_atomic": true, "discard": "new", "max_msgs": 3}),
        json!({"name": "C", "subjects": ["c.>"], "allow_atomic": true, "allow_msg_counter": true, "storage": "memory"}),
    ] {
        let name = config["name"].as_str().unwrap().to_string();
        let created = api(&client, &format!("$JS.API.STREAM.CREATE.{name}"), config).await;
        assert!(created["error"].is_null(), "{created}");
    }
    let mut lines = Vec::new();
    for step in steps() {
        let headers: Vec<(&str, &str)> = step
            .headers
            .iter()
            .filter(|(_, value)| !value.is_empty() || step.label == "empty-id")
            .copied()
            .collect();
        let reply = publish(&client, step.subject, &headers, step.label).await;
        lines.push(format!("{}: {reply}", step.label));
    }
    // Too many open batches on one stream.
    for n in 0..50 {
        let id = format!("open{n}");
        let reply = publish(&client, "r.i", &batch(&id, "1", &[]), "x").await;
        assert_eq!(reply, "", "open batch {n}");
    }
    let reply = publish(&client, "r.i", &batch("open50", "1", &[]), "x").await;
    lines.push(format!("inflight-51: {reply}"));
    // A batch past 1000 messages.
    for n in 1..=1000 {
        let seq = n.to_string();
        let reply = publish(&client, "b.l", &batch("large", &seq, &[]), "x").await;
        assert_eq!(reply, "", "large batch message {n}");
    }
    let reply = publish(&client, "b.l", &batch("large", "1001", &[]), "x").await;
    lines.push(format!("large-1001: {reply}"));
    // A batch idle past its timeout (10 s) is gone.
    publish(&client, "b.t", &batch("idle", "1", &[]), "x").await;
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let reply = publish(&client, "b.t", &batch("idle", "2", &[COMMIT]), "x").await;
    lines.push(format!("idle-commit: {reply}"));
    for name in ["B", "R", "D", "C"] {
        let info = api(&client, &format!("$JS.API.STREAM.INFO.{name}"), json!({})).await;
        let state = &info["state"];
        lines.push(format!(
            "state {name}: messages {} bytes {} first {} last {}",
            state["messages"], state["bytes"], state["first_seq"], state["last_seq"]
        ));
        let last = state["last_seq"].as_u64().unwrap();
        for seq in 1..=last {
            let got = api(
                &client,
                &format!("$JS.API.STREAM.MSG.GET.{name}"),
                json!({"seq": seq}),
            )
            .await;
            lines.push(format!("{name} {seq}: {}", describe(&got)));
        }
    }
    // Every abandoned advisory: the batch, why, and the keys it has.
    let mut seen = Vec::new();
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(500), advisories.next()).await
    {
        let advisory: Value = serde_json::from_slice(&msg.payload).unwrap();
        let mut keys: Vec<&String> = advisory.as_object().unwrap().keys().collect();
        keys.sort();
        seen.push(format!(
            "advisory {} {} {} {} {keys:?}",
            msg.subject, advisory["type"], advisory["batch"], advisory["reason"]
        ));
    }
    // The 50 open batches time out too; their order is the servers' own.
    seen.sort();
    lines.extend(seen);
    lines
}

/// A stored message as MSG.GET shows it, without its time.
fn describe(reply: &Value) -> String {
    use base64::Engine as _;
    let Some(message) = reply.get("message") else {
        return reply["error"]["description"].to_string();
    };
    let decode = |key: &str| {
        let text = message[key].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        // async-nats sends headers in its map's order, which differs
        // between two connections: compare them sorted.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        if lines.len() > 1 {
            lines[1..].sort_unstable();
        }
        lines.join("|")
    };
    format!(
        "{} {} {}",
        message["subject"],
        decode("data"),
        decode("hdrs")
    )
}

#[tokio::test]
async fn batch_publishes_match_the_reference() {
    let Some(reference) = rnats_tests::ServerProcess::start_reference(&[
        "-js",
        "-sd",
        common::store_dir("batch-ref").to_str().unwrap(),
    ]) else {
        return;
    };
    let (server, _dir) = js_server("batch-diff");
    let (ours, theirs) = tokio::join!(transcript(server.url()), transcript(reference.url()));
    let mut differences = Vec::new();
    for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a != b {
            differences.push(format!("line {index}\n  rnats:     {a}\n  reference: {b}"));
        }
    }
    if ours.len() != theirs.len() {
        differences.push(format!("{} lines vs {}", ours.len(), theirs.len()));
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
