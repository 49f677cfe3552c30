//! External mirrors and sources: a stream in account B mirrors or sources
//! a stream in account A through B's imports of A's `$JS.API.>` (under the
//! API prefix `JS.A.API`), of A's `$JS.FC.>` (flow-control replies) and of
//! a deliver prefix A exports as a stream, as the NATS documentation sets
//! it up. Every message arrives in order, once, before and after the
//! server restarts (file storage), and STREAM.INFO reports the feeds as the
//! reference does; the origin's consumers for them are direct, hidden from
//! its consumer names and counts.
//!
//! Every test here also passes against the reference
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test -p rnats-tests --test jetstream_external_sourcing`).
//! The feeds run asynchronously in both: each test waits until the
//! expected state shows up.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::{connect_with, js_api as api, store_dir, within};
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

/// A server (file store, client port `port`)
/// with accounts A (the origin's) and B (the sourcing one); the config
/// file's path, to remove at the end.
fn start(name: &str, port: u16) -> (ServerProcess, std::path::PathBuf) {
    let dir = store_dir(name);
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
    let port = port.to_string();
    let args = ["-p", port.as_str(), "-c", conf.to_str().unwrap()];
    (ServerProcess::start(&args), conf)
}

async fn login(server: &ServerProcess, user: &str) -> async_nats::Client {
    connect_with(
        &server.url(),
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()),
    )
    .await
}

/// Publish `o.<n>` with payload `<n>` in A and wait for the ack.
async fn publish(js: &jetstream::Context, n: u64) {
    let ack = within("publish", async {
        js.publish(format!("o.{n}"), n.to_string().into())
            .await
            .unwrap()
            .await
    })
    .await;
    assert_eq!(ack.unwrap().sequence, n + 1);
}

/// Stream info, polled until `ready` holds on it.
async fn info_when(
    client: &async_nats::Client,
    stream: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    common::js_info_when(client, stream, Duration::from_secs(15), ready).await
}

fn holds(count: u64) -> impl Fn(&Value) -> bool {
    move |info: &Value| info["state"]["messages"] == count
}

/// `origin`'s messages 1..=`count` as `stream` in B holds them: the
/// subject, the payload and, for a source, the `Nats-Stream-Source`
/// header naming the origin's sequence.
async fn check_copies(b: &jetstream::Context, stream: &str, count: u64, sourced: bool) {
    let copy = b.get_stream(stream).await.unwrap();
    for seq in 1..=count {
        let msg = copy.get_raw_message(seq).await.unwrap();
        let n = seq - 1;
        assert_eq!(msg.subject.as_str(), format!("o.{n}"), "{stream} #{seq}");
        assert_eq!(
            &msg.payload[..],
            n.to_string().as_bytes(),
            "{stream} #{seq}"
        );
        let source = msg.headers.get("Nats-Stream-Source").map(|v| v.to_string());
        if sourced {
            let source = source.unwrap_or_else(|| panic!("{stream} #{seq} has no source header"));
            let fields: Vec<&str> = source.split(' ').collect();
            // <origin>:<hash of the api prefix> <seq> <filter> <dest> <subject> <identity>
            assert!(fields[0].starts_with("O:"), "{source}");
            assert_eq!(fields[0].len(), "O:".len() + 8, "{source}");
            assert_eq!(fields[1], seq.to_string(), "{source}");
            assert_eq!(&fields[2..5], [">", ">", &format!("o.{n}")], "{source}");
        } else {
            assert!(source.is_none(), "{stream} #{seq}");
        }
    }
}

/// The info of a feed as the reference reports a healthy one.
fn check_feed(feed: &Value) {
    assert_eq!(feed["name"], "O", "{feed}");
    assert_eq!(
        feed["external"],
        json!({"api": "JS.A.API", "deliver": "deliver.b"}),
        "{feed}"
    );
    assert_eq!(feed["lag"], 0, "{feed}");
    assert!(feed["error"].is_null(), "{feed}");
    let active = feed["active"].as_i64().unwrap();
    assert!((0..5_000_000_000).contains(&active), "{feed}");
}

#[tokio::test]
async fn a_mirror_and_a_source_in_another_account_follow_the_origin_across_a_restart() {
    let (mut server, conf) = start("external-sourcing", 47301);
    let a_client = login(&server, "a").await;
    let a = jetstream::new(a_client.clone());
    let created = api(
        &a_client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"], "storage": "file"}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    for n in 0..3 {
        publish(&a, n).await;
    }

    let b_client = login(&server, "b").await;
    let external = json!({"api": "JS.A.API", "deliver": "deliver.b"});
    let mirror = api(
        &b_client,
        "$JS.API.STREAM.CREATE.M",
        json!({"name": "M", "storage": "file", "mirror": {"name": "O", "external": external}}),
    )
    .await;
    assert!(mirror["error"].is_null(), "{mirror}");
    let source = api(
        &b_client,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "storage": "file", "sources": [{"name": "O", "external": external}]}),
    )
    .await;
    assert!(source["error"].is_null(), "{source}");

    // The copies catch up with what the origin held.
    let m = info_when(&b_client, "M", holds(3)).await;
    let s = info_when(&b_client, "S", holds(3)).await;
    assert_eq!(m["state"]["last_seq"], 3, "{m}");
    assert_eq!(s["state"]["last_seq"], 3, "{s}");

    // And follow it.
    for n in 3..5 {
        publish(&a, n).await;
    }
    let m = info_when(&b_client, "M", holds(5)).await;
    let s = info_when(&b_client, "S", holds(5)).await;
    check_feed(&m["mirror"]);
    check_feed(&s["sources"][0]);
    let b = jetstream::new(b_client.clone());
    check_copies(&b, "M", 5, false).await;
    check_copies(&b, "S", 5, true).await;

    // The origin's consumers serving them are direct: not listed, not
    // counted in the stream's state.
    let names = api(&a_client, "$JS.API.CONSUMER.NAMES.O", json!({})).await;
    assert_eq!(names["total"], 0, "{names}");
    let origin = api(&a_client, "$JS.API.STREAM.INFO.O", json!({})).await;
    assert_eq!(origin["state"]["consumer_count"], 0, "{origin}");
    // The account's count has them, as the reference's.
    let account = api(&a_client, "$JS.API.INFO", json!({})).await;
    assert_eq!(account["consumers"], 2, "{account}");

    // After a restart both pick up where they were, and take what comes.
    drop((a_client, b_client, a, b));
    server.restart();
    let a_client = login(&server, "a").await;
    let a = jetstream::new(a_client.clone());
    for n in 5..7 {
        publish(&a, n).await;
    }
    let b_client = login(&server, "b").await;
    info_when(&b_client, "M", holds(7)).await;
    info_when(&b_client, "S", holds(7)).await;
    // Nothing more arrives (no message taken twice).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = info_when(&b_client, "M", holds(7)).await;
    let s = info_when(&b_client, "S", holds(7)).await;
    assert_eq!(m["state"]["last_seq"], 7, "{m}");
    check_feed(&m["mirror"]);
    check_feed(&s["sources"][0]);
    let b = jetstream::new(b_client.clone());
    check_copies(&b, "M", 7, false).await;
    check_copies(&b, "S", 7, true).await;
    let _ = std::fs::remove_file(&conf);
}

/// A mirror created while the origin is not there yet reports why, and
/// starts following once the origin exists (the feed asks again).
#[tokio::test]
async fn an_external_mirror_waits_for_its_origin() {
    let (server, conf) = start("external-sourcing-wait", 47302);
    let b_client = login(&server, "b").await;
    let mirror = api(
        &b_client,
        "$JS.API.STREAM.CREATE.M",
        json!({"name": "M", "mirror": {"name": "O",
               "external": {"api": "JS.A.API", "deliver": "deliver.b"}}}),
    )
    .await;
    assert!(mirror["error"].is_null(), "{mirror}");
    let waiting = info_when(&b_client, "M", |info| !info["mirror"]["error"].is_null()).await;
    assert_eq!(waiting["mirror"]["error"]["err_code"], 10059, "{waiting}");

    let a_client = login(&server, "a").await;
    let a = jetstream::new(a_client.clone());
    let created = api(
        &a_client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    publish(&a, 0).await;
    // The reference retries after 10 s (its backoff after one failure)
    // plus the 2 s throttle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = api(&b_client, "$JS.API.STREAM.INFO.M", json!({})).await;
        if info["state"]["messages"] == 1 {
            assert!(info["mirror"]["error"].is_null(), "{info}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_file(&conf);
}
