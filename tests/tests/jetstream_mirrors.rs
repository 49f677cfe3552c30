//! Mirrors and sources between the streams of one server, through
//! async-nats: a mirror copies its origin with the origin's sequences and
//! times (catching up, then following; filtered, transformed, from a start
//! sequence); a stream with sources appends its origins' messages with the
//! `Nats-Stream-Source` header; STREAM.INFO reports both; both survive a
//! SIGKILL and restart without gaps or duplicates.
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test -p rnats-tests --test jetstream_mirrors`).
//! The reference feeds through internal consumers, asynchronously: each
//! test waits until the expected state shows up.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::{connect, js_api as api, js_server, within};
use serde_json::{json, Value};

/// Publish and wait for the ack; returns the stored sequence.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> u64 {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let ack = within("publish", async {
        js.publish_with_headers(subject.to_string(), map, payload.to_string().into())
            .await
            .unwrap()
            .await
    })
    .await;
    ack.unwrap().sequence
}

/// Stream info, polled until `ready` holds on it (the reference feeds
/// asynchronously).
async fn info_when(
    client: &async_nats::Client,
    stream: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    common::js_info_when(client, stream, Duration::from_secs(10), ready).await
}

fn last_seq(info: &Value) -> u64 {
    info["state"]["last_seq"].as_u64().unwrap()
}

/// A mirror or source section with its timing normalized: `active` is
/// checked to be a duration, then dropped.
fn normalized(section: &Value) -> Value {
    let mut section = section.clone();
    let active = section["active"].as_i64().expect("active is a number");
    assert!(active >= 0, "active in {section}");
    section.as_object_mut().unwrap().remove("active");
    section
}

/// Create a stream, failing the test when refused.
async fn create(js: &jetstream::Context, config: stream::Config) -> stream::Stream {
    let name = config.name.clone();
    within("create", js.create_stream(config))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn with_subjects(name: &str, subjects: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        ..Default::default()
    }
}

/// The `sources` section, each normalized, in name order (the reference
/// lists them from a map, in no set order).
fn normalized_sources(info: &Value) -> Vec<Value> {
    let mut sources: Vec<Value> = info["sources"]
        .as_array()
        .expect("a sources section")
        .iter()
        .map(normalized)
        .collect();
    sources.sort_by_key(|s| (s["name"].to_string(), s.to_string()));
    sources
}

fn mirror_of(name: &str, origin: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        mirror: Some(source(origin)),
        ..Default::default()
    }
}

/// A stream with one source, `origin`, unfiltered.
fn sourcing(name: &str, origin: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        sources: Some(vec![source(origin)]),
        ..Default::default()
    }
}

fn source(name: &str) -> stream::Source {
    stream::Source {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_mirror_catches_up_and_follows_with_the_origins_sequences() {
    let (server, _dir) = js_server("mirror-follow");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let origin = js
        .create_stream(with_subjects("ORIGIN", "orders.>"))
        .await
        .unwrap();
    publish(
        &js,
        "orders.1",
        &[("Nats-Expected-Last-Sequence", "0")],
        "one",
    )
    .await;
    publish(&js, "orders.2", &[("Keep", "me")], "two").await;
    publish(&js, "orders.3", &[], "three").await;
    assert!(origin.delete_message(2).await.unwrap());

    let created = create(&js, mirror_of("COPY", "ORIGIN")).await;
    assert_eq!(
        created.cached_info().config.mirror.as_ref().unwrap().name,
        "ORIGIN"
    );

    let info = info_when(&client, "COPY", |i| last_seq(i) == 3).await;
    assert_eq!(info["state"]["messages"], 2);
    assert_eq!(info["state"]["first_seq"], 1);
    assert_eq!(
        normalized(&info["mirror"]),
        json!({"name": "ORIGIN", "lag": 0})
    );

    let copy = js.get_stream("COPY").await.unwrap();
    for seq in [1, 3] {
        let mirrored = copy.get_raw_message(seq).await.unwrap();
        let original = origin.get_raw_message(seq).await.unwrap();
        assert_eq!(mirrored.subject, original.subject);
        assert_eq!(mirrored.payload, original.payload);
        assert_eq!(
            mirrored.time, original.time,
            "a mirror keeps the origin's times"
        );
    }
    // The origin's expectations are not checked again: they are dropped.
    let first = copy.get_raw_message(1).await.unwrap();
    assert!(first.headers.get("Nats-Expected-Last-Sequence").is_none());
    assert!(
        copy.get_raw_message(2).await.is_err(),
        "removed at the origin"
    );

    // New messages follow.
    publish(&js, "orders.4", &[("Keep", "me")], "four").await;
    info_when(&client, "COPY", |i| last_seq(i) == 4).await;
    let fourth = copy.get_raw_message(4).await.unwrap();
    assert_eq!(fourth.payload, "four");
    assert_eq!(fourth.headers.get("Keep").unwrap().as_str(), "me");

    // A mirror takes no subjects of its own.
    let refused = api(
        &client,
        "$JS.API.STREAM.CREATE.BAD",
        json!({"name": "BAD", "subjects": ["bad.>"], "mirror": {"name": "ORIGIN"}}),
    )
    .await;
    assert_eq!(refused["error"]["err_code"], 10034, "{refused}");
}

#[tokio::test]
async fn a_mirror_filters_transforms_and_starts_where_asked() {
    let (server, _dir) = js_server("mirror-filter");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, with_subjects("ORIGIN", "o.>")).await;
    for (i, subject) in ["o.a", "o.b", "o.a", "o.b", "o.a"].iter().enumerate() {
        publish(&js, subject, &[], &format!("m{}", i + 1)).await;
    }
    js.create_stream(stream::Config {
        name: "ONLY_A".into(),
        mirror: Some(stream::Source {
            name: "ORIGIN".into(),
            filter_subject: Some("o.a".into()),
            start_sequence: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_stream(stream::Config {
        name: "MAPPED".into(),
        mirror: Some(stream::Source {
            name: "ORIGIN".into(),
            subject_transforms: vec![stream::SubjectTransform {
                source: "o.b".into(),
                destination: "mapped.b".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    let origin = js.get_stream("ORIGIN").await.unwrap();
    let third = origin.get_raw_message(3).await.unwrap();
    js.create_stream(stream::Config {
        name: "SINCE".into(),
        mirror: Some(stream::Source {
            name: "ORIGIN".into(),
            start_time: Some(third.time),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let since = info_when(&client, "SINCE", |i| last_seq(i) == 5).await;
    assert_eq!(since["state"]["first_seq"], 3, "{since}");
    assert_eq!(since["state"]["messages"], 3);

    let only_a = info_when(&client, "ONLY_A", |i| last_seq(i) == 5).await;
    assert_eq!(
        only_a["state"]["messages"], 2,
        "o.a from sequence 2: 3 and 5"
    );
    assert_eq!(only_a["state"]["first_seq"], 3);
    assert_eq!(
        normalized(&only_a["mirror"]),
        json!({"name": "ORIGIN", "lag": 0, "filter_subject": "o.a"})
    );
    let mapped = info_when(&client, "MAPPED", |i| last_seq(i) == 4).await;
    assert_eq!(mapped["state"]["messages"], 2);
    assert_eq!(
        normalized(&mapped["mirror"]),
        json!({"name": "ORIGIN", "lag": 0,
               "subject_transforms": [{"src": "o.b", "dest": "mapped.b"}]})
    );
    let stream = js.get_stream("MAPPED").await.unwrap();
    let msg = stream.get_raw_message(2).await.unwrap();
    assert_eq!(msg.subject.as_str(), "mapped.b");
    assert_eq!(msg.payload, "m2");
}

/// `Nats-Stream-Source` split as the reference writes it: origin,
/// sequence, filter, destination, original subject, the origin's identity.
fn source_header(headers: &async_nats::HeaderMap) -> Vec<String> {
    let value = headers.get("Nats-Stream-Source").expect("sourced").as_str();
    let parts: Vec<String> = value.split(' ').map(str::to_string).collect();
    assert_eq!(parts.len(), 6, "{value}");
    assert_eq!(parts[5].len(), 8, "identity in {value}");
    parts[..5].to_vec()
}

#[tokio::test]
async fn sources_append_from_two_streams_with_the_source_header() {
    let (server, _dir) = js_server("sources");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    for (name, subjects) in [("EU", "eu.>"), ("US", "us.>")] {
        create(&js, with_subjects(name, subjects)).await;
    }
    publish(&js, "eu.1", &[("Nats-Expected-Last-Sequence", "0")], "e1").await;
    publish(&js, "us.x", &[], "u1").await;
    publish(&js, "us.y", &[], "u2").await;
    publish(&js, "us.x", &[("Nats-Msg-Id", "dup")], "u3").await;

    let created = js
        .create_stream(stream::Config {
            name: "ALL".into(),
            sources: Some(vec![
                source("EU"),
                stream::Source {
                    name: "US".into(),
                    filter_subject: Some("us.x".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        created.cached_info().config.sources.as_ref().unwrap().len(),
        2
    );
    let info = info_when(&client, "ALL", |i| i["state"]["messages"] == 3).await;
    let sources = normalized_sources(&info);
    assert_eq!(
        sources,
        vec![
            json!({"name": "EU", "lag": 0, "seq": 1}),
            json!({"name": "US", "lag": 0, "seq": 3, "filter_subject": "us.x"}),
        ]
    );
    let all = js.get_stream("ALL").await.unwrap();
    let mut seen = Vec::new();
    for seq in 1..=3 {
        let msg = all.get_raw_message(seq).await.unwrap();
        assert!(msg.headers.get("Nats-Expected-Last-Sequence").is_none());
        seen.push((msg.subject.to_string(), source_header(&msg.headers)));
    }
    seen.sort();
    let parts = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        vec![
            ("eu.1".to_string(), parts(&["EU", "1", ">", ">", "eu.1"])),
            ("us.x".to_string(), parts(&["US", "1", "us.x", ">", "us.x"])),
            ("us.x".to_string(), parts(&["US", "3", "us.x", ">", "us.x"])),
        ]
    );

    // Only sourcing writes the header: a client's publish carrying it is
    // refused.
    let mut forged = async_nats::HeaderMap::new();
    forged.insert("Nats-Stream-Source", "EU 9 > > eu.9");
    let refused = within(
        "forged publish",
        client.request_with_headers("eu.9", forged, "x".into()),
    )
    .await
    .unwrap();
    let refused: Value = serde_json::from_slice(&refused.payload).unwrap();
    assert_eq!(
        refused,
        json!({"error": {"code": 400, "err_code": 10227,
                         "description": "message stream source header is not allowed"},
               "stream": "EU", "seq": 0})
    );

    // Followed: new messages are appended with new sequences.
    publish(&js, "eu.2", &[], "e2").await;
    let info = info_when(&client, "ALL", |i| i["state"]["messages"] == 4).await;
    assert_eq!(info["state"]["last_seq"], 4);
    let msg = all.get_raw_message(4).await.unwrap();
    assert_eq!(
        source_header(&msg.headers),
        parts(&["EU", "2", ">", ">", "eu.2"])
    );
}

#[tokio::test]
async fn a_missing_origin_is_reported_in_the_info() {
    let (server, _dir) = js_server("mirror-missing");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, mirror_of("LONELY", "NOWHERE")).await;
    let info = info_when(&client, "LONELY", |i| !i["mirror"]["error"].is_null()).await;
    assert_eq!(
        info["mirror"],
        json!({"name": "NOWHERE", "lag": 0, "active": -1,
               "error": {"code": 404, "err_code": 10059, "description": "stream not found"}})
    );
}

#[tokio::test]
async fn mirrors_and_sources_resume_after_a_restart_without_gaps_or_duplicates() {
    let (mut server, _dir) = js_server("mirror-restart");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, with_subjects("ORIGIN", "o.>")).await;
    create(&js, mirror_of("COPY", "ORIGIN")).await;
    create(&js, sourcing("SUM", "ORIGIN")).await;
    for i in 1..=20 {
        publish(&js, &format!("o.{}", i % 3), &[], &i.to_string()).await;
    }
    info_when(&client, "COPY", |i| last_seq(i) == 20).await;
    info_when(&client, "SUM", |i| i["state"]["messages"] == 20).await;
    // Let the stores write what they hold before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    server.restart();

    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    for i in 21..=30 {
        publish(&js, &format!("o.{}", i % 3), &[], &i.to_string()).await;
    }
    info_when(&client, "COPY", |i| last_seq(i) == 30).await;
    let sum = info_when(&client, "SUM", |i| i["state"]["messages"] == 30).await;
    // Nothing more arrives: no duplicates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = api(&client, "$JS.API.STREAM.INFO.SUM", json!({})).await;
    assert_eq!(again["state"]["messages"], 30, "{again}");
    assert_eq!(
        normalized(&sum["sources"][0]),
        json!({"name": "ORIGIN", "lag": 0, "seq": 30})
    );
    let stream = js.get_stream("SUM").await.unwrap();
    for seq in 1..=30u64 {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.payload, seq.to_string(), "in order, once each");
    }
    let copy = js.get_stream("COPY").await.unwrap();
    for seq in [1u64, 20, 21, 30] {
        assert_eq!(
            copy.get_raw_message(seq).await.unwrap().payload,
            seq.to_string()
        );
    }
}

#[tokio::test]
async fn a_source_added_by_update_is_taken_without_repeating_the_others() {
    let (server, _dir) = js_server("sources-update");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    for (name, subjects) in [("A", "a.>"), ("B", "b.>")] {
        create(&js, with_subjects(name, subjects)).await;
    }
    publish(&js, "a.1", &[], "a1").await;
    publish(&js, "b.1", &[], "b1").await;
    publish(&js, "b.2", &[], "b2").await;
    let mut config = sourcing("BOTH", "A");
    js.create_stream(config.clone()).await.unwrap();
    info_when(&client, "BOTH", |i| i["state"]["messages"] == 1).await;

    config.sources = Some(vec![
        source("A"),
        stream::Source {
            name: "B".into(),
            start_sequence: Some(2),
            ..Default::default()
        },
    ]);
    within("update", js.update_stream(config)).await.unwrap();
    let info = info_when(&client, "BOTH", |i| i["state"]["messages"] == 2).await;
    let sources = normalized_sources(&info);
    assert_eq!(
        sources,
        vec![
            json!({"name": "A", "lag": 0, "seq": 1}),
            json!({"name": "B", "lag": 0, "seq": 2}),
        ]
    );
    let both = js.get_stream("BOTH").await.unwrap();
    let second = both.get_raw_message(2).await.unwrap();
    assert_eq!(second.payload, "b2", "B from its start sequence");
    publish(&js, "a.2", &[], "a2").await;
    info_when(&client, "BOTH", |i| i["state"]["messages"] == 3).await;
    assert_eq!(both.get_raw_message(3).await.unwrap().payload, "a2");
}

#[tokio::test]
async fn a_purged_source_stream_resumes_after_a_restart_without_repeating() {
    let (mut server, _dir) = js_server("sources-purged");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, with_subjects("ORIGIN", "o.>")).await;
    create(&js, sourcing("SUM", "ORIGIN")).await;
    for i in 1..=5 {
        publish(&js, "o.x", &[], &i.to_string()).await;
    }
    info_when(&client, "SUM", |i| i["state"]["messages"] == 5).await;
    js.get_stream("SUM").await.unwrap().purge().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    server.restart();

    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    publish(&js, "o.x", &[], "6").await;
    let info = info_when(&client, "SUM", |i| last_seq(i) >= 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info_after = api(&client, "$JS.API.STREAM.INFO.SUM", json!({})).await;
    assert_eq!(
        info_after["state"]["messages"], 1,
        "{info} then {info_after}"
    );
    assert_eq!(info_after["state"]["last_seq"], 6);
}

#[tokio::test]
async fn a_long_catch_up_takes_every_message_once() {
    let (server, _dir) = js_server("mirror-long");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    create(&js, with_subjects("ORIGIN", "o.>")).await;
    let mut acks = Vec::new();
    for i in 1..=3000u32 {
        acks.push(
            js.publish(format!("o.{}", i % 10), i.to_string().into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        within("ack", async { ack.await }).await.unwrap();
    }
    create(&js, mirror_of("COPY", "ORIGIN")).await;
    create(&js, sourcing("SUM", "ORIGIN")).await;
    let copy = info_when(&client, "COPY", |i| last_seq(i) == 3000).await;
    assert_eq!(copy["state"]["messages"], 3000);
    let sum = info_when(&client, "SUM", |i| i["state"]["messages"] == 3000).await;
    assert_eq!(sum["state"]["last_seq"], 3000);
    let stream = js.get_stream("SUM").await.unwrap();
    for seq in [1u64, 1024, 1025, 3000] {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.payload, seq.to_string());
    }
}
