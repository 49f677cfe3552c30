//! Differential test of the order in which a publish's refusals are judged
//! (issue #15): publishes with several faults at once (a sealed stream over
//! its limits, over the server's or the account's storage limit with a bad
//! expected sequence, a duplicate, a bad TTL, a message over
//! `max_msg_size`, discard new ...), over memory and file storage, plain,
//! atomic batch and fast batch, sent to rnats-server and to the reference
//! nats-server with the same configuration. Every answer is compared whole.
//!
//! Without the reference the test prints a NOTICE and passes (unless
//! `RNATS_REQUIRE_REFERENCE=1`).

mod common;

use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap};
use futures::StreamExt;
use serde_json::{json, Value};

/// One publish: a label, headers, payload.
type Case = (&'static str, Vec<(&'static str, String)>, String);

/// The server's limits low (memory 300, file 400), the account's not set:
/// the server's "already over" judgement.
const SERVER_LIMITED: &str = "max_memory_store: 300, max_file_store: 400";
/// The server's limits high, account A's low: the account's "would be
/// over" judgement.
const ACCOUNT_LIMITED: &str = "max_memory_store: 100000, max_file_store: 100000";

fn config(store_dir: &str, server_limits: &str, account: &str) -> String {
    format!(
        "jetstream {{ store_dir: {store_dir:?}, {server_limits} }}\n\
         accounts {{ A {{ jetstream: {account}, users [{{user: a, password: a}}] }} }}\n"
    )
}

fn start(name: &str, reference: bool, server_limits: &str, account: &str) -> Option<Server> {
    let dir = common::store_dir(name);
    let conf = dir.with_extension("conf");
    std::fs::write(&conf, config(dir.to_str().unwrap(), server_limits, account)).unwrap();
    let args = ["-c", conf.to_str().unwrap()];
    match reference {
        true => rnats_tests::ServerProcess::start_reference(&args),
        false => Some(rnats_tests::ServerProcess::start(&args)),
    }
}

type Server = rnats_tests::ServerProcess;

async fn client(url: &str) -> async_nats::Client {
    let options = ConnectOptions::with_user_and_password("a".into(), "a".into());
    common::connect_with(url, options).await
}

async fn api(client: &async_nats::Client, subject: String, body: Value) -> Value {
    let reply = common::within(
        "an API reply",
        client.request(subject, body.to_string().into()),
    )
    .await
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

fn headers_of(case: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in case {
        map.insert(*name, value.as_str());
    }
    map
}

/// A publish as a request: its answer's text.
async fn request(client: &async_nats::Client, subject: &str, case: &Case) -> String {
    let (_, headers, payload) = case;
    let request = client.request_with_headers(
        subject.to_string(),
        headers_of(headers),
        payload.clone().into(),
    );
    let reply = common::within("a publish answer", request).await.unwrap();
    String::from_utf8(reply.payload.to_vec()).unwrap()
}

/// The first message of a fast batch (`<id>`, flow 10, gap fail, op
/// start): its answer's text, or "none".
async fn fast_start(client: &async_nats::Client, subject: &str, id: &str, case: &Case) -> String {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(format!("{inbox}.>")).await.unwrap();
    client.flush().await.unwrap();
    let reply = format!("{inbox}.{id}.10.fail.1.0.$FI");
    let (_, headers, payload) = case;
    client
        .publish_with_reply_and_headers(
            subject.to_string(),
            reply,
            headers_of(headers),
            payload.clone().into(),
        )
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(3), answers.next()).await {
        Ok(Some(msg)) => String::from_utf8(msg.payload.to_vec()).unwrap(),
        _ => "none".to_string(),
    }
}

fn case(label: &'static str, headers: &[(&'static str, &str)], payload: &str) -> Case {
    let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
    (label, headers, payload.to_string())
}

/// Publishes with one fault, then with several: which is answered says
/// which the server judged first.
fn cases() -> Vec<Case> {
    let big = "b".repeat(200);
    let pad = "p".repeat(160);
    let huge = "h".repeat(70_000);
    vec![
        case("none", &[], "z"),
        case("dup", &[("Nats-Msg-Id", "d1")], "z"),
        case("last", &[("Nats-Expected-Last-Sequence", "9")], "z"),
        case(
            "subj-last",
            &[("Nats-Expected-Last-Subject-Sequence", "9")],
            "z",
        ),
        case("last-id", &[("Nats-Expected-Last-Msg-Id", "zz")], "z"),
        case("stream", &[("Nats-Expected-Stream", "X")], "z"),
        case("ttl", &[("Nats-TTL", "5s")], "z"),
        case("ttl-bad", &[("Nats-TTL", "bad")], "z"),
        case("ttl-zero", &[("Nats-TTL", "0")], "z"),
        case("ttl-never", &[("Nats-TTL", "never")], "z"),
        case("source", &[("Nats-Stream-Source", "X 1 a > a")], "z"),
        case("rollup", &[("Nats-Rollup", "sub")], "z"),
        case("rollup-bad", &[("Nats-Rollup", "zz")], "z"),
        case("incr", &[("Nats-Incr", "1")], ""),
        case("big", &[], &big),
        case("big-headers", &[("X-Pad", &pad)], "z"),
        case("huge-headers", &[("X-Pad", &huge)], "z"),
        case(
            "subj-subj",
            &[("Nats-Expected-Last-Subject-Sequence-Subject", "q")],
            "z",
        ),
        case(
            "dup+stream",
            &[("Nats-Msg-Id", "d1"), ("Nats-Expected-Stream", "X")],
            "z",
        ),
        case(
            "dup+last",
            &[("Nats-Msg-Id", "d1"), ("Nats-Expected-Last-Sequence", "9")],
            "z",
        ),
        case(
            "dup+source",
            &[("Nats-Msg-Id", "d1"), ("Nats-Stream-Source", "X 1 a > a")],
            "z",
        ),
        case("dup+big", &[("Nats-Msg-Id", "d1")], &big),
        case(
            "dup+last-id",
            &[("Nats-Msg-Id", "d1"), ("Nats-Expected-Last-Msg-Id", "zz")],
            "z",
        ),
        case("dup+ttl", &[("Nats-Msg-Id", "d1"), ("Nats-TTL", "5s")], "z"),
        case(
            "dup+ttl-bad",
            &[("Nats-Msg-Id", "d1"), ("Nats-TTL", "bad")],
            "z",
        ),
        case(
            "subj-last+last",
            &[
                ("Nats-Expected-Last-Subject-Sequence", "7"),
                ("Nats-Expected-Last-Sequence", "9"),
            ],
            "z",
        ),
        case(
            "source+last",
            &[
                ("Nats-Stream-Source", "X 1 a > a"),
                ("Nats-Expected-Last-Sequence", "9"),
            ],
            "z",
        ),
        case(
            "ttl-bad+last",
            &[("Nats-TTL", "bad"), ("Nats-Expected-Last-Sequence", "9")],
            "z",
        ),
        case(
            "ttl+stream",
            &[("Nats-TTL", "5s"), ("Nats-Expected-Stream", "X")],
            "z",
        ),
        case(
            "ttl+subj-last",
            &[
                ("Nats-TTL", "5s"),
                ("Nats-Expected-Last-Subject-Sequence", "9"),
            ],
            "z",
        ),
        case(
            "ttl-bad+rollup-bad",
            &[("Nats-TTL", "bad"), ("Nats-Rollup", "zz")],
            "z",
        ),
        case("big+stream", &[("Nats-Expected-Stream", "X")], &big),
        case("big+last", &[("Nats-Expected-Last-Sequence", "9")], &big),
        case("big+incr", &[("Nats-Incr", "1")], &big),
        case("big+ttl", &[("Nats-TTL", "5s")], &big),
        case("big+rollup-bad", &[("Nats-Rollup", "zz")], &big),
        case(
            "huge+stream",
            &[("X-Pad", &huge), ("Nats-Expected-Stream", "X")],
            "z",
        ),
        case(
            "last-id+rollup-bad",
            &[("Nats-Expected-Last-Msg-Id", "zz"), ("Nats-Rollup", "zz")],
            "z",
        ),
        case(
            "incr+stream",
            &[("Nats-Incr", "1"), ("Nats-Expected-Stream", "X")],
            "",
        ),
        case(
            "incr+ttl-bad",
            &[("Nats-Incr", "1"), ("Nats-TTL", "bad")],
            "",
        ),
        case(
            "schedule+source",
            &[
                ("Nats-Schedule", "bad"),
                ("Nats-Stream-Source", "X 1 a > a"),
            ],
            "z",
        ),
        case(
            "schedule+last",
            &[
                ("Nats-Schedule", "bad"),
                ("Nats-Expected-Last-Sequence", "9"),
            ],
            "z",
        ),
        case(
            "schedule+dup",
            &[("Nats-Schedule", "bad"), ("Nats-Msg-Id", "d1")],
            "z",
        ),
    ]
}

/// The batches' first messages, atomic (committing at once, or left open)
/// and fast, then the same alone.
fn batch_cases() -> Vec<Case> {
    let big = "b".repeat(200);
    vec![
        case("small", &[], "y"),
        case("big", &[], &big),
        case("big+last", &[("Nats-Expected-Last-Sequence", "9")], &big),
        case("stream", &[("Nats-Expected-Stream", "X")], "y"),
    ]
}

/// The streams of one storage type: each answer as `stream case: text`.
async fn storage_transcript(client: &async_nats::Client, storage: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let kinds = ["plain", "sealed", "dnew", "ttl", "counter", "batch"];
    let config = |kind: &str| {
        let name = format!("{storage}_{kind}");
        let mut config = json!({
            "name": name, "subjects": [format!("{name}.>")], "storage": storage,
            "max_msg_size": 150, "duplicate_window": 60_000_000_000u64,
        });
        match kind {
            "dnew" => {
                config["discard"] = json!("new");
                config["max_bytes"] = json!(150);
            }
            "ttl" => config["allow_msg_ttl"] = json!(true),
            "counter" => {
                // No `max_msg_size`: the header block's own limit shows.
                config["allow_msg_counter"] = json!(true);
                config.as_object_mut().unwrap().remove("max_msg_size");
            }
            "batch" => {
                config["allow_atomic"] = json!(true);
                config["allow_batched"] = json!(true);
            }
            _ => {}
        }
        (name, config)
    };
    for kind in kinds {
        let (name, body) = config(kind);
        let created = api(client, format!("$JS.API.STREAM.CREATE.{name}"), body).await;
        lines.push(format!("{name} create: {}", created["error"]));
        let first = match kind {
            "counter" => case("fill", &[("Nats-Msg-Id", "d1"), ("Nats-Incr", "1")], ""),
            _ => case("fill", &[("Nats-Msg-Id", "d1")], &"x".repeat(100)),
        };
        let answer = request(client, &format!("{name}.a"), &first).await;
        lines.push(format!("{name} fill: {answer}"));
    }
    // Over the limits: the plain stream fills them.
    let fill = case("fill", &[], &"y".repeat(100));
    for _ in 0..4 {
        let answer = request(client, &format!("{storage}_plain.b"), &fill).await;
        lines.push(format!("{storage}_plain fill: {answer}"));
    }
    let (name, mut body) = config("sealed");
    body["sealed"] = json!(true);
    let sealed = api(client, format!("$JS.API.STREAM.UPDATE.{name}"), body).await;
    lines.push(format!("{name} seal: {}", sealed["error"]));
    for kind in kinds {
        let subject = format!("{storage}_{kind}.a");
        let cases = match kind {
            "batch" => Vec::new(),
            _ => cases(),
        };
        for case in &cases {
            let answer = request(client, &subject, case).await;
            lines.push(format!("{subject} {}: {answer}", case.0));
        }
    }
    for kind in ["batch", "sealed"] {
        let subject = format!("{storage}_{kind}.a");
        for (n, case) in batch_cases().into_iter().enumerate() {
            let (label, headers, payload) = &case;
            let mut batched = case.clone();
            let id = format!("b{n}{storage}{kind}");
            batched.1 = headers.clone();
            batched.1.push(("Nats-Batch-Id", id.clone()));
            batched.1.push(("Nats-Batch-Sequence", "1".into()));
            let open = request(client, &subject, &batched).await;
            lines.push(format!("{subject} atomic-open {label}: {open}"));
            batched.1[headers.len()].1 = format!("c{id}");
            batched.1.push(("Nats-Batch-Commit", "1".into()));
            let committed = request(client, &subject, &batched).await;
            lines.push(format!("{subject} atomic-commit {label}: {committed}"));
            let fast = fast_start(client, &subject, &format!("f{id}"), &case).await;
            lines.push(format!("{subject} fast {label}: {fast}"));
            let alone = request(client, &subject, &(label, headers.clone(), payload.clone())).await;
            lines.push(format!("{subject} alone {label}: {alone}"));
        }
    }
    lines
}

async fn transcript(url: String) -> Vec<String> {
    let client = client(&url).await;
    let mut lines = storage_transcript(&client, "memory").await;
    lines.extend(storage_transcript(&client, "file").await);
    lines
}

/// Both transcripts, line by line where they differ.
fn compare(ours: &[String], theirs: &[String]) {
    let differences: Vec<String> = ours
        .iter()
        .zip(theirs)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("  rnats:     {a}\n  reference: {b}"))
        .collect();
    assert!(
        differences.is_empty() && ours.len() == theirs.len(),
        "{} of {} answers differ ({} vs {} lines):\n{}",
        differences.len(),
        theirs.len(),
        ours.len(),
        theirs.len(),
        differences.join("\n")
    );
}

async fn compare_under(name: &str, server_limits: &str, account: &str) -> Option<Vec<String>> {
    let reference = start(&format!("{name}-ref"), true, server_limits, account)?;
    let server = start(name, false, server_limits, account).unwrap();
    let (ours, theirs) = tokio::join!(transcript(server.url()), transcript(reference.url()));
    compare(&ours, &theirs);
    Some(ours)
}

#[tokio::test]
async fn over_the_server_limit_refusals_come_in_the_reference_order() {
    let Some(ours) = compare_under("order-server", SERVER_LIMITED, "enabled").await else {
        return;
    };
    // Not empty of what it checks: the server's limit, and the faults
    // judged before it.
    assert!(
        ours.iter().any(|l| l.contains("\"duplicate\"")),
        "{ours:#?}"
    );
    for code in [
        "10023", "10109", "10054", "10097", "10071", "10060", "10227", "10166",
    ] {
        assert!(ours.iter().any(|l| l.contains(code)), "{code}: {ours:#?}");
    }
}

#[tokio::test]
async fn over_the_account_limit_refusals_come_in_the_reference_order() {
    let account = "{ max_mem: 300, max_file: 400 }";
    let Some(ours) = compare_under("order-account", ACCOUNT_LIMITED, account).await else {
        return;
    };
    for code in [
        "10002", "10109", "10054", "10071", "10193", "10111", "10168",
    ] {
        assert!(ours.iter().any(|l| l.contains(code)), "{code}: {ours:#?}");
    }
    assert!(
        ours.iter().any(|l| l.contains("\"duplicate\"")),
        "{ours:#?}"
    );
}

#[tokio::test]
async fn without_limits_refusals_come_in_the_reference_order() {
    let Some(ours) = compare_under("order-open", ACCOUNT_LIMITED, "enabled").await else {
        return;
    };
    // Discard new: the stream's own limit comes after every other check.
    for code in [
        "10077", "10165", "10169", "10170", "10171", "10188", "10109",
    ] {
        assert!(ours.iter().any(|l| l.contains(code)), "{code}: {ours:#?}");
    }
}
