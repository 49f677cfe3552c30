//! The per-stream ingest limits (`jetstream { max_buffered_msgs,
//! max_buffered_size }`): a burst of publishes past a tiny limit is partly
//! refused with the reference's `429 Too Many Requests` ack, and what was
//! acknowledged is exactly what the stream holds.
//!
//! Passes against the reference too
//! (`RNATS_TEST_SERVER_BIN=$(pyenv which nats-server) cargo test -p rnats-tests --test jetstream_ingest`).

mod common;

use async_nats::jetstream::{self, stream};
use common::{connect, store_dir, within};
use futures::StreamExt;
use rnats_tests::ServerProcess;

/// The ack of a publish refused at its stream's ingest queue, byte for byte.
const REFUSED: &str = r#"{"error":{"code":429,"err_code":10167,"description":"too many requests"},"stream":"S","seq":0}"#;

/// Publish bursts of `burst` messages (each awaiting its ack) until one is
/// refused; returns (acks stored, refusals).
async fn burst_until_refused(client: &async_nats::Client, payload: usize) -> (u64, u64) {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    let (mut stored, mut refused) = (0u64, 0u64);
    let body = bytes::Bytes::from(vec![b'x'; payload]);
    for round in 0..20 {
        let burst = 2000;
        for i in 0..burst {
            client
                .publish_with_reply("s.1", format!("{inbox}.{round}-{i}"), body.clone())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for _ in 0..burst {
            let reply = within("an ack", replies.next()).await.unwrap();
            let text = String::from_utf8(reply.payload.to_vec()).unwrap();
            if text.contains("\"error\"") {
                assert_eq!(text, REFUSED);
                let status = reply.status.expect("a refusal carries a status");
                assert_eq!(status.as_u16(), 429);
                assert_eq!(reply.description.as_deref(), Some("Too Many Requests"));
                refused += 1;
            } else {
                let ack: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(ack["stream"], "S", "{text}");
                stored += 1;
            }
        }
        if refused > 0 {
            break;
        }
    }
    (stored, refused)
}

async fn run(name: &str, limit: &str, payload: usize) {
    let dir = store_dir(name);
    let conf = dir.with_extension("conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{ store_dir: {:?}, {limit} }}\n",
            dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap()]);
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let mut stream = js
        .create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (stored, refused) = burst_until_refused(&client, payload).await;
    assert!(refused > 0, "a burst past {limit} was never refused");
    let info = within("info", stream.info()).await.unwrap();
    assert_eq!(
        info.state.messages, stored,
        "acknowledged is what is stored"
    );
    // Once the burst is through, publishes are taken again.
    let ack = within("a later publish", async {
        js.publish("s.2", "later".into()).await.unwrap().await
    })
    .await
    .unwrap();
    assert_eq!(ack.sequence, stored + 1);
    let _ = std::fs::remove_file(&conf);
}

#[tokio::test]
async fn a_burst_past_max_buffered_msgs_is_refused_with_429() {
    run("ingest-msgs", "max_buffered_msgs: 1", 16).await;
}

#[tokio::test]
async fn a_burst_past_max_buffered_size_is_refused_with_429() {
    // Room for about two of these at a time.
    run("ingest-bytes", "max_buffered_size: 10000", 4000).await;
}
