//! Object stores through async-nats, as users use them: a multi-MiB object
//! put in chunks and read back with its digest checked, info, list, a
//! link, delete, and a watcher.
//!
//! A bucket is a stream (`OBJ_<bucket>`) with chunks on
//! `$O.<bucket>.C.<id>` and metadata on `$O.<bucket>.M.<name>` (rolled up
//! per object); reads are an ordered consumer over the chunks. These tests
//! pass against the reference too
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test jetstream_object_store`).

mod common;

use async_nats::jetstream::{self, object_store};
use common::{connect, js_server, within};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

/// Deterministic bytes that differ chunk to chunk.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn a_large_object_goes_in_and_comes_back_whole() {
    let (server, _dir) = js_server("obj-large");
    let js = jetstream::new(connect(&server.url()).await);
    let store = within(
        "create object store",
        js.create_object_store(object_store::Config {
            bucket: "FILES".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let data = content(5 * 1024 * 1024 + 123);
    let info = within("put", store.put("big.bin", &mut data.as_slice()))
        .await
        .unwrap();
    assert_eq!(info.size, data.len());
    assert!(info.chunks > 1, "stored in chunks: {}", info.chunks);

    let mut object = within("get", store.get("big.bin")).await.unwrap();
    let mut back = Vec::new();
    within("read", object.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the object reads back byte for byte");

    // A second object, a link to the first, and the listing.
    store
        .put("small.txt", &mut b"hello".as_slice())
        .await
        .unwrap();
    let big = store.info("big.bin").await.unwrap();
    store.add_link("alias", &big).await.unwrap();
    let mut names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .map(|info| info.unwrap().name)
        .collect()
        .await;
    names.sort();
    assert_eq!(names, ["alias", "big.bin", "small.txt"]);

    store.delete("small.txt").await.unwrap();
    assert!(store.get("small.txt").await.is_err());
    let mut stream = js.get_stream("OBJ_FILES").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert!(state.messages >= info.chunks as u64);
}

#[tokio::test]
async fn a_watcher_sees_puts_and_deletes() {
    let (server, _dir) = js_server("obj-watch");
    let js = jetstream::new(connect(&server.url()).await);
    let store = js
        .create_object_store(object_store::Config {
            bucket: "W".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = store.watch().await.unwrap();
    store.put("a", &mut b"1".as_slice()).await.unwrap();
    store.put("b", &mut b"2".as_slice()).await.unwrap();
    store.delete("a").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let info = within("a watched change", watch.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((info.name.clone(), info.deleted));
    }
    assert_eq!(
        seen,
        [
            ("a".to_string(), false),
            ("b".to_string(), false),
            ("a".to_string(), true)
        ]
    );
}
