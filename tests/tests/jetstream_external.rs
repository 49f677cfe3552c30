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

#[tokio::test]
async fn an_account_uses_anothers_jetstream_through_a_prefixed_import() {
    let dir = store_dir("external-api");
    let conf = dir.with_extension("conf");
    std::fs::write(
        &conf,
        format!(
            r#"jetstream {{ store_dir: {:?} }}
accounts {{
  A {{ jetstream: enabled, users: [{{user: a, password: a}}],
      exports: [ {{service: "$JS.API.>"}} ] }}
  B {{ jetstream: enabled, users: [{{user: b, password: b}}],
      imports: [ {{service: {{account: A, subject: "$JS.API.>"}}, to: "$JS.A.API.>"}} ] }}
}}
"#,
            dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap()]);
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
