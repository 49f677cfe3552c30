//! Key-value buckets through async-nats's `kv` API, as users use them: put,
//! get, create-if-absent, compare-and-set updates, delete, purge, history,
//! keys and watchers (one that starts before the writes, one that starts
//! late and first gets the current values).
//!
//! Nothing server-side is special about buckets: a bucket is a stream
//! (`KV_<bucket>`, subjects `$KV.<bucket>.>`), reads are direct gets and
//! watchers are ordered push consumers. These tests pass against the
//! reference too
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_kv`),
//! but for the watcher test: in our runs nats-server v2.15.1 handed the
//! `watch_all` watcher 87 of the 101 updates and then nothing more.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use common::{connect, js_server, within};
use futures::StreamExt;

async fn bucket(js: &jetstream::Context, name: &str, history: i64) -> kv::Store {
    within(
        "create bucket",
        js.create_key_value(kv::Config {
            bucket: name.to_string(),
            history,
            ..Default::default()
        }),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn put_get_update_delete_and_history() {
    let (server, _dir) = js_server("kv-basic");
    let js = jetstream::new(connect(&server.url()).await);
    let kv = bucket(&js, "CONFIG", 5).await;

    let first = kv.put("color", "red".into()).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(kv.get("color").await.unwrap().unwrap(), "red");
    assert_eq!(kv.get("missing").await.unwrap(), None);

    // Compare-and-set: only the current revision may update.
    let second = kv.update("color", "green".into(), first).await.unwrap();
    assert_eq!(second, 2);
    let stale = kv.update("color", "blue".into(), first).await;
    assert!(stale.is_err(), "an update at an old revision is refused");
    let entry = kv.entry("color").await.unwrap().unwrap();
    assert_eq!(entry.revision, 2);
    assert_eq!(entry.value, "green");

    // Create only when absent.
    assert!(kv.create("color", "x".into()).await.is_err());
    let created = kv.create("size", "L".into()).await.unwrap();
    assert_eq!(created, 3);

    kv.delete("size").await.unwrap();
    assert_eq!(kv.get("size").await.unwrap(), None);
    // A deleted key may be created again.
    kv.create("size", "M".into()).await.unwrap();

    kv.put("color", "blue".into()).await.unwrap();
    let history: Vec<kv::Entry> = kv
        .history("color")
        .await
        .unwrap()
        .map(|entry| entry.unwrap())
        .collect()
        .await;
    let values: Vec<String> = history
        .iter()
        .map(|entry| String::from_utf8_lossy(&entry.value).into_owned())
        .collect();
    assert_eq!(values, ["red", "green", "blue"]);

    let mut keys: Vec<String> = kv
        .keys()
        .await
        .unwrap()
        .map(|key| key.unwrap())
        .collect()
        .await;
    keys.sort();
    assert_eq!(keys, ["color", "size"]);

    kv.purge("color").await.unwrap();
    assert_eq!(kv.get("color").await.unwrap(), None);
    let status = kv.status().await.unwrap();
    assert_eq!(status.bucket(), "CONFIG");
    assert_eq!(status.history(), 5);
}

#[tokio::test]
async fn history_is_bounded_per_key() {
    let (server, _dir) = js_server("kv-history");
    let js = jetstream::new(connect(&server.url()).await);
    let kv = bucket(&js, "COUNTS", 3).await;
    for i in 0..10 {
        kv.put("n", i.to_string().into()).await.unwrap();
    }
    let history: Vec<String> = kv
        .history("n")
        .await
        .unwrap()
        .map(|entry| String::from_utf8_lossy(&entry.unwrap().value).into_owned())
        .collect()
        .await;
    assert_eq!(history, ["7", "8", "9"]);
    let mut stream = js.get_stream("KV_COUNTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
}

#[tokio::test]
async fn watchers_see_every_update_including_a_late_one() {
    let (server, _dir) = js_server("kv-watch");
    let js = jetstream::new(connect(&server.url()).await);
    let kv = bucket(&js, "WATCHED", 1).await;
    kv.put("a", "0".into()).await.unwrap();
    kv.put("b", "0".into()).await.unwrap();

    // `watch_all` follows new updates only.
    let mut everything = kv.watch_all().await.unwrap();
    for i in 1..=100 {
        kv.put(if i % 2 == 0 { "a" } else { "b" }, i.to_string().into())
            .await
            .unwrap();
    }
    kv.delete("a").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 101 {
        let entry = within("a watched update", everything.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((entry.key.clone(), entry.operation));
    }
    assert_eq!(seen[0], ("b".to_string(), kv::Operation::Put));
    assert_eq!(seen[99], ("a".to_string(), kv::Operation::Put));
    assert_eq!(seen[100], ("a".to_string(), kv::Operation::Delete));

    // A watcher that starts now gets the current value of each key first.
    let mut late = kv.watch_with_history("b").await.unwrap();
    let current = within("the current value", late.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.value, "99");
    kv.put("b", "last".into()).await.unwrap();
    let next = within("the next value", late.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.value, "last");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), late.next())
            .await
            .is_err(),
        "nothing more"
    );
}
