//! Paced consumers and `CONSUMER.RESET` through async-nats: a consumer
//! with `replay_policy: original` keeps the gaps between the messages'
//! stored times, `rate_limit_bps` holds a push consumer to its rate after a
//! burst of the stream's `max_msg_size`, and a reset starts a consumer over.
//!
//! Every test here passes against the reference too
//! (`RNATS_TEST_SERVER_BIN=nats-server cargo test --test
//! jetstream_consumer_pacing`). Timings are asserted as lower bounds that
//! an unpaced consumer would miss by far, never as tight upper bounds.

mod common;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, push, AckPolicy, ReplayPolicy};
use async_nats::jetstream::{self, stream};
use common::{connect, js_server, within};
use futures::StreamExt;

fn stream_config(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) -> u64 {
    let ack = js
        .publish(subject.to_string(), payload.into())
        .await
        .unwrap();
    within("publish ack", ack.into_future())
        .await
        .unwrap()
        .sequence
}

/// Publish three messages 400 ms apart.
async fn publish_with_gaps(js: &jetstream::Context, subject: &str) {
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        publish(js, subject, i.to_string().into_bytes()).await;
    }
}

/// A push consumer without acks, paced as given.
async fn push_consumer(
    stream: &stream::Stream,
    client: &async_nats::Client,
    name: &str,
    replay_policy: ReplayPolicy,
    rate_limit: u64,
) -> jetstream::consumer::PushConsumer {
    stream
        .create_consumer(push::Config {
            durable_name: Some(name.into()),
            deliver_subject: client.new_inbox(),
            replay_policy,
            rate_limit,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A stream on `<subject>.>` whose messages are at most `max_size` bytes.
async fn sized_stream(js: &jetstream::Context, name: &str, max_size: i32) -> stream::Stream {
    let subjects = format!("{}.>", name.to_lowercase());
    js.create_stream(stream::Config {
        max_message_size: max_size,
        ..stream_config(name, &[subjects.as_str()])
    })
    .await
    .unwrap()
}

/// When each of `count` messages of `messages` arrived, after `start`.
async fn arrivals<S, M, E>(messages: &mut S, count: usize, start: Instant) -> Vec<Duration>
where
    S: futures::Stream<Item = Result<M, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut times = Vec::new();
    while times.len() < count {
        within("a paced message", messages.next())
            .await
            .expect("the stream goes on")
            .expect("a message");
        times.push(start.elapsed());
    }
    times
}

/// Fetch `count` messages: when each arrived after the request.
async fn fetch_times(consumer: &jetstream::consumer::PullConsumer, count: usize) -> Vec<Duration> {
    let start = Instant::now();
    let mut batch = consumer
        .fetch()
        .max_messages(count)
        .expires(Duration::from_secs(8))
        .messages()
        .await
        .unwrap();
    arrivals(&mut batch, count, start).await
}

#[tokio::test]
async fn a_pull_consumer_replays_at_the_original_pace_then_catches_up() {
    let (server, _dir) = js_server("replay-pull");
    let js = jetstream::new(connect(&server.url()).await);
    let stream = js
        .create_stream(stream_config("REPLAY", &["replay.>"]))
        .await
        .unwrap();
    publish_with_gaps(&js, "replay.a").await;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("R".into()),
            replay_policy: ReplayPolicy::Original,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().config.replay_policy,
        ReplayPolicy::Original
    );
    let times = fetch_times(&consumer, 3).await;
    // Stored 400 ms apart: replayed at least 300 ms apart (an instant
    // replay takes a few milliseconds for all three).
    assert!(
        times[1] - times[0] >= Duration::from_millis(300),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(300),
        "{times:?}"
    );

    // Caught up: a message stored 2 s after the last one goes at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&js, "replay.a", b"late".to_vec()).await;
    let times = fetch_times(&consumer, 1).await;
    assert!(times[0] < Duration::from_millis(1500), "{times:?}");
}

#[tokio::test]
async fn a_push_consumer_replays_at_the_original_pace() {
    let (server, _dir) = js_server("replay-push");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream_config("REPLAYP", &["replayp.>"]))
        .await
        .unwrap();
    publish_with_gaps(&js, "replayp.a").await;
    let consumer = push_consumer(&stream, &client, "RP", ReplayPolicy::Original, 0).await;
    let start = Instant::now();
    let mut messages = consumer.messages().await.unwrap();
    let times = arrivals(&mut messages, 3, start).await;
    assert!(
        times[2] - times[0] >= Duration::from_millis(600),
        "{times:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_push_consumer_is_held_to_its_rate_after_a_burst() {
    let (server, _dir) = js_server("rate-limit");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    // The burst is the stream's max_msg_size: 1 KiB.
    let stream = sized_stream(&js, "RATED", 1024).await;
    for _ in 0..30 {
        publish(&js, "rated.a", vec![b'x'; 500]).await;
    }
    // 80,000 bits a second: 10,000 bytes. 30 deliveries of over 500 bytes
    // are more than 15,000 bytes: at least 1.4 s beyond the burst.
    let consumer = push_consumer(&stream, &client, "RL", ReplayPolicy::Instant, 80_000).await;
    assert_eq!(consumer.cached_info().config.rate_limit, 80_000);
    let start = Instant::now();
    let mut messages = consumer.messages().await.unwrap();
    let times = arrivals(&mut messages, 30, start).await;
    assert!(times[29] >= Duration::from_millis(1000), "{times:?}");
}

#[tokio::test]
async fn a_delivery_larger_than_the_burst_never_goes_out() {
    let (server, _dir) = js_server("rate-stall");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let stream = sized_stream(&js, "STALL", 100).await;
    // 90 bytes of payload, plus subject and ack reply: over the 100-byte
    // burst, so the reference's limiter can never allow it.
    publish(&js, "stall.a", vec![b'x'; 90]).await;
    let consumer = push_consumer(&stream, &client, "ST", ReplayPolicy::Instant, 1_000_000).await;
    let mut messages = consumer.messages().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(1500), messages.next()).await;
    assert!(waited.is_err(), "delivered: {waited:?}");
}

#[tokio::test]
async fn a_pull_consumer_may_not_have_a_rate_limit() {
    let (server, _dir) = js_server("rate-pull");
    let js = jetstream::new(connect(&server.url()).await);
    js.create_stream(stream_config("RP", &["rp.>"]))
        .await
        .unwrap();
    let reply = js
        .get_stream("RP")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("P".into()),
            rate_limit: 8000,
            ..Default::default()
        })
        .await;
    let error = reply.expect_err("refused").to_string();
    assert!(
        error.contains("consumer in pull mode can not have rate limit set"),
        "{error}"
    );
}

/// A raw `CONSUMER.RESET` request and its JSON reply.
async fn reset(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
    body: &str,
    headers: Option<async_nats::HeaderMap>,
) -> (Option<async_nats::HeaderMap>, serde_json::Value) {
    let subject = format!("$JS.API.CONSUMER.RESET.{stream}.{consumer}");
    let request = async_nats::Request::new()
        .payload(body.to_string().into())
        .timeout(Some(Duration::from_secs(5)));
    let request = match headers {
        Some(headers) => request.headers(headers),
        None => request,
    };
    let reply = within("a reset reply", client.send_request(subject, request))
        .await
        .unwrap();
    let json = serde_json::from_slice(&reply.payload).unwrap();
    (reply.headers, json)
}

#[tokio::test]
async fn a_reset_consumer_delivers_again_from_the_sequence_asked() {
    let (server, _dir) = js_server("reset");
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream_config("RESET", &["reset.>"]))
        .await
        .unwrap();
    for i in 0..5 {
        publish(&js, "reset.a", i.to_string().into_bytes()).await;
    }
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("RS".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let fetch = |max: usize| {
        let consumer = consumer.clone();
        async move {
            let mut batch = consumer
                .fetch()
                .max_messages(max)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap();
            let mut got = Vec::new();
            while let Some(message) = within("a fetched message", batch.next()).await {
                let message = message.unwrap();
                got.push(String::from_utf8_lossy(&message.payload).into_owned());
                message.double_ack().await.unwrap();
            }
            got
        }
    };
    assert_eq!(fetch(5).await, ["0", "1", "2", "3", "4"]);

    // Back to stream sequence 2: everything from there comes again.
    let (_, reply) = reset(&client, "RESET", "RS", r#"{"seq":2}"#, None).await;
    assert_eq!(
        reply["type"],
        "io.nats.jetstream.api.v1.consumer_reset_response"
    );
    assert_eq!(reply["reset_seq"], 2);
    assert_eq!(reply["delivered"]["stream_seq"], 1);
    assert_eq!(reply["delivered"]["consumer_seq"], 0);
    assert_eq!(reply["num_pending"], 4);
    assert_eq!(fetch(5).await, ["1", "2", "3", "4"]);

    // An empty body goes back to just above the ack floor: nothing left.
    let (_, reply) = reset(&client, "RESET", "RS", "", None).await;
    assert_eq!(reply["reset_seq"], 6);
    assert_eq!(reply["num_pending"], 0);

    // The stream's identity comes back when asked for, the same each time.
    let mut asked = async_nats::HeaderMap::new();
    asked.insert("Nats-Stream-Identity", "?");
    let (headers, reply) = reset(&client, "RESET", "RS", "", Some(asked.clone())).await;
    let identity = headers
        .and_then(|headers| headers.get("Nats-Stream-Identity").map(|v| v.to_string()))
        .expect("an identity");
    assert_eq!(identity.len(), 8, "{identity}");
    assert!(identity.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(reply["error"].is_null(), "{reply}");
    let (headers, _) = reset(&client, "RESET", "RS", "", Some(asked)).await;
    assert_eq!(
        headers.and_then(|h| h.get("Nats-Stream-Identity").map(|v| v.to_string())),
        Some(identity)
    );

    // A consumer starting at the last message may only go back to its floor.
    stream
        .create_consumer(pull::Config {
            durable_name: Some("LAST".into()),
            deliver_policy: jetstream::consumer::DeliverPolicy::Last,
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, reply) = reset(&client, "RESET", "LAST", r#"{"seq":1}"#, None).await;
    assert_eq!(reply["error"]["err_code"], 10204);
    assert_eq!(reply["error"]["description"], "invalid reset: not allowed");
    assert_eq!(reply["reset_seq"], 0);
}
