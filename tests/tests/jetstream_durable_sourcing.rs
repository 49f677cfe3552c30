//! Sourcing through durable consumers, and `ack_policy: flow_control`.
//!
//! A stream may read its origin through a durable consumer the user made
//! there (`sources[].consumer` / `mirror.consumer`): the stream resets the
//! consumer to its ack floor and takes what it delivers on its deliver
//! subject; the stream's answers to flow control ack it, so a work-queue
//! origin is drained. A stream in another account sourcing a work-queue
//! origin through the API prefix gets such a durable consumer made for it.
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test -p rnats-tests --test jetstream_durable_sourcing`).
//! The feeds run asynchronously in both: each test waits until the
//! expected state shows up.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::{connect, connect_with, js_api as api, store_dir, within};
use futures::StreamExt;
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

/// A JetStream server on client port `port` storing in a fresh directory.
fn start(name: &str, port: u16) -> ServerProcess {
    let dir = store_dir(name);
    let port = port.to_string();
    ServerProcess::start(&["-js", "-p", &port, "-sd", dir.to_str().unwrap()])
}

/// Publish `o.<n>` with payload `<n>`, waiting for the ack.
async fn publish(js: &jetstream::Context, n: u64) {
    within("publish", async {
        js.publish(format!("o.{n}"), n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
}

async fn info_when(
    client: &async_nats::Client,
    stream: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    common::js_info_when(client, stream, Duration::from_secs(20), ready).await
}

fn holds(count: u64) -> impl Fn(&Value) -> bool {
    move |info: &Value| info["state"]["messages"] == count
}

/// An API request that must succeed: its reply.
async fn ok(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = api(client, subject, body).await;
    assert!(reply["error"].is_null(), "{subject}: {reply}");
    reply
}

/// A limits stream `O` on `o.>` in memory.
async fn limits_origin(client: &async_nats::Client) {
    ok(
        client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "storage": "memory"}),
    )
    .await;
}

/// A work-queue stream `O` on `o.>` and its durable `C` with acks by flow
/// control, pushing to `dc.O`.
async fn work_queue_with_durable(client: &async_nats::Client, storage: &str) {
    ok(
        client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "retention": "workqueue", "storage": storage}),
    )
    .await;
    let consumer = ok(
        client,
        "$JS.API.CONSUMER.CREATE.O.C",
        json!({"stream_name": "O", "config": {"durable_name": "C", "name": "C",
               "deliver_subject": "dc.O", "ack_policy": "flow_control"}}),
    )
    .await;
    // What the config checks make of it (the reference's defaults).
    let config = &consumer["config"];
    assert_eq!(config["ack_policy"], "flow_control", "{consumer}");
    assert_eq!(config["flow_control"], true, "{consumer}");
    assert_eq!(config["idle_heartbeat"], 1_000_000_000u64, "{consumer}");
    assert_eq!(config["max_ack_pending"], 1000, "{consumer}");
    assert_eq!(config["max_deliver"], -1, "{consumer}");
    assert!(config["ack_wait"].is_null(), "{consumer}");
}

/// Consumer `name` of `O`'s info, polled until `ready` holds on it.
async fn consumer_info_when(
    client: &async_nats::Client,
    name: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let subject = format!("$JS.API.CONSUMER.INFO.O.{name}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = api(client, &subject, json!({})).await;
        if ready(&info) {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until the origin `O` is empty: every message it held went to the
/// source and was acked by flow control.
async fn drained(client: &async_nats::Client, last: u64) {
    let origin = info_when(client, "O", holds(0)).await;
    assert_eq!(origin["state"]["last_seq"], last, "{origin}");
    assert_eq!(origin["state"]["first_seq"], last + 1, "{origin}");
    let info =
        consumer_info_when(client, "C", |info| info["ack_floor"]["stream_seq"] == last).await;
    assert_eq!(info["num_ack_pending"], 0, "{info}");
    assert_eq!(info["delivered"]["stream_seq"], last, "{info}");
}

#[tokio::test]
async fn a_source_through_a_durable_consumer_drains_a_work_queue_across_a_restart() {
    let mut server = start("durable-sourcing", 47110);
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    work_queue_with_durable(&client, "file").await;
    for n in 0..5 {
        publish(&js, n).await;
    }
    let source = ok(
        &client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "storage": "file",
               "sources": [{"name": "O", "consumer": {"name": "C", "deliver_subject": "dc.O"}}]}),
    )
    .await;
    assert_eq!(
        source["config"]["sources"][0]["consumer"],
        json!({"name": "C", "deliver_subject": "dc.O"}),
        "{source}"
    );
    info_when(&client, "S", holds(5)).await;
    for n in 5..8 {
        publish(&js, n).await;
    }
    let s = info_when(&client, "S", holds(8)).await;
    let feed = &s["sources"][0];
    assert_eq!(feed["name"], "O", "{s}");
    assert_eq!(feed["seq"], 8, "{s}");
    assert_eq!(feed["lag"], 0, "{s}");
    assert!(feed["error"].is_null(), "{s}");
    drained(&client, 8).await;

    // Each copy names the origin with the consumer's hash in its index
    // name (the reference's `O:C=<hash of C>`).
    let copies = jetstream::new(client.clone())
        .get_stream("S")
        .await
        .unwrap();
    for seq in 1..=8u64 {
        let msg = copies.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), format!("o.{}", seq - 1));
        let header = msg.headers.get("Nats-Stream-Source").unwrap().to_string();
        let fields: Vec<&str> = header.split(' ').collect();
        assert_eq!(fields[0], "O:C=jZ6RvVRH", "{header}");
        assert_eq!(
            &fields[1..5],
            [&*seq.to_string(), ">", ">", &format!("o.{}", seq - 1)]
        );
    }

    // After a restart the stream resets the consumer to its floor and
    // goes on; nothing is taken twice.
    drop((client, js, copies));
    server.restart();
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    for n in 8..10 {
        publish(&js, n).await;
    }
    info_when(&client, "S", holds(10)).await;
    drained(&client, 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = info_when(&client, "S", holds(10)).await;
    assert_eq!(s["state"]["last_seq"], 10, "{s}");
}

/// A mirror through a consumer not acked by flow control reports the
/// reference's error; one through a consumer that does not exist waits
/// without one (the reset gets no answer).
#[tokio::test]
async fn a_mirror_needs_a_flow_control_consumer() {
    let server = start("durable-sourcing-mirror", 47111);
    let client = connect(&server.url()).await;
    limits_origin(&client).await;
    ok(
        &client,
        "$JS.API.CONSUMER.CREATE.O.X",
        json!({"stream_name": "O", "config": {"durable_name": "X",
               "deliver_subject": "dx.O", "ack_policy": "explicit"}}),
    )
    .await;
    for (name, consumer, deliver) in [("M", "X", "dx.O"), ("M2", "NOPE", "dn.O")] {
        let mirror = ok(
            &client,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            json!({"name": name, "storage": "memory",
                   "mirror": {"name": "O", "consumer": {"name": consumer, "deliver_subject": deliver}}}),
        )
        .await;
        assert_eq!(mirror["mirror"]["active"], -1, "{mirror}");
    }
    let m = info_when(&client, "M", |info| !info["mirror"]["error"].is_null()).await;
    assert_eq!(
        m["mirror"]["error"],
        json!({"code": 400, "err_code": 10214,
               "description": "stream mirror consumer requires flow control ack policy"}),
        "{m}"
    );
    // The reference waits 5 s for the reset's answer, then backs off.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let m2 = api(&client, "$JS.API.STREAM.INFO.M2", json!({})).await;
    assert!(m2["mirror"]["error"].is_null(), "{m2}");
    assert_eq!(m2["mirror"]["active"], -1, "{m2}");
}

/// A mirror and a source through durables that do not exist yet: each
/// reset goes unanswered for 5 s and the feed backs off (10 s for the
/// failure), but meanwhile it listens on the durable's deliver subject
/// (the reference's probe subscription). A durable made during the
/// backoff sees that interest and pushes there, which shows it alive: the
/// feed asks again at once and its messages arrive seconds before the
/// backoff would have ended.
#[tokio::test]
async fn a_durable_made_while_its_feed_backs_off_cuts_the_backoff_short() {
    let server = start("durable-sourcing-probe", 47200);
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    limits_origin(&client).await;
    publish(&js, 0).await;
    let feeds = [("M", "CM", "dm.O"), ("S", "CS", "ds.O")];
    for (name, consumer, deliver) in feeds {
        let origin =
            json!({"name": "O", "consumer": {"name": consumer, "deliver_subject": deliver}});
        let config = if name == "M" {
            json!({"name": name, "storage": "memory", "mirror": origin})
        } else {
            json!({"name": name, "storage": "memory", "sources": [origin]})
        };
        ok(&client, &format!("$JS.API.STREAM.CREATE.{name}"), config).await;
    }
    // The resets leave within 200 ms and are given up at 5.2 s at the
    // latest; the next would leave 10 s later.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    for (name, _, _) in feeds {
        let info = api(&client, &format!("$JS.API.STREAM.INFO.{name}"), json!({})).await;
        assert_eq!(info["state"]["messages"], 0, "{info}");
    }
    let made = tokio::time::Instant::now();
    for (_, consumer, deliver) in feeds {
        ok(
            &client,
            &format!("$JS.API.CONSUMER.CREATE.O.{consumer}"),
            json!({"stream_name": "O", "config": {"durable_name": consumer,
                   "deliver_subject": deliver, "ack_policy": "flow_control"}}),
        )
        .await;
    }
    // Without the probe the feeds would wait until about 15.3 s, nearly
    // 10 s from here; with it they ask after 100-200 ms of jitter.
    for (name, _, _) in feeds {
        common::js_info_when(&client, name, Duration::from_secs(3), holds(1)).await;
    }
    let waited = made.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // The feeds go on as any.
    publish(&js, 1).await;
    for (name, _, _) in feeds {
        let info = info_when(&client, name, holds(2)).await;
        let feed = if name == "M" {
            &info["mirror"]
        } else {
            &info["sources"][0]
        };
        assert!(feed["error"].is_null(), "{info}");
    }
}

/// A client answering a flow-control consumer's requests with the
/// headers a sourcing stream sends moves its ack floor; acks on the
/// message's reply count for nothing; a work queue drops what is acked.
#[tokio::test]
async fn a_flow_control_consumer_is_acked_by_flow_control_answers() {
    let server = start("flow-control-acks", 47112);
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    ok(
        &client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "retention": "workqueue", "storage": "memory"}),
    )
    .await;
    let mut inbox = client.subscribe("fc.in").await.unwrap();
    ok(
        &client,
        "$JS.API.CONSUMER.CREATE.O.F",
        json!({"stream_name": "O", "config": {"durable_name": "F",
               "deliver_subject": "fc.in", "ack_policy": "flow_control", "max_ack_pending": 3}}),
    )
    .await;
    for n in 0..5 {
        publish(&js, n).await;
    }
    // Three messages (max_ack_pending), then a flow-control request.
    let mut last_stream = 0;
    let fc_reply = loop {
        let msg = within("a delivery", inbox.next()).await.unwrap();
        if msg.payload.is_empty() {
            let status = msg.status.map(|s| s.as_u16());
            if msg.description.as_deref() == Some("FlowControl Request") {
                break msg.reply.expect("a flow-control reply subject");
            }
            assert_eq!(status, Some(100), "a heartbeat");
            continue;
        }
        last_stream += 1;
        assert_eq!(msg.subject.as_str(), format!("o.{}", last_stream - 1));
        // An ack counts for nothing here.
        client
            .publish(msg.reply.unwrap(), "+ACK".into())
            .await
            .unwrap();
    };
    assert_eq!(last_stream, 3);
    client.flush().await.unwrap();
    let info = api(&client, "$JS.API.CONSUMER.INFO.O.F", json!({})).await;
    assert_eq!(info["ack_floor"]["stream_seq"], 0, "{info}");
    assert_eq!(info["num_ack_pending"], 3, "{info}");

    // The answer acks up to the stream sequence it names.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Last-Consumer", "2");
    headers.insert("Nats-Last-Stream", "2");
    client
        .publish_with_headers(fc_reply, headers, "".into())
        .await
        .unwrap();
    let info = consumer_info_when(&client, "F", |info| info["ack_floor"]["stream_seq"] == 2).await;
    assert_eq!(info["ack_floor"]["consumer_seq"], 2, "{info}");
    // Room for two more: delivered.
    let info = consumer_info_when(&client, "F", |info| info["delivered"]["stream_seq"] == 5).await;
    assert_eq!(info["num_ack_pending"], 3, "{info}");
    // The work queue dropped the two acked.
    let origin = api(&client, "$JS.API.STREAM.INFO.O", json!({})).await;
    assert_eq!(origin["state"]["messages"], 3, "{origin}");
    assert_eq!(origin["state"]["first_seq"], 3, "{origin}");
}

/// The config checks, with the reference's errors.
#[tokio::test]
async fn durable_sourcing_and_flow_control_configs_are_checked() {
    let server = start("durable-sourcing-checks", 47113);
    let client = connect(&server.url()).await;
    limits_origin(&client).await;
    let durable = |name: &str, deliver: &str| json!({"name": name, "deliver_subject": deliver});
    let source_invalid = json!({"code": 400, "err_code": 10215,
        "description": "stream source consumer config is invalid"});
    let mirror_invalid = json!({"code": 400, "err_code": 10213,
        "description": "stream mirror consumer config is invalid"});
    let cases = [
        (
            json!({"sources": [{"name": "O", "consumer": durable("a.b", "d")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [{"name": "O", "consumer": durable("C", "d.*")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [{"name": "O", "consumer": durable("C", "")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [{"name": "O", "opt_start_seq": 2, "consumer": durable("C", "d")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [{"name": "O", "filter_subject": "o.1", "consumer": durable("C", "d")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [
                {"name": "O", "filter_subject": "o.1", "consumer": durable("C", "d")},
                {"name": "O", "filter_subject": "o.2", "consumer": durable("C", "e")}]}),
            &source_invalid,
        ),
        (
            json!({"sources": [
                {"name": "O", "subject_transforms": [{"src": "o.1", "dest": "x"}], "consumer": durable("C", "d")},
                {"name": "O", "subject_transforms": [{"src": "o.2", "dest": "y"}], "consumer": durable("C", "e")}]}),
            &json!({"code": 400, "err_code": 10216,
                    "description": "duplicate stream source consumer detected"}),
        ),
        (
            json!({"mirror": {"name": "O", "consumer": durable("C", "d >")}}),
            &mirror_invalid,
        ),
        (
            json!({"mirror": {"name": "O", "opt_start_seq": 3, "consumer": durable("C", "d")}}),
            &mirror_invalid,
        ),
        (
            json!({"mirror": {"name": "O", "filter_subject": "o.1", "consumer": durable("C", "d")}}),
            &mirror_invalid,
        ),
    ];
    for (config, error) in cases {
        let mut body = config.clone();
        body["name"] = json!("S");
        let reply = api(&client, "$JS.API.STREAM.CREATE.S", body).await;
        assert_eq!(&reply["error"], error, "{config}: {reply}");
    }

    let consumer_cases = [
        (
            json!({"ack_policy": "flow_control"}),
            json!({"code": 400, "err_code": 10218,
                   "description": "flow control ack policy requires a push based consumer"}),
            false,
        ),
        (
            json!({"ack_policy": "flow_control", "deliver_subject": "dx", "backoff": [1_000_000_000]}),
            json!({"code": 400, "err_code": 10221,
                   "description": "flow control ack policy requires unset ack wait"}),
            false,
        ),
        (
            json!({"ack_policy": "flow_control", "deliver_subject": "dx", "flow_control": true,
                   "idle_heartbeat": 2_000_000_000u64}),
            json!({"code": 500, "err_code": 10052,
                   "description": "flow control ack policy heartbeat needs to be 1s"}),
            true,
        ),
        (
            json!({"ack_policy": "flow_control", "deliver_subject": "dx", "idle_heartbeat": 1_000_000_000u64}),
            json!({"code": 400, "err_code": 10219,
                   "description": "flow control ack policy requires flow control"}),
            true,
        ),
        (
            json!({"ack_policy": "flow_control", "deliver_subject": "dx", "flow_control": true,
                   "idle_heartbeat": 1_000_000_000u64, "max_deliver": 3, "max_ack_pending": 5}),
            json!({"code": 400, "err_code": 10222,
                   "description": "flow control ack policy requires unset max deliver"}),
            true,
        ),
    ];
    for (config, error, pedantic) in consumer_cases {
        let reply = api(
            &client,
            "$JS.API.CONSUMER.CREATE.O",
            json!({"stream_name": "O", "config": config, "pedantic": pedantic}),
        )
        .await;
        assert_eq!(reply["error"], error, "{config}: {reply}");
    }
}

/// Account A holds a work-queue stream; B sources it through its import of
/// A's API. The reference makes the source's consumer a durable acked by
/// flow control (a work queue's messages must be acked), listed on the
/// origin, and the origin is drained.
#[tokio::test]
async fn an_external_source_drains_a_work_queue_origin() {
    let dir = store_dir("external-wq-sourcing");
    let conf = dir.with_extension("conf");
    let text = format!(
        r#"jetstream {{ store_dir: {:?} }}
accounts {{
  A {{ jetstream: enabled, users: [{{user: a, password: a}}],
      exports: [ {{service: "$JS.API.>"}}, {{service: "$JS.FC.>"}},
                 {{stream: "deliver.b.>"}} ] }}
  B {{ jetstream: enabled, users: [{{user: b, password: b}}],
      imports: [ {{service: {{account: A, subject: "$JS.API.>"}}, to: "JS.A.API.>"}},
                 {{service: {{account: A, subject: "$JS.FC.>"}}}},
                 {{stream: {{account: A, subject: "deliver.b.>"}}}} ] }}
}}
"#,
        dir.to_str().unwrap()
    );
    std::fs::write(&conf, text).unwrap();
    let server = ServerProcess::start(&["-p", "47114", "-c", conf.to_str().unwrap()]);
    let url = server.url();
    let login = |user: &'static str| {
        connect_with(
            &url,
            async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()),
        )
    };
    let a_client = login("a").await;
    let a = jetstream::new(a_client.clone());
    ok(
        &a_client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "retention": "workqueue", "storage": "memory"}),
    )
    .await;
    for n in 0..4 {
        publish(&a, n).await;
    }
    let b_client = login("b").await;
    ok(
        &b_client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "storage": "memory", "sources": [{"name": "O",
               "external": {"api": "JS.A.API", "deliver": "deliver.b"}}]}),
    )
    .await;
    info_when(&b_client, "S", holds(4)).await;
    for n in 4..6 {
        publish(&a, n).await;
    }
    let s = info_when(&b_client, "S", holds(6)).await;
    assert!(s["sources"][0]["error"].is_null(), "{s}");
    let origin = info_when(&a_client, "O", holds(0)).await;
    assert_eq!(origin["state"]["last_seq"], 6, "{origin}");
    // The consumer is a durable now: listed, acked by flow control.
    let names = api(&a_client, "$JS.API.CONSUMER.NAMES.O", json!({})).await;
    assert_eq!(names["total"], 1, "{names}");
    let name = names["consumers"][0].as_str().unwrap().to_string();
    assert!(name.starts_with("JS_SRC_"), "{names}");
    let info = api(
        &a_client,
        &format!("$JS.API.CONSUMER.INFO.O.{name}"),
        json!({}),
    )
    .await;
    assert_eq!(info["config"]["ack_policy"], "flow_control", "{info}");
    assert_eq!(info["config"]["durable_name"], name.as_str(), "{info}");
    let _ = std::fs::remove_file(&conf);
}
