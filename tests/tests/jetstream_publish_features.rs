//! The 2.12+ publish features, through async-nats requests with headers
//! (the client has no helpers for them): counters (`allow_msg_counter`,
//! `Nats-Incr`, the ack's `val`) and message schedules (`@at`, `@every`,
//! the produced messages' headers, purging), with the reference's refusals.
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_publish_features`).

mod common;

use async_nats::jetstream::{self, stream};
use common::{connect, js_api as api, js_server};
use serde_json::json;
use std::time::Duration;

type Headers<'a> = [(&'a str, &'a str)];
type HeaderList<'a> = Vec<(&'a str, &'a str)>;

/// Publish with headers and return the reply exactly as sent.
async fn publish(
    client: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &'static str,
) -> String {
    common::publish_with_headers(client, subject, headers, payload).await
}

fn refusal(stream: &str, code: u64, description: &str) -> String {
    format!(
        r#"{{"error":{{"code":400,"err_code":{code},"description":"{description}"}},"stream":"{stream}","seq":0}}"#
    )
}

#[tokio::test]
async fn counters_add_increments_and_ack_the_running_total() {
    let (server, _dir) = js_server("counters");
    let client = connect(&server.url()).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.HITS",
        json!({"name": "HITS", "subjects": ["hits.>"], "allow_msg_counter": true}),
    )
    .await;
    assert_eq!(created["config"]["allow_msg_counter"], true, "{created}");

    let incr = |v: &'static str| [("Nats-Incr", v)];
    assert_eq!(
        publish(&client, "hits.a", &incr("1"), "").await,
        r#"{"stream":"HITS","seq":1,"val":"1"}"#
    );
    assert_eq!(
        publish(&client, "hits.a", &incr("+5"), "").await,
        r#"{"stream":"HITS","seq":2,"val":"6"}"#
    );
    assert_eq!(
        publish(&client, "hits.b", &incr("-2"), "").await,
        r#"{"stream":"HITS","seq":3,"val":"-2"}"#
    );
    // Totals are not bounded by 64 bits.
    assert_eq!(
        publish(
            &client,
            "hits.a",
            &incr("99999999999999999999999999999"),
            ""
        )
        .await,
        r#"{"stream":"HITS","seq":4,"val":"100000000000000000000000000005"}"#
    );
    // A duplicate is acknowledged without a total.
    let with_id = [("Nats-Incr", "1"), ("Nats-Msg-Id", "x")];
    assert_eq!(
        publish(&client, "hits.b", &with_id, "").await,
        r#"{"stream":"HITS","seq":5,"val":"-1"}"#
    );
    assert_eq!(
        publish(&client, "hits.b", &with_id, "").await,
        r#"{"stream":"HITS","seq":5,"duplicate": true}"#
    );

    // The stored message keeps the headers; its payload is the total.
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("HITS").await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject("hits.a")
        .await
        .unwrap();
    assert_eq!(
        &last.payload[..],
        br#"{"val":"100000000000000000000000000005"}"#
    );
    assert_eq!(
        last.headers.get("Nats-Incr").map(|v| v.as_str()),
        Some("99999999999999999999999999999")
    );

    // Refusals, in the reference's order of checks.
    let refused = |code, text| refusal("HITS", code, text);
    let cases: [(&Headers, &'static str, String); 6] = [
        (
            &incr("abc"),
            "",
            refused(10171, "message counter increment is invalid"),
        ),
        (
            &incr("1_0"),
            "",
            refused(10171, "message counter increment is invalid"),
        ),
        (
            &incr("1"),
            "x",
            refused(10170, "message counter has payload"),
        ),
        (
            &[],
            "",
            refused(10169, "message counter increment is missing"),
        ),
        (
            &[("Nats-Incr", "1"), ("Nats-Expected-Last-Sequence", "5")],
            "",
            refused(10171, "message counter increment is invalid"),
        ),
        (
            &[("Nats-Incr", "1"), ("Nats-Rollup", "sub")],
            "",
            refused(10171, "message counter increment is invalid"),
        ),
    ];
    for (headers, payload, expected) in cases {
        assert_eq!(
            publish(&client, "hits.a", headers, payload).await,
            expected,
            "{headers:?}"
        );
    }
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, 5, "refusals stored nothing");
}

#[tokio::test]
async fn increments_on_other_streams_and_counter_config_conflicts_are_refused() {
    let (server, _dir) = js_server("counter-refusals");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "PLAIN".into(),
        subjects: vec!["plain".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        publish(&client, "plain", &[("Nats-Incr", "1")], "").await,
        refusal("PLAIN", 10168, "message counters is disabled")
    );
    assert_eq!(
        publish(&client, "plain", &[("Nats-Incr", "one")], "").await,
        refusal("PLAIN", 10171, "message counter increment is invalid")
    );
    // Atomic batches are refused before anything else looks at the message.
    let batch = [
        ("Nats-Batch-Id", "b1"),
        ("Nats-Batch-Sequence", "1"),
        ("Nats-Incr", "x"),
    ];
    assert_eq!(
        publish(&client, "plain", &batch, "").await,
        refusal("PLAIN", 10174, "atomic publish is disabled")
    );

    for (extra, description) in [
        (
            json!({"discard": "new"}),
            "counter stream cannot use discard new",
        ),
        (
            json!({"allow_msg_ttl": true}),
            "counter stream cannot use message TTLs",
        ),
    ] {
        let mut config = json!({"name": "C", "subjects": ["c"], "allow_msg_counter": true});
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        let reply = api(&client, "$JS.API.STREAM.CREATE.C", config).await;
        assert_eq!(reply["error"]["description"], description, "{reply}");
    }
    api(
        &client,
        "$JS.API.STREAM.CREATE.C",
        json!({"name": "C", "subjects": ["c"], "allow_msg_counter": true}),
    )
    .await;
    let update = api(
        &client,
        "$JS.API.STREAM.UPDATE.C",
        json!({"name": "C", "subjects": ["c"], "allow_msg_counter": false}),
    )
    .await;
    assert_eq!(
        update["error"]["description"],
        "stream configuration update can not change message counter setting",
        "{update}"
    );
}

/// Poll until `subject`'s last message in `stream` exists, and return it.
async fn wait_for_last(
    stream: &jetstream::stream::Stream,
    subject: &str,
) -> jetstream::message::StreamMessage {
    for _ in 0..100 {
        if let Ok(msg) = stream.get_last_raw_message_by_subject(subject).await {
            return msg;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing stored on {subject}");
}

#[tokio::test]
async fn schedules_produce_their_messages_when_due_and_purge_themselves() {
    let (server, _dir) = js_server("schedules");
    let client = connect(&server.url()).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "allow_msg_schedules": true, "allow_msg_ttl": true}),
    )
    .await;
    // Schedules need roll-ups: the reference turns them on.
    assert_eq!(created["config"]["allow_rollup_hdrs"], true, "{created}");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("S").await.unwrap();

    // A time already past fires at the next timer.
    let once = [
        ("Nats-Schedule", "@at 2020-01-01T00:00:00Z"),
        ("Nats-Schedule-Target", "s.target"),
        ("Nats-Schedule-TTL", "5m"),
        ("Foo", "bar"),
        ("Nats-Msg-Id", "m1"),
    ];
    assert_eq!(
        publish(&client, "s.once", &once, "hello").await,
        r#"{"stream":"S","seq":1}"#
    );
    let produced = wait_for_last(&stream, "s.target").await;
    assert_eq!(&produced.payload[..], b"hello");
    let header = |name: &str| produced.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(header("Foo").as_deref(), Some("bar"));
    assert_eq!(header("Nats-Scheduler").as_deref(), Some("s.once"));
    assert_eq!(header("Nats-Schedule-Next").as_deref(), Some("purge"));
    assert_eq!(header("Nats-TTL").as_deref(), Some("5m"));
    assert_eq!(header("Nats-Msg-Id"), None);
    assert_eq!(header("Nats-Schedule"), None);
    // The one-off schedule purged itself.
    assert!(stream
        .get_last_raw_message_by_subject("s.once")
        .await
        .is_err());

    // A repeating schedule: each produced message names the next time.
    let every = [
        ("Nats-Schedule", "@every 1s"),
        ("Nats-Schedule-Target", "s.tick"),
    ];
    publish(&client, "s.every", &every, "tick").await;
    let first = wait_for_last(&stream, "s.tick").await;
    let next = first
        .headers
        .get("Nats-Schedule-Next")
        .unwrap()
        .as_str()
        .to_string();
    assert!(next.ends_with('Z') && next.contains('T'), "{next}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = stream
        .get_last_raw_message_by_subject("s.tick")
        .await
        .unwrap();
    assert!(later.sequence > first.sequence, "it fired again");
    // A cron pattern repeats the same way.
    let cron = [
        ("Nats-Schedule", "* * * * * *"),
        ("Nats-Schedule-Target", "s.cron"),
    ];
    publish(&client, "s.cron-schedule", &cron, "c").await;
    let cron_first = wait_for_last(&stream, "s.cron").await;
    assert_eq!(
        cron_first.headers.get("Nats-Scheduler").map(|v| v.as_str()),
        Some("s.cron-schedule")
    );
    let purge_cron = [
        ("Nats-Schedule-Next", "purge"),
        ("Nats-Scheduler", "s.cron-schedule"),
    ];
    publish(&client, "s.stop-cron", &purge_cron, "").await;
    // A client purges it; nothing more is produced.
    let purge = [
        ("Nats-Schedule-Next", "purge"),
        ("Nats-Scheduler", "s.every"),
    ];
    publish(&client, "s.stop", &purge, "").await;
    assert!(stream
        .get_last_raw_message_by_subject("s.every")
        .await
        .is_err());
    let stopped = stream.get_info().await.unwrap().state.last_sequence;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stream.get_info().await.unwrap().state.last_sequence,
        stopped
    );
}

#[tokio::test]
async fn schedule_headers_are_checked_as_the_reference_checks_them() {
    let (server, _dir) = js_server("schedule-refusals");
    let client = connect(&server.url()).await;
    api(
        &client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "allow_msg_schedules": true}),
    )
    .await;
    api(
        &client,
        "$JS.API.STREAM.CREATE.P",
        json!({"name": "P", "subjects": ["p.>"]}),
    )
    .await;
    let at = ("Nats-Schedule", "@at 2099-01-01T00:00:00Z");
    let to = |t: &'static str| ("Nats-Schedule-Target", t);
    let cases: Vec<(&str, HeaderList, String)> = vec![
        (
            "s.c",
            vec![("Nats-Schedule", "@at nope"), to("s.t")],
            refusal("S", 10189, "message schedules pattern is invalid"),
        ),
        (
            "s.c",
            vec![("Nats-Schedule", "@every 500ms"), to("s.t")],
            refusal("S", 10189, "message schedules pattern is invalid"),
        ),
        (
            "s.c",
            vec![at],
            refusal("S", 10190, "message schedules target is invalid"),
        ),
        (
            "s.c",
            vec![at, to("s.c")],
            refusal("S", 10190, "message schedules target is invalid"),
        ),
        (
            "s.c",
            vec![at, to("x.c")],
            refusal("S", 10190, "message schedules target is invalid"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Schedule-TTL", "abc")],
            refusal("S", 10191, "message schedules invalid per-message TTL"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Schedule-TTL", "1m")],
            refusal("S", 10166, "per-message TTL is disabled"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Schedule-Rollup", "all")],
            refusal("S", 10192, "message schedules invalid rollup"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Rollup", "all")],
            refusal("S", 10192, "message schedules invalid rollup"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Schedule-Source", "s.t")],
            refusal("S", 10203, "message schedules source is invalid"),
        ),
        (
            "s.c",
            vec![at, to("s.t"), ("Nats-Schedule-Time-Zone", "")],
            refusal("S", 10223, "message schedules time zone is invalid"),
        ),
        (
            "s.c",
            vec![("Nats-Schedule-Next", "purge")],
            refusal("S", 10212, "message schedules invalid scheduler"),
        ),
        (
            "s.c",
            vec![("Nats-Scheduler", "s.a")],
            refusal("S", 10212, "message schedules invalid scheduler"),
        ),
        (
            "p.c",
            vec![at, to("p.t")],
            refusal("P", 10188, "message schedules is disabled"),
        ),
        (
            "p.c",
            vec![("Nats-Schedule", "garbage")],
            refusal("P", 10188, "message schedules is disabled"),
        ),
        (
            "s.c",
            vec![("Nats-Schedule", "0 0 0 30 2 *"), to("s.t")],
            refusal("S", 10189, "message schedules pattern is invalid"),
        ),
        (
            "s.c",
            vec![("Nats-Schedule", "0 0 0 * * 7"), to("s.t")],
            refusal("S", 10189, "message schedules pattern is invalid"),
        ),
        (
            "s.c",
            vec![at, to("s.t")],
            r#"{"stream":"S","seq":1}"#.to_string(),
        ),
        (
            "s.d",
            vec![("Nats-Schedule", "0 0 0 * JAN-mar SUN"), to("s.t")],
            r#"{"stream":"S","seq":2}"#.to_string(),
        ),
        (
            "s.e",
            vec![
                ("Nats-Schedule", "@weekly"),
                to("s.t"),
                ("Nats-Schedule-Time-Zone", "UTC"),
            ],
            r#"{"stream":"S","seq":3}"#.to_string(),
        ),
    ];
    for (subject, headers, expected) in cases {
        assert_eq!(
            publish(&client, subject, &headers, "").await,
            expected,
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn counters_and_schedules_carry_on_after_a_kill_and_restart() {
    let (mut server, _dir) = js_server("publish-features-restart");
    let client = connect(&server.url()).await;
    api(
        &client,
        "$JS.API.STREAM.CREATE.C",
        json!({"name": "C", "subjects": ["c.>"], "allow_msg_counter": true}),
    )
    .await;
    api(
        &client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "allow_msg_schedules": true}),
    )
    .await;
    publish(&client, "c.a", &[("Nats-Incr", "40")], "").await;
    let every = [
        ("Nats-Schedule", "@every 1s"),
        ("Nats-Schedule-Target", "s.tick"),
    ];
    publish(&client, "s.every", &every, "tick").await;
    drop(client);
    server.restart();

    let client = connect(&server.url()).await;
    assert_eq!(
        publish(&client, "c.a", &[("Nats-Incr", "2")], "").await,
        r#"{"stream":"C","seq":2,"val":"42"}"#
    );
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("S").await.unwrap();
    let before = stream.get_info().await.unwrap().state.last_sequence;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = stream.get_info().await.unwrap().state.last_sequence;
    assert!(after > before, "the schedule fired after the restart");
    let tick = wait_for_last(&stream, "s.tick").await;
    assert_eq!(
        tick.headers.get("Nats-Scheduler").map(|v| v.as_str()),
        Some("s.every")
    );
}
