//! JetStream across accounts on one server: account B imports A's
//! `$JS.API.>` under its own prefix (`$JS.A.API.>`, the form an `external`
//! mirror or source names) and uses A's JetStream through it.
//!
//! Passes against the reference too
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test -p rnats-tests --test jetstream_external`).

mod common;

use common::{connect_with, store_dir};
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

async fn login(server: &ServerProcess, user: &str) -> async_nats::Client {
    connect_with(
        &server.url(),
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()),
    )
    .await
}

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = common::within(
        subject,
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Stream `O` (`o.>`) in `a`'s account, holding `o.0`, `o.1` and `o.2`.
async fn stream_of_three(
    a: &async_nats::jetstream::Context,
) -> async_nats::jetstream::stream::Stream {
    let stream = a
        .create_stream(async_nats::jetstream::stream::Config {
            name: "O".into(),
            subjects: vec!["o.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 0..3 {
        a.publish(format!("o.{n}"), n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    stream
}

/// A server with JetStream in a fresh store and `accounts` (the inside of
/// an `accounts { }` block); the config file's path, to remove at the end.
fn start(name: &str, accounts: &str) -> (ServerProcess, std::path::PathBuf) {
    let dir = store_dir(name);
    let conf = dir.with_extension("conf");
    let text = format!(
        "jetstream {{ store_dir: {:?} }}\naccounts {{{accounts}}}\n",
        dir.to_str().unwrap()
    );
    std::fs::write(&conf, text).unwrap();
    (ServerProcess::start(&["-c", conf.to_str().unwrap()]), conf)
}

#[tokio::test]
async fn an_account_uses_anothers_jetstream_through_a_prefixed_import() {
    let (server, conf) = start(
        "external-api",
        r#"
  A { jetstream: enabled, users: [{user: a, password: a}],
      exports: [ {service: "$JS.API.>"} ] }
  B { jetstream: enabled, users: [{user: b, password: b}],
      imports: [ {service: {account: A, subject: "$JS.API.>"}, to: "$JS.A.API.>"} ] }
"#,
    );
    let a = login(&server, "a").await;
    let b = login(&server, "b").await;

    let created = request(
        &b,
        "$JS.A.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]}),
    )
    .await;
    assert_eq!(created["config"]["name"], "O", "{created}");
    assert!(created["error"].is_null(), "{created}");

    // The stream is A's, not B's.
    let in_a = request(&a, "$JS.API.STREAM.NAMES", json!({})).await;
    assert_eq!(in_a["streams"], json!(["O"]), "{in_a}");
    let in_b = request(&b, "$JS.API.STREAM.NAMES", json!({})).await;
    assert_eq!(in_b["total"], 0, "{in_b}");
    let info = request(&b, "$JS.A.API.INFO", json!({})).await;
    assert_eq!(info["streams"], 1, "{info}");
    let _ = std::fs::remove_file(&conf);
}

/// B pulls from A's consumer through the prefixed import (streamed
/// responses: one pull request, several messages) and acknowledges with
/// AckSync: a delivery crosses back into B with its `$JS.ACK.` reply,
/// B's ack crosses into A through an import of `$JS.ACK.>`, and the ack's
/// confirmation crosses back to B.
#[tokio::test]
async fn a_pull_consumer_is_used_and_acked_through_imports() {
    use futures::StreamExt;
    let (server, conf) = start(
        "external-pull",
        r#"
  A { jetstream: enabled, users: [{user: a, password: a}],
      exports: [ {service: "$JS.API.>", response_type: stream}, {service: "$JS.ACK.>"},
                 {service: "o.>"} ] }
  B { users: [{user: b, password: b}],
      imports: [ {service: {account: A, subject: "$JS.API.>"}, to: "$JS.A.API.>"},
                 {service: {account: A, subject: "$JS.ACK.>"}},
                 {service: {account: A, subject: "o.>"}} ] }
"#,
    );
    let a = async_nats::jetstream::new(login(&server, "a").await);
    let b = async_nats::jetstream::with_prefix(login(&server, "b").await, "$JS.A.API");
    let stream = stream_of_three(&a).await;
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("C".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    let consumer: async_nats::jetstream::consumer::PullConsumer = b
        .get_stream("O")
        .await
        .unwrap()
        .get_consumer("C")
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(3).messages().await.unwrap();
    let mut got = Vec::new();
    while let Some(msg) = common::within("a pulled message", messages.next()).await {
        let msg = msg.unwrap();
        let reply = msg
            .reply
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        assert!(
            reply.starts_with("$JS.ACK.O.C."),
            "ack subject kept: {reply:?}"
        );
        got.push(msg.subject.to_string());
        common::within("an AckSync confirmed", msg.double_ack())
            .await
            .unwrap();
    }
    assert_eq!(got, ["o.0", "o.1", "o.2"]);
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("C")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 3, "{info:?}");

    // A message B publishes into A's stream through the service import
    // is stored without the request's identity header.
    let b_client = b.client();
    b_client.publish("o.3", "3".into()).await.unwrap();
    common::sync_with_server(&b_client).await;
    let stored = common::within("the imported message stored", async {
        loop {
            if let Ok(msg) = stream.get_raw_message(4).await {
                return msg;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stored.subject.as_str(), "o.3");
    assert!(
        stored.headers.get("Nats-Request-Info").is_none(),
        "{stored:?}"
    );
    let _ = std::fs::remove_file(&conf);
}

/// A push consumer of A delivers to a subscriber of B that imports the
/// deliver subject as a stream: the importer's subscription is interest
/// in A (the reference's shadow subscription).
#[tokio::test]
async fn a_push_consumer_delivers_to_an_importing_account() {
    use futures::StreamExt;
    let (server, conf) = start(
        "external-push",
        r#"
  A { jetstream: enabled, users: [{user: a, password: a}],
      exports: [ {stream: "deliver.>"} ] }
  B { users: [{user: b, password: b}],
      imports: [ {stream: {account: A, subject: "deliver.>"}} ] }
"#,
    );
    let a = async_nats::jetstream::new(login(&server, "a").await);
    let b = login(&server, "b").await;
    let stream = stream_of_three(&a).await;
    let mut deliveries = b.subscribe("deliver.b").await.unwrap();
    b.flush().await.unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            durable_name: Some("P".into()),
            deliver_subject: "deliver.b".into(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let msg = common::within("a pushed message", deliveries.next())
            .await
            .unwrap();
        got.push(msg.payload.to_vec());
    }
    assert_eq!(got, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
    let _ = std::fs::remove_file(&conf);
}
