//! Black-box protocol tests over bare TCP: exact bytes in, exact bytes out.
//!
//! Each test starts its own server, writes NATS protocol text with a plain tokio
//! `TcpStream` and compares the server's reply byte for byte with what nats-server
//! v2.15.1 sends. Run against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test client_raw`.

mod common;

use std::time::Duration;

use common::{hmsg_frame, hpub_frame, msg_frame, pub_frame, within, RawConnection};
use rnats_tests::ServerProcess;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// What every official client sends: no `+OK` acks, no pedantic checks.
const QUIET: &str = r#"{"verbose":false,"pedantic":false,"headers":true,"protocol":1}"#;

#[tokio::test]
async fn info_is_sent_first_and_ping_is_answered_before_and_after_connect() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect(&server.addr()).await;

    let info = connection.info();
    assert!(
        info["server_id"].as_str().is_some_and(|id| !id.is_empty()),
        "INFO: {info}"
    );
    assert_eq!(info["proto"], 1, "INFO: {info}");
    assert_eq!(info["headers"], true, "INFO: {info}");
    assert_eq!(info["max_payload"], 1024 * 1024, "INFO: {info}");
    assert_eq!(info["port"], server.port, "INFO: {info}");

    connection.send(b"PING\r\n").await;
    connection.expect_exactly(b"PONG\r\n").await;

    // The first PONG after a CONNECT with "protocol":1 is followed by an INFO that
    // describes the connection (nats-server sends it once).
    connection
        .send(format!("CONNECT {QUIET}\r\nPING\r\n").as_bytes())
        .await;
    connection.expect_exactly(b"PONG\r\n").await;
    let info = connection.expect_async_info().await;
    assert_eq!(info["client_ip"], "127.0.0.1", "INFO: {info}");

    connection.send(b"PING\r\nPING\r\n").await;
    connection.expect_exactly(b"PONG\r\nPONG\r\n").await;
}

#[tokio::test]
async fn unknown_operation_is_rejected_and_the_connection_closed() {
    let server = ServerProcess::start(&[]);

    // Before CONNECT.
    let mut connection = RawConnection::connect(&server.addr()).await;
    connection.send(b"FOO\r\n").await;
    connection
        .expect_exactly_then_closed(b"-ERR 'Unknown Protocol Operation'\r\n")
        .await;

    // After CONNECT, with an argument.
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    connection.send(b"FOO BAR\r\n").await;
    connection
        .expect_exactly_then_closed(b"-ERR 'Unknown Protocol Operation'\r\n")
        .await;

    // A known verb with no arguments at all is not an operation either.
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    connection.send(b"PUB\r\n").await;
    connection
        .expect_exactly_then_closed(b"-ERR 'Unknown Protocol Operation'\r\n")
        .await;
}

#[tokio::test]
async fn malformed_arguments_close_the_connection_without_delivering() {
    let server = ServerProcess::start(&[]);
    let mut watcher = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    watcher.send(b"SUB > 1\r\nPING\r\n").await;
    watcher.expect_exactly(b"PONG\r\n").await;

    // nats-server logs a parse error and closes these silently.
    for malformed in [
        &b"PUB a b c d\r\n"[..],
        b"PUB a notanumber\r\n",
        b"PUB a -1\r\nx\r\n",
        b"SUB onlysubject\r\n",
        b"CONNECT {bad json\r\n",
    ] {
        let mut connection = RawConnection::connect(&server.addr()).await;
        if !malformed.starts_with(b"CONNECT") {
            connection
                .send(format!("CONNECT {QUIET}\r\n").as_bytes())
                .await;
        }
        connection.send(malformed).await;
        let received = connection.read_until_closed().await;
        assert_eq!(
            String::from_utf8_lossy(&received),
            "",
            "reply to {:?}",
            String::from_utf8_lossy(malformed)
        );
    }

    // Nothing above was delivered to the catch-all subscriber.
    watcher.send(b"PING\r\n").await;
    watcher.expect_exactly(b"PONG\r\n").await;
}

#[tokio::test]
async fn pub_split_at_every_byte_boundary_arrives_intact() {
    let server = ServerProcess::start(&[]);
    let mut subscriber = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    subscriber.send(b"SUB split.frames 7\r\nPING\r\n").await;
    subscriber.expect_exactly(b"PONG\r\n").await;

    let mut publisher = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    // The payload holds a CRLF and protocol words to show it is counted, not parsed.
    let payload = b"hello\r\nPUB x 1\r\nworld";
    let frame = pub_frame("split.frames", payload);
    for split_at in 1..frame.len() {
        publisher.send(&frame[..split_at]).await;
        // Give the server a chance to read the first part on its own.
        tokio::time::sleep(Duration::from_millis(2)).await;
        publisher.send(&frame[split_at..]).await;
    }
    // And once one byte per write.
    for byte in &frame {
        publisher.send(std::slice::from_ref(byte)).await;
    }
    publisher.send(b"PING\r\n").await;
    publisher.expect_exactly(b"PONG\r\n").await;

    let expected: Vec<u8> = (0..frame.len())
        .flat_map(|_| msg_frame("split.frames", 7, payload))
        .collect();
    subscriber.expect_exactly(&expected).await;
    subscriber.send(b"PING\r\n").await;
    subscriber.expect_exactly(b"PONG\r\n").await;
}

#[tokio::test]
async fn hpub_split_one_byte_per_write_arrives_intact() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    connection.send(b"SUB split.headers 3\r\nPING\r\n").await;
    connection.expect_exactly(b"PONG\r\n").await;

    let headers = b"NATS/1.0\r\nKey: one\r\nKey: two\r\n\r\n";
    let payload = b"body\r\nwith crlf";
    for byte in hpub_frame("split.headers", headers, payload) {
        connection.send(&[byte]).await;
    }
    connection.send(b"PING\r\n").await;
    let mut expected = hmsg_frame("split.headers", 3, headers, payload);
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;
}

#[tokio::test]
async fn pipelined_commands_in_one_write_are_answered_in_order() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect(&server.addr()).await;
    let mut batch = format!("CONNECT {QUIET}\r\n").into_bytes();
    batch.extend_from_slice(b"SUB pipe 1\r\nPUB pipe 3\r\none\r\nPUB pipe 3\r\ntwo\r\nPING\r\n");
    connection.send(&batch).await;

    let mut expected = msg_frame("pipe", 1, b"one");
    expected.extend(msg_frame("pipe", 1, b"two"));
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;
    connection.expect_async_info().await;
}

#[tokio::test]
async fn verbose_mode_acknowledges_each_operation() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect(&server.addr()).await;
    connection
        .send(br#"CONNECT {"verbose":true,"pedantic":false}"#)
        .await;
    connection.send(b"\r\n").await;
    connection.expect_exactly(b"+OK\r\n").await;

    // PING gets its PONG and no +OK; PUB's +OK precedes the delivery it causes; a
    // rejected SUB gets -ERR instead of +OK.
    connection.send(b"SUB v 1\r\nPUB v 2\r\nhi\r\nPING\r\nSUB v..bad 2\r\nUNSUB 1\r\nPUB v 2\r\nhi\r\nPING\r\n").await;
    let mut expected = b"+OK\r\n+OK\r\n".to_vec();
    expected.extend(msg_frame("v", 1, b"hi"));
    expected.extend_from_slice(b"PONG\r\n-ERR 'Invalid Subject'\r\n+OK\r\n+OK\r\nPONG\r\n");
    connection.expect_exactly(&expected).await;
}

#[tokio::test]
async fn connect_defaults_to_verbose_when_the_field_is_absent() {
    // nats-server starts every client with verbose and pedantic on; a CONNECT that
    // leaves the fields out keeps them.
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect(&server.addr()).await;
    connection
        .send(b"CONNECT {}\r\nSUB d 1\r\nPUB d.* 1\r\nx\r\nPING\r\n")
        .await;
    connection
        .expect_exactly(b"+OK\r\n+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn pedantic_mode_flags_wildcard_publish_subjects_but_still_delivers() {
    let server = ServerProcess::start(&[]);
    let pedantic = r#"{"verbose":false,"pedantic":true}"#;
    let mut connection = RawConnection::connect_quiet(&server.addr(), pedantic).await;
    connection
        .send(b"SUB ped.* 1\r\nPUB ped.* 2\r\nhi\r\nPUB ped.x 2\r\nok\r\nPING\r\n")
        .await;
    let mut expected = b"-ERR 'Invalid Publish Subject'\r\n".to_vec();
    expected.extend(msg_frame("ped.*", 1, b"hi"));
    expected.extend(msg_frame("ped.x", 1, b"ok"));
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;

    // Invalid subjects are refused in both modes and the connection stays open.
    connection
        .send(b"SUB ped..x 2\r\nSUB >.ped 3\r\nPUB ped..x 2\r\nno\r\nPING\r\n")
        .await;
    connection
        .expect_exactly(b"-ERR 'Invalid Subject'\r\n-ERR 'Invalid Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn non_pedantic_mode_accepts_wildcard_publish_subjects() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    connection
        .send(b"SUB ped.* 1\r\nPUB ped.* 2\r\nhi\r\nPING\r\n")
        .await;
    let mut expected = msg_frame("ped.*", 1, b"hi");
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;

    // An empty token: the SUB is refused even without pedantic; the PUB draws no
    // error but is delivered to no one.
    connection
        .send(b"SUB ped.> 2\r\nPUB ped..x 2\r\nno\r\nSUB ped..x 3\r\nPING\r\n")
        .await;
    connection
        .expect_exactly(b"-ERR 'Invalid Subject'\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn connect_and_hpub_in_the_same_write_is_accepted() {
    let server = ServerProcess::start(&[]);
    // A subscriber that did not announce header support gets the payload only.
    let mut plain =
        RawConnection::connect_quiet(&server.addr(), r#"{"verbose":false,"pedantic":false}"#).await;
    plain.send(b"SUB hdr 9\r\nPING\r\n").await;
    plain.expect_exactly(b"PONG\r\n").await;

    let headers = b"NATS/1.0\r\nA: b\r\nMulti: 1\r\nMulti: 2\r\n\r\n";
    let mut connection = RawConnection::connect(&server.addr()).await;
    let mut batch = format!("CONNECT {QUIET}\r\nSUB hdr 1\r\n").into_bytes();
    batch.extend(hpub_frame("hdr", headers, b"hi"));
    batch.extend_from_slice(b"PING\r\n");
    connection.send(&batch).await;

    let mut expected = hmsg_frame("hdr", 1, headers, b"hi");
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;
    connection.expect_async_info().await;

    plain.send(b"PING\r\n").await;
    let mut expected = msg_frame("hdr", 9, b"hi");
    expected.extend_from_slice(b"PONG\r\n");
    plain.expect_exactly(&expected).await;
}

#[tokio::test]
async fn hpub_without_announcing_headers_closes_the_connection() {
    let server = ServerProcess::start(&[]);
    let no_headers = r#"{"verbose":false,"pedantic":false,"headers":false}"#;
    let mut connection = RawConnection::connect_quiet(&server.addr(), no_headers).await;
    connection
        .send(&hpub_frame("hdr", b"NATS/1.0\r\n\r\n", b"hi"))
        .await;
    connection.expect_exactly_then_closed(b"").await;
}

#[tokio::test]
async fn payload_of_max_payload_is_delivered_and_one_byte_more_is_a_violation() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    let max_payload = connection.info()["max_payload"]
        .as_u64()
        .expect("max_payload in INFO") as usize;
    assert_eq!(max_payload, 1024 * 1024);

    let payload: Vec<u8> = (0..max_payload).map(|i| b'a' + (i % 26) as u8).collect();
    connection.send(b"SUB big 1\r\n").await;
    connection.send(&pub_frame("big", &payload)).await;
    connection.send(b"PING\r\n").await;
    let mut expected = msg_frame("big", 1, &payload);
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;

    // Only the PUB line is needed: the server refuses before reading the payload.
    connection
        .send(format!("PUB big {}\r\n", max_payload + 1).as_bytes())
        .await;
    connection
        .expect_exactly_then_closed(b"-ERR 'Maximum Payload Violation'\r\n")
        .await;

    // The same for HPUB, where the limit covers headers and payload together.
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    connection
        .send(format!("HPUB big 12 {}\r\n", max_payload + 1).as_bytes())
        .await;
    connection
        .expect_exactly_then_closed(b"-ERR 'Maximum Payload Violation'\r\n")
        .await;
}

#[tokio::test]
async fn unsub_with_max_delivers_exactly_that_many() {
    let server = ServerProcess::start(&[]);
    let mut connection = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    let mut batch = b"SUB limited 5\r\nUNSUB 5 3\r\n".to_vec();
    for i in 0..6 {
        batch.extend(pub_frame("limited", format!("m{i}").as_bytes()));
    }
    batch.extend_from_slice(b"PING\r\n");
    connection.send(&batch).await;

    let mut expected = Vec::new();
    for i in 0..3 {
        expected.extend(msg_frame("limited", 5, format!("m{i}").as_bytes()));
    }
    expected.extend_from_slice(b"PONG\r\n");
    connection.expect_exactly(&expected).await;
}

/// Size of each message in the slow consumer test.
const SLOW_MESSAGE_BYTES: usize = 64 * 1024;
/// 160 MiB in all: well over the default 64 MiB max_pending plus socket buffers.
const SLOW_MESSAGE_COUNT: usize = 2560;
/// How far (in messages, 8 MiB) the publisher may run ahead of the reading
/// subscriber, so that on a loaded machine the reader never nears max_pending itself.
const SLOW_PUBLISH_WINDOW: usize = 128;
/// Bound on the whole slow consumer exchange, generous for a loaded two-core machine.
const SLOW_TEST_BUDGET: Duration = Duration::from_secs(20);

#[tokio::test]
async fn slow_consumer_is_cut_off_while_others_keep_receiving() {
    let server = ServerProcess::start(&[]);

    // The slow subscriber: a small receive buffer, and it never reads.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let stream = within(
        "TCP connect",
        socket.connect(server.addr().parse().unwrap()),
    )
    .await
    .expect("connect slow subscriber");
    let mut slow = RawConnection::from_stream(stream).await;
    slow.send(format!("CONNECT {QUIET}\r\nSUB firehose 1\r\nPING\r\n").as_bytes())
        .await;
    slow.expect_exactly(b"PONG\r\n").await;
    slow.expect_async_info().await;

    // The reading subscriber checks every message on its own task and reports how
    // many it has so far.
    let mut fast = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    fast.send(b"SUB firehose 2\r\nPING\r\n").await;
    fast.expect_exactly(b"PONG\r\n").await;
    let (received_tx, mut received_rx) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(read_firehose(fast.into_stream(), received_tx));

    // The publisher pushes everything, then checks that its PING is answered.
    let deadline = tokio::time::Instant::now() + SLOW_TEST_BUDGET;
    let mut publisher = RawConnection::connect_quiet(&server.addr(), QUIET).await;
    let publishing = async {
        for sequence in 0..SLOW_MESSAGE_COUNT {
            if sequence >= SLOW_PUBLISH_WINDOW {
                let reader_caught_up =
                    received_rx.wait_for(|&received| received + SLOW_PUBLISH_WINDOW > sequence);
                reader_caught_up
                    .await
                    .expect("the reading subscriber stopped early");
            }
            publisher
                .send(&pub_frame("firehose", &firehose_payload(sequence)))
                .await;
        }
        publisher.send(b"PING\r\n").await;
        expect_pong_answering_pings(&mut publisher).await;
    };
    tokio::time::timeout_at(deadline, publishing)
        .await
        .expect("the publisher was blocked: its messages and PING did not go through");

    let received = tokio::time::timeout_at(deadline, reader)
        .await
        .expect("the reading subscriber did not receive every message")
        .expect("reader task panicked");
    assert_eq!(received, SLOW_MESSAGE_COUNT);

    // The slow subscriber was disconnected: reading now yields what fit into the
    // socket buffers, then the end of the stream. nats-server sends no -ERR (the
    // socket is full), so only complete or partial MSG frames precede the close.
    let bytes = tokio::time::timeout_at(deadline, slow.read_until_closed())
        .await
        .expect("the slow subscriber was not disconnected");
    eprintln!(
        "the slow subscriber got {} bytes before the close",
        bytes.len()
    );
    let total = SLOW_MESSAGE_COUNT * SLOW_MESSAGE_BYTES;
    assert!(
        bytes.len() < total / 2,
        "the slow subscriber received {} of {total} bytes: it was not cut off",
        bytes.len()
    );
    assert!(
        bytes.is_empty() || bytes.starts_with(b"MSG firehose 1 65536\r\n"),
        "unexpected bytes to the slow consumer: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    );

    // The server itself is healthy and the publisher still connected.
    publisher.send(b"PING\r\n").await;
    expect_pong_answering_pings(&mut publisher).await;
}

/// Waits for `PONG`, answering the PINGs nats-server sends on its own (the first
/// one about two seconds after connecting); anything else fails the test.
async fn expect_pong_answering_pings(connection: &mut RawConnection) {
    loop {
        let line = connection.read_until(b"\r\n").await;
        match &line[..] {
            b"PONG\r\n" => return,
            b"PING\r\n" => connection.send(b"PONG\r\n").await,
            other => panic!("expected PONG, got {:?}", String::from_utf8_lossy(other)),
        }
    }
}

/// A recognisable payload: the sequence number as 8 decimal digits, then filler.
fn firehose_payload(sequence: usize) -> Vec<u8> {
    let mut payload = format!("{sequence:08}").into_bytes();
    payload.resize(SLOW_MESSAGE_BYTES, b'.');
    payload
}

/// Reads `MSG firehose 2 65536` frames until all arrived, checking their order.
async fn read_firehose(stream: TcpStream, received: tokio::sync::watch::Sender<usize>) -> usize {
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut line = String::new();
    let mut payload = vec![0u8; SLOW_MESSAGE_BYTES + 2];
    for sequence in 0..SLOW_MESSAGE_COUNT {
        line.clear();
        reader.read_line(&mut line).await.expect("read MSG line");
        while line == "PING\r\n" {
            reader
                .get_mut()
                .write_all(b"PONG\r\n")
                .await
                .expect("write PONG");
            line.clear();
            reader.read_line(&mut line).await.expect("read MSG line");
        }
        assert_eq!(
            line,
            format!("MSG firehose 2 {SLOW_MESSAGE_BYTES}\r\n"),
            "message {sequence}"
        );
        reader.read_exact(&mut payload).await.expect("read payload");
        assert_eq!(
            &payload[..8],
            format!("{sequence:08}").as_bytes(),
            "message out of order"
        );
        assert_eq!(&payload[SLOW_MESSAGE_BYTES..], b"\r\n");
        received.send_replace(sequence + 1);
    }
    // Nothing but the expected messages arrived: next comes the PONG to this PING.
    reader
        .get_mut()
        .write_all(b"PING\r\n")
        .await
        .expect("write PING");
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("read PONG");
        match line.as_str() {
            "PONG\r\n" => return SLOW_MESSAGE_COUNT,
            "PING\r\n" => reader
                .get_mut()
                .write_all(b"PONG\r\n")
                .await
                .expect("write PONG"),
            other => panic!("expected PONG after the last message, got {other:?}"),
        }
    }
}
