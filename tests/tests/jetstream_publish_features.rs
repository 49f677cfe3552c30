//! The 2.12+ publish features, through async-nats requests with headers
//! (the client has no helpers for them): counters (`allow_msg_counter`,
//! `Nats-Incr`, the ack's `val`), with the reference's refusals.
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_publish_features`).

mod common;

use async_nats::jetstream::{self, stream};
use common::{connect, js_server, within};
use serde_json::{json, Value};

type Headers<'a> = [(&'a str, &'a str)];

/// A `$JS.API` request with a JSON body; the reply parsed.
async fn api(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = within(
        subject,
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Publish with headers and return the reply exactly as sent.
async fn publish(
    client: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &'static str,
) -> String {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let reply = within(
        "publish",
        client.request_with_headers(subject.to_string(), map, payload.into()),
    )
    .await
    .unwrap();
    String::from_utf8(reply.payload.to_vec()).unwrap()
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
