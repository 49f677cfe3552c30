//! Stream backups: `$JS.API.STREAM.SNAPSHOT.<stream>` and
//! `$JS.API.STREAM.RESTORE.<stream>`, driven with core requests and
//! subscriptions exactly as jsm.go (the `nats stream backup` / `restore`
//! commands) drives them: the snapshot's chunks arrive on a deliver subject,
//! each acknowledged on its reply subject, until an empty message; a
//! restore sends chunks as requests to the subject the reply names, then an
//! empty message, answered with the restored stream's info.
//!
//! The round trips pass against the reference too
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test --test
//! jetstream_snapshot`); the error replies are compared with it directly.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use common::{connect, js_api, js_server, next_message, within};
use futures::StreamExt;
use serde_json::{json, Value};

/// A snapshot as the client receives it: the reply, the archive bytes, how
/// many chunks carried an ack subject, and the end message's status.
struct Backup {
    reply: Value,
    data: Vec<u8>,
    acked: usize,
    status: Option<u16>,
}

async fn snapshot(client: &async_nats::Client, stream: &str, request: Value) -> Backup {
    let inbox = client.new_inbox();
    let mut chunks = client.subscribe(inbox.clone()).await.unwrap();
    let mut body = request;
    body["deliver_subject"] = json!(inbox);
    let reply = js_api(client, &format!("$JS.API.STREAM.SNAPSHOT.{stream}"), body).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let mut data = Vec::new();
    let mut acked = 0;
    loop {
        let chunk = next_message(&mut chunks).await;
        if chunk.payload.is_empty() {
            return Backup {
                reply,
                data,
                acked,
                status: chunk.status.map(|s| s.as_u16()),
            };
        }
        data.extend_from_slice(&chunk.payload);
        if let Some(ack) = chunk.reply {
            acked += 1;
            client.publish(ack, Bytes::new()).await.unwrap();
        }
    }
}

/// Restore `data` as `config`; the reply to the end marker (or to the
/// chunk that failed).
async fn restore(client: &async_nats::Client, config: &Value, data: &[u8], piece: usize) -> Value {
    let name = config["name"].as_str().unwrap();
    let body = json!({ "config": config, "state": {} });
    let reply = js_api(client, &format!("$JS.API.STREAM.RESTORE.{name}"), body).await;
    assert_eq!(
        reply["type"],
        "io.nats.jetstream.api.v1.stream_restore_response"
    );
    let deliver = reply["deliver_subject"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(
        deliver.starts_with(&format!("$JS.SNAPSHOT.RESTORE.{name}.")),
        "{deliver}"
    );
    for chunk in data.chunks(piece) {
        let ack = within(
            "chunk ack",
            client.request(deliver.to_string(), Bytes::copy_from_slice(chunk)),
        )
        .await
        .unwrap();
        if !ack.payload.is_empty() {
            return serde_json::from_slice(&ack.payload).unwrap();
        }
    }
    let done = within("restore", client.request(deliver.to_string(), Bytes::new()))
        .await
        .unwrap();
    serde_json::from_slice(&done.payload).unwrap()
}

/// The parts of a stream's state a restore must bring back.
fn state_of(info: &stream::Info) -> (u64, u64, u64, u64, u64, i128, i128) {
    let s = &info.state;
    (
        s.messages,
        s.bytes,
        s.first_sequence,
        s.last_sequence,
        s.deleted_count.unwrap_or(0),
        s.first_timestamp.unix_timestamp_nanos(),
        s.last_timestamp.unix_timestamp_nanos(),
    )
}

/// A file stream `name` on `subject` with the defaults.
async fn create(js: &jetstream::Context, name: &str, subject: &str) {
    within(
        "create",
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            ..Default::default()
        }),
    )
    .await
    .unwrap();
}

/// Letters that do not compress: `len` of them from `seed`.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect()
}

async fn publish(
    js: &jetstream::Context,
    subject: &str,
    headers: &[(&str, &str)],
    payload: String,
) {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    within("publish", async {
        js.publish_with_headers(subject.to_string(), map, payload.into())
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
}

/// A durable explicit-ack pull consumer `worker` on `stream` that fetched
/// `fetch` messages and acked those at the indexes `acked`.
async fn worker_with_acks(
    stream: &stream::Stream,
    fetch: usize,
    acked: &[usize],
) -> (consumer::PullConsumer, Vec<jetstream::Message>) {
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(fetch)
        .messages()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(message) = batch.next().await {
        seen.push(message.unwrap());
    }
    assert_eq!(seen.len(), fetch);
    for &i in acked {
        seen[i].double_ack().await.unwrap();
    }
    (consumer, seen)
}

/// The stream sequence of the next message `worker` delivers.
async fn next_delivered(worker: &consumer::PullConsumer) -> u64 {
    let mut next = worker.fetch().max_messages(1).messages().await.unwrap();
    let message = within("resumed delivery", next.next())
        .await
        .unwrap()
        .unwrap();
    message.info().unwrap().stream_sequence
}

#[tokio::test]
async fn a_file_stream_with_gaps_and_a_consumer_comes_back_whole() {
    let (server, _dir) = js_server("snap-roundtrip");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let mut stream = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    // Enough data for many 1 KiB chunks.
    for i in 1..=40u32 {
        let body = format!("order {i} {}", noise(u64::from(i), 200));
        let headers: &[(&str, &str)] = if i % 3 == 0 {
            &[("Kind", "third")]
        } else {
            &[]
        };
        publish(&js, &format!("orders.{}", i % 4), headers, body).await;
    }
    // A purged head, a hole, and a deleted last message.
    js_api(&client, "$JS.API.STREAM.PURGE.ORDERS", json!({"seq": 4})).await;
    stream.delete_message(10).await.unwrap();
    stream.delete_message(11).await.unwrap();
    stream.delete_message(40).await.unwrap();
    let (consumer, _) = worker_with_acks(&stream, 5, &[0, 1, 2]).await;
    let before = stream.info().await.unwrap().clone();
    let mut consumer = consumer;
    let consumer_before = consumer.info().await.unwrap().clone();

    let backup = snapshot(
        &client,
        "ORDERS",
        json!({"chunk_size": 1024, "window_size": 4096}),
    )
    .await;
    assert_eq!(
        backup.reply["type"],
        "io.nats.jetstream.api.v1.stream_snapshot_response"
    );
    assert_eq!(backup.reply["config"]["name"], "ORDERS");
    assert_eq!(
        backup.reply["state"]["messages"],
        json!(before.state.messages)
    );
    assert_eq!(backup.reply["state"]["first_seq"], 4);
    assert!(
        backup.acked > 1,
        "flow control over several chunks: {}",
        backup.acked
    );
    assert_eq!(backup.status, Some(204));

    js.delete_stream("ORDERS").await.unwrap();
    let config = backup.reply["config"].clone();
    let done = restore(&client, &config, &backup.data, 4000).await;
    assert_eq!(
        done["type"], "io.nats.jetstream.api.v1.stream_create_response",
        "{done}"
    );
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(done["state"]["last_seq"], 40);

    let mut restored = js.get_stream("ORDERS").await.unwrap();
    let after = restored.info().await.unwrap().clone();
    let (a, b) = (state_of(&after), state_of(&before));
    assert_eq!(
        (a.0, a.1, a.2, a.3, a.4, a.5),
        (b.0, b.1, b.2, b.3, b.4, b.5)
    );
    // The last message was deleted: rnats keeps its time as the stream's
    // last time; the reference reports the last message left's.
    if std::env::var_os("RNATS_TEST_SERVER_BIN").is_none() {
        assert_eq!(a.6, b.6);
    }
    assert_eq!(after.state.consumer_count, 1);
    for seq in [4, 9, 12, 39] {
        let a = restored.get_raw_message(seq).await.unwrap();
        assert_eq!(a.sequence, seq);
        let body = String::from_utf8(a.payload.to_vec()).unwrap();
        assert!(body.starts_with(&format!("order {seq} ")), "{body}");
        if seq % 3 == 0 {
            assert_eq!(a.headers.get("Kind").unwrap().as_str(), "third");
        }
    }
    assert!(restored.get_raw_message(10).await.is_err());

    let mut worker: consumer::PullConsumer = restored.get_consumer("worker").await.unwrap();
    let consumer_after = worker.info().await.unwrap().clone();
    let pair = |s: &consumer::SequenceInfo| (s.consumer_sequence, s.stream_sequence);
    assert_eq!(
        pair(&consumer_after.delivered),
        pair(&consumer_before.delivered)
    );
    assert_eq!(
        pair(&consumer_after.ack_floor),
        pair(&consumer_before.ack_floor)
    );
    assert_eq!(consumer_after.num_ack_pending, 2);
    assert_eq!(consumer_after.num_pending, consumer_before.num_pending);
    // It resumes after what it had delivered.
    let resumed = next_delivered(&worker).await;
    assert_eq!(resumed, consumer_before.delivered.stream_sequence + 1);
    // The stream takes new messages after its last sequence.
    let ack = js
        .publish("orders.new", "after".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 41);
}

#[tokio::test]
async fn a_memory_stream_without_consumers_round_trips() {
    let (server, _dir) = js_server("snap-memory");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let mut stream = js
        .create_stream(stream::Config {
            name: "MEM".into(),
            subjects: vec!["mem.*".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        publish(&js, "mem.a", &[], format!("m{i}")).await;
    }
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("skip".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = stream.info().await.unwrap().clone();
    let backup = snapshot(&client, "MEM", json!({"no_consumers": true})).await;
    // Less than one chunk: no ack asked, and the end has no status.
    assert_eq!(backup.acked, 0);
    assert_eq!(backup.status, None);
    js.delete_stream("MEM").await.unwrap();
    let done = restore(&client, &backup.reply["config"], &backup.data, 64 * 1024).await;
    assert!(done.get("error").is_none(), "{done}");
    let mut restored = js.get_stream("MEM").await.unwrap();
    let after = restored.info().await.unwrap().clone();
    assert_eq!(state_of(&after), state_of(&before));
    assert_eq!(after.state.consumer_count, 0);
    assert_eq!(after.config.storage, stream::StorageType::Memory);
}

/// The replies whose content does not depend on the server: each request
/// against rnats and the reference.
async fn error_replies(url: &str) -> Vec<Value> {
    let client = connect(url).await;
    let js = jetstream::new(client.clone());
    create(&js, "HERE", "here").await;
    let mut replies = Vec::new();
    let requests = [
        (
            "$JS.API.STREAM.SNAPSHOT.NONE",
            json!({"deliver_subject": "x"}),
        ),
        ("$JS.API.STREAM.SNAPSHOT.HERE", json!({})),
        (
            "$JS.API.STREAM.SNAPSHOT.HERE",
            json!({"deliver_subject": "a.*"}),
        ),
        (
            "$JS.API.STREAM.SNAPSHOT.HERE",
            json!({"deliver_subject": 5}),
        ),
        ("$JS.API.STREAM.RESTORE.HERE", json!({})),
        (
            "$JS.API.STREAM.RESTORE.HERE",
            json!({"config": {"name": "HERE", "subjects": ["there"]}}),
        ),
        ("$JS.API.STREAM.RESTORE.X", json!({"config": {"name": "Y"}})),
        (
            "$JS.API.STREAM.RESTORE.X",
            json!({"config": {"name": "X", "max_msgs": "a"}}),
        ),
        (
            "$JS.API.STREAM.RESTORE.X",
            json!({"config": {"name": "X", "retention": "bogus"}}),
        ),
        (
            "$JS.API.STREAM.RESTORE.X",
            json!({"config": {"name": "X"}, "bogus": 1}),
        ),
    ];
    for (subject, body) in requests {
        replies.push(js_api(&client, subject, body).await);
    }
    let raw = within(
        "empty",
        client.request("$JS.API.STREAM.SNAPSHOT.HERE", Bytes::new()),
    )
    .await
    .unwrap();
    replies.push(serde_json::from_slice(&raw.payload).unwrap());
    // A restore whose client sends the end marker at once, or a chunk that
    // is not a backup at all.
    for data in [&b""[..], b"this is not a backup at all"] {
        let reply = restore(
            &client,
            &json!({"name": "EMPTY", "subjects": ["e"]}),
            data,
            1024,
        )
        .await;
        replies.push(reply);
    }
    assert!(
        js.get_stream("EMPTY").await.is_err(),
        "nothing half restored"
    );
    replies
}

#[tokio::test]
async fn error_replies_match_the_reference() {
    let (server, _dir) = js_server("snap-errors");
    let ours = error_replies(&server.url()).await;
    for reply in &ours {
        assert!(reply.get("error").is_some(), "{reply}");
    }
    assert_eq!(ours[0]["error"]["err_code"], 10059);
    assert_eq!(ours[1]["error"]["err_code"], 10003);
    assert_eq!(ours[2]["error"]["err_code"], 10015);
    assert_eq!(ours[5]["error"]["err_code"], 10130);
    assert_eq!(ours[5]["deliver_subject"], "");
    assert_eq!(ours[6]["error"]["err_code"], 10056);
    assert_eq!(ours[11]["error"]["description"], "restore failed: EOF");
    let Some(reference) = rnats_tests::ServerProcess::start_reference(&[
        "-js",
        "-sd",
        common::store_dir("snap-errors-ref").to_str().unwrap(),
    ]) else {
        return;
    };
    let theirs = error_replies(&reference.url()).await;
    // The last reply names a decoding error in each server's own words.
    let compared = ours.len() - 1;
    assert_eq!(ours[..compared], theirs[..compared]);
    assert_eq!(
        ours[compared]["error"]["err_code"],
        theirs[compared]["error"]["err_code"]
    );
}

#[tokio::test]
async fn a_snapshot_without_acks_ends_with_no_flow_response() {
    let (server, _dir) = js_server("snap-noflow");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, "SLOW", "slow").await;
    for i in 0..20 {
        // Incompressible enough to need several 1 KiB chunks.
        let body = noise(i, 300);
        publish(&js, "slow", &[], body).await;
    }
    let inbox = client.new_inbox();
    let mut chunks = client.subscribe(inbox.clone()).await.unwrap();
    let body = json!({"deliver_subject": inbox, "chunk_size": 1024, "window_size": 2048});
    let reply = js_api(&client, "$JS.API.STREAM.SNAPSHOT.SLOW", body).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let mut received = 0;
    let end = loop {
        let chunk = next_message(&mut chunks).await;
        if chunk.payload.is_empty() {
            break chunk;
        }
        received += 1;
    };
    assert_eq!(received, 2, "the window holds two chunks");
    assert_eq!(end.status.map(|s| s.as_u16()), Some(408));
    assert_eq!(end.description.as_deref(), Some("No Flow Response"));
}

#[tokio::test]
async fn an_abandoned_restore_leaves_nothing_and_a_cut_backup_is_refused() {
    let (server, _dir) = js_server("snap-abandon");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, "CUT", "cut").await;
    for i in 0..50 {
        let body = noise(i, 200);
        publish(&js, "cut", &[], body).await;
    }
    let backup = snapshot(&client, "CUT", json!({})).await;
    js.delete_stream("CUT").await.unwrap();
    let config = backup.reply["config"].clone();

    // Half the archive, then the end marker: refused, nothing left.
    let half = &backup.data[..backup.data.len() / 2];
    let done = restore(&client, &config, half, 1024).await;
    assert_eq!(done["error"]["err_code"], 10062, "{done}");
    assert!(js.get_stream("CUT").await.is_err());

    // One chunk and then silence: given up after 5 s, the name is free.
    let body = json!({ "config": config, "state": {} });
    let reply = js_api(&client, "$JS.API.STREAM.RESTORE.CUT", body).await;
    let deliver = reply["deliver_subject"].as_str().unwrap().to_string();
    let ack = client
        .request(
            deliver.clone(),
            Bytes::copy_from_slice(&backup.data[..1024]),
        )
        .await
        .unwrap();
    assert!(ack.payload.is_empty());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let late = tokio::time::timeout(
        Duration::from_secs(1),
        client.request(deliver, Bytes::new()),
    )
    .await;
    assert!(
        !matches!(late, Ok(Ok(_))),
        "nobody answers an abandoned restore"
    );
    assert!(js.get_stream("CUT").await.is_err());
    let done = restore(&client, &config, &backup.data, 8192).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(done["state"]["messages"], 50);
}

/// The server under test and a reference nats-server, both with
/// JetStream, and a client of each (ours, theirs); `None` when the
/// reference is not installed (the test is skipped, with a notice).
async fn beside_the_reference(
    name: &str,
) -> Option<(
    [rnats_tests::ServerProcess; 2],
    async_nats::Client,
    async_nats::Client,
)> {
    let dir = common::store_dir(&format!("{name}-ref"));
    let reference =
        rnats_tests::ServerProcess::start_reference(&["-js", "-sd", dir.to_str().unwrap()])?;
    let (server, _dir) = js_server(name);
    let ours = connect(&server.url()).await;
    let theirs = connect(&reference.url()).await;
    Some(([server, reference], ours, theirs))
}

/// Backups move between rnats and the reference in both directions:
/// rnats's (Snappy-framed) restore into nats-server, nats-server's
/// (S2-framed) into rnats.
#[tokio::test]
async fn backups_cross_to_the_reference_and_back() {
    if std::env::var_os("RNATS_TEST_SERVER_BIN").is_some() {
        return;
    }
    let Some((_servers, ours, theirs)) = beside_the_reference("snap-cross").await else {
        return;
    };
    for client in [&ours, &theirs] {
        let js = jetstream::new(client.clone());
        create(&js, "X", "x.*").await;
        for i in 0..30 {
            publish(&js, "x.a", &[("H", "v")], format!("payload {i}")).await;
        }
    }
    let ours_backup = snapshot(&ours, "X", json!({})).await;
    let theirs_backup = snapshot(&theirs, "X", json!({})).await;
    assert_eq!(&theirs_backup.data[..10], b"\xff\x06\x00\x00S2sTwO");
    for client in [&ours, &theirs] {
        jetstream::new(client.clone())
            .delete_stream("X")
            .await
            .unwrap();
    }
    for (into, backup) in [(&theirs, &ours_backup), (&ours, &theirs_backup)] {
        let done = restore(into, &backup.reply["config"], &backup.data, 4096).await;
        assert!(done.get("error").is_none(), "{done}");
        assert_eq!(done["state"]["messages"], 30);
        let restored = jetstream::new(into.clone()).get_stream("X").await.unwrap();
        let msg = restored.get_raw_message(7).await.unwrap();
        assert_eq!(msg.payload.as_ref(), b"payload 6");
        assert_eq!(msg.headers.get("H").unwrap().as_str(), "v");
    }
}

/// One stored message as a client reads it back: sequence, subject,
/// headers, payload, time.
type Stored = (u64, String, Vec<(String, Vec<String>)>, Bytes, i128);

/// Every message of `stream` from `first` to `last` (a gap is `None`).
async fn every_message(stream: &stream::Stream, first: u64, last: u64) -> Vec<Option<Stored>> {
    let mut out = Vec::new();
    for seq in first..=last {
        let Ok(msg) = stream.get_raw_message(seq).await else {
            out.push(None);
            continue;
        };
        let mut headers: Vec<(String, Vec<String>)> = msg
            .headers
            .iter()
            .map(|(name, values)| {
                let values = values.iter().map(|v| v.as_str().to_string()).collect();
                (name.to_string(), values)
            })
            .collect();
        headers.sort();
        out.push(Some((
            msg.sequence,
            msg.subject.to_string(),
            headers,
            msg.payload,
            msg.time.unix_timestamp_nanos(),
        )));
    }
    out
}

/// The consumer state a restore must bring back.
async fn consumer_state(stream: &stream::Stream, name: &str) -> (u64, u64, u64, u64, usize, u64) {
    let mut consumer: consumer::PullConsumer = stream.get_consumer(name).await.unwrap();
    let info = consumer.info().await.unwrap();
    (
        info.delivered.consumer_sequence,
        info.delivered.stream_sequence,
        info.ack_floor.consumer_sequence,
        info.ack_floor.stream_sequence,
        info.num_ack_pending,
        info.num_pending,
    )
}

/// A backup nats-server made (S2-framed, several S2 blocks: over 1 MiB)
/// of a file and of a memory stream with headers, deleted messages, a
/// purged head and a consumer with acks restores into rnats message for
/// message; the same backup damaged or cut is refused and leaves nothing.
#[tokio::test]
async fn a_reference_backup_restores_message_for_message() {
    let Some((_servers, ours, theirs)) = beside_the_reference("snap-from-ref").await else {
        return;
    };
    let their_js = jetstream::new(theirs.clone());
    let our_js = jetstream::new(ours.clone());
    for (name, storage) in [
        ("FILE", stream::StorageType::File),
        ("MEM", stream::StorageType::Memory),
    ] {
        let subject = name.to_lowercase();
        let mut stream = their_js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![format!("{subject}.>")],
                storage,
                ..Default::default()
            })
            .await
            .unwrap();
        for i in 1..=60u64 {
            // Every tenth message large and incompressible: the archive
            // spans several S2 blocks.
            let len = if i % 10 == 0 {
                400_000
            } else {
                50 + i as usize
            };
            let body = format!("{i} {}", noise(i, len));
            let headers: &[(&str, &str)] = match i % 4 {
                0 => &[("Kind", "fourth"), ("Multi", "a")],
                1 => &[("Kind", "first")],
                _ => &[],
            };
            publish(&their_js, &format!("{subject}.{}", i % 5), headers, body).await;
        }
        js_api(
            &theirs,
            &format!("$JS.API.STREAM.PURGE.{name}"),
            json!({"seq": 3}),
        )
        .await;
        for seq in [7, 8, 30, 60] {
            stream.delete_message(seq).await.unwrap();
        }
        let (_, seen) = worker_with_acks(&stream, 6, &[0, 1, 3]).await;
        let before = stream.info().await.unwrap().clone();
        let messages = every_message(&stream, 1, before.state.last_sequence).await;
        let worker = consumer_state(&stream, "worker").await;

        let backup = snapshot(&theirs, name, json!({"chunk_size": 65536})).await;
        assert_eq!(&backup.data[..10], b"\xff\x06\x00\x00S2sTwO");
        assert!(backup.data.len() > 1 << 20, "{}", backup.data.len());
        let config = backup.reply["config"].clone();

        // Damaged in the middle of a block, or cut: refused, nothing left
        // (the reference keeps what it restored before the damage).
        let mut damaged = backup.data.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x10;
        let cut = &backup.data[..backup.data.len() - 20];
        for bad in [&damaged[..], cut] {
            let done = restore(&ours, &config, bad, 65536).await;
            assert_eq!(done["error"]["err_code"], 10062, "{done}");
            let description = done["error"]["description"].as_str().unwrap();
            let left = our_js.get_stream(name).await.is_ok();
            if std::env::var_os("RNATS_TEST_SERVER_BIN").is_none() {
                // The reference's S2 reader's words (a checksum or a cut
                // frame); the reference wraps them as its reader met them.
                assert!(
                    description.starts_with("restore failed: s2: corrupt input"),
                    "{description}"
                );
                assert!(!left, "a refused restore leaves nothing");
            } else if left {
                our_js.delete_stream(name).await.unwrap();
            }
        }

        let done = restore(&ours, &config, &backup.data, 65536).await;
        assert!(done.get("error").is_none(), "{done}");
        let mut restored = our_js.get_stream(name).await.unwrap();
        let after = restored.info().await.unwrap().clone();
        assert_eq!(after.config.storage, storage);
        let (a, b) = (state_of(&after), state_of(&before));
        assert_eq!(
            (a.0, a.1, a.2, a.3, a.4, a.5),
            (b.0, b.1, b.2, b.3, b.4, b.5)
        );
        assert_eq!((b.2, b.3, b.4), (3, 60, 4), "{name}");
        assert_eq!(after.state.consumer_count, 1);
        let restored_messages = every_message(&restored, 1, after.state.last_sequence).await;
        assert_eq!(restored_messages.len(), messages.len());
        for (ours, theirs) in restored_messages.iter().zip(&messages) {
            assert_eq!(ours, theirs);
        }
        assert_eq!(consumer_state(&restored, "worker").await, worker, "{name}");
        // The consumer carries on from what nats-server had delivered.
        let worker: consumer::PullConsumer = restored.get_consumer("worker").await.unwrap();
        let resumed = next_delivered(&worker).await;
        let delivered = seen.last().unwrap().info().unwrap().stream_sequence;
        assert_eq!(resumed, delivered + 1);
    }
}

#[tokio::test]
async fn a_restored_mirror_follows_its_origin_again() {
    let (server, _dir) = js_server("snap-mirror");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, "ORIGIN", "o.*").await;
    let mut mirror = js
        .create_stream(stream::Config {
            name: "COPY".into(),
            mirror: Some(stream::Source {
                name: "ORIGIN".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..5 {
        publish(&js, "o.a", &[], format!("m{i}")).await;
    }
    within("mirrored", async {
        while mirror.info().await.unwrap().state.messages < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let backup = snapshot(&client, "COPY", json!({})).await;
    js.delete_stream("COPY").await.unwrap();
    publish(&js, "o.a", &[], "while away".into()).await;
    let done = restore(&client, &backup.reply["config"], &backup.data, 4096).await;
    assert!(done.get("error").is_none(), "{done}");
    let mut restored = js.get_stream("COPY").await.unwrap();
    within("caught up", async {
        while restored.info().await.unwrap().state.messages < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let last = restored.get_raw_message(6).await.unwrap();
    assert_eq!(last.payload.as_ref(), b"while away");
}

/// As jsm.go does: the deliver subject is under the client's request-mux
/// wildcard, and the client subscribes to it only after it has read the
/// reply. The wildcard is no interest: the first chunk waits for the exact
/// subscription, so the backup arrives whole.
#[tokio::test]
async fn a_snapshot_waits_for_its_receiver_to_subscribe() {
    let (server, _dir) = js_server("snap-late");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, "LATE", "late").await;
    for i in 0..20 {
        publish(&js, "late", &[], noise(i, 300)).await;
    }
    let mux = client.new_inbox();
    let mut stray = client.subscribe(format!("{mux}.*")).await.unwrap();
    let deliver = format!("{mux}.snapshot");
    let body = json!({"deliver_subject": deliver, "chunk_size": 1024});
    let reply = js_api(&client, "$JS.API.STREAM.SNAPSHOT.LATE", body).await;
    assert!(reply.get("error").is_none(), "{reply}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut chunks = client.subscribe(deliver).await.unwrap();
    client.flush().await.unwrap();
    let mut data = Vec::new();
    let mut received = 0;
    let end = loop {
        let chunk = next_message(&mut chunks).await;
        received += 1;
        if chunk.payload.is_empty() {
            break chunk;
        }
        data.extend_from_slice(&chunk.payload);
        if let Some(ack) = chunk.reply {
            client.publish(ack, Bytes::new()).await.unwrap();
        }
    };
    assert_eq!(end.status.map(|s| s.as_u16()), Some(204));
    // The wildcard saw each message the subscription saw, and none before.
    let mut seen_by_wildcard = 0;
    while let Ok(Some(_)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), stray.next()).await
    {
        seen_by_wildcard += 1;
    }
    assert_eq!(
        seen_by_wildcard, received,
        "nothing went out before the subscription"
    );
    // Every message is in the backup: restore it under its name elsewhere.
    let config = js
        .get_stream("LATE")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    js.delete_stream("LATE").await.unwrap();
    let restored = restore(&client, &json!(config), &data, 4096).await;
    assert_eq!(restored["state"]["messages"], 20, "{restored}");
}

/// A receiver that goes away midway ends the snapshot with `408 No
/// Interest`; the complete advisory says so.
#[tokio::test]
async fn a_snapshot_whose_receiver_leaves_ends_with_no_interest() {
    let (server, _dir) = js_server("snap-gone");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, "GONE", "gone").await;
    for i in 0..20 {
        publish(&js, "gone", &[], noise(i, 300)).await;
    }
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_COMPLETE.GONE")
        .await
        .unwrap();
    let inbox = client.new_inbox();
    let mut chunks = client.subscribe(inbox.clone()).await.unwrap();
    let body = json!({"deliver_subject": inbox, "chunk_size": 1024, "window_size": 2048});
    let reply = js_api(&client, "$JS.API.STREAM.SNAPSHOT.GONE", body).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let first = next_message(&mut chunks).await;
    assert!(!first.payload.is_empty());
    chunks.unsubscribe().await.unwrap();
    client.flush().await.unwrap();
    let started = std::time::Instant::now();
    let advisory = next_message(&mut advisories).await;
    let advisory: Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(advisory["error"], "no interest", "{advisory}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "ended by the interest, not by the missing acks"
    );
}
