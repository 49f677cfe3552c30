//! Black-box tests with the official async-nats client: core publish/subscribe.
//!
//! Each test starts its own server and talks to it only through async-nats, the way
//! applications do. "Nothing else was delivered" is checked without timing: after
//! the publisher and then the subscriber's own client have made a round trip
//! through the server (`common::sync_with_server`), every message the server routed
//! is already queued in the subscription (`common::drain_ready`). Run against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test client_pubsub`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::client::{PublishErrorKind, RequestErrorKind};
use async_nats::{ConnectOptions, Event, HeaderMap};
use bytes::Bytes;
use common::{
    assert_payloads, connect, connect_with, drain_ready, next_message, payload_strings,
    sync_with_server, within,
};
use futures::StreamExt;
use rnats_tests::ServerProcess;

#[tokio::test]
async fn publish_subscribe_on_a_literal_subject() {
    let server = ServerProcess::start(&[]);
    let subscriber_client = connect(&server.url()).await;
    let publisher = connect(&server.url()).await;
    let mut subscriber = subscriber_client.subscribe("orders.created").await.unwrap();
    sync_with_server(&subscriber_client).await;

    for (subject, payload) in [
        ("orders.created", "first"),
        ("orders.updated", "not for us"),
        ("orders.created.eu", "not for us either"),
        ("orders", "nor this"),
        ("orders.created", "second"),
        ("orders.created", ""),
    ] {
        publisher
            .publish(subject, Bytes::from(payload))
            .await
            .unwrap();
    }
    sync_with_server(&publisher).await;

    for expected in ["first", "second", ""] {
        let message = next_message(&mut subscriber).await;
        assert_eq!(message.subject.as_str(), "orders.created");
        assert_eq!(message.payload, Bytes::from(expected));
        assert!(message.reply.is_none());
        assert!(message.headers.is_none());
    }
    sync_with_server(&subscriber_client).await;
    assert_payloads(&drain_ready(&mut subscriber), &[] as &[&str]);
}

#[tokio::test]
async fn star_wildcard_matches_exactly_one_token() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut subscriber = client.subscribe("sensor.*.temp").await.unwrap();
    sync_with_server(&client).await;

    for subject in [
        "sensor.a.temp",
        "sensor.temp",
        "sensor.a.b.temp",
        "sensor.b.humidity",
        "sensors.a.temp",
        "sensor.b.temp.max",
        "sensor.b.temp",
    ] {
        client.publish(subject, Bytes::from(subject)).await.unwrap();
    }
    sync_with_server(&client).await;

    let received = drain_ready(&mut subscriber);
    let subjects: Vec<&str> = received.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["sensor.a.temp", "sensor.b.temp"]);
    assert_eq!(
        payload_strings(&received),
        ["sensor.a.temp", "sensor.b.temp"]
    );
}

#[tokio::test]
async fn full_wildcard_matches_one_or_more_trailing_tokens() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut subscriber = client.subscribe("metrics.>").await.unwrap();
    let mut middle = client.subscribe("metrics.*.load").await.unwrap();
    sync_with_server(&client).await;

    for subject in [
        "metrics",
        "metrics.cpu",
        "other.metrics.cpu",
        "metrics.cpu.load",
        "metricsx.cpu",
        "metrics.cpu.core0.load",
    ] {
        client.publish(subject, Bytes::from(subject)).await.unwrap();
    }
    sync_with_server(&client).await;

    let subjects: Vec<String> = drain_ready(&mut subscriber)
        .iter()
        .map(|m| m.subject.to_string())
        .collect();
    assert_eq!(
        subjects,
        ["metrics.cpu", "metrics.cpu.load", "metrics.cpu.core0.load"]
    );
    let subjects: Vec<String> = drain_ready(&mut middle)
        .iter()
        .map(|m| m.subject.to_string())
        .collect();
    assert_eq!(subjects, ["metrics.cpu.load"]);
}

#[tokio::test]
async fn queue_group_delivers_each_message_once_across_members() {
    const MESSAGES: usize = 300;
    let server = ServerProcess::start(&[]);

    let mut members = Vec::new();
    for _ in 0..3 {
        let client = connect(&server.url()).await;
        let subscriber = client
            .queue_subscribe("jobs", "workers".to_string())
            .await
            .unwrap();
        sync_with_server(&client).await;
        members.push((client, subscriber));
    }
    let plain_client = connect(&server.url()).await;
    let mut plain = plain_client.subscribe("jobs").await.unwrap();
    sync_with_server(&plain_client).await;

    let publisher = connect(&server.url()).await;
    within("publishing", async {
        for i in 0..MESSAGES {
            publisher
                .publish("jobs", Bytes::from(format!("job-{i}")))
                .await
                .unwrap();
        }
    })
    .await;
    sync_with_server(&publisher).await;

    // The plain subscriber gets every message, in order.
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("job-{i}")).collect();
    let mut plain_received = Vec::new();
    for _ in 0..MESSAGES {
        plain_received.push(next_message(&mut plain).await);
    }
    sync_with_server(&plain_client).await;
    plain_received.extend(drain_ready(&mut plain));
    assert_payloads(&plain_received, &expected);

    // Across the group, each message exactly once; every member got some.
    let mut seen = BTreeMap::new();
    for (index, (client, subscriber)) in members.iter_mut().enumerate() {
        sync_with_server(client).await;
        let received = drain_ready(subscriber);
        assert!(
            !received.is_empty(),
            "queue member {index} received nothing of {MESSAGES}"
        );
        for payload in payload_strings(&received) {
            if let Some(other) = seen.insert(payload.clone(), index) {
                panic!("{payload} delivered to queue members {other} and {index}");
            }
        }
    }
    let seen: Vec<String> = seen.into_keys().collect();
    let expected: Vec<String> = expected
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(seen, expected, "the group did not receive every message");
}

#[tokio::test]
async fn request_reply_with_a_responder() {
    let server = ServerProcess::start(&[]);
    let responder_client = connect(&server.url()).await;
    let mut requests = responder_client.subscribe("math.double").await.unwrap();
    sync_with_server(&responder_client).await;
    let responder = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let number: i64 = std::str::from_utf8(&request.payload)
                .unwrap()
                .parse()
                .unwrap();
            let reply = request.reply.expect("a request carries a reply subject");
            responder_client
                .publish(reply, Bytes::from((number * 2).to_string()))
                .await
                .unwrap();
        }
    });

    let requester = connect(&server.url()).await;
    for number in [0i64, 1, 21, -7, 1_000_000] {
        let reply = within(
            "a reply",
            requester.request("math.double", Bytes::from(number.to_string())),
        )
        .await
        .expect("request failed");
        assert_eq!(reply.payload, Bytes::from((number * 2).to_string()));
    }

    // Concurrent requests get their own replies.
    let concurrent = (100..120i64).map(|number| {
        let requester = requester.clone();
        async move {
            let reply = requester
                .request("math.double", Bytes::from(number.to_string()))
                .await;
            (number, reply.expect("request failed").payload)
        }
    });
    for (number, payload) in
        within("concurrent replies", futures::future::join_all(concurrent)).await
    {
        assert_eq!(payload, Bytes::from((number * 2).to_string()));
    }
    responder.abort();
}

#[tokio::test]
async fn request_without_subscribers_fails_with_no_responders() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let error = within(
        "the no-responders status",
        client.request("nobody.home", Bytes::from("hello?")),
    )
    .await
    .expect_err("a request with no subscriber cannot succeed");
    // NoResponders comes from the server's 503 status message; without it the
    // client would report TimedOut after its request timeout.
    assert_eq!(error.kind(), RequestErrorKind::NoResponders, "{error}");
}

#[tokio::test]
async fn headers_round_trip() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut subscriber = client.subscribe("with.headers").await.unwrap();
    sync_with_server(&client).await;

    let mut headers = HeaderMap::new();
    headers.insert("X-Trace-Id", "abc-123");
    headers.insert("Content-Type", "application/json");
    headers.append("X-Multi", "one");
    headers.append("X-Multi", "two");
    headers.append("X-Multi", "three");
    client
        .publish_with_headers("with.headers", headers.clone(), Bytes::from(r#"{"k":1}"#))
        .await
        .unwrap();
    let mut only_headers = HeaderMap::new();
    only_headers.insert("Empty-Payload", "yes");
    client
        .publish_with_headers("with.headers", only_headers.clone(), Bytes::new())
        .await
        .unwrap();

    let message = next_message(&mut subscriber).await;
    assert_eq!(message.payload, Bytes::from(r#"{"k":1}"#));
    let received = message.headers.expect("headers were sent");
    assert_eq!(
        received.get("X-Trace-Id").map(|v| v.as_str()),
        Some("abc-123")
    );
    assert_eq!(
        received.get("Content-Type").map(|v| v.as_str()),
        Some("application/json")
    );
    let multi: Vec<&str> = received.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["one", "two", "three"]);
    assert_eq!(received, headers);
    assert!(message.status.is_none());

    let message = next_message(&mut subscriber).await;
    assert_eq!(message.payload, Bytes::new());
    assert_eq!(message.headers.expect("headers were sent"), only_headers);
}

#[tokio::test]
async fn unsubscribe_after_three_delivers_three_then_ends() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let publisher = connect(&server.url()).await;
    let mut subscriber = client.subscribe("limited").await.unwrap();
    subscriber.unsubscribe_after(3).await.unwrap();
    sync_with_server(&client).await;

    for i in 0..5 {
        publisher
            .publish("limited", Bytes::from(format!("m{i}")))
            .await
            .unwrap();
    }
    sync_with_server(&publisher).await;

    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_message(&mut subscriber).await);
    }
    assert_eq!(payload_strings(&received), ["m0", "m1", "m2"]);
    let end = within("the end of the subscription", subscriber.next()).await;
    assert!(end.is_none(), "a fourth message was delivered: {end:?}");
}

#[tokio::test]
async fn payload_of_exactly_max_payload_is_delivered_and_one_more_byte_is_refused() {
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let max_payload = client.server_info().max_payload;
    assert_eq!(max_payload, 1024 * 1024, "default max_payload");
    let mut subscriber = client.subscribe("big").await.unwrap();
    sync_with_server(&client).await;

    let payload: Bytes = (0..max_payload)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    client
        .publish("big", payload.clone())
        .await
        .expect("max_payload bytes are allowed");
    let message = next_message(&mut subscriber).await;
    assert_eq!(message.payload.len(), max_payload);
    assert!(
        message.payload == payload,
        "the large payload arrived altered"
    );

    let too_big = Bytes::from(vec![b'x'; max_payload + 1]);
    let error = client
        .publish("big", too_big)
        .await
        .expect_err("over max_payload");
    assert_eq!(
        error.kind(),
        PublishErrorKind::MaxPayloadExceeded,
        "{error}"
    );

    // The connection is still usable.
    client.publish("big", Bytes::from("small")).await.unwrap();
    assert_eq!(
        next_message(&mut subscriber).await.payload,
        Bytes::from("small")
    );
}

#[tokio::test]
async fn ten_thousand_subscriptions_on_one_connection_all_receive() {
    const SUBSCRIPTIONS: usize = 10_000;
    let server = ServerProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut subscribers = Vec::with_capacity(SUBSCRIPTIONS);
    within("subscribing", async {
        for i in 0..SUBSCRIPTIONS {
            subscribers.push(client.subscribe(format!("many.{i}")).await.unwrap());
        }
    })
    .await;
    let mut catch_all = client.subscribe("many.*").await.unwrap();
    sync_with_server(&client).await;

    let publisher = connect(&server.url()).await;
    within("publishing", async {
        for i in 0..SUBSCRIPTIONS {
            publisher
                .publish(format!("many.{i}"), Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
    })
    .await;
    sync_with_server(&publisher).await;
    sync_with_server(&client).await;

    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        let received = drain_ready(subscriber);
        assert_eq!(
            received.len(),
            1,
            "subscription many.{i} got {} messages",
            received.len()
        );
        assert_eq!(received[0].subject.as_str(), format!("many.{i}"));
        assert_eq!(received[0].payload, Bytes::from(i.to_string()));
    }
    let all = drain_ready(&mut catch_all);
    let expected: Vec<String> = (0..SUBSCRIPTIONS).map(|i| i.to_string()).collect();
    assert_payloads(&all, &expected);
}

#[tokio::test]
async fn client_reconnects_after_server_restart_and_keeps_its_subscription() {
    let mut server = ServerProcess::start(&[]);
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let options = ConnectOptions::new()
        .reconnect_delay_callback(|_attempts| Duration::from_millis(100))
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    let client = connect_with(&server.url(), options).await;
    let mut subscriber = client.subscribe("survives.restart").await.unwrap();
    client
        .publish("survives.restart", Bytes::from("before"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut subscriber).await.payload,
        Bytes::from("before")
    );

    server.restart();

    // Wait for the disconnect and then the reconnect.
    let mut disconnected = false;
    loop {
        let event = within("the reconnect event", events.recv())
            .await
            .expect("event channel open");
        match event {
            Event::Disconnected => disconnected = true,
            Event::Connected if disconnected => break,
            _ => {}
        }
    }
    // After this round trip the server has the re-sent SUB.
    sync_with_server(&client).await;

    client
        .publish("survives.restart", Bytes::from("after, same client"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut subscriber).await.payload,
        Bytes::from("after, same client")
    );

    let other = connect(&server.url()).await;
    other
        .publish("survives.restart", Bytes::from("after, other client"))
        .await
        .unwrap();
    sync_with_server(&other).await;
    assert_eq!(
        next_message(&mut subscriber).await.payload,
        Bytes::from("after, other client")
    );
}

#[tokio::test]
async fn no_echo_suppresses_own_messages_only() {
    let server = ServerProcess::start(&[]);
    let quiet = connect_with(&server.url(), ConnectOptions::new().no_echo()).await;
    let echoing = connect(&server.url()).await;
    let mut quiet_subscriber = quiet.subscribe("echo.test").await.unwrap();
    let mut quiet_fence = quiet.subscribe("fence.for.quiet").await.unwrap();
    let mut echoing_subscriber = echoing.subscribe("echo.test").await.unwrap();
    let mut echoing_fence = echoing.subscribe("fence.for.echoing").await.unwrap();
    sync_with_server(&echoing).await;
    // The no-echo client cannot fence with its own messages: it would never see
    // them. Its SUBs are known to the server once a message through them arrives.
    echoing
        .publish("fence.for.quiet", Bytes::from("subscribed"))
        .await
        .unwrap();
    next_message(&mut quiet_fence).await;

    // Each client publishes, then fences through the other one: the fence message
    // arrives after everything the server routed to that connection before it.
    quiet
        .publish("echo.test", Bytes::from("from no-echo client"))
        .await
        .unwrap();
    quiet
        .publish("fence.for.echoing", Bytes::from("fence"))
        .await
        .unwrap();
    next_message(&mut echoing_fence).await;
    echoing
        .publish("echo.test", Bytes::from("from echoing client"))
        .await
        .unwrap();
    echoing
        .publish("fence.for.quiet", Bytes::from("fence"))
        .await
        .unwrap();
    next_message(&mut quiet_fence).await;
    sync_with_server(&echoing).await;

    assert_payloads(
        &drain_ready(&mut quiet_subscriber),
        &["from echoing client"],
    );
    assert_payloads(
        &drain_ready(&mut echoing_subscriber),
        &["from no-echo client", "from echoing client"],
    );
}

#[tokio::test]
async fn flush_and_round_trip_deliver_everything_published_before() {
    const MESSAGES: usize = 2_000;
    let server = ServerProcess::start(&[]);
    let subscriber_client = connect(&server.url()).await;
    let mut subscriber = subscriber_client.subscribe("flushed").await.unwrap();
    sync_with_server(&subscriber_client).await;

    let publisher = connect(&server.url()).await;
    within("publishing", async {
        for i in 0..MESSAGES {
            publisher
                .publish("flushed", Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
    })
    .await;
    // flush writes the backlog out; the round trip then proves the server routed
    // every message, so the subscriber's own round trip brings all of them along.
    within("flush", publisher.flush())
        .await
        .expect("flush failed");
    sync_with_server(&publisher).await;
    sync_with_server(&subscriber_client).await;
    let expected: Vec<String> = (0..MESSAGES).map(|i| i.to_string()).collect();
    assert_payloads(&drain_ready(&mut subscriber), &expected);

    // Flushes and round trips keep working when nothing is pending.
    for _ in 0..10 {
        within("flush", publisher.flush())
            .await
            .expect("flush failed");
        sync_with_server(&publisher).await;
    }
    sync_with_server(&subscriber_client).await;
    assert_payloads(&drain_ready(&mut subscriber), &[] as &[&str]);
}

#[tokio::test]
async fn fan_in_keeps_each_publishers_order() {
    const PUBLISHERS: usize = 5;
    const MESSAGES_EACH: usize = 1_000;
    let server = ServerProcess::start(&[]);
    let subscriber_client = connect(&server.url()).await;
    let mut subscriber = subscriber_client.subscribe("fan.in").await.unwrap();
    sync_with_server(&subscriber_client).await;

    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let client = connect(&server.url()).await;
        publishers.push(tokio::spawn(async move {
            for sequence in 0..MESSAGES_EACH {
                client
                    .publish("fan.in", Bytes::from(format!("{publisher}:{sequence}")))
                    .await
                    .unwrap();
            }
            client.flush().await.unwrap();
        }));
    }
    for publisher in publishers {
        within("a publisher", publisher)
            .await
            .expect("publisher task");
    }

    let mut next_sequence = [0usize; PUBLISHERS];
    for _ in 0..PUBLISHERS * MESSAGES_EACH {
        let message = next_message(&mut subscriber).await;
        let text = std::str::from_utf8(&message.payload).unwrap();
        let (publisher, sequence) = text.split_once(':').unwrap();
        let publisher: usize = publisher.parse().unwrap();
        let sequence: usize = sequence.parse().unwrap();
        assert_eq!(
            sequence, next_sequence[publisher],
            "publisher {publisher} out of order"
        );
        next_sequence[publisher] += 1;
    }
    assert_eq!(next_sequence, [MESSAGES_EACH; PUBLISHERS]);
    sync_with_server(&subscriber_client).await;
    assert!(
        drain_ready(&mut subscriber).is_empty(),
        "messages beyond those published"
    );
}
