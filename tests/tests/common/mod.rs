//! Helpers shared by the black-box client tests (`client_pubsub.rs`, `client_raw.rs`).
//!
//! Two kinds of peer: an async-nats `Client` for the behaviour official clients rely
//! on, and [`RawConnection`], a bare TCP stream that writes exact protocol bytes and
//! reads the server's exact reply. Every wait is bounded by [`WAIT_TIMEOUT`], which
//! fails the test instead of hanging it; no test asserts on how fast anything is.

// Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

pub mod cluster;

use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait. Generous so that a loaded two-core machine does
/// not fail a correct server; a server that never answers still fails the test.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `future`, panicking with `what` if it takes longer than [`WAIT_TIMEOUT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT_TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT_TIMEOUT:?} waiting for {what}"),
    }
}

/// Publishes `payload` with `headers` as a request; the reply's payload as
/// text (a publish ack, an error, or the empty ack of a staged message).
pub async fn publish_with_headers(
    client: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> String {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let request = client.request_with_headers(subject.to_string(), map, payload.to_string().into());
    let reply = within("publish", request).await.unwrap();
    String::from_utf8(reply.payload.to_vec()).unwrap()
}

/// A fresh store directory for one JetStream server.
pub fn store_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-js-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A server with JetStream on, storing in a fresh directory.
pub fn js_server(name: &str) -> (rnats_tests::ServerProcess, std::path::PathBuf) {
    let dir = store_dir(name);
    let server = rnats_tests::ServerProcess::start(&["-js", "-sd", dir.to_str().unwrap()]);
    (server, dir)
}

/// Connects an async-nats client with default options.
pub async fn connect(url: &str) -> async_nats::Client {
    within("async-nats connect", async_nats::connect(url))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Connects an async-nats client with the given options.
pub async fn connect_with(url: &str, options: async_nats::ConnectOptions) -> async_nats::Client {
    within("async-nats connect", options.connect(url))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The next message of `subscriber`; panics on timeout or if the stream ended.
pub async fn next_message(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    within("the next message", subscriber.next())
        .await
        .expect("subscription ended while a message was expected")
}

/// Flushes `client` and waits until the server has processed everything the client
/// sent so far, and the client has received everything the server routed to it
/// before that.
///
/// async-nats's `flush` only writes out the client's buffer, so the round trip is
/// made with a message to a fresh inbox the client itself subscribes to: one
/// connection's operations are processed in order, and its deliveries arrive in
/// order. Needs echo (the default).
pub async fn sync_with_server(client: &async_nats::Client) {
    within("flush", client.flush()).await.expect("flush failed");
    let inbox = client.new_inbox();
    let mut fence = client
        .subscribe(inbox.clone())
        .await
        .expect("subscribe to the fence inbox");
    client
        .publish(inbox.clone(), "fence".into())
        .await
        .expect("publish the fence");
    let echoed = next_message(&mut fence).await;
    assert_eq!(echoed.subject.as_str(), inbox);
    fence
        .unsubscribe()
        .await
        .expect("unsubscribe the fence inbox");
}

/// Every message already queued in `subscriber`, without waiting for more.
///
/// Only meaningful after a [`sync_with_server`] of the subscriber's client that
/// follows the publisher's own sync: by then every message the server routed to the
/// subscription is queued in it, so "nothing ready" means "nothing was delivered".
pub fn drain_ready(subscriber: &mut async_nats::Subscriber) -> Vec<async_nats::Message> {
    let mut messages = Vec::new();
    // `unconstrained` keeps tokio's cooperative budget from reporting a ready
    // channel as pending, which would end the drain early.
    while let Some(next) = tokio::task::unconstrained(subscriber.next()).now_or_never() {
        match next {
            Some(message) => messages.push(message),
            None => break,
        }
    }
    messages
}

/// Checks that `messages` carry exactly `expected` as payloads, in order, and
/// reports the first difference rather than two long lists.
pub fn assert_payloads<S: AsRef<str>>(messages: &[async_nats::Message], expected: &[S]) {
    let received = payload_strings(messages);
    if let Some(at) =
        (0..received.len().min(expected.len())).find(|&i| received[i] != expected[i].as_ref())
    {
        panic!(
            "payload {at} is {:?}, expected {:?} ({} received, {} expected)",
            received[at],
            expected[at].as_ref(),
            received.len(),
            expected.len()
        );
    }
    assert_eq!(
        received.len(),
        expected.len(),
        "{} messages received, {} expected; the first extra or missing one: {:?}",
        received.len(),
        expected.len(),
        received
            .get(expected.len())
            .map(String::as_str)
            .or(expected.get(received.len()).map(AsRef::as_ref))
    );
}

/// Payloads of `messages` as UTF-8 strings, for readable assertions.
pub fn payload_strings(messages: &[async_nats::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).expect("UTF-8 payload"))
        .collect()
}

/// A bare TCP connection speaking the NATS text protocol byte for byte.
pub struct RawConnection {
    stream: TcpStream,
    /// Bytes read from the socket but not yet returned to the test.
    unread: Vec<u8>,
    /// The INFO line the server sent on accept, without its `INFO ` prefix and CRLF.
    pub info_json: String,
}

impl RawConnection {
    /// Connects and reads the server's INFO line; sends nothing.
    pub async fn connect(addr: &str) -> RawConnection {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
        Self::from_stream(stream).await
    }

    /// Wraps an already connected stream and reads the server's INFO line.
    pub async fn from_stream(stream: TcpStream) -> RawConnection {
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        let mut connection = RawConnection {
            stream,
            unread: Vec::new(),
            info_json: String::new(),
        };
        let line = connection.read_until(b"\r\n").await;
        let line = String::from_utf8(line).expect("INFO line is UTF-8");
        assert!(
            line.starts_with("INFO {"),
            "first line is not INFO: {line:?}"
        );
        connection.info_json = line["INFO ".len()..line.len() - 2].to_string();
        connection
    }

    /// Connects, reads INFO, and sends `CONNECT <connect_json>` followed by a PING,
    /// then checks that exactly `PONG` came back (no `+OK`, no `-ERR`), followed by
    /// the asynchronous INFO when the CONNECT announced `"protocol":1`.
    pub async fn connect_quiet(addr: &str, connect_json: &str) -> RawConnection {
        let connect: serde_json::Value = serde_json::from_str(connect_json).expect("CONNECT JSON");
        let mut connection = Self::connect(addr).await;
        connection
            .send(format!("CONNECT {connect_json}\r\nPING\r\n").as_bytes())
            .await;
        connection.expect_exactly(b"PONG\r\n").await;
        if connect["protocol"] == 1 {
            connection.expect_async_info().await;
        }
        connection
    }

    /// Reads the INFO nats-server sends right after its first PONG to a client whose
    /// CONNECT carried `"protocol":1`, and checks it describes this connection.
    pub async fn expect_async_info(&mut self) -> serde_json::Value {
        let line = self.read_until(b"\r\n").await;
        let line = String::from_utf8(line).expect("INFO line is UTF-8");
        assert!(
            line.starts_with("INFO {"),
            "expected the INFO that follows the first PONG, got {line:?}"
        );
        let info: serde_json::Value = serde_json::from_str(line["INFO ".len()..].trim_end())
            .expect("INFO carries valid JSON");
        assert_eq!(
            info["connect_info"], true,
            "INFO after the first PONG: {info}"
        );
        assert!(
            info["client_id"].is_u64(),
            "INFO after the first PONG: {info}"
        );
        info
    }

    /// The underlying stream, for tests that read at full speed themselves.
    pub fn into_stream(self) -> TcpStream {
        assert!(
            self.unread.is_empty(),
            "unread bytes would be lost: {:?}",
            lossy_prefix(&self.unread)
        );
        self.stream
    }

    /// The INFO fields as JSON.
    pub fn info(&self) -> serde_json::Value {
        serde_json::from_str(&self.info_json).expect("INFO carries valid JSON")
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        within("a socket write", self.stream.write_all(bytes))
            .await
            .expect("socket write failed");
    }

    /// Reads until `pattern` has arrived; returns everything up to and including its
    /// first occurrence and keeps the rest for later reads. Panics on timeout or EOF.
    pub async fn read_until(&mut self, pattern: &[u8]) -> Vec<u8> {
        assert!(!pattern.is_empty());
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let mut searched = 0;
        loop {
            if let Some(at) = find(&self.unread[searched..], pattern) {
                let end = searched + at + pattern.len();
                let rest = self.unread.split_off(end);
                return std::mem::replace(&mut self.unread, rest);
            }
            searched = self.unread.len().saturating_sub(pattern.len() - 1);
            let mut chunk = vec![0u8; 64 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => panic!(
                    "timed out waiting for {:?}; received so far: {:?}",
                    String::from_utf8_lossy(pattern),
                    lossy_prefix(&self.unread)
                ),
                Ok(Err(e)) => panic!(
                    "read error {e} waiting for {:?}; received so far: {:?}",
                    String::from_utf8_lossy(pattern),
                    lossy_prefix(&self.unread)
                ),
                Ok(Ok(0)) => panic!(
                    "connection closed waiting for {:?}; received so far: {:?}",
                    String::from_utf8_lossy(pattern),
                    lossy_prefix(&self.unread)
                ),
                Ok(Ok(n)) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Checks that the next bytes from the server are exactly `expected`. Fails as
    /// soon as the bytes diverge, or on timeout if fewer arrive; later bytes are kept
    /// for the next read.
    pub async fn expect_exactly(&mut self, expected: &[u8]) {
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let compared = self.unread.len().min(expected.len());
            if self.unread[..compared] != expected[..compared] {
                if expected.len() > 4096 {
                    let at = (0..compared)
                        .find(|&i| self.unread[i] != expected[i])
                        .unwrap_or(0);
                    panic!(
                        "reply differs from the expected {} bytes at byte {at}: received {:?}",
                        expected.len(),
                        lossy_prefix(&self.unread[at.saturating_sub(64)..])
                    );
                }
                assert_eq!(
                    String::from_utf8_lossy(&self.unread),
                    String::from_utf8_lossy(expected),
                    "unexpected reply from the server"
                );
            }
            if compared == expected.len() {
                self.unread.drain(..compared);
                return;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => panic!(
                    "timed out waiting for {:?}; received: {:?}",
                    lossy_prefix(expected),
                    lossy_prefix(&self.unread)
                ),
                Ok(Err(e)) => panic!(
                    "read error {e} waiting for {:?}; received: {:?}",
                    lossy_prefix(expected),
                    lossy_prefix(&self.unread)
                ),
                Ok(Ok(0)) => panic!(
                    "connection closed waiting for {:?}; received: {:?}",
                    lossy_prefix(expected),
                    lossy_prefix(&self.unread)
                ),
                Ok(Ok(n)) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the server closes the connection (EOF or reset) and returns every
    /// byte received before that. Panics if the connection is still open after the
    /// timeout.
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => panic!(
                    "the server did not close the connection; received: {:?}",
                    lossy_prefix(&self.unread)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => return std::mem::take(&mut self.unread),
                Ok(Ok(n)) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Checks that the server sends exactly `expected` and then closes the connection.
    pub async fn expect_exactly_then_closed(&mut self, expected: &[u8]) {
        let received = self.read_until_closed().await;
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(expected),
            "unexpected bytes before the server closed the connection"
        );
    }
}

/// `MSG`/`PUB`-style frame helpers.
pub fn msg_frame(subject: &str, sid: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("MSG {subject} {sid} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

pub fn pub_frame(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// `HPUB subject hdr_len total_len\r\n<headers><payload>\r\n`; `headers` is the full
/// header block including `NATS/1.0\r\n` and the blank line that ends it.
pub fn hpub_frame(subject: &str, headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = headers.len() + payload.len();
    let mut frame = format!("HPUB {subject} {} {total}\r\n", headers.len()).into_bytes();
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

pub fn hmsg_frame(subject: &str, sid: u64, headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = headers.len() + payload.len();
    let mut frame = format!("HMSG {subject} {sid} {} {total}\r\n", headers.len()).into_bytes();
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// At most the first 512 bytes, for panic messages that stay readable.
fn lossy_prefix(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned()
}

/// The files of a certificate authority and a server certificate it signed.
pub struct Pki {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Generates a CA and a server certificate for `localhost` and `127.0.0.1`
/// signed by it, written as `ca.pem`, `server.pem` and `server.key` in `dir`.
pub fn generated_server_certificate(dir: &std::path::Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rnats test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    pki
}

/// A `$JS.API` request with a JSON body; the reply parsed as JSON.
/// Stream info, polled until `ready` holds on it or `patience` ran out
/// (mirrors and sources feed asynchronously in the reference).
pub async fn js_info_when(
    client: &async_nats::Client,
    stream: &str,
    patience: std::time::Duration,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let subject = format!("$JS.API.STREAM.INFO.{stream}");
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let info = js_api(client, &subject, serde_json::json!({})).await;
        if ready(&info) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream {stream} never got ready: {info}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn js_api(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let reply = within(
        subject,
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Every key path of a JSON value: object keys joined with `.`, array
/// elements as `[]`.
pub fn key_paths(
    value: &serde_json::Value,
    prefix: &str,
    out: &mut std::collections::BTreeSet<String>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// `options` that forward the server's `-ERR`s, without reconnecting.
pub fn forward_errors(
    options: async_nats::ConnectOptions,
) -> (
    async_nats::ConnectOptions,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let options = options
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = tx.send(error.to_string());
                }
            }
        });
    (options, rx)
}
