//! Stream features that act on each stored message, through async-nats:
//! `subject_transform` (the subject is rewritten before storing),
//! `republish` (each stored message is sent on with the stream's headers)
//! and subject delete markers (`subject_delete_marker_ttl`, and a KV
//! bucket's `limit_markers`: expiry of a subject's last message leaves a
//! marker that watchers see as a purge).
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_stream_features`).

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use common::{connect, js_server, next_message, within};
use futures::StreamExt;

/// Publish and wait for the ack; returns the stored sequence.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &'static str,
) -> u64 {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let ack = within("publish", async {
        js.publish_with_headers(subject.to_string(), map, payload.into())
            .await
            .unwrap()
            .await
    })
    .await;
    ack.unwrap().sequence
}

fn header<'a>(headers: &'a async_nats::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing from {headers:?}"))
        .as_str()
}

#[tokio::test]
async fn transformed_messages_are_stored_and_republished_with_stream_headers() {
    let (server, _dir) = js_server("republish");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let mut copies = client.subscribe("copy.>").await.unwrap();
    let mut sizes = client.subscribe("size.>").await.unwrap();
    client.flush().await.unwrap();
    let stream = within(
        "create",
        js.create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            subject_transform: Some(stream::SubjectTransform {
                source: "orders.*.>".into(),
                destination: "stored.$1.>".into(),
            }),
            republish: Some(stream::Republish {
                source: "stored.>".into(),
                destination: "copy.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        publish(&js, "orders.eu.new", &[("Foo", "bar")], "first").await,
        1
    );
    publish(&js, "orders.eu.new", &[], "second").await;

    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.subject.as_str(), "stored.eu.new");
    let first = next_message(&mut copies).await;
    assert_eq!(first.subject.as_str(), "copy.eu.new");
    assert_eq!(first.payload.as_ref(), b"first");
    let h = first.headers.as_ref().expect("headers");
    assert_eq!(header(h, "Foo"), "bar");
    assert_eq!(header(h, "Nats-Stream"), "ORDERS");
    assert_eq!(header(h, "Nats-Subject"), "stored.eu.new");
    assert_eq!(header(h, "Nats-Sequence"), "1");
    assert_eq!(header(h, "Nats-Last-Sequence"), "0");
    let time = header(h, "Nats-Time-Stamp");
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    let second = next_message(&mut copies).await;
    let h = second.headers.as_ref().expect("headers");
    assert_eq!(header(h, "Nats-Sequence"), "2");
    assert_eq!(
        header(h, "Nats-Last-Sequence"),
        "1",
        "the subject's previous"
    );
    assert!(h.get("Foo").is_none());

    // Headers only: the payload's size instead of the payload.
    js.create_stream(stream::Config {
        name: "SIZES".into(),
        subjects: vec!["sz.*".into()],
        republish: Some(stream::Republish {
            source: "sz.*".into(),
            destination: "size.{{wildcard(1)}}.seen".into(),
            headers_only: true,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    publish(&js, "sz.k", &[], "12345").await;
    let seen = next_message(&mut sizes).await;
    assert_eq!(seen.subject.as_str(), "size.k.seen");
    assert!(seen.payload.is_empty());
    let h = seen.headers.as_ref().expect("headers");
    assert_eq!(header(h, "Nats-Msg-Size"), "5");
    assert_eq!(header(h, "Nats-Subject"), "sz.k");
}

#[tokio::test]
async fn a_republish_back_into_the_stream_is_refused_as_a_cycle() {
    let (server, _dir) = js_server("republish-cycle");
    let js = jetstream::new(connect(&server.url()).await);
    let error = js
        .create_stream(stream::Config {
            name: "LOOP".into(),
            subjects: vec!["loop.*".into()],
            republish: Some(stream::Republish {
                source: "loop.*".into(),
                destination: "loop.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .expect_err("a cycle");
    let text = error.to_string();
    assert!(
        text.contains("stream configuration for republish destination forms a cycle")
            && text.contains("10052"),
        "{text}"
    );
}

#[tokio::test]
async fn expiry_of_a_subjects_last_message_leaves_a_delete_marker() {
    let (server, _dir) = js_server("markers");
    let js = jetstream::new(connect(&server.url()).await);
    let stream = js
        .create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["ev.>".into()],
            max_age: Duration::from_secs(1),
            subject_delete_marker_ttl: Some(Duration::from_secs(5)),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = stream.cached_info();
    assert!(info.config.allow_message_ttl, "markers imply message TTLs");
    assert!(info.config.allow_rollup, "markers imply roll-ups");
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    js.publish("ev.a", "1".into()).await.unwrap().await.unwrap();
    js.publish("ev.a", "2".into()).await.unwrap().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let message = within("a message or marker", messages.next())
            .await
            .expect("open")
            .unwrap();
        message.ack().await.unwrap();
        seen.push(message);
    }
    assert_eq!(seen[0].payload.as_ref(), b"1");
    assert_eq!(seen[1].payload.as_ref(), b"2");
    let marker = &seen[2];
    assert_eq!(marker.subject.as_str(), "ev.a");
    assert!(marker.payload.is_empty());
    let h = marker.headers.as_ref().expect("marker headers");
    assert_eq!(header(h, "Nats-Marker-Reason"), "MaxAge");
    assert_eq!(header(h, "Nats-TTL"), "5s");
    assert_eq!(header(h, "Nats-Rollup"), "sub");
    assert_eq!(marker.info().unwrap().stream_sequence, 3);
}

#[tokio::test]
async fn a_message_ttl_expiry_leaves_a_marker_and_short_ttls_are_raised() {
    let (server, _dir) = js_server("markers-ttl");
    let js = jetstream::new(connect(&server.url()).await);
    let with_markers = |name: &str, subject: &str, per_subject: i64| stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        max_messages_per_subject: per_subject,
        subject_delete_marker_ttl: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let stream = js
        .create_stream(with_markers("TTLS", "t.>", 0))
        .await
        .unwrap();
    publish(&js, "t.raised", &[("Nats-TTL", "1s")], "x").await;
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(header(&stored.headers, "Nats-TTL"), "60");

    // One message per subject: nothing to raise; it expires after a second.
    let stream = js
        .create_stream(with_markers("ONE", "one.>", 1))
        .await
        .unwrap();
    publish(&js, "one.k", &[("Nats-TTL", "1s")], "x").await;
    let marker = within("the marker", async {
        loop {
            match stream.get_last_raw_message_by_subject("one.k").await {
                Ok(message) if message.sequence == 2 => return message,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(header(&marker.headers, "Nats-Marker-Reason"), "MaxAge");
    assert_eq!(header(&marker.headers, "Nats-TTL"), "1m0s");
    assert!(marker.payload.is_empty());
    let mut stream = stream;
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 1, "the marker replaced the message");
}

#[tokio::test]
async fn kv_limit_markers_show_an_expired_key_as_purged_to_watchers() {
    let (server, _dir) = js_server("kv-markers");
    let js = jetstream::new(connect(&server.url()).await);
    let kv = within(
        "create bucket",
        js.create_key_value(kv::Config {
            bucket: "SESSIONS".into(),
            max_age: Duration::from_secs(1),
            limit_markers: Some(Duration::from_secs(5)),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut watch = kv.watch_all().await.unwrap();
    kv.put("alice", "online".into()).await.unwrap();
    let put = within("the put", watch.next()).await.unwrap().unwrap();
    assert_eq!(put.operation, kv::Operation::Put);
    assert_eq!(put.key, "alice");
    let gone = within("the expiry", watch.next()).await.unwrap().unwrap();
    assert_eq!(gone.key, "alice");
    assert_eq!(gone.operation, kv::Operation::Purge);
    assert_eq!(gone.revision, 2);
    assert_eq!(kv.get("alice").await.unwrap(), None);
}
